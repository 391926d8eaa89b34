"""Differential tests: ``auditfwd sessions`` against the real auvirt 3.0.9 (Debian package auditd).

Both run with TZ=UTC and LC_ALL=C on the same logs and options; stdout must be byte-identical
and the exit status the same (for command-line errors stderr too).  Logs: the generator's
hypervisor logs over many seeds and settings (SELinux/AppArmor/DAC/no labels, modern/legacy/old
libvirt records, ENRICHED, ``node=``, reboots and crashes) and the hand-made edge cases of
``tests/sessions_logs.py``; rotation is exercised by feeding split logs through ``--stdin``.
"""

from __future__ import annotations

import io
import os
import random
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.sessions_command import run
from forwarder.virt.sessions import EntryKind, SessionFilter, build_sessions
from tests.sessions_logs import HAND_MADE_LOGS

AUVIRT = shutil.which("auvirt")


def test_reference_auvirt_is_installed() -> None:
    """The test command installs it (Debian package auditd); without it this file proves nothing."""
    assert AUVIRT is not None, "auvirt not found: install the Debian package auditd"

REPO = Path(__file__).resolve().parent.parent
ENVIRONMENT = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}

#: Generated logs: (seed, security, libvirt style, enriched, node, guests, records).
SECURITY = ("selinux", "apparmor", "dac", "none")
STYLES = ("modern", "legacy", "old")
SEEDS = range(24)
#: Guest-heavy activity so that short logs hold many sessions, AVCs and anomalies.
MIX = {"guest": 14.0, "avc": 6.0, "execve": 4.0, "file": 2.0, "login": 1.0, "admin": 1.0}


@dataclass(frozen=True)
class Outcome:
    stdout: bytes
    status: int
    stderr: str


pytestmark = pytest.mark.usefixtures("utc_timezone")


def theirs(args: list[str], stdin: bytes = b"") -> Outcome:
    assert AUVIRT is not None
    done = subprocess.run([AUVIRT, *args], input=stdin, capture_output=True, env=ENVIRONMENT, timeout=60)
    return Outcome(done.stdout, done.returncode, done.stderr.decode("utf-8", "replace"))


def ours(args: list[str], stdin: bytes = b"") -> Outcome:
    out = io.BytesIO()
    err = io.StringIO()
    status = run(args, io.BytesIO(stdin), out, err)
    return Outcome(out.getvalue(), status, err.getvalue())


def assert_same(args: list[str], stdin: bytes = b"", compare_stderr: bool = False) -> Outcome:
    expected = theirs(args, stdin)
    got = ours(args, stdin)
    assert got.status == expected.status, (args, expected.stderr, got.stderr)
    if got.stdout != expected.stdout:
        expected_lines = expected.stdout.splitlines()
        got_lines = got.stdout.splitlines()
        first = next(
            (i for i, (a, b) in enumerate(zip(expected_lines, got_lines, strict=False)) if a != b),
            min(len(expected_lines), len(got_lines)),
        )
        pytest.fail(
            f"stdout differs for {args} at line {first}:\n"
            f"auvirt: {expected_lines[first : first + 3]!r}\nours:   {got_lines[first : first + 3]!r}"
        )
    if compare_stderr:
        assert got.stderr == expected.stderr, args
    return expected


def generated_options(seed: int) -> GeneratorOptions:
    rng = random.Random(seed)
    return GeneratorOptions(
        seed=seed,
        records=rng.choice((1200, 2000, 3000)),
        security=SECURITY[seed % len(SECURITY)],
        libvirt_style=STYLES[(seed // len(SECURITY)) % len(STYLES)],
        enriched=bool(seed % 3 == 1),
        node="hv-07" if seed % 5 == 2 else None,
        guests=rng.choice((1, 2, 4, 6)),
        mix=dict(MIX),
        host_reboots=True,
    )


def _date_args(seconds: int) -> tuple[str, str]:
    moment = time.gmtime(seconds)
    return time.strftime("%m/%d/%y", moment), time.strftime("%H:%M:%S", moment)


def option_matrix(log: bytes) -> list[list[str]]:
    """The option combinations run on one log (filters chosen from its own guests and times)."""
    matrix = [
        [],
        ["--all-events"],
        ["-a", "--show-uuid", "--proof"],
        ["--summary"],
        ["--proof", "--show-uuid"],
        ["-s", "-a", "--proof"],
    ]
    from forwarder.audit.assemble import assemble_lines

    events = assemble_lines(line.decode("utf-8", "surrogateescape") for line in log.split(b"\n"))
    starts = [entry for entry in build_sessions(events, SessionFilter()) if entry.kind is EntryKind.START]
    if starts:
        middle = starts[len(starts) // 2]
        name = middle.name or "x"
        if name and not name.startswith("-"):
            matrix += [["-a", "--vm", name], ["-v", name, "--proof"]]
        if middle.uuid:
            matrix += [["--uuid", middle.uuid, "-a", "--show-uuid"], ["-u", middle.uuid, "-s"]]
        date, clock = _date_args(middle.start)
        last_date, last_clock = _date_args(starts[-1].start)
        matrix += [
            ["--start", date, clock, "-a"],
            ["-ts", date, "-s"],
            ["--end", date, clock, "-a", "--proof"],
            ["--start", date, clock[:5], "--end", last_date, last_clock, "-a", "--show-uuid"],
            ["-te", last_date, "--summary"],
        ]
    return matrix


GENERATED_LOGS = {seed: b"".join(generate_lines(generated_options(seed))) for seed in SEEDS}


@pytest.mark.parametrize("seed", SEEDS)
def test_generated_logs_match_auvirt(seed: int, tmp_path: Path) -> None:
    log = GENERATED_LOGS[seed]
    path = tmp_path / "audit.log"
    path.write_bytes(log)
    combinations = option_matrix(log)
    assert len(combinations) >= 6
    printed = 0
    for options in combinations:
        expected = assert_same(["--file", str(path), *options])
        printed += len(expected.stdout)
    # the same through --stdin for the plain and the fullest listing
    assert_same(["--stdin"], stdin=log)
    assert_same(["--stdin", "-a", "--proof", "--show-uuid"], stdin=log)
    assert printed > 0


@pytest.mark.parametrize("name", sorted(HAND_MADE_LOGS))
def test_hand_made_logs_match_auvirt(name: str, tmp_path: Path) -> None:
    log = HAND_MADE_LOGS[name]()
    path = tmp_path / f"{name}.log"
    path.write_bytes(log)
    combinations = [
        *option_matrix(log),
        ["-a", "--vm", "web01", "--proof"],
        ["-a", "--uuid", "6f1c2a7e-3d4b-4e8a-9c1f-2b7d5e9a0c13", "--show-uuid"],
        ["-a", "--vm", "db 01"],
        ["-a", "--start", "03/12/24", "--end", "03/15/24", "12:00"],
        ["-a", "--debug", "--proof"],
    ]
    for options in combinations:
        assert_same(["--file", str(path), *options])
        assert_same(["--stdin", *options], stdin=log)


@pytest.mark.parametrize("seed", [1, 6, 11])
def test_rotation_through_stdin(seed: int) -> None:
    """A log split mid-session: concatenated oldest first (and, wrongly, newest first)."""
    lines = GENERATED_LOGS[seed].splitlines(keepends=True)
    for cut in (len(lines) // 3, len(lines) // 2):
        older, newer = b"".join(lines[:cut]), b"".join(lines[cut:])
        for options in ([], ["-a", "--proof"], ["-s"]):
            assert_same(["--stdin", *options], stdin=older + newer)
            assert_same(["--stdin", *options], stdin=newer + older)


@pytest.mark.parametrize(
    "keyword_args",
    [
        ["--start", "today"],
        ["--end", "today", "-a"],
        ["--end", "now", "-s"],
        ["--start", "this-year", "-a"],
        ["--end", "this-month"],
        ["--start", "week-ago", "--proof"],
        ["--end", "yesterday", "12:00", "-a"],
        ["--end", "recent", "-s"],
        ["--start", "03/11/24", "08:00", "-a"],
        ["--start", " 3/11/24", "-a"],
        ["--end", "02/31/24", "-s"],
        ["--start", "3/11/24", "8:5", "-a"],
    ],
)
def test_dates_match_auvirt(keyword_args: list[str], tmp_path: Path) -> None:
    """Keywords whose result does not depend on the current time for logs of 2024."""
    path = tmp_path / "audit.log"
    path.write_bytes(HAND_MADE_LOGS["lifecycle"]())
    assert_same(["--file", str(path), *keyword_args], compare_stderr=True)


ERROR_CASES = [
    ["--help"],
    ["-h", "--bogus"],
    ["--bogus", "--help"],
    ["--debug", "--help"],
    ["--debug", "--bogus"],
    ["-a", "extra"],
    [""],
    ["--vm"],
    ["--vm", "-a"],
    ["-v"],
    ["--uuid"],
    ["--uuid", "not-a-uuid"],
    ["-u", "6f1c2a7e-3d4b-4e8a-9c1f-2b7d5e9a0c1"],
    ["--file"],
    ["-f", "-a"],
    ["--start"],
    ["-ts", "-a"],
    ["--end"],
    ["--start", "13/01/24"],
    ["--start", "01/01/2024"],
    ["--start", "01/01/03"],
    ["--end", "01/01/24", "25:00"],
    ["--end", "01/01/24", "1:2:3"],
    ["--start", "01/01/24", "10"],
    ["--start", "tomorrow"],
    ["--stdin", "--file", "x.log"],
    ["--file", "x.log", "--stdin", "--debug"],
    ["--file", "/nonexistent/audit.log"],
    ["--file", "/nonexistent/audit.log", "--debug"],
    ["--file", "."],
    ["-s", "--file", "."],
    ["--stdin", "-a", "-s"],
]


@pytest.mark.parametrize("args", ERROR_CASES, ids=lambda args: " ".join(args) or "empty")
def test_command_line_errors_match_auvirt(args: list[str]) -> None:
    compare_stderr = "--debug" not in args  # auvirt's debug diagnostics are not reproduced
    assert_same(args, compare_stderr=compare_stderr)


def test_auditfwd_sessions_command_passes_arguments_untouched(tmp_path: Path) -> None:
    """The real entry point: `auditfwd sessions` hands auvirt's options to its own parser."""
    path = tmp_path / "audit.log"
    path.write_bytes(HAND_MADE_LOGS["lifecycle"]())
    args = ["--file", str(path), "-a", "--proof", "-ts", "03/11/24", "07:00"]
    done = subprocess.run(
        [sys.executable, "-m", "forwarder.cli", "sessions", *args],
        capture_output=True,
        env={**ENVIRONMENT, "PYTHONPATH": str(REPO)},
        cwd=REPO,
        timeout=60,
    )
    expected = theirs(args)
    assert done.returncode == expected.status == 0
    assert done.stdout == expected.stdout
    assert expected.stdout.count(b"\n") > 10


#: 2024-03-31 00:00 UTC: Central Europe switches to summer time an hour later.
DST_DAY = 1_711_843_200


@pytest.mark.parametrize(
    "options",
    [
        ["-a", "--proof"],
        ["--start", "03/31/24", "02:30", "-s"],
        ["--start", "03/31/24", "02:30", "-a"],
        ["--end", "03/31/24", "3:00", "-s"],
        ["--debug", "-s"],
    ],
)
def test_local_time_across_a_dst_change(options: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Another zone: ctime and mktime (with auvirt's tm_isdst = 0) follow the C library."""
    log = b"".join(generate_lines(GeneratorOptions(seed=3, records=2500, start=DST_DAY, mix=dict(MIX))))
    monkeypatch.setenv("TZ", "Europe/Berlin")
    time.tzset()
    try:
        expected = subprocess.run(
            [str(AUVIRT), "--stdin", *options],
            input=log,
            capture_output=True,
            env={**ENVIRONMENT, "TZ": "Europe/Berlin"},
            timeout=60,
        )
        got = ours(["--stdin", *options], stdin=log)
    finally:
        monkeypatch.setenv("TZ", "UTC")
        time.tzset()
    assert (got.stdout, got.status) == (expected.stdout, expected.returncode)
    assert b"Mar 31" in expected.stdout
