"""``auditfwd sessions --index URL``: read the documents sessions need from Elasticsearch or OpenSearch.

The shell around :mod:`forwarder.virt.index_sessions`: it connects as the engine outputs of
``auditfwd run`` do (the same URL forms ``elasticsearch+https://HOST[:PORT][,HOST...]`` /
``opensearch+http://...``, the same credential and TLS keys from ``--config FILE`` or the
``AUDITFWD_OUTPUT_*`` environment variables, :mod:`forwarder.sinks.credentials`; secrets never
appear in messages), asks only for the documents sessions read, and hands them to the pure core
in ``@timestamp``, ``event.sequence`` order.

The query (:func:`search_query`):

* ``auditd.message_type`` among VIRT_CONTROL, VIRT_RESOURCE, VIRT_MACHINE_ID, and AVC and the
  anomalies when they are correlated (``--all-events``, ``--summary``, ``--format json``);
* ``--start``/``--end`` as a ``@timestamp`` range; ``--vm``/``--uuid`` as a term on libvirt's
  documents (``auditd.data.vm`` / ``auditd.data.uuid``; other documents pass).  These only leave
  out documents that the builder's own filter (applied to what comes back, as for a log) would
  drop, so the result equals local filtering; a ``--vm`` written with auvirt's ``\\ooo``
  escapes is filtered locally only;
* with ``--host-down``, the host lifecycle records of every time (a period's boot markers
  decide whether a later boot was a crash), and for each boot marker the latest event time of
  its host before it (a ``max`` aggregation over all the host's documents).

Pages of :data:`DEFAULT_PAGE_SIZE` documents follow each other with ``search_after`` on
``(@timestamp, event.sequence, event.id)`` (``event.id`` is unique per document), so any
number of documents is read with bounded memory per request.
"""

from __future__ import annotations

import asyncio
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from forwarder.ecs.normalize import DEFAULT_DATASET
from forwarder.engine_commands import error_reason
from forwarder.mappings import data_stream_pattern
from forwarder.sinks.bulk import EngineClient, RequestFailed
from forwarder.sinks.credentials import EngineSettings
from forwarder.virt.index_sessions import (
    SOURCE_FIELDS,
    HostSessions,
    IndexSessions,
    document_host,
    document_time,
    lifecycle_message_types,
    message_type,
    wanted_message_types,
)
from forwarder.virt.sessions import VIRT_CONTROL, VIRT_MACHINE_ID, VIRT_RESOURCE, SessionFilter

#: Documents per search request: large enough that a month of a hypervisor's libvirt records
#: takes a few requests, small enough that an answer stays a few megabytes.
DEFAULT_PAGE_SIZE: Final = 1000
#: Both engines refuse ``size`` above ``index.max_result_window`` (10000 by default).
MAX_PAGE_SIZE: Final = 10_000

#: The data streams ``auditfwd run`` writes (every namespace).
DEFAULT_INDEX_PATTERN: Final = data_stream_pattern(DEFAULT_DATASET)

#: The order of the documents: time, then the audit serial, then the unique id (for
#: ``search_after``).  ``unmapped_type`` keeps indices without these fields from failing the search.
SORT: Final = (
    {"@timestamp": {"order": "asc", "unmapped_type": "date"}},
    {"event.sequence": {"order": "asc", "unmapped_type": "long"}},
    {"event.id": {"order": "asc", "unmapped_type": "keyword"}},
)

#: The escape character of auvirt's display of control bytes (``\\ooo``).
_ESCAPE: Final = "\\"

_VIRT_TYPES: Final = [message_type(number) for number in (VIRT_CONTROL, VIRT_RESOURCE, VIRT_MACHINE_ID)]


class IndexFailure(Exception):
    """The index could not be read; the message names the output (never a secret) and why."""


@dataclass(frozen=True, slots=True)
class IndexRequest:
    """Where and how to read.

    Attributes:
        url: the engine, as ``run --output`` takes it.
        pattern: index pattern (data streams, indices, aliases; commas and ``*`` allowed).
        page_size: documents per search request.
        config_file: a TOML configuration with the ``output_*`` credential and TLS keys.
    """

    url: str
    pattern: str = DEFAULT_INDEX_PATTERN
    page_size: int = DEFAULT_PAGE_SIZE
    config_file: str | None = None


def _only_libvirt_documents(field: str, value: str) -> dict[str, Any]:
    """Documents other than libvirt's pass; libvirt's must carry ``value`` in ``field``."""
    return {
        "bool": {
            "should": [
                {"bool": {"must_not": {"terms": {"auditd.message_type": _VIRT_TYPES}}}},
                {"term": {field: value}},
            ],
            "minimum_should_match": 1,
        }
    }


def search_query(event_filter: SessionFilter, host_down: bool) -> dict[str, Any]:
    """The query of the documents the sessions read (see the module's documentation)."""
    wanted: list[dict[str, Any]] = [
        {"terms": {"auditd.message_type": wanted_message_types(event_filter.correlate_security)}}
    ]
    if event_filter.start_time or event_filter.end_time:
        bounds: dict[str, Any] = {"format": "epoch_millis"}
        if event_filter.start_time:
            bounds["gte"] = event_filter.start_time * 1000
        if event_filter.end_time:
            bounds["lt"] = (event_filter.end_time + 1) * 1000
        wanted.append({"range": {"@timestamp": bounds}})
    if event_filter.vm is not None and _ESCAPE not in event_filter.vm:
        wanted.append(_only_libvirt_documents("auditd.data.vm", event_filter.vm))
    if event_filter.uuid is not None:
        wanted.append(_only_libvirt_documents("auditd.data.uuid", event_filter.uuid))
    query: dict[str, Any] = {"bool": {"filter": wanted}}
    if host_down:
        lifecycle = {"terms": {"auditd.message_type": lifecycle_message_types()}}
        query = {"bool": {"should": [query, lifecycle], "minimum_should_match": 1}}
    return query


def _search_path(pattern: str) -> str:
    return urllib.parse.quote(pattern, safe="*,-_.+") + "/_search"


async def _search(client: EngineClient, pattern: str, body: dict[str, Any]) -> dict[str, Any]:
    try:
        status, answer = await client.request("POST", _search_path(pattern), body)
    except RequestFailed as exc:
        raise IndexFailure(f"{client.describe()}: {exc}") from None
    if status != 200 or not isinstance(answer, dict):
        raise IndexFailure(f"{client.describe()}: search of {pattern} answered {status} {error_reason(answer)}")
    return answer


async def pages(
    client: EngineClient, pattern: str, query: dict[str, Any], page_size: int, fields: tuple[str, ...] = SOURCE_FIELDS
) -> AsyncIterator[list[dict[str, Any]]]:
    """The documents (``_source``) matching ``query``, page by page in :data:`SORT` order.

    Raises:
        IndexFailure: a request got no answer or an error.
    """
    after: list[Any] | None = None
    while True:
        body: dict[str, Any] = {
            "size": page_size,
            "query": query,
            "sort": list(SORT),
            "_source": list(fields),
            "track_total_hits": False,
        }
        if after is not None:
            body["search_after"] = after
        answer = await _search(client, pattern, body)
        hits = answer.get("hits", {}).get("hits", [])
        if not hits:
            return
        yield [hit.get("_source") or {} for hit in hits]
        if len(hits) < page_size:
            return
        after = hits[-1].get("sort")
        if not isinstance(after, list):
            raise IndexFailure(f"{client.describe()}: the answer has no sort values to page on")


async def _latest_before(
    client: EngineClient, pattern: str, page_size: int
) -> dict[tuple[str, int, int, int], int | None]:
    """Boot marker ``(host, sec, msec, serial)`` -> the latest event second of its host before it."""
    markers: list[tuple[str, int, int, int]] = []
    query = {"terms": {"auditd.message_type": lifecycle_message_types(markers_only=True)}}
    fields = ("@timestamp", "event.sequence", "host.name")
    async for page in pages(client, pattern, query, page_size, fields):
        for doc in page:
            moment = document_time(doc)
            sequence = doc.get("event", {}).get("sequence") if isinstance(doc.get("event"), dict) else None
            if moment is not None and isinstance(sequence, int):
                markers.append((document_host(doc), moment[0], moment[1], sequence))
    latest: dict[tuple[str, int, int, int], int | None] = {}
    for host, sec, msec, serial in markers:
        before = {
            "size": 0,
            "query": {
                "bool": {
                    "filter": [
                        {"term": {"host.name": host}},
                        {"range": {"@timestamp": {"lt": sec * 1000 + msec, "format": "epoch_millis"}}},
                    ]
                }
            },
            "aggs": {"latest": {"max": {"field": "@timestamp"}}},
        }
        answer = await _search(client, pattern, before)
        value = answer.get("aggregations", {}).get("latest", {}).get("value")
        latest[(host, sec, msec, serial)] = int(value // 1000) if isinstance(value, int | float) else None
    return latest


def _settings(request: IndexRequest) -> EngineSettings:
    from forwarder.config import ConfigError, load_config
    from forwarder.sinks.credentials import CredentialsError
    from forwarder.sinks.engines import is_engine_output, output_settings

    if not is_engine_output(request.url):
        raise IndexFailure(
            f"{request.url.partition('://')[0]}: not an engine URL "
            "(elasticsearch+https://HOST[:PORT], opensearch+https://..., or +http://)"
        )
    try:
        config = load_config(request.config_file) if request.config_file else None
        return output_settings(request.url, config)
    except (ConfigError, CredentialsError) as exc:
        raise IndexFailure(f"configuration: {exc}") from None


async def _read(
    request: IndexRequest, sessions: IndexSessions, event_filter: SessionFilter, host_down: bool
) -> dict[str, HostSessions]:
    from forwarder.sinks.engines import create_client

    client = create_client(_settings(request))
    try:
        if host_down:
            sessions.latest_before = await _latest_before(client, request.pattern, request.page_size)
        query = search_query(event_filter, host_down)
        async for page in pages(client, request.pattern, query, request.page_size):
            sessions.add_all(page)
    finally:
        await client.close()
    return sessions.finish()


def read_index(
    request: IndexRequest,
    event_filter: SessionFilter,
    users: Mapping[int, str] | None = None,
    host_down: bool = False,
) -> dict[str, HostSessions]:
    """Every host's session list from the index.

    Args:
        request: the engine and index pattern.
        event_filter: the command line's filters.
        users: uid -> name for user ids without a name in the record.
        host_down: ``--host-down``.

    Raises:
        IndexFailure: the URL, the configuration or the engine failed (the message says why).
    """
    sessions = IndexSessions(event_filter, users, host_down=host_down)
    return asyncio.run(_read(request, sessions, event_filter, host_down))
