"""The transfer is registered the way Airflow's providers declare transfers."""

from __future__ import annotations

import importlib

from airflow_provider_redivis import get_provider_info


def test_the_sql_transfer_is_declared_and_imports() -> None:
    (entry,) = get_provider_info()["transfers"]
    assert entry == {
        "source-integration-name": "Common SQL",
        "target-integration-name": "Redivis",
        "python-module": "airflow_provider_redivis.transfers.sql_to_redivis",
    }
    module = importlib.import_module(entry["python-module"])
    operator = module.SqlToRedivisOperator
    assert {"sql", "parameters", "staging_path", "table", "upload_name"} <= set(operator.template_fields)
    assert ".sql" in operator.template_ext
