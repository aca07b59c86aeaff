"""The SQL transfer benchmark: ``python -m benchmarks.sql`` (see ``__main__`` and benchmarks/results/sql_transfer.md)."""
