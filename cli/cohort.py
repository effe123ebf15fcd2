"""The `cohort` command group (check, run, explain, patients, plot) and `timeline plot`.

Exit codes: 0 success; 2 bad command line (an unknown cell or group, a wrong --out
extension); 3 store missing or damaged; 8 the cohort file or a rule file has problems.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

from cli.engine import Exit, ParamOpt, RulesOpt, load, session, unrecorded_drugs
from cli.options import AsKnownOpt, Command, Group, PatientArg, StoreOpt, WaitOpt, follow_up
from cli.output import ProgressBar, cell, check_target, console, dump_json, error, error_document, esc, note

if TYPE_CHECKING:
    from timeline.cohort.report import Cell, Report
    from timeline.cohort.spec import CohortSpec
    from timeline.engine.evaluate import Session

cohort_app = typer.Typer(
    cls=Group,
    help="Cohort reports from a cohort file: check it, run the n/N table, explain a patient, list a cell's patients, plot.",
    epilog=(
        "Example:\n\n```\ntimeline cohort check examples/valencia/cohort.yaml\n"
        "timeline cohort run examples/valencia/cohort.yaml\n"
        "timeline cohort explain examples/valencia/cohort.yaml V07\n```\n\nSee docs/cohorts.md."
    ),
    no_args_is_help=True,
)

FileArg = Annotated[Path, typer.Argument(metavar="FILE", help="Cohort file (YAML).")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON with a reproducibility manifest.")]


def _dirs(file: Path, rules: list[Path] | None) -> list[Path]:
    """The cohort file's own rule directories (``rules:``), then ``--rules``. One that is
    not a directory is left for the cohort check to report at its line."""
    from timeline.cohort.spec import cohort_rule_dirs

    def usable(d: Path) -> bool:
        try:
            return d.is_dir()
        except OSError:
            return False

    return [*(d for d in cohort_rule_dirs(file) if usable(d)), *(rules or [])]


def _spec(file: Path, rules: list[Path] | None, param: list[str] | None) -> tuple[CohortSpec, list[str]]:
    """The cohort file, read against its rules, and the warnings of its design."""
    from timeline.cohort.report import design_warnings
    from timeline.cohort.spec import load_cohort

    ruleset = load(_dirs(file, rules), param)
    spec = load_cohort(file, ruleset)
    return spec, design_warnings(spec, ruleset)


def _session(
    file: Path,
    store: Path | None,
    rules: list[Path] | None,
    param: list[str] | None,
    as_known_at: str | None,
    wait: float,
) -> tuple[Session, CohortSpec]:
    from timeline.cohort.spec import load_cohort

    sess = session(store, _dirs(file, rules), param, as_known_at, wait, drugs=False)
    try:
        spec = load_cohort(file, sess.rules)
        # the drugs no event records, of the rules the cohort reads: not of every rule loaded
        reading = {dep for rid in spec.rule_ids() for dep in sess.rules.dependencies(rid)}
        for text in unrecorded_drugs(sess.store, sess.rules, reading):
            note(text)
        return sess, spec
    except BaseException:
        sess.store.close()
        raise


def _report(sess: Session, spec: CohortSpec) -> Report:
    from timeline.cohort.report import run_cohort

    with ProgressBar("cohort") as progress:
        return run_cohort(sess, spec, progress=progress)


# ---- check --------------------------------------------------------------------------------


@cohort_app.command("check", cls=Command)
def check(
    file: FileArg,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store",
            "-s",
            metavar="FILE",
            help="Also run the cohort on this store and give the warnings of its data (an outcome no "
            "patient could reach, a drug no event records, an empty population). Default: the file alone.",
            show_default=False,
        ),
    ] = None,
    wait: WaitOpt = 0,
) -> None:
    """Validate a cohort file against the rules, before any data is touched: YAML syntax,
    unknown keys and rule ids (with did-you-mean), rules of the wrong type, durations,
    selectors and denominator policies — every problem at once, as file:line:column.
    With --store, the cohort is then run on that store and the warnings of its data are
    given too (as `cohort run` gives them).

    Exit code 0 when the file is valid, 8 otherwise.

    Example:

    ```
    timeline cohort check examples/valencia/cohort.yaml
    timeline cohort check examples/valencia/cohort.yaml --json
    timeline cohort check examples/valencia/cohort.yaml --store valencia.duckdb
    ```
    """
    from timeline.cohort.spec import CohortError
    from timeline.language.loader import RuleError

    try:
        spec, warnings = _spec(file, rules, param)
    except (CohortError, RuleError) as exc:
        if json_out:
            dump_json(
                {"ok": False, "problems": [p.__dict__ for p in exc.problems],
                 "error": error_document(exc.summary(), exc.details(), exc.exit_code)}
            )  # fmt: skip
        else:
            error(exc.summary(), exc.details())
        raise Exit(exc.exit_code) from None
    if store is not None:  # the data's warnings, as the run gives them, each once
        sess, spec = _session(file, store, rules, param, None, wait)
        with sess.store:
            warnings = list(dict.fromkeys([*warnings, *_report(sess, spec).warnings]))
    summary: dict[str, Any] = {
        "ok": True, "cohort": spec.id, "version": spec.version, "sha256": spec.digest,
        "rules": spec.rule_ids(), "time_points": [t.label for t in spec.time_points],
        "outcomes": [o.id for o in spec.outcomes], "time_to_event": [t.id for t in spec.time_to_event],
        "subgroups": [g.id for g in spec.subgroups], "warnings": warnings,
    }  # fmt: skip
    if json_out:
        dump_json(summary)
        return
    for warning in warnings:
        console(stderr=True).print(cell(f"warning: {warning}"))
    console().print(
        f"ok: cohort {esc(spec.id)} v{esc(spec.version)} uses {len(summary['rules'])} rules; "
        f"{len(spec.outcomes)} outcomes at {len(spec.time_points)} time points, "
        f"{len(spec.time_to_event)} time-to-event outcomes, {len(spec.subgroups)} sub-groups"
    )


# ---- run ----------------------------------------------------------------------------------


@cohort_app.command("run", cls=Command)
def run(
    file: FileArg,
    as_known_at: AsKnownOpt = None,
    json_out: JsonOpt = False,
    csv_out: Annotated[
        Path | None,
        typer.Option(
            "--csv",
            metavar="OUT",
            help="Write every cell as a CSV row to OUT (- for standard output; `history --csv` and "
            "`changes --csv` are flags that print on standard output instead).",
        ),
    ] = None,
    parquet_out: Annotated[
        Path | None,
        typer.Option("--parquet", metavar="OUT", help="Write every cell as a Parquet row to OUT."),
    ] = None,
    manifest_out: Annotated[
        Path | None,
        typer.Option(
            "--manifest",
            metavar="OUT",
            help="With --csv: write the manifest (JSON) to OUT, and no `#` lines at the top of the CSV.",
        ),
    ] = None,
    ids: Annotated[
        bool,
        typer.Option(
            "--ids/--no-ids",
            help="Include each cell's patient ids in JSON, CSV and Parquet output (--no-ids: counts only, to share).",
        ),
    ] = True,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
) -> None:
    """The cohort table: population flow, baseline characteristics, outcomes at each time
    point, time-to-event outcomes (Kaplan–Meier), adverse events by term and grade,
    discontinuations by reason, MAS episodes — every cell n/N (%) with its denominator
    defined, unknowns counted separately (never as "no").

    `--csv` and `--parquet` write one row per cell — n, n_denominator, n_unknown, pct, the
    denominator's definition, the estimates with their confidence limits (Kaplan–Meier,
    events per 100 patient-years), the patient ids behind it — and the manifest (CSV: `#`
    lines at the top, or with `--manifest OUT` a JSON file of its own; Parquet: file metadata
    under the key `manifest`). DuckDB reads the CSV with `read_csv('cells.csv', comment='#')`.

    `--as-known-at` is the moment the store recorded the events (system time), not a clinical
    cut-off date: `seq:3470` of the Valencia example is its record before the amendments (its
    ingest batch). To stop a study at a clinical date, end follow-up in the cohort file.

    Example:

    ```
    timeline cohort run examples/valencia/cohort.yaml
    timeline cohort run examples/valencia/cohort.yaml --as-known-at seq:3470
    timeline cohort run examples/valencia/cohort.yaml --json > report.json
    timeline cohort run examples/valencia/cohort.yaml --csv cells.csv
    timeline cohort run examples/valencia/cohort.yaml --csv - | head
    ```
    """
    from timeline.errors import UsageError

    to_stdout = csv_out is not None and str(csv_out) == "-"
    if to_stdout and json_out:
        raise UsageError("--csv - and --json both print to standard output; give --csv a file")
    if manifest_out is not None and csv_out is None:
        raise UsageError(
            "--manifest writes the CSV's manifest apart: it goes with --csv (JSON and Parquet carry theirs)"
        )
    if manifest_out is not None and manifest_out in (csv_out, parquet_out):
        raise UsageError(f"--manifest {manifest_out} is the file the cells go to: give it a path of its own")
    for option, target in (("--csv", csv_out), ("--parquet", parquet_out), ("--manifest", manifest_out)):
        if target is not None and not (option == "--csv" and to_stdout):
            check_target(option, target)  # before the run, which can be long
    from timeline.errors import replacing

    sess, spec = _session(file, store, rules, param, as_known_at, wait)
    with sess.store:
        report = _report(sess, spec)
        for warning in report.warnings:
            console(stderr=True).print(cell(f"warning: {warning}"))
        if parquet_out is not None:
            with replacing(parquet_out) as tmp:
                _parquet(report, tmp, sess, ids)
    if to_stdout:
        _csv(report, sys.stdout, ids, manifest_lines=manifest_out is None)
    elif csv_out is not None:
        with replacing(csv_out) as tmp, open(tmp, "w", newline="", encoding="utf-8") as fh:
            _csv(report, fh, ids, manifest_lines=manifest_out is None)
    if manifest_out is not None:
        import json

        with replacing(manifest_out) as tmp:
            tmp.write_text(json.dumps(report.manifest, indent=2, default=str) + "\n", encoding="utf-8")
    if json_out:
        dump_json(report.to_json(ids))
    elif csv_out is None and parquet_out is None:
        given: dict[str, Any] = {"store": store, "rules": rules, "params": param, "as_known_at": as_known_at}
        render(report, partial(follow_up, "cohort", **given), file)
    else:
        written = ", ".join(
            "standard output" if to_stdout and p is csv_out else str(p)
            for p in (csv_out, parquet_out, manifest_out)
            if p is not None
        )
        console(stderr=True).print(f"wrote {len(report.cells)} cells to {esc(written)}")


def _rows(report: Report, ids: bool = True) -> list[dict[str, Any]]:
    """One row per cell; without ``ids`` (``--no-ids``), no patient id (helper 49: CSV and
    Parquet carried them whatever the option said)."""
    import json

    rows = [
        {"cell": c.id, "section": c.section, "row": c.row, "column": c.column, "group": c.group, "label": c.label,
         "n": c.n, "n_denominator": c.N, "n_unknown": c.unknown,
         # time to event only (empty elsewhere): not reached, and those of them with unknown
         # moments — never in n_unknown, which counts unknown answers (none here)
         "n_not_reached": c.not_reached if tte else None,
         "n_not_reached_with_unknown_moments": len(c.unknown_moment_ids) if tte else None,
         "pct": c.pct, "text": c.text(), "denominator": c.denominator,
         "unknown_reasons": "; ".join(f"{r['reason']} ({r['n']})" for r in c.stats.get("unknown_reasons", [])),
         "stats": json.dumps(c.stats, default=str), **_estimates(c), "numerator_ids": " ".join(c.numerator_ids),
         "unknown_ids": " ".join(c.unknown_ids), "denominator_ids": " ".join(c.denominator_ids),
         "left_out_ids": "; ".join(f"{why}: {' '.join(p)}" for why, p in c.left_out_ids.items()),
         "not_reached_with_unknown_moments_ids": " ".join(c.unknown_moment_ids)}
        for c in report.cells
        for tte in [c.section == "time_to_event"]
    ]  # fmt: skip
    if not ids:
        for row in rows:
            for key in ID_COLUMNS:
                del row[key]
    return rows


# the columns of the estimates with their intervals (empty where a cell has none): Kaplan–Meier
# (time-to-event cells), Aalen–Johansen (time-to-event items with competing events) and incidence rates (adverse-event and discontinuation cells)
ESTIMATE_COLUMNS = (
    "ci_level", "km_pct", "km_pct_lower", "km_pct_upper", "km_median_days", "km_median_days_lower",
    "km_median_days_upper", "cif_pct", "cif_pct_lower", "cif_pct_upper", "cif_median_days", "events", "exposure_patient_years", "per_100_patient_years",
    "per_100_patient_years_lower", "per_100_patient_years_upper",
)  # fmt: skip
_INTEGER_COLUMNS = (
    "n",
    "n_denominator",
    "n_unknown",
    "n_not_reached",
    "n_not_reached_with_unknown_moments",
    "events",
)
ID_COLUMNS = (
    "numerator_ids",
    "unknown_ids",
    "denominator_ids",
    "left_out_ids",
    "not_reached_with_unknown_moments_ids",
)
_DOUBLE_COLUMNS = ("pct", *(c for c in ESTIMATE_COLUMNS if c != "events"))


def _estimates(c: Cell) -> dict[str, Any]:
    """A cell's estimates and interval limits as columns (None: not of this cell, or no limit)."""
    st = c.stats
    out: dict[str, Any] = dict.fromkeys(ESTIMATE_COLUMNS)
    if "ci_level" not in st:
        return out
    out["ci_level"] = st["ci_level"]
    if c.section == "time_to_event":
        km = st.get("km_pct_by_window_end_ci") or [None, None]
        med = st.get("km_median_days_ci") or [None, None]
        out.update(km_pct=st.get("km_pct_by_window_end"), km_pct_lower=km[0], km_pct_upper=km[1],
                   km_median_days=st.get("km_median_days"), km_median_days_lower=med[0],
                   km_median_days_upper=med[1])  # fmt: skip
        if st.get("estimator") == "aalen-johansen":
            cif = st.get("cif_pct_by_window_end_ci") or [None, None]
            out.update(cif_pct=st.get("cif_pct_by_window_end"), cif_pct_lower=cif[0], cif_pct_upper=cif[1],
                       cif_median_days=st.get("cif_median_days"))  # fmt: skip
    elif "exposure_patient_years" in st:
        rate = st.get("per_100_patient_years_ci") or [None, None]
        out.update(events=st.get("events", c.n), exposure_patient_years=st["exposure_patient_years"],
                   per_100_patient_years=st.get("per_100_patient_years"),
                   per_100_patient_years_lower=rate[0], per_100_patient_years_upper=rate[1])  # fmt: skip
    return out


def _csv(report: Report, fh: TextIO, ids: bool = True, manifest_lines: bool = True) -> None:
    """The cells as CSV, the manifest in ``#`` lines on top (unless it goes to a sidecar file).

    Every line ends as the csv module ends rows (CRLF, RFC 4180): DuckDB's sniffer cannot read a
    file whose comment lines end otherwise (read_csv(..., comment='#') failed on it). Every text
    field is quoted: a reader skipping comments cuts an unquoted field at a ``#`` (DuckDB kept
    "1,x " of the row 1,x #2 y,3), never a quoted one."""
    import csv
    import json

    rows = _rows(report, ids)
    if manifest_lines:
        for key, value in report.manifest.items():
            fh.write(f"# {key}: {json.dumps(value, default=str)}\r\n")
    writer = csv.DictWriter(
        fh,
        fieldnames=list(rows[0]) if rows else ["cell"],
        quoting=csv.QUOTE_NONNUMERIC,
        lineterminator="\r\n",
    )
    writer.writeheader()
    writer.writerows(rows)


def _parquet(report: Report, out: Path, sess: Session, ids: bool = True) -> None:
    import json

    rows = _rows(report, ids)
    con = sess.con
    cols = list(rows[0]) if rows else ["cell"]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE tl_c_out AS SELECT * FROM (SELECT "
        + ", ".join(f"unnest(?::{'INTEGER' if k in _INTEGER_COLUMNS else 'DOUBLE' if k in _DOUBLE_COLUMNS else 'VARCHAR'}[]) AS \"{k}\"" for k in cols)
        + ")",
        [[r[k] for r in rows] for k in cols],
    )  # fmt: skip
    meta = json.dumps(report.manifest, default=str).replace("'", "''")
    target = str(out).replace("'", "''")
    con.execute(f"COPY tl_c_out TO '{target}' (FORMAT parquet, KV_METADATA {{manifest: '{meta}'}})")


def _left_out_text(policy: str, c: Cell | None) -> str:
    """The policy, and who of the whole population it leaves out of N, and why."""
    if c is None or not c.left_out_ids:
        return policy
    return f"{policy}; not in N: " + ", ".join(f"{len(ids)} {why}" for why, ids in c.left_out_ids.items())


def render(report: Report, command: Callable[..., str] | None = None, file: Path | None = None) -> None:
    """The report as rich tables, each with its denominator stated. ``command``: the
    ``timeline cohort …`` command line of a follow-up command (:func:`cli.options.follow_up`,
    with the run's options) and ``file`` the cohort file, for the commands suggested below
    the tables."""
    from rich.table import Table

    c = console()
    spec, m = report.spec, report.manifest
    c.print(f"[bold]{esc(spec.title)}[/]  (cohort {esc(spec.id)} v{esc(spec.version)})")
    c.print(
        cell(f"store {m['store']} · high-water seq {m['high_water']} (head {m['head_hash'][:12]}) · as known at {m['as_known_at'] or 'now'} · "
             f"rules {m['rules_digest'][:12]} · {m['engine']} · {report.seconds:g} s")
    )  # fmt: skip
    if report.changes:  # a pasted table says at which values it was made, not only its digest
        # a site's own rule has no pack's value: its parameter differs from its file's default
        c.print(cell(f"changed from the rule files: {'; '.join(report.changes)}"), soft_wrap=True)
    groups = list(report.groups.items())
    by_id = {x.id: x for x in report.cells}

    def row_cells(prefix: str) -> list[str]:
        return [_cell_text(by_id.get(prefix + ("" if g == "all" else f"@{g}"))) for g, _ in groups]

    t = Table(title="Population", title_justify="left")
    for col in ("", "n/N (%)", "denominator"):
        t.add_column(col)
    for x in report.cells:
        if x.section in ("population", "subgroup"):
            t.add_row(cell(x.label), cell(x.text()), cell(x.denominator))
    c.print(t)

    heads = [f"{label} (N={len(ids)})" for _, (label, ids) in groups]
    t = Table(title="Baseline characteristics (at the index)", title_justify="left")
    t.add_column("")
    for h in heads:
        t.add_column(h)
    for b in [*spec.baseline, None]:
        bid = b.id if b else "follow_up"
        label = b.label if b else "follow-up (months)"
        t.add_row(cell(label), *(cell(s) for s in row_cells(f"baseline.{bid}")))
    c.print(t)

    if spec.outcomes:
        t = Table(
            title="Outcomes at time points: n/N (% of N); the unknowns, shown apart, are in N (neither yes nor no)",
            title_justify="left",
        )
        for col in ("outcome", "at", *heads, "denominator"):
            t.add_column(col)
        notes: list[str] = []  # why the unknowns are unknown: a footnote per outcome, or per row
        for o in spec.outcomes:
            tps = [tp for tp in spec.time_points if tp.slug in o.time_points]
            by_tp = {
                tp.slug: [(glabel, by_id.get(f"outcome.{o.id}.{tp.slug}" + ("" if g == "all" else f"@{g}")))
                          for g, (glabel, _) in groups]
                for tp in tps
            }  # fmt: skip
            shared = _one_reason_note(o.label, [(tp.label, by_tp[tp.slug]) for tp in tps])
            if shared:
                notes.append(f"[{len(notes) + 1}] {shared}")
            for tp in tps:
                at = tp.label if o.window is None else f"{tp.label} {o.window}"
                base = f"outcome.{o.id}.{tp.slug}"
                label = o.label
                if shared:
                    label += (
                        f" [{len(notes)}]"
                        if any(x is not None and x.unknown for _, x in by_tp[tp.slug])
                        else ""
                    )
                elif note := _unknown_note(by_tp[tp.slug]):
                    notes.append(f"[{len(notes) + 1}] {o.label} at {tp.label}: {note}")
                    label += f" [{len(notes)}]"
                t.add_row(cell(label), cell(at), *(cell(s) for s in row_cells(base)),
                          cell(_left_out_text(o.denominator, by_id.get(base))))  # fmt: skip
        c.print(t)
        if notes:
            explain = command("explain", file, "PATIENT") if command and file else "timeline cohort explain"
            c.print(
                f"[bold]Unknowns[/] (the commonest reasons, patients of N; `{esc(explain)}` gives each one's)",
                soft_wrap=True,  # a command cut over lines does not paste
            )
            for note in notes:
                c.print(cell(f"  {note}"))
        c.print("[bold]Denominators[/]")
        for policy in sorted({o.denominator for o in spec.outcomes}):
            c.print(cell(f"  {policy}: {report.policies[policy]}"))

    if spec.time_to_event:
        estimators = "Kaplan–Meier" + (
            "; Aalen–Johansen where there are competing events"
            if any(x.competing for x in spec.time_to_event)
            else ""
        )
        t = Table(title=f"Time to event (from the index; {estimators})", title_justify="left")
        t.add_column("outcome")
        for h in heads:
            t.add_column(h)
        t.add_column("censoring")
        handling: list[str] = []  # how each row treats a discontinuation of the study drug: a footnote
        for tte in spec.time_to_event:
            texts = []
            for g, _ in groups:
                texts.append(_tte_text(by_id.get(f"tte.{tte.id}" + ("" if g == "all" else f"@{g}"))))
            whole = by_id.get(f"tte.{tte.id}")
            how = whole.stats.get("discontinuation") if whole is not None else None
            mark = ""
            if how is not None and whole is not None:
                handling.append(f"[{len(handling) + 1}] {tte.label}: {how['text']} ({_stopped_text(whole)})")
                mark = f" [{len(handling)}]"
            t.add_row(
                cell(f"{tte.label} within {tte.window}"),
                *(cell(s) for s in texts),
                cell(
                    (", ".join(tte.censor) or "the window end only")
                    + (f"; competing: {', '.join(tte.competing)}" if tte.competing else "")
                    + mark
                ),
            )
        c.print(t)
        if handling:
            c.print("[bold]Discontinuation in time to event[/]")
            for note in handling:
                c.print(cell(f"  {note}"))

    from timeline.cohort.report import ae_title, disc_title

    level = f"{spec.ci_level * 100:g}% CI"
    per = f"events per 100 patient-years ({level}, exact Poisson)"
    for section, title in (("adverse_event", f"{ae_title(spec)}: patients n/N (events); {per}"),
                           ("adverse_event_by", f"The same adverse events by the action taken with the drug "
                            f"each names, and by seriousness: patients with ≥ 1, n/N (events); {per}"),
                           ("discontinuation", f"{disc_title(spec)}: n/N (%); {per}"),
                           ("mas", "MAS episodes: patients n/N (episodes)")):  # fmt: skip
        rows = [x for x in report.cells if x.section == section and x.group == "all"]
        if not rows:
            continue
        # long free-text AE terms cut short in the table (whole in --json, CSV, Parquet)
        labels = [x.label for x in rows]
        short = dict(
            zip(
                [x.id for x in rows],
                short_labels(labels) if section == "adverse_event" else labels,
                strict=True,
            )
        )
        t = Table(title=title, title_justify="left")
        t.add_column("")
        for h in heads:
            t.add_column(h)
        if "exposure_patient_years" in rows[0].stats:  # the rates' denominator, stated
            t.add_row(cell(_EXPOSURE_ROW[rows[0].stats["exposure"]].format(drug=_study(spec))),
                      *(cell(_exposure_text(by_id.get(rows[0].id + ("" if g == "all" else f"@{g}")))) for g, _ in groups))  # fmt: skip
        for x in rows:
            base = x.id
            t.add_row(cell(short[x.id]), *(cell(s) for s in row_cells(base)))
        c.print(t)
        if any(short[x.id] != x.label for x in rows):
            c.print("[dim]labels cut short (…): in full in --json, --csv and --parquet[/]")
        left = rows[0].stats.get("not_counted") if section == "adverse_event" else None
        if left:  # what the span or the attribution left out, never silently
            words = {"after_discontinuation": "after the discontinuation", "another_drug": "naming another drug",
                     "no_drug_named": "naming no drug"}  # fmt: skip
            c.print(
                "[dim]adverse events not counted: "
                + ", ".join(f"{n} {words[k]}" for k, n in left.items())
                + "[/]"
            )
    # a cell of the report for the example, so that the command works as it is pasted
    example = next(
        (x.id for x in report.cells if x.section == "outcome"), report.cells[0].id if report.cells else "ID"
    )
    patients = (
        command("patients", file, "--cell", example)
        if command and file
        else f"timeline cohort patients FILE --cell {example}"
    )
    c.print(f"[dim]cell ids: --json; patients behind a cell: {esc(patients)}[/]", soft_wrap=True)


LABEL_WIDTH = 48


def short_labels(labels: list[str], width: int = LABEL_WIDTH) -> list[str]:
    """Row labels cut to about ``width`` characters for the terminal: a free-text AE term
    (``latent tuberculosis infection: positive tuberculin skin test (intradermoreaction 15 mm)
    after a household contact, grade 2``) at its first ``:`` or ``(`` (the rest is detail),
    else at a word, with ``…`` and the grade kept; labels cut to one text stay whole (two rows
    the table could not tell apart)."""

    def cut(label: str) -> str:
        head, sep, grade = label.rpartition(", ")
        if not sep or not (grade.startswith("grade ") or grade == "any grade"):
            head, grade = label, ""
        if len(head) <= width:
            return label
        at = min((i for i in (head.find(":"), head.find(" (")) if i >= 8), default=-1)
        if at < 0 or at > width:
            at = head.rfind(" ", 0, width)
            at = at if at > 0 else width
        return head[:at].rstrip(" :,") + " …" + (f", {grade}" if grade else "")

    out = [cut(label) for label in labels]
    return [s if out.count(s) == 1 or s == label else label for s, label in zip(out, labels, strict=True)]


def _one_reason_note(label: str, rows: list[tuple[str, list[tuple[str, Cell | None]]]]) -> str:
    """One footnote for an outcome whose unknowns all have one reason, at every time point and
    in every group: the reason once, then the counts (empty otherwise)."""
    cells = [(tp, glabel, x) for tp, row in rows for glabel, x in row if x is not None and x.unknown]
    whys = {r["reason"] for _, _, x in cells for r in x.stats.get("unknown_reasons") or []}
    if len(whys) != 1:
        return ""
    by_group: dict[str, list[str]] = {}
    for tp, glabel, x in cells:
        by_group.setdefault(glabel, []).append(f"{x.unknown} at {tp}")
    counts = "; ".join(f"{g}: {', '.join(at)}" for g, at in by_group.items())
    note = f"{label}: every unknown is '{whys.pop()}' ({counts})"
    flag = cells[0][2].stats.get("unreachable")
    if flag:
        note += (
            f". No patient could be counted in the numerator: no event of the store records {flag['clause']}"
        )
    return note


def _unknown_note(cells: list[tuple[str, Cell | None]]) -> str:
    """A row's footnote: the commonest reasons for its unknowns in each group, and whether no
    patient could reach its numerator (a clause no event of the store records)."""
    have = [(label, x) for label, x in cells if x is not None and x.unknown]
    if not have:
        return ""
    reasons = [(label, x.stats.get("unknown_reasons") or []) for label, x in have]
    texts = {tuple(r["reason"] for r in rs) for _, rs in reasons}
    if len(texts) == 1 and len(next(iter(texts))) == 1:  # one reason for all: said once
        why = next(iter(texts))[0]
        counts = "; ".join(f"{label} {rs[0]['n']}" for label, rs in reasons)
        note = f"unknown: {why} ({counts})"
    else:
        parts = []
        for label, rs in reasons:
            top = ", ".join(f"{r['reason']} ({r['n']})" for r in rs[:3])
            rest = rs[3:]
            more = f", {len(rest)} other reasons ({sum(r['n'] for r in rest)})" if rest else ""
            parts.append(f"{label}: {top}{more}")
        note = "unknown — " + "; ".join(parts)
    flag = have[0][1].stats.get("unreachable")
    if flag:
        note += (
            f". No patient could be counted in the numerator: no event of the store records {flag['clause']}"
        )
    return note


def _stopped_text(x: Cell) -> str:
    """How many of the group a time-to-event row's handling of a discontinuation concerns."""
    n = x.stats.get("discontinued_not_reached", 0)
    how = x.stats.get("discontinuation", {}).get("handling")
    if how == "no_study_drug":
        return f"N={x.N}"
    if how == "censored":
        return f"{x.stats.get('censored', {}).get('discontinuation', 0)} of {x.N} censored so"
    if how == "competing":
        return f"{x.stats.get('competing', {}).get('discontinuation', 0)} of {x.N} stopped before reaching it"
    return f"{n} of {x.N} stopped within the window without reaching it"


def _cell_text(x: Any) -> str:
    if x is None:
        return "—"
    text: str = x.text()
    st = x.stats
    if "mean" in st:
        if st["min"] is None:
            return f"no values (n {x.n}/{x.N})"
        unit = {"a": "y", "mo": "mo"}.get(st.get("unit") or "", st.get("unit") or "")
        unknown = f", {x.unknown} unknown" if x.unknown else ""
        if "censored" in st:  # censored values (<5): the figures they leave open are not determined
            mean = "mean not determined" if st["mean"] is None else f"mean {st['mean']:g}"
            median = "median not determined" if st["median"] is None else f"median {st['median']:g}"
            low = f"{st['min_qualifier'] or ''}{st['min']:g}"
            high = f"{st['max_qualifier'] or ''}{st['max']:g}"
            return f"{mean}, {median}, range {low}–{high} {unit} (n {x.n}/{x.N}, {st['censored']} censored{unknown})"
        return f"mean {st['mean']:g}, median {st['median']:g}, range {st['min']:g}–{st['max']:g} {unit} (n {x.n}/{x.N}{unknown})"
    if "events" in st:
        text = f"{text} ({st['events']})"
    elif "episodes" in st:
        text = f"{text} ({st['episodes']})"
    if "per_100_patient_years" in st:
        text += f"; {_rate_text(st)}"
    return text


# the exposure row of the AE and discontinuation tables, by the cell's ``stats.exposure``
_EXPOSURE_ROW = {
    "follow_up": "exposure: patient-years of follow-up (index to end of follow-up)",
    "on_drug": "exposure: patient-years on {drug} (index to its discontinuation or the end of follow-up)",
    "to_discontinuation": "exposure: patient-years on {drug} (index to its discontinuation or the end of follow-up)",
}


def _study(spec: CohortSpec) -> str:
    return "the index drug" if spec.drug_from_index else str(spec.drug)


def _num(x: float) -> str:
    """A rate as tables print it: three significant figures, never in e-notation."""
    if x == 0:
        return "0"
    return f"{x:.0f}" if x >= 100 else f"{x:.1f}" if x >= 10 else f"{x:.2f}" if x >= 1 else f"{x:.2g}"


def _rate_text(st: dict[str, Any]) -> str:
    if st.get("per_100_patient_years") is None:
        return "rate not defined (no exposure)"
    lo, hi = st["per_100_patient_years_ci"]
    return f"{_num(st['per_100_patient_years'])} ({_num(lo)}–{_num(hi)})"


def _exposure_text(x: Any) -> str:
    if x is None:
        return "—"
    return f"{x.stats['exposure_patient_years']:.1f} patient-years ({x.N} patients)"


def _days(n: float) -> str:
    from timeline.cohort.report import days_text

    return days_text(n)


def _tte_text(x: Any) -> str:
    if x is None:
        return "—"
    st = x.stats
    km = st.get("km_pct_by_window_end")
    med = st.get("km_median_days")
    from timeline.cohort.report import tte_not_reached_text

    parts = [f"{x.n}/{x.N} reached{tte_not_reached_text(x.not_reached, len(x.unknown_moment_ids))}"]
    level = f"{st['ci_level'] * 100:g}% CI" if "ci_level" in st else None
    if st.get("estimator") == "aalen-johansen":
        # competing events: the cumulative incidence is the estimate (1 − KM would treat them as
        # censorings); its median has no interval here
        ci = st.get("cif_pct_by_window_end_ci")
        within = f" ({level} {ci[0]:g}–{ci[1]:g}%)" if ci and level else f" ({level}: none)" if level else ""
        cif, cmed = st.get("cif_pct_by_window_end"), st.get("cif_median_days")
        if cif is not None:
            parts.append(f"cumulative incidence (Aalen–Johansen) {cif:g}%{within} by the window end")
        parts.append(f"median {_days(cmed)}" if cmed is not None else "median not reached")
        return "; ".join(parts)
    if km is not None:
        ci = st.get("km_pct_by_window_end_ci")
        within = f" ({level} {ci[0]:g}–{ci[1]:g}%)" if ci and level else f" ({level}: none)" if level else ""
        parts.append(f"KM {km:g}%{within} by the window end")
    mci = st.get("km_median_days_ci") or [None, None]
    limits = f" ({level} {_limit(mci[0])}–{_limit(mci[1])})" if level else ""
    parts.append(f"median {_days(med)}{limits}" if med is not None else f"median not reached{limits}")
    return "; ".join(parts)


def _limit(days: float | None) -> str:
    """A limit of the median's interval: days, or NA where the data do not bound it."""
    return "NA" if days is None else f"{days:g}"


# ---- explain ------------------------------------------------------------------------------


@cohort_app.command("explain", cls=Command)
def explain(
    file: FileArg,
    patient: PatientArg,
    cell_id: Annotated[
        str | None,
        typer.Argument(metavar="CELL", help="A cell id, e.g. outcome.active_arthritis.3_months."),
    ] = None,
    as_known_at: AsKnownOpt = None,
    json_out: JsonOpt = False,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
) -> None:
    """Why a patient is or is not in the population, a sub-group, a numerator or a
    denominator. With CELL, the derivation of that cell's rule for this patient at the
    instant the report used, down to the events.

    Example:

    ```
    timeline cohort explain examples/valencia/cohort.yaml V07
    timeline cohort explain examples/valencia/cohort.yaml V07 mas.on_drug
    timeline cohort explain examples/valencia/cohort.yaml V07 --json
    ```
    """
    from timeline.cohort.explain import explain_patient

    sess, spec = _session(file, store, rules, param, as_known_at, wait)
    with sess.store:
        sess.require_patient(patient)
        data = explain_patient(sess, spec, patient, cell_id)
    if json_out:
        dump_json(data)
        return
    from rich.tree import Tree

    from cli.engine import _grow, _label

    c = console()
    pop = data["population"]
    idx = data["index"]
    c.print(f"[bold]{esc(patient)}[/] in cohort {esc(spec.id)}: [bold]{pop['status'].replace('_', ' ')}[/]")
    c.print(
        cell(
            f"  index: {idx['event_id']} on {idx['date']}"
            if idx
            else f"  index: none ({spec.index.name} not recorded)"
        )
    )
    for r in pop["rules"]:
        if pop["evaluated_at"] is None:
            c.print(cell(f"  {r['role']} {r['rule']}: {r['value']} ({r['reason']})"))
            continue
        c.print(cell(f"  {r['role']} {r['rule']} at {pop['evaluated_at']}: {_plain(r['value'])}"
                     + (f" — {r['reason']}" if r["reason"] else "") + (f" [{r['detail']}]" if r["detail"] else "")))  # fmt: skip
    for g in data["subgroups"]:
        c.print(cell(f"  sub-group {g['id']}: {'member' if g['member'] else 'not a member'} ({g['why']})"))
    fu = data["follow_up"]
    if idx:
        stop = (
            f"; {fu['drug']} stopped {fu['discontinued']} ({fu['discontinuation_reason'] or 'no reason recorded'})"
            if fu["discontinued"]
            else f"; {fu['drug']} (the index drug) not discontinued"
            if spec.drug_from_index and fu["drug"]
            else ""
        )
        c.print(cell(f"  follow-up to {fu['end']} ({fu['why']}){stop}"))
    for tp in data["time_points"]:
        vals = ", ".join(
            f"{oid} {_plain(o['value'])}"
            + (f" (assessed on {o['assessed_on']})" if o["assessed_on"] != tp["date"] else "")
            for oid, o in tp["outcomes"].items()
        )
        c.print(
            cell(
                f"  at {tp['time_point']} ({tp['date']}): {vals or 'no outcome reported at this time point'}"
            )
        )
    for tid, t in data["time_to_event"].items():
        what = (
            f"reached after {_days(t['days'])}"
            if t["reached"]
            else f"not reached; {'a competing event' if t.get('competing') else 'censored by'} {t['censored_by']} "
            f"after {_days(t['days'])}"
        )
        c.print(cell(f"  time to {tid}: {what}"))
    if "cell" not in data:
        from rich.table import Table

        t = Table(title="cells", title_justify="left")
        for col in ("cell", "role"):
            t.add_column(col)
        for x in data["cells"]:
            t.add_row(cell(x["cell"]), cell(x["role"]))
        c.print(t)
        return
    x = data["cell"]
    c.print(f"\n[bold]{esc(x['cell'])}[/]: {esc(x['role'])}")
    for key in ("denominator", "denominator_detail", "assessment", "detail"):
        if x.get(key):
            c.print(cell(f"  {key.replace('_', ' ')}: {_detail_text(x[key])}"))
    for ae in x.get("events") or []:
        c.print(cell(f"  {_ae_text(ae)}"))
    for ep in x.get("episodes") or []:
        c.print(cell(f"  {_episode_text(ep)}"))
        if ep.get("decided_by"):
            c.print(cell(f"    {str(ep['relation']).replace('_', ' ')}: {ep['decided_by']}"))
        for ev in ep.get("events") or []:
            c.print(cell(f"    {_event_line(ev)}"))
    for e in x["explanations"]:
        c.print()
        c.print(cell(f"{e['rule']} — {e['why']}"))
        if e["explanation"] is None:
            c.print(cell(f"  {e.get('note')}"))
            continue
        tree = Tree(_label(e["explanation"]["tree"], top=True))
        _grow(tree, e["explanation"]["tree"]["derivation"])
        c.print(tree)
        for ev in e["explanation"]["events"]:
            c.print(cell(f"  {_event_line(ev)}"))


def _event_line(ev: dict[str, Any]) -> str:
    """An event of the evidence, with its remarks as `timeline explain` gives them (``[corrected
    after this moment (seq 3482: why)]`` under --as-known-at; ``[a corrected version]``)."""
    remarks = "; ".join(ev.get("remarks") or [])
    text = f"seq {ev['seq']} {ev['event_id']} {ev['occurred_at']}: {ev['description']}"
    return text + (f" [{remarks}]" if remarks else "")


def _day(t: Any) -> str:
    """A date or instant as a reader writes it: the date alone at midnight or a day's end."""
    from datetime import datetime

    if isinstance(t, datetime):
        return t.date().isoformat() if t.time() in (t.min.time(), t.max.time()) else t.isoformat(" ")
    return str(t)


def _detail_text(detail: Any) -> str:
    if isinstance(detail, dict):  # a discontinuation
        if detail.get("date") is None:
            return "not discontinued"
        events = ", ".join(detail.get("events") or [])
        return f"discontinued {_day(detail['date'])} ({detail.get('reason') or 'no reason recorded'}); events {events}"
    return str(detail)


def _ae_text(ae: dict[str, Any]) -> str:
    extra = [w for w in ("serious" if ae.get("serious") else None, ae.get("action")) if w and w != "none"]
    return f"{ae['event_id']} {_day(ae['occurred_at'])}: {ae['term']}, grade {ae['grade']}" + (
        f" ({', '.join(str(w).replace('_', ' ') for w in extra)})" if extra else ""
    )


def _episode_text(ep: dict[str, Any]) -> str:
    end = _day(ep["end"]) if ep.get("end") is not None else "unresolved"
    seqs = ", ".join(str(s) for s in ep.get("evidence") or [])
    return f"episode {_day(ep['start'])} to {end}: {str(ep['relation']).replace('_', ' ')}" + (
        f"; evidence seq {seqs}" if seqs else ""
    )


def _plain(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return str(value)


# ---- patients -----------------------------------------------------------------------------


@cohort_app.command("patients", cls=Command)
def patients(
    file: FileArg,
    cell_id: Annotated[
        str, typer.Option("--cell", metavar="CELL", help="Cell id (see `cohort run --json`).")
    ],
    as_known_at: AsKnownOpt = None,
    json_out: JsonOpt = False,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
) -> None:
    """Which patients make up a cell: the numerator, the unknowns, and the rest of the
    denominator.

    Example:

    ```
    timeline cohort patients examples/valencia/cohort.yaml --cell mas.on_drug
    timeline cohort patients examples/valencia/cohort.yaml --cell mas.any --json
    ```
    """
    sess, spec = _session(file, store, rules, param, as_known_at, wait)
    with sess.store:
        report = _report(sess, spec)
    x = report.cell(cell_id)
    rest = sorted(set(x.denominator_ids) - set(x.numerator_ids) - set(x.unknown_ids))
    if json_out:
        dump_json(
            {"manifest": report.manifest, "cell": x.id, "label": x.label, "text": x.text(),
             "denominator": x.denominator, "numerator_ids": x.numerator_ids, "unknown_ids": x.unknown_ids,
             "other_ids": rest, "denominator_ids": x.denominator_ids, "left_out_ids": x.left_out_ids,
             **({"not_reached_with_unknown_moments_ids": x.unknown_moment_ids}
                if x.section == "time_to_event" else {})}
        )  # fmt: skip
        return
    c = console()
    # an AE row's label holds its grade, its column too: shown once
    shown = x.label if not x.column or x.label.endswith(x.column) else f"{x.label} {x.column}"
    c.print(f"[bold]{esc(x.id)}[/]: {esc(shown)} — {esc(x.text())}")
    c.print(cell(f"denominator (N={x.N}): {x.denominator}"))
    tte = x.section == "time_to_event"  # no unknowns: reached or not, some with unknown moments
    parts = (
        (("reached", x.numerator_ids), ("not reached", rest),
         ("of them, with moments the rule was unknown (might have reached it unseen)", x.unknown_moment_ids))
        if tte
        else (("numerator", x.numerator_ids), ("unknown", x.unknown_ids),
              ("denominator, not in the numerator", rest))
    )  # fmt: skip
    for title, ids in parts:
        c.print(cell(f"{title} ({len(ids)}): {' '.join(ids) or '—'}"))
    for why, ids in x.left_out_ids.items():
        c.print(cell(f"not in the denominator, {why} ({len(ids)}): {' '.join(ids)}"))


# ---- plots --------------------------------------------------------------------------------


@cohort_app.command("plot", cls=Command)
def plot_cohort(
    file: FileArg,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Image to write: .png or .svg.")],
    group: Annotated[
        str,
        typer.Option("--group", metavar="GROUP", help="Group for the outcome proportions (a sub-group id)."),
    ] = "all",
    as_known_at: AsKnownOpt = None,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Kaplan–Meier curves of the time-to-event outcomes (every group, censorings ticked,
    numbers at risk; the cumulative incidence by Aalen–Johansen for an item with competing
    events) and each outcome's proportion at each time point, labelled n/N.

    Example:

    ```
    timeline cohort plot examples/valencia/cohort.yaml --out valencia.png
    ```
    """
    from timeline.plots import check_out, cohort_plot

    check_out(out)
    sess, spec = _session(file, store, rules, param, as_known_at, wait)
    with sess.store:
        report = _report(sess, spec)
    drawn = cohort_plot(report, out, group)
    if json_out:
        dump_json({"manifest": report.manifest, **drawn})
    else:
        console().print(f"wrote {esc(out)}")


def plot(
    patient: PatientArg,
    out: Annotated[Path, typer.Option("--out", metavar="FILE", help="Image to write: .png or .svg.")],
    lane: Annotated[
        list[str] | None,
        typer.Option("--lane", metavar="RULE", help="A boolean rule to draw as a swimlane (repeatable)."),
    ] = None,
    drug: Annotated[
        str, typer.Option("--drug", metavar="DRUG", help="The drug whose dose and starts/stops are drawn.")
    ] = "anakinra",
    dose_rule: Annotated[
        str, typer.Option("--dose-rule", metavar="RULE", help="Numeric rule for the dose panel.")
    ] = "anakinra_dose_mg_kg_day",
    as_known_at: AsKnownOpt = None,
    rules: RulesOpt = None,
    param: ParamOpt = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """A clinician's view of one patient (PNG or SVG): state swimlanes (fever, rash, active
    arthritis, MAS episodes, inactive disease, complete response — those of the loaded rules,
    or --lane; red when true means disease, green a good state, blue neither), the drug's
    dose by --dose-rule in the unit that rule declares (default mg/kg/day of anakinra), CRP /
    ESR / ferritin with their limits, and adverse events as markers.

    Example:

    ```
    timeline plot P001 --out p001.png
    timeline plot P001 --out p001.svg --lane fever --lane crp_normal
    ```
    """
    from timeline.plots import check_out, patient_plot

    check_out(out)
    sess = session(store, rules, param, as_known_at, wait)
    with sess.store:
        drawn = patient_plot(sess, patient, out, lane, drug=drug, dose_rule=dose_rule)
        manifest = sess.manifest()
    if json_out:
        dump_json({"manifest": manifest, **drawn})
    else:
        console().print(f"wrote {esc(out)}")


__all__ = ["cohort_app", "plot", "render"]
