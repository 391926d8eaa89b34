"""Configuration of ``auditfwd run``: one TOML file, ``AUDITFWD_*`` variables, flags.

Every key is declared once below, with its default, unit and meaning.  Sources, later ones win:

1. the defaults declared here;
2. the TOML file (``--config FILE`` or ``AUDITFWD_CONFIG``), top-level keys;
3. environment variables ``AUDITFWD_<KEY>`` (``AUDITFWD_STATE_DIR=/srv/auditfwd``);
4. flags (``--input``, ``--output``, ``--state-dir``, ``--from``, and ``--set KEY=VALUE`` for any key).

Everything is validated at start; an error names the key, where its value came from, the value and
the expected form.  Keys marked secret are never logged (the engines' credentials will be).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from forwarder.audit.assemble import DEFAULT_END_OF_EVENT_TIMEOUT, DEFAULT_MAX_IN_FLIGHT
from forwarder.sinks import output_forms, parse_output
from forwarder.sinks.batch import (
    DEFAULT_BATCH_AGE,
    DEFAULT_BATCH_BYTES,
    DEFAULT_BATCH_DOCUMENTS,
    DEFAULT_QUEUE_DOCUMENTS,
)
from forwarder.sinks.credentials import DEFAULT_REQUEST_TIMEOUT
from forwarder.sinks.delivery import DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF
from forwarder.tail import DEFAULT_POLL_INTERVAL, DEFAULT_RETRY_INTERVAL, MAX_LINE_BYTES

#: Prefix of the environment variables that set keys.
ENV_PREFIX: Final = "AUDITFWD_"

#: Environment variable naming the TOML file when ``--config`` is not given.
CONFIG_ENV: Final = "AUDITFWD_CONFIG"

#: Where the metrics and health endpoint listens by default: loopback only (the container's
#: HEALTHCHECK runs inside the container); 9478 is unassigned and near other exporters' ports.
DEFAULT_METRICS_LISTEN: Final = "127.0.0.1:9478"

#: Wall-clock seconds without a new line after which the assembler's open events are handed out.
#: auditd writes an event's records within microseconds, so an event still open after seconds of
#: silence is complete (its closing record never comes: no PROCTITLE, no later event).
DEFAULT_IDLE_FLUSH: Final = 5.0

#: Seconds between checkpoint writes while events are acknowledged (each write is two fsyncs).
DEFAULT_CHECKPOINT_INTERVAL: Final = 1.0

#: Seconds a graceful stop waits for the sink to acknowledge what was sent; after that the
#: forwarder exits anyway (the checkpoint only covers what was acknowledged: nothing is lost).
DEFAULT_SHUTDOWN_TIMEOUT: Final = 30.0

#: Size of the dead-letter file before it is moved to ``.1`` (one old generation is kept).
DEFAULT_DEAD_LETTER_MAX_BYTES: Final = 64 << 20


def _without_userinfo(value: Any) -> Any:
    """A URL shown in an error loses its ``user:password@`` part."""
    return re.sub(r"(//)[^/@,]*@", r"\1***@", value) if isinstance(value, str) else value


class ConfigError(ValueError):
    """A configuration value is invalid; the message names key, source, value and expected form."""


Parser = Callable[[Any], Any]


def _meta(doc: str, parse: Parser, unit: str = "", secret: bool = False) -> dict[str, Any]:
    return {"doc": doc, "parse": parse, "unit": unit, "secret": secret}


# ------------------------------------------------------------------------- value parsers
# Each takes a TOML value (typed) or a string (environment, flags) and returns the value, or raises
# ValueError whose message is the expected form.


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError("a string")
    return value


def _path(value: Any) -> str:
    if not isinstance(value, str) or not value.strip() or "\0" in value:
        raise ValueError("a non-empty file path")
    return value


def _optional_path(value: Any) -> str:
    if not isinstance(value, str) or "\0" in value:
        raise ValueError("a file path, or an empty string for none")
    return value


def _output(value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"one of: {output_forms()}")
    parse_output(value)  # raises ValueError with the expected forms
    return value


def _seconds(minimum: float, maximum: float = 86_400.0) -> Parser:
    def parse(value: Any) -> float:
        expected = f"a number of seconds from {minimum:g} to {maximum:g}"
        if isinstance(value, bool):
            raise ValueError(expected)
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(expected) from None
        if not math.isfinite(number) or not minimum <= number <= maximum:
            raise ValueError(expected)
        return number

    return parse


def _integer(minimum: int, maximum: int) -> Parser:
    def parse(value: Any) -> int:
        expected = f"an integer from {minimum} to {maximum}"
        if isinstance(value, bool | float):
            raise ValueError(expected)
        try:
            number = int(value)
        except (TypeError, ValueError):
            raise ValueError(expected) from None
        if not minimum <= number <= maximum:
            raise ValueError(expected)
        return number

    return parse


_SIZE: Final = re.compile(r"\s*([0-9]+)\s*(B|KiB|MiB|GiB)?\s*\Z")
_SIZE_UNITS: Final = {None: 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}


def _byte_size(minimum: int, maximum: int) -> Parser:
    def parse(value: Any) -> int:
        expected = f"a size from {minimum} to {maximum} bytes, as bytes or with KiB/MiB/GiB ('5MiB')"
        if isinstance(value, bool):
            raise ValueError(expected)
        if isinstance(value, int):
            number = value
        else:
            match = _SIZE.match(str(value))
            if match is None:
                raise ValueError(expected)
            number = int(match.group(1)) * _SIZE_UNITS[match.group(2)]
        if not minimum <= number <= maximum:
            raise ValueError(expected)
        return number

    return parse


_TRUE: Final = frozenset({"true", "yes", "on", "1"})
_FALSE: Final = frozenset({"false", "no", "off", "0"})


def _boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ValueError("true or false")


def _choice(*choices: str) -> Parser:
    def parse(value: Any) -> str:
        if value not in choices:
            raise ValueError("one of " + ", ".join(choices))
        return str(value)

    return parse


def _listen(value: Any) -> str:
    """``HOST:PORT`` with a literal IP address, or empty to turn the endpoint off."""
    expected = "HOST:PORT with an IP address (127.0.0.1:9478, [::1]:9478), or an empty string to disable"
    if not isinstance(value, str):
        raise ValueError(expected)
    if value == "":
        return value
    host, port = split_listen(value, expected)
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ValueError(expected) from None
    if not 0 <= port <= 65535:
        raise ValueError(expected)
    return value


def split_listen(value: str, expected: str = "HOST:PORT") -> tuple[str, int]:
    """``"127.0.0.1:9478"`` -> ``("127.0.0.1", 9478)``; ``"[::1]:9478"`` -> ``("::1", 9478)``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(expected)
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    return host, int(port)


# ------------------------------------------------------------------------- the keys


@dataclass(frozen=True, slots=True)
class Config:
    """The settings of a run.  Each field is a configuration key (same name in TOML, upper case
    after ``AUDITFWD_`` in the environment)."""

    input: str = field(
        default="/var/log/audit/audit.log",
        metadata=_meta("The live audit log; its rotations NAME.1, NAME.2 ... are followed beside it.", _path),
    )
    output: str = field(
        default="stdout",
        metadata=_meta("Where documents go: stdout, file:PATH (NDJSON), or an engine URL.", _output),
    )
    state_dir: str = field(
        default="/var/lib/auditfwd",
        metadata=_meta("Directory of the checkpoint and the dead-letter file (created 0700).", _path),
    )
    start_from: str = field(
        default="checkpoint",
        metadata=_meta(
            "Where to start: checkpoint (resume; from the beginning when there is none), "
            "beginning (every file of the rotation chain, oldest first) or end (only new lines).",
            _choice("checkpoint", "beginning", "end"),
        ),
    )
    host_name: str = field(
        default="",
        metadata=_meta("host.name of documents without node=, and part of every document id; empty: this host.", _text),
    )
    include_original: bool = field(
        default=False, metadata=_meta("Add event.original (the raw lines) to every document.", _boolean)
    )
    output_username: str = field(
        default="", metadata=_meta("User name of basic authentication to the engine (empty: none).", _text)
    )
    output_password: str = field(
        default="", metadata=_meta("Password of output_username.", _text, secret=True)
    )
    output_password_file: str = field(
        default="",
        metadata=_meta("File holding the password (its first line) instead of output_password.", _optional_path),
    )
    output_api_key: str = field(
        default="",
        metadata=_meta(
            "API key, sent as 'Authorization: ApiKey KEY' "
            "(Elasticsearch: the encoded key; OpenSearch 3.7+: the token).",
            _text,
            secret=True,
        ),
    )
    output_api_key_file: str = field(
        default="",
        metadata=_meta("File holding the API key (its first line) instead of output_api_key.", _optional_path),
    )
    output_ca_file: str = field(
        default="",
        metadata=_meta("PEM file of the CAs that sign the engine's certificate (empty: the system's).", _optional_path),
    )
    output_client_cert: str = field(
        default="", metadata=_meta("PEM certificate for TLS client authentication (empty: none).", _optional_path)
    )
    output_client_key: str = field(
        default="", metadata=_meta("PEM private key of output_client_cert.", _optional_path)
    )
    output_tls_verify: bool = field(
        default=True,
        metadata=_meta("Verify the engine's certificate and host name (turn off only for trials).", _boolean),
    )
    output_request_timeout: float = field(
        default=DEFAULT_REQUEST_TIMEOUT,
        metadata=_meta("Seconds one request to the engine may take.", _seconds(1.0, 3600.0), unit="seconds"),
    )
    passwd_file: str = field(
        default="", metadata=_meta("A copy of the host's passwd file for uid -> name (empty: none).", _optional_path)
    )
    group_file: str = field(
        default="", metadata=_meta("A copy of the host's group file for gid -> name (empty: none).", _optional_path)
    )
    end_of_event_timeout: int = field(
        default=DEFAULT_END_OF_EVENT_TIMEOUT,
        metadata=_meta(
            "Log-time seconds after which an open event is complete (auditd's own default).",
            _integer(0, 3600),
            "seconds",
        ),
    )
    max_in_flight: int = field(
        default=DEFAULT_MAX_IN_FLIGHT,
        metadata=_meta("Events open in the assembler before the oldest is closed early.", _integer(1, 1_000_000)),
    )
    idle_flush: float = field(
        default=DEFAULT_IDLE_FLUSH,
        metadata=_meta("Wall-clock seconds without new lines before open events are sent.", _seconds(0.01), "seconds"),
    )
    poll_interval: float = field(
        default=DEFAULT_POLL_INTERVAL,
        metadata=_meta("Seconds between two looks at a quiet log.", _seconds(0.001, 60.0), "seconds"),
    )
    retry_interval: float = field(
        default=DEFAULT_RETRY_INTERVAL,
        metadata=_meta(
            "Seconds between attempts to open a missing or unreadable log.", _seconds(0.01, 3600.0), "seconds"
        ),
    )
    max_line_bytes: int = field(
        default=MAX_LINE_BYTES,
        metadata=_meta(
            "Longest line kept; longer lines go to the dead-letter file, cut.", _byte_size(1024, 1 << 30), "bytes"
        ),
    )
    checkpoint_interval: float = field(
        default=DEFAULT_CHECKPOINT_INTERVAL,
        metadata=_meta("Seconds between checkpoint writes.", _seconds(0.01, 3600.0), "seconds"),
    )
    batch_max_documents: int = field(
        default=DEFAULT_BATCH_DOCUMENTS,
        metadata=_meta("Documents per batch sent to the output.", _integer(1, 100_000), "documents"),
    )
    batch_max_bytes: int = field(
        default=DEFAULT_BATCH_BYTES,
        metadata=_meta("Bytes per batch sent to the output.", _byte_size(1024, 1 << 30), "bytes"),
    )
    batch_max_age: float = field(
        default=DEFAULT_BATCH_AGE,
        metadata=_meta("Seconds a document waits for its batch to fill.", _seconds(0.0, 600.0), "seconds"),
    )
    queue_max_documents: int = field(
        default=DEFAULT_QUEUE_DOCUMENTS,
        metadata=_meta(
            "Documents queued for the output before reading pauses (the log is the buffer).",
            _integer(1, 10_000_000),
            "documents",
        ),
    )
    retry_initial_backoff: float = field(
        default=DEFAULT_INITIAL_BACKOFF,
        metadata=_meta(
            "Seconds before the first retry of a failed batch (doubles each time).", _seconds(0.0, 600.0), "seconds"
        ),
    )
    retry_max_backoff: float = field(
        default=DEFAULT_MAX_BACKOFF,
        metadata=_meta("Longest wait between two retries.", _seconds(0.0, 3600.0), "seconds"),
    )
    file_fsync: bool = field(
        default=True,
        metadata=_meta("file: output: fsync each batch before acknowledging it (see sinks/ndjson.py).", _boolean),
    )
    shutdown_timeout: float = field(
        default=DEFAULT_SHUTDOWN_TIMEOUT,
        metadata=_meta("Seconds a graceful stop waits for acknowledgements.", _seconds(0.0, 3600.0), "seconds"),
    )
    dead_letter_max_bytes: int = field(
        default=DEFAULT_DEAD_LETTER_MAX_BYTES,
        metadata=_meta("Dead-letter file size before it is moved to .1.", _byte_size(1024, 1 << 40), "bytes"),
    )
    metrics_listen: str = field(
        default=DEFAULT_METRICS_LISTEN,
        metadata=_meta("Address of /metrics and /healthz (HOST:PORT; empty: off).", _listen),
    )
    log_format: str = field(
        default="text", metadata=_meta("Log lines on stderr: text or json.", _choice("text", "json"))
    )
    log_level: str = field(
        default="info",
        metadata=_meta("Least severe log level written.", _choice("debug", "info", "warning", "error")),
    )

    def describe(self) -> dict[str, Any]:
        """The settings for the start-up log, secrets masked."""
        shown: dict[str, Any] = {}
        for key in dataclasses.fields(self):
            value = getattr(self, key.name)
            shown[key.name] = "***" if key.metadata.get("secret") and value else value
        return shown

    def check_consistency(self) -> None:
        """Rules between keys.  Raises ConfigError."""
        if self.retry_max_backoff < self.retry_initial_backoff:
            raise ConfigError(
                f"retry_max_backoff: {self.retry_max_backoff:g} is below retry_initial_backoff "
                f"{self.retry_initial_backoff:g} (expected a number of seconds >= retry_initial_backoff)"
            )


#: The keys by name, in declaration order.
KEYS: Final = {key.name: key for key in dataclasses.fields(Config)}


def env_name(key: str) -> str:
    """``state_dir`` -> ``AUDITFWD_STATE_DIR``."""
    return ENV_PREFIX + key.upper()


def load_config(
    path: str | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, str] | None = None,
) -> Config:
    """Build and validate the configuration.

    Args:
        path: the TOML file (None: ``AUDITFWD_CONFIG`` if set, else no file).
        environ: the environment (``os.environ`` by default).
        overrides: values from flags, by key.

    Raises:
        ConfigError: an unreadable or invalid file, an unknown key in it, or an invalid value.
    """
    environ = os.environ if environ is None else environ
    if path is None:
        path = environ.get(CONFIG_ENV) or None
    values: dict[str, Any] = {}
    if path is not None:
        for key, value in _read_toml(path).items():
            values[key] = _parse(key, value, f"{path}")
    for key in KEYS:
        name = env_name(key)
        if name in environ:
            values[key] = _parse(key, environ[name], f"environment {name}")
    for key, value in (overrides or {}).items():
        if key not in KEYS:
            raise ConfigError(f"{key}: not a configuration key (known keys: {', '.join(KEYS)})")
        values[key] = _parse(key, value, "command line")
    config = Config(**values)
    config.check_consistency()
    return config


def _read_toml(path: str) -> dict[str, Any]:
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"cannot read the configuration file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    for key, value in document.items():
        if key not in KEYS:
            raise ConfigError(f"{path}: {key!r} is not a configuration key (known keys: {', '.join(KEYS)})")
        if isinstance(value, dict):
            raise ConfigError(f"{path}: {key}: expected a value, not a table")
    return document


def _parse(key: str, value: Any, source: str) -> Any:
    declaration = KEYS[key]
    parse: Parser = declaration.metadata["parse"]
    try:
        return parse(value)
    except ValueError as exc:
        shown = "***" if declaration.metadata.get("secret") else repr(_without_userinfo(value))
        raise ConfigError(f"{key} ({source}): invalid value {shown}: expected {exc}") from None


def reference() -> str:
    """Every key with its default, unit and meaning, as TOML comments (for documentation)."""
    lines: list[str] = []
    for key in KEYS.values():
        default = key.default
        unit = f" [{key.metadata['unit']}]" if key.metadata["unit"] else ""
        lines.append(f"# {key.metadata['doc']}{unit}  ({env_name(key.name)})")
        lines.append(f"# {key.name} = {_toml_value(default)}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return str(value)
