"""Send a batch until every document is delivered or rejected: retries with jittered backoff.

Nothing is dropped: a document the sink cannot take yet is sent again (with the same id, so the
index holds it once), a document it refuses for good comes back as rejected and the caller puts it
in the dead-letter file.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Final

from forwarder.sinks.base import Document, Outcome, Result, Sink, SinkError

log = logging.getLogger(__name__)

#: First wait before a retry, in seconds; doubled each time up to the maximum.
DEFAULT_INITIAL_BACKOFF: Final = 0.5

#: Longest wait between two retries, in seconds: an engine back after an outage is found within it.
DEFAULT_MAX_BACKOFF: Final = 30.0


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Exponential backoff with full jitter (each wait drawn from [backoff/2, backoff]).

    Attributes:
        initial_backoff: seconds before the first retry.
        max_backoff: the cap of the waits, in seconds.
    """

    initial_backoff: float = DEFAULT_INITIAL_BACKOFF
    max_backoff: float = DEFAULT_MAX_BACKOFF

    def wait(self, attempt: int, draw: Callable[[], float] = random.random) -> float:
        """Seconds to wait before retry number ``attempt`` (1 for the first)."""
        backoff: float = min(self.max_backoff, self.initial_backoff * 2.0 ** min(attempt - 1, 30))
        return backoff * (0.5 + 0.5 * draw())


@dataclass(slots=True)
class DeliveryStats:
    batches: int = 0
    documents: int = 0
    retries: int = 0
    rejected: int = 0
    #: Monotonic time since when sending fails without a success in between (None: healthy).
    failing_since: float | None = None


class Delivery:
    """Delivers batches through one sink.

    Args:
        sink: the output.
        policy: retry waits.
        sleep: the waiting function (tests pass a fast one).
    """

    def __init__(
        self,
        sink: Sink,
        policy: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.sink = sink
        self.policy = policy or RetryPolicy()
        self.stats = DeliveryStats()
        self._sleep = sleep

    async def deliver(self, documents: Sequence[Document]) -> list[Result]:
        """Send ``documents`` until each is delivered or rejected.

        Returns:
            One final result per document (never ``RETRY``), in order.
        """
        results: list[Result | None] = [None] * len(documents)
        pending = list(range(len(documents)))
        attempt = 0
        while pending:
            try:
                answers = await self.sink.send([documents[index] for index in pending])
                if len(answers) != len(pending):
                    raise SinkError(f"the sink answered {len(answers)} results for {len(pending)} documents")
            except SinkError as exc:
                attempt += 1
                await self._retry(attempt, f"{self.sink.describe()}: {exc}")
                continue
            retry: list[int] = []
            reason = ""
            for index, answer in zip(pending, answers, strict=True):
                if answer.outcome is Outcome.RETRY:
                    retry.append(index)
                    reason = answer.reason
                else:
                    results[index] = answer
                    if answer.outcome is Outcome.REJECTED:
                        self.stats.rejected += 1
            pending = retry
            if pending:
                attempt += 1
                await self._retry(
                    attempt, f"{self.sink.describe()}: {len(pending)} document(s) to send again: {reason}"
                )
            else:
                self.stats.failing_since = None
        self.stats.batches += 1
        self.stats.documents += len(documents)
        return [result for result in results if result is not None]

    async def _retry(self, attempt: int, message: str) -> None:
        self.stats.retries += 1
        if self.stats.failing_since is None:
            self.stats.failing_since = time.monotonic()
        wait = self.policy.wait(attempt)
        log.warning("%s; retry %d in %.1f s", message, attempt, wait)
        await self._sleep(wait)
