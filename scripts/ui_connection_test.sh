#!/usr/bin/env bash
# The Redivis connection in Airflow 3.3's web UI, in a real browser: adds the connection through the
# form as the connection table in docs/connection.md says (host http://127.0.0.1, port of the emulator, token),
# checks the form (extra fields start empty, the scheme offers https/http and no "null", only what was
# typed is saved), saves it, presses the list's Test button and waits for Airflow's success message.
# About 20 s once the tools are there. Not part of CI (it needs Chromium and Node); run it after changing
# the form, the connection parsing or the Airflow version, and commit its record.
#
#   scripts/ui_connection_test.sh [--record]
#     --record  write docs/ui_connection_test_last_run.md and the screenshots docs/ui_connection_*.png
#
# What it uses:
# - Debian's Chromium (/usr/bin/chromium), installed with apt-get when missing (needs root). Playwright's
#   own browser downloads are never used.
# - playwright-core (pinned below) from npm, installed once under $REDIVIS_UI_TEST_WORKDIR
#   (default ${TMPDIR:-/tmp}/redivis-ui-test); Node.js 18 or later.
# - The Airflow 3.3 interpreter: $AIRFLOW_PYTHON, default .venv/bin/python (made by dev/setup-venvs).
# Airflow's API server and the emulator listen on 127.0.0.1 only, and stop when the script ends.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
PLAYWRIGHT_CORE_VERSION=1.65.1
WORK=${REDIVIS_UI_TEST_WORKDIR:-${TMPDIR:-/tmp}/redivis-ui-test}
AIRFLOW_PYTHON=${AIRFLOW_PYTHON:-$REPO/.venv/bin/python}
say() { echo "[$(date +%H:%M:%S)] $*" >&2; }

RECORD=()
for arg in "$@"; do
  case $arg in
    --record) RECORD=(--record) ;;
    *) echo "usage: $0 [--record]" >&2; exit 2 ;;
  esac
done

if [ ! -x /usr/bin/chromium ]; then
  say "installing chromium (Debian package)"
  if [ "$(id -u)" -ne 0 ]; then
    echo "Chromium is missing and this is not root: apt-get install -y chromium" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
command -v node >/dev/null || { echo "Node.js is missing: apt-get install -y nodejs npm" >&2; exit 1; }
[ -x "$AIRFLOW_PYTHON" ] || { echo "No $AIRFLOW_PYTHON: run dev/setup-venvs, or set AIRFLOW_PYTHON" >&2; exit 1; }

mkdir -p "$WORK"
if [ "$(cat "$WORK/node_modules/playwright-core/package.json" 2>/dev/null | grep -o "\"version\": \"$PLAYWRIGHT_CORE_VERSION\"")" = "" ]; then
  say "installing playwright-core $PLAYWRIGHT_CORE_VERSION under $WORK (no browser download)"
  (cd "$WORK" && [ -f package.json ] || echo '{"private": true}' > "$WORK/package.json")
  PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm install --prefix "$WORK" --no-audit --no-fund --silent \
    "playwright-core@$PLAYWRIGHT_CORE_VERSION"
fi

PYTHONPATH="$REPO${PYTHONPATH:+:$PYTHONPATH}" exec "$AIRFLOW_PYTHON" scripts/ui/connection_test.py \
  --node-modules "$WORK/node_modules" --chromium /usr/bin/chromium "${RECORD[@]}"
