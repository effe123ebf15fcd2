"""Commands that evaluate rules: state, explain, history, and the `rules` group."""

from __future__ import annotations

import math
import os
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cli.options import AsKnownOpt, Command, Group, PatientArg, StoreOpt, WaitOpt, follow_up
from cli.output import cell, console, dump_json, error, error_document, esc, file_text, note, set_store_zone

if TYPE_CHECKING:
    from datetime import datetime

    from timeline.engine.evaluate import Result, Session
    from timeline.language.loader import RuleSet
    from timeline.store import Store

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


def _params(items: list[str] | None) -> dict[str, dict[str, Any]]:
    from timeline.errors import UsageError
    from timeline.language.loader import ALL_RULES

    out: dict[str, dict[str, Any]] = {}
    for item in items or []:
        if "=" not in item or not item.split("=", 1)[0].strip():
            raise UsageError(
                f"--param {item!r} must be RULE.NAME=VALUE, or NAME=VALUE for every rule with NAME"
            )
        key, value = item.split("=", 1)
        rid, name = key.split(".", 1) if "." in key else (ALL_RULES, key)
        out.setdefault(rid.strip(), {})[name.strip()] = value.strip()
    return out


def load(rules: list[Path] | None, params: list[str] | None = None) -> RuleSet:
    """The rule set of the built-in pack, $TIMELINE_RULES and ``--rules``, through the per-user
    cache of loaded rule sets (``timeline.language.cache``)."""
    from timeline.language.cache import load_rules
    from timeline.language.loader import rule_dirs

    rs = load_rules(rule_dirs([str(p) for p in rules or []]), params=_params(params))
    for text in rs.notes:
        note(text)
    return rs


def session(
    store: Path | None,
    rules: list[Path] | None,
    params: list[str] | None,
    as_known_at: str | None,
    wait: float,
    drugs: bool = True,
) -> Session:
    """``drugs``: note the drugs a site's values name that no event records (:func:`unrecorded_drugs`)
    of every rule loaded; a cohort notes them of the rules it reads, once it has read its file."""
    from timeline.engine.evaluate import Session
    from timeline.store import Store

    ruleset = load(rules, params)
    s = Store.open(store, wait=wait)
    set_store_zone(s.timezone)  # its clinical times carry its offset in --json
    for text in unrecorded_drugs(s, ruleset) if drugs else []:
        note(text)
    try:
        moment = s.known_at(as_known_at)
        note_if_before_the_record(s, as_known_at, moment)
    except BaseException:
        s.close()
        raise
    return Session(s, ruleset, moment)


def note_if_before_the_record(store: Store, as_known_at: str | None, moment: datetime | None) -> None:
    """A note when ``--as-known-at`` is before the store's first batch: the record was empty
    then, which reads as "no events" or an unknown patient unless one knows that the option is
    the time the store learned of events, not a clinical date (`--as-known-at 2024-05-01` of a
    store made in 2026)."""
    if moment is None or as_known_at is None or store.high_water(moment) > 0:
        return
    row = store.con.execute("SELECT min(recorded_at) FROM batches").fetchone()
    if row is None or row[0] is None:  # an empty store: empty at every moment
        return
    note(
        f"as known at {as_known_at.strip()} the store held no events: its first batch was recorded at "
        f"{row[0].isoformat(timespec='microseconds')} UTC (--as-known-at is when the store learned of "
        "events, not a clinical date)"
    )


def unrecorded_drugs(store: Store, rules: RuleSet, reading: set[str] | None = None) -> list[str]:
    """A note for each drug a site's value of a text parameter names (``index_drug`` set by
    params.yaml or --param) that no event of the store records: most often a misspelling,
    which would leave every rule naming it unknown or false without a word. A recorded drug
    spelt nearly so is suggested, unless the value is itself a drug the built-in pack names
    (``canakinumab`` is no misspelling of ``anakinra``: helper 62). ``reading``: only the
    rules of these ids are said to use it (a cohort's and those they read); None: every
    rule loaded."""
    from timeline.language.loader import did_you_mean, drugs_named, from_builtin, known_drugs

    listed = [rid for rid in rules.listed() if reading is None or rid in reading]
    given: dict[str, list[str]] = {}
    for rid in listed:
        for p in rules.rules[rid].params:
            if isinstance(p.value, str) and p.value != p.default:
                given.setdefault(p.value, []).append(f"{rid}.{p.name}")
    # the drugs a site's own rule files name (a literal or a parameter's default): noted only
    # when a recorded drug is spelt nearly so (a misspelling); a rule may well name a drug no
    # patient of this store had
    written: dict[str, list[str]] = {}
    own = [rid for rid in listed if not from_builtin(rules.rules[rid].source)]  # a site's rules
    known = known_drugs(rules) if own or given else set()  # a drug the built-in pack names is no misspelling
    for rid in own:
        for drug in sorted(drugs_named(rules.rules[rid]) - known):
            if drug not in given and rid not in written.get(drug, []):
                written.setdefault(drug, []).append(rid)
    out = []
    present: list[str] | None = None  # every recorded drug, read once if any value is missing
    for drug, where in sorted({**given, **written}.items()):
        # an early-stopping probe: a drug that is recorded is found at once
        if store.con.execute("SELECT 1 FROM events WHERE drug = ? LIMIT 1", [drug]).fetchone():
            continue
        if present is None:
            present = [
                str(d)
                for (d,) in store.con.execute(
                    "SELECT DISTINCT drug FROM events WHERE drug IS NOT NULL"
                ).fetchall()
            ]
        hint = "" if drug in known else did_you_mean(drug, present)
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        if drug in known:  # a real drug no patient of this store had: not a misspelling
            out.append(f"no event of the store records {drug!r} ({shown})")
        elif drug in given or hint:
            out.append(f"{drug!r} ({shown}) is recorded for no patient in the store{hint}")
    return out


def _shown(value: object) -> str:
    """A parameter's value as `rules show` prints it: a number converted from another unit
    without its float noise (100.4 [degF] is 38.0 Cel, not 38.000000000000014), a boolean as
    YAML writes it (``true``, not Python's ``True``)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(float(f"{value:.12g}")) if isinstance(value, float) else str(value)


def number_text(v: float) -> str:
    """A number as `state` and `explain` show it: as the engine's notes write it (four decimals
    at most, trailing zeros dropped), so that a value beside a threshold shows on which side it
    is (an MS score of -2.1003 is not "-2.1", a ferritin of 684.01 not "684"); a number below 1
    keeps four significant digits (0.00012, not 0.0001)."""
    from timeline.engine.replay import fmt

    text = fmt(v)
    assert text is not None
    return max(text, f"{v:.4g}", key=len) if 0 < abs(v) < 1 else text


# A true or false is coloured by what the rule says it means for the patient (its `meaning:`),
# as `timeline plot` colours its lanes: red is disease, green a good state. A rule that declares
# no meaning, or `neutral` (on a drug, a weight band), and a clause of a derivation have true in
# blue and false uncoloured: never the colours of good or bad news. Colour is a terminal's only.
_TRUTH_COLOURS: dict[str | None, tuple[str, str]] = {"good": ("green", "red"), "bad": ("red", "green")}
_NEUTRAL_TRUTH = ("blue", "")


def truth_colour(value: bool, meaning: str | None) -> str:
    """The colour (a rich style, "" for none) of a rule's true or false, by its ``meaning``."""
    true, false = _TRUTH_COLOURS.get(meaning, _NEUTRAL_TRUTH)
    return true if value else false


def truth_text(value: bool, meaning: str | None) -> str:
    """``true`` or ``false`` as markup, in the colour of what it means (:func:`truth_colour`)."""
    text = "true" if value else "false"
    colour = truth_colour(value, meaning)
    return f"[{colour}]{text}[/]" if colour else text


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


def _value_text(r: Result, markup: bool = True, meaning: str | None = None) -> str:
    if r.value is None:
        return "[yellow]unknown[/]" if markup else "unknown"
    if isinstance(r.value, bool):
        if not markup:
            return "true" if r.value else "false"
        return truth_text(r.value, meaning)
    text = (r.qualifier or "") + number_text(float(r.value))  # a censored value: <5 mg/L
    from timeline.units import display_unit

    unit = display_unit(r.unit)  # --json keeps the UCUM code
    unit = esc(unit) if markup and unit else unit  # [degF] is a unit, not markup
    return f"{text} {unit}" if unit else text


def _meaning(rules: RuleSet, rule_id: str) -> str | None:
    """The ``meaning:`` a rule declares (good, bad, neutral), None without one."""
    rule = rules.rules.get(rule_id)
    return rule.meaning if rule is not None else None


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
    sess = session(store, rules, param, as_known_at, wait)
    with sess.store:
        sess.require_patient(patient, events=sess.replay)  # the events state() replays
        results = sess.state(patient, at, rule)
        if json_out:
            dump_json(
                {
                    "manifest": sess.manifest(),
                    "patient_id": patient,
                    "at": at,
                    "states": [r.to_json() for r in results],
                }
            )
            return
    from rich.table import Table

    table = Table(title=f"{esc(patient)} at {at} (as known at seq {sess.high_water})", title_justify="left")
    table.add_column("rule")
    table.add_column("value")
    table.add_column("reason / detail")
    for r in results:
        meaning = _meaning(sess.rules, r.rule_id)
        table.add_row(cell(r.rule_id), _value_text(r, meaning=meaning), cell(r.why or r.note or ""))
    console().print(table)


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
    sess = session(store, rules, param, as_known_at, wait)
    with sess.store:
        sess.require_patient(patient)
        data = sess.explain(patient, rule_id, at)
    if json_out:
        dump_json(data)
        return
    from rich.tree import Tree

    tree = Tree(_label(data["tree"], top=True))
    _grow(tree, data["tree"]["derivation"])
    c = console()
    c.print(f"[bold]{esc(patient)}[/] at {data['at']} (as known at seq {data['manifest']['high_water']})")
    c.print(tree)
    from rich.table import Table

    for key, title in (
        ("events", "events used (the answer's evidence, as `state --json` reports it)"),
        ("other_events", "other events the clauses read"),
        ("retracted_events", "retracted events of the kinds read (no longer in the record)"),
    ):
        if not data.get(key):
            continue
        table = Table(title=title, title_justify="left")
        retracted = key == "retracted_events"
        # a retraction's row: who withdrew the event, when and why; an event's: where it came
        # from (the file's row, or the correction that wrote this version)
        columns = (
            ("retracted (UTC)", "event", "retracted by", "reason")
            if retracted
            else ("recorded (UTC)", "event", "source")
        )
        for col in ("seq", "event id", "occurred", *columns):
            table.add_column(col)
        for e in data[key]:
            remarks = "; ".join(e.get("remarks") or [])
            cells = [e["seq"], e["event_id"], e["occurred_at"], e["recorded_at"]]
            cells.append(e["description"] + (f" [{remarks}]" if remarks else ""))
            cells += [e["author"], e["change_reason"]] if retracted else [_source_text(e)]
            table.add_row(*(cell(x) for x in cells))
        c.print(table)
    if not data["events"]:
        c.print("no events are the answer's evidence")


def _source_text(event: dict[str, Any]) -> str:
    """Where an event version listed by explain came from: its file and row ("row N" as
    ingest's errors number them), or the correction that wrote it, by whom and why."""
    if event.get("source"):
        return str(event["source"])
    if event.get("version") == "correct":
        why = f": {event['change_reason']}" if event.get("change_reason") else ""
        return f"corrected by {event['author']}{why}"
    return ""


def _fmt_value(value: Any, unit: str | None = None, meaning: str | None = None) -> str:
    """A node's value as markup; a true or false coloured by the ``meaning`` of its rule (a
    clause has none: :func:`truth_colour`)."""
    escape = partial(esc, lines=True)

    if value == "unknown":
        return "[yellow]unknown[/]"
    if isinstance(value, bool):
        return truth_text(value, meaning)
    if isinstance(value, int | float | Decimal):  # a constant's SQL literal reads back as a Decimal
        value = float(value)
        text = number_text(value)
        from timeline.units import display_unit

        shown = display_unit(unit)
        return text + (f" {escape(shown)}" if shown else "")
    return escape(str(value))


def short_copies(text: str, longest: int = 30) -> str:
    """A rule read at other values as the terminal shows it: ``inactive_disease(…)`` where its id
    spells out long values (``inactive_disease(exam_validity=inactive_disease_carried_forward.
    carried_for, …)``, hundreds of characters nested); its parameters line gives the values, and
    ``--json`` the whole id."""
    out, i = [], 0
    while i < len(text):
        j = text.find("(", i)
        if j <= 0 or not (text[j - 1].isalnum() or text[j - 1] == "_"):
            out.append(text[i:] if j < 0 else text[i : j + 1])
            i = len(text) if j < 0 else j + 1
            continue
        depth, k = 0, j
        while k < len(text):
            depth += {"(": 1, ")": -1}.get(text[k], 0)
            if depth == 0:
                break
            k += 1
        if k == len(text):  # not closed: as it is
            out.append(text[i:])
            break
        inner = text[j + 1 : k]
        out.append(text[i:j] + ("(…)" if len(inner) > longest else f"({inner})"))
        i = k + 1
    return "".join(out)


def _label(node: dict[str, Any], top: bool = False) -> str:
    escape = partial(esc, lines=True)

    if "rule" in node and "derivation" in node:
        value = (node.get("qualifier") or "") + _fmt_value(
            node["value"], node.get("unit"), node.get("meaning")
        )
        text = f"[bold]{escape(short_copies(node['rule']))}[/] = {value}"
        if node.get("reason"):
            text += f" — {escape(node['reason'])}"
        text += f"\n[dim]{escape(node['citation'])}[/]"
        if node.get("parameters"):
            text += (
                "\n[dim]parameters: "
                + escape(", ".join(f"{k}={v}" for k, v in node["parameters"].items()))
                + "[/]"
            )
        return text
    value = _fmt_value(node["value"], node.get("unit"))
    if node.get("qualifier") is not None:  # a censored value (unknown): <5 mg/L
        value = node["qualifier"] + _fmt_value(node["bound"], node.get("unit"))
    text = f"{escape(short_copies(node['op']))} = {value}"
    if node.get("detail"):
        text += f"  [cyan]{escape(str(node['detail']))}[/]"
    if node.get("reason"):
        text += f"  [yellow]({escape(node['reason'])})[/]"
    if node.get("window"):
        w = node["window"]
        text += (
            f"  [dim]window {escape(instant_text(w.get('from')))} → {escape(instant_text(w.get('to')))}[/]"
        )
    if node.get("events"):
        text += f"  [dim]events seq {', '.join(str(s) for s in node['events'][:12])}{'…' if len(node['events']) > 12 else ''}[/]"
    return text


def instant_text(value: str | None) -> str:
    """A window bound or an interval's edge as the terminal shows it: the last microsecond of a
    day (where a date query's window ends, where a baseline on the index date is known) as "end
    of DAY", midnight as the date alone, an open bound (a drug's whole history, an interval
    still running) as "…". ``--json`` and ``--csv`` keep the instants as they are."""
    if value is None:
        return "…"
    day, _, time = str(value).partition(" ")
    if time == "23:59:59.999999":
        return f"end of {day}"
    if time in ("00:00:00", ""):
        return day
    return str(value)


def _grow(tree: Any, node: dict[str, Any]) -> None:
    branch = tree.add(_label(node))
    if "checked" in node:
        # the first 12 moments checked, and the one that decided if it is later
        checked = node["checked"]
        shown = checked[:12]
        decided = [x for x in checked[12:] if x["at"] == node.get("decided_at")]
        for check in shown + decided:
            if check in decided and len(checked) > 13:
                branch.add(f"[dim]… {len(checked) - 13} more moments checked (--json lists all)[/]")
            branch.add(
                f"[dim]at {esc(instant_text(check['at']))}:[/] {_fmt_value(check['value'])}"
                + (f" ({esc(check['reason'])})" if check.get("reason") else "")
            )
        if not decided and len(checked) > 12:
            branch.add(f"[dim]… {len(checked) - 12} more moments checked (--json lists all)[/]")
    for child in node.get("children", []):
        if "derivation" in child:
            sub = branch.add(_label(child))
            _grow(sub, child["derivation"])
        else:
            _grow(branch, child)


def history(
    patient: PatientArg,
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
    ```
    """
    sess = session(store, rules, param, as_known_at, wait)
    with sess.store:
        sess.require_patient(patient)
        rows = sess.history(patient, rule, start, end)
        manifest = sess.manifest()
    # said of the rules asked for by name: a whole history always has age_years
    # (by the id the rule set gives: a copy may be asked for in another spelling)
    growing = [rid for rid in dict.fromkeys(rule or []) if sess.rules.grows_with_time(sess.rules.get(rid).id)]
    # a command suggested next carries the options it needs to give the same answers
    given: dict[str, Any] = {"store": store, "rules": rules, "params": param, "as_known_at": as_known_at}
    if growing:
        asked = [w for rid in growing for w in ("--rule", rid)]
        note(
            f"{', '.join(growing)} {'grows' if len(growing) == 1 else 'grow'} with time"
            " (age, time_since): each interval shows the value at its start; "
            f"`{follow_up('state', patient, '--at', 'DATE', *asked, **given)}` gives it on a date"
        )
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
            number = isinstance(r["value"], int | float) and not isinstance(r["value"], bool)
            unit = units[r["rule"]] if number and units[r["rule"]] not in ("1", "?") else None
            writer.writerow(
                [
                    patient,
                    r["rule"],
                    r["start"],
                    r["end"] or "",
                    f"{r['qualifier']}{csv_value(r['value'])}"
                    if r.get("qualifier")
                    else csv_value(r["value"]),
                    unit or "",
                    r["reason"] or "",
                ]
            )
        return
    meanings = {rid: _meaning(sess.rules, rid) for rid in dict.fromkeys(r["rule"] for r in rows)}
    _swimlanes(patient, rows, meanings, given)


def _swimlanes(
    patient: str, rows: list[dict[str, Any]], meanings: dict[str, str | None], given: dict[str, Any]
) -> None:
    """``given``: the options of the command (store, rules, params, as_known_at) that the
    command its caption suggests needs too (:func:`follow_up`)."""
    c = console()
    if not rows:
        c.print(f"{esc(patient)}: no events, no history")
        return
    if c.is_terminal:  # a file or a pipe gets the intervals only (README)
        _lanes(c, patient, rows, meanings)
    _intervals_table(c, patient, rows, given)


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


def _intervals_table(c: Any, patient: str, rows: list[dict[str, Any]], given: dict[str, Any]) -> None:
    from rich.table import Table

    # a history is evaluated for values and unknown reasons only (no notes, no evidence)
    first = next((r for r in rows if isinstance(r["value"], bool)), rows[0])
    at = f"{first['start']:%Y-%m-%d}"
    caption = f"why a value holds: {follow_up('explain', patient, first['rule'], '--at', at, **given)}"
    table = Table(title=cell(f"{patient}: intervals"), title_justify="left")
    for col in ("rule", "from", "until", "value", "reason (unknown)"):
        table.add_column(col)
    for r in rows:
        value = str(r["value"]).lower() if isinstance(r["value"], bool) else r["value"]
        if r.get("qualifier"):  # a censored value: <5
            value = f"{r['qualifier']}{number_text(float(r['value']))}"
        table.add_row(
            cell(r["rule"]),
            cell(instant_text(str(r["start"]))),
            cell(instant_text(str(r["end"]) if r["end"] else None)),
            cell(value),
            cell(r["reason"] or ""),
        )
    c.print(table)
    # below the table, on one line (a table's caption is wrapped at the table's width: a
    # command cut over lines does not paste)
    c.print(cell(caption), soft_wrap=True)


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


__all__ = ["Exit", "explain", "history", "os", "rules_app", "state"]
