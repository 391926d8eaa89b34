"""The `auditfwd` command line."""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Sequence
from typing import IO

from forwarder import __version__
from forwarder.accounts import parse_id_names
from forwarder.audit.assemble import DEFAULT_END_OF_EVENT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT
from forwarder.ecs.normalize import NormalizeOptions
from forwarder.engine_commands import add_engine_parsers
from forwarder.offline import (
    DeadLetters,
    EventSelector,
    InputError,
    OutputError,
    ParseSettings,
    parse_files,
    parse_selector,
)
from forwarder.run_command import add_run_parser

#: Exit status for usage and I/O errors (argparse uses 2 for usage errors too).
EXIT_ERROR = 2
#: Exit status of ``parse --event`` when no event matched (as ``ausearch``).
EXIT_NO_MATCHES = 1


def _event_selector(text: str) -> EventSelector:
    selector = parse_selector(text)
    if selector is None:
        raise argparse.ArgumentTypeError(f"not SERIAL, SEC.MSEC:SERIAL or NODE:SEC.MSEC:SERIAL: {text!r}")
    return selector


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="auditfwd",
        description="Linux audit logs of KVM/libvirt hypervisors to Elastic Common Schema.",
    )
    parser.add_argument("--version", action="version", version=f"auditfwd {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    parse = commands.add_parser(
        "parse",
        help="normalize audit logs offline to NDJSON, one document per event",
        description="Normalize audit logs to NDJSON (one ECS document per event). "
        "'-' reads stdin; gzip files are read transparently. A summary goes to stderr.",
    )
    parse.add_argument("files", nargs="+", metavar="FILE", help="audit log files, oldest first ('-' for stdin)")
    parse.add_argument("-o", "--output", metavar="FILE", help="write NDJSON here instead of stdout")
    parse.add_argument("--dead-letter", metavar="FILE", help="append malformed lines here as NDJSON")
    parse.add_argument("--host-name", metavar="NAME", help="host.name of the documents (default: this host)")
    parse.add_argument("--original", action="store_true", help="add event.original (the raw lines)")
    parse.add_argument(
        "--no-guests", dest="guests", action="store_false", help="leave out the libvirt guest fields (libvirt.*)"
    )
    parse.add_argument("--passwd", metavar="FILE", help="host passwd snapshot for uid -> name")
    parse.add_argument("--group", metavar="FILE", help="host group snapshot for gid -> name")
    parse.add_argument(
        "--end-of-event-timeout",
        type=int,
        default=DEFAULT_END_OF_EVENT_TIMEOUT,
        metavar="SECONDS",
        help=f"log-time seconds after which an open event is complete (default {DEFAULT_END_OF_EVENT_TIMEOUT})",
    )
    parse.add_argument(
        "--max-in-flight",
        type=int,
        default=DEFAULT_MAX_IN_FLIGHT,
        metavar="N",
        help=f"open events kept before the oldest is closed early (default {DEFAULT_MAX_IN_FLIGHT})",
    )
    parse.add_argument(
        "--event",
        action="append",
        type=_event_selector,
        metavar="ID",
        help="print only the raw lines of this event (SERIAL, SEC.MSEC:SERIAL or NODE:SEC.MSEC:SERIAL, "
        "e.g. a proof id of 'sessions --format json'), like 'ausearch -a SERIAL --raw'; repeatable",
    )
    progress = parse.add_mutually_exclusive_group()
    progress.add_argument("--progress", dest="progress", action="store_true", default=None)
    progress.add_argument("--no-progress", dest="progress", action="store_false")
    parse.set_defaults(handler=_parse_command)
    add_run_parser(commands)
    add_engine_parsers(commands)
    # Listed for --help only: main() hands `sessions ...` to its own parser before argparse.
    commands.add_parser(
        "sessions",
        add_help=False,
        help="guest sessions from hypervisor logs, a drop-in auvirt 3.0.9 (its options; --help), "
        "plus --format json, --host-down and --index URL (sessions of many hypervisors from the index)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    words = list(sys.argv[1:] if argv is None else argv)
    if words[:1] == ["sessions"]:
        # auvirt's own hand-written option syntax, passed on untouched (not argparse).
        from forwarder.sessions_command import main as sessions_main

        return sessions_main(words[1:])
    parser = build_parser()
    args = parser.parse_args(words)
    try:
        status: int = args.handler(args, parser)
    except KeyboardInterrupt:
        return 130
    return status


def _read_text(path: str, parser: argparse.ArgumentParser) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            return handle.read()
    except OSError as exc:
        parser.exit(EXIT_ERROR, f"auditfwd: cannot read {path}: {exc.strerror or exc}\n")


def _parse_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.end_of_event_timeout < 0:
        parser.error("--end-of-event-timeout must be >= 0")
    if args.max_in_flight < 1:
        parser.error("--max-in-flight must be >= 1")
    users = parse_id_names(_read_text(args.passwd, parser)) if args.passwd else {}
    groups = parse_id_names(_read_text(args.group, parser)) if args.group else {}
    options = NormalizeOptions(
        host_name=args.host_name or socket.gethostname(),
        include_original=args.original,
        users=users,
        groups=groups,
    )
    progress = args.progress if args.progress is not None else sys.stderr.isatty()
    settings = ParseSettings(
        normalize=options,
        end_of_event_timeout=args.end_of_event_timeout,
        max_in_flight=args.max_in_flight,
        progress=progress,
        events=tuple(args.event or ()),
        guests=args.guests,
    )

    def report(message: str) -> None:
        print(message, file=sys.stderr)

    output: IO[bytes] | None = None
    dead: IO[bytes] | None = None
    try:
        output = open(args.output, "wb") if args.output else sys.stdout.buffer  # noqa: SIM115
        dead = open(args.dead_letter, "ab") if args.dead_letter else None  # noqa: SIM115
        summary = parse_files(args.files, output, settings, DeadLetters(dead), report)
        output.flush()
    except InputError as exc:
        report(f"auditfwd: {exc}")
        return EXIT_ERROR
    except OutputError as exc:
        if isinstance(exc.__cause__, BrokenPipeError):
            # The reader went away (`| head`): not an error of ours.  Point stdout at /dev/null
            # so that the interpreter's final flush does not complain either.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        report(f"auditfwd: cannot write: {exc}")
        return EXIT_ERROR
    except OSError as exc:
        report(f"auditfwd: {exc}")
        return EXIT_ERROR
    finally:
        if output is not None and args.output:
            output.close()
        if dead is not None:
            dead.close()
    report(summary.render())
    if args.event and not summary.matched:
        report("auditfwd: <no matches>")
        return EXIT_NO_MATCHES
    return 0


if __name__ == "__main__":
    sys.exit(main())
