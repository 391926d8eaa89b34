"""The ``_bulk`` API shared by the Elasticsearch and OpenSearch sinks.

A batch becomes one gzip-compressed ``_bulk`` request of ``create`` actions, each with the
document's deterministic id, into the data stream the document names (``data_stream.type``,
``.dataset`` and ``.namespace``: ``logs-auditd_manager.auditd-default``).  ``create`` never
overwrites: a document sent twice (after a timeout, a restart, a retry) is refused with 409
the second time, and that answer means it is already there.

Each item's answer decides (see :func:`item_result`):

* 2xx, or 409 ``version_conflict_engine_exception`` -> delivered;
* 400 (mapping and parse errors, an invalid value) -> rejected with the engine's reason: the
  caller writes the document to the dead-letter file and goes on;
* anything else (429 and ``*_rejected_execution_exception`` when the write queue is full, 5xx,
  unavailable shards, blocks, and 401/403/404, which an operator fixes) -> retry.

A request that gets no per-item answer (connection refused, timeout, 429 or 5xx for the whole
request) raises :class:`RequestFailed`, a :class:`~forwarder.sinks.base.SinkError`: the caller
sends the batch again after a backoff.  A request too large for the engine (413) is split in
halves until it fits.

The engine-specific part (client, TLS, credentials, failover between hosts) is an
:class:`EngineClient`, one per engine module.
"""

from __future__ import annotations

import asyncio
import re
import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final, Protocol

import orjson

from forwarder.ecs.normalize import DEFAULT_DATASET, DEFAULT_NAMESPACE
from forwarder.sinks.base import DELIVERED, Document, Outcome, Result, SinkError

#: Uncompressed bytes of one request at most.  Both engines refuse request bodies above
#: ``http.max_content_length`` (100mb by default, counted after decompression) with 413; half
#: of it leaves room for the action lines and for clusters configured lower.  Larger batches are
#: sent as several requests; a 413 splits a request further.
MAX_REQUEST_BYTES: Final = 50 << 20

#: zlib level of the request bodies.  Measured on normalized audit documents: level 1 compresses
#: about 9.5:1 at ~190 MB/s, level 9 (the clients' own gzip) 13:1 at ~22 MB/s: level 1 saves
#: nearly all the bytes for a tenth of the CPU.
GZIP_LEVEL: Final = 1

#: Bodies above this size are compressed in a worker thread (zlib releases the GIL) so the event
#: loop keeps reading; below it compressing takes under a millisecond and a thread hop costs more.
COMPRESS_IN_THREAD_BYTES: Final = 256 << 10

#: ``filter_path`` of the bulk answer: the per-item status and error, not the echo of every id,
#: index, version and shard count (a tenth of the answer to decode).
BULK_FILTER_PATH: Final = "errors,items.*.status,items.*.error"

#: The data stream of documents that do not name one.
DEFAULT_DATA_STREAM: Final = f"logs-{DEFAULT_DATASET}-{DEFAULT_NAMESPACE}"

#: Error types of items that say the engine is busy or not ready, whatever their status.
RETRY_ERROR_TYPES: Final = frozenset(
    {
        "es_rejected_execution_exception",
        "opensearch_rejected_execution_exception",
        "rejected_execution_exception",
        "circuit_breaking_exception",
        "unavailable_shards_exception",
        "cluster_block_exception",
        "no_shard_available_action_exception",
        "node_closed_exception",
        "process_cluster_event_timeout_exception",
        "timeout_exception",
    }
)

#: The error of a ``create`` whose id is already indexed.
ALREADY_INDEXED_ERROR: Final = "version_conflict_engine_exception"

#: Item statuses that mean the document itself is wrong: sending it again cannot help.
REJECTED_STATUSES: Final = frozenset({400})

#: Request status of a body larger than the engine accepts.
TOO_LARGE_STATUS: Final = 413

#: ``caused_by`` levels quoted in a rejection reason.
REASON_DEPTH: Final = 3

# orjson writes ``data_stream`` as normalize builds it: type, dataset, namespace.
_DATA_STREAM: Final = re.compile(rb'"data_stream":\{"type":"([^"\\]+)","dataset":"([^"\\]+)","namespace":"([^"\\]+)"\}')


class RequestFailed(SinkError):
    """A request got no usable answer.

    Attributes:
        status: the HTTP status, or None when no answer came (connection, timeout).
    """

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class EngineClient(Protocol):
    """One engine's HTTP client, with its hosts, TLS and credentials.

    ``bulk`` and ``request`` raise :class:`RequestFailed` when no answer comes; ``bulk`` also for
    an error status of the whole request.  Messages never contain credentials.
    """

    engine: str

    def describe(self) -> str: ...

    async def bulk(self, payload: bytes, gzipped: bool) -> Any:
        """POST ``_bulk?filter_path=...`` -> the decoded answer."""
        ...

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        """Any JSON request -> (status, decoded answer), whatever the status."""
        ...

    async def close(self) -> None: ...


@dataclass(slots=True)
class BulkStats:
    """What the sink saw, item by item (the delivery loop counts batches and retries)."""

    requests: int = 0
    #: Requests split because the engine found them too large.
    splits: int = 0
    indexed: int = 0
    #: Items answered 409: already indexed by an earlier attempt.
    already_indexed: int = 0
    retry_items: int = 0
    rejected: int = 0


#: Media type of ``_bulk`` request bodies.
NDJSON: Final = "application/x-ndjson"


def bulk_headers(gzipped: bool) -> dict[str, str]:
    """Headers of a ``_bulk`` request (its body gzip-compressed or not)."""
    headers = {"content-type": NDJSON, "accept": "application/json"}
    if gzipped:
        headers["content-encoding"] = "gzip"
    return headers


def data_stream_of(body: bytes) -> str:
    """The data stream a document names: ``<type>-<dataset>-<namespace>``.

    Reads the compact JSON the pipeline writes; other layouts are decoded.  A document without
    a complete ``data_stream`` goes to :data:`DEFAULT_DATA_STREAM`.
    """
    match = _DATA_STREAM.search(body)
    if match is not None:
        return b"-".join(match.groups()).decode()
    try:
        stream = orjson.loads(body).get("data_stream")
    except (orjson.JSONDecodeError, AttributeError):
        return DEFAULT_DATA_STREAM
    if isinstance(stream, dict):
        parts = [stream.get("type"), stream.get("dataset"), stream.get("namespace")]
        if all(isinstance(part, str) and part for part in parts):
            return "-".join(parts)  # type: ignore[arg-type]
    return DEFAULT_DATA_STREAM


def bulk_body(documents: Sequence[Document]) -> bytes:
    """The NDJSON body of ``create`` actions for ``documents`` (with the final newline)."""
    prefixes: dict[bytes, bytes] = {}
    parts: list[bytes] = []
    append = parts.append
    search = _DATA_STREAM.search
    dumps = orjson.dumps
    for document in documents:
        body = document.body
        match = search(body)
        key = match.group(0) if match is not None else b""
        prefix = prefixes.get(key)
        if prefix is None:
            index = b"-".join(match.groups()).decode() if match is not None else data_stream_of(body)
            prefix = b'{"create":{"_index":' + dumps(index) + b',"_id":'
            if match is not None:
                prefixes[key] = prefix
        append(prefix)
        append(dumps(document.id))
        append(b"}}\n")
        append(body)
        append(b"\n")
    return b"".join(parts)


def request_groups(documents: Sequence[Document], max_bytes: int = MAX_REQUEST_BYTES) -> list[Sequence[Document]]:
    """``documents`` cut into consecutive groups whose bodies stay under ``max_bytes``
    (a single larger document is a group of its own)."""
    groups: list[Sequence[Document]] = []
    start = 0
    size = 0
    for position, document in enumerate(documents):
        # The action line is about a hundred bytes.
        length = len(document.body) + 128
        if size + length > max_bytes and position > start:
            groups.append(documents[start:position])
            start, size = position, 0
        size += length
    if start < len(documents):
        groups.append(documents[start:])
    return groups


def gzip_bytes(data: bytes, level: int = GZIP_LEVEL) -> bytes:
    """``data`` as one gzip member."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()


def error_reason(status: int, error: Any) -> str:
    """The engine's reason of a failed item: ``400 type: reason (caused by type: reason)``."""
    if not isinstance(error, dict):
        return f"{status} {error}"
    text = f"{status} {error.get('type', 'error')}: {error.get('reason', '')}"
    cause = error.get("caused_by")
    depth = 0
    while isinstance(cause, dict) and depth < REASON_DEPTH:
        text += f" (caused by {cause.get('type', 'error')}: {cause.get('reason', '')})"
        cause = cause.get("caused_by")
        depth += 1
    return text


def item_result(item: Any) -> Result:
    """One item of a bulk answer (``{"create": {"status": ..., "error": ...}}``) -> its result."""
    if not isinstance(item, dict) or not item:
        return Result(Outcome.RETRY, f"unexpected bulk item {item!r}")
    answer = item.get("create")
    if answer is None:
        answer = next(iter(item.values()))
    if not isinstance(answer, dict):
        return Result(Outcome.RETRY, f"unexpected bulk item {item!r}")
    status = answer.get("status")
    if not isinstance(status, int):
        return Result(Outcome.RETRY, f"bulk item without a status: {item!r}")
    if 200 <= status < 300:
        return DELIVERED
    error = answer.get("error")
    error_type = error.get("type") if isinstance(error, dict) else None
    if status == 409 and error_type == ALREADY_INDEXED_ERROR:
        return ALREADY_INDEXED
    reason = error_reason(status, error)
    if error_type in RETRY_ERROR_TYPES or status not in REJECTED_STATUSES:
        return Result(Outcome.RETRY, reason)
    return Result(Outcome.REJECTED, reason)


#: The result of an item answered 409 on ``create``: delivered (by an earlier attempt).
ALREADY_INDEXED: Final = Result(Outcome.DELIVERED, "already indexed")


def bulk_results(answer: Any, count: int) -> list[Result]:
    """The decoded answer of a bulk request of ``count`` actions -> one result per action.

    Raises:
        RequestFailed: an answer that is not a bulk answer, or with another number of items.
    """
    if not isinstance(answer, dict) or "errors" not in answer:
        raise RequestFailed(f"not a bulk answer: {str(answer)[:200]}")
    items = answer.get("items")
    if not isinstance(items, list) or len(items) != count:
        found = len(items) if isinstance(items, list) else 0
        raise RequestFailed(f"the bulk answer has {found} items for {count} documents")
    if answer["errors"] is False:
        return [DELIVERED] * count
    return [item_result(item) for item in items]


class BulkSink:
    """A :class:`~forwarder.sinks.base.Sink` over an engine's ``_bulk`` API.

    Args:
        client: the engine's client.
        max_request_bytes: uncompressed bytes of one request at most.
        gzip_level: zlib level of the request bodies (0: send them uncompressed).
    """

    def __init__(
        self,
        client: EngineClient,
        max_request_bytes: int = MAX_REQUEST_BYTES,
        gzip_level: int = GZIP_LEVEL,
    ) -> None:
        self.client = client
        self.max_request_bytes = max_request_bytes
        self.gzip_level = gzip_level
        self.stats = BulkStats()

    def describe(self) -> str:
        return self.client.describe()

    def __repr__(self) -> str:
        return f"BulkSink({self.describe()})"

    async def send(self, documents: Sequence[Document]) -> Sequence[Result]:
        results: list[Result] = []
        for group in request_groups(documents, self.max_request_bytes):
            results.extend(await self._send_group(group))
        return results

    async def close(self) -> None:
        await self.client.close()

    async def _send_group(self, documents: Sequence[Document]) -> list[Result]:
        body = bulk_body(documents)
        gzipped = self.gzip_level > 0
        if gzipped:
            if len(body) > COMPRESS_IN_THREAD_BYTES:
                payload = await asyncio.to_thread(gzip_bytes, body, self.gzip_level)
            else:
                payload = gzip_bytes(body, self.gzip_level)
        else:
            payload = body
        self.stats.requests += 1
        try:
            answer = await self.client.bulk(payload, gzipped)
        except RequestFailed as exc:
            if exc.status != TOO_LARGE_STATUS:
                raise
            if len(documents) == 1:
                self.stats.rejected += 1
                return [
                    Result(
                        Outcome.REJECTED,
                        f"{TOO_LARGE_STATUS}: the document ({len(documents[0].body)} bytes) is larger "
                        "than the engine accepts (http.max_content_length)",
                    )
                ]
            self.stats.splits += 1
            half = len(documents) // 2
            return await self._send_group(documents[:half]) + await self._send_group(documents[half:])
        results = bulk_results(answer, len(documents))
        stats = self.stats
        for result in results:
            if result is DELIVERED:
                stats.indexed += 1
            elif result is ALREADY_INDEXED:
                stats.already_indexed += 1
            elif result.outcome is Outcome.RETRY:
                stats.retry_items += 1
            else:
                stats.rejected += 1
        return results
