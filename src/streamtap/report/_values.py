"""Values taken from log files, which are input from anywhere: numbers, times and strings.

Every number is checked before use (finite, of the right type, not a 400-digit integer), every
time is kept within what a datetime can show (years 1 to 9999), and every string is shown with
its control characters escaped (`printable`; `html_safe` for a page), so that a log line cannot
move the terminal's cursor, retitle it or reverse the text around it.
"""

from __future__ import annotations

import argparse
import html
import math
import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
# Start times a summary may have: what a datetime can show (years 1 to 9999). A bucket may
# start before MIN_TIME: `utc` clamps what it shows.
MIN_TIME = (datetime(1, 1, 1, tzinfo=timezone.utc) - _EPOCH).total_seconds()
MAX_TIME = (datetime(9999, 12, 31, 23, 59, 59, tzinfo=timezone.utc) - _EPOCH).total_seconds()


def finite(value: Any) -> float | None:
    """A finite number, or None for null / missing / anything else."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an integer too large for a float
        return None
    return f if math.isfinite(f) else None


def is_number(value: Any) -> bool:
    """An int or a float (any value, NaN included), but not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def whole(value: Any) -> int | None:
    """An int (of any size), or None for a bool, a float or anything else."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def utc(t: float) -> datetime:
    """Epoch seconds as an aware UTC datetime; never raises (clamped to years 1 to 9999)."""
    if not MIN_TIME <= t <= MAX_TIME:  # also NaN
        t = MIN_TIME if t < 0 else MAX_TIME
    return _EPOCH + timedelta(seconds=t)


def fmt_utc(t: float, seconds: bool = True) -> str:
    """`YYYY-MM-DD HH:MM[:SS]` (formatted by hand: strftime pads years below 1000 unevenly)."""
    d = utc(t)
    text = f"{d.year:04d}-{d.month:02d}-{d.day:02d} {d.hour:02d}:{d.minute:02d}"
    return text + f":{d.second:02d}" if seconds else text


# Characters that would act on a terminal or reorder text instead of being shown: C0 and C1
# controls, DEL, bidirectional marks, overrides and isolates, line and paragraph separators,
# the byte order mark, and lone surrogates (which cannot even be encoded).
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e"
    "\u2066-\u2069\ufeff\ud800-\udfff]"
)


def _escape_char(m: re.Match[str]) -> str:
    o = ord(m.group())
    return f"\\x{o:02x}" if o < 0x100 else f"\\u{o:04x}"


def printable(text: str, limit: int = 200) -> str:
    """`text` safe to show: at most `limit` characters, control characters escaped (`\\x1b`)."""
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return _UNPRINTABLE.sub(_escape_char, text)


def html_safe(text: object) -> str:
    """`text` for an HTML page: `printable` (at most 400 characters), then HTML-escaped."""
    return html.escape(printable(str(text), 400), quote=True)


_FRACTION = re.compile(r"\.(\d+)")


def parse_iso(text: str) -> float | None:
    """ISO 8601 date or date-time (`Z` allowed; naive means UTC) to epoch seconds."""
    s = text.strip()
    if len(s) > 64:  # no date-time is that long; do not run the regex over a huge field
        return None
    if s.endswith(("Z", "z")):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        # Python < 3.11 takes only 3 or 6 fractional digits: pad or cut to 6.
        fixed = _FRACTION.sub(lambda m: "." + (m.group(1) + "000000")[:6], s, count=1)
        try:
            dt = datetime.fromisoformat(fixed)
        except ValueError:
            return None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH).total_seconds()  # (timestamp() fails near years 1 and 9999)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_time_arg(text: str, now: float | None = None) -> float:
    """`--since` / `--until`: epoch seconds, ISO 8601, or an age such as `90m`, `6h`, `7d`."""
    s = text.strip()
    parsed: float | None = None
    unit = _UNITS.get(s[-1:].lower())
    if unit is not None:
        try:
            parsed = (time.time() if now is None else now) - float(s[:-1]) * unit
        except ValueError:
            pass
    if parsed is None:
        try:
            parsed = float(s)
        except ValueError:
            parsed = parse_iso(s)
    if parsed is None or not math.isfinite(parsed):
        raise argparse.ArgumentTypeError(
            f"not a time: {printable(repr(text), 80)} "
            "(use ISO 8601, epoch seconds, or an age like 30m, 6h, 7d)"
        )
    return min(max(parsed, MIN_TIME), MAX_TIME)  # every stream's time is in that range
