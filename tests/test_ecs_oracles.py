"""Our documents against the expected outputs that came with the corpus, on the fields whose
meaning we share with them.

* go-libaudit's aucoalesce goldens (``*.yaml`` test cases -> ``*.json.golden``): event categories
  and types, action, result, user ids, process fields, file path.
* Filebeat's expected documents (``*-expected.json``, one document per record): action, outcome,
  process pid/executable/name/parent pid, user id, source ip of the record that leads our event.

Deliberate differences are declared in :data:`GOLDEN_DIFFERENCES` / :data:`BEATS_DIFFERENCES`,
each with its reason (summarized in ``docs/ecs-differences.md``); every other disagreement fails.
"""

from __future__ import annotations

import json
import pathlib
from collections.abc import Iterator
from typing import Any

import pytest

from forwarder.audit.assemble import assemble_lines
from forwarder.audit.record import Event, Record
from forwarder.ecs.normalize import NormalizeOptions, normalize
from tests.corpus import corpus_dir

OPTIONS = NormalizeOptions(host_name="oracle-host")

#: (golden file stem, test name, field) -> why we differ on purpose.
GOLDEN_DIFFERENCES: dict[tuple[str, str, str], str] = {
    ("ubuntu-16.04-linux-4.13.0", "AVC_AppArmor_unlink", "file.path"): (
        "file.* is filled whenever the event has PATH records, not only when the table's object is a "
        "file: an AppArmor denial of unlink names the file, and rules search file.path"
    ),
}

#: (expected file name, record index in the log, field) -> why we differ on purpose.
_LONE_EXECVE = (
    "a lone EXECVE record (its SYSCALL missing) has no exe=; Filebeat copies argv[0] into "
    "process.executable, but argv[0] is what the caller chose, not the executed file"
)
BEATS_DIFFERENCES: dict[tuple[str, int, str], str] = {
    (
        "beats/filebeat/module/auditd/log/test/execve-hex-arg-expected.json",
        0,
        "process.executable",
    ): _LONE_EXECVE,
    ("beats/filebeat/module/auditd/log/test/test.log-expected.json", 10, "process.executable"): _LONE_EXECVE,
    ("beats/filebeat/module/auditd/log/test/test.log-expected.json", 0, "source.ip"): (
        "MAC_IPSEC_EVENT src=/dst= name IPsec policy networks (with src_prefixlen), not a peer host; "
        "they stay in auditd.data.src/dst"
    ),
}


def _events(lines: list[str]) -> list[Event]:
    return assemble_lines(lines)


def _get(doc: dict[str, Any], dotted: str) -> Any:
    node: Any = doc
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


# go-libaudit goldens ---------------------------------------------------------------------------


def _yaml_tests(path: pathlib.Path) -> dict[str, list[str]]:
    """The ``tests:`` map of go-libaudit's testdata YAML (name -> block scalar lines).

    The files use one shape only (``  name: |`` or ``>`` then one record per line indented by
    four), so a small reader is enough and the suite needs no YAML library.
    """
    tests: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.rstrip()
        if line.startswith("  ") and not line.startswith("    ") and stripped.endswith((": |", ": >")):
            name = stripped.strip()[:-3].strip().strip("'\"")
            current = tests.setdefault(name, [])
        elif line.startswith("    ") and current is not None:
            current.append(line[4:])
        elif line.strip() and not line.startswith(" "):
            current = None
    return tests


def _golden_cases() -> Iterator[tuple[str, str, list[str], dict[str, Any]]]:
    root = corpus_dir()
    if root is None:
        return
    for golden in sorted((root / "go-libaudit" / "aucoalesce" / "testdata").glob("*.json.golden")):
        stem = golden.name[: -len(".json.golden")]
        tests = _yaml_tests(golden.with_name(stem + ".yaml"))
        for case in json.loads(golden.read_text(encoding="utf-8")):
            yield stem, case["test_name"], tests[case["test_name"]], case["event"]


def _golden_expectations(golden: dict[str, Any]) -> dict[str, Any]:
    """What the golden says about the fields we share, as our field names -> value."""
    ecs = golden.get("ecs", {})
    expected: dict[str, Any] = {
        "event.category": sorted(set(ecs.get("event", {}).get("category", []))),
        "event.type": sorted(set(ecs.get("event", {}).get("type", []))),
        "event.action": golden.get("summary", {}).get("action"),
        "auditd.result": golden.get("result"),
    }
    ids = golden.get("user", {}).get("ids", {})
    auid = ids.get("auid")
    expected["auditd.user.audit.id"] = None if auid in (None, "unset") else auid
    user = ecs.get("user", {})
    if user.get("id") == "unset":
        expected["user.id"] = None
    elif user.get("id") or user.get("name"):
        expected["user.id"] = user.get("id")
        expected["user.name"] = user.get("name")
    else:
        expected["user.id"] = ids.get("uid")
    process = golden.get("process", {})
    for ours, theirs in (
        ("process.pid", "pid"),
        ("process.parent.pid", "ppid"),
    ):
        expected[ours] = int(process[theirs]) if theirs in process else None
    for ours, theirs in (
        ("process.name", "name"),
        ("process.executable", "exe"),
        ("process.working_directory", "cwd"),
        ("process.title", "title"),
        ("process.args", "args"),
    ):
        expected[ours] = process.get(theirs)
    expected["file.path"] = golden.get("file", {}).get("path")
    return expected


GOLDEN_CASES = list(_golden_cases())


@pytest.mark.skipif(not GOLDEN_CASES, reason="the shared corpus is not available")
@pytest.mark.parametrize(
    ("stem", "name", "lines", "golden"), GOLDEN_CASES, ids=[f"{c[0]}:{c[1]}" for c in GOLDEN_CASES]
)
def test_agrees_with_go_libaudit(stem: str, name: str, lines: list[str], golden: dict[str, Any]) -> None:
    events = _events(lines)
    assert len(events) == 1
    doc = normalize(events[0], OPTIONS)
    mismatches = {}
    for field, expected in _golden_expectations(golden).items():
        ours = _get(doc, field)
        if field in ("event.category", "event.type") and ours is not None:
            ours = sorted(set(ours))
        if field in ("event.category", "event.type") and expected == []:
            expected = None
        if ours != expected and (stem, name, field) not in GOLDEN_DIFFERENCES:
            mismatches[field] = (ours, expected)
    assert not mismatches, mismatches


def test_golden_differences_are_used() -> None:
    """Every declared difference still happens (a stale entry would hide a future regression)."""
    by_case = {(stem, name): (lines, golden) for stem, name, lines, golden in GOLDEN_CASES}
    for (stem, name, field), reason in GOLDEN_DIFFERENCES.items():
        assert reason
        if not by_case:
            continue
        lines, golden = by_case[(stem, name)]
        doc = normalize(_events(lines)[0], OPTIONS)
        ours = _get(doc, field)
        if field in ("event.category", "event.type") and ours is not None:
            ours = sorted(set(ours))
        assert ours != _golden_expectations(golden)[field], (stem, name, field)


# Filebeat expected documents -------------------------------------------------------------------

#: Fields compared with Filebeat's per-record documents.
BEATS_FIELDS = (
    "event.action",
    "event.outcome",
    "process.pid",
    "process.parent.pid",
    "process.executable",
    "process.name",
    "user.id",
    "source.ip",
)


def _beats_cases() -> Iterator[tuple[str, int, dict[str, Any], dict[str, Any]]]:
    """(expected file, record index, Filebeat document, our document of the record's event)."""
    root = corpus_dir()
    if root is None:
        return
    for expected_path in sorted((root / "beats").rglob("*expected.json")):
        log_path = expected_path.with_name(expected_path.name.replace("-expected.json", ""))
        if not log_path.name.endswith(".log"):
            log_path = log_path.with_name(log_path.name + ".log")
        if not log_path.is_file():
            continue
        lines = log_path.read_text(encoding="utf-8", errors="surrogateescape").splitlines()
        docs: dict[str, tuple[Event, dict[str, Any]]] = {}
        for event in _events(lines):
            doc = normalize(event, OPTIONS)
            for record in _leading_records(event):
                docs[record.text] = (event, doc)
        name = expected_path.relative_to(root).as_posix()
        for index, expected in enumerate(json.loads(expected_path.read_text(encoding="utf-8"))):
            original = expected.get("event.original") or expected.get("event", {}).get("original")
            if isinstance(original, str) and original in docs:
                yield name, index, expected, docs[original][1]


def _leading_records(event: Event) -> list[Record]:
    """Records whose Filebeat document describes the same thing as our event document."""
    if len(event.records) == 1:
        return event.records
    return [record for record in event.records if record.type == "SYSCALL"]


def _beats_value(expected: dict[str, Any], field: str) -> Any:
    value = expected.get(field)
    if value is None:
        value = _get(expected, field)
    if field == "event.action":
        if isinstance(value, list):
            value = value[0] if value else None
        # Filebeat falls back to the lower-case record type where it has no normalization.
        if isinstance(value, str) and "-" not in value:
            return None
    if field == "event.outcome" and value not in ("success", "failure"):
        return None
    if field == "user.id" and not (isinstance(value, str) and value.isdigit()):
        return None
    if field == "process.parent.pid" and value is None:
        value = expected.get("process.ppid")
    return value


BEATS_CASES = list(_beats_cases())


@pytest.mark.skipif(not BEATS_CASES, reason="the shared corpus is not available")
@pytest.mark.parametrize(
    ("name", "index", "expected", "doc"), BEATS_CASES, ids=[f"{c[0]}#{c[1]}" for c in BEATS_CASES]
)
def test_agrees_with_filebeat(name: str, index: int, expected: dict[str, Any], doc: dict[str, Any]) -> None:
    mismatches = {}
    for field in BEATS_FIELDS:
        theirs = _beats_value(expected, field)
        if theirs is None:
            continue
        ours = _get(doc, field)
        if ours != theirs and (name, index, field) not in BEATS_DIFFERENCES:
            mismatches[field] = (ours, theirs)
    assert not mismatches, mismatches


def test_beats_differences_are_used() -> None:
    by_case = {(name, index): (expected, doc) for name, index, expected, doc in BEATS_CASES}
    for (name, index, field), reason in BEATS_DIFFERENCES.items():
        assert reason
        if not by_case:
            continue
        expected, doc = by_case[(name, index)]
        assert _get(doc, field) != _beats_value(expected, field), (name, index, field)
