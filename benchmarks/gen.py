"""Deterministic generator of realistic native-format event files (CSV and Parquet).

The rows are produced by one SQL query over ``range(N)`` and written by DuckDB's ``COPY``,
so a 10M-event file is written in seconds and without Python memory growth. The same N
always gives the same file (a fixed integer hash of the row number drives every choice).

The mix per 100 events (after one ``birth`` per patient, which opens the file): 40 labs
(13 LOINC codes in several units: CRP in mg/L and mg/dL, platelets in 10*9/L and 10*3/uL,
haemoglobin in g/dL and g/L, triglycerides in mg/dL and mmol/L, ...; half carry a reference
range), 8 weights (kg, some g or [lb_av]), 10 body temperatures (Cel, some [degF]), 2 heights,
8 joint exams, 10 assessments, 10 findings (some with an end), 3 medication starts, 4 dose
changes, 1 stop, 2 adverse events, 1 MAS episode, 1 discontinuation. About 200 events per
patient; dates are days, minutes or seconds with a +02:00 offset; 15% carry a note, some with
commas and quotes.

Usage: ``python -m benchmarks.gen --events 1000000`` (writes both formats and prints the paths).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import duckdb

DATA = Path(__file__).resolve().parent / "data"
VERSION = 1  # bump when the generated content changes, so cached files are rebuilt

# (code, unit, low, high, ref_low, ref_high) — values drawn uniformly in [low, high)
_LABS = [
    ("1988-5", "mg/L", 0.2, 250, 0, 5),
    ("1988-5", "mg/dL", 0.02, 25, 0, 0.5),
    ("4537-7", "mm/h", 2, 120, 0, 20),
    ("30522-7", "mg/L", 0.1, 10, None, None),
    ("2276-4", "ng/mL", 10, 20000, 15, 150),
    ("2276-4", "ug/L", 10, 20000, None, None),
    ("777-3", "10*9/L", 50, 800, 150, 400),
    ("777-3", "10*3/uL", 50, 800, None, None),
    ("1920-8", "U/L", 10, 800, 0, 40),
    ("1742-6", "U/L", 5, 600, 0, 45),
    ("2571-8", "mg/dL", 40, 900, None, None),
    ("2571-8", "mmol/L", 0.4, 10, None, None),
    ("3255-7", "mg/dL", 80, 600, 200, 400),
    ("718-7", "g/dL", 6, 16, 11.5, 15.5),
    ("718-7", "g/L", 60, 160, None, None),
    ("6690-2", "10*9/L", 1, 40, 4.5, 13.5),
    ("751-8", "10*9/L", 0.3, 30, None, None),
    ("2532-0", "U/L", 100, 3000, 120, 300),
]
_ASSESSMENTS = [
    ("physician_global", "{score}", 0, 10),
    ("parent_global", "{score}", 0, 10),
    ("pain", "{score}", 0, 10),
    ("chaq", "{score}", 0, 3),
    ("morning_stiffness", "min", 0, 180),
]
_FINDINGS = ["fever", "rash", "serositis", "lymphadenopathy", "hepatomegaly", "splenomegaly", "arthralgia"]
# (drug, dose low, dose high, dose_unit, route, frequency)
_DRUGS = [
    ("anakinra", 1, 4, "mg/kg", "sc", "daily"),
    ("methotrexate", 7.5, 20, "mg", "oral", "weekly"),
    ("prednisolone", 0.5, 2, "mg/kg", "oral", "daily"),
    ("tocilizumab", 8, 12, "mg/kg", "iv", "every_2_weeks"),
    ("canakinumab", 2, 4, "mg/kg", "sc", "every_4_weeks"),
]
_AE_TERMS = [
    "injection site reaction",
    "upper respiratory infection",
    "neutropenia",
    "transaminases increased",
]
_REASONS = ["remission", "inefficacy", "adverse event", "patient choice"]
_NOTES = [""] * 17 + ['checked, "per protocol"', "repeat sample; lipaemic", "ward round, day 2"]

COLUMNS = [
    "event_id", "patient_id", "kind", "occurred_at", "ended_at", "code", "value", "unit",
    "ref_low", "ref_high", "present", "sex", "drug", "dose", "dose_unit", "route", "frequency",
    "active_joints", "limited_joints", "term", "grade", "serious", "action", "reason", "note",
]  # fmt: skip


def _lit(v: object) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(float(v))


def _list(values: list[object], typ: str) -> str:
    return f"[{', '.join(_lit(v) for v in values)}]::{typ}[]"


def _pick(values: list[object], typ: str, index: str) -> str:
    """SQL picking ``values[index % len]`` from a constant list."""
    return f"({_list(values, typ)})[({index}) % {len(values)} + 1]"


def patients_for(n: int) -> int:
    return max(1, n // 200)


def events_sql(n: int) -> str:
    """SQL yielding ``n`` native events (typed columns: numbers as DOUBLE/INTEGER,
    booleans as BOOLEAN, dates as text), in a fixed order."""
    p = patients_for(n)
    lab = lambda j: _pick([x[j] for x in _LABS], "VARCHAR" if j < 2 else "DOUBLE", "v")  # noqa: E731
    ass = lambda j: _pick([x[j] for x in _ASSESSMENTS], "VARCHAR" if j < 2 else "DOUBLE", "v")  # noqa: E731
    drug = lambda j: _pick([x[j] for x in _DRUGS], "DOUBLE" if j in (1, 2) else "VARCHAR", "v")  # noqa: E731
    return f"""
WITH base AS (
    SELECT i, i % {p} AS p, (i * 2654435761 + 97) % 4294967291 AS h FROM range({n}) t(i)
), b AS (
    SELECT i, p, h, h % 100 AS k, ((h // 100) % 10000) / 10000.0 AS u, h // 1000000 AS v,
           (h // 13) % 10 AS tsel,
           DATE '2000-01-01' + CAST((p * 37) % 5000 AS INTEGER) AS born
    FROM base
), e AS (
    SELECT *,
        CASE WHEN i < {p} THEN 'birth'
             WHEN k < 40 THEN 'lab' WHEN k < 48 THEN 'weight' WHEN k < 58 THEN 'body_temperature'
             WHEN k < 60 THEN 'height' WHEN k < 68 THEN 'joint_exam' WHEN k < 78 THEN 'assessment'
             WHEN k < 88 THEN 'finding' WHEN k < 91 THEN 'medication_start'
             WHEN k < 95 THEN 'medication_dose_change' WHEN k < 96 THEN 'medication_stop'
             WHEN k < 98 THEN 'adverse_event' WHEN k < 99 THEN 'mas_episode'
             ELSE 'discontinuation' END AS kind,
        CASE WHEN i < {p} THEN born ELSE born + CAST(1 + (h // 7) % 3650 AS INTEGER) END AS day
    FROM b
)
SELECT
    'g' || i AS event_id,
    'P' || lpad(p::VARCHAR, 6, '0') AS patient_id,
    kind,
    CASE WHEN kind = 'birth' OR tsel < 6 THEN strftime(day, '%Y-%m-%d')
         WHEN tsel < 9 THEN strftime(day + to_minutes(h % 1440), '%Y-%m-%dT%H:%M')
         ELSE strftime(day + to_seconds(h % 86400), '%Y-%m-%dT%H:%M:%S') || '+02:00' END AS occurred_at,
    CASE WHEN kind IN ('finding', 'adverse_event', 'mas_episode') AND v % 3 = 0
         THEN strftime(day + CAST(1 + v % 30 AS INTEGER), '%Y-%m-%d') END AS ended_at,
    CASE kind WHEN 'lab' THEN {lab(0)} WHEN 'assessment' THEN {ass(0)}
              WHEN 'finding' THEN {_pick(list(_FINDINGS), "VARCHAR", "v")} END AS code,
    CASE kind
        WHEN 'lab' THEN round({lab(2)} + u * ({lab(3)} - {lab(2)}), 2)
        WHEN 'assessment' THEN round({ass(2)} + u * ({ass(3)} - {ass(2)}), 1)
        WHEN 'weight' THEN CASE WHEN v % 10 = 0 THEN round(8000 + u * 60000, 0)
                                WHEN v % 10 = 1 THEN round(18 + u * 130, 1) ELSE round(8 + u * 60, 1) END
        WHEN 'body_temperature' THEN CASE WHEN v % 5 = 0 THEN round(96.5 + u * 8, 1) ELSE round(35.8 + u * 5, 1) END
        WHEN 'height' THEN round(70 + u * 110, 1)
    END::DOUBLE AS value,
    CASE kind WHEN 'lab' THEN {lab(1)} WHEN 'assessment' THEN {ass(1)}
        WHEN 'weight' THEN CASE WHEN v % 10 = 0 THEN 'g' WHEN v % 10 = 1 THEN '[lb_av]' ELSE 'kg' END
        WHEN 'body_temperature' THEN CASE WHEN v % 5 = 0 THEN '[degF]' ELSE 'Cel' END
        WHEN 'height' THEN 'cm' END AS unit,
    CASE WHEN kind = 'lab' AND h % 2 = 0 THEN {lab(4)} END AS ref_low,
    CASE WHEN kind = 'lab' AND h % 2 = 0 THEN {lab(5)} END AS ref_high,
    CASE WHEN kind = 'finding' THEN v % 4 <> 0 END AS present,
    CASE WHEN kind = 'birth' THEN CASE WHEN p % 5 < 3 THEN 'female' ELSE 'male' END END AS sex,
    CASE WHEN kind IN ('medication_start', 'medication_dose_change', 'medication_stop', 'discontinuation')
              OR (kind = 'adverse_event' AND v % 2 = 0) THEN {drug(0)} END AS drug,
    CASE WHEN kind IN ('medication_start', 'medication_dose_change')
         THEN round({drug(1)} + u * ({drug(2)} - {drug(1)}), 1) END::DOUBLE AS dose,
    CASE WHEN kind IN ('medication_start', 'medication_dose_change') THEN {drug(3)} END AS dose_unit,
    CASE WHEN kind IN ('medication_start', 'medication_dose_change') THEN {drug(4)} END AS route,
    CASE WHEN kind IN ('medication_start', 'medication_dose_change') THEN {drug(5)} END AS frequency,
    CASE WHEN kind = 'joint_exam' THEN CAST(v % 21 AS INTEGER) END AS active_joints,
    CASE WHEN kind = 'joint_exam' AND v % 3 <> 0 THEN CAST(v % 11 AS INTEGER) END AS limited_joints,
    CASE WHEN kind = 'adverse_event' THEN {_pick(list(_AE_TERMS), "VARCHAR", "v")} END AS term,
    CASE WHEN kind = 'adverse_event' THEN CAST(1 + v % 3 AS INTEGER) END AS grade,
    CASE WHEN kind = 'adverse_event' THEN v % 7 = 0 END AS serious,
    CASE WHEN kind = 'adverse_event' THEN CASE WHEN v % 7 = 0 THEN 'drug_interrupted' ELSE 'none' END END AS action,
    CASE WHEN kind IN ('medication_stop', 'discontinuation') THEN {_pick(list(_REASONS), "VARCHAR", "v")} END AS reason,
    nullif({_pick(list(_NOTES), "VARCHAR", "h // 17")}, '') AS note
FROM e ORDER BY i
"""


def fingerprint(source: str, n: int, seed: int = 1) -> str:
    """What the data a benchmark keeps under ``DATA`` is made of, so a cached copy can be told
    apart from what this code would write now: the SQL that generates it (``benchmarks.gen``'s
    for ``n`` events, or ``timeline synth``'s for ``n`` patients with ``seed``) and the DuckDB
    that runs it (its functions draw the values). Not covered: the Python that writes the
    rows to files (synth's appenders), which changes their form, not the rows."""
    if source == "synth":
        from timeline.synth import query

        sql = query(seed, 1, n + 1)
    else:
        sql = events_sql(n)
    text = f"{source}\n{n}\n{seed}\n{duckdb.__version__}\n{sql}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def path_for(n: int, fmt: str) -> Path:
    ext = {"csv": "csv", "parquet": "parquet"}[fmt]
    return DATA / f"events-v{VERSION}-{n}.{ext}"


def generate(n: int, fmt: str, path: Path | None = None) -> Path:
    """Write ``n`` events as ``fmt`` (csv or parquet); reuse the file if already there."""
    target = path or path_for(n, fmt)
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(target.name + ".part")
    opts = "FORMAT csv, HEADER true" if fmt == "csv" else "FORMAT parquet, COMPRESSION zstd"
    con = duckdb.connect()
    try:
        con.execute("SET memory_limit = '1GB'")
        con.execute("SET preserve_insertion_order = true")
        con.execute(f"COPY ({events_sql(n)}) TO '{tmp}' ({opts})")
    finally:
        con.close()
    tmp.rename(target)
    return target


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", type=int, default=1_000_000)
    ap.add_argument("--format", choices=["csv", "parquet", "both"], default="both")
    args = ap.parse_args(argv)
    for fmt in ("csv", "parquet") if args.format == "both" else (args.format,):
        print(generate(args.events, fmt))


if __name__ == "__main__":
    main()
