"""A fault written down: on the command line (:func:`parse_fault_spec`) or as JSON posted to
``/_emulator/faults`` (:func:`fault_from_mapping`), read into a :class:`~redivis_emulator.faults.Fault`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from redivis_emulator.faults import Fault

_INT_FIELDS = ("nth", "times", "after_bytes", "at_offset", "status", "keep_bytes", "answer_bytes")
_FLOAT_FIELDS = ("seconds",)
_STR_FIELDS = ("method", "origin", "path_contains", "message", "body", "lie_about")
_BOOL_FIELDS = ("finalize", "keep_partial", "short_body")


def fault_from_mapping(data: Mapping[str, Any]) -> Fault:
    """A Fault from JSON-like data (``/_emulator/faults``); unknown keys are an error."""
    if not isinstance(data, Mapping):
        raise ValueError('A fault is a JSON object like {"kind": "reset", "after_bytes": 1048576}.')
    allowed = {"kind", "headers", *_INT_FIELDS, *_FLOAT_FIELDS, *_STR_FIELDS, *_BOOL_FIELDS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(
            f"Unknown fault field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(allowed))}."
        )
    if "kind" not in data:
        raise ValueError("A fault needs a 'kind'.")
    kwargs: dict[str, Any] = {}
    for name in _INT_FIELDS:
        if data.get(name) is not None:
            value = data[name]
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError(f"Fault field {name} must be an integer, got {value!r}.")
            kwargs[name] = value
        elif name == "times" and "times" in data:
            kwargs["times"] = None
    for name in _FLOAT_FIELDS:
        if data.get(name) is not None:
            kwargs[name] = float(data[name])
    for name in _STR_FIELDS:
        if data.get(name) is not None:
            kwargs[name] = str(data[name])
    for name in _BOOL_FIELDS:
        if data.get(name) is not None:
            if not isinstance(data[name], bool):
                raise ValueError(f"Fault field {name} must be true or false, got {data[name]!r}.")
            kwargs[name] = data[name]
    if data.get("headers") is not None:
        headers = data["headers"]
        if not isinstance(headers, Mapping):
            raise ValueError("Fault field headers must be an object of header name to value.")
        kwargs["headers"] = {str(k): str(v) for k, v in headers.items()}
    return Fault(str(data["kind"]), **kwargs)


def parse_fault_spec(spec: str) -> Fault:
    """``KIND[:key=value,key=value...]``, as ``--fault`` takes it.

    Keys are the :class:`Fault` fields (``method``, ``origin``, ``path_contains``, ``nth``, ``times``,
    ``after_bytes``, ``at_offset``, ``status``, ``keep_bytes``, ``answer_bytes``, ``seconds``,
    ``message``, ``body``, ``lie_about`` -- its items joined with ``+`` since ``,`` separates
    options --, ``finalize``, ``keep_partial``, ``short_body`` -- true/false); ``times=none`` means no limit;
    ``header.NAME=VALUE`` adds a response header. Examples:
    ``reset:after_bytes=1048576,method=PUT,origin=session,nth=3,times=1``,
    ``status:status=503,at_offset=262144,keep_partial=false``, ``lie:lie_about=md5+size``.
    """
    kind, _, rest = spec.strip().partition(":")
    data: dict[str, Any] = {"kind": kind.strip()}
    headers: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep:
            raise ValueError(f"Fault option {item!r} in {spec!r} is not key=value.")
        if key.startswith("header."):
            headers[key[len("header.") :]] = value
        elif key in _INT_FIELDS:
            if key == "times" and value.strip().lower() in ("none", "unlimited", "inf"):
                data["times"] = None
                continue
            try:
                data[key] = int(value)
            except ValueError:
                raise ValueError(f"Fault option {key} in {spec!r} needs an integer, got {value!r}.") from None
        elif key in _FLOAT_FIELDS:
            try:
                data[key] = float(value)
            except ValueError:
                raise ValueError(f"Fault option {key} in {spec!r} needs a number, got {value!r}.") from None
        elif key in _STR_FIELDS:
            data[key] = value.replace("+", ",") if key == "lie_about" else value
        elif key in _BOOL_FIELDS:
            flag = value.strip().lower()
            if flag not in ("true", "false", "1", "0", "yes", "no"):
                raise ValueError(f"Fault option {key} in {spec!r} is true or false, got {value!r}.")
            data[key] = flag in ("true", "1", "yes")
        else:
            raise ValueError(f"Unknown fault option {key!r} in {spec!r}.")
    if headers:
        data["headers"] = headers
    return fault_from_mapping(data)
