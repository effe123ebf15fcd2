"""Every manifest names the record its ``high_water`` read by the hash chain's head there, so
two stores that share a seq but not a history give different manifests; ``verify`` gives the
head at a seq to check a report against, and none when the chain is broken."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.cohort_support import COHORT, RULES, build_store
from tests.support import raw_connection, run_cli
from timeline.errors import UnknownEventError
from timeline.ingest import correct, retract
from timeline.integrity import genesis_hash
from timeline.integrity import verify as do_verify
from timeline.meds import export_meds
from timeline.store import Store


def verify_json(store: Path, *args: str) -> dict[str, Any]:
    return json.loads(run_cli("verify", "--store", store, "--json", *args).stdout)  # type: ignore[no-any-return]


def state_manifest(store: Path, *args: str) -> dict[str, Any]:
    result = run_cli("state", "P001", "--at", "2021-06-01", "--store", store, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)["manifest"]  # type: ignore[no-any-return]


def cut_last_batch(store: Path) -> None:
    """What restoring the file from a backup made before the newest batch leaves."""
    with raw_connection(store) as con:
        (last,) = con.execute("SELECT max(batch_id) FROM batches").fetchone()  # type: ignore[misc]
        con.execute(f"DELETE FROM events WHERE batch_id = {last}")
        con.execute(f"DELETE FROM batches WHERE batch_id = {last}")


@pytest.fixture
def diverged(example_store: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Two stores with the same 15 seqs: a correction, and the store cut back before it and
    corrected otherwise."""
    with Store.open(example_store, write=True) as s:
        correct(s, "p1-crp2", {"value": "5"}, reason="transcription error", author="t")
    other = tmp_path / "restored.duckdb"
    shutil.copy(example_store, other)
    cut_last_batch(other)
    with Store.open(other, write=True) as s:
        correct(s, "p1-crp2", {"value": "50"}, reason="another story", author="mallory")
    return example_store, other


def test_a_manifest_carries_the_head_verify_gives_at_its_high_water(example_store: Path) -> None:
    manifest = state_manifest(example_store)
    assert manifest["head_hash"] == verify_json(example_store)["head_hash"]


def test_a_manifest_as_known_at_an_earlier_seq_carries_the_head_the_store_had_then(
    example_store: Path,
) -> None:
    then = verify_json(example_store)["head_hash"]
    with Store.open(example_store, write=True) as s:
        correct(s, "p1-crp2", {"value": "5"}, reason="transcription error", author="t")
    assert state_manifest(example_store, "--as-known-at", "seq:14")["head_hash"] == then


def test_two_stores_diverging_after_a_cut_give_different_heads_at_the_same_seq(
    diverged: tuple[Path, Path],
) -> None:
    first, second = (state_manifest(p, "--as-known-at", "seq:15") for p in diverged)
    assert first["high_water"] == second["high_water"] == 15
    assert first["rules_digest"] == second["rules_digest"]
    assert first["head_hash"] != second["head_hash"]


def test_two_stores_diverging_after_a_cut_share_the_head_before_it(diverged: tuple[Path, Path]) -> None:
    first, second = (state_manifest(p, "--as-known-at", "seq:14") for p in diverged)
    assert first["head_hash"] == second["head_hash"]


def test_the_head_at_seq_0_is_where_the_chain_starts(example_store: Path) -> None:
    with Store.open(example_store) as s:
        assert s.head_hash(0) == genesis_hash(s.con)


def test_verify_at_a_seq_gives_the_head_a_report_made_there_carries(diverged: tuple[Path, Path]) -> None:
    for store in diverged:
        report = state_manifest(store, "--as-known-at", "seq:15")
        assert verify_json(store, "--at", "seq:15")["at"] == {"seq": 15, "head_hash": report["head_hash"]}


def test_verify_at_prints_the_head_at_that_seq(example_store: Path) -> None:
    head = verify_json(example_store)["head_hash"]
    result = run_cli("verify", "--store", example_store, "--at", "seq:14")
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == f"head hash at seq 14: {head}"


def test_verify_at_a_seq_inside_a_batch_is_a_usage_error_naming_at(example_store: Path) -> None:
    result = run_cli("verify", "--store", example_store, "--at", "seq:3")
    assert result.exit_code == 2
    assert "--at 'seq:3': seq 3 is inside batch 1" in result.stderr


def test_verify_at_a_date_is_a_usage_error(example_store: Path) -> None:
    result = run_cli("verify", "--store", example_store, "--at", "2021-01-01")
    assert result.exit_code == 2
    assert "give seq:N" in result.stderr


def test_verify_json_of_an_altered_store_gives_no_head_hash(example_store: Path) -> None:
    with raw_connection(example_store) as con:
        con.execute("UPDATE events SET value = 5 WHERE seq = 5")
    data = verify_json(example_store, "--at", "seq:14")
    assert data["ok"] is False
    assert (data["head_hash"], data["manifest"]["head_hash"], data["at"]["head_hash"]) == (None, None, None)


def test_verify_text_of_an_altered_store_prints_no_head_hash(example_store: Path) -> None:
    with raw_connection(example_store) as con:
        con.execute("UPDATE events SET value = 5 WHERE seq = 5")
    result = run_cli("verify", "--store", example_store)
    assert result.exit_code == 7
    assert "head hash" not in result.output


@pytest.fixture(scope="module")
def cohort_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_store(tmp_path_factory.mktemp("cohort-head") / "cohort.duckdb")


def test_cohort_csv_carries_the_head_hash_in_its_header(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.csv"
    result = run_cli("cohort", "run", COHORT, "--csv", out, "--store", cohort_store, "--rules", RULES)
    assert result.exit_code == 0, result.output
    head = verify_json(cohort_store)["head_hash"]
    assert f'# head_hash: "{head}"' in out.read_text(encoding="utf-8").splitlines()


def test_cohort_manifest_file_carries_the_head_hash(cohort_store: Path, tmp_path: Path) -> None:
    out, side = tmp_path / "cells.csv", tmp_path / "manifest.json"
    args = ("cohort", "run", COHORT, "--csv", out, "--manifest", side)
    assert run_cli(*args, "--store", cohort_store, "--rules", RULES).exit_code == 0
    assert json.loads(side.read_text())["head_hash"] == verify_json(cohort_store)["head_hash"]


def test_cohort_parquet_metadata_carries_the_head_hash(cohort_store: Path, tmp_path: Path) -> None:
    out = tmp_path / "cells.parquet"
    args = ("cohort", "run", COHORT, "--parquet", out)
    assert run_cli(*args, "--store", cohort_store, "--rules", RULES).exit_code == 0
    meta = duckdb.execute(f"SELECT value FROM parquet_kv_metadata('{out}') WHERE key = 'manifest'").fetchone()
    assert meta is not None
    assert json.loads(meta[0])["head_hash"] == verify_json(cohort_store)["head_hash"]


def test_meds_dataset_json_carries_the_head_hash(example_store: Path, tmp_path: Path) -> None:
    with Store.open(example_store) as s:
        export_meds(s, tmp_path / "meds")
    meta = json.loads((tmp_path / "meds" / "metadata" / "dataset.json").read_text())
    assert meta["timeline"]["head_hash"] == verify_json(example_store)["head_hash"]


operation = st.one_of(
    st.tuples(st.just("value"), st.sampled_from(["p1-crp1", "p1-crp2"]), st.integers(1, 99).map(str)),
    st.tuples(st.just("retract"), st.sampled_from(["p1-crp1", "p1-rash1"]), st.just("")),
)


@settings(max_examples=15, deadline=None)
@given(st.lists(operation, min_size=1, max_size=4))
def test_the_head_at_each_seq_stays_the_head_verify_gave_when_it_was_the_newest(
    example_store_template: Path, ops: list[tuple[str, str, str]]
) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "s.duckdb"
        shutil.copy(example_store_template, path)
        with Store.open(path, write=True) as s:
            heads = {s.high_water(): do_verify(s).head_hash}
            for kind, eid, arg in ops:
                try:
                    if kind == "retract":
                        retract(s, eid, reason="test", author="t")
                    else:
                        correct(s, eid, {"value": arg}, reason="test", author="t")
                except UnknownEventError:
                    continue  # already retracted
                heads[s.high_water()] = do_verify(s).head_hash
            assert {seq: s.head_hash(seq) for seq in heads} == heads
            assert len(set(heads.values())) == len(heads)
