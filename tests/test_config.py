"""Configuration: sources and their order, validation messages, the example file."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from forwarder.config import KEYS, Config, ConfigError, env_name, load_config, reference
from tests.corpus import REPO


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "auditfwd.toml"
    path.write_text(text)
    return str(path)


def test_defaults() -> None:
    config = load_config(environ={})
    assert config.input == "/var/log/audit/audit.log"
    assert config.output == "stdout"
    assert config.state_dir == "/var/lib/auditfwd"
    assert config.start_from == "checkpoint"


def test_file_then_environment_then_flags(tmp_path: Path) -> None:
    path = write(
        tmp_path, 'input = "/a.log"\noutput = "file:/o.ndjson"\npoll_interval = 0.5\nbatch_max_bytes = "2MiB"\n'
    )
    config = load_config(path, environ={"AUDITFWD_OUTPUT": "stdout", "AUDITFWD_POLL_INTERVAL": "0.1"})
    assert (config.input, config.output, config.poll_interval, config.batch_max_bytes) == (
        "/a.log",
        "stdout",
        0.1,
        2 << 20,
    )
    config = load_config(path, environ={"AUDITFWD_POLL_INTERVAL": "0.1"}, overrides={"poll_interval": "2"})
    assert config.poll_interval == 2.0


def test_config_file_from_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, 'state_dir = "/srv/state"\n')
    assert load_config(environ={"AUDITFWD_CONFIG": path}).state_dir == "/srv/state"


def test_every_key_has_documentation_and_an_environment_name() -> None:
    text = reference()
    for name, key in KEYS.items():
        assert key.metadata["doc"], name
        assert env_name(name) in text
        # The default passes its own validation, also written as text (environment, flags).
        default = getattr(Config(), name)
        assert key.metadata["parse"](default) == default
        if not isinstance(default, bool):
            assert key.metadata["parse"](str(default)) == default


@pytest.mark.parametrize(
    ("source", "value", "fragments"),
    [
        ("env", ("AUDITFWD_POLL_INTERVAL", "fast"), ["poll_interval", "AUDITFWD_POLL_INTERVAL", "'fast'", "seconds"]),
        ("env", ("AUDITFWD_OUTPUT", "kafka://broker"), ["output", "'kafka://broker'", "stdout", "file:PATH"]),
        ("env", ("AUDITFWD_OUTPUT", "file:"), ["output", "file:PATH", "empty"]),
        ("env", ("AUDITFWD_START_FROM", "middle"), ["start_from", "'middle'", "checkpoint, beginning, end"]),
        ("env", ("AUDITFWD_BATCH_MAX_BYTES", "5 parsecs"), ["batch_max_bytes", "MiB"]),
        ("env", ("AUDITFWD_FILE_FSYNC", "maybe"), ["file_fsync", "true or false"]),
        ("env", ("AUDITFWD_METRICS_LISTEN", "localhost:80"), ["metrics_listen", "HOST:PORT"]),
        ("env", ("AUDITFWD_MAX_IN_FLIGHT", "0"), ["max_in_flight", "'0'", "integer from 1"]),
        ("flag", ("queue_max_documents", "1.5"), ["queue_max_documents", "command line", "integer"]),
        ("file", 'end_of_event_timeout = "two"\n', ["end_of_event_timeout", "auditfwd.toml", "'two'", "integer"]),
        ("file", "idle_flush = true\n", ["idle_flush", "True", "seconds"]),
        ("file", "nonsense = 1\n", ["'nonsense'", "not a configuration key", "input"]),
        ("file", "[output]\nurl = 'x'\n", ["output", "not a table"]),
        ("file", "input = \n", ["not valid TOML"]),
    ],
)
def test_errors_name_key_value_and_form(tmp_path: Path, source: str, value: object, fragments: list[str]) -> None:
    with pytest.raises(ConfigError) as caught:
        if source == "env":
            name, text = value  # type: ignore[misc]
            load_config(environ={name: text})
        elif source == "flag":
            key, text = value  # type: ignore[misc]
            load_config(environ={}, overrides={key: text})
        else:
            load_config(write(tmp_path, str(value)), environ={})
    message = str(caught.value)
    for fragment in fragments:
        assert fragment in message, message


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read the configuration file"):
        load_config(str(tmp_path / "absent.toml"), environ={})


def test_rules_between_keys() -> None:
    with pytest.raises(ConfigError, match="retry_max_backoff"):
        load_config(environ={}, overrides={"retry_initial_backoff": "10", "retry_max_backoff": "1"})


def test_values_of_each_kind() -> None:
    config = load_config(
        environ={
            "AUDITFWD_FILE_FSYNC": "no",
            "AUDITFWD_METRICS_LISTEN": "[::1]:9100",
            "AUDITFWD_BATCH_MAX_BYTES": "512KiB",
            "AUDITFWD_INCLUDE_ORIGINAL": "yes",
        }
    )
    assert config.file_fsync is False and config.include_original is True
    assert config.metrics_listen == "[::1]:9100" and config.batch_max_bytes == 512 << 10
    assert load_config(environ={"AUDITFWD_METRICS_LISTEN": ""}).metrics_listen == ""


def test_example_file_is_valid() -> None:
    config = load_config(str(REPO / "examples" / "auditfwd.toml"), environ={})
    assert config.output == "file:/var/lib/auditfwd/events.ndjson"
    assert config.log_format == "json"


def test_command_reports_configuration_errors(tmp_path: Path) -> None:
    run = [sys.executable, "-m", "forwarder", "run", "--state-dir", str(tmp_path)]
    bad = subprocess.run([*run, "--set", "poll_interval=-1"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert bad.returncode == 2
    assert "poll_interval (command line): invalid value '-1'" in bad.stderr
    good = subprocess.run(
        [*run, "--output", "file:/x", "--check-config"], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert good.returncode == 0, good.stderr
    assert "output = 'file:/x'" in good.stdout
