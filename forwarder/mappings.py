"""Index templates and lifecycle policies for Elasticsearch and OpenSearch, generated from the
one field declaration :data:`forwarder.ecs.fields.FIELDS`.

Pure functions from the declaration to request bodies.  Each engine's set of objects is a dict
from the object's API path (``_index_template/<name>``, ``_ilm/policy/<name>``, ...) to its JSON
body, in the order they must be installed: a ``PUT`` of every body to its path installs them.
``tools/gen_mappings.py`` writes them under ``mappings/`` and a test fails when the files and
the declaration drift apart.

Layout:

* Elasticsearch: an ILM policy (rollover), component templates for the mappings, the index
  settings and the ILM link, and a composable index template with ``data_stream`` for
  ``logs-<dataset>-*`` composed of them (plus an optional ``@custom`` one for the user).
* OpenSearch: an ISM policy (rollover) that attaches itself to the data streams through its
  ``ism_template``, component templates for the mappings and settings, and the index template.

Special cases of the field types (see :func:`field_mapping`):

* ``flattened`` is ``flattened`` on Elasticsearch and ``flat_object`` on OpenSearch.
* ``constant_keyword`` takes its value when the template knows it (``data_stream.type`` and
  ``data_stream.dataset``).  OpenSearch requires the value, so a constant field whose value
  varies between the data streams of one template (``data_stream.namespace``) is ``keyword``
  there.
* ``indexed=False`` fields (``event.original``) are stored only: no index, no doc values.
* ``fallbacks`` replaces types an engine build lacks (a minimal distribution without the
  modules that provide them) by the core type that holds the same values; the published files
  use none.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Final

from forwarder.ecs.fields import ECS_VERSION, FIELDS, Field
from forwarder.ecs.normalize import DEFAULT_DATASET

#: Version of the generated objects: the ``version`` of templates and the policies' ``_meta``.
#: Raise it whenever the generated bodies change, so that ``auditfwd setup`` and a person
#: looking at the installed templates can tell an old layout from the new one.
TEMPLATE_VERSION: Final = 4

#: Engines the generator knows.
ENGINES: Final = ("elasticsearch", "opensearch")

#: Templates of data streams are matched by priority: Elasticsearch's built-in ``logs`` template
#: matches ``logs-*-*`` at priority 100, so ours must be above it to win.
INDEX_TEMPLATE_PRIORITY: Final = 200

#: ``dynamic`` of the mappings: a field that is not declared rejects the document (it then goes
#: to the dead-letter file) instead of being stored unsearchable or guessed by the engine.
DYNAMIC: Final = "strict"

#: ECS's ``ignore_above`` for keyword fields: longer values are kept in ``_source`` but not
#: indexed (Lucene terms have a hard limit of 32766 bytes).
KEYWORD_IGNORE_ABOVE: Final = 1024

#: ``ignore_above`` of ``wildcard`` fields on OpenSearch, whose wildcard type keeps each value in
#: one doc value, refused above 32766 bytes (the whole document with it: a ``tar`` of a thousand
#: files has a longer ``process.command_line``).  8191 characters stay under the limit in UTF-8
#: (at most 4 bytes each); longer values stay in ``_source``.  Elasticsearch's wildcard has no
#: such limit.
OPENSEARCH_WILDCARD_IGNORE_ABOVE: Final = 8191

#: Rollover of the write index: the sizes and ages the engines' own documentation recommends
#: for time-series data.  No delete phase: how long audit logs are kept is the owner's decision.
ROLLOVER_MAX_PRIMARY_SHARD_SIZE: Final = "50gb"
ROLLOVER_MAX_AGE: Final = "30d"

#: First part of the names of our policies and component templates; the dataset follows, so
#: that ``setup`` for one dataset never overwrites the objects of another (the mappings carry the
#: dataset as a constant, the ISM policy its data stream pattern).
NAME_PREFIX: Final = "auditfwd"

#: Core type for each type that a minimal engine build may lack: same values, other indexing.
CORE_FALLBACK: Final[Mapping[str, str]] = {
    "match_only_text": "text",
    "constant_keyword": "keyword",
    "wildcard": "keyword",
}

#: Engine type of each declared flattened type.
_FLATTENED_TYPE: Final[Mapping[str, str]] = {"elasticsearch": "flattened", "opensearch": "flat_object"}


def data_stream_pattern(dataset: str = DEFAULT_DATASET) -> str:
    """Index pattern of the data streams of a dataset (all namespaces)."""
    return f"logs-{dataset}-*"


def index_template_name(dataset: str = DEFAULT_DATASET) -> str:
    """Name of the index template of a dataset."""
    return f"logs-{dataset}"


def policy_name(dataset: str = DEFAULT_DATASET) -> str:
    """Name of the lifecycle policy (ILM or ISM) of a dataset."""
    return f"{NAME_PREFIX}-{dataset}"


def component_name(part: str, dataset: str = DEFAULT_DATASET) -> str:
    """Name of one of our component templates of a dataset (``mappings``, ``settings``, ``lifecycle``)."""
    return f"{NAME_PREFIX}-{dataset}@{part}"


def constant_values(dataset: str = DEFAULT_DATASET) -> dict[str, str]:
    """Values of the ``constant_keyword`` fields that are the same in every document of the
    template's data streams."""
    return {"data_stream.type": "logs", "data_stream.dataset": dataset}


def field_mapping(
    name: str,
    field: Field,
    engine: str,
    constants: Mapping[str, str],
    fallbacks: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Mapping of one declared field on one engine.

    Args:
        name: the dotted field name.
        field: its declaration.
        engine: ``elasticsearch`` or ``opensearch``.
        constants: values of constant fields (:func:`constant_values`).
        fallbacks: declared type -> type to use instead (for engine builds that lack it).

    Returns:
        The field's mapping, e.g. ``{"type": "keyword", "ignore_above": 1024}``.
    """
    declared = field.type
    if fallbacks and declared in fallbacks:
        declared = fallbacks[declared]
    if declared == "flattened":
        return {"type": _FLATTENED_TYPE[engine]}
    if declared == "constant_keyword":
        value = constants.get(name)
        if value is not None:
            return {"type": "constant_keyword", "value": value}
        if engine == "opensearch":
            return {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}
        return {"type": "constant_keyword"}
    if declared == "keyword":
        if not field.indexed:
            return {"type": "keyword", "index": False, "doc_values": False}
        return {"type": "keyword", "ignore_above": KEYWORD_IGNORE_ABOVE}
    if declared == "wildcard" and engine == "opensearch":
        return {"type": "wildcard", "ignore_above": OPENSEARCH_WILDCARD_IGNORE_ABOVE}
    return {"type": declared}


def properties(
    engine: str,
    dataset: str = DEFAULT_DATASET,
    fallbacks: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``properties`` tree of every declared field: dotted names become nested objects.

    Raises:
        ValueError: a declared name is both a leaf and the parent of another name (a
            declaration error, found by the tests).
    """
    constants = constant_values(dataset)
    root: dict[str, Any] = {}
    for name, field in FIELDS.items():
        *parents, leaf = name.split(".")
        level = root
        for depth, part in enumerate(parents):
            node = level.setdefault(part, {"properties": {}})
            if "properties" not in node:
                raise ValueError(f"{'.'.join(parents[: depth + 1])} is a field and a parent of {name}")
            level = node["properties"]
        if leaf in level:
            raise ValueError(f"{name} is declared below another field or twice")
        level[leaf] = field_mapping(name, field, engine, constants, fallbacks)
    return _sorted(root)


def leaf_mappings(
    engine: str,
    dataset: str = DEFAULT_DATASET,
    fallbacks: Mapping[str, str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Dotted field name -> its mapping on ``engine``: what the live mapping must show."""
    constants = constant_values(dataset)
    return {name: field_mapping(name, field, engine, constants, fallbacks) for name, field in FIELDS.items()}


def _meta(dataset: str) -> dict[str, Any]:
    return {
        "managed_by": "auditfwd",
        "template_version": TEMPLATE_VERSION,
        "ecs_version": ECS_VERSION,
        "dataset": dataset,
    }


def mappings_body(
    engine: str,
    dataset: str = DEFAULT_DATASET,
    fallbacks: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The ``mappings`` of the documents of a dataset on an engine."""
    return {
        "_meta": _meta(dataset),
        "dynamic": DYNAMIC,
        "date_detection": False,
        "properties": properties(engine, dataset, fallbacks),
    }


def _component(template: dict[str, Any], dataset: str) -> dict[str, Any]:
    return {"version": TEMPLATE_VERSION, "_meta": _meta(dataset), "template": template}


def _index_settings() -> dict[str, Any]:
    # Audit documents are written once and read rarely: trade some CPU for a smaller index.
    return {"index": {"codec": "best_compression"}}


def elasticsearch_objects(
    dataset: str = DEFAULT_DATASET,
    fallbacks: Mapping[str, str] | None = None,
    lifecycle: bool = True,
) -> dict[str, dict[str, Any]]:
    """Elasticsearch objects, API path -> body, in installation order.

    Args:
        dataset: the dataset of the data streams (``logs-<dataset>-<namespace>``).
        fallbacks: see :func:`field_mapping`.
        lifecycle: include the ILM policy and the component template that links it.  Without
            them (a build without ILM) the index template still installs: the link is listed
            in ``ignore_missing_component_templates``.

    Returns:
        ``{"_ilm/policy/auditfwd-<dataset>": {...}, "_component_template/...": {...},
        "_index_template/logs-<dataset>": {...}}``.
    """
    mappings_name = component_name("mappings", dataset)
    settings_name = component_name("settings", dataset)
    lifecycle_name = component_name("lifecycle", dataset)
    custom_name = f"{index_template_name(dataset)}@custom"
    objects: dict[str, dict[str, Any]] = {}
    if lifecycle:
        objects[f"_ilm/policy/{policy_name(dataset)}"] = {
            "policy": {
                "_meta": _meta(dataset),
                "phases": {
                    "hot": {
                        "min_age": "0ms",
                        "actions": {
                            "rollover": {
                                "max_primary_shard_size": ROLLOVER_MAX_PRIMARY_SHARD_SIZE,
                                "max_age": ROLLOVER_MAX_AGE,
                            }
                        },
                    }
                },
            }
        }
    objects[f"_component_template/{mappings_name}"] = _component(
        {"mappings": mappings_body("elasticsearch", dataset, fallbacks)}, dataset
    )
    objects[f"_component_template/{settings_name}"] = _component({"settings": _index_settings()}, dataset)
    if lifecycle:
        objects[f"_component_template/{lifecycle_name}"] = _component(
            {"settings": {"index": {"lifecycle": {"name": policy_name(dataset)}}}}, dataset
        )
    objects[f"_index_template/{index_template_name(dataset)}"] = {
        "version": TEMPLATE_VERSION,
        "_meta": _meta(dataset),
        "index_patterns": [data_stream_pattern(dataset)],
        "data_stream": {},
        "priority": INDEX_TEMPLATE_PRIORITY,
        "composed_of": [mappings_name, settings_name, lifecycle_name, custom_name],
        "ignore_missing_component_templates": [lifecycle_name, custom_name],
    }
    return objects


def opensearch_objects(
    dataset: str = DEFAULT_DATASET,
    fallbacks: Mapping[str, str] | None = None,
    lifecycle: bool = True,
) -> dict[str, dict[str, Any]]:
    """OpenSearch objects, API path -> body, in installation order.

    Args:
        dataset: the dataset of the data streams.
        fallbacks: see :func:`field_mapping`.
        lifecycle: include the ISM policy (a build without the index-management plugin has no
            ``_plugins/_ism`` API; the templates do not refer to the policy).

    Returns:
        ``{"_plugins/_ism/policies/auditfwd-<dataset>": {...}, "_component_template/...": {...},
        "_index_template/logs-<dataset>": {...}}``.
    """
    mappings_name = component_name("mappings", dataset)
    settings_name = component_name("settings", dataset)
    objects: dict[str, dict[str, Any]] = {}
    if lifecycle:
        meta = _meta(dataset)
        objects[f"_plugins/_ism/policies/{policy_name(dataset)}"] = {
            "policy": {
                # ISM policies have no _meta: the version travels in the description.
                "description": (
                    f"Rollover of the auditfwd data streams ({meta['managed_by']} "
                    f"template_version {meta['template_version']}, ECS {meta['ecs_version']})"
                ),
                "default_state": "hot",
                "states": [
                    {
                        "name": "hot",
                        "actions": [
                            {
                                "rollover": {
                                    "min_primary_shard_size": ROLLOVER_MAX_PRIMARY_SHARD_SIZE,
                                    "min_index_age": ROLLOVER_MAX_AGE,
                                }
                            }
                        ],
                        "transitions": [],
                    }
                ],
                "ism_template": [
                    {"index_patterns": [data_stream_pattern(dataset)], "priority": INDEX_TEMPLATE_PRIORITY}
                ],
            }
        }
    objects[f"_component_template/{mappings_name}"] = _component(
        {"mappings": mappings_body("opensearch", dataset, fallbacks)}, dataset
    )
    objects[f"_component_template/{settings_name}"] = _component({"settings": _index_settings()}, dataset)
    objects[f"_index_template/{index_template_name(dataset)}"] = {
        "version": TEMPLATE_VERSION,
        "_meta": _meta(dataset),
        "index_patterns": [data_stream_pattern(dataset)],
        "data_stream": {},
        "priority": INDEX_TEMPLATE_PRIORITY,
        "composed_of": [mappings_name, settings_name],
    }
    return objects


def engine_objects(
    engine: str,
    dataset: str = DEFAULT_DATASET,
    fallbacks: Mapping[str, str] | None = None,
    lifecycle: bool = True,
) -> dict[str, dict[str, Any]]:
    """:func:`elasticsearch_objects` or :func:`opensearch_objects` by engine name.

    Raises:
        ValueError: an unknown engine.
    """
    if engine == "elasticsearch":
        return elasticsearch_objects(dataset, fallbacks, lifecycle)
    if engine == "opensearch":
        return opensearch_objects(dataset, fallbacks, lifecycle)
    raise ValueError(f"unknown engine {engine!r} (one of {', '.join(ENGINES)})")


def render(body: Mapping[str, Any]) -> str:
    """The file text of one body: stable key order, two-space indent, final newline."""
    return json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _sorted(tree: dict[str, Any]) -> dict[str, Any]:
    """Keys in name order at every level (stable files, readable diffs)."""
    return {key: _sorted(value) if isinstance(value, dict) else value for key, value in sorted(tree.items())}
