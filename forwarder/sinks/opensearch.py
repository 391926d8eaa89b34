"""The OpenSearch output: the ``opensearch-py`` async client behind :class:`BulkSink`.

Hosts, TLS and credentials work as for Elasticsearch (:mod:`forwarder.sinks.elasticsearch`):
each request goes to the next live host, a host that does not answer is marked dead and the
next one is tried (each at most once per request), the client's own retries on statuses are
off.  An API key (OpenSearch 3.7 and later) is sent as ``Authorization: ApiKey <token>``.
"""

from __future__ import annotations

import logging
from typing import Any

from opensearchpy import AsyncOpenSearch, ConnectionTimeout, TransportError

from forwarder.sinks.bulk import BULK_FILTER_PATH, BulkSink, RequestFailed, bulk_headers
from forwarder.sinks.credentials import EngineSettings, warn_if_insecure

log = logging.getLogger(__name__)


def client_options(settings: EngineSettings) -> dict[str, Any]:
    """Keyword arguments of :class:`AsyncOpenSearch` for ``settings`` (holds the secrets)."""
    target = settings.target
    options: dict[str, Any] = {
        "timeout": settings.request_timeout,
        # One attempt per host: a dead host fails over to the next within the request.
        "max_retries": len(target.hosts) - 1,
        "retry_on_timeout": True,
        "retry_on_status": (),
        "http_compress": False,
    }
    if target.transport == "https":
        tls = settings.tls
        options["use_ssl"] = True
        options["verify_certs"] = tls.verify
        options["ssl_show_warn"] = False
        if tls.ca_file:
            options["ca_certs"] = tls.ca_file
        if tls.client_cert:
            options["client_cert"] = tls.client_cert
            if tls.client_key:
                options["client_key"] = tls.client_key
    credentials = settings.credentials
    if credentials.api_key is not None:
        options["headers"] = {"authorization": f"ApiKey {credentials.api_key.reveal()}"}
    elif credentials.password is not None:
        options["http_auth"] = (credentials.username, credentials.password.reveal())
    return options


class OpenSearchClient:
    """:class:`~forwarder.sinks.bulk.EngineClient` of OpenSearch."""

    engine = "opensearch"

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        warn_if_insecure(settings)
        self._client = AsyncOpenSearch(settings.target.urls, **client_options(settings))

    def describe(self) -> str:
        return self.settings.describe()

    def __repr__(self) -> str:
        return f"OpenSearchClient({self.describe()})"

    async def bulk(self, payload: bytes, gzipped: bool) -> Any:
        headers = bulk_headers(gzipped)
        try:
            return await self._client.transport.perform_request(
                "POST", "/_bulk", params={"filter_path": BULK_FILTER_PATH}, body=payload, headers=headers
            )
        except TransportError as exc:
            status = exc.status_code if isinstance(exc.status_code, int) else None
            if status is None:
                raise RequestFailed(self._no_answer(exc)) from None
            raise RequestFailed(f"bulk request answered {_api_error(exc)}", status) from None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            answer = await self._client.transport.perform_request(
                method, "/" + path.lstrip("/"), body=body, headers=headers
            )
        except TransportError as exc:
            if isinstance(exc.status_code, int):
                return exc.status_code, exc.info
            raise RequestFailed(self._no_answer(exc)) from None
        return 200, answer

    async def close(self) -> None:
        await self._client.close()

    def _no_answer(self, exc: TransportError) -> str:
        if isinstance(exc, ConnectionTimeout):
            return f"no answer within {self.settings.request_timeout:g} s"
        return f"{type(exc).__name__}: {exc.error}"


def _api_error(exc: TransportError) -> str:
    info = exc.info
    if isinstance(info, dict) and isinstance(info.get("error"), dict):
        error = info["error"]
        return f"{exc.status_code} {error.get('type', 'error')}: {error.get('reason', '')}"
    return f"{exc.status_code}: {exc.error}"


def opensearch_sink(settings: EngineSettings) -> BulkSink:
    """A bulk sink into OpenSearch."""
    return BulkSink(OpenSearchClient(settings))
