"""Run the examples every rule file carries: given events → expected state at given dates.

Examples go through the same ingest checks and the same engine as real data. They are run
together: every example's events go into one throw-away store, each example's patients under
ids of their own (``ex12/X``) so that no two examples share a patient or an event id, and all
expectations of the examples that share a rule set (the pack as loaded, or the pack with an
example's parameters) are evaluated in one engine run, with evidence, as ``timeline state``
evaluates them. Rules read one patient at a time, so an example cannot see another's events.
One store and a few runs instead of one store and one run per expectation: the built-in
pack's 129 examples took 24 s one by one, ~3 s together.

When the events of the examples together fail ingest, each example is run alone in its own
store, so the error is reported against the example that caused it.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from timeline import registry
from timeline.engine.evaluate import Result, Session, parse_at
from timeline.errors import IngestError, TimelineError
from timeline.ingest import append_rows
from timeline.language import ast
from timeline.language.cache import load_rules
from timeline.language.loader import RuleError, RuleSet
from timeline.store import Store


@dataclass
class ExampleResult:
    rule: str
    example: str
    passed: bool
    failures: list[str] = field(default_factory=list)
    file: str | None = None  # the rule file the example is written in
    line: int | None = None  # where in it the example begins


def where(file: str | None, line: int | None) -> str:
    """``file:line`` as problems name a place (the file alone without a line)."""
    return f"{file}:{line}" if file and line else file or "the rule file"


@dataclass
class _Case:
    """One example of one rule: its result, its rule set, and where its patients live."""

    rid: str
    example: ast.Example
    result: ExampleResult
    rules: RuleSet
    prefix: str = ""


def _matches(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return math.isclose(float(expected), float(actual), rel_tol=1e-6, abs_tol=1e-9)


def _patient(ex: ast.Example, exp: ast.Expectation) -> str:
    if exp.patient_id:
        return exp.patient_id
    return str(ex.events[0].get("patient_id", "X")) if ex.events else "X"


def _shown(value: Any) -> str:
    """A value as a rule file writes it: true, false, unknown, a number."""
    if value is None:
        return "unknown"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"{value:.12g}" if isinstance(value, float) else str(value)


def _check(ex: ast.Example, exp: ast.Expectation, got: Result, failures: list[str]) -> None:
    ok = _matches(exp.value, got.value)
    if ok and exp.reason_contains and exp.reason_contains not in (got.why or ""):
        ok = False
    if not ok:
        want, have = _shown(exp.value), _shown(got.value)
        extra = f" (reason: {got.why})" if got.why else ""
        if exp.reason_contains:
            extra += f"; wanted a reason containing {exp.reason_contains!r}"
        failures.append(f"{_patient(ex, exp)} at {exp.at}: expected {want}, got {have}{extra}")


def rules_of(rules: RuleSet, dirs: Sequence[Path]) -> list[str]:
    """The rules whose files lie in ``dirs`` (a directory's own rules, overrides of the pack's
    included), in evaluation order: what ``rules test DIR`` tests."""
    roots = [d.resolve() for d in dirs]
    return [
        rid
        for rid in rules.order
        if rules.rules[rid].variant_of is None
        and any(Path(rules.rules[rid].source).resolve().is_relative_to(root) for root in roots)
    ]


def run_examples(rules: RuleSet, dirs: list[Path], rule_ids: list[str] | None = None) -> list[ExampleResult]:
    """The examples of ``rule_ids`` (None: of every rule loaded from ``dirs``), run."""
    cases: list[_Case] = []
    # Examples are written for the rules' own defaults (the published values), so a site's
    # params.yaml does not make them fail; an example's own params apply on top. Its params may
    # leave the rules unloadable (another rule reads this one at values that do not go with
    # them: a window from one parameter to another): that example fails.
    with_params: dict[tuple[str, tuple[tuple[str, float | bool | str], ...]], RuleSet | RuleError] = {}
    defaults: RuleSet | None = None
    results: list[ExampleResult] = []
    for rid in rules.order if rule_ids is None else rule_ids:
        rule = rules.rules[rid]
        for ex in rule.examples:
            result = ExampleResult(
                rule=f"{rid}@{rule.version}",
                example=ex.name,
                passed=True,
                file=rule.source,
                line=ex.line or None,
            )
            results.append(result)
            if ex.params:
                key = (rid, tuple(sorted(ex.params)))
                if key not in with_params:
                    try:
                        with_params[key] = load_rules(dirs, params={rid: dict(ex.params)}, site_params=False)
                    except RuleError as exc:
                        with_params[key] = exc
                loaded = with_params[key]
                if isinstance(loaded, RuleError):
                    result.failures.extend(
                        f"with the example's params the rules do not load: {p}" for p in loaded.problems
                    )
                    continue
                ruleset = loaded
            else:
                if defaults is None:
                    defaults = load_rules(dirs, site_params=False)
                ruleset = defaults
            cases.append(_Case(rid, ex, result, ruleset))
    # (no case to run: every example failed as its rules were loaded, or there is none)
    with tempfile.TemporaryDirectory(prefix="timeline-examples-") as tmp:
        try:
            if cases:
                _run_together(cases, Path(tmp) / "examples.duckdb")
        except TimelineError:
            for n, case in enumerate(cases):
                case.result.failures.clear()
                _run_alone(case, Path(tmp) / f"{n}.duckdb")
    for result in results:
        result.passed = not result.failures
    return results


def _run_together(cases: Sequence[_Case], path: Path) -> None:
    """Every example in one store, each rule set's expectations in one engine run. Raises
    :class:`TimelineError` when the examples' events together fail ingest."""
    rows: list[dict[str, Any]] = []
    for n, case in enumerate(cases):
        case.prefix = f"ex{n}/"
        for e in case.example.events:
            row = dict(e)
            if row.get("patient_id") not in (None, ""):  # a missing one stays an ingest error
                row["patient_id"] = case.prefix + str(row["patient_id"])
            if row.get("event_id") is not None:
                row["event_id"] = case.prefix + str(row["event_id"])
            rows.append(row)
    with Store.create(path) as store:
        if cases:
            _register_codes(store, cases[0].rules)
        if rows:
            append_rows(store, rows, author="rules test", source="rule examples")
        groups: dict[int, list[_Case]] = {}
        for case in cases:
            groups.setdefault(id(case.rules), []).append(case)
        for group in groups.values():
            wanted: list[tuple[_Case, ast.Expectation, str, datetime]] = []
            for case in group:
                for exp in case.example.expect:
                    try:
                        q, _ = parse_at(exp.at)
                    except TimelineError as exc:
                        case.result.failures.append(f"{exc}: " + "; ".join(exc.details()))
                        continue
                    wanted.append((case, exp, case.prefix + _patient(case.example, exp), q))
            if not wanted:
                continue
            ids = sorted({case.rid for case in group})
            points = sorted({(pid, q) for _, _, pid, q in wanted})
            found = {
                (r.rule_id, r.patient_id, r.q): r
                for r in Session(store, group[0].rules).evaluate(points, ids, evidence=True)
            }
            for case, exp, pid, q in wanted:
                _check(case.example, exp, found[(case.rid, pid, q)], case.result.failures)


def _run_alone(case: _Case, path: Path) -> None:
    """One example in a store of its own, each expectation evaluated on its own."""
    ex = case.example
    try:
        with Store.create(path) as store:
            _register_codes(store, case.rules)
            if ex.events:
                append_rows(
                    store,
                    [dict(e) for e in ex.events],
                    author="rules test",
                    source=f"{case.rid} example {ex.name!r}",
                )
            session = Session(store, case.rules)
            session.replay = False  # examples test the SQL engine, which cohort runs use
            for exp in ex.expect:
                _check(ex, exp, session.state(_patient(ex, exp), exp.at, [case.rid])[0], case.result.failures)
    except IngestError as exc:
        # each refused value at its event's line; the example is named once, by its result
        # (helper 62: "batch rejected" named it twice, and its event by a row number)
        case.result.failures.extend(_refused(case, exc))
    except TimelineError as exc:
        case.result.failures.append(f"{exc}: " + "; ".join(exc.details()))


def _refused(case: _Case, exc: IngestError) -> list[str]:
    """What ingest refused in an example's events, each at the line of its event."""
    lines = case.example.event_lines
    out = []
    for e in exc.errors:
        n = e.row - 1 if e.row is not None else -1
        at = where(case.result.file, lines[n] if 0 <= n < len(lines) else case.result.line)
        out.append(f"{at}: ingest refuses {f'field {e.field}' if e.field else 'the event'}: {e.reason}")
    if exc.found > len(exc.errors):
        out.append(f"… {exc.found - len(exc.errors)} more refused values")
    return out


def _register_codes(store: Store, rules: RuleSet) -> None:
    """The rule directories' own codes (``codes.yaml``), registered in an example's store as a
    site registers them in its own, so that the examples' events may name them."""
    if rules.codebook.site:
        registry.add(store, list(rules.codebook.site), "rules test", "rule directories", "")
