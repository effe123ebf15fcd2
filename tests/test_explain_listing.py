"""`timeline explain` lists the events it read, and finds the patient's retractions, from the one
read of the patient's stored versions that its replay already makes (Session.require_patient
with ``listing``), not by two more queries: the same explanation, event for event and remark
for remark, as from those queries — with corrections and retractions, and as known before
them."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

import pytest

from tests.test_explain_replay import as_json, patients_of, valencia  # noqa: F401 - a fixture
from timeline.engine.evaluate import Session
from timeline.language.loader import load_rules, rule_dirs
from timeline.store import Store

RULES = ("complete_response", "fever_free", "jadas10", "in_mas_episode", "clinical_remission_on_medication")


def explained(
    store: Store, patient: str, rule_id: str, at: str, listing: bool, known: datetime | None = None
) -> str:
    session = Session(store, load_rules(rule_dirs([])), known)
    session.require_patient(patient, events=True, listing=listing)
    return as_json(session.explain(patient, rule_id, at))


def amended_patients(store: Store, op: str) -> list[str]:
    return [
        str(p)
        for (p,) in store.con.execute(
            "SELECT DISTINCT patient_id FROM events WHERE op = ? ORDER BY 1", [op]
        ).fetchall()
    ]


def test_the_events_listed_from_the_one_read_are_those_the_queries_list(valencia: Store) -> None:  # noqa: F811
    patients = patients_of(valencia)
    chosen = sorted(
        {*patients[::5], *amended_patients(valencia, "correct"), *amended_patients(valencia, "retract")}
    )
    differ = [
        f"{rid} for {p} at {at}"
        for p in chosen
        for rid in RULES
        for at in ("2007-04-03", "2011-01-01")
        if explained(valencia, p, rid, at, listing=True) != explained(valencia, p, rid, at, listing=False)
    ]
    assert not differ, differ[:5]


def test_the_retractions_listed_from_the_one_read_are_those_the_query_finds(valencia: Store) -> None:  # noqa: F811
    retracted = amended_patients(valencia, "retract")
    assert retracted
    listed = 0
    for p in retracted:
        for rid in RULES:
            with_read = explained(valencia, p, rid, "2011-01-01", listing=True)
            assert with_read == explained(valencia, p, rid, "2011-01-01", listing=False)
            listed += '"retracted (seq' in with_read
    assert listed  # a retraction is among what they list


def test_as_known_before_the_amendments_the_events_listed_are_those_the_queries_list(valencia: Store) -> None:  # noqa: F811
    row = valencia.con.execute("SELECT max(recorded_at) FROM batches WHERE op = 'ingest'").fetchone()
    assert row is not None
    for p in amended_patients(valencia, "correct") + amended_patients(valencia, "retract"):
        for rid in ("complete_response", "jadas10"):
            assert explained(valencia, p, rid, "2009-01-01", True, row[0]) == explained(
                valencia, p, rid, "2009-01-01", False, row[0]
            )


@pytest.fixture
def statements(valencia: Store) -> Iterator[list[str]]:  # noqa: F811
    """The statements the store's connection runs meanwhile."""
    seen: list[str] = []
    con = valencia.con

    class Recording:
        def __getattr__(self, name: str) -> Any:
            return getattr(con, name)

        def execute(self, sql: str, *args: Any) -> Any:
            seen.append(sql)
            return con.execute(sql, *args)

    valencia.con = Recording()  # type: ignore[assignment]
    try:
        yield seen
    finally:
        valencia.con = con


def test_explain_reads_no_event_again_for_a_patient_without_retractions(
    valencia: Store,  # noqa: F811
    statements: list[str],
) -> None:
    patient = next(p for p in patients_of(valencia) if p not in amended_patients(valencia, "retract"))
    session = Session(valencia, load_rules(rule_dirs([])))
    session.require_patient(patient, events=True, listing=True)
    statements.clear()
    data = session.explain(patient, "complete_response", "2011-01-01")
    assert data["events"] or data["other_events"]
    assert not [s for s in statements if "FROM events" in s], statements
