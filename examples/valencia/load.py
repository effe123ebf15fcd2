"""Load the synthetic Valencia cohort into a new store.

Creates the store (time zone Europe/Madrid), ingests ``events.csv`` as one batch, then
applies ``amendments.json`` one by one through the library (``timeline.ingest.correct`` and
``timeline.ingest.retract``), each with its own author and reason, and verifies the hash
chain. It prints the moment at which the ingest batch was recorded: reading the store
``--as-known-at`` that moment shows the record as it stood before the amendments.

    python examples/valencia/load.py --store /tmp/valencia.duckdb
    python -m examples.valencia.load --store /tmp/valencia.duckdb
    python examples/valencia/load.py --store /tmp/valencia.duckdb --replace   # load it afresh
    timeline events V09 --store /tmp/valencia.duckdb --kind joint_exam --history

A store that is already there is not overwritten unless ``--replace`` is given (and then only a
timeline store not in use: the new one is built beside it and moved onto it once loaded, so a
failed load leaves the old one). A problem is one line on stderr, ``error: …``, with the exit
code the ``timeline`` command line gives it (3: a store or directory that is not there or not
a store; 4: a store in use; 6: a file rejected; 7: a broken hash chain).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from timeline.errors import IntegrityError, StoreError, TimelineError, replacing
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
    replace: bool = False,
) -> Loaded:
    """Create a store at ``store_path`` (which must not exist, unless ``replace``: then a
    timeline store there, not in use, is replaced once the new one is loaded), ingest, amend,
    verify."""
    target = Path(store_path)
    if not replace or not target.exists():
        return _load(target, target, events, amendments, author, timezone)
    try:  # only a timeline store, and not one another process has open
        Store.open(target, write=True).close()
    except StoreError as exc:
        raise type(exc)(f"not replaced: {exc}") from exc
    with replacing(target) as tmp:  # built beside it, moved onto it once loaded
        loaded = _load(tmp, target, events, amendments, author, timezone)
    return loaded


def _load(path: Path, target: Path, events: Path, amendments: Path, author: str, timezone: str) -> Loaded:
    """Load into ``path``, a store named ``target`` once loaded; a load that fails or is
    interrupted removes the store it created (a half-loaded example is no example)."""
    store = Store.create(path, timezone=timezone)
    try:
        with store:
            return _fill(store, target, events, amendments, author)
    except BaseException:
        for made in (path, path.with_name(path.name + ".wal")):
            made.unlink(missing_ok=True)
        raise


def _fill(store: Store, target: Path, events: Path, amendments: Path, author: str) -> Loaded:
    result = ingest_file(store, events, author=author)
    row = store.con.execute(
        "SELECT recorded_at FROM batches WHERE batch_id = ?", [result.batch_id]
    ).fetchone()
    assert row is not None
    ingested_at: datetime = row[0]
    n = apply_amendments(store, read_amendments(amendments))
    report = verify(store)
    if not report.ok:
        raise IntegrityError(f"hash chain broken after loading: {report.first_broken_link}")
    return Loaded(target, result.added, n, ingested_at, report.head_hash)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Load the synthetic Valencia cohort into a new timeline store."
    )
    parser.add_argument("--store", required=True, type=Path, help="path of the store to create")
    parser.add_argument(
        "--replace",
        action="store_true",
        help="replace a timeline store already at that path (kept if the load fails)",
    )
    args = parser.parse_args(argv)
    try:
        loaded = load(args.store, replace=args.replace)
    except TimelineError as exc:
        # as the command line says it: one line, its details under it, the same exit code
        there = isinstance(exc, StoreError) and not args.replace and args.store.is_file()
        hint = ": give --replace to load the example afresh into it" if there else ""
        print(f"error: {exc}{hint}", file=sys.stderr)
        for line in exc.details():
            print(f"  {line}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    print(f"{loaded.store}: {loaded.events} events ingested, {loaded.amendments} amendments applied")
    print(f"before the amendments: --as-known-at {loaded.ingested_at.isoformat()}")
    print(f"hash chain verified, head {loaded.head_hash}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
