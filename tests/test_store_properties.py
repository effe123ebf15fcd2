"""Properties of the append-only log: order and batching do not matter, the past is stable,
and a correction takes effect exactly at its sequence number."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support import rows_without
from timeline.errors import UnknownEventError
from timeline.ingest import append_rows, correct, retract
from timeline.store import Store, _dicts

# Each example writes a few batches (tens of milliseconds each): keep the counts modest.
FAST = settings(max_examples=25, deadline=None)
SLOW = settings(max_examples=15, deadline=None)

PATIENTS = ("A", "B")
BIRTHS = [
    {"event_id": f"birth-{p}", "patient_id": p, "kind": "birth", "occurred_at": "2000-01-01", "sex": "female"}
    for p in PATIENTS
]
LAB_UNITS = [("1988-5", "mg/L"), ("1988-5", "mg/dL"), ("4537-7", "mm/h"), ("718-7", "g/dL")]


def _day(d: date) -> str:
    return d.isoformat()


days = st.dates(min_value=date(2001, 1, 1), max_value=date(2020, 12, 31)).map(_day)
lab = st.builds(
    lambda p, cu, v, d: {"patient_id": p, "kind": "lab", "occurred_at": d, "code": cu[0], "value": v / 10, "unit": cu[1]},
    st.sampled_from(PATIENTS), st.sampled_from(LAB_UNITS), st.integers(0, 250), days,
)  # fmt: skip
joints = st.builds(
    lambda p, a, d: {"patient_id": p, "kind": "joint_exam", "occurred_at": d, "active_joints": a},
    st.sampled_from(PATIENTS), st.integers(0, 75), days,
)  # fmt: skip
finding = st.builds(
    lambda p, c, present, d: {"patient_id": p, "kind": "finding", "occurred_at": d, "code": c, "present": present},
    st.sampled_from(PATIENTS), st.sampled_from(["fever", "rash", "serositis"]), st.booleans(), days,
)  # fmt: skip
dose = st.builds(
    lambda p, mg, u, d: {"patient_id": p, "kind": "medication_dose_change", "occurred_at": d,
                         "drug": "anakinra", "dose": mg, "dose_unit": u},
    st.sampled_from(PATIENTS), st.integers(1, 300), st.sampled_from(["mg", "g", "mg/kg"]), days,
)  # fmt: skip


@st.composite
def event_rows(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Valid native rows: two births and up to 12 other events, some with explicit ids."""
    rows = draw(st.lists(st.one_of(lab, joints, finding, dose), min_size=1, max_size=12))
    explicit = draw(st.lists(st.booleans(), min_size=len(rows), max_size=len(rows)))
    for i, (row, has_id) in enumerate(zip(rows, explicit, strict=True)):
        if has_id:
            row["event_id"] = f"e{i}"
    return BIRTHS + rows


@st.composite
def batchings(draw: st.DrawFn, rows: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """The rows shuffled and cut into batches, plus possibly a batch that repeats some of them."""
    order = draw(st.permutations(rows))
    cuts = sorted(draw(st.sets(st.integers(1, max(len(order) - 1, 1)), max_size=3)))
    bounds = [0, *cuts, len(order)]
    batches = [order[a:b] for a, b in itertools.pairwise(bounds) if order[a:b]]
    again = draw(st.lists(st.sampled_from(order), max_size=4))
    return [*batches, again] if again else batches


@contextmanager
def fresh_store() -> Iterator[Store]:
    with tempfile.TemporaryDirectory() as d, Store.create(Path(d) / "s.duckdb") as s:
        yield s


def current(store: Store, high_water: int | None = None) -> list[dict[str, Any]]:
    hw = store.high_water() if high_water is None else high_water
    return _dicts(store.con.execute(store.current_sql(hw)))


@FAST
@given(st.data())
def test_same_events_in_any_order_and_batching_give_the_same_current_timeline(data: st.DataObject) -> None:
    rows = data.draw(event_rows())
    batches = data.draw(batchings(rows))
    with fresh_store() as reference, fresh_store() as shuffled:
        append_rows(reference, rows, author="a")
        for batch in batches:
            append_rows(shuffled, batch, author="b")
        assert rows_without(current(shuffled)) == rows_without(current(reference))


# ---- histories of corrections and retractions -------------------------------------------

# Example events whose value can be corrected, with values that are plausible in their unit.
VALUED = ("p1-crp1", "p1-crp2", "p1-esr1", "p1-wt1")
EXAMPLE_IDS = (*VALUED, "p1-birth", "p1-dx", "p1-t1", "p1-rash1", "p1-je1", "p1-pga1", "p1-ana", "p1-ae1")

operation = st.one_of(
    st.tuples(st.just("value"), st.sampled_from(VALUED), st.integers(1, 99).map(str)),
    st.tuples(st.just("note"), st.sampled_from(EXAMPLE_IDS), st.text("abcdef ", min_size=1, max_size=8)),
    st.tuples(st.just("retract"), st.sampled_from(EXAMPLE_IDS), st.just("")),
)


@dataclass(frozen=True)
class Change:
    op: str  # value | note | retract
    event_id: str
    arg: str
    seq: int
    recorded_at: datetime


@contextmanager
def history(template: Path, ops: list[tuple[str, str, str]]) -> Iterator[tuple[Store, list[Change]]]:
    """A copy of the example store with the operations applied (those that still apply)."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.duckdb"
        shutil.copy(template, path)
        with Store.open(path, write=True) as s:
            changes = []
            for kind, eid, arg in ops:
                try:
                    if kind == "retract":
                        result = retract(s, eid, reason="test", author="t")
                    else:
                        result = correct(s, eid, {kind: arg}, reason="test", author="t")
                except UnknownEventError:
                    continue  # already retracted
                if result.batch_id is None:
                    continue  # changes nothing (a correction to the same values, a retraction again)
                row = s.con.execute(
                    "SELECT recorded_at FROM batches WHERE batch_id = ?", [result.batch_id]
                ).fetchone()
                assert row is not None
                changes.append(Change(kind, eid, arg, result.high_water, row[0]))
            yield s, changes


def corrections_visible(store: Store, moment: datetime) -> int:
    rows = store.events("P001", as_known_at=moment, history=True)
    return sum(1 for r in rows if r["op"] == "correct")


def versions(store: Store, event_id: str, known: int | datetime) -> list[dict[str, Any]]:
    """The event's current version (none when retracted) through the public read API, as
    known at a high-water seq or at a moment."""
    if isinstance(known, datetime):
        rows = store.events("P001", as_known_at=known)
    else:
        rows = _dicts(store.con.execute(store.current_sql(known, ["P001"])))
    return [r for r in rows if r["event_id"] == event_id]


def version_at(store: Store, event_id: str, high_water: int) -> dict[str, Any] | None:
    rows = [r for r in current(store, high_water) if r["event_id"] == event_id]
    return rows[0] if rows else None


@SLOW
@given(st.lists(operation, min_size=1, max_size=4))
def test_a_later_moment_never_shows_fewer_corrections(
    example_store_template: Path, ops: list[tuple[str, str, str]]
) -> None:
    with history(example_store_template, ops) as (store, changes):
        first = store.con.execute("SELECT min(recorded_at) FROM batches").fetchone()
        assert first is not None
        moments = [first[0] - timedelta(seconds=1), *(c.recorded_at for c in changes)]
        moments += [m + timedelta(microseconds=1) for m in moments]
        counts = [corrections_visible(store, m) for m in sorted(moments)]
        assert counts == sorted(counts)


@SLOW
@given(st.lists(operation, min_size=1, max_size=4))
def test_a_change_takes_effect_exactly_at_its_sequence_number(
    example_store_template: Path, ops: list[tuple[str, str, str]]
) -> None:
    with history(example_store_template, ops) as (store, changes):
        for c in changes:
            before = version_at(store, c.event_id, c.seq - 1)
            at = version_at(store, c.event_id, c.seq)
            assert before is not None and before["seq"] < c.seq
            if c.op == "retract":
                assert at is None
                continue
            assert at is not None and at["seq"] == c.seq and at["op"] == "correct"
            field = "orig_value" if c.op == "value" else "note"
            new = float(c.arg) if c.op == "value" else (c.arg.strip() or None)  # trimmed; blank clears
            assert before[field] != new  # just below its seq: the old value
            assert at[field] == new  # from its seq on: the new one


@SLOW
@given(st.lists(operation, min_size=1, max_size=4))
def test_as_known_at_just_before_a_change_shows_the_record_without_it(
    example_store_template: Path, ops: list[tuple[str, str, str]]
) -> None:
    with history(example_store_template, ops) as (store, changes):
        for c in changes:
            just_before = c.recorded_at - timedelta(microseconds=1)
            assert [r["seq"] for r in versions(store, c.event_id, just_before)] == [
                r["seq"] for r in versions(store, c.event_id, c.seq - 1)
            ]
            assert [r["seq"] for r in versions(store, c.event_id, c.recorded_at)] == [
                r["seq"] for r in versions(store, c.event_id, c.seq)
            ]


texts = st.one_of(st.none(), st.text(max_size=12))
instants = st.one_of(st.none(), st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(2100, 1, 1)))


@FAST
@given(st.lists(st.tuples(st.one_of(st.none(), st.integers(-(2**62), 2**62)), texts, instants), max_size=40))
def test_rows_inserted_at_once_read_back_exactly_and_in_order(rows: list[tuple[Any, ...]]) -> None:
    import duckdb

    from timeline.store import insert_rows

    con = duckdb.connect()
    con.execute("CREATE TABLE t (n BIGINT, s VARCHAR, q TIMESTAMP)")
    insert_rows(con, "t", ("BIGINT", "VARCHAR", "TIMESTAMP"), rows)
    assert con.execute("SELECT * FROM t").fetchall() == rows


# ---- the store's counts ---------------------------------------------------------------------

# as `operation`, and a retracted event asserted again with a note (how one comes back)
count_operation = st.one_of(
    operation,
    st.tuples(st.just("again"), st.sampled_from(EXAMPLE_IDS), st.text("abc", min_size=1, max_size=4)),
)


def assert_again(store: Store, event_id: str, note: str) -> None:
    """Ingest the event's last content with another note: refused (a conflict) unless the
    event is retracted, when it makes the event current again."""
    from timeline.errors import IngestError
    from timeline.ingest import _native_from_stored

    [last] = _dicts(
        store.con.execute(
            "SELECT * FROM events WHERE event_id = ? AND op <> 'retract' ORDER BY seq DESC LIMIT 1",
            [event_id],
        )
    )
    row = {k: v for k, v in _native_from_stored(last).items() if v is not None} | {"note": f"again {note}"}
    with contextlib.suppress(IngestError):  # not retracted: a conflict
        append_rows(store, [row], author="t")


def apply_count_operations(store: Store, ops: list[tuple[str, str, str]]) -> None:
    """Apply corrections, retractions and re-assertions in order; a correction of a retracted
    event is refused and skipped."""
    for kind, eid, arg in ops:
        try:
            if kind == "again":
                assert_again(store, eid, arg)
            elif kind == "retract":
                retract(store, eid, reason="test", author="t")
            else:
                correct(store, eid, {kind: arg}, reason="test", author="t")
        except UnknownEventError:
            continue  # retracted: it cannot be corrected


@SLOW
@given(st.lists(count_operation, min_size=1, max_size=6))
def test_info_counts_the_current_events_the_stored_versions_and_the_retracted_events(
    example_store_template: Path, ops: list[tuple[str, str, str]]
) -> None:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.duckdb"
        shutil.copy(example_store_template, path)
        with Store.open(path, write=True) as s:
            apply_count_operations(s, ops)
            last_ops = s.con.execute("SELECT arg_max(op, seq) FROM events GROUP BY event_id").fetchall()
            stored = s.con.execute("SELECT count(*) FROM events").fetchone()
            info = s.info()
            assert (info.events, info.versions, info.retracted, info.patients) == (
                len(current(s)),
                stored[0] if stored else None,
                sum(1 for (op,) in last_ops if op == "retract"),
                len(s.patients()),
            )


@SLOW
@given(st.lists(count_operation, min_size=1, max_size=6))
def test_a_patients_current_events_read_at_once_are_those_the_current_timeline_holds(
    example_store_template: Path, ops: list[tuple[str, str, str]]
) -> None:
    """Store.current_events (what `timeline state` replays) tells current versions in Python
    from one read of the patient's versions: at every high-water mark of a history of
    corrections, retractions and events asserted again, the same rows in the same order as
    Store.events, the current timeline's statement."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.duckdb"
        shutil.copy(example_store_template, path)
        with Store.open(path, write=True) as s:
            apply_count_operations(s, ops)
            for high_water in range(s.high_water() + 1):
                want = s.events("P001", high_water=high_water)
                got = s.current_events("P001", high_water)
                assert got == want, f"at seq {high_water}"
                assert [list(e) for e in got] == [list(e) for e in want]  # the same keys, in order
                # narrowed to the columns the rules read (what `state` asks): the same events,
                # each with those columns, the three that tell versions apart, and its order
                few = s.current_events("P001", high_water, ("kind", "value", "occurred_at"))
                keep = {"seq", "op", "event_id", "kind", "value", "occurred_at", "asserted_seq", "status"}
                assert few == [{k: v for k, v in e.items() if k in keep} for e in want], (
                    f"at seq {high_water}"
                )


@SLOW
@given(st.lists(count_operation, min_size=1, max_size=6), st.data())
def test_changes_are_every_version_after_an_events_first_in_the_span(
    example_store_template: Path, ops: list[tuple[str, str, str]], data: st.DataObject
) -> None:
    """timeline.changes.changes finds the events with several versions from the rows of
    corrections and retractions only (a re-assertion needs a retraction before it): over any
    span of seqs it lists what grouping every stored version by its event finds, each version
    after its event's first, in seq order, with the version it followed."""
    from timeline.changes import changes

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.duckdb"
        shutil.copy(example_store_template, path)
        with Store.open(path, write=True) as s:
            apply_count_operations(s, ops)
            top = s.high_water()
            since = data.draw(st.integers(0, top), label="since")
            until = data.draw(st.integers(since, top), label="until")
            stored = s.con.execute(
                "SELECT seq, event_id, op FROM events WHERE seq <= ? ORDER BY seq", [until]
            ).fetchall()
            previous: dict[str, int] = {}
            want = []
            for seq, event_id, op in stored:
                if event_id in previous and seq > since:
                    kind = op if op in ("correct", "retract") else "reassert"
                    want.append((seq, event_id, kind, previous[event_id]))
                previous[event_id] = seq
            got = [(c.seq, c.event_id, c.op, c.previous_seq) for c in changes(s, since, until)]
            assert got == want
