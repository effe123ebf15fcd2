"""Figures for clinicians: one patient's course, and a cohort's curves (PNG or SVG).

matplotlib is imported inside each function (never at module import), with the Agg backend,
so the command line starts fast and nothing needs a display.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timeline.errors import TimelineError, UnknownPatientError, UsageError, replacing
from timeline.units import display_unit

if TYPE_CHECKING:
    from timeline.cohort.cif import CifCurve
    from timeline.cohort.km import Curve
    from timeline.cohort.report import Report
    from timeline.engine.evaluate import Session

DEFAULT_LANES = (
    "fever",
    "rash_free",
    "active_arthritis",
    "in_mas_episode",
    "inactive_disease",
    "complete_response",
)
LABS = (  # (LOINC, label, unit, rule.param giving the limit, default limit, log scale)
    ("1988-5", "CRP", "mg/L", ("crp_normal", "upper"), 6.0, False),
    ("4537-7", "ESR", "mm/h", ("esr_normal", "upper"), 10.0, False),
    ("2276-4", "Ferritin", "ng/mL", ("mas", "ferritin_above"), 684.0, True),
)
FORMATS = (".png", ".svg")
_TRUE, _FALSE, _UNKNOWN = "#b2182b", "#d9d9d9", "#fee08b"
_GOOD = "#1a9850"  # a state that is good news when true (fever-free, inactive, response)
_OTHER = "#4575b4"  # true, and neither: on a drug, under 30 kg, a dose in its band
# A lane's colour says what its truth means: the rule's `meaning:` (good, bad, neutral), else
# read from the words of its rule id: good news first (rash_free, inactive_disease hold a disease word too), then
# disease activity; any other rule is drawn in a neutral colour, never as disease.
_GOOD_WORDS = ("free", "afebrile", "inactive", "response", "remission", "normal", "absent", "resolved")
_DISEASE_WORDS = (
    "fever", "febrile", "active", "arthritis", "flare", "mas", "rash", "uveitis", "serositis",
    "neutropenia", "thrombocytopenia",
)  # fmt: skip
_COLOURS = {"good": _GOOD, "disease": _TRUE, "other": _OTHER}


_DECLARED = {"good": "good", "bad": "disease", "neutral": "other"}


def lane_meaning(rule_id: str, declared: str | None = None) -> str:
    """What a swimlane's true means: ``good``, ``disease`` (activity, a complication) or
    ``other`` (a treatment, a band: no judgement): the rule's own ``meaning:`` when it
    declares one, else read from the words of the rule id."""
    if declared is not None:
        return _DECLARED[declared]
    words = rule_id.lower().split("_")
    if any(w in _GOOD_WORDS for w in words):
        return "good"
    if any(w in _DISEASE_WORDS for w in words):
        return "disease"
    return "other"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False})
    return plt


DOSE_RULE = "anakinra_dose_mg_kg_day"  # the default rule of the dose panel


def check_out(out: Path) -> None:
    if out.suffix.lower() not in FORMATS:
        raise UsageError(f"--out {out}: give a .png or .svg file name")
    if not out.parent.exists():
        raise UsageError(f"--out {out}: directory {out.parent} does not exist")
    if out.is_dir():  # before the drawing; a name too long raises here too (exit 2)
        raise UsageError(f"--out {out} is a directory")


def _save(fig: Any, out: Path) -> None:
    with replacing(out) as tmp:
        fig.savefig(tmp, dpi=150, format=out.suffix.lower().lstrip("."))


def _footer(fig: Any, manifest: dict[str, Any]) -> None:
    text = (
        f"{manifest.get('engine')} · store {Path(str(manifest.get('store'))).name} seq {manifest.get('high_water')}"
        f" (head {str(manifest.get('head_hash'))[:12]})"
        f" · as known at {manifest.get('as_known_at') or 'now'} · rules {str(manifest.get('rules_digest'))[:12]}"
    )
    if "cohort" in manifest:
        c = manifest["cohort"]
        text += f" · cohort {c['id']} v{c['version']} ({c['sha256'][:12]})"
    fig.text(0.01, 0.005, text, fontsize=6.5, color="#666666", ha="left", va="bottom")


def _param(session: Session, ref: tuple[str, str], default: float) -> float:
    rule = session.rules.rules.get(ref[0])
    if rule is None:
        return default
    for p in rule.params:
        if p.name == ref[1] and isinstance(p.effective, int | float) and not isinstance(p.effective, bool):
            return float(p.effective)
    return default


def patient_plot(
    session: Session,
    patient: str,
    out: Path,
    lanes: Sequence[str] | None = None,
    drug: str = "anakinra",
    dose_rule: str = DOSE_RULE,
) -> dict[str, Any]:
    """A clinician's view of one patient: state swimlanes, the drug's dose, CRP/ESR/ferritin
    against their limits, adverse events and recorded MAS episodes. Returns what was drawn."""
    check_out(out)
    events = session.store.events(patient, as_known_at=session.as_known_at)
    if not events:
        raise UnknownPatientError(f"patient {patient!r} has no events in {session.store.path}")
    if all(e["kind"] == "birth" for e in events):
        raise TimelineError(
            f"patient {patient!r} has only a birth date in {session.store.path}: nothing to plot"
        )
    # the default dose rule may be absent from a site's rules (no dose panel); a named one not
    named = dose_rule != DOSE_RULE or dose_rule in session.rules.rules
    if named:
        dose_rule = session.rules.get(dose_rule).id  # a copy at other values is made here
    if named and session.rules.get(dose_rule).type.kind != "num":
        raise UsageError(
            f"--dose-rule {dose_rule}: the dose panel needs a numeric rule; {dose_rule} is a boolean"
        )
    wanted = (
        [session.rules.get(r).id for r in lanes]
        if lanes
        else [r for r in DEFAULT_LANES if r in session.rules.rules]
    )
    for rid in wanted:
        rule = session.rules.get(rid)
        if rule.type.kind != "bool":
            raise UsageError(f"--lane {rid}: a swimlane needs a boolean rule; {rid} is {rule.type}")
    intervals = session.history(patient, wanted) if wanted else []
    dose_rows = session.history(patient, [dose_rule]) if dose_rule in session.rules.rules else []
    t0 = min(e["occurred_at"] for e in events if e["kind"] != "birth")
    t1 = max(e["occurred_at"] for e in events)
    pad = (t1 - t0) * 0.02 or (t1 - t0) + (datetime(2000, 1, 2) - datetime(2000, 1, 1))

    plt = _pyplot()
    import matplotlib.dates

    mdates: Any = matplotlib.dates  # untyped

    heights = [max(len(wanted) + 2, 3), 1.3, 1.1, 1.1, 1.1]
    fig, axes = plt.subplots(5, 1, figsize=(11, 8.5), sharex=True, gridspec_kw={"height_ratios": heights})
    birth = next((e for e in events if e["kind"] == "birth"), None)
    title = f"Patient {patient}"
    if birth:
        title += f" — {birth.get('sex')}, born {birth['occurred_at']:%Y-%m-%d}"
    fig.suptitle(title, x=0.01, ha="left", fontsize=12, fontweight="bold")

    # swimlanes: states from the rules, then recorded rash findings, MAS episodes and AEs
    ax = axes[0]
    meaning = {rid: lane_meaning(rid, session.rules.rules[rid].meaning) for rid in wanted}
    names = [*wanted, "rash (recorded)", "MAS episode (recorded)", "adverse events"]
    for i, rid in enumerate(wanted):
        y = len(names) - 1 - i
        # one bar call per lane and kind of value (true, false, unknown), not per interval:
        # matplotlib's cost is per call (the 10k store's patient with most events: 603 calls, ~1 s)
        spans: dict[bool | None, tuple[list[float], list[float]]] = {}
        for iv in (iv for iv in intervals if iv["rule"] == rid):
            truth = iv["value"] if isinstance(iv["value"], bool) else None
            left, right = mdates.date2num(iv["start"]), mdates.date2num(iv["end"] or t1)
            lefts, widths = spans.setdefault(truth, ([], []))
            lefts.append(left)
            widths.append(right - left)
        # unknown first, true last: a short true stretch (a day of fever) is drawn over its
        # neighbours' edges, never under them
        for truth in (t for t in (None, False, True) if t in spans):
            lefts, widths = spans[truth]
            color = _COLOURS[meaning[rid]] if truth is True else _FALSE if truth is False else _UNKNOWN
            ax.barh([y] * len(lefts), widths, left=lefts, height=0.6, color=color,
                    hatch=None if truth is not None else "//",
                    edgecolor=color if truth is not None else "#bbbbbb", linewidth=0.3)  # fmt: skip
    y_rash, y_mas, y_ae = 2, 1, 0
    for e in events:
        if e["kind"] == "finding" and e.get("code") == "rash":
            present = e.get("present") is not False
            ax.plot(e["occurred_at"], y_rash, "o", ms=5, mfc=_TRUE if present else "white", mec=_TRUE)
        elif e["kind"] == "mas_episode":
            end = e.get("ended_at") or t1
            ax.barh(y_mas, mdates.date2num(end) - mdates.date2num(e["occurred_at"]),
                    left=mdates.date2num(e["occurred_at"]), height=0.6, color="#762a83")  # fmt: skip
        elif e["kind"] == "adverse_event":
            g = int(e.get("grade") or 1)
            ax.plot(
                e["occurred_at"], y_ae, marker="v", ms=5 + 1.5 * g, color="#d73027" if g >= 3 else "#f46d43"
            )
            ax.annotate(f"{e.get('term')} (G{g})", (mdates.date2num(e["occurred_at"]), y_ae), xytext=(4, 4),
                        textcoords="offset points", fontsize=7)  # fmt: skip
    ax.set_yticks(range(len(names)), [n.replace("_", " ") for n in reversed(names)])
    ax.set_ylim(-0.7, len(names) - 0.3)
    from matplotlib.patches import Patch

    ax.legend(
        handles=[*(Patch(color=_COLOURS[m], label=text) for m, text in
                   (("disease", "true (disease activity, complication)"), ("good", "true (good state)"),
                    ("other", "true (no judgement: a drug, a band)"))
                   if m in meaning.values()),
                 Patch(color=_FALSE, label="false"),
                 Patch(facecolor=_UNKNOWN, hatch="//", edgecolor="#bbbbbb", label="unknown")],
        loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=7, frameon=False,
    )  # fmt: skip

    # drug dose
    ax = axes[1]
    known_dose = [iv for iv in dose_rows if isinstance(iv["value"], int | float) and iv["value"]]
    if known_dose:
        xs, ys = [], []
        for iv in dose_rows:
            v = (
                iv["value"]
                if isinstance(iv["value"], int | float) and not isinstance(iv["value"], bool)
                else None
            )
            xs += [iv["start"], iv["end"] or t1]
            ys += [v, v]
        ax.plot(xs, [float("nan") if v is None else v for v in ys], color="#2166ac", lw=1.8)
        # the rule's declared unit: a per-infusion mg/kg rule is not mg/kg/day
        dose_unit = display_unit(session.rules.rules[dose_rule].value_type.unit) or f"{dose_rule} (no unit)"
    else:
        meds = [e for e in events if e.get("drug") == drug and e["kind"].startswith("medication")]
        for e in meds:
            ax.plot(e["occurred_at"], e.get("dose") or 0, "s", color="#2166ac")
        if meds and dose_rows:
            ax.text(0.5, 0.75, f"{dose_rule} unknown (e.g. no recent weight): doses as recorded",
                    transform=ax.transAxes, ha="center", fontsize=7, color="#888888")  # fmt: skip
        recorded = sorted({str(e["dose_unit"]) for e in meds if e.get("dose_unit")})
        dose_unit = f"dose ({', '.join(recorded) or 'mg'}, as recorded)"
    ax.set_ylabel(f"{drug}\n{dose_unit}")
    for e in events:
        if e.get("drug") == drug and e["kind"] in ("medication_start", "medication_stop", "discontinuation"):
            style = "-" if e["kind"] == "medication_start" else "--"
            for a in axes:
                a.axvline(e["occurred_at"], color="#2166ac", ls=style, lw=0.7, alpha=0.6)
            label = (
                "start" if e["kind"] == "medication_start" else f"stop: {e.get('reason') or ''}".strip(": ")
            )
            ax.annotate(label, (mdates.date2num(e["occurred_at"]), 1), xycoords=("data", "axes fraction"),
                        xytext=(2, -10), textcoords="offset points", fontsize=7, color="#2166ac")  # fmt: skip
    ax.set_ylim(bottom=0)

    # labs with their limits
    for ax, (code, label, unit, ref, default, log) in zip(axes[2:], LABS, strict=True):
        limit = _param(session, ref, default)
        pts = [e for e in events if e["kind"] == "lab" and e.get("code") == code]
        if pts:
            xs = [e["occurred_at"] for e in pts]
            vals = [float(e["value"]) for e in pts]
            ax.plot(xs, vals, "-o", ms=3.5, lw=1, color="#333333")
            high = [(x, y) for x, y in zip(xs, vals, strict=True) if y > limit]
            if high:
                ax.plot(*zip(*high, strict=True), "o", ms=4, color=_TRUE)
        else:
            ax.text(0.5, 0.2, f"no {label} recorded", transform=ax.transAxes, ha="center", color="#888888")
        ax.axhline(limit, color=_TRUE, ls=":", lw=1)
        ax.annotate(f"{'>' if code == '2276-4' else '≤'} {limit:g}", (1.0, limit), xycoords=("axes fraction", "data"),
                    xytext=(3, 0), textcoords="offset points", fontsize=7, color=_TRUE, va="center")  # fmt: skip
        if log and pts and min(float(e["value"]) for e in pts) > 0:
            ax.set_yscale("log")
        ax.set_ylabel(f"{label}\n{unit}")
    axes[-1].set_xlim(t0 - pad, t1 + pad)
    axes[-1].xaxis.set_major_formatter(mdates.ConciseDateFormatter(axes[-1].xaxis.get_major_locator()))
    _footer(fig, session.manifest())
    fig.tight_layout(rect=(0, 0.02, 1, 0.97))
    _save(fig, out)
    plt.close(fig)
    return {
        "file": str(out),
        "lanes": wanted,
        "lane_meanings": meaning,
        # where each lane's meaning came from: the rule's own `meaning:`, or the words of its id
        "lane_meaning_from": {
            rid: "meaning" if session.rules.rules[rid].meaning is not None else "rule id" for rid in wanted
        },
        "dose_rule": dose_rule if known_dose else None,
        "dose_axis": dose_unit,
        "events": len(events),
    }


def at_risk_ticks(ticks: list[float], room: int = 7) -> list[float]:
    """The axis ticks the numbers at risk are printed under: every tick when ``room`` allows,
    else evenly thinned, always keeping the first and the last (the window's end)."""
    if len(ticks) <= room:
        return list(ticks)
    step = -(-(len(ticks) - 1) // (room - 1))
    kept = list(ticks[::step])
    if kept[-1] != ticks[-1]:
        kept.append(ticks[-1])
    return kept


_SERIES_COLOURS = ("#2166ac", "#b2182b", "#1b7837", "#762a83", "#e08214")
_SERIES_MARKS = (("o", "-"), ("s", "--"), ("^", ":"), ("D", "-."), ("v", (0, (5, 1, 1, 1, 1, 1))))


def series_style(i: int) -> tuple[str, str, Any]:
    """The colour, marker and line of the i-th curve or series: five colours, then each again
    with another marker and line, so that 25 series are told apart (and by more than colour)."""
    mark, line = _SERIES_MARKS[(i // len(_SERIES_COLOURS)) % len(_SERIES_MARKS)]
    return _SERIES_COLOURS[i % len(_SERIES_COLOURS)], mark, line


def _reached(
    curve: Curve, cif: CifCurve | None, level: float, transform: str
) -> list[tuple[float, float, float, float, int]]:
    """Each step of a time-to-event curve as the % reached: (time, %, lower, upper, censored),
    NaN limits where there is no interval. Kaplan–Meier's 1 − S (its limits 1 minus S's,
    swapped); with competing events, Aalen–Johansen's cumulative incidence."""
    nan = float("nan")
    out = []
    if cif is not None:
        for cs in cif.steps:
            ci = cs.ci(level, transform)
            out.append((cs.time, 100 * cs.incidence, 100 * ci[0] if ci else nan, 100 * ci[1] if ci else nan,
                        cs.censored))  # fmt: skip
        return out
    for st in curve.steps:
        ci = st.ci(level, transform)
        out.append((st.time, 100 * (1 - st.survival), 100 * (1 - ci[1]) if ci else nan,
                    100 * (1 - ci[0]) if ci else nan, st.censored))  # fmt: skip
    return out


def _km_band(
    steps: list[tuple[float, float, float, float, int]], horizon: float
) -> tuple[list[float], list[float], list[float]] | None:
    """The pointwise interval of the % reached as a step band: x, lower, upper. NaN where there
    is none (before the first event, or once no one is left), so nothing is shaded there."""
    nan = float("nan")
    xs, lo, hi = [0.0], [nan], [nan]
    for time, _pct, low, high, _c in steps:
        xs.append(time)
        lo.append(low)
        hi.append(high)
    if all(v != v for v in lo):
        return None
    xs.append(max(horizon, xs[-1]))
    lo.append(lo[-1])
    hi.append(hi[-1])
    return xs, lo, hi


def cohort_plot(report: Report, out: Path, group: str = "all") -> dict[str, Any]:
    """Kaplan–Meier curves of the time-to-event outcomes (every group; Aalen–Johansen's cumulative
    incidence for an item with competing events) and the proportion of
    each outcome at each time point with its n/N."""
    check_out(out)
    spec = report.spec
    if group not in report.groups:
        raise UsageError(f"no group {group!r} (groups: {', '.join(report.groups)})")
    plt = _pyplot()
    n_km = max(len(spec.time_to_event), 1)
    fig, axes = plt.subplots(1, n_km + 1, figsize=(5.2 * (n_km + 1), 4.8), squeeze=False)
    for k, tte in enumerate(spec.time_to_event):
        ax = axes[0][k]
        for i, (gid, (label, _ids)) in enumerate(report.groups.items()):
            curve = report.curves[(tte.id, gid)]
            steps = _reached(curve, report.incidence.get((tte.id, gid)), spec.ci_level, spec.km_transform)
            xs, ys = [0.0], [0.0]
            for time, pct, *_ in steps:
                xs += [time, time]
                ys += [ys[-1], pct]
            horizon = max((st[0] for st in steps), default=0.0)
            xs.append(horizon)
            ys.append(ys[-1])
            c, _, line = series_style(i)
            ax.plot(xs, ys, drawstyle="default", color=c, ls=line, lw=1.8, label=f"{label} (N={curve.n})")
            band = _km_band(steps, horizon)
            if band is not None:
                ax.fill_between(*band, step="post", color=c, alpha=0.12, lw=0)
            cens = [st for st in steps if st[4]]
            ax.plot([st[0] for st in cens], [st[1] for st in cens], "|", ms=9, color=c)
        window = max(
            (f.tte[tte.id].window_days for f in report.patients.values() if tte.id in f.tte), default=0
        )
        if window:
            ax.set_xlim(-window * 0.02, window * 1.02)
        first = "start of the spell that lasted" if tte.sustained else "first"
        method = f"Aalen–Johansen, competing: {', '.join(tte.competing)}" if tte.competing else "Kaplan–Meier"
        ax.set_title(f"{tte.label}\n(time to {first}; {method}, within {tte.window})\n"
                     f"shaded: pointwise {spec.ci_level * 100:g}% CI ({spec.km_transform})", fontsize=9)  # fmt: skip
        ax.set_xlabel("days after the index")
        ax.set_ylabel("% reached (cumulative incidence)" if tte.competing else "% reached (1 − KM survival)")
        ax.set_ylim(0, 100)
        ax.legend(fontsize=7, loc="lower right", frameon=False)
        ticks = [t for t in ax.get_xticks() if 0 <= t <= (window or float("inf"))]
        curve = report.curves[(tte.id, group)]
        ax.text(0.0, -0.28, f"at risk ({report.groups[group][0]}): " + "  ".join(f"{t:g}d: {curve.at_risk(t)}" for t in at_risk_ticks(ticks)),
                transform=ax.transAxes, fontsize=7, color="#444444")  # fmt: skip
    if not spec.time_to_event:
        axes[0][0].text(0.5, 0.5, "no time-to-event outcomes", ha="center", transform=axes[0][0].transAxes)
        axes[0][0].set_axis_off()
    ax = axes[0][n_km]
    suffix = "" if group == "all" else f"@{group}"
    xs = list(range(len(spec.time_points)))
    series = []
    points: dict[str, list[float | None]] = {}
    for i, o in enumerate(spec.outcomes):
        cells = [
            next((oc for oc in report.cells if oc.id == f"outcome.{o.id}.{tp.slug}{suffix}"), None)
            for tp in spec.time_points
        ]
        # a time point where every answer is unknown is no point at 0% (helper 49): a gap, labelled
        ys = [
            oc.pct if oc is not None and oc.pct is not None and oc.unknown < oc.N else float("nan")
            for oc in cells
        ]
        col, mark, line = series_style(i)
        shift = (i - (len(spec.outcomes) - 1) / 2) * 0.05  # series that coincide stay apart
        jx = [x + shift for x in xs]
        within = f", {o.window}" if o.window is not None else ""
        series.append(f"{o.label} [{o.denominator}{within}]")
        points[series[-1]] = [None if y != y else y for y in ys]  # NaN: not drawn
        ax.plot(jx, ys, color=col, marker=mark, ls=line, label=series[-1])
        for x, oc in zip(jx, cells, strict=True):
            if oc is not None and oc.pct is not None:
                note = f"{oc.n}/{oc.N}" + (f" (+{oc.unknown}?)" if oc.unknown else "")
                if oc.unknown == oc.N:
                    note = f"all {oc.N} unknown"
                ax.annotate(note, (x, oc.pct if oc.unknown < oc.N else 0.0), xytext=(5, -3 + 9 * (i % 3)),
                            textcoords="offset points", fontsize=7, color=col)  # fmt: skip
    ax.set_xticks(xs, [tp.label for tp in spec.time_points])
    ax.set_xlim(-0.4, max(len(xs) - 0.4, 0.6))
    ax.set_ylim(0, 105)
    ax.set_ylabel("% of the denominator (n/N; ? = unknown)")
    label = report.groups[group][0]
    ax.set_title(f"Outcomes at time points — {label}", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
    fig.suptitle(spec.title, x=0.01, ha="left", fontsize=12, fontweight="bold")
    _footer(fig, report.manifest)
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    _save(fig, out)
    plt.close(fig)
    return {
        "file": str(out),
        "time_to_event": [t.id for t in spec.time_to_event],
        "group": group,
        "outcomes": series,  # the legend of the outcomes panel
        "points": points,  # each series' % at each time point; None: not drawn (every answer unknown)
    }


__all__ = ["check_out", "cohort_plot", "patient_plot"]
