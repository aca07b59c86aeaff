"""Which tests start Airflow: the ``airflow`` marker, applied by what a test uses, and held to it.

``./dev/test --fast`` deselects ``-m airflow``; that is only as good as the marks. So they are not kept
by hand: whatever starts Airflow (a metadata database, ``dag.test()``, the CLI, the services) is decorated
with :func:`starts_airflow`, and ``tests/conftest.py`` marks every test whose function or fixtures reach
such a thing through the test code's own names (:func:`reaches_airflow`). As a backstop, the starters
call :func:`airflow_starting` when they run, which fails a test that starts Airflow without the mark.
"""

from __future__ import annotations

import inspect
from types import CodeType, ModuleType
from typing import Any, TypeVar

T = TypeVar("T")

#: The test being run (set by tests/conftest.py), so that a starter can check its marks.
current_test: Any = None


def starts_airflow(obj: T) -> T:
    """Declare that calling (or constructing) ``obj`` starts real Airflow."""
    obj.__starts_airflow__ = True  # type: ignore[attr-defined]
    return obj


def airflow_starting(what: str) -> None:
    """Called by a starter as it starts Airflow: refuses when the running test is not marked ``airflow``."""
    test = current_test
    if test is not None and test.get_closest_marker("airflow") is None:
        raise RuntimeError(
            f"{test.nodeid} starts Airflow ({what}) but is not marked 'airflow', so './dev/test --fast' "
            "would run it. Reach Airflow through a starter (tests.airflow.marking.starts_airflow) the "
            "test or its fixtures name, or mark the test @pytest.mark.airflow."
        )


def _codes(code: CodeType) -> list[CodeType]:
    """A code object and those nested in it (inner functions, lambdas, comprehensions)."""
    found = [code]
    for const in code.co_consts:
        if isinstance(const, CodeType):
            found.extend(_codes(const))
    return found


def reaches_airflow(obj: object, seen: set[int] | None = None) -> bool:
    """True when ``obj`` is a starter, or test code whose names lead to one (followed transitively)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return False
    seen.add(id(obj))
    if getattr(obj, "__starts_airflow__", False) is True:
        return True
    if isinstance(obj, ModuleType):
        return False
    func = inspect.unwrap(obj) if callable(obj) else obj  # type: ignore[arg-type]
    code = getattr(func, "__code__", None)
    # Only the tests' own helpers are followed: a library never starts Airflow for a test by itself.
    if code is None or not str(getattr(func, "__module__", "")).startswith("tests"):
        return False
    namespace: dict[str, Any] = getattr(func, "__globals__", {})
    names = {name for each in _codes(code) for name in each.co_names}
    return any(name in namespace and reaches_airflow(namespace[name], seen) for name in names)
