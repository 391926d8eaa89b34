"""A deterministic generator of realistic KVM/libvirt hypervisor audit logs.

For tests, examples and benchmarks: the same :class:`GeneratorOptions` always give the same
bytes, the log is produced as a stream (memory does not depend on its size), and every record
follows the formats of the kernel, auditd, PAM/sshd/sudo, systemd and libvirt
(``docs/virt-audit.md`` §1).

Example::

    from forwarder.generate import GeneratorOptions, generate_lines
    for line in generate_lines(GeneratorOptions(seed=1, records=2_000)):
        ...
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from forwarder.generate.options import DEFAULT_MIX, LIBVIRT_STYLES, SECURITY_MODELS, GeneratorOptions
from forwarder.generate.scenario import Scenario

__all__ = [
    "DEFAULT_MIX",
    "LIBVIRT_STYLES",
    "SECURITY_MODELS",
    "GeneratorOptions",
    "generate_lines",
    "write_log",
]


def generate_lines(options: GeneratorOptions) -> Iterator[bytes]:
    """Yield the log's lines, each ending in ``b"\\n"``.

    Args:
        options: what to generate; validated first.

    Returns:
        An iterator over the lines (streaming; about ``options.records`` of them).

    Raises:
        ValueError: an option is invalid (unknown security model, style or mix kind ...).
    """
    options.validate()
    return Scenario(options).lines()


def write_log(path: str | Path | None, options: GeneratorOptions) -> int:
    """Write a generated log to ``path`` (``None`` or ``"-"``: standard output).

    Returns:
        The number of records (lines) written.
    """
    count = 0
    if path is None or str(path) == "-":
        out = sys.stdout.buffer
        for line in generate_lines(options):
            out.write(line)
            count += 1
        out.flush()
        return count
    with open(path, "wb") as handle:
        for line in generate_lines(options):
            handle.write(line)
            count += 1
    return count
