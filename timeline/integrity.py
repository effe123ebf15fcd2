"""Tamper evidence: a hash on every row, a digest per batch, batches chained by hash.

``row_hash = sha256(JSON array of every other column's value, in column order)``. A batch's
``events_digest`` is a two-level tree over its rows' hashes in seq order (chunks of
65,536 rows, so no string grows with the batch), and
``batch_hash = sha256(prev_hash | batch metadata | events_digest)``; the first batch's
``prev_hash`` is, from schema 3, a hash of the store's own metadata (format, schema version,
time zone, creation), so editing the ``meta`` table breaks the chain too. ``verify``
recomputes all of it and names the first broken link. Anchor the head hash it prints
somewhere outside the store to detect a rewrite of the whole chain.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import duckdb

from timeline.store import BATCH_COLUMNS, EVENT_COLUMNS, GENESIS_HASH, QUALIFIER, SCHEMA_VERSION, Store

CHUNK = 65536
# Chunks digested by one query of events_digest. A query holds its chunks' text (4 MB a
# chunk) in DuckDB and in Python: 16 a query raised a 2.7M-event ingest's peak RSS from ~640
# to ~800 MiB for no measurable time (digest CPU 1.0-1.3 s with 1 a query, 1.4-1.5 s with 16;
# benchmarks/README.md, ingest, round 27)
CHUNKS_A_QUERY = 1


def row_hash_sql(alias: str = "", schema: str = SCHEMA_VERSION, qualifier: bool = True) -> str:
    """SQL expression computing a row's hash from its other columns.

    The values are serialised as a JSON array in column order (injective: strings are
    quoted and escaped, NULL is ``null``). Stores of schema 1 serialised a JSON object,
    column names included, which is twice the bytes to hash; they keep doing so.

    A censored value's qualifier (``value_qualifier``) is hashed only when set, after the
    other columns: a row without one hashes as it did before the column existed, so every
    existing row's hash, and the chain over them, is unchanged. ``qualifier=False``: the
    store has no such column (made before it)."""
    p = f"{alias}." if alias else ""
    cols = [c for c in EVENT_COLUMNS if c not in ("row_hash", QUALIFIER)]
    q = f"{p}{QUALIFIER}"
    if schema == "1":
        parts = ", ".join(f"{c} := {p}{c}" for c in cols)
        if not qualifier:
            return f"sha256(to_json(struct_pack({parts})))"
        return (
            f"CASE WHEN {q} IS NULL THEN sha256(to_json(struct_pack({parts}))) "
            f"ELSE sha256(to_json(struct_pack({parts}, {QUALIFIER} := {q}))) END"
        )
    values = ", ".join(p + c for c in cols)
    if not qualifier:
        return f"sha256(json_array({values})::VARCHAR)"
    return (
        f"CASE WHEN {q} IS NULL THEN sha256(json_array({values})::VARCHAR) "
        f"ELSE sha256(json_array({values}, {q})::VARCHAR) END"
    )


def events_digest_sql(where: str) -> str:
    """SQL computing the digest of the rows matching ``where`` (over ``events``)."""
    return f"""
        SELECT coalesce(sha256(string_agg(h, '' ORDER BY chunk)), sha256('')) FROM (
            SELECT seq // {CHUNK} AS chunk, sha256(string_agg(row_hash, '' ORDER BY seq)) AS h
            FROM events WHERE {where} GROUP BY 1
        )
    """


def events_digest(con: duckdb.DuckDBPyConnection, first_seq: int, last_seq: int) -> str:
    """The digest :func:`events_digest_sql` computes over ``seq BETWEEN first_seq AND
    last_seq``, :data:`CHUNKS_A_QUERY` chunks per query, so memory does not grow with the batch
    (an ordered ``string_agg`` holds its whole input)."""
    hashes: list[str] = []
    for group in range(first_seq // CHUNK, last_seq // CHUNK + 1, CHUNKS_A_QUERY):
        lo = max(first_seq, group * CHUNK)
        hi = min(last_seq, (group + CHUNKS_A_QUERY) * CHUNK - 1)
        # each chunk's text is hashed here: Python's SHA-256 is several times faster than
        # DuckDB's sha256() (the same digest: the text is the rows' hex hashes, ASCII)
        rows = con.execute(
            f"""SELECT seq // {CHUNK} AS chunk, string_agg(row_hash, '' ORDER BY seq) FROM events
                WHERE seq BETWEEN {lo} AND {hi} GROUP BY 1 ORDER BY 1"""
        ).fetchall()
        hashes.extend(hashlib.sha256(str(text).encode()).hexdigest() for _, text in rows if text is not None)
    return hashlib.sha256("".join(hashes).encode()).hexdigest()


# The meta rows the first batch links to (schema 3 on); every one is written by ``init``.
META_KEYS = ("created_at", "created_by", "format", "schema_version", "timezone")


def genesis_hash(con: duckdb.DuckDBPyConnection) -> str:
    """What the first batch links to: zeros in stores of schema 1 and 2; from schema 3 a
    hash of the metadata rows in ``META_KEYS`` (read as they are now, so an edit shows)."""
    row = con.execute("SELECT max(value) FROM meta WHERE key = 'schema_version'").fetchone()
    if row is None or row[0] in (None, "1", "2"):
        return GENESIS_HASH
    keys = ", ".join(f"'{k}'" for k in META_KEYS)
    digest = con.execute(
        f"""SELECT sha256(coalesce(string_agg(json_array(key, value)::VARCHAR, ',' ORDER BY key, value), ''))
            FROM meta WHERE key IN ({keys})"""
    ).fetchone()
    assert digest is not None
    return str(digest[0])


def batch_hash_sql() -> str:
    """SQL expression for a batch row's hash (columns named as in ``batches``)."""
    meta = ", ".join(
        f"{c} := {c}" for c in BATCH_COLUMNS if c not in ("batch_hash", "prev_hash", "events_digest")
    )
    return f"sha256(prev_hash || '|' || to_json(struct_pack({meta})) || '|' || events_digest)"


def seal_batch(
    con: duckdb.DuckDBPyConnection,
    *,
    batch_id: int,
    op: str,
    first_seq: int,
    last_seq: int,
    recorded_at: object,
    author: str,
    source_file: str | None,
    source_sha256: str | None,
    reason: str | None,
) -> str:
    """Insert the batch row for events already inserted in this transaction."""
    prev = con.execute("SELECT batch_hash FROM batches ORDER BY batch_id DESC LIMIT 1").fetchone()
    prev_hash = prev[0] if prev else genesis_hash(con)
    digest = events_digest(con, first_seq, last_seq)
    con.execute(
        f"""
        INSERT INTO batches
        SELECT *, {batch_hash_sql()} AS batch_hash FROM (
            SELECT ?::BIGINT AS batch_id, ?::VARCHAR AS op, ?::BIGINT AS first_seq,
                   ?::BIGINT AS last_seq, ?::BIGINT AS n_events, ?::TIMESTAMP AS recorded_at,
                   ?::VARCHAR AS author, ?::VARCHAR AS source_file,
                   ?::VARCHAR AS source_sha256, ?::VARCHAR AS reason,
                   ?::VARCHAR AS events_digest, ?::VARCHAR AS prev_hash
        )
        """,
        [
            batch_id,
            op,
            first_seq,
            last_seq,
            last_seq - first_seq + 1,
            recorded_at,
            author,
            source_file,
            source_sha256,
            reason,
            digest,
            prev_hash,
        ],
    )
    row = con.execute("SELECT batch_hash FROM batches WHERE batch_id = ?", [batch_id]).fetchone()
    assert row is not None
    return str(row[0])


@dataclass
class VerifyReport:
    events: int = 0
    batches: int = 0
    codes: int = 0  # rows of the register of a site's codes (timeline codes add)
    head_hash: str = GENESIS_HASH
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_broken_link(self) -> str | None:
        return self.problems[0] if self.problems else None


def verify(store: Store) -> VerifyReport:
    """Recompute every hash and link. Problems come in order: earliest seq/batch first."""
    con = store.con
    report = VerifyReport()
    counts = con.execute("SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM batches)").fetchone()
    assert counts is not None
    report.events, report.batches = int(counts[0]), int(counts[1])
    found: list[tuple[int, int, str]] = []  # (seq or batch position, tie, message)

    for seq, event_id in con.execute(
        f"SELECT seq, event_id FROM events WHERE row_hash IS DISTINCT FROM {row_hash_sql(schema=store.schema_version, qualifier=store.has_qualifier)} ORDER BY seq LIMIT 20"
    ).fetchall():
        found.append(
            (seq, 0, f"event seq {seq} ({event_id}) was altered: its content no longer matches its hash")
        )

    for seq, n in con.execute(
        "SELECT seq, count(*) FROM events GROUP BY seq HAVING count(*) > 1 ORDER BY seq LIMIT 20"
    ).fetchall():
        found.append((seq, 1, f"event seq {seq} appears {n} times: rows were inserted outside the API"))

    for seq, recorded, covering in con.execute(
        """SELECT e.seq, e.batch_id,
                  (SELECT min(c.batch_id) FROM batches c WHERE e.seq BETWEEN c.first_seq AND c.last_seq)
           FROM events e ANTI JOIN batches b
           ON e.seq BETWEEN b.first_seq AND b.last_seq AND e.batch_id = b.batch_id
           ORDER BY e.seq LIMIT 20"""
    ).fetchall():
        if covering is None:
            found.append(
                (seq, 2, f"event seq {seq} belongs to no sealed batch: it was inserted outside the API")
            )
        else:  # a consequence of renumbered batches: reported after the batch's own problem
            found.append(
                (
                    seq,
                    7,
                    f"event seq {seq} records batch {recorded} but lies in batch {covering}'s range: batches were renumbered or reordered",
                )
            )

    genesis = genesis_hash(con)
    prev_hash, prev_last = genesis, 0
    batches = con.execute(
        f"""SELECT batch_id, first_seq, last_seq, n_events, prev_hash, batch_hash,
                   {batch_hash_sql()} AS recomputed, events_digest
            FROM batches ORDER BY first_seq, batch_id"""
    ).fetchall()
    for position, (
        batch_id,
        first_seq,
        last_seq,
        n_events,
        stored_prev,
        stored_hash,
        recomputed,
        digest,
    ) in enumerate(batches, start=1):
        anchor = first_seq
        if position == 1 and batch_id == 1 and first_seq == 1 and stored_prev != genesis:
            found.append(
                (
                    anchor,
                    3,
                    "the store's metadata (format, schema version, time zone or creation) was altered: "
                    "batch 1 no longer links to it",
                )
            )
        elif batch_id != position or first_seq != prev_last + 1 or stored_prev != prev_hash:
            in_place = batch_id == position and first_seq == prev_last + 1
            what = "does not link to the batch before it" if in_place else "is out of order"
            found.append(
                (
                    anchor,
                    3,
                    f"batch {batch_id} {what}: the chain breaks before it (expected batch {position} starting at seq {prev_last + 1}, linked to {prev_hash[:12]}…)",
                )
            )
        if stored_hash != recomputed:
            found.append(
                (anchor, 4, f"batch {batch_id} was altered: its metadata no longer matches its hash")
            )
        actual = con.execute(
            f"SELECT count(*) FROM events WHERE seq BETWEEN {first_seq} AND {last_seq}"
        ).fetchone()
        assert actual is not None
        if actual[0] != n_events:
            found.append(
                (
                    anchor,
                    5,
                    f"batch {batch_id} should hold {n_events} events (seq {first_seq}–{last_seq}) but holds {actual[0]}: events were deleted or inserted",
                )
            )
        else:
            if events_digest(con, first_seq, last_seq) != digest:
                found.append((anchor, 6, f"batch {batch_id}'s events no longer match its digest"))
        prev_hash, prev_last = stored_hash, last_seq
    report.head_hash = prev_hash
    found.sort()
    report.problems = [m for _, _, m in found]
    from timeline.registry import broken_links

    report.codes, in_register = broken_links(store)
    report.problems += in_register
    return report
