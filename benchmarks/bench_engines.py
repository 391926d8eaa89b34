"""End-to-end events per second of `auditfwd run` into each local engine, as a ratio to the
NDJSON file sink in the same run.

    python -m benchmarks.bench_engines [--records 60000] [--engines elasticsearch,opensearch]
                                        [--repeat 2]   (from the repository root)

A generated hypervisor log is written once; each run is the whole pipeline (tail, parse,
assemble, normalize, batch, sink, acknowledge, checkpoint) with the default batch settings,
timed from the start until every event is acknowledged.  The file sink runs first (fsync per
batch, as by default); then each engine, into a data stream of its own with the templates
installed by `auditfwd setup`.  The best of ``--repeat`` runs is kept.

Nodes: the ones named by ``AUDITFWD_ELASTICSEARCH_URL`` / ``AUDITFWD_OPENSEARCH_URL``, or nodes
started with ``tests/engines/start.sh`` for the benchmark and stopped at its end.  Speed is not a
test: nothing here passes or fails.
"""

from __future__ import annotations

import argparse
import asyncio
import pathlib
import tempfile
import time
import uuid

from forwarder.config import load_config
from forwarder.ecs.normalize import NormalizeOptions
from forwarder.engine_commands import setup_engine
from forwarder.pipeline import Pipeline
from forwarder.sinks.engines import create_client, output_settings, register_engine_sinks
from tests.engines import ENGINES, Node, start_all, stop
from tests.run_helpers import closing_line, expected_ids, generated

#: Host name of the benchmark's documents.
HOST = "bench-host"

#: Seconds a run may take before the benchmark gives up on it.
RUN_TIMEOUT = 600.0


async def run_once(log: pathlib.Path, state: pathlib.Path, output: str, namespace: str, events: int) -> float:
    """Seconds of one pipeline run from its start until ``events`` documents are acknowledged."""
    config = load_config(
        environ={},
        overrides={
            "input": str(log),
            "output": output,
            "state_dir": str(state),
            "start_from": "beginning",
            "host_name": HOST,
            "metrics_listen": "",
            "idle_flush": "3600",
        },
    )
    pipeline = Pipeline(config, options=NormalizeOptions(host_name=HOST, namespace=namespace))
    started = time.perf_counter()
    task = asyncio.create_task(pipeline.run(install_signals=False))
    deadline = started + RUN_TIMEOUT
    while pipeline.delivery.stats.documents < events:
        if task.done() or time.perf_counter() > deadline:
            raise RuntimeError(f"{output}: {pipeline.delivery.stats.documents} of {events} documents delivered")
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - started
    pipeline.request_stop()
    await task
    return elapsed


async def prepare(node: Node) -> str:
    """Install the templates on ``node``; returns its output URL."""
    url = f"{node.engine}+{node.url}"
    client = create_client(output_settings(url, None, environ={}))
    try:
        report = await setup_engine(client)
    finally:
        await client.close()
    if not report.ok:
        raise RuntimeError("\n".join(report.render()))
    return url


async def bench(records: int, engines: list[str], repeat: int, nodes: dict[str, Node]) -> None:
    register_engine_sinks()
    with tempfile.TemporaryDirectory(prefix="auditfwd-bench-") as work:
        base = pathlib.Path(work)
        lines = generated(records, seed=3)
        lines.append(closing_line(lines))
        log = base / "audit.log"
        log.write_bytes(b"".join(lines))
        events = len(expected_ids(lines, HOST))
        print(f"{records} records, {events} events, {log.stat().st_size / 1e6:.1f} MB of log")
        outputs = {"file": f"file:{base / 'out.ndjson'}"}
        for engine in engines:
            outputs[engine] = await prepare(nodes[engine])
        rates: dict[str, float] = {}
        for name, output in outputs.items():
            best = float("inf")
            for attempt in range(repeat):
                namespace = f"bench{uuid.uuid4().hex[:8]}"
                state = base / f"state-{name}-{attempt}"
                (base / "out.ndjson").unlink(missing_ok=True)
                best = min(best, await run_once(log, state, output, namespace, events))
            rates[name] = events / best
        print(f"{'sink':<14} {'events/s':>10} {'ratio to file':>14}")
        for name, rate in rates.items():
            print(f"{name:<14} {rate:>10.0f} {rate / rates['file']:>14.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=60_000, help="records of the generated log")
    parser.add_argument("--engines", default=",".join(ENGINES), help="engines to measure (comma separated)")
    parser.add_argument("--repeat", type=int, default=2, help="runs per sink; the best is kept")
    args = parser.parse_args()
    engines = [engine for engine in args.engines.split(",") if engine]
    unknown = set(engines) - set(ENGINES)
    if unknown:
        parser.error(f"unknown engines {', '.join(sorted(unknown))}")
    nodes = start_all(engines) if engines else {}
    try:
        asyncio.run(bench(args.records, engines, args.repeat, nodes))
    finally:
        for node in nodes.values():
            stop(node)


if __name__ == "__main__":
    main()
