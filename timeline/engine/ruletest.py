"""Run the examples every rule file carries: given events → expected state at given dates.

Each example gets its own throw-away store, so examples go through the same ingest checks
and the same engine as real data.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timeline.engine.evaluate import Session
from timeline.errors import TimelineError
from timeline.ingest import append_rows
from timeline.language.loader import RuleSet, load_rules
from timeline.store import Store


@dataclass
class ExampleResult:
    rule: str
    example: str
    passed: bool
    failures: list[str] = field(default_factory=list)


def _matches(expected: Any, actual: Any) -> bool:
    if expected is None or actual is None:
        return expected is None and actual is None
    if isinstance(expected, bool) or isinstance(actual, bool):
        return expected is actual
    return math.isclose(float(expected), float(actual), rel_tol=1e-6, abs_tol=1e-9)


def run_examples(rules: RuleSet, dirs: list[Path], rule_ids: list[str] | None = None) -> list[ExampleResult]:
    results: list[ExampleResult] = []
    with tempfile.TemporaryDirectory(prefix="timeline-examples-") as tmp:
        for n, rid in enumerate(rule_ids or rules.order):
            rule = rules.rules[rid]
            for i, ex in enumerate(rule.examples):
                ruleset = rules
                if ex.params:
                    ruleset = load_rules(dirs, params={rid: dict(ex.params)})
                path = Path(tmp) / f"{n}-{i}.duckdb"
                result = ExampleResult(rule=f"{rid}@{rule.version}", example=ex.name, passed=True)
                try:
                    with Store.create(path) as store:
                        if ex.events:
                            append_rows(
                                store,
                                [dict(e) for e in ex.events],
                                author="rules test",
                                source=f"{rid} example {ex.name!r}",
                            )
                        session = Session(store, ruleset)
                        for exp in ex.expect:
                            patient = (
                                exp.patient_id or str(ex.events[0].get("patient_id", "X"))
                                if ex.events
                                else "X"
                            )
                            got = session.state(patient, exp.at, [rid])[0]
                            ok = _matches(exp.value, got.value)
                            if ok and exp.reason_contains and exp.reason_contains not in (got.why or ""):
                                ok = False
                            if not ok:
                                want = "unknown" if exp.value is None else exp.value
                                have = "unknown" if got.value is None else got.value
                                extra = f" (reason: {got.why})" if got.why else ""
                                if exp.reason_contains:
                                    extra += f"; wanted a reason containing {exp.reason_contains!r}"
                                result.failures.append(f"at {exp.at}: expected {want}, got {have}{extra}")
                except TimelineError as exc:
                    result.failures.append(f"{exc}: " + "; ".join(exc.details()))
                result.passed = not result.failures
                results.append(result)
    return results
