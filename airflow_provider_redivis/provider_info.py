"""What Airflow's ProvidersManager learns about this package, without importing any hook."""

from __future__ import annotations

from typing import Any

from airflow_provider_redivis import __version__

INTEGRATION = "Redivis"
CONNECTION_TYPE = "redivis"
HOOK_CLASS_NAME = "airflow_provider_redivis.hooks.redivis.RedivisHook"

#: The extra fields of the connection form. Airflow 3.2+ reads them from here (``conn-fields``);
#: Airflow 2 reads the same fields from ``RedivisHook.get_connection_form_widgets``.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "connect_timeout": {
        "label": "Connect timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 10, "exclusiveMinimum": 0},
        "description": "How long to wait for a TCP/TLS connection to Redivis.",
    },
    "read_timeout": {
        "label": "Read timeout (seconds)",
        "schema": {"type": ["number", "null"], "default": 60, "exclusiveMinimum": 0},
        "description": "How long to wait for Redivis to answer once the request is sent.",
    },
    "max_attempts": {
        "label": "Max attempts per call",
        "schema": {"type": ["integer", "null"], "default": 6, "minimum": 1},
        "description": "Tries per API call (first try included) on connection errors, 408, 429 and 5xx.",
    },
    "max_retry_seconds": {
        "label": "Max retry time per call (seconds)",
        "schema": {"type": ["number", "null"], "default": 300, "exclusiveMinimum": 0},
        "description": "Retries of one API call stop once they would run past this many seconds.",
    },
    "verify": {
        "label": "Verify TLS certificates",
        "schema": {"type": ["boolean", "null"], "default": True},
        "description": "Leave on. Off only for a test server with a self-signed certificate; the extra "
        "may also hold the path of a CA bundle.",
    },
    "scheme": {
        "label": "Scheme (http/https)",
        "schema": {"type": ["string", "null"], "enum": ["https", "http", None]},
        "description": "Only when the host has no scheme: https by default, http for loopback hosts.",
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login"],
    "relabeling": {"host": "Redivis base URL", "password": "API token"},
    "placeholders": {
        "host": "https://redivis.com (default; the API is at {host}/api/v1)",
        "password": "Redivis API token with the data.edit scope",
        "port": "only if the base URL has none",
        "connect_timeout": "10",
        "read_timeout": "60",
        "max_attempts": "6",
        "max_retry_seconds": "300",
    },
}

#: The ``redivis://owner/dataset/table`` asset scheme (``dataset-uris`` is the key Airflow 2 reads).
ASSET_URIS: list[dict[str, Any]] = [
    {
        "schemes": ["redivis"],
        "handler": "airflow_provider_redivis.assets.sanitize_uri",
        "factory": "airflow_provider_redivis.assets.create_asset",
        "to_openlineage_converter": "airflow_provider_redivis.assets.convert_asset_to_openlineage",
    }
]

PROVIDER_INFO: dict[str, Any] = {
    "package-name": "airflow-provider-redivis",
    "name": "Redivis",
    "description": "Apache Airflow provider for Redivis: resumable uploads that survive retries, "
    "worker death and flaky networks.",
    "versions": [__version__],
    "integrations": [
        {
            "integration-name": INTEGRATION,
            "external-doc-url": "https://apidocs.redivis.com/",
            "tags": ["service"],
        }
    ],
    "hooks": [
        {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_redivis.hooks.redivis"]}
    ],
    "operators": [
        {
            "integration-name": INTEGRATION,
            "python-modules": [
                "airflow_provider_redivis.operators.upload",
                "airflow_provider_redivis.operators.versions",
            ],
        }
    ],
    "sensors": [
        {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_redivis.sensors.upload"]}
    ],
    # SqlToRedivisOperator; "Common SQL" is the integration apache-airflow-providers-common-sql declares.
    "transfers": [
        {
            "source-integration-name": "Common SQL",
            "target-integration-name": INTEGRATION,
            "python-module": "airflow_provider_redivis.transfers.sql_to_redivis",
        }
    ],
    "triggers": [
        {"integration-name": INTEGRATION, "python-modules": ["airflow_provider_redivis.triggers.upload"]}
    ],
    "asset-uris": ASSET_URIS,
    "dataset-uris": ASSET_URIS,
    "connection-types": [
        {
            "connection-type": CONNECTION_TYPE,
            "hook-class-name": HOOK_CLASS_NAME,
            "hook-name": "Redivis",
            "conn-fields": CONN_FIELDS,
            "ui-field-behaviour": UI_FIELD_BEHAVIOUR,
        }
    ],
}
