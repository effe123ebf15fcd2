"""`timeline changes`: what the record learned between two moments, across patients — every
correction, retraction and re-assertion with who, when, why and the fields that changed — and
`--batches`, the batches written with each ingested file's name and SHA-256."""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from tests.support import EXAMPLE_CSV, run_cli

AUTHOR = ("--author", "Dr. Ruiz")


@pytest.fixture
def changed_store(example_store: Path) -> Path:
    """The example store (seqs 1-14), then p1-crp2 corrected (seq 15: 4 → 5 mg/L) and p1-rash1
    retracted (seq 16)."""
    for args in (
        ("correct", "p1-crp2", "--set", "value=5", "--reason", "transcription error"),
        ("retract", "p1-rash1", "--reason", "wrong patient"),
    ):
        assert run_cli(*args, *AUTHOR, "--store", example_store).exit_code == 0
    return example_store


def changes_json(store: Path, *args: str) -> list[dict[str, Any]]:
    result = run_cli("changes", "--store", store, "--json", *args)
    assert result.exit_code == 0, result.output
    found: list[dict[str, Any]] = json.loads(result.stdout)["changes"]
    return found


def test_changes_lists_corrections_and_retractions_in_seq_order(changed_store: Path) -> None:
    assert [(c["seq"], c["op"], c["event_id"]) for c in changes_json(changed_store)] == [
        (15, "correct", "p1-crp2"),
        (16, "retract", "p1-rash1"),
    ]


def test_changes_of_a_store_never_changed_is_empty(example_store: Path) -> None:
    assert changes_json(example_store) == []


def test_a_correction_names_each_field_that_changed_before_and_after(changed_store: Path) -> None:
    [correction] = changes_json(changed_store, "--until", "seq:15")
    assert correction["fields"] == [{"field": "value", "before": 4.0, "after": 5.0}]


def test_a_change_carries_who_why_and_the_version_it_followed(changed_store: Path) -> None:
    [correction] = changes_json(changed_store, "--until", "seq:15")
    assert (
        correction["author"],
        correction["reason"],
        correction["previous_seq"],
        correction["batch_id"],
    ) == (
        "Dr. Ruiz",
        "transcription error",
        12,  # p1-crp2, the 12th row of examples/events.csv
        2,
    )


def test_a_retraction_describes_the_event_it_withdrew(changed_store: Path) -> None:
    [retraction] = changes_json(changed_store, "--since", "seq:15")
    assert (retraction["event"], retraction["fields"], retraction["patient_id"]) == (
        "rash present",
        [],
        "P001",
    )


def test_since_a_reports_high_water_lists_only_what_came_after(changed_store: Path) -> None:
    assert [c["seq"] for c in changes_json(changed_store, "--since", "seq:15")] == [16]


def test_since_a_time_lists_what_was_recorded_after_it(changed_store: Path) -> None:
    assert [c["seq"] for c in changes_json(changed_store, "--since", "2000-01-01")] == [15, 16]


def test_changes_json_gives_the_seqs_it_read_between(changed_store: Path) -> None:
    data = json.loads(run_cli("changes", "--since", "seq:14", "--store", changed_store, "--json").stdout)
    assert (data["since_seq"], data["until_seq"], data["manifest"]["high_water"]) == (14, 16, 16)


def test_patient_option_keeps_that_patients_changes_only(changed_store: Path) -> None:
    assert changes_json(changed_store, "--patient", "P999") == []


def test_an_event_ingested_again_after_its_retraction_is_a_reassertion(
    changed_store: Path, tmp_path: Path
) -> None:
    again = tmp_path / "again.csv"
    again.write_text(
        "event_id,patient_id,kind,occurred_at,present,code\np1-rash1,P001,finding,2008-01-10,false,rash\n"
    )
    assert run_cli("ingest", again, *AUTHOR, "--store", changed_store).exit_code == 0
    [back] = changes_json(changed_store, "--since", "seq:16")
    assert (back["op"], back["fields"]) == (
        "reassert",
        [{"field": "present", "before": True, "after": False}],
    )


def test_since_after_until_is_a_usage_error(changed_store: Path) -> None:
    result = run_cli("changes", "--since", "seq:16", "--until", "seq:15", "--store", changed_store)
    assert (result.exit_code, result.stderr) == (
        2,
        "error: --since seq:16 (seq 16) is after --until seq:15 (seq 15)\n",
    )


def test_since_inside_a_batch_is_refused_with_advice(changed_store: Path) -> None:
    result = run_cli("changes", "--since", "seq:3", "--store", changed_store)
    assert result.exit_code == 2 and "seq 3 is inside batch 1" in result.stderr


def test_changes_text_shows_each_change_before_and_after(changed_store: Path) -> None:
    out = run_cli("changes", "--store", changed_store).stdout
    assert "2 changes after seq 0 up to seq 16" in out and "value: 4 → 5" in out and "retracted" in out


def test_changes_csv_has_one_line_a_changed_field(changed_store: Path) -> None:
    result = run_cli("changes", "--csv", "--store", changed_store)
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    assert [(r["seq"], r["op"], r["field"], r["before"], r["after"]) for r in rows] == [
        ("15", "correct", "value", "4", "5"),
        ("16", "retract", "", "", ""),
    ]


def test_csv_and_json_together_are_a_usage_error(changed_store: Path) -> None:
    assert run_cli("changes", "--csv", "--json", "--store", changed_store).exit_code == 2


def test_batches_lists_the_ingested_file_with_its_sha256(changed_store: Path) -> None:
    result = run_cli("changes", "--batches", "--store", changed_store, "--json")
    first = json.loads(result.stdout)["batches"][0]
    assert (first["op"], first["source_file"], first["source_sha256"], first["events"]) == (
        "ingest",
        str(EXAMPLE_CSV),
        hashlib.sha256(EXAMPLE_CSV.read_bytes()).hexdigest(),
        14,
    )


def test_batches_lists_corrections_and_retractions_with_their_reasons(changed_store: Path) -> None:
    result = run_cli("changes", "--batches", "--since", "seq:14", "--store", changed_store, "--json")
    assert [(b["op"], b["reason"], b["source_sha256"]) for b in json.loads(result.stdout)["batches"]] == [
        ("correct", "transcription error", None),
        ("retract", "wrong patient", None),
    ]


def test_batches_text_shows_the_whole_sha256(changed_store: Path) -> None:
    out = run_cli("changes", "--batches", "--store", changed_store).stdout
    assert hashlib.sha256(EXAMPLE_CSV.read_bytes()).hexdigest() in out


def test_batches_csv_has_a_line_a_batch(changed_store: Path) -> None:
    rows = list(
        csv.DictReader(io.StringIO(run_cli("changes", "--batches", "--csv", "--store", changed_store).stdout))
    )
    assert [(r["batch_id"], r["op"]) for r in rows] == [("1", "ingest"), ("2", "correct"), ("3", "retract")]


def test_the_changes_of_two_adjacent_spans_are_those_of_the_whole(changed_store: Path) -> None:
    whole = changes_json(changed_store, "--since", "seq:14")
    parts = changes_json(changed_store, "--since", "seq:14", "--until", "seq:15") + changes_json(
        changed_store, "--since", "seq:15"
    )
    assert parts == whole and len(whole) == 2


def test_changes_csv_keeps_the_digits_a_corrected_value_has(example_store: Path) -> None:
    # `:g` wrote 6 significant digits: 4 → 5.1234567 read "4 → 5.12346"
    run_cli("correct", "p1-crp2", "--set", "value=5.1234567", "--reason", "more digits", "--author", "t",
            "--store", example_store)  # fmt: skip
    result = run_cli("changes", "--csv", "--store", example_store)
    assert [(r["before"], r["after"]) for r in csv.DictReader(io.StringIO(result.stdout))] == [
        ("4", "5.1234567")
    ]


def test_changes_to_a_pipe_is_the_table_rich_writes_laid_out_without_it(
    changed_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cli import plain

    written = run_cli("changes", "--store", changed_store)
    monkeypatch.setattr(plain, "plain_output", lambda: False)
    assert (written.exit_code, written.stdout) == (0, run_cli("changes", "--store", changed_store).stdout)
    assert "transcription error" in written.stdout
