"""Build of auditfwd: the per-line core compiled to C extensions with mypyc when possible.

The project's metadata is in ``pyproject.toml``; this file only adds the compiled modules.  They
are the modules every log line goes through (parser, assembler, value decoding, ECS
normalization, guest attribution): plain typed Python that mypyc turns into C extensions, which
make ``auditfwd parse`` about twice as fast (``benchmarks/bench_parse.py`` measures both
builds).  The package works the same without them, so the build falls back to pure Python when
mypyc is missing or the C compiler fails, with a warning.

Environment:
    AUDITFWD_PURE_PYTHON=1: build pure Python, without trying to compile.
    AUDITFWD_REQUIRE_COMPILED=1: fail the build instead of falling back to pure Python (for
        builds that must ship the compiled modules: the container image, the test script).

Compile the modules in place for the tests with ``python setup.py build_ext --inplace``; delete
the ``*.so`` files (``find forwarder -name '*.so' -delete``) to run from the sources again.  An
extension in place is imported instead of its source: compile again after editing a module.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup
from setuptools.command.build_ext import build_ext

#: The compiled modules, relative to this directory.  Only modules of the pure core belong here:
#: no I/O, no asyncio, no monkeypatched names (a compiled module inlines its ``Final``
#: constants and checks every annotation at run time).
COMPILED_MODULES = (
    "forwarder/audit/record.py",
    "forwarder/audit/assemble.py",
    "forwarder/audit/values.py",
    "forwarder/audit/execve.py",
    "forwarder/audit/sockaddr.py",
    "forwarder/ecs/normalize.py",
    "forwarder/ecs/normalizations.py",
    "forwarder/virt/guests.py",
    "forwarder/virt/enrich.py",
)

#: The shared library that holds the compiled modules' code: ``forwarder/_compiled__mypyc*.so``,
#: inside the package (mypyc's default is a top-level module named by a hash of the module list).
GROUP_NAME = "forwarder._compiled"

#: mypyc's optimization level, passed to the C compiler as ``-O3``.
OPT_LEVEL = "3"

#: Written by an in-place build: the SHA-256 of each compiled source (``sha256sum`` format), so
#: that the tests can tell an extension in place that no longer matches its edited source.
SOURCES_STAMP = "forwarder/_compiled_sources.sha256"


def _flag(name: str) -> bool:
    """True when the environment variable ``name`` is set to anything but empty or ``0``."""
    return os.environ.get(name, "") not in ("", "0")


def _warn(message: str) -> None:
    print(f"auditfwd build: {message}", file=sys.stderr)


def _compiled_extensions() -> list[Any]:
    """mypyc's extensions for :data:`COMPILED_MODULES`, or none for a pure Python build."""
    if _flag("AUDITFWD_PURE_PYTHON"):
        _warn("AUDITFWD_PURE_PYTHON is set: building pure Python")
        return []
    try:
        from mypyc.build import mypycify
    except ImportError as exc:
        if _flag("AUDITFWD_REQUIRE_COMPILED"):
            raise
        _warn(f"mypyc is not available ({exc}): building pure Python")
        return []
    # Paths are relative to the project directory, the working directory of every build; mypyc
    # writes its C files to build/.
    try:
        extensions: list[Any] = mypycify(list(COMPILED_MODULES), opt_level=OPT_LEVEL, group_name=GROUP_NAME)
    except (Exception, SystemExit) as exc:  # mypy found type errors (it exits) or mypyc failed
        if _flag("AUDITFWD_REQUIRE_COMPILED"):
            raise
        _warn(f"mypyc could not compile the modules ({exc!r}): building pure Python")
        return []
    return extensions


class OptionalBuildExt(build_ext):
    """``build_ext`` that leaves the package pure Python when an extension cannot be built.

    The compiled modules share one library, so it is all or nothing: after a failure every
    extension built so far is deleted and none is installed or copied in place.  An in-place
    build writes :data:`SOURCES_STAMP`.
    """

    def run(self) -> None:
        super().run()
        if self.inplace:
            stamp = Path(SOURCES_STAMP)
            stamp.unlink(missing_ok=True)
            if self.extensions:
                digests = ((hashlib.sha256(Path(path).read_bytes()).hexdigest(), path) for path in COMPILED_MODULES)
                stamp.write_text("".join(f"{digest}  {path}\n" for digest, path in digests))

    def build_extensions(self) -> None:
        try:
            super().build_extensions()
        except Exception as exc:  # no C compiler, missing Python headers, compiler errors
            if _flag("AUDITFWD_REQUIRE_COMPILED"):
                raise
            for extension in self.extensions:
                Path(self.get_ext_fullpath(extension.name)).unlink(missing_ok=True)
            self.extensions = []
            _warn(f"the C extensions could not be built ({exc}): installing pure Python")


setup(ext_modules=_compiled_extensions(), cmdclass={"build_ext": OptionalBuildExt})
