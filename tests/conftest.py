from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.corpus import REPO

# Property tests judge behaviour, not speed: on a loaded 2-core CI machine an example may take
# longer than hypothesis's default 200 ms deadline.
settings.register_profile("auditfwd", deadline=None)
settings.load_profile("auditfwd")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Real OpenSearch and Elasticsearch nodes, started once per session by tests/engines/start.sh;
# a private certificate authority for the TLS tests.
pytest_plugins = ["tests.engines.fixtures", "tests.pki"]


@pytest.fixture(scope="module")
def utc_timezone() -> Iterator[None]:
    """Local time is UTC for the module: in-process runs then print times as auvirt does with TZ=UTC."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "UTC"
    time.tzset()
    yield
    if saved is None:
        del os.environ["TZ"]
    else:
        os.environ["TZ"] = saved
    time.tzset()
