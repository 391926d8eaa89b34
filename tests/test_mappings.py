"""The generated templates and policies: files current, every declared field mapped as declared."""

from __future__ import annotations

import fnmatch
import json
import pathlib
import subprocess
import sys
from typing import Any

import pytest

from forwarder import mappings
from forwarder.ecs.fields import FIELDS, Field
from forwarder.ecs.normalize import DEFAULT_DATASET, DEFAULT_NAMESPACE
from forwarder.mappings import (
    CORE_FALLBACK,
    INDEX_TEMPLATE_PRIORITY,
    TEMPLATE_VERSION,
    engine_objects,
    leaf_mappings,
    mappings_body,
    properties,
)
from tests.corpus import REPO

MAPPINGS_DIR = REPO / "mappings"
ENGINES = ("elasticsearch", "opensearch")
#: Priority of Elasticsearch's built-in template for ``logs-*-*``, which ours must outrank.
BUILT_IN_LOGS_PRIORITY = 100


def _tree(root: pathlib.Path) -> dict[str, str]:
    return {
        path.relative_to(root).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def _leaves(props: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    leaves: dict[str, dict[str, Any]] = {}
    for key, value in props.items():
        if "properties" in value:
            leaves.update(_leaves(value["properties"], f"{prefix}{key}."))
        else:
            leaves[prefix + key] = value
    return leaves


def test_committed_files_match_the_declaration(tmp_path: pathlib.Path) -> None:
    """Regenerating into an empty directory gives exactly the committed mappings/ files."""
    result = subprocess.run(
        [sys.executable, str(REPO / "tools" / "gen_mappings.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    generated = _tree(tmp_path)
    committed = {name: text for name, text in _tree(MAPPINGS_DIR).items() if not name.endswith(".md")}
    assert sorted(generated) == sorted(committed), "run: python3 tools/gen_mappings.py"
    for name, text in generated.items():
        assert committed[name] == text, f"{name} is stale; run: python3 tools/gen_mappings.py"


def test_generator_removes_files_of_objects_no_longer_generated(tmp_path: pathlib.Path) -> None:
    stale = tmp_path / "opensearch" / "_index_template" / "old-template.json"
    stale.parent.mkdir(parents=True)
    stale.write_text("{}\n", encoding="utf-8")
    subprocess.run([sys.executable, str(REPO / "tools" / "gen_mappings.py"), str(tmp_path)], check=True)
    assert not stale.exists()


@pytest.mark.parametrize("engine", ENGINES)
def test_order_file_lists_every_object_in_installation_order(engine: str) -> None:
    order = (MAPPINGS_DIR / engine / "ORDER").read_text(encoding="utf-8").split()
    assert order == list(engine_objects(engine))
    kinds = [path.split("/")[0] for path in order]
    # Policies before the templates that name them, component templates before the index template.
    assert kinds[-1] == "_index_template"
    assert kinds.index("_component_template") > 0
    for path in order:
        assert json.loads((MAPPINGS_DIR / engine / f"{path}.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("engine", ENGINES)
def test_every_declared_field_is_mapped_once(engine: str) -> None:
    leaves = _leaves(properties(engine))
    assert sorted(leaves) == sorted(FIELDS)
    assert leaves == leaf_mappings(engine)


@pytest.mark.parametrize(("engine", "expected"), [("elasticsearch", "flattened"), ("opensearch", "flat_object")])
def test_free_form_objects_use_the_engines_flattened_type(engine: str, expected: str) -> None:
    leaves = leaf_mappings(engine)
    flattened = [name for name, field in FIELDS.items() if field.type == "flattened"]
    assert "auditd.data" in flattened
    for name in flattened:
        assert leaves[name] == {"type": expected}


@pytest.mark.parametrize("engine", ENGINES)
def test_declared_types_are_kept(engine: str) -> None:
    leaves = leaf_mappings(engine)
    for name, field in FIELDS.items():
        if field.type in ("flattened", "constant_keyword"):
            continue
        assert leaves[name]["type"] == field.type, name


def test_constant_fields() -> None:
    es = leaf_mappings("elasticsearch")
    os_ = leaf_mappings("opensearch")
    for leaves in (es, os_):
        assert leaves["data_stream.type"] == {"type": "constant_keyword", "value": "logs"}
        assert leaves["data_stream.dataset"] == {"type": "constant_keyword", "value": DEFAULT_DATASET}
    # The namespace differs between the data streams of one template: Elasticsearch takes the
    # value of the first document, OpenSearch requires a value in the mapping, so keyword there.
    assert es["data_stream.namespace"] == {"type": "constant_keyword"}
    assert os_["data_stream.namespace"]["type"] == "keyword"
    assert leaf_mappings("opensearch", dataset="other.set")["data_stream.dataset"]["value"] == "other.set"


@pytest.mark.parametrize("engine", ENGINES)
def test_stored_only_fields_are_not_indexed(engine: str) -> None:
    leaves = leaf_mappings(engine)
    stored_only = [name for name, field in FIELDS.items() if not field.indexed]
    assert "event.original" in stored_only
    for name in stored_only:
        assert leaves[name]["index"] is False
        assert leaves[name]["doc_values"] is False


@pytest.mark.parametrize("engine", ENGINES)
def test_mappings_are_strict_and_versioned(engine: str) -> None:
    body = mappings_body(engine)
    assert body["dynamic"] == "strict"
    assert body["date_detection"] is False
    assert body["_meta"]["template_version"] == TEMPLATE_VERSION
    for path, obj in engine_objects(engine).items():
        if path.startswith("_component_template/") or path.startswith("_index_template/"):
            assert obj["version"] == TEMPLATE_VERSION, path
            assert obj["_meta"]["managed_by"] == "auditfwd", path


@pytest.mark.parametrize("engine", ENGINES)
def test_index_template_takes_the_default_data_stream(engine: str) -> None:
    objects = engine_objects(engine)
    template = objects[f"_index_template/logs-{DEFAULT_DATASET}"]
    data_stream = f"logs-{DEFAULT_DATASET}-{DEFAULT_NAMESPACE}"
    assert any(fnmatch.fnmatchcase(data_stream, pattern) for pattern in template["index_patterns"])
    assert template["data_stream"] == {}
    assert template["priority"] == INDEX_TEMPLATE_PRIORITY > BUILT_IN_LOGS_PRIORITY
    optional = set(template.get("ignore_missing_component_templates", []))
    for component in template["composed_of"]:
        assert f"_component_template/{component}" in objects or component in optional, component


@pytest.mark.parametrize("engine", ENGINES)
def test_datasets_never_share_an_object(engine: str) -> None:
    """Objects carry their dataset (the mappings its constant, the ISM policy its pattern):
    setting up a second dataset must not overwrite the first one's."""
    first = engine_objects(engine, "auditd_manager.auditd")
    second = engine_objects(engine, "hypervisor.audit")
    assert not set(first) & set(second)
    for path, body in second.items():
        assert "hypervisor.audit" in path, path
        for component in body.get("composed_of", []):
            assert component.startswith(("auditfwd-hypervisor.audit@", "logs-hypervisor.audit@")), component


def test_elasticsearch_lifecycle_policy_is_linked() -> None:
    objects = engine_objects("elasticsearch")
    policy = objects["_ilm/policy/auditfwd-auditd_manager.auditd"]["policy"]
    assert policy["phases"]["hot"]["actions"]["rollover"]["max_age"] == mappings.ROLLOVER_MAX_AGE
    assert "delete" not in policy["phases"]
    link = objects["_component_template/auditfwd-auditd_manager.auditd@lifecycle"]["template"]["settings"]
    assert link["index"]["lifecycle"]["name"] == "auditfwd-auditd_manager.auditd"
    without = engine_objects("elasticsearch", lifecycle=False)
    assert not any("lifecycle" in path or path.startswith("_ilm/") for path in without)
    assert (
        "auditfwd-auditd_manager.auditd@lifecycle"
        in without[f"_index_template/logs-{DEFAULT_DATASET}"]["ignore_missing_component_templates"]
    )


def test_opensearch_lifecycle_policy_attaches_to_the_data_streams() -> None:
    objects = engine_objects("opensearch")
    policy = objects["_plugins/_ism/policies/auditfwd-auditd_manager.auditd"]["policy"]
    template = objects[f"_index_template/logs-{DEFAULT_DATASET}"]
    assert policy["ism_template"][0]["index_patterns"] == template["index_patterns"]
    assert policy["states"][0]["name"] == policy["default_state"]
    assert "rollover" in policy["states"][0]["actions"][0]
    assert f"template_version {TEMPLATE_VERSION}" in policy["description"]
    assert list(engine_objects("opensearch", lifecycle=False)) == [
        path for path in objects if not path.startswith("_plugins/")
    ]


@pytest.mark.parametrize("engine", ENGINES)
def test_fallbacks_replace_only_the_missing_types(engine: str) -> None:
    leaves = leaf_mappings(engine, fallbacks=CORE_FALLBACK)
    for name, field in FIELDS.items():
        if field.type in CORE_FALLBACK:
            assert leaves[name]["type"] == CORE_FALLBACK[field.type], name
        else:
            assert leaves[name] == leaf_mappings(engine)[name], name


def test_a_field_that_is_also_a_parent_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    declared = {"process.name": Field("keyword", "x"), "process.name.first": Field("keyword", "y")}
    monkeypatch.setattr(mappings, "FIELDS", declared)
    with pytest.raises(ValueError, match=r"process\.name"):
        properties("elasticsearch")
    monkeypatch.setattr(mappings, "FIELDS", dict(reversed(list(declared.items()))))
    with pytest.raises(ValueError, match=r"process\.name"):
        properties("opensearch")


def test_unknown_engine_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        engine_objects("solr")
