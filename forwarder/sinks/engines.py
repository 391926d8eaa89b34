"""The engine outputs in the sink registry: ``elasticsearch+https://``, ``opensearch+https://``
(and ``+http://``).

:func:`register_engine_sinks` adds them to :data:`forwarder.sinks.SINK_KINDS`; the engines'
client libraries are imported only when a sink or client is made, so a run to a file or the
other commands do not pay for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from forwarder.sinks.bulk import BulkSink, EngineClient
from forwarder.sinks.credentials import (
    ENGINE_NAMES,
    TRANSPORTS,
    CredentialsError,
    EngineSettings,
    check_target,
    engine_settings,
    parse_target,
)

#: The output schemes of the engines: ``elasticsearch+https`` ... -> (engine, transport).
ENGINE_SCHEMES: Final = {
    f"{engine}+{transport}": (engine, transport) for engine in ENGINE_NAMES for transport in TRANSPORTS
}


def is_engine_output(output: str) -> bool:
    """True when ``output`` names an engine (``elasticsearch+https://...``)."""
    return output.partition(":")[0] in ENGINE_SCHEMES


def output_settings(output: str, config: Any, environ: Mapping[str, str] | None = None) -> EngineSettings:
    """An engine output and the run's configuration -> the connection settings.

    Raises:
        CredentialsError: not an engine output, or invalid hosts or credential keys.
    """
    scheme, _, rest = output.partition(":")
    if scheme not in ENGINE_SCHEMES:
        raise CredentialsError(f"not an engine output (one of {', '.join(f'{s}://HOST' for s in ENGINE_SCHEMES)})")
    engine, transport = ENGINE_SCHEMES[scheme]
    return engine_settings(parse_target(engine, transport, rest), config, environ)


def create_client(settings: EngineSettings) -> EngineClient:
    """The engine's client for ``settings``."""
    if settings.target.engine == "elasticsearch":
        from forwarder.sinks.elasticsearch import ElasticsearchClient

        return ElasticsearchClient(settings)
    from forwarder.sinks.opensearch import OpenSearchClient

    return OpenSearchClient(settings)


def create_engine_sink(settings: EngineSettings) -> BulkSink:
    """A bulk sink for ``settings``."""
    return BulkSink(create_client(settings))


def _factory(engine: str, transport: str) -> Any:
    def create(rest: str, config: Any) -> BulkSink:
        return create_engine_sink(engine_settings(parse_target(engine, transport, rest), config))

    return create


def register_engine_sinks() -> None:
    """Register the engine schemes in the sink registry (idempotent)."""
    from forwarder.sinks import SinkKind, register_sink

    for scheme, (engine, transport) in ENGINE_SCHEMES.items():
        register_sink(
            SinkKind(
                scheme,
                f"{scheme}://HOST[:PORT][,HOST[:PORT]...]",
                check_target(engine, transport),
                _factory(engine, transport),
            )
        )
