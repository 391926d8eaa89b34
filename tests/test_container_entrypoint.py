"""The container's entrypoint, without a container engine (none on the build machines).

SLOW-ISH INTEGRATION TEST (about 15-40 s): builds a fresh virtual environment, installs the
project into it the way the Dockerfile does (the same files copied, the project built and
installed by pip; the dependencies come from the interpreter's own site packages so that no
network is needed), then runs
the Dockerfile's ENTRYPOINT with its ENV against a temporary log for a few seconds, probes it with
the Dockerfile's HEALTHCHECK command, and stops it with the Dockerfile's STOPSIGNAL.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.corpus import REPO
from tests.run_helpers import generated, ids_of, read_output

DOCKERFILE = REPO / "Dockerfile"


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    result = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            result.append((word.upper(), rest.strip()))
    return result


def dockerfile_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for word, rest in instructions():
        if word == "ENV":
            for key, value in re.findall(r"(\w+)=(\S+)", rest):
                env[key] = value
    return env


def json_form(word: str) -> list[str]:
    for instruction, rest in instructions():
        if instruction == word:
            rest = rest.split("CMD", 1)[1] if word == "HEALTHCHECK" else rest
            return list(json.loads(rest.strip()))
    raise AssertionError(f"no {word} in the Dockerfile")


def copied_files() -> set[str]:
    """What the Dockerfile copies from the project (COPY without --from), by name."""
    names: set[str] = set()
    for word, rest in instructions():
        if word == "COPY" and not rest.startswith("--from"):
            names.update(part.rstrip("/") for part in rest.split()[:-1])
    return names


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_dockerfile_shape() -> None:
    words = dict(instructions())
    assert words["FROM"].startswith("python:3.11-slim")  # the last stage: the image
    # The builder stage compiles the wheel against its C library: the same Debian release.
    images = [rest.split()[0] for word, rest in instructions() if word == "FROM"]
    assert len({image.rsplit("-", 1)[-1] for image in images}) == 1, images
    assert words["USER"] != "root" and not words["USER"].startswith("0")
    assert "/healthz" in words["HEALTHCHECK"]
    assert words["STOPSIGNAL"] == "SIGTERM"
    assert json_form("ENTRYPOINT") == ["auditfwd", "run"]


def test_entrypoint_runs_from_a_fresh_virtual_environment(tmp_path: Path) -> None:
    # The files the Dockerfile copies, and nothing else.
    source = tmp_path / "src"
    source.mkdir()
    assert copied_files() == {"pyproject.toml", "setup.py", "README.md", "forwarder"}
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.so")  # modules compiled in place
    shutil.copytree(REPO / "forwarder", source / "forwarder", ignore=ignored)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    # The build backend (setuptools, wheel) from this interpreter when it has it, else from the
    # package index, as `pip install .` in the image gets it.
    offline = importlib.util.find_spec("wheel") is not None and importlib.util.find_spec("setuptools") is not None
    build = ["--no-build-isolation", "--no-index"] if offline else []
    install = [str(python), "-m", "pip", "install", "--quiet", "--no-deps", *build, str(source)]
    # Pure Python: compiling the core would add a minute and changes nothing the entrypoint does;
    # the compiled modules are what the whole suite runs on (scripts/test.sh, test_packaging.py).
    pure = {**os.environ, "AUDITFWD_PURE_PYTHON": "1"}
    subprocess.run(install, check=True, timeout=180, cwd=tmp_path, env=pure)
    located = subprocess.run(
        [str(python), "-c", "import forwarder; print(forwarder.__file__)"],
        capture_output=True, text=True, check=True, cwd=tmp_path, env={"PATH": os.environ.get("PATH", "")},
    )  # fmt: skip
    assert located.stdout.startswith(str(venv)), located.stdout

    log = tmp_path / "log" / "audit.log"
    log.parent.mkdir()
    lines = generated(1500, seed=31)
    log.write_bytes(b"".join(lines))
    port = free_port()
    env = {"PATH": f"{venv / 'bin'}:{os.environ.get('PATH', '')}", "HOME": str(tmp_path)}
    env.update(dockerfile_env())
    env.update(
        {
            "AUDITFWD_INPUT": str(log),
            "AUDITFWD_STATE_DIR": str(tmp_path / "state"),
            "AUDITFWD_OUTPUT": f"file:{tmp_path / 'out.ndjson'}",
            "AUDITFWD_METRICS_LISTEN": f"127.0.0.1:{port}",
        }
    )
    assert env["AUDITFWD_LOG_FORMAT"] == "json"
    entrypoint = json_form("ENTRYPOINT")
    process = subprocess.Popen(entrypoint, env=env, cwd=tmp_path, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 30
        while len(read_output(tmp_path / "out.ndjson")) < 100:
            assert time.monotonic() < deadline and process.poll() is None, "no documents"
            time.sleep(0.1)
        health = [part.replace("9478", str(port)) for part in json_form("HEALTHCHECK")]
        probe = subprocess.run(health, env=env, cwd=tmp_path, timeout=30, capture_output=True, text=True)
        assert probe.returncode == 0, probe.stderr
        time.sleep(1.0)
        process.send_signal(getattr(signal, dict(instructions())["STOPSIGNAL"]))
        _, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    logs = [json.loads(line) for line in stderr.decode().splitlines()]
    assert any("stopped" in entry["message"] for entry in logs)
    assert (tmp_path / "state" / "checkpoint.json").exists()
    assert len(ids_of(read_output(tmp_path / "out.ndjson"))) > 100
