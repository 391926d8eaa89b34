"""Installing the lifecycle policies: ILM (Elasticsearch) and ISM (OpenSearch).

The test nodes' distributions lack both plugins (ILM is in Elasticsearch's x-pack, ISM in
OpenSearch's index-management plugin, neither published where the tests obtain the engines), so
the engine-backed tests see ``setup`` skip the policies.  Here the policy steps of
:func:`forwarder.engine_commands.install` run against an in-memory stand-in of the two policy
APIs, answering in their documented shapes:

* ILM: ``GET _ilm/policy/NAME`` -> ``{NAME: {"version": N, "modified_date": ..., "policy": {...}}}``
  (``version`` is the engine's own counter; ours travels in ``policy._meta``), ``PUT`` replaces;
* ISM: ``GET _plugins/_ism/policies/ID`` -> ``{"_id", "_version", "_seq_no", "_primary_term",
  "policy": {...}}``; ``PUT`` of an existing policy needs ``if_seq_no`` and ``if_primary_term``
  matching the stored ones, else 409.

It proves what ``setup`` does with what those APIs answer, not that a real engine accepts the
policy bodies (see ``mappings/README.md``).
"""

from __future__ import annotations

import asyncio
import copy
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from forwarder.engine_commands import install
from forwarder.mappings import TEMPLATE_VERSION, engine_objects, policy_name

ILM_PATH = f"_ilm/policy/{policy_name()}"
ISM_PATH = f"_plugins/_ism/policies/{policy_name()}"


class PolicyApis:
    """The ILM and ISM policy endpoints, in memory."""

    def __init__(self, engine: str) -> None:
        self.engine = engine
        self.stored: dict[str, dict[str, Any]] = {}
        self.puts: list[str] = []

    def describe(self) -> str:
        return f"{self.engine} policy APIs"

    async def bulk(self, payload: bytes, gzipped: bool) -> Any:
        raise AssertionError("no bulk requests here")

    async def close(self) -> None:
        return None

    async def request(self, method: str, path: str, body: Any = None) -> tuple[int, Any]:
        split = urlsplit(path)
        name = split.path.rsplit("/", 1)[1]
        entry = self.stored.get(split.path)
        if method == "GET":
            if entry is None:
                return 404, {"error": {"type": "resource_not_found_exception"}, "status": 404}
            if split.path.startswith("_ilm/"):
                return 200, {name: {"version": entry["version"], "modified_date": "2026-11-28", **entry["body"]}}
            return 200, {
                "_id": name,
                "_version": entry["version"],
                "_seq_no": entry["seq_no"],
                "_primary_term": 1,
                "policy": {"policy_id": name, "schema_version": 21, **entry["body"]["policy"]},
            }
        assert method == "PUT", method
        self.puts.append(path)
        if split.path.startswith("_plugins/_ism/") and entry is not None:
            query = parse_qs(split.query)
            if query.get("if_seq_no") != [str(entry["seq_no"])] or query.get("if_primary_term") != ["1"]:
                return 409, {"error": {"type": "version_conflict_engine_exception"}, "status": 409}
        version = entry["version"] + 1 if entry else 1
        seq_no = entry["seq_no"] + 1 if entry else 0
        self.stored[split.path] = {"version": version, "seq_no": seq_no, "body": copy.deepcopy(body)}
        return (200 if entry else 201), {"acknowledged": True, "_id": name, "_seq_no": seq_no, "_primary_term": 1}


@pytest.mark.parametrize(("engine", "path"), [("elasticsearch", ILM_PATH), ("opensearch", ISM_PATH)])
def test_policy_created_then_unchanged_then_upgraded(engine: str, path: str) -> None:
    apis = PolicyApis(engine)
    body = engine_objects(engine)[path]

    first = asyncio.run(install(apis, path, body))
    assert (first.action, apis.puts) == ("created", [path])

    again = asyncio.run(install(apis, path, body))
    assert again.action == "unchanged", again
    assert len(apis.puts) == 1

    # Same template version, other content (an edited rollover): replaced, through the ISM
    # API's optimistic concurrency control where there is one.
    edited = copy.deepcopy(body)
    if engine == "elasticsearch":
        edited["policy"]["phases"]["hot"]["actions"]["rollover"]["max_age"] = "7d"
    else:
        edited["policy"]["states"][0]["actions"][0]["rollover"]["min_index_age"] = "7d"
    changed = asyncio.run(install(apis, path, edited))
    assert changed.action == "upgraded", changed
    assert "7d" in str(apis.stored[path]["body"])
    if engine == "opensearch":
        assert "if_seq_no=0&if_primary_term=1" in apis.puts[-1]


@pytest.mark.parametrize(("engine", "path"), [("elasticsearch", ILM_PATH), ("opensearch", ISM_PATH)])
def test_a_newer_policy_is_left_alone(engine: str, path: str) -> None:
    apis = PolicyApis(engine)
    newer = copy.deepcopy(engine_objects(engine)[path])
    if engine == "elasticsearch":
        newer["policy"]["_meta"]["template_version"] = TEMPLATE_VERSION + 1
    else:
        newer["policy"]["description"] = f"template_version {TEMPLATE_VERSION + 1}"
    asyncio.run(apis.request("PUT", path, newer))
    step = asyncio.run(install(apis, path, engine_objects(engine)[path]))
    assert step.action == "skipped", step
    assert f"version {TEMPLATE_VERSION + 1}" in step.detail
    assert len(apis.puts) == 1


def test_a_policy_changed_by_hand_is_replaced_not_refused() -> None:
    """Someone edited the ISM policy after setup (its seq_no moved on): setup reads the current
    seq_no and replaces it instead of failing with a version conflict."""
    apis = PolicyApis("opensearch")
    body = engine_objects("opensearch")[ISM_PATH]
    assert asyncio.run(install(apis, ISM_PATH, body)).action == "created"
    by_hand = copy.deepcopy(apis.stored[ISM_PATH]["body"])
    by_hand["policy"]["description"] = "edited by an operator"
    entry = apis.stored[ISM_PATH]
    status, _ = asyncio.run(apis.request("PUT", f"{ISM_PATH}?if_seq_no={entry['seq_no']}&if_primary_term=1", by_hand))
    assert status == 200
    step = asyncio.run(install(apis, ISM_PATH, body))
    assert (step.action, step.detail) == ("upgraded", f"an unversioned one -> version {TEMPLATE_VERSION}"), step
    assert "template_version" in apis.stored[ISM_PATH]["body"]["policy"]["description"]
