"""`auditfwd setup` and `auditfwd check`: prepare and inspect an Elasticsearch or OpenSearch
output.

``setup`` installs the index templates and the lifecycle policy of :mod:`forwarder.mappings`
and says, for each object, what it did:

* ``created``: it was missing;
* ``upgraded``: an older version (``version`` of templates, ``_meta.template_version`` of the
  ILM policy, the description of the ISM policy) was replaced, or the same version with other
  content (the field declaration changed without a new version);
* ``unchanged``: the same version with the same content is installed;
* ``skipped``: the node cannot hold it (no ILM or ISM on this build), or a newer version is
  installed (it is never downgraded).

Field types that the node lacks (a minimal build without the modules of ``match_only_text``,
``constant_keyword`` or ``wildcard``) are mapped to their core fallback and reported.  Running
``setup`` again changes nothing.

The content is told apart by a digest of the generated body that ``setup`` adds to the object's
``_meta`` (``auditfwd_digest``; the ISM policy's description, which has no ``_meta``).

``check`` connects, names the engine, its version and the cluster's health, checks the
privileges the forwarder needs (Elasticsearch with security on: ``_has_privileges``; OpenSearch:
the user and roles of ``authinfo``; or "security disabled") and whether the templates are
installed.  Exit status 0 when all is well, 1 otherwise, 2 for configuration errors.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import hashlib
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from forwarder.ecs.normalize import DEFAULT_DATASET
from forwarder.mappings import (
    CORE_FALLBACK,
    TEMPLATE_VERSION,
    data_stream_pattern,
    engine_objects,
    index_template_name,
    policy_name,
    render,
)
from forwarder.sinks.bulk import EngineClient, RequestFailed
from forwarder.sinks.credentials import ENGINE_KEYS, ENV_PREFIX, CredentialsError

#: Exit statuses: all well, a problem found (unreachable, missing privileges, failed install),
#: a configuration error (as usage errors).
EXIT_OK: Final = 0
EXIT_PROBLEM: Final = 1
EXIT_CONFIG: Final = 2

#: Oldest engine versions the generated objects install on: Elasticsearch 8.7 brought
#: ``ignore_missing_component_templates``; OpenSearch 2.7 brought ``flat_object``.
MINIMUM_VERSIONS: Final = {"elasticsearch": (8, 7), "opensearch": (2, 7)}

#: Lifecycle API of each engine: answers unless the node lacks lifecycle management.
LIFECYCLE_PROBE: Final = {"elasticsearch": "_ilm/status", "opensearch": "_plugins/_ism/policies"}

#: Name of the lifecycle feature in messages.
LIFECYCLE_NAME: Final = {
    "elasticsearch": "index lifecycle management (ILM)",
    "opensearch": "index state management (ISM)",
}

#: Elasticsearch privileges the forwarder needs: to write (and create the data streams on the
#: first write), and to install templates and policies.
RUN_INDEX_PRIVILEGES: Final = ("create_doc", "auto_configure")
SETUP_CLUSTER_PRIVILEGES: Final = ("manage_index_templates", "manage_ilm", "monitor")

#: Words of the answer of a node that has no handler for a path (the feature is not there).
_NO_ROUTE: Final = re.compile(r"no handler found|Incorrect HTTP method", re.IGNORECASE)

#: The template version and the digest in an ISM policy's description (ISM policies have no _meta).
_ISM_VERSION: Final = re.compile(r"template_version (\d+)")
_ISM_DIGEST: Final = re.compile(r"digest ([0-9a-f]+)")

#: ``_meta`` key of the digest of an installed object's generated body.
DIGEST_KEY: Final = "auditfwd_digest"

#: Hex digits of the digest: 64 bits tell bodies apart; longer would only clutter the listings.
DIGEST_LENGTH: Final = 16


@dataclass(frozen=True, slots=True)
class EngineInfo:
    """What the node says about itself."""

    engine: str
    version: str
    cluster: str
    health: str = ""
    nodes: int = 0

    @property
    def version_tuple(self) -> tuple[int, ...]:
        return tuple(int(part) for part in re.findall(r"\d+", self.version)[:2])

    def describe(self) -> str:
        text = f"{self.engine} {self.version} (cluster {self.cluster}"
        if self.health:
            text += f", health {self.health}, {self.nodes} node{'s' if self.nodes != 1 else ''}"
        return text + ")"


@dataclass(frozen=True, slots=True)
class Step:
    """What ``setup`` did with one object.

    Attributes:
        path: the object's API path (``_index_template/logs-auditd_manager.auditd``).
        action: created, upgraded, unchanged, skipped or failed.
        detail: why, or the versions.
    """

    path: str
    action: str
    detail: str = ""

    def render(self) -> str:
        return f"{self.action:<10} {self.path}" + (f": {self.detail}" if self.detail else "")


@dataclass(slots=True)
class SetupReport:
    info: EngineInfo
    fallbacks: dict[str, str]
    lifecycle: bool
    steps: list[Step] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(step.action != "failed" for step in self.steps)

    def render(self) -> list[str]:
        lines = [self.info.describe()]
        if self.fallbacks:
            mapped = ", ".join(f"{declared} -> {core}" for declared, core in sorted(self.fallbacks.items()))
            lines.append(f"field types this node lacks, mapped to their core type: {mapped}")
        lines.extend(step.render() for step in self.steps)
        if any(step.action == "upgraded" for step in self.steps):
            lines.append(
                "existing data streams use the new mappings from their next rollover (POST <stream>/_rollover)"
            )
        return lines


def error_reason(answer: Any) -> str:
    """An engine's error answer in one line (``type: reason``), or the answer itself, cut short."""
    if isinstance(answer, dict):
        error = answer.get("error")
        if isinstance(error, dict):
            return f"{error.get('type', 'error')}: {error.get('reason', '')}"
        if error is not None:
            return str(error)
    return str(answer)[:300]


def _route_missing(status: int, answer: Any) -> bool:
    return status in (400, 404, 405) and bool(_NO_ROUTE.search(str(answer)))


async def engine_info(client: EngineClient) -> EngineInfo:
    """The engine, its version, the cluster name and health.

    ``GET /`` where the node has it, else ``_nodes/_local`` (minimal builds lack the root
    handler).

    Raises:
        RequestFailed: the node does not answer, or answers neither request.
    """
    status, answer = await client.request("GET", "/")
    version = cluster = ""
    engine = client.engine
    if status == 200 and isinstance(answer, dict) and isinstance(answer.get("version"), dict):
        version = str(answer["version"].get("number", ""))
        cluster = str(answer.get("cluster_name", ""))
        engine = "opensearch" if answer["version"].get("distribution") == "opensearch" else "elasticsearch"
    else:
        status, answer = await client.request("GET", "_nodes/_local")
        if status != 200 or not isinstance(answer, dict) or not answer.get("nodes"):
            reason = error_reason(answer)
            raise RequestFailed(f"the node answered neither / nor _nodes/_local ({status} {reason})", status)
        node = next(iter(answer["nodes"].values()))
        version = str(node.get("version", ""))
        cluster = str(answer.get("cluster_name", ""))
        engine = "elasticsearch" if "build_flavor" in node else "opensearch"
    status, health = await client.request("GET", "_cluster/health")
    if status == 200 and isinstance(health, dict):
        return EngineInfo(
            engine, version, cluster, str(health.get("status", "")), int(health.get("number_of_nodes", 0))
        )
    return EngineInfo(engine, version, cluster)


async def missing_types(client: EngineClient) -> dict[str, str]:
    """Types of :data:`CORE_FALLBACK` the node lacks -> the core type that replaces each.

    Each type is tried in a throw-away component template (deleted at once).
    """
    missing: dict[str, str] = {}
    for declared, core in CORE_FALLBACK.items():
        mapping: dict[str, Any] = {"type": declared}
        if declared == "constant_keyword":
            mapping["value"] = "probe"
        path = f"_component_template/auditfwd-probe-{declared.replace('_', '-')}"
        status, answer = await client.request(
            "PUT", path, {"template": {"mappings": {"properties": {"probe": mapping}}}}
        )
        if status == 200:
            await client.request("DELETE", path)
            continue
        text = str(answer)
        if f"[{declared}]" in text and ("No handler for type" in text or "does not exist" in text):
            missing[declared] = core
        else:
            raise RequestFailed(f"cannot probe the field type {declared}: {status} {error_reason(answer)}", status)
    return missing


async def has_lifecycle(client: EngineClient) -> bool:
    """True when the node has ILM (Elasticsearch) or ISM (OpenSearch)."""
    status, answer = await client.request("GET", LIFECYCLE_PROBE[client.engine])
    return not _route_missing(status, answer)


@dataclass(frozen=True, slots=True)
class Installed:
    """An installed object: its version (None: unversioned), the digest of its content (None:
    not installed by ``setup``) and, for ISM policies, what an update must quote."""

    version: int | None
    digest: str | None = None
    update_query: str = ""


def body_digest(body: Mapping[str, Any]) -> str:
    """Digest of a generated body (before the digest is added to it)."""
    return hashlib.sha256(render(body).encode()).hexdigest()[:DIGEST_LENGTH]


def with_digest(path: str, body: Mapping[str, Any], digest: str) -> dict[str, Any]:
    """``body`` with ``digest`` where :func:`installed` finds it again."""
    marked: dict[str, Any] = copy.deepcopy(dict(body))
    if path.startswith("_plugins/_ism/policies/"):
        marked["policy"]["description"] = f"{marked['policy'].get('description', '')} digest {digest}"
    elif path.startswith("_ilm/policy/"):
        marked["policy"].setdefault("_meta", {})[DIGEST_KEY] = digest
    else:
        marked.setdefault("_meta", {})[DIGEST_KEY] = digest
    return marked


def _meta_digest(meta: Any) -> str | None:
    digest = meta.get(DIGEST_KEY) if isinstance(meta, dict) else None
    return digest if isinstance(digest, str) else None


async def installed(client: EngineClient, path: str) -> Installed | None:
    """The installed object at ``path``, or None when there is none.

    Raises:
        RequestFailed: an answer other than the object or 404.
    """
    status, answer = await client.request("GET", path)
    if status == 404:
        return None
    if status != 200 or not isinstance(answer, dict):
        raise RequestFailed(f"GET {path}: {status} {error_reason(answer)}", status)
    name = path.rsplit("/", 1)[1]
    for kind, listing, key in (
        ("_component_template/", "component_templates", "component_template"),
        ("_index_template/", "index_templates", "index_template"),
    ):
        if path.startswith(kind):
            found = [item[key] for item in answer.get(listing, []) if item.get("name") == name]
            if not found:
                return None
            version = found[0].get("version")
            return Installed(version if isinstance(version, int) else None, _meta_digest(found[0].get("_meta")))
    if path.startswith("_ilm/policy/"):
        policy = answer.get(name, {}).get("policy", {})
        meta = policy.get("_meta", {})
        version = meta.get("template_version") if isinstance(meta, dict) else None
        return Installed(version if isinstance(version, int) else None, _meta_digest(meta))
    if path.startswith("_plugins/_ism/policies/"):
        description = str(answer.get("policy", {}).get("description", ""))
        match = _ISM_VERSION.search(description)
        digest = _ISM_DIGEST.search(description)
        query = f"?if_seq_no={answer.get('_seq_no')}&if_primary_term={answer.get('_primary_term')}"
        return Installed(int(match.group(1)) if match else None, digest.group(1) if digest else None, query)
    raise ValueError(f"unknown kind of object {path}")


async def install(client: EngineClient, path: str, body: Mapping[str, Any]) -> Step:
    """Install one object unless the same version with the same content, or a newer version,
    is there."""
    digest = body_digest(body)
    try:
        current = await installed(client, path)
    except RequestFailed as exc:
        return Step(path, "failed", str(exc))
    if current is not None and current.version is not None:
        if current.version > TEMPLATE_VERSION:
            return Step(
                path,
                "skipped",
                f"version {current.version} is installed, newer than this auditfwd's {TEMPLATE_VERSION}",
            )
        if current.version == TEMPLATE_VERSION and current.digest == digest:
            return Step(path, "unchanged", f"version {TEMPLATE_VERSION}")
    target = path + (current.update_query if current is not None else "")
    status, answer = await client.request("PUT", target, with_digest(path, body, digest))
    if status not in (200, 201):
        return Step(path, "failed", f"{status} {error_reason(answer)}")
    if current is None:
        return Step(path, "created", f"version {TEMPLATE_VERSION}")
    if current.version == TEMPLATE_VERSION:
        detail = f"version {TEMPLATE_VERSION}, other content (digest {current.digest} -> {digest})"
        return Step(path, "upgraded", detail)
    before = "an unversioned one" if current.version is None else f"version {current.version}"
    return Step(path, "upgraded", f"{before} -> version {TEMPLATE_VERSION}")


async def setup_engine(client: EngineClient, dataset: str = DEFAULT_DATASET) -> SetupReport:
    """Install or upgrade the templates and the policy of ``dataset`` on the client's engine.

    Raises:
        RequestFailed: the node does not answer.
    """
    info = await engine_info(client)
    fallbacks = await missing_types(client)
    lifecycle = await has_lifecycle(client)
    report = SetupReport(info, fallbacks, lifecycle)
    wanted = engine_objects(client.engine, dataset, fallbacks, lifecycle)
    for path in engine_objects(client.engine, dataset, fallbacks, lifecycle=True):
        if path not in wanted:
            report.steps.append(Step(path, "skipped", f"no {LIFECYCLE_NAME[client.engine]} on this node"))
            continue
        report.steps.append(await install(client, path, wanted[path]))
    return report


@dataclass(slots=True)
class CheckReport:
    lines: list[str] = field(default_factory=list)
    problems: int = 0

    def good(self, text: str) -> None:
        self.lines.append(f"ok       {text}")

    def bad(self, text: str) -> None:
        self.lines.append(f"PROBLEM  {text}")
        self.problems += 1

    def note(self, text: str) -> None:
        self.lines.append(f"note     {text}")


async def check_engine(client: EngineClient, dataset: str = DEFAULT_DATASET) -> CheckReport:
    """Connectivity, engine and version, privileges, templates."""
    report = CheckReport()
    try:
        info = await engine_info(client)
    except RequestFailed as exc:
        report.bad(f"cannot reach {client.describe()}: {exc}")
        return report
    report.good(f"connected to {client.describe()}: {info.describe()}")
    if info.engine != client.engine:
        report.bad(f"the node is {info.engine}, the output says {client.engine}: use {info.engine}+https://")
    minimum = MINIMUM_VERSIONS[info.engine]
    if info.version_tuple and info.version_tuple < minimum:
        report.bad(f"{info.engine} {info.version} is older than {'.'.join(map(str, minimum))}, the oldest supported")
    if info.health == "red":
        report.bad("cluster health is red: some primary shards are not allocated")
    await _check_privileges(client, report, dataset)
    await _check_templates(client, report, dataset)
    return report


async def _check_privileges(client: EngineClient, report: CheckReport, dataset: str) -> None:
    if client.engine == "elasticsearch":
        status, answer = await client.request("GET", "_security/_authenticate")
    else:
        status, answer = await client.request("GET", "_plugins/_security/authinfo")
    if status == 401:
        report.bad("authentication failed (401): check output_username/output_password or output_api_key")
        return
    if status != 200 or not isinstance(answer, dict):
        report.good(f"security disabled (the node has no authentication: {status} {error_reason(answer)[:120]})")
        return
    if client.engine == "opensearch":
        user = answer.get("user_name", "?")
        roles = ", ".join(answer.get("roles", [])) or "none"
        report.good(f"authenticated as {user} (roles: {roles})")
        report.note("OpenSearch has no privileges query: `auditfwd setup` and a run show missing permissions")
        return
    report.good(f"authenticated as {answer.get('username', '?')}")
    request = {
        "cluster": list(SETUP_CLUSTER_PRIVILEGES),
        "index": [{"names": [data_stream_pattern(dataset)], "privileges": list(RUN_INDEX_PRIVILEGES)}],
    }
    status, answer = await client.request("POST", "_security/user/_has_privileges", request)
    if status != 200 or not isinstance(answer, dict):
        report.bad(f"cannot query the privileges: {status} {error_reason(answer)}")
        return
    index_answer = answer.get("index", {}).get(data_stream_pattern(dataset), {})
    missing_run = [name for name in RUN_INDEX_PRIVILEGES if not index_answer.get(name)]
    missing_setup = [name for name, held in answer.get("cluster", {}).items() if not held]
    if missing_run:
        report.bad(f"cannot write: missing {', '.join(missing_run)} on {data_stream_pattern(dataset)}")
    else:
        report.good(f"may write to {data_stream_pattern(dataset)} ({', '.join(RUN_INDEX_PRIVILEGES)})")
    if missing_setup:
        report.note(f"`auditfwd setup` needs the cluster privileges {', '.join(missing_setup)} (not held)")


async def _check_templates(client: EngineClient, report: CheckReport, dataset: str) -> None:
    path = f"_index_template/{index_template_name(dataset)}"
    try:
        current = await installed(client, path)
    except RequestFailed as exc:
        report.bad(f"cannot read {path}: {exc}")
        return
    if current is None:
        report.bad(f"{path} is not installed: run `auditfwd setup`")
    elif current.version != TEMPLATE_VERSION:
        report.bad(f"{path} has version {current.version}, this auditfwd's is {TEMPLATE_VERSION}: run `auditfwd setup`")
    else:
        report.good(f"{path} version {TEMPLATE_VERSION} installed")
    if not await has_lifecycle(client):
        policy = policy_name(dataset)
        report.note(f"no {LIFECYCLE_NAME[client.engine]} on this node: the {policy} policy cannot be installed")


# ------------------------------------------------------------------------- command line


def add_engine_parsers(commands: Any) -> None:
    """Register ``setup`` and ``check`` on the ``auditfwd`` sub-command parsers."""
    for name, help_text, handler in (
        ("setup", "install or upgrade the index templates and lifecycle policy on the engine", setup_command),
        ("check", "check the engine output: connection, engine and version, privileges, templates", check_command),
    ):
        parser = commands.add_parser(name, help=help_text, description=help_text[0].upper() + help_text[1:] + ".")
        parser.add_argument(
            "--output",
            metavar="URL",
            help="elasticsearch+https://HOST[:PORT][,HOST...] or opensearch+https://... (default: the configuration's)",
        )
        parser.add_argument("--config", metavar="FILE", help="TOML configuration file (credentials, TLS)")
        parser.add_argument(
            "--set", dest="settings", action="append", default=[], metavar="KEY=VALUE", help="set a configuration key"
        )
        parser.set_defaults(handler=handler)


def setup_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return _run(args, _setup_lines)


def check_command(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    return _run(args, _check_lines)


async def _setup_lines(client: EngineClient, dataset: str) -> tuple[list[str], bool]:
    report = await setup_engine(client, dataset)
    return report.render(), report.ok


async def _check_lines(client: EngineClient, dataset: str) -> tuple[list[str], bool]:
    report = await check_engine(client, dataset)
    return report.lines, report.problems == 0


def _run(args: argparse.Namespace, action: Callable[[EngineClient, str], Any]) -> int:
    from forwarder.config import ConfigError, load_config
    from forwarder.sinks.engines import create_client, output_settings, register_engine_sinks

    register_engine_sinks()
    overrides, environ = _split_settings(args.settings)
    if overrides is None:
        return EXIT_CONFIG
    if args.output:
        overrides["output"] = args.output
    try:
        config = load_config(args.config, overrides=overrides)
        settings = output_settings(config.output, config, environ)
    except (ConfigError, CredentialsError) as exc:
        print(f"auditfwd: configuration: {exc}", file=sys.stderr)
        return EXIT_CONFIG

    async def go() -> int:
        client = create_client(settings)
        try:
            lines, ok = await action(client, DEFAULT_DATASET)
        except RequestFailed as exc:
            print(f"auditfwd: {client.describe()}: {exc}", file=sys.stderr)
            return EXIT_PROBLEM
        finally:
            await client.close()
        for line in lines:
            print(line)
        return EXIT_OK if ok else EXIT_PROBLEM

    return asyncio.run(go())


def _split_settings(settings: list[str]) -> tuple[dict[str, str] | None, dict[str, str]]:
    """``--set`` values -> (configuration overrides, environment for engine keys the
    configuration does not declare)."""
    import os

    from forwarder.config import KEYS

    engine_keys = {key.name for key in ENGINE_KEYS}
    overrides: dict[str, str] = {}
    environ = dict(os.environ)
    for setting in settings:
        key, sep, value = setting.partition("=")
        key = key.strip()
        if not sep:
            print(f"auditfwd: --set {key!r}: expected KEY=VALUE", file=sys.stderr)
            return None, environ
        if key in KEYS:
            overrides[key] = value
        elif key in engine_keys:
            environ[ENV_PREFIX + key.upper()] = value
        else:
            print(f"auditfwd: --set: {key!r} is not a configuration key", file=sys.stderr)
            return None, environ
    return overrides, environ
