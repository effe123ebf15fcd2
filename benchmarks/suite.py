"""The benchmark suite: every figure of the scale issue at one size, beside its anchor.

    python -m benchmarks --size 10k              # 10,000 synthetic patients (~2M events)
    python -m benchmarks --size 100k --runs 3    # ~20M events
    python -m benchmarks --size 1M --only ingest,pack
    python -m benchmarks --size 200 --runs 1 --no-write   # a quick look

For one size it synthesises the cohort (``timeline synth``, seed 1, Parquet, and CSV for the
ingest figure), builds its store, and measures each job in a fresh child process. A child
times its work from after its set-up (imports, rules loaded, store opened; the set-up is
timed apart and logged), the same way for a job and its anchor, and reports its own peak RSS
(VmHWM). A job and its anchor alternate run by run, so both see the same noise:

- ``ingest``: ``timeline ingest`` of the Parquet and the CSV file vs DuckDB's bare load of the
  same file into a plain table (goal: within 3×);
- ``pack``: the whole sJIA pack at 3 points per patient (first clinical event + 3, 12 and 24
  months), a cohort run, vs one hand-written DuckDB query of a single state for the same
  points — latest CRP ≤ 10 mg/L within 30 days — under the engine's DuckDB memory limit
  (goal: within 10×);
- ``history``: every patient's history intervals for the whole pack, alternating with the
  pack runs, vs those runs (3×);
- ``cohort``: ``timeline cohort run`` of the study's cohort file (``examples/valencia/cohort.yaml``:
  population, baseline, outcomes at 3, 6 and 12 months, time to event, adverse events, MAS)
  on the synthetic store, the whole report written as CSV, alternating with the pack runs
  when they run (goal: the issue's peak memory, < 4 GB at 20M events);
- ``cli``: ``timeline state`` and ``timeline explain`` for one patient, whole process, vs
  ``python -c "import duckdb"`` (2×), after one untimed run of each (bytecode and the rule
  cache written, as after a user's first command); the first run after the rules change, with
  the cache off, is logged beside them;
- ``aces``: ``benchmarks.aces_compare`` on the same synthetic data (faster, less memory, same
  answers in every run);
- ``naive``: the plain-Python per-patient replay (``timeline.engine.replay`` in its naive mode,
  every lookup scanning the patient's events) of the whole pack on a sample of patients,
  once, in this process, extrapolated to all, vs the pack runs; its answers (values and
  unknown reasons) are checked against the pack's own path (``Session.states``) on the sample.

A measured pack is always reported; history, cohort and naive record which pack run they are
relative to. Figures are medians of ``--runs`` runs (benchmarks/README.md says how each ratio
and peak is computed). The suite exits 1 when the naive replay or ACES disagrees with the
engine, after saving what it measured.

The figures, each with the time, commit (and whether the checkout had changes) and machine of
its run, are saved to ``benchmarks/results/suite-N.json`` (a partial run replaces only its own
figures), and the "Suite" section of ``benchmarks/README.md`` is rewritten from every saved
size; ``--no-write`` leaves both alone. The data directory ``benchmarks/data/suite-N/`` (the
synthetic files, the store, the ACES data and its ``result.json``) is written either way; its
``data.json`` records what the data is made of, and data this code would not make is rebuilt.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from benchmarks import gen, ingest
from benchmarks.aces_compare import vm_hwm_mib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
RESULTS = HERE / "results"
README = HERE / "README.md"
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000}
JOBS = ("ingest", "pack", "history", "cohort", "cli", "aces", "naive")
# bump when what the suite keeps in a data directory (data.json) changes
DATA_LAYOUT = 1
# the study's cohort file, run by `timeline cohort run` on the synthetic store
COHORT = ROOT / "examples" / "valencia" / "cohort.yaml"
# 3 points per patient: its first clinical event + 3, 12 and 24 months
POINTS = """SELECT patient_id, q FROM (
        SELECT patient_id, min(occurred_at) FILTER (WHERE kind <> 'birth') AS t0 FROM events GROUP BY patient_id)
    CROSS JOIN unnest([t0 + INTERVAL 3 MONTH, t0 + INTERVAL 12 MONTH, t0 + INTERVAL 24 MONTH]) u(q)
    WHERE t0 IS NOT NULL"""
# The anchor: one state (latest CRP ≤ 10 mg/L within 30 days) at the same points, by hand.
ANCHOR = f"""WITH p AS ({POINTS}),
    crp AS (SELECT patient_id, occurred_at AS t, value FROM events WHERE kind = 'lab' AND code = '1988-5')
    SELECT count(*) FILTER (WHERE crp.t > p.q - INTERVAL 30 DAY AND crp.value <= 10) AS normal, count(*) AS points
    FROM p ASOF LEFT JOIN crp ON crp.patient_id = p.patient_id AND crp.t <= p.q"""

# the figures' names, in the order of the table
PACK = "whole sJIA pack, 3 points per patient"
HISTORY = "history intervals of every patient, whole pack"
COHORT_RUN = "`timeline cohort run` of the study's cohort file, whole report"
NAIVE = "naive per-patient Python replay, whole pack, 3 points"
WINDOW = "window task (fever 0–90 d after first anakinra, none 90–120 d)"
# figure name (prefix) → the job that measures it
JOB_OF = {
    "ingest": "ingest",
    "whole sJIA pack": "pack",
    "history": "history",
    "`timeline cohort run": "cohort",
    "`timeline state": "cli",
    "`timeline explain": "cli",
    "naive": "naive",
    "window task": "aces",
}


def size_of(text: str) -> int:
    if text in SIZES:
        return SIZES[text]
    try:
        n = int(text.replace("_", ""))
    except ValueError:
        raise SystemExit(f"--size {text!r}: give 10k, 100k, 1M or a number of patients") from None
    if n < 10:
        raise SystemExit(f"--size {text!r}: at least 10 patients")
    return n


def label(n: int) -> str:
    for name, value in SIZES.items():
        if value == n:
            return name
    return f"{n:,}"


def job_of(figure_name: str) -> str | None:
    return next((job for prefix, job in JOB_OF.items() if figure_name.startswith(prefix)), None)


# ---- child processes ----------------------------------------------------------------------


def child(job: str, args: argparse.Namespace) -> dict[str, Any]:
    """One measured job, in this (fresh) process. Its set-up — imports, rules loaded, store or
    database opened — is timed apart (``setup_s``); ``seconds`` is the work alone, measured
    from the same point for a job and its anchor. Returns what it found, both times and this
    process's peak RSS."""
    import duckdb

    started = time.perf_counter()
    out: dict[str, Any] = {}
    work: Callable[[], Any]
    done: Callable[[], Any] = lambda: None  # noqa: E731
    if job == "bare-load":
        work = lambda: ingest.bare_load(Path(args.file), args.fmt, Path(args.db))  # noqa: E731
    elif job == "ingest":
        # timeline's modules imported before the clock, as duckdb is for the bare load
        import timeline.ingest  # noqa: F401

        work = lambda: out.update(added=ingest.our_ingest(Path(args.file), args.fmt, Path(args.db)))  # noqa: E731
    elif job == "append":  # one part of a store built in parts (see build_store)
        from timeline.ingest import ingest_file
        from timeline.store import Store

        def work() -> None:
            db = Path(args.db)
            with Store.open(db, write=True) if db.exists() else Store.create(db) as s:
                out["added"] = ingest_file(s, Path(args.file), author="benchmark").added

    elif job == "anchor":
        from timeline.store import lower_memory_limit

        con = duckdb.connect(args.db, read_only=True)
        # the DuckDB memory limit the engine runs the pack under (never raised, as the engine)
        lower_memory_limit(con, int(args.memory_limit))

        def work() -> None:
            found = con.execute(ANCHOR).fetchone()
            out["crp_normal"], out["points"] = found if found else (0, 0)

        done = con.close
    elif job == "cohort":  # the command a user runs, in this process: report written as CSV
        from cli.main import main as cli_main

        def work() -> None:
            sys.argv = ["timeline", "cohort", "run", str(COHORT), "--store", args.db, "--csv", args.file]
            try:
                cli_main()
            except SystemExit as stop:
                if stop.code:
                    raise

        def done() -> None:
            lines = Path(args.file).read_text().splitlines()
            out["cells"] = sum(1 for line in lines if not line.startswith("#")) - 1

    elif job in ("pack", "history"):
        from timeline.engine.evaluate import Session
        from timeline.language.loader import load_rules
        from timeline.store import Store

        store = Store.open(Path(args.db))
        session = Session(store, load_rules())
        if job == "pack":
            # the cohort run set-based, its states left in DuckDB (10.8M at 100k patients
            # would be ~2.5 GB of Python objects; Session.evaluate returns those)
            work = lambda: out.update(results=session.states(POINTS))  # noqa: E731
        else:
            work = lambda: out.update(intervals=session.histories())  # noqa: E731

        def done() -> None:
            if job == "pack":
                found = store.con.execute(
                    "SELECT count(*) FILTER (WHERE b IS NOT NULL OR x IS NOT NULL) FROM tl_states"
                ).fetchone()
                out["known"] = found[0] if found else 0  # a censored value (<5) is known, as its bound
            store.close()

    else:
        raise SystemExit(f"unknown benchmark job {job!r}")
    out["setup_s"] = time.perf_counter() - started
    started = time.perf_counter()
    work()
    out["seconds"] = time.perf_counter() - started
    done()
    out["hwm_mib"] = vm_hwm_mib()
    return out


def run_child(job: str, **kw: Any) -> dict[str, Any]:
    """Run ``job`` in a fresh interpreter; its report plus wall time and peak RSS (MiB)."""
    cmd = [sys.executable, "-m", "benchmarks.suite", "--child", job]
    for k, v in kw.items():
        cmd += [f"--{k.replace('_', '-')}", str(v)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"benchmark job {job} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    report["wall"] = wall
    report["rss_mib"] = report.pop("hwm_mib", None)
    return report


def _timed_cmd(cmd: list[str], env: dict[str, str] | None = None) -> float:
    started = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}")
    return time.perf_counter() - started


def _remove(path: Path) -> None:
    for p in path.parent.glob(path.name + "*"):
        p.unlink()


# ---- what a run measures, and on what -----------------------------------------------------


def provenance() -> dict[str, Any]:
    """When and on what code this run measures: its start (to the second, with the UTC
    offset), the commit checked out (None outside a git checkout) and whether the checkout
    differs from it — tracked changes or untracked files (a new rule file changes the pack),
    leaving out the results, README and data the suite writes itself."""

    def git(*args: str) -> str | None:
        try:
            proc = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)
        except (OSError, subprocess.SubprocessError):
            return None
        return proc.stdout if proc.returncode == 0 else None

    head = git("rev-parse", "HEAD")
    status = git(
        "status", "--porcelain", "--", ".",
        ":(exclude)benchmarks/results", ":(exclude)benchmarks/README.md", ":(exclude)benchmarks/data",
    )  # fmt: skip
    return {
        "measured_at": datetime.now().astimezone().isoformat(timespec="seconds"),
        "commit": head.strip() if head else None,
        "dirty": None if head is None or status is None else bool(status.strip()),
    }


def pack_rules() -> int:
    """The number of rules in the sJIA pack as this checkout loads it."""
    from timeline.language.loader import load_rules

    return len(load_rules().rules)


def prepare_data(n: int, only: set[str], log: Callable[[str], None]) -> tuple[Path, dict[str, Path], Path]:
    """The data directory of a size: the synthetic cohort as Parquet (and CSV when the ingest
    figure runs) and the store built from the Parquet file. ``data.json`` records what each
    was made from — the synthesiser's query, seed and DuckDB's version
    (:func:`benchmarks.gen.fingerprint`), and for the store also its schema and timeline's
    version; what does not match this code (or predates data.json) is rebuilt."""
    from timeline import __version__
    from timeline.store import SCHEMA_VERSION
    from timeline.synth import synthesize

    root = DATA / f"suite-{n}"
    root.mkdir(parents=True, exist_ok=True)
    files = {fmt: root / f"events.{fmt}" for fmt in ("parquet", "csv")}
    store = root / "store.duckdb"
    record = root / "data.json"
    events = {
        "source": "timeline synth",
        "patients": n,
        "seed": 1,
        "fingerprint": gen.fingerprint("synth", n),
    }
    made = {"schema": SCHEMA_VERSION, "timeline": __version__}
    try:
        data: dict[str, Any] = json.loads(record.read_text())
    except (OSError, ValueError):
        data = {}

    def save() -> None:
        tmp = record.with_name(record.name + ".part")
        tmp.write_text(json.dumps(data, indent=2))
        tmp.replace(record)

    if data.get("layout") != DATA_LAYOUT or data.get("events") != events:
        there = [p.name for p in (*files.values(), store) if p.exists()]
        if there:
            why = "no data.json" if not data else f"made from {data.get('events')}, this code makes {events}"
            log(f"{root}: {', '.join(there)} not what this code would make ({why}): rebuilt")
        for path in files.values():
            path.unlink(missing_ok=True)
        _remove(store)
        data = {"layout": DATA_LAYOUT, "events": events, "files": [], "store": None}
        save()
    for fmt, path in files.items():
        # the CSV copy only serves the ingest figure (1M patients: ~15 GB, minutes to write)
        if (fmt == "parquet" or "ingest" in only) and not (path.exists() and fmt in data["files"]):
            log(f"synthesising {n:,} patients → {path.name}")
            synthesize(patients=n, seed=1, out=path)
            data["files"] = sorted({*data["files"], fmt})
            save()
    if store.exists() and data.get("store") != made:
        log(f"{store}: made by {data.get('store')}, this code makes {made}: rebuilt")
        _remove(store)
    if not store.exists():
        data["store"] = None  # until it is whole
        save()
        build_store(files["parquet"], store, log)
        data["store"] = made
        save()
    return root, files, store


# ---- the figures ----------------------------------------------------------------------------


def alternate(
    runs: int, jobs: dict[str, Callable[[], dict[str, Any]]], log: Callable[[str], None]
) -> dict[str, list[dict[str, Any]]]:
    """Run each job ``runs`` times, alternating their order run by run."""
    out: dict[str, list[dict[str, Any]]] = {k: [] for k in jobs}
    names = list(jobs)
    for i in range(runs):
        for name in names if i % 2 == 0 else reversed(names):
            report = jobs[name]()
            out[name].append(report)
            log(f"  run {i + 1} {name:<12} {_run_line(report)}")
    return out


def repeated(job: str, runs: int, log: Callable[[str], None], **kw: Any) -> list[dict[str, Any]]:
    """Run ``job`` (without an anchor) ``runs`` times, logging each run."""
    out = []
    for i in range(runs):
        report = run_child(job, **kw)
        out.append(report)
        log(f"  run {i + 1} {job:<12} {_run_line(report)}")
    return out


def _run_line(report: dict[str, Any]) -> str:
    peak = report["rss_mib"]
    return (
        f"{report['seconds']:8.2f} s  (set-up {report['setup_s']:.2f} s)  wall {report['wall']:8.2f} s  "
        + (f"peak {peak:7.0f} MiB" if peak is not None else "peak n/a")
    )


def med(reports: list[dict[str, Any]], key: str = "seconds") -> float | None:
    values = [r[key] for r in reports]
    return None if None in values else float(statistics.median(values))


def _max(reports: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in reports]
    return None if None in values else float(max(values))


def figure(
    name: str,
    ours: list[dict[str, Any]],
    anchor: list[dict[str, Any]] | None,
    anchor_name: str,
    goal: str,
    **extra: Any,
) -> dict[str, Any]:
    """A figure from its runs (and its anchor's, run by run): the medians of the seconds and
    of the set-up, the median and the maximum of the peaks, every run's seconds, and the
    median of the per-run ratios ours / anchor."""
    row: dict[str, Any] = {
        "figure": name,
        "runs": len(ours),
        "ours_s": med(ours),
        "ours_runs_s": [r["seconds"] for r in ours],
        "ours_setup_s": med(ours, "setup_s"),
        "ours_rss_mib": med(ours, "rss_mib"),
        "ours_rss_max_mib": _max(ours, "rss_mib"),
        "anchor": anchor_name,
        "goal": goal,
        **extra,
    }
    if anchor:
        row["anchor_s"] = med(anchor)
        row["anchor_runs_s"] = [r["seconds"] for r in anchor]
        row["anchor_setup_s"] = med(anchor, "setup_s")
        row["anchor_rss_mib"] = med(anchor, "rss_mib")
        row["anchor_rss_max_mib"] = _max(anchor, "rss_mib")
        row["ratio"] = float(
            statistics.median(o["seconds"] / a["seconds"] for o, a in zip(ours, anchor, strict=True))
        )
    return row


def _warm(path: Path, log: Callable[[str], None]) -> None:
    """Read the store once, so that the first timed run (whichever job it is) does not pay for
    reading it from disk while the others find it in the page cache."""
    size = path.stat().st_size
    try:
        ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        ram = 0
    if ram and size > ram // 4:
        log(f"  (the store, {size / 2**30:.1f} GiB, is not read ahead: over a quarter of RAM)")
        return
    with path.open("rb") as fh:
        while fh.read(1 << 24):
            pass


def measure(
    n: int, runs: int, only: set[str], sample: int, log: Callable[[str], None], run_id: str
) -> dict[str, Any]:
    """Every figure of ``only`` at ``n`` patients; ``run_id`` names this run's pack run in the
    figures relative to it."""
    from timeline.engine.evaluate import ENGINE_MEMORY_LIMIT

    root, files, store = prepare_data(n, only, log)
    import duckdb

    with duckdb.connect(str(store), read_only=True) as con:
        found = con.execute("SELECT count(*), count(DISTINCT patient_id) FROM events").fetchone()
        events, patients = found if found else (0, 0)
    rules = pack_rules()
    result: dict[str, Any] = {"patients": patients, "events": events, "rules": rules, "figures": []}
    figures: list[dict[str, Any]] = result["figures"]

    if "ingest" in only:
        for fmt in ("parquet", "csv"):
            log(f"ingest, {fmt}")

            def scratch(job: str, fmt: str = fmt, db: Path = root / "scratch.duckdb") -> dict[str, Any]:
                _remove(db)
                try:
                    return run_child(job, db=db, file=files[fmt], fmt=fmt)
                finally:
                    _remove(db)

            got = alternate(
                runs, {"timeline": lambda: scratch("ingest"), "bare load": lambda: scratch("bare-load")}, log
            )
            f = figure(
                f"ingest ({fmt})",
                got["timeline"],
                got["bare load"],
                "DuckDB bare load of the same file",
                "≤ 3×",
            )
            f["ours_rate"] = events / f["ours_s"]
            f["anchor_rate"] = events / f["anchor_s"]
            figures.append(f)

    pack: dict[str, Any] | None = None
    cohort_csv = root / "cohort.csv"
    if only & {"pack", "history", "naive"}:
        beside = [name for name in ("history", "cohort") if name in only]
        log(
            "whole sJIA pack at 3 points per patient (cohort run) vs one hand-written query"
            + (f", alternating with {' and '.join(beside)}" if beside else "")
        )
        _warm(store, log)
        jobs = {
            "pack": lambda: run_child("pack", db=store),
            "anchor": lambda: run_child("anchor", db=store, memory_limit=ENGINE_MEMORY_LIMIT),
        }
        if "history" in only:
            jobs["history"] = lambda: run_child("history", db=store)
        if "cohort" in only:
            jobs["cohort"] = lambda: run_child("cohort", db=store, file=cohort_csv)
        got = alternate(runs, jobs, log)
        _remove(cohort_csv)
        # a measured pack is always reported: the figures relative to it name this run
        pack = figure(
            PACK,
            got["pack"],
            got["anchor"],
            "one hand-written query of one state",
            "≤ 10×",
            results=got["pack"][0]["results"],
            rules=rules,
        )
        figures.append(pack)
        if "history" in got:
            figures.append(
                figure(
                    HISTORY,
                    got["history"],
                    got["pack"],
                    "the pack's runs, alternating with these",
                    "≤ 3×",
                    intervals=got["history"][0]["intervals"],
                    rules=rules,
                    relative_to=run_id,
                )
            )
        if "cohort" in got:
            figures.append(
                figure(
                    COHORT_RUN,
                    got["cohort"],
                    got["pack"],
                    "the pack's runs, alternating with these",
                    "peak < 4 GB at 20M events; 200M completes",
                    cells=got["cohort"][0]["cells"],
                    relative_to=run_id,
                )
            )
    elif "cohort" in only:
        log("timeline cohort run, the study's cohort file (examples/valencia/cohort.yaml)")
        got_cohort = repeated("cohort", runs, log, db=store, file=cohort_csv)
        _remove(cohort_csv)
        figures.append(
            figure(
                COHORT_RUN,
                got_cohort,
                None,
                "– (the pack did not run)",
                "peak < 4 GB at 20M events; 200M completes",
                cells=got_cohort[0]["cells"],
            )
        )

    if "cli" in only:
        figures += [{**f, "rules": rules} for f in cli_figures(store, runs, log)]

    if "naive" in only and pack is not None:
        figures.append(naive_figure(store, sample, pack, log, run_id))

    if "aces" in only:
        figures.append(aces_figure(n, runs, root, log))
    return result


# The largest ingest batch the suite builds a store with. One batch of the 1M cohort (200M
# events) filled the 70 GB of free disk with DuckDB's spill while checking it, after 10 min.
PART_PATIENTS = 100_000


def build_store(parquet: Path, store: Path, log: Callable[[str], None]) -> None:
    """The store a size's figures read: `timeline ingest` of its Parquet file, as one batch up
    to PART_PATIENTS patients, else in parts of that many patients in patient order (as a
    registry would load an extract in parts). Either way the store keeps each patient's
    events together, as an ingest of the patient-ordered file does."""
    import duckdb

    con = duckdb.connect()
    starts = [
        r[0]
        for r in con.execute(
            f"""SELECT patient_id FROM (SELECT DISTINCT patient_id FROM read_parquet('{parquet}'))
                QUALIFY (row_number() OVER (ORDER BY patient_id) - 1) % {PART_PATIENTS} = 0 ORDER BY 1"""
        ).fetchall()
    ]
    if len(starts) <= 1:
        con.close()
        log("building the store (timeline ingest of the Parquet file)")
        run_child("ingest", db=store, file=parquet, fmt="parquet")
        return
    part = store.parent / "part.parquet"
    try:
        for i, lo in enumerate(starts):
            hi = f"AND patient_id < '{starts[i + 1]}'" if i + 1 < len(starts) else ""
            con.execute(
                f"COPY (SELECT * FROM read_parquet('{parquet}') WHERE patient_id >= '{lo}' {hi}) TO '{part}' (FORMAT parquet)"
            )
            started = time.perf_counter()
            report = run_child("append", db=store, file=part)
            log(
                f"building the store: part {i + 1} of {len(starts)}, {report['added']:,} events in "
                f"{time.perf_counter() - started:.0f} s, peak {report['rss_mib']:.0f} MiB"
            )
    except BaseException:
        _remove(store)  # a half-built store would be measured next time
        raise
    finally:
        con.close()
        _remove(part)


def cli_figures(store: Path, runs: int, log: Callable[[str], None]) -> list[dict[str, Any]]:
    import duckdb

    with duckdb.connect(str(store), read_only=True) as con:
        found = con.execute(
            "SELECT patient_id, (max(occurred_at))::DATE FROM events GROUP BY patient_id ORDER BY count(*) DESC, patient_id LIMIT 1"
        ).fetchone()
    assert found is not None
    patient, day = found[0], str(found[1])
    exe = str(Path(sys.executable).with_name("timeline"))
    cmds = {
        "import duckdb": [sys.executable, "-c", "import duckdb"],
        # DuckDB's compiled module alone: what the two commands import of DuckDB (timeline.duck);
        # logged beside the anchor, a stricter one
        "import _duckdb": [sys.executable, "-c", "import _duckdb"],
        "timeline state": [exe, "state", patient, "--at", day, "--store", str(store)],
        "timeline explain": [
            exe,
            "explain",
            patient,
            "complete_response",
            "--at",
            day,
            "--store",
            str(store),
        ],
    }
    log(f"one patient ({patient}, the one with most events, at {day}), whole process")
    # As a user's installation runs them: Python's bytecode written (pip compiles it at install;
    # PYTHONDONTWRITEBYTECODE, set on some machines, would make every run compile our modules)
    # and the rule set in the per-user cache, both by one untimed run of each command first.
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONDONTWRITEBYTECODE", "TIMELINE_NO_CACHE")}
    for cmd in cmds.values():
        _timed_cmd(cmd, env)
    times: dict[str, list[float]] = {k: [] for k in cmds}
    for i in range(max(runs, 5)):
        for name in cmds if i % 2 == 0 else reversed(list(cmds)):
            times[name].append(_timed_cmd(cmds[name], env))
    # the first command after the rule files (or timeline) changed: the cache is rebuilt
    cold = [_timed_cmd(cmds["timeline state"], {**env, "TIMELINE_NO_CACHE": "1"}) for _ in range(3)]
    log(f"  (timeline state without the rule cache: median {statistics.median(cold):.3f} s)")
    for name, ts in times.items():
        log(f"  {name:<18} median {statistics.median(ts):.3f} s over {len(ts)} runs")
    base = statistics.median(times["import duckdb"])
    out = []
    for name in ("timeline state", "timeline explain"):
        ratios = [o / a for o, a in zip(times[name], times["import duckdb"], strict=True)]
        strict = [o / a for o, a in zip(times[name], times["import _duckdb"], strict=True)]
        log(
            f"  {name}: {statistics.median(ratios):.2f}x import duckdb, "
            f"{statistics.median(strict):.2f}x import _duckdb"
        )
        out.append({
            "figure": f"`{name}` one patient, whole pack, whole process", "runs": len(times[name]),
            "ours_s": statistics.median(times[name]), "ours_runs_s": times[name], "anchor_runs_s": times["import duckdb"],
            "anchor": "`python -c \"import duckdb\"`", "anchor_s": base, "ratio": statistics.median(ratios), "goal": "≤ 2×",
        })  # fmt: skip
    return out


def naive_figure(
    store: Path, sample: int, pack: dict[str, Any], log: Callable[[str], None], run_id: str
) -> dict[str, Any]:
    """The plain-Python replay (timeline.engine.replay) in its naive mode — every lookup scans
    the patient's whole event list — per patient, on a sample, once, in this process; its
    answers checked against the pack's own path, ``Session.states``, at the same points: the
    value of every rule at every point (a censored one as its bound and qualifier, as
    ``Session.state`` shows it), and its reason where it is unknown."""
    sys.path.insert(0, str(ROOT))
    from timeline.engine.compiler import reads_censored
    from timeline.engine.evaluate import Session
    from timeline.engine.replay import Reference
    from timeline.language.loader import load_rules
    from timeline.store import Store

    rules = load_rules()
    # a rule whose value may be a censored one shows it as its bound and qualifier (Session.state)
    shown = {rid for rid in rules.order if reads_censored(rules.rules[rid].define, rules)}
    kinds = {rid: rules.rules[rid].type.kind for rid in rules.order}
    with Store.open(store) as s:
        session = Session(s, rules)
        everyone = [
            r[0] for r in s.con.execute("SELECT DISTINCT patient_id FROM events ORDER BY 1").fetchall()
        ]
        chosen = sorted(random.Random(1).sample(everyone, min(sample, len(everyone))))
        s.con.execute("CREATE OR REPLACE TEMP TABLE tl_sample (patient_id VARCHAR)")
        s.con.executemany("INSERT INTO tl_sample VALUES (?)", [[p] for p in chosen])
        sample_points = (
            f"SELECT patient_id, q FROM ({POINTS}) WHERE patient_id IN (SELECT patient_id FROM tl_sample)"
        )
        points = s.con.execute(sample_points + " ORDER BY ALL").fetchall()
        log(f"naive per-patient replay of the whole pack: {len(chosen)} patients sampled, one run")
        started = time.perf_counter()
        naive: dict[tuple[str, Any, str], tuple[Any, str | None, str | None]] = {}
        for pid in chosen:
            ref = Reference(rules, s.events(pid), naive=True)
            for p, q in points:
                if p != pid:
                    continue
                for (
                    rid
                ) in rules.listed():  # every rule, as the engine evaluates them (copies are read inside)
                    v = ref.rule(rid, q)
                    if rid in shown and v.qualifier is not None:
                        naive[(pid, q, rid)] = (v.bound, None, v.qualifier)
                    else:
                        naive[(pid, q, rid)] = (v.value, v.why if v.value is None else None, None)
        seconds = time.perf_counter() - started
        session.states(sample_points)
        engine = {
            (p, q, rid): (b if kinds[rid] == "bool" else x, why, qualifier)
            for rid, p, q, b, x, why, qualifier in s.con.execute(
                "SELECT rule_id, patient_id, q, b, x, why, qualifier FROM tl_states"
            ).fetchall()
        }
    differ = answer_differences(naive, engine)
    per_patient = seconds / max(len(chosen), 1)
    log(
        f"  {seconds:.1f} s for {len(chosen)} patients ({per_patient:.3f} s each); "
        f"{len(differ)} of {len(naive)} answers differ from the engine's (Session.states)"
    )
    for key, how in differ[:5]:
        log(f"    {' '.join(map(str, key))}: {how}")
    return {
        "figure": NAIVE, "runs": 1, "ours_s": pack["ours_s"], "rules": len(rules.rules), "relative_to": run_id,
        "anchor": f"plain-Python replay, {per_patient:.3f} s per patient (sample of {len(chosen)})",
        "naive_per_patient_s": per_patient, "sample": len(chosen),
        "answers_compared": len(naive.keys() | engine.keys()), "answers_differ": len(differ),
        "differ_examples": [[*map(str, k), how] for k, how in differ[:5]],
        "goal": "show the speed-up",
    }  # fmt: skip


def answer_differences(
    naive: dict[Any, tuple[Any, str | None, str | None]],
    engine: dict[Any, tuple[Any, str | None, str | None]],
) -> list[tuple[Any, str]]:
    """Every (patient, point, rule) on which the two differ, and how — each side's answer is
    (value, reason, qualifier): the value (numbers within 1e-9 relative), a censored value's
    qualifier (<5: the value is its bound), the reason of an unknown value, or a state one side
    has and the other lacks (a missing state is no answer, never an unknown one)."""
    out = []
    for key in sorted(naive.keys() | engine.keys(), key=lambda k: tuple(map(str, k))):
        if key not in engine:
            out.append((key, "no engine state"))
        elif key not in naive:
            out.append((key, "no replay state"))
        else:
            (a, why_a, qa), (b, why_b, qb) = naive[key], engine[key]
            if not _same(a, b) or qa != qb:
                out.append((key, f"value: replay {qa or ''}{a!r}, engine {qb or ''}{b!r}"))
            elif a is None and why_a != why_b:
                out.append((key, f"reason: replay {why_a!r}, engine {why_b!r}"))
    return out


def _same(a: Any, b: Any) -> bool:
    if a is None or b is None or isinstance(a, bool) or isinstance(b, bool):
        return a is b
    return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-7)


def _ordered(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Figures in the order of the suite's jobs."""
    keys = list(JOB_OF)
    return sorted(
        figures, key=lambda f: next((i for i, k in enumerate(keys) if f["figure"].startswith(k)), len(keys))
    )


def _run_aces(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)


def aces_figure(n: int, runs: int, root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    """``benchmarks.aces_compare`` on this size's synthetic cohort: its medians, the median of
    its per-run ratios timeline / ACES, and whether the answers agreed in every run. A failed
    run stops the suite; a disagreement is recorded (and fails the suite at the end)."""
    try:
        import aces  # noqa: F401
    except ImportError:
        log("aces: es-aces is not installed (pip install -e '.[bench]'); skipped")
        return {"figure": WINDOW, "skipped": "es-aces not installed", "goal": "faster, less memory"}
    log("one window task, timeline vs ACES on the MEDS export (benchmarks.aces_compare)")
    data = root / "aces"
    found = data / "result.json"
    found.unlink(missing_ok=True)  # only this run's answers may be reported
    cmd = [sys.executable, "-m", "benchmarks.aces_compare", "--patients", str(n), "--source", "synth"]
    cmd += ["--runs", str(runs), "--data", str(data)]
    proc = _run_aces(cmd)
    for line in proc.stdout.splitlines():
        log("  " + line)
    # exit 1 with a result: the answers disagree; anything else without 0 is a failure
    res = json.loads(found.read_text()) if found.exists() else None
    if res is None or proc.returncode not in (0, 1) or (proc.returncode == 0) != bool(res.get("agree")):
        raise SystemExit(f"aces_compare failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    m, r = res["median"], res["ratio"]
    return {
        "figure": WINDOW, "runs": runs,
        "ours_s": m["timeline"]["wall"], "ours_work_s": m["timeline"]["work"],
        "ours_rss_mib": m["timeline"]["rss"], "ours_rss_max_mib": res["max_rss"]["timeline"],
        "anchor": "ACES (es-aces) on the MEDS export", "anchor_s": m["aces"]["wall"], "anchor_work_s": m["aces"]["work"],
        "anchor_rss_mib": m["aces"]["rss"], "anchor_rss_max_mib": res["max_rss"]["aces"],
        "ratio": r["wall"], "work_ratio": r["work"], "rss_ratio": r["rss"],
        "agree": bool(res["agree"]), "agree_runs": [a["agree"] for a in res["agreements"]],
        "goal": "faster and less memory, same answers",
    }  # fmt: skip


def failed_checks(figures: list[dict[str, Any]]) -> list[str]:
    """What this run's checks found wrong: the naive replay's answers differing from the
    engine's, ACES's from timeline's."""
    out = []
    for f in figures:
        if f.get("answers_differ"):
            first = f["differ_examples"][0] if f.get("differ_examples") else ""
            out.append(
                f"{f['figure']}: {f['answers_differ']} of {f['answers_compared']:,} answers differ from "
                f"the engine's, e.g. {' '.join(map(str, first))}"
            )
        if f.get("agree") is False:
            out.append(
                f"{f['figure']}: timeline's and ACES's answers disagree (runs agreeing: {f.get('agree_runs')})"
            )
    return out


# ---- the README section -----------------------------------------------------------------------


def machine() -> str:
    return ingest.machine()


def load_average() -> float | None:
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


def _s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _mib(x: float | None) -> str:
    return "–" if not x else f"{x:,.0f} MiB"


def _peak(f: dict[str, Any], side: str, runs: int) -> str:
    """The maximum of the runs' peaks, with their median beside it when it differs (results
    saved before the maximum was kept: the median, said so)."""
    median, most = f.get(f"{side}_rss_mib"), f.get(f"{side}_rss_max_mib")
    if not median and not most:
        return "–"
    if most is None:
        return _mib(median) + (" (median)" if runs > 1 else "")
    if median is not None and runs > 1 and round(median) != round(most):
        return f"{most:,.0f} MiB (median {median:,.0f})"
    return _mib(most)


def _runs(f: dict[str, Any], res: dict[str, Any]) -> int:
    if "runs" in f:
        return int(f["runs"])
    job = job_of(f["figure"])
    if job == "naive":  # it always ran once, whatever was recorded
        return 1
    return int(res.get("runs_by_job", {}).get(job, res.get("runs", 1)))


def _rules(f: dict[str, Any]) -> int | None:
    return int(f["rules"]) if f.get("rules") else None


def _cpu(machine_line: str | None) -> str:
    return (machine_line or "").split(";")[0]


def _commit(f: dict[str, Any]) -> str:
    if not f.get("commit"):
        return "commit not recorded"
    return f"commit {f['commit'][:9]}" + (" with uncommitted changes" if f.get("dirty") else "")


def _pack_of(res: dict[str, Any]) -> dict[str, Any] | None:
    return next(
        (f for f in res["figures"] if f["figure"].startswith("whole sJIA pack") and "ours_s" in f), None
    )


def _stale(f: dict[str, Any], pack: dict[str, Any] | None) -> str | None:
    """Why a figure relative to the pack no longer matches the pack run in the table, or None."""
    job = job_of(f["figure"])
    if job not in ("history", "cohort", "naive") or f.get("skipped"):
        return None
    if "relative_to" not in f and (job != "naive" and "anchor_s" not in f):
        return None  # measured without the pack: no ratio to it
    if pack is None:
        return "its pack run is not in this table"
    if "relative_to" in f:
        if f["relative_to"] == pack.get("measured_at"):
            return None
        return f"its ratio is to the pack run of {f['relative_to']}, since replaced"
    # saved before runs were named: the same pack run has the very same seconds
    seconds = f.get("ours_s") if job == "naive" else f.get("anchor_s")
    if seconds == pack.get("ours_s"):
        return None
    return f"its ratio is to an earlier pack run ({_s(seconds)}), since replaced"


def _header(res: dict[str, Any]) -> list[str]:
    name = label(res["size"])
    who = f"{res['patients']:,} patients, " if name != f"{res['patients']:,}" else ""
    counts: dict[int | None, list[str]] = {}
    for f in res["figures"]:
        if job_of(f["figure"]) in ("pack", "history", "cli", "naive") and not f.get("skipped"):
            job = job_of(f["figure"]) or ""
            names = counts.setdefault(_rules(f), [])
            if job not in names:
                names.append(job)
    if len(counts) == 1 and None not in counts:
        rules = f"; the sJIA pack of {next(iter(counts))} rules"
    elif counts:
        rules = "; rules in the pack: " + ", ".join(
            f"{k} ({', '.join(v)})" if k else f"not recorded ({', '.join(v)})" for k, v in counts.items()
        )
    else:
        rules = ""
    if res.get("measured_at"):
        latest = f"Latest run {res['measured_at']}, {_commit(res)}"
    else:
        latest = f"Latest run {res['date']} (its time and commit not recorded)"
    load = res.get("load_end")
    where = res["machine"] if load is None else f"{res['machine']}; load average {load:.1f} at its end"
    return [
        f"### {name} patients ({who}{res['events']:,} events{rules})",
        "",
        f"{latest}. Machine: {where}.",
        "",
    ]


def render(results: list[dict[str, Any]]) -> str:
    lines = [BEGIN, "", "_Written by `python -m benchmarks`; do not edit by hand._", ""]
    for res in sorted(results, key=lambda r: r["patients"]):
        lines += _header(res)
        lines += [
            "| figure | runs | timeline | peak RSS | anchor | anchor time | anchor peak RSS | ratio | goal |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        pack = _pack_of(res)
        for f in res["figures"]:
            if f.get("skipped"):
                lines.append(f"| {f['figure']} | | skipped: {f['skipped']} | | | | | | {f['goal']} |")
                continue
            runs = _runs(f, res)
            ours = _s(f.get("ours_s"))
            if "ours_rate" in f:
                ours += f" ({f['ours_rate']:,.0f} ev/s)"
            anchor_t = _s(f.get("anchor_s"))
            if "anchor_rate" in f:
                anchor_t += f" ({f['anchor_rate']:,.0f} ev/s)"
            ratio = f"{f['ratio']:.2f}×" if "ratio" in f else "–"
            if f.get("naive_total_s"):
                anchor_t = _s(f["naive_total_s"]) + " (extrapolated)"
                ratio = f"{f['naive_total_s'] / f['ours_s']:.0f}× faster; "
                if f["answers_differ"]:
                    ratio += f"ANSWERS DIFFER: {f['answers_differ']} of {f['answers_compared']:,}"
                else:
                    ratio += f"0 of {f['answers_compared']:,} answers differ"
            if "agree" in f:
                ratio += ", answers agree" if f["agree"] else ", ANSWERS DISAGREE"
            name = f["figure"] + _marks(f, res, pack)
            lines.append(
                f"| {name} | {runs} | {ours} | {_peak(f, 'ours', runs)} | {f['anchor']} | {anchor_t} | {_peak(f, 'anchor', runs)} | {ratio} | {f['goal']} |"
            )
        lines.append("")
    if len(results) > 1:
        lines += growth(sorted(results, key=lambda r: r["patients"]))
    lines.append(END)
    return "\n".join(lines)


def _marks(f: dict[str, Any], res: dict[str, Any], pack: dict[str, Any] | None) -> str:
    """A figure kept from an earlier run says when, on what commit (and machine, when not
    the latest run's) it was measured; one whose pack run was replaced says it is stale."""
    marks = []
    if res.get("measured_at"):
        if f.get("measured_at") != res["measured_at"]:
            when = f.get("measured_at") or f.get("measured") or "at an unrecorded time"
            mark = f"measured {when}, {_commit(f)}"
            if f.get("measured_on") or (f.get("machine") and _cpu(f["machine"]) != _cpu(res["machine"])):
                mark += f" on {f.get('measured_on') or _cpu(f['machine'])}"
            marks.append(mark)
    elif f.get("measured", res["date"]) != res["date"]:  # saved before runs had times
        marks.append(
            f"measured {f['measured']}" + (f" on {f['measured_on']}" if f.get("measured_on") else "")
        )
    if why := _stale(f, pack):
        marks.append(f"STALE: {why}")
    return "".join(f" ({m})" for m in marks)


def growth(results: list[dict[str, Any]]) -> list[str]:
    """Each cohort-wide figure's seconds per 1,000 patients at every size that has it (at least
    two; not the single-patient commands, nor the naive row, whose seconds are the pack's). A
    row whose sizes ran different rule counts names each cell's count: that is not growth."""
    names: list[str] = []
    for r in results:
        for f in r["figures"]:
            if job_of(f["figure"]) in ("cli", "naive") or "ours_s" not in f or f.get("skipped"):
                continue
            if f["figure"] not in names:
                names.append(f["figure"])
    head = "| figure | " + " | ".join(f"{label(r['size'])}: s per 1k patients" for r in results) + " |"
    out = [
        "### Growth with size (time per 1,000 patients; flat = linear)",
        "",
        head,
        "|---|" + "---|" * len(results),
    ]
    mixed = False
    for name in _ordered([{"figure": n} for n in names]):
        found = [
            next((g for g in r["figures"] if g["figure"] == name["figure"] and "ours_s" in g), None)
            for r in results
        ]
        if sum(f is not None for f in found) < 2:
            continue
        counts = {_rules(f) for f in found if f is not None}
        differ = len(counts) > 1 and job_of(name["figure"]) in ("pack", "history", "cli", "naive")
        mixed |= differ
        cells = []
        for r, f in zip(results, found, strict=True):
            if f is None:
                cells.append("–")
                continue
            cell = f"{f['ours_s'] / r['patients'] * 1000:.3f}"
            if differ:
                cell += f" ({_rules(f)} rules)" if _rules(f) else " (rules not recorded)"
            cells.append(cell)
        out.append(f"| {name['figure']} | " + " | ".join(cells) + " |")
    if mixed:
        out += [
            "",
            "A row whose cells name different rule counts compares different packs, not one pack at "
            "different sizes.",
        ]
    return [*out, ""]


def write_readme(results: list[dict[str, Any]]) -> None:
    text = README.read_text(encoding="utf-8")
    block = render(results)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text += "\n" + block + "\n"
    README.write_text(text, encoding="utf-8")


def merge(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """A partial run saved over an earlier one: its figures replace those of the same name;
    the others are kept as they were measured (saved before runs had times: their date,
    runs and machine taken from the file), and the table marks them."""
    mine = {f["figure"] for f in new["figures"]}
    kept = []
    for f in old["figures"]:
        if f["figure"] in mine:
            continue
        f = dict(f)
        if not f.get("measured_at"):
            f.setdefault("measured", old.get("date"))
            f["runs"] = _runs(f, old)
            if old.get("machine") and _cpu(old["machine"]) != _cpu(new["machine"]):
                f.setdefault("measured_on", _cpu(old["machine"]))
        kept.append(f)
    return {**new, "figures": _ordered(kept + new["figures"])}


# ---- command line --------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--size", default="10k", help="10k, 100k, 1M or a number of patients (default 10k)")
    ap.add_argument(
        "--runs", type=int, default=3, help="runs per timed job; medians are reported (default 3)"
    )
    ap.add_argument("--only", default=",".join(JOBS), help=f"comma-separated subset of {', '.join(JOBS)}")
    ap.add_argument(
        "--sample", type=int, default=100, help="patients replayed by the naive evaluator (default 100)"
    )
    ap.add_argument(
        "--no-write",
        action="store_true",
        help="do not save the results or rewrite benchmarks/README.md (the data directory is written either way)",
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    for hidden in ("db", "file", "fmt", "memory-limit"):
        ap.add_argument(f"--{hidden}", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(child(args.child, args), default=str))
        return 0
    if args.runs < 1 or args.sample < 1:
        ap.error("--runs and --sample must be at least 1")
    n = size_of(args.size)
    only = {j.strip() for j in args.only.split(",") if j.strip()}
    if unknown := only - set(JOBS):
        ap.error(f"--only: unknown job(s) {', '.join(sorted(unknown))}; choose from {', '.join(JOBS)}")

    def log(text: str) -> None:
        print(text, flush=True)

    stamp = provenance()
    log(f"run of {stamp['measured_at']}, {_commit(stamp)}")
    result = measure(n, args.runs, only, args.sample, log, stamp["measured_at"])
    here = {**stamp, "machine": machine(), "load_end": load_average()}
    for f in result["figures"]:
        if f["figure"] == NAIVE:
            f["naive_total_s"] = f["naive_per_patient_s"] * result["patients"]
        f.update(here)
    result.update(size=n, **here)
    failures = failed_checks(result["figures"])
    print(render([result]))
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        saved = RESULTS / f"suite-{n}.json"
        if saved.exists() and only != set(JOBS):  # a partial run replaces only its own figures
            result = merge(json.loads(saved.read_text()), result)
        saved.write_text(json.dumps(result, indent=2, default=str))
        write_readme([json.loads(p.read_text()) for p in sorted(RESULTS.glob("suite-*.json"))])
        log(f"results saved to {saved} and {README}")
    for failure in failures:
        print(f"FAILED: {failure}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
