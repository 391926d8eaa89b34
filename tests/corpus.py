"""Where the tests find real audit logs.

The shared corpus of real logs from public projects is found through the ``AUDITFWD_CORPUS``
environment variable (``.ci/run`` sets it), or beside the repository as ``../shared/corpus``.
The project's own fixtures in ``tests/fixtures`` are always used as well, so the suite also runs
where the corpus is absent.
"""

from __future__ import annotations

import os
import pathlib

REPO = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = REPO / "tests" / "fixtures"

#: File names of the corpus that hold audit records (logs and laurel's `.txt` captures).
_LOG_SUFFIXES = (".log", ".txt")
_NOT_LOGS = ("MANIFEST", "README", "LICENSE")


def corpus_dir() -> pathlib.Path | None:
    """The shared corpus directory, or None when it is not available."""
    configured = os.environ.get("AUDITFWD_CORPUS")
    if configured:
        path = pathlib.Path(configured)
        return path if path.is_dir() else None
    default = REPO.parent / "shared" / "corpus"
    return default if default.is_dir() else None


def corpus_logs() -> list[pathlib.Path]:
    """Every audit log of the corpus (sorted), or [] without a corpus."""
    root = corpus_dir()
    if root is None:
        return []
    return sorted(
        path
        for path in root.rglob("*")
        if path.is_file()
        and path.name.endswith(_LOG_SUFFIXES)
        and not any(word in path.name for word in _NOT_LOGS)
    )


def fixture_logs() -> list[pathlib.Path]:
    """The project's own small logs."""
    return sorted(FIXTURES.glob("*.log"))


def all_logs() -> list[pathlib.Path]:
    """Fixtures first, then the corpus."""
    return fixture_logs() + corpus_logs()
