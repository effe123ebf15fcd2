"""Row and content hashes: schema 2 hashes a JSON array of the values; stores of schema 1
(a JSON object, column names included) keep their format for verify and re-ingest."""

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


@pytest.mark.parametrize("schema", ["1", SCHEMA_VERSION])
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
