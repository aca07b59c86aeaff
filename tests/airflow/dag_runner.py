"""Run one DAG file with ``dag.test()`` in a fresh process: ``python dag_runner.py DAG_FILE DAG_ID``.

Started by :mod:`tests.airflow.harness` with its own AIRFLOW_HOME, so that Airflow's configuration and
metadata database belong to the test alone. Prints ``DAGRUN_STATE=<state>`` and exits 0 on success.
"""

from __future__ import annotations

import importlib.util
import sys


def main() -> int:
    dag_file, dag_id = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("dag_under_test", dag_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(obj for obj in vars(module).values() if getattr(obj, "dag_id", None) == dag_id)
    run = dag.test()
    state = str(getattr(run, "state", run))
    print(f"DAGRUN_STATE={state}", flush=True)
    return 0 if state.endswith("success") else 1


if __name__ == "__main__":
    sys.exit(main())
