"""A private certificate authority for the TLS tests (server and client certificates for
127.0.0.1), made with ``openssl``.  Registered as a pytest plugin by ``tests/conftest.py``."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True, timeout=60)


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA, a server certificate for 127.0.0.1 and a client certificate."""
    base = tmp_path_factory.mktemp("pki")
    ca_key, ca = base / "ca.key", base / "ca.pem"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key), "-out", str(ca),
             "-days", "2", "-subj", "/CN=auditfwd test CA")  # fmt: skip
    paths: dict[str, tuple[Path, Path]] = {}
    for name, extension in (("server", "subjectAltName=IP:127.0.0.1,DNS:localhost"), ("client", "")):
        key, request, cert = base / f"{name}.key", base / f"{name}.csr", base / f"{name}.pem"
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(request),
                 "-subj", f"/CN=auditfwd {name}")  # fmt: skip
        extra = ["-extfile", str(base / f"{name}.ext")] if extension else []
        if extension:
            (base / f"{name}.ext").write_text(extension + "\n")
        _openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key), "-CAcreateserial",
                 "-out", str(cert), "-days", "2", *extra)  # fmt: skip
        paths[name] = (cert, key)
    return Pki(ca, *paths["server"], *paths["client"])
