"""Benchmarks of airflow-provider-redivis against the local emulator: ``python -m benchmarks --help``.

The emulator runs in the runner's process (:mod:`benchmarks.runner`); every client being measured
runs in a subprocess of its own (:mod:`benchmarks.worker`), so the two never share a GIL and a
memory figure belongs to one upload only.
"""
