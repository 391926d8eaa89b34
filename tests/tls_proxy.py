"""A TLS-terminating, authenticating proxy in front of a real engine node.

The test nodes run without their security plugins (the distributions the tests obtain have
none), so this proxy stands where those plugins would: it serves HTTPS with a certificate of the
test CA, may require a client certificate, checks every request's ``Authorization`` header
(answering 401 as the engines do when it is wrong or missing) and passes the rest to the node
unchanged.  The forwarder's TLS and credential handling then meets a real engine's answers.

It runs its own event loop in a thread, so synchronous code (``auditfwd setup`` through
``forwarder.cli.main``) and async tests can both use it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from tests.pki import Pki

#: What the engines answer (401) when credentials are missing or wrong.
UNAUTHORIZED_BODY = b'{"error":{"type":"security_exception","reason":"unable to authenticate user"},"status":401}'


@dataclass
class ProxyLog:
    """What the proxy saw: requests passed on, requests refused, client certificate subjects."""

    passed: int = 0
    refused: int = 0
    client_subjects: list[str] = field(default_factory=list)


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    return {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines if line)}


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while chunk := await reader.read(1 << 16):
            writer.write(chunk)
            await writer.drain()
    with contextlib.suppress(ConnectionError, OSError, RuntimeError):
        writer.close()


async def _serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    upstream: tuple[str, int],
    authorization: str,
    log: ProxyLog,
) -> None:
    peer = writer.get_extra_info("peercert")
    if peer:
        log.client_subjects.append(dict(item[0] for item in peer["subject"])["commonName"])
    up_reader, up_writer = await asyncio.open_connection(*upstream)
    answers = asyncio.create_task(_pump(up_reader, writer))
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            headers = _headers(head)
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            if headers.get("authorization") != authorization:
                log.refused += 1
                # The node's earlier answers on this connection are out: clients wait for each.
                writer.write(
                    b"HTTP/1.1 401 Unauthorized\r\ncontent-type: application/json\r\n"
                    b'www-authenticate: Basic realm="security"\r\nconnection: close\r\n'
                    + f"content-length: {len(UNAUTHORIZED_BODY)}\r\n\r\n".encode()
                    + UNAUTHORIZED_BODY
                )
                await writer.drain()
                break
            log.passed += 1
            up_writer.write(head + body)
            await up_writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.LimitOverrunError):
        pass
    finally:
        answers.cancel()
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            up_writer.close()
            writer.close()


class TlsProxy:
    """HTTPS on ``127.0.0.1:port`` in front of ``upstream_url`` (``http://host:port``)."""

    def __init__(self, pki: Pki, upstream_url: str, authorization: str, require_client_cert: bool) -> None:
        split = urlsplit(upstream_url)
        self._upstream = (split.hostname or "127.0.0.1", split.port or 80)
        self._authorization = authorization
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(pki.server_cert, pki.server_key)
        if require_client_cert:
            self._context.load_verify_locations(pki.ca)
            self._context.verify_mode = ssl.CERT_REQUIRED
        self.log = ProxyLog()
        self.port = 0
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="tls-proxy", daemon=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        server = self._loop.run_until_complete(
            asyncio.start_server(
                lambda r, w: _serve(r, w, self._upstream, self._authorization, self.log),
                "127.0.0.1",
                0,
                ssl=self._context,
            )
        )
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            server.close()
            self._loop.run_until_complete(self._cancel_connections())
            self._loop.close()

    async def _cancel_connections(self) -> None:
        pending = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[TlsProxy]:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the TLS proxy did not start")
        try:
            yield self
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
