"""The Elasticsearch output: the ``elasticsearch`` async client behind :class:`BulkSink`.

Several hosts: the client's transport sends each request to the next live host and, when one
does not answer, marks it dead for a while and tries the next (each host at most once per
request); the delivery loop's backoff does the rest.  The client's own retries on 429 and 5xx
are off: the sink decides per item and the delivery loop waits between attempts.

TLS: certificates are verified (``output_ca_file`` or the system store) unless
``output_tls_verify`` is off; ``output_client_cert``/``output_client_key`` authenticate the
forwarder.  Credentials: basic authentication or an API key (``id:key`` or the encoded key),
sent in the Authorization header and nowhere else.
"""

from __future__ import annotations

import logging
from typing import Any, Final

from elastic_transport import ConnectionTimeout, TransportError
from elastic_transport import NdjsonSerializer as _TransportNdjsonSerializer
from elasticsearch import ApiError, AsyncElasticsearch, UnsupportedProductError

from forwarder.sinks.bulk import BULK_FILTER_PATH, NDJSON, BulkSink, RequestFailed, bulk_headers
from forwarder.sinks.credentials import EngineSettings, warn_if_insecure

log = logging.getLogger(__name__)

#: What the client's check of the server's product (the X-Elastic-Product header) means.
NOT_ELASTICSEARCH: Final = "the server is not Elasticsearch (an OpenSearch node needs an opensearch+https:// output)"


class _PreparedNdjson(_TransportNdjsonSerializer):
    """Bulk bodies arrive prepared (and gzip-compressed): sent as they are, no newline added."""

    def dumps(self, data: Any) -> bytes:
        if isinstance(data, bytes):
            return data
        return super().dumps(data)


def client_options(settings: EngineSettings) -> dict[str, Any]:
    """Keyword arguments of :class:`AsyncElasticsearch` for ``settings`` (holds the secrets)."""
    target = settings.target
    options: dict[str, Any] = {
        "request_timeout": settings.request_timeout,
        # One attempt per host: a dead host fails over to the next within the request.
        "max_retries": len(target.hosts) - 1,
        "retry_on_timeout": True,
        "retry_on_status": (),
        "http_compress": False,
        "serializers": {NDJSON: _PreparedNdjson()},
    }
    if target.transport == "https":
        tls = settings.tls
        options["verify_certs"] = tls.verify
        if tls.ca_file:
            options["ca_certs"] = tls.ca_file
        if tls.client_cert:
            options["client_cert"] = tls.client_cert
            if tls.client_key:
                options["client_key"] = tls.client_key
        if not tls.verify:
            options["ssl_show_warn"] = False
    credentials = settings.credentials
    if credentials.api_key is not None:
        key = credentials.api_key.reveal()
        identifier, colon, secret = key.partition(":")
        options["api_key"] = (identifier, secret) if colon else key
    elif credentials.password is not None:
        options["basic_auth"] = (credentials.username, credentials.password.reveal())
    return options


class ElasticsearchClient:
    """:class:`~forwarder.sinks.bulk.EngineClient` of Elasticsearch."""

    engine = "elasticsearch"

    def __init__(self, settings: EngineSettings) -> None:
        self.settings = settings
        warn_if_insecure(settings)
        self._client = AsyncElasticsearch(settings.target.urls, **client_options(settings))

    def describe(self) -> str:
        return self.settings.describe()

    def __repr__(self) -> str:
        return f"ElasticsearchClient({self.describe()})"

    async def bulk(self, payload: bytes, gzipped: bool) -> Any:
        headers = bulk_headers(gzipped)
        try:
            response = await self._client.perform_request(
                "POST", "/_bulk", params={"filter_path": BULK_FILTER_PATH}, headers=headers, body=payload
            )
        except UnsupportedProductError:
            raise RequestFailed(NOT_ELASTICSEARCH) from None
        except ApiError as exc:
            raise RequestFailed(f"bulk request answered {_api_error(exc)}", exc.meta.status) from None
        except TransportError as exc:
            raise RequestFailed(self._no_answer(exc)) from None
        return response.body

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        headers = {"accept": "application/json"}
        if body is not None:
            headers["content-type"] = "application/json"
        try:
            response = await self._client.perform_request(method, "/" + path.lstrip("/"), headers=headers, body=body)
        except UnsupportedProductError:
            raise RequestFailed(NOT_ELASTICSEARCH) from None
        except ApiError as exc:
            return exc.meta.status, exc.body
        except TransportError as exc:
            raise RequestFailed(self._no_answer(exc)) from None
        return response.meta.status, response.body

    async def close(self) -> None:
        await self._client.close()

    def _no_answer(self, exc: TransportError) -> str:
        if isinstance(exc, ConnectionTimeout):
            return f"no answer within {self.settings.request_timeout:g} s"
        return f"{type(exc).__name__}: {exc.message}"


def _api_error(exc: ApiError) -> str:
    body = exc.body
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        return f"{exc.meta.status} {error.get('type', 'error')}: {error.get('reason', '')}"
    return f"{exc.meta.status}: {exc.message}"


def elasticsearch_sink(settings: EngineSettings) -> BulkSink:
    """A bulk sink into Elasticsearch."""
    return BulkSink(ElasticsearchClient(settings))
