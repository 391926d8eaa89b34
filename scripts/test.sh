#!/usr/bin/env bash
# The test command: installs everything the suite needs on a fresh Debian machine, then runs
# ruff, mypy --strict on forwarder/ and pytest.  Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Differential oracles: libauparse's Python bindings and the real auvirt/ausearch (Debian packages);
# unzip, curl and setpriv for tests/engines/start.sh, which fetches the engines with Maven (Java and
# Maven come with the machine).
need=()
command -v auvirt >/dev/null || need+=(auditd)
/usr/bin/python3 -c 'import auparse' 2>/dev/null || need+=(python3-audit)
command -v unzip >/dev/null || need+=(unzip)
command -v curl >/dev/null || need+=(curl)
command -v setpriv >/dev/null || need+=(util-linux)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing the project and its test dependencies"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check forwarder tests tools benchmarks
echo "== hadolint Dockerfile"
.venv/bin/hadolint Dockerfile
echo "== mypy --strict forwarder"
.venv/bin/mypy forwarder
echo "== pytest"
.venv/bin/python -m pytest "$@"
