"""Censored lab values (``<5``: below the lab's limit of detection; ``>2000``: above the assay's
range): ingest reads them in every spelling a lab system writes, stores the bound and the
qualifier, and says how many it stored; an event without one keeps the hash (and id) it had
before the qualifier existed, so stores made by older versions open, verify and take events;
conflicts and duplicates weigh the qualifier; the value is shown with it (events, state,
explain) and survives a MEDS export and ingest."""

from __future__ import annotations

import json
from pathlib import Path

import duckdb
import pytest
from pydantic import ValidationError

from tests.support import EXAMPLE_CSV, EXAMPLES, raw_connection, run_cli
from timeline.errors import IngestError
from timeline.events import Lab, kind_fields
from timeline.ingest import append_events, append_rows, correct, ingest_file
from timeline.integrity import verify
from timeline.meds import export_meds
from timeline.store import EVENT_COLUMNS, LEGACY_EVENT_COLUMNS, QUALIFIER, Store

HEAD = "patient_id,kind,occurred_at,code,value,unit\n"


def _ingest(store: Store, tmp_path: Path, body: str, name: str = "labs.csv") -> list[str]:
    path = tmp_path / name
    path.write_text(HEAD + body, encoding="utf-8")
    return ingest_file(store, path, author="t").notes


def _stored(store: Store) -> list[tuple[object, ...]]:
    return store.con.execute(
        f"SELECT value, {QUALIFIER}, unit, orig_value, orig_unit FROM events WHERE kind = 'lab' ORDER BY seq"
    ).fetchall()


@pytest.mark.parametrize(
    ("written", "qualifier", "bound"),
    [
        ("<5", "<", 5.0),
        ("< 5", "<", 5.0),
        ("<=5", "<=", 5.0),
        ("≤5", "<=", 5.0),
        ("≤ 5", "<=", 5.0),
        (">2000", ">", 2000.0),
        (">= 2000", ">=", 2000.0),
        ("≥2000", ">=", 2000.0),
        (" <0.5 ", "<", 0.5),
    ],
)
def test_each_spelling_of_a_censored_value_is_stored_as_its_bound_and_qualifier(
    store: Store, tmp_path: Path, written: str, qualifier: str, bound: float
) -> None:
    _ingest(store, tmp_path, f'P1,lab,2009-03-01,2276-4,"{written}",ng/mL\n')
    assert _stored(store) == [(bound, qualifier, "ng/mL", bound, "ng/mL")]


def test_a_censored_value_in_another_unit_has_its_bound_converted(store: Store, tmp_path: Path) -> None:
    _ingest(store, tmp_path, "P1,lab,2009-03-01,1988-5,<0.5,mg/dL\n")
    assert _stored(store) == [(5.0, "<", "mg/L", 0.5, "mg/dL")]


def test_a_censored_value_in_json_lines_is_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "labs.jsonl"
    path.write_text(
        json.dumps({"patient_id": "P1", "kind": "lab", "occurred_at": "2009-03-01", "code": "1988-5",
                    "value": "<5", "unit": "mg/L"}) + "\n",
        encoding="utf-8",
    )  # fmt: skip
    ingest_file(store, path, author="t")
    assert _stored(store) == [(5.0, "<", "mg/L", 5.0, "mg/L")]


def test_a_censored_value_in_a_parquet_text_column_is_read(store: Store, tmp_path: Path) -> None:
    path = tmp_path / "labs.parquet"
    duckdb.execute(
        f"""COPY (SELECT 'P1' AS patient_id, 'lab' AS kind, '2009-03-01' AS occurred_at, '1988-5' AS code,
                   '>=12' AS value, 'mg/L' AS unit) TO '{path}' (FORMAT parquet)"""
    )
    ingest_file(store, path, author="t")
    assert _stored(store) == [(12.0, ">=", "mg/L", 12.0, "mg/L")]


def test_a_note_says_how_many_values_were_stored_as_censored(store: Store, tmp_path: Path) -> None:
    notes = _ingest(
        store, tmp_path, "P1,lab,2009-03-01,1988-5,4,mg/L\nP1,lab,2009-03-02,1988-5,<5,mg/L\n"
        "P1,lab,2009-03-03,2276-4,>2000,ng/mL\n",
    )  # fmt: skip
    assert [n for n in notes if "censored" in n] == [
        "2 values stored as censored, beyond a limit of the assay (the first: row 2, <5 mg/L): each keeps "
        "its bound and its qualifier, and a rule decides on one only when the whole range it stands for lies "
        "on one side of the rule's threshold (docs/engine.md)"
    ]


def test_no_note_about_censored_values_when_there_are_none(store: Store, tmp_path: Path) -> None:
    assert not [n for n in _ingest(store, tmp_path, "P1,lab,2009-03-01,1988-5,4,mg/L\n") if "censored" in n]


@pytest.mark.parametrize(
    ("written", "hint"),
    [
        ("<", "a censored value is a qualifier and a number"),
        ("<5 mg/L", "a censored value is a qualifier and a number"),
        ("<<5", "a censored value is a qualifier and a number"),
        ("<5,2", "a censored value with a decimal comma? write <5.2"),
        ("=5", ""),
    ],
)
def test_other_text_is_refused_naming_file_row_and_field(
    store: Store, tmp_path: Path, written: str, hint: str
) -> None:
    with pytest.raises(IngestError) as exc:
        _ingest(
            store, tmp_path, f'P1,lab,2009-03-01,1988-5,4,mg/L\nP1,lab,2009-03-02,1988-5,"{written}",mg/L\n'
        )
    (err,) = exc.value.errors
    assert (exc.value.source, err.row, err.field) == (str(tmp_path / "labs.csv"), 2, "value")
    assert err.reason.startswith(f"not a number: '{written}'") and hint in err.reason
    assert store.high_water() == 0


def test_a_censored_value_of_another_kind_than_a_lab_is_refused(store: Store, tmp_path: Path) -> None:
    with pytest.raises(IngestError) as exc:
        _ingest(store, tmp_path, "P1,weight,2009-03-01,,<20,kg\n")
    (err,) = exc.value.errors
    assert (err.row, err.field) == (1, "value")
    assert (
        err.reason
        == "is a censored value ('<20'): only a lab result may be one; give the weight's measured value"
    )


def test_an_exact_event_keeps_the_content_hash_it_had_before_qualifiers(store: Store) -> None:
    """The ids and content hashes of examples/events.csv, as the version before censored values
    derived them (pinned: sha256 of each event id and content hash, in seq order)."""
    ingest_file(store, EXAMPLE_CSV, author="t")
    found = store.con.execute(
        "SELECT count(*), sha256(string_agg(event_id || content_hash, '' ORDER BY seq)) FROM events"
    ).fetchone()
    assert found == (14, "93218ebef5f34600798ab9b3beb8a57147b572f174dcee542c130b627e7d7d88")


def test_the_valencia_example_keeps_its_content_hashes(tmp_path: Path) -> None:
    with Store.create(tmp_path / "v.duckdb", timezone="Europe/Madrid") as s:
        ingest_file(s, EXAMPLES / "valencia" / "events.csv", author="t")
        found = s.con.execute(
            "SELECT count(*), sha256(string_agg(event_id || content_hash, '' ORDER BY seq)) FROM events"
        ).fetchone()
    assert found == (3470, "11592c3cb0e9ed27bf5842785624b4d2e77a44c256bdb204dbecd7a7f40ec448")


# Every column of events but the row hash and the qualifier, as the version before them hashed a
# row (written out here, not taken from the library: the format is what is pinned)
LEGACY_HASHED = (
    "seq, batch_id, op, event_id, patient_id, kind, occurred_at, occurred_precision, ended_at, ended_precision, "
    "code, value, unit, ref_low, ref_high, orig_value, orig_unit, orig_ref_low, orig_ref_high, present, sex, "
    "drug, dose, dose_unit, orig_dose, orig_dose_unit, route, frequency, active_joints, limited_joints, term, "
    "grade, serious, action, reason, note, recorded_at, author, source_file, source_row, change_reason, "
    "content_hash"
)


def test_an_exact_event_keeps_the_row_hash_format_it_had_before_qualifiers(
    store: Store, tmp_path: Path
) -> None:
    ingest_file(store, EXAMPLE_CSV, author="t")
    _ingest(store, tmp_path, "P1,lab,2009-03-01,1988-5,<5,mg/L\n")
    rows = store.con.execute(
        f"SELECT {QUALIFIER} IS NULL, row_hash = sha256(json_array({LEGACY_HASHED})::VARCHAR) FROM events ORDER BY seq"
    ).fetchall()
    assert rows == [(True, True)] * 14 + [(False, False)]
    assert verify(store).ok


def test_a_censored_value_is_a_different_event_than_the_exact_one(store: Store, tmp_path: Path) -> None:
    _ingest(store, tmp_path, "P1,lab,2009-03-01,1988-5,5,mg/L\nP1,lab,2009-03-01,1988-5,<5,mg/L\n")
    ids = store.con.execute("SELECT DISTINCT event_id FROM events").fetchall()
    assert len(ids) == 2


def test_the_same_censored_value_ingested_again_is_a_duplicate(store: Store, tmp_path: Path) -> None:
    _ingest(store, tmp_path, "P1,lab,2009-03-01,1988-5,<5,mg/L\n")
    path = tmp_path / "again.csv"
    path.write_text(HEAD + "P1,lab,2009-03-01,1988-5,< 5,mg/L\n", encoding="utf-8")
    again = ingest_file(store, path, author="t")
    assert (again.added, again.duplicates) == (0, 1)


def test_an_id_given_again_without_its_qualifier_is_a_conflict_naming_both_values(
    store: Store, tmp_path: Path
) -> None:
    body = "event_id," + HEAD
    (tmp_path / "a.csv").write_text(body + "X1,P1,lab,2009-03-01,1988-5,<5,mg/L\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text(body + "X1,P1,lab,2009-03-01,1988-5,5,mg/L\n", encoding="utf-8")
    ingest_file(store, tmp_path / "a.csv", author="t")
    with pytest.raises(IngestError) as exc:
        ingest_file(store, tmp_path / "b.csv", author="t")
    assert "value: stored <5 mg/L, file 5 mg/L" in exc.value.errors[0].reason


def test_the_same_censored_value_in_another_unit_is_a_duplicate(store: Store, tmp_path: Path) -> None:
    body = "event_id," + HEAD
    (tmp_path / "a.csv").write_text(body + "X1,P1,lab,2009-03-01,1988-5,<5,mg/L\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text(body + "X1,P1,lab,2009-03-01,1988-5,<0.5,mg/dL\n", encoding="utf-8")
    ingest_file(store, tmp_path / "a.csv", author="t")
    again = ingest_file(store, tmp_path / "b.csv", author="t")
    assert (again.added, again.duplicates) == (0, 1)
    assert "<0.5 mg/dL = <5 mg/L as stored" in again.notes[0]


def test_the_exact_value_in_another_unit_is_no_duplicate_of_a_censored_one(
    store: Store, tmp_path: Path
) -> None:
    body = "event_id," + HEAD
    (tmp_path / "a.csv").write_text(body + "X1,P1,lab,2009-03-01,1988-5,<5,mg/L\n", encoding="utf-8")
    (tmp_path / "b.csv").write_text(body + "X1,P1,lab,2009-03-01,1988-5,0.5,mg/dL\n", encoding="utf-8")
    ingest_file(store, tmp_path / "a.csv", author="t")
    with pytest.raises(IngestError) as exc:
        ingest_file(store, tmp_path / "b.csv", author="t")
    assert "value: stored <5 mg/L, file 0.5 mg/dL" in exc.value.errors[0].reason


def test_a_correction_of_another_field_keeps_the_qualifier(store: Store) -> None:
    append_rows(store, [{"event_id": "X1", "patient_id": "P1", "kind": "lab", "occurred_at": "2009-03-01",
                         "code": "1988-5", "value": "<5", "unit": "mg/L"}], author="t")  # fmt: skip
    correct(store, "X1", {"note": "haemolysed"}, reason="lab note", author="t")
    assert store.current_version("X1")[QUALIFIER] == "<"
    assert verify(store).ok


def test_a_correction_can_make_a_censored_value_exact(store: Store) -> None:
    append_rows(store, [{"event_id": "X1", "patient_id": "P1", "kind": "lab", "occurred_at": "2009-03-01",
                         "code": "1988-5", "value": "<5", "unit": "mg/L"}], author="t")  # fmt: skip
    correct(store, "X1", {"value": "3"}, reason="retested", author="t")
    row = store.current_version("X1")
    assert (row["value"], row[QUALIFIER]) == (3.0, None)


def test_a_correction_to_the_same_censored_value_writes_nothing(store: Store) -> None:
    append_rows(store, [{"event_id": "X1", "patient_id": "P1", "kind": "lab", "occurred_at": "2009-03-01",
                         "code": "1988-5", "value": "<5", "unit": "mg/L"}], author="t")  # fmt: skip
    assert correct(store, "X1", {"value": "< 5"}, reason="again", author="t").added == 0
    assert correct(store, "X1", {"value": "5"}, reason="exact", author="t").added == 1


# ---- a store made before censored values -------------------------------------------------------


def _older_store(path: Path) -> Path:
    """A store as a version before censored values made it: no qualifier column (what those
    versions created; dropped here, where a test may alter a store)."""
    with Store.create(path) as s:
        ingest_file(s, EXAMPLE_CSV, author="t")
    with raw_connection(path) as con:
        con.execute(f"ALTER TABLE events DROP COLUMN {QUALIFIER}")
        assert [c[0] for c in con.execute("DESCRIBE events").fetchall()] == list(LEGACY_EVENT_COLUMNS)
    return path


def test_an_older_store_opens_and_verifies(tmp_path: Path) -> None:
    with Store.open(_older_store(tmp_path / "old.duckdb")) as s:
        assert not s.has_qualifier
        assert verify(s).ok


def test_an_older_store_takes_exact_values_and_keeps_its_format(tmp_path: Path) -> None:
    with Store.open(_older_store(tmp_path / "old.duckdb"), write=True) as s:
        before = s.high_water()
        _ingest(s, tmp_path, "P001,lab,2009-03-01,1988-5,4,mg/L\n")
        assert s.high_water() == before + 1
        correct(s, s.con.execute("SELECT max(event_id) FROM events WHERE kind = 'lab'").fetchone()[0],
                {"note": "x"}, reason="r", author="t")  # fmt: skip
        assert verify(s).ok
        assert [c[0] for c in s.con.execute("DESCRIBE events").fetchall()] == list(LEGACY_EVENT_COLUMNS)


def test_an_older_store_refuses_a_censored_value_saying_why(tmp_path: Path) -> None:
    with Store.open(_older_store(tmp_path / "old.duckdb"), write=True) as s:
        before = s.high_water()
        with pytest.raises(IngestError) as exc:
            _ingest(s, tmp_path, "P1,lab,2009-03-01,1988-5,<5,mg/L\n")
        assert s.high_water() == before
    (err,) = exc.value.errors
    assert (err.row, err.field) == (1, "value")
    assert "which this store cannot hold: it was made by a timeline from before censored values" in err.reason


def test_an_older_store_shows_events_and_states(tmp_path: Path) -> None:
    path = _older_store(tmp_path / "old.duckdb")
    shown = run_cli("events", "P001", "--store", str(path), "--json")
    assert shown.exit_code == 0
    assert {e[QUALIFIER] for e in json.loads(shown.stdout)["events"]} == {None}
    history = run_cli("events", "P001", "--store", str(path), "--json", "--history")
    assert {e[QUALIFIER] for e in json.loads(history.stdout)["events"]} == {None}
    state = run_cli(
        "state", "P001", "--at", "2008-03-01", "--rule", "crp_normal", "--store", str(path), "--json"
    )
    assert state.exit_code == 0, state.stderr


def test_an_older_store_explains_a_rule_whose_selector_limits_the_value(tmp_path: Path) -> None:
    # fever's selector reads body temperatures >= 38 °C (a where: on the value); explain also
    # looks for retracted events it would match, read from the store's own columns
    path = _older_store(tmp_path / "old.duckdb")
    shown = run_cli("explain", "P001", "fever", "--at", "2008-01-10T12:00", "--store", str(path), "--json")
    assert shown.exit_code == 0, shown.stderr
    assert json.loads(shown.stdout)["tree"]["value"] is True


def test_a_new_store_has_the_qualifier_column() -> None:
    assert QUALIFIER in EVENT_COLUMNS and QUALIFIER not in LEGACY_EVENT_COLUMNS


# ---- shown ---------------------------------------------------------------------------------------


@pytest.fixture
def censored_store(tmp_path: Path) -> Path:
    path = tmp_path / "c.duckdb"
    with Store.create(path) as s:
        append_rows(s, [
            {"patient_id": "P1", "kind": "birth", "occurred_at": "2001-01-01", "sex": "female"},
            {"event_id": "X1", "patient_id": "P1", "kind": "lab", "occurred_at": "2009-03-01", "code": "1988-5",
             "value": "<0.5", "unit": "mg/dL"},
        ], author="t")  # fmt: skip
    return path


def test_events_show_a_censored_value_with_its_qualifier(censored_store: Path) -> None:
    shown = run_cli("events", "P1", "--store", str(censored_store))
    assert "CRP <5 mg/L (as given: <0.5 mg/dL)" in shown.stdout


def test_events_json_keeps_the_value_numeric_beside_its_qualifier(censored_store: Path) -> None:
    rows = json.loads(run_cli("events", "P1", "--store", str(censored_store), "--json").stdout)["events"]
    lab = next(r for r in rows if r["kind"] == "lab")
    assert (lab["value"], lab[QUALIFIER], lab["orig_value"]) == (5.0, "<", 0.5)


def _latest_rule(tmp_path: Path) -> Path:
    from tests.engine_support import write_rule

    write_rule(
        tmp_path / "rules",
        "crp_value",
        {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}},
    )
    return tmp_path / "rules"


def test_state_json_gives_a_censored_rule_value_as_a_number_and_its_qualifier(
    censored_store: Path, tmp_path: Path
) -> None:
    out = run_cli("state", "P1", "--at", "2009-03-02", "--rule", "crp_value", "--rules", str(_latest_rule(tmp_path)),
                  "--store", str(censored_store), "--json")  # fmt: skip
    (state,) = json.loads(out.stdout)["states"]
    assert (state["value"], state["qualifier"], state["unit"], state["known"]) == (5.0, "<", "mg/L", True)


def test_state_json_gives_no_qualifier_for_an_exact_value(censored_store: Path) -> None:
    out = run_cli(
        "state", "P1", "--at", "2009-03-02", "--rule", "crp_normal", "--store", str(censored_store), "--json"
    )
    (state,) = json.loads(out.stdout)["states"]
    assert (state["value"], state["qualifier"]) == (True, None)


def test_state_shows_a_censored_rule_value_with_its_qualifier(censored_store: Path, tmp_path: Path) -> None:
    out = run_cli("state", "P1", "--at", "2009-03-02", "--rule", "crp_value", "--rules", str(_latest_rule(tmp_path)),
                  "--store", str(censored_store))  # fmt: skip
    assert "<5 mg/L" in out.stdout


def test_explain_shows_the_censored_value_and_the_comparison_decided_on_it(censored_store: Path) -> None:
    out = run_cli("explain", "P1", "crp_normal", "--at", "2009-03-02", "--store", str(censored_store))
    assert out.exit_code == 0, out.stderr
    assert "crp_normal@1 = " in out.stdout and "true" in out.stdout.splitlines()[1]
    assert "CRP <5 mg/L vs the limit ≤ 6 (no lab range)" in out.stdout
    assert "CRP <5 mg/L (as given: <0.5 mg/dL)" in out.stdout


def test_explain_json_lists_the_qualifier_of_an_event_used(censored_store: Path) -> None:
    out = run_cli(
        "explain", "P1", "crp_normal", "--at", "2009-03-02", "--store", str(censored_store), "--json"
    )
    (used,) = json.loads(out.stdout)["events"]
    assert (used["value"], used["qualifier"], used["original_value"]) == (5.0, "<", 0.5)


# ---- MEDS ----------------------------------------------------------------------------------------


def test_meds_export_writes_the_bound_as_numeric_value_and_the_censored_value_as_text(
    censored_store: Path, tmp_path: Path
) -> None:
    with Store.open(censored_store) as s:
        export_meds(s, tmp_path / "meds")
    rows = duckdb.execute(
        f"SELECT numeric_value, text_value FROM '{tmp_path / 'meds' / 'data' / '*.parquet'}' WHERE code LIKE 'LAB//%'"
    ).fetchall()
    assert rows == [(5.0, "<5")]


def test_meds_round_trip_brings_the_qualifier_back_with_the_same_event(
    censored_store: Path, tmp_path: Path
) -> None:
    with Store.open(censored_store) as s:
        export_meds(s, tmp_path / "meds")
        before = s.current_version("X1")
    with Store.create(tmp_path / "back.duckdb") as s:
        result = ingest_file(s, tmp_path / "meds", author="t", fmt="meds")
        after = s.current_version("X1")
    assert (after[QUALIFIER], after["value"], after["orig_value"], after["orig_unit"]) == (
        "<",
        5.0,
        0.5,
        "mg/dL",
    )
    assert after["content_hash"] == before["content_hash"]
    assert any("1 value stored as censored" in n for n in result.notes)


# ---- the Python event model -----------------------------------------------------------------------


def _lab(**extra: object) -> Lab:
    return Lab.model_validate(
        {
            "patient_id": "P1",
            "kind": "lab",
            "code": "1988-5",
            "occurred_at": "2009-03-01",
            "value": 5,
            "unit": "mg/L",
            **extra,
        }
    )


def _hashes(store: Store) -> list[tuple[object, ...]]:
    return store.con.execute(
        f"SELECT event_id, content_hash, value, {QUALIFIER} FROM events ORDER BY seq"
    ).fetchall()


def test_a_lab_model_with_a_qualifier_is_stored_and_hashed_as_the_file_row(tmp_path: Path) -> None:
    with Store.create(tmp_path / "a.duckdb") as a, Store.create(tmp_path / "b.duckdb") as b:
        append_events(a, [_lab(qualifier="<")], author="t")
        _ingest(b, tmp_path, "P1,lab,2009-03-01,1988-5,<5,mg/L\n")
        assert _hashes(a) == _hashes(b)
        assert _hashes(a)[0][2:] == (5.0, "<")


def test_a_lab_model_without_a_qualifier_keeps_the_hash_of_an_exact_value(tmp_path: Path) -> None:
    with Store.create(tmp_path / "a.duckdb") as a, Store.create(tmp_path / "b.duckdb") as b:
        append_events(a, [_lab()], author="t")
        _ingest(b, tmp_path, "P1,lab,2009-03-01,1988-5,5,mg/L\n")
        assert _hashes(a) == _hashes(b)
        assert _hashes(a)[0][3] is None


@pytest.mark.parametrize(("written", "qualifier"), [("≤", "<="), ("≥", ">="), (">=", ">=")])
def test_a_lab_model_reads_the_qualifier_in_each_spelling_ingest_does(written: str, qualifier: str) -> None:
    assert _lab(qualifier=written).qualifier == qualifier


def test_a_lab_model_refuses_another_qualifier_naming_the_field() -> None:
    with pytest.raises(ValidationError) as exc:
        _lab(qualifier="~")
    assert exc.value.errors()[0]["loc"] == ("qualifier",)


def test_a_lab_model_qualifier_is_no_column_of_a_file() -> None:
    assert "qualifier" not in kind_fields("lab")[1]


def test_a_lab_model_with_a_qualifier_is_refused_by_a_store_made_before_censored_values(
    tmp_path: Path,
) -> None:
    with Store.open(_older_store(tmp_path / "old.duckdb"), write=True) as s:
        before = s.high_water()
        with pytest.raises(IngestError) as exc:
            append_events(s, [_lab(qualifier="<")], author="t")
        assert s.high_water() == before
    assert "it was made by a timeline from before censored values" in exc.value.errors[0].reason
