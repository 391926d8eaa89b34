"""Engine outputs: where they connect, TLS and credentials (never shown), `auditfwd setup` and
`auditfwd check`.

TLS, client certificates and the Authorization header are checked against a small recording
HTTPS server of the test (the engines' test builds here run without TLS or security plugins);
`setup` and `check` run against the real nodes of the session.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gzip
import logging
import re
import socket
import ssl
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest

from forwarder.cli import main
from forwarder.engine_commands import body_digest, with_digest
from forwarder.mappings import TEMPLATE_VERSION, engine_objects
from forwarder.sinks import Document, Outcome, SinkError
from forwarder.sinks.bulk import (
    DEFAULT_DATA_STREAM,
    BulkSink,
    RequestFailed,
    bulk_body,
    bulk_results,
    item_result,
    request_groups,
)
from forwarder.sinks.credentials import CredentialsError, Secret, engine_settings, parse_target
from forwarder.sinks.elasticsearch import client_options as elasticsearch_options
from forwarder.sinks.engines import create_engine_sink, output_settings
from forwarder.sinks.opensearch import client_options as opensearch_options
from tests.engines import ENGINES, Node
from tests.engines import request as call
from tests.pki import Pki

PASSWORD = "pw-" + uuid.uuid4().hex
API_KEY_ID = "kid-" + uuid.uuid4().hex[:8]
API_KEY_SECRET = "ks-" + uuid.uuid4().hex


# ---------------------------------------------------------------------------- hosts and keys


def test_hosts_ports_and_transports() -> None:
    target = parse_target("elasticsearch", "https", "//es1.example,es2.example:9243,[::1]:9201/")
    assert target.hosts == ("es1.example:9200", "es2.example:9243", "[::1]:9201")
    assert target.urls == ["https://es1.example:9200", "https://es2.example:9243", "https://[::1]:9201"]
    assert target.describe() == "elasticsearch+https://es1.example:9200,es2.example:9243,[::1]:9201"


@pytest.mark.parametrize(
    ("rest", "complaint"),
    [
        (f"//elastic:{PASSWORD}@es1:9200", "credentials do not belong"),
        ("//es1:9200/prefix", "only host[:port]"),
        ("//es1:9200?x=1", "only host[:port]"),
        ("//", "no host"),
        ("//es1,,es2", "empty host"),
        ("//es1:99999", "es1:99999"),
        ("es1:9200", "expected //"),
    ],
)
def test_invalid_outputs_are_refused(rest: str, complaint: str) -> None:
    with pytest.raises(CredentialsError, match=re.escape(complaint)) as caught:
        parse_target("opensearch", "https", rest)
    assert PASSWORD not in str(caught.value)


def _target() -> Any:
    return parse_target("elasticsearch", "https", "//es1:9200")


def test_credentials_from_the_environment_and_files(tmp_path: Path) -> None:
    password_file = tmp_path / "password"
    password_file.write_text(PASSWORD + "\n")
    settings = engine_settings(
        _target(),
        None,
        {"AUDITFWD_OUTPUT_USERNAME": "shipper", "AUDITFWD_OUTPUT_PASSWORD_FILE": str(password_file)},
    )
    assert settings.credentials.username == "shipper"
    assert settings.credentials.password is not None and settings.credentials.password.reveal() == PASSWORD
    assert settings.tls.verify is True

    settings = engine_settings(_target(), None, {"AUDITFWD_OUTPUT_API_KEY": API_KEY_SECRET})
    assert settings.credentials.api_key is not None and settings.credentials.api_key.reveal() == API_KEY_SECRET
    assert settings.credentials.describe() == "api key"


@dataclass
class _Configured:
    """A configuration that declares the engine keys (as forwarder.config.Config will)."""

    output_username: str = ""
    output_password: str = ""
    output_password_file: str = ""
    output_api_key: str = ""
    output_api_key_file: str = ""
    output_ca_file: str = ""
    output_client_cert: str = ""
    output_client_key: str = ""
    output_tls_verify: bool = True
    output_request_timeout: float = 60.0


def test_configuration_keys_win_over_the_environment() -> None:
    config = _Configured(output_username="from-config", output_password=PASSWORD, output_tls_verify=False)
    settings = engine_settings(_target(), config, {"AUDITFWD_OUTPUT_USERNAME": "from-env"})
    assert settings.credentials.username == "from-config"
    assert settings.tls.verify is False


@pytest.mark.parametrize(
    ("environ", "complaint"),
    [
        ({"AUDITFWD_OUTPUT_PASSWORD": PASSWORD}, "output_username is not"),
        ({"AUDITFWD_OUTPUT_USERNAME": "u"}, "neither output_password"),
        (
            {"AUDITFWD_OUTPUT_USERNAME": "u", "AUDITFWD_OUTPUT_PASSWORD": PASSWORD, "AUDITFWD_OUTPUT_API_KEY": "k"},
            "either output_api_key",
        ),
        ({"AUDITFWD_OUTPUT_API_KEY": PASSWORD, "AUDITFWD_OUTPUT_API_KEY_FILE": "/nonexistent"}, "not both"),
        ({"AUDITFWD_OUTPUT_API_KEY_FILE": "/nonexistent/key"}, "cannot read /nonexistent/key"),
        ({"AUDITFWD_OUTPUT_CLIENT_KEY": "/k.pem"}, "output_client_cert is not"),
        ({"AUDITFWD_OUTPUT_TLS_VERIFY": "maybe"}, "true or false"),
        ({"AUDITFWD_OUTPUT_REQUEST_TIMEOUT": "-1"}, "seconds"),
    ],
)
def test_inconsistent_keys_are_refused(environ: dict[str, str], complaint: str) -> None:
    with pytest.raises(CredentialsError, match=re.escape(complaint)) as caught:
        engine_settings(_target(), None, environ)
    assert PASSWORD not in str(caught.value)


def test_secrets_are_masked_in_reprs() -> None:
    secret = Secret(PASSWORD)
    assert PASSWORD not in repr(secret) and PASSWORD not in str(secret) and PASSWORD not in f"{secret}"
    settings = engine_settings(_target(), None, {"AUDITFWD_OUTPUT_USERNAME": "u", "AUDITFWD_OUTPUT_PASSWORD": PASSWORD})
    assert PASSWORD not in repr(settings)
    assert "***" in repr(settings)


def test_client_options_verify_certificates_by_default(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not read here")
    https = engine_settings(
        parse_target("opensearch", "https", "//a,b"),
        None,
        {"AUDITFWD_OUTPUT_CA_FILE": str(ca), "AUDITFWD_OUTPUT_USERNAME": "u", "AUDITFWD_OUTPUT_PASSWORD": PASSWORD},
    )
    for options in (elasticsearch_options(https), opensearch_options(https)):
        assert options["verify_certs"] is True
        assert options["ca_certs"] == str(ca)
        # Two hosts: one attempt on each within a request.
        assert options["max_retries"] == 1
        assert options["retry_on_status"] == ()
    assert elasticsearch_options(https)["basic_auth"] == ("u", PASSWORD)
    assert opensearch_options(https)["http_auth"] == ("u", PASSWORD)
    plain = engine_settings(parse_target("elasticsearch", "http", "//a"), None, {})
    assert "verify_certs" not in elasticsearch_options(plain)
    assert elasticsearch_options(plain)["max_retries"] == 0


# ---------------------------------------------------------------------------- a recording HTTPS server


@dataclass
class Recorder:
    """A minimal HTTPS endpoint that answers ``_bulk`` like an engine and records the requests."""

    port: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    #: Bodies larger than this (uncompressed) are answered 413, as http.max_content_length does.
    max_body: int = 1 << 30


async def _serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, recorder: Recorder) -> None:
    peer = writer.get_extra_info("peercert")
    with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError, ssl.SSLError):
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, path, _ = lines[0].split(" ", 2)
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            recorder.requests.append({"method": method, "path": path, "headers": headers, "peer": peer, "body": body})
            count = body.count(b"\n") // 2
            status = "200 OK"
            answer = orjson.dumps({"errors": False, "items": [{"create": {"status": 201}}] * count})
            if len(body) > recorder.max_body:
                status = "413 Request Entity Too Large"
                answer = b'{"error":{"type":"content_too_long","reason":"too long"},"status":413}'
            writer.write(
                f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n".encode()
                + b"X-Elastic-Product: Elasticsearch\r\n"
                + f"content-length: {len(answer)}\r\n\r\n".encode()
                + answer
            )
            await writer.drain()
    writer.close()


@contextlib.asynccontextmanager
async def recording_server(
    pki: Pki, require_client_cert: bool = False, max_body: int = 1 << 30
) -> AsyncIterator[Recorder]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    if require_client_cert:
        context.load_verify_locations(pki.ca)
        context.verify_mode = ssl.CERT_REQUIRED
    recorder = Recorder(max_body=max_body)
    server = await asyncio.start_server(
        lambda reader, writer: _serve(reader, writer, recorder), "127.0.0.1", 0, ssl=context
    )
    recorder.port = server.sockets[0].getsockname()[1]
    try:
        yield recorder
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 2)


def _sink(engine: str, port: int, environ: dict[str, str]) -> BulkSink:
    return create_engine_sink(output_settings(f"{engine}+https://127.0.0.1:{port}", None, environ))


DOCUMENT = Document("id-1", b'{"@timestamp":"2024-01-01T00:00:00.000Z"}')


@pytest.mark.parametrize("engine", ENGINES)
async def test_tls_is_verified_by_default(engine: str, pki: Pki) -> None:
    async with recording_server(pki) as recorder:
        sink = _sink(engine, recorder.port, {})
        try:
            with pytest.raises(SinkError, match=r"(?i)certificate|ssl"):
                await sink.send([DOCUMENT])
        finally:
            await sink.close()
        assert recorder.requests == []
        sink = _sink(engine, recorder.port, {"AUDITFWD_OUTPUT_CA_FILE": str(pki.ca)})
        try:
            assert [result.outcome for result in await sink.send([DOCUMENT])] == [Outcome.DELIVERED]
        finally:
            await sink.close()
        (request,) = recorder.requests
        assert request["path"].startswith("/_bulk?filter_path=")
        assert request["headers"]["content-encoding"] == "gzip"
        assert request["body"].endswith(DOCUMENT.body + b"\n")
        assert b'"_id":"id-1"' in request["body"] and b'{"create":' in request["body"]


@pytest.mark.parametrize("engine", ENGINES)
async def test_client_certificate_is_presented(engine: str, pki: Pki) -> None:
    async with recording_server(pki, require_client_cert=True) as recorder:
        trusted = {"AUDITFWD_OUTPUT_CA_FILE": str(pki.ca)}
        sink = _sink(engine, recorder.port, trusted)
        try:
            with pytest.raises(SinkError):
                await sink.send([DOCUMENT])
        finally:
            await sink.close()
        with_cert = {
            **trusted,
            "AUDITFWD_OUTPUT_CLIENT_CERT": str(pki.client_cert),
            "AUDITFWD_OUTPUT_CLIENT_KEY": str(pki.client_key),
        }
        sink = _sink(engine, recorder.port, with_cert)
        try:
            assert [result.outcome for result in await sink.send([DOCUMENT])] == [Outcome.DELIVERED]
        finally:
            await sink.close()
        subject = dict(item[0] for item in recorder.requests[-1]["peer"]["subject"])
        assert subject["commonName"] == "auditfwd client"


@pytest.mark.parametrize(
    ("engine", "key", "header"),
    [
        (
            "elasticsearch",
            f"{API_KEY_ID}:{API_KEY_SECRET}",
            "ApiKey " + base64.b64encode(f"{API_KEY_ID}:{API_KEY_SECRET}".encode()).decode(),
        ),
        ("elasticsearch", API_KEY_SECRET, f"ApiKey {API_KEY_SECRET}"),
        ("opensearch", API_KEY_SECRET, f"ApiKey {API_KEY_SECRET}"),
    ],
)
async def test_api_key_header(engine: str, key: str, header: str, pki: Pki) -> None:
    async with recording_server(pki) as recorder:
        sink = _sink(engine, recorder.port, {"AUDITFWD_OUTPUT_CA_FILE": str(pki.ca), "AUDITFWD_OUTPUT_API_KEY": key})
        try:
            await sink.send([DOCUMENT])
        finally:
            await sink.close()
    assert recorder.requests[-1]["headers"]["authorization"] == header


@pytest.mark.parametrize("engine", ENGINES)
async def test_no_secret_in_logs_reprs_or_errors(engine: str, pki: Pki, caplog: pytest.LogCaptureFixture) -> None:
    basic = base64.b64encode(f"shipper:{PASSWORD}".encode()).decode()
    environ = {
        "AUDITFWD_OUTPUT_CA_FILE": str(pki.ca),
        "AUDITFWD_OUTPUT_USERNAME": "shipper",
        "AUDITFWD_OUTPUT_PASSWORD": PASSWORD,
    }
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        async with recording_server(pki) as recorder:
            sink = _sink(engine, recorder.port, environ)
            texts += [repr(sink), repr(sink.client), sink.describe(), repr(vars(sink))]
            try:
                await sink.send([DOCUMENT])
            finally:
                await sink.close()
            assert recorder.requests[-1]["headers"]["authorization"] == f"Basic {basic}"
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            closed_port = probe.getsockname()[1]
        sink = _sink(engine, closed_port, environ)
        try:
            with pytest.raises(SinkError) as caught:
                await sink.send([DOCUMENT])
            texts += [str(caught.value), repr(caught.value)]
        finally:
            await sink.close()
    texts.append(caplog.text)
    assert caplog.records, "the clients logged nothing at DEBUG: the test would prove nothing"
    for text in texts:
        assert PASSWORD not in text
        assert basic not in text


# ---------------------------------------------------------------------------- setup and check on real nodes


@pytest.fixture(params=ENGINES)
def node(request: pytest.FixtureRequest) -> Node:
    found: Node = request.getfixturevalue(f"{request.param}_node")
    return found


def _url(node: Node) -> str:
    return f"{node.engine}+{node.url}"


def _auditfwd(capsys: pytest.CaptureFixture[str], *words: str) -> tuple[int, list[str], str]:
    status = main(list(words))
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err


def _actions(lines: list[str]) -> dict[str, str]:
    """``setup`` output -> object path: action."""
    actions: dict[str, str] = {}
    for line in lines:
        action, _, rest = line.partition(" ")
        if action in ("created", "upgraded", "unchanged", "skipped", "failed"):
            actions[rest.strip().split(":", 1)[0]] = action
    return actions


def test_setup_is_idempotent_and_versioned(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _auditfwd(capsys, "setup", "--output", _url(node))
    assert status == 0, err
    status, lines, err = _auditfwd(capsys, "setup", "--output", _url(node))
    assert status == 0, err
    actions = _actions(lines)
    policy = next(path for path in engine_objects(node.engine) if "polic" in path)
    # The test builds of both engines lack lifecycle management: the policy is skipped, said so.
    assert actions.pop(policy) == "skipped"
    assert any("lifecycle management (ILM)" in line or "state management (ISM)" in line for line in lines)
    assert set(actions.values()) <= {"unchanged", "skipped"}, lines
    assert "_index_template/logs-auditd_manager.auditd" in actions
    if node.engine == "elasticsearch":
        assert any(line.startswith("field types this node lacks") for line in lines), lines

    # An older version is upgraded, a newer one left alone.
    path = "_component_template/auditfwd-auditd_manager.auditd@settings"
    body = engine_objects(node.engine)[path]
    try:
        call(node, "PUT", path, {**body, "version": TEMPLATE_VERSION - 1})
        status, lines, _ = _auditfwd(capsys, "setup", "--output", _url(node))
        assert status == 0
        assert f"upgraded   {path}: version {TEMPLATE_VERSION - 1} -> version {TEMPLATE_VERSION}" in lines
        assert _actions(lines)[path] == "upgraded"
        assert call(node, "GET", path)["component_templates"][0]["component_template"]["version"] == TEMPLATE_VERSION

        call(node, "PUT", path, {**body, "version": TEMPLATE_VERSION + 98})
        status, lines, _ = _auditfwd(capsys, "setup", "--output", _url(node))
        assert _actions(lines)[path] == "skipped"
        assert any(f"version {TEMPLATE_VERSION + 98} is installed, newer" in line for line in lines)

        # Same version, other content (a declaration changed without a new version): replaced.
        call(node, "PUT", path, {**body, "template": {"settings": {"index": {"codec": "default"}}}})
        status, lines, _ = _auditfwd(capsys, "setup", "--output", _url(node))
        assert _actions(lines)[path] == "upgraded"
        assert any("other content" in line for line in lines)
    finally:
        call(node, "PUT", path, with_digest(path, body, body_digest(body)))
    status, lines, _ = _auditfwd(capsys, "setup", "--output", _url(node))
    assert _actions(lines)[path] == "unchanged"


def test_check_names_engine_version_and_security(node: Node, capsys: pytest.CaptureFixture[str]) -> None:
    assert _auditfwd(capsys, "setup", "--output", _url(node))[0] == 0
    local = call(node, "GET", "_nodes/_local")
    version = next(iter(local["nodes"].values()))["version"]
    status, lines, err = _auditfwd(capsys, "check", "--output", _url(node))
    assert status == 0, (lines, err)
    text = "\n".join(lines)
    assert f"{node.engine} {version} (cluster {local['cluster_name']}" in text
    assert "security disabled" in text
    assert f"version {TEMPLATE_VERSION} installed" in text
    assert "PROBLEM" not in text


def test_check_finds_the_wrong_engine(
    opensearch_node: Node, elasticsearch_node: Node, capsys: pytest.CaptureFixture[str]
) -> None:
    status, lines, _ = _auditfwd(capsys, "check", "--output", f"elasticsearch+{opensearch_node.url}")
    assert status == 1
    assert any("not Elasticsearch" in line for line in lines), lines
    status, lines, _ = _auditfwd(capsys, "check", "--output", f"opensearch+{elasticsearch_node.url}")
    assert status == 1
    assert any("the node is elasticsearch" in line for line in lines), lines


@pytest.mark.parametrize("engine", ENGINES)
def test_check_of_an_unreachable_node(engine: str, capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    status, lines, _ = _auditfwd(capsys, "check", "--output", f"{engine}+http://127.0.0.1:{port}")
    assert status == 1
    assert lines[0].startswith(f"PROBLEM  cannot reach {engine}+http://127.0.0.1:{port}")


def test_setup_needs_an_engine_output(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _auditfwd(capsys, "setup", "--output", "stdout")
    assert status == 2
    assert "not an engine output" in err


def test_credentials_in_the_output_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = _auditfwd(capsys, "check", "--output", f"elasticsearch+https://elastic:{PASSWORD}@127.0.0.1:1")
    assert status == 2
    assert "credentials do not belong in the output" in err


def test_refused_output_is_not_echoed_with_its_password(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, err = _auditfwd(capsys, "check", "--output", f"elasticsearch+https://elastic:{PASSWORD}@127.0.0.1:1")
    assert PASSWORD not in err + "".join(out)


@pytest.mark.parametrize("engine", ENGINES)
async def test_too_large_requests_are_split(engine: str, pki: Pki) -> None:
    pad = b"x" * 900
    documents = [Document(f"id-{n}", b'{"@timestamp":"2024-01-01T00:00:00.000Z","pad":"%s"}' % pad) for n in range(40)]
    huge = Document("huge", b'{"pad":"%s"}' % (b"y" * 20_000))
    async with recording_server(pki, max_body=12_000) as recorder:
        sink = _sink(engine, recorder.port, {"AUDITFWD_OUTPUT_CA_FILE": str(pki.ca)})
        try:
            results = await sink.send([*documents, huge])
        finally:
            await sink.close()
    assert [result.outcome for result in results[:-1]] == [Outcome.DELIVERED] * len(documents)
    assert results[-1].outcome is Outcome.REJECTED
    assert "larger than the engine accepts" in results[-1].reason
    assert sink.stats.splits > 0
    accepted = [request["body"] for request in recorder.requests if len(request["body"]) <= 12_000]
    assert sum(body.count(b"\n") // 2 for body in accepted) == len(documents)


# ---------------------------------------------------------------------------- bulk bodies and answers


def test_bulk_body_names_the_data_stream_and_the_id() -> None:
    documents = [
        Document(
            "a",
            b'{"@timestamp":"t","data_stream":{"type":"logs","dataset":"auditd_manager.auditd","namespace":"prod"}}',
        ),
        Document('quote"id', b'{"data_stream": {"namespace": "dev", "type": "logs", "dataset": "x.y"}}'),
        Document("c", b'{"no":"stream"}'),
    ]
    lines = bulk_body(documents).split(b"\n")
    assert lines[-1] == b""
    actions = [orjson.loads(line) for line in lines[0:-1:2]]
    assert actions == [
        {"create": {"_index": "logs-auditd_manager.auditd-prod", "_id": "a"}},
        {"create": {"_index": "logs-x.y-dev", "_id": 'quote"id'}},
        {"create": {"_index": DEFAULT_DATA_STREAM, "_id": "c"}},
    ]
    assert lines[1:-1:2] == [document.body for document in documents]


def test_requests_stay_under_the_byte_limit() -> None:
    documents = [Document(str(n), b"x" * 1000) for n in range(50)]
    groups = request_groups(documents, max_bytes=10_000)
    assert len(groups) > 1
    assert [doc for group in groups for doc in group] == documents
    assert all(sum(len(doc.body) + 128 for doc in group) <= 10_000 for group in groups)
    big = Document("big", b"x" * 50_000)
    assert [list(group) for group in request_groups([big], max_bytes=10_000)] == [[big]]


@pytest.mark.parametrize(
    ("status", "error", "outcome"),
    [
        (201, None, Outcome.DELIVERED),
        (409, {"type": "version_conflict_engine_exception", "reason": "exists"}, Outcome.DELIVERED),
        (429, {"type": "es_rejected_execution_exception", "reason": "queue full"}, Outcome.RETRY),
        (429, {"type": "opensearch_rejected_execution_exception", "reason": "queue full"}, Outcome.RETRY),
        (503, {"type": "unavailable_shards_exception", "reason": "primary"}, Outcome.RETRY),
        (500, {"type": "exception", "reason": "boom"}, Outcome.RETRY),
        (403, {"type": "security_exception", "reason": "not allowed"}, Outcome.RETRY),
        (404, {"type": "index_not_found_exception", "reason": "no such index"}, Outcome.RETRY),
        (400, {"type": "cluster_block_exception", "reason": "read-only"}, Outcome.RETRY),
        (
            400,
            {"type": "document_parsing_exception", "reason": "bad", "caused_by": {"type": "x", "reason": "y"}},
            Outcome.REJECTED,
        ),
        (400, {"type": "strict_dynamic_mapping_exception", "reason": "strict"}, Outcome.REJECTED),
    ],
)
def test_item_results(status: int, error: dict[str, Any] | None, outcome: Outcome) -> None:
    answer: dict[str, Any] = {"status": status}
    if error is not None:
        answer["error"] = error
    result = item_result({"create": answer})
    assert result.outcome is outcome
    if error is not None and outcome is Outcome.REJECTED:
        assert result.reason.startswith(f"{status} {error['type']}: ")
        if "caused_by" in error:
            assert result.reason.endswith("(caused by x: y)")


def test_bulk_answers_must_match_the_request() -> None:
    with pytest.raises(RequestFailed, match="2 items for 3"):
        bulk_results({"errors": False, "items": [{"create": {"status": 201}}] * 2}, 3)
    with pytest.raises(RequestFailed, match="not a bulk answer"):
        bulk_results({"acknowledged": True}, 1)
    rejected = {"create": {"status": 429, "error": {"type": "es_rejected_execution_exception"}}}
    answer = {"errors": True, "items": [{"create": {"status": 201}}, rejected]}
    assert [result.outcome for result in bulk_results(answer, 2)] == [Outcome.DELIVERED, Outcome.RETRY]
