"""MEDS export and import: round trip, as-known-at, schema, shard bounds, bad input.

The Valencia example carries corrections (a unit, joint counts, a weight, a dose) and a
retraction in the Europe/Madrid time zone; the generated benchmark file carries date-times
with offsets, seconds and every unit the ingest converts.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import duckdb
import pytest

from benchmarks import gen
from tests.support import run_cli, snapshot
from timeline import meds
from timeline.errors import IngestError, UsageError
from timeline.ingest import correct, ingest_file
from timeline.meds import ARROW_SCHEMA, DATA_COLUMNS, export_meds, subject_id_sql
from timeline.store import EVENT_COLUMNS, Store

VALENCIA = Path(__file__).resolve().parent.parent / "examples" / "valencia"
# How and when an event reached a store, not what it says (a round trip appends new batches).
NOT_CONTENT = {
    "seq", "batch_id", "op", "recorded_at", "author", "source_file", "source_row", "change_reason",
    "row_hash", "content_hash",
}  # fmt: skip
CONTENT = [c for c in EVENT_COLUMNS if c not in NOT_CONTENT]


def current(store: Store, as_known_at: Any = None) -> list[tuple[Any, ...]]:
    hw = store.high_water(as_known_at)
    return store.con.execute(
        f"SELECT {', '.join(CONTENT)} FROM ({store.current_sql(hw)}) ORDER BY event_id"
    ).fetchall()


@pytest.fixture(scope="module")
def valencia(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """The Valencia store (amended) and the moment before its amendments."""
    spec = importlib.util.spec_from_file_location("valencia_load_for_meds", VALENCIA / "load.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    path: Path = tmp_path_factory.mktemp("valencia-meds") / "valencia.duckdb"
    loaded = module.load(path)
    return path, loaded.ingested_at


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store of 6,000 generated events (30 patients): offsets, seconds, unit conversions."""
    base = tmp_path_factory.mktemp("generated-meds")
    file = gen.generate(6000, "parquet", base / "events.parquet")
    path = base / "generated.duckdb"
    with Store.create(path) as s:
        ingest_file(s, file, author="gen")
    return path


def round_trip(src: Path, out: Path, tz: str, **kw: Any) -> tuple[list[Any], list[Any]]:
    with Store.open(src) as s:
        export_meds(s, out, **kw)
        before = current(s, kw.get("as_known_at"))
    with Store.create(out.parent / (out.name + ".duckdb"), timezone=tz) as d:
        result = ingest_file(d, out, author="meds import")
        assert result.added == len(before)
        after = current(d)
    return before, after


def test_an_export_ingested_into_a_store_of_another_time_zone_is_noted(
    valencia: tuple[Path, Any], tmp_path: Path
) -> None:
    """Helper 44: a Europe/Madrid dataset went into a UTC store without a word."""
    with Store.open(valencia[0]) as s:
        export_meds(s, tmp_path / "meds")
    with Store.create(tmp_path / "utc.duckdb") as d:
        notes = ingest_file(d, tmp_path / "meds", author="t").notes
    assert notes == [
        "meds's times are wall-clock times in Europe/Madrid (its dataset.json); this store's time zone "
        "is UTC: they are stored as written. Ingest into a store made with `timeline init --timezone "
        "Europe/Madrid` to keep the source's instants (docs/meds.md)"
    ]


def test_an_export_ingested_into_a_store_of_its_time_zone_has_no_note(
    valencia: tuple[Path, Any], tmp_path: Path
) -> None:
    with Store.open(valencia[0]) as s:
        export_meds(s, tmp_path / "meds")
    with Store.create(tmp_path / "madrid.duckdb", timezone="Europe/Madrid") as d:
        assert ingest_file(d, tmp_path / "meds", author="t").notes == []


def test_round_trip_restores_the_current_timeline(valencia: tuple[Path, Any], tmp_path: Path) -> None:
    before, after = round_trip(valencia[0], tmp_path / "meds", "Europe/Madrid")
    assert after == before
    data = duckdb.sql(f"SELECT * FROM read_parquet('{tmp_path}/meds/data/*.parquet')").fetchall()
    ids = {r[5] for r in data}
    with Store.open(valencia[0]) as s:
        retracted = [
            r[0] for r in s.con.execute("SELECT event_id FROM events WHERE op = 'retract'").fetchall()
        ]
        corrected = s.current_version("V16-0071")
    assert retracted and not set(retracted) & ids  # retractions are absent
    # the corrected CRP (3.2 mg/L, not 3.2 mg/dL = 32 mg/L) is what the export says
    crp = [r for r in data if r[5] == "V16-0071"]
    assert [(r[2], r[3]) for r in crp] == [("LAB//1988-5//mg/L", pytest.approx(3.2))]
    assert json.loads(crp[0][6])["unit"] == "mg/L" == corrected["orig_unit"]


def test_round_trip_of_offsets_seconds_and_converted_units(generated: Path, tmp_path: Path) -> None:
    before, after = round_trip(generated, tmp_path / "meds", "UTC", shard_rows=1500)
    assert after == before
    hashes = "SELECT event_id, content_hash FROM events ORDER BY 1"
    with Store.open(generated) as a, Store.open(tmp_path / "meds.duckdb") as b:
        # helper 47 #9: docs/meds.md said times given with an offset (the generated file has
        # them) changed the hash; they do not
        assert a.con.execute(hashes).fetchall() == b.con.execute(hashes).fetchall()
    # ingesting the same dataset again adds nothing
    with Store.open(tmp_path / "meds.duckdb", write=True) as d:
        again = ingest_file(d, tmp_path / "meds", author="meds import")
    assert (again.added, again.duplicates) == (0, 6000)


def test_cli_export_and_ingest(example_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "meds"
    result = run_cli("export", "--store", example_store, "--format", "meds", out, "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["events"], payload["subjects"], payload["rows"]) == (14, 1, 18)
    assert run_cli("init", "--store", tmp_path / "new.duckdb").exit_code == 0
    result = run_cli("ingest", "--store", tmp_path / "new.duckdb", out)
    assert result.exit_code == 0, result.output
    assert "14 events added" in result.stdout
    with Store.open(example_store) as a, Store.open(tmp_path / "new.duckdb") as b:
        assert current(a) == current(b)
    # an existing, non-empty directory is never overwritten
    again = run_cli("export", "--store", example_store, "--format", "meds", out)
    assert again.exit_code == 2 and "not overwriting" in again.stderr
    assert run_cli("export", "--store", example_store, "--format", "csv", tmp_path / "x").exit_code == 2


def test_a_corrected_event_keeps_its_place_among_the_rows_of_its_time(
    example_store: Path, tmp_path: Path
) -> None:
    def exported_ids(out: Path) -> list[str]:
        with Store.open(example_store) as s:
            export_meds(s, out)
        return [
            r[0] for r in duckdb.sql(f"SELECT event_id FROM read_parquet('{out}/data/*.parquet')").fetchall()
        ]

    before = exported_ids(tmp_path / "before")
    with Store.open(example_store, write=True) as s:
        correct(s, "p1-crp1", {"ref_high": "0.6"}, reason="lab range", author="tests")
    assert exported_ids(tmp_path / "after") == before


def test_as_known_at_export(valencia: tuple[Path, Any], tmp_path: Path) -> None:
    path, ingested_at = valencia
    before, after = round_trip(path, tmp_path / "then", "Europe/Madrid", as_known_at=ingested_at)
    assert after == before
    with Store.open(path) as s:
        assert before == current(s, ingested_at) != current(s)
    meta = json.loads((tmp_path / "then" / "metadata" / "dataset.json").read_text())
    assert meta["timeline"]["as_known_at"] == ingested_at.isoformat() + "Z"
    # before the amendments the CRP still had its wrong unit: 3.2 mg/dL = 32 mg/L
    row = duckdb.sql(
        f"SELECT code, numeric_value FROM read_parquet('{tmp_path}/then/data/*.parquet') WHERE event_id = 'V16-0071'"
    ).fetchall()
    assert row == [("LAB//1988-5//mg/L", pytest.approx(32.0))]


def test_output_schema(example_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "meds"
    with Store.open(example_store) as s:
        export_meds(s, out)
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == [
        "data/0.parquet",
        "metadata/codes.parquet",
        "metadata/dataset.json",
        "metadata/subject_ids.parquet",
        "metadata/subject_splits.parquet",
    ]
    con = duckdb.connect()
    shard = str(out / "data" / "0.parquet")
    described = con.execute(f"DESCRIBE SELECT * FROM read_parquet('{shard}')").fetchall()
    assert [(r[0], r[1]) for r in described] == list(DATA_COLUMNS.items())
    physical = {
        r[0]: (r[1], r[2])
        for r in con.execute(
            f"SELECT name, type, logical_type FROM parquet_schema('{shard}') WHERE name <> 'duckdb_schema'"
        ).fetchall()
    }
    assert physical["subject_id"][0] == "INT64"
    assert physical["time"][0] == "INT64" and "MICROS" in str(physical["time"][1])
    assert physical["numeric_value"][0] == "FLOAT"
    kv = dict(
        con.execute(f"SELECT key::VARCHAR, value::VARCHAR FROM parquet_kv_metadata('{shard}')").fetchall()
    )
    assert kv["ARROW:schema"] == ARROW_SCHEMA
    meta = json.loads((out / "metadata" / "dataset.json").read_text())
    assert meta["meds_version"].startswith("0.4")
    assert meta["raw_source_id_columns"] == ["event_id"]
    codes = dict(con.execute(f"SELECT code, description FROM '{out}/metadata/codes.parquet'").fetchall())
    assert set(codes) == {r[0] for r in con.execute(f"SELECT DISTINCT code FROM '{shard}'").fetchall()}
    assert codes["LAB//1988-5//mg/L"] == "CRP (LOINC 1988-5) in mg/L"
    # static rows (time null) first, then by time
    rows = con.execute(f"SELECT time, code FROM '{shard}'").fetchall()
    assert rows[0] == (None, "SEX//female")
    assert [r[0] for r in rows[1:]] == sorted(r[0] for r in rows[1:])
    assert {r[1] for r in rows} >= {"MEDS_BIRTH", "DIAGNOSIS//sJIA", "MEDICATION_START//anakinra//mg"}


def test_output_validates_against_the_meds_package(example_store: Path, tmp_path: Path) -> None:
    meds = pytest.importorskip("meds")
    pq = pytest.importorskip("pyarrow.parquet")
    out = tmp_path / "meds"
    with Store.open(example_store) as s:
        export_meds(s, out)
    meds.DataSchema.validate(pq.read_table(out / "data" / "0.parquet"))
    meds.CodeMetadataSchema.validate(pq.read_table(out / "metadata" / "codes.parquet"))
    meds.SubjectSplitSchema.validate(pq.read_table(out / "metadata" / "subject_splits.parquet"))
    meds.DatasetMetadataSchema.validate(json.loads((out / "metadata" / "dataset.json").read_text()))


def test_shards_are_bounded_and_keep_each_subject_whole(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "meds"
    with Store.open(generated) as s:
        result = export_meds(s, out, shard_rows=1000)
    con = duckdb.connect()
    files = sorted((out / "data").glob("*.parquet"), key=lambda p: int(p.stem))
    assert len(files) == len(result.shards) > 4
    largest = con.execute(
        f"SELECT max(n) FROM (SELECT count(*) AS n FROM read_parquet('{out}/data/*.parquet') GROUP BY subject_id)"
    ).fetchone()
    assert largest is not None
    seen: set[int] = set()
    total = 0
    for f in files:
        rows = con.execute(f"SELECT subject_id, time FROM '{f}'").fetchall()
        total += len(rows)
        assert len(rows) < 1000 + largest[0]  # the limit plus at most the rest of one subject
        subjects = {r[0] for r in rows}
        assert not subjects & seen  # a subject is in one shard only
        seen |= subjects
        # each subject's rows contiguous, sorted by time with static rows first
        key = [(r[0], r[1] is not None, r[1]) for r in rows]
        firsts = [i for i in range(len(rows)) if i == 0 or rows[i][0] != rows[i - 1][0]]
        assert len(firsts) == len(subjects)
        for i in range(1, len(key)):
            if key[i][0] == key[i - 1][0]:
                assert key[i][1:] >= key[i - 1][1:] if key[i][1] == key[i - 1][1] else key[i][1]
    assert total == result.rows


def test_subject_ids_are_stable_and_map_back(generated: Path, tmp_path: Path) -> None:
    with Store.open(generated) as s:
        export_meds(s, tmp_path / "a")
        export_meds(s, tmp_path / "b", shard_rows=777)
        patients = [r[0] for r in s.con.execute("SELECT DISTINCT patient_id FROM events").fetchall()]
    con = duckdb.connect()
    a = con.execute(f"SELECT * FROM '{tmp_path}/a/metadata/subject_ids.parquet' ORDER BY 1").fetchall()
    b = con.execute(f"SELECT * FROM '{tmp_path}/b/metadata/subject_ids.parquet' ORDER BY 1").fetchall()
    assert a == b and len(a) == len(patients)
    expected = {p: con.execute(f"SELECT {subject_id_sql('?')}", [p]).fetchone() for p in patients}
    assert {pid: (sid,) for sid, pid in a} == expected


# ---- bad input -----------------------------------------------------------------------


@pytest.fixture
def exported(example_store: Path, tmp_path: Path) -> Path:
    out = tmp_path / "meds"
    with Store.open(example_store) as s:
        export_meds(s, out)
    return out


def rewrite(out: Path, select: str) -> None:
    """Replace data/0.parquet by ``select`` over its rows (table ``d``)."""
    shard = out / "data" / "0.parquet"
    tmp = out / "new.parquet"
    duckdb.sql(f"COPY (WITH d AS (SELECT * FROM '{shard}') {select}) TO '{tmp}' (FORMAT parquet)")
    tmp.replace(shard)


def reject(tmp_path: Path, source: Path, *fragments: str) -> str:
    """Ingest ``source`` through the CLI into a store with one batch; assert exit 6 with
    the fragments in the message and the store unchanged."""
    store = tmp_path / "target.duckdb"
    if not store.exists():
        with Store.create(store) as s:
            ingest_file(s, Path(__file__).resolve().parent.parent / "examples" / "events.csv", author="x")
    before = snapshot(store)
    result = run_cli("ingest", "--store", store, "--format", "meds", source)
    assert result.exit_code == 6, result.output
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr
    assert snapshot(store) == before
    return result.stderr


def test_not_a_meds_directory(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    reject(tmp_path, tmp_path / "empty", "no MEDS data files: expected data/*.parquet")
    (tmp_path / "file.parquet").write_bytes(b"PAR1")
    reject(tmp_path, tmp_path / "file.parquet", "a MEDS dataset is a directory")
    garbage = tmp_path / "garbage"
    (garbage / "data").mkdir(parents=True)
    (garbage / "data" / "0.parquet").write_bytes(b"not parquet at all")
    reject(tmp_path, garbage, "not readable as Parquet")


def test_a_data_file_with_a_damaged_page_is_named(exported: Path, tmp_path: Path) -> None:
    shard = exported / "data" / "0.parquet"
    data = bytearray(shard.read_bytes())
    data[4:68] = b"\xff" * 64  # the first page; the footer, read first, is intact
    shard.write_bytes(bytes(data))
    reject(tmp_path, exported, f"  {exported}: data/0.parquet: not readable as Parquet: ")


def test_foreign_meds_without_the_native_record(exported: Path, tmp_path: Path) -> None:
    rewrite(exported, "SELECT subject_id, time, code, numeric_value FROM d")
    reject(tmp_path, exported, "field event_id: required MEDS column is missing", "field native")


def test_meds_whose_rows_carry_no_native_record_is_refused_as_having_no_events(
    exported: Path, tmp_path: Path
) -> None:
    rewrite(exported, "SELECT * REPLACE (NULL::VARCHAR AS native) FROM d")
    reject(tmp_path, exported, "no events: no data row carries a native record")


def test_a_meds_dataset_without_rows_adds_nothing_as_a_csv_file_of_headers_only(tmp_path: Path) -> None:
    with Store.create(tmp_path / "empty.duckdb") as source:
        export_meds(source, tmp_path / "out")
    with Store.create(tmp_path / "target.duckdb") as target:
        result = ingest_file(target, tmp_path / "out", author="t")
        assert (result.added, target.high_water()) == (0, 0)


def test_missing_subject_map(exported: Path, tmp_path: Path) -> None:
    (exported / "metadata" / "subject_ids.parquet").unlink()
    reject(tmp_path, exported, "metadata/subject_ids.parquet is missing")


def test_row_level_problems_are_all_reported(exported: Path, tmp_path: Path) -> None:
    rewrite(
        exported,
        """SELECT CASE WHEN event_id = 'p1-dx' THEN 42 ELSE subject_id END AS subject_id, time,
                  CASE WHEN event_id = 'p1-wt1' THEN 'WIEGHT//kg' ELSE code END AS code,
                  numeric_value, text_value, event_id,
                  CASE WHEN event_id = 'p1-crp1' THEN '{"occurred_at": ' WHEN event_id = 'p1-esr1'
                       THEN '{"occurred_at": "2008-01-10", "valu": 3}' ELSE native END AS native
           FROM d""",
    )
    err = reject(
        tmp_path,
        exported,
        "field subject_id: subject_id 42 is not in metadata/subject_ids.parquet",
        "field code: code 'WIEGHT//kg' does not name a timeline event kind",
        "field native: not a JSON object",
        "field native: unknown field 'valu'",
    )
    assert "row 3, field subject_id" in err  # rows are the data file's rows, from 1


def test_invalid_native_values_go_through_the_usual_checks(generated: Path, tmp_path: Path) -> None:
    out = tmp_path / "meds"
    with Store.open(generated) as s:
        export_meds(s, out, shard_rows=2000)
    files = sorted((out / "data").glob("*.parquet"), key=lambda p: int(p.stem))
    last = files[-1]
    con = duckdb.connect()
    victim = con.execute(
        f"SELECT event_id, file_row_number + 1 FROM read_parquet('{last}', file_row_number = true) "
        "WHERE code LIKE 'LAB//%' LIMIT 1"
    ).fetchone()
    assert victim is not None
    con.execute(
        f"""COPY (SELECT * REPLACE (CASE WHEN event_id = '{victim[0]}' AND native IS NOT NULL
                 THEN json_merge_patch(native, '{{"value": "lots"}}') ELSE native END AS native)
                 FROM '{last}') TO '{tmp_path}/x.parquet' (FORMAT parquet)"""
    )
    Path(f"{tmp_path}/x.parquet").replace(last)
    reject(tmp_path, out, f"{out}: data/{last.name} row {victim[1]}, field value: not a number: 'lots'\n")


def test_export_refuses_a_bad_target(example_store: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("keep me")
    with Store.open(example_store) as s:
        with pytest.raises(UsageError, match="not overwriting"):
            export_meds(s, tmp_path / "full")
        with pytest.raises(UsageError, match="does not exist"):
            export_meds(s, tmp_path / "no" / "such" / "dir")
        export_meds(s, tmp_path / "empty-ok")  # a new directory
    assert (tmp_path / "full" / "x").read_text() == "keep me"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-written leftovers


def test_export_into_a_directory_that_cannot_be_written_is_an_error_not_a_crash(
    example_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> str:
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(meds.tempfile, "mkdtemp", refuse)
    result = run_cli("export", "--format", "meds", tmp_path / "out", "--store", example_store)
    assert result.exit_code == 1
    assert result.stderr.strip() == f"error: cannot write {tmp_path / 'out'}: Permission denied"
    assert not (tmp_path / "out").exists()


def test_an_exported_dataset_has_the_users_usual_permissions(example_store: Path, tmp_path: Path) -> None:
    mask = os.umask(0o022)
    try:
        with Store.open(example_store) as s:
            export_meds(s, tmp_path / "out")
    finally:
        os.umask(mask)
    assert (tmp_path / "out").stat().st_mode & 0o777 == 0o755


def test_ingest_error_type_for_library_callers(exported: Path, tmp_path: Path) -> None:
    shutil.rmtree(exported / "data")
    (exported / "data").mkdir()
    with Store.create(tmp_path / "lib.duckdb") as s, pytest.raises(IngestError, match="batch rejected"):
        ingest_file(s, exported, author="x", fmt="meds")


def test_export_refuses_a_dash_as_the_dataset_directory(example_store: Path) -> None:
    result = run_cli("export", "--format", "meds", "-", "--store", example_store)
    assert result.exit_code == 2
    assert "a MEDS dataset is a directory" in result.stderr
    assert not Path("-").exists()


def test_export_to_a_directory_name_too_long_is_a_bad_command_line_naming_it(tmp_path: Path) -> None:
    store = tmp_path / "s.duckdb"
    Store.create(store).close()
    out = tmp_path / ("a" * 300)
    result = run_cli("export", "--format", "meds", out, "--store", store)
    # before: "internal error: OSError: [Errno 36] File name too long", exit 70
    assert (result.exit_code, result.stderr) == (2, f"error: {out}: File name too long\n")


# ---- a partial or damaged export (helper 47) ---------------------------------------------


@pytest.fixture
def sharded(generated: Path, tmp_path: Path) -> Path:
    """The generated store's export in several shards."""
    out = tmp_path / "sharded"
    with Store.open(generated) as s:
        export_meds(s, out, shard_rows=1500)
    return out


def copy_shard(shard: Path, select: str) -> None:
    """Replace ``shard`` by ``select`` over its rows (table ``d``)."""
    tmp = shard.with_name("new.tmp")
    duckdb.sql(f"COPY (WITH d AS (SELECT * FROM '{shard}') {select}) TO '{tmp}' (FORMAT parquet)")
    tmp.replace(shard)


def listed_rows(out: Path, name: str) -> int:
    meta = json.loads((out / "metadata" / "dataset.json").read_text())
    return next(s["rows"] for s in meta["timeline"]["shards"] if s["file"] == name)


def test_a_missing_shard_is_refused_naming_it_and_its_rows(sharded: Path, tmp_path: Path) -> None:
    """Helper 47 #1: with data/2.parquet deleted, 43,493 of 61,610 events were added, exit 0."""
    rows = listed_rows(sharded, "data/2.parquet")
    (sharded / "data" / "2.parquet").unlink()
    reject(
        tmp_path, sharded, f"data/2.parquet: is missing: metadata/dataset.json lists it with {rows:,} rows"
    )


def test_a_shard_with_fewer_rows_is_refused_naming_both_counts(sharded: Path, tmp_path: Path) -> None:
    rows = listed_rows(sharded, "data/1.parquet")
    copy_shard(sharded / "data" / "1.parquet", "SELECT * FROM d LIMIT 100")
    reject(tmp_path, sharded, f"data/1.parquet: has 100 rows; metadata/dataset.json lists it with {rows:,}")


def test_a_shard_not_listed_in_dataset_json_is_refused(sharded: Path, tmp_path: Path) -> None:
    shutil.copy(sharded / "data" / "0.parquet", sharded / "data" / "9.parquet")
    reject(tmp_path, sharded, "data/9.parquet: is not listed in metadata/dataset.json (it lists ")


def test_a_shard_without_the_native_column_is_refused_naming_it(sharded: Path, tmp_path: Path) -> None:
    """Helper 47 #1: native dropped from one shard: 7,182 events and their patients silently
    missing."""
    copy_shard(sharded / "data" / "1.parquet", "SELECT * EXCLUDE (native) FROM d")
    reject(
        tmp_path,
        sharded,
        f"{sharded}: data/1.parquet, field native: required MEDS column is missing (other data files have it)",
    )


def test_rows_whose_events_lost_their_primary_row_are_refused_naming_file_and_count(
    sharded: Path, tmp_path: Path
) -> None:
    shard = sharded / "data" / "1.parquet"
    n = duckdb.connect().execute(f"SELECT count(*) FROM '{shard}' WHERE native IS NOT NULL").fetchone()
    assert n is not None
    copy_shard(shard, "SELECT * REPLACE (NULL::VARCHAR AS native) FROM d")
    err = reject(
        tmp_path,
        sharded,
        "data/1.parquet row 1, field native: ",
        f" of {n[0]:,} events without their primary row",
    )
    assert "the events cannot be read back" in err


def test_a_subject_of_the_map_without_rows_is_refused(exported: Path, tmp_path: Path) -> None:
    subjects = exported / "metadata" / "subject_ids.parquet"
    duckdb.sql(
        f"COPY (SELECT * FROM '{subjects}' UNION ALL SELECT 7, 'P999') TO '{tmp_path}/map.parquet' (FORMAT parquet)"
    )
    (tmp_path / "map.parquet").replace(subjects)
    reject(
        tmp_path, exported, "1 subject of metadata/subject_ids.parquet has no rows in data/ (patient 'P999')"
    )


def test_a_primary_row_without_an_event_id_is_refused_naming_file_and_row(
    exported: Path, tmp_path: Path
) -> None:
    """Helper 47 #2: it became a new event with an ev-… id, a second copy of V02's joint exam."""
    rewrite(
        exported,
        "SELECT * REPLACE (CASE WHEN event_id = 'p1-dx' THEN NULL ELSE event_id END AS event_id) FROM d",
    )
    row = (
        duckdb.connect()
        .execute(
            f"SELECT file_row_number + 1 FROM read_parquet('{exported}/data/0.parquet', file_row_number = true) "
            "WHERE code = 'DIAGNOSIS//sJIA'"
        )
        .fetchone()
    )
    assert row is not None
    reject(tmp_path, exported, f"data/0.parquet row {row[0]}, field event_id: missing value: a primary row")


def test_a_subject_missing_from_the_map_is_one_line_with_a_count(exported: Path, tmp_path: Path) -> None:
    """Helper 47 #7: one subject missing from the map gave 170 identical lines."""
    rewrite(exported, "SELECT * REPLACE (42 AS subject_id) FROM d")
    err = reject(
        tmp_path, exported, "(1 error)", "data/0.parquet row 2, field subject_id: subject_id 42 is not in"
    )
    assert "(and 13 more rows)" in err


def test_an_error_names_the_file_in_json(exported: Path, tmp_path: Path) -> None:
    rewrite(
        exported,
        "SELECT * REPLACE (CASE WHEN event_id = 'p1-wt1' THEN 'WIEGHT//kg' ELSE code END AS code) FROM d",
    )
    reject(tmp_path, exported)
    result = run_cli("ingest", "--store", tmp_path / "target.duckdb", exported, "--json")
    (error,) = json.loads(result.stdout)["rejected"]["errors"]
    assert (error["file"], error["field"]) == ("data/0.parquet", "code")
    assert isinstance(error["row"], int) and error["row"] > 1


def test_a_column_of_the_wrong_type_is_named_with_its_file(sharded: Path, tmp_path: Path) -> None:
    """Helper 47 #7/#8: "field subject_id: must be BIGINT, not VARCHAR" named no file; a time
    as text, a date or with a time zone passed."""
    copy_shard(sharded / "data" / "1.parquet", "SELECT * REPLACE (subject_id::VARCHAR AS subject_id) FROM d")
    copy_shard(sharded / "data" / "2.parquet", "SELECT * REPLACE (time::DATE AS time) FROM d")
    copy_shard(sharded / "data" / "3.parquet", "SELECT * REPLACE (time::VARCHAR AS time) FROM d")
    reject(
        tmp_path,
        sharded,
        "data/1.parquet, field subject_id: must be BIGINT (int64), not VARCHAR",
        "data/2.parquet, field time: must be TIMESTAMP (timestamp[us], no time zone), not DATE",
        "data/3.parquet, field time: must be TIMESTAMP (timestamp[us], no time zone), not VARCHAR",
    )


def test_a_native_record_with_a_key_given_twice_is_refused(exported: Path, tmp_path: Path) -> None:
    """Helper 47 #8: accepted (the first value won) while JSON Lines ingest refuses it."""
    rewrite(
        exported,
        """SELECT * REPLACE (CASE WHEN event_id = 'p1-crp1'
                   THEN '{"occurred_at": "2008-01-10", "code": "1988-5", "value": 8.4, "value": 9, "unit": "mg/dL"}'
                   ELSE native END AS native) FROM d""",
    )
    reject(tmp_path, exported, "field native: field 'value' given more than once in the object")


def test_meds_columns_edited_apart_from_native_are_noted(exported: Path, tmp_path: Path) -> None:
    """Helper 47 #4: every time shifted by -100 days and numeric_value doubled gave back the
    original data without a word."""
    rewrite(
        exported,
        "SELECT * REPLACE (time - INTERVAL 100 DAY AS time, numeric_value * 2 AS numeric_value) FROM d",
    )
    with Store.create(tmp_path / "t.duckdb") as s:
        result = ingest_file(s, exported, author="t")
    assert result.added == 14
    (note,) = result.notes
    assert note.startswith(
        "meds: 14 primary rows of the events added disagree with their native record (time on 14, "
    )
    assert "numeric_value on " in note and "`native`, which is authoritative" in note


def test_an_unedited_export_has_no_disagreement_note(exported: Path, tmp_path: Path) -> None:
    with Store.create(tmp_path / "t.duckdb") as s:
        assert ingest_file(s, exported, author="t").notes == []


def test_rows_skipped_in_a_dataset_from_elsewhere_are_noted_with_counts(
    exported: Path, tmp_path: Path
) -> None:
    """Helper 47 #4: rows without native (unknown codes, a RACE// static row, a subject not in
    the map) were dropped without a word. A dataset whose dataset.json lists no shards is read
    as one from elsewhere: what it skips is said."""
    meta_path = exported / "metadata" / "dataset.json"
    meta = json.loads(meta_path.read_text())
    del meta["timeline"]
    meta_path.write_text(json.dumps(meta))
    rewrite(
        exported,
        """SELECT * FROM d UNION ALL SELECT subject_id, NULL, 'RACE//white', NULL, NULL, NULL, NULL, NULL
           FROM d WHERE code = 'MEDS_BIRTH'
           UNION ALL SELECT 12345, TIMESTAMP '2006-01-01', 'LAB//1988-5//mg/L', 3.0, NULL, NULL, NULL, NULL""",
    )
    with Store.create(tmp_path / "t.duckdb") as s:
        result = ingest_file(s, exported, author="t")
    assert result.added == 14
    assert result.notes == [
        "meds: 2 rows skipped: without a native record, and no primary row in the dataset shares their event id "
        "(2 without an event id; 1 with a code that names no timeline event kind; 1 of subjects not in "
        "metadata/subject_ids.parquet); the first is data/0.parquet row 19 (RACE//white). Its metadata/dataset.json "
        "lists no data files, so it is read as a dataset from elsewhere (docs/meds.md)"
    ]


def test_rows_reordered_within_a_timestamp_give_the_same_store_order(
    valencia: tuple[Path, Any], tmp_path: Path
) -> None:
    """Helper 47 #3: reversing a subject's same-time rows (still valid MEDS) changed which of
    two values of one instant was current (ms_score 1.16 -> -2.44). The rows carry each event's
    place in its patient's assertion order (event_order); ingest keeps it."""
    out = tmp_path / "meds"
    with Store.open(valencia[0]) as s:
        export_meds(s, out)
    con = duckdb.connect()
    shard = out / "data" / "0.parquet"
    ties = con.execute(
        f"SELECT count(*) FROM (SELECT subject_id, time FROM '{shard}' WHERE native IS NOT NULL "
        "GROUP BY ALL HAVING count(*) > 1)"
    ).fetchone()
    assert ties is not None and ties[0] > 0  # instants with several events
    reversed_ = tmp_path / "reversed"
    shutil.copytree(out, reversed_)
    con.execute(
        f"""COPY (SELECT * EXCLUDE (file_row_number) FROM read_parquet('{shard}', file_row_number = true)
                  ORDER BY subject_id, time NULLS FIRST, file_row_number DESC)
            TO '{reversed_}/data/0.parquet' (FORMAT parquet)"""
    )

    def order(source: Path) -> list[tuple[str, str]]:
        target = source.with_suffix(".duckdb")
        with Store.create(target, timezone="Europe/Madrid") as d:
            ingest_file(d, source, author="t")
            return [
                (r[0], r[1])
                for r in d.con.execute(
                    "SELECT patient_id, event_id FROM events ORDER BY patient_id, seq"
                ).fetchall()
            ]

    with Store.open(valencia[0]) as s:
        live = s.current_sql(s.high_water(), columns=["patient_id", "event_id", "asserted_seq"])
        source_order = [
            (r[0], r[1])
            for r in s.con.execute(
                f"SELECT patient_id, event_id FROM ({live}) ORDER BY patient_id, asserted_seq"
            ).fetchall()
        ]
    assert order(reversed_) == order(out) == source_order


@pytest.mark.parametrize("which", ["valencia", "generated"])
def test_a_round_trip_writes_the_same_data_files(
    which: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """Helper 47 #3: the first round trip moved 148 //END rows within their timestamp."""
    source = (
        request.getfixturevalue("valencia")[0]
        if which == "valencia"
        else request.getfixturevalue("generated")
    )
    with Store.open(source) as s:
        export_meds(s, tmp_path / "first")
        zone = s.timezone
    with Store.create(tmp_path / "copy.duckdb", timezone=zone) as d:
        ingest_file(d, tmp_path / "first", author="t")
        export_meds(d, tmp_path / "second")
    first = sorted((tmp_path / "first" / "data").glob("*.parquet"))
    assert [f.read_bytes() for f in first] == [
        (tmp_path / "second" / "data" / f.name).read_bytes() for f in first
    ]


def test_double_slashes_and_line_breaks_in_text_keep_codes_unambiguous(tmp_path: Path) -> None:
    """Helper 47 #6: `//` in an adverse-event term or a drug made codes ambiguous (the drug
    `anakinra//x` described as "dose in x" and matched by ^MEDICATION_START//anakinra//; the
    term's END row described as a CTCAE grade); a line break passed into the code."""
    from timeline.ingest import append_rows

    with Store.create(tmp_path / "s.duckdb") as s:
        append_rows(
            s,
            [
                {"event_id": "b", "patient_id": "P1", "kind": "birth", "occurred_at": "2005-01-01", "sex": "female"},
                {"event_id": "m", "patient_id": "P1", "kind": "medication_start", "occurred_at": "2008-01-01",
                 "drug": "anakinra//x", "dose": "2", "dose_unit": "mg/kg", "frequency": "daily"},
                {"event_id": "a", "patient_id": "P1", "kind": "adverse_event", "occurred_at": "2008-01-02",
                 "ended_at": "2008-01-05", "term": "rash //grade_3\nitchy", "grade": "2"},
            ],
            author="t",
        )  # fmt: skip
        export_meds(s, tmp_path / "out")
    con = duckdb.connect()
    codes = dict(
        con.execute(f"SELECT code, description FROM '{tmp_path}/out/metadata/codes.parquet'").fetchall()
    )
    drug = "MEDICATION_START//anakinra%2F%2Fx//mg/kg"
    assert codes[drug] == "anakinra//x: first dose, dose in mg/kg (numeric_value)"
    assert (
        codes["ADVERSE_EVENT//rash %2F%2Fgrade_3%0Aitchy//END"] == "adverse event rash //grade_3\nitchy: end"
    )
    assert (
        codes["ADVERSE_EVENT//rash %2F%2Fgrade_3%0Aitchy//grade_2"]
        == "adverse event rash //grade_3\nitchy: CTCAE grade 2"
    )
    data = [r[0] for r in con.execute(f"SELECT code FROM '{tmp_path}/out/data/*.parquet'").fetchall()]
    assert not [c for c in data if re.match("^MEDICATION_START//anakinra//", c) or "\n" in c]
    with Store.create(tmp_path / "copy.duckdb") as d:  # read back as it was
        ingest_file(d, tmp_path / "out", author="t")
        assert d.current_version("m")["drug"] == "anakinra//x"


def test_format_names_are_case_insensitive_as_in_export(exported: Path, tmp_path: Path) -> None:
    """Helper 47 #8: `--format MEDS` on a directory failed "is a directory, not a file"."""
    Store.create(tmp_path / "t.duckdb").close()
    result = run_cli("ingest", "--store", tmp_path / "t.duckdb", "--format", "MEDS", exported)
    assert result.exit_code == 0, result.output
    assert "14 events added" in result.stdout


def test_an_unknown_format_is_a_usage_error_even_for_a_directory(exported: Path, tmp_path: Path) -> None:
    Store.create(tmp_path / "t.duckdb").close()
    result = run_cli("ingest", "--store", tmp_path / "t.duckdb", "--format", "xyz", exported)
    assert (result.exit_code, result.stderr) == (
        2,
        "error: unknown format 'xyz' (use csv, jsonl, parquet or meds)\n",
    )


def test_a_directory_without_data_says_it_is_not_a_meds_dataset(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    store = tmp_path / "t.duckdb"
    Store.create(store).close()
    result = run_cli("ingest", "--store", store, tmp_path / "empty")
    assert result.exit_code == 6
    assert (
        "is a directory, not a file; nor a MEDS dataset: it has no data/ directory of *.parquet files"
        in result.stderr
    )


def test_a_meds_data_file_given_alone_points_to_its_dataset(exported: Path, tmp_path: Path) -> None:
    """Helper 47 #8: data/0.parquet itself was met with did-you-means (text_value -> value)."""
    store = tmp_path / "t.duckdb"
    Store.create(store).close()
    result = run_cli("ingest", "--store", store, exported / "data" / "0.parquet")
    assert result.exit_code == 6
    assert "a data file of a MEDS dataset: ingest the dataset's directory" in result.stderr
    assert "did you mean" not in result.stderr


def test_export_json_carries_a_manifest_and_dataset_json_an_absolute_store_path(
    example_store: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Helper 47 #9: export --json had no manifest, unlike other commands; dataset.json
    recorded the store path as typed."""
    monkeypatch.chdir(example_store.parent)
    result = run_cli("export", "--store", example_store.name, "--format", "meds", tmp_path / "out", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert (payload["manifest"]["high_water"], payload["events"]) == (14, 14)
    assert payload["manifest"]["engine"].startswith("timeline ")
    meta = json.loads((tmp_path / "out" / "metadata" / "dataset.json").read_text())
    assert meta["timeline"]["store"] == str(example_store.resolve())


def test_help_names_meds_directories_and_seq_moments() -> None:
    assert "MEDS dataset directories" in " ".join(run_cli("ingest", "--help").stdout.split())
    assert "seq:N" in run_cli("export", "--help").stdout


def test_export_as_known_before_the_first_batch_says_the_store_held_nothing_then(
    example_store: Path, tmp_path: Path
) -> None:
    # `--as-known-at 2024-12-31`, the help's example until then, is an empty record on any store
    # made later: the dataset is written (empty), with the reason
    result = run_cli(
        "export", "--store", example_store, "--format", "meds", tmp_path / "m", "--as-known-at", "2024-12-31"
    )
    assert result.exit_code == 0, result.output
    assert "note: as known at 2024-12-31 the store held no events" in " ".join(result.stderr.split())
