"""What `timeline state` and `timeline explain` do once their command line is parsed: open the
store, evaluate, render. Kept apart from the typer commands (cli.engine) and free of typer, so
that the executable runs these two, the commands most often run one after another, without
importing typer and building click's command (cli.fast parses their command line when it is
plain; cli.engine's commands, with their help, call the same functions)."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cli.output import cell, console, dump_json, esc, note, store_zone, visible

if TYPE_CHECKING:
    from datetime import datetime

    from timeline.engine.evaluate import Result, Session
    from timeline.language.loader import RuleSet
    from timeline.store import Store


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
    store_zone(s)  # closes the store when its zone is unknown
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
    patient: str,
    at: str,
    rule: list[str] | None,
    as_known_at: str | None,
    rules: list[Path] | None,
    param: list[str] | None,
    store: Path | None,
    wait: float,
    json_out: bool,
) -> None:
    """`timeline state` (see its help in cli.engine)."""
    sess = session(store, rules, param, as_known_at, wait)
    with sess.store:
        sess.require_patient(patient, events=sess.replay)  # the events state() replays
        # a table shows no evidence: only --json needs it (see Session.state)
        results = sess.state(patient, at, rule, evidence=json_out)
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
    Table, _, text, out = _renderers()
    table = Table(title=f"{esc(patient)} at {at} (as known at seq {sess.high_water})", title_justify="left")
    table.add_column("rule")
    table.add_column("value")
    table.add_column("reason / detail")
    for r in results:
        meaning = _meaning(sess.rules, r.rule_id)
        table.add_row(text(r.rule_id), _value_text(r, meaning=meaning), text(r.why or r.note or ""))
    out.print(table)


def _renderers() -> tuple[Any, Any, Callable[[object], Any], Any]:
    """The table and tree classes, the table cell and the console `state` and `explain` print
    with: rich's, or, when rich would write plain text (a pipe, a file), cli.plain's, which
    write the same text without importing rich's console (~0.035 s of `state`)."""
    from cli import plain

    if plain.plain_output():
        return (
            plain.Table,
            plain.Tree,
            lambda x: plain.Cell(visible("" if x is None else str(x))),
            plain.Console(),
        )
    from rich.table import Table
    from rich.tree import Tree

    return Table, Tree, cell, console()


def explain(
    patient: str,
    rule_id: str,
    at: str,
    as_known_at: str | None,
    rules: list[Path] | None,
    param: list[str] | None,
    store: Path | None,
    wait: float,
    json_out: bool,
) -> None:
    """`timeline explain` (see its help in cli.engine)."""
    sess = session(store, rules, param, as_known_at, wait)
    with sess.store:
        # the events explain() replays, read with what it lists of them
        sess.require_patient(patient, events=sess.replay, listing=True)
        data = sess.explain(patient, rule_id, at)
    if json_out:
        dump_json(data)
        return
    Table, Tree, text, c = _renderers()
    tree = Tree(_label(data["tree"], top=True))
    _grow(tree, data["tree"]["derivation"])
    c.print(f"[bold]{esc(patient)}[/] at {data['at']} (as known at seq {data['manifest']['high_water']})")
    c.print(tree)
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
            table.add_row(*(text(x) for x in cells))
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
