"""Provider registration: what Airflow reads, checked by Airflow's own schema and its own CLI."""

from __future__ import annotations

import functools
import importlib
import importlib.util
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest
from redivis_emulator import RedivisEmulator

from airflow_provider_redivis import __version__, get_provider_info
from airflow_provider_redivis.hooks.redivis import RedivisHook
from tests.airflow.harness import AIRFLOW2_PYTHON_ENV, airflow2_python
from tests.airflow.marking import airflow_starting, starts_airflow

AIRFLOW_DIR = Path(airflow.__file__).parent
HOOK_CLASS = "airflow_provider_redivis.hooks.redivis.RedivisHook"
EXPECTED_MODULES = {
    "hooks": ["airflow_provider_redivis.hooks.redivis"],
    "operators": [
        "airflow_provider_redivis.operators.server_side",
        "airflow_provider_redivis.operators.upload",
        "airflow_provider_redivis.operators.versions",
    ],
    "sensors": ["airflow_provider_redivis.sensors.upload", "airflow_provider_redivis.sensors.release"],
    "triggers": [
        "airflow_provider_redivis.triggers.upload",
        "airflow_provider_redivis.triggers.release",
        "airflow_provider_redivis.triggers.release_wait",
    ],
}


def _connection_type(info: dict) -> dict:
    (entry,) = [c for c in info["connection-types"] if c["connection-type"] == "redivis"]
    return entry


def test_provider_info_names_the_package_and_every_module() -> None:
    info = get_provider_info()
    assert info["package-name"] == "airflow-provider-redivis"
    assert info["name"] == "Redivis"
    assert info["description"]
    assert info["versions"] == [__version__]
    for kind, modules in EXPECTED_MODULES.items():
        assert [m for group in info[kind] for m in group["python-modules"]] == modules
        assert {group["integration-name"] for group in info[kind]} == {"Redivis"}
    assert {i["integration-name"] for i in info["integrations"]} == {"Redivis"}
    assert "hook-class-names" not in info  # deprecated; connection-types replaces it


@pytest.mark.parametrize("module", [m for modules in EXPECTED_MODULES.values() for m in modules])
def test_every_listed_module_imports(module: str) -> None:
    importlib.import_module(module)


def test_connection_type_points_at_the_hook() -> None:
    entry = _connection_type(get_provider_info())
    assert entry["hook-class-name"] == HOOK_CLASS
    module, _, name = entry["hook-class-name"].rpartition(".")
    assert getattr(importlib.import_module(module), name) is RedivisHook
    assert RedivisHook.conn_type == "redivis"
    assert RedivisHook.conn_name_attr == "redivis_conn_id"
    assert RedivisHook.default_conn_name == "redivis_default"


def test_provider_info_passes_airflows_schema() -> None:
    schema = json.loads((AIRFLOW_DIR / "provider_info.schema.json").read_text())
    jsonschema.validate(get_provider_info(), schema)


def test_form_fields_are_declared_for_airflow_3_and_airflow_2_alike() -> None:
    entry = _connection_type(get_provider_info())
    fields = entry["conn-fields"]
    assert set(fields) == {
        "connect_timeout",
        "read_timeout",
        "max_attempts",
        "max_retry_seconds",
        "verify",
        "scheme",
        "rate_limit_interval",
    }
    for definition in fields.values():
        assert definition["label"]
        jsonschema.Draft7Validator.check_schema(definition["schema"])
    behaviour = entry["ui-field-behaviour"]
    assert behaviour["relabeling"]["password"] == "API token"
    assert "schema" in behaviour["hidden-fields"]

    # Airflow 2 reads the same layout from the hook.
    legacy = RedivisHook.get_ui_field_behaviour()
    assert legacy["hidden_fields"] == behaviour["hidden-fields"]
    assert legacy["relabeling"] == behaviour["relabeling"]
    behaviour_schema = json.loads((AIRFLOW_DIR / "customized_form_field_behaviours.schema.json").read_text())
    jsonschema.validate(legacy, behaviour_schema)


def test_the_form_saves_no_defaults_and_offers_no_null_choice() -> None:
    # Airflow 3's form starts each extra field at its schema default and saves them all: a default there
    # would freeze in every connection made in the UI. A None in an enum shows as a "null" choice.
    for name, definition in _connection_type(get_provider_info())["conn-fields"].items():
        schema = definition["schema"]
        assert "default" not in schema, name
        assert None not in schema.get("enum", []), name
        assert "null" in schema["type"], name  # an empty field is allowed


def test_airflow_3_form_metadata_starts_every_extra_field_empty() -> None:
    """What Airflow 3.3's API serves the connection form (``GET /ui/connections/hook_meta``)."""
    from airflow.api_fastapi.core_api.services.ui.connections import HookMetaService

    (meta,) = [m for m in HookMetaService.hook_meta_data() if m.connection_type == "redivis"]
    fields = meta.extra_fields
    assert set(fields) == set(_connection_type(get_provider_info())["conn-fields"])
    assert {name: field["value"] for name, field in fields.items()} == dict.fromkeys(fields)
    assert fields["scheme"]["schema"]["enum"] == ["https", "http"]
    assert fields["verify"]["schema"]["enum"] == ["true", "false"]
    assert "10" in fields["connect_timeout"]["schema"]["title"]  # the default, said in the label
    assert meta.standard_fields.port.placeholder.startswith("443")


_WIDGET_NAMES = (
    "from airflow_provider_redivis.hooks.redivis import RedivisHook; "
    "print(','.join(sorted(RedivisHook.get_connection_form_widgets())))"
)


def test_airflow_2_widgets_match_the_declared_fields() -> None:
    declared = set(_connection_type(get_provider_info())["conn-fields"])
    if importlib.util.find_spec("flask_appbuilder") is not None:
        assert set(RedivisHook.get_connection_form_widgets()) == declared
        return
    # Airflow 3 ships without Flask-AppBuilder (it reads conn-fields); check on the Airflow 2 interpreter.
    python = airflow2_python()
    if python is None:
        pytest.skip(f"no Flask-AppBuilder here and {AIRFLOW2_PYTHON_ENV} is not set")
    result = subprocess.run(
        [python, "-c", _WIDGET_NAMES], capture_output=True, text=True, timeout=120, check=True
    )
    assert set(result.stdout.strip().splitlines()[-1].split(",")) == declared


def test_entry_point_is_registered() -> None:
    (ep,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_redivis")
    ]
    assert ep.load() is get_provider_info


# --------------------------------------------------------------------------------------------------
# Airflow's CLI, in a subprocess with its own AIRFLOW_HOME, on this interpreter's Airflow and (when
# dev/test provides it) on the Airflow 2 interpreter too.
# --------------------------------------------------------------------------------------------------
def _interpreters() -> list:
    pythons = [pytest.param(sys.executable, id=f"airflow-{airflow.__version__}")]
    other = airflow2_python()
    # Compare the venvs, not the resolved binaries: venvs symlink one base interpreter.
    if other and Path(other).absolute().parent != Path(sys.executable).absolute().parent:
        pythons.append(pytest.param(other, id="airflow-2"))
    return pythons


INTERPRETERS = _interpreters()


@functools.cache
def airflow_major(python: str) -> int:
    out = subprocess.run(
        [python, "-c", "import airflow; print(airflow.__version__)"],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    ).stdout
    return int(out.strip().splitlines()[-1].split(".")[0])


def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AIRFLOW", "PYTEST"))}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
    )
    env.update(extra)
    return env


@starts_airflow
def run_airflow(
    python: str, *args: str, env: dict[str, str], check: bool = True
) -> subprocess.CompletedProcess[str]:
    airflow_starting("the airflow command")
    airflow_bin = Path(python).with_name("airflow")
    result = subprocess.run(
        [str(airflow_bin), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"airflow {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def json_output(stdout: str) -> list[dict]:
    # Some versions print warnings before the JSON.
    return json.loads(stdout[stdout.index("[") :])


@pytest.mark.airflow
@pytest.mark.parametrize("python", INTERPRETERS)
def test_cli_providers_list_shows_the_provider(tmp_path: Path, python: str) -> None:
    out = run_airflow(python, "providers", "list", "-o", "json", env=airflow_env(tmp_path)).stdout
    (row,) = [r for r in json_output(out) if r["package_name"] == "airflow-provider-redivis"]
    assert row["version"] == __version__


@pytest.mark.airflow
@pytest.mark.parametrize("python", INTERPRETERS)
def test_cli_providers_hooks_shows_the_connection_type(tmp_path: Path, python: str) -> None:
    out = run_airflow(python, "providers", "hooks", "-o", "json", env=airflow_env(tmp_path)).stdout
    (row,) = [r for r in json_output(out) if r["connection_type"] == "redivis"]
    assert row["class"] == HOOK_CLASS
    assert row["conn_id_attribute_name"] == "redivis_conn_id"
    assert row["package_name"] == "airflow-provider-redivis"


@pytest.mark.airflow
@pytest.mark.parametrize("python", INTERPRETERS)
def test_cli_providers_widgets_show_the_form_fields(tmp_path: Path, python: str) -> None:
    out = run_airflow(python, "providers", "widgets", "-o", "json", env=airflow_env(tmp_path)).stdout
    names = {
        r["connection_parameter_name"]
        for r in json_output(out)
        if r["package_name"] == "airflow-provider-redivis"
    }
    assert names == {f"extra__redivis__{f}" for f in _connection_type(get_provider_info())["conn-fields"]}


@pytest.mark.airflow
@pytest.mark.parametrize("python", INTERPRETERS)
def test_cli_connections_test_reaches_the_emulator(
    tmp_path: Path, redivis_emulator: RedivisEmulator, python: str
) -> None:
    env = airflow_env(
        tmp_path,
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW_CONN_REDIVIS_DEFAULT=f"redivis://:{redivis_emulator.token}@{redivis_emulator.base_url[7:]}",
    )
    result = run_airflow(python, "connections", "test", "redivis_default", env=env)
    assert "Connection success!" in result.stdout
    (request,) = [r for r in redivis_emulator.requests if r.path == "/api/v1/users/me"]
    assert request.headers["authorization"] == f"Bearer {redivis_emulator.token}"


@pytest.mark.airflow
@pytest.mark.parametrize("python", INTERPRETERS)
def test_cli_connections_test_reports_a_bad_token(
    tmp_path: Path, redivis_emulator: RedivisEmulator, python: str
) -> None:
    bad = "wrong-cli-token-5678"
    env = airflow_env(
        tmp_path,
        AIRFLOW__CORE__TEST_CONNECTION="Enabled",
        AIRFLOW_CONN_REDIVIS_DEFAULT=f"redivis://:{bad}@{redivis_emulator.base_url[7:]}",
    )
    result = run_airflow(python, "connections", "test", "redivis_default", env=env, check=False)
    output = " ".join((result.stdout + result.stderr).split())  # the console wraps long lines
    assert "Connection failed!" in output
    assert "Redivis API error 401" in output
    assert "connection's password" in output
    assert bad not in output
    if airflow_major(python) >= 3:  # Airflow 2 exits 0 even when the test fails
        assert result.returncode == 1
