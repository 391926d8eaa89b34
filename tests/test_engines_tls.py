"""TLS, client certificates and basic authentication against the real nodes.

The test nodes have no security plugin, so :mod:`tests.tls_proxy` stands in front of each: it
serves HTTPS with the test CA's certificate, requires the client certificate and checks the
``Authorization`` header of every request before passing it to the node.  ``auditfwd setup``,
``auditfwd check`` and the bulk sink then go through TLS and credentials and still meet the
engine's own answers (product headers, bulk items, template APIs).
"""

from __future__ import annotations

import asyncio
import base64
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from forwarder.cli import main
from forwarder.ecs.normalize import NormalizeOptions
from forwarder.sinks import Outcome, SinkError
from forwarder.sinks.engines import create_engine_sink, output_settings
from tests.engines import ENGINES, Node
from tests.pki import Pki
from tests.run_helpers import HOST, generated
from tests.test_engines_sinks import _stream, as_documents, deliver, drop_stream, normalized_lines, stored_ids
from tests.tls_proxy import TlsProxy

USER = "shipper"
PASSWORD = "pw-" + uuid.uuid4().hex


@pytest.fixture(params=ENGINES)
def node(request: pytest.FixtureRequest) -> Node:
    found: Node = request.getfixturevalue(f"{request.param}_node")
    return found


@pytest.fixture
def proxy(node: Node, pki: Pki) -> Iterator[TlsProxy]:
    basic = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    with TlsProxy(pki, node.url, f"Basic {basic}", require_client_cert=True).running() as running:
        yield running


def _environ(pki: Pki, password_file: Path) -> dict[str, str]:
    return {
        "AUDITFWD_OUTPUT_CA_FILE": str(pki.ca),
        "AUDITFWD_OUTPUT_CLIENT_CERT": str(pki.client_cert),
        "AUDITFWD_OUTPUT_CLIENT_KEY": str(pki.client_key),
        "AUDITFWD_OUTPUT_USERNAME": USER,
        "AUDITFWD_OUTPUT_PASSWORD_FILE": str(password_file),
    }


def _password_file(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "password"
    path.write_text(password + "\n")
    path.chmod(0o600)
    return path


#: Sets the environment for a password; returns the output URL through the proxy and the environment.
Connect = Callable[[str], tuple[str, dict[str, str]]]


@pytest.fixture
def connect(node: Node, proxy: TlsProxy, pki: Pki, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Connect:
    def configure(password: str) -> tuple[str, dict[str, str]]:
        environ = _environ(pki, _password_file(tmp_path, password))
        for name, value in environ.items():
            monkeypatch.setenv(name, value)
        return f"{node.engine}+https://127.0.0.1:{proxy.port}", environ

    return configure


def test_setup_check_and_shipping_over_tls(
    node: Node, proxy: TlsProxy, connect: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    output, environ = connect(PASSWORD)

    assert main(["setup", "--output", output]) == 0
    assert main(["check", "--output", output]) == 0
    printed = capsys.readouterr()
    assert f"{node.engine}" in printed.out.lower()
    assert PASSWORD not in printed.out + printed.err

    namespace = "tls" + uuid.uuid4().hex[:8]
    lines = normalized_lines(generated(1500, seed=5), NormalizeOptions(host_name=HOST, namespace=namespace))
    documents = as_documents(lines)
    sink = create_engine_sink(output_settings(output, None, environ))
    try:
        results = asyncio.run(deliver(sink, documents, batch=250))
    finally:
        asyncio.run(sink.close())
    stream = _stream(namespace)
    try:
        assert all(result.outcome is Outcome.DELIVERED for result in results)
        # Read back from the node itself, not through the proxy.
        stored = stored_ids(node, stream)
        assert sorted(stored) == sorted(document.id for document in documents)
    finally:
        drop_stream(node, stream)
    assert proxy.log.refused == 0
    assert proxy.log.passed >= 1 + len(documents) // 250
    assert set(proxy.log.client_subjects) == {"auditfwd client"}


def test_a_wrong_password_is_refused_and_not_shown(
    proxy: TlsProxy, connect: Connect, capsys: pytest.CaptureFixture[str]
) -> None:
    wrong = "wrong-" + uuid.uuid4().hex
    output, environ = connect(wrong)

    assert main(["check", "--output", output]) != 0
    assert main(["setup", "--output", output]) != 0
    printed = capsys.readouterr()
    assert "401" in printed.out + printed.err
    assert wrong not in printed.out + printed.err

    sink = create_engine_sink(output_settings(output, None, environ))
    documents = as_documents(
        normalized_lines(generated(50, seed=6), NormalizeOptions(host_name=HOST, namespace="tlsrefused"))
    )
    try:
        with pytest.raises(SinkError) as caught:
            asyncio.run(sink.send(documents))
    finally:
        asyncio.run(sink.close())
    assert "401" in str(caught.value)
    assert wrong not in str(caught.value) + repr(caught.value)
    assert proxy.log.refused >= 3
    assert proxy.log.passed == 0
