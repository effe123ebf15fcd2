"""Load the synthetic Valencia cohort into a new store.

Creates the store (time zone Europe/Madrid), ingests ``events.csv`` as one batch, then
applies ``amendments.json`` one by one through the library (``timeline.ingest.correct`` and
``timeline.ingest.retract``), each with its own author and reason, and verifies the hash
chain. It prints the moment at which the ingest batch was recorded: reading the store
``--as-known-at`` that moment shows the record as it stood before the amendments.

    python examples/valencia/load.py --store /tmp/valencia.duckdb
    python -m examples.valencia.load --store /tmp/valencia.duckdb
    timeline events V09 --store /tmp/valencia.duckdb --kind joint_exam --history
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from timeline.ingest import correct, ingest_file, retract
from timeline.integrity import verify
from timeline.store import Store

HERE = Path(__file__).resolve().parent
EVENTS = HERE / "events.csv"
AMENDMENTS = HERE / "amendments.json"
INGEST_AUTHOR = "valencia chart review (data entry)"
TIMEZONE = "Europe/Madrid"


@dataclass(frozen=True)
class Loaded:
    store: Path
    events: int
    amendments: int
    ingested_at: datetime  # recorded_at of the ingest batch: as-known-at this, no amendment is visible
    head_hash: str


def read_amendments(path: Path = AMENDMENTS) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = json.loads(path.read_text(encoding="utf-8"))["amendments"]
    return items


def apply_amendments(store: Store, items: Sequence[dict[str, Any]]) -> int:
    for a in items:
        if a["op"] == "correct":
            correct(store, a["event_id"], dict(a["set"]), reason=a["reason"], author=a["author"])
        elif a["op"] == "retract":
            retract(store, a["event_id"], reason=a["reason"], author=a["author"])
        else:
            raise ValueError(f"unknown amendment op {a['op']!r}")
    return len(items)


def load(
    store_path: str | Path,
    *,
    events: Path = EVENTS,
    amendments: Path = AMENDMENTS,
    author: str = INGEST_AUTHOR,
    timezone: str = TIMEZONE,
) -> Loaded:
    """Create a store at ``store_path`` (which must not exist), ingest, amend, verify."""
    with Store.create(store_path, timezone=timezone) as store:
        result = ingest_file(store, events, author=author)
        row = store.con.execute(
            "SELECT recorded_at FROM batches WHERE batch_id = ?", [result.batch_id]
        ).fetchone()
        assert row is not None
        ingested_at: datetime = row[0]
        n = apply_amendments(store, read_amendments(amendments))
        report = verify(store)
        if not report.ok:
            raise RuntimeError(f"hash chain broken after loading: {report.first_broken_link}")
        return Loaded(Path(store_path), result.added, n, ingested_at, report.head_hash)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Load the synthetic Valencia cohort into a new timeline store."
    )
    parser.add_argument("--store", required=True, type=Path, help="path of the store to create")
    args = parser.parse_args(argv)
    loaded = load(args.store)
    print(f"{loaded.store}: {loaded.events} events ingested, {loaded.amendments} amendments applied")
    print(f"before the amendments: --as-known-at {loaded.ingested_at.isoformat()}")
    print(f"hash chain verified, head {loaded.head_hash}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
