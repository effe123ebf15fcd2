"""The ingest benchmark still runs (tiny size, one run): no timing is asserted."""

from __future__ import annotations

import json
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


def test_ingest_profile_gives_each_statements_cpu_and_wall_seconds(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import re

    monkeypatch.setattr(gen, "DATA", tmp_path)
    bench.main(["--quick", "--profile", "--format", "parquet"])
    out = capsys.readouterr().out
    assert re.search(r"profile of run 1 \(\d+\.\d{3} s CPU, \d+\.\d{3} s wall in SQL\)", out)
    assert re.search(r"^ +\d+\.\d{3} +\d+\.\d{3}  INSERT INTO events ", out, re.MULTILINE)


def test_ingest_benchmark_times_a_given_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(gen, "DATA", tmp_path / "data")
    file = gen.generate(700, "parquet", tmp_path / "given.parquet")
    bench.main(["--source", str(file), "--runs", "1", "--rss-events", "0"])
    out = capsys.readouterr().out
    assert "parquet ingest 700 ev" in out
    assert not list((tmp_path / "data").glob("events-*"))  # nothing generated


def test_ingest_benchmark_refuses_a_source_of_another_format(tmp_path: Path) -> None:
    other = tmp_path / "events.jsonl"
    other.write_text("{}\n")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--source", str(other), "--runs", "1", "--rss-events", "0"])
    assert exc.value.code == 2


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
    answers = (
        2 * 3 * len(load_rules().listed())
    )  # 2 patients × 3 points × every rule of the pack (copies read inside)
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


# ---- what the suite reports is true ---------------------------------------------------------


def _suite_result(n: int, figures: list[dict[str, object]], **extra: object) -> dict[str, object]:
    return {
        "size": n, "patients": n, "events": 200 * n, "machine": "m", "figures": figures, "runs": 3,
        "date": "2026-12-05", "measured_at": "2026-12-05T14:00:00+00:00", "commit": "c" * 40, "dirty": False,
        **extra,
    }  # fmt: skip


def _pack(seconds: float, at: str = "2026-12-05T14:00:00+00:00", rules: int = 43) -> dict[str, object]:
    return {
        "figure": "whole sJIA pack, 3 points per patient", "runs": 3, "ours_s": seconds, "anchor": "a",
        "anchor_s": 0.1, "ratio": seconds / 0.1, "goal": "≤ 10×", "rules": rules, "measured_at": at,
        "commit": "c" * 40,
    }  # fmt: skip


def _history(relative_to: str, at: str = "2026-12-05T14:00:00+00:00") -> dict[str, object]:
    return {
        "figure": "history intervals of every patient, whole pack", "runs": 3, "ours_s": 60.0,
        "anchor": "the pack's runs", "anchor_s": 6.0, "ratio": 10.0, "goal": "≤ 3×", "rules": 43,
        "relative_to": relative_to, "measured_at": at, "commit": "c" * 40,
    }  # fmt: skip


def test_suite_marks_a_figure_whose_pack_run_was_replaced() -> None:
    from benchmarks import suite

    later = "2026-12-05T14:00:00+00:00"
    earlier = "2026-12-05T09:00:00+00:00"
    text = suite.render([_suite_result(10, [_pack(5.0, later), _history(earlier, earlier)])])
    row = next(line for line in text.splitlines() if line.startswith("| history"))
    assert f"STALE: its ratio is to the pack run of {earlier}, since replaced" in row
    fresh = suite.render([_suite_result(10, [_pack(5.0, later), _history(later, later)])])
    assert "STALE" not in fresh


def test_suite_marks_a_figure_kept_from_an_earlier_run_of_the_same_day() -> None:
    from benchmarks import suite

    kept = {**_pack(5.0, "2026-12-05T09:00:00+00:00"), "commit": "abcdef1234" + "0" * 30, "dirty": True}
    text = suite.render([_suite_result(10, [kept])])
    assert (
        "| whole sJIA pack, 3 points per patient (measured 2026-12-05T09:00:00+00:00, "
        "commit abcdef123 with uncommitted changes) |"
    ) in text


def test_suite_header_names_a_size_once() -> None:
    from benchmarks import suite

    text = suite.render([_suite_result(1000, [_pack(2.0)])])
    assert "### 1,000 patients (200,000 events" in text


def test_suite_header_says_the_rule_count_of_the_pack() -> None:
    from benchmarks import suite

    text = suite.render([_suite_result(10, [_pack(2.0, rules=43)])])
    assert "the sJIA pack of 43 rules" in text.splitlines()[4]


def test_suite_growth_names_the_rule_count_where_sizes_ran_different_packs() -> None:
    from benchmarks import suite

    text = suite.render([_suite_result(1000, [_pack(2.0, rules=36)]), _suite_result(10_000, [_pack(7.0)])])
    assert "| whole sJIA pack, 3 points per patient | 2.000 (36 rules) | 0.700 (43 rules) |" in text


def test_suite_growth_shows_a_figure_the_smallest_size_lacks() -> None:
    from benchmarks import suite

    results = [
        _suite_result(1000, [_pack(2.0)]),
        _suite_result(10_000, [_pack(7.0), _history("2026-12-05T14:00:00+00:00")]),
        _suite_result(100_000, [_pack(70.0), _history("2026-12-05T14:00:00+00:00")]),
    ]
    assert "| history intervals of every patient, whole pack | – | 6.000 | 0.600 |" in suite.render(results)


def test_suite_counts_a_missing_engine_state_as_a_difference() -> None:
    from benchmarks import suite

    key = ("P1", "2020-01-01", "mas")
    assert suite.answer_differences({key: (None, None, None)}, {}) == [(key, "no engine state")]


def test_suite_compares_the_reason_of_an_unknown_answer() -> None:
    from benchmarks import suite

    key = ("P1", "2020-01-01", "mas")
    same = suite.answer_differences({key: (None, "no ferritin", None)}, {key: (None, "no ferritin", None)})
    assert same == []
    assert (
        suite.answer_differences({key: (None, "no ferritin", None)}, {key: (None, "no platelets", None)})
        != []
    )


def test_suite_compares_the_qualifier_of_a_censored_answer() -> None:
    from benchmarks import suite

    key = ("P1", "2020-01-01", "crp")
    assert suite.answer_differences({key: (5.0, None, "<")}, {key: (5.0, None, "<")}) == []
    assert suite.answer_differences({key: (5.0, None, "<")}, {key: (5.0, None, None)}) == [
        (key, "value: replay <5.0, engine 5.0")
    ]


def test_ingest_benchmark_reports_the_childs_own_peak(tmp_path: Path) -> None:
    """A child's ru_maxrss starts from its parent's high-water mark; the figure must not."""
    file = gen.generate(500, "parquet", tmp_path / "events.parquet")
    ballast = bytearray(700 * 2**20)
    ballast[::4096] = b"\x01" * len(range(0, len(ballast), 4096))  # every page resident
    peak = bench.peak_rss_mib("ours", file, "parquet", tmp_path)
    del ballast
    assert peak is not None and peak < 500, peak


# ---- the suite's exit status and its results file, at a tiny size ---------------------------


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory the suite fills once (20 patients: files and store) for these tests."""
    return tmp_path_factory.mktemp("suite-data")


@pytest.fixture(scope="module")
def saved_run(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """One written run (pack and naive, 2 runs) into a results directory and README of its own."""
    import json

    from benchmarks import suite

    out = tmp_path_factory.mktemp("suite-results")
    readme = out / "README.md"
    readme.write_text("# x\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(suite, "DATA", tiny_data)
        mp.setattr(suite, "RESULTS", out / "results")
        mp.setattr(suite, "README", readme)
        assert suite.main(["--size", "20", "--runs", "2", "--only", "naive", "--sample", "2"]) == 0
    saved: dict[str, object] = json.loads((out / "results" / "suite-20.json").read_text())
    return saved


def _figure(saved: dict[str, object], prefix: str) -> dict[str, object]:
    figures = saved["figures"]
    assert isinstance(figures, list)
    found: dict[str, object] = next(f for f in figures if f["figure"].startswith(prefix))
    return found


def test_suite_results_record_the_commit_each_figure_was_measured_on(saved_run: dict[str, object]) -> None:
    import subprocess

    from benchmarks import suite

    head = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=suite.ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    for prefix in ("naive", "whole sJIA pack"):
        f = _figure(saved_run, prefix)
        assert f["commit"] == head and isinstance(f["dirty"], bool)
        assert "T" in str(f["measured_at"])  # a time, not only a date


def test_suite_reports_the_pack_a_dependent_figure_ran_against(saved_run: dict[str, object]) -> None:
    naive = _figure(saved_run, "naive")
    pack = _figure(saved_run, "whole sJIA pack")  # measured for the naive figure, so reported
    assert naive["relative_to"] == pack["measured_at"] and naive["ours_s"] == pack["ours_s"]


def test_suite_records_the_naive_replay_as_one_run(saved_run: dict[str, object]) -> None:
    assert _figure(saved_run, "naive")["runs"] == 1
    assert _figure(saved_run, "whole sJIA pack")["runs"] == 2


def test_suite_fails_when_the_naive_replay_disagrees_with_the_engine(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from benchmarks import suite
    from timeline.engine.replay import Reference, Val

    monkeypatch.setattr(suite, "DATA", tiny_data)
    monkeypatch.setattr(Reference, "rule", lambda self, rule_id, q: Val(None, "made up"))
    assert suite.main(["--size", "20", "--runs", "1", "--no-write", "--only", "naive", "--sample", "2"]) == 1


def _fake_aces(monkeypatch: pytest.MonkeyPatch, exit_code: int, agree: bool | None) -> list[list[str]]:
    """benchmarks.aces_compare replaced: it exits with ``exit_code`` after writing a result
    whose answers ``agree`` (None: it writes none, as a crash)."""
    import json
    import subprocess

    real = subprocess.run
    calls: list[list[str]] = []

    def run(cmd: list[str], *args: object, **kw: object) -> object:
        if "benchmarks.aces_compare" not in cmd:
            return real(cmd, *args, **kw)  # type: ignore[call-overload]
        calls.append(cmd)
        data = Path(cmd[cmd.index("--data") + 1])
        if agree is not None:
            data.mkdir(parents=True, exist_ok=True)
            side = {"wall": 1.0, "work": 0.5, "rss": 100.0}
            agreement = {"agree": agree}
            (data / "result.json").write_text(json.dumps({
                "median": {"timeline": side, "aces": side}, "ratio": {"wall": 1.0, "work": 1.0, "rss": 1.0},
                "max_rss": {"timeline": 100.0, "aces": 100.0}, "agreements": [agreement], "agreement": agreement,
                "agree": agree,
            }))  # fmt: skip
        return subprocess.CompletedProcess(cmd, exit_code, "", "Traceback: it broke")

    monkeypatch.setattr(subprocess, "run", run)  # the suite runs aces_compare through it
    return calls


def test_suite_fails_when_the_aces_answers_disagree(tiny_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("aces", reason="ACES is in the optional `bench` extra")
    from benchmarks import suite

    monkeypatch.setattr(suite, "DATA", tiny_data)
    calls = _fake_aces(monkeypatch, 1, agree=False)
    assert suite.main(["--size", "20", "--runs", "1", "--no-write", "--only", "aces"]) == 1
    assert calls


def test_suite_stops_when_aces_compare_fails_rather_than_show_an_earlier_result(
    tiny_data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("aces", reason="ACES is in the optional `bench` extra")
    from benchmarks import suite

    monkeypatch.setattr(suite, "DATA", tiny_data)
    _fake_aces(monkeypatch, 0, agree=True)  # an earlier run left its result
    assert suite.main(["--size", "20", "--runs", "1", "--no-write", "--only", "aces"]) == 0
    _fake_aces(monkeypatch, 1, agree=None)  # this one crashes
    with pytest.raises(SystemExit, match="aces_compare failed"):
        suite.main(["--size", "20", "--runs", "1", "--no-write", "--only", "aces"])


def test_suite_rebuilds_data_this_code_would_not_make(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    from benchmarks import suite
    from timeline.synth import synthesize

    monkeypatch.setattr(suite, "DATA", tmp_path)
    (tmp_path / "suite-20").mkdir()
    synthesize(patients=20, seed=2, out=tmp_path / "suite-20" / "events.parquet")  # not the suite's seed
    assert suite.main(["--size", "20", "--runs", "1", "--no-write", "--only", "pack"]) == 0
    with duckdb.connect(str(tmp_path / "suite-20" / "store.duckdb"), read_only=True) as con:
        ids = con.execute("SELECT DISTINCT split_part(patient_id, '-', 1) FROM events").fetchall()
    assert ids == [("S1",)]


def test_hash_encodings_benchmark_times_every_candidate(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import hash_encodings
    from timeline.ingest import ingest_file
    from timeline.store import Store

    with Store.create(tmp_path / "s.duckdb") as store:
        ingest_file(store, gen.generate(300, "parquet", tmp_path / "e.parquet"), author="smoke")
    assert hash_encodings.main(["--store", str(tmp_path / "s.duckdb"), "--runs", "1"]) == 0
    out = capsys.readouterr().out
    for what in ("row_hash", "content_hash"):
        for name in hash_encodings.ENCODINGS:
            assert f"  {what} sha256({name}) " in out
    assert "  write with 32-byte BLOB " in out


def test_hash_encodings_benchmark_measures_the_row_hash_the_store_computes(tmp_path: Path) -> None:
    """Its ``json`` candidate is today's row hash input (for rows without a qualifier)."""
    import duckdb

    from benchmarks import hash_encodings
    from timeline.ingest import ingest_file
    from timeline.store import EVENT_COLUMNS, QUALIFIER, Store

    with Store.create(tmp_path / "s.duckdb") as store:
        ingest_file(store, gen.generate(300, "parquet", tmp_path / "e.parquet"), author="smoke")
    cols = [(c, t.split()[0]) for c, t in EVENT_COLUMNS.items() if c not in ("row_hash", QUALIFIER)]
    con = duckdb.connect(str(tmp_path / "s.duckdb"), read_only=True)
    row = con.execute(
        f"""SELECT count(*), count(*) FILTER (WHERE row_hash = sha256({hash_encodings.enc_json(cols)}))
            FROM events WHERE {QUALIFIER} IS NULL"""
    ).fetchone()
    con.close()
    assert row is not None and row[0] > 0 and row[0] == row[1]


def test_ingest_benchmark_into_a_copy_of_a_store_leaves_the_store_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from timeline.ingest import ingest_file
    from timeline.store import Store

    monkeypatch.setattr(gen, "DATA", tmp_path / "data")
    file = gen.generate(3000, "parquet", tmp_path / "events.parquet")
    with Store.create(tmp_path / "store.duckdb") as store:
        ingest_file(store, file, author="smoke")
    before = (tmp_path / "store.duckdb").read_bytes()
    assert bench.main(["--into", str(tmp_path / "store.duckdb"), "--source", str(file), "--runs", "1"]) == 0
    out = capsys.readouterr().out
    assert "into an empty store, median wall s" in out
    assert "into 3,000 events, median wall s" in out
    assert (tmp_path / "store.duckdb").read_bytes() == before


def test_an_increment_is_new_events_of_the_same_patients_and_some_stored_rows_again(tmp_path: Path) -> None:
    import duckdb

    file = gen.generate(3000, "parquet", tmp_path / "events.parquet")
    rows, repeated = bench.make_increment(
        file, tmp_path / "inc.parquet", per_mille=100, repeated_per_mille=50
    )
    with duckdb.connect() as con:
        src, inc = f"read_parquet('{file}')", f"read_parquet('{tmp_path / 'inc.parquet'}')"
        again = con.execute(
            f"SELECT count(*) FROM (SELECT * FROM {inc} INTERSECT ALL SELECT * FROM {src})"
        ).fetchone()
        strangers = con.execute(
            f"SELECT count(*) FROM {inc} WHERE patient_id NOT IN (SELECT patient_id FROM {src})"
        ).fetchone()
    assert again == (repeated,)
    assert strangers == (0,)
    assert 0 < repeated < rows


def test_ingest_benchmark_into_a_store_needs_the_source_it_was_built_from(tmp_path: Path) -> None:
    (tmp_path / "store.duckdb").write_bytes(b"")
    with pytest.raises(SystemExit) as exc:
        bench.main(["--into", str(tmp_path / "store.duckdb"), "--runs", "1"])
    assert exc.value.code == 2


@pytest.fixture(scope="module")
def history_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from timeline.ingest import ingest_file
    from timeline.store import Store

    tmp = tmp_path_factory.mktemp("history_reasons")
    with Store.create(tmp / "s.duckdb") as store:
        ingest_file(store, gen.generate(3000, "parquet", tmp / "e.parquet"), author="smoke")
    return tmp / "s.duckdb"


def test_history_reasons_full_is_the_engines_history(history_store: Path) -> None:
    from benchmarks import history_reasons
    from timeline.engine.evaluate import Session
    from timeline.store import Store

    figures, log = history_reasons.measure(history_store, "full")
    with Store.open(history_store) as store:
        n = Session(store, load_rules()).histories()
        found = store.con.execute(
            'SELECT bit_xor(hash(rule_id, patient_id, start, "end", b, x, why, qualifier)) FROM tl_history'
        ).fetchone()
    assert found is not None
    assert (figures["intervals"], figures["hash"]) == (n, found[0])
    assert any("tl_history" in sql for _, sql in log)


def test_history_reasons_short_keeps_every_interval_with_other_text(history_store: Path) -> None:
    from benchmarks import history_reasons

    full, _ = history_reasons.measure(history_store, "full")
    short, log = history_reasons.measure(history_store, "short")
    assert short["intervals"] == full["intervals"]
    assert short["hash"] != full["hash"]
    assert not any("no physician_global recorded" in sql for _, sql in log)


def test_history_reasons_none_drops_the_reasons_and_restores_the_compiler(history_store: Path) -> None:
    from benchmarks import history_reasons
    from timeline.engine.compiler import Compiler

    before = Compiler.values_only
    full, _ = history_reasons.measure(history_store, "full")
    none, _ = history_reasons.measure(history_store, "none")
    assert none["intervals"] < full["intervals"]
    assert Compiler.values_only is before
    assert history_reasons.measure(history_store, "full")[0]["hash"] == full["hash"]


def test_history_reasons_of_a_file_that_is_no_store_says_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import history_reasons

    missing = tmp_path / "nothing.duckdb"
    assert history_reasons.main([str(missing)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err
    assert not missing.exists()


def test_rule_costs_of_the_pack_give_every_rule_a_share_adding_up_to_the_statements(
    history_store: Path,
) -> None:
    from benchmarks import rule_costs

    costs = rule_costs.measure(history_store, "pack")
    assert set(costs.shared) == set(load_rules().listed())
    timed = sum(costs.relations.values())
    assert sum(costs.shared.values()) + costs.unowned == pytest.approx(timed)
    # a rule's own relations are part of its share; the shares of relations read by several less
    assert all(costs.own[rid] <= costs.shared[rid] + 1e-9 for rid in costs.shared)
    assert costs.rows > 0 and costs.rows % len(costs.shared) == 0  # every rule at every point


def test_rule_costs_own_is_what_the_relations_one_rule_alone_reads_cost(history_store: Path) -> None:
    from benchmarks import rule_costs

    costs = rule_costs.measure(history_store, "history")
    alone = {n: r[0] for n, r in costs.readers.items() if len(r) == 1}
    for rid, seconds in costs.own.items():
        assert seconds == pytest.approx(sum(costs.relations[n] for n, owner in alone.items() if owner == rid))


def test_rule_costs_writes_its_figures_as_json_and_restores_the_engine(
    history_store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import rule_costs
    from timeline.engine import evaluate

    before = evaluate.staged
    assert (
        rule_costs.main(
            [str(history_store), "--job", "pack", "--top", "3", "--json", str(tmp_path / "c.json")]
        )
        == 0
    )
    assert evaluate.staged is before
    data = json.loads((tmp_path / "c.json").read_text())
    assert data["job"] == "pack" and len(data["shared"]) == len(load_rules().listed())
    assert capsys.readouterr().out.count("\n") == 2 + 3 + 1 + 3


def test_rule_costs_of_a_file_that_is_no_store_says_so_without_a_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from benchmarks import rule_costs

    missing = tmp_path / "nothing.duckdb"
    assert rule_costs.main([str(missing)]) == 3
    err = capsys.readouterr().err
    assert err.startswith("error: ") and str(missing) in err and "Traceback" not in err
