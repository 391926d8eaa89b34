"""Command line: ``python -m forwarder.generate --records N --seed S [options] [--output FILE]``."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from forwarder.generate import DEFAULT_MIX, LIBVIRT_STYLES, SECURITY_MODELS, GeneratorOptions, write_log


def parse_mix(text: str) -> dict[str, float]:
    """``kind=weight,kind=weight`` -> weights; kinds not named weigh 0."""
    mix: dict[str, float] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        kind, _, weight = item.partition("=")
        try:
            mix[kind.strip()] = float(weight)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(f"bad mix entry {item!r} (want kind=weight)") from exc
    return mix


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m forwarder.generate",
        description="Write a deterministic, realistic KVM/libvirt hypervisor audit log.",
    )
    parser.add_argument(
        "--records", type=int, default=10_000, help="approximate number of records (default 10000)"
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--start", type=int, default=1_710_000_000, help="epoch seconds of the first record")
    parser.add_argument("--enriched", action="store_true", help="auditd ENRICHED format")
    parser.add_argument("--node", default=None, help="add a node=NAME prefix")
    parser.add_argument("--security", choices=SECURITY_MODELS, default="selinux")
    parser.add_argument("--libvirt-style", choices=LIBVIRT_STYLES, default="modern")
    parser.add_argument("--guests", type=int, default=4, help="number of libvirt domains (default 4)")
    parser.add_argument(
        "--mix",
        type=parse_mix,
        default=None,
        help=f"activity weights kind=weight,... (kinds: {', '.join(DEFAULT_MIX)})",
    )
    parser.add_argument("--no-interleave", action="store_true", help="one activity after another")
    parser.add_argument("--no-reboots", action="store_true", help="no host reboots")
    parser.add_argument("--output", "-o", default=None, help="output file (default: standard output)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    options = GeneratorOptions(
        seed=args.seed,
        records=args.records,
        start=args.start,
        enriched=args.enriched,
        node=args.node,
        security=args.security,
        libvirt_style=args.libvirt_style,
        guests=args.guests,
        interleave=not args.no_interleave,
        host_reboots=not args.no_reboots,
    )
    if args.mix is not None:
        options.mix = args.mix
    try:
        options.validate()
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        count = write_log(args.output, options)
    except BrokenPipeError:
        return 0
    if args.output is not None:
        print(f"{count} records written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
