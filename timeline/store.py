"""The immutable event log in one DuckDB file.

The store is append-only: the only statements that touch ``events`` and ``batches`` are
``CREATE TABLE`` and ``INSERT``. A correction or retraction appends a new version of the
event, which carries the same ``event_id``; the version a reader sees is the latest one
whose ``seq`` is at or below the high-water mark of its ``as_known_at`` moment.

Every row carries a hash of its whole content; every batch a digest of its rows chained
to the previous batch (see :mod:`timeline.integrity`).
"""

from __future__ import annotations

import os
import re
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timeline.duck import duckdb

if TYPE_CHECKING:
    from zoneinfo import ZoneInfo

from timeline import __version__
from timeline.errors import StoreError, StoreLockedError, UnknownEventError, UnknownPatientError, UsageError

STORE_FORMAT = "timeline-store"
# 2: row and content hashes serialise a JSON array (1: a JSON object); 3: the content hash
# reads times as parsed, not as written (see timeline.ingest.content_hash_sql)
SCHEMA_VERSION = "3"
SCHEMA_VERSIONS = ("1", "2", "3")
DEFAULT_STORE = "timeline.duckdb"

# Stored columns of ``events`` in order. The native columns keep their names; the
# measured value/unit/dose/reference range are canonical, their originals kept beside.
EVENT_COLUMNS: dict[str, str] = {
    "seq": "BIGINT NOT NULL",
    "batch_id": "BIGINT NOT NULL",
    "op": "VARCHAR NOT NULL",  # assert | correct | retract
    "event_id": "VARCHAR NOT NULL",
    "patient_id": "VARCHAR NOT NULL",
    "kind": "VARCHAR NOT NULL",
    "occurred_at": "TIMESTAMP NOT NULL",
    "occurred_precision": "VARCHAR NOT NULL",
    "ended_at": "TIMESTAMP",
    "ended_precision": "VARCHAR",
    "code": "VARCHAR",
    "value": "DOUBLE",
    # a censored value's qualifier (<, <=, >, >=: "<5" is below the lab's limit of 5), NULL for
    # an exact value; the hashes cover it only when set (stores made before it lack the column)
    "value_qualifier": "VARCHAR",
    "unit": "VARCHAR",
    "ref_low": "DOUBLE",
    "ref_high": "DOUBLE",
    "orig_value": "DOUBLE",
    "orig_unit": "VARCHAR",
    "orig_ref_low": "DOUBLE",
    "orig_ref_high": "DOUBLE",
    "present": "BOOLEAN",
    "sex": "VARCHAR",
    "drug": "VARCHAR",
    "dose": "DOUBLE",
    "dose_unit": "VARCHAR",
    "orig_dose": "DOUBLE",
    "orig_dose_unit": "VARCHAR",
    "route": "VARCHAR",
    "frequency": "VARCHAR",
    "active_joints": "INTEGER",
    "limited_joints": "INTEGER",
    "term": "VARCHAR",
    "grade": "INTEGER",
    "serious": "BOOLEAN",
    "action": "VARCHAR",
    "reason": "VARCHAR",
    "note": "VARCHAR",
    "recorded_at": "TIMESTAMP NOT NULL",
    "author": "VARCHAR NOT NULL",
    "source_file": "VARCHAR",
    "source_row": "BIGINT",
    "change_reason": "VARCHAR",
    "content_hash": "VARCHAR NOT NULL",
    "row_hash": "VARCHAR NOT NULL",
}

QUALIFIER = "value_qualifier"
QUALIFIERS = ("<", "<=", ">", ">=")
# The columns of ``events`` in a store made before censored values: every one but the
# qualifier. Such a store opens and takes events as before, but no censored value (the
# library never alters a table: see tests/test_store_immutability.py).
LEGACY_EVENT_COLUMNS: dict[str, str] = {k: v for k, v in EVENT_COLUMNS.items() if k != QUALIFIER}

# A column current_sql can add to the stored ones: the seq of the version that asserted the
# event (its first version; an event retracted and asserted again, its new assertion). Events
# of one instant are in the order they were asserted: a correction keeps its event's place.
ASSERTED_SEQ = "asserted_seq"

BATCH_COLUMNS: dict[str, str] = {
    "batch_id": "BIGINT NOT NULL",
    "op": "VARCHAR NOT NULL",  # ingest | correct | retract
    "first_seq": "BIGINT NOT NULL",
    "last_seq": "BIGINT NOT NULL",
    "n_events": "BIGINT NOT NULL",
    "recorded_at": "TIMESTAMP NOT NULL",
    "author": "VARCHAR NOT NULL",
    "source_file": "VARCHAR",
    "source_sha256": "VARCHAR",
    "reason": "VARCHAR",
    "events_digest": "VARCHAR NOT NULL",
    "prev_hash": "VARCHAR NOT NULL",
    "batch_hash": "VARCHAR NOT NULL",
}

# The register of a site's codes (timeline.registry), created by its first `timeline codes add`
CODE_COLUMNS: dict[str, str] = {
    "seq": "BIGINT NOT NULL",
    "kind": "VARCHAR NOT NULL",
    "code": "VARCHAR NOT NULL",
    "name": "VARCHAR NOT NULL",
    "unit": "VARCHAR NOT NULL",
    "low": "DOUBLE",
    "high": "DOUBLE",
    "molar_mass": "DOUBLE",
    "factor_low": "DOUBLE",
    "factor_high": "DOUBLE",
    "per_day": "DOUBLE",  # a dosing frequency's doses per day
    "recorded_at": "TIMESTAMP NOT NULL",
    "author": "VARCHAR NOT NULL",
    "source_file": "VARCHAR NOT NULL",
    "source_line": "INTEGER NOT NULL",
    "source_sha256": "VARCHAR NOT NULL",
    # a chain, as the batches': each row's hash covers the row and the hash of the row before
    "prev_hash": "VARCHAR NOT NULL",
    "row_hash": "VARCHAR NOT NULL",
}

GENESIS_HASH = "0" * 64
_LOCK_RE = re.compile(r"\(PID (\d+)\)")

# Every connection this process has open to a store, for interrupt_queries.
_CONNECTIONS: weakref.WeakSet[duckdb.DuckDBPyConnection] = weakref.WeakSet()


def interrupt_queries() -> None:
    """Stop the query running on each open store connection (for Ctrl-C: call it from a
    SIGINT handler). DuckDB notices a SIGINT itself only at some points of a query and may
    let the query run on; an interrupt of the connection stops it. A connection that is not
    running a query is not affected: its next query runs."""
    for con in list(_CONNECTIONS):
        with suppress(duckdb.Error):  # closed meanwhile
            con.interrupt()


def resolve_store_path(path: str | os.PathLike[str] | None) -> Path:
    """--store beats $TIMELINE_STORE beats ./timeline.duckdb."""
    if path is not None:
        return Path(path)
    return Path(os.environ.get("TIMELINE_STORE") or DEFAULT_STORE)


def utc_now() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


_SEQ_RE = re.compile(r"seq\s*[:=]?\s*(\d+)", re.IGNORECASE)


def parse_moment(text: str) -> datetime:
    """A user's ``as_known_at``: a date (end of that day, UTC) or an ISO date-time (UTC
    unless it carries an offset), in the forms of :mod:`timeline.moments`."""
    from timeline.moments import DAY_RE, LOCAL_TIME_RE, OFFSET_TIME_RE

    s = text.strip()
    try:
        if DAY_RE.fullmatch(s):
            return datetime.combine(date.fromisoformat(s), datetime.max.time())
        if not (LOCAL_TIME_RE.fullmatch(s) or OFFSET_TIME_RE.fullmatch(s)):
            raise ValueError(s)
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
        if dt.tzinfo is not None:
            dt = dt.astimezone(UTC).replace(tzinfo=None)
    except ValueError as exc:
        raise UsageError(
            f"--as-known-at {text!r} is not a date, an ISO date-time or seq:N (a manifest's high_water)"
        ) from exc
    except OverflowError as exc:
        raise UsageError(
            f"--as-known-at {text!r} is out of range (in UTC, before year 1 or after 9999)"
        ) from exc
    return dt


@dataclass(frozen=True)
class StoreInfo:
    path: str
    timezone: str
    created_at: str
    events: int  # current events: each event once, however often corrected; retracted ones not
    versions: int  # stored rows: every assertion, correction and retraction
    retracted: int  # events whose current version is a retraction
    batches: int
    high_water: int
    patients: int  # patients with a current event (as `timeline patients` lists them)


class Store:
    """An open store. Use :meth:`open` or :meth:`create`; close with :meth:`close`."""

    def __init__(
        self,
        con: duckdb.DuckDBPyConnection,
        path: Path,
        writable: bool,
        columns: dict[str, list[str]] | None = None,
        meta: dict[str, str] | None = None,
    ) -> None:
        """``columns``: the store's tables' columns (:func:`_table_columns`), when read already;
        ``meta``: its ``meta`` table (:func:`_meta_table`), when read already."""
        self.con = con
        self.path = path
        self.writable = writable
        self._depth = 0  # transactions open: an inner one joins the outer
        self._heads: dict[int, str] = {}  # head_hash's answers (a batch's hash never changes)
        if meta is None:
            meta = _meta_table(con)
        self.timezone = meta.get("timezone") or "UTC"
        self.schema_version = meta.get("schema_version") or "1"
        # whether ``events`` has the column of a censored value's qualifier (a store made before
        # censored values has not: it reads every value as exact, and takes none censored)
        if columns is None:
            columns = _table_columns(con)
        self.has_qualifier = QUALIFIER in columns.get("events", [])
        # the tables and views of those names it had when opened: what a read-only store has
        # while it is open (a writer waits for its lock)
        self._named = frozenset(columns)

    def column(self, name: str, alias: str = "") -> str:
        """A stored column of ``events`` as SQL (``alias`` its table's, with the dot): in a store
        made before censored values, the qualifier as NULL under its name (every value exact)."""
        if name == QUALIFIER and not self.has_qualifier:
            return f"NULL::VARCHAR AS {QUALIFIER}"
        return alias + name

    @property
    def events_relation(self) -> str:
        """``events`` with every column of :data:`EVENT_COLUMNS` (see :meth:`column`)."""
        return "events" if self.has_qualifier else f"(SELECT *, {self.column(QUALIFIER)} FROM events)"

    @property
    def event_columns(self) -> dict[str, str]:
        """The stored columns of ``events`` in this store (:data:`EVENT_COLUMNS`, or
        :data:`LEGACY_EVENT_COLUMNS` in a store made before censored values)."""
        return EVENT_COLUMNS if self.has_qualifier else LEGACY_EVENT_COLUMNS

    # ---- opening -----------------------------------------------------------------
    @classmethod
    def create(cls, path: str | os.PathLike[str] | None = None, timezone: str = "UTC") -> Store:
        target = resolve_store_path(path)
        try:  # a path that cannot name a file (too long, a directory not searchable) says so
            is_dir, exists, parent = target.is_dir(), target.exists(), target.parent.exists()
        except OSError as exc:
            raise StoreError(f"cannot create {target}: {exc.strerror or exc}") from exc
        if is_dir:
            raise StoreError(f"{target} is a directory: give the store's file name")
        if exists:
            raise StoreError(f"{target} already exists; not overwriting it")
        if not parent:
            raise StoreError(f"directory {target.parent} does not exist")
        _check_timezone(timezone)
        con = _connect(target, read_only=False, wait=0)
        try:
            con.execute("BEGIN")
            cols = ", ".join(f"{k} {v}" for k, v in EVENT_COLUMNS.items())
            con.execute(f"CREATE TABLE events ({cols})")
            bcols = ", ".join(f"{k} {v}" for k, v in BATCH_COLUMNS.items())
            con.execute(f"CREATE TABLE batches ({bcols})")
            con.execute("CREATE TABLE meta (key VARCHAR NOT NULL, value VARCHAR)")
            con.executemany(
                "INSERT INTO meta VALUES (?, ?)",
                [
                    ("format", STORE_FORMAT),
                    ("schema_version", SCHEMA_VERSION),
                    ("created_at", utc_now().isoformat()),
                    ("created_by", f"timeline {__version__}"),
                    ("timezone", timezone),
                ],
            )
            con.execute("COMMIT")
        except BaseException:
            con.close()
            target.unlink(missing_ok=True)
            raise
        return cls(con, target, writable=True)

    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str] | None = None,
        *,
        write: bool = False,
        wait: float = 0,
    ) -> Store:
        target = resolve_store_path(path)
        try:  # a path that cannot name a file (too long, a directory not searchable) says so
            exists, is_dir = target.exists(), target.is_dir()
        except OSError as exc:
            raise StoreError(f"cannot open {target}: {exc.strerror or exc}") from exc
        if not exists:
            # --store given: the command that creates it names it too ($TIMELINE_STORE and the
            # default are read by `timeline init` alike)
            import shlex  # for this message only

            init = "timeline init" if path is None else f"timeline init --store {shlex.quote(str(path))}"
            raise StoreError(f"no store at {target} (create one with `{init}`)")
        if is_dir:
            raise StoreError(f"{target} is a directory, not a store file")
        if target.stat().st_size == 0:  # a copy that never started, or `touch`: nothing to read
            raise StoreError(f"{target} is empty (0 bytes), not a timeline store: restore it from a backup")
        foreign = _foreign_file(target)
        if foreign is not None:
            raise StoreError(f"{target} is not a timeline store: {foreign}")
        if write and not os.access(target.parent, os.W_OK):  # found only at the commit otherwise
            raise StoreError(
                f"cannot write to {target.parent}: DuckDB writes its log ({target.name}.wal) beside the store"
            )
        con = _connect(target, read_only=not write, wait=wait)
        try:
            meta: dict[str, str] | None = _meta_table(con)  # read once: format, zone, schema
        except duckdb.Error as exc:
            if is_damage(exc):
                con.close()
                raise StoreError(damage_message(target, exc)) from exc
            meta = None
        if meta is None or meta.get("format") != STORE_FORMAT:
            con.close()
            raise StoreError(f"{target} is a DuckDB file but not a timeline store")
        try:
            # the tables' columns, read once: whether events has the qualifier, and the shape
            # checked (a query of DuckDB's catalog: ~2–6 ms of `state`'s CPU each)
            columns = _table_columns(con)
            store = cls(con, target, writable=write, columns=columns, meta=meta)
            store._check_shape(columns)
        except BaseException:
            con.close()
            raise
        return store

    def _check_shape(self, columns: dict[str, list[str]]) -> None:
        """The tables and the metadata every command relies on; a store missing one (or with
        an unknown schema version) was damaged or edited by hand. ``columns``: the tables'
        columns (:func:`_table_columns`)."""
        missing = [t for t in ("events", "batches", "meta") if t not in columns]
        if missing:
            raise StoreError(f"{self.path} is damaged: table {', '.join(missing)} is missing")
        for table, expected in (
            ("events", list(self.event_columns)), ("batches", list(BATCH_COLUMNS)), ("codes", list(CODE_COLUMNS))
        ):  # fmt: skip
            if table in columns and columns[table] != expected:
                lost = [c for c in expected if c not in columns[table]]
                extra = [c for c in columns[table] if c not in expected]
                what = (
                    f"column {', '.join(lost)} is missing" if lost
                    else f"column {', '.join(extra)} was added" if extra
                    else "its columns were reordered"
                )  # fmt: skip
                raise StoreError(f"{self.path} is damaged: table {table}'s {what}")
        if self.schema_version not in SCHEMA_VERSIONS:
            raise StoreError(
                f"{self.path} has schema version {self.schema_version!r}, which this timeline "
                f"({__version__}) does not know: a newer timeline wrote it, or it was edited"
            )

    def codes_register(self) -> str | None:
        """What is named ``codes``: "table" (the register of a site's codes, made by the first
        ``codes add``; ``timeline.registry`` checks its shape), "view" (a damaged store), or None.
        A store opened read-only without either, as its catalog said when it was opened, has
        none (no query)."""
        if not self.writable and "codes" not in self._named:
            return None
        found = self.con.execute(
            """SELECT 'table' FROM duckdb_tables() WHERE database_name = current_database()
                 AND schema_name = 'main' AND table_name = 'codes'
               UNION ALL SELECT 'view' FROM duckdb_views() WHERE database_name = current_database()
                 AND schema_name = 'main' AND view_name = 'codes'"""
        ).fetchone()
        return str(found[0]) if found else None

    def zone(self) -> ZoneInfo:
        """The store's time zone (checked where it is used: writing events)."""
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            return ZoneInfo(self.timezone)
        except (ValueError, ZoneInfoNotFoundError):
            raise StoreError(
                f"{self.path} is damaged: its time zone {self.timezone!r} is not a known zone"
            ) from None

    def close(self) -> None:
        _CONNECTIONS.discard(self.con)
        self.con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _meta(self, key: str) -> str | None:
        row = self.con.execute("SELECT value FROM meta WHERE key = ?", [key]).fetchone()
        return None if row is None else str(row[0])

    # ---- system time -------------------------------------------------------------
    def known_at(self, text: str | None) -> datetime | None:
        """A user's ``--as-known-at``: a date or date-time (:func:`parse_moment`), or ``seq:N``
        — the record as it stood when sequence number N was written, the high-water a manifest
        records — as the moment its batch was recorded. N must end a batch (a batch is atomic);
        ``seq:0`` is before anything was written."""
        if text is None:
            return None
        m = _SEQ_RE.fullmatch(text.strip())
        if m is None:
            return parse_moment(text)
        n = int(m.group(1))
        if n == 0:
            return datetime(1, 1, 1)
        row = self.con.execute(
            "SELECT batch_id, first_seq, last_seq, recorded_at FROM batches WHERE ? BETWEEN first_seq AND last_seq",
            [n],
        ).fetchone()
        if row is None:
            raise UsageError(
                f"--as-known-at {text.strip()!r}: no batch holds seq {n} "
                f"(this store's sequence numbers run from 1 to {self.high_water()})"
            )
        batch, first, last, recorded = row
        if n != last:
            raise UsageError(
                f"--as-known-at {text.strip()!r}: seq {n} is inside batch {batch} (seqs {first}–{last}), "
                f"which was written at once: give seq:{last} (with it) or seq:{first - 1} (before it)"
            )
        return recorded  # type: ignore[no-any-return]

    def high_water(self, as_known_at: datetime | None = None) -> int:
        """The last sequence number visible at ``as_known_at`` (default: now)."""
        if as_known_at is None:
            row = self.con.execute("SELECT coalesce(max(last_seq), 0) FROM batches").fetchone()
        else:
            row = self.con.execute(
                "SELECT coalesce(max(last_seq), 0) FROM batches WHERE recorded_at <= ?",
                [as_known_at],
            ).fetchone()
        assert row is not None
        return int(row[0])

    def head_hash(self, high_water: int) -> str:
        """The hash chain's head at ``high_water``: the stored hash of the batch that ends
        there (what ``timeline verify`` prints as the head when that batch is the newest), or
        the chain's start (:func:`timeline.integrity.genesis_hash`) at seq 0. One indexed
        row, not a hash of the store: it names which record a manifest's ``high_water``
        read, so two stores that share the seq but not the history (one cut and written
        again) give different heads. ``verify`` checks it against the rows."""
        if high_water not in self._heads:
            if high_water <= 0:
                from timeline.integrity import genesis_hash

                self._heads[high_water] = genesis_hash(self.con)
            else:
                row = self.con.execute(
                    "SELECT batch_hash FROM batches WHERE last_seq = ?", [high_water]
                ).fetchone()
                self._heads[high_water] = "" if row is None else str(row[0])
        return self._heads[high_water]

    def next_recorded_at(self) -> datetime:
        """Now in UTC, but never earlier than (or equal to) the last batch's time."""
        now = utc_now()
        row = self.con.execute("SELECT max(recorded_at) FROM batches").fetchone()
        last = row[0] if row else None
        if last is not None and now <= last:
            now = last + timedelta(microseconds=1)
        return now

    def info(self) -> StoreInfo:
        """The store's counts, exact and cheap however large it is. An event's versions after
        its first are its corrections and retractions, and the assertions that bring it back
        after a retraction (ingest asserts a stored event again only then): the events are the
        rows less those, and less the events whose last version is a retraction. Only the rows
        of retracted events from the first retraction on are grouped, and the patients with one
        counted, which the ``seq`` bound lets DuckDB skip the row groups before. 2.06M events,
        on a loaded 2-core machine: 15-30 ms unchanged (the counts before, of rows: 9-20 ms);
        with 1% corrected and 0.3% retracted, over 40% of the patients, 28-88 ms, where
        ``count(DISTINCT event_id)`` alone took 165-950 ms."""
        row = self.con.execute(
            """SELECT count(*), count(*) FILTER (WHERE op <> 'assert'), min(seq) FILTER (WHERE op = 'retract'),
                      count(DISTINCT patient_id), (SELECT count(*) FROM batches),
                      (SELECT coalesce(max(last_seq), 0) FROM batches)
               FROM events"""
        ).fetchone()
        assert row is not None
        versions, changes, first_retraction, patients = (int(row[0]), int(row[1]), row[2], int(row[3]))
        again = retracted = gone = 0
        if first_retraction is not None:
            counted = self.con.execute(
                f"""WITH retractions AS (
                       SELECT event_id, min(seq) AS first FROM events WHERE op = 'retract' GROUP BY event_id),
                   since AS MATERIALIZED (
                       SELECT e.event_id, any_value(e.patient_id) AS patient_id,
                              count(*) FILTER (WHERE e.op = 'assert') AS again,
                              arg_max(e.op, e.seq) = 'retract' AS retracted
                       FROM events e JOIN retractions r ON r.event_id = e.event_id AND e.seq >= r.first
                       WHERE e.seq >= {int(first_retraction)} GROUP BY e.event_id),
                   -- a patient all of whose events are retracted: rows less later versions
                   -- (changes, assertions again) are the retracted events
                   touched AS (
                       SELECT patient_id, sum(again) + count(*) FILTER (WHERE retracted) AS known
                       FROM since GROUP BY patient_id HAVING bool_or(retracted)),
                   -- every patient's rows and changes: one grouping of the whole table costs
                   -- less than picking out the touched patients' rows (13 ms against 37 ms)
                   rows AS (
                       SELECT patient_id, count(*) AS n, count(*) FILTER (WHERE op <> 'assert') AS changes
                       FROM events GROUP BY patient_id),
                   gone AS (
                       SELECT patient_id FROM rows JOIN touched USING (patient_id) WHERE n - changes = known)
                   SELECT (SELECT coalesce(sum(again), 0) FROM since),
                          (SELECT count(*) FILTER (WHERE retracted) FROM since),
                          (SELECT count(*) FROM gone)"""
            ).fetchone()
            assert counted is not None
            again, retracted, gone = (int(c) for c in counted)
        return StoreInfo(
            path=str(self.path),
            timezone=self.timezone,
            created_at=self._meta("created_at") or "",
            events=versions - changes - again - retracted,
            versions=versions,
            retracted=retracted,
            batches=int(row[4]),
            high_water=int(row[5]),
            patients=patients - gone,
        )

    # ---- reading -----------------------------------------------------------------
    def versions_sql(self, high_water: int) -> str:
        """SQL for every stored version visible at ``high_water``, each with its status."""
        return f"""
            SELECT e.*,
                   row_number() OVER (PARTITION BY e.event_id ORDER BY e.seq DESC) = 1
                       AS is_latest
            FROM events e WHERE e.seq <= {int(high_water)}
        """

    def current_sql(
        self,
        high_water: int,
        patient_ids: Sequence[str] | None = None,
        *,
        patients_sql: str | None = None,
        kinds: Sequence[str] | None = None,
        columns: Sequence[str] | None = None,
        seq_range: tuple[int, int] | None = None,
    ) -> str:
        """SQL for the current timeline at ``high_water``: the latest version of every
        event that is not retracted. Pruning by patient (a list, or a subquery yielding
        patient_id) and by kind happens first: no correction can change an event's patient
        or kind, so every version of an event shares them. ``columns`` narrows the output
        (the rule engine reads 21 of the 43 columns; copying the rest cost half its time).
        ``seq_range`` (lowest, highest) bounds the versions read: a batch of patients whose
        events lie in that range reads only the row groups holding it.

        ``columns`` may name ``asserted_seq`` (see :data:`ASSERTED_SEQ`): the seq of the
        version that asserted the event, which orders events of one instant. A correction is
        the same event: it keeps the event's place, where its own seq would move the event
        after every other at that instant.

        A version is current when no later version of its event exists at ``high_water``.
        Every later version is a correction or a retraction (a second assertion of an event
        id is a duplicate or a conflict, never stored), so the versions to leave out are
        found from the corrections and retractions alone — few rows — and left out by their
        seq: the event ids of the other rows are never read. (A join of every row to the
        last correction of its event read every event id: finding the first anakinra dose of
        100k patients took 0.24 s and 500 MB of the store's blocks; a window over every row,
        or a correlated ``NOT EXISTS``, which DuckDB decorrelates by hashing every row's
        (event_id, seq), cost more.) With no correction at all, nothing is read for them.
        ``asserted_seq`` follows the same path: a current assertion is its own (``seq``);
        only the current corrections, found among those few rows, look up theirs among the
        versions they supersede."""
        where = f"e.seq <= {int(high_water)}"
        if patient_ids is not None:
            where += " AND e.patient_id IN (" + ", ".join(_quote(p) for p in patient_ids) + ")"
        if patients_sql is not None:
            where += f" AND e.patient_id IN ({patients_sql})"
        if seq_range is not None:
            where += f" AND e.seq BETWEEN {int(seq_range[0])} AND {int(seq_range[1])}"
        if kinds is not None:
            where += " AND e.kind IN (" + ", ".join(_quote(k) for k in kinds) + ")"
        # the versions superseded by a later correction or retraction of their event, each
        # with its op and the seq of that event's last version
        superseded = f"""SELECT e.seq, e.op, l.last_seq FROM events e
                JOIN (SELECT e.event_id, max(e.seq) AS last_seq FROM events e
                      WHERE e.op <> 'assert' AND {where} GROUP BY e.event_id) l
                  ON l.event_id = e.event_id AND e.seq < l.last_seq
                WHERE {where}"""

        def col(c: str) -> str:
            return self.column(c, "e.")

        if columns is None or ASSERTED_SEQ not in columns:
            cols = ", ".join(col(c) for c in columns) if columns else "e.*"
            return f"""
                SELECT {cols} FROM events e
                WHERE {where} AND e.op <> 'retract' AND e.seq NOT IN (SELECT seq FROM ({superseded}))
            """

        def cols_with(asserted: str) -> str:
            return ", ".join(f"{asserted} AS {c}" if c == ASSERTED_SEQ else col(c) for c in columns)

        # A current correction's assertion is the last assertion of its event before it: an
        # event retracted and asserted again (under the right patient) begins anew there.
        return f"""
            WITH tl_old AS MATERIALIZED ({superseded})
            SELECT {cols_with("e.seq")} FROM events e
            WHERE {where} AND e.op = 'assert' AND e.seq NOT IN (SELECT seq FROM tl_old)
            UNION ALL
            SELECT {cols_with("a.asserted")} FROM events e
            JOIN (SELECT last_seq, max(seq) AS asserted FROM tl_old WHERE op = 'assert' GROUP BY last_seq) a
              ON a.last_seq = e.seq
            WHERE {where} AND e.op = 'correct'
        """

    def events(
        self,
        patient_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        kinds: Sequence[str] | None = None,
        as_known_at: datetime | None = None,
        history: bool = False,
        high_water: int | None = None,
    ) -> list[dict[str, Any]]:
        """A patient's events ordered by (occurred_at, asserted_seq): events of one instant
        in the order they were asserted, however they were corrected since. With
        ``history``, every version visible at ``as_known_at``, each marked current,
        superseded or retracted. ``high_water``: the versions up to this seq instead (a
        session's, fixed when it began). Each row carries ``asserted_seq`` (see
        :data:`ASSERTED_SEQ`)."""
        hw = self.high_water(as_known_at) if high_water is None else high_water
        params: list[Any] = [patient_id]
        cond = "patient_id = ?"
        if start is not None:
            cond += " AND occurred_at >= ?"
            params.append(start)
        if end is not None:
            cond += " AND occurred_at <= ?"
            params.append(end)
        if kinds:
            cond += " AND kind IN (" + ", ".join("?" for _ in kinds) + ")"
            params.extend(kinds)
        if history:
            sql = f"""
                WITH v AS (
                    SELECT *,
                        row_number() OVER (PARTITION BY event_id ORDER BY seq DESC) AS rn,
                        first_value(op) OVER (PARTITION BY event_id ORDER BY seq DESC) AS last_op,
                        max(seq) FILTER (WHERE op = 'assert')
                            OVER (PARTITION BY event_id ORDER BY seq) AS {ASSERTED_SEQ}
                    FROM events WHERE seq <= {hw} AND patient_id = ?
                )
                SELECT * EXCLUDE (rn, last_op),
                    CASE WHEN last_op = 'retract' THEN 'retracted'
                         WHEN rn = 1 THEN 'current' ELSE 'superseded' END AS status
                FROM v WHERE {cond.replace("patient_id = ?", "TRUE", 1)}
                ORDER BY occurred_at, {ASSERTED_SEQ}, seq
            """
            if not self.has_qualifier:  # every row has the key, as a current version's has
                return [{**r, QUALIFIER: None} for r in _dicts(self.con.execute(sql, params))]
        else:
            sql = f"""
                SELECT *, 'current' AS status
                FROM ({self.current_sql(hw, [patient_id], columns=[*EVENT_COLUMNS, ASSERTED_SEQ])})
                WHERE {cond} ORDER BY occurred_at, {ASSERTED_SEQ}
            """
        return _dicts(self.con.execute(sql, params))

    def current_events(
        self, patient_id: str, high_water: int, columns: Sequence[str] | None = None
    ) -> list[dict[str, Any]]:
        """``events(patient_id, high_water=high_water)`` — the patient's current events, ordered
        by (occurred_at, asserted_seq), each with ``asserted_seq`` and ``status`` — from one read
        of the patient's stored versions, told current as :meth:`current_sql` tells them (its
        statement reads the events three times: ~0.022 s for the 10k cohort's patient with most
        events, ~0.009 s this way; `timeline state` reads them so). ``columns``: only these of
        the event's columns (and ``seq``, ``op``, ``event_id``), in their stored order: each
        column read costs its blocks' decompression (the 10k store's patient with most events,
        a fresh process: all 44 ~0.019 s CPU, the rule engine's 25 ~0.011 s)."""
        return current_of(*self.versions(patient_id, high_water, columns))

    def versions(
        self, patient_id: str, high_water: int, columns: Sequence[str] | None = None
    ) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Every stored version of the patient's events (assertions, corrections, retractions)
        with ``seq`` at or below ``high_water``, in no particular order: the column names and
        the rows. ``columns``: only these (and ``seq``, ``op``, ``event_id``), in their stored
        order (see :meth:`current_events`)."""
        wanted = None if columns is None else {*columns, "seq", "op", "event_id"}
        cols = ", ".join(self.column(c) for c in EVENT_COLUMNS if wanted is None or c in wanted)
        cur = self.con.execute(
            f"SELECT {cols} FROM events WHERE patient_id = ? AND seq <= {int(high_water)}", [patient_id]
        )
        names = [d[0] for d in cur.description or []]
        return names, cur.fetchall()

    def require_patient(self, patient: str, high_water: int) -> None:
        """Raise :class:`UnknownPatientError` when the patient has no current events as
        known at ``high_water`` — a mistyped id would otherwise get states for nobody — naming
        the closest id the store holds."""
        current = self.current_sql(high_water, [patient], columns=["patient_id"])
        found = self.con.execute(f"SELECT count(*) FROM ({current})").fetchone()
        if found and found[0]:
            return
        later = self.con.execute(
            "SELECT min(seq), min(recorded_at) FROM events WHERE patient_id = $p", {"p": patient}
        ).fetchone()
        if later is not None and later[0] is not None:
            hint = (
                f": the store learned of it later (seq {later[0]}, recorded {later[1]:%Y-%m-%d %H:%M:%S.%f} UTC)"
                if later[0] > high_water
                else ": its events were retracted"
            )
        else:
            close = self.con.execute(
                f"""SELECT patient_id FROM (SELECT DISTINCT patient_id FROM events WHERE seq <= {int(high_water)})
                   WHERE levenshtein(lower(patient_id), lower($p)) <= greatest(2, length($p) // 4)
                   ORDER BY levenshtein(lower(patient_id), lower($p)), patient_id LIMIT 1""",
                {"p": patient},
            ).fetchone()
            hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UnknownPatientError(
            f"patient {patient!r} has no events in {self.path} as known at seq {high_water}{hint}"
        )

    def patients(self, as_known_at: datetime | None = None) -> list[dict[str, Any]]:
        hw = self.high_water(as_known_at)
        sql = f"""
            SELECT patient_id, count(*) AS events,
                   min(occurred_at) AS first_event, max(occurred_at) AS last_event,
                   arg_min(occurred_precision, occurred_at) AS first_event_precision,
                   arg_max(occurred_precision, occurred_at) AS last_event_precision
            FROM ({self.current_sql(hw)}) GROUP BY patient_id ORDER BY patient_id
        """
        return _dicts(self.con.execute(sql))

    def current_version(self, event_id: str, as_known_at: datetime | None = None) -> dict[str, Any]:
        hw = self.high_water(as_known_at)
        rows = _dicts(
            self.con.execute(
                f"SELECT * FROM events WHERE event_id = ? AND seq <= {hw} ORDER BY seq DESC LIMIT 1",
                [event_id],
            )
        )
        if not rows:
            raise UnknownEventError(f"no event with id {event_id!r} in {self.path}")
        if rows[0]["op"] == "retract":
            raise UnknownEventError(f"event {event_id!r} was retracted (seq {rows[0]['seq']})")
        return rows[0]

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction; a transaction opened inside it is part of it (commits with it, or
        is rolled back with it): several batches can be written atomically."""
        if not self.writable:
            raise StoreError("store was opened read-only")
        if self._depth:
            self._depth += 1
            try:
                yield self.con
            finally:
                self._depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield self.con
        except BaseException:
            # The error to report is the one raised, not a failed rollback: a Ctrl-C that
            # arrives as the block begins or ends leaves this generator unfinished until it is
            # collected, after the store closed (and DuckDB rolled the transaction back)
            with suppress(duckdb.Error):
                self.con.execute("ROLLBACK")
            raise
        finally:
            self._depth = 0
        self.con.execute("COMMIT")


def manifest(store: Store, high_water: int, as_known_at: datetime | None) -> dict[str, Any]:
    """The ``manifest`` of a JSON output read from ``store``: timeline's version, the store, the
    high-water sequence read, the hash chain's head there (:meth:`Store.head_hash`: which
    record that seq named) and the as-known-at moment it stands for (None: now). Outputs of
    rules add the rule set's (``timeline.engine.evaluate.manifest``)."""
    return {
        "engine": f"timeline {__version__}",
        "store": str(store.path),
        "high_water": high_water,
        "head_hash": store.head_hash(high_water),
        # UTC, as every time the store records: with its Z (ISO 8601)
        "as_known_at": as_known_at.isoformat() + "Z" if as_known_at else None,
    }


def is_damage(exc: BaseException) -> bool:
    """Whether DuckDB found bytes in the file that it did not write (a failed checksum), or
    fewer than it wrote (a file cut short: a half-finished copy)."""
    return isinstance(exc, duckdb.Error) and (
        "Corrupt database file" in str(exc) or "Could not read enough bytes" in str(exc)
    )


def damage_message(path: Path | str, exc: BaseException) -> str:
    return f"{path} is damaged and cannot be read ({str(exc).splitlines()[0]}); restore it from a backup"


def _quote(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def sql_list(values: Iterable[str]) -> str:
    """``('a', 'b')``: quoted values for SQL's ``IN``."""
    return "(" + ", ".join(_quote(v) for v in values) + ")"


def _dicts(cur: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def _check_timezone(tz: str) -> None:
    """An IANA zone name, spelt exactly: DuckDB (which converts times at ingest) reads names
    case-blind and takes forms such as GMT+2 that Python's zoneinfo (which checks them when
    events are written) does not, and a store created with one could never be written to."""
    from zoneinfo import available_timezones

    known = available_timezones()  # the system's zone files, or the tzdata package
    if known and tz not in known:
        same = [k for k in known if k.lower() == tz.lower()]
        hint = f" (did you mean {same[0]!r}?)" if same else " (use an IANA name such as Europe/Madrid)"
        raise UsageError(f"unknown time zone {tz!r}{hint}")
    try:
        duckdb.execute("SELECT timezone(?, TIMESTAMPTZ '2000-01-01 00:00:00+00')", [tz]).fetchall()
    except duckdb.Error as exc:
        raise UsageError(f"unknown time zone {tz!r} (use an IANA name such as Europe/Madrid)") from exc


def _foreign_file(path: Path) -> str | None:
    """What a file given as a store is, when its first bytes say it is no DuckDB file (DuckDB's
    own message for a Parquet or CSV file is about an in-memory database, or calls a Parquet
    file a DuckDB one). None for a DuckDB file, or one too short to tell (DuckDB says why)."""
    try:
        with path.open("rb") as f:
            head = f.read(512)
    except OSError:
        return None  # DuckDB's open says why
    if len(head) < 12 or head[8:12] == b"DUCK":
        return None
    load = f" (events to load? `timeline ingest {path.name} --store STORE`)"
    if head.startswith(b"PAR1"):
        return f"it is a Parquet file{load}"
    if head.startswith(b"SQLite format 3"):
        return "it is an SQLite database, not a DuckDB file"
    if b"\0" in head:  # binary (a text file in any 8-bit encoding, or UTF-8 cut mid-character, has none)
        return "not a DuckDB file"
    events_file = path.suffix.lower() in (".csv", ".tsv", ".txt", ".json", ".jsonl", ".ndjson")
    return f"it is a text file, not a DuckDB file{load if events_file else ''}"


def _meta_table(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """The ``meta`` table in one query: each key's value as text (a key given twice: its first
    row's, as a query of that key alone would fetch it). A NULL value is no value: the key is
    absent, as its default reads it (a NULL zone is UTC, not a zone named ``'None'``)."""
    meta: dict[str, str] = {}
    seen: set[object] = set()
    for key, value in con.execute("SELECT key, value FROM meta").fetchall():
        if key in seen:
            continue
        seen.add(key)
        if key is not None and value is not None:
            meta[str(key)] = str(value)
    return meta


def _table_columns(con: duckdb.DuckDBPyConnection) -> dict[str, list[str]]:
    """The columns, in order, of each of the store's tables (events, batches, meta, codes) that
    exists."""
    columns: dict[str, list[str]] = {}
    for table, column in con.execute(
        """SELECT table_name, column_name FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = 'main'
             AND table_name IN ('events', 'batches', 'meta', 'codes')
           ORDER BY table_name, column_index"""
    ).fetchall():
        columns.setdefault(str(table), []).append(str(column))
    return columns


def _connect(path: Path, *, read_only: bool, wait: float) -> duckdb.DuckDBPyConnection:
    deadline = time.monotonic() + max(wait, 0)
    while True:
        try:
            con = duckdb.connect(str(path), read_only=read_only)
            _CONNECTIONS.add(con)
            # DuckDB draws its own progress bar on stdout for a query over ~2 s: a library
            # must not write there (a script's output, a report piped to a file); the
            # commands show their own bars, on stderr, on a terminal
            con.execute("SET TimeZone = 'UTC'; SET enable_progress_bar_print = false")
            return con
        except duckdb.IOException as exc:
            msg = str(exc)
            if is_damage(exc):
                raise StoreError(damage_message(path, exc)) from exc
            if "lock" not in msg.lower():
                if "not a valid DuckDB database file" in msg or "database file" in msg.lower():
                    raise StoreError(f"{path} is not a timeline store (not a DuckDB file)") from exc
                raise StoreError(f"cannot open {path}: {msg.splitlines()[0]}") from exc
            if time.monotonic() >= deadline:
                m = _LOCK_RE.search(msg)
                raise StoreLockedError(str(path), int(m.group(1)) if m else None) from exc
            time.sleep(0.2)
        except duckdb.Error as exc:
            if is_damage(exc):
                raise StoreError(damage_message(path, exc)) from exc
            raise StoreError(f"cannot open {path}: {str(exc).splitlines()[0]}") from exc


_SIZE_UNITS = {"bytes": 1, "KiB": 2**10, "MiB": 2**20, "GiB": 2**30, "TiB": 2**40, "PiB": 2**50}


def out_of_room(exc: BaseException) -> bool:
    """Whether a DuckDB error is running out of memory or of temp disk (not a bad input)."""
    if isinstance(exc, duckdb.OutOfMemoryException):
        return True
    text = str(exc)
    return isinstance(exc, duckdb.IOException) and (
        "No space left on device" in text or "max_temp_directory_size" in text
    )


def lower_memory_limit(con: duckdb.DuckDBPyConnection, limit: int) -> str:
    """Lower DuckDB's memory limit to ``limit`` bytes (never raise it); return the statement
    that puts the previous setting back. Past the limit DuckDB spills to its temp directory."""

    def current() -> str:
        row = con.execute("SELECT current_setting('memory_limit')").fetchone()
        return str(row[0]) if row else ""

    before = current()
    number, _, unit = before.partition(" ")
    try:
        size = float(number) * _SIZE_UNITS[unit]
    except (ValueError, KeyError):
        size = float("inf")
    if size <= limit:
        return "SELECT 1"
    con.execute("RESET memory_limit")
    if current() == before:
        restore = "RESET memory_limit"
    elif unit == "bytes":
        restore = f"SET memory_limit = '{int(size)}B'"
    else:
        # DuckDB shows the limit floored to a tenth of its unit ("4.6 GiB" is 4.6–4.7 GiB):
        # set back the middle of that range, which shows the same (setting "4.6 GiB" itself
        # would show "4.5 GiB")
        restore = f"SET memory_limit = '{int((float(number) + 0.05) * _SIZE_UNITS[unit])}B'"
    con.execute(f"SET memory_limit = '{int(limit)}B'")
    return restore


def insert_rows(
    con: duckdb.DuckDBPyConnection, table: str, types: Sequence[str], rows: Sequence[Sequence[Any]]
) -> None:
    """Append ``rows`` (tuples in the table's column order, of the given SQL ``types``) to
    ``table`` in one statement: each column goes in as one list parameter, unnested beside
    the others. ``executemany`` runs the INSERT once per row, ~0.12 ms each (10k rows: 1.2 s;
    this: ~10 ms)."""
    if not rows:
        return
    columns = [list(col) for col in zip(*rows, strict=True)]
    if len(columns) != len(types):
        raise ValueError(f"{table}: {len(types)} column types for rows of {len(columns)} values")
    select = ", ".join(f"unnest(?::{t}[])" for t in types)
    con.execute(f"INSERT INTO {table} SELECT {select}", columns)


def current_of(names: list[str], rows: list[tuple[Any, ...]]) -> list[dict[str, Any]]:
    """The current events among a patient's stored versions (:meth:`Store.versions`), as
    :meth:`Store.current_events` gives them."""
    seq, op, event = names.index("seq"), names.index("op"), names.index("event_id")
    # each event's last version that is not an assertion (a correction or a retraction):
    # every version of the event before it is superseded
    last: dict[Any, int] = {}
    for r in rows:
        if r[op] != "assert" and r[seq] > last.get(r[event], -1):
            last[r[event]] = r[seq]
    superseded = {r[seq] for r in rows if r[event] in last and r[seq] < last[r[event]]}
    # a correction that is its event's last such version is current, asserted by the last
    # assertion it supersedes
    asserted: dict[int, int] = {}
    for r in rows:
        if r[op] == "assert" and r[seq] in superseded:
            after = last[r[event]]
            asserted[after] = max(asserted.get(after, -1), r[seq])
    found: list[dict[str, Any]] = []
    keys = (*names, ASSERTED_SEQ, "status")  # a row's values, then those two
    for r in rows:
        if r[op] == "assert" and r[seq] not in superseded:
            by = r[seq]
        elif r[op] == "correct" and r[seq] in asserted:
            by = asserted[r[seq]]
        else:
            continue
        # one dict from the row, not one merged into another (~0.2 ms of `state`'s 900 events)
        found.append(dict(zip(keys, (*r, by, "current"), strict=True)))
    found.sort(key=itemgetter("occurred_at", ASSERTED_SEQ))
    return found
