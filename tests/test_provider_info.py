"""Provider registration: what Airflow reads, checked by Airflow's own schema and its own CLI."""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

import airflow
import jsonschema
import pytest

from airflow_provider_redivis import __version__, get_provider_info
from airflow_provider_redivis.hooks.redivis import RedivisHook

AIRFLOW_DIR = Path(airflow.__file__).parent
AIRFLOW_BIN = Path(sys.executable).with_name("airflow")
HOOK_CLASS = "airflow_provider_redivis.hooks.redivis.RedivisHook"
EXPECTED_MODULES = {
    "hooks": ["airflow_provider_redivis.hooks.redivis"],
    "operators": ["airflow_provider_redivis.operators.upload", "airflow_provider_redivis.operators.versions"],
    "sensors": ["airflow_provider_redivis.sensors.upload"],
    "triggers": ["airflow_provider_redivis.triggers.upload"],
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


def test_airflow_2_widgets_match_the_declared_fields() -> None:
    pytest.importorskip("flask_appbuilder", reason="Airflow 2's form widgets need Flask-AppBuilder")
    pytest.importorskip("wtforms")
    widgets = RedivisHook.get_connection_form_widgets()
    assert set(widgets) == set(_connection_type(get_provider_info())["conn-fields"])


def test_entry_point_is_registered() -> None:
    (ep,) = [
        ep
        for ep in entry_points(group="apache_airflow_provider")
        if ep.value.startswith("airflow_provider_redivis")
    ]
    assert ep.load() is get_provider_info


# --------------------------------------------------------------------------------------------------
# Airflow's CLI, in a subprocess with its own AIRFLOW_HOME
# --------------------------------------------------------------------------------------------------
def airflow_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__UNIT_TEST_MODE="False",
    )
    env.update(extra)
    return env


def run_airflow(*args: str, env: dict[str, str], check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(AIRFLOW_BIN), *args], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(f"airflow {' '.join(args)} exited {result.returncode}\n{result.stdout}\n{result.stderr}")
    return result


def json_output(stdout: str) -> list[dict]:
    # Some versions print warnings before the JSON.
    start = stdout.index("[")
    return json.loads(stdout[start:])


@pytest.mark.airflow
def test_cli_providers_list_shows_the_provider(tmp_path: Path) -> None:
    out = run_airflow("providers", "list", "-o", "json", env=airflow_env(tmp_path)).stdout
    (row,) = [r for r in json_output(out) if r["package_name"] == "airflow-provider-redivis"]
    assert row["version"] == __version__


@pytest.mark.airflow
def test_cli_providers_hooks_shows_the_connection_type(tmp_path: Path) -> None:
    out = run_airflow("providers", "hooks", "-o", "json", env=airflow_env(tmp_path)).stdout
    (row,) = [r for r in json_output(out) if r["connection_type"] == "redivis"]
    assert row["class"] == HOOK_CLASS
    assert row["conn_id_attribute_name"] == "redivis_conn_id"
    assert row["package_name"] == "airflow-provider-redivis"


@pytest.mark.airflow
def test_cli_providers_widgets_show_the_form_fields(tmp_path: Path) -> None:
    out = run_airflow("providers", "widgets", "-o", "json", env=airflow_env(tmp_path)).stdout
    names = {
        r["connection_parameter_name"]
        for r in json_output(out)
        if r["package_name"] == "airflow-provider-redivis"
    }
    assert names == {f"extra__redivis__{f}" for f in _connection_type(get_provider_info())["conn-fields"]}
