"""`timeline explain` builds a rule's derivation tree from the Python replay that `state` runs
(timeline.engine.evaluate._ReplayExplainer) rather than from the rule's compiled relations,
for every rule that reads no ``held_for``: the explanation must be the very one the SQL path
gives — every clause's value (an INTEGER joint count stays an int), reason, events in their
order, detail, window and censored value, the events listed and their remarks — on the
Valencia example and on generated timelines and rules."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from hypothesis import given, note, settings
from hypothesis import strategies as st

from cli.output import _default, _finite
from tests.support import valencia_module
from tests.test_engine_properties import (
    PROPERTY,
    Rules,
    Timeline,
    build_store,
    crp_timelines,
    extreme_rules,
    instants,
    load,
    maybe_before_the_correction,
    rule_sets,
    timelines,
)
from timeline.engine.compiler import Compiler
from timeline.engine.evaluate import Session, replay_explains
from timeline.language.loader import load_rules, rule_dirs
from timeline.store import Store

# dates before the index drug, around it, in follow-up and after the cohort's last event
VALENCIA_DATES = ["2003-06-30", "2007-04-03T12:00", "2011-01-01"]


def as_json(data: dict[str, Any]) -> str:
    """An explanation as `explain --json` writes it (a constant's Decimal as a number)."""
    return json.dumps(_finite(data), default=_default, indent=1)


def both(session: Session, patient: str, rule_id: str, at: str) -> tuple[str, str]:
    """The explanation from the compiled relations, then from the replay."""
    session.replay = False
    sql = as_json(session.explain(patient, rule_id, at))
    session.replay = True
    return sql, as_json(session.explain(patient, rule_id, at))


@pytest.fixture(scope="module")
def valencia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Store]:
    path = tmp_path_factory.mktemp("valencia") / "store.duckdb"
    valencia_module("load").load(path)
    with Store.open(path) as store:
        yield store


def patients_of(store: Store) -> list[str]:
    return [
        str(p) for (p,) in store.con.execute("SELECT DISTINCT patient_id FROM events ORDER BY 1").fetchall()
    ]


def test_every_rule_but_those_reading_held_for_is_explained_by_the_replay() -> None:
    rules = load_rules(rule_dirs([]))
    by_sql = sorted(rid for rid in rules.listed() if not replay_explains(rules, rid))
    assert by_sql == ["clinical_remission_off_medication", "clinical_remission_on_medication"]


def test_the_replay_explains_every_valencia_rule_as_the_compiled_relations_do(valencia: Store) -> None:
    """Each rule for two patients (every patient over the rules) at three dates."""
    session = Session(valencia, load_rules(rule_dirs([])))
    patients = patients_of(valencia)
    differ = []
    for i, rid in enumerate(r for r in session.rules.listed() if replay_explains(session.rules, r)):
        for patient in (patients[(i + k * 11) % len(patients)] for k in range(2)):
            for at in VALENCIA_DATES:
                sql, replayed = both(session, patient, rid, at)
                if sql != replayed:
                    differ.append(f"{rid} for {patient} at {at}")
    assert not differ, differ[:5]


def test_the_replay_explains_as_known_before_the_amendments_as_the_compiled_relations_do(
    valencia: Store,
) -> None:
    """As known at the ingest, before the corrections and retractions of amendments.json: the
    events listed are said to be corrected or retracted after that moment."""
    row = valencia.con.execute("SELECT max(recorded_at) FROM batches WHERE op = 'ingest'").fetchone()
    assert row is not None
    before = row[0]
    session = Session(valencia, load_rules(rule_dirs([])), before)
    amended = [
        str(p)
        for (p,) in valencia.con.execute(
            "SELECT DISTINCT patient_id FROM events WHERE op <> 'ingest' ORDER BY 1"
        ).fetchall()
    ]
    assert amended
    differ = []
    remarked = 0
    for patient in amended:
        for rid in ("complete_response", "jadas10", "in_mas_episode"):
            sql, replayed = both(session, patient, rid, "2009-01-01")
            remarked += "after this moment" in replayed
            if sql != replayed:
                differ.append(f"{rid} for {patient}")
    assert not differ, differ[:5]
    assert remarked  # the amendments are among what the explanations list


def test_explain_builds_the_tree_without_compiling_the_rule(valencia: Store) -> None:
    session = Session(valencia, load_rules(rule_dirs([])))
    with mock.patch.object(Compiler, "rule", side_effect=AssertionError("compiled")):
        data = session.explain(patients_of(valencia)[0], "complete_response", "2007-04-03")
    assert data["tree"]["rule"].startswith("complete_response@")


def test_a_rule_reading_held_for_is_still_explained_by_its_compiled_relations(valencia: Store) -> None:
    session = Session(valencia, load_rules(rule_dirs([])))
    with (
        mock.patch.object(Compiler, "rule", side_effect=AssertionError("compiled")),
        pytest.raises(AssertionError, match="compiled"),
    ):
        session.explain(patients_of(valencia)[0], "clinical_remission_on_medication", "2007-04-03")


@settings(PROPERTY, max_examples=30)
@given(data=st.data(), tl=timelines(), rules=rule_sets())
def test_the_replay_explains_generated_rules_as_the_compiled_relations_do(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> None:
    note(f"rules: {rules.files} params: {rules.params} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            as_known_at = maybe_before_the_correction(data, store, tl)
            session = Session(store, ruleset, as_known_at)
            patient = data.draw(st.sampled_from(tl.patients), label="patient")
            rows = [r for b in tl.batches for r in b if r["patient_id"] == patient]
            q: datetime = data.draw(st.sampled_from(instants(rows)), label="instant")
            for rid in rules.ids:
                if not replay_explains(ruleset, rid):
                    continue
                sql, replayed = both(session, patient, rid, q.isoformat())
                assert replayed == sql, f"{rid} for {patient} at {q}"


@settings(PROPERTY, max_examples=30)
@given(data=st.data(), tl=crp_timelines(), rules=extreme_rules())
def test_the_replay_explains_min_of_and_max_of_over_censored_values_as_the_compiled_relations_do(
    data: st.DataObject, tl: Timeline, rules: Rules
) -> None:
    """A min_of / max_of of censored CRPs (the extreme of their ranges) and a comparison of it:
    each clause's qualifier and bound, value, reason and note as the relations give them."""
    note(f"rules: {rules.files} units: {rules.units}")
    with tempfile.TemporaryDirectory() as tmp:
        ruleset = load(Path(tmp) / "rules", rules)
        with build_store(Path(tmp) / "store.duckdb", tl) as store:
            session = Session(store, ruleset)
            q: datetime = data.draw(st.sampled_from(instants(tl.batches[0])), label="instant")
            for rid in rules.ids:
                sql, replayed = both(session, "P1", rid, q.isoformat())
                assert replayed == sql, f"{rid} at {q}"


def test_an_explanation_lists_the_events_of_the_episodes_around_a_moment_in_order_of_their_start(
    tmp_path: Path,
) -> None:
    """Two recorded MAS episodes around a moment (an open one, then a later closed one
    recorded after it, seven temperatures between them): each engine lists their events by the episodes' start, then record
    order — not in whatever order the compiled join met them (a case hypothesis found)."""
    tl = Timeline(
        batches=[
            [
                {
                    "patient_id": "P1",
                    "occurred_at": "2009-01-24T08:00",
                    "kind": "mas_episode",
                    "event_id": "open",
                },
                *(
                    {
                        "patient_id": "P1",
                        "occurred_at": f"2009-02-{d:02}",
                        "kind": "body_temperature",
                        "value": 37.9,
                        "unit": "Cel",
                        "event_id": f"t{d}",
                    }
                    for d in range(1, 8)
                ),
                {
                    "patient_id": "P1",
                    "occurred_at": "2009-01-26",
                    "ended_at": "2009-01-27",
                    "kind": "mas_episode",
                    "event_id": "closed",
                },
            ]
        ],
        corrections=[],
        patients=["P1"],
    )
    rules = Rules(
        ids=["r0"], files={"r0": {"in_episode": {"select": "mas", "merge_gap": "12 hours"}}}, params={}
    )
    ruleset = load(tmp_path / "rules", rules)
    with build_store(tmp_path / "store.duckdb", tl) as store:
        sql, replayed = both(Session(store, ruleset), "P1", "r0", "2009-01-26T20:00")
    assert json.loads(sql)["tree"]["derivation"]["events"] == [1, 9]
    assert replayed == sql
