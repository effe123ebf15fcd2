"""`timeline history --all --csv | --parquet OUT`: every patient's intervals, evaluated set-based
in DuckDB (Session.histories), written as `history PATIENT --csv` writes one patient's; and
`history PATIENT --parquet OUT`."""

from __future__ import annotations

import csv
import io
from datetime import datetime
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine_support import write_rule
from tests.support import EXAMPLES, run_cli
from timeline.ingest import append_rows
from timeline.store import Store

# rules of every kind a row can hold: true/false, a number with a unit (and a censored one:
# crp_value, the latest CRP, <5 mg/L for P003), a count without a unit, unknowns with their reasons
RULES = ("crp_normal", "crp_value", "active_joint_count", "fever_free", "anakinra_dose_mg_kg_day")


@pytest.fixture
def crp_rule(tmp_path: Path) -> Path:
    """A rule directory with crp_value: the latest CRP within 30 days (a censored value stays one)."""
    write_rule(
        tmp_path / "rules",
        "crp_value",
        {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}},
    )
    return tmp_path / "rules"


@pytest.fixture
def cohort_store(example_store: Path) -> Path:
    """The example store's P001, and P002 and P003 made of its events with other values (P003's
    last CRP given as <5 mg/L, a censored value)."""
    with open(EXAMPLES / "events.csv", newline="") as f:
        rows = [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]
    more = []
    for patient, crp, joints in (("P002", "31", "7"), ("P003", "<5", "1")):
        for row in rows:
            copy = dict(row, patient_id=patient, event_id=row["event_id"].replace("p1-", f"{patient}-"))
            if row["event_id"] == "p1-crp2":
                copy["value"] = crp
            if row["event_id"] == "p1-je2":
                copy["active_joints"] = joints
            more.append(copy)
    with Store.open(example_store, write=True) as s:
        append_rows(s, more, author="t")
    return example_store


def rows_of(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def test_every_patients_rows_are_those_history_of_that_patient_writes(
    cohort_store: Path, crp_rule: Path
) -> None:
    rules = [w for rid in RULES for w in ("--rule", rid)] + ["--rules", str(crp_rule)]
    every = run_cli("history", "--all", "--csv", *rules, "--store", cohort_store)
    assert every.exit_code == 0, every.stderr
    header, *found = rows_of(every.stdout)
    want: list[list[str]] = []
    for patient in ("P001", "P002", "P003"):
        one = run_cli("history", patient, "--csv", *rules, "--store", cohort_store)
        assert one.exit_code == 0, one.stderr
        one_header, *one_rows = rows_of(one.stdout)
        assert one_header == header
        want += one_rows
    assert found == want
    values = {r[4] for r in found}
    assert {"true", "false", "unknown", "<5"} <= values  # every kind of value, and a number with its unit
    assert ["P002", "crp_value", "31", "mg/L"] in [[r[0], r[1], r[4], r[5]] for r in found]


def test_every_patients_history_keeps_the_rules_in_the_order_they_are_listed(cohort_store: Path) -> None:
    result = run_cli("history", "--all", "--csv", "--store", cohort_store)
    one = run_cli("history", "P002", "--csv", "--store", cohort_store)
    p002 = [r for r in rows_of(result.stdout)[1:] if r[0] == "P002"]
    assert p002 == rows_of(one.stdout)[1:]


def test_every_patients_history_as_known_at_reads_the_record_as_it_was(cohort_store: Path) -> None:
    """P002 and P003 were added by the store's second batch: as known at seq 14 (the example's
    own 14 events), only P001 is there."""
    result = run_cli(
        "history",
        "--all",
        "--csv",
        "--rule",
        "crp_normal",
        "--as-known-at",
        "seq:14",
        "--store",
        cohort_store,
    )
    assert result.exit_code == 0, result.stderr
    assert {r[0] for r in rows_of(result.stdout)[1:]} == {"P001"}


def test_every_patients_history_of_an_empty_store_is_the_header_alone(tmp_path: Path) -> None:
    store = tmp_path / "empty.duckdb"
    assert run_cli("init", "--store", store).exit_code == 0
    result = run_cli("history", "--all", "--csv", "--store", store)
    assert result.exit_code == 0, result.stderr
    assert rows_of(result.stdout) == [["patient_id", "rule", "start", "end", "value", "unit", "reason"]]


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (("--all",), "--all writes CSV or Parquet: give --csv"),
        (("--all", "--json"), "--all writes CSV or Parquet, not JSON: give --csv"),
        (("--all", "--json", "--parquet", "h.parquet"), "--all writes CSV or Parquet, not JSON"),
        (("P001", "--all", "--csv"), "give a PATIENT ('P001') or --all, not both"),
        (("--all", "--csv", "--from", "2008-01-01"), "--from/--to are for one patient's history"),
        (("--all", "--csv", "--to", "2008-01-01"), "--from/--to are for one patient's history"),
        ((), "Missing argument 'PATIENT' (or give --all for every patient)"),
    ],
    ids=["no-csv", "json", "json-and-parquet", "patient-and-all", "from", "to", "neither"],
)
def test_a_history_command_line_that_asks_for_no_one_or_two_things_is_a_usage_error(
    example_store: Path, args: tuple[str, ...], said: str
) -> None:
    result = run_cli("history", *args, "--store", example_store)
    assert result.exit_code == 2
    assert said in result.stderr
    assert "patient_id,rule" not in result.stdout  # no rows (with --json: the error as a document)


def test_every_patients_history_of_an_unknown_rule_names_it(example_store: Path) -> None:
    result = run_cli("history", "--all", "--csv", "--rule", "crp_normall", "--store", example_store)
    assert result.exit_code != 0
    assert "crp_normall" in result.stderr
    assert "Traceback" not in result.stderr


def test_every_patients_rows_reach_standard_output_under_a_progress_bar_on_the_terminal(
    cohort_store: Path, tmp_path: Path
) -> None:
    """On a terminal stderr shows a progress bar; the rows still go to standard output (a file
    here), not through the bar's live display (rich's, which takes standard output over)."""
    import os
    import subprocess
    import sys

    from tests.support import subprocess_env

    out = tmp_path / "every.csv"
    primary, secondary = os.openpty()
    try:
        with out.open("w") as f:
            done = subprocess.run(
                [sys.executable, "-m", "cli.main", "history", "--all", "--csv", "--rule", "crp_normal",
                 "--store", str(cohort_store)],
                stdout=f, stderr=secondary, env=subprocess_env(), timeout=120, check=False,
            )  # fmt: skip
    finally:
        os.close(secondary)
        os.close(primary)
    assert done.returncode == 0
    piped = run_cli("history", "--all", "--csv", "--rule", "crp_normal", "--store", cohort_store)
    assert out.read_bytes().decode() == piped.stdout
    assert {r[0] for r in rows_of(piped.stdout)[1:]} == {"P001", "P002", "P003"}


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1900, 1, 1), max_value=datetime(8999, 12, 31, 23, 59, 59, 999999)))
def test_duckdb_writes_an_intervals_instant_as_str_writes_the_datetime(instant: datetime) -> None:
    """`history --all` has DuckDB write start and end (10M rows for the 10k cohort); the text must
    be what `history PATIENT --csv` writes through str(): microseconds only where there are any."""
    import duckdb

    from cli.engine import _as_str

    con = duckdb.connect()
    found = con.execute(f"SELECT {_as_str('t')} FROM (SELECT ?::TIMESTAMP AS t)", [instant]).fetchone()
    assert found == (str(instant),)


def parquet_rows(path: Path) -> list[list[str]]:
    """A history Parquet file's rows as `history --csv` writes them: its typed value (value_bool
    or value_number, with its qualifier) as text, its unit, the instants through str()."""
    import duckdb

    from cli.engine import _csv_value_text

    out = []
    for pid, rule, start, end, b, x, qualifier, unit, unknown, reason in (
        duckdb.connect().execute("SELECT * FROM read_parquet(?)", [str(path)]).fetchall()
    ):
        value = "unknown" if unknown else b if b is not None else x
        text = _csv_value_text(value, qualifier)[0]
        out.append([pid, rule, str(start), str(end), str(text), unit or "", reason or ""])
    return out


def test_every_patients_parquet_holds_the_rows_history_of_each_patient_writes(
    cohort_store: Path, crp_rule: Path, tmp_path: Path
) -> None:
    rules = [w for rid in RULES for w in ("--rule", rid)] + ["--rules", str(crp_rule)]
    out = tmp_path / "every.parquet"
    every = run_cli("history", "--all", "--parquet", out, *rules, "--store", cohort_store)
    assert every.exit_code == 0, every.stderr
    want = []
    for patient in ("P001", "P002", "P003"):
        want += rows_of(run_cli("history", patient, "--csv", *rules, "--store", cohort_store).stdout)[1:]
    found = parquet_rows(out)
    assert found == want
    assert {"true", "false", "unknown", "<5"} <= {r[4] for r in found}
    assert f"wrote {len(want):,} intervals to {out}" in every.stderr.replace("\n", "")


def test_a_patients_parquet_is_that_patients_rows_of_every_patients_parquet(
    cohort_store: Path, tmp_path: Path
) -> None:
    import duckdb

    every, one = tmp_path / "every.parquet", tmp_path / "p002.parquet"
    assert run_cli("history", "--all", "--parquet", every, "--store", cohort_store).exit_code == 0
    result = run_cli("history", "P002", "--parquet", one, "--store", cohort_store)
    assert result.exit_code == 0, result.stderr
    assert result.stdout == ""  # the file, not the swimlanes
    found = duckdb.sql(f"SELECT * FROM read_parquet('{one}')").fetchall()
    assert found == duckdb.sql(f"SELECT * FROM read_parquet('{every}') WHERE patient_id = 'P002'").fetchall()
    assert len(found) > 1


def test_history_parquet_has_typed_columns(cohort_store: Path, crp_rule: Path, tmp_path: Path) -> None:
    import duckdb

    out = tmp_path / "h.parquet"
    args = ("--rule", "crp_normal", "--rule", "crp_value", "--rules", crp_rule, "--store", cohort_store)
    assert run_cli("history", "--all", "--parquet", out, *args).exit_code == 0
    types = dict(
        duckdb.sql(f"SELECT column_name, column_type FROM (DESCRIBE FROM read_parquet('{out}'))").fetchall()
    )
    assert types == {
        "patient_id": "VARCHAR", "rule": "VARCHAR", "start": "TIMESTAMP", "end": "TIMESTAMP",
        "value_bool": "BOOLEAN", "value_number": "DOUBLE", "qualifier": "VARCHAR", "unit": "VARCHAR",
        "unknown": "BOOLEAN", "reason": "VARCHAR",
    }  # fmt: skip
    censored = duckdb.sql(
        f"SELECT value_number, qualifier, unit FROM read_parquet('{out}') WHERE qualifier IS NOT NULL"
    ).fetchall()
    assert (5.0, "<", "mg/L") in censored
    # a true/false rule's value is value_bool alone; an unknown has neither, and a reason
    assert duckdb.sql(
        f"""SELECT count(*) FROM read_parquet('{out}')
            WHERE (rule = 'crp_normal' AND value_number IS NOT NULL)
               OR (unknown AND (value_bool IS NOT NULL OR value_number IS NOT NULL OR reason IS NULL))"""
    ).fetchall() == [(0,)]


def test_history_parquet_carries_the_manifest_and_the_store_zone(cohort_store: Path, tmp_path: Path) -> None:
    import json

    import duckdb

    out = tmp_path / "h.parquet"
    assert (
        run_cli(
            "history", "--all", "--parquet", out, "--rule", "crp_normal", "--store", cohort_store
        ).exit_code
        == 0
    )
    meta = dict(
        duckdb.sql(f"SELECT key::VARCHAR, decode(value) FROM parquet_kv_metadata('{out}')").fetchall()
    )
    manifest = json.loads(
        run_cli("history", "P001", "--json", "--rule", "crp_normal", "--store", cohort_store).stdout
    )["manifest"]
    assert json.loads(meta["manifest"]) == manifest
    assert meta["timezone"] == "UTC"


def test_history_parquet_of_a_store_in_another_zone_keeps_its_wall_clock_times(tmp_path: Path) -> None:
    store, out = tmp_path / "madrid.duckdb", tmp_path / "h.parquet"
    assert run_cli("init", "--store", store, "--timezone", "Europe/Madrid").exit_code == 0
    assert run_cli("ingest", EXAMPLES / "events.csv", "--store", store).exit_code == 0
    result = run_cli("history", "--all", "--parquet", out, "--store", store)
    assert result.exit_code == 0, result.stderr
    assert parquet_rows(out) == rows_of(run_cli("history", "P001", "--csv", "--store", store).stdout)[1:]


def test_every_patients_history_writes_csv_and_parquet_in_one_run(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.parquet"
    both = run_cli(
        "history", "--all", "--csv", "--parquet", out, "--rule", "fever_free", "--store", cohort_store
    )
    assert both.exit_code == 0, both.stderr
    alone = run_cli("history", "--all", "--csv", "--rule", "fever_free", "--store", cohort_store)
    assert both.stdout == alone.stdout
    assert parquet_rows(out) == rows_of(alone.stdout)[1:]


@pytest.mark.parametrize(
    ("target", "said"),
    [
        ("-", "--parquet -: only --csv can print"),
        (".", "is a directory"),
        ("no/such/h.parquet", "does not exist"),
    ],
    ids=["stdout", "directory", "missing-directory"],
)
def test_a_history_parquet_target_that_cannot_be_written_is_a_usage_error(
    example_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, target: str, said: str
) -> None:
    monkeypatch.chdir(tmp_path)
    for args in (("--all",), ("P001",)):
        result = run_cli("history", *args, "--parquet", target, "--store", example_store)
        assert result.exit_code == 2
        assert said in result.stderr


def test_a_failed_history_parquet_leaves_the_file_that_was_there(example_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "h.parquet"
    out.write_bytes(b"before")
    result = run_cli("history", "--all", "--parquet", out, "--rule", "crp_normall", "--store", example_store)
    assert result.exit_code != 0
    assert "crp_normall" in result.stderr
    assert out.read_bytes() == b"before"
    assert [p.name for p in tmp_path.iterdir() if p.name != "example.duckdb"] == ["h.parquet"]


def test_history_parquet_gives_a_pure_number_no_unit(cohort_store: Path, tmp_path: Path) -> None:
    """A ratio of two CRPs is a pure number (UCUM 1): no unit, as the CSV writes none."""
    crp = {"latest": {"select": {"kind": "lab", "code": "1988-5"}, "within": "30 days"}}
    write_rule(tmp_path / "rules", "crp_ratio", {"div": [crp, crp]})
    out = tmp_path / "h.parquet"
    args = ("--rule", "crp_ratio", "--rules", tmp_path / "rules", "--store", cohort_store)
    assert run_cli("history", "--all", "--parquet", out, *args).exit_code == 0
    found = parquet_rows(out)
    assert ["1", ""] in [r[4:6] for r in found]
    assert found == [
        r for p in ("P001", "P002", "P003") for r in rows_of(run_cli("history", p, "--csv", *args).stdout)[1:]
    ]


def test_every_patients_history_written_batch_by_batch_is_in_patient_order(
    cohort_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One patient a batch (the 10k cohort's are 2,500): each batch is written as it is
    evaluated, CSV rows and Parquet part files, and the whole is in patient order; no part file
    is left beside the output."""
    from timeline.engine import evaluate

    monkeypatch.setattr(evaluate, "HISTORY_BATCH_PATIENTS", 1)
    out = tmp_path / "out" / "h.parquet"
    out.parent.mkdir()
    result = run_cli("history", "--all", "--csv", "--parquet", out, "--store", cohort_store)
    assert result.exit_code == 0, result.stderr
    want = [
        r
        for p in ("P001", "P002", "P003")
        for r in rows_of(run_cli("history", p, "--csv", "--store", cohort_store).stdout)[1:]
    ]
    assert rows_of(result.stdout)[1:] == want
    assert parquet_rows(out) == want
    assert [p.name for p in out.parent.iterdir()] == ["h.parquet"]


def test_every_patients_parquet_goes_to_a_folder_whose_name_has_a_quote(
    cohort_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The part files (one a batch) are read back by a DuckDB query naming them: a quote in the
    folder's name is quoted there."""
    from timeline.engine import evaluate

    monkeypatch.setattr(evaluate, "HISTORY_BATCH_PATIENTS", 2)
    out = tmp_path / "it's here" / "h.parquet"
    out.parent.mkdir()
    result = run_cli("history", "--all", "--parquet", out, "--rule", "crp_normal", "--store", cohort_store)
    assert result.exit_code == 0, result.stderr
    assert {r[0] for r in parquet_rows(out)} == {"P001", "P002", "P003"}
