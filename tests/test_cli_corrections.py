"""Corrections and retractions from the command line: who and why are required, what can be
changed, and how the history and earlier states of the record are shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT, raw_connection, run_cli, snapshot

AUTHOR = ("--author", "Dr. Ruiz")


def versions(store: Path, *extra: str) -> list[dict[str, Any]]:
    result = run_cli("events", "P001", "--store", store, "--json", *extra)
    assert result.exit_code == 0, result.output
    rows: list[dict[str, Any]] = json.loads(result.stdout)["events"]
    return rows


def current(store: Path, event_id: str, *extra: str) -> dict[str, Any] | None:
    found = [r for r in versions(store, *extra) if r["event_id"] == event_id]
    return found[0] if found else None


def batch_recorded_at(store: Path, batch_id: int) -> str:
    with raw_connection(store, read_only=True) as con:
        row = con.execute("SELECT recorded_at FROM batches WHERE batch_id = ?", [batch_id]).fetchone()
    assert row is not None
    return str(row[0].isoformat())


@pytest.fixture
def corrected_store(example_store: Path) -> Path:
    """The example store after p1-crp2 was corrected (batch 2) and p1-rash1 retracted (batch 3)."""
    run_cli(
        "correct",
        "p1-crp2",
        "--set",
        "value=5",
        "--reason",
        "transcription error",
        *AUTHOR,
        "--store",
        example_store,
    )
    run_cli("retract", "p1-rash1", "--reason", "wrong patient", *AUTHOR, "--store", example_store)
    return example_store


def test_correct_appends_a_new_version_with_the_same_id(example_store: Path) -> None:
    result = run_cli(
        "correct", "p1-crp2", "--set", "value=5", "--reason", "typo", *AUTHOR, "--store", example_store
    )
    assert (result.exit_code, result.stdout) == (0, "corrected p1-crp2: value 5 mg/L; seq 15 (batch 2)\n")


def test_a_correction_says_the_value_as_given_and_as_stored(example_store: Path) -> None:
    # helper 50: value=6 on a CRP entered in mg/dL is stored as 60 mg/L, and was not said
    result = run_cli(
        "correct", "p1-crp1", "--set", "value=6", "--reason", "typo", *AUTHOR, "--store", example_store
    )
    assert result.stdout == "corrected p1-crp1: value 6 mg/dL (stored as 60 mg/L); seq 15 (batch 2)\n"


def test_a_correction_that_clears_a_field_says_so(example_store: Path) -> None:
    run_cli("correct", "p1-wt1", "--set", "note=scale B", "--reason", "r", *AUTHOR, "--store", example_store)
    result = run_cli(
        "correct", "p1-wt1", "--set", "note=", "--reason", "r", *AUTHOR, "--store", example_store
    )
    assert result.stdout == "corrected p1-wt1: note cleared; seq 16 (batch 3)\n"


def correct_json(store: Path, event_id: str, *changes: str) -> dict[str, Any]:
    sets = [a for c in changes for a in ("--set", c)]
    result = run_cli("correct", event_id, *sets, "--reason", "r", *AUTHOR, "--store", store, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def test_correct_json_gives_a_value_as_given_and_as_stored(example_store: Path) -> None:
    """As the message does: value=6 on a CRP entered in mg/dL is stored as 60 mg/L."""
    data = correct_json(example_store, "p1-crp1", "value=6")
    assert data["stored"] == [
        {"field": "value", "value": 6.0, "unit": "mg/dL", "stored_value": 60.0, "stored_unit": "mg/L"}
    ]


def test_correct_json_gives_a_dose_as_given_and_as_stored(example_store: Path) -> None:
    data = correct_json(example_store, "p1-ana", "dose_unit=G", "dose=0.05")
    assert data["stored"] == [
        {"field": "dose", "value": 0.05, "unit": "g", "stored_value": 50.0, "stored_unit": "mg"}
    ]


def test_correct_json_gives_a_cleared_field_as_null(example_store: Path) -> None:
    correct_json(example_store, "p1-wt1", "note=scale B")
    assert correct_json(example_store, "p1-wt1", "note=")["stored"] == [{"field": "note", "value": None}]


def test_correct_json_gives_a_field_without_a_unit_as_stored(example_store: Path) -> None:
    data = correct_json(example_store, "p1-je1", "active_joints=5")
    assert data["stored"] == [{"field": "active_joints", "value": 5}]


def test_correct_json_of_a_correction_made_already_gives_the_values_the_event_has(
    example_store: Path,
) -> None:
    data = correct_json(example_store, "p1-crp2", "value=4.0")
    assert (data["batch_id"], data["stored"]) == (
        None,
        [{"field": "value", "value": 4.0, "unit": "mg/L", "stored_value": 4.0, "stored_unit": "mg/L"}],
    )


def test_a_correction_into_a_clock_time_that_never_happened_is_refused(tmp_path: Path) -> None:
    """Madrid's clocks went from 02:00 to 03:00 on 29 March 2009: a correction is checked as a
    file's row is."""
    store = tmp_path / "madrid.duckdb"
    run_cli("init", "--store", store, "--timezone", "Europe/Madrid")
    (tmp_path / "e.csv").write_text(
        "event_id,patient_id,kind,occurred_at,code,value,unit\nc1,P1,lab,2009-03-29T01:50,1988-5,3,mg/L\n"
    )
    run_cli("ingest", tmp_path / "e.csv", "--store", store, "--author", "t")
    before = snapshot(store)
    result = run_cli(
        "correct", "c1", "--set", "occurred_at=2009-03-29T02:50", "--reason", "r", *AUTHOR, "--store", store
    )
    assert (result.exit_code, snapshot(store)) == (6, before)
    assert "correction of c1: field occurred_at: is '2009-03-29T02:50', a clock time that never happened" in (
        result.stderr
    )


def test_a_field_set_twice_is_a_usage_error(example_store: Path) -> None:
    before = snapshot(example_store)
    result = run_cli(
        "correct", "p1-crp2", "--set", "value=5", "--set", "value=6", "--reason", "r", *AUTHOR,
        "--store", example_store,
    )  # fmt: skip
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --set value given twice ('5' and '6'): give each field once\n",
    )
    assert snapshot(example_store) == before


@pytest.mark.parametrize("command", ["correct", "retract", "ingest", "codes add"])
def test_an_empty_author_is_refused_not_replaced_by_the_environment(
    example_store: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    monkeypatch.setenv("TIMELINE_AUTHOR", "Dr. Env")
    args = {
        "correct": ("correct", "p1-crp2", "--set", "value=5", "--reason", "r"),
        "retract": ("retract", "p1-crp2", "--reason", "r"),
        "ingest": ("ingest", ROOT / "examples" / "events.csv"),
        "codes add": ("codes", "add", ROOT / "examples" / "site_rules" / "codes.yaml"),
    }[command]
    before = snapshot(example_store)
    result = run_cli(*args, "--author", "", "--store", example_store)
    assert (result.exit_code, result.stderr) == (2, "error: --author must not be empty\n")
    assert snapshot(example_store) == before


def test_corrected_value_is_the_current_one(corrected_store: Path) -> None:
    crp = current(corrected_store, "p1-crp2")
    assert crp is not None and (crp["value"], crp["op"], crp["change_reason"]) == (
        5.0,
        "correct",
        "transcription error",
    )


def test_retracted_event_leaves_the_current_timeline(corrected_store: Path) -> None:
    assert current(corrected_store, "p1-rash1") is None


def test_correct_requires_an_author(example_store: Path) -> None:
    result = run_cli("correct", "p1-crp2", "--set", "value=5", "--reason", "typo", "--store", example_store)
    assert (result.exit_code, result.stderr) == (2, "error: --author is required (or set TIMELINE_AUTHOR)\n")


def test_correct_takes_the_author_from_the_environment(
    example_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMELINE_AUTHOR", "Dr. Env")
    run_cli("correct", "p1-crp2", "--set", "value=5", "--reason", "typo", "--store", example_store)
    crp = current(example_store, "p1-crp2")
    assert crp is not None and crp["author"] == "Dr. Env"


def test_correct_requires_a_reason(example_store: Path) -> None:
    result = run_cli("correct", "p1-crp2", "--set", "value=5", *AUTHOR, "--store", example_store)
    assert result.exit_code == 2
    assert "Missing option '--reason'" in result.stderr


def test_correct_refuses_a_blank_reason(example_store: Path) -> None:
    result = run_cli(
        "correct", "p1-crp2", "--set", "value=5", "--reason", "  ", *AUTHOR, "--store", example_store
    )
    assert (result.exit_code, result.stderr) == (2, "error: reason is required and must not be empty\n")


def test_retract_requires_an_author(example_store: Path) -> None:
    result = run_cli("retract", "p1-rash1", "--reason", "wrong patient", "--store", example_store)
    assert (result.exit_code, result.stderr) == (2, "error: --author is required (or set TIMELINE_AUTHOR)\n")


def test_retract_requires_a_reason(example_store: Path) -> None:
    result = run_cli("retract", "p1-rash1", *AUTHOR, "--store", example_store)
    assert result.exit_code == 2
    assert "Missing option '--reason'" in result.stderr


def test_correcting_an_unknown_event_exits_5(example_store: Path) -> None:
    result = run_cli(
        "correct", "nope", "--set", "value=5", "--reason", "r", *AUTHOR, "--store", example_store
    )
    assert (result.exit_code, result.stderr) == (5, f"error: no event with id 'nope' in {example_store}\n")


def test_retracting_an_unknown_event_exits_5(example_store: Path) -> None:
    result = run_cli("retract", "nope", "--reason", "r", *AUTHOR, "--store", example_store)
    assert (result.exit_code, result.stderr) == (5, f"error: no event with id 'nope' in {example_store}\n")


def test_correcting_a_retracted_event_exits_5(corrected_store: Path) -> None:
    result = run_cli(
        "correct", "p1-rash1", "--set", "note=x", "--reason", "r", *AUTHOR, "--store", corrected_store
    )
    assert (result.exit_code, result.stderr.splitlines()) == (
        5,
        [
            "error: event 'p1-rash1' was retracted (seq 16)",
            "  a retracted event cannot be corrected: to bring it back, ingest a row with its event id and"
            " the corrected content (a row with the content of one of its versions keeps it retracted)",
        ],
    )


@pytest.mark.parametrize("command", ["correct", "retract"])
def test_an_unknown_event_id_suggests_the_ids_it_may_be_ignoring_case(
    example_store: Path, command: str
) -> None:
    change = ("--set", "value=5") if command == "correct" else ()
    result = run_cli(command, "P1-CRP1", *change, "--reason", "r", *AUTHOR, "--store", example_store)
    assert (result.exit_code, result.stderr) == (
        5,
        f"error: no event with id 'P1-CRP1' in {example_store} (did you mean 'p1-crp1' or 'p1-crp2'?)\n",
    )


@pytest.mark.parametrize("command", ["correct", "retract"])
def test_an_event_id_with_spaces_around_it_is_trimmed(example_store: Path, command: str) -> None:
    change = ("--set", "value=5") if command == "correct" else ()
    result = run_cli(command, " p1-crp2\t", *change, "--reason", "r", *AUTHOR, "--store", example_store)
    assert (result.exit_code, result.stdout.split(":")[0]) == (0, f"{command}ed p1-crp2")


@pytest.mark.parametrize("command", ["correct", "retract"])
def test_a_blank_event_id_is_a_usage_error(example_store: Path, command: str) -> None:
    change = ("--set", "value=5") if command == "correct" else ()
    result = run_cli(command, "  ", *change, "--reason", "r", *AUTHOR, "--store", example_store)
    assert (result.exit_code, result.stderr) == (2, "error: EVENT_ID must not be empty\n")


@pytest.mark.parametrize("field", ["patient_id", "kind", "event_id"])
def test_identity_fields_cannot_be_corrected(example_store: Path, field: str) -> None:
    before = snapshot(example_store)
    result = run_cli(
        "correct", "p1-crp2", "--set", f"{field}=X", "--reason", "r", *AUTHOR, "--store", example_store
    )
    assert (result.exit_code, result.stderr) == (
        2,
        f"error: {field} cannot be corrected: retract the event and ingest it again\n",
    )
    assert snapshot(example_store) == before


def test_correcting_an_unknown_field_suggests_the_right_one(example_store: Path) -> None:
    result = run_cli(
        "correct", "p1-crp2", "--set", "valeu=5", "--reason", "r", *AUTHOR, "--store", example_store
    )
    assert (result.exit_code, result.stderr) == (2, "error: unknown field 'valeu' (did you mean 'value'?)\n")


@pytest.mark.parametrize(
    ("change", "values"),
    [
        ("value=4", "value 4 mg/L"),
        ("value=4.0", "value 4 mg/L"),
        ("unit=mg/L", "value 4 mg/L"),
        ("note=", "note cleared"),
    ],
)
def test_a_correction_that_changes_nothing_writes_nothing_and_exits_0(
    example_store: Path, change: str, values: str
) -> None:
    """p1-crp2 is 4 mg/L without a note: the same value written differently is no change. A
    script run again finds its correction made (helper 44: it exited 2, a bad command line)."""
    before = snapshot(example_store)
    result = run_cli(
        "correct", "p1-crp2", "--set", change, "--reason", "r", *AUTHOR, "--store", example_store
    )
    assert (result.exit_code, result.stdout) == (
        0,
        f"p1-crp2 already has these values ({values}): nothing written\n",
    )
    assert snapshot(example_store) == before


def test_retracting_a_retracted_event_writes_nothing_and_exits_0(corrected_store: Path) -> None:
    before = snapshot(corrected_store)
    result = run_cli("retract", "p1-rash1", "--reason", "r", *AUTHOR, "--store", corrected_store, "--json")
    assert result.exit_code == 0
    assert {
        k: v for k, v in json.loads(result.stdout).items() if k in ("batch_id", "added", "duplicates")
    } == {
        "batch_id": None,
        "added": 0,
        "duplicates": 1,
    }
    assert snapshot(corrected_store) == before


def test_a_correction_is_validated_like_a_file_row(example_store: Path) -> None:
    result = run_cli(
        "correct", "p1-crp2", "--set", "value=abc", "--reason", "r", *AUTHOR, "--store", example_store
    )
    assert (result.exit_code, result.stderr.splitlines()) == (
        6,
        [
            "error: correction of p1-crp2: batch rejected, nothing written (1 error)",
            "  correction of p1-crp2: field value: not a number: 'abc'",
        ],
    )


def test_a_correction_is_given_in_the_original_unit(example_store: Path) -> None:
    """p1-crp1 was given as 8.4 mg/dL: a correction to 0.5 means 0.5 mg/dL, stored as 5 mg/L."""
    run_cli("correct", "p1-crp1", "--set", "value=0.5", "--reason", "r", *AUTHOR, "--store", example_store)
    crp = current(example_store, "p1-crp1")
    assert crp is not None and (crp["value"], crp["orig_value"], crp["orig_unit"]) == (5.0, 0.5, "mg/dL")


def test_history_marks_superseded_current_retracted_versions(corrected_store: Path) -> None:
    rows = [r for r in versions(corrected_store, "--history") if r["event_id"] in ("p1-crp2", "p1-rash1")]
    assert [(r["event_id"], r["seq"], r["op"], r["status"], r["change_reason"]) for r in rows] == [
        ("p1-rash1", 7, "assert", "retracted", None),
        ("p1-rash1", 16, "retract", "retracted", "wrong patient"),
        ("p1-crp2", 12, "assert", "superseded", None),
        ("p1-crp2", 15, "correct", "current", "transcription error"),
    ]


def test_history_table_shows_status_and_reason(corrected_store: Path) -> None:
    result = run_cli("events", "P001", "--history", "--store", corrected_store)
    lines = result.stdout.splitlines()
    rash = [ln for ln in lines if "p1-rash1" in ln]
    crp2 = [ln for ln in lines if "p1-crp2" in ln]
    assert "retracted" in rash[0] and "retraction" in rash[1] and "wrong patient" in rash[1]
    assert "superseded" in crp2[0] and "current (correction)" in crp2[1] and "transcription error" in crp2[1]


def test_without_history_only_current_versions_are_shown(corrected_store: Path) -> None:
    rows = versions(corrected_store)
    assert (len(rows), {r["status"] for r in rows}) == (13, {"current"})


def test_a_corrected_event_keeps_its_place_among_the_events_of_its_instant(example_store: Path) -> None:
    before = [r["event_id"] for r in versions(example_store)]
    run_cli(
        "correct",
        "p1-crp1",
        "--set",
        "ref_high=0.6",
        "--reason",
        "lab range",
        *AUTHOR,
        "--store",
        example_store,
    )
    rows = versions(example_store)
    assert [r["event_id"] for r in rows] == before
    crp = next(r for r in rows if r["event_id"] == "p1-crp1")
    assert (crp["seq"], crp["asserted_seq"]) == (15, 5)


def test_the_history_view_lists_an_instant_s_events_in_the_order_of_the_current_view(
    corrected_store: Path,
) -> None:
    # each event's versions one after another, the events as `events` without --history lists them
    history = [r["event_id"] for r in versions(corrected_store, "--history")]
    in_order = list(dict.fromkeys(history))
    assert all(
        history[i] == history[i + 1] for i in range(len(history) - 1) if history[i] in history[i + 1 :]
    )
    current_ids = [r["event_id"] for r in versions(corrected_store)]
    assert [e for e in in_order if e in current_ids] == current_ids


def test_as_known_at_shows_the_record_before_a_correction(corrected_store: Path) -> None:
    before_correction = batch_recorded_at(corrected_store, 1)
    crp = current(corrected_store, "p1-crp2", "--as-known-at", before_correction)
    assert crp is not None and (crp["value"], crp["seq"]) == (4.0, 12)


def test_as_known_at_shows_a_retracted_event_before_its_retraction(corrected_store: Path) -> None:
    before_retraction = batch_recorded_at(corrected_store, 2)
    assert current(corrected_store, "p1-rash1", "--as-known-at", before_retraction) is not None


def test_as_known_at_reports_the_high_water_of_that_moment(corrected_store: Path) -> None:
    result = run_cli(
        "events",
        "P001",
        "--store",
        corrected_store,
        "--json",
        "--as-known-at",
        batch_recorded_at(corrected_store, 2),
    )
    assert json.loads(result.stdout)["high_water"] == 15


def test_as_known_at_a_manifests_high_water_is_the_record_as_it_stood_then(corrected_store: Path) -> None:
    """Helper 46: a manifest's high_water could not be given back to reproduce a run."""
    crp = current(corrected_store, "p1-crp2", "--as-known-at", "seq:14")
    assert crp is not None and (crp["value"], crp["seq"]) == (4.0, 12)
    result = run_cli("state", "P001", "--at", "2008-06-01", "--json", "--store", corrected_store,
                     "--as-known-at", "seq:15")  # fmt: skip
    assert json.loads(result.stdout)["manifest"]["high_water"] == 15


def test_as_known_at_a_seq_inside_a_batch_says_which_to_give(example_store: Path) -> None:
    result = run_cli("events", "P001", "--store", example_store, "--as-known-at", "seq:7")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --as-known-at 'seq:7': seq 7 is inside batch 1 (seqs 1–14), which was written at once: "
        "give seq:14 (with it) or seq:0 (before it)\n",
    )


def test_as_known_at_seq_0_is_before_anything_was_written(corrected_store: Path) -> None:
    assert versions(corrected_store, "--as-known-at", "seq:0") == []


def test_as_known_at_before_anything_was_recorded_shows_nothing(corrected_store: Path) -> None:
    assert versions(corrected_store, "--as-known-at", "2000-01-01") == []


def test_as_known_at_in_iso_basic_form_is_refused(corrected_store: Path) -> None:
    # Python reads 20261205 as that day's first instant; a date here means its end
    result = run_cli("events", "P001", "--store", corrected_store, "--as-known-at", "20261205")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --as-known-at '20261205' is not a date, an ISO date-time or seq:N (a manifest's high_water)\n",
    )


def test_as_known_at_that_is_not_a_moment_exits_2(corrected_store: Path) -> None:
    result = run_cli("events", "P001", "--store", corrected_store, "--as-known-at", "yesterday")
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --as-known-at 'yesterday' is not a date, an ISO date-time or seq:N (a manifest's high_water)\n",
    )


def test_a_birth_date_cannot_be_corrected_to_after_the_patients_first_event(example_store: Path) -> None:
    before = snapshot(example_store)
    result = run_cli(
        "correct", "p1-birth", "--set", "occurred_at=2010-01-01", "--reason", "typo", "--author", "t",
        "--store", example_store,
    )  # fmt: skip
    assert result.exit_code == 6
    assert (
        "correction of p1-birth: field occurred_at: is after the patient's first recorded event (2007-06-01): 2010-01-01"
        in (result.stderr)
    )
    assert snapshot(example_store) == before


# ---- ingesting an event again after its correction or retraction -----------------------------------


def _ingest_rows(store: Path, tmp_path: Path, *rows: str) -> Any:
    src = tmp_path / "again.csv"
    src.write_text(
        "event_id,patient_id,kind,occurred_at,code,value,unit,present\n" + "".join(rows), encoding="utf-8"
    )
    return run_cli("ingest", src, "--store", store, *AUTHOR)


def test_ingesting_a_retracted_event_as_it_was_keeps_it_retracted_and_says_so(
    corrected_store: Path, tmp_path: Path
) -> None:
    result = _ingest_rows(corrected_store, tmp_path, "p1-rash1,P001,finding,2008-01-10,rash,,,true\n")
    assert result.exit_code == 0, result.output
    assert "1 duplicate skipped (1 of retracted events, which stay retracted)" in result.stdout
    assert current(corrected_store, "p1-rash1") is None


def test_the_original_file_keeps_an_event_corrected_then_retracted_retracted(
    corrected_store: Path, tmp_path: Path
) -> None:
    """Helper 38: the file's row is the content the correction replaced, not the retraction's."""
    run_cli("retract", "p1-crp2", "--reason", "wrong patient", *AUTHOR, "--store", corrected_store)
    result = run_cli("ingest", "examples/events.csv", "--store", corrected_store, *AUTHOR)
    assert result.exit_code == 0, result.output
    assert (
        " 0 events added" in result.stdout and "2 of retracted events, which stay retracted" in result.stdout
    )
    assert current(corrected_store, "p1-crp2") is None


def test_an_event_moved_to_another_patient_and_retracted_again_comes_back_with_its_first_content(
    corrected_store: Path, tmp_path: Path
) -> None:
    """Helper 42: "any version" counts from the event's last assertion, so the move back works."""
    _ingest_rows(corrected_store, tmp_path, "p1-rash1,P002,finding,2008-01-10,rash,,,true\n")
    run_cli("retract", "p1-rash1", "--reason", "was P001 after all", *AUTHOR, "--store", corrected_store)
    result = _ingest_rows(corrected_store, tmp_path, "p1-rash1,P001,finding,2008-01-10,rash,,,true\n")
    assert result.exit_code == 0 and "1 event added" in result.stdout
    assert current(corrected_store, "p1-rash1")["patient_id"] == "P001"


def test_the_original_file_is_ingested_again_after_a_death_date_was_corrected(tmp_path: Path) -> None:
    """Helper 42: its first death date, a duplicate not written, was checked as a death."""
    store = tmp_path / "s.duckdb"
    run_cli("init", "--store", store)
    first = tmp_path / "a.csv"
    first.write_text("event_id,patient_id,kind,occurred_at,value,unit,reason\nw1,P1,weight,2015-01-01,20,kg,\n"
                     "d1,P1,death,2016-01-01,,,sepsis\n", encoding="utf-8")  # fmt: skip
    later = tmp_path / "b.csv"
    later.write_text(
        "event_id,patient_id,kind,occurred_at,value,unit\nw2,P1,weight,2016-06-01,21,kg\n", encoding="utf-8"
    )
    assert run_cli("ingest", first, "--store", store, *AUTHOR).exit_code == 0
    run_cli("correct", "d1", "--set", "occurred_at=2017-01-01", "--reason", "year", *AUTHOR, "--store", store)
    assert run_cli("ingest", later, "--store", store, *AUTHOR).exit_code == 0
    result = run_cli("ingest", first, "--store", store, *AUTHOR)
    assert (result.exit_code, "0 events added, 2 duplicates skipped" in result.stdout) == (0, True)


def test_a_retracted_event_asserted_again_with_other_content_is_current_again(
    corrected_store: Path, tmp_path: Path
) -> None:
    """README: patient_id and kind cannot be corrected: retract the event and ingest it again."""
    result = _ingest_rows(corrected_store, tmp_path, "p1-rash1,P002,finding,2008-01-10,rash,,,true\n")
    assert result.exit_code == 0, result.output
    assert "1 event added" in result.stdout
    assert current(corrected_store, "p1-rash1") is None  # no longer P001's
    moved = json.loads(run_cli("events", "P002", "--store", corrected_store, "--json").stdout)["events"]
    assert [e["event_id"] for e in moved] == ["p1-rash1"]


def test_the_original_file_after_an_event_was_asserted_again_adds_nothing(
    corrected_store: Path, tmp_path: Path
) -> None:
    _ingest_rows(corrected_store, tmp_path, "p1-rash1,P002,finding,2008-01-10,rash,,,true\n")
    result = run_cli("ingest", "examples/events.csv", "--store", corrected_store, *AUTHOR)
    assert result.exit_code == 0, result.output
    assert " 0 events added" in result.stdout


def test_ingesting_a_corrected_events_current_content_is_a_duplicate_not_a_conflict(
    corrected_store: Path, tmp_path: Path
) -> None:
    result = _ingest_rows(corrected_store, tmp_path, "p1-crp2,P001,lab,2008-02-10,1988-5,5,mg/L,\n")
    assert result.exit_code == 0, result.output
    assert "0 events added, 1 duplicate skipped" in result.stdout


def test_a_conflict_under_another_patient_advises_a_retraction_not_a_correction(
    corrected_store: Path, tmp_path: Path
) -> None:
    result = _ingest_rows(corrected_store, tmp_path, "p1-crp2,P002,lab,2008-02-10,1988-5,5,mg/L,\n")
    assert result.exit_code == 6
    assert (
        "its patient differs, which a correction cannot change: `timeline retract` it, then ingest the row again"
        in result.stderr
    )


def test_ingesting_an_event_with_content_it_never_had_is_still_a_conflict(
    corrected_store: Path, tmp_path: Path
) -> None:
    result = _ingest_rows(corrected_store, tmp_path, "p1-crp2,P001,lab,2008-02-10,1988-5,6,mg/L,\n")
    assert result.exit_code == 6
    assert (
        "is already in the store (seq 12, corrected at seq 15) with different content: value: stored 5 mg/L, file 6 mg/L"
        in result.stderr
    )


def test_explain_as_known_before_a_correction_says_the_event_was_corrected_after(
    corrected_store: Path,
) -> None:
    """Helper 46: the record as it stood showed the old value without a word of the change."""
    result = run_cli("explain", "P001", "crp_normal", "--at", "2008-02-10", "--json", "--store", corrected_store,
                     "--as-known-at", "seq:14")  # fmt: skip
    (crp,) = [e for e in json.loads(result.stdout)["events"] if e["event_id"] == "p1-crp2"]
    assert crp["remarks"] == ["corrected after this moment (seq 15: transcription error)"]


def test_explain_marks_a_corrected_version_as_such(corrected_store: Path) -> None:
    result = run_cli(
        "explain", "P001", "crp_normal", "--at", "2008-02-10", "--json", "--store", corrected_store
    )
    (crp,) = [e for e in json.loads(result.stdout)["events"] if e["event_id"] == "p1-crp2"]
    assert (crp["version"], crp["remarks"]) == ("correct", ["a corrected version"])


def test_explain_shows_a_retracted_event_the_rule_would_read(corrected_store: Path) -> None:
    """Helper 46: a retracted fever that flips the answer was nowhere in the explanation."""
    result = run_cli(
        "explain", "P001", "rash_free", "--at", "2008-03-01", "--json", "--store", corrected_store
    )
    data = json.loads(result.stdout)
    assert [(e["event_id"], e["remarks"], e["change_reason"]) for e in data["retracted_events"]] == [
        ("p1-rash1", ["retracted (seq 16)"], "wrong patient")
    ]


def test_explain_as_known_before_a_retraction_lists_no_retracted_event(corrected_store: Path) -> None:
    result = run_cli("explain", "P001", "rash_free", "--at", "2008-03-01", "--json", "--store", corrected_store,
                     "--as-known-at", "seq:15")  # fmt: skip
    assert json.loads(result.stdout)["retracted_events"] == []


def test_explain_lists_a_retracted_event_with_who_retracted_it_and_why(corrected_store: Path) -> None:
    """Helper 59: the table's "source" column held the retraction's reason, and its author was not shown."""
    result = run_cli("explain", "P001", "rash_free", "--at", "2008-03-01", "--store", corrected_store)
    assert result.exit_code == 0, result.output
    table = result.stdout.split("retracted events of the kinds read", 1)[1]
    header = next(line for line in table.splitlines() if "seq" in line)
    assert [c.strip() for c in header.strip("┃ ").split("┃")] == [
        "seq", "event id", "occurred", "retracted (UTC)", "event", "retracted by", "reason",
    ]  # fmt: skip
    row = next(line for line in table.splitlines() if "p1-rash1" in line)
    assert [c.strip() for c in row.strip("│ ").split("│")][-2:] == ["Dr. Ruiz", "wrong patient"]


def test_explain_names_who_corrected_a_corrected_version_and_why_as_its_source(corrected_store: Path) -> None:
    result = run_cli("explain", "P001", "crp_normal", "--at", "2008-02-10", "--store", corrected_store)
    assert result.exit_code == 0, result.output
    assert "corrected by Dr. Ruiz: transcription error" in result.stdout


def test_explain_json_gives_a_corrections_reason_apart_from_any_source_file(corrected_store: Path) -> None:
    result = run_cli(
        "explain", "P001", "crp_normal", "--at", "2008-02-10", "--json", "--store", corrected_store
    )
    (crp,) = [e for e in json.loads(result.stdout)["events"] if e["event_id"] == "p1-crp2"]
    assert (crp["source"], crp["source_file"], crp["source_row"], crp["change_reason"], crp["author"]) == (
        None, None, None, "transcription error", "Dr. Ruiz",
    )  # fmt: skip


def test_a_unit_corrected_to_the_one_given_says_the_value_as_given(example_store: Path) -> None:
    """Helper 63: `--set unit=mg/dL` on a CRP given as 0.84 mg/dL (shown as 8.4 mg/L) changes
    nothing; the answer shows the value as given, so the user sees why."""
    result = run_cli(
        "correct", "p1-crp1", "--set", "unit=mg/dL", "--reason", "r", *AUTHOR, "--store", example_store
    )
    assert result.stdout == (
        "p1-crp1 already has these values (value 8.4 mg/dL (stored as 84 mg/L)): nothing written\n"
    )


def test_ingest_reason_is_shown_as_why_an_event_came_back_after_a_retraction(
    example_store: Path, tmp_path: Path
) -> None:
    run_cli("retract", "p1-crp2", "--reason", "wrong patient", "--author", "t", "--store", example_store)
    path = tmp_path / "back.csv"
    path.write_text(
        "event_id,patient_id,kind,occurred_at,code,value,unit\np1-crp2,P001,lab,2008-02-10,1988-5,7,mg/L\n"
    )
    result = run_cli(
        "ingest", path, "--reason", "the right patient after all", "--author", "t", "--store", example_store
    )
    assert result.exit_code == 0, result.output
    history = json.loads(run_cli("events", "P001", "--history", "--json", "--store", example_store).stdout)[
        "events"
    ]
    [current] = [e for e in history if e["event_id"] == "p1-crp2" and e["status"] == "current"]
    assert current["change_reason"] == "the right patient after all"


def test_ingest_reason_is_kept_on_the_batch(example_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("patient_id,kind,occurred_at,code,value,unit\nP001,lab,2009-02-10,1988-5,7,mg/L\n")
    run_cli("ingest", path, "--reason", "late lab report", "--author", "t", "--store", example_store)
    with raw_connection(example_store, read_only=True) as con:
        assert con.execute("SELECT reason FROM batches ORDER BY batch_id DESC LIMIT 1").fetchone() == (
            "late lab report",
        )


def test_an_empty_ingest_reason_is_a_usage_error_writing_nothing(example_store: Path, tmp_path: Path) -> None:
    path = tmp_path / "new.csv"
    path.write_text("patient_id,kind,occurred_at,code,value,unit\nP001,lab,2009-02-10,1988-5,7,mg/L\n")
    before = snapshot(example_store)
    result = run_cli("ingest", path, "--reason", " ", "--author", "t", "--store", example_store)
    assert result.exit_code == 2
    assert "--reason must not be empty" in result.stderr
    assert snapshot(example_store) == before
