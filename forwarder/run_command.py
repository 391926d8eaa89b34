"""`auditfwd run`: the forwarder's command (see :mod:`forwarder.pipeline`)."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from typing import Any, Final

from forwarder.config import KEYS, ConfigError, env_name, load_config, reference
from forwarder.logs import setup_logging
from forwarder.pipeline import Pipeline, StartError

log = logging.getLogger("forwarder.run")

#: Exit status for configuration and start-up errors (as usage errors).
EXIT_CONFIG: Final = 2

#: Flags and the key each sets.
_FLAG_KEYS: Final = {"input": "input", "output": "output", "state_dir": "state_dir", "start_from": "start_from"}


def add_run_parser(commands: Any) -> None:
    """Register ``run`` on the ``auditfwd`` sub-command parsers."""
    run = commands.add_parser(
        "run",
        help="forward the audit log (follows rotations, checkpoints, at-least-once delivery)",
        description="Follow the audit log across rotations and send one ECS document per event to the output. "
        "Settings come from the TOML file, then AUDITFWD_* environment variables, then these flags.",
        epilog="Keys (TOML name, environment variable, default):\n" + reference(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("--config", metavar="FILE", help=f"TOML configuration file (default: ${env_name('config')})")
    run.add_argument("--input", metavar="PATH", help="the live audit log (default /var/log/audit/audit.log)")
    run.add_argument(
        "--output",
        metavar="OUTPUT",
        help="stdout, file:PATH, elasticsearch+https://HOST[:PORT][,HOST...] or opensearch+https://... "
        "(default stdout)",
    )
    run.add_argument("--state-dir", metavar="DIR", help="checkpoint and dead letters (default /var/lib/auditfwd)")
    run.add_argument(
        "--from",
        dest="start_from",
        choices=("checkpoint", "beginning", "end"),
        help="resume from the checkpoint (default; the beginning on a first run), start at the beginning "
        "(every rotated file on disk, oldest first) or at the end (only new lines)",
    )
    run.add_argument(
        "--set",
        dest="settings",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="set any configuration key (repeatable)",
    )
    run.add_argument("--check-config", action="store_true", help="validate the configuration, print it and exit")
    run.set_defaults(handler=run_command)


def run_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    # A stop asked for while starting is kept and honoured once the pipeline runs.
    early: list[Pipeline] = []
    stop_requested: list[int] = []

    def early_stop(number: int, frame: object) -> None:
        stop_requested.append(number)
        for pipeline in early:
            pipeline.request_stop()

    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, early_stop)
    overrides: dict[str, str] = {}
    for setting in args.settings:
        key, sep, value = setting.partition("=")
        if not sep:
            parser.exit(EXIT_CONFIG, f"auditfwd: --set {setting!r}: expected KEY=VALUE\n")
        if key.strip() not in KEYS:
            parser.exit(EXIT_CONFIG, f"auditfwd: --set: {key!r} is not a configuration key\n")
        overrides[key.strip()] = value
    for attribute, key in _FLAG_KEYS.items():
        value = getattr(args, attribute)
        if value is not None:
            overrides[key] = value
    try:
        config = load_config(args.config, overrides=overrides)
    except ConfigError as exc:
        print(f"auditfwd: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.check_config:
        for key, value in config.describe().items():
            print(f"{key} = {value!r}")
        return 0
    setup_logging(config.log_format, config.log_level)
    log.info("configuration: %s", config.describe())
    try:
        pipeline = Pipeline(config)
        early.append(pipeline)
        if stop_requested:
            pipeline.request_stop()
        return asyncio.run(pipeline.run())
    except StartError as exc:
        log.error("%s", exc)
        return EXIT_CONFIG
