"""The argument list of an EXECVE record set.

The kernel writes ``argc=N a0=.. a1=..``; an argument longer than its buffer is split into
fragments ``aI_len=L aI[0]=.. aI[1]=..``, and a long list is spread over several EXECVE records of
one event (only the first has ``argc``).  Each argument or fragment is ``"text"`` or hex, as for
every encoded field (:func:`forwarder.audit.values.decode_value`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from itertools import islice
from typing import Final

from forwarder.audit.values import decode_hex, decode_text, decode_value, unquote

#: ``a12`` (whole argument), ``a12_len`` (length of a split one), ``a12[3]`` (a fragment).
_ARG_KEY: Final = re.compile(r"a(\d+)(?:(_len)|\[(\d+)\])?")

#: What a field name of an EXECVE record is, as :func:`_arg_key` says.
_WHOLE: Final = -1
_LENGTH: Final = -2
_NOT_AN_ARGUMENT: Final = -3

#: :func:`_arg_key`'s answer for ``argc`` and the other names that are no argument.
_OTHER_FIELD: Final = (-1, _NOT_AN_ARGUMENT)

#: Field names seen so far -> :func:`_arg_key`'s answer; the same few hundred names occur in
#: every EXECVE record, so the regex runs once per name.  Bounded against logs with endless
#: distinct names (then names are matched every time).  Answers are compared by value, never
#: by identity: compiled builds do not keep the identity of small tuples.
_ARG_KEYS: Final[dict[str, tuple[int, int]]] = {}
_ARG_KEYS_MAX: Final = 1 << 16


def _arg_key(key: str) -> tuple[int, int]:
    """``(argument index, part)`` of an EXECVE field name.

    ``part`` is :data:`_WHOLE` (``a12``), :data:`_LENGTH` (``a12_len``), the fragment number
    (``a12[3]`` -> 3), or :data:`_NOT_AN_ARGUMENT` for ``argc`` and others.
    """
    known = _ARG_KEYS.get(key)
    if known is not None:
        return known
    match = _ARG_KEY.fullmatch(key)
    if match is None:
        parsed = _OTHER_FIELD
    elif match[2]:
        parsed = (int(match[1]), _LENGTH)
    elif match[3] is not None:
        parsed = (int(match[1]), int(match[3]))
    else:
        parsed = (int(match[1]), _WHOLE)
    if len(_ARG_KEYS) < _ARG_KEYS_MAX:
        _ARG_KEYS[key] = parsed
    return parsed


#: ``a0``, ``a1``, ...: the names of whole arguments by index, grown as longer lists are met
#: (never beyond the number of fields of a record read).
_ARGUMENT_NAMES: Final[list[str]] = []


def _argument_names(count: int) -> list[str]:
    """``["a0", ..., "a{count-1}"]``."""
    names = _ARGUMENT_NAMES
    while len(names) < count:
        names.append(f"a{len(names)}")
    return names[:count]


def _whole_arguments(fields: dict[str, str]) -> list[str] | None:
    """The arguments of the common EXECVE record: exactly ``argc=N a0 .. a{N-1}``, in order, each
    argument whole.  ``None`` for any other record (:func:`execve_args` then reads it field by
    field, with its warnings)."""
    argc = fields.get("argc")
    if argc is None or not argc.isascii() or not argc.isdigit():
        return None
    count = int(argc)
    if len(fields) != count + 1:
        return None
    names = list(fields)
    if names[0] != "argc" or names[1:] != _argument_names(count):
        return None
    # One pass, no regex over the arguments: a regex steps through every character in turn,
    # where find() scans for the closing quote at C speed (arguments run to kilobytes).
    args: list[str] = []
    for raw in islice(fields.values(), 1, None):
        if raw[:1] == '"':  # the common case of _decode_arg, inlined
            end = raw.find('"', 1)
            args.append(raw[1:end] if end > 0 else raw[1:])
        else:
            args.append(_decode_arg(raw))
    return args


def execve_args(fields: dict[str, str]) -> tuple[list[str], list[str]]:
    """Decode the arguments of an EXECVE record (or of several merged, see below).

    Args:
        fields: raw fields as written (``Record.fields``).

    Returns:
        ``(args, warnings)``.  Arguments are decoded like :func:`decode_value` except that a NUL
        byte is kept (an argument cannot hold one, so it shows a damaged log).  Fragments of a
        split argument are joined before decoding, so a character cut between two fragments
        survives.  Warnings (never exceptions) tell of: ``argc`` missing or not a number (the
        count is then taken from the highest argument seen), missing arguments (left out of
        the list, named as index ranges), missing fragments, a joined length that matches
        ``aI_len`` neither in bytes nor in hex digits, and arguments beyond ``argc`` (ignored).
    """
    common = _whole_arguments(fields)
    if common is not None:
        return common, []
    whole: dict[int, str] = {}
    lengths: dict[int, str] = {}
    fragments: dict[int, dict[int, str]] = {}
    known = _ARG_KEYS
    for key, value in fields.items():
        parsed = known.get(key)
        if parsed is None:
            parsed = _arg_key(key)
        index, part = parsed
        if part == _WHOLE:
            whole[index] = value
        elif part == _LENGTH:
            lengths[index] = value
        elif part != _NOT_AN_ARGUMENT:
            fragments.setdefault(index, {})[part] = value

    warnings: list[str] = []
    argc = _argc(fields.get("argc"), whole, lengths, fragments, warnings)
    args: list[str] = []
    missing: list[int] = []
    for index in range(argc):
        raw = whole.get(index)
        if raw is not None:
            if raw[:1] == '"':  # the common case of _decode_arg, inlined
                end = raw.find('"', 1)
                args.append(raw[1:end] if end > 0 else raw[1:])
            else:
                args.append(_decode_arg(raw))
        elif index in fragments:
            args.append(_join_fragments(index, fragments[index], lengths.get(index), warnings))
        else:
            missing.append(index)
    if missing:
        warnings.append(f"EXECVE arguments missing: {_ranges(missing)}")
    beyond = sorted(i for i in (*whole, *fragments) if i >= argc)
    if beyond:
        warnings.append(f"EXECVE arguments beyond argc={argc} ignored: {_ranges(beyond)}")
    return args, warnings


def execve_args_from_records(records: Iterable[dict[str, str]]) -> tuple[list[str], list[str]]:
    """Decode the arguments spread over the EXECVE records of one event, in log order.

    Args:
        records: the raw fields of each EXECVE record (``Record.fields``), in order.

    Returns:
        As :func:`execve_args` on the merged fields.  A field seen in two records keeps its
        first value, with a warning.
    """
    if isinstance(records, list) and len(records) == 1:
        return execve_args(records[0])  # one record: nothing to merge, no conflict possible
    merged: dict[str, str] = {}
    conflicts: list[str] = []
    for fields in records:
        for key, value in fields.items():
            previous = merged.setdefault(key, value)
            if previous != value:
                conflicts.append(key)
    args, warnings = execve_args(merged)
    if conflicts:
        warnings.insert(0, f"EXECVE fields repeated with other values (first kept): {', '.join(conflicts)}")
    return args, warnings


def _argc(
    raw: str | None,
    whole: dict[int, str],
    lengths: dict[int, str],
    fragments: dict[int, dict[int, str]],
    warnings: list[str],
) -> int:
    if raw is not None:
        text = unquote(raw)
        if text.isascii() and text.isdigit():
            return int(text)
        warnings.append(f"EXECVE argc is not a number: {raw!r}")
    else:
        warnings.append("EXECVE argc missing")
    return max((*whole, *lengths, *fragments), default=-1) + 1


def _decode_arg(raw: str) -> str:
    """One argument: ``"text"`` or hex (NUL bytes kept), else as written."""
    if raw.startswith('"'):
        return decode_value(raw)
    data = decode_hex(raw)
    return raw if data is None else decode_text(data)


def _join_fragments(index: int, parts: dict[int, str], length: str | None, warnings: list[str]) -> str:
    ordered = [parts[number] for number in sorted(parts)]
    absent = [number for number in range(max(parts) + 1) if number not in parts]
    if absent:
        warnings.append(f"EXECVE a{index} fragments missing: {_ranges(absent)}")
    if all(not part.startswith('"') for part in ordered):
        data = decode_hex("".join(ordered))
        if data is not None:
            text = decode_text(data)
            # The kernel gives the length in logged characters (hex digits) for most
            # arguments, but in bytes for the longest ones.
            _check_length(index, (len(data), 2 * len(data)), length, absent, warnings)
            return text
    text = "".join(_decode_arg(part) for part in ordered)
    _check_length(index, (len(text.encode("utf-8", "replace")),), length, absent, warnings)
    return text


def _check_length(
    index: int, accepted: tuple[int, ...], length: str | None, absent: list[int], warnings: list[str]
) -> None:
    """Warn when ``aI_len`` is missing or matches none of the ``accepted`` lengths."""
    if length is None:
        warnings.append(f"EXECVE a{index}_len missing")
    elif not absent and (not length.isascii() or not length.isdigit() or int(length) not in accepted):
        warnings.append(f"EXECVE a{index} has {accepted[0]} bytes, a{index}_len={length}")


def _ranges(numbers: list[int]) -> str:
    """``[0, 1, 2, 5, 7, 8]`` -> ``"0-2, 5, 7-8"`` (numbers sorted ascending)."""
    spans: list[str] = []
    start = previous = numbers[0]
    for number in numbers[1:]:
        if number != previous + 1:
            spans.append(f"{start}-{previous}" if previous > start else str(start))
            start = number
        previous = number
    spans.append(f"{start}-{previous}" if previous > start else str(start))
    return ", ".join(spans)
