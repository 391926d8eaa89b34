"""Outputs behind one :class:`~forwarder.sinks.base.Sink` protocol, chosen by the scheme of the
``output`` setting.

``output`` is a URL-like string: ``stdout``, ``file:PATH``, and the engines' schemes
(``elasticsearch+https://HOST:PORT``, ``opensearch+https://HOST:PORT``) once registered.  Each kind
of sink registers its scheme here with the form it expects (for configuration errors), a check of
the rest of the string, and a factory.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

from forwarder.sinks.base import DELIVERED, Document, Outcome, Result, Sink, SinkError
from forwarder.sinks.ndjson import FileSink, StdoutSink

__all__ = [
    "DELIVERED",
    "SINK_KINDS",
    "Document",
    "Outcome",
    "Result",
    "Sink",
    "SinkError",
    "SinkKind",
    "create_sink",
    "output_forms",
    "parse_output",
    "register_sink",
]

_SCHEME: Final = re.compile(r"[a-z][a-z0-9+.-]*\Z")


@dataclass(frozen=True, slots=True)
class SinkKind:
    """One kind of output.

    Attributes:
        scheme: what ``output`` starts with (before the first ``:``), e.g. ``file``.
        form: the expected form, shown in configuration errors (``file:PATH``).
        check: the rest of ``output`` (after ``scheme:``) -> an error text, or None when valid.
        create: (rest, configuration) -> the sink.  The configuration is the run's
            :class:`forwarder.config.Config`.
    """

    scheme: str
    form: str
    check: Callable[[str], str | None]
    create: Callable[[str, Any], Sink]


#: Sink kinds by scheme.
SINK_KINDS: dict[str, SinkKind] = {}


def register_sink(kind: SinkKind) -> None:
    SINK_KINDS[kind.scheme] = kind


def output_forms() -> str:
    """The accepted forms of ``output``, for error messages."""
    return ", ".join(kind.form for kind in SINK_KINDS.values())


def parse_output(text: str) -> tuple[SinkKind, str]:
    """``output`` -> its sink kind and the rest of the string.

    Raises:
        ValueError: unknown scheme or invalid rest; the message is the expected form.
    """
    scheme, _, rest = text.partition(":")
    if not _SCHEME.match(scheme) or scheme not in SINK_KINDS:
        raise ValueError(f"one of: {output_forms()}")
    kind = SINK_KINDS[scheme]
    problem = kind.check(rest)
    if problem is not None:
        raise ValueError(f"{kind.form} ({problem})")
    return kind, rest


def create_sink(text: str, config: Any) -> Sink:
    kind, rest = parse_output(text)
    return kind.create(rest, config)


def _no_rest(rest: str) -> str | None:
    return None if rest == "" else "nothing may follow 'stdout'"


def _file_path(rest: str) -> str | None:
    return None if rest.strip() else "the file path is empty"


register_sink(SinkKind("stdout", "stdout", _no_rest, lambda rest, config: StdoutSink()))
register_sink(
    SinkKind(
        "file",
        "file:PATH",
        _file_path,
        lambda rest, config: FileSink(rest, fsync=bool(getattr(config, "file_fsync", True))),
    )
)


# The engine outputs (their client libraries load only when a sink is made).
from forwarder.sinks.engines import register_engine_sinks  # noqa: E402

register_engine_sinks()
