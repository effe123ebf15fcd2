"""`timeline state` replays one patient in Python (timeline.engine.replay); cohort runs and
histories use the SQL engine. On the Valencia cohort — 22 patients, every rule of the sJIA
pack, each patient at its clinic dates and the day after — both must give the same states:
value, reason, evidence and note."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.engine_support import result_difference, store_with, visit_days, write_rule
from tests.support import run_cli, valencia_module
from timeline.engine.evaluate import Session
from timeline.engine.replay import Reference, Val
from timeline.language import ast
from timeline.language.loader import load_rules
from timeline.store import Store


@pytest.fixture(scope="module")
def valencia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("valencia") / "valencia.duckdb"
    valencia_module("load").load(path)
    yield path


def test_state_replays_every_rule_of_the_pack_as_the_sql_engine_evaluates_it(valencia: Path) -> None:
    with Store.open(valencia) as store:
        session = Session(store, load_rules())
        points = visit_days(store)
        sql = session.evaluate(points, None)
        assert len(sql) == len(points) * len(session.rules.listed()) > 10_000
        by_point: dict[tuple[str, datetime], list[object]] = {}
        for r in sql:
            by_point.setdefault((r.patient_id, r.q), []).append(r)
        problems = []
        for (patient, q), found in by_point.items():
            replayed = session.state(patient, q.isoformat())
            for a, b in zip(replayed, found, strict=True):
                b.at = a.at  # the label: the instant as given, either way
                if problem := result_difference(a, b):
                    problems.append(f"{b.rule_id} for {patient} at {q}: {problem}")
        assert not problems, "\n".join(problems[:20])


def test_state_as_known_before_a_correction_replays_the_record_as_it_stood(valencia: Path) -> None:
    with Store.open(valencia) as store:
        first = store.con.execute("SELECT max(recorded_at) FROM batches WHERE batch_id = 1").fetchone()
        assert first is not None
        before = Session(store, load_rules(), as_known_at=first[0])
        now = Session(store, load_rules())
        for session in (before, now):
            replayed = session.state("V09", "2007-04-03")
            session.replay = False
            for a, b in zip(replayed, session.state("V09", "2007-04-03"), strict=True):
                assert result_difference(a, b) is None
        assert [r.value for r in before.state("V09", "2007-04-03", ["active_joint_count"])] != [
            r.value for r in now.state("V09", "2007-04-03", ["active_joint_count"])
        ]


def test_timeline_state_json_gives_the_sql_engines_states(valencia: Path) -> None:
    result = run_cli("state", "V09", "--at", "2007-04-03", "--store", valencia, "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)["states"]
    with Store.open(valencia) as store:
        session = Session(store, load_rules())
        session.replay = False
        want = [r.to_json() for r in session.state("V09", "2007-04-03")]
    assert printed == want


def test_a_steady_node_is_not_computed_again_between_two_of_its_instants_of_change(tmp_path: Path) -> None:
    """A held_for reads its expression at every instant one of its parts can change at: the ESR
    it reads, recorded once, is computed again only where it can change (it was computed at
    every instant of the CRPs' before), with the naive replay's values."""
    esr = {"kind": "lab", "code": "4537-7"}
    crp = {"kind": "lab", "code": "1988-5"}
    expr = {
        "all": [
            {"le": [{"latest": {"select": crp, "within": "30 days"}}, "10 mg/L"]},
            {"le": [{"latest": {"select": esr, "within": "365 days"}}, "20 mm/h"]},
        ]
    }
    write_rule(tmp_path / "rules", "calm", {"held_for": {"expr": expr, "duration": "60 days"}})
    rows = [{"patient_id": "X", **esr, "occurred_at": "2009-01-01", "value": 12, "unit": "mm/h"}]
    rows += [
        {"patient_id": "X", **crp, "occurred_at": f"2009-{month:02}-{day:02}", "value": 4, "unit": "mg/L"}
        for month in (1, 2, 3)
        for day in range(2, 28, 3)
    ]
    computed: Counter[str] = Counter()

    class Counting(Reference):
        def _Latest(self, node: ast.Latest, q: datetime) -> Val:
            computed[node.select.codes[0]] += 1
            return super()._Latest(node, q)

    ruleset = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "store.duckdb", rows) as store:
        events = store.events("X")
    fast, naive = Counting(ruleset, events), Reference(ruleset, events, naive=True)
    for at in ("2009-03-31", "2009-04-10"):
        q = datetime.fromisoformat(at)
        assert fast.rule("calm", q) == naive.rule("calm", q)
    assert computed["1988-5"] > 20  # every CRP's instants of change, in two windows
    assert computed["4537-7"] <= 2


def test_a_condition_episode_is_found_from_the_date_outwards_not_from_the_start_of_the_record(
    tmp_path: Path,
) -> None:
    """in_episode of a condition at a date evaluates the condition from that date outwards:
    false at its last instant of change before the date, once (the whole record up to the date
    was evaluated before); true there, back to the episode's start and on to its end, and no
    further — with the naive replay's value, evidence and note, and the episodes the whole
    record gives."""
    crp = {"kind": "lab", "code": "1988-5"}
    high = {"gt": [{"latest": {"select": crp, "within": "10 days"}}, "10 mg/L"]}
    write_rule(tmp_path / "rules", "flare", {"in_episode": {"when": high, "merge_gap": "0 days"}})
    # high CRPs in March (an episode), normal ones the rest of the year, one every 5 days
    rows = [
        {"patient_id": "X", **crp, "occurred_at": f"2009-{month:02}-{day:02}", "unit": "mg/L",
         "value": 40 if month == 3 else 2}
        for month in range(1, 13)
        for day in range(1, 28, 5)
    ]  # fmt: skip
    computed: Counter[datetime] = Counter()

    class Counting(Reference):
        def _Compare(self, node: ast.Compare, q: datetime) -> Val:
            computed[q] += 1
            return super()._Compare(node, q)

    ruleset = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "store.duckdb", rows) as store:
        events = store.events("X")
    spec = ruleset.rules["flare"].define
    assert isinstance(spec, ast.InEpisode)
    for at, inside in (("2009-12-20", False), ("2009-03-20", True)):
        q = datetime.fromisoformat(at)
        fast, naive = Counting(ruleset, events), Reference(ruleset, events, naive=True)
        computed.clear()
        assert fast.rule("flare", q) == naive.rule("flare", q)
        assert fast.rule("flare", q).value is inside
        whole = [ep for ep in naive.episodes(spec.episodes, False, q) if ep.s <= q <= ep.e]
        assert fast.episodes_at(spec.episodes, q) == whole
        if inside:  # the episode's instants, from 1 March to its first after 31 March
            assert whole and min(computed) <= whole[0].s and max(computed) > whole[0].e
            assert min(computed) >= datetime(2009, 2, 20) and max(computed) < datetime(2009, 4, 20)
        else:
            assert not whole and len(computed) == 1 and max(computed) <= q


def test_a_held_for_without_evidence_stops_at_the_first_moment_it_is_false(tmp_path: Path) -> None:
    """Without evidence (`timeline state` as a table) a held_for checks its window's moments in
    order up to the first its expression is false at, which gives its value and note: no CRP
    after that one is looked at, and the value, reason and note are those of the replay that
    checks every moment (whose evidence is every CRP of the window)."""
    crp = {"kind": "lab", "code": "1988-5"}
    expr = {"le": [{"latest": {"select": crp, "within": "30 days"}}, "10 mg/L"]}
    write_rule(tmp_path / "rules", "calm", {"held_for": {"expr": expr, "duration": "90 days"}})
    # a high CRP on 2 January, normal ones every 3 days from then to the end of March
    rows = [{"patient_id": "X", **crp, "occurred_at": "2009-01-02", "value": 40, "unit": "mg/L"}]
    rows += [
        {"patient_id": "X", **crp, "occurred_at": f"2009-{month:02}-{day:02}", "value": 4, "unit": "mg/L"}
        for month in (1, 2, 3)
        for day in range(5, 28, 3)
    ]
    seen: list[datetime] = []

    class Counting(Reference):
        def _Latest(self, node: ast.Latest, q: datetime) -> Val:
            seen.append(q)
            return super()._Latest(node, q)

    ruleset = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "store.duckdb", rows) as store:
        events = store.events("X")
    q = datetime(2009, 3, 31, 23, 59, 59, 999999)
    lean, full = Counting(ruleset, events, evidence=False), Reference(ruleset, events)
    got, want = lean.rule("calm", q), full.rule("calm", q)
    assert want.value is False and want.note == "not true on 2009-01-02 (within the last 90 days)"
    assert (got.value, got.why, got.note) == (want.value, want.why, want.note)
    assert len(want.ev) == len(rows)  # every CRP of the window is evidence of the full replay
    assert max(seen) < datetime(2009, 1, 5)  # no moment after the high CRP's was checked


def test_selectors_that_match_the_same_events_find_them_once(tmp_path: Path) -> None:
    """fever_free's carried copies (inactive_disease's, complete_response's…) name fever_event
    by selectors that differ only in the node of their threshold parameter, of the same value:
    the pack's replay matches each of the patient's temperatures and findings with fever_event
    once, not once per copy, and a selector of kinds and codes alone (a joint exam) matches no
    event one by one: its events are those of its kinds — with the naive replay's values."""
    rows = [
        {
            "patient_id": "X",
            "kind": "body_temperature",
            "occurred_at": f"2009-01-{d:02}",
            "value": v,
            "unit": "Cel",
        }
        for d, v in ((3, 39.1), (10, 37.0), (17, 36.8))
    ]
    rows += [
        {"patient_id": "X", "kind": "finding", "code": "fever", "present": True, "occurred_at": "2009-01-04"},
        {
            "patient_id": "X",
            "kind": "joint_exam",
            "occurred_at": "2009-01-10",
            "active_joints": 1,
            "limited_joints": 0,
        },
    ]
    matched: Counter[str] = Counter()

    class Counting(Reference):
        def matches(self, sel: ast.Selector, e: dict[str, object]) -> bool:
            matched[sel.name] += 1
            return super().matches(sel, e)

    ruleset = load_rules()
    with store_with(tmp_path / "store.duckdb", rows) as store:
        events = store.events("X")
    fast, naive = Counting(ruleset, events), Reference(ruleset, events, naive=True)
    q = datetime(2009, 1, 20, 23, 59, 59, 999999)
    for rid in ruleset.listed():
        assert fast.rule(rid, q) == naive.rule(rid, q), rid
    assert matched["fever_event"] == 4  # the three temperatures and the finding, once each
    assert matched["joint exam"] == 0


def test_equal_sets_of_instants_of_change_are_sorted_once(tmp_path: Path) -> None:
    """The nodes whose instants of change a held_for reads each keep them in order: nodes with
    the same instants (a rule's carried copies, a leaf and its comparison with a constant) share
    one sorted list, which is their set in order."""
    rows = [
        {
            "patient_id": "X",
            "kind": "lab",
            "code": "1988-5",
            "occurred_at": f"2009-0{m}-02",
            "value": v,
            "unit": "mg/L",
        }
        for m, v in ((1, 40), (3, 2), (5, 3))
    ]
    rows += [
        {
            "patient_id": "X",
            "kind": "joint_exam",
            "occurred_at": f"2009-0{m}-02",
            "active_joints": 0,
            "limited_joints": 0,
        }
        for m in (2, 4, 6)
    ]
    ruleset = load_rules()
    with store_with(tmp_path / "store.duckdb", rows) as store:
        events = store.events("X")
    ref = Reference(ruleset, events)
    for rid in ruleset.listed():
        ref.rule(rid, datetime(2009, 9, 1))
    lists = list(ref.cp_memo.values())
    assert len(lists) > 20
    for nid, ordered in ref.cp_memo.items():
        assert ordered == sorted(ref.cs_memo.get(nid, ordered))
    for a in lists:
        for b in lists:
            assert a is b or a != b
