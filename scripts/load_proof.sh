#!/usr/bin/env bash
# Proof under load and faults (scripts/load_proof.py says what runs and what is asserted): a real
# Airflow 3.3 scheduler (LocalExecutor, parallelism 8) runs 16 mapped uploads of distinct files into one
# table while the emulator cuts connections at seeded random points, one worker is SIGKILLed and the API
# server is restarted once. About 5 minutes on 2 CPUs; not part of CI's 25-minute budget.
#
#   scripts/load_proof.sh [--record] [--seed N] [--keep]
#     --record  write the result to scripts/load_proof_last_run.md
#     --seed N  the seed of the fault points (default 20261202)
#     --keep    keep the run directory (Airflow home, service and task logs, emulator data)
#
# Interpreter: $PYTHON, else .venv/bin/python (./dev/test creates it: Airflow 3.3 and this provider).
# Everything listens on 127.0.0.1; every process started is stopped on exit.
set -euo pipefail
cd "$(dirname "$0")/.."
RECORD=0
ARGS=()
while [ $# -gt 0 ]; do
  case $1 in
    --record) RECORD=1 ;;
    --seed) ARGS+=(--seed "$2"); shift ;;
    --keep) ARGS+=(--keep) ;;
    *) echo "usage: $0 [--record] [--seed N] [--keep]" >&2; exit 2 ;;
  esac
  shift
done
PY=${PYTHON:-.venv/bin/python}
STARTED_AT=$(date -u +%Y-%m-%dT%H:%M:%SZ)
COMMIT=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
DIRTY=$(git status --porcelain --untracked-files=no 2>/dev/null | grep -q . && echo " (with uncommitted changes)" || true)
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
SECONDS=0
set +e
PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" "$PY" scripts/load_proof.py "${ARGS[@]}" 2>&1 | tee "$OUT"
STATUS=${PIPESTATUS[0]}
set -e
RESULT=$([ "$STATUS" -eq 0 ] && echo PASSED || echo "FAILED (exit $STATUS)")
if [ "$RECORD" -eq 1 ]; then
  {
    echo "# Last run of scripts/load_proof.sh"
    echo
    echo "- date: $STARTED_AT"
    echo "- commit: $COMMIT$DIRTY"
    echo "- command: \`scripts/load_proof.sh --record ${ARGS[*]}\`"
    echo "- Airflow $("$PY" -c 'import airflow; print(airflow.__version__)' 2>/dev/null), Python $("$PY" -c 'import platform; print(platform.python_version())'), $(nproc) CPUs"
    echo "- duration: $SECONDS s"
    echo "- result: $RESULT"
    echo
    echo "## Output"
    echo
    echo '```'
    grep -E '^\[[0-9:]{8}\]|^Run directory' "$OUT" || true
    echo '```'
  } > scripts/load_proof_last_run.md
  echo "recorded scripts/load_proof_last_run.md" >&2
fi
exit "$STATUS"
