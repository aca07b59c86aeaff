"""What Airflow's ProvidersManager learns about this package, without importing any hook."""

from __future__ import annotations

from typing import Any

from airflow_provider_redivis import __version__

INTEGRATION = "Redivis"
CONNECTION_TYPE = "redivis"
HOOK_CLASS_NAME = "airflow_provider_redivis.hooks.redivis.RedivisHook"

#: The extra fields of the connection form. Airflow 3.2+ reads them from here (``conn-fields``);
#: Airflow 2 reads the same fields from ``RedivisHook.get_connection_form_widgets``.
#:
#: No field has a schema ``default``: Airflow 3's form fills every field with its default and saves
#: them all into the extras, which would freeze today's defaults into every connection made in the UI.
#: An empty field is saved as null (or not at all), and the hook applies the provider's current
#: default. Airflow 3.3's form shows no placeholder in extra fields, so the label says the default;
#: Airflow 2 shows the ``placeholders`` of ``UI_FIELD_BEHAVIOUR`` as well.
#: A choice list holds no ``None``: Airflow 3.3 would show it as a literal "null" choice; clearing the
#: choice (x) is how to leave the field empty.
CONN_FIELDS: dict[str, dict[str, Any]] = {
    "connect_timeout": {
        "label": "Connect timeout (seconds; empty: 10)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": "How long to wait for a TCP/TLS connection to Redivis. Leave empty for the "
        "provider's default, 10 s.",
    },
    "read_timeout": {
        "label": "Read timeout (seconds; empty: 60)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": "How long to wait for Redivis to answer, or for a slow link to take more of an upload's "
        "bytes. Leave empty for the provider's default, 60 s.",
    },
    "max_attempts": {
        "label": "Max attempts per call (empty: 6)",
        "schema": {"type": ["integer", "null"], "minimum": 1},
        "description": "Tries per API call (first try included) on connection errors, 408, 429 and 5xx. "
        "Leave empty for the provider's default, 6.",
    },
    "max_retry_seconds": {
        "label": "Max retry time per call (seconds; empty: 300)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": "Retries of one API call stop once they would run past this many seconds. Leave "
        "empty for the provider's default, 300 s.",
    },
    "verify": {
        "label": "Verify TLS certificates (empty: on)",
        # A choice rather than a switch: Airflow 3's switch cannot be empty, and an empty switch would
        # look like "off" while the hook verifies.
        "schema": {
            "type": ["string", "null"],
            "enum": ["true", "false"],
            "values_display": {"true": "on", "false": "off (test servers only)"},
        },
        "description": "Leave empty (on). Off only for a test server with a self-signed certificate; the "
        "extra may also hold the path of a CA bundle (edit it in the extra JSON).",
    },
    "scheme": {
        "label": "Scheme (http/https; empty: from the host)",
        "schema": {"type": ["string", "null"], "enum": ["https", "http"]},
        "description": "Only for a host written without a scheme. Empty: https, or http for a loopback "
        "host (127.0.0.1, ::1, localhost).",
    },
    "rate_limit_interval": {
        "label": "Rate-limit interval (seconds; empty: 100)",
        "schema": {"type": ["number", "null"], "exclusiveMinimum": 0},
        "description": "Redivis counts a token's API requests per interval of this many seconds (about 100 "
        "requests per 100 s). Leave empty unless Redivis gave your token other terms.",
    },
}

UI_FIELD_BEHAVIOUR: dict[str, Any] = {
    "hidden-fields": ["schema", "login"],
    "relabeling": {"host": "Redivis base URL", "password": "API token"},
    "placeholders": {
        "host": "https://redivis.com (the API is at {host}/api/v1); http://127.0.0.1 for the emulator",
        "password": "Redivis API token with the data.edit scope",
        # Airflow 3.3's Test button sends the port it shows; an empty stored port makes it fail.
        "port": "443 for https://redivis.com; 8765 for the emulator",
        # Airflow 2 shows these in the extra fields too; Airflow 3.3 shows only those above.
        "connect_timeout": "10",
        "read_timeout": "60",
        "max_attempts": "6",
        "max_retry_seconds": "300",
        "scheme": "https, or http for a loopback host",
        "rate_limit_interval": "100",
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
                "airflow_provider_redivis.operators.server_side",
                "airflow_provider_redivis.operators.upload",
                "airflow_provider_redivis.operators.versions",
            ],
        }
    ],
    "sensors": [
        {
            "integration-name": INTEGRATION,
            "python-modules": [
                "airflow_provider_redivis.sensors.upload",
                "airflow_provider_redivis.sensors.release",
            ],
        }
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
        {
            "integration-name": INTEGRATION,
            "python-modules": [
                "airflow_provider_redivis.triggers.upload",
                "airflow_provider_redivis.triggers.release",
                "airflow_provider_redivis.triggers.release_wait",
            ],
        }
    ],
    "extra-links": [
        "airflow_provider_redivis.links.RedivisTableLink",
        "airflow_provider_redivis.links.RedivisUploadLink",
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
