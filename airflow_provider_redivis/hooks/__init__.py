"""Hooks: an Airflow connection turned into an authenticated Redivis API client."""

from __future__ import annotations
