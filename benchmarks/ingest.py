"""Ingest benchmark: `timeline ingest` against DuckDB's bare load of the same file.

For CSV and Parquet files of N generated events (see :mod:`benchmarks.gen`) it measures

* **anchor**: a fresh DuckDB file, ``CREATE TABLE t AS SELECT * FROM read_csv(file)``
  (or ``read_parquet``), connect to close;
* **ours**: a fresh store (``Store.create``), ``ingest_file``, connect to close;

alternating them run by run so both see the same machine noise, and prints the median
events/s of each and the median of the per-run ratios ours' time / anchor's time (goal ≤ 3).
It then runs each once more on a file of ``--rss-events`` events in a child process and
reports the child's own peak resident set size, its VmHWM (goal < 1 GiB for ours at 10M
events; ``ru_maxrss`` from ``wait4`` would start from this parent's high-water mark, and the
parent has run the timed ingests in process). The exit
status is 1 when a goal is missed (never with ``--quick``).

    python -m benchmarks.ingest --events 1000000 --runs 3        # the recorded figures
    python -m benchmarks.ingest --quick                          # tiny smoke run
    python -m benchmarks.ingest --events 1000000 --runs 1 --profile --rss-events 0
        # CPU and wall seconds of every SQL statement of one ingest (the most CPU first)
    python -m benchmarks.ingest --source benchmarks/data/suite-10000/events.parquet --runs 1 \\
        --rss-events 0 --profile      # the same for a given file (the suite's 10k one)
    python -m benchmarks.ingest --into benchmarks/data/suite-10000/store.duckdb \\
        --source benchmarks/data/suite-10000/events.parquet --runs 5
        # a monthly increment (1 % of the events) into a copy of a large store, see increment_run

With ``--into STORE --source FILE`` (FILE: the events STORE was built from) it measures the
ingest of an increment made from FILE (:func:`make_increment`) into a copy of STORE (the copy
is not timed; STORE is never written) and into an empty store, against DuckDB's bare append
of the same file, ``INSERT INTO t SELECT * FROM read_parquet(increment)``, to a plain table
holding FILE's rows (a copy of one built once) and to an empty database.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from benchmarks import gen
from benchmarks.aces_compare import vm_hwm_mib

GOAL_RATIO = 3.0
GOAL_RSS_MIB = 1024.0
FORMATS = ("csv", "parquet")


# ---- the two jobs ----------------------------------------------------------------------


def bare_load(file: Path, fmt: str, db: Path) -> None:
    """The anchor: DuckDB loading the file into a plain table of a fresh database file."""
    reader = "read_csv" if fmt == "csv" else "read_parquet"
    con = duckdb.connect(str(db))
    try:
        con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}('{file}')")
    finally:
        con.close()


def our_ingest(file: Path, fmt: str, db: Path, profile: list[tuple[float, float, str]] | None = None) -> int:
    """Ours: `timeline ingest` of the file into a fresh store, through the library."""
    from timeline.ingest import ingest_file
    from timeline.store import Store

    store = Store.create(db)
    try:
        if profile is not None:
            store.con = _TimedConnection(store.con, profile)  # type: ignore[assignment]
        result = ingest_file(store, file, author="benchmark")
        return result.added
    finally:
        store.close()


class _TimedConnection:
    """Wraps a DuckDB connection and records the CPU seconds (this process's, DuckDB's threads
    included) and wall seconds of every statement it runs. The CPU seconds move much less with
    other people's load: on a machine shared with 3-8 busy processes, a statement's wall time
    was 1.5-3.5 times its CPU time, from run to run."""

    def __init__(self, con: duckdb.DuckDBPyConnection, log: list[tuple[float, float, str]]) -> None:
        self._con = con
        self._log = log

    def _timed(self, fn: Callable[..., Any], sql: str, *args: Any) -> Any:
        t0, c0 = time.perf_counter(), time.process_time()
        fn(sql, *args)
        self._log.append((time.process_time() - c0, time.perf_counter() - t0, " ".join(sql.split())[:150]))
        return self

    def execute(self, sql: str, *args: Any) -> Any:
        return self._timed(self._con.execute, sql, *args)

    def executemany(self, sql: str, *args: Any) -> Any:
        return self._timed(self._con.executemany, sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._con, name)


def _timed_run(job: Callable[[Path], Any], workdir: Path) -> tuple[float, float]:
    """(wall seconds, CPU seconds of this process, DuckDB's threads included)."""
    db = workdir / f"run-{time.monotonic_ns()}.duckdb"
    t0, c0 = time.perf_counter(), time.process_time()
    job(db)
    elapsed = time.perf_counter() - t0, time.process_time() - c0
    _remove(workdir, db.name)
    return elapsed


def _remove(workdir: Path, name: str) -> None:
    for p in workdir.glob(name + "*"):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


# ---- an increment into a large store ---------------------------------------------------

# the kinds an increment adds new events of: those a patient has many of (a second birth,
# diagnosis or end of follow-up would be refused, or mean another cohort)
INCREMENT_KINDS = (
    "lab", "finding", "assessment", "body_temperature", "weight", "joint_exam", "height",
    "medication_dose_change", "adverse_event",
)  # fmt: skip


def make_increment(
    source: Path, out: Path, per_mille: int = 10, repeated_per_mille: int = 1
) -> tuple[int, int]:
    """Write ``out`` (Parquet), a month's extract of the patients of ``source`` (a native CSV or
    Parquet file, the events a store was built from): about ``per_mille`` ‰ of its events of
    :data:`INCREMENT_KINDS` again as new events (event id ``<id>-m1``, every time 28 days later,
    its clock time and offset kept), and about ``repeated_per_mille`` ‰ of all its rows as they
    are (an extract overlapping the last one: duplicates, skipped), in patient and time order.
    Chosen by a hash of the event id, so the same source gives the same file. Returns (rows,
    repeated rows)."""
    reader = "read_csv" if source.suffix.lower() == ".csv" else "read_parquet"
    src = f"{reader}('{_sql_text(source)}')"

    def later(col: str) -> str:  # the date part moved, the rest (a time, an offset) kept
        return f"strftime(left({col}, 10)::DATE + 28, '%Y-%m-%d') || substr({col}, 11)"

    kinds = ", ".join(f"'{k}'" for k in INCREMENT_KINDS)
    with duckdb.connect() as con:
        con.execute(
            f"""COPY (
                SELECT * REPLACE (event_id || '-m1' AS event_id, {later("occurred_at")} AS occurred_at,
                                  {later("ended_at")} AS ended_at)
                FROM {src} WHERE kind IN ({kinds}) AND hash(event_id || 'new') % 1000 < {int(per_mille)}
                UNION ALL
                SELECT * FROM {src} WHERE hash(event_id || 'again') % 1000 < {int(repeated_per_mille)}
                ORDER BY patient_id, occurred_at, event_id
            ) TO '{_sql_text(out)}' (FORMAT parquet, COMPRESSION zstd)"""
        )
        counted = con.execute(
            f"SELECT count(*), count(*) FILTER (WHERE NOT ends_with(event_id, '-m1')) FROM read_parquet('{_sql_text(out)}')"
        ).fetchone()
    assert counted is not None
    return int(counted[0]), int(counted[1])


def _sql_text(path: Path) -> str:
    return str(path).replace("'", "''")


def bare_append(file: Path, db: Path) -> None:
    """The anchor into a large store: DuckDB appending the file to the plain table ``t`` of an
    existing database file, connect to close."""
    con = duckdb.connect(str(db))
    try:
        con.execute(f"INSERT INTO t SELECT * FROM read_parquet('{_sql_text(file)}')")
    finally:
        con.close()


def ingest_into(
    file: Path, db: Path, profile: list[tuple[float, float, str]] | None = None
) -> tuple[int, int]:
    """Ours into an existing store: open, ``ingest_file``, close. Returns (added, duplicates)."""
    from timeline.ingest import ingest_file
    from timeline.store import Store

    store = Store.open(db, write=True)
    try:
        if profile is not None:
            store.con = _TimedConnection(store.con, profile)  # type: ignore[assignment]
        result = ingest_file(store, file, author="benchmark")
        return result.added, result.duplicates
    finally:
        t0, c0 = time.perf_counter(), time.process_time()
        store.close()
        if profile is not None:  # DuckDB checkpoints the file as it closes: the anchor's close does too
            profile.append(
                (time.process_time() - c0, time.perf_counter() - t0, "(close: DuckDB's checkpoint)")
            )


def _copied_run(job: Callable[[Path], Any], original: Path, workdir: Path) -> tuple[float, float]:
    """(wall, CPU seconds) of ``job`` on a fresh copy of ``original``; the copy is not timed."""
    db = workdir / f"copy-{time.monotonic_ns()}.duckdb"
    shutil.copyfile(original, db)
    t0, c0 = time.perf_counter(), time.process_time()
    job(db)
    elapsed = time.perf_counter() - t0, time.process_time() - c0
    _remove(workdir, db.name)
    return elapsed


def _print_profile(log: list[tuple[float, float, str]], what: str) -> None:
    cpu, wall = sum(c for c, _, _ in log), sum(w for _, w, _ in log)
    print(
        f"  profile of {what} ({cpu:.3f} s CPU, {wall:.3f} s wall in SQL), the most CPU first (CPU s, wall s, statement):"
    )
    for c, w, sql in sorted(log, reverse=True)[:15]:
        print(f"    {c:8.3f} {w:8.3f}  {sql}")


def increment_run(store: Path, source: Path, runs: int, profile: bool) -> int:
    """The figures of an increment made from ``source`` into a copy of ``store`` and into an
    empty store, each against DuckDB's bare append of it (to a plain table of ``source``'s rows,
    and to an empty database), alternating run by run."""
    print(f"machine: {machine()}")
    print(f"load average: {_load()}")
    gen.DATA.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=gen.DATA, prefix="bench-into-") as tmp:
        work = Path(tmp)
        inc = work / "increment.parquet"
        rows, repeated = make_increment(source, inc)
        anchor_db = work / "anchor.duckdb"  # the plain table of the store's rows, built once
        with duckdb.connect(str(anchor_db)) as con:
            # on one thread, so that its row groups are full, as a store's are (2.7M events: 23);
            # built on two, it had 32, some of a few hundred rows, which DuckDB merges at the first
            # checkpoint after an append: 2.2 s of CPU in the anchor's close, once, where appending
            # to full row groups takes 0.1 s in all
            con.execute("SET threads = 1")
            reader = "read_csv" if source.suffix.lower() == ".csv" else "read_parquet"
            con.execute(f"CREATE TABLE t AS SELECT * FROM {reader}('{_sql_text(source)}')")
            counted = con.execute("SELECT count(*) FROM t").fetchone()
        held = int(counted[0]) if counted else 0
        with duckdb.connect(str(store), read_only=True) as con:
            stored = con.execute("SELECT count(*) FROM events").fetchone()
        n_stored = int(stored[0]) if stored else 0
        print(
            f"increment: {rows:,} rows ({rows - repeated:,} new events, {repeated:,} repeated as stored), "
            f"into {store} ({n_stored:,} events) and into an empty store; anchor table {held:,} rows; "
            f"runs: {runs} (medians)"
        )
        jobs: dict[str, Callable[[], tuple[float, float]]] = {
            "anchor empty": lambda: _timed_run(lambda db: bare_load(inc, "parquet", db), work),
            "ours empty": lambda: _timed_run(lambda db: our_ingest(inc, "parquet", db), work),
            "anchor large": lambda: _copied_run(lambda db: bare_append(inc, db), anchor_db, work),
            "ours large": lambda: _copied_run(lambda db: ingest_into(inc, db), store, work),
        }
        wall: dict[str, list[float]] = {k: [] for k in jobs}
        cpu: dict[str, list[float]] = {k: [] for k in jobs}
        for i in range(runs):
            for name, job in jobs.items():
                w, c = job()
                wall[name].append(w)
                cpu[name].append(c)
            print(
                f"  run {i + 1}: "
                + ", ".join(f"{k} {wall[k][-1]:.3f} s ({cpu[k][-1]:.2f} s CPU)" for k in jobs),
                flush=True,
            )
        if profile:
            log: list[tuple[float, float, str]] = []
            _copied_run(lambda db: ingest_into(inc, db, log), store, work)
            _print_profile(log, f"one more ingest into {store.name}")
            log = []
            _timed_run(lambda db: our_ingest(inc, "parquet", db, log), work)
            _print_profile(log, "one more ingest into an empty store")
    lines = [_row(["figure", "ours", "anchor", "ratio", "", ""])]
    for size, label in (("empty", "into an empty store"), ("large", f"into {n_stored:,} events")):
        ours, anchor = f"ours {size}", f"anchor {size}"
        ratio = statistics.median(o / a for o, a in zip(wall[ours], wall[anchor], strict=True))
        cpu_ratio = statistics.median(o / a for o, a in zip(cpu[ours], cpu[anchor], strict=True))
        lines.append(
            _row([f"{rows:,} ev {label}, median wall s", f"{statistics.median(wall[ours]):.3f}",
                  f"{statistics.median(wall[anchor]):.3f}", f"{ratio:.2f}×", "", ""])
        )  # fmt: skip
        lines.append(
            _row(["  median CPU s", f"{statistics.median(cpu[ours]):.3f}",
                  f"{statistics.median(cpu[anchor]):.3f}", f"{cpu_ratio:.2f}×", "", ""])
        )  # fmt: skip
    print(f"load average at the end: {_load()}")
    print()
    print("\n".join(lines))
    return 0


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


# ---- peak memory in a child process ------------------------------------------------------


def peak_rss_mib(job: str, file: Path, fmt: str, workdir: Path) -> float | None:
    """Run one job in a fresh interpreter; return its own peak RSS in MiB (VmHWM, as the child
    reports it; None where the system has none)."""
    db = workdir / f"rss-{job}-{time.monotonic_ns()}.duckdb"
    cmd = [sys.executable, "-m", "benchmarks.ingest", "--child", job, "--file", str(file), "--fmt", fmt]
    cmd += ["--db", str(db)]
    proc = subprocess.run(cmd, cwd=Path(__file__).resolve().parent.parent, capture_output=True, text=True)
    _remove(workdir, db.name)
    if proc.returncode != 0:
        raise SystemExit(
            f"child {job} on {file} failed with exit code {proc.returncode}:\n{proc.stderr[-3000:]}"
        )
    peak = json.loads(proc.stdout.strip().splitlines()[-1])["hwm_mib"]
    return None if peak is None else float(peak)


# ---- report --------------------------------------------------------------------------------


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(Path("/proc/meminfo").read_text().split()[1])
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, ValueError, IndexError):
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores{mem}; Python {platform.python_version()}, DuckDB {duckdb.__version__}"
    )


def _row(cells: list[str]) -> str:
    widths = [40, 12, 12, 7, 8, 5]
    return "  ".join(
        c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths, strict=True))
    )


def run(
    events: int,
    runs: int,
    rss_events: int,
    formats: tuple[str, ...],
    profile: bool,
    source: Path | None = None,
) -> int:
    """The figures for ``events`` generated events of each of ``formats``; or, given ``source``
    (a CSV or Parquet file of ``events`` rows, of the one format in ``formats``), for that file."""
    print(f"machine: {machine()}")
    print(f"events: {events:,}, runs: {runs} (medians), peak RSS at {rss_events:,} events")
    gen.DATA.mkdir(parents=True, exist_ok=True)
    ok = True
    lines: list[str] = [_row(["figure", "ours", "anchor", "ratio", "goal", "met?"])]
    with tempfile.TemporaryDirectory(dir=gen.DATA, prefix="bench-") as tmp:
        work = Path(tmp)
        for fmt in formats:
            file = source if source is not None else gen.generate(events, fmt)
            size = file.stat().st_size / 1e6
            ours_t: list[float] = []
            anchor_t: list[float] = []
            ours_c: list[float] = []
            anchor_c: list[float] = []
            for i in range(runs):
                wall, cpu = _timed_run(lambda db, f=file, m=fmt: bare_load(f, m, db), work)
                anchor_t.append(wall)
                anchor_c.append(cpu)
                log: list[tuple[float, float, str]] | None = [] if profile and i == 0 else None
                wall, cpu = _timed_run(lambda db, f=file, m=fmt, lg=log: our_ingest(f, m, db, lg), work)
                ours_t.append(wall)
                ours_c.append(cpu)
                print(
                    f"  {fmt} run {i + 1}: ours {ours_t[-1]:.3f} s ({ours_c[-1]:.2f} s CPU), "
                    f"anchor {anchor_t[-1]:.3f} s ({anchor_c[-1]:.2f} s CPU), "
                    f"ratio {ours_t[-1] / anchor_t[-1]:.2f}",
                    flush=True,
                )
                if log is not None:
                    cpu, wall = sum(c for c, _, _ in log), sum(w for _, w, _ in log)
                    print(
                        f"  profile of run 1 ({cpu:.3f} s CPU, {wall:.3f} s wall in SQL), "
                        "the most CPU first (CPU s, wall s, statement):"
                    )
                    for c, w, sql in sorted(log, reverse=True)[:25]:
                        print(f"    {c:8.3f} {w:8.3f}  {sql}")
            ours, anchor = statistics.median(ours_t), statistics.median(anchor_t)
            ratio = statistics.median(o / a for o, a in zip(ours_t, anchor_t, strict=True))
            met = ratio <= GOAL_RATIO
            ok &= met
            lines.append(
                _row(
                    [
                        f"{fmt} ingest {events:,} ev ({size:.0f} MB), ev/s",
                        f"{events / ours:,.0f}",
                        f"{events / anchor:,.0f}",
                        f"{ratio:.2f}×",
                        f"≤ {GOAL_RATIO:g}×",
                        "yes" if met else "NO",
                    ]
                )
            )
            lines.append(_row([f"  median wall s ({runs} runs)", f"{ours:.3f}", f"{anchor:.3f}", "", "", ""]))
            cpu_ratio = statistics.median(o / a for o, a in zip(ours_c, anchor_c, strict=True))
            ours_cpu, anchor_cpu = statistics.median(ours_c), statistics.median(anchor_c)
            lines.append(
                _row(["  median CPU s", f"{ours_cpu:.3f}", f"{anchor_cpu:.3f}", f"{cpu_ratio:.2f}×", "", ""])
            )
        if rss_events:
            for fmt in formats:
                file = gen.generate(rss_events, fmt)
                ours_rss = peak_rss_mib("ours", file, fmt, work)
                anchor_rss = peak_rss_mib("anchor", file, fmt, work)
                if ours_rss is None or anchor_rss is None:  # no VmHWM here: no figure, not a wrong one
                    lines.append(_row([f"{fmt} {rss_events:,} ev peak RSS, MiB", "n/a", "n/a", "", "", ""]))
                    continue
                met = ours_rss < GOAL_RSS_MIB
                ok &= met
                lines.append(
                    _row(
                        [
                            f"{fmt} {rss_events:,} ev peak RSS, MiB",
                            f"{ours_rss:,.0f}",
                            f"{anchor_rss:,.0f}",
                            f"{ours_rss / anchor_rss:.2f}×",
                            f"< {GOAL_RSS_MIB:g}",
                            "yes" if met else "NO",
                        ]
                    )
                )
    print()
    print("\n".join(lines))
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000, help="events per timed file (default 1M)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per format; medians are reported")
    ap.add_argument(
        "--rss-events", type=int, default=10_000_000, help="events in the peak-memory file (0: skip)"
    )
    ap.add_argument("--format", choices=[*FORMATS, "both"], default="both")
    ap.add_argument("--quick", action="store_true", help="tiny sizes, one run (smoke test)")
    ap.add_argument(
        "--profile", action="store_true", help="CPU and wall seconds of each SQL statement of the first run"
    )
    ap.add_argument(
        "--source",
        type=Path,
        help="time this CSV or Parquet file (e.g. the suite's benchmarks/data/suite-10000/events.parquet) "
        "instead of generated events; with --rss-events 0 unless a generated file's peak is wanted too",
    )
    ap.add_argument(
        "--into",
        type=Path,
        metavar="STORE",
        help="time an increment made from --source (the events STORE was built from: 1 %% of them as new "
        "events a month later, 0.1 %% repeated) ingested into a copy of STORE (never written) and into an "
        "empty store, against DuckDB's bare append of it",
    )
    ap.add_argument("--child", choices=["ours", "anchor"], help=argparse.SUPPRESS)
    ap.add_argument("--file", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--fmt", choices=FORMATS, help=argparse.SUPPRESS)
    ap.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        if args.child == "ours":
            our_ingest(args.file, args.fmt, args.db)
        else:
            bare_load(args.file, args.fmt, args.db)
        print(json.dumps({"hwm_mib": vm_hwm_mib()}))  # this process's own peak, read by the parent
        return 0
    if args.into is not None:
        if (
            args.source is None
            or args.source.suffix.lower() not in (".csv", ".parquet")
            or not args.source.is_file()
        ):
            ap.error(
                "--into needs --source, the .csv or .parquet file of the events the store was built from"
            )
        if not args.into.is_file():
            ap.error(f"--into {args.into}: no such store file")
        return increment_run(args.into, args.source, 1 if args.quick else args.runs, args.profile)
    if args.quick:
        args.events, args.runs, args.rss_events = 2000, 1, 2000
    formats = FORMATS if args.format == "both" else (args.format,)
    if args.source is not None:
        fmt = {".csv": "csv", ".parquet": "parquet"}.get(args.source.suffix.lower())
        if fmt is None or not args.source.is_file():
            ap.error(f"--source {args.source}: not a .csv or .parquet file")
        reader = "read_csv" if fmt == "csv" else "read_parquet"
        quoted = str(args.source).replace("'", "''")
        with duckdb.connect() as con:
            counted = con.execute(f"SELECT count(*) FROM {reader}('{quoted}')").fetchone()
        args.events, formats = int(counted[0]) if counted else 0, (fmt,)
        if args.rss_events:
            print(
                f"the peak RSS figure is of a generated file of {args.rss_events:,} events, not of --source"
            )
    status = run(args.events, args.runs, args.rss_events, formats, args.profile, args.source)
    return 0 if args.quick else status  # goals mean nothing at the tiny size


if __name__ == "__main__":
    sys.exit(main())
