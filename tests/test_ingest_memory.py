"""Bounded memory while ingesting: the batch digest is computed chunk by chunk (same value
as the single SQL query), and DuckDB's memory limit is lowered for the ingest only."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from timeline import ingest, integrity
from timeline.ingest import ingest_file
from timeline.store import Store

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ROOT / "examples" / "events.csv"


@pytest.mark.parametrize("per_query", [1, 2, 16])
@pytest.mark.parametrize("chunk", [1, 3, 4, 65536])
def test_chunked_digest_equals_the_sql_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, chunk: int, per_query: int
) -> None:
    monkeypatch.setattr(integrity, "CHUNK", chunk)
    monkeypatch.setattr(integrity, "CHUNKS_A_QUERY", per_query)
    with Store.create(tmp_path / "s.duckdb") as store:
        ingest_file(store, EVENTS, author="t")
        last = store.high_water()
        assert last > 8
        for first, end in [(1, last), (2, 7), (3, 3), (5, 4), (last + 1, last + 9)]:
            sql = store.con.execute(integrity.events_digest_sql(f"seq BETWEEN {first} AND {end}")).fetchone()
            assert sql is not None
            assert integrity.events_digest(store.con, first, end) == sql[0]
        assert integrity.verify(store).ok


def _limit(store: Store) -> str:
    row = store.con.execute("SELECT current_setting('memory_limit')").fetchone()
    assert row is not None
    return str(row[0])


def _limits_seen(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """DuckDB's memory limit as each ingest's stage starts, appended to the list returned."""
    seen: list[str] = []
    stage = ingest._stage

    def spy(con: Any, *args: Any) -> None:
        seen.append(str(con.execute("SELECT current_setting('memory_limit')").fetchone()[0]))
        stage(con, *args)

    monkeypatch.setattr(ingest, "_stage", spy)
    return seen


@pytest.mark.parametrize(
    ("preset", "during"), [(None, "488.2 MiB"), ("2GB", "488.2 MiB"), ("300MB", "286.1 MiB")]
)
def test_memory_limit_lowered_for_the_ingest_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, preset: str | None, during: str
) -> None:
    seen = _limits_seen(monkeypatch)
    with Store.create(tmp_path / "s.duckdb") as store:
        if preset:
            store.con.execute(f"SET memory_limit = '{preset}'")
        before = _limit(store)
        ingest_file(store, EVENTS, author="t")
        assert seen == [during]
        after = _limit(store)
        if preset is None:
            assert after == before  # DuckDB's default, exactly
        else:
            assert abs(float(after.split()[0]) - float(before.split()[0])) < 0.2
            assert after.split()[1] == before.split()[1]


def test_running_out_of_memory_names_the_step_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from timeline.errors import ResourceError

    with Store.create(tmp_path / "s.duckdb") as store:
        ingest_file(store, EVENTS, author="t")
        before = store.con.execute("SELECT count(*), max(seq) FROM events").fetchone()
        monkeypatch.setattr(ingest, "INGEST_MEMORY_LIMIT", 2**18)
        store.con.execute("SET max_temp_directory_size = '256KB'")  # no room to spill either
        with pytest.raises(ResourceError, match=r"events\.csv: ingest stopped while checking: Out of Memory"):
            ingest_file(store, ROOT / "examples" / "valencia" / "events.csv", author="t")
        store.con.execute("RESET max_temp_directory_size")
        assert store.con.execute("SELECT count(*), max(seq) FROM events").fetchone() == before
        assert integrity.verify(store).ok


def _limit_during(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **kwargs: Any) -> list[str]:
    seen = _limits_seen(monkeypatch)
    with Store.create(tmp_path / "s.duckdb") as store:
        ingest_file(store, EVENTS, author="t", **kwargs)
    return seen


def test_an_ingest_may_be_given_more_memory_than_the_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert _limit_during(tmp_path, monkeypatch, memory_limit=4 * 10**9) == ["3.7 GiB"]


def test_cli_ingest_takes_a_memory_limit_as_a_size(tmp_path: Path) -> None:
    from tests.support import run_cli

    store = tmp_path / "s.duckdb"
    run_cli("init", "--store", store)
    result = run_cli("ingest", EVENTS, "--store", store, "--author", "t", "--memory-limit", "1GiB", "--json")
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("size", "message"),
    [
        ("lots", "--memory-limit 'lots' is not a size: give a number and a unit, e.g. 512MB, 4GB, 6GiB"),
        ("4", "--memory-limit '4' is not a size"),
        ("10MB", "--memory-limit '10MB' is too small: DuckDB needs at least 64MB to ingest"),
    ],
)
def test_cli_ingest_refuses_a_memory_limit_that_is_not_a_usable_size(
    tmp_path: Path, size: str, message: str
) -> None:
    from tests.support import run_cli

    store = tmp_path / "s.duckdb"
    run_cli("init", "--store", store)
    result = run_cli("ingest", EVENTS, "--store", store, "--author", "t", "--memory-limit", size)
    assert result.exit_code == 2
    assert message in result.stderr
    with Store.open(store) as s:
        assert s.high_water() == 0
