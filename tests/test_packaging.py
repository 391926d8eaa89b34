"""The build: the per-line core compiled by mypyc (setup.py), or pure Python when it cannot be.

``scripts/test.sh`` runs the core tests on the pure Python modules, then compiles them in place
and runs the whole suite again; it says which build it runs in ``AUDITFWD_TEST_BUILD``
(``pure`` or ``compiled``), which the tests here check.
"""

from __future__ import annotations

import ast
import hashlib
import importlib
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.corpus import REPO

SETUP = REPO / "setup.py"


def setup_constant(name: str) -> object:
    """A constant of setup.py (read, not run: running setup.py builds)."""
    for node in ast.parse(SETUP.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"no {name} in setup.py")


def compiled_module_paths() -> list[str]:
    """setup.py's COMPILED_MODULES."""
    paths = setup_constant("COMPILED_MODULES")
    assert isinstance(paths, tuple)
    return [str(path) for path in paths]



def module_name(path: str) -> str:
    return path.removesuffix(".py").replace("/", ".")


#: ``.cpython-311-x86_64-linux-gnu.so`` and the like: how a C extension's file name ends here.
EXTENSION_SUFFIX = str(sysconfig.get_config_var("EXT_SUFFIX"))


def loaded_from_extensions() -> dict[str, bool]:
    """Each compiled module's name -> whether it was imported from a C extension.

    Only the name of ``__file__`` is looked at: for a compiled module imported by another
    compiled module, mypyc derives ``__file__`` from the shared library's place and gets the
    directory wrong (``forwarder/forwarder/...``) when that library is inside the package.
    """
    return {
        module_name(path): str(importlib.import_module(module_name(path)).__file__).endswith(EXTENSION_SUFFIX)
        for path in compiled_module_paths()
    }


def test_compiled_modules_are_core_sources() -> None:
    paths = compiled_module_paths()
    assert paths and len(set(paths)) == len(paths)
    for path in paths:
        assert path.startswith("forwarder/") and (REPO / path).is_file(), path


def test_compiled_all_or_none() -> None:
    # The compiled modules share one library: a partial build is a stale or broken one.
    assert len(set(loaded_from_extensions().values())) == 1, loaded_from_extensions()


@pytest.mark.skipif(not os.environ.get("AUDITFWD_TEST_BUILD"), reason="the test script names the build it runs")
def test_the_build_the_test_script_asked_for() -> None:
    wanted = os.environ["AUDITFWD_TEST_BUILD"]
    assert wanted in ("pure", "compiled")
    assert set(loaded_from_extensions().values()) == {wanted == "compiled"}


def test_compiled_modules_match_their_sources() -> None:
    # An edited module whose old extension is still in place would be silently ignored: the
    # in-place build wrote down what it compiled (setup.py's SOURCES_STAMP).
    if not all(loaded_from_extensions().values()):
        return
    stamp = REPO / str(setup_constant("SOURCES_STAMP"))
    rebuild = "run `python setup.py build_ext --inplace` again"
    assert stamp.is_file(), f"no {stamp.name}: {rebuild}"
    compiled = {path: digest for digest, path in (line.split() for line in stamp.read_text().splitlines())}
    assert set(compiled) == set(compiled_module_paths()), rebuild
    for path, digest in compiled.items():
        assert hashlib.sha256((REPO / path).read_bytes()).hexdigest() == digest, f"{path} changed: {rebuild}"


def _project_copy(tmp_path: Path) -> Path:
    """The files a build needs (those the Dockerfile copies), without compiled modules."""
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.py", "README.md"):
        shutil.copy(REPO / name, source / name)
    ignored = shutil.ignore_patterns("__pycache__", "*.so")
    shutil.copytree(REPO / "forwarder", source / "forwarder", ignore=ignored)
    return source


def _build_in_place(source: Path, **environ: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("AUDITFWD_")}
    env.update(environ)
    command = [sys.executable, "setup.py", "build_ext", "--inplace"]
    return subprocess.run(command, cwd=source, env=env, capture_output=True, text=True, timeout=600)


def _extensions(source: Path) -> list[Path]:
    return sorted(source.rglob("*.so"))


def test_pure_python_on_request(tmp_path: Path) -> None:
    source = _project_copy(tmp_path)
    result = _build_in_place(source, AUDITFWD_PURE_PYTHON="1")
    assert result.returncode == 0, result.stderr
    assert "AUDITFWD_PURE_PYTHON is set" in result.stderr
    assert _extensions(source) == []
    assert not (source / "build").exists()  # mypyc did not even run


@pytest.mark.skipif(importlib.util.find_spec("mypyc") is None, reason="mypyc (mypy) is not installed")
def test_failed_compilation_falls_back_to_pure_python(tmp_path: Path) -> None:
    source = _project_copy(tmp_path)
    failing = _build_in_place(source, CC="false")  # a C compiler that always fails
    assert failing.returncode == 0, failing.stderr
    assert "the C extensions could not be built" in failing.stderr
    assert _extensions(source) == []
    # ... unless the build must be compiled (the container image).
    required = _build_in_place(source, CC="false", AUDITFWD_REQUIRE_COMPILED="1")
    assert required.returncode != 0
    assert _extensions(source) == []
