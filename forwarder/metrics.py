"""``/metrics`` (Prometheus text format 0.0.4) and ``/healthz``, served by asyncio's own server.

The forwarder registers each metric with a function that reads its current value, so the counters
stay plain integers in the stages' stats and nothing is computed until a scrape asks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

log = logging.getLogger(__name__)

#: Prometheus' text exposition format.
CONTENT_TYPE: Final = "text/plain; version=0.0.4; charset=utf-8"

#: Seconds a client has to send its request line and headers.
REQUEST_TIMEOUT: Final = 5.0

#: Header lines read at most (a scraper sends a handful).
MAX_HEADER_LINES: Final = 100

#: Longest request line or header line accepted.
MAX_LINE_BYTES: Final = 8192

MetricKind = Literal["counter", "gauge"]

#: ``(healthy, reason)``.
HealthCheck = Callable[[], tuple[bool, str]]


@dataclass(frozen=True, slots=True)
class Metric:
    """One metric: its name (counters end in ``_total``), kind, help text and reader."""

    name: str
    kind: MetricKind
    help: str
    read: Callable[[], float]


class MetricsRegistry:
    """Metrics in registration order."""

    def __init__(self) -> None:
        self._metrics: dict[str, Metric] = {}

    def add(self, name: str, kind: MetricKind, help: str, read: Callable[[], float]) -> None:
        if name in self._metrics:
            raise ValueError(f"metric {name} registered twice")
        self._metrics[name] = Metric(name, kind, help, read)

    def values(self) -> dict[str, float]:
        """Current value of every metric (a metric whose reader fails reads NaN)."""
        result: dict[str, float] = {}
        for metric in self._metrics.values():
            try:
                result[metric.name] = float(metric.read())
            except Exception:  # a reader must never break the scrape
                log.exception("metric %s could not be read", metric.name)
                result[metric.name] = math.nan
        return result

    def render(self) -> bytes:
        """The exposition text."""
        lines: list[str] = []
        values = self.values()
        for metric in self._metrics.values():
            lines.append(f"# HELP {metric.name} {metric.help}")
            lines.append(f"# TYPE {metric.name} {metric.kind}")
            lines.append(f"{metric.name} {_number(values[metric.name])}")
        return ("\n".join(lines) + "\n").encode("utf-8")


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


class MetricsServer:
    """Serves the registry and the health check over HTTP/1.1 (one request per connection).

    Args:
        registry: what ``/metrics`` shows.
        health: what ``/healthz`` answers: 200 ``ok`` when healthy, 503 with the reason if not.
    """

    def __init__(self, registry: MetricsRegistry, health: HealthCheck) -> None:
        self.registry = registry
        self.health = health
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen; returns the bound address (port 0 picks a free port)."""
        self._server = await asyncio.start_server(self._handle, host, port, limit=MAX_LINE_BYTES)
        address = self._server.sockets[0].getsockname()
        return str(address[0]), int(address[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            status, body, content_type = await asyncio.wait_for(self._respond(reader), REQUEST_TIMEOUT)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError, ConnectionError):
            status, body, content_type = 400, b"bad request\n", "text/plain"
        head = (
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode("ascii")
        with contextlib.suppress(ConnectionError):
            writer.write(head + body)
            await writer.drain()
        writer.close()
        with contextlib.suppress(ConnectionError):
            await writer.wait_closed()

    async def _respond(self, reader: asyncio.StreamReader) -> tuple[int, bytes, str]:
        request = (await reader.readline()).decode("latin-1").split()
        for _ in range(MAX_HEADER_LINES):
            line = await reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
        if len(request) < 2:
            return 400, b"bad request\n", "text/plain"
        method, target = request[0], request[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            return 405, b"method not allowed\n", "text/plain"
        if target == "/metrics":
            return 200, self.registry.render(), CONTENT_TYPE
        if target == "/healthz":
            healthy, reason = self.health()
            return (200, b"ok\n", "text/plain") if healthy else (503, f"{reason}\n".encode(), "text/plain")
        return 404, b"not found\n", "text/plain"


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    503: "Service Unavailable",
}
