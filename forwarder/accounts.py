"""Account snapshots: uid -> user name and gid -> group name from passwd(5) / group(5) text.

The forwarder often runs in a container whose own /etc/passwd is not the host's, so names come
from the ENRICHED log format first, then from a snapshot of the host's files given by the operator.
"""

from __future__ import annotations


def parse_id_names(text: str) -> dict[str, str]:
    """``name:x:ID:...`` lines (passwd or group format) -> {"ID": name}; odd lines are ignored.

    Keys are the decimal ids as they appear in audit records.

    The first name of an ID wins, as in getpwuid(3) over a file.
    """
    names: dict[str, str] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) < 3 or not parts[2].isdigit():
            continue
        names.setdefault(parts[2], parts[0])
    return names
