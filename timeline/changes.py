"""What changed in a store between two moments, across patients: the corrections, retractions
and re-assertions of events (an event retracted, then ingested again), and the batches written.

A report made at high-water A and the record at B differ by exactly the versions with seq in
(A, B]; this module lists them with who, when and why, and, for each, the fields that changed
(as given, before → after). Reading only: nothing here writes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from timeline import events

if TYPE_CHECKING:
    from timeline.store import Store

# what a version after an event's first did to it: its op, or `reassert` (ingest asserted a
# retracted event again)
OPS = ("correct", "retract", "reassert")


@dataclass(frozen=True)
class FieldChange:
    """One native field of an event, as given, in the version before and in the change."""

    field: str
    before: Any
    after: Any


@dataclass(frozen=True)
class Change:
    """A version of an event after its first: a correction, a retraction, or a re-assertion
    after a retraction. ``previous_seq``: the version it followed; ``event``: that version,
    described as `timeline events` does; ``fields``: what changed (none for a retraction)."""

    seq: int
    batch_id: int
    recorded_at: datetime  # UTC
    author: str
    reason: str | None
    op: str
    patient_id: str
    event_id: str
    kind: str
    code: str | None
    previous_seq: int
    event: str
    fields: list[FieldChange] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = dict(self.__dict__)
        data["fields"] = [f.__dict__ for f in self.fields]
        return data


@dataclass(frozen=True)
class Batch:
    """A batch as the store recorded it: what it did (ingest, correct, retract), its seqs,
    when (UTC), who and why, and for an ingested file its name as given and the SHA-256 of
    the bytes read (``source_sha256``; None for a correction, a retraction, or rows given in
    Python)."""

    batch_id: int
    op: str
    first_seq: int
    last_seq: int
    events: int
    recorded_at: datetime
    author: str
    source_file: str | None
    source_sha256: str | None
    reason: str | None


def changes(store: Store, since: int, until: int, patients: list[str] | None = None) -> list[Change]:
    """Every version with seq in (``since``, ``until``] that is not an event's first: the
    corrections, retractions and re-assertions recorded then, in seq order, optionally of
    ``patients`` only."""
    from timeline import registry
    from timeline.ingest import _native_from_stored
    from timeline.summary import describe

    where = "" if patients is None else "AND patient_id IN (SELECT unnest(?::VARCHAR[]))"
    params: list[Any] = [until, until] + ([patients] if patients is not None else []) + [since]
    # The events with more than one version are those with a correction or a retraction: a
    # version after an event's first is one of those or a re-assertion, which only an event
    # whose current version is a retraction gets (ingest's _versions). Found on the rows of
    # corrections and retractions (few, and none in row groups of assertions alone, which the
    # op column's statistics skip), not by grouping every stored event by its id (0.7 s at
    # 2.7M events, for a store never changed).
    cur = store.con.execute(
        f"""WITH later AS (
                SELECT *, lag(seq) OVER (PARTITION BY event_id ORDER BY seq) AS previous_seq
                FROM events
                WHERE seq <= ? AND event_id IN (
                    SELECT event_id FROM events WHERE seq <= ? AND op <> 'assert')
                {where})
            SELECT * FROM later WHERE seq > ? AND previous_seq IS NOT NULL ORDER BY seq""",
        params,
    )
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, values, strict=True)) for values in cur.fetchall()]
    if not rows:
        return []
    cur = store.con.execute(
        "SELECT * FROM events WHERE seq IN (SELECT unnest(?::BIGINT[]))", [[r["previous_seq"] for r in rows]]
    )
    names = [d[0] for d in cur.description]
    previous = {values[0]: dict(zip(names, values, strict=True)) for values in cur.fetchall()}
    book = registry.codebook(store)
    found: list[Change] = []
    for row in rows:
        before = previous[row["previous_seq"]]
        op = "reassert" if row["op"] not in ("correct", "retract") else row["op"]
        diff: list[FieldChange] = []
        if op != "retract":
            old, new = _native_from_stored(before), _native_from_stored(row)
            diff = [
                FieldChange(name, old.get(name), new.get(name))
                for name in events.NATIVE_COLUMNS
                if old.get(name) != new.get(name)
            ]
        found.append(
            Change(
                seq=row["seq"], batch_id=row["batch_id"], recorded_at=row["recorded_at"], author=row["author"],
                reason=row["change_reason"], op=op, patient_id=row["patient_id"], event_id=row["event_id"],
                kind=row["kind"], code=row["code"], previous_seq=row["previous_seq"],
                event=describe(before, book), fields=diff,
            )
        )  # fmt: skip
    return found


def batches(store: Store, since: int, until: int) -> list[Batch]:
    """The batches written with seqs in (``since``, ``until``], in order."""
    cur = store.con.execute(
        """SELECT batch_id, op, first_seq, last_seq, n_events, recorded_at, author, source_file,
                  source_sha256, reason
           FROM batches WHERE first_seq > ? AND last_seq <= ? ORDER BY batch_id""",
        [since, until],
    )
    return [Batch(*values) for values in cur.fetchall()]
