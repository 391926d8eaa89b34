"""pytest fixtures of the real nodes: started once per session, stopped at its end.

Made available to every test module by ``tests/conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.engines import Node, start_all, stop


@pytest.fixture(scope="session")
def engine_nodes() -> Iterator[dict[str, Node]]:
    """Both nodes, ``{"opensearch": Node, "elasticsearch": Node}``, started in parallel."""
    nodes = start_all()
    try:
        yield nodes
    finally:
        for node in nodes.values():
            stop(node)


@pytest.fixture(scope="session")
def opensearch_node(engine_nodes: dict[str, Node]) -> Node:
    """The OpenSearch node."""
    return engine_nodes["opensearch"]


@pytest.fixture(scope="session")
def elasticsearch_node(engine_nodes: dict[str, Node]) -> Node:
    """The Elasticsearch node."""
    return engine_nodes["elasticsearch"]
