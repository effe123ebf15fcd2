"""The ingest benchmark still runs (tiny size, one run): no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import gen
from benchmarks import ingest as bench
from timeline.language.loader import load_rules


def test_generated_file_ingests_cleanly(tmp_path: Path) -> None:
    from timeline.ingest import ingest_file
    from timeline.integrity import verify
    from timeline.store import Store

    for fmt in ("csv", "parquet"):
        file = gen.generate(500, fmt, tmp_path / f"events.{fmt}")
        with Store.create(tmp_path / f"{fmt}.duckdb") as store:
            result = ingest_file(store, file, author="smoke")
            assert result.added == 500
            assert verify(store).ok


def test_ingest_benchmark_quick(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gen, "DATA", tmp_path)
    assert bench.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for fmt in ("csv", "parquet"):
        assert f"{fmt} ingest 2,000 ev" in out
        assert f"{fmt} 2,000 ev peak RSS, MiB" in out
    assert "ratio" in out and "machine:" in out


def test_suite_runs_every_engine_figure_at_a_tiny_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import suite

    monkeypatch.setattr(suite, "DATA", tmp_path)
    argv = [
        "--size",
        "20",
        "--runs",
        "1",
        "--no-write",
        "--only",
        "ingest,pack,history,cohort,naive",
        "--sample",
        "2",
    ]
    assert suite.main(argv) == 0
    out = capsys.readouterr().out
    for figure in (
        "ingest (parquet)",
        "ingest (csv)",
        "whole sJIA pack",
        "history intervals",
        "`timeline cohort run`",
        "naive per-patient",
    ):
        assert f"| {figure}" in out
    answers = 2 * 3 * len(load_rules().rules)  # 2 patients × 3 points × every rule of the pack
    assert f"0 of {answers} answers differ" in out  # engine = replay


def test_suite_readme_section_shows_growth_between_sizes() -> None:
    from benchmarks import suite

    def result(n: int, seconds: float) -> dict[str, object]:
        figure = {
            "figure": "whole sJIA pack",
            "ours_s": seconds,
            "anchor": "a",
            "anchor_s": 1.0,
            "ratio": seconds,
            "goal": "≤ 10×",
        }
        return {
            "size": n,
            "patients": n,
            "events": 200 * n,
            "runs": 3,
            "date": "2026-11-24",
            "machine": "m",
            "figures": [figure],
        }

    text = suite.render([result(100_000, 40.0), result(10_000, 5.0)])
    assert text.index("### 10k patients") < text.index("### 100k patients")
    assert "| whole sJIA pack | 0.500 | 0.400 |" in text  # seconds per 1,000 patients at each size


def test_suite_readme_marks_a_figure_kept_from_an_earlier_run() -> None:
    from benchmarks import suite

    kept = {"figure": "ingest (csv)", "ours_s": 9.0, "anchor": "a", "goal": "≤ 3×", "measured": "2026-11-25"}
    kept["measured_on"] = "AMD EPYC"
    fresh = {
        "figure": "whole sJIA pack",
        "ours_s": 5.0,
        "anchor": "a",
        "goal": "≤ 10×",
        "measured": "2026-12-04",
    }
    res = {"size": 10, "patients": 10, "events": 2000, "runs": 3, "date": "2026-12-04", "machine": "m"}
    text = suite.render([{**res, "figures": [kept, fresh]}])
    assert "| ingest (csv) (measured 2026-11-25 on AMD EPYC) |" in text
    assert "| whole sJIA pack |" in text


def test_suite_rejects_an_unknown_size() -> None:
    from benchmarks import suite

    with pytest.raises(SystemExit, match="give 10k, 100k, 1M or a number of patients"):
        suite.size_of("huge")


def test_suite_builds_a_large_store_in_parts_in_patient_order(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from benchmarks import suite
    from timeline.synth import synthesize

    synthesize(patients=12, seed=3, out=tmp_path / "events.parquet")
    monkeypatch.setattr(suite, "PART_PATIENTS", 5)  # 12 patients: parts of 5, 5 and 2
    logged: list[str] = []
    suite.build_store(tmp_path / "events.parquet", tmp_path / "store.duckdb", logged.append)
    assert [line.split(",")[0] for line in logged] == [
        f"building the store: part {i} of 3" for i in (1, 2, 3)
    ]
    with duckdb.connect(str(tmp_path / "store.duckdb"), read_only=True) as con:
        stored = con.execute("SELECT patient_id, event_id FROM events ORDER BY seq").fetchall()
        given = con.execute(
            f"SELECT patient_id, event_id FROM read_parquet('{tmp_path / 'events.parquet'}')"
        ).fetchall()
    assert sorted(stored) == sorted(given)
    assert [p for p, _ in stored] == sorted(p for p, _ in stored)
    assert not (tmp_path / "part.parquet").exists()
