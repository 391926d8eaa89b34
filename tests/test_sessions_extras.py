"""``auditfwd sessions`` beyond auvirt (``--format json``, ``--host-down``) and ``parse --event``.

The JSON document is checked against the text mode's own entries on generated logs, host downs
on hand-made and generated logs with clean reboots and crashes, and ``parse --event`` against
the real ``ausearch --raw``.
"""

from __future__ import annotations

import io
import os
import random
import re
import shutil
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.audit.record import Malformed, parse_line
from forwarder.cli import main as cli_main
from forwarder.ecs.normalize import NormalizeOptions
from forwarder.generate import GeneratorOptions, generate_lines
from forwarder.offline import DeadLetters, EventSelector, ParseSettings, parse_files, parse_selector
from forwarder.sessions_command import run
from forwarder.virt.auvirt_format import RenderOptions, render_entry
from forwarder.virt.sessions import Entry, EntryKind
from tests.sessions_logs import HAND_MADE_LOGS, T0, UUID_A, UUID_B, UUID_C, LogBuilder, _guest_start

AUSEARCH = shutil.which("ausearch")
AUVIRT = shutil.which("auvirt")
ENVIRONMENT = {**os.environ, "TZ": "UTC", "LC_ALL": "C"}

SECURITY = ("selinux", "apparmor", "dac", "none")
STYLES = ("modern", "legacy", "old")
#: Guest-heavy activity so that short logs hold many sessions; long enough for reboots.
MIX = {"guest": 14.0, "avc": 6.0, "execve": 4.0, "file": 2.0, "login": 1.0, "admin": 1.0}
SEEDS = range(8)

_TYPE_AND_SEC = re.compile(rb"type=(\w+) msg=audit\((\d+)\.")


pytestmark = pytest.mark.usefixtures("utc_timezone")


def options_for(seed: int, records: int = 6000) -> GeneratorOptions:
    rng = random.Random(seed)
    return GeneratorOptions(
        seed=seed,
        records=records,
        security=SECURITY[seed % len(SECURITY)],
        libvirt_style=STYLES[(seed // len(SECURITY)) % len(STYLES)],
        enriched=seed % 3 == 1,
        node="hv-07" if seed % 5 == 2 else None,
        guests=rng.choice((2, 4, 6)),
        mix=dict(MIX),
        host_reboots=True,
    )


LOGS = {seed: b"".join(generate_lines(options_for(seed))) for seed in SEEDS}


def sessions(args: list[str], log: bytes) -> tuple[int, bytes, str]:
    out, err = io.BytesIO(), io.StringIO()
    status = run(["--stdin", *args], io.BytesIO(log), out, err)
    return status, out.getvalue(), err.getvalue()


def document(args: list[str], log: bytes) -> dict[str, Any]:
    status, out, err = sessions(["--format", "json", *args], log)
    assert status == 0, err
    parsed: dict[str, Any] = orjson.loads(out)
    return parsed


def _start_entry(session: dict[str, Any]) -> Entry:
    entry = Entry(
        EntryKind.START,
        session["start_epoch"],
        session["user"],
        session["guest"]["uuid"],
        session["guest"]["name"],  # valid UTF-8 in generated logs, so as the text shows it
        session["success"],
    )
    entry.end = session["end_epoch"] or 0
    return entry


def _resource_entry(owner: dict[str, Any], item: dict[str, Any], user: str | None) -> Entry:
    entry = Entry(EntryKind.RESOURCE, item["attached_epoch"], user, owner["uuid"], owner["name"], item["success"])
    entry.end = item["detached_epoch"] or 0
    entry.resource_type = item["type"]
    entry.reason = item["reason"]
    entry.resource = item["value"]
    if item["cgroup"] is not None:
        entry.cgroup_class = item["cgroup"]["class"]
        entry.cgroup_acl = item["cgroup"]["acl"]
        entry.cgroup_detail = item["cgroup"]["detail"]
    return entry


def _lines_of_kind(text: bytes, kind: str) -> list[bytes]:
    prefix = kind.encode().ljust(6)
    return [line + b"\n" for line in text.splitlines() if line.startswith(prefix)]


SHOW_ALL = RenderOptions(all_events=True, show_uuid=True)


@pytest.mark.parametrize("seed", SEEDS)
def test_json_agrees_with_the_text_entries(seed: int) -> None:
    log = LOGS[seed]
    doc = document([], log)
    status, text, _ = sessions(["-a", "--show-uuid"], log)
    assert status == 0
    assert doc["sessions"], "the generated log has guest sessions"

    # Sessions: the START lines, in order, with the same name, uuid, user and period.
    rendered = [render_entry(_start_entry(s), SHOW_ALL) for s in doc["sessions"]]
    assert rendered == _lines_of_kind(text, "start")

    # Resources: the same lines (as a multiset: the document groups them by session).
    resources: list[bytes] = []
    for session in doc["sessions"]:
        for item in session["resources"]:
            resources.append(render_entry(_resource_entry(session["guest"], item, session["user"]), SHOW_ALL))
    for item in doc["unattached"]:
        if item["kind"] == "resrc":
            resources.append(render_entry(_resource_entry(item["guest"], item, session_user(doc)), SHOW_ALL))
    assert Counter(resources) == Counter(_lines_of_kind(text, "resrc"))

    # AVCs and anomalies: as many as the text shows; stops: each START's successful stop.
    avcs = sum(len(s["avcs"]) for s in doc["sessions"]) + sum(i["kind"] == "avc" for i in doc["unattached"])
    anomalies = sum(len(s["anomalies"]) for s in doc["sessions"])
    anomalies += sum(i["kind"] == "anom" for i in doc["unattached"])
    assert avcs == len(_lines_of_kind(text, "avc"))
    assert anomalies == len(_lines_of_kind(text, "anom"))
    assert doc["summary"]["starts"] + doc["summary"]["failures"] >= len(doc["sessions"])

    # Proofs: the serials --proof prints under each START line.
    _, proved, _ = sessions(["--proof"], log)
    proof_lines = [line for line in proved.splitlines() if line.startswith(b"    Proof:")]
    expected = [b"    Proof:" + ",".join(str(p["serial"]) for p in s["proofs"]).encode() for s in doc["sessions"]]
    assert proof_lines == expected

    for session in doc["sessions"]:
        _check_session(session)


def session_user(doc: dict[str, Any]) -> str | None:
    users = {s["user"] for s in doc["sessions"]}
    assert len(users) == 1  # the generator's daemon runs as root
    return users.pop()  # type: ignore[no-any-return]


def _check_session(session: dict[str, Any]) -> None:
    state = session["state"]
    if not session["success"]:
        assert state == "failed"
    elif session["end_epoch"] is None:
        assert state == "running"
    else:
        assert state in {"stopped", "crashed", "saved", "migrated"}
        assert any(stop["success"] for stop in session["stops"])
        assert session["end_epoch"] >= session["start_epoch"]
        assert session["stop_reason"] is not None
    assert session["start"].endswith("Z")
    assert time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(session["start_epoch"])) == session["start"]
    for proof in session["proofs"]:
        assert parse_selector(proof["id"]) == EventSelector(proof["serial"], proof["sec"], proof["msec"], proof["node"])
    for resource in session["resources"]:
        assert resource["attached_epoch"] is not None


@pytest.mark.parametrize("seed", [0, 5])
def test_json_respects_the_filters(seed: int) -> None:
    log = LOGS[seed]
    everything = document([], log)
    name = everything["sessions"][0]["guest"]["name"]
    uuid = everything["sessions"][-1]["guest"]["uuid"]
    by_name = document(["--vm", name], log)
    assert by_name["sessions"]
    assert {s["guest"]["name"] for s in by_name["sessions"]} == {name}
    by_uuid = document(["--uuid", uuid], log)
    assert {s["guest"]["uuid"] for s in by_uuid["sessions"]} == {uuid}
    middle = everything["sessions"][len(everything["sessions"]) // 2]["start_epoch"]
    moment = time.gmtime(middle)
    windowed = document(["--start", time.strftime("%m/%d/%y", moment), time.strftime("%H:%M:%S", moment)], log)
    assert windowed["sessions"]
    assert all(s["start_epoch"] >= middle for s in windowed["sessions"])
    assert len(windowed["sessions"]) < len(everything["sessions"])


def test_format_option_spellings_and_errors() -> None:
    log = LOGS[0]
    assert sessions(["--format=json"], log)[1] == sessions(["--format", "json"], log)[1]
    assert sessions(["--format", "text"], log)[1] == sessions([], log)[1]
    assert sessions(["--format=yaml"], log)[:3:2] == (1, "Invalid format: yaml\n")
    assert sessions(["--format"], log)[:3:2] == (1, '"--format" option requires an argument.\n')


# -- host downs ----------------------------------------------------------------------------------


def _host_record(log: LogBuilder, type_name: str, sec: int) -> int:
    serial = log.next_serial()
    prefix = f"node={log.node} " if log.node else ""
    log.raw(
        f"{prefix}type={type_name} msg=audit({sec}.000:{serial}): pid=1 uid=0 auid=4294967295 "
        f'ses=4294967295 msg=\'comm="systemd-update-utmp" exe="/usr/lib/systemd/systemd-update-utmp" '
        f"hostname=? addr=? terminal=? res=success'"
    )
    return serial


def _daemon_record(log: LogBuilder, type_name: str, sec: int) -> int:
    serial = log.next_serial()
    log.raw(
        f"type={type_name} msg=audit({sec}.000:{serial}): op={'start' if type_name == 'DAEMON_START' else 'terminate'}"
        " ver=3.0.9 format=raw auid=4294967295 pid=600 uid=0 ses=4294967295 res=success"
    )
    return serial


def reboots_log() -> tuple[bytes, dict[str, int]]:
    """Guest A runs into a crash; B into a clean shutdown; C across an auditd restart."""
    log = LogBuilder()
    marks: dict[str, int] = {}
    _daemon_record(log, "DAEMON_START", T0)
    _host_record(log, "SYSTEM_BOOT", T0 + 5)
    _guest_start(log, T0 + 60, '"alpha"', UUID_A, 2001, "s0:c1,c2", '"/var/lib/libvirt/images/alpha.qcow2"')
    log.user("USER_LOGIN", T0 + 3000, 'op=login acct="root"')
    marks["crash_last"] = T0 + 3000
    marks["crash_marker"] = _daemon_record(log, "DAEMON_START", T0 + 3600)
    _host_record(log, "SYSTEM_BOOT", T0 + 3610)
    _guest_start(log, T0 + 3700, '"beta"', UUID_B, 2002, "s0:c3,c4", '"/var/lib/libvirt/images/beta.qcow2"')
    marks["shutdown"] = T0 + 7000
    marks["shutdown_marker"] = _host_record(log, "SYSTEM_SHUTDOWN", T0 + 7000)
    _daemon_record(log, "DAEMON_END", T0 + 7001)
    _daemon_record(log, "DAEMON_START", T0 + 7200)
    _host_record(log, "SYSTEM_BOOT", T0 + 7210)
    _guest_start(log, T0 + 7300, '"gamma"', UUID_C, 2003, "s0:c5,c6", '"/var/lib/libvirt/images/gamma.qcow2"')
    # auditd restarted on a running host: not a down.
    _daemon_record(log, "DAEMON_END", T0 + 8000)
    _daemon_record(log, "DAEMON_START", T0 + 8005)
    log.control(T0 + 9000, "stop", "shutdown", '"gamma"', UUID_C, "2003")
    return log.text(), marks


def test_host_down_closes_sessions_at_shutdowns_and_crashes() -> None:
    log, marks = reboots_log()
    doc = document(["--host-down"], log)
    by_name = {s["guest"]["name"]: s for s in doc["sessions"]}
    assert by_name["alpha"]["state"] == "host-crash"
    assert by_name["alpha"]["end_epoch"] == marks["crash_last"]
    assert by_name["beta"]["state"] == "host-shutdown"
    assert by_name["beta"]["end_epoch"] == marks["shutdown"]
    assert by_name["gamma"]["state"] == "stopped"
    assert by_name["gamma"]["end_epoch"] == T0 + 9000
    # resources of the downed sessions end with them
    for name in ("alpha", "beta"):
        assert {r["detached_epoch"] for r in by_name[name]["resources"]} == {by_name[name]["end_epoch"]}
    downs = doc["host_downs"]
    assert [(d["time_epoch"], d["crash"]) for d in downs] == [(marks["crash_last"], True), (marks["shutdown"], False)]
    assert [d["proofs"][-1]["serial"] for d in downs] == [marks["crash_marker"], marks["shutdown_marker"]]
    assert [[c["name"] for c in d["closed_sessions"]] for d in downs] == [["alpha"], ["beta"]]
    assert doc["summary"]["host_downs"] == 2

    # without --host-down, the sessions stay open as in auvirt 3.0.9
    plain = {s["guest"]["name"]: s for s in document([], log)["sessions"]}
    assert plain["alpha"]["state"] == plain["beta"]["state"] == "running"
    assert document([], log)["host_downs"] == []


def test_host_down_text_entries() -> None:
    log, marks = reboots_log()
    _, text, _ = sessions(["-a", "--host-down", "--proof"], log)
    lines = text.decode().splitlines()
    downs = [at for at, line in enumerate(lines) if line.startswith("down  ")]
    assert len(downs) == 2
    crash = time.strftime("%a %b %e %H:%M", time.gmtime(marks["crash_last"]))
    assert lines[downs[0]] == "down   " + " " * 22 + "\troot       \t" + crash.ljust(32)
    assert lines[downs[0] + 1] == f"    Proof:{marks['crash_marker']}"
    alpha = next(line for line in lines if line.startswith("start  alpha"))
    assert alpha.endswith(" - " + time.strftime("%H:%M", time.gmtime(marks["crash_last"])) + "  (00:48")

    _, summary, _ = sessions(["--summary", "--host-down"], log)
    assert b"Number of host shutdowns:       2\nNumber of failed operations:    0\n" in summary
    _, plain_summary, _ = sessions(["--summary"], log)
    assert b"host shutdowns" not in plain_summary


def test_without_host_down_nothing_changes() -> None:
    log, _ = reboots_log()
    for args in ([], ["-a"], ["-a", "--proof", "--show-uuid"], ["--summary"]):
        status, out, _ = sessions(args, log)
        assert status == 0
        assert b"down" not in out
        if AUVIRT is not None:
            done = subprocess.run([AUVIRT, "--stdin", *args], input=log, capture_output=True, env=ENVIRONMENT)
            assert out == done.stdout


def _host_history(log: bytes) -> tuple[list[int], list[int]]:
    """Clean shutdown times and crash times (latest second before an unannounced restart)."""
    shutdowns: list[int] = []
    crashes: list[int] = []
    latest: int | None = None
    ended = False
    for line in log.splitlines():
        found = _TYPE_AND_SEC.search(line)
        if found is None:
            continue
        kind, sec = found[1].decode(), int(found[2])
        if kind == "SYSTEM_SHUTDOWN":
            shutdowns.append(sec)
            ended = True
        elif kind == "DAEMON_END":
            ended = True
        elif kind == "DAEMON_START":
            if latest is not None and not ended:
                crashes.append(latest)
            ended = False
        latest = sec if latest is None else max(latest, sec)
    return shutdowns, crashes


@pytest.mark.parametrize("seed", [3, 4, 9, 10, 11])
def test_host_down_on_generated_reboots(seed: int) -> None:
    log = b"".join(generate_lines(options_for(seed, records=60_000)))
    shutdowns, crashes = _host_history(log)
    assert shutdowns or crashes
    doc = document(["--host-down"], log)
    plain = document([], log)
    expected = sorted([(sec, False) for sec in shutdowns] + [(sec, True) for sec in crashes])
    assert [(d["time_epoch"], d["crash"]) for d in doc["host_downs"]] == expected
    assert len(doc["sessions"]) == len(plain["sessions"])
    downs = doc["host_downs"]
    closed = 0
    for with_down, without in zip(doc["sessions"], plain["sessions"], strict=True):
        assert with_down["proofs"][0] == without["proofs"][0]
        if with_down["state"] in {"host-crash", "host-shutdown"}:
            closed += 1
            # open in auvirt 3.0.9 (or ended later by a stop logged after the host came back)
            assert without["end_epoch"] is None or without["end_epoch"] > with_down["end_epoch"]
            down = next(d for d in downs if d["time_epoch"] == with_down["end_epoch"])
            assert down["crash"] == (with_down["state"] == "host-crash")
            assert with_down["start_epoch"] <= down["time_epoch"]
        else:
            assert with_down["end_epoch"] == without["end_epoch"]
            assert with_down["state"] == without["state"]
    # a session that ran across a down is closed by it
    for session in doc["sessions"]:
        if session["success"] and session["state"] == "running":
            assert all(session["start_epoch"] > d["time_epoch"] for d in downs)
    if crashes:
        assert closed > 0


# -- parse --event -------------------------------------------------------------------------------


def _raw_events(log_path: Path, selectors: list[str]) -> tuple[int, bytes]:
    out = io.BytesIO()
    settings = ParseSettings(
        normalize=NormalizeOptions(host_name="test"),
        events=tuple(selector for text in selectors if (selector := parse_selector(text)) is not None),
    )
    summary = parse_files([str(log_path)], out, settings, DeadLetters(None), lambda _message: None)
    return summary.matched, out.getvalue()


def _without_trailing_separator(text: bytes) -> list[bytes]:
    """Lines without a final 0x1d: in an ENRICHED log ``ausearch --raw`` ends every record that has
    no interpretations with the separator, which the log itself does not write."""
    return [line.removesuffix(b"\x1d") for line in text.split(b"\n")]


def _ausearch(log_path: Path, serial: str) -> bytes:
    assert AUSEARCH is not None, "ausearch not found: install the Debian package auditd"
    done = subprocess.run(
        [AUSEARCH, "--input", str(log_path), "-a", serial, "--raw"], capture_output=True, env=ENVIRONMENT, timeout=60
    )
    return done.stdout


#: Logs of hosts without AppArmor: ausearch's own parser drops events whose SYSCALL ``subj`` is
#: an AppArmor label with a space (``libvirtd (enforce)``), and so prints nothing for them.
NON_APPARMOR_SEEDS = [seed for seed in SEEDS if options_for(seed).security != "apparmor"]


@pytest.mark.parametrize("seed", NON_APPARMOR_SEEDS)
def test_event_lines_match_ausearch(seed: int, tmp_path: Path) -> None:
    log = LOGS[seed]
    path = tmp_path / "audit.log"
    path.write_bytes(log)
    serials: list[int] = []
    for line in log.splitlines():
        parsed = parse_line(line)
        if not isinstance(parsed, Malformed):
            serials.append(parsed.serial)
    rng = random.Random(seed)
    proofs = [p["serial"] for s in document([], log)["sessions"] for p in s["proofs"]]
    chosen = rng.sample(serials, 12) + rng.sample(proofs, 4) + [max(serials) + 1000]
    for serial in chosen:
        matched, ours = _raw_events(path, [str(serial)])
        assert _without_trailing_separator(ours) == _without_trailing_separator(_ausearch(path, str(serial))), serial
        assert (matched > 0) == bool(ours)


def test_event_by_proof_id_selects_one_event(tmp_path: Path) -> None:
    log = LOGS[2]  # node= lines
    path = tmp_path / "audit.log"
    path.write_bytes(log)
    session = document([], log)["sessions"][0]
    proof = session["proofs"][0]
    assert proof["node"] == "hv-07"
    matched, ours = _raw_events(path, [proof["id"]])
    assert matched == 1
    lines = ours.splitlines()
    assert lines and all(
        f"msg=audit({proof['sec']}.{proof['msec']:03d}:{proof['serial']})".encode() in x for x in lines
    )
    # a stamp with another node or time selects nothing
    assert _raw_events(path, ["other:" + proof["id"].split(":", 1)[1]])[0] == 0
    assert _raw_events(path, [f"{proof['sec'] + 1}.{proof['msec']:03d}:{proof['serial']}"])[0] == 0


def test_parse_selector_forms() -> None:
    assert parse_selector("42") == EventSelector(42)
    assert parse_selector("1710000006.535:80") == EventSelector(80, 1710000006, 535, None)
    assert parse_selector("hv:07:1710000006.5:80") == EventSelector(80, 1710000006, 5, "hv:07")
    for bad in ("", "x", "1.2345:3", "1.2:", "-4"):
        assert parse_selector(bad) is None


def test_cli_event_exit_status(tmp_path: Path, capsysbinary: pytest.CaptureFixture[bytes]) -> None:
    path = tmp_path / "audit.log"
    path.write_bytes(LOGS[0])
    serial = str(parse_line(LOGS[0].splitlines()[0]).serial)  # type: ignore[union-attr]
    assert cli_main(["parse", "--no-progress", "--event", serial, "--event", "999999999", str(path)]) == 0
    captured = capsysbinary.readouterr()
    assert _without_trailing_separator(captured.out) == _without_trailing_separator(_ausearch(path, serial))
    assert cli_main(["parse", "--no-progress", "--event", "999999999", str(path)]) == 1
    assert b"<no matches>" in capsysbinary.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["parse", "--event", "nonsense", str(path)])


def test_boot_markers_in_either_order_reveal_one_crash() -> None:
    # The hand-made lifecycle log boots with SYSTEM_BOOT then DAEMON_START, without a shutdown.
    log = HAND_MADE_LOGS["lifecycle"]()
    doc = document(["--host-down"], log)
    assert [d["crash"] for d in doc["host_downs"]] == [True]
    down = doc["host_downs"][0]
    boot = min(
        int(found[2])
        for line in log.splitlines()
        if (found := _TYPE_AND_SEC.search(line)) and found[1] == b"SYSTEM_BOOT"
    )
    before = [
        int(found[2]) for line in log.splitlines() if (found := _TYPE_AND_SEC.search(line)) and int(found[2]) < boot
    ]
    assert down["time_epoch"] == max(before)
    assert [c["name"] for c in down["closed_sessions"]] == ["db 01"]
    closed = [s for s in doc["sessions"] if s["state"] == "host-crash"]
    assert [s["end_epoch"] for s in closed] == [down["time_epoch"]]
