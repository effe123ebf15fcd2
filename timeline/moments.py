"""The dates and date-times a user writes outside event files: ``--at``, ``--from``/``--to``,
``--as-known-at`` and a rule example's ``at``.

ISO 8601's extended form only — Python's ``fromisoformat`` also reads 20090329 and 2009-W13-7,
which would mean midnight where a date means the whole day.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from timeline.errors import UsageError

DAY_RE = re.compile(r"\d{4}-\d{2}-\d{2}")
LOCAL_TIME_RE = re.compile(r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?")
OFFSET_TIME_RE = re.compile(LOCAL_TIME_RE.pattern + r"(Z|[+-]\d{2}:?\d{2})")


def clinical_moment(text: str, option: str) -> tuple[datetime, bool]:
    """A clinical date or date-time (the store's local clock, no UTC offset) → (its first
    instant, whether it is a whole day). ``option`` names the text in messages."""
    s = text.strip()
    if OFFSET_TIME_RE.fullmatch(s):
        raise UsageError(
            f"{option} {text!r}: give clinical times without an offset (they are in the store's time zone)"
        )
    try:
        if DAY_RE.fullmatch(s) or LOCAL_TIME_RE.fullmatch(s):
            return datetime.fromisoformat(s), DAY_RE.fullmatch(s) is not None
        raise ValueError(s)
    except ValueError as exc:
        raise UsageError(
            f"{option} {text!r} is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM)"
        ) from exc


# The instants a query can name. No event lies before 1900 (ingest refuses it), and the engine
# moves an instant by the durations rules use (years, at most), which must stay within
# Python's calendar (years 1 to 9999).
AT_MIN, AT_MAX = datetime(1900, 1, 1), datetime(9000, 1, 1)


def parse_at(text: str, option: str = "--at") -> tuple[datetime, str]:
    """A query date or date-time → (instant q, label). A date means the whole day: the last
    microsecond of it, so every event on that date is visible. ``option`` names the text in
    messages."""
    q, whole_day = clinical_moment(text, option)
    if whole_day:
        q += timedelta(days=1, microseconds=-1)
    if not AT_MIN <= q < AT_MAX:
        raise UsageError(
            f"{option} {text!r} is out of range: give a date from {AT_MIN:%Y-%m-%d} to "
            f"{AT_MAX - timedelta(days=1):%Y-%m-%d}"
        )
    return q, text.strip()
