"""/metrics and /healthz: the exposition format, the HTTP answers, the values of a run."""

from __future__ import annotations

import asyncio
from pathlib import Path

from forwarder.metrics import CONTENT_TYPE, MetricsRegistry, MetricsServer
from forwarder.pipeline import Pipeline
from tests.run_helpers import (
    Running,
    append,
    closing_line,
    expected_ids,
    generated,
    make_config,
    read_output,
    wait_until,
)


async def http_get(port: int, target: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(f"{method} {target} HTTP/1.1\r\nHost: localhost\r\n\r\n".encode())
    await writer.drain()
    response = await reader.read()
    writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode().split("\r\n")
    headers = dict(line.split(": ", 1) for line in header_lines)
    return int(status_line.split()[1]), headers, body


def parse_exposition(text: bytes) -> dict[str, float]:
    values: dict[str, float] = {}
    for line in text.decode().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split(" ")
            values[name] = float(value)
    return values


def test_exposition_format() -> None:
    registry = MetricsRegistry()
    registry.add("x_total", "counter", "Things.", lambda: 3)
    registry.add("y_seconds", "gauge", "Age.", lambda: 1.5)

    def broken() -> float:
        raise RuntimeError("no")

    registry.add("z", "gauge", "Broken.", broken)
    assert registry.render().decode() == (
        "# HELP x_total Things.\n# TYPE x_total counter\nx_total 3\n"
        "# HELP y_seconds Age.\n# TYPE y_seconds gauge\ny_seconds 1.5\n"
        "# HELP z Broken.\n# TYPE z gauge\nz NaN\n"
    )


async def test_http_answers() -> None:
    registry = MetricsRegistry()
    registry.add("x_total", "counter", "Things.", lambda: 7)
    health = {"value": (True, "ok")}
    server = MetricsServer(registry, lambda: health["value"])
    host, port = await server.start("127.0.0.1", 0)
    try:
        status, headers, body = await http_get(port, "/metrics")
        assert (status, headers["Content-Type"]) == (200, CONTENT_TYPE)
        assert parse_exposition(body) == {"x_total": 7}
        assert (await http_get(port, "/healthz"))[::2] == (200, b"ok\n")
        health["value"] = (False, "the output has been failing for 400 s")
        assert (await http_get(port, "/healthz"))[::2] == (503, b"the output has been failing for 400 s\n")
        assert (await http_get(port, "/other"))[0] == 404
        assert (await http_get(port, "/metrics", method="POST"))[0] == 405
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\r\n\r\n")
        assert (await reader.read()).startswith(b"HTTP/1.1 400 ")
        writer.close()
    finally:
        await server.close()


async def test_values_of_a_run(tmp_path: Path) -> None:
    lines = generated(1500, seed=21)
    lines[10:10] = [b"garbage one\n", b"garbage two\n", b"\n"]
    lines.append(closing_line(lines))
    append(tmp_path / "audit.log", lines)
    expected = expected_ids(lines)
    pipeline = Pipeline(make_config(tmp_path, metrics_listen="127.0.0.1:0", batch_max_documents=100))
    running = Running(pipeline)
    await wait_until(lambda: len(read_output(tmp_path / "out.ndjson")) >= len(expected))
    await wait_until(lambda: pipeline.store.writes > 0 and pipeline.tracker.in_flight == 0)
    assert pipeline.metrics_address is not None
    _, _, body = await http_get(pipeline.metrics_address[1], "/metrics")
    values = parse_exposition(body)
    assert await running.stop() == 0
    assert values["auditfwd_lines_total"] == len(lines)
    assert values["auditfwd_records_total"] == len(lines) - 3
    assert values["auditfwd_events_total"] == len(expected)
    assert values["auditfwd_malformed_lines_total"] == 2
    assert values["auditfwd_dead_lettered_total"] == 2
    assert values["auditfwd_documents_total"] == len(expected)
    assert values["auditfwd_batches_total"] >= len(expected) / 100
    assert values["auditfwd_retries_total"] == 0
    assert values["auditfwd_assembler_forced_events_total"] == 0
    assert values["auditfwd_bytes_behind"] == 0
    assert values["auditfwd_events_in_flight"] == 0
    assert 0 <= values["auditfwd_checkpoint_age_seconds"] < 10
    assert values["auditfwd_checkpoint_writes_total"] >= 1
