"""Batching by count, bytes and age, over a bounded queue (shared by every sink).

The queue is the only buffer between the reading side and the sink: when it is full, ``put``
waits, the reader stops reading, and the log on disk holds the backlog.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Final, Generic, TypeVar

#: Documents per batch.  Elasticsearch's guidance for bulk requests is a few thousand documents or
#: 5-15 MiB; audit documents are about 1-2 KiB, so 1000 documents stay near 1-2 MiB.
DEFAULT_BATCH_DOCUMENTS: Final = 1000

#: Bytes per batch: the low end of the engines' recommended bulk size (5 MiB).
DEFAULT_BATCH_BYTES: Final = 5 << 20

#: Seconds the first document of a batch waits for company.  One second is Filebeat's and
#: Vector's default flush delay.
DEFAULT_BATCH_AGE: Final = 1.0

#: Documents queued between the reader and the sink: ten full batches, a few MiB of memory.
DEFAULT_QUEUE_DOCUMENTS: Final = 10_000

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """A batch is handed out when it reaches any of these.

    Attributes:
        max_documents: documents per batch.
        max_bytes: summed document sizes per batch (one larger document still goes alone).
        max_age: seconds after the batch's first document arrived.
    """

    max_documents: int = DEFAULT_BATCH_DOCUMENTS
    max_bytes: int = DEFAULT_BATCH_BYTES
    max_age: float = DEFAULT_BATCH_AGE


class Batcher(Generic[T]):
    """A bounded queue of sized items, read as batches.

    Args:
        limits: when a batch is complete.
        max_queued: items queued before :meth:`put` waits.
    """

    def __init__(self, limits: BatchLimits, max_queued: int = DEFAULT_QUEUE_DOCUMENTS) -> None:
        self.limits = limits
        self._queue: asyncio.Queue[tuple[T, int] | None] = asyncio.Queue(max_queued)
        self._carry: tuple[T, int] | None = None
        self._closed = False

    @property
    def queued(self) -> int:
        return self._queue.qsize() + (self._carry is not None)

    async def put(self, item: T, size: int) -> None:
        """Queue one item of ``size`` bytes; waits while the queue is full."""
        await self._queue.put((item, size))

    async def close(self) -> None:
        """No more items: :meth:`next_batch` returns what is queued, then None."""
        await self._queue.put(None)

    async def next_batch(self) -> list[T] | None:
        """The next batch, or None once closed and drained."""
        if self._carry is not None:
            first: tuple[T, int] | None = self._carry
            self._carry = None
        elif self._closed:
            return None
        else:
            first = await self._queue.get()
        if first is None:
            self._closed = True
            return None
        limits = self.limits
        items = [first[0]]
        total = first[1]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limits.max_age
        queue = self._queue
        while len(items) < limits.max_documents and not self._closed:
            try:
                entry = queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    entry = await asyncio.wait_for(queue.get(), remaining)
                except TimeoutError:
                    break
            if entry is None:
                self._closed = True
                break
            if total + entry[1] > limits.max_bytes:
                self._carry = entry
                break
            items.append(entry[0])
            total += entry[1]
        return items
