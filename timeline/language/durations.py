"""Durations in rule files: ``12 hours``, ``7 days``, ``2 weeks``, ``3 months``, ``1 year``.

Months and years are calendar units (DuckDB interval arithmetic: 31 January + 1 month is
28/29 February); hours, days and weeks are exact.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

_UNITS = {
    "hour": "hour", "hours": "hour", "h": "hour",
    "day": "day", "days": "day", "d": "day",
    "week": "week", "weeks": "week", "wk": "week",
    "month": "month", "months": "month", "mo": "month",
    "year": "year", "years": "year", "y": "year", "a": "year",
}  # fmt: skip
_RE = re.compile(r"^\s*(-?\d+)\s*([A-Za-z]+)\s*$")
_FRACTION = re.compile(r"^\s*-?\d*\.\d+\s*([A-Za-z]+)\s*$")
DURATION_WORDS = frozenset(_UNITS)


EXAMPLES = "e.g. '12 hours', '7 days', '2 weeks', '3 months', '1 year'"
_WORDS = ("hour", "hours", "day", "days", "week", "weeks", "month", "months", "year", "years")


# duration words of Spanish, Portuguese, French, Italian and German, as a site's author may
# write them (4 semanas, 30 dias): each told the English word the language reads
_FOREIGN = {
    **dict.fromkeys(("hora", "horas", "heure", "heures", "ora", "ore", "stunde", "stunden"), "hour"),
    **dict.fromkeys(("dia", "dias", "día", "días", "jour", "jours", "giorno", "giorni", "tag", "tage"), "day"),
    **dict.fromkeys(("semana", "semanas", "semaine", "semaines", "settimana", "settimane", "woche", "wochen"), "week"),
    **dict.fromkeys(("mes", "meses", "mês", "mois", "mese", "mesi", "monat", "monate"), "month"),
    **dict.fromkeys(("año", "años", "ano", "anos", "an", "ans", "année", "années", "anno", "anni", "jahr", "jahre"), "year"),
}  # fmt: skip


def close_matches(word: str, choices: Sequence[str], n: int, cutoff: float) -> list[str]:
    """``difflib.get_close_matches``, imported when a misspelling is to be named: not at the
    start of a command that finds nothing misspelt (`timeline state`)."""
    from difflib import get_close_matches

    return get_close_matches(word, choices, n=n, cutoff=cutoff)


class DurationError(ValueError):
    pass


def _what_was_meant(text: object) -> str:
    """A bare number's missing unit (``30``: '30 days'), a misspelt word's duration (``14 dayz``:
    '14 days'), or nothing."""
    if isinstance(text, bool):
        return ""
    if isinstance(text, int | float) or re.fullmatch(r"\s*-?\d+(\.\d+)?\s*", str(text)):
        return f": a duration needs its unit, e.g. '{str(text).strip()} days'"
    m = re.fullmatch(r"\s*(-?\d+)\s*(\w+)\s*", str(text))
    foreign = _FOREIGN.get(m.group(2).lower()) if m else None
    close = [foreign] if foreign else []
    if m and not close and m.group(2).isascii():
        close = close_matches(m.group(2).lower(), _WORDS, n=1, cutoff=0.75)
    if not (m and close):
        return ""
    word = close[0].removesuffix("s") + ("" if abs(int(m.group(1))) == 1 else "s")
    return f"; did you mean '{m.group(1)} {word}'?"


def english(word: str) -> str | None:
    """The duration word (hour, day, week, month, year) that a misspelt or foreign one
    means (``dayz``, ``semanas``), else None."""
    low = word.lower()
    if low in _FOREIGN:
        return _FOREIGN[low]
    close = close_matches(low, _WORDS, n=1, cutoff=0.75) if low.isascii() else []
    return close[0].removesuffix("s") if close else None


def misspelt(word: str) -> bool:
    """Whether ``word`` (after a number) is a misspelt duration word: ``dayz``, ``dias``, ``wks``,
    or one of another language: ``semanas``, ``mois``."""
    return word.lower() in _FOREIGN or bool(close_matches(word.lower(), _WORDS, n=1, cutoff=0.75))


class DurationTooLong(DurationError):
    """A well-formed duration past MAX_YEARS."""


# The longest duration a rule or cohort file may give: far beyond any clinical window, and
# short enough that instants moved by it stay within the calendar (years 1 to 9999).
MAX_YEARS = 200
_HOURS = {"hour": 1, "day": 24, "week": 24 * 7, "month": 24 * 366 // 12, "year": 24 * 366}
MAX_HOURS = MAX_YEARS * _HOURS["year"]


@dataclass(frozen=True, order=True)
class Duration:
    amount: int
    unit: str  # hour | day | week | month | year

    @classmethod
    def parse(cls, text: object) -> Duration:
        if isinstance(text, Duration):
            return text
        m = _RE.match(str(text))
        fraction = _FRACTION.match(str(text))
        if fraction and fraction.group(1).lower() in _UNITS:
            # a month or a year has no fixed length in days: 0.25 years would be a guess
            raise DurationError(
                f"{text!r} is not a duration: a duration is a whole number of hours, days, weeks, "
                "months or years (a calendar month or year has no fixed length to take a fraction "
                "of); write '3 months' or '91 days'"
            )
        if not m or m.group(2).lower() not in _UNITS:
            raise DurationError(f"{text!r} is not a duration ({EXAMPLES}){_what_was_meant(text)}")
        d = cls(int(m.group(1)), _UNITS[m.group(2).lower()])
        if abs(d.approx_hours) > MAX_HOURS:
            raise DurationTooLong(f"{text!r} is longer than {MAX_YEARS} years, the longest duration allowed")
        return d

    def sql(self) -> str:
        """A DuckDB interval literal."""
        if self.unit == "week":
            return f"INTERVAL '{7 * self.amount} day'"
        return f"INTERVAL '{self.amount} {self.unit}'"

    @property
    def exact(self) -> timedelta | None:
        """The length of a duration of hours, days or weeks, by which :func:`shift` moves an
        instant; None for months and years, which it moves on the calendar."""
        step = _EXACT.get(self.unit)
        return None if step is None else step * self.amount

    def negate(self) -> Duration:
        return Duration(-self.amount, self.unit)

    @property
    def is_zero(self) -> bool:
        return self.amount == 0

    @property
    def approx_hours(self) -> int:
        """Its length in hours, a month as 1/12 of a 366-day year: for ordering durations of
        different units, never for arithmetic."""
        return self.amount * _HOURS[self.unit]

    def __str__(self) -> str:
        n = abs(self.amount)
        word = self.unit if n == 1 else self.unit + "s"
        return f"{'-' if self.amount < 0 else ''}{n} {word}"


def add_months(t: datetime, n: int) -> datetime:
    """Calendar months: the day is clipped to the month's length (31 Jan + 1 month = 28 Feb)."""
    y, m = divmod(t.month - 1 + n, 12)
    year, month = t.year + y, m + 1
    day = t.day
    if day > 28:  # only a day past the 28th can be past the month's end
        day = min(day, calendar.monthrange(year, month)[1])
    return t.replace(year=year, month=month, day=day)


# the exact units' lengths: an instant is moved by amount × this
_EXACT = {"hour": timedelta(hours=1), "day": timedelta(days=1), "week": timedelta(days=7)}


def shift(t: datetime, d: Duration, sign: int = 1) -> datetime:
    """``t`` moved by ``d`` (backwards with ``sign=-1``) as DuckDB moves it by the interval
    (``Duration.sql``): hours, days and weeks exactly, months and years on the calendar."""
    step = _EXACT.get(d.unit)
    if step is not None:
        return t + step * (d.amount * sign)
    n = d.amount * sign
    return add_months(t, n if d.unit == "month" else 12 * n)
