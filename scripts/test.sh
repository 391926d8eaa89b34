#!/usr/bin/env bash
# The test command: installs everything the suite needs on a fresh Debian machine, then runs
# ruff, mypy --strict on forwarder/, the core tests on pure Python, and the whole pytest suite
# with the core compiled by mypyc in place (setup.py).  Usage: bash scripts/test.sh [pytest args...]
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# Differential oracles: libauparse's Python bindings and the real auvirt/ausearch (Debian packages);
# unzip, curl and setpriv for tests/engines/start.sh, which fetches the engines with Maven (Java and
# Maven come with the machine).
PYTHON=${PYTHON:-python3}
need=()
command -v auvirt >/dev/null || need+=(auditd)
/usr/bin/python3 -c 'import auparse' 2>/dev/null || need+=(python3-audit)
command -v unzip >/dev/null || need+=(unzip)
command -v curl >/dev/null || need+=(curl)
command -v setpriv >/dev/null || need+=(util-linux)
# mypyc compiles the core in place (setup.py): a C compiler and the interpreter's C headers.
command -v cc >/dev/null || need+=(gcc)
"$PYTHON" -c 'import os, sys, sysconfig; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' \
  || need+=(python3-dev)
if [ ${#need[@]} -gt 0 ]; then
  echo "== installing Debian packages: ${need[*]}"
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${need[@]}" >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "== creating .venv"
  "$PYTHON" -m venv .venv
fi
echo "== installing the project and its test dependencies"
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
# Editable and pure Python: the modules are compiled in place below, after the pure run.
AUDITFWD_PURE_PYTHON=1 .venv/bin/python -m pip install -q -e '.[test]'

echo "== ruff"
.venv/bin/ruff check forwarder tests tools benchmarks setup.py
echo "== hadolint Dockerfile"
.venv/bin/hadolint Dockerfile
echo "== mypy --strict forwarder"
.venv/bin/mypy forwarder

# The tests of the modules setup.py compiles, on their Python sources (what an install without a
# C compiler runs).
CORE_TESTS=(tests/test_record.py tests/test_record_memo.py tests/test_record_fast_paths.py tests/test_assemble.py
  tests/test_assemble_fast_paths.py tests/test_values.py tests/test_execve.py tests/test_execve_common.py
  tests/test_sockaddr.py tests/test_normalize.py tests/test_normalize_memo.py tests/test_ecs_fields.py
  tests/test_ecs_oracles.py tests/test_guests.py tests/test_guests_devices.py tests/test_guests_fast_paths.py
  tests/test_cli_parse.py tests/test_packaging.py)
echo "== pytest, core on pure Python"
find forwarder -name '*.so' -delete
AUDITFWD_TEST_BUILD=pure .venv/bin/python -m pytest -q "${CORE_TESTS[@]}"

echo "== compiling the core with mypyc"
started=$SECONDS
AUDITFWD_REQUIRE_COMPILED=1 .venv/bin/python setup.py -q build_ext --inplace
echo "compiled in $((SECONDS - started)) s"
echo "== pytest, core compiled"
AUDITFWD_TEST_BUILD=compiled .venv/bin/python -m pytest "$@"
