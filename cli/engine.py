"""Commands that evaluate rules: state, explain, history, and the `rules` group. What `state`
and `explain` do is in cli.show (free of typer, for cli.fast); the helpers it shares with the
other commands are imported from there."""

from __future__ import annotations

import functools
import math
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from cli import show
from cli.options import (
    AsKnownOpt,
    Command,
    Group,
    OptionalPatientArg,
    PatientArg,
    StoreOpt,
    WaitOpt,
    follow_up,
)
from cli.output import cell, check_target, console, dump_json, error, error_document, esc, file_text, note
from cli.show import (
    _grow,
    _label,
    _meaning,
    _value_text,
    instant_text,
    load,
    note_if_before_the_record,
    number_text,
    session,
    truth_colour,
    truth_text,
    unrecorded_drugs,
)

RulesOpt = Annotated[
    list[Path] | None,
    typer.Option(
        "--rules",
        metavar="DIR",
        help="Extra rule directory, after the built-in pack and $TIMELINE_RULES; overrides rules by id (repeatable).",
    ),
]
ParamOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        metavar="[RULE.]NAME=VALUE",
        help="Override a rule parameter, e.g. crp_normal.upper=10 mg/L; without RULE., every rule "
        "with that parameter, e.g. index_drug=canakinumab (repeatable).",
    ),
]
RuleIdOpt = Annotated[
    list[str] | None, typer.Option("--rule", metavar="ID", help="Only this rule (repeatable).")
]


class Exit(Exception):
    def __init__(self, code: int) -> None:
        self.code = code


def _shown(value: object) -> str:
    """A parameter's value as `rules show` prints it: a number converted from another unit
    without its float noise (100.4 [degF] is 38.0 Cel, not 38.000000000000014), a boolean as
    YAML writes it (``true``, not Python's ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(float(f"{value:.12g}")) if isinstance(value, float) else str(value)


def csv_value(value: object) -> object:
    """A value in a CSV cell: true/false as the rest of the CLI (and JSON) writes them, not
    Python's True/False; a number as `state` shows it (:func:`number_text`: -76.9231, not
    -76.923077), an infinite one as JSON writes it (Infinity, which CSV readers parse); its
    unit is a column of its own."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return number_text(float(value))
    return value


def state(
    patient: PatientArg,
    at: Annotated[
        str, typer.Option("--at", metavar="DATE", help="Date (the whole day) or date-time to evaluate at.")
    ],
    rule: RuleIdOpt = None,
    as_known_at: AsKnownOpt = None,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON with a reproducibility manifest.")
    ] = False,
) -> None:
    """Every derived state of a patient at a date: true, false, unknown (with the reason) or a number.

    `--at 2009-03-01` sees every event that occurred on or before 1 March 2009 (the whole
    day); `--at 2009-03-01T10:00` sees events up to that minute.

    Example:

    ```
    timeline state P001 --at 2008-02-10
    timeline state P001 --at 2008-02-10 --rule fever_free --rule crp_normal
    timeline state P001 --at 2008-02-10 --json
    ```
    """
    show.state(patient, at, rule, as_known_at, rules, param, store, wait, json_out)


def explain(
    patient: PatientArg,
    rule_id: Annotated[str, typer.Argument(metavar="RULE", help="Rule id.")],
    at: Annotated[str, typer.Option("--at", metavar="DATE", help="Date (the whole day) or date-time.")],
    as_known_at: AsKnownOpt = None,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print the derivation as JSON (for audit files).")
    ] = False,
) -> None:
    """How a state was derived: rule and citation, each clause with the values compared, the
    windows searched, and the exact events used: the answer's evidence (what `state --json`
    reports), then any other events the clauses read.

    Example:

    ```
    timeline explain P001 fever_free --at 2008-02-10
    timeline explain P001 crp_normal --at 2008-02-10 --json > audit.json
    ```
    """
    show.explain(patient, rule_id, at, as_known_at, rules, param, store, wait, json_out)


def history(
    patient: OptionalPatientArg = None,
    rule: RuleIdOpt = None,
    start: Annotated[str | None, typer.Option("--from", metavar="DATE", help="First date.")] = None,
    end: Annotated[str | None, typer.Option("--to", metavar="DATE", help="Last date.")] = None,
    as_known_at: AsKnownOpt = None,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print intervals as JSON.")] = False,
    csv_out: Annotated[
        bool,
        typer.Option(
            "--csv",
            help="Print intervals as CSV on standard output (a flag: redirect it, `--csv > FILE`; "
            "`cohort run --csv OUT` takes a file instead).",
        ),
    ] = False,
    parquet_out: Annotated[
        Path | None,
        typer.Option(
            "--parquet",
            metavar="OUT",
            help="Write the intervals to the file OUT as Parquet: typed columns (start and end "
            "timestamps, value_bool, value_number), the manifest in the file's metadata.",
        ),
    ] = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all",
            help="Every patient's intervals instead of one's, as CSV (--csv) or Parquet "
            "(--parquet OUT): the same intervals `history PATIENT` gives, patient by patient in "
            "id order, each over the patient's whole record (no --from/--to).",
        ),
    ] = False,
) -> None:
    """The intervals over which each state held (true / false / unknown), exact at the
    moments where it changed — event times and the ends of windows and validity periods.

    Each interval runs from its start (inclusive) to the next interval's start (exclusive);
    the last one to the midnight after the last day.

    Example:

    ```
    timeline history P001 --rule fever_free --rule crp_normal
    timeline history P001 --from 2008-01-01 --to 2008-12-31
    timeline history P001 --csv > p001.csv
    timeline history --all --rule in_mas_episode --csv > mas.csv
    timeline history --all --parquet history.parquet
    ```
    """
    if parquet_out is not None:
        check_target("--parquet", parquet_out)  # before the run, which can be long
    if every:
        _every_history(
            patient, rule, start, end, as_known_at, rules, param, store, wait, json_out, csv_out, parquet_out
        )
        return
    if patient is None:
        from timeline.errors import UsageError

        raise UsageError("Missing argument 'PATIENT' (or give --all for every patient)")
    sess = session(store, rules, param, as_known_at, wait)
    with sess.store:
        sess.require_patient(patient, events=sess.replay)  # the events history() replays
        rows = sess.history(patient, rule, start, end)
        manifest = sess.manifest()
        if parquet_out is not None:
            _patient_parquet(sess, patient, rows, parquet_out)
    growing, said = _growing(sess, rule)
    # a command suggested next carries the options it needs to give the same answers
    given: dict[str, Any] = {"store": store, "rules": rules, "params": param, "as_known_at": as_known_at}
    if growing:
        asked = [w for rid in growing for w in ("--rule", rid)]
        note(f"{said}; `{follow_up('state', patient, '--at', 'DATE', *asked, **given)}` gives it on a date")
    if json_out:
        dump_json({"manifest": manifest, "patient_id": patient, "intervals": rows})
        return
    if csv_out:
        import csv
        import sys

        writer = csv.writer(sys.stdout)
        writer.writerow(["patient_id", "rule", "start", "end", "value", "unit", "reason"])
        # the UCUM code, as --json keeps it; none for a pure number
        units = {rid: sess.rules.rules[rid].value_type.unit for rid in dict.fromkeys(r["rule"] for r in rows)}
        for r in rows:
            writer.writerow(
                _csv_interval(
                    patient,
                    r["rule"],
                    r["start"],
                    r["end"],
                    r["value"],
                    r.get("qualifier"),
                    r["reason"],
                    units[r["rule"]],
                )
            )
        return
    if parquet_out is not None:
        console(stderr=True).print(f"wrote {len(rows):,} intervals to {esc(str(parquet_out))}")
        return
    ids = dict.fromkeys(r["rule"] for r in rows)
    meanings = {rid: _meaning(sess.rules, rid) for rid in ids}
    units = {rid: sess.rules.rules[rid].value_type.unit for rid in ids}
    _swimlanes(patient, rows, meanings, given, units)


def _growing(sess: Any, rule: list[str] | None) -> tuple[list[str], str]:
    """The rules asked for by name that grow with time (age, time_since; a whole history always
    has age_years, so only those named are said), by the id the rule set gives (a copy may be
    asked for in another spelling), and what `history` says of them."""
    growing = [rid for rid in dict.fromkeys(rule or []) if sess.rules.grows_with_time(sess.rules.get(rid).id)]
    verb = "grows" if len(growing) == 1 else "grow"
    return (
        growing,
        f"{', '.join(growing)} {verb} with time (age, time_since): each interval shows the value at its start",
    )


def _csv_interval(
    patient: str,
    rule_id: str,
    start: object,
    end: object,
    value: object,
    qualifier: str | None,
    reason: str | None,
    unit: str | None,
) -> list[object]:
    """One interval as `history --csv` writes it: its value as :func:`csv_value` writes it (a
    censored number with its qualifier, ``<5``), the rule's UCUM unit beside a number (none for a
    pure number, a true or false, or an unknown), the reason of an unknown."""
    text, number = _csv_value_text(value, qualifier)
    shown = unit if number and unit not in ("1", "?") else None
    return [patient, rule_id, start, end or "", text, shown or "", reason or ""]


@functools.lru_cache(maxsize=1 << 16, typed=True)  # a cohort's values repeat (`history --all`)
def _csv_value_text(value: object, qualifier: str | None) -> tuple[object, bool]:
    """An interval's value as `history --csv` writes it (:func:`csv_value`, a censored number with
    its qualifier: ``<5``), and whether it is a number."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    return (f"{qualifier}{csv_value(value)}" if qualifier else csv_value(value)), number


def _as_str(column: str) -> str:
    """SQL: a TIMESTAMP column as ``str()`` writes a datetime (as `history PATIENT --csv` writes
    it): ``2008-01-10 00:00:00``, six digits of microseconds only where there are any
    (``23:59:59.999999``). Written by DuckDB, not by Python for each of 10M rows."""
    return (
        f"CASE WHEN date_part('microseconds', {column}) % 1000000 = 0 THEN strftime({column}, '%Y-%m-%d %H:%M:%S') "
        f"ELSE strftime({column}, '%Y-%m-%d %H:%M:%S.%f') END"
    )


def _every_history(
    patient: str | None,
    rule: list[str] | None,
    start: str | None,
    end: str | None,
    as_known_at: str | None,
    rules: list[Path] | None,
    param: list[str] | None,
    store: Path | None,
    wait: float,
    json_out: bool,
    csv_out: bool,
    parquet_out: Path | None,
) -> None:
    """`history --all --csv | --parquet OUT`: every patient's intervals, evaluated set-based in
    DuckDB (:meth:`Session.histories`, in batches of patients) and written as `history PATIENT`
    writes one patient's, patient by patient in id order, rule by rule as listed."""
    from timeline.errors import UsageError

    if patient is not None:
        raise UsageError(f"give a PATIENT ({patient!r}) or --all, not both")
    if json_out or not (csv_out or parquet_out):
        raise UsageError(
            f"--all writes CSV or Parquet{', not JSON' if json_out else ''}: give --csv and redirect it "
            "(`history --all --csv > FILE`) or --parquet OUT"
        )
    if start is not None or end is not None:
        raise UsageError(
            "--from/--to are for one patient's history: --all writes each patient's whole record"
        )
    import contextlib
    import tempfile

    from cli.output import ProgressBar
    from timeline.engine.evaluate import ENGINE_MEMORY_LIMIT
    from timeline.errors import replacing
    from timeline.store import lower_memory_limit

    sess = session(store, rules, param, as_known_at, wait)
    with sess.store, contextlib.ExitStack() as stack:
        ids = sess.rule_ids(rule)
        growing, said = _growing(sess, rule)
        if growing:
            note(said)
        _history_rules_table(sess, ids)
        # Written batch by batch, as each batch of patients is evaluated (Session.histories'
        # `each`): the batches are patients in id order, so each sorted is the whole sorted, and
        # only one batch's intervals are ever held (1M patients: ~1B intervals would otherwise
        # sit in DuckDB's temp storage, to be sorted at once). Parquet goes to one part file a
        # batch, beside OUT, then into OUT in their order.
        parts: list[Path] = []
        if parquet_out is not None:
            where = parquet_out.parent if parquet_out.is_file() or not parquet_out.exists() else None
            folder = Path(
                stack.enter_context(
                    tempfile.TemporaryDirectory(prefix=f".{parquet_out.name}.parts-", dir=where)
                )
            )
        rows = _history_csv_writer() if csv_out else None
        update = stack.enter_context(ProgressBar("history"))
        at = [0, 1]  # the batch evaluated, of how many

        def evaluating(b: int, n: int) -> None:
            at[:] = [b, n]
            if update is not None:
                update(f"history: evaluating, batch {b + 1} of {n}", b / n)

        def write(table: str) -> None:
            if update is not None:
                update(f"history: writing, batch {at[0] + 1} of {at[1]}", (at[0] + 0.5) / at[1])
            # sorted within the engine's memory limit, spilling past it
            restore = lower_memory_limit(sess.con, ENGINE_MEMORY_LIMIT)
            try:
                if parquet_out is not None:
                    parts.append(folder / f"{len(parts):06d}.parquet")
                    _history_parquet(sess, table, parts[-1])
                if rows is not None:
                    rows(sess, table)
            finally:
                sess.con.execute(restore)

        sess.progress = evaluating
        total = sess.histories(ids, name="tl_every_history", each=write)
        sess.progress = None
        if parquet_out is not None:
            if update is not None:
                update(f"history: writing {total:,} intervals to {parquet_out}", 1.0)
            with replacing(parquet_out) as tmp:
                files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in parts)
                _parquet_copy(sess, f"SELECT * FROM read_parquet([{files}])", tmp)
        sess.con.execute("DROP TABLE IF EXISTS tl_every_history")
    if parquet_out is not None:
        console(stderr=True).print(f"wrote {total:,} intervals to {esc(str(parquet_out))}")


def _history_csv_writer() -> Any:
    """`history --all --csv`: the header on standard output, and a function writing a table of
    intervals (a batch of patients') under it, as `history PATIENT --csv` writes each
    patient's."""
    import csv
    import sys

    writer = csv.writer(sys.stdout)
    writer.writerow(["patient_id", "rule", "start", "end", "value", "unit", "reason"])

    def rows(sess: Any, table: str) -> None:
        rules = {
            rid: (unit, boolean) for rid, _, unit, boolean in sess.con.execute("FROM tl_h_rules").fetchall()
        }
        cur = sess.con.execute(
            f"""SELECT h.patient_id, h.rule_id, {_as_str("h.start")}, {_as_str('h."end"')}, h.b, h.x, h.qualifier, h.why
                FROM {table} h JOIN tl_h_rules r ON r.rule_id = h.rule_id ORDER BY h.patient_id, r.ord, h.start"""
        )
        while found := cur.fetchmany(100_000):
            for pid, rid, first, last, b, x, qualifier, why in found:
                unit, boolean = rules[rid]
                value = b if boolean else x
                writer.writerow(
                    _csv_interval(
                        pid, rid, first, last, "unknown" if value is None else value, qualifier, why, unit
                    )
                )

    return rows


def _history_rules_table(sess: Any, ids: list[str]) -> None:
    """The temp table ``tl_h_rules``: each rule asked for, its place in the order asked, the
    UCUM unit of its value and whether it is true/false (rather than a number)."""
    rules = sess.rules.rules
    sess.con.execute(
        """CREATE OR REPLACE TEMP TABLE tl_h_rules AS SELECT unnest(?::VARCHAR[]) AS rule_id,
               unnest(range(len(?::VARCHAR[]))) AS ord, unnest(?::VARCHAR[]) AS unit, unnest(?::BOOLEAN[]) AS boolean""",
        [ids, ids, [rules[r].value_type.unit for r in ids], [rules[r].type.kind == "bool" for r in ids]],
    )


def _patient_parquet(sess: Any, patient: str, rows: list[dict[str, Any]], out: Path) -> None:
    """`history PATIENT --parquet OUT`: one patient's intervals, in the order `history` gives
    them, as `history --all --parquet` writes every patient's."""
    ids = list(dict.fromkeys(r["rule"] for r in rows))
    _history_rules_table(sess, ids)
    values = [r["value"] for r in rows]
    sess.con.execute(
        """CREATE OR REPLACE TEMP TABLE tl_h_patient AS SELECT ?::VARCHAR AS patient_id,
               unnest(?::VARCHAR[]) AS rule_id, unnest(?::TIMESTAMP[]) AS start, unnest(?::TIMESTAMP[]) AS "end",
               unnest(?::BOOLEAN[]) AS b, unnest(?::DOUBLE[]) AS x, unnest(?::VARCHAR[]) AS qualifier,
               unnest(?::VARCHAR[]) AS why""",
        [
            patient,
            [r["rule"] for r in rows],
            [r["start"] for r in rows],
            [r["end"] for r in rows],
            [v if isinstance(v, bool) else None for v in values],
            [v if isinstance(v, int | float) and not isinstance(v, bool) else None for v in values],
            [r.get("qualifier") for r in rows],
            [r["reason"] for r in rows],
        ],
    )
    from timeline.errors import replacing

    try:
        with replacing(out) as tmp:
            _history_parquet(sess, "tl_h_patient", tmp)
    finally:
        sess.con.execute("DROP TABLE IF EXISTS tl_h_patient")


def _history_parquet(sess: Any, table: str, out: Path) -> None:
    """The intervals of ``table`` (patient_id, rule_id, start, end, b, x, qualifier, why; the
    rules in ``tl_h_rules``) written to ``out`` as Parquet, by patient, then rule as asked, then
    start: patient_id, rule, start, end (the store zone's wall-clock times, as the CSV's), the
    value as value_bool (a true/false rule) or value_number (a number: a censored one's bound,
    its qualifier in qualifier), unit (the number's UCUM unit; none for a pure number), unknown,
    and reason (an unknown's)."""
    _parquet_copy(
        sess,
        f"""SELECT h.patient_id, h.rule_id AS rule, h.start, h."end",
                CASE WHEN r.boolean THEN h.b END AS value_bool,
                CASE WHEN NOT r.boolean THEN h.x END AS value_number, h.qualifier,
                CASE WHEN NOT r.boolean AND h.x IS NOT NULL AND r.unit NOT IN ('1', '?') THEN r.unit END AS unit,
                CASE WHEN r.boolean THEN h.b IS NULL ELSE h.x IS NULL END AS unknown, h.why AS reason
            FROM {table} h JOIN tl_h_rules r ON r.rule_id = h.rule_id
            ORDER BY h.patient_id, r.ord, h.start""",
        out,
    )


def _parquet_copy(sess: Any, select: str, out: Path) -> None:
    """``select`` written to ``out`` as Parquet (zstd), in its order, within the engine's memory
    limit (spilling past it), with the manifest (JSON) and the store's zone in the file's
    key-value metadata."""
    import json

    from timeline.engine.evaluate import ENGINE_MEMORY_LIMIT
    from timeline.store import lower_memory_limit

    meta = json.dumps(sess.manifest(), default=str).replace("'", "''")
    zone = sess.store.timezone.replace("'", "''")
    target = str(out).replace("'", "''")
    restore = lower_memory_limit(sess.con, ENGINE_MEMORY_LIMIT)
    try:
        sess.con.execute(
            f"""COPY ({select}) TO '{target}' (FORMAT parquet, COMPRESSION zstd,
                    KV_METADATA {{manifest: '{meta}', timezone: '{zone}'}})"""
        )
    finally:
        sess.con.execute(restore)


def _swimlanes(
    patient: str,
    rows: list[dict[str, Any]],
    meanings: dict[str, str | None],
    given: dict[str, Any],
    units: dict[str, str | None],
) -> None:
    """``given``: the options of the command (store, rules, params, as_known_at) that the
    command its caption suggests needs too (:func:`follow_up`); ``units``: each rule's value
    unit (UCUM), by rule id."""
    c = console()
    if not rows:
        c.print(f"{esc(patient)}: no events, no history")
        return
    if c.is_terminal:  # a file or a pipe gets the intervals only (README)
        _lanes(c, patient, rows, meanings)
    _intervals_table(patient, rows, given, units)


def _interval_value(r: dict[str, Any], unit: str | None) -> str:
    """An interval's value as `state` shows a rule's: true/false, ``unknown``, or a number as the
    engine's notes write it (:func:`number_text`: ``2.0833``, not ``2.083333333333``; ``0``, not
    ``0.0``), a censored one with its qualifier (``<5``), and the rule's unit as shown to people
    (``mg/kg/d``; none for a pure number)."""
    value = r["value"]
    if isinstance(value, bool):
        return str(value).lower()
    if not isinstance(value, int | float):  # "unknown"
        return str(value)
    text = (r.get("qualifier") or "") + number_text(float(value))
    from timeline.units import display_unit

    shown = display_unit(unit)
    return f"{text} {shown}" if shown else text


def _lane_mark(value: Any, meaning: str | None) -> str:
    """One character of a swimlane, as markup: true █, false ░ (coloured by what the rule's
    truth means), unknown ?, a number ▒."""
    if isinstance(value, bool):
        mark, colour = ("█" if value else "░"), truth_colour(value, meaning)
        return f"[{colour}]{mark}[/]" if colour else mark
    return "[yellow]?[/]" if value == "unknown" else "[blue]▒[/]"


def _lanes(c: Any, patient: str, rows: list[dict[str, Any]], meanings: dict[str, str | None]) -> None:
    from rich.text import Text

    starts = [r["start"] for r in rows]
    ends = [r["end"] for r in rows if r["end"] is not None]
    t0, t1 = min(starts), max(ends + starts)
    span = max((t1 - t0).total_seconds(), 1.0)
    width = 60
    lanes: dict[str, list[str]] = {}
    for r in rows:
        lane = lanes.setdefault(r["rule"], [" "] * width)
        a = int((r["start"] - t0).total_seconds() / span * (width - 1))
        b = int(((r["end"] or t1) - t0).total_seconds() / span * (width - 1))
        ch = _lane_mark(r["value"], meanings.get(r["rule"]))
        for i in range(a, max(b, a + 1)):
            lane[min(i, width - 1)] = ch
    c.print(
        f"[bold]{esc(patient)}[/]  {t0:%Y-%m-%d} … {t1:%Y-%m-%d}   █ true  ░ false  [yellow]? unknown[/]  "
        "[blue]▒ number[/]   [red]red: disease[/], [green]green: a good state[/], "
        "[blue]blue: neither good nor bad[/]"
    )
    for rid, lane in lanes.items():
        c.print(cell(f"{rid:>34} │") + Text.from_markup("".join(lane)) + cell("│"))


def _intervals_table(
    patient: str, rows: list[dict[str, Any]], given: dict[str, Any], units: dict[str, str | None]
) -> None:
    from cli import plain

    # a history is evaluated for values and unknown reasons only (no notes, no evidence)
    first = next((r for r in rows if isinstance(r["value"], bool)), rows[0])
    at = f"{first['start']:%Y-%m-%d}"
    caption = f"why a value holds: {follow_up('explain', patient, first['rule'], '--at', at, **given)}"
    # piped, laid out by cli.plain as `state`'s table is (3,135 intervals: ~3 s through rich)
    Table, _, text, out = show._renderers()
    table = Table(title=text(f"{patient}: intervals"), title_justify="left")
    for col in ("rule", "from", "until", "value", "reason (unknown)"):
        table.add_column(col)
    for r in rows:
        table.add_row(
            text(r["rule"]),
            text(instant_text(str(r["start"]))),
            text(instant_text(str(r["end"]) if r["end"] else None)),
            text(_interval_value(r, units.get(r["rule"]))),
            text(r["reason"] or ""),
        )
    # below the table, on one line (a table's caption is wrapped at the table's width: a
    # command cut over lines does not paste)
    out.print(table)
    if isinstance(out, plain.Console):
        out.print(esc(caption))
    else:
        out.print(cell(caption), soft_wrap=True)


# ---- rules group ---------------------------------------------------------------------------

rules_app = typer.Typer(
    cls=Group,
    help="List, show, check, test rule files; print their JSON Schema.",
    epilog="Example:\n\n```\ntimeline rules list\ntimeline rules show crp_normal\ntimeline rules test examples/site_rules/\n```",
    no_args_is_help=True,
)


@rules_app.command("list", cls=Command)
def rules_list(
    rules: RulesOpt = None, json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """List rules with id, version, status, description and citation.

    Example:

    ```
    timeline rules list --rules examples/site_rules/
    ```
    """
    rs = load(rules)
    items: list[dict[str, Any]] = [
        {"id": r.id, "version": r.version, "status": r.status, "type": str(r.value_type), "description": r.description,
         "citation": r.citation, "source": r.source, "overrides": r.overrides, "from": rule_origin(r.source)}
        for r in (rs.rules[i] for i in sorted(rs.listed()))
    ]  # fmt: skip
    if json_out:
        dump_json({"rules_digest": rs.digest, "rules": items})
        return
    from rich.table import Table

    table = Table(title=f"{len(items)} rules (digest {rs.digest[:12]})", title_justify="left")
    for col in ("id", "version", "status", "value", "from", "description", "citation"):
        table.add_column(col)
    for r in items:
        origin = r["from"] + (f" (overrides {rule_origin(r['overrides'])})" if r["overrides"] else "")
        table.add_row(
            cell(r["id"]),
            cell(r["version"]),
            cell(r["status"]),
            cell(r["type"]),
            cell(origin),
            cell(cut_at_word(r["description"], 90)),
            cell(cut_at_word(r["citation"], 70)),
        )
    console().print(table)


def rule_origin(source: str) -> str:
    """Where a rule comes from, as `rules list` shows it: ``built-in`` (the pack), or the
    directory of the user's file as the command was given it (``my_rules/``)."""
    from timeline.language.loader import from_builtin

    if from_builtin(source):
        return "built-in"
    return str(Path(source).parent).rstrip("/") + "/"


def cut_at_word(text: str, width: int) -> str:
    """``text`` cut to about ``width`` characters at a word, with an ellipsis (never mid-word:
    "(the lates" was a word cut in two); whole when it fits."""
    text = " ".join(text.split())
    if len(text) <= width:
        return text
    at = text.rfind(" ", 0, width)
    return (text[:at] if at > 0 else text[:width]).rstrip(" ,;:(") + " …"


@rules_app.command("show", cls=Command)
def rules_show(
    rule_id: Annotated[str, typer.Argument(metavar="RULE", help="Rule id.")],
    rules: RulesOpt = None,
    param: ParamOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Show one rule: its file, parameters (with site overrides) and definition.

    Example:

    ```
    timeline rules show mas
    ```
    """
    rs = load(rules, param)
    r = rs.get(rule_id)
    if json_out:
        dump_json(
            {"id": r.id, "version": r.version, "status": r.status, "meaning": r.meaning, "description": r.description,
             "citation": r.citation, "source": r.source, "overrides": r.overrides, "type": str(r.value_type),
             "parameters": {p.name: {"value": _shown(p.effective), "default": _shown(p.default), "unit": p.unit, "read_in": p.unit or p.read_in, "description": p.description} for p in r.params},
             "uses": [d for d in rs.dependencies(r.id) if d != r.id],
             **({"variant_of": r.variant_of, "variant_with": [name for name, _ in r.variant_with]} if r.variant_of else {})}
        )  # fmt: skip
        return
    c = console()
    meaning = (
        f"; true is {r.meaning} news"
        if r.meaning in ("good", "bad")
        else "; true is neither good nor bad news"
        if r.meaning
        else ""
    )
    c.print(f"[bold]{esc(r.id)}@{esc(r.version)}[/] ({r.status}{meaning}) — {esc(r.value_type)}")
    c.print(f"file: {esc(r.source)}" + (f"  [yellow]overrides {esc(r.overrides)}[/]" if r.overrides else ""))
    c.print(cell(r.description))
    c.print(cell(f"citation: {r.citation}"))
    for p in r.params:
        # a default written without a unit: shown in the unit it is read in, and said so
        unit = p.unit or p.read_in
        c.print(
            cell(
                f"  param {p.name} = {_shown(p.effective)}{' ' + unit if unit else ''}"
                + (
                    f" (default {_shown(p.default)}{' ' + unit if unit else ''})"
                    if p.value is not None
                    else ""
                )
                + (
                    f" (written without a unit: read in {p.read_in}, the unit of what it is compared with or given to)"
                    if p.unit is None and p.read_in
                    else ""
                )
                + (f" — {p.description}" if p.description else "")
            )
        )
    uses = [d for d in rs.dependencies(r.id) if d != r.id]
    if uses:
        c.print(cell(f"uses rules: {', '.join(uses)}"))
    if r.variant_of:
        c.print(
            cell(
                f"a copy of {r.variant_of} at the values a rule reading it gives ({', '.join(name for name, _ in r.variant_with)}); its file:"
            )
        )
    # the file as written, over its lines (a terminal wraps a long one; a pipe gets it whole)
    c.print(file_text(Path(r.source).read_text(encoding="utf-8").removesuffix("\n")), soft_wrap=True)


@rules_app.command("check", cls=Command)
def rules_check(
    directory: Annotated[
        list[Path] | None,
        typer.Argument(metavar="DIR", help="Rule directories to check (with the built-in pack)."),
    ] = None,
    rules: RulesOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Validate every rule file before any data is touched: YAML syntax, unknown operators,
    rules, codes and parameters (with did-you-mean), cycles, type and unit errors — all at once.

    Exit code 0 when all files are valid, 8 otherwise.

    Example:

    ```
    timeline rules check examples/site_rules/
    ```
    """
    from timeline.language.loader import RuleError

    try:
        rs = load([*(rules or []), *(directory or [])])
    except RuleError as exc:
        if json_out:
            dump_json(
                {"ok": False, "problems": [p.__dict__ for p in exc.problems],
                 "error": error_document(exc.summary(), exc.details(), exc.exit_code)}
            )  # fmt: skip
        else:
            error(exc.summary(), exc.details())
        raise Exit(exc.exit_code) from None
    for text in rs.warnings:  # likely not meant, though the language allows it
        console(stderr=True).print(cell(f"warning: {text}"))
    for rid in rs.listed():
        if Path(rs.rules[rid].source).stem != rid:  # allowed; but the rule is looked for by its name
            note(f"{rs.rules[rid].source} holds rule {rid!r}: a file named after its rule ({rid}.yaml) is found by its name")  # fmt: skip
    if json_out:
        overriding = sorted(rid for rid in rs.listed() if rs.rules[rid].overrides)
        dump_json({"ok": True, "rules": len(rs.listed()), "rules_digest": rs.digest, "overrides": overriding,
                   "warnings": rs.warnings})  # fmt: skip
    else:
        console().print(f"ok: {len(rs.listed())} rules in {len(rs.sources)} files (digest {rs.digest[:12]})")
        for rid in sorted(r for r in rs.listed() if rs.rules[r].overrides):
            # a rule id given again in a later directory replaces the earlier rule (README)
            console().print(
                f"  {esc(rid)}: {esc(rs.rules[rid].source)} overrides {esc(str(rs.rules[rid].overrides))}"
            )


@rules_app.command("test", cls=Command)
def rules_test(
    directory: Annotated[
        list[Path] | None,
        typer.Argument(
            metavar="DIR",
            help="Rule directories whose rules' examples are run (read with the built-in pack); "
            "without DIR, every rule loaded: the built-in pack's, --rules' and $TIMELINE_RULES'.",
        ),
    ] = None,
    rule: RuleIdOpt = None,
    rules: RulesOpt = None,
    every: Annotated[
        bool,
        typer.Option(
            "--all", help="Run every loaded rule's examples, the built-in pack's too, not only DIR's."
        ),
    ] = False,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Run the examples rule files carry and report pass/fail per example: those of the rules
    in DIR when it is given, else of every rule loaded (the built-in pack's too); --rule ID
    runs one rule's, --all every rule's.

    Exit code 0 when all pass, 9 when any fails.

    Example:

    ```
    timeline rules test examples/site_rules/
    timeline rules test examples/site_rules/ --rule ferritin_high
    timeline rules test
    ```
    """
    from timeline.engine.ruletest import rules_of, run_examples, where
    from timeline.language.loader import rule_dirs

    extra = [*(rules or []), *(directory or [])]
    rs = load(extra)
    dirs = [Path(d) for d in rule_dirs([str(p) for p in extra])]
    asked = [rs.get(rid) for rid in rule or []]  # an unknown id: exit 2, with a did-you-mean
    for one in asked:
        if not one.examples:
            copy = f" (a copy of {one.variant_of} at other parameter values)" if one.variant_of else ""
            console(stderr=True).print(
                cell(f"note: {one.id} has no examples{copy}: nothing of it was tested")
            )
    chosen: list[str] | None = None  # every rule loaded
    if asked:
        chosen = [one.id for one in asked]
    elif directory and not every:
        chosen = rules_of(rs, directory)
        if not any(rs.rules[rid].examples for rid in chosen):
            console(stderr=True).print(
                cell(f"note: no rule in {', '.join(map(str, directory))} carries examples: nothing was tested "
                     "(--all runs the built-in pack's too)")
            )  # fmt: skip
    results = run_examples(rs, dirs, chosen)
    failed = [r for r in results if not r.passed]
    if json_out:
        outcome: dict[str, Any] = {}
        if failed:
            details = [f"{where(r.file, r.line)}: {r.rule}: {r.example}" for r in failed]
            outcome = {
                "ok": False,
                "error": error_document(
                    f"{len(failed)} rule example{'s' if len(failed) != 1 else ''} failed", details, 9
                ),
            }
        dump_json(
            {
                "passed": len(results) - len(failed),
                "failed": len(failed),
                "examples": [r.__dict__ for r in results],
                **outcome,
            }
        )
    else:
        c = console()
        for r in results:
            mark = "[green]PASS[/]" if r.passed else "[red]FAIL[/]"
            # a failing example by its place, as rules check names a problem's
            place = "" if r.passed else f" ({esc(where(r.file, r.line))})"
            c.print(f"{mark} {esc(r.rule)}: {esc(r.example)}{place}", soft_wrap=True)
            for f in r.failures:
                c.print(cell(f"     {f}"), soft_wrap=True)
        c.print(f"{len(results) - len(failed)} passed, {len(failed)} failed")
    if failed:
        raise Exit(9)


@rules_app.command("schema", cls=Command)
def rules_schema() -> None:
    """Print the JSON Schema of rule files, for editors that validate YAML as you type.

    Example:

    ```
    timeline rules schema > rule.schema.json
    ```
    """
    from timeline.language.schema import rule_schema

    dump_json(rule_schema(), outcome=False)  # a JSON Schema, for editors: no "ok" in it


__all__ = [
    "Exit", "_grow", "_label", "_value_text", "explain", "history", "load", "note_if_before_the_record", "os",
    "rules_app", "session", "state", "truth_text", "unrecorded_drugs",
]  # fmt: skip
