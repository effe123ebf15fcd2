"""The dates and date-times a user writes outside event files: ``--at``, ``--from``/``--to``,
``--as-known-at`` and a rule example's ``at``.

ISO 8601's extended form only — Python's ``fromisoformat`` also reads 20090329 and 2009-W13-7,
which would mean midnight where a date means the whole day.
"""

from __future__ import annotations

import re
from datetime import datetime

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
