"""Row and content hashes: schema 2 hashes a JSON array of the values; stores of schema 1
(a JSON object, column names included) keep their format for verify and re-ingest. Schema 3
hashes times as read, so one event written two ways is one event; stores of schema 1 and 2
keep hashing the text, so the ids they derived do not change."""

from __future__ import annotations

from pathlib import Path

import pytest

from timeline.ingest import content_hash_sql, ingest_file
from timeline.integrity import row_hash_sql, verify
from timeline.store import SCHEMA_VERSION, Store

CSV = """patient_id,kind,occurred_at,code,value,unit,sex,note
P1,birth,2001-04-12,,,,female,"a, ""quoted"" note"
P1,lab,2008-01-10,1988-5,8.4,mg/dL,,
P1,weight,2008-01-10T09:30+02:00,,24.5,kg,,
"""


def _store(tmp_path: Path, schema: str) -> Path:
    path = tmp_path / f"s{schema}.duckdb"
    with Store.create(path) as s:
        s.con.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", [schema])
    return path


@pytest.mark.parametrize("schema", ["1", "2", SCHEMA_VERSION])
def test_hash_format_follows_the_store(tmp_path: Path, schema: str) -> None:
    src = tmp_path / "events.csv"
    src.write_text(CSV, encoding="utf-8")
    with Store.open(_store(tmp_path, schema), write=True) as s:
        assert s.schema_version == schema
        assert ingest_file(s, src, author="t").added == 3
        mismatched = s.con.execute(
            f"SELECT count(*) FROM events WHERE row_hash <> {row_hash_sql(schema=schema)}"
        ).fetchone()
        assert mismatched == (0,)
        assert verify(s).ok
        # derived ids and content hashes are stable: the same file again adds nothing
        again = ingest_file(s, src, author="t")
        assert (again.added, again.duplicates) == (0, 3)
        assert verify(s).ok


def test_formats_differ_and_new_one_has_no_column_names(tmp_path: Path) -> None:
    assert "to_json(struct_pack(" in row_hash_sql(schema="1")
    assert "json_array(" in row_hash_sql() and ":=" not in row_hash_sql()
    assert content_hash_sql("1") != content_hash_sql(SCHEMA_VERSION)
    assert content_hash_sql("2") != content_hash_sql(SCHEMA_VERSION)


FIRST = """patient_id,kind,occurred_at,value,unit,code,ended_at
P1,weight,2009-03-02T10:00,24.5,kg,,
P1,finding,2009-03-02T10:00,,,fever,2009-03-04T08:00
"""
# the same two events, their times written otherwise (the store is in UTC)
REWRITTEN = """patient_id,kind,occurred_at,value,unit,code,ended_at
P1,weight,2009-03-02 10:00:00,24.5,kg,,
P1,weight,2009-03-02T10:00Z,24.5,kg,,
P1,weight,2009-03-02T11:00+01:00,24.5,kg,,
P1,finding,2009-03-02T10:00:00.000,,,fever,2009-03-04T09:00+01:00
"""


def _ingest_twice(tmp_path: Path, schema: str, second: str, first: str = FIRST) -> int:
    """Events of ``second`` added to a store holding ``first``."""
    a, b = tmp_path / "a.csv", tmp_path / "b.csv"
    a.write_text(first, encoding="utf-8")
    b.write_text(second, encoding="utf-8")
    with Store.open(_store(tmp_path, schema), write=True) as s:
        ingest_file(s, a, author="t")
        added = ingest_file(s, b, author="t").added
        assert verify(s).ok
        return added


def test_an_event_whose_times_are_written_otherwise_is_the_same_event(tmp_path: Path) -> None:
    assert _ingest_twice(tmp_path, SCHEMA_VERSION, REWRITTEN) == 0


@pytest.mark.parametrize("schema", ["1", "2"])
def test_older_stores_keep_deriving_ids_from_the_times_as_written(tmp_path: Path, schema: str) -> None:
    assert _ingest_twice(tmp_path, schema, REWRITTEN) == 4


def test_a_date_and_midnight_of_it_are_different_events(tmp_path: Path) -> None:
    head = "patient_id,kind,occurred_at,value,unit\n"
    day, midnight = head + "P1,weight,2009-03-02,24.5,kg\n", head + "P1,weight,2009-03-02T00:00,24.5,kg\n"
    assert _ingest_twice(tmp_path, SCHEMA_VERSION, midnight, first=day) == 1


def test_a_different_time_is_a_different_event(tmp_path: Path) -> None:
    assert _ingest_twice(tmp_path, SCHEMA_VERSION, FIRST.replace("T10:00,24.5", "T10:01,24.5")) == 1


def test_a_meds_round_trip_derives_the_original_ids(tmp_path: Path) -> None:
    """The original file, ingested into a store rebuilt from its MEDS export, adds nothing,
    though the export writes its times in one form (``2009-03-02T10:00``)."""
    from timeline.meds import export_meds

    src = tmp_path / "a.csv"
    src.write_text(REWRITTEN, encoding="utf-8")
    with Store.create(tmp_path / "a.duckdb") as s:
        assert ingest_file(s, src, author="t").added == 2
        export_meds(s, tmp_path / "meds")
    with Store.create(tmp_path / "b.duckdb") as s:
        assert ingest_file(s, tmp_path / "meds", author="t", fmt="meds").added == 2
        again = ingest_file(s, src, author="t")
        assert (again.added, again.duplicates) == (0, 4)
