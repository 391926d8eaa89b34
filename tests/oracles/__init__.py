"""Differential oracles: Debian's libauparse (python3-audit) and auvirt, run as subprocesses.

libauparse's bindings are built for the system Python, so the oracle scripts run under it
(``AUDITFWD_ORACLE_PYTHON``, default ``/usr/bin/python3``) while the tests run in the project's
environment.  The test command installs both (Debian packages ``auditd`` and ``python3-audit``).
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

HERE = pathlib.Path(__file__).resolve().parent
ORACLE_PYTHON = os.environ.get("AUDITFWD_ORACLE_PYTHON", "/usr/bin/python3")

GroupedEvent = tuple[str | None, int, int, int, list[int]]


class OracleMissing(RuntimeError):
    """The oracle is not installed: the test command installs it, so this is a set-up error."""


def auparse_events(paths: list[pathlib.Path]) -> dict[str, list[GroupedEvent]]:
    """libauparse's grouping of each file: ``(node, sec, msec, serial, [record type, ...])``."""
    if not paths:
        return {}
    try:
        done = subprocess.run(
            [ORACLE_PYTHON, str(HERE / "auparse_events.py"), *map(str, paths)],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
    except FileNotFoundError as exc:
        raise OracleMissing(f"{ORACLE_PYTHON} not found") from exc
    if done.returncode != 0:
        raise OracleMissing(f"libauparse oracle failed (is python3-audit installed?): {done.stderr[-2000:]}")
    result: dict[str, list[GroupedEvent]] = {}
    for line in done.stdout.splitlines():
        item = json.loads(line)
        result[item["path"]] = [
            (node, sec, msec, serial, list(types)) for node, sec, msec, serial, types in item["events"]
        ]
    return result
