"""``auditfwd sessions``: guest sessions like auvirt 3.0.9 (``docs/virt-audit.md`` §2.5).

The same options, output bytes, messages and exit codes as auvirt, whose hand-written option
parser is reproduced here (not argparse): words are read left to right, an option's argument
may not start with ``-``, ``--start``/``--end`` take an optional TIME, ``--help`` stops parsing.

Beyond auvirt (options auvirt 3.0.9 does not have; without them nothing changes):

* ``--format FORMAT`` (or ``--format=FORMAT``): ``text`` (the default, auvirt's output) or
  ``json``: one JSON document with every session, its resources, AVCs, anomalies and proof ids
  (:mod:`forwarder.virt.sessions_json`).  ``--vm``, ``--uuid``, ``--start`` and ``--end`` filter
  as in text mode; AVCs and anomalies are always correlated, so ``--all-events``,
  ``--summary``, ``--show-uuid`` and ``--proof`` change nothing in the document.
* ``--host-down``: host shutdowns and crashes end the sessions running then and add ``down``
  entries (auvirt 2.x's semantics, :mod:`forwarder.virt.host_down`); ``--summary`` then prints
  auvirt 2.x's ``Number of host shutdowns:`` line too.
* ``--index URL``: read the documents ``auditfwd run`` indexed from many hypervisors in
  Elasticsearch or OpenSearch instead of a log (``elasticsearch+https://HOST[:PORT]`` ...,
  credentials as for ``run``: ``--config FILE`` or ``AUDITFWD_OUTPUT_*``), build each host's
  sessions and join guests that migrated between hosts (:mod:`forwarder.sessions_index`,
  :mod:`forwarder.virt.index_sessions`, whose docstring describes the output: auvirt's lines
  with a host column, ``migr`` lines, a JSON document with hosts, timelines and migrations).
  ``--index-pattern PATTERN`` (default ``logs-auditd_manager.auditd-*``), ``--page-size N``
  (documents per request) and ``--config FILE`` go with it.  Not with ``--file``/``--stdin``.

The usage text of ``--help`` stays auvirt's.

The input is ``--file F``, ``--stdin`` or the system's audit logs (``log_file`` of auditd.conf
and its rotations ``.1``, ``.2`` ..., oldest first).  This module is the shell: it reads files,
the clock and the passwd database and hands plain data to the pure core
(:mod:`forwarder.virt.sessions`, :mod:`forwarder.virt.auvirt_format`,
:mod:`forwarder.virt.auvirt_dates`).
"""

from __future__ import annotations

import dataclasses
import errno
import os
import re
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import BinaryIO, Final, TextIO

from forwarder.audit.assemble import DEFAULT_END_OF_EVENT_TIMEOUT, Assembler
from forwarder.audit.record import Record
from forwarder.virt.auparse_fields import TEXT_ERRORS
from forwarder.virt.auparse_lines import auparse_record
from forwarder.virt.auvirt_dates import MIDNIGHT, Bound, Clock, DateError, parse_bound
from forwarder.virt.auvirt_format import RenderOptions, ctime_text, render_entries, render_summary, summarize
from forwarder.virt.host_down import with_shutdown_count
from forwarder.virt.index_sessions import (
    join_migrations,
    render_index_entries,
    render_index_json,
    render_index_summary,
)
from forwarder.virt.sessions import SessionBuilder, SessionFilter
from forwarder.virt.sessions_json import DetailedSessionBuilder, render_json

#: auditd's configuration, where the log file and the end-of-event timeout are set.
AUDITD_CONF: Final = "/etc/audit/auditd.conf"
#: auditd's default ``log_file``.
DEFAULT_LOG_FILE: Final = "/var/log/audit/audit.log"
#: The host's user database (uid -> name when a log carries no ENRICHED names).
PASSWD_FILE: Final = "/etc/passwd"
#: Where the kernel tells the uptime (for ``boot``).
UPTIME_FILE: Final = "/proc/uptime"

#: libauparse never closes events early; this cap is only a guard against runaway memory.
MAX_EVENTS_IN_FLIGHT: Final = 1_000_000

EXIT_OK: Final = 0
EXIT_FAILURE: Final = 1

USAGE: Final = (
    "usage: auvirt [--stdin] [--all-events] [--summary] "
    "[--start start-date [start-time]] "
    "[--end end-date [end-time]] [--file file-name] "
    "[--show-uuid] [--proof] [--debug] "
    "[--uuid uuid] [--vm vm-name]\n"
)

#: ``--format`` values: auvirt's text, or one JSON document.
FORMAT_TEXT: Final = "text"
FORMAT_JSON: Final = "json"
FORMATS: Final = (FORMAT_TEXT, FORMAT_JSON)
_FORMAT_OPTION: Final = "--format"

#: ``--index`` and the options that go with it (option -> attribute).
_INDEX_OPTIONS: Final = {"--index": "index", "--index-pattern": "index_pattern", "--config": "config"}
_PAGE_SIZE_OPTION: Final = "--page-size"

_UUID: Final = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
_READ_CHUNK: Final = 1 << 20


@dataclass(slots=True)
class SessionsOptions:
    """The parsed command line (auvirt's flags)."""

    help: bool = False
    stdin: bool = False
    summary: bool = False
    all_events: bool = False
    show_uuid: bool = False
    proof: bool = False
    debug: bool = False
    vm: str | None = None
    uuid: str | None = None
    file: str | None = None
    start_time: int = 0
    end_time: int = 0
    #: Extensions (not in auvirt): ``--format`` and ``--host-down``.
    format: str = FORMAT_TEXT
    host_down: bool = False
    #: ``--index`` and its companions.
    index: str | None = None
    index_pattern: str | None = None
    page_size: int | None = None
    config: str | None = None


class UsageError(Exception):
    """A refused command line; the message is auvirt's (without newline).

    Attributes:
        debug: whether ``--debug`` was read before the error (auvirt then still reports its
            exit code).
    """

    def __init__(self, message: str, debug: bool = False) -> None:
        super().__init__(message)
        self.debug = debug


def _argument(argv: Sequence[str], index: int, option: str, message: str) -> str:
    if index + 1 >= len(argv) or argv[index + 1].startswith("-"):
        raise UsageError(f'"{option}" option requires {message}.')
    return argv[index + 1]


def parse_arguments(argv: Sequence[str], clock: Clock) -> SessionsOptions:
    """auvirt's ``parse_args`` over the words after the command name.

    Raises:
        UsageError: with auvirt's message.
    """
    options = SessionsOptions()
    try:
        _parse_words(argv, clock, options)
    except UsageError as exc:
        exc.debug = options.debug
        raise
    return options


def _parse_words(argv: Sequence[str], clock: Clock, options: SessionsOptions) -> None:
    index = 0
    while index < len(argv):
        word = argv[index]
        if not word.startswith("-"):
            raise UsageError(f"Argument not expected: {word}")
        if word in ("--vm", "-v"):
            options.vm = _argument(argv, index, word, "an argument")
            index += 1
        elif word in ("--uuid", "-u"):
            value = _argument(argv, index, word, "an argument")
            if _UUID.fullmatch(value) is None:
                raise UsageError(f"Invalid uuid: {value}")
            options.uuid = value
            index += 1
        elif word in ("--all-events", "-a"):
            options.all_events = True
        elif word in ("--summary", "-s"):
            options.summary = True
        elif word in ("--file", "-f"):
            options.file = _argument(argv, index, word, "an argument")
            index += 1
        elif word == "--show-uuid":
            options.show_uuid = True
        elif word == "--stdin":
            options.stdin = True
        elif word == "--proof":
            options.proof = True
        elif word in ("--help", "-h"):
            options.help = True
            return
        elif word in ("--start", "-ts", "--end", "-te"):
            date = _argument(argv, index, word, "at least one argument")
            index += 1
            clock_text = MIDNIGHT
            if index + 1 < len(argv) and not argv[index + 1].startswith("-"):
                clock_text = argv[index + 1]
                index += 1
            bound: Bound = "start" if word in ("--start", "-ts") else "end"
            seconds = parse_bound(bound, date, clock_text, clock)
            if isinstance(seconds, DateError):
                raise UsageError(seconds.message)
            if bound == "start":
                options.start_time = seconds
            else:
                options.end_time = seconds
        elif word == "--debug":
            options.debug = True
        elif word == _FORMAT_OPTION or word.startswith(_FORMAT_OPTION + "="):
            if word == _FORMAT_OPTION:
                value = _argument(argv, index, word, "an argument")
                index += 1
            else:
                value = word[len(_FORMAT_OPTION) + 1 :]
            if value not in FORMATS:
                raise UsageError(f"Invalid format: {value}")
            options.format = value
        elif word == "--host-down":
            options.host_down = True
        elif word in _INDEX_OPTIONS:
            setattr(options, _INDEX_OPTIONS[word], _argument(argv, index, word, "an argument"))
            index += 1
        elif word == _PAGE_SIZE_OPTION:
            from forwarder.sessions_index import MAX_PAGE_SIZE

            value = _argument(argv, index, word, "an argument")
            if not value.isdigit() or not 0 < int(value) <= MAX_PAGE_SIZE:
                raise UsageError(f"Invalid page size: {value}")
            options.page_size = int(value)
            index += 1
        else:
            raise UsageError(f'Unknown option "{word}".')
        index += 1
    if options.stdin and options.file is not None:
        raise UsageError('"--sdtin" and "--file" options must not be specified together.')
    if options.index is not None and (options.stdin or options.file is not None):
        raise UsageError('"--index" and "--file" or "--stdin" options must not be specified together.')
    if options.index is None:
        for word, name in (*_INDEX_OPTIONS.items(), (_PAGE_SIZE_OPTION, "page_size")):
            if name != "index" and getattr(options, name) is not None:
                raise UsageError(f'"{word}" option requires "--index".')


def _system_clock() -> Clock:
    uptime: float | None
    try:
        with open(UPTIME_FILE, encoding="ascii") as handle:
            uptime = float(handle.read().split()[0])
    except (OSError, ValueError, IndexError):
        uptime = None
    return Clock(now=int(time.time()), localtime=time.localtime, mktime=time.mktime, uptime=uptime)


def _read_config(path: str) -> dict[str, str]:
    """``key = value`` lines of auditd.conf; unreadable -> empty."""
    settings: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8", errors=TEXT_ERRORS) as handle:
            for line in handle:
                key, equals, value = line.partition("=")
                if equals and not key.lstrip().startswith("#"):
                    settings[key.strip()] = value.strip()
    except OSError:
        pass
    return settings


def _passwd_names(path: str) -> dict[int, str]:
    names: dict[int, str] = {}
    try:
        with open(path, encoding="utf-8", errors=TEXT_ERRORS) as handle:
            for line in handle:
                parts = line.rstrip("\n").split(":")
                if len(parts) >= 3 and parts[2].isdigit():
                    names.setdefault(int(parts[2]), parts[0])
    except OSError:
        pass
    return names


def _readable(path: str) -> OSError | None:
    """Why ``path`` cannot be read (auparse's ``access(R_OK)``), or ``None``."""
    try:
        if not os.access(path, os.R_OK):
            os.stat(path)  # raises with the reason when it does not exist
            return OSError(errno.EACCES, os.strerror(errno.EACCES))
    except OSError as exc:
        return exc
    return None


def _log_files(log_file: str) -> list[str] | OSError:
    """The system's logs oldest first (``log_file.N`` ... ``log_file``), as libauparse finds them."""
    problem = _readable(log_file)
    if problem is not None:
        return problem
    found = [log_file]
    number = 1
    while _readable(f"{log_file}.{number}") is None:
        found.append(f"{log_file}.{number}")
        number += 1
    return found[::-1]


def _lines_of(handle: BinaryIO) -> Iterator[bytes]:
    pending = b""
    while True:
        try:
            chunk = handle.read(_READ_CHUNK)
        except OSError:  # a directory or a read error ends the input, as for libauparse
            chunk = b""
        if not chunk:
            break
        lines = (pending + chunk).split(b"\n")
        pending = lines.pop()
        yield from lines
    if pending:
        yield pending


def _file_lines(paths: Sequence[str]) -> Iterator[bytes]:
    for path in paths:
        try:
            with open(path, "rb") as handle:
                yield from _lines_of(handle)
        except IsADirectoryError:
            continue


def _records(lines: Iterator[bytes], end_of_event_timeout: int) -> Iterator[Record]:
    for line in lines:
        record = auparse_record(line.decode("utf-8", TEXT_ERRORS), end_of_event_timeout)
        if record is not None:
            yield record


def _strerror(problem: OSError) -> str:
    return os.strerror(problem.errno) if problem.errno is not None else str(problem)


def _arg_text(word: str) -> str:
    """A command-line word as this program's text (the bytes the user typed, surrogate-escaped)."""
    return os.fsencode(word).decode("utf-8", TEXT_ERRORS)


def _debug_flags(options: SessionsOptions, stderr: TextIO) -> None:
    def shown(value: str | None) -> str:
        return "(null)" if value is None else value

    def moment(seconds: int) -> str:
        return ctime_text(seconds, time.localtime)[:16] if seconds else ""

    stderr.write(
        f"help_flag='{int(options.help)}'\nstdin_flag='{int(options.stdin)}'\n"
        f"all_events_flag='{int(options.all_events)}'\nsummary_flag='{int(options.summary)}'\n"
        f"uuid='{shown(options.uuid)}'\nvm='{shown(options.vm)}'\nfile='{shown(options.file)}'\n"
        f"start_time='{moment(options.start_time)}'\nend_time='{moment(options.end_time)}'\n"
    )


def run(argv: Sequence[str], stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    """``auditfwd sessions ARGS``; returns the exit status (0 ok, 1 error, as auvirt)."""
    clock = _system_clock()
    try:
        options = parse_arguments([_arg_text(word) for word in argv], clock)
    except UsageError as exc:
        stderr.write(f"{exc}\n")
        status, debug = EXIT_FAILURE, exc.debug
    else:
        status, debug = _run(options, stdin, stdout, stderr), options.debug
    if debug:
        stdout.write(f"Exit code: {status}\n".encode("ascii"))
    stdout.flush()
    return status


def _run(options: SessionsOptions, stdin: BinaryIO, stdout: BinaryIO, stderr: TextIO) -> int:
    if options.help:
        stdout.write(USAGE.encode("ascii"))
        return EXIT_OK
    if options.debug:
        _debug_flags(options, stderr)
    if options.index is not None:
        return _run_index(options, options.index, stdout, stderr)

    config = _read_config(AUDITD_CONF)
    try:
        timeout = int(config.get("end_of_event_timeout", DEFAULT_END_OF_EVENT_TIMEOUT))
    except ValueError:
        timeout = DEFAULT_END_OF_EVENT_TIMEOUT
    lines: Iterator[bytes]
    if options.stdin:
        lines = _lines_of(stdin)
    elif options.file is not None:
        problem = _readable(options.file)
        if problem is not None:
            stderr.write(f"Error: {_strerror(problem)}\n")
            return EXIT_FAILURE
        lines = _file_lines([options.file])
    else:
        found = _log_files(config.get("log_file", DEFAULT_LOG_FILE))
        if isinstance(found, OSError):
            stderr.write(f"No log file\nError: {_strerror(found)}\n")
            return EXIT_FAILURE
        lines = _file_lines(found)

    event_filter = SessionFilter(
        start_time=options.start_time,
        end_time=options.end_time,
        vm=options.vm,
        uuid=options.uuid,
        correlate_security=options.all_events or options.summary,
    )
    users = _passwd_names(PASSWD_FILE)
    json_output = options.format == FORMAT_JSON
    extended = json_output or options.host_down
    if json_output:
        event_filter = dataclasses.replace(event_filter, correlate_security=True)
    builder = (
        DetailedSessionBuilder(event_filter, users, host_down=options.host_down)
        if extended
        else SessionBuilder(event_filter, users)
    )
    timeout = max(timeout, 0)
    assembler = Assembler(end_of_event_timeout=timeout, max_in_flight=MAX_EVENTS_IN_FLIGHT)
    for record in _records(lines, timeout):
        builder.add_all(assembler.feed(record))
    builder.add_all(assembler.flush())

    if isinstance(builder, DetailedSessionBuilder) and json_output:
        stdout.write(render_json(builder))
    elif options.summary:
        summary = render_summary(summarize(builder.entries), time.localtime)
        if isinstance(builder, DetailedSessionBuilder) and options.host_down:
            summary = with_shutdown_count(summary, len(builder.downs))
        stdout.write(summary)
    else:
        render = RenderOptions(all_events=options.all_events, show_uuid=options.show_uuid, proof=options.proof)
        stdout.write(render_entries(builder.entries, render, time.localtime))
    return EXIT_OK


def _run_index(options: SessionsOptions, url: str, stdout: BinaryIO, stderr: TextIO) -> int:
    """``--index URL``: every host's sessions from the engine, migrations joined."""
    from forwarder.sessions_index import (
        DEFAULT_INDEX_PATTERN,
        DEFAULT_PAGE_SIZE,
        IndexFailure,
        IndexRequest,
        read_index,
    )

    json_output = options.format == FORMAT_JSON
    event_filter = SessionFilter(
        start_time=options.start_time,
        end_time=options.end_time,
        vm=options.vm,
        uuid=options.uuid,
        correlate_security=options.all_events or options.summary or json_output,
    )
    request = IndexRequest(
        url,
        options.index_pattern or DEFAULT_INDEX_PATTERN,
        options.page_size or DEFAULT_PAGE_SIZE,
        options.config,
    )
    try:
        hosts = read_index(request, event_filter, _passwd_names(PASSWD_FILE), host_down=options.host_down)
    except IndexFailure as exc:
        stderr.write(f"Error: {exc}\n")
        return EXIT_FAILURE
    migrations = join_migrations(hosts)
    if json_output:
        stdout.write(render_index_json(hosts, migrations))
    elif options.summary:
        stdout.write(render_index_summary(hosts, migrations, options.host_down, time.localtime))
    else:
        render = RenderOptions(all_events=options.all_events, show_uuid=options.show_uuid, proof=options.proof)
        stdout.write(render_index_entries(hosts, migrations, render, time.localtime))
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point: ``argv`` are the words after ``sessions``."""
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        return run(words, sys.stdin.buffer, sys.stdout.buffer, sys.stderr)
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK
    except KeyboardInterrupt:
        return 130
