"""The engine's paths for many patients give the answers of its path for a few.

A few patients (≤ 50) are evaluated as one WITH query; a cohort is run one statement per
shared relation (``staged``), with condition episodes pre-filtered by a guard item, and every
patient's history is computed set-based (``Session.histories``). These tests hold each of
them to the per-patient path on synthetic sJIA timelines (with amendments applied), for the
whole default rule pack.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timedelta
from itertools import pairwise
from typing import Any

import pytest

from timeline import synth
from timeline.engine import compiler
from timeline.engine.evaluate import Result, Session
from timeline.ingest import ingest_file
from timeline.language.loader import load_rules
from timeline.store import Store

N = 60  # more than the 50 patients below which the single-query path is taken
SEED = 7


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    d = tmp_path_factory.mktemp("scale-paths")
    synth.synthesize(patients=N, seed=SEED, out=d / "c.parquet", amendments=d / "a.jsonl", chunk=N)
    with Store.create(d / "s.duckdb") as s:
        ingest_file(s, d / "c.parquet", author="scale test")
        synth.apply_amendments(s, d / "a.jsonl")
    with Store.open(d / "s.duckdb") as s:
        yield Session(s, load_rules())


def _points(session: Session) -> list[tuple[str, datetime]]:
    rows = session.con.execute(
        "SELECT patient_id, min(occurred_at) FROM events WHERE kind <> 'birth' GROUP BY 1 ORDER BY 1"
    ).fetchall()
    return [(p, t + timedelta(days=d)) for p, t in rows for d in (90, 365, 730)]


def _key(results: list[Result]) -> list[tuple[Any, ...]]:
    return [(r.rule_id, r.patient_id, r.q, r.value, r.why, r.evidence, r.note) for r in results]


def test_staged_cohort_run_equals_the_single_query_path(session: Session) -> None:
    points = _points(session)
    staged = session.evaluate(points)  # 60 patients: staged
    assert len({p for p, _ in points}) > 50
    small = []
    for start in range(0, len(points), 3 * 20):  # 20 patients at a time: one WITH query each
        small += session.evaluate(points[start : start + 3 * 20])
    small.sort(key=lambda r: (r.patient_id, r.q))
    assert _key(staged) == _key(sorted(small, key=lambda r: (r.patient_id, r.q)))


def test_without_evidence_values_and_reasons_are_unchanged(session: Session) -> None:
    points = _points(session)
    full = session.evaluate(points)
    bare = session.evaluate(points, evidence=False)
    assert [(r.rule_id, r.patient_id, r.q, r.value, r.why) for r in bare] == [
        (r.rule_id, r.patient_id, r.q, r.value, r.why) for r in full
    ]
    assert all(r.evidence == [] and r.note is None for r in bare)


def test_states_table_holds_the_values_and_reasons_of_a_cohort_run(session: Session) -> None:
    points = _points(session)
    listed = session.evaluate(points, evidence=False)
    rows = ", ".join(f"('{p}', TIMESTAMP '{q.isoformat(sep=' ')}')" for p, q in points)
    count = session.states(f"SELECT * FROM (VALUES {rows}) v(patient_id, q)")
    kinds = {rid: session.rules.rules[rid].type.kind for rid in session.rules.order}
    table = session.con.execute("SELECT rule_id, patient_id, q, b, x, why FROM tl_states").fetchall()
    assert count == len(table) == len(listed)
    got = {(rid, p, q): (b if kinds[rid] == "bool" else x, why) for rid, p, q, b, x, why in table}
    assert got == {(r.rule_id, r.patient_id, r.q): (r.value, r.why) for r in listed}


def test_the_condition_episode_guard_changes_no_answer(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    # and the day after each MAS onset: since MAS at presentation moved before the first
    # clinic visit (synth), no point 90, 365 or 730 days after the first event falls in one
    onsets = session.con.execute(
        "SELECT DISTINCT patient_id, occurred_at + INTERVAL 1 DAY FROM events WHERE kind = 'mas_episode' ORDER BY 1, 2"
    ).fetchall()
    points = sorted(_points(session) + [(p, t) for p, t in onsets])
    ids = ["in_mas_episode", "mas"]
    guarded = session.evaluate(points, ids)
    monkeypatch.setattr(compiler.Compiler, "guard", lambda self, cond: None)
    plain = session.evaluate(points, ids)
    assert _key(guarded) == _key(plain)
    assert any(r.value is True for r in guarded if r.rule_id == "in_mas_episode")


def test_histories_of_every_patient_equal_each_patients_history(session: Session) -> None:
    count = session.histories()
    rows = session.con.execute(
        'SELECT rule_id, patient_id, start, "end", b, x, why FROM tl_history'
    ).fetchall()
    assert count == len(rows) > 0
    patients = sorted({r[1] for r in rows})[:3]
    kinds = {rid: session.rules.rules[rid].type.kind for rid in session.rules.order}
    for pid in patients:
        expected = [
            (i["rule"], i["start"], i["end"], None if i["value"] == "unknown" else i["value"], i["reason"])
            for i in session.history(pid)
        ]
        got = [
            (rid, start, end, b if kinds[rid] == "bool" else x, why)
            for rid, p, start, end, b, x, why in rows
            if p == pid
        ]
        assert sorted(got, key=repr) == sorted(expected, key=repr), pid


@pytest.mark.parametrize(
    ("start", "end"), [(None, None), ("2013-02-10", "2015-08-31")], ids=["whole", "from-to"]
)
def test_a_replayed_history_is_the_sql_engines_to_the_type_of_each_value(
    session: Session, start: str | None, end: str | None
) -> None:
    """A patient's history is replayed (as `state` is): the SQL engine's intervals, each value
    of the same type (a joint count an int, as the SQL's INTEGER column; a score a float)."""
    patients = [
        r[0]
        for r in session.con.execute("SELECT DISTINCT patient_id FROM events ORDER BY 1 LIMIT 6").fetchall()
    ]
    try:
        for pid in patients:
            session.replay = True
            replayed = session.history(pid, None, start, end)
            session.replay = False
            by_sql = session.history(pid, None, start, end)
            assert [repr(i) for i in replayed] == [repr(i) for i in by_sql], pid
    finally:
        session.replay = True
    assert any(
        type(i["value"]) is int for pid in patients for i in session.history(pid, ["active_joint_count"])
    )


def test_staged_run_leaves_no_scratch_relations(session: Session) -> None:
    before = set(session.con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall())
    views = set(session.con.execute("SELECT view_name FROM duckdb_views() WHERE temporary").fetchall())
    session.evaluate(_points(session), evidence=False)
    assert set(session.con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall()) <= (
        before | {("tl_pts",)}
    )
    assert (
        set(session.con.execute("SELECT view_name FROM duckdb_views() WHERE temporary").fetchall()) == views
    )


class _Recording:
    """A connection that records the SQL of every statement it runs."""

    def __init__(self, con: Any) -> None:
        self.con, self.sql = con, []

    def execute(self, sql: str, *args: Any) -> Any:
        self.sql.append(sql)
        return self.con.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.con, name)


def test_staged_run_makes_a_statement_only_of_relations_read_more_than_once(session: Session) -> None:
    recording = _Recording(session.con)
    session.con = recording  # type: ignore[assignment]
    try:
        session.states(_points_sql(_points(session)))
    finally:
        session.con = recording.con
    made = [sql.split()[5] for sql in recording.sql if sql.startswith("CREATE OR REPLACE TEMP")]
    # the events and the batch's own relations are views; every relation of a rule read once
    # is a CTE of its reader's statement, not a view or a table of its own
    views = [sql.split()[5] for sql in recording.sql if sql.startswith("CREATE OR REPLACE TEMP VIEW")]
    assert sorted(views) == ["ev", "tl_bev"]
    text = "\n".join(recording.sql)
    final = next(sql for sql in recording.sql if sql.startswith("CREATE OR REPLACE TEMP TABLE tl_states"))
    roots = set(re.findall(r"FROM (\w+)", final))  # the rules' relations, which the final statement reads
    shared = [name for name in made if not name.startswith("tl_") and name not in roots | {"ev"}]
    assert shared
    for name in shared:  # read by at least two relations, wherever their SQL runs
        assert len(re.findall(rf"(?:FROM|JOIN)\s+{name}\b", text)) >= 2, name


def _batched(session: Session, patients: int) -> Session:
    return Session(session.store, session.rules, batch_patients=patients)


def _points_sql(points: list[tuple[str, datetime]]) -> str:
    rows = ", ".join(f"('{p}', TIMESTAMP '{q.isoformat(sep=' ')}')" for p, q in points)
    return f"SELECT * FROM (VALUES {rows}) v(patient_id, q)"


def test_cohort_run_in_batches_equals_one_batch(session: Session) -> None:
    points = _points(session)
    whole = session.evaluate(points, evidence=False)
    batched = _batched(session, 7).evaluate(points, evidence=False)  # 60 patients: 9 batches
    assert _key(batched) == _key(whole)


def test_states_in_batches_equal_one_batch(session: Session) -> None:
    sql = _points_sql(_points(session))
    query = "SELECT * FROM tl_states ORDER BY ALL"
    whole_count = session.states(sql)
    whole = session.con.execute(query).fetchall()
    assert _batched(session, 11).states(sql) == whole_count
    assert session.con.execute(query).fetchall() == whole


def test_histories_in_batches_equal_one_batch(session: Session) -> None:
    query = "SELECT * FROM tl_history ORDER BY ALL"
    whole_count = session.histories()
    whole = session.con.execute(query).fetchall()
    assert _batched(session, 13).histories() == whole_count
    assert session.con.execute(query).fetchall() == whole


def test_histories_run_in_batches_of_history_batch_patients(session: Session) -> None:
    """A history's batches are its own size (smaller than a cohort run's by default); a cohort
    run of the same session keeps batch_patients."""
    query = "SELECT * FROM tl_history ORDER BY ALL"
    whole_count = session.histories()
    whole = session.con.execute(query).fetchall()
    patients = session.con.execute("SELECT count(DISTINCT patient_id) FROM events").fetchone()
    assert patients is not None
    small = Session(session.store, session.rules, history_batch_patients=17)
    seen: list[tuple[int, int]] = []
    small.progress = lambda batch, batches: seen.append((batch, batches))
    assert small.histories() == whole_count
    assert session.con.execute(query).fetchall() == whole
    assert [batch for batch, _ in seen] == list(range(-(-patients[0] // 17)))
    seen.clear()
    small.states(_points_sql(_points(session)))
    assert len(seen) == 1


def test_histories_given_each_batch_hand_over_one_batch_at_a_time_in_patient_order(session: Session) -> None:
    """With ``each``, the table holds one batch's intervals when it is called; the batches
    together are the whole history, each batch's patients after the previous batch's."""
    whole_count = session.histories()
    whole = session.con.execute("SELECT * FROM tl_history ORDER BY ALL").fetchall()
    small = Session(session.store, session.rules, history_batch_patients=17)
    batches: list[list[tuple[object, ...]]] = []
    total = small.histories(
        name="tl_batch",
        each=lambda table: batches.append(
            small.con.execute(f"SELECT * FROM {table} ORDER BY ALL").fetchall()
        ),
    )
    assert total == whole_count
    assert len(batches) > 1
    assert Counter(row for batch in batches for row in batch) == Counter(whole)
    patients = [sorted({row[1] for row in batch}) for batch in batches]
    assert all(earlier[-1] < later[0] for earlier, later in pairwise(patients))


def test_states_of_no_points_is_an_empty_table(session: Session) -> None:
    count = _batched(session, 5).states(_points_sql(_points(session)) + " WHERE false")
    assert count == 0
    assert session.con.execute("SELECT count(*) FROM tl_states").fetchone() == (0,)


def test_running_out_of_memory_names_the_relation_and_its_rule(
    session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    from timeline.engine import evaluate
    from timeline.errors import ResourceError

    events = session.con.execute("SELECT count(*), max(seq) FROM events").fetchone()
    for (table,) in session.con.execute("SELECT table_name FROM duckdb_tables() WHERE temporary").fetchall():
        session.con.execute(f"DROP TABLE {table}")  # earlier tests' results, which could not spill either
    monkeypatch.setattr(evaluate, "ENGINE_MEMORY_LIMIT", 2**20)
    session.con.execute("SET max_temp_directory_size = '1MB'")  # no room to spill either
    try:
        with pytest.raises(ResourceError, match=r"evaluation stopped at relation \w+ \(\d+ of \d+, rule \w+"):
            session.histories()
    finally:
        session.con.execute("RESET max_temp_directory_size")
    assert session.con.execute("SELECT count(*), max(seq) FROM events").fetchone() == events
