"""A/B of `timeline state` and `timeline explain` for one patient, as whole processes, between
two installations of timeline (A: the base, e.g. main's checkout; B: this one), beside the
anchor ``python -c "import duckdb"`` and, stricter, ``python -c "import _duckdb"`` (DuckDB's
compiled module alone: what the two commands import of DuckDB since timeline.duck), all
alternated in one loop (the machine is shared: each round runs every command once, in an order
that alternates between rounds).

    python -m benchmarks.startup_ab --a /path/to/main/.venv/bin/timeline \\
        --b .venv/bin/timeline --store benchmarks/data/suite-10000/store.duckdb --runs 11

The patient is the store's one with most events, at its last event's date, as the suite's
``cli`` figures take it. Each command runs once untimed first (bytecode and rule cache
written). Prints every run's wall and CPU time, the medians, each median against the anchor's, B
against A, and the load average before and after.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float]:
    """The command's wall time and CPU time (user + system, every thread of it): on a shared
    machine the wall time grows with the others' load, its CPU time much less."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--a", required=True, help="the base's `timeline` executable")
    ap.add_argument("--b", required=True, help="the changed `timeline` executable")
    ap.add_argument("--store", required=True, type=Path)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument(
        "--history",
        action="store_true",
        help="also `timeline history` of the same patient (every rule's intervals), its table piped",
    )
    args = ap.parse_args()
    import duckdb

    with duckdb.connect(str(args.store), read_only=True) as con:
        found = con.execute(
            "SELECT patient_id, (max(occurred_at))::DATE FROM events GROUP BY patient_id "
            "ORDER BY count(*) DESC, patient_id LIMIT 1"
        ).fetchone()
    assert found is not None
    patient, day = found[0], str(found[1])
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "TIMELINE_NO_CACHE")}
    state = ["state", patient, "--at", day, "--store", str(args.store)]
    explain = ["explain", patient, "complete_response", "--at", day, "--store", str(args.store)]
    cmds = {
        "import duckdb": [sys.executable, "-c", "import duckdb"],
        # what `state` and `explain` import of DuckDB since round 32 (timeline.duck): the
        # compiled module without the package's Python layer, a stricter anchor shown beside
        "import _duckdb": [sys.executable, "-c", "import _duckdb"],
        "A state": [args.a, *state],
        "B state": [args.b, *state],
        "A explain": [args.a, *explain],
        "B explain": [args.b, *explain],
    }
    if args.history:
        history = ["history", patient, "--store", str(args.store)]
        cmds |= {"A history": [args.a, *history], "B history": [args.b, *history]}
    print(f"{patient} at {day}; load average before: {os.getloadavg()}")
    for cmd in cmds.values():
        timed(cmd, env)
    times: dict[str, list[tuple[float, float]]] = {k: [] for k in cmds}
    for i in range(args.runs):
        for name in list(cmds) if i % 2 == 0 else reversed(list(cmds)):
            times[name].append(timed(cmds[name], env))
    for k, label in ((0, "wall"), (1, "CPU")):
        anchor = statistics.median(t[k] for t in times["import duckdb"])
        compiled = statistics.median(t[k] for t in times["import _duckdb"])
        for name, ts in times.items():
            med = statistics.median(t[k] for t in ts)
            runs = " ".join(f"{t[k]:.3f}" for t in ts)
            print(
                f"{label:<4} {name:<14} median {med:.3f} s  {med / anchor:.2f}x the anchor "
                f"({med / compiled:.2f}x import _duckdb)   runs: {runs}"
            )
        for what in ("state", "explain", *(["history"] if args.history else [])):
            a = statistics.median(t[k] for t in times[f"A {what}"])
            b = statistics.median(t[k] for t in times[f"B {what}"])
            print(f"{label:<4} {what}: B/A {b / a:.2f} ({a:.3f} -> {b:.3f} s)")
    print(f"load average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
