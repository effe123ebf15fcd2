"""`timeline verify` catches every edit made behind the library's back and names the first
broken link. The tampering below uses a plain DuckDB connection, as an outsider would."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import raw_connection, run_cli
from timeline.ingest import correct, retract
from timeline.integrity import row_hash_sql
from timeline.store import Store


@pytest.fixture
def chained_store(example_store: Path) -> Path:
    """The example events (batch 1, seq 1-14), a correction (batch 2, seq 15) and a
    retraction (batch 3, seq 16)."""
    with Store.open(example_store, write=True) as s:
        correct(s, "p1-crp2", {"value": "5"}, reason="transcription error", author="t")
        retract(s, "p1-rash1", reason="wrong patient", author="t")
    return example_store


def tamper(store: Path, *statements: str) -> None:
    with raw_connection(store) as con:
        for sql in statements:
            con.execute(sql)


def first_broken_link(store: Path) -> str:
    result = run_cli("verify", "--store", store)
    assert result.exit_code == 7, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith("error: store integrity broken: ")
    return first.removeprefix("error: store integrity broken: ")


def inserted_copy(seq: int, *, new_seq: int, batch_id: int, row_hash: str) -> str:
    """SQL inserting a copy of event ``seq`` (with a new id) as ``new_seq`` in ``batch_id``,
    its row hash given by the SQL expression ``row_hash`` over the copied row."""
    return f"""INSERT INTO events SELECT *, {row_hash} FROM (
                   SELECT * EXCLUDE (row_hash) REPLACE ({new_seq}::BIGINT AS seq,
                       {batch_id}::BIGINT AS batch_id, 'ins-' || event_id AS event_id)
                   FROM events WHERE seq = {seq})"""


def test_untouched_store_verifies(chained_store: Path) -> None:
    result = run_cli("verify", "--store", chained_store)
    assert result.exit_code == 0
    assert result.stdout.startswith("ok: 16 versions in 3 batches; head hash ")


def test_edited_row_is_named_by_seq(chained_store: Path) -> None:
    tamper(chained_store, "UPDATE events SET value = 5 WHERE seq = 5")
    assert first_broken_link(chained_store) == (
        "event seq 5 (p1-crp1) was altered: its content no longer matches its hash"
    )


def test_edited_row_with_recomputed_row_hash_breaks_its_batch_digest(chained_store: Path) -> None:
    tamper(
        chained_store,
        "UPDATE events SET value = 5 WHERE seq = 5",
        f"UPDATE events SET row_hash = {row_hash_sql()} WHERE seq = 5",
    )
    assert first_broken_link(chained_store) == "batch 1's events no longer match its digest"


def test_deleted_row_is_named_by_its_batch(chained_store: Path) -> None:
    tamper(chained_store, "DELETE FROM events WHERE seq = 7")
    assert first_broken_link(chained_store) == (
        "batch 1 should hold 14 events (seq 1–14) but holds 13: events were deleted or inserted"
    )


def test_row_inserted_with_a_wrong_hash_is_named_by_seq(chained_store: Path) -> None:
    tamper(chained_store, inserted_copy(14, new_seq=17, batch_id=3, row_hash="'0000'"))
    assert first_broken_link(chained_store) == (
        "event seq 17 (ins-p1-je2) was altered: its content no longer matches its hash"
    )


def test_row_inserted_with_a_correct_looking_hash_belongs_to_no_batch(chained_store: Path) -> None:
    tamper(chained_store, inserted_copy(14, new_seq=17, batch_id=3, row_hash=row_hash_sql()))
    assert first_broken_link(chained_store) == (
        "event seq 17 belongs to no sealed batch: it was inserted outside the API"
    )


def test_row_inserted_inside_a_sealed_batch_is_named_by_that_batch(chained_store: Path) -> None:
    tamper(chained_store, inserted_copy(14, new_seq=5, batch_id=1, row_hash=row_hash_sql()))
    assert first_broken_link(chained_store) == (
        "batch 1 should hold 14 events (seq 1–14) but holds 15: events were deleted or inserted"
    )


def test_batches_with_swapped_ids_are_out_of_order(chained_store: Path) -> None:
    tamper(chained_store, "UPDATE batches SET batch_id = 5 - batch_id WHERE batch_id IN (2, 3)")
    assert first_broken_link(chained_store).startswith(
        "batch 3 is out of order: the chain breaks before it (expected batch 2 starting at seq 15, linked to "
    )


def test_batches_with_swapped_prev_hashes_do_not_link(chained_store: Path) -> None:
    tamper(
        chained_store,
        "CREATE TEMP TABLE old AS SELECT batch_id, prev_hash FROM batches",
        """UPDATE batches SET prev_hash = (SELECT prev_hash FROM old WHERE old.batch_id = 5 - batches.batch_id)
           WHERE batch_id IN (2, 3)""",
    )
    assert first_broken_link(chained_store).startswith(
        "batch 2 does not link to the batch before it: the chain breaks before it (expected batch 2 starting at seq 15"
    )


def test_batches_with_swapped_seq_ranges_are_out_of_order(chained_store: Path) -> None:
    tamper(
        chained_store,
        """UPDATE batches SET first_seq = 31 - first_seq, last_seq = 31 - last_seq WHERE batch_id IN (2, 3)""",
    )
    assert first_broken_link(chained_store).startswith("batch 3 is out of order: the chain breaks before it")


def test_edited_batch_metadata_is_named_by_batch(chained_store: Path) -> None:
    tamper(chained_store, "UPDATE batches SET author = 'mallory' WHERE batch_id = 2")
    assert first_broken_link(chained_store) == "batch 2 was altered: its metadata no longer matches its hash"


def test_every_problem_is_listed_after_the_first(chained_store: Path) -> None:
    tamper(
        chained_store,
        "UPDATE events SET value = 5 WHERE seq = 5",
        "UPDATE events SET note = 'x' WHERE seq = 15",
    )
    result = run_cli("verify", "--store", chained_store, "--json")
    report = json.loads(result.stdout)
    assert (result.exit_code, report["ok"], report["problems"]) == (
        7,
        False,
        [
            "event seq 5 (p1-crp1) was altered: its content no longer matches its hash",
            "event seq 15 (p1-crp2) was altered: its content no longer matches its hash",
        ],
    )


def test_removing_the_last_batch_changes_the_head_hash(chained_store: Path) -> None:
    """Cutting off the tail leaves a valid shorter chain: only the head hash, kept
    elsewhere, shows it."""
    before = json.loads(run_cli("verify", "--store", chained_store, "--json").stdout)["head_hash"]
    tamper(chained_store, "DELETE FROM events WHERE seq = 16", "DELETE FROM batches WHERE batch_id = 3")
    after = json.loads(run_cli("verify", "--store", chained_store, "--json").stdout)["head_hash"]
    assert after != before


META_EDIT = (
    "the store's metadata (format, schema version, time zone or creation) was altered: "
    "batch 1 no longer links to it"
)


def test_edited_time_zone_breaks_the_link_to_the_first_batch(chained_store: Path) -> None:
    tamper(chained_store, "UPDATE meta SET value = 'Europe/Madrid' WHERE key = 'timezone'")
    assert first_broken_link(chained_store) == META_EDIT


def test_a_schema_version_edited_back_to_an_older_one_is_caught(chained_store: Path) -> None:
    """Schema 2 hashes times as written: a store passed off as one would derive other ids."""
    tamper(chained_store, "UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    assert first_broken_link(chained_store) == META_EDIT


def test_a_second_time_zone_row_is_caught(chained_store: Path) -> None:
    tamper(chained_store, "INSERT INTO meta VALUES ('timezone', 'Asia/Tokyo')")
    assert first_broken_link(chained_store) == META_EDIT
