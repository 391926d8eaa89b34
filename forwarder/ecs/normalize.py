"""One assembled audit event -> one ECS document (a plain ``dict`` ready for orjson).

The document has the shape Auditbeat's auditd module and the ``auditd_manager`` integration
write, so Elastic's prebuilt rules and dashboards work on it unchanged:

* ECS fields (``event.*``, ``user.*``, ``process.*``, ``file.*``, ``source.*``/``destination.*``,
  ``network.*``, ``host.*``, ``related.*``) filled from the records and from the declared table in
  :mod:`forwarder.ecs.normalizations`;
* ``auditd.*`` with the summary (actor, action's object, how), the decoded PATH records
  (``auditd.paths``) and every raw field that no ECS field took (``auditd.data``, hyphens in keys
  written as underscores), so nothing in the log is lost to search.

The function is pure and never raises for bad input: a value that cannot be interpreted stays
raw in ``auditd.data`` and the reason goes to ``error.message``.

Per-field work is dispatched through tables built at import (:data:`_TAKERS`, record handlers by
type number), the document is built once, and nothing is deep-copied.
"""

from __future__ import annotations

import binascii
import hashlib
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, Generic, NamedTuple, TypeVar

from forwarder.audit import values
from forwarder.audit.execve import execve_args_from_records
from forwarder.audit.record import Event, Record, is_standalone_type
from forwarder.audit.sockaddr import decode_sockaddr
from forwarder.ecs.fields import ECS_VERSION
from forwarder.ecs.normalizations import (
    RECORD_TYPE_FALLBACK,
    RECORD_TYPES,
    SYSCALL_FALLBACK,
    SYSCALLS,
    Normalization,
)

_T = TypeVar("_T")

#: The tables of :mod:`forwarder.ecs.normalizations` as plain dicts: the compiled build looks a
#: dict up directly, a read-only mapping through a method call.
_SYSCALL_TABLE: Final[dict[str, Normalization]] = dict(SYSCALLS)
_RECORD_TYPE_TABLE: Final[dict[str, tuple[Normalization, ...]]] = dict(RECORD_TYPES)

#: The data stream the Elastic ``auditd_manager`` integration writes; three prebuilt rules name it.
DEFAULT_DATASET: Final = "auditd_manager.auditd"
DEFAULT_NAMESPACE: Final = "default"

#: Bytes of the document id hash: 15 bytes = 120 bits render as 20 url-safe characters without
#: padding; collisions are out of reach for any realistic number of events per index.
DOCUMENT_ID_BYTES: Final = 15

# Record type numbers (linux/audit.h) with their own handler.
_SYSCALL: Final = 1300
_PATH: Final = 1302
_SOCKADDR: Final = 1306
_CWD: Final = 1307
_EXECVE: Final = 1309
_EOE: Final = 1320
_PROCTITLE: Final = 1327

#: Interpreters whose executable says little: the summary's "how" uses comm for them instead.
_INTERPRETER_PREFIXES: Final = ("/usr/bin/python", "/usr/bin/sh", "/usr/bin/bash", "/usr/bin/perl")

#: success= / res= values -> auditd.result.
_RESULTS: Final = {
    "yes": "success",
    "success": "success",
    "1": "success",
    "no": "fail",
    "failed": "fail",
    "fail": "fail",
    "0": "fail",
}
_OUTCOMES: Final = {"success": "success", "fail": "failure"}

#: Raw values meaning "no value" (:func:`values.is_unset`, as a set for inlined checks).
_UNSET_VALUES: Final = values.UNSET_VALUES

#: Values meaning "no user" in a summary or a mapping.
_UNSET_TEXT: Final = "unset"
_UNSET_IDS: Final = frozenset({"4294967295", "-1", _UNSET_TEXT, ""})

#: The session id of a process outside any login session, as the kernel writes it.
_UNSET_SESSION: Final = str(values.UNSET_ID)

#: Digits of 4294967295 (the unset id): shorter decimal numbers are always valid ids.
_UNSET_ID_DIGITS: Final = 10

#: ENRICHED values that are no name (auditd writes them for ids it could not resolve).
_NOT_A_NAME_PREFIX: Final = "unknown("

#: ECS file.type for the file types values.file_mode reports.
_ECS_FILE_TYPES: Final = {"directory": "dir"}

#: Raw values that say "no value" and are left out of auditd.data and auditd.paths (as
#: go-libaudit does); ``(none)`` (no terminal) is information and is kept.
_NO_VALUE: Final = frozenset({"", "?", "(null)", '"?"', '""', '"(null)"', "'?'"})

#: Entries kept by each memo of repeated records before it starts over: a few hundred distinct
#: binaries, images and command lines cover a hypervisor's routine (what comes back is soon
#: remembered again).  Small, so that the memos are full early and memory does not grow with
#: the input.
_MEMO_MAX_ENTRIES: Final = 256

#: EXECVE records longer than this (characters of their values) are not remembered by content:
#: building and keeping such keys costs more than it saves; a long list that repeats is still
#: recognized by the identity of its parsed fields (:data:`_EXECVE_BY_IDENTITY`).
_EXECVE_MEMO_MAX_CHARS: Final = 2048

#: PATH name types that are not the object itself (libauparse and go-libaudit skip them).
_NOT_OBJECT_NAMETYPES: Final = frozenset({"PARENT", "UNKNOWN"})

#: Raw fields (counted over all entries) kept alive by an :class:`_IdentityMemo` at most: long
#: argument lists (a guest's QEMU command line, hundreds of fields) repeat too, yet memory must
#: stay bounded.
_IDENTITY_MEMO_MAX_FIELDS: Final = 1 << 14


class _IdentityMemo(Generic[_T]):
    """Results by the identity of the parsed dicts they were computed from.

    The parser hands out one shared ``fields`` dict for equal record bodies (see
    :class:`forwarder.audit.record.Record`), so a repeated record is recognized by identity,
    without reading its content.  Each entry keeps its sources alive (an id cannot be reused
    while it is stored) and checks them with ``is``; the memo starts over when it holds
    :data:`_MEMO_MAX_ENTRIES` entries or :data:`_IDENTITY_MEMO_MAX_FIELDS` fields: then the
    oldest entries go.
    """

    __slots__ = ("_entries", "_fields", "_lock")

    def __init__(self) -> None:
        self._entries: dict[tuple[Any, ...], tuple[tuple[object, ...], _T, int]] = {}
        self._fields = 0
        # Changes take turns when documents are made in several threads at once.
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...], sources: tuple[object, ...]) -> _T | None:
        """The result stored under ``key`` for exactly these ``sources`` (``key`` holds their ids)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        kept, result, _ = entry
        if len(kept) != len(sources):
            return None
        for index in range(len(kept)):
            if kept[index] is not sources[index]:
                return None
        return result

    def put(self, key: tuple[Any, ...], sources: tuple[object, ...], result: _T, fields: int) -> None:
        """Remember ``result`` for ``sources`` (``fields``: how many raw fields they hold)."""
        if fields > _IDENTITY_MEMO_MAX_FIELDS:
            return
        with self._lock:
            entries = self._entries
            replaced = entries.pop(key, None)
            if replaced is not None:
                self._fields -= replaced[2]
            while entries and (len(entries) >= _MEMO_MAX_ENTRIES or self._fields + fields > _IDENTITY_MEMO_MAX_FIELDS):
                self._fields -= entries.pop(next(iter(entries)))[2]
            entries[key] = (sources, result, fields)
            self._fields += fields


@dataclass(frozen=True, slots=True)
class NormalizeOptions:
    """How documents are written.

    Attributes:
        host_name: this host's name, for ``host.name`` when the records carry no ``node=``.
        include_original: add ``event.original`` (the raw records, one per line).
        users: uid -> user name (a passwd snapshot); names from ENRICHED fields win.  The ids
            may be given as decimal text (as :func:`forwarder.accounts.parse_id_names` gives
            them) or as ints; lookups use the decimal text, as the log writes them.
        groups: gid -> group name (a group snapshot), the same way.
        dataset: ``event.dataset`` and ``data_stream.dataset``.
        namespace: ``data_stream.namespace``.
    """

    host_name: str
    include_original: bool = False
    users: Mapping[str, str] | Mapping[int, str] = field(default_factory=dict)
    groups: Mapping[str, str] | Mapping[int, str] = field(default_factory=dict)
    dataset: str = DEFAULT_DATASET
    namespace: str = DEFAULT_NAMESPACE
    #: ``users`` with decimal text keys (the table the lookups use).
    user_names: Mapping[str, str] = field(init=False, repr=False, compare=False)
    #: ``groups`` with decimal text keys (the table the lookups use).
    group_names: Mapping[str, str] = field(init=False, repr=False, compare=False)
    #: name -> uid, derived from ``users`` (for table mappings that give a name).
    user_ids: Mapping[str, str] = field(init=False, repr=False, compare=False)
    #: Interpretations of PATH records already met (they depend on ``users``/``groups``, hence
    #: kept per options); see :func:`_apply_paths`.
    path_memo: dict[tuple[Any, ...], _PathsResult] = field(init=False, repr=False, compare=False)
    #: The same by the identity of the PATH records' parsed dicts (see :class:`_IdentityMemo`).
    path_memo_by_identity: _IdentityMemo[_PathsResult] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Keys may come as ints from a passwd parser; lookups use the decimal text of the log.
        users = {str(uid): name for uid, name in self.users.items()}
        groups = {str(gid): name for gid, name in self.groups.items()}
        object.__setattr__(self, "user_names", users)
        object.__setattr__(self, "group_names", groups)
        object.__setattr__(self, "user_ids", {name: uid for uid, name in users.items()})
        object.__setattr__(self, "path_memo", {})
        object.__setattr__(self, "path_memo_by_identity", _IdentityMemo())


def document_id(host: str, event: Event) -> str:
    """Deterministic id of an event's document, also used as ``_id``.

    Args:
        host: the forwarder's host name (the log's origin).
        event: the event; its ``(node, sec, msec, serial)`` identify it on that host, with two
            refinements so that no two events of one log share an id: a stand-alone message (kernel
            LOGIN shares its syscall's serial) adds its record type, and a fragment (records that
            came after their event was complete) adds its first line.

    Returns:
        20 url-safe characters (a blake2b hash), the same on every replay of the same log.
    """
    key = f"{host}\x1f{event.node or ''}\x1f{event.sec}\x1f{event.msec}\x1f{event.serial}"
    first = event.records[0] if event.records else None
    if first is not None:
        if is_standalone_type(first.type_id):
            key = f"{key}\x1f{first.type_id}"
        elif event.fragment:
            key = f"{key}\x1f{first.text}"
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=DOCUMENT_ID_BYTES).digest()
    # base64.urlsafe_b64encode without its two Python-level calls.
    return binascii.b2a_base64(digest, newline=False).translate(_URL_SAFE_BASE64).decode("ascii")


#: Standard base64 alphabet -> the url-safe one (``+/`` -> ``-_``).
_URL_SAFE_BASE64: Final = bytes.maketrans(b"+/", b"-_")


#: Labels repeat on every event of a process; the cache returns shared dicts, so callers copy.
_selinux_context: Final = lru_cache(maxsize=_MEMO_MAX_ENTRIES)(values.selinux_context)


#: Minute (seconds // 60) -> ``YYYY-MM-DDTHH:MM`` of its start: an event or two per second share
#: a minute with many others.  Bounded: a backlog of months has as many minutes as it has hours.
_MINUTE_TEXTS: Final[dict[int, str]] = {}
_MINUTE_TEXTS_MAX: Final = 4096

#: ``:00`` ... ``:59``: the seconds of a timestamp.
_SECOND_TEXTS: Final = tuple(f":{second:02d}" for second in range(60))


def _second_text(sec: int) -> str:
    """``YYYY-MM-DDTHH:MM:SS`` of ``sec`` (UTC), as ``time.strftime`` writes it.

    POSIX time has no leap seconds, so a second's text is its minute's text and its place in
    the minute.  Raises as ``time.gmtime`` does for a year beyond what the platform formats.
    """
    minute, second = divmod(sec, 60)
    text = _MINUTE_TEXTS.get(minute)
    if text is None:
        text = time.strftime("%Y-%m-%dT%H:%M", time.gmtime(minute * 60))
        if len(_MINUTE_TEXTS) >= _MINUTE_TEXTS_MAX:
            _MINUTE_TEXTS.clear()
        _MINUTE_TEXTS[minute] = text
    return text + _SECOND_TEXTS[second]


#: ``.000Z`` ... ``.999Z``: the end of a timestamp for each millisecond of a header.
_MILLISECOND_TEXTS: Final = tuple(f".{msec:03d}Z" for msec in range(1000))


def timestamp(sec: int, msec: int) -> str:
    """``@timestamp`` of an audit header: UTC ISO 8601 with milliseconds (``...T20:17:14.891Z``)."""
    try:
        if 0 <= msec < 1000:
            return _second_text(sec) + _MILLISECOND_TEXTS[msec]
        return f"{_second_text(sec)}.{msec:03d}Z"
    except (OverflowError, OSError, ValueError):  # a year beyond what the platform formats
        return "1970-01-01T00:00:00.000Z"


class _State:
    """What one normalization collects from the records before writing the document."""

    __slots__ = (
        "arch",
        "conflicts",
        "cwd",
        "data",
        "doc",
        "enriched",
        "enriched_shared",
        "execve",
        "id_names",
        "ids",
        "options",
        "paths",
        "proctitle",
        "raw",
        "raw_shared",
        "result",
        "sockaddr",
        "syscall",
        "warnings",
    )

    def __init__(self, doc: dict[str, Any], options: NormalizeOptions) -> None:
        self.doc = doc
        self.options = options
        self.raw: dict[str, str] = {}
        #: True while ``raw``/``enriched`` are a record's own dicts (read-only for us).
        self.raw_shared = False
        self.enriched: dict[str, str] = {}
        self.enriched_shared = False
        self.data: dict[str, Any] = {}
        self.conflicts: dict[str, list[str]] | None = None
        self.warnings: list[str] = []
        self.ids: dict[str, str] = {}
        self.id_names: dict[str, str] = {}
        self.paths: list[Record] = []
        self.execve: list[dict[str, str]] = []
        self.sockaddr: Record | None = None
        self.cwd: str | None = None
        self.proctitle: str | None = None
        self.arch: str | None = None
        self.syscall: str | None = None
        self.result: str | None = None


def _data_key(key: str) -> str:
    """Key of a raw field in ``auditd.data``: hyphens as underscores (as auditd_manager writes)."""
    return key.replace("-", "_") if "-" in key else key


def _decode(key: str, raw: str) -> str:
    """The value of one raw field: encoded fields decoded, others unquoted."""
    if key in values.ENCODED_FIELDS:
        return values.decode_value(raw)
    if raw[:1] == '"':
        return values.unquote(raw)
    return raw


def _put(doc: dict[str, Any], path: tuple[str, ...], value: Any) -> None:
    """Set a nested field, creating the objects on the way."""
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _get(doc: dict[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = doc
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
        if node is None:
            return None
    return node


def _remove(doc: dict[str, Any], path: tuple[str, ...]) -> None:
    """Delete a nested field and the objects it leaves empty."""
    parents: list[dict[str, Any]] = []
    node = doc
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            return
        parents.append(node)
        node = child
    node.pop(path[-1], None)
    for parent, part in zip(reversed(parents), reversed(path[:-1]), strict=True):
        if parent[part]:
            break
        del parent[part]


# Field takers: raw field -> ECS fields.  A key not listed here goes to auditd.data. -----------


def _name_of(state: _State, enriched_key: str, number: str, table: Mapping[str, str]) -> str | None:
    name = state.enriched.get(enriched_key)
    if name is not None and name != _UNSET_TEXT and not name.startswith(_NOT_A_NAME_PREFIX) and name != "?":
        return name
    return table.get(number)


def _is_canonical_id(raw: str) -> bool:
    """Whether ``raw`` is a set id in canonical decimal form (no quotes, no leading zero)."""
    return raw.isdigit() and len(raw) < _UNSET_ID_DIGITS and (raw[0] != "0" or raw == "0")


def _take_id(state: _State, key: str, raw: str) -> None:
    """uid, gid, auid ...: kept as decimal text (or a name, see below) for :func:`_write_users`."""
    if _is_canonical_id(raw):
        state.ids[key] = raw  # the common case, already in canonical form
        return
    number = values.audit_id(raw)
    if number is not None:
        state.ids[key] = str(number)
        return
    text = values.unquote(raw)
    if text not in _UNSET_IDS and not values.is_unset(text):
        # Some "enhanced" logs write names where ids belong (uid=vagrant).
        state.id_names[key] = text


def _take_pid(state: _State, key: str, raw: str) -> None:
    if raw not in _UNSET_VALUES:
        state.doc.setdefault("process", {})["pid"] = int(raw if raw[0] != '"' else values.unquote(raw))


def _take_ppid(state: _State, key: str, raw: str) -> None:
    if raw not in _UNSET_VALUES:
        state.doc.setdefault("process", {})["parent"] = {"pid": int(raw if raw[0] != '"' else values.unquote(raw))}


def _take_comm(state: _State, key: str, raw: str) -> None:
    if raw not in _UNSET_VALUES:
        state.doc.setdefault("process", {})["name"] = values.decode_value(raw)


def _take_exe(state: _State, key: str, raw: str) -> None:
    if raw not in _UNSET_VALUES:
        state.doc.setdefault("process", {})["executable"] = values.decode_value(raw)


def _take_session(state: _State, key: str, raw: str) -> None:
    if raw == _UNSET_SESSION:
        return
    if raw.isascii() and _is_canonical_id(raw):
        state.doc["auditd"]["session"] = raw
        return
    session = values.audit_id(raw)
    if session is not None:
        state.doc["auditd"]["session"] = str(session)
    elif values.unquote(raw) not in _UNSET_IDS:
        raise ValueError(f"ses={raw} is not a session id")


def _take_subject(state: _State, key: str, raw: str) -> None:
    context = _selinux_context(raw)
    if context:
        auditd = state.doc["auditd"]
        user = auditd.get("user")
        if user is None:
            auditd["user"] = {"selinux": dict(context)}
        else:
            user["selinux"] = dict(context)


#: key= value -> its rule keys; the same few keys are on most records.
_TAGS_MEMO: Final[dict[str, tuple[str, ...]]] = {}


def _take_key(state: _State, key: str, raw: str) -> None:
    tags = _TAGS_MEMO.get(raw)
    if tags is None:
        tags = tuple(values.split_keys(raw))
        if len(_TAGS_MEMO) >= _MEMO_MAX_ENTRIES:
            _TAGS_MEMO.clear()
        _TAGS_MEMO[raw] = tags
    if tags:
        state.doc["tags"] = list(tags)


def _take_result(state: _State, key: str, raw: str) -> None:
    # Old PAM messages end in "(hostname=..., addr=..., terminal=... res=success)".
    result = _RESULTS.get(raw)  # the common case: a bare lower-case result
    if result is None:
        result = _RESULTS.get(values.unquote(raw).rstrip("),").lower())
    if result is None:
        raise ValueError(f"{key}={raw} is no known result")
    if state.result is None:
        state.result = result


def _take_arch(state: _State, key: str, raw: str) -> None:
    name = values.arch_name(raw)
    state.data["arch"] = name if name is not None else raw
    if name is not None:
        state.arch = name
        state.doc["host"]["architecture"] = name


def _take_syscall(state: _State, key: str, raw: str) -> None:
    name = state.enriched.get("SYSCALL")
    if name is None or not name or name[0].isdigit() or name.startswith(_NOT_A_NAME_PREFIX):
        arch = state.arch
        if arch is None and "arch" in state.raw:
            arch = values.arch_name(state.raw["arch"])
        name = values.syscall_name(arch, raw)
    state.data["syscall"] = name if name is not None else raw
    if name is not None:
        state.syscall = name


def _take_exit(state: _State, key: str, raw: str) -> None:
    name = values.errno_name(raw)
    state.data["exit"] = name if name is not None else raw


def _take_cwd(state: _State, key: str, raw: str) -> None:
    if not values.is_unset(raw):
        _put(state.doc, ("process", "working_directory"), values.decode_value(raw))


#: proctitle= value -> process.title (None: no arguments); titles repeat like the commands
#: they show.
_TITLE_MEMO: Final[dict[str, str | None]] = {}


def _take_proctitle(state: _State, key: str, raw: str) -> None:
    if raw in _TITLE_MEMO:
        title = _TITLE_MEMO[raw]
    else:
        args = values.decode_proctitle(raw)
        title = " ".join(args) if args else None  # [""] (from '""') is a title: the empty one
        if len(_TITLE_MEMO) >= _MEMO_MAX_ENTRIES:
            _TITLE_MEMO.clear()
        _TITLE_MEMO[raw] = title
    if title is not None:
        _put(state.doc, ("process", "title"), title)


#: Raw field name -> taker.  arch is interpreted first: syscall names need it.
_TAKERS: Final[dict[str, Callable[[_State, str, str], None]]] = {
    "pid": _take_pid,
    "ppid": _take_ppid,
    "comm": _take_comm,
    "exe": _take_exe,
    "ses": _take_session,
    "subj": _take_subject,
    "key": _take_key,
    "success": _take_result,
    "res": _take_result,
    "result": _take_result,
    "arch": _take_arch,
    "syscall": _take_syscall,
    "exit": _take_exit,
    "cwd": _take_cwd,
    "proctitle": _take_proctitle,
    **{key: _take_id for key in ("uid", "euid", "gid", "egid", "auid", "suid", "sgid", "fsuid", "fsgid")},
}


class _FieldPlan(NamedTuple):
    """What to do with a raw field of a given name, worked out once per name.

    Attributes:
        taker: the field's taker (:data:`_TAKERS`), None when it only goes to ``auditd.data``.
        data_key: its key in ``auditd.data`` (hyphens as underscores).
        encoded: whether its value may be hex-encoded (:data:`values.ENCODED_FIELDS`).
        is_id: a uid/gid taker (:func:`_take_id`), whose common case is inlined.
        summary_id: the summary reports an unset value as ``unset`` (``*uid``, ``*auid``, ``*ses``).

    A named tuple: the hot loop of :func:`_interpret_fields` unpacks it in one step.
    """

    taker: Callable[[_State, str, str], None] | None
    data_key: str
    encoded: bool
    is_id: bool
    summary_id: bool


#: Field name -> plan, filled as names are met.  Bounded against logs with endless distinct names
#: (beyond it, plans are worked out on every use).
_FIELD_PLANS: Final[dict[str, _FieldPlan]] = {}
_FIELD_PLANS_MAX: Final = 1 << 16


def _field_plan(key: str) -> _FieldPlan:
    """The plan of field ``key`` (memoized in :data:`_FIELD_PLANS`)."""
    plan = _FIELD_PLANS.get(key)
    if plan is not None:
        return plan
    taker = _TAKERS.get(key)
    plan = _FieldPlan(
        taker=taker,
        data_key=_data_key(key),
        encoded=key in values.ENCODED_FIELDS,
        is_id=taker is _take_id,
        summary_id=key.endswith(("uid", "auid", "ses")),
    )
    if len(_FIELD_PLANS) < _FIELD_PLANS_MAX:
        _FIELD_PLANS[key] = plan
    return plan


#: uid/gid field -> (its ENRICHED key, whether it names a group).
_ID_FIELDS: Final[dict[str, tuple[str, bool]]] = {
    key: (key.upper(), key.endswith("gid"))
    for key in ("uid", "euid", "gid", "egid", "auid", "suid", "sgid", "fsuid", "fsgid")
}


def _entities(state: _State) -> dict[str, dict[str, str]]:
    """``{"id", "name"}`` of every uid/gid field present and set, by field name.

    The name comes from the ENRICHED part when it names someone, else from the options' tables;
    a field that held a name instead of a number gives ``{"name"}`` alone.
    """
    enriched = state.enriched
    options = state.options
    users = options.user_names
    groups = options.group_names
    found: dict[str, dict[str, str]]
    if not enriched and not users and not groups:  # no name to find: ids alone
        found = {key: {"id": number} for key, number in state.ids.items()}
        for key, text in state.id_names.items():
            found[key] = {"name": text}
        return found
    found = {}
    for key, number in state.ids.items():
        enriched_key, is_group = _ID_FIELDS[key]
        name = enriched.get(enriched_key) if enriched else None
        if name is None or name == _UNSET_TEXT or name == "?" or name.startswith(_NOT_A_NAME_PREFIX):
            table = groups if is_group else users
            name = table.get(number) if table else None
        found[key] = {"id": number} if name is None else {"id": number, "name": name}
    for key, name in state.id_names.items():
        found[key] = {"name": name}
    return found


def _write_users(state: _State) -> None:
    """user.*, user.group, user.effective.* and auditd.user.* from the id fields (Auditbeat's layout)."""
    if not state.ids and not state.id_names:
        return
    found = _entities(state)
    get = found.get
    doc = state.doc
    user: dict[str, Any] = get("uid") or {}
    group = get("gid")
    if group is not None:
        user["group"] = group
    effective: dict[str, Any] = get("euid") or {}
    effective_group = get("egid")
    if effective_group is not None:
        effective["group"] = effective_group
    if effective:
        user["effective"] = effective
    if user:
        doc["user"] = user
    extra: dict[str, Any] = {}
    audit = get("auid")
    if audit is not None:
        extra["audit"] = audit
    for name, uid_key, gid_key in _AUDITD_USERS:
        entity: dict[str, Any] = get(uid_key) or {}
        entity_group = get(gid_key)
        if entity_group is not None:
            entity["group"] = entity_group
        if entity:
            extra[name] = entity
    if extra:
        auditd_user = doc["auditd"].get("user")
        if auditd_user is None:
            doc["auditd"]["user"] = extra
        else:
            auditd_user.update(extra)


#: auditd.user.* entities: (name, uid field, gid field).
_AUDITD_USERS: Final = (("saved", "suid", "sgid"), ("filesystem", "fsuid", "fsgid"))


# Record handlers: how each record's fields enter the state. ------------------------------------


def _merge(state: _State, record: Record) -> None:
    """Fields of a record join the event's fields; a repeated key with another value is kept too.

    The first merged record's fields are used as they are (no copy) until a second record joins.
    """
    raw = state.raw
    if state.raw_shared:
        raw = state.raw = dict(raw)
        state.raw_shared = False
    elif not raw and not record.duplicates:
        state.raw = record.fields
        state.raw_shared = True
        if record.enriched:
            state.enriched = record.enriched
            state.enriched_shared = True
        return
    for key, value in record.fields.items():
        previous = raw.setdefault(key, value)
        if previous is not value and previous != value:
            _add_conflict(state, key, value)
    if record.duplicates:
        for key, value in record.duplicates:
            if raw.get(key) != value:
                _add_conflict(state, key, value)
    if record.enriched:
        if state.enriched_shared:
            state.enriched = dict(state.enriched)
            state.enriched_shared = False
        enriched = state.enriched
        for key, value in record.enriched.items():
            enriched.setdefault(key, value)


def _add_conflict(state: _State, key: str, value: str) -> None:
    if state.conflicts is None:
        state.conflicts = {}
    state.conflicts.setdefault(key, []).append(value)


def _collect_path(state: _State, record: Record) -> None:
    state.paths.append(record)


def _collect_execve(state: _State, record: Record) -> None:
    state.execve.append(record.fields)


def _collect_sockaddr(state: _State, record: Record) -> None:
    if state.sockaddr is None:
        state.sockaddr = record
    else:
        _merge(state, record)


def _collect_cwd(state: _State, record: Record) -> None:
    cwd = record.fields.get("cwd")
    if cwd is not None and state.cwd is None:
        state.cwd = cwd
    if len(record.fields) > 1 or cwd is None:
        _merge(state, record)


def _collect_proctitle(state: _State, record: Record) -> None:
    title = record.fields.get("proctitle")
    if title is not None and state.proctitle is None:
        state.proctitle = title
    else:
        _merge(state, record)


def _skip(state: _State, record: Record) -> None:
    return None


_RECORD_HANDLERS: Final[dict[int, Callable[[_State, Record], None]]] = {
    _PATH: _collect_path,
    _EXECVE: _collect_execve,
    _SOCKADDR: _collect_sockaddr,
    _CWD: _collect_cwd,
    _PROCTITLE: _collect_proctitle,
    _EOE: _skip,
}


# The normalization ---------------------------------------------------------------------------


def normalize(event: Event, options: NormalizeOptions) -> dict[str, Any]:
    """Build the ECS document of one event.

    Args:
        event: an assembled event (at least one record).
        options: host, dataset and name tables.

    Returns:
        The document (nested dicts and lists of str/int), ready for orjson.  Never raises for
        bad input: values that cannot be interpreted stay raw in ``auditd.data`` and the reason
        is listed in ``error.message``.
    """
    records = event.records
    syscall_record: Record | None = None
    for record in records:
        if record.type_id == _SYSCALL:
            syscall_record = record
            break
    first = _leading_record(records)

    doc: dict[str, Any] = {
        "@timestamp": timestamp(event.sec, event.msec),
        "ecs": {"version": ECS_VERSION},
    }
    event_fields: dict[str, Any] = {
        "kind": "event",
        "module": "auditd",
        "dataset": options.dataset,
        "sequence": event.serial,
        "id": document_id(options.host_name, event),
    }
    doc["event"] = event_fields
    doc["data_stream"] = {"type": "logs", "dataset": options.dataset, "namespace": options.namespace}
    host_name = event.node or options.host_name
    doc["host"] = {"name": host_name, "hostname": host_name, "os": {"type": "linux"}}
    auditd: dict[str, Any] = {"message_type": first.type.lower()}
    doc["auditd"] = auditd
    if event.node:
        auditd["node"] = event.node

    state = _State(doc, options)
    # The SYSCALL record speaks for the event (its pid, uid, ... win), then the others in order.
    if syscall_record is not None:
        _merge(state, syscall_record)
    handlers = _RECORD_HANDLERS
    for record in records:
        if record is not syscall_record:
            handlers.get(record.type_id, _merge)(state, record)
        if record.warnings:
            state.warnings.extend(f"{record.type}: {w}" for w in record.warnings)
    if event.forced:
        state.warnings.append("event closed before its last record arrived; records may be missing")

    _interpret_fields(state)
    _write_users(state)
    norm = _select(first, syscall_record, state)
    _apply_records(state, norm)
    _categorize(state, norm, first, syscall_record, event_fields)
    _summarize(state, norm)
    _finish_users(doc)

    data = state.data
    if data:
        auditd["data"] = data
    if options.include_original:
        event_fields["original"] = "\n".join(record.text for record in records)
    if state.warnings:
        doc["error"] = {"message": state.warnings}
    return doc


def _interpret_fields(state: _State) -> None:
    """Every merged raw field goes to its taker or, decoded, to ``auditd.data``."""
    raw = state.raw
    data = state.data
    ids = state.ids
    plans = _FIELD_PLANS
    no_value = _NO_VALUE
    decode_value = values.decode_value
    arch = raw.get("arch")
    if arch is not None:
        _run_taker(state, _take_arch, "arch", arch)
    for key, value in raw.items():
        plan = plans.get(key)
        if plan is None:
            plan = _field_plan(key)
        taker, data_key, encoded, is_id, _ = plan
        if taker is None:
            if value not in no_value:
                if encoded:
                    value = decode_value(value)
                elif value[0] == '"':
                    value = value[1:-1] if len(value) > 1 and value[-1] == '"' else value[1:]
                data[data_key] = value
        elif is_id and value.isdigit() and len(value) < _UNSET_ID_DIGITS and (value[0] != "0" or value == "0"):
            ids[key] = value  # the common case of _take_id (_is_canonical_id), inlined
        elif taker is not _take_arch:
            try:
                taker(state, key, value)
            except Exception as exc:
                state.warnings.append(f"{key}: cannot interpret {value!r} ({exc})")
                data[data_key] = value
    if state.cwd is not None:
        _run_taker(state, _take_cwd, "cwd", state.cwd)
    if state.proctitle is not None:
        _run_taker(state, _take_proctitle, "proctitle", state.proctitle)
    if state.conflicts:
        _keep_conflicts(state)


def _run_taker(state: _State, taker: Callable[[_State, str, str], None], key: str, value: str) -> None:
    try:
        taker(state, key, value)
    except Exception as exc:
        state.warnings.append(f"{key}: cannot interpret {value!r} ({exc})")
        state.data[_data_key(key)] = value


def _keep_conflicts(state: _State) -> None:
    """Values of keys seen again with another value: kept as a list in ``auditd.data``."""
    data = state.data
    assert state.conflicts is not None
    for key, raws in state.conflicts.items():
        decoded = [_decode(key, raw) for raw in raws if raw not in _NO_VALUE]
        if not decoded:
            continue
        data_key = _data_key(key)
        present = data.get(data_key)
        if present is None:
            data[data_key] = decoded if len(decoded) > 1 else decoded[0]
        elif isinstance(present, list):
            present.extend(decoded)
        else:
            data[data_key] = [present, *decoded]


def _leading_record(records: list[Record]) -> Record:
    """The record that gives the event its type: the first record, unless that is the SYSCALL
    record and a later record has its own table entry (an AVC logged after its SYSCALL)."""
    first = records[0]
    if first.type_id != _SYSCALL:
        return first
    for record in records:
        if record.type_id != _SYSCALL and record.type in _RECORD_TYPE_TABLE:
            return record
    return first


def _select(first: Record, syscall_record: Record | None, state: _State) -> Normalization:
    """The table entry for the event (see :mod:`forwarder.ecs.normalizations`)."""
    if first.type_id == _SYSCALL or (syscall_record is not None and first is syscall_record):
        return _syscall_norm(state)
    candidates = _RECORD_TYPE_TABLE.get(first.type)
    if not candidates:
        return RECORD_TYPE_FALLBACK
    if len(candidates) == 1:
        return candidates[0]
    for candidate in candidates:
        if candidate.requires is None or candidate.requires in state.raw:
            return candidate
    return candidates[-1]


def _syscall_norm(state: _State) -> Normalization:
    if state.syscall is None:
        return SYSCALL_FALLBACK
    return _SYSCALL_TABLE.get(state.syscall, SYSCALL_FALLBACK)


def _categorize(
    state: _State,
    norm: Normalization,
    first: Record,
    syscall_record: Record | None,
    event_fields: dict[str, Any],
) -> None:
    """event.category/type/action/outcome and auditd.result."""
    categories = list(norm.category)
    types = list(norm.type)
    if norm.type_by_op is not None:
        op = state.raw.get("op")
        by_op = norm.type_by_op.get(values.unquote(op)) if op is not None else None
        if by_op is not None:
            types = list(by_op)
    if syscall_record is not None and first is not syscall_record:
        extra = _syscall_norm(state)
        for category in extra.category:
            if category not in categories:
                categories.append(category)
        for type_ in extra.type:
            if type_ not in types:
                types.append(type_)
    if categories:
        event_fields["category"] = categories
    if types:
        event_fields["type"] = types
    if norm.action is not None:
        event_fields["action"] = norm.action
    result = state.result or "unknown"
    event_fields["outcome"] = _OUTCOMES.get(result, "unknown")
    state.doc["auditd"]["result"] = result


# Records with their own shape: PATH, EXECVE, SOCKADDR, addr= ---------------------------------


def _apply_records(state: _State, norm: Normalization) -> None:
    doc = state.doc
    if state.execve:
        _apply_execve(state)
    if state.paths:
        try:
            _apply_paths(state, norm)
        except Exception as exc:
            state.warnings.append(f"PATH: cannot interpret ({exc})")
    if state.sockaddr is not None:
        try:
            _apply_sockaddr(state)
        except Exception as exc:
            state.warnings.append(f"SOCKADDR: cannot interpret ({exc})")
            state.data.setdefault("socket", {})["saddr"] = state.sockaddr.fields.get("saddr", "")
    addr = state.raw.get("addr")
    if addr is not None and "source" not in doc:
        _apply_addr(state, norm, addr)


#: EXECVE records' fields -> (arguments, warnings, command line); the same commands run again
#: and again, so their decoding is remembered.  Values are immutable; lists are made per document.
_ExecveResult = tuple[tuple[str, ...], tuple[str, ...], str]
_EXECVE_MEMO: Final[dict[tuple[tuple[tuple[str, str], ...], ...], _ExecveResult]] = {}
#: The same for a lone EXECVE record, by the identity of its (shared) fields dict: no key to build.
_EXECVE_BY_IDENTITY: Final[_IdentityMemo[_ExecveResult]] = _IdentityMemo()


def _apply_execve(state: _State) -> None:
    execve = state.execve
    lone = execve[0] if len(execve) == 1 else None
    known = _EXECVE_BY_IDENTITY.get((id(lone),), (lone,)) if lone is not None else None
    if known is None:
        remember = sum(sum(map(len, fields.values())) for fields in execve) <= _EXECVE_MEMO_MAX_CHARS
        key = tuple(tuple(fields.items()) for fields in execve) if remember else ()
        known = _EXECVE_MEMO.get(key) if remember else None
        if known is None:
            try:
                args, warnings = execve_args_from_records(execve)
            except Exception as exc:
                state.warnings.append(f"EXECVE: cannot interpret ({exc})")
                state.data["execve"] = [dict(fields) for fields in execve]
                return
            known = (tuple(args), tuple(warnings), command_line(args) if args else "")
            if remember:
                if len(_EXECVE_MEMO) >= _MEMO_MAX_ENTRIES:
                    _EXECVE_MEMO.clear()
                _EXECVE_MEMO[key] = known
        if lone is not None:
            _EXECVE_BY_IDENTITY.put((id(lone),), (lone,), known, len(lone))
    args_known, warnings_known, line = known
    state.warnings.extend(warnings_known)
    argc = state.execve[0].get("argc")
    if argc is not None:
        state.data["argc"] = values.unquote(argc)
    if args_known:
        process = state.doc.setdefault("process", {})
        process["args"] = list(args_known)
        process["args_count"] = len(args_known)
        process["command_line"] = line


#: Whether a text holds white space other than the space: regex ``\s`` on text is exactly
#: ``str.isspace()``, where ``str.split()`` cuts.
_HAS_OTHER_WHITE_SPACE: Final = re.compile(r"[^\S ]").search

#: The ASCII characters ``str.isspace()`` accepts, but the space.  Looked for one at a time:
#: each look is a C-level scan (memchr), where the regex engine steps through every character.
_ASCII_OTHER_WHITE_SPACE: Final = ("\t", "\n", "\x0b", "\x0c", "\r", "\x1c", "\x1d", "\x1e", "\x1f")


def _has_other_white_space(text: str) -> bool:
    """Whether ``text`` holds white space (``str.isspace()``) other than the space."""
    if not text.isascii():
        return _HAS_OTHER_WHITE_SPACE(text) is not None
    return any(char in text for char in _ASCII_OTHER_WHITE_SPACE)


def command_line(args: list[str]) -> str:
    """Arguments joined by spaces; an argument with white space (or empty) is double-quoted.

    Inside quotes, ``"`` and ``\\`` are escaped with a backslash.
    """
    line = " ".join(args)
    # The common case, nothing to quote: no argument empty, the only spaces the separators and
    # no other white space (a few scans of the whole line, however many arguments).
    if "" not in args and line.count(" ") == len(args) - 1 and not _has_other_white_space(line):
        return line
    parts = []
    for arg in args:
        # str.split() cuts at exactly the characters str.isspace() accepts (regex \\s): one
        # part equal to the argument means no white space and not empty.
        if arg.split(None, 1) == [arg]:
            parts.append(arg)
        else:
            parts.append('"' + arg.replace("\\", "\\\\").replace('"', '\\"') + '"')
    return " ".join(parts)


@dataclass(frozen=True, slots=True)
class _PathsResult:
    """What the PATH records of an event give the document (see :func:`_interpret_paths`).

    Shared between documents through :data:`NormalizeOptions.path_memo`: the dicts are copied
    when written, never handed out.

    Attributes:
        entries: ``auditd.paths``, one dict per record.
        file: the ECS ``file`` object of the chosen record (None when empty).
        object_primary: ``auditd.summary.object.primary`` (the chosen path name), or None.
        object_type: ``auditd.summary.object.type`` (the file type), or None.
        file_selinux: ``auditd.file.selinux`` (the label of the chosen record), or None.
        warning: a mode that is not octal, or None.
    """

    entries: tuple[dict[str, str], ...]
    file: dict[str, str] | None
    object_primary: str | None
    object_type: str | None
    file_selinux: dict[str, str] | None
    warning: str | None


def _path_record_key(record: Record) -> tuple[Any, ...]:
    """Everything of a PATH record that :func:`_interpret_paths` reads, as a hashable key."""
    return (
        tuple(record.fields.items()),
        tuple(record.duplicates) if record.duplicates else None,
        tuple(record.enriched.items()) if record.enriched else None,
    )


def _apply_paths(state: _State, norm: Normalization) -> None:
    """auditd.paths, file.* and the file object of the summary, from the PATH records.

    PATH records repeat (the same binaries and images, over and over), so their interpretation
    is remembered per options (:attr:`NormalizeOptions.path_memo`) by the records' content.
    """
    records = state.paths
    options = state.options
    sources: tuple[object, ...] = tuple(
        part for record in records for part in (record.fields, record.enriched, record.duplicates)
    )
    identity_key = (norm.path_index, norm.object_type, *[id(source) for source in sources])
    by_identity = options.path_memo_by_identity
    result = by_identity.get(identity_key, sources)
    if result is None:
        key = (norm.path_index, norm.object_type, tuple(_path_record_key(record) for record in records))
        memo = options.path_memo
        result = memo.get(key)
        if result is None:
            result = _interpret_paths(records, norm, options)
            if len(memo) >= _MEMO_MAX_ENTRIES:
                memo.clear()
            memo[key] = result
        by_identity.put(identity_key, sources, result, sum(len(record.fields) for record in records))
    _write_paths(state, result)


def _write_paths(state: _State, result: _PathsResult) -> None:
    """Copy a :class:`_PathsResult` into the document, in the order the fields were always set."""
    doc = state.doc
    auditd = doc["auditd"]
    auditd["paths"] = [dict(entry) for entry in result.entries]
    if result.object_primary is not None:
        _put(auditd, ("summary", "object", "primary"), result.object_primary)
    if result.warning is not None:
        state.warnings.append(result.warning)
    if result.object_type is not None:
        _put(auditd, ("summary", "object", "type"), result.object_type)
    if result.file_selinux is not None:
        file = auditd.get("file")
        if file is None:
            auditd["file"] = {"selinux": dict(result.file_selinux)}
        else:
            file["selinux"] = dict(result.file_selinux)
    if result.file is not None:
        doc["file"] = dict(result.file)


def _interpret_paths(records: list[Record], norm: Normalization, options: NormalizeOptions) -> _PathsResult:
    """Decode the PATH records and pick the one that is the event's file (pure)."""
    entries: list[dict[str, str]] = []
    plans = _FIELD_PLANS
    no_value = _NO_VALUE
    decode_value = values.decode_value
    for record in records:
        entry: dict[str, str] = {}
        for key, raw in record.fields.items():
            if raw not in no_value:
                plan = plans.get(key) or _field_plan(key)
                if plan.encoded:
                    raw = decode_value(raw)
                elif raw[0] == '"':
                    raw = raw[1:-1] if len(raw) > 1 and raw[-1] == '"' else raw[1:]
                entry[plan.data_key] = raw
        if record.duplicates:
            for key, raw in record.duplicates:
                entry.setdefault(_data_key(key) + "_repeated", _decode(key, raw))
        entries.append(entry)

    start = norm.path_index if norm.path_index < len(entries) else 0
    chosen = start
    for index in range(start, len(entries)):
        if entries[index].get("nametype") not in _NOT_OBJECT_NAMETYPES:
            chosen = index
            break
    return _interpret_file(tuple(entries), chosen, records[chosen], norm, options)


def _interpret_file(
    entries: tuple[dict[str, str], ...],
    chosen: int,
    record: Record,
    norm: Normalization,
    options: NormalizeOptions,
) -> _PathsResult:
    """The ECS file of the chosen PATH entry and what it gives the summary."""
    path = entries[chosen]
    file: dict[str, str] = {}
    object_primary = object_type = warning = None
    name = path.get("name")
    if name is not None:
        file["path"] = name
        directory, slash, base = name.rpartition("/")
        if base:
            file["name"] = base
            dot = base.rfind(".")
            if dot > 0 and dot < len(base) - 1:
                file["extension"] = base[dot + 1 :]
        if slash:
            file["directory"] = directory or "/"
        if norm.object_type in ("file", "filesystem"):
            object_primary = name
    inode = path.get("inode")
    if inode is not None:
        file["inode"] = inode
    device = path.get("dev")
    if device is not None:
        file["device"] = device
    mode_raw = path.get("mode")
    if mode_raw is not None:
        mode = values.file_mode(mode_raw)
        if mode is None:
            warning = f"PATH mode={mode_raw!r} is not octal"
        else:
            file["mode"] = mode[0]
            if mode[1]:
                file["type"] = _ECS_FILE_TYPES.get(mode[1], mode[1])
                if norm.object_type == "file":
                    object_type = mode[1]
    for key, enriched_key, name_field, table in (
        ("ouid", "OUID", "owner", options.user_names),
        ("ogid", "OGID", "group", options.group_names),
    ):
        number_raw = path.get(key)
        if number_raw is None:
            continue
        number = values.audit_id(number_raw)
        if number is None:
            continue
        text = str(number)
        file["uid" if key == "ouid" else "gid"] = text
        owner = record.enriched.get(enriched_key) if record.enriched else None
        if owner is None or owner.startswith(_NOT_A_NAME_PREFIX):
            owner = table.get(text)
        if owner is not None:
            file[name_field] = owner
    file_selinux = None
    obj = path.get("obj")
    if obj is not None:
        context = _selinux_context(obj)
        if context:
            file_selinux = context
    return _PathsResult(entries, file or None, object_primary, object_type, file_selinux, warning)


#: SOCKADDR decoder keys -> auditd.data.socket keys (auditd_manager's names).
_SOCKET_KEYS: Final = {"address": "addr", "raw": "saddr"}


def _apply_sockaddr(state: _State) -> None:
    assert state.sockaddr is not None
    record = state.sockaddr
    saddr = record.fields.get("saddr")
    for key, value in record.fields.items():
        if key != "saddr" and value not in _NO_VALUE:
            state.data.setdefault(_data_key(key), _decode(key, value))
    if saddr is None:
        return
    decoded = decode_sockaddr(values.unquote(saddr))
    socket = {_SOCKET_KEYS.get(key, key): str(value) for key, value in decoded.items()}
    state.data["socket"] = socket
    if "family" not in decoded:
        state.warnings.append(f"SOCKADDR saddr={saddr[:64]!r} could not be decoded")
        return
    role = _syscall_norm(state).socket_role
    address = decoded.get("address")
    path = decoded.get("path")
    if role is None or (address is None and path is None):
        return
    endpoint: dict[str, Any] = {}
    if isinstance(address, str):
        endpoint["ip"] = address
        endpoint["address"] = address
        _related(state.doc, "ip", address)
        family = decoded.get("family")
        if family in ("ipv4", "ipv6"):
            _put(state.doc, ("network", "type"), family)
    elif isinstance(path, str):
        endpoint["address"] = path
    port = decoded.get("port")
    if isinstance(port, int):
        endpoint["port"] = port
    state.doc[role] = endpoint
    _put(state.doc, ("network", "direction"), "egress" if role == "destination" else "ingress")


def _apply_addr(state: _State, norm: Normalization, addr_raw: str) -> None:
    """``addr=`` (and ``hostname=``) of a user-space message: the remote peer, when an address."""
    addr = values.unquote(addr_raw)
    if values.is_unset(addr):
        return
    ip = canonical_ip(addr)
    if ip is None:
        return
    source: dict[str, Any] = {"ip": ip, "address": addr}
    hostname_raw = state.raw.get("hostname")
    if hostname_raw is not None:
        hostname = values.unquote(hostname_raw)
        if not values.is_unset(hostname) and hostname != addr:
            source["domain"] = hostname
            _related(state.doc, "hosts", hostname)
    state.doc["source"] = source
    _related(state.doc, "ip", ip)
    if norm.source_from_addr:
        _put(state.doc, ("network", "direction"), "ingress")


def canonical_ip(text: str) -> str | None:
    """The canonical form of an IPv4/IPv6 address (``::ffff:1.2.3.4`` style kept), else None."""
    family = socket.AF_INET6 if ":" in text else socket.AF_INET
    try:
        return socket.inet_ntop(family, socket.inet_pton(family, text))
    except (OSError, ValueError):
        return None


def _related(doc: dict[str, Any], kind: str, value: str) -> None:
    related = doc.get("related")
    if related is None:
        related = doc["related"] = {}
    items = related.get(kind)
    if items is None:
        related[kind] = [value]
    elif value not in items:
        items.append(value)


# Summary and user mappings ---------------------------------------------------------------------


def _lookup(state: _State, key: str) -> tuple[str, str] | None:
    """``(value, field name)`` for the summary: interpreted data first, else the raw field."""
    number = state.ids.get(key)
    if number is not None:
        return number, key
    plan = _FIELD_PLANS.get(key) or _field_plan(key)
    data_key = plan.data_key
    value = state.data.get(data_key)
    if isinstance(value, str):
        return value, key
    raw = state.raw.get(key)
    if raw is None:
        if data_key != key:
            raw = state.raw.get(data_key)
        if raw is None:
            return None
    if plan.summary_id and values.unquote(raw) in _UNSET_IDS:
        return _UNSET_TEXT, key
    if raw in values.UNSET_VALUES:
        return None
    if plan.encoded:
        return values.decode_value(raw), key
    return (values.unquote(raw) if raw[0] == '"' else raw), key


def _first_of(state: _State, keys: tuple[str, ...]) -> tuple[str, str] | None:
    for key in keys:
        if key == "syscall" and state.syscall is not None:
            return state.syscall, key
        found = _lookup(state, key)
        if found is not None:
            return found
    return None


def _summarize(state: _State, norm: Normalization) -> None:
    doc = state.doc
    summary: dict[str, Any] = doc["auditd"].setdefault("summary", {})
    sources: dict[str, tuple[str, str]] = {}
    actor: dict[str, str] = {}
    found = _first_of(state, norm.subject_primary)
    if found is not None:
        actor["primary"] = found[0]
        sources["subject.primary"] = found
    found = _first_of(state, norm.subject_secondary)
    if found is not None:
        actor["secondary"] = found[0]
        sources["subject.secondary"] = found
    if actor:
        summary["actor"] = actor
    obj: dict[str, str] = summary.get("object", {})
    if norm.object_type is not None and "type" not in obj:
        obj["type"] = norm.object_type
    if norm.object_type == "socket" and "primary" not in obj:
        socket = state.data.get("socket")
        if isinstance(socket, dict):
            target = socket.get("addr") or socket.get("path")
            if target:
                obj["primary"] = target
            if socket.get("port"):
                obj["secondary"] = socket["port"]
    for slot, source, keys in (
        ("primary", "object.primary", norm.object_primary),
        ("secondary", "object.secondary", norm.object_secondary),
    ):
        found = _first_of(state, keys) if keys else None
        if found is not None:
            obj[slot] = found[0]
            sources[source] = found
        elif slot in obj and source not in sources:
            sources[source] = (obj[slot], "")
    if obj:
        summary["object"] = obj
    how = _first_of(state, norm.how) if norm.how else None
    if how is not None:
        summary["how"] = how[0]
    else:
        default = _default_how(state)
        if default is not None:
            summary["how"] = default
    if not summary:
        del doc["auditd"]["summary"]
    for source, target in norm.mappings:
        found = _lookup(state, source[6:]) if source.startswith("field:") else sources.get(source)
        if found is not None:
            _map_entity(state, _ENTITY_PATHS[target], found)


def _default_how(state: _State) -> str | None:
    process = state.doc.get("process")
    if not process:
        return None
    exe = process.get("executable")
    comm = process.get("name")
    if exe is None:
        return comm if isinstance(comm, str) else None
    if comm is not None and exe.startswith(_INTERPRETER_PREFIXES):
        return str(comm)
    return str(exe)


@dataclass(frozen=True, slots=True)
class _Entity:
    """Where a table mapping writes: the entity's path and the paths of its ``id`` and ``name``."""

    path: tuple[str, ...]
    id_path: tuple[str, ...]
    name_path: tuple[str, ...]
    is_group: bool


def _entity(*path: str) -> _Entity:
    return _Entity(path, (*path, "id"), (*path, "name"), path[0] == "group")


_ENTITY_PATHS: Final = {
    "user": _entity("user"),
    "user.effective": _entity("user", "effective"),
    "user.target": _entity("user", "target"),
    "user.changes": _entity("user", "changes"),
    "group": _entity("group"),
}


def _map_entity(state: _State, entity: _Entity, found: tuple[str, str]) -> None:
    """Set an ECS user/group entity from a table mapping (id when numeric, else name)."""
    value, source_key = found
    doc = state.doc
    id_path = entity.id_path
    name_path = entity.name_path
    if value in _UNSET_IDS:
        _remove(doc, id_path)
        _remove(doc, name_path)
        return
    options = state.options
    is_group = entity.is_group
    if value.isascii() and value.isdigit():
        _put(doc, id_path, value)
        enriched_key = source_key.replace("-", "_").upper() if source_key else ""
        name = _name_of(state, enriched_key, value, options.group_names if is_group else options.user_names)
        if name is not None:
            _put(doc, name_path, name)
        else:
            _remove(doc, name_path)
    else:
        _put(doc, name_path, value)
        number = None if is_group else options.user_ids.get(value)
        if number is not None:
            _put(doc, id_path, number)
        else:
            _remove(doc, id_path)


def _finish_users(doc: dict[str, Any]) -> None:
    """Drop user.effective when it repeats user; list every user name in related.user."""
    user = doc.get("user")
    if not user:
        return
    effective = user.get("effective")
    if effective is not None:
        for key in ("id", "name"):
            value = user.get(key)
            if value is not None and effective.get(key) == value:
                del user["effective"]
                break
    names: list[str] = []
    for entity in (user, user.get("effective"), user.get("target"), user.get("changes")):
        if entity:
            name = entity.get("name")
            if name is not None and name not in names:
                names.append(name)
    audit = _get(doc, ("auditd", "user", "audit", "name"))
    if audit is not None and audit not in names:
        names.append(audit)
    for name in names:
        _related(doc, "user", name)
