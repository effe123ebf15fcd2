"""The `timeline` command line: open the store, make one library call, render.

Library modules are imported inside each command so that start-up stays close to a
bare ``import duckdb``.
"""

from __future__ import annotations

import copy
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
import typer.main
import typer.models

from cli.options import AsKnownOpt, Command, Group, JsonOpt, PatientArg, StoreOpt, WaitOpt
from cli.output import (
    cell,
    console,
    dated,
    dump_json,
    error,
    error_document,
    esc,
    note,
    store_zone,
    utc_text,
    working,
)

if TYPE_CHECKING:
    from datetime import datetime

    from timeline.store import Store

app = typer.Typer(
    cls=Group,
    name="timeline",
    help="Event-sourced longitudinal patient timelines: immutable clinical events in DuckDB.",
    epilog=(
        "Example:\n\n```\ntimeline init --store study.duckdb\n"
        "timeline ingest examples/events.csv --store study.duckdb\n"
        "timeline state P001 --at 2008-02-10 --store study.duckdb\n```\n\n"
        "Exit codes and everything else: README.md; each command's --help."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _print_version(value: bool) -> None:
    if not value:
        return
    import platform

    import duckdb

    from timeline import __version__

    print(f"timeline {__version__} (DuckDB {duckdb.__version__}, Python {platform.python_version()})")
    raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            callback=_print_version,
            is_eager=True,
            help="Print the versions of timeline, DuckDB and Python, and exit.",
        ),
    ] = False,
) -> None:
    pass  # the options only; the app's help is given to typer.Typer above


class Exit(Exception):
    """Leave with an exit code after output was already printed."""

    def __init__(self, code: int) -> None:
        self.code = code


def _open(store: Path | None, *, write: bool = False, wait: float = 0) -> Store:
    from timeline.store import Store

    s = Store.open(store, write=write, wait=wait)
    store_zone(s)  # closes the store when its zone is unknown
    return s


def _date_bound(value: str | None, option: str, end: bool) -> datetime | None:
    if value is None:
        return None
    from datetime import timedelta

    from timeline.moments import clinical_moment

    moment, whole_day = clinical_moment(value, option)
    return moment + timedelta(days=1, microseconds=-1) if whole_day and end else moment


def _author(value: str | None, required: bool) -> str:
    from timeline.errors import UsageError

    if value is not None and not value.strip():  # '' as '  ': not a silent fall-back to $TIMELINE_AUTHOR
        raise UsageError("--author must not be empty")
    author = value or os.environ.get("TIMELINE_AUTHOR")
    if author:
        return author
    if required:
        raise UsageError("--author is required (or set TIMELINE_AUTHOR)")
    import getpass

    try:
        return getpass.getuser()
    except Exception:  # no user name on this system
        return "unknown"


def _event_id(value: str) -> str:
    """An EVENT_ID argument, trimmed as ingest trims the ids it stores (' p1-crp1 ' pasted
    from a table)."""
    from timeline.errors import UsageError

    if not value.strip():
        raise UsageError("EVENT_ID must not be empty")
    return value.strip()


# ---- store commands -------------------------------------------------------------------


@app.command(cls=Command)
def init(
    store: StoreOpt = None,
    timezone: Annotated[
        str,
        typer.Option(
            metavar="ZONE",
            help="IANA time zone of the store's clinical times: a time given without a UTC offset is read"
            " as a clock time in it (never in the machine's zone), one with an offset is converted into it."
            " Default: UTC.",
        ),
    ] = "UTC",
    json_out: JsonOpt = False,
) -> None:
    """Create a new, empty store (a single DuckDB file).

    Example:

    ```
    timeline init --store study.duckdb --timezone Europe/Madrid
    ```
    """
    from timeline.store import Store, manifest

    with Store.create(store, timezone=timezone) as s:
        info = s.info()
        meta = manifest(s, info.high_water, None)
    if json_out:
        dump_json(
            {
                "manifest": meta,
                "store": info.path,
                "timezone": info.timezone,
                "created_at": utc_text(info.created_at),
            }
        )
    else:
        console().print(
            f"created store {esc(info.path)} (time zone {esc(info.timezone)}: a time without a UTC offset is read"
            " as a clock time there)"
        )


_SIZE_UNITS = {"kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}  # fmt: skip


def _bytes(text: str, option: str) -> int:
    """``4GB``, ``512 MB``, ``6GiB`` → bytes (at least 64 MB: DuckDB needs room to work)."""
    import re

    from timeline.errors import UsageError

    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B)\s*", text, re.IGNORECASE)
    if not m:
        raise UsageError(f"{option} {text!r} is not a size: give a number and a unit, e.g. 512MB, 4GB, 6GiB")
    n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    if n < 64 * 10**6:
        raise UsageError(f"{option} {text!r} is too small: DuckDB needs at least 64MB to ingest")
    return n


@app.command(cls=Command)
def ingest(
    files: Annotated[
        list[Path],
        typer.Argument(
            metavar="FILE",
            help="CSV, JSON Lines or Parquet files in the native format, or MEDS dataset directories "
            "(from `timeline export --format meds`); - reads standard input (give --format).",
            readable=False,  # an unreadable file is the ingest's to reject (exit 6), not a usage error
        ),
    ],
    store: StoreOpt = None,
    author: Annotated[
        str | None,
        typer.Option(
            metavar="NAME", help="Who adds these events. Default: $TIMELINE_AUTHOR, else your user name."
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format",
            metavar="FORMAT",
            help="csv, jsonl, parquet or meds (a MEDS directory from `timeline export`; default: from the extension).",
        ),
    ] = None,
    memory_limit: Annotated[
        str | None,
        typer.Option(
            metavar="SIZE",
            help="Memory DuckDB may use while checking and writing a file (e.g. 4GB); past it, it "
            "spills to disk. Default: 512MB. More is faster on files of millions of events.",
        ),
    ] = None,
    reason: Annotated[
        str | None,
        typer.Option(
            metavar="TEXT",
            help="Why these events are added, kept on each file's batch and on every event it writes "
            "(`events --history` shows it): say why a retracted event is brought back.",
        ),
    ] = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Add the events of each file to the store, one atomic batch per file.

    Any invalid row rejects the whole file with every error listed (row, field, reason;
    in JSON Lines every problem of every line, an unknown key included) and nothing written.
    A misspelt column or key is told the one it means (PATIENT_ID: did you mean
    'patient_id'?). Events already in the store are skipped as duplicates, also when given
    again with the same quantities in another unit (1 mg/dL for a stored 10 mg/L; a note
    says so), in the store or in the same file (one event on two rows, in two units: its first
    row is written). A time without a UTC offset (2009-03-01T10:00) is a clock time in the
    store's zone (`timeline info`; set by `init --timezone`), never the machine's; one with an
    offset (…+01:00, …Z) is converted into it; a note says when a file gives both. A row with new content for a retracted event
    brings it back: give `--reason` to say why. A lab value beyond the assay's limit is read
    as a censored value (<5, <=5, >2000, >=2000, also ≤ and ≥): its bound and qualifier are
    stored, and a note says how many (README, "Censored values").

    Example:

    ```
    timeline ingest examples/events.csv --author "Dr. Ruiz"
    timeline ingest back.csv --reason "exam of this visit after all"
    zcat events.csv.gz | timeline ingest - --format csv
    timeline ingest registry.parquet --memory-limit 6GB
    ```
    """
    from timeline.errors import IngestError
    from timeline.ingest import ingest_file

    limit = _bytes(memory_limit, "--memory-limit") if memory_limit is not None else None
    if sum(str(f) == "-" for f in files) > 1:
        from timeline.errors import UsageError

        # the second read of a pipe is empty: it would be a failed ingest after a committed one
        raise UsageError("- (standard input) is given more than once: it can be read only once")

    who = _author(author, required=False)
    results = []
    failed: IngestError | None = None
    with _open(store, write=True, wait=wait) as s:
        for i, path in enumerate(files):
            try:
                with _progress(path) as bar:
                    result = ingest_file(
                        s, path, author=who, fmt=fmt, progress=bar, memory_limit=limit, reason=reason
                    )
            except IngestError as exc:
                failed = exc
                if files[i + 1 :]:
                    untried = ", ".join(str(f) for f in files[i + 1 :])
                    note(f"not tried, as {exc.source} was rejected: {untried}")
                break
            results.append(result)
            if not json_out:
                console().print(esc(result.message()))
            for text in result.notes:
                note(text)
    if json_out:
        # a batch's notes are the document's (`notes`, as every command's): not said twice
        payload: dict[str, Any] = {
            "batches": [{k: v for k, v in r.__dict__.items() if k != "notes"} for r in results]
        }
        if failed is not None:
            payload["rejected"] = {
                "source": failed.source,
                "errors": [e.__dict__ for e in failed.errors],
                "errors_found": failed.found,  # more than listed when the list is capped (1,000)
            }
            payload["ok"] = False
            payload["error"] = error_document(failed.summary(), failed.details(), failed.exit_code)
        dump_json(payload)
    if failed is not None:
        if not json_out:
            error(failed.summary(), failed.details(), failed.found)
        raise Exit(failed.exit_code)


class _progress:
    """A rich progress bar on stderr, when stderr is a terminal, for an ingest that has lasted
    a second: how long one takes does not follow the file's size (a 3.6 MB Parquet file of
    616k events takes 13 s)."""

    show_after = 1.0  # seconds

    def __init__(self, path: Path) -> None:
        import time

        self.name = "<stdin>" if str(path) == "-" else path.name
        self.bar: Any = None
        self.task: Any = None
        self.clock = time.monotonic
        self.started = 0.0

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return None
        self.started = self.clock()

        def update(stage: str, pct: float) -> None:
            if self.bar is None:
                if self.clock() - self.started < self.show_after:
                    return
                self._start()
            self.bar.update(self.task, description=f"{self.name}: {stage}", completed=pct)

        return update

    def _start(self) -> None:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), console=console(stderr=True), transient=True,
        )  # fmt: skip
        self.bar.start()
        self.task = self.bar.add_task(f"{self.name}: reading", total=100)

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


@app.command(cls=Command)
def correct(
    event_id: Annotated[
        str | None, typer.Argument(metavar="EVENT_ID", help="Id of the event to correct (not with --file).")
    ] = None,
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", metavar="FIELD=VALUE", help="New value of a field (repeatable; required)."),
    ] = None,
    reason: Annotated[
        str | None, typer.Option(metavar="TEXT", help="Why the event is corrected (required).")
    ] = None,
    author: Annotated[
        str | None, typer.Option(metavar="NAME", help="Who corrects it (required; or $TIMELINE_AUTHOR).")
    ] = None,
    file: Annotated[
        Path | None,
        typer.Option(
            "--file",
            metavar="FILE",
            help="Instead: apply a JSON Lines file of corrections and retractions, each line with its "
            "own reason and author (docs/synth.md, *Amendments*); checked whole first, every problem of "
            "every line listed (exit 6), nothing applied unless all is well, then applied as one "
            "transaction. The same as `timeline synth --apply-amendments FILE`.",
        ),
    ] = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Append a corrected version of an event; the original stays in the history.

    Values are given as in a file, in the same units (a lab's censored value as `--set
    value='<5'`, made exact by `--set value=4`); an empty value clears a field. A month's
    corrections and retractions at once: `--file`, one JSON object a line,
    `{"op": "correct", "event_id": "p1-crp2", "set": {"value": 5}, "reason": "typo", "author": "Dr. Ruiz"}`
    or `{"op": "retract", "event_id": "p1-rash1", "reason": "wrong patient", "author": "Dr. Ruiz"}`.

    Example:

    ```
    timeline correct p1-crp2 --set value=5 --reason typo --author "Dr. Ruiz"
    timeline correct p1-crp3 --set value='<5' --reason "under the limit"
    timeline correct --file corrections-2026-03.jsonl
    ```
    """
    from timeline.errors import UsageError
    from timeline.ingest import correct as do_correct
    from timeline.ingest import describe_stored, stored_values

    if file is not None:
        given = [name for name, value in (("EVENT_ID", event_id), ("--set", set_), ("--reason", reason),
                                         ("--author", author)) if value is not None]  # fmt: skip
        if given:
            raise UsageError(
                f"--file takes no {', '.join(given)}: each line of the file gives its event id, fields, "
                "reason and author"
            )
        from cli.synth import apply_file

        apply_file(file, store, wait, json_out)
        return
    if event_id is None:
        raise UsageError("Missing argument 'EVENT_ID' (or give --file FILE)")
    if not set_:
        raise UsageError("Missing option '--set' (or give --file FILE)")
    if reason is None:
        raise UsageError("Missing option '--reason'")
    event_id = _event_id(event_id)
    changes: dict[str, str] = {}
    for item in set_:
        if "=" not in item:
            raise UsageError(f"--set {item!r} must be FIELD=VALUE")
        name, value = item.split("=", 1)
        name = name.strip()
        if name in changes:
            raise UsageError(
                f"--set {name} given twice ({changes[name]!r} and {value.strip()!r}): give each field once"
            )
        changes[name] = value.strip()
    who = _author(author, required=True)
    with _open(store, write=True, wait=wait) as s:
        result = do_correct(s, event_id, changes, reason=reason, author=who)
        current = s.current_version(event_id)
    if json_out:
        # the fields' values as the event now has them, each measurement as given and as stored
        dump_json({"event_id": event_id, **result.__dict__, "stored": stored_values(current, changes)})
    elif result.batch_id is None:
        # the values as the event has them: a unit "corrected" to the one it was given in
        # (0.15 mg/dL, shown as 1.5 mg/L) is no change, and this says why
        stored = describe_stored(current, changes)
        console().print(f"{esc(event_id)} already has these values ({esc(stored)}): nothing written")
    else:
        stored = describe_stored(current, changes)
        console().print(
            f"corrected {esc(event_id)}: {esc(stored)}; seq {result.high_water} (batch {result.batch_id})"
        )


@app.command(cls=Command)
def retract(
    event_id: Annotated[str, typer.Argument(metavar="EVENT_ID", help="Id of the event to retract.")],
    reason: Annotated[str, typer.Option(metavar="TEXT", help="Why the event is withdrawn (required).")],
    author: Annotated[
        str | None, typer.Option(metavar="NAME", help="Who retracts it (required; or $TIMELINE_AUTHOR).")
    ] = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Append a retraction: the event leaves the current timeline but stays in the history.

    Many at once, with other corrections: `timeline correct --file FILE`, a line
    `{"op": "retract", "event_id": "p1-rash1", "reason": "wrong patient", "author": "Dr. Ruiz"}`.

    Example:

    ```
    timeline retract p1-rash1 --reason "wrong patient" --author "Dr. Ruiz"
    ```
    """
    from timeline.ingest import retract as do_retract

    event_id = _event_id(event_id)
    who = _author(author, required=True)
    with _open(store, write=True, wait=wait) as s:
        result = do_retract(s, event_id, reason=reason, author=who)
    if json_out:
        # ``retracted``: the events this command retracted (1, or 0 when it was already
        # retracted). In the result, as in ingest's, it counts the duplicates that stay
        # retracted: a retraction is no duplicate, and read so it said 0 after retracting.
        dump_json({"event_id": event_id, **result.__dict__, "retracted": 0 if result.batch_id is None else 1})
    elif result.batch_id is None:
        console().print(f"{esc(event_id)} is already retracted: nothing written")
    else:
        console().print(f"retracted {esc(event_id)}: seq {result.high_water} (batch {result.batch_id})")


@app.command(cls=Command)
def events(
    patient: PatientArg,
    start: Annotated[
        str | None, typer.Option("--from", metavar="DATE", help="First date (inclusive).")
    ] = None,
    end: Annotated[
        str | None, typer.Option("--to", metavar="DATE", help="Last date (inclusive, the whole day).")
    ] = None,
    kind: Annotated[
        list[str] | None, typer.Option("--kind", metavar="KIND", help="Only this kind (repeatable).")
    ] = None,
    as_known_at: AsKnownOpt = None,
    history: Annotated[
        bool,
        typer.Option(
            "--history", help="Also show superseded and retracted versions, who changed them and why."
        ),
    ] = False,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """A patient's timeline, ordered by when things happened.

    `--as-known-at` is when the store learned of events, not when they occurred: `seq:14` is
    the record as it stood when sequence number 14 was written (the `seq` column); a date
    before the store's first batch shows it empty.

    Example:

    ```
    timeline events P001 --from 2008-01-01 --to 2008-12-31 --kind lab
    timeline events P001 --as-known-at seq:14 --history --json
    ```
    """
    from timeline import events as ev
    from timeline.errors import UsageError

    kinds = [k.strip().lower() for k in kind or []]  # as ingest reads a kind
    for k in kinds:
        if k not in ev.KINDS:
            raise UsageError(f"--kind {k!r} is not a kind (kinds: {', '.join(ev.KINDS)})")
    lo, hi = _date_bound(start, "--from", end=False), _date_bound(end, "--to", end=True)
    if lo is not None and hi is not None and lo > hi:
        raise UsageError(f"--from {start} is after --to {end}")
    with _open(store, wait=wait) as s:
        moment = s.known_at(as_known_at)  # resolved, as state, explain and cohort run report it
        _engine.note_if_before_the_record(s, as_known_at, moment)
        hw = s.high_water(moment)
        rows = s.events(patient, start=lo, end=hi, kinds=kinds or None, history=history, high_water=hw)
        from timeline import registry

        book = registry.codebook(s)
        if not rows:  # a mistyped id is an error (exit 5), as in state; a filter, or an
            # as-known-at before the store learned of the patient, may rightly leave none
            s.require_patient(patient, s.high_water())
        from timeline.store import manifest

        meta = manifest(s, hw, moment)
    if json_out:
        dump_json(
            {"manifest": meta, "patient_id": patient, "high_water": hw,
             "as_known_at": meta["as_known_at"], "events": [dated(r) for r in rows]}
        )  # fmt: skip
        return
    # piped, laid out by cli.plain (the same text as rich's table: 900 events ~0.5 s less)
    from cli.show import _renderers
    from timeline.summary import describe, when

    Table, _, text, out = _renderers()
    n = len(rows)
    table = Table(
        title=f"{esc(patient)}: {n} event{'s' if n != 1 else ''} (as known at seq {hw})", title_justify="left"
    )
    for col in ("occurred", "kind", "event", "event id", "seq", "recorded (UTC)", "author"):
        table.add_column(col)
    if history:
        table.add_column("status")
        table.add_column("why")
    for r in rows:
        cells = [
            when(r["occurred_at"], r["occurred_precision"]),
            r["kind"],
            describe(r, book),
            r["event_id"],
            str(r["seq"]),
            r["recorded_at"].isoformat(timespec="microseconds"),  # exact: usable as --as-known-at
            r["author"],
        ]
        if history:
            status = r["status"] if r["op"] != "retract" else "retraction"
            if r["op"] == "correct":
                status += " (correction)"
            cells += [status, r.get("change_reason") or ""]
        table.add_row(*(text(c) for c in cells), style="dim" if r["status"] != "current" else None)
    out.print(table)


@app.command(cls=Command)
def patients(
    as_known_at: AsKnownOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """List patients with their event counts and date spans.

    `--json` prints `{"manifest": {...}, "patients": [...]}`: timeline's version, the store,
    the high-water sequence and as-known-at moment read, then one row per patient.

    Example:

    ```
    timeline patients --json
    ```
    """
    from timeline.store import manifest

    with _open(store, wait=wait) as s:
        moment = s.known_at(as_known_at)
        _engine.note_if_before_the_record(s, as_known_at, moment)
        rows = s.patients(moment)
        meta = manifest(s, s.high_water(moment), moment)
    if json_out:
        dump_json({"manifest": meta, "patients": [dated(r) for r in rows]})
        return
    # piped, laid out by cli.plain (the same text as rich's table: 10k patients 4.1 -> 0.6 s)
    from cli.show import _renderers

    Table, _, text, out = _renderers()
    table = Table(title=f"{len(rows)} patient{'s' if len(rows) != 1 else ''}", title_justify="left")
    for col in ("patient", "events", "first", "last"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            text(r["patient_id"]),
            str(r["events"]),
            r["first_event"].strftime("%Y-%m-%d"),
            r["last_event"].strftime("%Y-%m-%d"),
        )
    out.print(table)


@app.command(cls=Command)
def verify(
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at",
            metavar="seq:N",
            help="Also give the chain's head at seq N (a report manifest's high_water), to compare "
            "with the report's head_hash: equal heads, the same record.",
        ),
    ] = None,
) -> None:
    """Recompute every event hash and the batch hash chain; name the first broken link.

    Exit code 0 when intact, 7 when anything was altered, deleted, inserted or reordered
    outside the API, including the store's metadata (its time zone, schema version and
    creation; stores made since schema 3). Keep the printed head hash somewhere else to detect a rewrite of the
    whole chain. When the store is broken no head hash is given (JSON: `head_hash` null):
    the stored one no longer stands for the rows.

    Every report's manifest carries `high_water` and `head_hash`, the chain's head at that
    seq. To check that a store still holds the record a report was made from, verify it
    with `--at seq:N` (N the report's high_water) and compare the head with the report's
    `head_hash`: a store cut back and written again reuses the seqs but not the heads.

    Example:

    ```
    timeline verify --store study.duckdb
    timeline verify --at seq:3485 --json
    ```
    """
    from timeline.errors import UsageError
    from timeline.integrity import verify as do_verify
    from timeline.store import manifest

    with _open(store, wait=wait) as s, working("verifying every event's hash and the batch chain…"):
        seq_at = None
        if at is not None:
            if not at.strip().startswith("seq:"):
                raise UsageError(f"--at {at!r}: give seq:N, a report manifest's high_water")
            try:  # refuses a seq no batch ends at, with advice
                s.known_at(at)
            except UsageError as exc:
                raise UsageError(str(exc).replace("--as-known-at", "--at", 1)) from None
            seq_at = int(at.strip()[4:])
        report = do_verify(s)
        meta = manifest(s, s.high_water(), None)  # the store as it stood when verified
        head_at = s.head_hash(seq_at) if seq_at is not None else None
    if not report.ok:  # the stored heads no longer stand for the rows: give none
        meta["head_hash"] = None
        head_at = None
    broken = f"store integrity broken: {report.first_broken_link}"
    if json_out:
        dump_json(
            {"manifest": meta, "ok": report.ok, "versions": report.events, "batches": report.batches,
             "codes": report.codes, "head_hash": report.head_hash if report.ok else None,
             **({} if seq_at is None else {"at": {"seq": seq_at, "head_hash": head_at}}),
             "first_broken_link": report.first_broken_link, "problems": report.problems,
             **({} if report.ok else {"error": error_document(broken, report.problems[1:], 7)})}
        )  # fmt: skip
    elif report.ok:
        codes = (
            f"; {report.codes} code register row{'s' if report.codes != 1 else ''}" if report.codes else ""
        )
        console().print(
            f"ok: {report.events} version{'s' if report.events != 1 else ''} in {report.batches} "
            f"batch{'es' if report.batches != 1 else ''}{codes}; head hash {report.head_hash}"
        )
        if seq_at is not None:
            console().print(f"head hash at seq {seq_at}: {head_at}")
    else:
        error(broken, report.problems[1:])
    if not report.ok:
        raise Exit(7)


@app.command(cls=Command)
def info(store: StoreOpt = None, wait: WaitOpt = 0, json_out: JsonOpt = False) -> None:
    """Show the store's file, time zone, counts and high-water sequence.

    `events` counts the current events (a corrected event once, a retracted one not),
    `versions` the rows stored (every ingest, correction and retraction), `retracted` the
    events whose current version is a retraction, `patients` those with a current event.
    `created_at` is in UTC. `timeline changes --batches` lists the batches: each ingested
    file's name and SHA-256 (`source_sha256`), each correction and retraction, when, who, why.

    Example:

    ```
    timeline info
    ```
    """
    from timeline.store import manifest

    with _open(store, wait=wait) as s:
        data = s.info()
        meta = manifest(s, data.high_water, None)
    # the file under "store", as init --json and every manifest name it (info --json gave it
    # twice, under "path" too, before)
    shown = {"store": data.path, **{k: v for k, v in data.__dict__.items() if k != "path"}}
    if json_out:
        dump_json({"manifest": meta, **shown, "created_at": utc_text(data.created_at)})
    else:
        c = console()
        for k, v in shown.items():
            c.print(f"{k:>11}: {esc(v)}{' UTC' if k == 'created_at' else ''}")


@app.command(cls=Command)
def changes(
    since: Annotated[
        str | None,
        typer.Option(
            "--since",
            metavar="T",
            help="After this moment of recording: seq:N (a report's high_water) or a UTC date or "
            "date-time. Default: the store's beginning.",
        ),
    ] = None,
    until: Annotated[
        str | None,
        typer.Option("--until", metavar="T", help="Up to this moment (seq:N or a UTC time). Default: now."),
    ] = None,
    patient: Annotated[
        list[str] | None, typer.Option("--patient", metavar="PATIENT", help="Only this patient (repeatable).")
    ] = None,
    list_batches: Annotated[
        bool,
        typer.Option(
            "--batches",
            help="List the batches instead: each ingested file with its name and SHA-256, each "
            "correction and retraction, with when, who and why.",
        ),
    ] = False,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    csv_out: Annotated[
        bool, typer.Option("--csv", help="Print CSV on standard output (one line a changed field).")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """What changed in the store, across patients: every correction, retraction and
    re-assertion (an event retracted, then ingested again) recorded after `--since` and up to
    `--until`, with its seq, batch, time (UTC), author and reason, the patient and event, and
    each field that changed, as given: before → after.

    `--since seq:N` with a report's `high_water` lists exactly what the record has learned
    since that report. `--batches` lists the batches written instead, an ingested file's
    `source_file` (as it was named on the command line) and `source_sha256` (the SHA-256 of
    its bytes, to compare with `sha256sum FILE`) among them. `--csv` prints to standard
    output (redirect it: `> changes.csv`).

    Example:

    ```
    timeline changes --since seq:3470
    timeline changes --since 2026-03-01 --until 2026-04-01 --patient V07 --json
    timeline changes --since seq:3470 --csv > changes.csv
    timeline changes --batches
    ```
    """
    from timeline import changes as ch
    from timeline.errors import UsageError
    from timeline.store import manifest

    if csv_out and json_out:
        raise UsageError("give --csv or --json, not both")
    with _open(store, wait=wait) as s:
        lo = s.high_water(s.known_at(since)) if since is not None else 0
        until_moment = s.known_at(until)
        hi = s.high_water(until_moment)
        if lo > hi:
            raise UsageError(f"--since {since} (seq {lo}) is after --until {until} (seq {hi})")
        meta = manifest(s, hi, until_moment)
        if list_batches:
            batches = ch.batches(s, lo, hi)
        else:
            found = ch.changes(s, lo, hi, [p.strip() for p in patient] if patient else None)
    if list_batches:
        _show_batches(batches, lo, hi, meta, csv_out, json_out)
        return
    if json_out:
        dump_json(
            {"manifest": meta, "since_seq": lo, "until_seq": hi, "changes": [c.to_json() for c in found]}
        )
    elif csv_out:
        _changes_csv(found)
    else:
        _changes_table(found, lo, hi)


def _shown(value: Any) -> str:
    """A native value as a table shows it: 4.0 as 4, True as true, nothing as (empty)."""
    from timeline.language.loader import param_text

    # as a rule file and explain write a value: 12 significant digits (`:g` kept 6, so a
    # correction of 123456.7 to 123456.9 read "123457 → 123457")
    return "(empty)" if value is None else param_text(value, None)


def _change_text(c: Any) -> str:
    diff = "; ".join(f"{f.field}: {_shown(f.before)} → {_shown(f.after)}" for f in c.fields)
    if c.op == "retract":
        return "retracted"
    if c.op == "reassert":
        return "asserted again after a retraction" + (f": {diff}" if diff else " (same content)")
    return diff or "corrected (same content as given)"


def _changes_table(found: list[Any], lo: int, hi: int) -> None:
    # piped, laid out by cli.plain (the same text as rich's table, without its cost per row)
    from cli.show import _renderers

    Table, _, text, out = _renderers()
    n = len(found)
    title = f"{n} change{'s' if n != 1 else ''} after seq {lo} up to seq {hi}"
    table = Table(title=title, title_justify="left")
    for col in ("seq", "batch", "recorded (UTC)", "author", "patient", "event id", "was", "change", "why"):
        table.add_column(col)
    for c in found:
        table.add_row(
            *(text(x) for x in (
                c.seq, c.batch_id, c.recorded_at.isoformat(timespec="microseconds"), c.author, c.patient_id,
                c.event_id, c.event, _change_text(c), c.reason or "",
            ))
        )  # fmt: skip
    out.print(table)


def _changes_csv(found: list[Any]) -> None:
    import csv

    out = csv.writer(sys.stdout, lineterminator="\n")
    out.writerow(["seq", "batch_id", "recorded_at", "author", "reason", "op", "patient_id", "event_id",
                  "kind", "code", "field", "before", "after"])  # fmt: skip
    for c in found:
        head = [c.seq, c.batch_id, c.recorded_at.isoformat(), c.author, c.reason or "", c.op, c.patient_id,
                c.event_id, c.kind, c.code or ""]  # fmt: skip
        for f in c.fields or [None]:
            tail = ["", "", ""] if f is None else [f.field, _csv_value(f.before), _csv_value(f.after)]
            out.writerow(head + tail)


def _csv_value(value: Any) -> str:
    return "" if value is None else _shown(value)


def _show_batches(
    batches: list[Any], lo: int, hi: int, meta: dict[str, Any], csv_out: bool, json_out: bool
) -> None:
    if json_out:
        dump_json(
            {"manifest": meta, "since_seq": lo, "until_seq": hi, "batches": [b.__dict__ for b in batches]}
        )
        return
    cols = ["batch_id", "op", "first_seq", "last_seq", "events", "recorded_at", "author", "source_file",
            "source_sha256", "reason"]  # fmt: skip
    if csv_out:
        import csv

        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(cols)
        for b in batches:
            out.writerow(["" if v is None else v.isoformat() if k == "recorded_at" else v
                          for k, v in b.__dict__.items()])  # fmt: skip
        return
    from rich.table import Table

    n = len(batches)
    table = Table(
        title=f"{n} batch{'es' if n != 1 else ''} after seq {lo} up to seq {hi}", title_justify="left"
    )
    for col in ("batch", "op", "seqs", "events", "recorded (UTC)", "author", "file", "sha256", "why"):
        table.add_column(col, min_width=64 if col == "sha256" else None)  # a digest read whole
    for b in batches:
        table.add_row(
            *(cell(x) for x in (
                b.batch_id, b.op, f"{b.first_seq}–{b.last_seq}", b.events,
                b.recorded_at.isoformat(timespec="seconds"), b.author, b.source_file or "",
                b.source_sha256 or "", b.reason or "",
            ))
        )  # fmt: skip
    console().print(table)


from cli import engine as _engine  # noqa: E402 - registers the rule commands

app.command(cls=Command)(_engine.state)
app.command(cls=Command)(_engine.explain)
app.command(cls=Command)(_engine.history)
app.add_typer(_engine.rules_app, name="rules")

from cli import cohort as _cohort  # noqa: E402 - registers the cohort commands and `plot`

app.command(cls=Command)(_cohort.plot)
app.add_typer(_cohort.cohort_app, name="cohort")

from cli import export as _export  # noqa: E402 - registers `export`

app.command(cls=Command)(_export.export)

from cli import synth as _synth  # noqa: E402 - registers `synth`

app.command(cls=Command)(_synth.synth)

from cli import codes as _codes  # noqa: E402 - registers `codes`

app.add_typer(_codes.codes_app, name="codes")


def only_command(group: typer.Typer, args: list[str]) -> typer.Typer:
    """``group`` with only the top-level command that ``args`` begin with, when they begin with
    one: typer builds click's command of every registered command and group at each run (~0.03
    s CPU of `timeline state`'s start, for 15 commands and 3 groups), and a command's parsing,
    help and errors do not depend on the others. Otherwise (no argument, an option, a group, a
    misspelt name: the group's help and its did-you-mean list every command) ``group`` itself."""
    if not args:
        return group

    def name(c: typer.models.CommandInfo) -> str | None:
        return c.name or (typer.main.get_command_name(c.callback.__name__) if c.callback else None)

    wanted = [c for c in group.registered_commands if name(c) == args[0]]
    if len(wanted) != 1:
        return group
    pruned = copy.copy(group)
    pruned.registered_commands = wanted
    pruned.registered_groups = []
    return pruned


def main() -> NoReturn:
    """Entry point: run the app; end with one exit code and one clean message (cli/exits.py),
    raised as ``SystemExit`` (a program that runs the command line in its own process catches
    it: the tests do). A plain `state` or `explain` runs as the executable runs it, parsed by
    cli.fast; any other command line through typer."""
    from cli.exits import run
    from cli.fast import plain_command

    command = plain_command(sys.argv[1:])
    if command is None:
        group = only_command(app, sys.argv[1:])

        def command() -> None:
            # named `timeline` however the process was started (`python -m cli.main`, a test
            # runner's process): click would otherwise name it after Python's __main__ module
            group(prog_name="timeline")

    sys.exit(run(command, (Exit, _engine.Exit)))


# Commands that only read (their store opened read-only, closed before they return) and leave
# nothing behind to clean up at exit: see ``entry``
_QUICK_EXIT = ("state", "explain")


def entry() -> NoReturn:
    """``python -m cli.main``: :func:`main` in a process of its own (the `timeline` executable
    is cli.fast's ``entry``, which comes here for what it does not run itself). `state` and
    `explain` then end without Python's teardown of the interpreter (cli.fast.quick_exit)."""
    try:
        main()
    except SystemExit as stop:
        if sys.argv[1:2] and sys.argv[1] in _QUICK_EXIT and isinstance(stop.code, int):
            from cli.fast import quick_exit

            quick_exit(stop.code)
        raise


if __name__ == "__main__":
    entry()
