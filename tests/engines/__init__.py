"""Real OpenSearch and Elasticsearch nodes for the tests, and a small JSON client for them.

The nodes are started by ``tests/engines/start.sh`` (which fetches, caches and launches the
engine's integ-test-zip distribution) and stopped by ``tests/engines/stop.sh``; see those scripts
for the environment variables.  A node that is already running elsewhere can be used instead:
``AUDITFWD_OPENSEARCH_URL`` / ``AUDITFWD_ELASTICSEARCH_URL`` give its base URL, and the tests
then neither start nor stop it.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Final

ENGINES_DIR: Final = pathlib.Path(__file__).resolve().parent
ENGINES: Final = ("opensearch", "elasticsearch")

#: Seconds for one start script run: a first run downloads the distribution (about 100 MB).
START_TIMEOUT_SECONDS: Final = 900
#: Seconds for one request to a node (template and mapping updates take a cluster state round).
REQUEST_TIMEOUT_SECONDS: Final = 60


class EngineError(RuntimeError):
    """A node could not be started, or answered a request with an error status."""


@dataclass(frozen=True, slots=True)
class Node:
    """A running node.

    Attributes:
        engine: ``opensearch`` or ``elasticsearch``.
        url: base URL, ``http://127.0.0.1:PORT``.
        name: the start script's instance name (None for a node given by URL).
    """

    engine: str
    url: str
    name: str | None


def url_variable(engine: str) -> str:
    """Name of the environment variable that points the tests at an external node."""
    return f"AUDITFWD_{engine.upper()}_URL"


def start(engine: str, name: str | None = None, settings: Iterable[str] = ()) -> Node:
    """Start a node with ``start.sh`` (or take the one named by :func:`url_variable`).

    Args:
        engine: ``opensearch`` or ``elasticsearch``.
        name: instance name for the script (default ``pytest-<engine>-<pid>``: test sessions
            running at once each start their own node, and never stop another's).
        settings: extra node settings, ``key=value``.

    Raises:
        EngineError: the script failed; the message has its output (the node's log tail).
    """
    external = os.environ.get(url_variable(engine))
    if external:
        return Node(engine, external.rstrip("/"), None)
    name = name or f"pytest-{engine}-{os.getpid()}"
    command = [str(ENGINES_DIR / "start.sh"), engine, name, *(f"-E{setting}" for setting in settings)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=START_TIMEOUT_SECONDS, check=False)
    if result.returncode != 0:
        raise EngineError(f"{' '.join(command)} failed ({result.returncode}):\n{result.stderr[-8000:]}")
    return Node(engine, result.stdout.strip().splitlines()[-1], name)


def stop(node: Node) -> None:
    """Stop a node this module started (a node given by URL is left alone)."""
    if node.name is None:
        return
    subprocess.run([str(ENGINES_DIR / "stop.sh"), node.engine, node.name], timeout=120, check=False)


def start_all(engines: Iterable[str] = ENGINES) -> dict[str, Node]:
    """Start several nodes at once (their start-ups overlap); stop the started ones on failure."""
    wanted = list(engines)
    with ThreadPoolExecutor(max_workers=len(wanted)) as pool:
        futures = {engine: pool.submit(start, engine) for engine in wanted}
    nodes: dict[str, Node] = {}
    errors: list[str] = []
    for engine, future in futures.items():
        try:
            nodes[engine] = future.result()
        except (EngineError, subprocess.TimeoutExpired) as exc:
            errors.append(str(exc))
    if errors:
        for node in nodes.values():
            stop(node)
        raise EngineError("\n\n".join(errors))
    return nodes


def request(
    node: Node,
    method: str,
    path: str,
    body: Any = None,
    *,
    ndjson: Sequence[Mapping[str, Any]] | None = None,
    ok: Iterable[int] = (200, 201),
) -> Any:
    """One JSON request to a node.

    Args:
        node: the node.
        method: HTTP method.
        path: path and query, without the leading slash.
        body: JSON body (None for none).
        ndjson: lines of an NDJSON body (``_bulk``) instead of ``body``.
        ok: statuses returned as results; others raise.

    Returns:
        The decoded JSON answer (None when empty).

    Raises:
        EngineError: a status not in ``ok``; the message has the answer.
    """
    data: bytes | None = None
    headers = {"Accept": "application/json"}
    if ndjson is not None:
        data = b"".join(json.dumps(line).encode() + b"\n" for line in ndjson)
        headers["Content-Type"] = "application/x-ndjson"
    elif body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    req = urllib.request.Request(f"{node.url}/{path}", data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            status, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    if status not in set(ok):
        raise EngineError(f"{method} {path} -> {status}: {raw[:2000].decode(errors='replace')}")
    return json.loads(raw) if raw else None


def live_leaves(properties: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    """A live mapping's ``properties`` tree as dotted field name -> leaf mapping."""
    leaves: dict[str, dict[str, Any]] = {}
    for key, value in properties.items():
        if "properties" in value:
            leaves.update(live_leaves(value["properties"], f"{prefix}{key}."))
        else:
            leaves[prefix + key] = value
    return leaves
