"""Unit tests of the pure pieces behind ``auditfwd sessions`` (auvirt 3.0.9 semantics)."""

from __future__ import annotations

import calendar
import re
from pathlib import Path

import pytest

from forwarder.audit.assemble import Assembler
from forwarder.audit.record import Event
from forwarder.sessions_command import UsageError, parse_arguments
from forwarder.virt.auparse_fields import (
    FieldCursor,
    c_strtol_int,
    escape_controls,
    print_escaped,
    split_fields,
    unescape_hex,
    user_name,
)
from forwarder.virt.auparse_lines import auparse_record, event_stamp, record_type, type_number
from forwarder.virt.auvirt_dates import MIDNIGHT, Clock, DateError, parse_bound
from forwarder.virt.auvirt_format import (
    RenderOptions,
    column,
    duration_text,
    period_text,
    render_entries,
    render_summary,
    summarize,
)
from forwarder.virt.sessions import Entry, EntryKind, EventId, SessionFilter, build_sessions, seclevel_of
from tests.sessions_logs import T0, UUID_A, UUID_B, LogBuilder, hex_name


def events_of(log: bytes) -> list[Event]:
    assembler = Assembler()
    events: list[Event] = []
    for line in log.decode("utf-8", "surrogateescape").split("\n"):
        record = auparse_record(line, 2)
        if record is not None:
            events.extend(assembler.feed(record))
    events.extend(assembler.flush())
    return events


def one_event(*lines: str) -> Event:
    (event,) = events_of(("\n".join(lines) + "\n").encode())
    return event


# -- libauparse field splitting and interpretation ------------------------------------------------


def test_fields_of_a_user_message_drop_header_and_cut_punctuation() -> None:
    names, values = split_fields(
        "node=hv type=VIRT_CONTROL msg=audit(1.000:2): pid=1 uid=0 subj=libvirtd (enforce) "
        "msg='virt=kvm op=start empty= vm=\"a b\" key=(null) res=success'",
        2500,
    )
    assert names == ["node", "type", "pid", "uid", "subj", "virt", "op", "vm", "key", "res"]
    # a quoted value with a space is split like any other word; `(null)` keeps its parenthesis
    assert values[names.index("vm")] == '"a'
    assert values[names.index("key")] == "(null)"
    assert values[-1] == "success"


def test_selinux_avc_words_become_seresult_and_seperms() -> None:
    names, values = split_fields(
        "type=AVC msg=audit(1.0:2): avc:  denied  { read write } for  pid=5 scontext=a:b:c:s0:c1,c2 tclass=file", 1400
    )
    assert names[:3] == ["type", "seresult", "seperms"]
    assert values[1:3] == ["denied", "read,write"]
    assert names[3:] == ["pid", "scontext", "tclass"]


def test_print_escaped_follows_libauparse() -> None:
    assert print_escaped('"web01"') == "web01"
    assert print_escaped('"unterminated') == " "
    assert print_escaped(hex_name("a b")) == "a b"
    assert print_escaped("00414243") == "ABC"  # abstract socket rule
    assert print_escaped("41424") == "AB@"  # odd digit: high nibble of a last byte
    assert print_escaped("4142zz") == "AB"
    assert print_escaped("rawname") == "rawname"
    assert print_escaped("(null)") == "(null)"
    assert unescape_hex("41004243") == "A"  # C strings end at NUL
    assert escape_controls("a\tb\n") == "a\\011b\\012"


def test_user_name_rules() -> None:
    users = {107: "qemu"}
    assert user_name("0", users) == "root"
    assert user_name("107", users) == "qemu"
    assert user_name("4294967295", users) == "unset"
    assert user_name("-1", users) == "unset"
    assert user_name("3000000000", users) == "unknown(-1294967296)"
    assert user_name("abc", users) == "root"  # strtoul reads nothing: 0
    assert user_name("18446744073709551616", users) == "conversion error(18446744073709551616)"
    assert c_strtol_int("99999999999999999999") == -1
    assert c_strtol_int("?") == 0


def test_cursor_searches_forward_only_and_failed_searches_stick() -> None:
    event = one_event(
        'type=AVC msg=audit(5.000:9): avc:  denied  { read } for  pid=7 comm="a" name="n" scontext=x:y:z:s0 tclass=f',
        'type=SYSCALL msg=audit(5.000:9): arch=c000003e uid=1 comm="b" \x1dUID="alice"',
        "type=PROCTITLE msg=audit(5.000:9): proctitle=41",
    )
    cursor = FieldCursor(event, {})
    assert cursor.find("name") == '"n"'
    assert cursor.find("comm") == '"b"'  # the AVC's comm lies behind: the SYSCALL's is next
    assert cursor.find("uid") is None  # behind as well; the search ran off the end
    assert cursor.find("type") is None  # ... and every later search fails
    cursor.first_record()
    assert cursor.find("uid") == "1"
    assert cursor.interpret() == "alice"  # the record's ENRICHED value wins


def test_cursor_search_from_a_records_last_field_fails_at_once() -> None:
    event = one_event(
        "type=ANOM_ABEND msg=audit(5.000:9): pid=7 sig=11",
        "type=SYSCALL msg=audit(5.000:9): uid=0",
        "type=PROCTITLE msg=audit(5.000:9): proctitle=41",
    )
    cursor = FieldCursor(event, {})
    assert cursor.find("sig") == "11"
    assert cursor.find("uid") is None  # does not step into the next record
    assert cursor.find("sig") == "11"  # the cursor did not move


# -- line reading ------------------------------------------------------------------------------------


def test_event_stamp_is_as_lenient_as_libauparse() -> None:
    assert event_stamp("node=hv type=X msg=audit(12.345:67): a=b", 2) == ("hv", 12, 345, 67)
    # a line cut and glued to the next one: serial 0
    assert event_stamp("type=VIRT_RESOURCE msg=audit(1710001785.135:type=VIRT_RESOURCE msg=audit(1", 2) == (
        None, 1710001785, 135, 0)  # fmt: skip
    assert event_stamp("type=X msg=audit(12.1000:5): a=b", 2) is None  # milliseconds above 999
    assert event_stamp("garbage", 2) is None
    assert record_type("node=a type=VIRT_CONTROL msg=audit(1.0:1): x=y") == ("VIRT_CONTROL", 2500)
    assert type_number("UNKNOWN[1420]") == 1420
    assert type_number("NO_SUCH_TYPE") == -1


# -- the entry list ------------------------------------------------------------------------------


def _session_log() -> LogBuilder:
    log = LogBuilder()
    log.machine_id(T0, '"web"', UUID_A, "system_u:system_r:svirt_t:s0:c1,c2")
    log.resource(T0, "disk", "start", '"web"', UUID_A, '"?"', '"/img/web.img"')
    log.control(T0 + 1, "start", "booted", '"web"', UUID_A, "2201")
    return log


def test_stop_closes_the_session_and_its_resources() -> None:
    log = _session_log()
    log.control(T0 + 3600, "stop", "shutdown", '"web"', UUID_A, "0")
    log.control(T0 + 3601, "stop", "shutdown", '"web"', UUID_A, "0")  # duplicate: no entry
    entries = build_sessions(events_of(log.text()), SessionFilter())
    kinds = [entry.kind for entry in entries]
    assert kinds == [EntryKind.MACHINE_ID, EntryKind.RESOURCE, EntryKind.START, EntryKind.STOP]
    start = entries[2]
    assert (start.start, start.end, start.pid) == (T0 + 1, T0 + 3600, 2201)
    assert entries[1].end == T0 + 3600
    assert [proof.serial for proof in start.proofs] == [103, 104]


def test_stop_without_start_still_closes_resources() -> None:
    log = LogBuilder()
    log.resource(T0, "disk", "start", '"web"', UUID_A, '"?"', '"/img/web.img"')
    log.control(T0 + 10, "stop", "shutdown", '"web"', UUID_A, "0")
    entries = build_sessions(events_of(log.text()), SessionFilter())
    assert [entry.kind for entry in entries] == [EntryKind.RESOURCE]
    assert entries[0].end == T0 + 10


def test_failed_start_closes_the_previous_sessions_resources_without_labels() -> None:
    log = LogBuilder()
    log.resource(T0, "disk", "start", '"db"', UUID_B, '"?"', '"/img/db.img"')
    log.control(T0 + 1, "start", "booted", '"db"', UUID_B, "10")
    log.control(T0 + 50, "start", "booted", '"db"', UUID_B, "0", res="failed")
    entries = build_sessions(events_of(log.text()), SessionFilter())
    assert entries[0].end == T0 + 50
    assert entries[1].end == 0  # the crashed session stays open
    assert not entries[2].success


def test_anomaly_only_when_the_newest_entry_is_the_guests_open_start() -> None:
    log = _session_log()
    serial = log.next_serial()
    log.kernel("ANOM_ABEND", T0 + 5, "auid=4294967295 uid=107 pid=2201 sig=11", serial)
    serial = log.next_serial()
    log.kernel("ANOM_ABEND", T0 + 6, "auid=4294967295 uid=107 pid=2201 sig=11", serial)
    entries = build_sessions(events_of(log.text()), SessionFilter(correlate_security=True), {107: "qemu"})
    anomalies = [entry for entry in entries if entry.kind is EntryKind.ANOMALY]
    assert len(anomalies) == 1  # the second sees the first anomaly as newest entry
    assert (anomalies[0].name, anomalies[0].user, anomalies[0].pid) == ("web", "qemu", 2201)
    # without --all-events/--summary anomalies are not looked at
    assert all(entry.kind is not EntryKind.ANOMALY for entry in build_sessions(events_of(log.text()), SessionFilter()))


def test_selinux_avc_goes_to_the_newest_owner_of_the_source_level() -> None:
    log = _session_log()
    log.control(T0 + 10, "stop", "shutdown", '"web"', UUID_A, "0")
    serial = log.next_serial()
    log.kernel("AVC", T0 + 20, 'avc:  denied  { relabelto } for  pid=9 comm="c" name="n" '
               "scontext=u:r:svirt_t:s0:c1,c2 tcontext=u:object_r:t:s0:c9 tclass=file", serial)  # fmt: skip
    log.kernel("SYSCALL", T0 + 20, "arch=c000003e pid=9 uid=0", serial)
    entries = build_sessions(events_of(log.text()), SessionFilter(correlate_security=True))
    avc = entries[-1]
    assert avc.kind is EntryKind.AVC and avc.name == "web"
    assert (avc.avc_operation, avc.avc_result, avc.context) == ("relabelto", "denied", "u:object_r:t:s0:c9")
    assert [proof.serial for proof in avc.proofs] == [101, serial]


def test_apparmor_avc_counts_for_profile_and_object_owner() -> None:
    log = LogBuilder(subject="libvirtd (enforce)")
    log.machine_id(T0, '"db"', UUID_B, f"libvirt-{UUID_B}", model="apparmor")
    log.resource(T0, "disk", "start", '"web"', UUID_A, '"?"', '"/img/shared.img"')
    serial = log.next_serial()
    log.kernel("AVC", T0 + 5, f'apparmor="DENIED" operation="open" profile="libvirt-{UUID_B}" '
               'name="/img/shared.img" pid=3 comm="qemu" requested_mask="r"', serial)  # fmt: skip
    log.kernel("SYSCALL", T0 + 5, "arch=c000003e pid=3 uid=0", serial)
    entries = build_sessions(events_of(log.text()), SessionFilter(correlate_security=True))
    avcs = [entry for entry in entries if entry.kind is EntryKind.AVC]
    assert [(avc.name, avc.avc_result, avc.target) for avc in avcs] == [
        ("db", "denied", "/img/shared.img"),
        ("web", "denied", "/img/shared.img"),
    ]


def test_vm_filter_compares_the_interpreted_name() -> None:
    log = LogBuilder()
    log.control(T0, "start", "booted", hex_name("db 01"), UUID_A, "1")
    log.control(T0, "start", "booted", '"other"', UUID_B, "2")
    entries = build_sessions(events_of(log.text()), SessionFilter(vm="db 01"))
    assert [entry.name for entry in entries] == ["db 01"]


def test_seclevel_is_the_text_after_the_third_colon() -> None:
    assert seclevel_of("system_u:system_r:svirt_t:s0:c1,c2") == "s0:c1,c2"
    assert seclevel_of("a:b:c:") == ""
    assert seclevel_of("libvirt-x") is None


def test_proofs_are_capped_at_four() -> None:
    entry = Entry(EntryKind.RESOURCE, 1, "root", UUID_A, "x")
    for serial in range(6):
        entry.add_proof(EventId(None, 1, 0, serial))
    assert [proof.serial for proof in entry.proofs] == [0, 1, 2, 3]


# -- formatting ----------------------------------------------------------------------------------


def test_columns_count_bytes_and_may_cut_characters() -> None:
    assert column("überlang", (4, 3)) == "üb".encode()[:3] + b" "
    assert column(None, (3, 3)) == b"   "


def test_durations_use_c_arithmetic() -> None:
    assert duration_text(3 * 3600 + 12 * 60) == "(03:12)"
    assert duration_text(2 * 86400 + 2 * 3600 + 15 * 60) == "(2+02:15)"
    assert duration_text(-1800) == "(00:-30)"


def test_period_column() -> None:
    start = calendar.timegm((2024, 3, 11, 7, 58, 0))
    entry = Entry(EntryKind.START, start, "root", UUID_A, "web", end=start + 2 * 86400 + 7200 + 60)
    assert period_text(entry) == "Mon Mar 11 07:58 - 09:59  (2+02:01)"
    failed = Entry(EntryKind.START, start, "root", UUID_A, "web", success=False)
    assert period_text(failed) == "Mon Mar 11 07:58 - failed"
    options = RenderOptions(all_events=True, show_uuid=True, proof=True)
    entry.proofs = [EventId(None, 1, 0, 17), EventId(None, 2, 0, 18)]
    line = render_entries([entry, Entry(EntryKind.MACHINE_ID, start, "root", UUID_A, "web")], options)
    assert line == (
        b"start  web                   \t" + UUID_A.encode() + b"\troot       \t"
        b"Mon Mar 11 07:58 - 09:59  (2+02:\n    Proof:17,18\n\n"
    )
    assert render_entries([entry], RenderOptions()) == (
        b"web                   \troot       \tMon Mar 11 07:58 - 09:59  (2+02:\n"
    )


def test_summary() -> None:
    start = calendar.timegm((2024, 3, 11, 7, 58, 0))
    entries = [
        Entry(EntryKind.MACHINE_ID, start - 60, "root", UUID_A, "web"),
        Entry(EntryKind.START, start, "root", UUID_A, "web", end=start + 600),
        Entry(EntryKind.START, start, "root", UUID_A, "web", success=False),
        Entry(EntryKind.AVC, start, "root", UUID_A, "web", success=False),
    ]
    text = render_summary(summarize(entries)).decode()
    assert text.splitlines() == [
        "Range of time for report:       Mon Mar 11 07:57 - Mon Mar 11 08:08",
        "Number of guest starts:         1",
        "Number of guest stops:          0",
        "Number of resource assignments: 0",
        "Number of related AVCs:         1",
        "Number of related anomalies:    0",
        "Number of failed operations:    1",
    ]
    assert render_summary(summarize([])).startswith(b"Range of time for report:       undef - undef\n")


# -- dates and the command line ---------------------------------------------------------------------

#: Wed 2024-03-13 10:20:30 UTC.
NOW = calendar.timegm((2024, 3, 13, 10, 20, 30))
CLOCK = Clock(now=NOW, uptime=3600.4)


@pytest.mark.parametrize(
    ("bound", "date", "clock_text", "expected"),
    [
        ("start", "03/11/24", MIDNIGHT, (2024, 3, 11, 0, 0, 0)),
        ("start", "3/11/24", "8:05", (2024, 3, 11, 8, 5, 0)),
        ("start", " 3/ 1/24", MIDNIGHT, (2024, 3, 1, 0, 0, 0)),
        ("end", "02/31/24", MIDNIGHT, (2024, 3, 2, 0, 0, 0)),
        ("start", "today", MIDNIGHT, (2024, 3, 13, 0, 0, 0)),
        ("end", "today", MIDNIGHT, (2024, 3, 13, 10, 20, 30)),
        ("end", "today", "09:00", (2024, 3, 13, 9, 0, 0)),
        ("start", "yesterday", MIDNIGHT, (2024, 3, 12, 0, 0, 0)),
        ("start", "this-week", MIDNIGHT, (2024, 3, 10, 0, 0, 0)),
        ("start", "week-ago", MIDNIGHT, (2024, 3, 6, 0, 0, 0)),
        ("start", "this-month", MIDNIGHT, (2024, 3, 1, 0, 0, 0)),
        ("start", "this-year", MIDNIGHT, (2024, 1, 1, 0, 0, 0)),
        ("start", "now", MIDNIGHT, (2024, 3, 13, 10, 20, 30)),
        ("start", "recent", MIDNIGHT, (2024, 3, 13, 10, 10, 30)),
        ("start", "boot", MIDNIGHT, (2024, 3, 13, 9, 20, 30)),
        ("start", "now", "01:02:03", (2024, 3, 13, 1, 2, 3)),
    ],
)
def test_dates(bound: str, date: str, clock_text: str, expected: tuple[int, ...]) -> None:
    assert parse_bound(bound, date, clock_text, CLOCK) == calendar.timegm(expected)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("date", "clock_text", "message"),
    [
        ("13/01/24", MIDNIGHT, "Invalid start date (13/01/24). Month, Day, and Year are required."),
        ("01/01/2024", MIDNIGHT, "Error parsing start date (01/01/2024)"),
        ("01/01/03", MIDNIGHT, "Error - year is 2003"),
        ("01/01/24", "25:00", "Invalid start time (25:00). Hour, Minute, and Second are required."),
        ("01/01/24", "1:2:3", "Error parsing start time (1:2:3)"),
        ("tomorrow", MIDNIGHT, "Invalid start date (tomorrow). Month, Day, and Year are required."),
    ],
)
def test_date_errors(date: str, clock_text: str, message: str) -> None:
    assert parse_bound("start", date, clock_text, CLOCK) == DateError(message)


def test_command_line_parsing() -> None:
    options = parse_arguments(["-a", "--vm", "web", "-ts", "03/11/24", "08:00", "--proof", "--stdin"], CLOCK)
    assert (options.all_events, options.vm, options.proof, options.stdin) == (True, "web", True, True)
    assert options.start_time == calendar.timegm((2024, 3, 11, 8, 0, 0))
    assert parse_arguments(["--help", "--bogus"], CLOCK).help
    for argv, message in (
        (["x"], "Argument not expected: x"),
        (["--vm", "-a"], '"--vm" option requires an argument.'),
        (["--start"], '"--start" option requires at least one argument.'),
        (["-u", "nope"], "Invalid uuid: nope"),
        (["--nope"], 'Unknown option "--nope".'),
        (["--stdin", "-f", "x"], '"--sdtin" and "--file" options must not be specified together.'),
    ):
        with pytest.raises(UsageError, match="^" + re.escape(message) + "$"):
            parse_arguments(argv, CLOCK)


def test_fast_and_exact_header_reading_agree() -> None:
    lines = [
        "type=VIRT_CONTROL msg=audit(1710143914.824:247): pid=1 uid=0 msg='a=b'",
        "node=hv-01 type=AVC msg=audit(1710143914.824:18446744073709551615): avc:  denied",
        "type=X msg=audit(1.0:1): short stamp word",
        "type=SYSCALL msg=audit(1710143914.824:5):",
        "type=" + "LONG" * 20 + " msg=audit(1710143914.824:5): stamp beyond the window",
    ]
    for line in lines:
        record = auparse_record(line, 2)
        stamp = event_stamp(line, 2)
        if stamp is None:
            assert record is None, line
        else:
            assert record is not None and (record.node, record.sec, record.msec, record.serial) == stamp
            assert (record.type, record.type_id) == record_type(line)


def test_system_logs_are_read_oldest_first(tmp_path: Path) -> None:
    from forwarder.sessions_command import _log_files

    log = tmp_path / "audit.log"
    assert isinstance(_log_files(str(log)), OSError)
    for name in ("audit.log", "audit.log.1", "audit.log.2", "audit.log.4"):
        (tmp_path / name).write_text("")
    assert _log_files(str(log)) == [str(log) + ".2", str(log) + ".1", str(log)]
