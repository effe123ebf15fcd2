"""Writing to the store: ingest a file, append events, correct, retract.

Every write goes through one pipeline, :func:`_write_batch`, in bulk SQL:

1. DuckDB reads the source into a raw table (every native column as text, plus the
   row number the user sees).
2. The raw table is cast into a typed stage; every check runs as one set-based query
   that yields ``(row, field, reason)``. Any error rejects the whole batch.
3. Units are converted to each code's canonical unit by a join with a small table of
   conversions computed once per distinct (code, unit) pair.
4. One transaction inserts the new rows with their hashes and seals the batch.

Nothing in this module updates or deletes a row of ``events`` or ``batches``.
"""

from __future__ import annotations

import codecs
import csv
import dataclasses
import difflib
import hashlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import duckdb

from timeline import codes, events, meds, registry
from timeline.errors import IngestError, ResourceError, RowError, UnknownEventError, UsageError, first_line
from timeline.integrity import row_hash_sql, seal_batch
from timeline.store import (
    EVENT_COLUMNS,
    QUALIFIER,
    Store,
    _quote,
    insert_rows,
    lower_memory_limit,
    out_of_room,
)
from timeline.store import sql_list as _in
from timeline.units import UnitError, conversion, odd_factor, ucum_hint

Progress = Callable[[str, float], None]
"""Called with (stage, percent 0-100) while a batch is written: the stages ``reading``,
``checking``, ``writing`` and ``sealing`` in turn, each with a percentage that never goes
down and ends at 100."""

FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".ndjson": "jsonl", ".parquet": "parquet"}
MAX_REPORTED = 1000
# DuckDB's memory limit while a file is ingested, in bytes (a lower limit already set on
# the connection is kept). Past it the stage spills to the store's temporary directory
# (``<store>.tmp``), so a 10M-event file peaks under 1 GB of RSS.
INGEST_MEMORY_LIMIT = 512 * 10**6
MEASURED_KINDS = ("weight", "height", "body_temperature", "lab", "assessment")
# The units a dose is given in, as factors to mg (or mg/kg): ng to g. kg is a body weight's.
DOSE_FACTORS = (1e-6, 1e3)
# Doses no one gives, whatever the drug: 1 kg in one dose, 10 g/kg (IVIG, among the largest
# doses, is 2 g/kg, about 140 g at most): a unit or a decimal point gone astray
MAX_DOSE_MG = 1e6
MAX_DOSE_MG_KG = 1e4
_DATE = r"^\d{4}-\d{2}-\d{2}$"
# A UTC offset: Z, or ±HH:MM (±HHMM) from -14:00 to +14:00, the offsets in use (a bad one
# would shift the time it qualifies)
_ZONE = r"(Z|[+-](0\d|1[0-3]):?[0-5]\d|[+-]14:?00)"
_DATETIME = r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?" + _ZONE + "?$"
_OFFSET = _ZONE + "$"
# what looks like an offset, valid or not (for the message)
_ANY_OFFSET = r"[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?[+-]\d{2}:?\d{2}$"
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_LOWERED = ("kind", "sex", "drug", "route", "frequency", "action", "dose_unit")


@dataclass(frozen=True)
class IngestResult:
    source: str
    batch_id: int | None
    added: int
    duplicates: int
    high_water: int
    seconds: float
    retracted: int = 0  # of the duplicates, rows of events that stay retracted
    codes_registered: list[str] = field(default_factory=list)  # a MEDS dataset's site codes added
    # a MEDS dataset's site codes this store defines otherwise: its own definition stays
    codes_kept: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # said beside the message (a MEDS zone that differs)

    def message(self) -> str:
        head = f"{self.source}: {self.added:,} event{'s' if self.added != 1 else ''} added"
        if self.batch_id is not None:
            head += f" as batch {self.batch_id}"
        dups = f"{self.duplicates:,} duplicate{'s' if self.duplicates != 1 else ''} skipped"
        if self.retracted:
            dups += f" ({self.retracted:,} of retracted events, which stay retracted)"
        tail = ""
        if self.codes_registered:
            n = len(self.codes_registered)
            tail = f"; {n} site code{'s' if n != 1 else ''} registered ({', '.join(self.codes_registered)})"
        if self.codes_kept:
            n = len(self.codes_kept)
            tail += (
                f"; {n} site code{'s' if n != 1 else ''} kept as this store defines {'them' if n != 1 else 'it'} "
                f"({', '.join(self.codes_kept)})"
            )
        return f"{head}, {dups} (high-water seq {self.high_water}){tail}"


# ---- public API --------------------------------------------------------------------


def ingest_file(
    store: Store,
    path: str | Path,
    *,
    author: str,
    fmt: str | None = None,
    progress: Progress | None = None,
    memory_limit: int | None = None,
    reason: str | None = None,
) -> IngestResult:
    """Ingest one file of native events as one atomic batch. ``-`` reads standard input, and
    a pipe (``/dev/stdin``, a shell's ``<(…)``) is read once into a temporary file first:
    the format must then be given, and the batch names the pipe as its source.

    ``memory_limit`` (bytes; default :data:`INGEST_MEMORY_LIMIT`, 512 MB) caps DuckDB's memory
    while the file is checked and written; past it the work spills to DuckDB's temp file. A
    larger cap is faster on a large file (20M events: 134.7 s at 512 MB, a 728 MiB peak; 110.1 s
    at 6 GB, a 5.9 GiB peak; benchmarks/README.md), never above a limit already set.

    ``reason`` (why the file is ingested: a retracted event brought back, a re-export) is
    stored on the batch and on every event it writes, as a correction's is (``change_reason``)."""
    limit = INGEST_MEMORY_LIMIT if memory_limit is None else memory_limit
    if reason is not None and not reason.strip():
        raise UsageError("--reason must not be empty (leave it out to give none)")
    if fmt is not None:  # as export: MEDS, CSV are the same formats
        fmt = fmt.lower()
        if fmt not in ("csv", "jsonl", "parquet", "meds"):
            raise UsageError(f"unknown format {fmt!r} (use csv, jsonl, parquet or meds)")
    if str(path) == "-" or _is_stream(Path(path)):
        with _spooled(Path(path), fmt) as (copy, name):
            try:
                return _ingest_file(
                    store, copy, name, author=author, fmt=fmt, progress=progress, limit=limit, reason=reason
                )
            except IngestError as exc:
                if exc.source == str(copy):  # named by the reader of the copy
                    raise IngestError(name, exc.errors, exc.total) from None
                raise
    return _ingest_file(
        store, Path(path), str(path), author=author, fmt=fmt, progress=progress, limit=limit, reason=reason
    )


def _is_stream(path: Path) -> bool:
    import stat

    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return stat.S_ISFIFO(mode) or stat.S_ISCHR(mode)


@contextmanager
def _spooled(path: Path, fmt: str | None) -> Iterator[tuple[Path, str]]:
    """A stream copied to a temporary file (deleted after), with the name to report."""
    import shutil
    import sys
    import tempfile

    name = "<stdin>" if str(path) == "-" else str(path)
    if fmt not in ("csv", "jsonl", "parquet"):
        raise UsageError(f"{name} is a stream: give its format with --format csv, jsonl or parquet")
    with tempfile.TemporaryDirectory(prefix="timeline-stdin-") as tmp:
        copy = Path(tmp) / f"input.{fmt}"
        try:
            with copy.open("wb") as out:
                if str(path) == "-":
                    shutil.copyfileobj(sys.stdin.buffer, out, 1 << 20)
                else:
                    with path.open("rb") as src:
                        shutil.copyfileobj(src, out, 1 << 20)
        except OSError as exc:
            raise IngestError(name, [RowError(None, None, f"cannot be read: {exc.strerror or exc}")]) from exc
        yield copy, name


def _ingest_file(
    store: Store,
    source: Path,
    name: str,
    *,
    author: str,
    fmt: str | None,
    progress: Progress | None,
    limit: int | None = None,
    reason: str | None = None,
) -> IngestResult:
    fmt = _detect_format(source, fmt, name)
    started = time.perf_counter()
    con = store.con
    restore = lower_memory_limit(con, INGEST_MEMORY_LIMIT if limit is None else limit)
    try:
        with _out_of_room(name, lambda: "reading"):
            notes, scan = _load_raw(con, source, fmt)
        digest = meds.dataset_digest(source) if fmt == "meds" else _file_sha256(source)
        brought, codes_digest, kept = (
            meds.site_codes_to_register(store, source) if fmt == "meds" else ([], "", [])
        )
        result = _write_batch(
            store,
            source=name,
            author=author,
            op="ingest",
            reason=reason,
            source_sha256=digest,
            progress=progress,
            started=started,
            ordered_rows=fmt == "csv",
            scan=scan,
            fmt=fmt,
            site_codes=brought,
            codes_digest=codes_digest,
        )
        if fmt == "meds" and result.added:
            notes += [meds.zone_note(store, source)]
            if result.batch_id is not None:
                notes += [meds.disagreement_note(store, source, result.batch_id)]
        return dataclasses.replace(result, codes_kept=kept, notes=[n for n in [*result.notes, *notes] if n])
    except IngestError as exc:
        if fmt == "meds":  # name the data file and its row beside the dataset-wide row number
            raise meds.locate(con, exc) from None
        if fmt == "csv":
            raise _with_lines(source, exc) from None
        raise
    except duckdb.Error as exc:
        if fmt == "csv" and isinstance(exc, duckdb.InvalidInputException) and "CSV" in str(exc):
            raise _not_csv(name, source, exc) from exc  # found while _stage parsed the file
        if fmt == "parquet":
            _damaged(con, name)
        raise
    finally:
        con.execute(restore)  # first: the clean-up may need more than the ingest's limit
        _drop_temps(con)
        if fmt == "meds":
            meds.drop_temps(con)


def append_events(
    store: Store, items: Sequence[events.EventBase], *, author: str, source: str = "api"
) -> IngestResult:
    """Append events built in Python as one atomic batch (same checks as a file)."""
    rows = [events.to_native_row(e) for e in items]
    return _write_rows(store, rows, author=author, source=source, op="ingest")


def append_rows(
    store: Store, rows: Sequence[dict[str, Any]], *, author: str, source: str = "api"
) -> IngestResult:
    """Append native rows given as dicts (values as text or Python values)."""
    return _write_rows(store, rows, author=author, source=source, op="ingest")


def correct(
    store: Store, event_id: str, changes: Mapping[str, str | None], *, reason: str, author: str
) -> IngestResult:
    """Append a corrected version of an event. ``changes`` maps native fields to new
    values (text, as in a file; an empty string or None clears a field)."""
    _require_text(reason, "reason")
    _require_text(author, "author")
    if not changes:
        raise UsageError("nothing to correct: give at least one --set FIELD=VALUE")
    for name in changes:
        if name not in events.NATIVE_COLUMNS:
            raise UsageError(f"unknown field {name!r}{_did_you_mean(name, events.NATIVE_COLUMNS)}")
        if name in ("event_id", "patient_id", "kind"):
            raise UsageError(f"{name} cannot be corrected: retract the event and ingest it again")
    current = _live_version(store, event_id)
    row = _native_from_stored(current)
    before = dict(row)
    for name, value in changes.items():
        row[name] = value if value != "" else None
    if _same_native(store.con, before, row):
        # already so (a script run again): nothing to write, as an ingest of duplicates
        return IngestResult("correction", None, 0, 1, store.high_water(), 0.0)
    try:
        return _write_rows(store, [row], author=author, source="correction", op="correct", reason=reason)
    except IngestError as exc:  # one row, the event: named by its id, not as "row 1"
        raise IngestError(
            f"correction of {event_id}", [RowError(None, e.field, e.reason) for e in exc.errors]
        ) from exc


def retract(store: Store, event_id: str, *, reason: str, author: str) -> IngestResult:
    """Append a retraction: from now on the event is no longer part of the timeline."""
    _require_text(reason, "reason")
    _require_text(author, "author")
    last = store.con.execute(
        "SELECT op FROM events WHERE event_id = ? ORDER BY seq DESC LIMIT 1", [event_id]
    ).fetchone()
    if last is not None and last[0] == "retract":
        # already retracted (a script run again): nothing to write, as an ingest of duplicates
        return IngestResult(f"retraction of {event_id}", None, 0, 1, store.high_water(), 0.0)
    current = _live_version(store, event_id)
    started = time.perf_counter()
    con = store.con
    with store.transaction():
        hw, batch_id, recorded_at = _next_ids(store)
        stored = store.event_columns
        values = {k: current.get(k) for k in stored if k not in ("row_hash",)}
        values.update(
            seq=hw + 1, batch_id=batch_id, op="retract", recorded_at=recorded_at,
            author=author, source_file=None, source_row=None, change_reason=reason,
        )  # fmt: skip
        cols = [c for c in stored if c != "row_hash"]
        placeholders = ", ".join(f"?::{stored[c].split()[0]} AS {c}" for c in cols)
        con.execute(
            f"INSERT INTO events ({', '.join(stored)}) "
            f"SELECT *, {row_hash_sql(schema=store.schema_version, qualifier=store.has_qualifier)} "
            f"FROM (SELECT {placeholders})",
            [values[c] for c in cols],
        )
        seal_batch(
            con, batch_id=batch_id, op="retract", first_seq=hw + 1, last_seq=hw + 1,
            recorded_at=recorded_at, author=author, source_file=None,
            source_sha256=None, reason=reason,
        )  # fmt: skip
    return IngestResult(f"retraction of {event_id}", batch_id, 1, 0, hw + 1, time.perf_counter() - started)


# ---- reading sources into the raw table -----------------------------------------------


def _csv_records(path: Path) -> Iterator[tuple[int, int, int]]:
    """Each record of a CSV file as DuckDB numbers them in its errors (the header is 1, a blank
    line is one, a quoted field over several lines makes one): its number, the number of data
    rows up to it (blank lines and the header not counted: the ingest's row numbers) and its
    first line. Read only when a file is rejected."""
    with path.open(encoding="utf-8-sig", newline="") as fh:
        reader = csv.reader(fh)
        row, start = 0, 1
        for k, rec in enumerate(reader, start=1):
            if rec and k > 1:
                row += 1
            yield k, row, start
            start = reader.line_num + 1


def _with_lines(path: Path, exc: IngestError) -> IngestError:
    """``exc`` with the file's line beside each row number that is not on line row + 1: after
    a quoted field running over several lines, or blank lines (which rows do not count), a
    reader looking for "row 2" in an editor would look at the wrong line."""
    wanted = {e.row for e in exc.errors if e.row is not None}
    if not wanted:
        return exc
    lines: dict[int, int] = {}
    try:
        for _, row, start in _csv_records(path):
            if row in wanted:
                lines.setdefault(row, start)  # the row's own record, not a blank line after it
                if len(lines) == len(wanted):
                    break
    except (OSError, UnicodeDecodeError, csv.Error):
        return exc  # the rows' numbers stand alone
    located = [
        dataclasses.replace(e, line=lines[e.row])
        if e.row is not None and e.row in lines and lines[e.row] != e.row + 1
        else e
        for e in exc.errors
    ]
    return IngestError(exc.source, located, exc.total)


def _detect_format(path: Path, fmt: str | None, name: str | None = None) -> str:
    try:
        exists = path.exists()
    except OSError as exc:  # a path that cannot name a file: too long, a directory not searchable
        raise IngestError(
            name or str(path), [RowError(None, None, f"cannot be read: {exc.strerror or exc}")]
        ) from exc
    if not exists:
        raise IngestError(name or str(path), [RowError(None, None, "no such file")])
    if fmt == "meds" or (fmt is None and meds.is_meds_dir(path)):
        if not path.is_dir():
            raise IngestError(
                str(path), [RowError(None, None, "a MEDS dataset is a directory (with data/*.parquet)")]
            )
        return "meds"
    if path.is_dir():
        raise IngestError(
            str(path),
            [
                RowError(
                    None,
                    None,
                    f"is a directory, not a file; nor a MEDS dataset: it has no {meds.DATA_DIR}/ directory "
                    f"of *.parquet files (give --format meds to have it read as one)",
                )
            ],
        )
    try:
        path.open("rb").close()
    except OSError as exc:  # no permission: the file's to reject, as one that cannot be parsed
        raise IngestError(
            str(path), [RowError(None, None, f"cannot be read: {exc.strerror or exc}")]
        ) from exc
    if fmt is not None:
        if fmt not in ("csv", "jsonl", "parquet"):
            raise UsageError(f"unknown format {fmt!r} (use csv, jsonl, parquet or meds)")
        return fmt
    found = FORMATS.get(path.suffix.lower())
    with path.open("rb") as fh:
        if found in ("csv", "jsonl") and fh.read(4) == b"PAR1":  # Parquet's magic bytes
            raise IngestError(
                str(path),
                [
                    RowError(
                        None,
                        None,
                        f"is a Parquet file named {path.suffix}: rename it .parquet, or give --format parquet",
                    )
                ],
            )
    advice = {
        ".json": "; a file of one JSON object per line is read with --format jsonl (a JSON array is not read)",
        ".xlsx": "; save the sheet as CSV UTF-8 (comma-separated)",
        ".xls": "; save the sheet as CSV UTF-8 (comma-separated)",
        ".ods": "; save the sheet as CSV UTF-8 (comma-separated)",
    }.get(path.suffix.lower(), "")
    if found is None:
        raise IngestError(
            str(path),
            [
                RowError(
                    None,
                    None,
                    f"unsupported file type {path.suffix or '(none)'!r}: use .csv, .jsonl/.ndjson or .parquet, or --format"
                    + advice,
                )
            ],
        )
    return found


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass
class _Scan:
    """What the byte scan of a text file (``_check_utf8``) saw on the way."""

    lines: int = 0  # line feeds
    crlf: int = 0  # of them, ends of lines written CR LF
    cr: int = 0  # carriage returns
    # only printable ASCII and line ends (in JSON Lines, no escape either): no value can hold a
    # character that _checks screens identifiers for, unless a quoted value spans lines
    plain: bool = True

    @property
    def mixed_endings(self) -> bool:
        """Lines ending LF and lines ending CR LF in one file (a header saved on one system and
        rows on another, a line edited by hand): DuckDB's strict CSV reader refuses the file."""
        return 0 < self.crlf < self.lines

    def may_hide(self, rows: int) -> bool:
        """Whether a value of the file's ``rows`` rows may hold a control or invisible
        character: a byte other than printable ASCII and line ends, a CR that ends no line, or
        more lines than rows (a quoted value over lines, or blank lines)."""
        return not self.plain or self.cr > self.crlf or self.lines > rows + 1


_PLAIN_BYTES = bytes(range(0x20, 0x7F)) + b"\r\n"


def _check_utf8(path: Path, *, json_lines: bool = False) -> _Scan:
    """Reject a file that is not UTF-8, naming the line of the first bad byte; count its
    lines and how they end."""
    scan = _Scan()
    with path.open("rb") as fh:
        head = fh.read(4)
        if head.startswith((b"\xff\xfe", b"\xfe\xff")):
            raise IngestError(str(path), [RowError(None, None, "file is UTF-16 encoded: save it as UTF-8")])
        fh.seek(0)
        dec = codecs.getincrementaldecoder("utf-8")()
        line = 1
        cr = False  # the previous chunk ended in CR
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            try:
                dec.decode(chunk)
            except UnicodeDecodeError as exc:
                line += chunk[: exc.start].count(b"\n")
                raise IngestError(
                    str(path),
                    [
                        RowError(
                            None,
                            None,
                            f"line {line}: not valid UTF-8 (byte 0x{chunk[exc.start]:02x}); save the file as UTF-8",
                        )
                    ],
                ) from exc
            n = chunk.count(b"\n")
            line += n
            scan.lines += n
            if b"\r" in chunk:  # most files have none: their scan counts no CR LF (0.03 s a 24 MB file)
                scan.crlf += chunk.count(b"\r\n")
                scan.cr += chunk.count(b"\r")
            scan.crlf += cr and chunk.startswith(b"\n")
            cr = chunk.endswith(b"\r")
            if scan.plain:  # a byte order mark at the start is no character of a value
                body = chunk[3:] if line == n + 1 and chunk.startswith(codecs.BOM_UTF8) else chunk
                scan.plain = not body.translate(None, _PLAIN_BYTES) and not (json_lines and b"\\" in body)
        try:
            dec.decode(b"", final=True)
        except UnicodeDecodeError as exc:
            raise IngestError(
                str(path), [RowError(None, None, f"line {line}: file ends inside a UTF-8 character")]
            ) from exc
    return scan


def _check_columns(source: str, found: Sequence[str]) -> list[str]:
    errors: list[RowError] = []
    seen: set[str] = set()
    for i, name in enumerate(found, start=1):
        if not name.strip():  # most often a header ending in a separator, as spreadsheets write them
            last = (
                " (the header ends with a separator: remove the trailing comma)"
                if i == len(found) and not name
                else ""
            )
            errors.append(RowError(None, None, f"column {i} of the header has no name{last}"))
            continue
        if name in seen:
            errors.append(RowError(None, name, "column appears more than once"))
        seen.add(name)
        if name not in events.NATIVE_COLUMNS:
            errors.append(RowError(None, name, f"unknown column{_did_you_mean(name, events.NATIVE_COLUMNS)}"))
    # a required column missing because the header spells it otherwise: said beside it
    meant = {
        n: _closest(n, events.NATIVE_COLUMNS) for n in found if n.strip() and n not in events.NATIVE_COLUMNS
    }
    for name in events.CORE_COLUMNS:
        if name not in seen:
            near = next((n for n, m in meant.items() if m == name), None)
            hint = f" (the header has {near!r}: rename it {name!r})" if near is not None else ""
            errors.append(RowError(None, name, f"required column is missing{hint}"))
    if errors:
        raise IngestError(source, errors)
    return [c for c in events.NATIVE_COLUMNS if c in seen]


def _load_raw(con: duckdb.DuckDBPyConnection, path: Path, fmt: str) -> tuple[list[str | None], _Scan | None]:
    """Build ``tl_raw``; returns notes on what was not read (a MEDS dataset's rows), and what
    the byte scan of a text file saw."""
    if fmt == "csv":
        return [], _load_csv(con, path)
    if fmt == "jsonl":
        return [], _load_jsonl(con, path)
    if fmt == "meds":
        return list(meds.load_raw(con, path)), None
    return [_load_parquet(con, path)], None


def _load_csv(con: duckdb.DuckDBPyConnection, path: Path) -> _Scan:
    scan = _check_utf8(path)
    with path.open(encoding="utf-8-sig", newline="") as fh:
        try:
            header = next(csv.reader(fh), None)
        except csv.Error as exc:
            raise IngestError(
                str(path), [RowError(None, None, f"header line is not valid CSV: {exc}")]
            ) from exc
    if not header or all(not h.strip() for h in header):
        raise IngestError(
            str(path), [RowError(None, None, "empty file: the first line must name the columns")]
        )
    names = [h.strip() for h in header]
    if len(names) <= 2 and re.fullmatch(r"sep=.?", ",".join(header).strip()[:5]):
        raise IngestError(str(path), [RowError(None, None,
            f"the first line, {','.join(header)!r}, is a spreadsheet's separator hint, not the header: "
            "delete that line (the header is the line after it)")])  # fmt: skip
    if len(names) == 1 and (sep := next((c for c in ";\t|" if c in names[0]), None)):
        shown = {";": "semicolons", "\t": "tabs", "|": "vertical bars"}[sep]
        raise IngestError(str(path), [RowError(None, None,
            f"the header is one column, {names[0][:60]!r}: the file is separated by {shown}; timeline reads CSV "
            "separated by commas, with decimal points (save it as comma-separated CSV)")])  # fmt: skip
    present = _check_columns(str(path), names)
    spec = "{" + ", ".join(f"{_quote(n)}: 'VARCHAR'" for n in names) + "}"
    # DuckDB's strict reader refuses a file whose lines end both LF and CR LF (as "the CSV
    # Parser state machine reached an invalid state"). Python's reader reads it: if it finds
    # the file sound, DuckDB reads it without strict mode, which reads it alike.
    strict = True
    if scan.mixed_endings:
        problems, total = _csv_problems(path)
        if problems:
            raise IngestError(str(path), problems, total)
        strict = False
    # A view: the file is parsed once, by _stage. A CSV error found then is reported by
    # ingest_file as it would be here.
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP VIEW tl_raw AS
            SELECT row_number() OVER () AS __row, {", ".join(present)}
            FROM read_csv({_quote(str(path))}, header = true, columns = {spec},
                auto_detect = false, delim = ',', quote = '"', escape = '"',
                strict_mode = {str(strict).lower()}, null_padding = false, encoding = 'utf-8')"""
        )
    except duckdb.Error as exc:
        raise _not_csv(str(path), path, exc) from exc
    return scan


def _not_csv(name: str, path: Path, exc: duckdb.Error) -> IngestError:
    """DuckDB's refusal of a CSV file, as the structural problems Python's reader finds in it
    (every one, each at its line); DuckDB's own message if Python's reader finds none."""
    problems, total = _csv_problems(path)
    return IngestError(name, problems or [_csv_error(str(exc), path)], total or None)


def _csv_problems(path: Path) -> tuple[list[RowError], int]:
    """Every structural problem of a CSV file (a row with too many or too few fields, an
    unterminated quote, text after a closing quote), at most MAX_REPORTED listed, and how many
    there are. Read with Python's csv module, only when a file is refused or its lines end
    in two ways; the values are not checked."""
    found: list[RowError] = []
    total = 0
    try:
        with path.open(encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh, strict=True)
            width: int | None = None
            row, start = 0, 1
            while True:
                try:
                    rec = next(reader)
                except StopIteration:
                    break
                except csv.Error as exc:
                    row += 1
                    total += 1
                    if "unexpected end of data" in str(exc):  # inside a quoted field at the end
                        opened = _quote_opened(path, start)
                        reason = (
                            f"line {opened} is not valid CSV: unterminated quote: a quote opened on line "
                            f"{opened} is never closed, so the rest of the file would be one value"
                        )
                    elif "expected after" in str(exc):
                        reason = (
                            f"line {reader.line_num} is not valid CSV: text after the closing quote of a "
                            'quoted value (a quote inside a quoted value is written twice: "")'
                        )
                    else:
                        reason = f"line {reader.line_num} is not valid CSV: {exc}"
                    if len(found) < MAX_REPORTED:
                        found.append(RowError(row, None, reason))
                    start = reader.line_num + 1
                    continue
                if width is None:
                    width = len(rec)  # the header
                elif rec:
                    row += 1
                    if len(rec) != width:
                        total += 1
                        if len(found) < MAX_REPORTED:
                            found.append(
                                RowError(
                                    row,
                                    None,
                                    f"line {start} is not valid CSV: expected {width} fields, found {len(rec)}"
                                    + _ragged_why(rec),
                                )
                            )
                start = reader.line_num + 1
    except (OSError, UnicodeDecodeError):
        return [], 0
    return found, total


def _ragged_why(rec: Sequence[str]) -> str:
    """What a record of the wrong width is, when it says: a header of other columns (two files
    joined), or an empty row."""
    values = [v.strip().lstrip("\ufeff").lower() for v in rec]
    if "kind" in values and all(v in events.NATIVE_COLUMNS for v in values if v):
        return ": it is a header, of other columns (two files joined?): ingest the files one by one"
    if not any(values):
        return ": it is empty, only separators (a spreadsheet's empty row)"
    return ""


def _quote_opened(path: Path, start: int) -> int:
    """The line of the quote left open in the record that begins on line ``start`` and runs to
    the end of the file: the last line after which the record's count of quotes turns odd
    (a closed quoted value holds an even number of them, its doubled quotes included)."""
    opened, odd = start, False
    with path.open(encoding="utf-8-sig", newline="") as fh:
        for n, text in enumerate(fh, start=1):
            if n < start:
                continue
            now = odd ^ (text.count('"') % 2 == 1)
            if now and not odd:
                opened = n
            odd = now
    return opened


def _record_place(path: Path, record: int) -> tuple[int, int] | None:
    """The row and the first line of DuckDB's ``record``-th record; None if unreadable."""
    try:
        return next(((row, start) for k, row, start in _csv_records(path) if k == record), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return None


def _csv_error(message: str, path: Path) -> RowError:
    m = re.search(r"CSV Error on Line: (\d+)", message)
    lines = message.splitlines()
    detail = next((ln.strip() for ln in lines[2:] if ln.strip() and "Possible" not in ln), "")
    if "Expected Number of Columns" in message:
        detail = re.sub(
            r"Expected Number of Columns: (\d+) Found: (\d+)", r"expected \1 fields, found \2", detail
        )
    if m:
        record = int(m.group(1))
        # DuckDB's "line" counts records, a blank line as one: the row and the file's line
        row, line = _record_place(path, record) or (record - 1, record)
        return RowError(row, None, f"line {line} is not valid CSV: {detail or lines[0]}")
    return RowError(None, None, f"not valid CSV: {lines[0]}")


def _load_jsonl(con: duckdb.DuckDBPyConnection, path: Path) -> _Scan:
    scan = _check_utf8(path, json_lines=True)
    # a line of spaces, tabs or a CR alone is blank, skipped as an empty one (a tab was "not
    # valid JSON": DuckDB's trim() takes spaces only)
    filled = f"{trimmed('line')} <> ''"
    # Read line by line so that row numbers are line numbers, blank lines included.
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_lines AS
            SELECT row_number() OVER () AS __row, line FROM read_csv({_quote(str(path))},
                header = false, columns = {{'line': 'VARCHAR'}}, auto_detect = false,
                delim = '\x01', quote = '', escape = '', strict_mode = false,
                null_padding = false, encoding = 'utf-8')"""
        )
    except duckdb.Error as exc:
        raise IngestError(
            str(path), [RowError(None, None, f"cannot read as JSON Lines: {str(exc).splitlines()[0]}")]
        ) from exc
    nonblank = con.execute(f"SELECT count(*) FROM tl_lines WHERE {filled}").fetchone()
    if nonblank is None or nonblank[0] == 0:
        raise IngestError(str(path), [RowError(None, None, "empty file: expected one JSON object per line")])
    # Every problem of every line is reported in one pass (as a CSV file's values are): a line
    # that is no JSON object, or gives a key twice, is named and left out of the checks of
    # values (``unread``: there is no value to check, or two); a line with an unknown key is
    # named for it and its other fields are checked. These problems wait in ``tl_early``
    # (row, field, reason, meant, unread) for _collect_errors.
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tl_early AS
           SELECT __row AS row, NULL::VARCHAR AS field,
                  CASE WHEN NOT json_valid(line) THEN 'not valid JSON'
                       ELSE 'not a JSON object (got ' || lower(json_type(line::JSON)) || ')' END AS reason,
                  NULL::VARCHAR AS meant, true AS unread
           FROM tl_lines WHERE {filled} AND (NOT json_valid(line) OR json_type(line::JSON) <> 'OBJECT')"""
    )
    objects = (
        f"(SELECT __row, line::JSON AS obj FROM tl_lines WHERE {filled} AND json_valid(line) "
        "AND json_type(line::JSON) = 'OBJECT')"
    )
    # a key given twice: JSON leaves it to the reader (DuckDB takes the first, Python the last)
    con.execute(
        f"""INSERT INTO tl_early
           SELECT __row, k, 'given more than once in the object', NULL, true FROM (
               SELECT __row, unnest(json_keys(obj)) AS k FROM {objects}
               WHERE len(json_keys(obj)) <> len(list_distinct(json_keys(obj))))
           GROUP BY __row, k HAVING count(*) > 1"""
    )
    keys = [
        str(k) for (k,) in con.execute(f"SELECT DISTINCT unnest(json_keys(obj)) FROM {objects}").fetchall()
    ]
    unknown = sorted(k for k in keys if k not in events.NATIVE_COLUMNS)
    if unknown:
        # each line with each unknown key; ``meant``: the field it is a near miss of, whose
        # "missing value" on that line the key's message says already
        known = [(k, _closest(k, events.NATIVE_COLUMNS)) for k in unknown]
        reasons = ", ".join(
            f"({_quote(k)}, {_quote('unknown field' + _did_you_mean(k, events.NATIVE_COLUMNS))}, "
            f"{_quote(m) if m is not None else 'NULL'})"
            for k, m in known
        )
        con.execute(
            f"""INSERT INTO tl_early
               SELECT o.__row, o.k, u.reason, u.meant, false FROM
                   (SELECT __row, unnest(json_keys(obj)) AS k FROM {objects}) o
               JOIN (VALUES {reasons}) u(k, reason, meant) USING (k)"""
        )
    present = [c for c in events.NATIVE_COLUMNS if c in keys]
    for name in events.CORE_COLUMNS:
        if name not in present:
            present.append(name)
    cols = ", ".join(
        f"json_extract_string(line::JSON, '$.{c}') AS {c}" for c in events.NATIVE_COLUMNS if c in present
    )
    con.execute(
        # the lines left unread are left out (the usual file has none: no test of each line)
        f"""CREATE OR REPLACE TEMP TABLE tl_raw AS SELECT __row, {cols} FROM tl_lines WHERE {filled}"""
        + (
            " AND __row NOT IN (SELECT row FROM tl_early WHERE unread) AND json_valid(line)"
            if _any(con, "SELECT 1 FROM tl_early WHERE unread")
            else ""
        )
    )
    return scan


def _load_parquet(con: duckdb.DuckDBPyConnection, path: Path) -> str | None:
    """Make ``tl_raw`` a view of the file; returns a note when its ``patient_id`` column is of
    a number type (ids are text: an id written ``007`` at the source arrives as 7)."""
    try:
        described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_quote(str(path))})").fetchall()
    except duckdb.Error as exc:
        raise _not_parquet(str(path), exc) from exc
    names = [str(r[0]) for r in described]
    if {"subject_id", "code", "native"} <= set(names):
        raise IngestError(
            str(path),
            [
                RowError(
                    None,
                    None,
                    "a data file of a MEDS dataset: ingest the dataset's directory (the one holding "
                    f"{meds.DATA_DIR}/ and metadata/), which maps its subject_ids to patients",
                )
            ],
        )
    present = _check_columns(str(path), names)
    types = {str(r[0]): str(r[1]) for r in described}
    cols = ", ".join(_parquet_column(c, types[c]) for c in present)
    con.execute(  # a view: the file is read once, by _stage
        f"""CREATE OR REPLACE TEMP VIEW tl_raw AS
        SELECT file_row_number + 1 AS __row, {cols}
        FROM read_parquet({_quote(str(path))}, file_row_number = true)"""
    )
    return _numeric_id_note(types.get("patient_id", "VARCHAR"))


_NUMBER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "UTINYINT", "USMALLINT",
                 "UINTEGER", "UBIGINT", "UHUGEINT", "FLOAT", "DOUBLE")  # fmt: skip


def _numeric_id_note(raw_type: str) -> str | None:
    """A note on a Parquet ``patient_id`` column of a number type: the ids are stored as the
    numbers' text, and a number has no leading zeros to keep."""
    if raw_type not in _NUMBER_TYPES and not raw_type.startswith("DECIMAL"):
        return None
    return (
        f"patient_id is a number column ({raw_type}) in this file: the ids are stored as the numbers "
        "read (7 as '7'), and a number keeps no leading zeros — an id written 007 at the source "
        "arrives as '7', another patient than a stored '007'. Export patient_id as text to keep the "
        "ids as the site writes them"
    )


def _parquet_column(col: str, raw_type: str) -> str:
    """A Parquet column as the stage reads it: as it is (see _passthrough), else as text. A
    time with a zone (pandas' tz-aware datetimes) becomes its UTC text with ``Z``, which the
    stage converts to the store's zone; nanoseconds are rounded to the store's microseconds."""
    if _passthrough(col, raw_type):
        return col
    if raw_type in ("TIMESTAMP WITH TIME ZONE", "TIMESTAMPTZ_NS"):  # pandas writes nanoseconds
        return f"strftime(timezone('UTC', {col}::TIMESTAMPTZ), '%Y-%m-%dT%H:%M:%S.%fZ') AS {col}"
    if raw_type == "TIMESTAMP_NS":
        return f"{col}::TIMESTAMP::VARCHAR AS {col}"
    return f"{col}::VARCHAR AS {col}"


def _write_rows(
    store: Store,
    rows: Sequence[dict[str, Any]],
    *,
    author: str,
    source: str,
    op: str,
    reason: str | None = None,
) -> IngestResult:
    started = time.perf_counter()
    con = store.con
    names = list(events.NATIVE_COLUMNS)
    # every unknown key of every row, reported with the problems of the values (see _collect_errors)
    unknown = [
        [i, str(key), f"unknown field{_did_you_mean(str(key), names)}", _closest(str(key), names), False]
        for i, row in enumerate(rows, start=1)
        for key in row
        if key not in events.NATIVE_COLUMNS
    ]
    try:
        if unknown:
            con.execute(
                "CREATE OR REPLACE TEMP TABLE tl_early "
                "(row BIGINT, field VARCHAR, reason VARCHAR, meant VARCHAR, unread BOOLEAN)"
            )
            insert_rows(con, "tl_early", ["BIGINT", "VARCHAR", "VARCHAR", "VARCHAR", "BOOLEAN"], unknown)
        cols = ", ".join(f"{n} VARCHAR" for n in names)
        con.execute(f"CREATE OR REPLACE TEMP TABLE tl_raw (__row BIGINT, {cols})")
        if rows:
            insert_rows(
                con,
                "tl_raw",
                ["BIGINT", *("VARCHAR" for _ in names)],
                [[i, *(_as_text(r.get(n)) for n in names)] for i, r in enumerate(rows, start=1)],
            )
        return _write_batch(store, source=source, author=author, op=op, reason=reason, started=started)
    finally:
        _drop_temps(con)


def _as_text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return repr(value)
    return str(value)


# ---- staging and checks ---------------------------------------------------------------


_INTEGERS = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT")

# What a value is trimmed of: every kind of space and line break (Python's str.strip() but
# its control characters U+001C-U+001F). DuckDB's trim() takes spaces only, Unicode's too,
# leaving a tab, CR or LF: "anakinra<TAB>" was another drug, "P050<TAB>" another patient.
_WHITESPACE = (
    " \t\n\v\f\r\x85\xa0\u1680" + "".join(map(chr, range(0x2000, 0x200B))) + "\u2028\u2029\u202f\u205f\u3000"
)


def trimmed(expr: str) -> str:
    """SQL for text ``expr`` trimmed of :data:`_WHITESPACE`. trim() with a set of characters
    costs nine times trim() alone (1.9 s against 0.2 s for 12 columns of 531k rows), so it
    runs only on a value that begins or ends with a control character or a space. A value that
    begins and ends with a printable ASCII character other than the space, almost every value,
    is taken as it is: neither trim() would change it, and each costs more than the test
    (25 columns of 300k CSV rows: 0.40 s trimmed both ways, 0.21 s with the test first)."""
    return (
        f"CASE WHEN {expr} IS NULL THEN NULL "
        f"WHEN ord({expr}) BETWEEN 33 AND 126 AND ord({expr}[-1]) BETWEEN 33 AND 126 THEN {expr} "
        f"WHEN {expr}[1] < '!' OR {expr}[-1] < '!' THEN trim({expr}, {_quote(_WHITESPACE)}) "
        f"ELSE trim({expr}) END"
    )


def _passthrough(col: str, raw_type: str) -> bool:
    """Whether a source column of ``raw_type`` (a typed Parquet column) is read as it is
    rather than as text: exactly when its value converts as its text would."""
    kind = events.COLUMN_TYPES[col]
    return (kind, raw_type) in (("DOUBLE", "DOUBLE"), ("INTEGER", "DOUBLE"), ("BOOLEAN", "BOOLEAN")) or (
        kind == "INTEGER" and raw_type in _INTEGERS
    )


# A censored value: a number after one of these (``<5``, ``< 5``, ``≤5``, ``>=2000``), each
# stored as the qualifier beside it
_QUALIFIER_RE = "^(<=|>=|<|>|≤|≥)"


def _censored_parts(col: str) -> tuple[str, str, str]:
    """SQL over raw text column ``col``: (whether it begins as a censored value does, its
    qualifier as written, the text after the qualifier and any spaces)."""
    text = f"nullif({trimmed(f'r.{col}')}, '')"
    begins = f"left({text}, 1) IN ('<', '>', '≤', '≥')"
    written = f"regexp_extract({text}, '{_QUALIFIER_RE}', 1)"
    rest = f"ltrim(substr({text}, length({written}) + 1))"
    return begins, written, rest


def _double_sql(text: str) -> str:
    # DuckDB's cast reads digit separators ('3_0' as 30): a number in a file has none
    return f"CASE WHEN NOT contains({text}, '_') AND isfinite(TRY_CAST({text} AS DOUBLE)) THEN TRY_CAST({text} AS DOUBLE) END"


def _qualifier_sql(raw_type: str = "VARCHAR") -> str:
    """SQL for the qualifier of a censored value in raw column ``value`` (``<``, ``<=``, ``>``,
    ``>=``; ``≤`` and ``≥`` read as the two-character forms), NULL for an exact value or text
    that is no censored value (refused as not a number). A typed (Parquet) column holds none."""
    if _passthrough("value", raw_type):
        return "NULL::VARCHAR"
    begins, written, rest = _censored_parts("value")
    spelt = "CASE " + " ".join(
        f"WHEN {written} = {_quote(k)} THEN {_quote(v)}" for k, v in events.QUALIFIER_SPELLINGS.items()
    )
    return f"CASE WHEN {begins} AND {_double_sql(rest)} IS NOT NULL THEN {spelt} ELSE {written} END END"


def _typed(col: str, raw_type: str = "VARCHAR") -> str:
    """SQL that casts raw column ``col`` (text, or a typed column that passes through) to
    its native type (NULL when it cannot). A censored value (``<5``) has its bound as its
    value (:func:`_qualifier_sql` gives the qualifier)."""
    kind = events.COLUMN_TYPES[col]
    if col == "value" and not _passthrough(col, raw_type):
        begins, _, rest = _censored_parts(col)
        plain = _double_sql(f"nullif({trimmed(f'r.{col}')}, '')")
        return f"CASE WHEN {begins} THEN {_double_sql(rest)} ELSE {plain} END"
    if _passthrough(col, raw_type):
        r = f"r.{col}"
        if kind == "BOOLEAN":
            return r
        if raw_type in _INTEGERS:  # |x| < 2e9, as the text's double would be checked
            return f"CASE WHEN {r} BETWEEN -1999999999 AND 1999999999 THEN {r}::INTEGER END"
        if kind == "DOUBLE":
            return f"CASE WHEN isfinite({r}) THEN {r} END"
        return f"CASE WHEN {r} = floor({r}) AND abs({r}) < 2e9 THEN {r}::INTEGER END"
    text = f"nullif({trimmed(f'r.{col}')}, '')"
    if col in _LOWERED:
        text = f"lower({text})"
    # DuckDB's cast reads digit separators ('3_0' as 30): a number in a file has none
    plain = f"NOT contains({text}, '_')"
    if kind == "DOUBLE":
        return (
            f"CASE WHEN {plain} AND isfinite(TRY_CAST({text} AS DOUBLE)) THEN TRY_CAST({text} AS DOUBLE) END"
        )
    if kind == "INTEGER":
        d = f"TRY_CAST({text} AS DOUBLE)"
        return f"CASE WHEN {plain} AND {d} = floor({d}) AND abs({d}) < 2e9 THEN {d}::INTEGER END"
    if kind == "BOOLEAN":
        t = ", ".join(_quote(x) for x in _TRUE)
        f = ", ".join(_quote(x) for x in _FALSE)
        return f"CASE WHEN lower({text}) IN ({t}) THEN true WHEN lower({text}) IN ({f}) THEN false END"
    return text


_TYPE_NAMES = {"DOUBLE": "a number", "INTEGER": "a whole number", "BOOLEAN": "true or false"}


def _raw(col: str) -> str:
    """SQL for a non-text column's value as the source wrote it (for messages): its text,
    or for a typed column that passed through, the value cast to text."""
    return f"coalesce(s.raw_{col}, s.{col}::VARCHAR)"


def _empty_sql() -> str:
    """Whether a stage row ``s`` has no value in any column: an empty spreadsheet row saved as
    CSV (``,,,,``), a JSON object ``{}``. The core columns come first: every other row fails
    there."""
    cols = [*events.CORE_COLUMNS, *(c for c in events.NATIVE_COLUMNS if c not in events.CORE_COLUMNS)]
    return (
        "("
        + " AND ".join(
            f"s.{c} IS NULL" + (f" AND NOT s.bad_{c}" if events.COLUMN_TYPES[c] != "VARCHAR" else "")
            for c in cols
        )
        + ")"
    )


def _header_sql() -> str:
    """Whether a stage row ``s`` is a header line (two CSV files joined with ``cat``): its
    patient, kind and time are column names, as no event's are. A byte order mark (a second
    file saved by Excel as CSV UTF-8) is no part of the name."""
    names = _in(events.NATIVE_COLUMNS)
    return " AND ".join(
        f"lower(ltrim(s.{c}, chr(65279))) IN {names}" for c in ("kind", "occurred_at", "patient_id")
    )


def _header_reason() -> str:
    """SQL for the message about a row that :func:`_header_sql` finds: the first header again,
    or a header of other columns, under which the rows after it are read in the wrong ones."""
    parts = []
    for c in events.NATIVE_COLUMNS:
        value = f"trim({_raw(c)})" if events.COLUMN_TYPES[c] != "VARCHAR" else f"s.{c}"
        parts.append(f"({value} IS NULL OR lower(ltrim({value}, chr(65279))) = {_quote(c)})")
    same = " AND ".join(parts)
    return (
        f"CASE WHEN {same} THEN 'the header again (two files joined?): delete the line, or ingest the files "
        "one by one' ELSE 'a header line, its columns in another order than the first header''s (two files "
        "joined?): ingest the files one by one' END"
    )


def _when_sql(col: str, tz: str) -> tuple[str, str]:
    """(timestamp, precision) SQL for a date/date-time text column of the stage."""
    s = f"s.{col}"
    ts = f"""CASE
        WHEN regexp_full_match({s}, '{_DATE[1:-1]}') THEN try_strptime({s}, '%Y-%m-%d')
        WHEN regexp_full_match({s}, '{_DATETIME[1:-1]}') THEN
            CASE WHEN regexp_matches({s}, '{_OFFSET}')
                 THEN timezone({_quote(tz)}, TRY_CAST({s} AS TIMESTAMPTZ))
                 ELSE TRY_CAST(replace({s}, 'T', ' ') AS TIMESTAMP) END
        END"""
    # a time with seconds, or one whose conversion gave seconds (a zone's offset before 1901
    # had them: Madrid's was −00:14:44)
    precision = f"""CASE WHEN regexp_full_match({s}, '{_DATE[1:-1]}') THEN 'day'
        WHEN substr({s}, 17, 1) = ':' THEN 'second'
        WHEN regexp_matches({s}, '{_OFFSET}') AND second({ts}) <> 0 THEN 'second' ELSE 'minute' END"""
    return ts, precision


def _repeated_hour_sql(col: str, ts: str, tz: str) -> str:
    """Whether a time given with an offset lands, in the store's zone, in the hour that repeats
    when daylight saving time ends: its wall-clock time then names two instants, and the store,
    which keeps wall-clock times, could not keep it apart from (or in order with) the other."""
    s = f"s.{col}"
    instant = f"TRY_CAST({s} AS TIMESTAMPTZ)"
    return f"""(regexp_full_match({s}, '{_DATETIME[1:-1]}') AND regexp_matches({s}, '{_OFFSET}')
        AND s.{ts} IS NOT NULL
        AND (timezone({_quote(tz)}, {instant} - INTERVAL 1 HOUR) = s.{ts}
             OR timezone({_quote(tz)}, {instant} + INTERVAL 1 HOUR) = s.{ts}))"""


def _clock_change_days(con: duckdb.DuckDBPyConnection, tz: str) -> None:
    """``tl_shift_days``: the dates, over the span of the staged times, on which the UTC offset
    of zone ``tz`` changes between one noon and the next: both days, as a skipped hour may fall
    on either. A day-by-day scan of at most the years since 1900 (earlier and later times are
    refused anyway): the exact check of a time, a round trip through the zone, then runs only
    on the rows of those few days (on every row it cost 0.45 s a 2M-row file; the join, 12 ms).
    The zone is a column, ``zone``, so that the round trip, which reads it, runs after the join:
    a condition on the stage's columns alone is pushed below the join, onto every row."""
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tl_shift_days AS
        WITH span AS (
            SELECT greatest(least(min(occ_ts), min(end_ts))::DATE, DATE '1900-01-01') AS lo,
                   least(greatest(max(occ_ts), max(end_ts))::DATE, current_date + 2) AS hi
            FROM tl_stage),
        days AS (SELECT unnest(generate_series(lo - 1, hi + 1, INTERVAL 1 DAY))::DATE AS day FROM span
                 WHERE lo <= hi),
        offsets AS (SELECT day, day + TIME '12:00' - timezone('UTC', timezone({_quote(tz)}, day + TIME '12:00')) AS o
                    FROM days)
        SELECT day, {_quote(tz)} AS zone FROM (SELECT day, o, lag(o) OVER (ORDER BY day) AS before, lead(o) OVER (ORDER BY day) AS after
                         FROM offsets)
        WHERE o <> before OR o <> after"""
    )


def _skipped_time_sql(col: str, ts: str, precision: str, tz: str) -> str:
    """The rows whose time ``col``, given without an offset, is a clock time that zone ``tz``
    skips when its clocks go forward (02:30 on the day Madrid's go from 02:00 to 03:00): it
    names no instant. The zone reads it as another time (03:30), which the round trip shows. A
    time given with an offset was read from its instant: it never lands in a skipped hour."""
    moved = f"timezone(d.zone, timezone(d.zone, s.{ts}))"
    minutes = f"((epoch({moved}) - epoch(s.{ts})) // 60)::BIGINT"
    forward = (
        f"CASE WHEN {minutes} % 60 = 0 THEN ({minutes} // 60)::VARCHAR || ' hour' "
        f"|| CASE WHEN {minutes} <> 60 THEN 's' ELSE '' END ELSE {minutes}::VARCHAR || ' minutes' END"
    )
    return f"""SELECT s.__row, '{col}', 'is ' || tl_quote(s.{col}) || ', a clock time that never happened in {tz}: '
               || 'its clocks went forward ' || {forward} || ' over it (as when daylight saving time begins). '
               || 'Check the source''s clock; a time given with its UTC offset names one instant'
           FROM tl_stage s JOIN tl_shift_days d ON d.day = s.{ts}::DATE
           WHERE s.{precision} <> 'day' AND {moved} <> s.{ts}"""


_TIME_TEXT = (
    "CASE WHEN {p} = 'day' THEN strftime({t}, '%Y-%m-%d') || ' (a date)' "
    "ELSE strftime({t}, '%Y-%m-%dT%H:%M:%S') || CASE WHEN microsecond({t}) % 1000000 <> 0 "
    "THEN '.' || lpad((microsecond({t}) % 1000000)::VARCHAR, 6, '0') ELSE '' END "
    "|| CASE WHEN {t} = {t}::DATE THEN ' (a time)' ELSE '' END END"
)
# Fields of a file's row (stage ``s``) and of a stored version (``e``) compared as the source
# gave them (value and dose apart, with their units): (name, the file's, the stored). A code
# left out is stored as the kind's own (a body temperature's 8310-5): compared as stored, with
# ``tl_conv`` joined as ``cv``.
_COMPARED: tuple[tuple[str, str, str], ...] = (
    ("ref_low", "s.ref_low", "e.orig_ref_low"),
    ("ref_high", "s.ref_high", "e.orig_ref_high"),
    ("code", "coalesce(cv.canon_code, s.code)", "e.code"),
    *((c, f"s.{c}", f"e.{c}")
      for c in ("patient_id", "kind", "present", "sex", "drug", "route", "frequency",
                "active_joints", "limited_joints", "term", "grade", "serious", "action", "reason", "note")),
)  # fmt: skip


def fields_differ_sql(
    qualifier: bool = True, stored_label: str = "'stored'", given_label: str = "'file'"
) -> str:
    """SQL text naming each field in which a row of the stage ``s`` differs from a stored
    version ``e``, with both values (``value: stored 4.1 mg/L, file 0.41 mg/dL``), ``; ``
    between them. Values are compared as the source gave them (``orig_*``), as the content
    hash compares them; a value or reference limit is named with its unit (``ref_high: stored
    0.5 mg/dL, file 6 mg/L``; a limit that is the stored one in the file's unit is not named),
    and one in another unit says what it is in the stored unit,
    exactly as a duplicate is decided (``tl_quantity_hint``, with ``tl_conv`` as ``cv``): the
    same quantity, or its exact value (``that is 4.100000000001 mg/L, not the same
    quantity``). A date and a time at its midnight are named as such. A censored value is
    shown with its qualifier (``<5 mg/L``); ``qualifier=False``: the store has no column for
    one (every stored value is exact). ``stored_label`` and ``given_label``: SQL text naming
    the two sides (another row of the same file: ``'row ' || e.__row``)."""

    def number(x: str) -> str:
        return f"regexp_replace(({x})::VARCHAR, '\\.0$', '')"

    def shown(x: str) -> str:
        return f"coalesce({number(x)}, 'empty')"

    def one(name: str, differs: str, stored: str, given: str, extra: str = "''") -> str:
        return (
            f"CASE WHEN {differs} THEN '{name}: ' || {stored_label} || ' ' || {stored} || ', ' || {given_label} "
            f"|| ' ' || {given} || {extra} END"
        )

    parts = []
    for when, ts, p in (("occurred_at", "occ_ts", "occ_precision"), ("ended_at", "end_ts", "end_precision")):
        stored_p, stored_t = (
            ("e.occurred_precision", "e.occurred_at")
            if when == "occurred_at"
            else ("e.ended_precision", "e.ended_at")
        )
        parts.append(one(
            when,
            f"s.{ts} IS DISTINCT FROM {stored_t} OR s.{p} IS DISTINCT FROM {stored_p}",
            f"coalesce({_TIME_TEXT.format(p=stored_p, t=stored_t)}, 'empty')",
            f"coalesce({_TIME_TEXT.format(p='s.' + p, t='s.' + ts)}, 'empty')",
        ))  # fmt: skip
    stored_q = f"e.{QUALIFIER}" if qualifier else "NULL::VARCHAR"
    for name, unit, canon in (
        ("value", "unit", "e.value"),
        ("ref_low", "unit", "e.ref_low"),
        ("ref_high", "unit", "e.ref_high"),
        ("dose", "dose_unit", None),
    ):
        # a quantity is named with its unit (a reference limit: the value's); a missing one is "empty"
        given = f"coalesce({number('s.' + name)} || coalesce(' ' || s.{unit}, ''), 'empty')"
        stored = f"coalesce({number('e.orig_' + name)} || coalesce(' ' || e.orig_{unit}, ''), 'empty')"
        # a reference limit is in the value's unit: it differs in another unit only if given
        unit_differs = f"s.{unit} IS DISTINCT FROM e.orig_{unit}"
        if name.startswith("ref_"):
            unit_differs = f"(s.{name} IS NOT NULL AND {unit_differs})"
        differs = f"s.{name} IS DISTINCT FROM e.orig_{name} OR {unit_differs}"
        same = "''"
        if name == "value":
            given = f"coalesce(s.{QUALIFIER}, '') || {given}"
            stored = f"coalesce({stored_q}, '') || {stored}"
            differs += f" OR s.{QUALIFIER} IS DISTINCT FROM {stored_q}"
        if canon is not None:
            hint = f"tl_quantity_hint(s.{name}, s.{unit}, e.orig_{name}, e.orig_{unit}, {canon}, e.unit, cv.molar)"
            same = f"CASE WHEN s.{QUALIFIER} IS NOT DISTINCT FROM {stored_q} THEN {hint} ELSE '' END"
            if name != "value":
                # a limit has no qualifier; the same limit written in the value's other unit is not named
                same = hint
                differs = f"({differs}) AND coalesce({hint}, '') NOT LIKE ' (the same quantity,%'"
            same = f"coalesce({same}, '')"
        parts.append(one(name, differs, stored, given, same))
    for name, given, stored in _COMPARED:
        if name.startswith("ref_"):
            continue  # with the quantities above
        parts.append(one(name, f"{given} IS DISTINCT FROM {stored}", shown(stored), shown(given)))
    return f"coalesce(nullif(concat_ws('; ', {', '.join(parts)}), ''), 'the way a value is written')"


def content_hash_sql(schema: str) -> str:
    """SQL for an event's content hash over the stage ``s`` (native columns but the id):
    sha256 of the JSON array of their typed values (schema 1: of a JSON object).

    Schema 3 hashes each time as read (``occ_ts`` / ``end_ts`` in the store's zone, in
    microseconds, a date marked as one), not as written: ``2009-03-01T10:00``,
    ``…10:00:00`` and, in a UTC store, ``…10:00Z`` and ``…11:00+01:00`` are one event. A
    time that cannot be read keeps its text (the row is refused anyway). Schemas 1 and 2
    hashed the text, and their stores keep doing so: their derived ids must not change.

    A censored value's qualifier (``s.value_qualifier``) is hashed after the rest, and only
    when set: every exact value's event keeps the hash (and the id) it had before."""
    cols = [c for c in events.NATIVE_COLUMNS if c != "event_id"]
    q = f"s.{QUALIFIER}"
    if schema == "1":
        packed = ", ".join(f"{c} := s.{c}" for c in cols)
        return (
            f"CASE WHEN {q} IS NULL THEN sha256(to_json(struct_pack({packed}))) "
            f"ELSE sha256(to_json(struct_pack({packed}, {QUALIFIER} := {q}))) END"
        )
    if schema == "2":
        values = ", ".join("s." + c for c in cols)
        return (
            f"CASE WHEN {q} IS NULL THEN sha256(json_array({values})::VARCHAR) "
            f"ELSE sha256(json_array({values}, {q})::VARCHAR) END"
        )
    read = {"occurred_at": ("occ_ts", "occ_precision"), "ended_at": ("end_ts", "end_precision")}
    parts: list[str] = []
    for c in cols:
        if c in read:
            ts, precision = read[c]
            # the instant in microseconds, a date marked as one (a date and its midnight are
            # two events; 10:00 and 10:00:00 are one)
            parts.append(
                f"coalesce(CASE WHEN s.{precision} = 'day' THEN 'd' ELSE '' END || epoch_us(s.{ts}), s.{c})"
            )
        else:
            parts.append(f"s.{c}")
    values = ", ".join(parts)
    return (
        f"CASE WHEN {q} IS NULL THEN sha256(json_array({values})::VARCHAR) "
        f"ELSE sha256(json_array({values}, {q})::VARCHAR) END"
    )


def _stage(con: duckdb.DuckDBPyConnection, tz: str, schema: str, ordered_rows: bool = True) -> None:
    """Build ``tl_stage`` from ``tl_raw`` in one statement: typed values, ``bad_*`` flags
    and ``raw_*`` text of the non-text columns, parsed times, content hash and event id.

    ``ordered_rows``: tl_raw numbers its rows in the order it reads them (a CSV view's
    ``row_number() OVER ()``), so insertion order must be kept. Otherwise (``__row`` is
    explicit) the stage is built without it, which lets DuckDB build it on every thread
    under the ingest memory limit (it falls back to one thread to keep order)."""
    con.execute("CREATE OR REPLACE TEMP MACRO tl_quote(x) AS chr(39) || x || chr(39)")
    _register_functions(con)
    con.execute("CREATE OR REPLACE TEMP MACRO tl_num(x) AS regexp_replace(x::VARCHAR, '\\.0$', '')")
    present = {str(r[0]): str(r[1]) for r in con.execute("DESCRIBE tl_raw").fetchall()}
    select, flags = [], []
    for col in events.NATIVE_COLUMNS:
        typed = events.COLUMN_TYPES[col] != "VARCHAR"
        if col in present:
            value = _typed(col, present[col])
            select.append(f"{value} AS {col}")
            if typed:
                # A column whose value reads back as its text keeps the text only where the
                # value is rejected (see _raw); 3.0 in a column of whole numbers keeps "3.0".
                if not _passthrough(col, present[col]):
                    raw = f"r.{col}"
                elif events.COLUMN_TYPES[col] == "INTEGER" and present[col] == "DOUBLE":
                    raw = f"r.{col}::VARCHAR"
                else:
                    raw = f"CASE WHEN {value} IS NULL THEN r.{col}::VARCHAR END"
                select.append(f"{raw} AS raw_{col}")
                flags.append(  # the cheap tests first: almost every value is read, or absent
                    f"(s.{col} IS NULL AND s.raw_{col} IS NOT NULL "
                    f"AND nullif({trimmed(f's.raw_{col}')}, '') IS NOT NULL) AS bad_{col}"
                )
        else:
            select.append(f"NULL::{events.COLUMN_TYPES[col]} AS {col}")
            if typed:
                select.append(f"NULL::VARCHAR AS raw_{col}")
                flags.append(f"false AS bad_{col}")
    select.append(
        f"{_qualifier_sql(present['value']) if 'value' in present else 'NULL::VARCHAR'} AS {QUALIFIER}"
    )
    # a dose unit is read in lower case: a message names it as written ('MCG', not 'mcg'),
    # kept only where that differs (NULL, and nothing to store, on almost every row)
    if "dose_unit" in present:
        written = trimmed("r.dose_unit")
        select.append(f"CASE WHEN lower({written}) <> {written} THEN {written} END AS raw_dose_unit")
    else:
        select.append("NULL::VARCHAR AS raw_dose_unit")
    occ, occ_p = _when_sql("occurred_at", tz)
    end, end_p = _when_sql("ended_at", tz)
    row = con.execute("SELECT current_setting('preserve_insertion_order')").fetchone()
    keep = bool(row[0]) if row else True
    con.execute(f"SET preserve_insertion_order = {str(keep and ordered_rows).lower()}")
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_stage AS
            SELECT *, coalesce(event_id, 'ev-' || left(content_hash, 20)) AS eid FROM (
            SELECT s.*, {content_hash_sql(schema)} AS content_hash FROM (
                SELECT s.*, {", ".join(flags)}, {occ} AS occ_ts, {occ_p} AS occ_precision,
                       {end} AS end_ts, CASE WHEN s.ended_at IS NOT NULL THEN {end_p} END AS end_precision
                FROM (SELECT r.__row, {", ".join(select)} FROM tl_raw r) s) s)"""
        )
    finally:
        con.execute(f"SET preserve_insertion_order = {str(keep).lower()}")


def _conversions(con: duckdb.DuckDBPyConnection, book: codes.CodeBook) -> None:
    """Build ``tl_conv``: the linear map (or the reason it fails) per (kind, code, unit),
    and ``tl_dose``: the same for dose units."""
    pairs = con.execute(
        f"""SELECT DISTINCT kind, code, unit FROM tl_stage
            WHERE kind IN ({", ".join(_quote(k) for k in MEASURED_KINDS)}) AND unit IS NOT NULL"""
    ).fetchall()
    rows: list[tuple[Any, ...]] = []
    for kind, code, unit in pairs:
        target = book.measured(kind, code)
        if target is None:
            continue  # the unknown code is reported by its own check
        try:
            conv = conversion(unit, target.unit, target.molar_mass)
            rows.append(
                (
                    kind,
                    code,
                    unit,
                    target.code,
                    target.unit,
                    conv.scale,
                    conv.offset,
                    None,
                    _suspect(unit, target, conv.scale, conv.offset),
                    target.molar_mass,
                )
            )
        except UnitError as exc:
            reason = f"unit {unit!r} cannot be converted to {target.unit!r} for {target.name}: {exc}"
            rows.append(
                (kind, code, unit, target.code, target.unit, None, None, reason, None, target.molar_mass)
            )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE tl_conv (kind VARCHAR, code VARCHAR, unit VARCHAR,
           canon_code VARCHAR, canon_unit VARCHAR, scale DOUBLE, "offset" DOUBLE, error VARCHAR,
           suspect VARCHAR, molar DOUBLE)"""
    )
    if rows:
        con.executemany("INSERT INTO tl_conv VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)

    dose_rows: list[tuple[Any, ...]] = []
    for (unit,) in con.execute(
        "SELECT DISTINCT dose_unit FROM tl_stage WHERE dose_unit IS NOT NULL"
    ).fetchall():
        for canon in codes.DOSE_UNITS:
            try:
                scale = conversion(unit, canon).scale
            except UnitError:
                continue
            if DOSE_FACTORS[0] <= scale <= DOSE_FACTORS[1]:
                dose_rows.append((unit, canon, scale, None))
            else:  # kg: 5 kg of anakinra was stored as 5,000,000 mg
                per = canon.removeprefix("mg")
                dose_rows.append((unit, None, None, (
                    f" is {scale:g} × {canon}, not a unit a dose is given in "
                    f"(ng{per}, ug{per}, mg{per} or g{per})"
                )))  # fmt: skip
            break
        else:
            hint = ucum_hint(unit)
            dose_rows.append(
                (
                    unit,
                    None,
                    None,
                    f" is not UCUM{hint}"
                    if hint
                    else " is not a mass per dose (mg) or per kg (mg/kg); give the schedule in frequency",
                )
            )
    # ``error`` follows the unit as the row wrote it: "dose_unit 'MCG'" + " is not UCUM; ..."
    con.execute(
        "CREATE OR REPLACE TEMP TABLE tl_dose (unit VARCHAR, canon VARCHAR, scale DOUBLE, error VARCHAR)"
    )
    if dose_rows:
        con.executemany("INSERT INTO tl_dose VALUES (?, ?, ?, ?)", dose_rows)


def _suspect(unit: str, target: codes.Code, scale: float, offset: float) -> str | None:
    """Why a unit that converts is still not one ``target`` is recorded in, or None.

    Valid UCUM is not enough: ``10.9/L`` (a typo for 10*9/L) is 90 per litre and turns an
    ANC of 0.9 into 8.1e-08 × 10^9/L, inside the plausible range and counted as neutropenia.
    ``scale`` and ``offset``: the unit's conversion to ``target.unit``."""
    if offset:
        return None  # temperatures: Cel, [degF], K are the only units that convert
    n = odd_factor(unit)
    if n is not None:
        return f"a number in a UCUM unit multiplies it (the {n} of {unit!r}){_unit_hint(unit, target)}"
    lo, hi = target.unit_factors
    if not lo <= scale <= hi:
        return (
            f"{unit!r} is {scale:.6g} × {target.unit}, and units for {target.name} are "
            f"{lo:g} to {hi:g} × {target.unit}{_unit_hint(unit, target)}"
        )
    return None


def _unit_hint(unit: str, target: codes.Code) -> str:
    """A did-you-mean for the usual slip, 10.9 for 10*9 (a power of ten)."""
    guess = re.sub(r"10[.](\d+)", r"10*\1", unit)
    if guess == unit:
        return ""
    try:
        scale = conversion(guess, target.unit, target.molar_mass).scale
    except UnitError:
        return ""
    lo, hi = target.unit_factors
    return f"; did you mean {guess!r}?" if lo <= scale <= hi and odd_factor(guess) is None else ""


def _date_hint(t: str) -> str:
    """SQL: a hint on a date ``t`` that cannot be read: a spreadsheet's serial day number
    (Excel counts days from 1899-12-30), or day and month in an order only the site knows."""
    dmy = f"regexp_extract({t}, '^([0-9]{{1,2}})[/.-]([0-9]{{1,2}})[/.-]([0-9]{{4}})$', ['a', 'b', 'y'])"
    return rf"""CASE
        WHEN regexp_full_match({t}, '[1-9][0-9]{{4}}(\.[0-9]+)?') AND try_cast({t} AS DOUBLE) BETWEEN 1 AND 73050 THEN
            ' (a spreadsheet''s day number? ' || {t} || ' counted from 1899-12-30 is '
            || strftime(DATE '1899-12-30' + floor(try_cast({t} AS DOUBLE))::INTEGER, '%Y-%m-%d')
            || ': save the column as dates, YYYY-MM-DD)'
        WHEN {dmy}.a <> '' AND {dmy}.a::INT BETWEEN 1 AND 12 AND {dmy}.b::INT BETWEEN 1 AND 12 AND {dmy}.a <> {dmy}.b THEN
            ' (day/month or month/day? it reads ' || {dmy}.y || '-' || lpad({dmy}.b, 2, '0') || '-' || lpad({dmy}.a, 2, '0')
            || ' or ' || {dmy}.y || '-' || lpad({dmy}.a, 2, '0') || '-' || lpad({dmy}.b, 2, '0')
            || ': write it as YYYY-MM-DD)'
        WHEN {dmy}.a <> '' THEN
            ' (write it as YYYY-MM-DD: year, month, day)'
        ELSE '' END"""


def _number_hint(t: str) -> str:
    """SQL: a hint on the text ``t`` that is not a number, for the usual ways a spreadsheet or a
    lab system writes one ('' when none fits). ``1,234`` may be a decimal comma or a thousands
    separator: both readings are given, never one guessed (1.234 for 1234 is 1000 times too
    small)."""
    return rf"""CASE
        WHEN regexp_full_match({t}, '-?[0-9]{{1,3}},[0-9]{{3}}') THEN
            ' (' || {t} || ': a decimal comma (' || replace({t}, ',', '.') || ') or a thousands separator ('
            || replace({t}, ',', '') || ')? write it with a point as the decimal mark and no separators)'
        WHEN regexp_full_match({t}, '-?[0-9]+,[0-9]+') THEN
            ' (a decimal comma? write ' || replace({t}, ',', '.') || ': a point as the decimal mark)'
        WHEN regexp_full_match({t}, '-?[0-9]{{1,3}}(,[0-9]{{3}})+(\.[0-9]+)?') THEN
            ' (thousands separators? write ' || replace({t}, ',', '') || ': no separators)'
        WHEN regexp_full_match({t}, '-?[0-9]{{1,3}}([  ][0-9]{{3}})+([.,][0-9]+)?') THEN
            ' (a space between thousands? write ' || regexp_replace({t}, '[  ]', '', 'g') || ' with a point as the decimal mark)'
        WHEN regexp_full_match({t}, '(<|>|<=|>=|≤|≥)\s*-?[0-9]+,[0-9]+') THEN
            ' (a censored value with a decimal comma? write ' || replace({t}, ',', '.') || ': a point as the decimal mark)'
        WHEN regexp_matches({t}, '^(<|>|<=|>=|≤|≥)') THEN
            ' (a censored value is a qualifier and a number: <5, <=5, >2000, >=2000, ≤5 or ≥2000, with no unit or text after it)'
        ELSE '' END"""


def _checks(
    store: Store,
    op: str,
    now_local: datetime,
    book: codes.CodeBook,
    unique_ids: bool = False,
    screen: bool = True,
) -> list[str]:
    """SQL queries each yielding (row, field, reason) for one kind of problem. With
    ``unique_ids`` (no event id appears twice in the batch, or none on rows of different
    content) the check of rows that share an id with different content is left out: it cannot
    find any. ``screen``: look for control
    and invisible characters in identifiers (left out when the file's bytes hold none).
    A row that is no event at all (empty, or a CSV header line) is found by
    :func:`_collect_errors`, among the rows these find."""
    kinds = list(events.KINDS)
    q: list[str] = []
    simple: list[tuple[str, str, str]] = []  # (field, condition, reason) over one stage row
    # of them, the conditions on which columns a kind requires or allows: the rows are
    # selected by one test of a bit mask instead (see _fields_mask_sql)
    by_mask: set[str] = set()

    def add(field: str, cond: str, reason: str, masked: bool = False) -> None:
        simple.append((field, cond, reason))
        if masked:
            by_mask.add(cond)

    for col in events.CORE_COLUMNS:
        add(col, f"s.{col} IS NULL", "'missing value'")
    add("kind", f"s.kind IS NOT NULL AND s.kind NOT IN {_in(kinds)}", "'unknown kind ' || tl_quote(s.kind)")
    for col, typ in events.COLUMN_TYPES.items():
        if typ != "VARCHAR":
            add(
                col,
                f"s.bad_{col}",
                f"'not {_TYPE_NAMES[typ]}: ' || tl_quote(s.raw_{col})"
                + (f" || {_number_hint(f'trim(s.raw_{col})')}" if typ == "DOUBLE" else ""),
            )
    # which kinds require / allow each column
    for col in events.NATIVE_COLUMNS:
        if col in _ANY_KIND:
            continue
        requiring = [k for k in kinds if col in events.kind_fields(k)[0]]
        refusing = [k for k in kinds if col not in events.kind_fields(k)[1]]
        bad = f" AND NOT s.bad_{col}" if events.COLUMN_TYPES[col] != "VARCHAR" else ""
        if requiring:
            add(
                col,
                f"s.{col} IS NULL{bad} AND s.kind IN {_in(requiring)}",
                "'required for kind ' || s.kind",
                masked=True,
            )
        nonnull = f"(s.{col} IS NOT NULL OR s.bad_{col})" if bad else f"s.{col} IS NOT NULL"
        add(
            col,
            f"{nonnull} AND s.kind IN {_in(refusing)}",
            "'does not apply to kind ' || s.kind",
            masked=True,
        )
    if screen:
        for col in IDENTIFIERS:
            add(col, f"regexp_matches(s.{col}, {_quote(_INVISIBLE)})", _invisible_reason(f"s.{col}"))
            # 'José' with a combining accent (NFD, as macOS names files) and 'José' composed
            # (NFC) look alike and are two values. Refused rather than normalised: a store may
            # already hold the NFD form, and an id changed silently would no longer meet it.
            add(
                col,
                f"s.{col} <> nfc_normalize(s.{col})",
                f"tl_quote(s.{col}) || ' is not in Unicode''s composed form (NFC): it has a letter and "
                "its accent written as two characters; save the file with composed characters (NFC)'",
            )
    # dates
    for col, ts in (("occurred_at", "occ_ts"), ("ended_at", "end_ts")):
        bad_offset = f"regexp_matches(s.{col}, '{_ANY_OFFSET}') AND NOT regexp_matches(s.{col}, '{_OFFSET}')"
        add(
            col,
            f"s.{col} IS NOT NULL AND s.{ts} IS NULL AND {bad_offset}",
            "'has an impossible UTC offset (give Z, or -14:00 to +14:00): ' || tl_quote(s." + col + ")",
        )
        # 2024-02-30: a date of the right form that no calendar has is named as such (helper 50)
        month = f"regexp_extract(s.{col}, '^(\\d{{4}})-(0[1-9]|1[0-2])-(\\d{{2}})', ['y', 'm', 'd'])"
        no_day = (
            f"CASE WHEN {month}.m <> '' AND try_cast(left(s.{col}, 10) AS DATE) IS NULL THEN "
            f"'has no such day: ' || left(s.{col}, 7) || ' has ' || "
            f"day(last_day(make_date({month}.y::INT, {month}.m::INT, 1)))::VARCHAR || ' days: ' || tl_quote(s.{col}) "
            "ELSE 'not a valid date or date-time (YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM]): ' || "
            f"tl_quote(s.{col}) || {_date_hint(f'trim(s.{col})')} END"
        )
        add(col, f"s.{col} IS NOT NULL AND s.{ts} IS NULL AND NOT ({bad_offset})", no_day)
        add(
            col,
            f"s.{ts} > {_quote(now_local.isoformat(sep=' '))}::TIMESTAMP",
            "'is in the future: ' || s." + col,
        )
        add(col, f"s.{ts} < TIMESTAMP '1900-01-01'", "'is before 1900: ' || s." + col)
        if store.timezone not in ("UTC", "Etc/UTC"):  # a zone without daylight saving time has no such hour
            q.append(
                _skipped_time_sql(
                    col, ts, "occ_precision" if ts == "occ_ts" else "end_precision", store.timezone
                )
            )
            add(
                col,
                _repeated_hour_sql(col, ts, store.timezone),
                f"'is ' || strftime(s.{ts}, '%H:%M') || ' in {store.timezone}, in the hour repeated when daylight "
                "saving time ends: the store keeps clock times, which cannot tell the two apart. Give it as the "
                "local clock read it (no offset), or keep such data in a UTC store'",
            )
    add(  # a date-only end covers its whole day, as the evaluators read it
        "ended_at",
        "CASE WHEN s.end_precision = 'day' THEN s.end_ts + INTERVAL 1 DAY - INTERVAL 1 MICROSECOND ELSE s.end_ts END < s.occ_ts",
        "'ends (' || s.ended_at || ') before it starts (' || s.occurred_at || ')'",
    )
    # enumerations
    enums = {
        "sex": codes.SEXES, "route": codes.ROUTES, "action": codes.AE_ACTIONS,
        "frequency": tuple(book.frequencies),
    }  # fmt: skip
    for col, allowed in enums.items():
        add(
            col,
            f"s.{col} IS NOT NULL AND s.{col} NOT IN {_in(allowed)}",
            f"'unknown {col} ' || tl_quote(s.{col}) || ' (allowed: {', '.join(allowed)})'",
        )
    add(
        "code",
        f"s.kind = 'lab' AND s.code IS NOT NULL AND s.code NOT IN {_in(book.labs)}",
        "'unknown LOINC code ' || tl_quote(s.code) || ' for kind lab'",
    )
    add(
        "code",
        f"s.kind = 'finding' AND s.code IS NOT NULL AND s.code NOT IN {_in(book.findings)}",
        "'unknown finding ' || tl_quote(s.code)",
    )
    add(
        "code",
        f"s.kind = 'assessment' AND s.code IS NOT NULL AND s.code NOT IN {_in(book.assessments)}",
        "'unknown assessment ' || tl_quote(s.code)",
    )
    # censored values (<5): a lab's alone, in a store that has their column
    censored = f"s.{QUALIFIER} IS NOT NULL"
    add(
        "value",
        f"{censored} AND s.kind IN {_in([k for k in MEASURED_KINDS if k != 'lab'])}",
        "'is a censored value (' || tl_quote(trim(s.raw_value)) || '): only a lab result may be one; give the '"
        " || s.kind || '''s measured value'",
    )
    if not store.has_qualifier:
        add(
            "value",
            f"{censored} AND s.kind = 'lab'",
            "'is a censored value (' || tl_quote(trim(s.raw_value)) || '), which this store cannot hold: it was "
            "made by a timeline from before censored values, and a store''s tables are never altered. Ingest into "
            "a new store (`timeline init`), or leave the row out'",
        )
    # numbers
    add("dose", "s.dose < 0", "'must not be negative: ' || " + _raw("dose"))
    add(
        "active_joints",
        "s.active_joints < 0 OR s.active_joints > 75",
        "'must be a joint count from 0 to 75: ' || " + _raw("active_joints"),
    )
    add(
        "limited_joints",
        "s.limited_joints < 0 OR s.limited_joints > 75",
        "'must be a joint count from 0 to 75: ' || " + _raw("limited_joints"),
    )
    add("grade", "s.grade NOT BETWEEN 1 AND 5", "'CTCAE grade must be 1 to 5: ' || " + _raw("grade"))
    add(
        "ref_high",
        "s.ref_low > s.ref_high",
        f"'reference range is inverted: ' || {_raw('ref_low')} || ' > ' || {_raw('ref_high')}",
    )
    # units and plausibility (after conversion)
    q.append(
        """SELECT s.__row, 'unit', c.error FROM tl_stage s JOIN tl_conv c
           ON s.kind = c.kind AND s.code IS NOT DISTINCT FROM c.code AND s.unit = c.unit WHERE c.error IS NOT NULL"""
    )
    written = "coalesce(s.raw_dose_unit, s.dose_unit)"
    q.append(
        f"""SELECT s.__row, 'dose_unit', 'dose_unit ' || tl_quote({written}) || d.error
           FROM tl_stage s JOIN tl_dose d ON s.dose_unit = d.unit WHERE d.error IS NOT NULL"""
    )
    # a dose no one gives: over 1 kg per dose or 10 g/kg (IVIG, among the largest, is 2 g/kg,
    # at most about 140 g)
    q.append(
        f"""SELECT s.__row, 'dose', 'dose ' || {_raw("dose")} || ' ' || {written} || CASE WHEN {written} <> d.canon
                THEN ' (' || format('{{:.6g}}', s.dose * d.scale) || ' ' || d.canon || ')' ELSE '' END
                || ' is over ' || CASE WHEN d.canon = 'mg' THEN '1,000,000 mg (1 kg) per dose'
                ELSE '10,000 mg/kg (10 g/kg)' END || ': no dose is that large (IVIG, among the largest, is 2 g/kg)'
           FROM tl_stage s JOIN tl_dose d ON s.dose_unit = d.unit
           WHERE d.error IS NULL AND s.dose * d.scale > CASE WHEN d.canon = 'mg' THEN {MAX_DOSE_MG:g} ELSE {MAX_DOSE_MG_KG:g} END"""
    )
    ranges: list[codes.Code] = []
    for table in (book.labs, book.assessments):
        ranges.extend(table.values())
    ranges.extend(codes.VITALS.values())
    rng = ", ".join(
        f"({_quote(c.code)}, {c.low if c.low is not None else 'NULL'}, {c.high if c.high is not None else 'NULL'}, {_quote(c.name)})"
        for c in ranges
    )
    canon = """format('{:.6g}', s.value * c.scale + c."offset")"""
    q.append(
        f"""SELECT s.__row, 'unit',
                CASE WHEN s.value IS NULL THEN 'unit ' || s.unit
                     ELSE 'value ' || {_raw("value")} || ' ' || s.unit || ' would be ' || {canon} || ' ' || c.canon_unit END
                || ' for ' || rg.name || ': ' || c.suspect
           FROM tl_stage s JOIN tl_conv c ON s.kind = c.kind AND s.code IS NOT DISTINCT FROM c.code AND s.unit = c.unit
           JOIN (VALUES {rng}) rg(code, lo, hi, name) ON rg.code = c.canon_code
           WHERE c.suspect IS NOT NULL"""
    )
    q.append(
        f"""SELECT s.__row, 'value',
                'value ' || {_raw("value")} || ' ' || s.unit
                || CASE WHEN s.unit = c.canon_unit THEN '' ELSE ' (' || {canon} || ' ' || c.canon_unit || ')' END
                || ' is outside the plausible range '
                || tl_num(rg.lo) || '–' || tl_num(rg.hi) || ' ' || c.canon_unit || ' for ' || rg.name
           FROM tl_stage s JOIN tl_conv c ON s.kind = c.kind AND s.code IS NOT DISTINCT FROM c.code AND s.unit = c.unit
           JOIN (VALUES {rng}) rg(code, lo, hi, name) ON rg.code = c.canon_code
           WHERE c.error IS NULL AND c.suspect IS NULL AND s.value IS NOT NULL
             AND (round(s.value * c.scale + c."offset", 9) < rg.lo OR round(s.value * c.scale + c."offset", 9) > rg.hi)"""
    )
    # event ids: conflicts inside the batch and with the store
    if not unique_ids:
        # named with the fields that differ from the first other row, each side by its row
        # (``value: row 9 10.01 mg/L, row 3 1 mg/dL (that is 10 mg/L, not the same quantity)``);
        # two rows that give the same quantities in two units are one event (tl_file_equiv)
        differs = fields_differ_sql(
            store.has_qualifier, stored_label="'row ' || e.__row", given_label="'row ' || s.__row"
        )
        q.append(
            f"""SELECT s.__row, 'event_id', 'event id ' || tl_quote(s.eid) || ' also appears in row'
                   || CASE WHEN count(*) > 1 THEN 's ' ELSE ' ' END
                   || string_agg(e.__row::VARCHAR, ', ' ORDER BY e.__row) || ' with different content: '
                   || arg_min(d.differs, e.__row)
               FROM tl_stage s JOIN ({_STAGE_AS_STORED}) e ON e.eid = s.eid AND e.content_hash <> s.content_hash
               LEFT JOIN tl_conv cv ON s.kind = cv.kind AND s.code IS NOT DISTINCT FROM cv.code AND s.unit = cv.unit,
               LATERAL (SELECT {differs} AS differs) d
               WHERE NOT EXISTS (SELECT 1 FROM tl_file_equiv f
                                 WHERE f.first = least(s.__row, e.__row) AND f.later = greatest(s.__row, e.__row))
               GROUP BY s.__row, s.eid"""
        )
    # the checks against stored events are left out when the store holds none (a first
    # ingest): they cannot find anything, and each reads the whole stage
    held = _any(store.con, "SELECT 1 FROM events")
    if op == "ingest" and held:
        # an id in the store with other content than every version it had, unless retracted
        # (then the row asserts it again: see _versions)
        # named by its current version (the one a correction changes), with the fields that
        # differ from it, as stored and as the file gives them; the rows in conflict are found
        # first, so that only their events' versions are looked up (a file ingested again is
        # millions of ids the store has, and none in conflict)
        q.append(
            f"""SELECT s.__row, 'event_id', 'event id ' || tl_quote(s.eid) || ' is already in the store (seq '
                   || v.asserted || CASE WHEN e.op = 'assert' THEN '' ELSE ', corrected at seq ' || e.seq END
                   || ') with different content: ' || {fields_differ_sql(store.has_qualifier)} || '; '
                   || CASE WHEN e.patient_id <> s.patient_id OR e.kind <> s.kind
                           THEN 'its ' || CASE WHEN e.patient_id <> s.patient_id THEN 'patient' ELSE 'kind' END
                                || ' differs, which a correction cannot change: `timeline retract` it, then ingest the row again'
                           ELSE 'use `timeline correct` to change it' END
               FROM (SELECT DISTINCT s.__row FROM tl_stage s
                     JOIN {_HELD} e ON e.event_id = s.eid AND e.op = 'assert' AND e.content_hash <> s.content_hash
                     LEFT JOIN tl_changed c ON c.event_id = s.eid
                     WHERE (c.event_id IS NULL
                        OR (c.cur_op <> 'retract' AND NOT list_contains(c.hashes, s.content_hash)))
                       AND s.__row NOT IN (SELECT __row FROM tl_equiv)) k
               JOIN tl_stage s ON s.__row = k.__row,
               LATERAL (SELECT max(seq) AS seq, max(seq) FILTER (WHERE op = 'assert') AS asserted
                        FROM {_HELD} x WHERE x.event_id = s.eid) v
               JOIN {_HELD} e ON e.seq = v.seq
               LEFT JOIN tl_conv cv ON s.kind = cv.kind AND s.code IS NOT DISTINCT FROM cv.code AND s.unit = cv.unit"""
        )
    # The rows to be written (not those the store has: a file ingested again after a
    # correction or retraction holds its first versions, which are not written)
    stored = store.con.execute("SELECT count(*) FROM tl_stored").fetchone()
    fresh = (
        "(SELECT * FROM tl_stage WHERE __row NOT IN (SELECT __row FROM tl_stored))"
        if stored and stored[0]
        else "tl_stage"  # a file of new events, the usual: every row is written
    )
    # birth: one per patient; nothing before it. Only this batch's patients' births are read.
    hw = store.high_water()
    births_sql = store.current_sql(
        hw, patients_sql="SELECT DISTINCT patient_id FROM tl_stage", kinds=["birth"]
    )
    if held:
        q.append(
            f"""SELECT s.__row, 'occurred_at', 'patient ' || tl_quote(s.patient_id) || ' already has birth date '
                   || strftime(b.occurred_at, '%Y-%m-%d')
               FROM {fresh} s JOIN ({births_sql}) b
                 ON b.kind = 'birth' AND b.patient_id = s.patient_id
               WHERE s.kind = 'birth' AND b.occurred_at <> s.occ_ts AND b.event_id <> s.eid"""
        )
    q.append(
        f"""SELECT s.__row, 'occurred_at', 'patient ' || tl_quote(s.patient_id) || ' has more than one birth date in this file'
           FROM {fresh} s WHERE s.kind = 'birth' AND s.patient_id IN (
               SELECT patient_id FROM {fresh} WHERE kind = 'birth' GROUP BY 1 HAVING count(DISTINCT occ_ts) > 1)"""
    )
    stored_births = (
        f"SELECT patient_id, min(occurred_at) AS born FROM ({births_sql}) WHERE kind = 'birth' GROUP BY 1 UNION ALL"
        if held
        else ""
    )
    q.append(
        f"""WITH births AS ({stored_births}
               SELECT patient_id, min(occ_ts) AS born FROM {fresh} WHERE kind = 'birth' GROUP BY 1)
           SELECT s.__row, 'occurred_at', 'is before the patient''s birth (' || strftime(b.born, '%Y-%m-%d') || '): '
               || s.occurred_at
           FROM {fresh} s JOIN (SELECT patient_id, min(born) AS born FROM births GROUP BY 1) b USING (patient_id)
           WHERE s.occ_ts < b.born AND s.kind <> 'birth'"""
    )
    # ... and no birth after an event already stored (the check above looks the other way)
    if held:
        q.append(_against_stored(store, hw, fresh, "birth", "min(e.occurred_at)", "'birth'", "s.occ_ts > x.bound",
                                 "is after the patient''s first recorded event"))  # fmt: skip
    # death: one per patient; nothing on a later day (end of follow-up aside: a registry may close
    # a record after it), and no death before a day with events already stored
    deaths_sql = store.current_sql(
        hw, patients_sql="SELECT DISTINCT patient_id FROM tl_stage", kinds=["death"],
        columns=["event_id", "patient_id", "kind", "occurred_at"],
    )  # fmt: skip
    if held:
        q.append(
            f"""SELECT s.__row, 'occurred_at', 'patient ' || tl_quote(s.patient_id) || ' already has death date '
                   || strftime(d.occurred_at, '%Y-%m-%d')
               FROM {fresh} s JOIN ({deaths_sql}) d ON d.patient_id = s.patient_id
               WHERE s.kind = 'death' AND d.occurred_at::DATE <> s.occ_ts::DATE AND d.event_id <> s.eid"""
        )
    q.append(
        f"""SELECT s.__row, 'occurred_at', 'patient ' || tl_quote(s.patient_id) || ' has more than one death date in this file'
           FROM {fresh} s WHERE s.kind = 'death' AND s.patient_id IN (
               SELECT patient_id FROM {fresh} WHERE kind = 'death' GROUP BY 1 HAVING count(DISTINCT occ_ts::DATE) > 1)"""
    )
    stored_deaths = (
        f"""SELECT patient_id, occurred_at::DATE AS died FROM ({deaths_sql})
               WHERE event_id NOT IN (SELECT eid FROM tl_stage) UNION ALL"""
        if held
        else ""
    )
    q.append(
        f"""WITH deaths AS ({stored_deaths}
               SELECT patient_id, occ_ts::DATE AS died FROM {fresh} WHERE kind = 'death')
           SELECT s.__row, 'occurred_at', 'is after the patient''s death (' || strftime(d.died, '%Y-%m-%d') || '): '
               || s.occurred_at
           FROM {fresh} s JOIN (SELECT patient_id, min(died) AS died FROM deaths GROUP BY 1) d USING (patient_id)
           WHERE s.occ_ts::DATE > d.died AND s.kind NOT IN ('death', 'end_of_follow_up')"""
    )
    if held:
        q.append(_against_stored(store, hw, fresh, "death", "max(e.occurred_at)::DATE", "'death', 'end_of_follow_up'",
                                 "s.occ_ts::DATE < x.bound", "is before the patient''s last recorded event"))  # fmt: skip
    # The single-row checks run as one scan: each row that fails any of them yields a list
    # with one (field, reason) per failed check, unnested.
    items = ", ".join(
        f"CASE WHEN {cond} THEN {{'field': {_quote(field)}, 'reason': {reason}}} END"
        for field, cond, reason in simple
    )
    # The rows that fail any check: those the mask test finds, and those of the other
    # conditions (one test of the mask instead of a kind list tested per column: 0.5 s less
    # of 300k rows)
    mask, fields = _fields_mask_sql()
    wanted = [*(f"({cond})" for _, cond, _ in simple if cond not in by_mask), fields]
    q.insert(
        0,
        f"""SELECT row, e.field AS field, e.reason AS reason FROM (
            SELECT s.__row AS row, unnest([{items}]) AS e FROM tl_stage s {mask}
            WHERE {" OR ".join(wanted)})
        WHERE e IS NOT NULL""",
    )
    return q


# The columns every kind has (or may have): no kind requires or refuses them
_ANY_KIND = ("event_id", "patient_id", "kind", "occurred_at", "note")


def _fields_mask_sql() -> tuple[str, str]:
    """(join, condition): the condition holds of a stage row ``s`` exactly when a column its
    kind requires is absent or a column its kind does not allow is present (the masked
    checks of :func:`_checks`). Each column that a kind's model may require or refuse is a
    bit of ``tl_m.m``; the join brings the row's kind's required (``r``) and refused (``f``)
    bits. A column with a value that cannot be read (``bad_*``) is present."""
    cols = [c for c in events.NATIVE_COLUMNS if c not in _ANY_KIND]
    bits = {c: 1 << i for i, c in enumerate(cols)}
    present = " + ".join(
        f"CASE WHEN s.{c} IS NOT NULL"
        + (f" OR s.bad_{c}" if events.COLUMN_TYPES[c] != "VARCHAR" else "")
        + f" THEN {bits[c]} ELSE 0 END"
        for c in cols
    )
    kinds = []
    for k in events.KINDS:
        required, allowed = events.kind_fields(k)
        r = sum(bits[c] for c in cols if c in required)
        f = sum(bits[c] for c in cols if c not in allowed)
        kinds.append(f"({_quote(k)}, {r}::BIGINT, {f}::BIGINT)")
    join = (
        f"LEFT JOIN (VALUES {', '.join(kinds)}) tl_kf(kind, r, f) ON tl_kf.kind = s.kind, "
        f"LATERAL (SELECT ({present})::BIGINT AS m) tl_m"
    )
    return join, "((tl_m.m & tl_kf.f) <> 0 OR (tl_m.m & tl_kf.r) <> tl_kf.r)"


# Characters refused in an identifier: control characters (C0, DEL, C1), characters that do
# not show (zero-width, joiners, direction marks and isolates, a byte order mark, a soft
# hyphen, variation selectors, fillers), line and paragraph separators, and every space but
# the plain one. Each makes a value that looks like another and is not ("P0<ZWSP>50" and
# "P050" were two patients, shown alike), or writes a terminal escape sequence when shown.
_INVISIBLE = (
    r"[\x00-\x1f\x7f-\x9f\x{a0}\x{ad}\x{34f}\x{61c}\x{115f}\x{1160}\x{1680}\x{17b4}\x{17b5}"
    r"\x{180b}-\x{180f}\x{2000}-\x{200f}\x{2028}-\x{202f}\x{205f}-\x{206f}\x{3000}\x{3164}"
    r"\x{fe00}-\x{fe0f}\x{feff}\x{ffa0}\x{fff0}-\x{fffb}]"
)
# The native columns that identify or classify (an id, a code, a unit, a drug): the
# enumerations (kind, sex, route, frequency, action) are refused by their own check; an adverse
# event's term is text as the clinician wrote it, kept as a note is.
IDENTIFIERS = ("event_id", "patient_id", "code", "unit", "drug", "dose_unit")
_CHAR_NAMES = {
    9: "a tab", 10: "a line feed", 13: "a carriage return", 27: "an escape character",
    127: "a delete character", 160: "a no-break space", 173: "a soft hyphen",
    8203: "a zero-width space", 8204: "a zero-width non-joiner", 8205: "a zero-width joiner",
    8206: "a left-to-right mark", 8207: "a right-to-left mark", 8232: "a line separator",
    8233: "a paragraph separator", 8239: "a narrow no-break space", 8288: "a word joiner",
    65279: "a zero-width no-break space (byte order mark)",
}  # fmt: skip


def _odd_identifiers(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether an identifier of a staged row holds a character of :data:`_INVISIBLE` or is not
    in NFC: one pass over the identifiers joined by '|' (which no accent composes with), one
    regular expression and one normalisation a row (0.1 s for 531k rows; six regular
    expressions, evaluated in the check's filter and again in its result, cost 0.4 s). Text of
    printable ASCII only, almost all, has neither: one cheaper expression passes it."""
    joined = f"concat_ws('|', {', '.join(IDENTIFIERS)})"
    found = con.execute(
        f"""SELECT count(*) FROM (SELECT {joined} AS j FROM tl_stage)
            WHERE regexp_matches(j, '[^ -~]') AND (regexp_matches(j, {_quote(_INVISIBLE)}) OR j <> nfc_normalize(j))"""
    ).fetchone()
    return bool(found and found[0])


def _invisible_reason(value: str) -> str:
    """SQL for the message about the first refused character of ``value``."""
    ch = f"regexp_extract({value}, {_quote(_INVISIBLE)})"
    code = f"unicode({ch})"
    names = " ".join(f"WHEN {k} THEN {_quote(v)}" for k, v in _CHAR_NAMES.items())
    space = f"({code} = 5760 OR {code} BETWEEN 8192 AND 8202 OR {code} IN (8239, 8287, 12288))"
    what = f"""CASE {code} {names} ELSE CASE WHEN {code} < 160 THEN 'a control character'
        WHEN {space} THEN 'a space other than the plain one' ELSE 'a character that does not show' END END"""
    return f"""'contains ' || {what} || ' (U+' || format('{{:04X}}', {code}) || ') at character '
        || strpos({value}, {ch}) || ' of ' || tl_quote({value}) || CASE WHEN {space} OR {code} IN (160, 8239)
        THEN ': write a plain space' ELSE ': remove it' END"""


def _against_stored(
    store: Store, hw: int, fresh: str, kind: str, bound: str, others: str, breach: str, says: str
) -> str:
    """The check of a birth (death) row against the events the store has of that patient (not
    this batch's): ``bound`` over those of kinds other than ``others`` (their first or last
    day), and the row refused where ``breach`` holds of ``s.occ_ts`` and ``x.bound``."""
    stored = store.current_sql(
        hw, patients_sql=f"SELECT DISTINCT patient_id FROM {fresh} WHERE kind = '{kind}'",
        columns=["event_id", "patient_id", "kind", "occurred_at"],
    )  # fmt: skip
    return f"""SELECT s.__row, 'occurred_at', '{says} (' || strftime(x.bound, '%Y-%m-%d') || '): ' || s.occurred_at
           FROM {fresh} s JOIN (
               SELECT e.patient_id, {bound} AS bound FROM ({stored}) e
               WHERE e.kind NOT IN ({others}) AND e.event_id NOT IN (SELECT eid FROM tl_stage) GROUP BY 1) x
             USING (patient_id)
           WHERE s.kind = '{kind}' AND {breach}"""


def _collect_errors(
    con: duckdb.DuckDBPyConnection, checks: list[str], book: codes.CodeBook, fmt: str | None = None
) -> tuple[list[RowError], int]:
    """Every problem found, at most MAX_REPORTED listed, and how many there are. ``fmt``:
    the source's format (csv, jsonl, ...), for the words of a message."""
    # the problems found before the stage was built (a JSON line that is no object, a key
    # unknown or given twice) are reported with those of the values, in one pass
    early = _temp_table_exists(con, "tl_early")
    if early:
        checks = [*checks, "SELECT row, field, reason FROM tl_early"]
    union = " UNION ALL ".join(f"({c})" for c in checks)
    con.execute(f"CREATE OR REPLACE TEMP TABLE tl_errors AS SELECT DISTINCT * FROM ({union})")
    _no_event_rows(con, fmt, early)
    if early:  # a misspelt key's line lacks the field it meant, as the key's message says
        con.execute(
            """CREATE OR REPLACE TEMP TABLE tl_errors AS SELECT * FROM tl_errors e
               WHERE NOT ((e.reason = 'missing value' OR e.reason LIKE 'required for kind %') AND EXISTS (
                   SELECT 1 FROM tl_early x WHERE x.row = e.row AND x.meant = e.field))"""
        )
    total_row = con.execute("SELECT count(*) FROM tl_errors").fetchone()
    total = int(total_row[0]) if total_row else 0
    rows = con.execute(
        f"SELECT row, field, reason FROM tl_errors ORDER BY row NULLS FIRST, field, reason LIMIT {MAX_REPORTED}"
    ).fetchall()
    return [_suggest(RowError(r, f, str(m)), book) for r, f, m in rows], total


def _any(con: duckdb.DuckDBPyConnection, sql: str) -> bool:
    """Whether the query yields a row."""
    return con.execute(f"SELECT EXISTS ({sql})").fetchone() == (True,)


def _temp_table_exists(con: duckdb.DuckDBPyConnection, name: str) -> bool:
    found = con.execute(
        "SELECT count(*) FROM duckdb_tables() WHERE temporary AND table_name = ?", [name]
    ).fetchone()
    return bool(found and found[0])


def _no_event_rows(con: duckdb.DuckDBPyConnection, fmt: str | None, early: bool = False) -> None:
    """Name in ``tl_errors`` the rows that are no event at all, an empty row or (CSV) a header
    line, as such and only so: not also by each field ("missing value", "unknown kind 'kind'").
    Such a row has no kind, or one that is no kind: only the rows refused for their kind are
    looked at (a pass over the whole stage's columns cost 0.4 s a 2M-row file)."""
    if con.execute("SELECT count(*) FROM tl_errors WHERE field = 'kind'").fetchone() == (0,):
        return
    whole = _empty_sql() + (f" OR ({_header_sql()})" if fmt == "csv" else "")
    if early:  # an object of unknown keys only is not empty: its keys are named
        whole = f"({whole}) AND s.__row NOT IN (SELECT row FROM tl_early)"
    empty = {
        "csv": "empty, only separators (a spreadsheet's empty row): delete the line if nothing is missing there",
        "jsonl": "empty: an object with no field that has a value",
    }.get(fmt or "", "empty: no field has a value")
    con.execute(
        f"""INSERT INTO tl_errors
           SELECT s.__row, NULL, CASE WHEN {_empty_sql()} THEN {_quote(empty)} ELSE {_header_reason()} END
           FROM tl_stage s WHERE s.__row IN (SELECT row FROM tl_errors WHERE field = 'kind') AND ({whole})"""
    )
    # the per-field errors of those rows go (the scratch table rebuilt: the library never deletes rows)
    con.execute(
        """CREATE OR REPLACE TEMP TABLE tl_errors AS SELECT * FROM tl_errors
           WHERE (field IS NOT NULL AND row IN (SELECT row FROM tl_errors WHERE field IS NULL)) IS NOT TRUE"""
    )


_SITE_CODE = "; a site's own code is defined in a codes.yaml and registered with `timeline codes add FILE`"
_SITE_FREQUENCY = "; a site's own interval is defined in a codes.yaml (frequencies:) and registered with `timeline codes add FILE`"


def _suggest(err: RowError, book: codes.CodeBook) -> RowError:
    """An unknown kind, code or frequency: the closest known one, and where a site's own goes
    (a frequency's message lists the allowed ones already)."""
    m = re.match(r"unknown (kind|LOINC code|finding|assessment|frequency) '([^']*)'", err.reason)
    if not m:
        return err
    pools: dict[str, list[str]] = {
        "kind": list(events.KINDS),
        "LOINC code": list(book.labs),
        "finding": list(book.findings),
        "assessment": list(book.assessments),
        "frequency": [],
    }
    hint = _did_you_mean(m.group(2), pools[m.group(1)])
    named = codes.named_code(m.group(2), book) if m.group(1) != "kind" else None  # CRP: 1988-5
    if named is not None and m.group(1) != "frequency":
        register = ", registered with `timeline codes add FILE`" if "codes.yaml" in named[0] else ""
        return RowError(err.row, err.field, f"{err.reason}: {named[0]}{register}")
    if m.group(1) != "kind":
        hint += _SITE_FREQUENCY if m.group(1) == "frequency" else _SITE_CODE
    return RowError(err.row, err.field, err.reason + hint)


def _closest(word: str, pool: Sequence[str] | Iterable[str]) -> str | None:
    """The name of ``pool`` that ``word`` most likely meant: the same but for case, spaces or
    hyphens (``PATIENT_ID``, ``Patient ID``, ``patient-id``) first, else the closest spelling
    (compared in lower case: ``Occured_At`` is a near miss of ``occurred_at``); None if none is
    close."""
    names = list(pool)
    if not names:
        return None

    def folded(text: str) -> str:
        return re.sub(r"[\s\-.]+", "_", text.strip().lower())

    same = [n for n in names if folded(n) == folded(word)]
    if same:
        return same[0]
    lowered = {n.lower(): n for n in reversed(names)}  # the first of names differing only by case
    close = difflib.get_close_matches(folded(word), list(lowered), n=1, cutoff=0.6)
    return lowered[close[0]] if close else None


def _did_you_mean(word: str, pool: Sequence[str] | Iterable[str]) -> str:
    close = _closest(word, pool)
    if close is None or close == word:
        return ""
    if close == close.lower() and close == word.strip().lower():  # PATIENT_ID
        return f" (did you mean {close!r}? it is written in lower case)"
    return f" (did you mean {close!r}?)"


# ---- writing --------------------------------------------------------------------------


def _next_ids(store: Store) -> tuple[int, int, datetime]:
    row = store.con.execute(
        "SELECT coalesce(max(last_seq), 0), coalesce(max(batch_id), 0) FROM batches"
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1]) + 1, store.next_recorded_at()


def _write_batch(
    store: Store,
    *,
    source: str,
    author: str,
    op: str,
    reason: str | None = None,
    source_sha256: str | None = None,
    progress: Progress | None = None,
    started: float,
    ordered_rows: bool = True,
    site_codes: Sequence[codes.SiteCode] = (),
    codes_digest: str = "",
    scan: _Scan | None = None,
    fmt: str | None = None,
) -> IngestResult:
    """Check the staged rows and write the new ones as one batch. ``site_codes`` (a MEDS
    dataset's codes the store lacks) are registered in the same transaction, and the rows are
    checked as if they were registered already. ``fmt``: the source file's format, if any."""
    _require_text(author, "author")
    zone = store.zone()
    run = _Runner(store.con, progress)
    with _out_of_room(source, lambda: run.stage):
        con = store.con
        run(
            "checking",
            lambda: _stage(con, store.timezone, store.schema_version, ordered_rows),
            shown_as="reading",
        )
        skipped = _skip_trailing_empty_rows(con) if fmt == "csv" else []
        if store.timezone not in ("UTC", "Etc/UTC"):
            _clock_change_days(con, store.timezone)
        book = registry.codebook(store)
        if site_codes:
            book = book.with_site(site_codes)
        _conversions(con, book)
        same_quantities = _unit_equivalents(con, op, book, store.has_qualifier)
        _versions(con, op)
        now_local = datetime.now(UTC).astimezone(zone).replace(tzinfo=None)
        shape = con.execute(
            """SELECT count(*), count(DISTINCT eid), coalesce(min(__row), 0), coalesce(max(__row), -1)
               FROM tl_stage"""
        ).fetchone()
        assert shape is not None
        n_rows, n_ids, first_row, last_row = (int(c) for c in shape)
        # every event id appears once in the file: no row can conflict with another, and none
        # repeats one (the usual file; the self-join and the numbering of first occurrences
        # below cost 1.3 s of a 12 s ingest of 2M events; counting the ids, 0.5 s)
        unique = n_ids == n_rows
        in_file, split = _file_equivalents(con, book, unique)
        same_quantities += in_file
        # identifiers are screened for control and invisible characters and for NFC unless the
        # file's bytes show it has none; the rows' checks run only if a row has any
        screen = (scan is None or scan.may_hide(n_rows)) and _odd_identifiers(con)
        errors, total = run(
            "checking",
            lambda: _collect_errors(
                con,
                _checks(store, op, now_local, unique_ids=unique or not split, book=book, screen=screen),
                book,
                fmt,
            ),
        )
        if errors:
            raise IngestError(source, errors, total)
        mixed = (
            _mixed_offsets_note(con, source, store.timezone) + _split_measurement_note(con, book)
            if op == "ingest"
            else []
        )

        # Rows to insert: first occurrence of each event id, not already in the store, or
        # asserting again with other content an event that was retracted.
        found = con.execute("SELECT count(*) FROM tl_stored").fetchone()
        known = int(found[0]) if found else 0
        # Every row is new and the rows are numbered without gaps (a file of new events):
        # a row's place among the new rows is its own number, so the insert reads the stage
        # alone, without numbering the new rows in tl_new or joining it (20.7M events: a join
        # of two 20.7M-row relations, the stage spilled under the ingest's memory limit)
        dense = unique and known == 0 and n_rows == last_row - first_row + 1
        n_new = n_rows
        if not dense:
            store_join = (
                f"LEFT JOIN (SELECT DISTINCT event_id FROM {_HELD} WHERE op = 'assert') e ON e.event_id = i.eid"
                " AND i.__row NOT IN (SELECT __row FROM tl_reassert)"
                if op == "ingest"
                else "LEFT JOIN (SELECT NULL::VARCHAR AS event_id) e ON false"
            )
            con.execute(
                # ``ord`` numbers the new rows in file order (their seq less the high-water
                # mark); numbering them here sorts three narrow columns instead of whole rows
                # at insert.
                f"""CREATE OR REPLACE TEMP TABLE tl_new AS
                SELECT __row, eid, row_number() OVER (ORDER BY __row) AS ord FROM (
                    SELECT i.__row, i.eid FROM tl_stage i {store_join}
                    WHERE e.event_id IS NULL
                    QUALIFY row_number() OVER (PARTITION BY i.eid ORDER BY i.__row) = 1)"""
            )
            counted = con.execute("SELECT count(*) FROM tl_new").fetchone()
            n_new = int(counted[0]) if counted else 0
        duplicates = n_rows - n_new
        retracted = 0
        if op == "ingest":
            found = con.execute(
                """SELECT count(*) FROM tl_stage s JOIN tl_changed c ON c.event_id = s.eid
                   WHERE c.cur_op = 'retract'
                     AND (list_contains(c.since, s.content_hash) OR s.__row IN (SELECT __row FROM tl_equiv))"""
            ).fetchone()
            retracted = int(found[0]) if found else 0
        registered = [sc.code.code for sc in site_codes]
        if (n_new or registered) and not store.writable:
            raise UsageError("store was opened read-only")
        if n_new == 0:
            if registered:
                with store.transaction():
                    registry.write(store, con, list(site_codes), author, codes_digest)
            return IngestResult(
                source, None, 0, duplicates, store.high_water(), time.perf_counter() - started, retracted,
                registered, notes=skipped + same_quantities + mixed,
            )  # fmt: skip

        notes = (
            skipped
            + same_quantities
            + mixed
            + _censored_note(con, dense, fmt)
            + (
                _lookalike_notes(con, dense, bool(store.high_water()), store.has_qualifier)
                if op == "ingest"
                else []
            )
        )
        with store.transaction():
            if registered:
                registry.write(store, con, list(site_codes), author, codes_digest)
            hw, batch_id, recorded_at = _next_ids(store)
            select = _insert_select(
                op, hw, batch_id, recorded_at, author, source, reason, first_row if dense else None,
                store.event_columns,
            )  # fmt: skip
            hashed = row_hash_sql(schema=store.schema_version, qualifier=store.has_qualifier)
            run("writing", lambda: con.execute(
                f"INSERT INTO events ({', '.join(store.event_columns)}) SELECT *, {hashed} FROM ({select})"
            ))  # fmt: skip
            run("sealing", lambda: seal_batch(
                con, batch_id=batch_id, op=op, first_seq=hw + 1, last_seq=hw + n_new,
                recorded_at=recorded_at, author=author,
                source_file=source if op == "ingest" else None,
                source_sha256=source_sha256, reason=reason,
            ))  # fmt: skip
        return IngestResult(
            source,
            batch_id,
            n_new,
            duplicates,
            hw + n_new,
            time.perf_counter() - started,
            retracted,
            registered,
            notes=notes,
        )


def _skip_trailing_empty_rows(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Drop from the stage the empty rows (only separators) that end a CSV file, and say so.
    A spreadsheet saves rows it once formatted as ``,,,,``, after the last row of data: they
    carry nothing and stand between no events, as blank lines, which are skipped too. An empty
    row between rows of data is refused (see :func:`_checks`): something was there."""
    found = con.execute(
        f"""SELECT count(*), min(__row) FROM tl_stage s
            WHERE __row > (SELECT coalesce(max(__row), 0) FROM tl_stage s WHERE NOT {_empty_sql()})"""
    ).fetchone()
    if not found or not found[0]:
        return []
    n, first = int(found[0]), int(found[1])
    # the stage rebuilt without them, in its order (the library never deletes rows)
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE tl_stage AS SELECT * FROM tl_stage WHERE __row < {first} ORDER BY __row"
    )
    rows = f"row {first}" if n == 1 else f"rows {first}–{first + n - 1}"
    return [
        f"{n} empty row{'s' if n != 1 else ''} at the end of the file (only separators, as a spreadsheet "
        f"saves rows it once formatted) skipped: {rows}"
    ]


def _mixed_offsets_note(con: duckdb.DuckDBPyConnection, source: str, tz: str) -> list[str]:
    """A note when the file gives some times (``occurred_at``, ``ended_at``) with a UTC offset
    and others without one: an export that wrote offsets for some rows only, whose zone-less
    times are read as clock times in the store's zone (``tz``), which may not be what its writer
    meant. Says how many rows give each, with the first row and field of each; a date alone is a
    day, neither. The values are valid (the ingest is unchanged). One aggregate over the stage,
    which looks for an offset in times only (a date's test is its precision's): 0.10 s of CPU on
    the suite's 10k Parquet file (2.7M rows, nearly all dates), 0.31 s on it with every
    ``occurred_at`` a time (half with an offset), where the ingest takes ~25 s of CPU. The first
    rows' fields are read only when it finds both."""

    def zoned(col: str, precision: str) -> str:  # NULL for a date, or no value
        return f"CASE WHEN {precision} <> 'day' THEN regexp_matches({col}, '{_OFFSET}') END"

    flags = ", ".join(f"{zoned(c, p)} AS {c}_zoned" for c, p in _TIMES)
    some = " OR ".join(f"{c}_zoned" for c, _ in _TIMES)
    others = " OR ".join(f"NOT {c}_zoned" for c, _ in _TIMES)
    found = con.execute(
        f"""SELECT count(*) FILTER (WHERE z), min(__row) FILTER (WHERE z),
                   count(*) FILTER (WHERE b), min(__row) FILTER (WHERE b)
            FROM (SELECT __row, {some} AS z, {others} AS b FROM (SELECT __row, {flags} FROM tl_stage))"""
    ).fetchone()
    if not found or not found[0] or not found[2]:
        return []
    n_zoned, zoned_row, n_bare, bare_row = found

    def first(row: int, offset: bool) -> str:  # the row's first field holding such a time, as given
        cases = " ".join(
            f"WHEN {'' if offset else 'NOT '}({zoned(c, p)}) THEN '{c} ' || {c}" for c, p in _TIMES
        )
        shown = con.execute(f"SELECT CASE {cases} END FROM tl_stage WHERE __row = ?", [row]).fetchone()
        return str(shown[0]) if shown else ""

    return [
        f"{source} gives some times with a UTC offset and some without: {n_zoned:,} row"
        f"{'s' if n_zoned != 1 else ''} with one (the first: row {zoned_row}, {first(zoned_row, True)}), "
        f"{n_bare:,} without (the first: row {bare_row}, {first(bare_row, False)}). Those without one are "
        f"read as clock times in the store's zone, {tz}: an export that dropped the offset of some times? If "
        "they were meant in another zone, they are stored at other instants: retract those events and ingest "
        "them with their offsets"
    ]


def _split_measurement_note(con: duckdb.DuckDBPyConnection, book: codes.CodeBook) -> list[str]:
    """A note naming the rows without an ``event_id`` that give one measurement (the same
    patient, kind, code and time) in two units with the same quantity (``CRP 5 mg/L`` on row
    12, ``0.5 mg/dL`` on row 40): each row's id is derived from its content, so they are stored
    as two events, where under one event_id they would be one (see :func:`_file_equivalents`).
    Nothing changes in what is stored. Equal means equal as decimals, as there, and a censored
    value only with the same qualifier. The stage is grouped only if the file gives some code in
    two units (``tl_conv``, its (kind, code, unit) triples, says so at no cost), and then only
    the rows of those codes without an event_id: one aggregate, 0.49 s of CPU on the suite's 10k
    Parquet file without its event_id column (1.85M measurements, codes in two units), where the
    ingest takes ~25 s; none on a file with event ids."""
    multi = "SELECT kind, code FROM tl_conv WHERE scale IS NOT NULL GROUP BY kind, code HAVING count(*) > 1"
    if not _any(con, multi):
        return []
    # the measurements given in two units: their keys first (the lists of every measurement's
    # rows cost 3.7 s of CPU on the suite's 10k file without event ids; the keys, 0.49 s)
    keys = "s.patient_id, s.kind, s.code, s.occ_ts, s." + QUALIFIER
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tl_split_keys AS
            SELECT {keys} FROM tl_stage s
            SEMI JOIN ({multi}) m ON s.kind = m.kind AND s.code IS NOT DISTINCT FROM m.code
            WHERE s.event_id IS NULL AND s.value IS NOT NULL AND s.unit IS NOT NULL
            GROUP BY ALL HAVING min(s.unit) <> max(s.unit)"""
    )
    if not _any(con, "SELECT 1 FROM tl_split_keys"):
        return []
    on = " AND ".join(f"{k} IS NOT DISTINCT FROM k.{k[2:]}" for k in keys.split(", "))
    groups = con.execute(
        f"""SELECT s.kind, s.code, list(s.__row ORDER BY s.__row), list(s.value ORDER BY s.__row),
                   list(s.unit ORDER BY s.__row), coalesce(s.{QUALIFIER}, '')
            FROM tl_stage s JOIN tl_split_keys k ON {on}
            WHERE s.event_id IS NULL AND s.value IS NOT NULL AND s.unit IS NOT NULL
            GROUP BY {keys} ORDER BY min(s.__row)"""
    ).fetchall()
    pairs: list[tuple[int, int, str, str, str, str]] = []  # rows, what, the units, both quantities
    for kind, code, rows, values, units, q in groups:
        target = book.measured(str(kind), code)
        molar = target.molar_mass if target is not None else None
        what = target.name if target is not None else str(code or kind)
        # a row repeating an earlier one exactly is its duplicate (one derived id): not a pair again
        first = [
            k
            for k in range(len(rows))
            if (values[k], units[k]) not in zip(values[:k], units[:k], strict=True)
        ]
        for i, j in itertools.combinations(first, 2):
            if units[i] != units[j] and _same_quantities([values[j]], units[j], [values[i]], units[i], molar):
                shown = f"{q}{_quantity(values[i], units[i])} = {q}{_quantity(values[j], units[j])}"
                pairs.append((int(rows[i]), int(rows[j]), what, str(units[i]), str(units[j]), shown))
    if not pairs:
        return []
    if len(pairs) == 1:
        a, b, what, ua, ub, shown = pairs[0]
        return [
            f"rows {a} and {b} give the same {what} at the same time in {ua} and {ub} ({shown}); stored as "
            "two events: give them one event_id if they are one result"
        ]
    n = len(pairs)
    listed = "; ".join(f"rows {a} and {b}: {what} {shown}" for a, b, what, _, _, shown in pairs[:5])
    more = f"; {n - 5:,} more" if n > 5 else ""
    return [
        f"{n:,} pairs of rows give the same measurement at the same time in two units ({listed}{more}); "
        "each stored as two events: give a pair one event_id if it is one result"
    ]


# The times of a stage row: its text column and the precision read from it
_TIMES = (("occurred_at", "occ_precision"), ("ended_at", "end_precision"))


def _censored_note(con: duckdb.DuckDBPyConnection, dense: bool, fmt: str | None = None) -> list[str]:
    """A note saying how many of the rows about to be added hold a censored value (``<5``:
    below the lab's limit of 5), stored as its bound and qualifier, with the first."""
    new = "tl_stage" if dense else "(SELECT * FROM tl_stage WHERE __row IN (SELECT __row FROM tl_new))"
    found = con.execute(
        f"""SELECT count(*), min(__row), arg_min(trim(raw_value) || coalesce(' ' || unit, ''), __row)
            FROM {new} WHERE {QUALIFIER} IS NOT NULL"""
    ).fetchone()
    if not found or not found[0]:
        return []
    n, row, shown = int(found[0]), found[1], found[2]
    # a MEDS dataset's rows are numbered across its files: its value alone names it
    first = shown if fmt == "meds" else f"row {row}, {shown}"
    return [
        f"{n:,} value{'s' if n != 1 else ''} stored as censored, beyond a limit of the assay (the first: "
        f"{first}): each keeps its bound and its qualifier, and a rule decides on one only when the "
        "whole range it stands for lies on one side of the rule's threshold (docs/engine.md)"
    ]


def _lookalike_notes(
    con: duckdb.DuckDBPyConnection, dense: bool, stored: bool, qualifier: bool = True
) -> list[str]:
    """Notes on the rows about to be added beside what the store holds (and each other): a new
    patient id that differs only in case or Unicode form from another (``p050`` and ``P050``
    are two patients), or only in the leading zeros of a number in it (``007``, ``7`` and
    ``0007``; ``V07`` and ``V007``: a spreadsheet drops leading zeros), and, when the store
    holds events (``stored``), an event at the very instant of a stored one of the same patient, kind and code (and
    drug, term) under another event id: a re-export with a changed value and no event_id column
    adds the new value beside the old one, and the later one wins ties."""
    new = "tl_stage" if dense else "(SELECT * FROM tl_stage WHERE __row IN (SELECT __row FROM tl_new))"
    notes: list[str] = []
    spelt = "lower(nfc_normalize(patient_id))"
    # the same once the leading zeros of every run of digits are dropped ('v007' -> 'v7')
    unpadded = f"regexp_replace({spelt}, '(^|[^0-9])0+([0-9])', '\\1\\2', 'g')"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tl_patients AS
            WITH batch AS (SELECT DISTINCT patient_id FROM {new}),
                 known AS (SELECT DISTINCT patient_id FROM events)
            SELECT patient_id, patient_id NOT IN (SELECT patient_id FROM known) AS fresh FROM batch
            UNION SELECT patient_id, false FROM known"""
    )
    for key, other, how in (
        (spelt, "patient_id", "case or Unicode form"),
        (unpadded, spelt, "the leading zeros of a number (a spreadsheet drops them)"),
    ):
        pairs = con.execute(
            f"""SELECT list(patient_id ORDER BY patient_id) FILTER (WHERE fresh),
                       list(patient_id ORDER BY patient_id) FILTER (WHERE NOT fresh)
                FROM tl_patients GROUP BY {key}
                HAVING count(DISTINCT {other}) > 1 AND bool_or(fresh) ORDER BY 1 LIMIT 6"""
        ).fetchall()
        if pairs:
            notes.append(_pairs_note(how, pairs))
    if not stored:
        return notes
    # each new row beside the current version of such an event, with what differs
    found = con.execute(
        f"""SELECT count(DISTINCT __row), min(__row), arg_min(old, __row), arg_min(eid, __row),
                   arg_min(differs, __row), count(DISTINCT __row) FILTER (WHERE only_time)
            FROM (SELECT s.__row, e.event_id AS old, s.eid, d.differs,
                         d.differs LIKE 'occurred_at: %' AND d.differs NOT LIKE '%; %' AS only_time
                  FROM {new} s JOIN events e
                    ON e.patient_id = s.patient_id AND e.kind = s.kind AND e.occurred_at = s.occ_ts
                  LEFT JOIN tl_conv cv ON s.kind = cv.kind AND s.code IS NOT DISTINCT FROM cv.code AND s.unit = cv.unit,
                  LATERAL (SELECT {fields_differ_sql(qualifier)} AS differs) d
                  WHERE e.op <> 'retract' AND e.event_id <> s.eid AND (s.code IS NULL OR e.code = s.code)
                    AND e.drug IS NOT DISTINCT FROM s.drug AND e.term IS NOT DISTINCT FROM s.term
                    AND e.event_id NOT IN (SELECT event_id FROM events WHERE op = 'retract')
                    AND NOT EXISTS (SELECT 1 FROM events l WHERE l.event_id = e.event_id AND l.seq > e.seq))"""
    ).fetchone()
    if found and found[0]:
        n, row, old, added, differs, only_time = (
            int(found[0]),
            found[1],
            found[2],
            found[3],
            found[4],
            int(found[5]),
        )
        events_ = f"{n:,} event{'s' if n != 1 else ''} added at the instant of a stored event of the same patient, kind and code under another event id"
        if only_time == n:
            notes.append(
                f"{events_}, with the same values: only how its time is given differs (row {row}: {added!r} beside "
                f"{old!r}: {differs}). A date and a time at its midnight are two events (an event's id is derived "
                "from its date or time as given): the same events exported with dates and again with times are "
                "stored twice. Give the times as the store has them (dates), or give the file an event_id column"
            )
        else:
            also = f"; {only_time:,} of them differ only in how the time is given" if only_time else ""
            notes.append(
                f"{events_} (row {row}: {added!r} beside {old!r}: {differs}{also}): a re-export with changed "
                "values? Give the file an event_id column, and `timeline correct` changes an event instead of "
                "adding another"
            )
    return notes


def _pairs_note(how: str, pairs: list[tuple[Any, ...]]) -> str:
    shown = [
        f"{', '.join(repr(p) for p in fresh)} (new) and {', '.join(repr(p) for p in (others or [])) or 'each other'}"
        for fresh, others in pairs[:5]
    ]
    return (
        f"patient ids that differ only in {how} are different patients: "
        + "; ".join(shown)
        + ("; …" if len(pairs) > 5 else "")
        + " — the same patient? retract the events and ingest them again under one id"
    )


# The fields a row in another unit shares with a stored version of its event: each given as
# the stored one, times as read; the quantities (value, the reference range, the dose) apart
_SAME_BUT_QUANTITIES = " AND ".join(
    [
        f"{given} IS NOT DISTINCT FROM {stored}"
        for name, given, stored in _COMPARED
        if not name.startswith("ref_")
    ]
    + [
        "s.occ_ts IS NOT DISTINCT FROM e.occurred_at",
        "s.occ_precision IS NOT DISTINCT FROM e.occurred_precision",
        "s.end_ts IS NOT DISTINCT FROM e.ended_at",
        "s.end_precision IS NOT DISTINCT FROM e.ended_precision",
    ]
)


# The stored versions of the batch's event ids (every version of each: they share the id), for
# the queries that look up the stage's ids in the store. A semi-join probes the store's ids
# against the stage's, where a join to ``events`` itself hashed every stored id to look up a
# few: an increment of 28,700 rows took 4.2 s of CPU into the suite's 10k store (2.7M events),
# 1.0 s into an empty one, nearly all the difference in these lookups (benchmarks/README.md)
_HELD = "(SELECT * FROM events WHERE event_id IN (SELECT eid FROM tl_stage))"

# The stage's rows shaped as stored versions (``e`` of :func:`fields_differ_sql`): values as
# given in ``orig_*``, converted to the code's unit in ``value``, ``unit``, ``ref_*``
_STAGE_AS_STORED = """SELECT t.__row, t.eid, t.content_hash,
        t.occ_ts AS occurred_at, t.occ_precision AS occurred_precision,
        t.end_ts AS ended_at, t.end_precision AS ended_precision,
        t.value AS orig_value, t.unit AS orig_unit, t.ref_low AS orig_ref_low, t.ref_high AS orig_ref_high,
        t.dose AS orig_dose, t.dose_unit AS orig_dose_unit, t.value_qualifier,
        CASE WHEN c.scale IS NOT NULL THEN round(t.value * c.scale + c."offset", 9) ELSE t.value END AS value,
        CASE WHEN c.scale IS NOT NULL THEN round(t.ref_low * c.scale + c."offset", 9) ELSE t.ref_low END AS ref_low,
        CASE WHEN c.scale IS NOT NULL THEN round(t.ref_high * c.scale + c."offset", 9) ELSE t.ref_high END AS ref_high,
        coalesce(c.canon_unit, t.unit) AS unit, coalesce(c.canon_code, t.code) AS code,
        t.patient_id, t.kind, t.present, t.sex, t.drug, t.route, t.frequency, t.active_joints,
        t.limited_joints, t.term, t.grade, t.serious, t.action, t.reason, t.note
    FROM tl_stage t
    LEFT JOIN tl_conv c ON t.kind = c.kind AND t.code IS NOT DISTINCT FROM c.code AND t.unit = c.unit
    WHERE t.eid IN (SELECT eid FROM tl_split_ids)"""


def _file_equivalents(
    con: duckdb.DuckDBPyConnection, book: codes.CodeBook, unique: bool
) -> tuple[list[str], bool]:
    """``tl_file_equiv (first, later)``: the pairs of rows of this file that give one event id
    with the same quantities in two units (``CRP 1 mg/dL`` on row 3, ``10 mg/L`` on row 9),
    every other field alike: one event written twice, not a conflict. Decided as a row in
    another unit than a stored version's is (:func:`_unit_equivalents`: equal as decimals, the
    value, the reference range and the dose each; a censored value only with the same
    qualifier). The file's first row of the id is written, as for an exact duplicate, and the
    later rows count as duplicates. Returns the note naming them (a row the store's note
    names already is left out of it). ``unique``: no id appears twice in the file (nothing to
    look at). Also returns whether any id has rows of different content (``tl_split_ids``):
    if none, no row can conflict with another (a file that repeats rows exactly)."""
    con.execute("CREATE OR REPLACE TEMP TABLE tl_file_equiv (first BIGINT, later BIGINT)")
    con.execute("CREATE OR REPLACE TEMP TABLE tl_split_ids (eid VARCHAR)")
    if unique:
        return [], False
    con.execute(
        """INSERT INTO tl_split_ids
           SELECT eid FROM tl_stage GROUP BY eid HAVING count(DISTINCT content_hash) > 1"""
    )
    if not _any(con, "SELECT 1 FROM tl_split_ids"):
        return [], False

    def side(expr: str, row: str, conv: str) -> str:
        return re.sub(r"\bcv\.", f"{conv}.", re.sub(r"\bs\.", f"{row}.", expr))

    alike = " AND ".join(
        [
            f"{side(given, 'a', 'ca')} IS NOT DISTINCT FROM {side(given, 'b', 'cb')}"
            for name, given, _ in _COMPARED
            if not name.startswith("ref_")
        ]
        + [
            f"a.{c} IS NOT DISTINCT FROM b.{c}"
            for c in ("occ_ts", "occ_precision", "end_ts", "end_precision", QUALIFIER)
        ]
    )
    candidates = con.execute(
        f"""SELECT a.__row, b.__row, a.kind, a.code, a.eid,
                   a.unit, b.unit, [a.value, a.ref_low, a.ref_high], [b.value, b.ref_low, b.ref_high],
                   a.dose_unit, b.dose_unit, a.dose, b.dose, coalesce(a.{QUALIFIER}, '')
            FROM tl_stage a JOIN tl_stage b ON b.eid = a.eid AND b.__row > a.__row
             AND b.content_hash <> a.content_hash
             AND (a.unit IS DISTINCT FROM b.unit OR a.dose_unit IS DISTINCT FROM b.dose_unit)
            LEFT JOIN tl_conv ca ON a.kind = ca.kind AND a.code IS NOT DISTINCT FROM ca.code AND a.unit = ca.unit
            LEFT JOIN tl_conv cb ON b.kind = cb.kind AND b.code IS NOT DISTINCT FROM cb.code AND b.unit = cb.unit
            WHERE a.eid IN (SELECT eid FROM tl_split_ids)
              AND {alike}
            ORDER BY a.__row, b.__row"""
    ).fetchall()
    pairs: list[tuple[int, int]] = []
    said: dict[int, str] = {}  # a later row: what the note says of it (by its first equal row)
    for (
        first,
        later,
        kind,
        code,
        eid,
        unit,
        b_unit,
        values,
        b_values,
        d_unit,
        b_d_unit,
        dose,
        b_dose,
        q,
    ) in candidates:
        target = book.measured(str(kind), code) if kind in MEASURED_KINDS else None
        molar = target.molar_mass if target is not None else None
        if not (
            _same_quantities(b_values, b_unit, values, unit, molar)
            and _same_quantities([b_dose], b_d_unit, [dose], d_unit, None)
        ):
            continue
        pairs.append((int(first), int(later)))
        if int(later) not in said:
            shown, other = (
                (f"{q}{_quantity(b_values[0], b_unit)}", f"{q}{_quantity(values[0], unit)}")
                if b_unit != unit
                else (_quantity(b_dose, b_d_unit), _quantity(dose, d_unit))
            )
            said[int(later)] = f"row {later}: {eid}, {shown} = {other} in row {first}"
    if not pairs:
        return [], True
    insert_rows(con, "tl_file_equiv", ["BIGINT", "BIGINT"], [list(p) for p in pairs])
    known = {int(r[0]) for r in con.execute("SELECT __row FROM tl_equiv").fetchall()}
    listed = [text for row, text in sorted(said.items()) if row not in known]
    if not listed:
        return [], True
    n = len(listed)
    more = f"; {n - 5:,} more" if n > 5 else ""
    return [
        f"{n:,} row{'s' if n != 1 else ''} skipped as duplicate{'s' if n != 1 else ''}: "
        f"{'each gives' if n != 1 else 'it gives'} the event of an earlier row of this file with the same "
        f"quantities in another unit ({'; '.join(listed[:5])}{more}); the event is kept as its first row gives it"
    ], True


def _unit_equivalents(
    con: duckdb.DuckDBPyConnection, op: str, book: codes.CodeBook, qualifier: bool = True
) -> list[str]:
    """``tl_equiv (__row, seq, said)``: the rows that give an event the store has in another
    unit, each quantity equal to a stored version's (``CRP 1 mg/dL`` for ``10 mg/L``): the same
    content, written otherwise, skipped as duplicates (not conflicts, nor a retracted event
    brought back). Equal means equal as decimals: the row's value times the unit's factor (to
    12 significant digits: °C to °F is 1.8, not 1.7999999999999998) is the stored value as
    given, exactly; the value, the reference range and the dose each. Nothing about the stored
    event changes (its content hash is over the values as first given). Returns the note that
    says so, if any row is one. A censored value is the same only with the same qualifier
    (``<1 mg/dL`` is ``<10 mg/L``, not ``10 mg/L``)."""
    con.execute("CREATE OR REPLACE TEMP TABLE tl_equiv (__row BIGINT, seq BIGINT, said VARCHAR)")
    if op != "ingest":
        return []
    # whether any row gives a stored event's id in another unit, on a few narrow columns first
    # (content that differs in a unit differs in its hash): a file of new events, or one
    # ingested again as it was, has none, and the query below reads 26 columns of every stored
    # event (1.0-1.5 s of CPU at 2.7M events, whatever the file)
    if not _any(
        con,
        f"""SELECT 1 FROM tl_stage s
            JOIN {_HELD} e ON e.event_id = s.eid AND e.op <> 'retract'
             AND (s.unit IS DISTINCT FROM e.orig_unit OR s.dose_unit IS DISTINCT FROM e.orig_dose_unit)""",
    ):
        return []
    candidates = con.execute(
        f"""SELECT s.__row, e.seq, s.kind, s.code, s.eid,
                   s.unit, e.orig_unit, [s.value, s.ref_low, s.ref_high], [e.orig_value, e.orig_ref_low, e.orig_ref_high],
                   s.dose_unit, e.orig_dose_unit, s.dose, e.orig_dose, coalesce(s.value_qualifier, '')
            FROM tl_stage s
            JOIN {_HELD} e ON e.event_id = s.eid AND e.op <> 'retract' AND e.content_hash <> s.content_hash
             AND (s.unit IS DISTINCT FROM e.orig_unit OR s.dose_unit IS DISTINCT FROM e.orig_dose_unit)
            LEFT JOIN tl_conv cv ON s.kind = cv.kind AND s.code IS NOT DISTINCT FROM cv.code AND s.unit = cv.unit
            WHERE {_SAME_BUT_QUANTITIES}
              AND s.{QUALIFIER} IS NOT DISTINCT FROM {f"e.{QUALIFIER}" if qualifier else "NULL::VARCHAR"}
              AND NOT EXISTS (SELECT 1 FROM {_HELD} x WHERE x.event_id = s.eid AND x.content_hash = s.content_hash)
            ORDER BY s.__row, e.seq"""
    ).fetchall()
    found: dict[int, tuple[int, str]] = {}
    for (
        row,
        seq,
        kind,
        code,
        eid,
        unit,
        e_unit,
        values,
        e_values,
        d_unit,
        e_d_unit,
        dose,
        e_dose,
        qualifier,  # a censored value's, the same in both ('' when exact)
    ) in candidates:
        if row in found:
            continue
        target = book.measured(str(kind), code) if kind in MEASURED_KINDS else None
        molar = target.molar_mass if target is not None else None
        if _same_quantities(values, unit, e_values, e_unit, molar) and _same_quantities(
            [dose], d_unit, [e_dose], e_d_unit, None
        ):
            shown, stored = (
                (f"{qualifier}{_quantity(values[0], unit)}", f"{qualifier}{_quantity(e_values[0], e_unit)}")
                if unit != e_unit
                else (_quantity(dose, d_unit), _quantity(e_dose, e_d_unit))
            )
            found[int(row)] = (int(seq), f"row {row}: {eid}, {shown} = {stored} as stored (seq {seq})")
    if not found:
        return []
    insert_rows(
        con,
        "tl_equiv",
        ["BIGINT", "BIGINT", "VARCHAR"],
        [[row, seq, said] for row, (seq, said) in sorted(found.items())],
    )
    n = len(found)
    listed = [said for _, (_, said) in sorted(found.items())][:5]
    more = f"; {n - len(listed):,} more" if n > len(listed) else ""
    return [
        f"{n:,} row{'s' if n != 1 else ''} skipped as duplicate{'s' if n != 1 else ''}: "
        f"{'each gives' if n != 1 else 'it gives'} an event the store has with the same quantities in another "
        f"unit ({'; '.join(listed)}{more}); the store keeps {'them' if n != 1 else 'it'} as first given"
    ]


def _same_quantities(
    given: Sequence[float | None],
    unit: str | None,
    stored: Sequence[float | None],
    stored_unit: str | None,
    molar_mass: float | None,
) -> bool:
    """Whether each of ``given`` in ``unit`` is, exactly as a decimal, the one of ``stored`` in
    ``stored_unit`` beside it (both absent counts as equal). Converted either way: °C to °F
    is 1.8 and 32 (°F to °C, 5/9, has no decimal to be exact in)."""
    if unit == stored_unit:
        return list(given) == list(stored)
    if (
        unit is None
        or stored_unit is None
        or any((a is None) != (b is None) for a, b in zip(given, stored, strict=True))
    ):
        return False
    pairs = [(a, b) for a, b in zip(given, stored, strict=True) if a is not None and b is not None]
    return _exactly(pairs, unit, stored_unit, molar_mass) or _exactly(
        [(b, a) for a, b in pairs], stored_unit, unit, molar_mass
    )


def _exactly(pairs: Sequence[tuple[float, float]], unit: str, to: str, molar_mass: float | None) -> bool:
    """Whether the first of each pair, in ``unit``, converts to the second, in ``to``, exactly
    as decimals, the unit's factor and offset read to 12 significant digits (10.0, not the
    9.999999999999998 a float may hold)."""
    from decimal import Decimal

    return all(_converted_exactly(a, unit, to, molar_mass) == Decimal(repr(b)) for a, b in pairs)


def _converted_exactly(value: float, unit: str, to: str, molar_mass: float | None) -> Any:
    """``value`` in ``unit`` converted to ``to`` as a decimal, exactly as :func:`_exactly`
    compares it (the factor and offset read to 12 significant digits), or None if the units
    do not convert."""
    from decimal import Context, Decimal, localcontext

    try:
        conv = conversion(unit, to, molar_mass)
    except UnitError:
        return None
    twelve = Context(prec=12)
    scale, offset = twelve.plus(Decimal(repr(conv.scale))), twelve.plus(Decimal(repr(conv.offset)))
    with localcontext() as exact:
        exact.prec = 60  # a double's 17 digits times the factor's 12: no rounding
        return Decimal(repr(value)) * scale + offset


def _quantity_hint(
    value: float | None,
    unit: str | None,
    stored: float | None,
    stored_unit: str | None,
    canon: float | None,
    canon_unit: str | None,
    molar_mass: float | None,
) -> str:
    """What a conflict says beside a quantity that differs from the stored one and is written
    in another unit: `` (the same quantity, 4.1 mg/L, written in another unit)`` when it is the
    stored quantity exactly, as :func:`_same_quantities` decides (another field differs), else
    the file's quantity in the stored unit, exactly (`` (that is 4.100000000001 mg/L, not the
    same quantity)``): two quantities that differ never read alike. "" when the units do not
    convert or one side is missing. The SQL function ``tl_quantity_hint``."""
    if value is None or stored is None or unit is None or stored_unit is None or unit == stored_unit:
        return ""
    try:
        return _quantity_hint_text(value, unit, stored, stored_unit, canon, canon_unit, molar_mass)
    except (ArithmeticError, ValueError):  # a hint is no reason to fail a message (an infinite value)
        return ""


def _quantity_hint_text(
    value: float,
    unit: str,
    stored: float,
    stored_unit: str,
    canon: float | None,
    canon_unit: str | None,
    molar_mass: float | None,
) -> str:
    if _same_quantities([value], unit, [stored], stored_unit, molar_mass):
        return f" (the same quantity, {_quantity(canon, canon_unit)}, written in another unit)"
    exact = _converted_exactly(value, unit, stored_unit, molar_mass)
    if exact is None:
        return ""
    text = format(exact.normalize(), "f")
    return f" (that is {text} {stored_unit}, not the same quantity)"


def _register_functions(con: duckdb.DuckDBPyConnection) -> None:
    """The Python functions the checks call in SQL (once per connection)."""
    found = con.execute(
        "SELECT count(*) FROM duckdb_functions() WHERE function_name = 'tl_quantity_hint'"
    ).fetchall()
    if found[0][0]:
        return
    from duckdb.func import SPECIAL  # the function is called with NULLs too (a missing molar mass)

    con.create_function(
        "tl_quantity_hint",
        _quantity_hint,
        ["double", "varchar", "double", "varchar", "double", "varchar", "double"],
        "varchar",
        null_handling=SPECIAL,
        side_effects=False,
    )


_NO_CHANGES = "CREATE OR REPLACE TEMP TABLE tl_changed (event_id VARCHAR, cur_op VARCHAR, cur_hash VARCHAR, hashes VARCHAR[], since VARCHAR[])"


def _versions(con: duckdb.DuckDBPyConnection, op: str) -> None:
    """``tl_changed``: of the batch's event ids the store has corrected or retracted, the
    current version's op and content hash and every version's hash; ``tl_reassert``: the rows
    that assert again, with content none of its versions had, an event whose current version is
    a retraction (how a retracted event comes back, e.g. under the right patient). A row with
    the content of any version stays a duplicate: re-ingesting a file does not undo a
    retraction, even of an event corrected before it was retracted (the file holds the content
    the correction replaced). "Any version" counts from the event's last assertion: an event
    moved to another patient (retracted, asserted again) and retracted again comes back with
    its first content."""
    if op != "ingest":
        con.execute(_NO_CHANGES)
        con.execute("CREATE OR REPLACE TEMP TABLE tl_reassert (__row BIGINT)")
        con.execute("CREATE OR REPLACE TEMP TABLE tl_stored (__row BIGINT)")
        return
    # the batch's ids the store has corrected or retracted, if any, found first on the rows of
    # corrections and retractions (few, and none in row groups of assertions alone, which the
    # op column's statistics skip); none is the usual case, where the versions of every id of
    # the batch would otherwise be read (0.2-0.3 s of CPU at 2.7M events)
    if not _any(con, "SELECT 1 FROM events WHERE op <> 'assert' AND event_id IN (SELECT eid FROM tl_stage)"):
        con.execute(_NO_CHANGES)
    else:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_changed AS
           SELECT event_id, arg_max(op, seq) AS cur_op, arg_max(content_hash, seq) AS cur_hash,
                  list(content_hash) AS hashes, list(content_hash) FILTER (WHERE seq >= asserted) AS since
           FROM (SELECT *, max(seq) FILTER (WHERE op = 'assert') OVER (PARTITION BY event_id) AS asserted
                 FROM {_HELD} WHERE event_id IN (SELECT event_id FROM {_HELD} WHERE op <> 'assert'))
           GROUP BY event_id"""
        )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE tl_reassert AS
           SELECT s.__row FROM tl_stage s JOIN tl_changed c ON c.event_id = s.eid
           WHERE c.cur_op = 'retract' AND NOT list_contains(c.since, s.content_hash)
             AND s.__row NOT IN (SELECT __row FROM tl_equiv)"""
    )
    # the rows that are events the store has (duplicates, conflicts), not asserting one again:
    # the checks of a patient's birth and death read the other rows, those to be written
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tl_stored AS
           SELECT __row FROM tl_stage
           WHERE eid IN (SELECT event_id FROM {_HELD} WHERE op = 'assert')
             AND __row NOT IN (SELECT __row FROM tl_reassert)"""
    )


def _damaged(con: duckdb.DuckDBPyConnection, source: str) -> None:
    """After an ingest of a Parquet file failed: reject the file if it cannot be read to the
    end. The file is read by the stage, through the view ``tl_raw``; only its footer was read
    before, and a damaged page fails only when read. Reads every value again, so it runs only
    once something has failed."""
    try:
        con.execute("SELECT sum(hash(COLUMNS(*))) FROM tl_raw").fetchall()
    except duckdb.Error as exc:
        if not out_of_room(exc):
            raise _not_parquet(source, exc) from exc


def _not_parquet(source: str, exc: duckdb.Error) -> IngestError:
    return IngestError(source, [RowError(None, None, f"not a readable Parquet file: {first_line(exc)}")])


@contextmanager
def _out_of_room(source: str, stage: Callable[[], str]) -> Iterator[None]:
    """DuckDB running out of memory or temp disk, as a ResourceError naming the step."""
    try:
        yield
    except duckdb.Error as exc:
        if not out_of_room(exc):
            raise
        raise ResourceError(
            f"{source}: ingest stopped while {stage()}: {str(exc).splitlines()[0]} — nothing was written; "
            "ingest the file in parts, or free temp disk space"
        ) from exc


def _insert_select(
    op: str,
    hw: int,
    batch_id: int,
    recorded_at: datetime,
    author: str,
    source: str,
    reason: str | None,
    first_row: int | None = None,
    columns: Mapping[str, str] = EVENT_COLUMNS,
) -> str:
    """The rows to insert (the store's ``columns``): tl_new's rows of the stage, numbered by ``ord``; or, given
    ``first_row`` (every staged row is new, numbered without gaps from it), every row of the
    stage, numbered by its own row number."""
    value = 'CASE WHEN c.scale IS NOT NULL THEN round(s.value * c.scale + c."offset", 9) ELSE s.value END'
    ref = 'CASE WHEN c.scale IS NOT NULL THEN round(s.{0} * c.scale + c."offset", 9) ELSE s.{0} END'
    expr: dict[str, str] = {
        "seq": f"{hw} + n.ord",
        "batch_id": str(batch_id),
        "op": _quote("assert" if op == "ingest" else op),
        "event_id": "n.eid",
        "occurred_at": "s.occ_ts",
        "occurred_precision": "s.occ_precision",
        "ended_at": "s.end_ts",
        "ended_precision": "s.end_precision",
        "code": "coalesce(c.canon_code, s.code)",
        "value": value,
        "unit": "coalesce(c.canon_unit, s.unit)",
        "ref_low": ref.format("ref_low"),
        "ref_high": ref.format("ref_high"),
        "orig_value": "s.value",
        "orig_unit": "s.unit",
        "orig_ref_low": "s.ref_low",
        "orig_ref_high": "s.ref_high",
        "dose": "round(s.dose * d.scale, 9)",
        "dose_unit": "d.canon",
        "orig_dose": "s.dose",
        "orig_dose_unit": "s.dose_unit",
        "recorded_at": f"{_quote(recorded_at.isoformat(sep=' '))}::TIMESTAMP",
        "author": _quote(author),
        "source_file": _quote(source) if op == "ingest" else "NULL",
        "source_row": "s.__row" if op == "ingest" else "NULL",
        "change_reason": _quote(reason) if reason is not None else "NULL",
        "content_hash": "s.content_hash",
    }
    rows = "tl_new n JOIN tl_stage s ON s.__row = n.__row"
    if first_row is not None:
        rows = "tl_stage s"
        expr["seq"] = f"{hw} + s.__row - {int(first_row) - 1}"
        expr["event_id"] = "s.eid"
    cols = []
    for col, typ in columns.items():
        if col == "row_hash":
            continue
        sql_type = typ.split()[0]
        cols.append(f"({expr.get(col, 's.' + col)})::{sql_type} AS {col}")
    return f"""SELECT {", ".join(cols)} FROM {rows}
        LEFT JOIN tl_conv c ON s.kind = c.kind AND s.code IS NOT DISTINCT FROM c.code AND s.unit = c.unit
        LEFT JOIN tl_dose d ON s.dose_unit = d.unit"""


class _Runner:
    """Runs a step; with a progress callback, runs it in a thread and polls DuckDB's query
    progress meanwhile. Interrupted while it waits (Ctrl-C), it interrupts the query and
    waits for the step to end before it raises: nothing else may use the connection, or
    close it, while the thread's query runs (DuckDB refuses: "connection is busy", or the
    process aborts as the thread is torn down)."""

    def __init__(self, con: duckdb.DuckDBPyConnection, progress: Progress | None) -> None:
        self.con = con
        self.progress = progress
        self.stage = "checking"  # the step under way, for an error message
        if progress is not None:
            con.execute("SET enable_progress_bar = true; SET enable_progress_bar_print = false")

    def __call__(self, stage: str, step: Callable[[], Any], shown_as: str | None = None) -> Any:
        """Run ``step``; ``stage`` names it in an error, ``shown_as`` (default: ``stage``) in
        the progress reported."""
        self.stage = stage
        if self.progress is None:
            return step()
        label = shown_as or stage
        meter = _Meter(self.con.query_progress())
        result: dict[str, Any] = {}
        # The step's end is an event, not Thread.join: a join that a KeyboardInterrupt cuts
        # short marks the thread as ended while it runs on (Python before 3.13)
        ended = threading.Event()

        def work() -> None:
            try:
                result["value"] = step()
            except BaseException as exc:  # re-raised in the calling thread
                result["error"] = exc
            finally:
                ended.set()

        threading.Thread(target=work).start()
        try:
            while not ended.is_set():
                self.progress(label, meter(self.con.query_progress()))
                ended.wait(0.1)
        except BaseException:  # Ctrl-C, or a progress callback that failed
            self._stop(ended)
            raise
        self.progress(label, 100.0)
        if "error" in result:
            raise result["error"]
        return result.get("value")

    def _stop(self, ended: threading.Event) -> None:
        """Interrupt the step's query and wait until the step has ended. A step may run more
        queries after the one interrupted: each is interrupted in turn. Another Ctrl-C does
        not stop the wait."""
        while not ended.is_set():
            try:
                self.con.interrupt()
                ended.wait(0.1)
            except KeyboardInterrupt:
                continue


class _Meter:
    """A step's progress from DuckDB's, which is that of the query running: it starts again
    at each query of the step, and until the step's first query begins it is the previous
    step's (100 at the start of "writing"). So the figure seen before the step is left out,
    and each later query fills the part of the bar that the earlier ones left: the
    percentage never goes down."""

    def __init__(self, before: float) -> None:
        self.before: float | None = before  # DuckDB's figure before the step began
        self.shown = 0.0
        self.base = 0.0  # what the step's earlier queries filled
        self.last = -1.0  # DuckDB's last figure in this step

    def __call__(self, pct: float) -> float:
        if pct < 0 or pct == self.before:  # no query running, or not the step's yet
            return self.shown
        self.before = None
        if pct < self.last:  # the step's next query
            self.base = self.shown
        self.last = pct
        self.shown = max(self.shown, self.base + (100.0 - self.base) * min(pct, 100.0) / 100.0)
        return self.shown


# ---- corrections ----------------------------------------------------------------------


def stored_values(row: dict[str, Any], fields: Iterable[str]) -> list[dict[str, Any]]:
    """The stored values of an event's native ``fields``, as data (a correction's ``--json``):
    one item a field, ``{"field", "value"}`` (``value`` None: cleared); a measurement (value,
    ref_low, ref_high, dose: named by its unit too) also has ``unit`` as given and, as stored,
    converted to its code's unit, ``stored_value`` and ``stored_unit``; a censored value also
    its ``qualifier`` (``<``, ``<=``, ``>``, ``>=``)."""
    native = _native_from_stored(row)
    measured = {"value": "value", "unit": "value", "ref_low": "ref_low", "ref_high": "ref_high"}
    measured |= {"dose": "dose", "dose_unit": "dose"}
    items: list[dict[str, Any]] = []
    seen: set[str] = set()
    for name in fields:
        name = measured.get(name, name)
        if name in seen:
            continue
        seen.add(name)
        if name in ("value", "ref_low", "ref_high", "dose"):
            unit = "dose_unit" if name == "dose" else "unit"
            given = row[f"orig_{name}"]
            item = {
                "field": name,
                "value": given,
                "unit": row[f"orig_{unit}"] if given is not None else None,
                "stored_value": row[name],
                "stored_unit": row[unit] if row[name] is not None else None,
            }
            if name == "value" and row.get(QUALIFIER) is not None:
                item["qualifier"] = row[QUALIFIER]
            items.append(item)
        else:
            items.append({"field": name, "value": native.get(name)})
    return items


def describe_stored(row: dict[str, Any], fields: Iterable[str]) -> str:
    """The stored values of an event's native ``fields`` (:func:`stored_values`), for a
    correction's message: a measurement as given and, when converted, as stored (``value 6
    mg/dL (stored as 60 mg/L)``); a cleared field as ``note cleared``."""
    shown: list[str] = []
    for item in stored_values(row, fields):
        name, value = item["field"], item["value"]
        if value is None:
            shown.append(f"{name} cleared")
        elif "stored_value" in item:
            qualifier = item.get("qualifier") or ""
            given = qualifier + str(_quantity(value, item["unit"]))
            stored = qualifier + str(_quantity(item["stored_value"], item["stored_unit"]))
            shown.append(f"{name} {given}" + (f" (stored as {stored})" if stored != given else ""))
        else:
            text = _as_text(value) if not isinstance(value, str) else repr(value) if name == "note" else value
            shown.append(f"{name} {text}")
    return ", ".join(shown)


def _quantity(value: Any, unit: str | None) -> str | None:
    if value is None:
        return None
    number = str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return f"{number} {unit}" if unit else number


def _live_version(store: Store, event_id: str) -> dict[str, Any]:
    """The current version of an event to correct or retract; an unknown id is an error with
    the ids it may be a misspelling of, a retracted event one that says how to bring it back."""
    last = store.con.execute(
        "SELECT op, seq FROM events WHERE event_id = ? ORDER BY seq DESC LIMIT 1", [event_id]
    ).fetchone()
    if last is None:
        raise UnknownEventError(
            f"no event with id {event_id!r} in {store.path}{near_event_ids(store, event_id)}"
        )
    if last[0] == "retract":
        raise UnknownEventError(
            f"event {event_id!r} was retracted (seq {last[1]})",
            "a retracted event cannot be corrected: to bring it back, ingest a row with its event id"
            " and the corrected content (a row with the content of one of its versions keeps it retracted)",
        )
    return store.current_version(event_id)


def near_event_ids(store: Store, event_id: str) -> str:
    """A did-you-mean for an event id the store does not hold: the ids that differ only in
    case, or else by at most two characters (ignoring case), closest first; "" if none."""
    rows = store.con.execute(
        """SELECT event_id FROM (SELECT DISTINCT event_id FROM events)
           WHERE abs(length(event_id) - length($id)) <= 2
             AND levenshtein(lower(event_id), lower($id)) <= least(2, length($id) // 3)
           ORDER BY levenshtein(lower(event_id), lower($id)), levenshtein(event_id, $id), event_id
           LIMIT 3""",
        {"id": event_id},
    ).fetchall()
    if not rows:
        return ""
    return f" (did you mean {' or '.join(repr(str(r[0])) for r in rows)}?)"


def _native_from_stored(row: dict[str, Any]) -> dict[str, Any]:
    """A stored version turned back into a native row (original values and units)."""
    native: dict[str, Any] = {c: row.get(c) for c in events.NATIVE_COLUMNS}
    native["occurred_at"] = _when_text(row["occurred_at"], row["occurred_precision"])
    native["ended_at"] = _when_text(row["ended_at"], row["ended_precision"]) if row["ended_at"] else None
    native["value"], native["unit"] = row["orig_value"], row["orig_unit"]
    if row.get(QUALIFIER) is not None and row["orig_value"] is not None:  # a censored value, as written
        native["value"] = f"{row[QUALIFIER]}{_quantity(row['orig_value'], None)}"
    native["ref_low"], native["ref_high"] = row["orig_ref_low"], row["orig_ref_high"]
    native["dose"], native["dose_unit"] = row["orig_dose"], row["orig_dose_unit"]
    if row["kind"] in events.KINDS and "code" not in events.kind_fields(row["kind"])[1]:
        native["code"] = None  # vital signs: the code is implied by the kind
    return native


def _when_text(ts: datetime, precision: str) -> str:
    if precision == "day":
        return ts.strftime("%Y-%m-%d")
    if precision == "minute":
        return ts.strftime("%Y-%m-%dT%H:%M")
    return ts.isoformat()


def _same_native(con: duckdb.DuckDBPyConnection, a: dict[str, Any], b: dict[str, Any]) -> bool:
    """Whether two native rows say the same once typed as ingest types them (4 and 4.0,
    ANAKINRA and anakinra, a blank and nothing), so that a no-op correction is refused."""
    cols = events.NATIVE_COLUMNS
    typed = ", ".join([*(_typed(c) for c in cols), _qualifier_sql()])
    sql = f"SELECT {typed} FROM (SELECT {', '.join(f'?::VARCHAR AS {c}' for c in cols)}) r"
    typed_a = con.execute(sql, [_as_text(a.get(c)) for c in cols]).fetchone()
    typed_b = con.execute(sql, [_as_text(b.get(c)) for c in cols]).fetchone()
    return typed_a == typed_b


def _require_text(value: str | None, name: str) -> None:
    if value is None or not value.strip():
        raise UsageError(f"{name} is required and must not be empty")


def _drop_temps(con: duckdb.DuckDBPyConnection) -> None:
    views = {
        str(r[0]) for r in con.execute("SELECT view_name FROM duckdb_views() WHERE temporary").fetchall()
    }
    for name in (
        "tl_raw",
        "tl_lines",
        "tl_typed",
        "tl_stage",
        "tl_ids",
        "tl_patients",
        "tl_conv",
        "tl_dose",
        "tl_errors",
        "tl_early",
        "tl_equiv",
        "tl_file_equiv",
        "tl_split_ids",
        "tl_split_keys",
        "tl_new",
        "tl_shift_days",
    ):
        con.execute(f"DROP {'VIEW' if name in views else 'TABLE'} IF EXISTS {name}")


def describe_rows(rows: Sequence[dict[str, Any]]) -> str:
    """A short JSON rendering of rows for messages (used by tests and the CLI)."""
    return json.dumps(rows, default=str)
