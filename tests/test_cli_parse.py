"""`auditfwd parse`: inputs, outputs, malformed lines, summary and exit status."""

from __future__ import annotations

import gzip
import os
import pathlib
import subprocess
import sys

import orjson
import pytest

from forwarder.cli import main
from tests.corpus import FIXTURES, REPO

FORMS = FIXTURES / "hypervisor-forms.log"


def run_cli(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    """The command as a user runs it (module entry point, same as the console script)."""
    return subprocess.run(
        [sys.executable, "-m", "forwarder", *args],
        input=stdin,
        capture_output=True,
        cwd=REPO,
        check=False,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def documents(data: bytes) -> list[dict[str, object]]:
    return [orjson.loads(line) for line in data.splitlines()]


def test_one_document_per_event_with_summary(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.ndjson"
    assert main(["parse", str(FORMS), "--output", str(out), "--host-name", "hv1", "--no-progress"]) == 0
    docs = documents(out.read_bytes())
    assert len(docs) == 10
    ids = [doc["event"]["id"] for doc in docs]  # type: ignore[index]
    assert len(set(ids)) == len(ids)
    err = capsys.readouterr().err
    assert "23 lines, 20 records, 10 events, 2 malformed, 1 blank" in err
    assert f"{FORMS}:8: malformed line skipped: no msg=audit" in err
    assert f"{FORMS}:18: malformed line skipped: comment line" in err


def test_document_ids_are_deterministic(tmp_path: pathlib.Path) -> None:
    first, second = tmp_path / "a", tmp_path / "b"
    for out in (first, second):
        assert main(["parse", str(FORMS), "-o", str(out), "--host-name", "hv1", "--no-progress"]) == 0
    assert first.read_bytes() == second.read_bytes()


def test_dead_letter_file_keeps_malformed_lines(tmp_path: pathlib.Path) -> None:
    dead = tmp_path / "dead.ndjson"
    assert main(["parse", str(FORMS), "-o", str(tmp_path / "o"), "--dead-letter", str(dead), "--no-progress"]) == 0
    entries = documents(dead.read_bytes())
    assert [(e["line"], e["reason"]) for e in entries] == [
        (8, "no msg=audit(SEC.MSEC:SERIAL) header"),
        (18, "comment line"),
    ]
    assert entries[0]["text"] == "garbage that is not an audit record"
    assert entries[0]["file"] == str(FORMS)


def test_gzip_input_is_read_transparently(tmp_path: pathlib.Path) -> None:
    packed = tmp_path / "audit.log.1.gz"
    packed.write_bytes(gzip.compress(FORMS.read_bytes()))
    plain, zipped = tmp_path / "plain", tmp_path / "zipped"
    assert main(["parse", str(FORMS), "-o", str(plain), "--host-name", "h", "--no-progress"]) == 0
    assert main(["parse", str(packed), "-o", str(zipped), "--host-name", "h", "--no-progress"]) == 0
    assert plain.read_bytes() == zipped.read_bytes()


def test_stdin_and_stdout() -> None:
    done = run_cli("parse", "-", "--host-name", "h", stdin=FORMS.read_bytes())
    assert done.returncode == 0, done.stderr
    assert len(documents(done.stdout)) == 10
    assert b"-:8: malformed line skipped" in done.stderr


def test_events_spanning_two_files_join(tmp_path: pathlib.Path) -> None:
    lines = FORMS.read_bytes().splitlines(keepends=True)
    older, newer = tmp_path / "audit.log.1", tmp_path / "audit.log"
    older.write_bytes(b"".join(lines[:5]))  # event 101 is cut in the middle
    newer.write_bytes(b"".join(lines[5:]))
    split, whole = tmp_path / "split", tmp_path / "whole"
    assert main(["parse", str(older), str(newer), "-o", str(split), "--host-name", "h", "--no-progress"]) == 0
    assert main(["parse", str(FORMS), "-o", str(whole), "--host-name", "h", "--no-progress"]) == 0
    assert split.read_bytes() == whole.read_bytes()


def test_original_lines_on_request(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "o"
    assert main(["parse", str(FORMS), "-o", str(out), "--original", "--no-progress"]) == 0
    first = documents(out.read_bytes())[0]
    assert "type=DAEMON_START" in str(first["event"]["original"])  # type: ignore[index]


def test_missing_input_is_an_io_error() -> None:
    done = run_cli("parse", "/nonexistent/audit.log")
    assert done.returncode == 2
    assert b"cannot open /nonexistent/audit.log" in done.stderr


def test_usage_errors_exit_2() -> None:
    assert run_cli("parse").returncode == 2
    assert run_cli("parse", str(FORMS), "--max-in-flight", "0").returncode == 2
    assert run_cli("frobnicate").returncode == 2


def test_closed_stdout_is_not_an_error(tmp_path: pathlib.Path) -> None:
    big = tmp_path / "big.log"
    big.write_bytes(FORMS.read_bytes() * 500)
    proc = subprocess.Popen(
        [sys.executable, "-m", "forwarder", "parse", str(big)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    assert proc.wait(timeout=60) == 0


def test_guest_fields_can_be_left_out(tmp_path: pathlib.Path) -> None:
    enriched, plain = tmp_path / "enriched", tmp_path / "plain"
    assert main(["parse", str(FORMS), "-o", str(enriched), "--no-progress"]) == 0
    assert main(["parse", str(FORMS), "-o", str(plain), "--no-guests", "--no-progress"]) == 0
    assert any("libvirt" in doc for doc in documents(enriched.read_bytes()))
    assert not any("libvirt" in doc for doc in documents(plain.read_bytes()))
