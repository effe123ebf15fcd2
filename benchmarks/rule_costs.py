"""Which rules a cohort run or a history spends its time on: one in-process run of the pack
(``Session.states`` at the suite's three points per patient) or of every patient's history
(``Session.histories``) on a store, each statement of the staged run timed (CPU of the process,
DuckDB's threads included), and each relation's CPU given to the rules whose trees hold it:

- ``shared``: a relation's CPU split evenly between the rules that read it (directly or through
  other rules), so the rules' shares add up to the run's;
- ``own``: the CPU of the relations that one rule alone reads: what leaving that rule out saves.

A statement's CPU includes the relations read once that are inlined into it as CTEs (see
``timeline.engine.evaluate.staged``), so a relation stands for its whole statement. The final
statement (the states or intervals written) belongs to no rule. Run it on a quiet machine, or
compare CPU, not wall (benchmarks/README.md, round 33)::

    python -m benchmarks.rule_costs STORE --job pack --top 15
    python -m benchmarks.rule_costs STORE --job history --json costs.json
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from timeline.engine import evaluate
from timeline.errors import TimelineError
from timeline.language.loader import load_rules
from timeline.store import Store

_CREATE = re.compile(r"CREATE OR REPLACE TEMP TABLE (\w+) AS ")


@dataclass
class Costs:
    """One run's CPU and wall, and its statements' CPU by relation and by rule."""

    job: str
    cpu: float
    wall: float
    rows: int
    relations: dict[str, float] = field(default_factory=dict)  # relation → CPU seconds (all batches)
    readers: dict[str, list[str]] = field(default_factory=dict)  # relation → the rules reading it
    shared: dict[str, float] = field(default_factory=dict)  # rule → CPU seconds, shared relations split
    own: dict[str, float] = field(default_factory=dict)  # rule → CPU seconds of relations it alone reads
    unowned: float = 0.0  # the statements of no rule: the final one, the events' view, drops

    def to_json(self) -> dict[str, Any]:
        return dict(self.__dict__)


class _Timed:
    """A connection whose statements' CPU is added to ``cpu`` by the relation they create."""

    def __init__(self, con: Any, cpu: dict[str, float]) -> None:
        self._con, self._cpu = con, cpu

    def execute(self, sql: str, *args: Any) -> Any:
        c0 = time.process_time()
        out = self._con.execute(sql, *args)
        found = _CREATE.match(sql)
        name = found.group(1) if found else ""
        self._cpu[name] = self._cpu.get(name, 0.0) + time.process_time() - c0
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@contextmanager
def _timed(cpu: dict[str, float], readers: dict[str, set[str]]) -> Iterator[None]:
    """Every staged run in the block timed statement by statement, and the rules reading each
    relation found from the compiled graph (a relation's readers: the roots whose trees hold it)."""
    staged = evaluate.staged

    def timed(con: Any, comp: Any, roots: dict[str, str], final: str, keep: set[str] | None = None) -> Any:
        sqls = dict(comp.out.ctes)
        deps = {n: set(evaluate._NAME.findall(sql)) & sqls.keys() - {n} for n, sql in sqls.items()}
        for rid, root in roots.items():
            seen: set[str] = set()
            todo = [root]
            while todo:
                n = todo.pop()
                if n not in seen:
                    seen.add(n)
                    readers.setdefault(n, set()).add(rid)
                    todo += deps.get(n, ())
        return staged(_Timed(con, cpu), comp, roots, final, keep)

    evaluate.staged = timed  # type: ignore[assignment]
    try:
        yield
    finally:
        evaluate.staged = staged


def measure(store_path: Path, job: str) -> Costs:
    """One run of ``job`` (``pack`` or ``history``) on the store, timed by relation and rule."""
    from benchmarks.suite import POINTS

    cpu: dict[str, float] = {}
    readers: dict[str, set[str]] = {}
    with Store.open(store_path) as store:
        session = evaluate.Session(store, load_rules())
        with _timed(cpu, readers):
            c0, t0 = time.process_time(), time.perf_counter()
            rows = session.states(POINTS) if job == "pack" else session.histories()
            costs = Costs(job, time.process_time() - c0, time.perf_counter() - t0, rows)
    shared: dict[str, float] = defaultdict(float)
    own: dict[str, float] = defaultdict(float)
    for name, seconds in cpu.items():
        rules = sorted(readers.get(name, ()))
        if not rules:
            costs.unowned += seconds
            continue
        for rid in rules:
            shared[rid] += seconds / len(rules)
        if len(rules) == 1:
            own[rules[0]] += seconds
    costs.relations = dict(sorted(cpu.items(), key=lambda kv: -kv[1]))
    costs.readers = {n: sorted(r) for n, r in readers.items() if n in cpu}
    costs.shared = dict(sorted(shared.items(), key=lambda kv: -kv[1]))
    costs.own = {rid: own.get(rid, 0.0) for rid in costs.shared}
    return costs


def report(costs: Costs, top: int) -> str:
    """The run's totals, its costliest rules and relations, as lines of text."""
    timed = sum(costs.relations.values())
    lines = [
        f"{costs.job}: {costs.rows:,} rows, {costs.cpu:.2f} s CPU, {costs.wall:.2f} s wall; "
        f"statements {timed:.2f} s CPU, of no rule {costs.unowned:.2f} s",
        f"{'rule':<40} {'shared':>8} {'%':>6} {'own':>8}",
    ]
    for rid, seconds in list(costs.shared.items())[:top]:
        lines.append(
            f"{rid:<40} {seconds:>8.2f} {100 * seconds / max(timed, 1e-9):>5.1f}% {costs.own[rid]:>8.2f}"
        )
    lines.append(f"{'relation':<12} {'CPU s':>8}  read by")
    for name, seconds in list(costs.relations.items())[:top]:
        rules = costs.readers.get(name, [])
        shown = ", ".join(rules[:3]) + (f" and {len(rules) - 3} more" if len(rules) > 3 else "")
        lines.append(f"{name or '(no table)':<12} {seconds:>8.2f}  {shown or '-'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.rule_costs",
        description="The CPU of a cohort run (pack) or of every patient's history, by rule and relation.",
    )
    parser.add_argument(
        "store", type=Path, help="a timeline store (e.g. benchmarks/data/suite-10000/store.duckdb)"
    )
    parser.add_argument("--job", choices=("pack", "history"), default="pack")
    parser.add_argument("--top", type=int, default=20, help="rules and relations listed (default 20)")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write every figure as JSON")
    args = parser.parse_args(argv)
    if args.top < 1:
        parser.error("--top must be at least 1")
    try:
        costs = measure(args.store, args.job)
    except TimelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(report(costs, args.top))
    if args.json is not None:
        args.json.write_text(json.dumps(costs.to_json(), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
