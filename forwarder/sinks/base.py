"""The shape every sink has: documents in, one result per document out.

A sink receives batches of :class:`Document` (the document id and its JSON) and answers, for each
document in order, whether it is delivered (durably accepted: written and synced, or indexed),
rejected for good (it goes to the dead-letter file, it is never dropped), or to be tried again
(the engine said 429 or 5xx for it).  A sink that cannot take the batch at all raises
:class:`SinkError`; the whole batch is then tried again.  Retrying, backoff and dead letters are
the caller's (:mod:`forwarder.sinks.delivery`), so every sink stays a thin adapter.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import NamedTuple, Protocol


class Document(NamedTuple):
    """One event's document: its deterministic id and its JSON (no line end)."""

    id: str
    body: bytes


class Outcome(enum.Enum):
    DELIVERED = "delivered"
    RETRY = "retry"
    REJECTED = "rejected"


class Result(NamedTuple):
    """What became of one document; ``reason`` says why it was rejected or retried."""

    outcome: Outcome
    reason: str = ""


#: The result of a document written or indexed.
DELIVERED = Result(Outcome.DELIVERED)


class SinkError(Exception):
    """The batch could not be sent at all (connection refused, disk full ...); try it again."""


class Sink(Protocol):
    """An output.

    ``send`` returns one :class:`Result` per document, in order, and may raise
    :class:`SinkError`; ``close`` flushes and releases what the sink holds.  ``describe`` is the
    output's name for logs, without credentials.
    """

    def describe(self) -> str: ...

    async def send(self, documents: Sequence[Document]) -> Sequence[Result]: ...

    async def close(self) -> None: ...
