"""The checks ingest makes of an event's values, made of a rule file's example events when the
file is read, so that `rules check` reports them at their line (helper 62: an example event in
``µg/L`` passed `rules check`, and `rules test` then failed it without saying where).

The loader checks an example event's shape (its kind, the fields its kind needs); this module
checks what ingest would refuse in its values: a date that is no date, a measurement's unit
that does not convert to its code's unit (or is not one the code is recorded in), a value
outside its code's plausible range. The messages are ingest's. (A dose's unit, read in
lower case with spellings of its own, is left to ingest: `rules test` names the example's file
and line when it refuses one.)
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import date

from timeline import codes
from timeline.units import UnitError, conversion


def event_problems(event: Mapping[str, object], book: codes.CodeBook) -> Iterator[tuple[str, str]]:
    """(field, message) for each value of an example event that ingest would refuse: a date
    that is no date, a measurement's unit or value (:func:`_measured`)."""
    from timeline import events
    from timeline.ingest import MEASURED_KINDS  # ingest's (imported only as rule files are read)

    for key in ("occurred_at", "ended_at"):
        when = event.get(key)
        if isinstance(when, str):  # YAML reads an unquoted date as one: a valid date
            try:
                events.parse_when(when)
            except ValueError as exc:  # the date's own complaint (month must be in 1..12) names it
                yield key, str(exc) if repr(when) in str(exc) else f"{when!r} is not a date: {exc}"
        elif when is not None and not isinstance(when, date):
            yield key, f"{when!r} is not a date (YYYY-MM-DD) or date-time"
    kind, unit = str(event.get("kind")), event.get("unit")
    if kind in MEASURED_KINDS and unit is not None:
        code = event.get("code")
        target = book.measured(kind, None if code is None else str(code))
        if target is not None:  # an unknown code is the loader's to report
            yield from _measured(str(unit), event.get("value"), target)


def _measured(unit: str, value: object, target: codes.Code) -> Iterator[tuple[str, str]]:
    """A measurement's unit and value as ingest checks them: a unit that converts to its
    code's, and is one the code is recorded in; a value inside the plausible range."""
    from timeline.ingest import _suspect  # ingest's own judgement of a unit that converts

    try:
        conv = conversion(unit, target.unit, target.molar_mass)
    except UnitError as exc:
        yield "unit", f"unit {unit!r} cannot be converted to {target.unit!r} for {target.name}: {exc}"
        return
    suspect = _suspect(unit, target, conv.scale, conv.offset)
    if suspect is not None:
        yield "unit", f"unit {unit} for {target.name}: {suspect}"
        return
    if isinstance(value, bool) or not isinstance(value, int | float):
        return  # text: the type checks of ingest say so (rules test)
    canon = round(value * conv.scale + conv.offset, 9)
    if (target.low is not None and canon < target.low) or (target.high is not None and canon > target.high):
        shown = "" if unit == target.unit else f" ({canon:.6g} {target.unit})"
        yield (
            "value",
            f"value {value} {unit}{shown} is outside the plausible range "
            f"{_num(target.low)}–{_num(target.high)} {target.unit} for {target.name}",
        )


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"
