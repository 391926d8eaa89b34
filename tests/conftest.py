from __future__ import annotations

import sys

from hypothesis import settings

from tests.corpus import REPO

# Property tests judge behaviour, not speed: on a loaded 2-core CI machine an example may take
# longer than hypothesis's default 200 ms deadline.
settings.register_profile("auditfwd", deadline=None)
settings.load_profile("auditfwd")

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

# Real OpenSearch and Elasticsearch nodes, started once per session by tests/engines/start.sh.
pytest_plugins = ["tests.engines.fixtures"]
