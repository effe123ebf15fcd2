"""Bounded memory while ingesting: the batch digest is computed chunk by chunk (same value
as the single SQL query), and the ingest memory limit is lifted afterwards."""

from __future__ import annotations

from pathlib import Path

import pytest

from timeline import integrity
from timeline.ingest import ingest_file
from timeline.store import Store

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("chunk", [1, 3, 4, 65536])
def test_chunked_digest_equals_the_sql_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int
) -> None:
    monkeypatch.setattr(integrity, "CHUNK", chunk)
    with Store.create(tmp_path / "s.duckdb") as store:
        ingest_file(store, ROOT / "examples" / "events.csv", author="t")
        last = store.high_water()
        assert last > 8
        for first, end in [(1, last), (2, 7), (3, 3), (5, 4), (last + 1, last + 9)]:
            sql = store.con.execute(integrity.events_digest_sql(f"seq BETWEEN {first} AND {end}")).fetchone()
            assert sql is not None
            assert integrity.events_digest(store.con, first, end) == sql[0]
        assert integrity.verify(store).ok


def test_memory_limit_is_lifted_after_ingest(tmp_path: Path) -> None:
    with Store.create(tmp_path / "s.duckdb") as store:
        before = store.con.execute("SELECT current_setting('memory_limit')").fetchone()
        ingest_file(store, ROOT / "examples" / "events.csv", author="t")
        after = store.con.execute("SELECT current_setting('memory_limit')").fetchone()
        assert after == before
