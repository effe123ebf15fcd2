"""The ingest benchmark still runs (tiny size, one run): no timing is asserted."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import gen
from benchmarks import ingest as bench


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
