"""The benchmark suite: every figure of the scale issue at one size, beside its anchor.

    python -m benchmarks --size 10k              # 10,000 synthetic patients (~2M events)
    python -m benchmarks --size 100k --runs 3    # ~20M events
    python -m benchmarks --size 1M --only ingest,pack
    python -m benchmarks --size 200 --runs 1 --no-write   # the smoke test's size

For one size it synthesises the cohort (``timeline synth``, seed 1, Parquet and CSV) and then
measures, each job in a fresh child process (its peak RSS from the kernel), the timed jobs
alternating with their anchors run by run so both see the same noise:

- ``ingest``: ``timeline ingest`` of the Parquet and the CSV file vs DuckDB's bare load of the
  same file into a plain table (goal: within 3×);
- ``pack``: the whole sJIA pack at 3 points per patient (first clinical event + 3, 12 and 24
  months), a cohort run, vs one hand-written DuckDB query of a single state for the same
  points — latest CRP ≤ 10 mg/L within 30 days (goal: within 10×);
- ``history``: every patient's history intervals for the whole pack vs the cohort run (3×);
- ``cohort``: ``timeline cohort run`` of the study's cohort file (``examples/valencia/cohort.yaml``:
  population, baseline, outcomes at 3, 6 and 12 months, time to event, adverse events, MAS)
  on the synthetic store, the whole report written as CSV, beside the pack run when both run
  (goal: the issue's peak memory, < 4 GB at 20M events);
- ``cli``: ``timeline state`` and ``timeline explain`` for one patient, whole process, vs
  ``python -c "import duckdb"`` (2×), after one untimed run of each (bytecode and the rule
  cache written, as after a user's first command); the first run after the rules change, with
  the cache off, is logged beside them;
- ``aces``: ``benchmarks.aces_compare`` on the same synthetic data (faster, less memory, same
  answers);
- ``naive``: the plain-Python per-patient replay (``timeline.engine.replay`` in its naive mode,
  every lookup scanning the patient's events) of the whole pack on a sample of patients,
  extrapolated to all, vs the pack run; its answers are checked against the engine's on the
  sample.

Medians of ``--runs`` runs. The figures are saved to ``benchmarks/results/suite-N.json`` and,
unless ``--no-write``, the "Suite" section of ``benchmarks/README.md`` is rewritten from every
saved size (with the machine, and the growth from one size to the next).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import ingest
from benchmarks.aces_compare import vm_hwm_mib

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
DATA = HERE / "data"
RESULTS = HERE / "results"
README = HERE / "README.md"
BEGIN, END = "<!-- suite:begin -->", "<!-- suite:end -->"
SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000}
JOBS = ("ingest", "pack", "history", "cohort", "cli", "aces", "naive")
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


# ---- child processes ----------------------------------------------------------------------


def child(job: str, args: argparse.Namespace) -> dict[str, Any]:
    """One measured job, in this (fresh) process. Returns what it found and its seconds."""
    import duckdb

    started = time.perf_counter()
    out: dict[str, Any] = {}
    if job == "bare-load":
        ingest.bare_load(Path(args.file), args.fmt, Path(args.db))
    elif job == "ingest":
        out["added"] = ingest.our_ingest(Path(args.file), args.fmt, Path(args.db))
    elif job == "append":  # one part of a store built in parts (see build_store)
        from timeline.ingest import ingest_file
        from timeline.store import Store

        db = Path(args.db)
        with Store.open(db, write=True) if db.exists() else Store.create(db) as s:
            out["added"] = ingest_file(s, Path(args.file), author="benchmark").added
    elif job == "anchor":
        con = duckdb.connect(args.db, read_only=True)
        found = con.execute(ANCHOR).fetchone()
        out["crp_normal"], out["points"] = found if found else (0, 0)
        con.close()
    elif job == "cohort":  # the command a user runs, in this process: report written as CSV
        from cli.main import main as cli_main

        sys.argv = ["timeline", "cohort", "run", str(COHORT), "--store", args.db, "--csv", args.file]
        try:
            cli_main()
        except SystemExit as done:
            if done.code:
                raise
        out["cells"] = (
            sum(1 for line in Path(args.file).read_text().splitlines() if not line.startswith("#")) - 1
        )
    elif job in ("pack", "history"):
        from timeline.engine.evaluate import Session
        from timeline.language.loader import load_rules
        from timeline.store import Store

        with Store.open(args.db) as s:
            session = Session(s, load_rules())
            if job == "pack":
                # the cohort run set-based, its states left in DuckDB (10.8M at 100k patients
                # would be ~2.5 GB of Python objects; Session.evaluate returns those)
                out["results"] = session.states(POINTS)
                found = s.con.execute(
                    "SELECT count(*) FILTER (WHERE b IS NOT NULL OR x IS NOT NULL) FROM tl_states"
                ).fetchone()
                out["known"] = found[0] if found else 0
            else:
                out["intervals"] = session.histories()
    out["seconds"] = time.perf_counter() - started
    out["hwm_mib"] = vm_hwm_mib()
    return out


def run_child(job: str, **kw: Any) -> dict[str, Any]:
    """Run ``job`` in a fresh interpreter; its report plus wall time and peak RSS (MiB)."""
    cmd = [sys.executable, "-m", "benchmarks.suite", "--child", job]
    for k, v in kw.items():
        cmd += [f"--{k}", str(v)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise SystemExit(f"benchmark job {job} failed ({proc.returncode}):\n{err.decode()[-3000:]}")
    report: dict[str, Any] = json.loads(out.decode().strip().splitlines()[-1])
    report["wall"] = wall
    report["rss_mib"] = report.pop("hwm_mib", None) or 0.0
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
            log(
                f"  run {i + 1} {name:<12} {report['seconds']:8.2f} s  wall {report['wall']:8.2f} s  peak {report['rss_mib']:7.0f} MiB"
            )
    return out


def repeated(job: str, runs: int, log: Callable[[str], None], **kw: Any) -> list[dict[str, Any]]:
    """Run ``job`` (without an anchor) ``runs`` times, logging each run."""
    out = []
    for i in range(runs):
        report = run_child(job, **kw)
        out.append(report)
        log(f"  run {i + 1} {job:<12} {report['seconds']:8.2f} s  peak {report['rss_mib']:7.0f} MiB")
    return out


def med(reports: list[dict[str, Any]], key: str = "seconds") -> float:
    return float(statistics.median(r[key] for r in reports))


def figure(
    name: str,
    ours: list[dict[str, Any]],
    anchor: list[dict[str, Any]] | None,
    anchor_name: str,
    goal: str,
    **extra: Any,
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "figure": name,
        "ours_s": med(ours),
        "ours_rss_mib": med(ours, "rss_mib"),
        "anchor": anchor_name,
        "goal": goal,
        **extra,
    }
    if anchor:
        row["anchor_s"] = med(anchor)
        row["anchor_rss_mib"] = med(anchor, "rss_mib")
        row["ratio"] = float(
            statistics.median(o["seconds"] / a["seconds"] for o, a in zip(ours, anchor, strict=True))
        )
    return row


def measure(n: int, runs: int, only: set[str], sample: int, log: Callable[[str], None]) -> dict[str, Any]:
    from timeline.synth import synthesize

    root = DATA / f"suite-{n}"
    root.mkdir(parents=True, exist_ok=True)
    files = {fmt: root / f"events.{fmt}" for fmt in ("parquet", "csv")}
    for fmt, path in files.items():
        # the CSV copy only serves the ingest figure (1M patients: ~15 GB, minutes to write)
        if not path.exists() and (fmt == "parquet" or "ingest" in only):
            log(f"synthesising {n:,} patients → {path.name}")
            synthesize(patients=n, seed=1, out=path)
    store = root / "store.duckdb"
    if not store.exists():
        build_store(files["parquet"], store, log)
    import duckdb

    with duckdb.connect(str(store), read_only=True) as con:
        found = con.execute("SELECT count(*), count(DISTINCT patient_id) FROM events").fetchone()
        events, patients = found if found else (0, 0)
    result: dict[str, Any] = {"patients": patients, "events": events, "runs": runs, "figures": []}
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
    if only & {"pack", "history", "naive"}:
        log("whole sJIA pack at 3 points per patient (cohort run) vs one hand-written query")
        got = alternate(
            runs,
            {"pack": lambda: run_child("pack", db=store), "anchor": lambda: run_child("anchor", db=store)},
            log,
        )
        pack = figure(
            "whole sJIA pack, 3 points per patient",
            got["pack"],
            got["anchor"],
            "one hand-written query of one state",
            "≤ 10×",
            results=got["pack"][0]["results"],
        )
        if "pack" in only:
            figures.append(pack)

    if "history" in only and pack is not None:
        log("every patient's history, whole pack")
        hist = repeated("history", runs, log, db=store)
        f = figure(
            "history intervals of every patient, whole pack",
            hist,
            None,
            "the cohort run above",
            "≤ 3×",
            intervals=hist[0]["intervals"],
        )
        f["anchor_s"], f["ratio"] = pack["ours_s"], f["ours_s"] / pack["ours_s"]
        figures.append(f)

    if "cohort" in only:
        log("timeline cohort run, the study's cohort file (examples/valencia/cohort.yaml)")
        out = root / "cohort.csv"
        got = repeated("cohort", runs, log, db=store, file=out)
        f = figure(
            "`timeline cohort run` of the study's cohort file, whole report",
            got,
            None,
            "the whole pack above" if pack is not None else "–",
            "peak < 4 GB at 20M events; 200M completes",
            cells=got[0]["cells"],
        )
        if pack is not None:
            f["anchor_s"], f["ratio"] = pack["ours_s"], f["ours_s"] / pack["ours_s"]
        figures.append(f)
        _remove(out)

    if "cli" in only:
        figures += cli_figures(store, runs, log)

    if "naive" in only and pack is not None:
        figures.append(naive_figure(store, sample, pack, log))

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
        out.append({
            "figure": f"`{name}` one patient, whole pack, whole process", "ours_s": statistics.median(times[name]),
            "anchor": "`python -c \"import duckdb\"`", "anchor_s": base, "ratio": statistics.median(ratios), "goal": "≤ 2×",
        })  # fmt: skip
    return out


def naive_figure(
    store: Path, sample: int, pack: dict[str, Any], log: Callable[[str], None]
) -> dict[str, Any]:
    """The plain-Python replay (timeline.engine.replay) in its naive mode — every lookup scans
    the patient's whole event list — per patient, on a sample; checked against the engine on
    the same points."""
    sys.path.insert(0, str(ROOT))
    from timeline.engine.evaluate import Session
    from timeline.engine.replay import Reference
    from timeline.language.loader import load_rules
    from timeline.store import Store

    rules = load_rules()
    with Store.open(store) as s:
        session = Session(s, rules)
        everyone = [
            r[0] for r in s.con.execute("SELECT DISTINCT patient_id FROM events ORDER BY 1").fetchall()
        ]
        chosen = sorted(random.Random(1).sample(everyone, min(sample, len(everyone))))
        s.con.execute("CREATE OR REPLACE TEMP TABLE tl_sample (patient_id VARCHAR)")
        s.con.executemany("INSERT INTO tl_sample VALUES (?)", [[p] for p in chosen])
        points = [
            (p, q)
            for p, q in s.con.execute(
                f"SELECT patient_id, q FROM ({POINTS}) WHERE patient_id IN (SELECT patient_id FROM tl_sample) ORDER BY ALL"
            ).fetchall()
        ]
        log(f"naive per-patient replay of the whole pack: {len(chosen)} patients sampled")
        started = time.perf_counter()
        naive: dict[tuple[str, Any, str], Any] = {}
        for pid in chosen:
            ref = Reference(rules, s.events(pid), naive=True)
            for p, q in points:
                if p != pid:
                    continue
                for rid in rules.order:
                    naive[(pid, q, rid)] = ref.rule(rid, q).value
        seconds = time.perf_counter() - started
        engine = {(r.patient_id, r.q, r.rule_id): r.value for r in session.evaluate(points, evidence=False)}
    differ = sorted(k for k in naive if not _same(naive[k], engine.get(k)))
    per_patient = seconds / max(len(chosen), 1)
    log(
        f"  {seconds:.1f} s for {len(chosen)} patients ({per_patient:.3f} s each); {len(differ)} of {len(naive)} answers differ from the engine"
    )
    return {
        "figure": "naive per-patient Python replay, whole pack, 3 points", "ours_s": pack["ours_s"],
        "anchor": f"plain-Python replay, {per_patient:.3f} s per patient (sample of {len(chosen)})",
        "naive_per_patient_s": per_patient, "sample": len(chosen),
        "answers_compared": len(naive), "answers_differ": len(differ), "differ_examples": [list(map(str, k)) for k in differ[:5]],
        "goal": "show the speed-up",
    }  # fmt: skip


def _ordered(figures: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Figures in the order of the suite's jobs."""
    keys = (
        "ingest",
        "whole sJIA pack",
        "history",
        "`timeline cohort run",
        "`timeline state",
        "`timeline explain",
        "naive",
        "window task",
    )
    return sorted(
        figures, key=lambda f: next((i for i, k in enumerate(keys) if f["figure"].startswith(k)), len(keys))
    )


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float) and a != b:
        return abs(a - b) <= 1e-6 * max(1.0, abs(a))
    return bool(a == b)


def aces_figure(n: int, runs: int, root: Path, log: Callable[[str], None]) -> dict[str, Any]:
    try:
        import aces  # noqa: F401
    except ImportError:
        log("aces: es-aces is not installed (pip install -e '.[bench]'); skipped")
        return {
            "figure": "window task vs ACES",
            "skipped": "es-aces not installed",
            "goal": "faster, less memory",
        }
    log("one window task, timeline vs ACES on the MEDS export (benchmarks.aces_compare)")
    data = root / "aces"
    cmd = [sys.executable, "-m", "benchmarks.aces_compare", "--patients", str(n), "--source", "synth"]
    cmd += ["--runs", str(runs), "--data", str(data)]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        log("  " + line)
    if not (data / "result.json").exists():
        raise SystemExit(f"aces_compare failed:\n{proc.stderr[-3000:]}")
    res = json.loads((data / "result.json").read_text())
    m = res["median"]
    return {
        "figure": "window task (fever 0–90 d after first anakinra, none 90–120 d)", "ours_s": m["timeline"]["wall"],
        "ours_rss_mib": m["timeline"]["rss"], "anchor": "ACES (es-aces) on the MEDS export", "anchor_s": m["aces"]["wall"],
        "anchor_rss_mib": m["aces"]["rss"], "ratio": m["timeline"]["wall"] / m["aces"]["wall"],
        "agree": res["agreement"]["agree"], "goal": "faster and less memory, same answers",
    }  # fmt: skip


# ---- the README section -----------------------------------------------------------------------


def machine() -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return f"{ingest.machine()}; load average {load:.1f} at the end"


def _s(x: float | None) -> str:
    if x is None:
        return "–"
    return f"{x:.3f} s" if x < 10 else f"{x:.1f} s"


def _mib(x: float | None) -> str:
    return "–" if not x else f"{x:,.0f} MiB"


def render(results: list[dict[str, Any]]) -> str:
    lines = [BEGIN, "", "_Written by `python -m benchmarks`; do not edit by hand._", ""]
    for res in sorted(results, key=lambda r: r["patients"]):
        lines += [
            f"### {label(res['size'])} patients ({res['patients']:,} patients, {res['events']:,} events; {res['runs']} run(s)"
            + "".join(f", {job}: {k}" for job, k in res.get("runs_by_job", {}).items() if k != res["runs"])
            + f", medians; {res['date']})",
            "",
            f"Machine: {res['machine']}.",
            "",
            "| figure | timeline | peak RSS | anchor | anchor time | anchor peak RSS | ratio | goal |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for f in res["figures"]:
            if f.get("skipped"):
                lines.append(f"| {f['figure']} | skipped: {f['skipped']} | | | | | | {f['goal']} |")
                continue
            ours = _s(f.get("ours_s"))
            if "ours_rate" in f:
                ours += f" ({f['ours_rate']:,.0f} ev/s)"
            anchor_t = _s(f.get("anchor_s"))
            if "anchor_rate" in f:
                anchor_t += f" ({f['anchor_rate']:,.0f} ev/s)"
            ratio = f"{f['ratio']:.2f}×" if "ratio" in f else "–"
            if f.get("naive_total_s"):
                anchor_t = _s(f["naive_total_s"]) + " (extrapolated)"
                ratio = f"{f['naive_total_s'] / f['ours_s']:.0f}× faster; {f['answers_differ']} of {f['answers_compared']:,} answers differ"
            if "agree" in f:
                ratio += ", answers agree" if f["agree"] else ", ANSWERS DISAGREE"
            name = f["figure"]
            if f.get("measured", res["date"]) != res["date"]:  # kept from an earlier partial run
                name += (
                    f" (measured {f['measured']}"
                    + (f" on {f['measured_on']}" if f.get("measured_on") else "")
                    + ")"
                )
            lines.append(
                f"| {name} | {ours} | {_mib(f.get('ours_rss_mib'))} | {f['anchor']} | {anchor_t} | {_mib(f.get('anchor_rss_mib'))} | {ratio} | {f['goal']} |"
            )
        lines.append("")
    if len(results) > 1:
        lines += growth(sorted(results, key=lambda r: r["patients"]))
    lines.append(END)
    return "\n".join(lines)


def growth(results: list[dict[str, Any]]) -> list[str]:
    names = [f["figure"] for f in results[0]["figures"] if "ours_s" in f and not f.get("skipped")]
    head = "| figure | " + " | ".join(f"{label(r['size'])}: s per 1k patients" for r in results) + " |"
    out = [
        "### Growth with size (time per 1,000 patients; flat = linear)",
        "",
        head,
        "|---|" + "---|" * len(results),
    ]
    for name in names:
        cells = []
        for r in results:
            f = next((g for g in r["figures"] if g["figure"] == name and "ours_s" in g), None)
            cells.append(f"{f['ours_s'] / r['patients'] * 1000:.3f}" if f else "–")
        out.append(f"| {name} | " + " | ".join(cells) + " |")
    return [*out, ""]


def write_readme(results: list[dict[str, Any]]) -> None:
    text = README.read_text(encoding="utf-8")
    block = render(results)
    if BEGIN in text and END in text:
        text = text[: text.index(BEGIN)] + block + text[text.index(END) + len(END) :]
    else:
        text += "\n" + block + "\n"
    README.write_text(text, encoding="utf-8")


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
        "--no-write", action="store_true", help="do not save the results or rewrite benchmarks/README.md"
    )
    ap.add_argument("--child", help=argparse.SUPPRESS)
    for hidden in ("db", "file", "fmt"):
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

    result = measure(n, args.runs, only, args.sample, log)
    for f in result["figures"]:
        if f.get("figure", "").startswith("naive"):
            f["naive_total_s"] = f["naive_per_patient_s"] * result["patients"]
    result.update(size=n, machine=machine(), date=time.strftime("%Y-%m-%d"))
    for f in result["figures"]:
        f["measured"] = result["date"]
    print(render([result]))
    # the single-patient commands are timed at least 5 times, whatever --runs says
    result["runs_by_job"] = {job: max(args.runs, 5) if job == "cli" else args.runs for job in sorted(only)}
    if not args.no_write:
        RESULTS.mkdir(exist_ok=True)
        saved = RESULTS / f"suite-{n}.json"
        if saved.exists() and only != set(JOBS):  # a partial run replaces only its own figures
            old = json.loads(saved.read_text())
            mine = {f["figure"] for f in result["figures"]}
            kept = [f for f in old["figures"] if f["figure"] not in mine]
            for f in kept:  # figures of an earlier run keep the date and machine they were measured on
                f.setdefault("measured", old["date"])
                if old["machine"].split(";")[0] != result["machine"].split(";")[0]:
                    f.setdefault("measured_on", old["machine"].split(";")[0])
            result["figures"] = _ordered(kept + result["figures"])
            result["partial"] = sorted({*old.get("partial", []), *only})
            result["runs_by_job"] = {**old.get("runs_by_job", {}), **result["runs_by_job"]}
            result["runs"] = old["runs"]
        saved.write_text(json.dumps(result, indent=2, default=str))
        write_readme([json.loads(p.read_text()) for p in sorted(RESULTS.glob("suite-*.json"))])
        log(f"results saved to {RESULTS / f'suite-{n}.json'} and {README}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
