"""The generated templates on real OpenSearch and Elasticsearch nodes.

Installs the generated policies and templates, writes the documents that ``auditfwd parse``
makes of the fixtures into a data stream, and checks the live mapping of every declared field,
the document count and searches.

The Elasticsearch node is the integ-test-zip build, which has the server's own field types,
composable templates and data streams but not the modules for ``match_only_text``,
``constant_keyword`` and ``wildcard`` nor ILM: the test finds out which of them the node has and
maps the missing types to their core fallback (:data:`forwarder.mappings.CORE_FALLBACK`).  On
OpenSearch every declared type must be there.
"""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from forwarder.ecs.fields import FIELDS, check_document
from forwarder.ecs.normalize import DEFAULT_DATASET, NormalizeOptions
from forwarder.mappings import CORE_FALLBACK, TEMPLATE_VERSION, engine_objects, index_template_name, leaf_mappings
from forwarder.offline import DeadLetters, ParseSettings, parse_files
from tests.corpus import FIXTURES
from tests.engines import EngineError, Node, live_leaves
from tests.engines import request as call

#: Namespace of the data stream of this test (other tests write to other namespaces).
NAMESPACE = "mappingtest"
DATA_STREAM = f"logs-{DEFAULT_DATASET}-{NAMESPACE}"

#: Lifecycle API that answers 200 on a node that has lifecycle management.
LIFECYCLE_PROBE = {"elasticsearch": "_ilm/status", "opensearch": "_plugins/_ism/policies"}


def _documents() -> list[dict[str, Any]]:
    """The documents ``auditfwd parse`` writes for the fixtures, with event.original."""
    output = io.BytesIO()
    options = NormalizeOptions(host_name="hv-test", include_original=True, namespace=NAMESPACE)
    names = [str(path) for path in sorted(FIXTURES.glob("*.log"))]
    parse_files(names, output, ParseSettings(normalize=options), DeadLetters(None), lambda _line: None)
    return [orjson.loads(line) for line in output.getvalue().splitlines()]


@pytest.fixture(scope="module")
def documents() -> list[dict[str, Any]]:
    docs = _documents()
    assert len(docs) >= 10
    for doc in docs:
        assert check_document(doc) == [], doc
    return docs


def _node(engine: str, request_: pytest.FixtureRequest) -> Node:
    node: Node = request_.getfixturevalue(f"{engine}_node")
    return node


def _missing_types(node: Node) -> dict[str, str]:
    """Types of :data:`CORE_FALLBACK` the node lacks -> their fallback."""
    missing: dict[str, str] = {}
    for declared in CORE_FALLBACK:
        mapping: dict[str, Any] = {"type": declared}
        if declared == "constant_keyword":
            mapping["value"] = "probe"
        name = f"auditfwd-probe-{declared.replace('_', '-')}"
        body = {"template": {"mappings": {"properties": {"probe": mapping}}}}
        answer = call(node, "PUT", f"_component_template/{name}", body, ok=(200, 400))
        if answer.get("acknowledged"):
            call(node, "DELETE", f"_component_template/{name}")
        else:
            # "No handler for type [T]" (OpenSearch), "The mapper type [T] ... does not exist" (ES).
            reason = str(answer)
            assert f"[{declared}]" in reason, answer
            assert "No handler for type" in reason or "does not exist" in reason, answer
            missing[declared] = CORE_FALLBACK[declared]
    return missing


def _has_lifecycle(node: Node) -> bool:
    try:
        call(node, "GET", LIFECYCLE_PROBE[node.engine])
    except EngineError:
        return False
    return True


@pytest.fixture(scope="module", params=["opensearch", "elasticsearch"])
def loaded(request: pytest.FixtureRequest, documents: list[dict[str, Any]]) -> dict[str, Any]:
    """A node with the templates installed and the documents indexed into the data stream."""
    engine: str = request.param
    node = _node(engine, request)
    missing = _missing_types(node)
    if engine == "opensearch":
        assert missing == {}, "OpenSearch must have every declared type"
    lifecycle = _has_lifecycle(node)
    objects = engine_objects(engine, fallbacks=missing, lifecycle=lifecycle)
    for path, body in objects.items():
        answer = call(node, "PUT", path, body)
        assert answer.get("acknowledged") or answer.get("_id") or answer.get("policy"), (path, answer)
    bulk: list[dict[str, Any]] = []
    for doc in documents:
        bulk.append({"create": {"_index": DATA_STREAM, "_id": doc["event"]["id"]}})
        bulk.append(doc)
    answer = call(node, "POST", "_bulk?refresh=true", ndjson=bulk)
    errors = [item["create"] for item in answer["items"] if item["create"].get("error")]
    assert not answer["errors"], errors[:3]
    return {"node": node, "missing": missing, "lifecycle": lifecycle}


def _search(node: Node, query: dict[str, Any]) -> set[str]:
    answer = call(node, "POST", f"{DATA_STREAM}/_search", {"query": query, "size": 10000, "_source": False})
    return {hit["_id"] for hit in answer["hits"]["hits"]}


def test_our_template_wins_for_the_data_stream(loaded: dict[str, Any]) -> None:
    node: Node = loaded["node"]
    # Simulated for a data stream of the template that does not exist yet (simulating an existing
    # one is refused by OpenSearch).
    simulated = call(node, "POST", f"_index_template/_simulate_index/logs-{DEFAULT_DATASET}-simulated")
    assert simulated["template"]["mappings"]["dynamic"] == "strict"
    assert simulated["template"]["mappings"]["_meta"]["template_version"] == TEMPLATE_VERSION
    resolved = call(node, "GET", f"_resolve/index/{DATA_STREAM}")
    assert [stream["name"] for stream in resolved["data_streams"]] == [DATA_STREAM]
    templates = call(node, "GET", f"_index_template/{index_template_name()}")["index_templates"]
    assert templates[0]["index_template"]["version"] == TEMPLATE_VERSION


def test_live_mapping_has_every_declared_type(loaded: dict[str, Any]) -> None:
    node: Node = loaded["node"]
    answer = call(node, "GET", f"{DATA_STREAM}/_mapping")
    assert len(answer) == 1
    ((backing, index),) = answer.items()
    assert backing.startswith(".ds-")
    mapping = index["mappings"]
    assert mapping["dynamic"] == "strict"
    live = live_leaves(mapping["properties"])
    expected = leaf_mappings(node.engine, fallbacks=loaded["missing"])
    assert sorted(live) == sorted(FIELDS)
    for name, declared in expected.items():
        # The engine adds defaults (wildcard's doc_values, ...); what we declared must be there.
        assert {key: live[name].get(key) for key in declared} == declared, (name, live[name])


def test_count_and_search_by_action(loaded: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    node: Node = loaded["node"]
    assert call(node, "GET", f"{DATA_STREAM}/_count")["count"] == len(documents)
    by_action: dict[str, set[str]] = {}
    for doc in documents:
        action = doc["event"].get("action")
        if action:
            by_action.setdefault(action, set()).add(doc["event"]["id"])
    assert len(by_action) >= 3
    for action, ids in by_action.items():
        assert _search(node, {"term": {"event.action": action}}) == ids, action


def test_search_inside_flattened_data(loaded: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    node: Node = loaded["node"]
    with_data = [doc for doc in documents if isinstance(doc.get("auditd", {}).get("data"), dict)]
    assert with_data
    key, value = next((key, value) for key, value in with_data[0]["auditd"]["data"].items() if isinstance(value, str))
    expected = {doc["event"]["id"] for doc in with_data if doc["auditd"]["data"].get(key) == value}
    assert _search(node, {"term": {f"auditd.data.{key}": value}}) == expected


def test_search_by_time_range(loaded: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    node: Node = loaded["node"]
    stamps = sorted({doc["@timestamp"] for doc in documents})
    middle = stamps[len(stamps) // 2]
    expected = {doc["event"]["id"] for doc in documents if doc["@timestamp"] >= middle}
    assert 0 < len(expected) < len(documents)
    assert _search(node, {"range": {"@timestamp": {"gte": middle}}}) == expected


def test_undeclared_field_is_rejected(loaded: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    node: Node = loaded["node"]
    doc = dict(documents[0])
    doc["event"] = {**doc["event"], "id": "undeclared-field-probe", "undeclared": "x"}
    answer = call(
        node,
        "POST",
        "_bulk",
        ndjson=[{"create": {"_index": DATA_STREAM, "_id": "undeclared-field-probe"}}, doc],
    )
    error = answer["items"][0]["create"]["error"]
    assert error["type"] == "strict_dynamic_mapping_exception", error


def test_values_past_the_term_limit_are_kept(loaded: dict[str, Any], documents: list[dict[str, Any]]) -> None:
    """A command line of a thousand arguments (tar of many files) is longer than the 32766 bytes
    a term or doc value may have: the document is indexed whole, found by its other fields, and
    keeps the long values in ``_source`` (OpenSearch's wildcard refused it before its
    ``ignore_above``)."""
    node: Node = loaded["node"]
    doc = next(doc for doc in documents if doc.get("process", {}).get("args"))
    # Multi-byte characters: the limit is in UTF-8 bytes, ignore_above in characters.
    args = ["tar", "czf", "/srv/backup.tgz", *(f"/var/log/libvirt/qemu/gäst-{n:04d}.log" for n in range(1200))]
    command_line = " ".join(args)
    assert len(command_line.encode()) > 40_000
    probe = "long-command-line-probe"
    doc = {**doc, "event": {**doc["event"], "id": probe}, "process": {**doc["process"], "args": args}}
    doc["process"]["command_line"] = command_line
    doc["process"]["title"] = command_line
    answer = call(node, "POST", "_bulk?refresh=true", ndjson=[{"create": {"_index": DATA_STREAM, "_id": probe}}, doc])
    assert not answer["errors"], answer["items"][0]
    assert probe in _search(node, {"term": {"event.id": probe}})
    stored = call(node, "POST", f"{DATA_STREAM}/_search", {"query": {"ids": {"values": [probe]}}})
    assert stored["hits"]["hits"][0]["_source"]["process"]["command_line"] == command_line


def test_lifecycle_policy_when_the_node_has_lifecycle_management(loaded: dict[str, Any]) -> None:
    """The policy is installed where the node has the API; where it lacks it, that is reported."""
    node: Node = loaded["node"]
    policy_path = next(path for path in engine_objects(node.engine) if "polic" in path)
    if loaded["lifecycle"]:
        assert call(node, "GET", policy_path)
    else:
        with pytest.raises(EngineError):
            call(node, "GET", policy_path)
        print(f"{node.engine}: no lifecycle management on this build; {policy_path} not installed")
