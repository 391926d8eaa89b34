from __future__ import annotations

import sys

from tests.corpus import REPO

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Real OpenSearch and Elasticsearch nodes, started once per session by tests/engines/start.sh.
pytest_plugins = ["tests.engines.fixtures"]
