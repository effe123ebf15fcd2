"""What the reasons cost a whole-pack history: one in-process ``Session.histories()`` on a store,
its CPU (the process's, DuckDB's threads included), wall, peak RSS, interval count and a hash of
every column, and each statement's CPU, with the reasons as they are or made cheaper:

- ``full``: the engine as it is;
- ``short``: every text literal of the SQL longer than 24 characters with a space in it (the
  reasons' wording: "no ESR measured in the lab validity window up to the date …") replaced by a
  7-character code, so that the reasons keep their structure and where they differ (the same
  number of intervals) but are ~10-40× shorter: what the text's length costs;
- ``none``: every node's reason dropped as it is compiled for values (``Compiler.values_only``
  writes NULL), so DuckDB computes none and carries none: a lower bound (intervals that differ
  only by their reason merge, so there are fewer).

Only ``full`` gives the engine's intervals; the others are for measuring. Run each mode in its
own process, alternated (benchmarks/README.md, round 30)::

    python -m benchmarks.history_reasons STORE --reasons short --statements out.json
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import re
import resource
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from timeline.engine import compiler
from timeline.engine.evaluate import Session
from timeline.errors import TimelineError
from timeline.language.loader import load_rules
from timeline.store import Store

_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def _short(match: re.Match[str]) -> str:
    text = match.group(1)
    if len(text) > 24 and " " in text:
        return "'#" + hashlib.blake2b(text.encode(), digest_size=3).hexdigest() + "'"
    return match.group(0)


class _Timed:
    """The session's connection, each statement's CPU logged (and its literals shortened)."""

    def __init__(self, con: Any, shorten: bool, log: list[tuple[float, str]]) -> None:
        self._con, self._shorten, self._log = con, shorten, log

    def execute(self, sql: str, *args: Any) -> Any:
        if self._shorten:
            sql = _LITERAL.sub(_short, sql)
        c0 = time.process_time()
        out = self._con.execute(sql, *args)
        self._log.append((time.process_time() - c0, sql))
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


@contextlib.contextmanager
def _without_reasons() -> Iterator[None]:
    """Every node compiled for values with a NULL reason, while in the block."""
    values_only = compiler.Compiler.values_only

    def without(self: compiler.Compiler, sql: str, kind: str, censored: bool = False) -> str:
        out = values_only(self, sql, kind, censored)
        return out if self.evidence else out.replace(", why, ", ", NULL::VARCHAR AS why, ", 1)

    compiler.Compiler.values_only = without  # type: ignore[method-assign]
    try:
        yield
    finally:
        compiler.Compiler.values_only = values_only  # type: ignore[method-assign]


def measure(path: Path, reasons: str = "full") -> tuple[dict[str, Any], list[tuple[float, str]]]:
    """One ``Session.histories()`` of the store at ``path`` with the reasons ``reasons``: its
    figures, and each statement's CPU seconds and SQL."""
    log: list[tuple[float, str]] = []
    with Store.open(path) as store, _without_reasons() if reasons == "none" else contextlib.nullcontext():
        session = Session(store, load_rules())
        session.con = _Timed(store.con, reasons == "short", log)  # type: ignore[assignment]
        c0, w0 = time.process_time(), time.perf_counter()
        n = session.histories()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        found = store.con.execute(
            'SELECT count(*), bit_xor(hash(rule_id, patient_id, start, "end", b, x, why, qualifier)) FROM tl_history'
        ).fetchone()
    assert found is not None
    figures = {
        "reasons": reasons,
        "cpu_s": round(cpu, 2),
        "wall_s": round(wall, 2),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        "intervals": n,
        "hash": found[1],
        "load": Path("/proc/loadavg").read_text().split()[0],
    }
    return figures, log


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("store", type=Path, help="a store (opened read-only; the history is a temp table)")
    parser.add_argument("--reasons", choices=["full", "short", "none"], default="full")
    parser.add_argument("--statements", type=Path, help="write each statement's CPU and SQL here (JSON)")
    args = parser.parse_args(argv)
    try:
        figures, log = measure(args.store, args.reasons)
    except TimelineError as exc:  # not a store, damaged, locked…: said as the CLI says it
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(figures))
    if args.statements:
        args.statements.write_text(json.dumps(log))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
