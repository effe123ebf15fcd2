"""The ACES comparison task on a tiny hand-made dataset with its boundary cases: the timeline
side always; the ACES side too when ACES is installed (the `bench` extra), with the answers
required to agree. No timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import aces_compare as bench
from timeline.ingest import append_rows
from timeline.meds import export_meds
from timeline.store import Store

ANA = {"kind": "medication_start", "drug": "anakinra", "dose": 2, "dose_unit": "mg/kg", "frequency": "daily"}


def temp(pid: str, when: str, value: float, unit: str = "Cel") -> dict[str, object]:
    return {"patient_id": pid, "kind": "body_temperature", "occurred_at": when, "value": value, "unit": unit}


def fever(pid: str, when: str, present: bool = True) -> dict[str, object]:
    return {"patient_id": pid, "kind": "finding", "code": "fever", "occurred_at": when, "present": present}


def start(pid: str, when: str, drug: str = "anakinra") -> dict[str, object]:
    return {**ANA, "patient_id": pid, "occurred_at": when, "drug": drug}


ROWS = [
    # A: fever exactly on day 90 is inside the first window
    start("A", "2009-01-01"), temp("A", "2009-04-01", 38.0),
    # B: fever at the very instant of the first dose is outside it (start exclusive)
    start("B", "2009-01-01"), fever("B", "2009-01-01"),
    # C: fever on day 30, and again exactly on day 120 (inside the second window)
    start("C", "2009-01-01"), fever("C", "2009-01-31"), temp("C", "2009-05-01", 39.5),
    # D: fever on day 30, next one on day 121 (after both windows)
    start("D", "2009-01-01"), fever("D", "2009-01-31"), temp("D", "2009-05-02", 39.5),
    # E: a second anakinra start does not move T; the fever is on day 104 of the first
    start("E", "2009-01-01"), start("E", "2009-03-01"), fever("E", "2009-04-15"),
    # F: 37.9 Cel and a fever looked for and absent are no fever
    start("F", "2009-01-01"), temp("F", "2009-01-10", 37.9), fever("F", "2009-01-11", present=False),
    # G: no anakinra at all (methotrexate only)
    start("G", "2009-01-01", drug="methotrexate"), fever("G", "2009-01-10"),
    # H: date-times: fever at exactly T + 90 days to the minute
    start("H", "2009-01-01T10:00"), temp("H", "2009-04-01T10:00", 38.2),
    # I: 100.4 [degF] converts to exactly 38.0 Cel
    start("I", "2009-01-01"), temp("I", "2009-01-11", 100.4, "[degF]"),
    # J: fever before the first dose does not count
    fever("J", "2008-12-31"), start("J", "2009-01-01"),
]  # fmt: skip
EXPECTED_TRUE = {"A", "D", "H", "I"}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("aces-smoke") / "store.duckdb"
    with Store.create(path) as s:
        append_rows(s, ROWS, author="smoke")
    return path


def test_timeline_side(tiny: Path) -> None:
    answers = bench.timeline_answers(tiny)
    assert {a["patient_id"]: a["value"] for a in answers} == {p: p in EXPECTED_TRUE for p in "ABCDEFHIJ"}
    assert {a["patient_id"]: a["trigger"][:16] for a in answers}["H"] == "2009-01-01T10:00"


def test_aces_side_agrees(tiny: Path, tmp_path: Path) -> None:
    pytest.importorskip("aces", reason="ACES is in the optional `bench` extra")
    with Store.open(tiny) as s:
        export_meds(s, tmp_path / "meds")
    task = tmp_path / "task.yaml"
    task.write_text(bench.ACES_TASK)
    theirs = bench.aces_answers(tmp_path / "meds", task)
    agreement = bench.compare(bench.timeline_answers(tiny), theirs, bench.subject_map(tmp_path / "meds"))
    assert agreement["agree"], agreement
    assert agreement["returned_aces"] == len(EXPECTED_TRUE)


def test_aces_compare_checks_the_answers_of_every_run(tmp_path: Path) -> None:
    """Run 1's answers disagree, run 2's agree: the comparison is not the last run's alone."""
    import json

    def run(argv: list[str]) -> tuple[float, float, dict[str, object]]:
        out = Path(argv[argv.index("--out") + 1])
        calls.append(argv[1])
        if argv[1] == "timeline":
            answers: list[dict[str, object]] = [
                {"patient_id": "A", "trigger": "2009-01-01T00:00:00", "value": True}
            ]
        else:  # ACES finds patient A only in its second run
            answers = (
                [{"subject_id": 0, "trigger": "2009-01-01T00:00:00"}] if calls.count("aces") == 2 else []
            )
        out.write_text(json.dumps(answers))
        return 1.0, 100.0, {"seconds": 0.5}

    calls: list[str] = []
    sides = {"timeline": ["--child", "timeline"], "aces": ["--child", "aces"]}
    result = bench.measure_runs(sides, 2, tmp_path, {0: "A"}, run=run)
    assert [a["agree"] for a in result["agreements"]] == [False, True]
    assert result["agree"] is False and result["agreement"]["only_timeline"] == ["A"]


def test_aces_compare_rebuilds_data_it_did_not_prepare_itself(tmp_path: Path) -> None:
    import json

    first = bench.prepare(2, tmp_path / "data")  # 2 patients of benchmarks.gen: 400 events
    info = tmp_path / "data" / "prepared.json"
    stale = {k: v for k, v in json.loads(info.read_text()).items() if k != "version"}
    info.write_text(json.dumps({**stale, "events": 1}))  # as written by code that did not say what it made
    again = bench.prepare(2, tmp_path / "data")
    assert again["events"] == first["events"] == 400
