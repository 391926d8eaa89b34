"""Options of the generator and their validation."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

#: Activity kinds and their default weights: a hypervisor's day is mostly program executions and
#: watched-file access, with some network calls, logins and sudo, a steady trickle of guest
#: lifecycle work and rare denials.  A weight is per *activity*; a guest start writes ~30 records,
#: a file access ~4, a sudo ~10.
DEFAULT_MIX: Final[dict[str, float]] = {
    "execve": 30.0,
    "file": 22.0,
    "network": 12.0,
    "avc": 3.0,
    "login": 4.0,
    "sudo": 6.0,
    "service": 3.0,
    "cron": 4.0,
    "guest": 12.0,
    "admin": 4.0,
}

#: ``security`` values: the host's LSM (or plain DAC / no security driver at all).
SECURITY_MODELS: Final = ("selinux", "apparmor", "dac", "none")

#: ``libvirt_style`` values (see :mod:`forwarder.generate.libvirt`).
LIBVIRT_STYLES: Final = ("modern", "legacy", "old")


def default_mix() -> dict[str, float]:
    """A fresh copy of :data:`DEFAULT_MIX`."""
    return dict(DEFAULT_MIX)


@dataclass
class GeneratorOptions:
    """What to generate.  Same options, same bytes.

    Attributes:
        seed: seed of the generator's private ``random.Random``.
        records: approximate number of records (lines) to write; the last activities in flight
            are completed, so the count ends slightly above.
        start: epoch seconds of the first record.
        enriched: write auditd's ENRICHED format (0x1d and upper-case interpretations).
        node: add a ``node=NAME `` prefix to every line.
        security: ``selinux``, ``apparmor``, ``dac`` (no LSM, libvirt's DAC labels) or ``none``
            (no LSM, no security driver: no MACHINE_ID records).
        libvirt_style: ``modern``, ``legacy`` (0.9-5.x: ``vm-pid=-1`` after stops) or ``old``
            (0.8.x records).
        guests: number of defined libvirt domains.
        mix: weight per activity kind (keys of :data:`DEFAULT_MIX`; missing kinds weigh 0).
        interleave: let concurrent activities overlap and split some events around others, as
            the kernel's log does; ``False`` writes one activity after another.
        host_reboots: include host reboots (clean shutdowns and crashes) in longer logs.
    """

    seed: int = 0
    records: int = 10_000
    start: int = 1_710_000_000
    enriched: bool = False
    node: str | None = None
    security: str = "selinux"
    libvirt_style: str = "modern"
    guests: int = 4
    mix: dict[str, float] = field(default_factory=default_mix)
    interleave: bool = True
    host_reboots: bool = True

    def validate(self) -> None:
        """Raise ``ValueError`` naming the first invalid option."""
        if self.security not in SECURITY_MODELS:
            raise ValueError(f"security must be one of {SECURITY_MODELS}, not {self.security!r}")
        if self.libvirt_style not in LIBVIRT_STYLES:
            raise ValueError(f"libvirt_style must be one of {LIBVIRT_STYLES}, not {self.libvirt_style!r}")
        unknown = sorted(set(self.mix) - set(DEFAULT_MIX))
        if unknown:
            raise ValueError(f"unknown mix kinds {unknown}; known: {sorted(DEFAULT_MIX)}")
        if any(weight < 0 for weight in self.mix.values()) or sum(self.mix.values()) <= 0:
            raise ValueError("mix weights must be >= 0 with a positive sum")
        if self.records < 0 or self.guests < 0:
            raise ValueError("records and guests must be >= 0")
        if self.node is not None and (not self.node or any(c.isspace() for c in self.node)):
            raise ValueError("node must be a non-empty name without spaces")
