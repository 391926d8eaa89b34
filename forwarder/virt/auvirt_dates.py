"""auvirt's ``--start``/``--end DATE [TIME]`` (ausearch's time rules of audit 3.0.9).

DATE is a keyword (``now recent boot today yesterday this-week week-ago this-month
this-year``) or ``strptime(%x)`` of the C locale (``MM/DD/YY``); TIME is ``strptime(%X)``
(``HH:MM:SS``; five characters or fewer get ``:00`` appended).  auvirt passes ``00:00:00``
when TIME is omitted, so ``--end DATE`` means the *start* of DATE, ``--end today`` means now
and ``now``/``recent``/``boot`` keep their instant.  Years before 2004 are refused.

Pure: the clock (current time, local-time conversion, ``mktime``, uptime) is passed in as a
:class:`Clock`.  Errors come back as :class:`DateError` with auvirt's message.
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Final, Literal

#: The TIME auvirt passes when none is given.
MIDNIGHT: Final = "00:00:00"
#: ausearch refuses years before this (``tm_year < 104``).
FIRST_YEAR: Final = 2004
_TM_YEAR_BASE: Final = 1900
_SECONDS_PER_DAY: Final = 86400
#: ``recent`` is this many seconds ago.
_RECENT_SECONDS: Final = 10 * 60
#: A TIME of at most this many characters gets ``:00`` appended (``HH:MM``).
_SHORT_TIME: Final = 5
#: ausearch copies TIME into a 64-byte buffer.
_TIME_BUFFER: Final = 63
_C_SPACE: Final = " \t\n\v\f\r"

Bound = Literal["start", "end"]


def _utc_mktime(fields: tuple[int, int, int, int, int, int, int, int, int]) -> float:
    year, month, day, hour, minute, second = fields[:6]
    month_index = month - 1
    year += month_index // 12
    month_index %= 12
    first_of_month = calendar.timegm((year, month_index + 1, 1, 0, 0, 0, 0, 0, 0))
    return float(first_of_month + (day - 1) * _SECONDS_PER_DAY + hour * 3600 + minute * 60 + second)


@dataclass(slots=True, frozen=True)
class Clock:
    """What the date rules need from the system.

    Attributes:
        now: the current time (epoch seconds).
        localtime: epoch seconds -> local broken-down time (``time.localtime``).
        mktime: local broken-down time -> epoch seconds, normalizing out-of-range fields and
            honouring ``tm_isdst`` (``time.mktime``).
        uptime: seconds since boot, ``None`` when unknown.
    """

    now: int
    localtime: Callable[[float], time.struct_time] = time.gmtime
    mktime: Callable[[tuple[int, int, int, int, int, int, int, int, int]], float] = _utc_mktime
    uptime: float | None = None


@dataclass(slots=True, frozen=True)
class DateError:
    """A refused date or time, with auvirt's message (one line, no newline)."""

    message: str


@dataclass(slots=True, frozen=True)
class _Tm:
    """C ``struct tm`` as ausearch fills it (``year`` since 1900, ``month`` 0-11)."""

    second: int = 0
    minute: int = 0
    hour: int = 0
    day: int = 0
    month: int = 0
    year: int = 0
    isdst: int = 0

    def with_date_of(self, moment: time.struct_time) -> _Tm:
        return replace(
            self,
            day=moment.tm_mday,
            month=moment.tm_mon - 1,
            year=moment.tm_year - _TM_YEAR_BASE,
            isdst=moment.tm_isdst,
        )

    def with_clock_of(self, moment: time.struct_time) -> _Tm:
        return replace(self, second=moment.tm_sec, minute=moment.tm_min, hour=moment.tm_hour)

    def at_midnight(self) -> _Tm:
        return replace(self, second=0, minute=0, hour=0)


def _c_weekday(moment: time.struct_time) -> int:
    """C's ``tm_wday`` (Sunday = 0) from Python's (Monday = 0)."""
    return (moment.tm_wday + 1) % 7


def _keyword(name: str, tm: _Tm, clock: Clock) -> _Tm | DateError | None:
    """A keyword's time, ``None`` when ``name`` is no keyword (or ``boot`` fails: see below)."""
    now = clock.now
    here = clock.localtime(now)
    if name == "now":
        return tm.with_clock_of(here).with_date_of(here)
    if name == "recent":
        moment = clock.localtime(now - _RECENT_SECONDS)
        return tm.with_clock_of(moment).with_date_of(moment)
    if name == "boot":
        if clock.uptime is None:
            # ausearch reports it and then tries the word as a date, which fails as well.
            return None
        moment = clock.localtime(now - int(clock.uptime + 0.5))
        return tm.with_clock_of(moment).with_date_of(moment)
    if name == "today":
        return tm.at_midnight().with_date_of(here)
    if name == "yesterday":
        return tm.at_midnight().with_date_of(clock.localtime(now - _SECONDS_PER_DAY))
    if name == "this-week":
        return tm.at_midnight().with_date_of(clock.localtime(now - _c_weekday(here) * _SECONDS_PER_DAY))
    if name == "week-ago":
        return tm.at_midnight().with_date_of(clock.localtime(now - 7 * _SECONDS_PER_DAY))
    if name == "this-month":
        return replace(tm.at_midnight().with_date_of(here), day=1)
    if name == "this-year":
        return replace(tm.at_midnight().with_date_of(here), day=1, month=0, isdst=0)
    return None


KEYWORDS: Final = frozenset(
    {"now", "recent", "boot", "today", "yesterday", "this-week", "week-ago", "this-month", "this-year"}
)
#: Keywords that keep their instant when no TIME is given.
_INSTANT_KEYWORDS: Final = frozenset({"now", "recent", "boot"})


class _Scanner:
    """glibc ``strptime`` over one string, for the numeric conversions used here."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.at = 0

    def number(self, lowest: int, highest: int, digits: int) -> int | None:
        text = self.text
        while self.at < len(text) and text[self.at] in _C_SPACE:
            self.at += 1
        if self.at >= len(text) or not "0" <= text[self.at] <= "9":
            return None
        value = 0
        left = digits
        while True:
            value = value * 10 + int(text[self.at])
            self.at += 1
            left -= 1
            if not (left > 0 and value * 10 <= highest and self.at < len(text) and "0" <= text[self.at] <= "9"):
                break
        return value if lowest <= value <= highest else None

    def literal(self, char: str) -> bool:
        if self.text[self.at : self.at + 1] == char:
            self.at += 1
            return True
        return False

    @property
    def rest(self) -> str:
        return self.text[self.at :]


def _parse_date(text: str, tm: _Tm) -> tuple[_Tm, str] | None:
    """``strptime(text, "%x")`` in the C locale (``%m/%d/%y``): the tm and the unparsed rest."""
    scan = _Scanner(text)
    month = scan.number(1, 12, 2)
    if month is None or not scan.literal("/"):
        return None
    day = scan.number(1, 31, 2)
    if day is None or not scan.literal("/"):
        return None
    year = scan.number(0, 99, 2)
    if year is None:
        return None
    # 69-99 are 1969-1999, 00-68 are 2000-2068 (POSIX).
    full_year = year if year >= 69 else year + 100
    return replace(tm, month=month - 1, day=day, year=full_year), scan.rest


def _parse_clock(text: str, tm: _Tm) -> tuple[_Tm, str] | None:
    """``strptime(text, "%X")`` in the C locale (``%H:%M:%S``)."""
    scan = _Scanner(text)
    hour = scan.number(0, 23, 2)
    if hour is None or not scan.literal(":"):
        return None
    minute = scan.number(0, 59, 2)
    if minute is None or not scan.literal(":"):
        return None
    second = scan.number(0, 61, 2)
    if second is None:
        return None
    return replace(tm, hour=hour, minute=minute, second=second), scan.rest


def _mktime(tm: _Tm, clock: Clock) -> int | None:
    try:
        seconds = clock.mktime(
            (tm.year + _TM_YEAR_BASE, tm.month + 1, tm.day, tm.hour, tm.minute, tm.second, 0, 0, tm.isdst)
        )
    except (OverflowError, ValueError, OSError):
        return None
    return int(seconds)


def parse_bound(bound: Bound, date: str, clock_text: str, clock: Clock) -> int | DateError:
    """The epoch seconds of ``--start``/``--end DATE TIME`` as auvirt 3.0.9 computes them.

    Args:
        bound: ``start`` or ``end`` (they differ for ``today`` and in their messages).
        date: DATE as given.
        clock_text: TIME as given, :data:`MIDNIGHT` when omitted (as auvirt passes it).
        clock: the system clock.

    Returns:
        Epoch seconds, or a :class:`DateError` with auvirt's message.
    """
    tm = _Tm()
    keyword = _keyword(date, tm, clock) if date in KEYWORDS else None
    if isinstance(keyword, DateError):
        return keyword
    if keyword is None:
        parsed = _parse_date(date, tm)
        if parsed is None:
            return DateError(f"Invalid {bound} date ({date}). Month, Day, and Year are required.")
        tm, rest = parsed
        if rest:
            return DateError(f"Error parsing {bound} date ({date})")
    else:
        tm = keyword
        if date in _INSTANT_KEYWORDS and clock_text == MIDNIGHT:
            return _converted(bound, tm, clock)
        if bound == "end" and date == "today":
            here = clock.localtime(clock.now)
            tm = tm.with_clock_of(here).with_date_of(here)
            if clock_text == MIDNIGHT:
                return _converted(bound, tm, clock)
    padded = f"{clock_text}:00" if len(clock_text) <= _SHORT_TIME else clock_text[:_TIME_BUFFER]
    parsed_clock = _parse_clock(padded, tm)
    if parsed_clock is None:
        return DateError(f"Invalid {bound} time ({clock_text}). Hour, Minute, and Second are required.")
    tm, rest = parsed_clock
    if rest:
        return DateError(f"Error parsing {bound} time ({clock_text})")
    if tm.year + _TM_YEAR_BASE < FIRST_YEAR:
        return DateError(f"Error - year is {tm.year + _TM_YEAR_BASE}")
    return _converted(bound, tm, clock)


def _converted(bound: Bound, tm: _Tm, clock: Clock) -> int | DateError:
    seconds = _mktime(tm, clock)
    if seconds is None or seconds == -1:
        return DateError(f"Error converting {bound} time")
    return seconds
