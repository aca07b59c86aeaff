"""The Variable fallback's key: unique per task instance, within Airflow's 250 characters, masked."""

from __future__ import annotations

from airflow_provider_redivis.checkpoint_store import variable_key

#: Airflow's Variable key column (VARCHAR(250)) on PostgreSQL and MySQL.
MAX_VARIABLE_KEY = 250


def test_key_fits_in_airflows_variable_column_whatever_the_ids() -> None:
    key = variable_key("d" * 250, "manual__" + "r" * 242, "g." * 125, 123_456)
    assert len(key) <= MAX_VARIABLE_KEY


def test_key_names_a_word_airflows_masker_hides() -> None:
    # Airflow 2.11's DEFAULT_SENSITIVE_FIELDS include "secret": the UI shows the value as '***'.
    assert "secret" in variable_key("dag", "run", "task", -1)


def test_keys_differ_when_any_part_differs_even_past_the_readable_cut() -> None:
    base = ("d" * 100, "r" * 100, "t" * 100, 1)
    keys = {
        variable_key(*base),
        variable_key("d" * 100 + "x", *base[1:]),
        variable_key(base[0], "r" * 100 + "x", *base[2:]),
        variable_key(*base[:2], "t" * 100 + "x", base[3]),
        variable_key(*base[:3], 2),
    }
    assert len(keys) == 5
