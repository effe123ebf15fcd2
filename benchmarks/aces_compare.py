"""ACES comparison: one window task over the same data, in timeline and in ACES (es-aces).

The task: with T the first anakinra dose, fever in (T, T + 90 days] and no fever in
(T + 90 days, T + 120 days]; fever = body temperature >= 38.0 Cel or a fever finding recorded
as present.

* **timeline**: the rule ``benchmarks/rules/fever_after_anakinra.yaml`` evaluated with
  :class:`timeline.engine.evaluate.Session` for every patient at T + 120 days in one set-based
  query (the points come from SQL over the store).
* **ACES**: the task config :data:`ACES_TASK` (a trigger on every anakinra start, a window
  from the start of the record that must hold no earlier anakinra start, then the two
  windows) over the MEDS export of the same store (``timeline export --format meds``), shard
  by shard through ACES's Python API (``predicates.get_predicates_df`` + ``query.query``),
  as ``aces-cli data=sharded`` would run it. ACES is given the MEDS core columns only
  (subject_id, time, code, numeric_value, text_value): it reads every column of a shard, and
  our export's ``native`` column (the lossless record) would cost it time and memory that is
  no part of the task.

Each side runs in its own child process, alternately, ``--runs`` times; the parent takes the
wall time of the child (interpreter start and imports included), the child reports the time of
the work alone (its imports, load and evaluate) and its own peak resident set size (VmHWM from
``/proc/self/status``: the peak since exec; ``ru_maxrss`` from ``wait4`` would start from the
parent's high-water mark). The medians of each are printed, and the ratios timeline / ACES as
the median of the per-run ratios (below 1: timeline faster or smaller), as the suite gives
every ratio. The answers of every run are compared per patient: the patients for which the
rule is true must be exactly the patients ACES returns, with ACES's trigger equal to T. The
exit status is 1 when any run's answers disagree (``result.json`` then says which run and
how), 0 when all agree; ``result.json`` is removed first and written only at the end, so a
crash leaves none.

    python -m benchmarks.aces_compare --patients 10000 --runs 3
    python -m benchmarks.aces_compare --patients 200 --runs 1      # quick

Data: ``benchmarks.gen`` writes ``200 × N`` events (a deterministic mix of labs, temperatures,
findings, medications, ...), or with ``--source synth`` ``timeline.synth`` writes N synthetic
sJIA patients (seed 1); they are ingested into ``benchmarks/data/aces-v1-[synth-]N/store.duckdb``
(or ``--data``) and exported to ``meds/`` beside it. ``prepared.json`` there records what the
data is made of (:func:`data_version`: the generator's SQL and DuckDB's version, the store's
schema, the shard size); the data is reused while that matches this code and rebuilt when it
does not. Needs the ``bench`` extra: ``pip install -e '.[bench]'``.
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
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb

from benchmarks import gen

HERE = Path(__file__).resolve().parent
RULES = HERE / "rules"
RULE_ID = "fever_after_anakinra"
FOLLOW_UP_DAYS = 120
DATA_VERSION = 1  # bump when the data or the export changes, so cached stores are rebuilt

ACES_TASK = """\
description: >
  With T the first anakinra dose: fever in (T, T + 90 days] and no fever in
  (T + 90 days, T + 120 days]. Fever = body temperature >= 38.0 Cel or a fever finding.
  The same task as benchmarks/rules/fever_after_anakinra.yaml.
predicates:
  anakinra_start:
    code: {regex: "^MEDICATION_START//anakinra//"}
  febrile_temperature:
    code: BODY_TEMPERATURE//Cel
    value_min: 38.0
    value_min_inclusive: true
  fever_finding:
    code: FINDING//fever//present
  fever:
    expr: or(febrile_temperature, fever_finding)
trigger: anakinra_start
windows:
  before:                     # no earlier anakinra start: the trigger is the first dose
    start: null
    end: trigger
    start_inclusive: true
    end_inclusive: false
    has:
      anakinra_start: (None, 0)
  early:                      # (T, T + 90 days]
    start: trigger
    end: start + 90d
    start_inclusive: false
    end_inclusive: true
    has:
      fever: (1, None)
  late:                       # (T + 90 days, T + 120 days]
    start: early.end
    end: start + 30d
    start_inclusive: false
    end_inclusive: true
    has:
      fever: (None, 0)
"""

CORE_COLUMNS = ("subject_id", "time", "code", "numeric_value", "text_value")


# ---- data ------------------------------------------------------------------------------


def data_root(patients: int, source: str, base: Path | None) -> Path:
    tag = "" if source == "gen" else f"{source}-"
    return base or gen.DATA / f"aces-v{DATA_VERSION}-{tag}{patients}"


def data_version(patients: int, source: str, shard_rows: int) -> dict[str, Any]:
    """What a prepared data directory is made of; it is reused only while this matches."""
    from timeline import __version__
    from timeline.store import SCHEMA_VERSION

    events = (
        gen.fingerprint("synth", patients) if source == "synth" else gen.fingerprint("gen", patients * 200)
    )
    return {
        "layout": DATA_VERSION,
        "source": source,
        "patients": patients,
        "events": events,
        "shard_rows": shard_rows,
        "store_schema": SCHEMA_VERSION,
        "timeline": __version__,
    }


def prepare(
    patients: int, base: Path | None = None, shard_rows: int = 1_000_000, source: str = "gen"
) -> dict[str, Any]:
    """Build (or reuse) the store, its MEDS export and the core-column copy for ACES. The
    events come from ``benchmarks.gen`` or, with ``source="synth"``, from
    ``timeline.synth.synthesize`` (clinic visits, anakinra courses, flares). What is there is
    reused only when ``prepared.json`` records the :func:`data_version` of this code."""
    from timeline.ingest import ingest_file
    from timeline.meds import export_meds
    from timeline.store import Store

    root = data_root(patients, source, base)
    root.mkdir(parents=True, exist_ok=True)
    store, meds, core = root / "store.duckdb", root / "meds", root / "meds-core"
    info_file = root / "prepared.json"
    version = data_version(patients, source, shard_rows)
    if info_file.exists() and store.exists() and meds.exists() and core.exists():
        info: dict[str, Any] = json.loads(info_file.read_text())
        if info.get("version") == version:
            return info
    info_file.unlink(missing_ok=True)  # whatever is there is not what this code would build
    events = root / "events.parquet"
    for p in (store, meds, core, events):
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    if source == "synth":
        from timeline.synth import synthesize

        synthesize(patients=patients, seed=1, out=events)
    else:
        events = gen.generate(patients * 200, "parquet", events)
    t0 = time.perf_counter()
    with Store.create(store) as s:
        added = ingest_file(s, events, author="aces benchmark").added
    t1 = time.perf_counter()
    with Store.open(store) as s:
        exported = export_meds(s, meds, shard_rows=shard_rows)
    t2 = time.perf_counter()
    (core / "data").mkdir(parents=True)
    shutil.copytree(meds / "metadata", core / "metadata")
    con = duckdb.connect()
    for shard in exported.shards:
        con.execute(
            f"COPY (SELECT {', '.join(CORE_COLUMNS)} FROM read_parquet('{meds / shard['file']}')) "
            f"TO '{core / shard['file']}' (FORMAT parquet, COMPRESSION zstd)"
        )
    con.close()
    info = {
        "version": version,
        "source": source,
        "patients": patients,
        "events": added,
        "meds_rows": exported.rows,
        "shards": len(exported.shards),
        "ingest_seconds": round(t1 - t0, 2),
        "export_seconds": round(t2 - t1, 2),
        "meds_mib": round(_size(meds / "data") / 2**20, 1),
        "core_mib": round(_size(core / "data") / 2**20, 1),
    }
    info_file.write_text(json.dumps(info, indent=2))
    return info


def _size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


# ---- the two sides (each run in a child process) -------------------------------------------


def timeline_answers(store_path: Path, memory_limit: str | None = None) -> list[dict[str, Any]]:
    """Every patient with an anakinra start: the rule's value at T + 120 days. With
    ``memory_limit``, DuckDB's own limit (default: 80% of RAM) is set first; while it
    evaluates, the engine lowers whichever limit is set to its cap (2 GiB) if it is higher."""
    from timeline.engine.evaluate import Session
    from timeline.language.loader import load_rules
    from timeline.store import Store

    rules = load_rules([RULES])
    with Store.open(store_path) as store:
        if memory_limit:
            store.con.execute(f"SET memory_limit = '{memory_limit}'")
        sess = Session(store, rules)
        points = f"""SELECT patient_id, min(occurred_at) + INTERVAL {FOLLOW_UP_DAYS} DAY AS q
            FROM ({store.current_sql(sess.high_water, kinds=["medication_start"], columns=["patient_id", "occurred_at", "drug"])})
            WHERE drug = 'anakinra' GROUP BY patient_id"""
        # values only, like ACES: evidence is for explaining one patient, not for a cohort
        results = sess.evaluate(None, [RULE_ID], points_sql=points, evidence=False)
    return [
        {
            "patient_id": r.patient_id,
            "trigger": (r.q - _days(FOLLOW_UP_DAYS)).isoformat(),
            "value": r.value,
        }
        for r in results
    ]


def aces_answers(meds_dir: Path, task_file: Path) -> list[dict[str, Any]]:
    """The (subject_id, trigger) pairs ACES returns, shard by shard."""
    import logging

    from aces import config, predicates, query
    from omegaconf import DictConfig

    logging.disable(logging.INFO)
    out: list[dict[str, Any]] = []
    for shard in sorted((meds_dir / "data").glob("*.parquet")):
        # A fresh config for every shard: query() changes the config it is given, and a second
        # query with the same config object answers differently (es-aces 0.7.3, polars 1.44).
        cfg = config.TaskExtractorConfig.load(config_path=task_file)
        data = DictConfig({"path": str(shard), "standard": "meds"})
        df = predicates.get_predicates_df(cfg, data)
        result = query.query(cfg, df)
        for sid, trig in result.select("subject_id", "trigger").iter_rows():
            out.append({"subject_id": int(sid), "trigger": trig.isoformat()})
    return out


def _days(n: int) -> Any:
    from datetime import timedelta

    return timedelta(days=n)


def child(args: argparse.Namespace) -> None:
    t0 = time.perf_counter()
    if args.child == "timeline":
        answers = timeline_answers(Path(args.store), args.timeline_memory_limit)
    else:
        answers = aces_answers(Path(args.meds), Path(args.task))
    seconds = time.perf_counter() - t0
    Path(args.out).write_text(json.dumps(answers))
    print(json.dumps({"seconds": seconds, "answers": len(answers), "hwm_mib": vm_hwm_mib()}))


def vm_hwm_mib() -> float | None:
    """This process's peak resident set since exec (Linux). Unlike ru_maxrss, it does not
    start from the RSS of the parent at fork time."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def run_child(argv: list[str]) -> tuple[float, float | None, dict[str, Any]]:
    """(wall seconds, peak RSS MiB, the child's own report) of one child process. The peak is
    the child's own VmHWM (None where the system has none: ``ru_maxrss`` is no substitute, it
    starts from the parent's high-water mark)."""
    started = time.perf_counter()
    # both pipes read together (communicate): a child writing more than a pipe holds to
    # stderr would otherwise block while we wait on its stdout
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.aces_compare", *argv], capture_output=True, cwd=HERE.parent
    )
    wall = time.perf_counter() - started
    if proc.returncode != 0:
        raise RuntimeError(f"child {argv[:2]} failed ({proc.returncode}):\n{proc.stderr.decode()[-3000:]}")
    report: dict[str, Any] = json.loads(proc.stdout.decode().strip().splitlines()[-1])
    peak = report.get("hwm_mib")
    return wall, None if peak is None else float(peak), report


# ---- agreement ----------------------------------------------------------------------------


def compare(
    ours: list[dict[str, Any]], theirs: list[dict[str, Any]], subject_map: dict[int, str]
) -> dict[str, Any]:
    """Patients true in timeline vs patients ACES returns (and the trigger times)."""
    true = {a["patient_id"]: a["trigger"] for a in ours if a["value"] is True}
    unknown = sorted(a["patient_id"] for a in ours if a["value"] is None)
    aces: dict[str, list[str]] = {}
    for a in theirs:
        aces.setdefault(subject_map[a["subject_id"]], []).append(a["trigger"])
    only_ours = sorted(set(true) - set(aces))
    only_aces = sorted(set(aces) - set(true))
    trigger_mismatch = sorted(p for p in set(true) & set(aces) if aces[p] != [true[p]])
    return {
        "patients_with_trigger": len(ours),
        "true_timeline": len(true),
        "returned_aces": len(aces),
        "unknown_timeline": unknown,
        "only_timeline": only_ours,
        "only_aces": only_aces,
        "trigger_mismatch": trigger_mismatch,
        "agree": not (only_ours or only_aces or trigger_mismatch or unknown),
    }


def subject_map(meds_dir: Path) -> dict[int, str]:
    rows = duckdb.sql(
        f"SELECT subject_id, patient_id FROM '{meds_dir}/metadata/subject_ids.parquet'"
    ).fetchall()
    return {int(s): str(p) for s, p in rows}


# ---- main -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--shard-rows", type=int, default=1_000_000, help="MEDS shard size (rows) of the export")
    ap.add_argument("--data", type=Path, default=None, help="directory for the store and exports")
    ap.add_argument(
        "--source",
        choices=["gen", "synth"],
        default="gen",
        help="event generator: benchmarks.gen or timeline.synth",
    )
    ap.add_argument(
        "--timeline-memory-limit",
        metavar="SIZE",
        help="DuckDB memory_limit for the timeline side, e.g. 800MB (default: DuckDB's, 80%% of RAM, "
        "which the engine lowers to its own cap of 2 GiB while it evaluates)",
    )
    ap.add_argument("--prepare-only", action="store_true", help="only build the store and the exports")
    ap.add_argument("--child", choices=["timeline", "aces"], help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    ap.add_argument("--meds", help=argparse.SUPPRESS)
    ap.add_argument("--task", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        child(args)
        return 0

    if args.prepare_only:
        prepare(args.patients, args.data, args.shard_rows, args.source)
        return 0
    root = data_root(args.patients, args.source, args.data)
    # the previous run's result must not outlive a run that fails: it is written at the end
    (root / "result.json").unlink(missing_ok=True)
    # Build the data in a child process: the parent stays small, so that nothing of the
    # ingest's memory is counted in the children measured after it.
    prep = [
        sys.executable,
        "-m",
        "benchmarks.aces_compare",
        "--prepare-only",
        "--patients",
        str(args.patients),
    ]
    prep += ["--shard-rows", str(args.shard_rows), "--source", args.source]
    prep += ["--data", str(args.data)] if args.data else []
    subprocess.run(prep, check=True, cwd=HERE.parent)
    info = prepare(args.patients, args.data, args.shard_rows, args.source)  # reads prepared.json
    task = root / "aces_task.yaml"
    task.write_text(ACES_TASK)
    print(
        f"data ({info.get('source', 'gen')}): {info['patients']:,} patients, {info['events']:,} events, {info['meds_rows']:,} MEDS rows "
        f"in {info['shards']} shard(s) ({info['core_mib']} MiB core columns, {info['meds_mib']} MiB with native); "
        f"ingest {info['ingest_seconds']} s, export {info['export_seconds']} s"
    )
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"duckdb {duckdb.__version__}; timeline memory_limit: "
        + (
            args.timeline_memory_limit
            or "DuckDB's default, lowered to the engine's 2 GiB cap while it evaluates"
        )
    )
    sides = {
        "timeline": ["--child", "timeline", "--store", str(root / "store.duckdb")]
        + (["--timeline-memory-limit", args.timeline_memory_limit] if args.timeline_memory_limit else []),
        "aces": ["--child", "aces", "--meds", str(root / "meds-core"), "--task", str(task)],
    }
    result = measure_runs(sides, args.runs, root, subject_map(root / "meds"))
    med = result["median"]
    for side in sides:
        m = med[side]
        print(f"{side:<8} median: wall {m['wall']:.2f} s, work {m['work']:.2f} s, peak RSS {_mib(m['rss'])}")
    r = result["ratio"]
    print(
        "ratio timeline / ACES, median of the per-run ratios (below 1: timeline faster or smaller): "
        f"wall {r['wall']:.2f}x, work {r['work']:.2f}x, peak RSS "
        + ("n/a" if r["rss"] is None else f"{r['rss']:.2f}x")
    )
    for i, agreement in enumerate(result["agreements"]):
        print(
            f"answers, run {i + 1}: {agreement['patients_with_trigger']:,} patients with an anakinra start; "
            f"true in timeline {agreement['true_timeline']:,}, returned by ACES {agreement['returned_aces']:,}; "
            + ("agree" if agreement["agree"] else "DISAGREE")
        )
        for key in ("unknown_timeline", "only_timeline", "only_aces", "trigger_mismatch"):
            if agreement[key]:
                print(f"  {key}: {len(agreement[key])}: {', '.join(agreement[key][:10])}")
    (root / "result.json").write_text(json.dumps({"data": info, **result}, indent=2))
    return 0 if result["agree"] else 1


def measure_runs(
    sides: dict[str, list[str]],
    runs: int,
    root: Path,
    subjects: dict[int, str],
    run: Callable[[list[str]], tuple[float, float | None, dict[str, Any]]] = run_child,
) -> dict[str, Any]:
    """Run both sides ``runs`` times, alternating which goes first, and compare the answers of
    every run (each side's answers of run i against the other's of run i). Returns the runs'
    wall, work and peak RSS per side, their medians, the medians of the per-run ratios
    timeline / ACES, each run's agreement and whether all agree."""
    measured: dict[str, dict[str, list[Any]]] = {s: {"wall": [], "work": [], "rss": []} for s in sides}
    agreements = []
    for i in range(runs):
        answers: dict[str, list[dict[str, Any]]] = {}
        for side in sides if i % 2 == 0 else reversed(list(sides)):
            out = root / f"answers-{side}.json"
            out.unlink(missing_ok=True)
            wall, rss, report = run([*sides[side], "--out", str(out)])
            measured[side]["wall"].append(wall)
            measured[side]["work"].append(float(report["seconds"]))
            measured[side]["rss"].append(rss)
            answers[side] = json.loads(out.read_text())
            print(
                f"  run {i + 1} {side:<8} wall {wall:7.2f} s  work {report['seconds']:7.2f} s  peak RSS {_mib(rss)}",
                flush=True,
            )
        agreements.append(compare(answers["timeline"], answers["aces"], subjects))
    ours, theirs = measured["timeline"], measured["aces"]
    return {
        "runs": measured,
        "median": {s: {k: _median(v) for k, v in m.items()} for s, m in measured.items()},
        "max_rss": {s: None if None in m["rss"] else max(m["rss"]) for s, m in measured.items()},
        "ratio": {k: _median([_div(o, a) for o, a in zip(ours[k], theirs[k], strict=True)]) for k in ours},
        "agreements": agreements,
        # the first disagreeing run's, else the last run's: what the suite shows
        "agreement": next((a for a in agreements if not a["agree"]), agreements[-1]),
        "agree": all(a["agree"] for a in agreements),
    }


def _median(values: list[float | None]) -> float | None:
    return None if None in values else float(statistics.median(v for v in values if v is not None))


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def _mib(x: float | None) -> str:
    return "n/a" if x is None else f"{x:8.1f} MiB"


if __name__ == "__main__":
    sys.exit(main())
