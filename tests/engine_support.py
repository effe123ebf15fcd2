"""Helpers for the rule-engine tests: rule files from dicts, stores from native rows, and the
comparison of an engine result with the reference evaluator's."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import yaml

from timeline.engine.evaluate import Result, Session
from timeline.engine.replay import Val
from timeline.ingest import append_rows
from timeline.store import Store

HEADER = {"version": "1", "description": "a test rule", "citation": "the tests"}


def write_rule(directory: Path, rule_id: str, define: Any, **extra: Any) -> Path:
    """Write ``rule_id.yaml`` with the given ``define`` (and params, events, examples...)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{rule_id}.yaml"
    doc = {"id": rule_id, **HEADER, **extra, "define": define}
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def store_with(path: Path, *batches: Sequence[dict[str, Any]]) -> Store:
    """A new store at ``path`` holding each list of native rows as one batch."""
    store = Store.create(path)
    for rows in batches:
        if rows:
            append_rows(store, list(rows), author="tests", source="tests")
    return store


def visit_days(store: Store) -> list[tuple[str, datetime]]:
    """Each patient at the end of every day with an event, and of the day after it."""
    rows = store.con.execute(
        "SELECT DISTINCT patient_id, occurred_at::DATE FROM events WHERE kind <> 'birth' ORDER BY ALL"
    ).fetchall()
    end = timedelta(days=1, microseconds=-1)
    return sorted(
        {
            (p, datetime.combine(d, datetime.min.time()) + end + extra)
            for p, d in rows
            for extra in (timedelta(), timedelta(days=1))
        }
    )


def same_number(a: float, b: float) -> bool:
    if math.isinf(a) or math.isinf(b):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-7)


def disagreement(got: Result, want: Val, evidence: bool = True) -> str | None:
    """How the engine's result differs from the reference's, or None when they agree (in
    value, reason, evidence and note; in value and reason only, without ``evidence``). A rule
    that is a censored value gives its bound and qualifier where the reference keeps them
    beside its unknown value."""
    if got.qualifier is not None:
        if (got.qualifier, got.why) != (want.qualifier, None) or want.bound is None:
            return (
                f"censored value: engine {got.qualifier}{got.value}, reference {want.qualifier}{want.bound}"
            )
        if not same_number(float(got.value or 0), want.bound):
            return f"bound: engine {got.value!r}, reference {want.bound!r}"
    elif want.value is None or got.value is None:
        if want.value is not None or got.value is not None:
            return f"value: engine {got.value!r}, reference {want.value!r} ({want.why or got.why})"
        if got.why != want.why:
            return f"reason: engine {got.why!r}, reference {want.why!r}"
    elif isinstance(want.value, bool) or isinstance(got.value, bool):
        if got.value is not want.value:
            return f"value: engine {got.value!r}, reference {want.value!r}"
    elif not same_number(float(got.value), float(want.value)):
        return f"value: engine {got.value!r}, reference {want.value!r}"
    if evidence and set(got.evidence) != set(want.ev):
        return f"evidence: engine {sorted(got.evidence)}, reference {sorted(set(want.ev))}"
    if evidence and got.note != want.note:
        return f"note: engine {got.note!r}, reference {want.note!r}"
    return None


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text)


def result_difference(replayed: Result, sql: Result) -> str | None:
    """How the replay's state differs from the SQL engine's, or None when they agree in every
    field `timeline state` shows or prints as JSON."""
    a, b = replayed.value, sql.value
    if isinstance(a, bool) or isinstance(b, bool) or a is None or b is None:
        same = a is b
    else:  # numbers: the SQL engine gives an integer field's value as an int, the replay a float
        same = same_number(float(a), float(b))
    if not same:
        return f"value: replay {a!r}, SQL {b!r}"
    for name in ("rule_id", "patient_id", "at", "q", "type", "unit", "why", "evidence", "note"):
        if getattr(replayed, name) != getattr(sql, name):
            return f"{name}: replay {getattr(replayed, name)!r}, SQL {getattr(sql, name)!r}"
    return None


class CheckedSession(Session):
    """A session whose ``state`` asks both evaluators — the per-patient replay `timeline
    state` uses and the SQL engine cohort runs use — fails the test unless they agree, and
    returns the SQL engine's states."""

    def state(self, patient: str, at: str, rule_ids: Sequence[str] | None = None) -> list[Result]:
        replayed = super().state(patient, at, rule_ids)
        self.replay = False
        try:
            found = super().state(patient, at, rule_ids)
        finally:
            self.replay = True
        for r, f in zip(replayed, found, strict=True):
            problem = result_difference(r, f)
            assert problem is None, f"{f.rule_id} for {patient} at {at}: {problem}"
        return found
