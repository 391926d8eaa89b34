"""Where an engine output connects and how it proves who it is: hosts, TLS, credentials.

An engine output is written ``elasticsearch+https://HOST[:PORT][,HOST[:PORT]...]`` (or
``opensearch+https://``, and ``+http://`` for a node without TLS).  Credentials never go into
that string (it is logged): they are the configuration keys of :data:`ENGINE_KEYS`, set in the
TOML file, in ``AUDITFWD_<KEY>`` environment variables, or read from a file
(``output_password_file``, ``output_api_key_file``).

Secrets are held in :class:`Secret`, whose ``repr`` and ``str`` are ``***``: a settings object,
a sink or an exception that shows them prints the mask, not the value.
"""

from __future__ import annotations

import logging
import os
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

log = logging.getLogger(__name__)

#: Port of both engines' HTTP interface when the output names none.
DEFAULT_PORT: Final = 9200

#: Seconds one request may take.  A bulk request queued behind merges or a garbage collection on
#: a busy node takes seconds; a minute tells a hung node from a slow one, and the request is
#: then sent again (ids make that harmless).
DEFAULT_REQUEST_TIMEOUT: Final = 60.0

#: Engine names, as the output schemes spell them.
ENGINE_NAMES: Final = ("elasticsearch", "opensearch")

#: Transport schemes after ``<engine>+``.
TRANSPORTS: Final = ("https", "http")

#: Prefix of the environment variables of the configuration keys.
ENV_PREFIX: Final = "AUDITFWD_"

#: Secret values shown in place of the real one.
MASK: Final = "***"


class CredentialsError(ValueError):
    """An engine output's settings are invalid (the message names the key, never a secret)."""


class Secret:
    """A password or API key: ``repr`` and ``str`` show ``***``; :meth:`reveal` gives the value."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself, for the request headers only."""
        return self._value

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __str__(self) -> str:
        return MASK


@dataclass(frozen=True, slots=True)
class EngineKey:
    """One configuration key of the engine outputs.

    Attributes:
        name: the key (``output_password``); ``AUDITFWD_OUTPUT_PASSWORD`` in the environment.
        doc: its meaning, for the configuration reference.
        default: its value when unset.
        secret: never shown (logs, ``--check-config``, errors).
    """

    name: str
    doc: str
    default: str | bool | float
    secret: bool = False


#: The keys engine outputs read from the run's configuration.  ``forwarder.config.Config``
#: declares them; until it does, they are read from the environment only.
ENGINE_KEYS: Final = (
    EngineKey("output_username", "User name of basic authentication to the engine (empty: none).", ""),
    EngineKey("output_password", "Password of output_username.", "", secret=True),
    EngineKey("output_password_file", "File holding the password (its first line) instead of output_password.", ""),
    EngineKey(
        "output_api_key",
        "API key, sent as 'Authorization: ApiKey KEY' (Elasticsearch: the encoded key; OpenSearch 3.7+: the token).",
        "",
        secret=True,
    ),
    EngineKey("output_api_key_file", "File holding the API key (its first line) instead of output_api_key.", ""),
    EngineKey("output_ca_file", "PEM file of the CAs that sign the engine's certificate (empty: the system's).", ""),
    EngineKey("output_client_cert", "PEM certificate for TLS client authentication (empty: none).", ""),
    EngineKey("output_client_key", "PEM private key of output_client_cert.", ""),
    EngineKey("output_tls_verify", "Verify the engine's certificate and host name (turn off only for trials).", True),
    EngineKey("output_request_timeout", "Seconds one request to the engine may take.", DEFAULT_REQUEST_TIMEOUT),
)

_KEYS_BY_NAME: Final = {key.name: key for key in ENGINE_KEYS}


@dataclass(frozen=True, slots=True)
class EngineTarget:
    """Which engine, over which transport, on which hosts.

    Attributes:
        engine: ``elasticsearch`` or ``opensearch``.
        transport: ``https`` or ``http``.
        hosts: ``host:port`` of each node, in the order given (``[v6]:port`` for IPv6).
    """

    engine: str
    transport: str
    hosts: tuple[str, ...]

    @property
    def urls(self) -> list[str]:
        """Base URL of each node."""
        return [f"{self.transport}://{host}" for host in self.hosts]

    def describe(self) -> str:
        """The output as written (without credentials: they are never part of it)."""
        return f"{self.engine}+{self.transport}://{','.join(self.hosts)}"


@dataclass(frozen=True, slots=True)
class Credentials:
    """How the forwarder authenticates: nothing, basic authentication or an API key."""

    username: str = ""
    password: Secret | None = None
    api_key: Secret | None = None

    def describe(self) -> str:
        """``api key``, ``user NAME`` or ``none`` (never the secret)."""
        if self.api_key is not None:
            return "api key"
        if self.username:
            return f"user {self.username}"
        return "none"


@dataclass(frozen=True, slots=True)
class Tls:
    """TLS of an ``https`` output: the server's certificate is verified unless ``verify`` is off.

    Attributes:
        verify: check the certificate chain and the host name.
        ca_file: PEM bundle of trusted CAs (empty: the system's store).
        client_cert: PEM client certificate (empty: none).
        client_key: PEM key of the client certificate.
    """

    verify: bool = True
    ca_file: str = ""
    client_cert: str = ""
    client_key: str = ""


@dataclass(frozen=True, slots=True)
class EngineSettings:
    """Everything an engine client needs."""

    target: EngineTarget
    credentials: Credentials = field(default_factory=Credentials)
    tls: Tls = field(default_factory=Tls)
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT

    def describe(self) -> str:
        return self.target.describe()


def parse_target(engine: str, transport: str, rest: str) -> EngineTarget:
    """The part of the output after ``<engine>+<transport>:`` -> the target.

    Args:
        engine: ``elasticsearch`` or ``opensearch``.
        transport: ``https`` or ``http``.
        rest: ``//host[:port][,host[:port]...][/]``.

    Raises:
        CredentialsError: no host, an invalid host or port, credentials, a path or a query.
    """
    if engine not in ENGINE_NAMES or transport not in TRANSPORTS:
        raise CredentialsError(f"unknown engine output {engine}+{transport}")
    if not rest.startswith("//"):
        raise CredentialsError("expected // and the hosts after the scheme")
    hosts_text = rest[2:]
    if hosts_text.endswith("/"):
        hosts_text = hosts_text[:-1]
    if not hosts_text:
        raise CredentialsError("no host")
    hosts: list[str] = []
    for item in hosts_text.split(","):
        hosts.append(_host(item.strip(), transport))
    return EngineTarget(engine, transport, tuple(hosts))


def _host(item: str, transport: str) -> str:
    if not item:
        raise CredentialsError("an empty host between commas")
    if "@" in item:
        raise CredentialsError(
            "credentials do not belong in the output (it is logged): use output_username and "
            "output_password, or output_api_key, or their _file keys"
        )
    if any(mark in item for mark in "/?#"):
        raise CredentialsError(f"{item!r}: only host[:port] is accepted (no path, query or fragment)")
    try:
        parts = urllib.parse.urlsplit(f"{transport}://{item}")
        port = parts.port
    except ValueError as exc:
        raise CredentialsError(f"{item!r}: {exc}") from None
    if not parts.hostname:
        raise CredentialsError(f"{item!r}: no host name")
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{host}:{port if port is not None else DEFAULT_PORT}"


def check_target(engine: str, transport: str) -> Any:
    """A ``check`` function for the sink registry: the rest of the output -> error text or None."""

    def check(rest: str) -> str | None:
        try:
            parse_target(engine, transport, rest)
        except CredentialsError as exc:
            return str(exc)
        return None

    return check


def key_value(config: Any, name: str, environ: Mapping[str, str] | None = None) -> Any:
    """A key's value: the configuration's when it declares the key, else ``AUDITFWD_<KEY>``,
    else the default.

    Raises:
        CredentialsError: an environment value that does not parse (the message hides secrets).
    """
    key = _KEYS_BY_NAME[name]
    if config is not None and hasattr(config, name):
        return getattr(config, name)
    environ = os.environ if environ is None else environ
    variable = ENV_PREFIX + name.upper()
    if variable not in environ:
        return key.default
    text = environ[variable]
    if isinstance(key.default, bool):
        lowered = text.strip().lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise CredentialsError(f"{name} (environment {variable}): expected true or false")
    if isinstance(key.default, float):
        try:
            number = float(text)
        except ValueError:
            number = -1.0
        if not 0 < number <= 3600:
            raise CredentialsError(f"{name} (environment {variable}): expected seconds from 0 to 3600")
        return number
    return text


def read_secret_file(path: str, key: str) -> Secret:
    """The first line of a secret file, without its line end and surrounding blanks.

    Raises:
        CredentialsError: unreadable or empty file (the message names the key and the path).
    """
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else type(exc).__name__
        raise CredentialsError(f"{key}: cannot read {path}: {reason}") from None
    value = first.strip()
    if not value:
        raise CredentialsError(f"{key}: {path} is empty")
    return Secret(value)


def _secret(config: Any, name: str, environ: Mapping[str, str] | None) -> Secret | None:
    value = str(key_value(config, name, environ) or "")
    path = str(key_value(config, f"{name}_file", environ) or "")
    if value and path:
        raise CredentialsError(f"set either {name} or {name}_file, not both")
    if path:
        return read_secret_file(path, f"{name}_file")
    return Secret(value) if value else None


def engine_settings(target: EngineTarget, config: Any, environ: Mapping[str, str] | None = None) -> EngineSettings:
    """The settings of an engine output from the run's configuration (and the environment).

    Args:
        target: the parsed output.
        config: the run's :class:`forwarder.config.Config` (or None: environment and defaults).
        environ: the environment for keys the configuration does not declare.

    Raises:
        CredentialsError: inconsistent keys (password without user, both an API key and a
            password, a client key without its certificate, unreadable secret files).
    """
    username = str(key_value(config, "output_username", environ) or "")
    password = _secret(config, "output_password", environ)
    api_key = _secret(config, "output_api_key", environ)
    if password is not None and not username:
        raise CredentialsError("output_password is set but output_username is not")
    if username and password is None:
        raise CredentialsError("output_username is set but neither output_password nor output_password_file")
    if api_key is not None and username:
        raise CredentialsError("set either output_api_key or output_username/output_password, not both")
    tls = Tls(
        verify=bool(key_value(config, "output_tls_verify", environ)),
        ca_file=str(key_value(config, "output_ca_file", environ) or ""),
        client_cert=str(key_value(config, "output_client_cert", environ) or ""),
        client_key=str(key_value(config, "output_client_key", environ) or ""),
    )
    if tls.client_key and not tls.client_cert:
        raise CredentialsError("output_client_key is set but output_client_cert is not")
    for name, path in (("output_ca_file", tls.ca_file), ("output_client_cert", tls.client_cert)):
        if path and not os.access(path, os.R_OK):
            raise CredentialsError(f"{name}: cannot read {path}")
    if tls.client_key and not os.access(tls.client_key, os.R_OK):
        raise CredentialsError(f"output_client_key: cannot read {tls.client_key}")
    timeout = float(key_value(config, "output_request_timeout", environ))
    return EngineSettings(target, Credentials(username, password, api_key), tls, timeout)


def warn_if_insecure(settings: EngineSettings) -> None:
    """Log, once per client, what weakens the connection: unverified TLS, credentials in clear."""
    if settings.target.transport == "https" and not settings.tls.verify:
        log.warning("%s: TLS certificates are NOT verified (output_tls_verify = false)", settings.describe())
    if settings.target.transport == "http" and settings.credentials.describe() != "none":
        log.warning("%s: credentials are sent without TLS", settings.describe())
