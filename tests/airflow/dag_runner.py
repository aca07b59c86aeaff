"""Run one DAG file with ``dag.test()`` in a fresh process: ``python dag_runner.py DAG_FILE DAG_ID``.

Started by :mod:`tests.airflow.harness` with its own AIRFLOW_HOME, so that Airflow's configuration and
metadata database belong to the test alone. Prints ``DAGRUN_STATE=<state>`` and exits 0 on success.

With ``REDIVIS_TEST_LOGICAL_DATE`` (ISO) set, the run has that logical date: a second call with the same
date clears the run's task instances and runs them again, as ``airflow tasks clear`` would.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from datetime import datetime


def main() -> int:
    dag_file, dag_id = sys.argv[1], sys.argv[2]
    spec = importlib.util.spec_from_file_location("dag_under_test", dag_file)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    dag = next(obj for obj in vars(module).values() if getattr(obj, "dag_id", None) == dag_id)
    logical_date = os.environ.get("REDIVIS_TEST_LOGICAL_DATE")
    if logical_date is None:
        run = dag.test()
    else:
        when = datetime.fromisoformat(logical_date)
        import airflow

        major = int(airflow.__version__.split(".", 1)[0])
        # Airflow 3 names the run after run_after: the same one makes it the same run (cleared, run again).
        run = dag.test(logical_date=when, run_after=when) if major >= 3 else dag.test(execution_date=when)
    state = str(getattr(run, "state", run))
    print(f"DAGRUN_STATE={state}", flush=True)
    return 0 if state.endswith("success") else 1


if __name__ == "__main__":
    sys.exit(main())
