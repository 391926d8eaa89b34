"""A bounded memo of values derived from audit field values, for the per-record hot paths.

The same field values recur all the time (the same SELinux contexts, files, libvirt records),
and the parser shares equal values between records, so a value's hash is already known: one
dict lookup finds what was derived from it before.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

KeyT = TypeVar("KeyT")
ValueT = TypeVar("ValueT")


class BoundedMemo(Generic[KeyT, ValueT]):
    """Derived values by key, bounded in entries and characters; it starts over when full.

    Readers look values up in :attr:`entries` themselves (one plain dict lookup on the hot
    path) and hand what they derived on a miss to :meth:`remember`.  Every value is a pure
    function of its key, so a reader never finds a wrong value, at worst none.  The core may run
    in several threads: changes take turns under a lock so that the bounds hold; :attr:`entries`
    stays the same dict object for good (readers may keep a reference to it).

    Args:
        max_entries: entries kept before the memo starts over.
        max_chars: characters (as counted by the callers of :meth:`remember`) kept before the
            memo starts over; a single value counted larger is never kept.
    """

    __slots__ = ("_chars", "_lock", "_max_chars", "_max_entries", "entries")

    def __init__(self, max_entries: int, max_chars: int) -> None:
        self.entries: dict[KeyT, ValueT] = {}
        self._chars = 0
        self._max_entries = max_entries
        self._max_chars = max_chars
        self._lock = threading.Lock()

    def remember(self, key: KeyT, value: ValueT, chars: int) -> ValueT:
        """Keep ``value`` for ``key`` (when it fits) and return it.

        Args:
            key: the key.
            value: what was derived from it.
            chars: the size the entry is counted as (key and value text).

        Returns:
            ``value``.
        """
        if chars > self._max_chars:
            return value
        with self._lock:
            entries = self.entries
            if key not in entries:
                if len(entries) >= self._max_entries or self._chars + chars > self._max_chars:
                    entries.clear()
                    self._chars = 0
                entries[key] = value
                self._chars += chars
        return value
