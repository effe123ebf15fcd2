"""Synthetic sJIA cohorts at scale, in the native event format (Parquet or CSV).

``synthesize(patients=N, seed=S, out=FILE)`` writes about 270 events per patient: a birth
and a diagnosis, clinic visits every 1-3 months over 1-6 years (temperature, rash, weight,
height, joint exam, systemic features and eye examinations present or absent, global
assessments, CHAQ, morning stiffness, labs), anakinra starts,
weight-based dose changes, escalations in flares and MAS, switches to canakinumab or
tocilizumab and stops with their reasons (biologics and methotrexate tapered and stopped after
sustained inactive disease and restarted at a flare, stops for adverse events and inefficacy,
interruptions for adverse events as a stop and a restart), MAS episodes with labs that meet
the 2016 criteria, adverse events with CTCAE grades, and the end of follow-up. The model, its rates
and the measured sizes and speeds are in ``docs/synth.md``.

How it is built, and why:

* **Chunks of patients, one query each, appended in order.** The patients are cut into
  chunks whose size depends on N only (:func:`chunk_size`). Each chunk is a single DuckDB
  query over ``range(first, last)`` of patient numbers, written by one single-threaded
  ``COPY ... TO`` into a part file; worker threads make the parts, and the main thread
  appends them to the output in patient order (CSV: the bytes under one header; Parquet:
  the row groups under one new footer) and deletes them. Every patient is drawn from
  closed-form functions of (seed, patient, occasion, slot): no window, sort, join or
  aggregate crosses patients, so a chunk is one streaming pipeline and memory does not grow
  with N. The output is **one file**: Parquet with row groups of at most ``ROW_GROUP_SIZE``
  rows (at least one per chunk), CSV with one header.
* **Determinism.** Every random number is DuckDB's ``hash(seed, patient, a, b)`` mapped to
  [0, 1) (or a sum of four 16-bit pieces of it, for an approximately normal deviate). Only
  IEEE arithmetic, ``sqrt`` and rounding are applied to them: no ``exp``, ``ln`` or ``cos``,
  whose last bits differ between C libraries (a Padé approximant stands in for ``exp``).
  A chunk is written by one thread with ``preserve_insertion_order``, and chunks are
  appended in patient order, so the same N and seed give the same bytes on any machine and
  with any number of workers (for a given DuckDB version: Parquet files name the writer's
  version). A patient's events depend
  only on the seed and the patient number: the first 1,000 patients of a 10,000-patient
  file are the 1,000-patient file.
* **Ids.** Patients are ``S{seed}-{patient:07d}``; events ``{patient_id}-{occasion * 100 +
  slot}``: stable, unique, and distinct between seeds, so cohorts of several seeds can share
  a store.
* **Amendments.** ``amendments=FILE`` also writes a JSON Lines file of corrections and
  retractions (3% of patients are drawn; about 2.5% get one, as some errors need an event
  the patient lacks, such as joint counts that differ). The events file carries the erroneous
  version (a weight entered in pounds in the kilogram field, CRP in the wrong unit, swapped joint
  counts, an MAS episode without its end, a temperature entered in the wrong chart, a lab
  entered twice); :func:`apply_amendments` checks such a file whole and applies it to a store
  through :func:`timeline.ingest.correct` and :func:`timeline.ingest.retract`, in one
  transaction.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import duckdb

from timeline.errors import IngestError, RowError, UnknownEventError, UsageError, cannot_write, replacing
from timeline.events import NATIVE_COLUMNS

Progress = Callable[[float], None]
"""Called with the percentage done (0-100) while a file is written."""

FORMATS = {".parquet": "parquet", ".csv": "csv"}
ROW_GROUP_SIZE = 122_880
CHUNK_PATIENTS = 4096
MAX_PATIENTS = 9_999_999
AMENDMENT_RATE = 0.03
AMENDMENT_AUTHOR = "synthetic data monitor"
_DAY0 = date(2000, 1, 1)
# The first clinic visit falls so that the last one (the first visit at or after the follow-up
# length: at most 111 days after it) comes before 2025-12-21: no event lies in the future.
_SPAN = (date(2025, 9, 1) - _DAY0).days

# Median weight (kg) and girls' height (cm) at ages 0, 1, ..., 26 years.
_WEIGHT = (3.4, 9.8, 12.3, 14.3, 16.3, 18.4, 20.7, 23.1, 25.8, 28.8, 32.3, 36.3, 40.8, 45.7, 50.6,
           55.0, 58.5, 61.3, 63.5, 65.0, 66.0, 66.8, 67.4, 67.9, 68.3, 68.6, 68.8)  # fmt: skip
_HEIGHT = (50, 74, 86, 95, 102, 109, 115, 121, 127, 132, 138, 144, 151, 156, 159, 161, 162, 163,
           163, 163, 163, 163, 163, 163, 163, 163, 163)  # fmt: skip

# Occasions: regular visits are 0 .. nv-1; the others are numbered from 100.
TWO_WEEK, FLARE1, FLARE2 = 100, 101, 102
MASDX_ON, MASDX_2, MASDX_END, MASFU_ON, MASFU_2, MASFU_END = 103, 104, 105, 106, 107, 108
AE_ISR, AE_INF1, AE_INF2, AE_INF3, AE_NEUT, AE_ALT, AE_WITHDRAW = 109, 110, 111, 112, 113, 114, 115
SPECIAL = tuple(range(100, 116))

# Afebrile temperatures (< 38 °C) are low-grade (37.3-37.9 °C) with probability base + S × slope
LOW_GRADE_BASE = 0.06
LOW_GRADE_S = 0.4
# ESR follows the systemic activity of these days before (lag in days, weight): it rises over
# days and falls over weeks, as fibrinogen and immunoglobulins do
ESR_LAGS = ((0, 0.1), (21, 0.4), (56, 0.5))
ESR_PATIENT_SD = 0.3  # between patients (red cells, immunoglobulins), log scale
CRP_PATIENT_SD = 0.3  # between patients (CRP production for the same IL-6), log scale
ESR_POWER = 1.0  # ESR rises less than in proportion at high activity (saturates)
INFLAMMATION_DRIFT = 0.45  # the factor is uniform in 1 ± this, per fortnight
CRP_INTERCURRENT = 0.04  # share of CRP draws raised by an intercurrent infection
ANAKINRA_ESCALATED = 3.5  # mg/kg/day in flares, MAS and for partial or non-responders
# Infections per patient-year on anakinra (after its first 15 days). The course is cut into
# three equal thirds, each holding one infection with probability rate × its length: the
# expected count is proportional to the exposure (at most 3: exact up to 7.5 years).
INFECTION_RATE = 0.4
# Stopping drugs (docs/synth.md, "Treatment"): the share of patients in sustained inactive
# disease whose clinic tapers and stops the biologic (the others continue it), and stops for
# adverse events or inefficacy of the other drugs.
REMISSION_STOP_SHARE = 0.8
# Once the disease has been inactive, the clinic assesses remission at each visit: morning
# stiffness is recorded at this share of visits (30% otherwise), and CRP and ESR are drawn at
# visits without the full laboratory panel.
STIFFNESS_QUIET = 0.85
MTX_AE_RATE = 0.1  # methotrexate stopped for intolerance (of courses)
TOCILIZUMAB_AE_RATE = 0.06
CANAKINUMAB_AE_RATE = 0.03
BIOLOGIC2_INEFFICACY_SHARE = 0.5  # of non-responders to the second biologic: switched to the other
UVEITIS_RATE = 0.01  # patients with an episode of uveitis (rare in sJIA)
_INFECTIONS = (  # (cumulative probability, term, grade 1 share, grade, serious, action, days)
    (0.40, "upper respiratory tract infection", 0.65, 2, False, "none", 7),
    (0.55, "otitis media", 0.0, 2, False, "none", 10),
    (0.70, "gastroenteritis", 0.3, 2, False, "none", 5),
    (0.78, "varicella", 0.0, 2, False, "drug_interrupted", 14),
    (0.88, "pneumonia", 0.0, 3, True, "drug_interrupted", 14),
    (0.95, "cellulitis", 0.0, 2, False, "none", 10),
    (1.01, "urinary tract infection", 0.0, 2, False, "none", 7),
)
_WITHDRAWALS = (  # (cumulative probability, term, grade, serious)
    (0.40, "injection site reaction", 3, False),
    (0.70, "pneumonia", 3, True),
    (0.85, "alanine aminotransferase increased", 3, False),
    (0.95, "neutrophil count decreased", 4, True),
    (1.01, "anaphylaxis", 4, True),
)
_TRIGGERS = (
    "Epstein-Barr virus infection",
    "influenza",
    "viral gastroenteritis",
    "upper respiratory tract infection",
)


@dataclass(frozen=True)
class SynthResult:
    path: str
    format: str
    patients: int
    seed: int
    events: int
    amendments: int | None
    amendments_path: str | None
    seconds: float

    def message(self) -> str:
        rate = self.events / self.seconds if self.seconds > 0 else 0.0
        text = (
            f"{self.path}: {self.events:,} events for {self.patients:,} patients (seed {self.seed}) "
            f"in {self.seconds:.1f} s ({rate:,.0f} events/s)"
        )
        if self.amendments_path is not None:
            text += f"; {self.amendments:,} amendments in {self.amendments_path}"
        return text


# ---- SQL building blocks -----------------------------------------------------------------


def _f(x: float) -> str:
    return repr(float(x))


def _u(a: int | str, b: int | str = 0) -> str:
    """Uniform [0, 1) from hash(seed, patient, a, b) (53 bits)."""
    return f"((hash(sy_seed, p, {a}, {b}) >> 11)::DOUBLE * 1.1102230246251565e-16)"


def _zh(h: str) -> str:
    """Approximately standard normal deviate in [-3.46, 3.46] from a UBIGINT hash: the sum of
    its four 16-bit pieces (Irwin-Hall), centred and scaled."""
    return (
        f"((({h} & 65535) + (({h} >> 16) & 65535) + (({h} >> 32) & 65535) + ({h} >> 48))::DOUBLE"
        " / 65536.0 - 2.0) * 1.7320508075688772"
    )


def _z(a: int | str, b: int | str = 0) -> str:
    return _zh(f"hash(sy_seed, p, {a}, {b})")


def _exp(x: str) -> str:
    """exp(x) by its [2/2] Padé approximant: positive and increasing for |x| <= 3.46."""
    return f"((12.0 + 6.0 * ({x}) + ({x}) * ({x})) / (12.0 - 6.0 * ({x}) + ({x}) * ({x})))"


def _clip(x: str, lo: float, hi: float) -> str:
    return f"greatest({_f(lo)}, least({_f(hi)}, {x}))"


def _sq(x: str) -> str:
    return f"(({x}) * ({x}))"


def _vday(k: str) -> str:
    """Day of regular visit k after the first visit: k intervals plus up to a quarter of one."""
    return f"(CASE WHEN ({k}) = 0 THEN 0 ELSE ({k}) * ivl + floor({_u(9, k)} * (ivl // 4 + 1))::INTEGER END)"


def _after(x: str) -> str:
    """Index of the first regular visit after day x."""
    k1 = f"(({x}) // ivl)"
    return f"(CASE WHEN {_vday(k1)} > ({x}) THEN {k1} ELSE {k1} + 1 END)"


def _age(d: str) -> str:
    return f"((ad0 + ({d})) / 365.25)"


def _curve(knots: Sequence[float], age: str) -> str:
    lst = "[" + ", ".join(_f(k) for k in knots) + "]"
    i = f"least(floor({age}), {len(knots) - 2})::INTEGER"
    return (
        f"(list_extract({lst}, {i} + 1) * ({i} + 1 - {age}) + list_extract({lst}, {i} + 2) * ({age} - {i}))"
    )


def _wcurve(d: str) -> str:
    """The patient's own weight curve at day d (kg, 0.1 kg): the median curve times the
    patient's factor, boys 12% heavier from 11 to 16 years."""
    a = _age(d)
    boys = f"(CASE WHEN female THEN 1.0 ELSE 1.0 + 0.12 * {_clip(f'({a} - 11.0) / 5.0', 0, 1)} END)"
    return f"round({_curve(_WEIGHT, a)} * {boys} * fw, 1)"


def _hcurve(d: str) -> str:
    a = _age(d)
    boys = f"(CASE WHEN female THEN 0.0 ELSE 13.0 * {_clip(f'({a} - 11.0) / 6.0', 0, 1)} END)"
    return f"(({_curve(_HEIGHT, a)} + {boys}) * fh)"


def _dose(target: str, w: str) -> str:
    """Anakinra dose for a target in mg/kg/day: mg rounded to 10, within 1.1-3.6 mg/kg, at most
    100 mg/day (200 when escalated) unless 100 mg is under 1.1 mg/kg; in mg/kg (to 0.5) for
    the patients prescribed that way."""
    cap = f"(CASE WHEN ({target}) > 3 THEN 200 ELSE 100 END)"
    mg = (
        f"greatest(least(round(({target}) * ({w}) / 10) * 10, floor(3.6 * ({w}) / 10) * 10, {cap}),"
        f" ceil(1.1 * ({w}) / 10) * 10)"
    )
    return f"(CASE WHEN mgkg THEN round(({target}) * 2) / 2 ELSE {mg} END)"


def _window(d: str) -> str:
    """Whether day d lies in an escalation window (a flare or an MAS during follow-up that
    began while on anakinra, or the MAS at presentation during which first-line anakinra starts)."""
    return (
        f"((esc1 AND ({d}) BETWEEN fs1 AND fs1 + fl1) OR (esc2 AND ({d}) BETWEEN fs2 AND fs2 + fl2)"
        f" OR (escm AND ({d}) BETWEEN mo AND me) OR (masdx AND ({d}) BETWEEN md AND mde))"
    )


def _target(k: str, d: str) -> str:
    return (
        f"(CASE WHEN resp <> 'C' AND ({k}) >= k0 + 1 THEN {ANAKINRA_ESCALATED}"
        f" WHEN {_window(d)} THEN {ANAKINRA_ESCALATED} ELSE tb END)"
    )


def _activity(d: str) -> tuple[str, str]:
    """Systemic (S) and articular (A) activity, 0-1, at day d: partial control on steroids
    and NSAIDs, the course on anakinra by response class, the course on the second biologic,
    flares and MAS."""
    x = f"(({d}) - t0)"
    y = f"(({d}) - t2)"
    pre_s = f"(0.35 + 0.65 * {_sq(f'30.0 / (30.0 + ({d}))')})"
    pre_a = f"(0.7 + 0.3 * 30.0 / (30.0 + ({d})))"
    decay_s = _sq(f"tau_s / (tau_s + {x})")
    decay_a = _sq(f"tau_a / (tau_a + {x})")
    s = f"""(CASE
        WHEN t2 IS NOT NULL AND ({d}) >= t2 THEN
            CASE WHEN c2 THEN 0.45 * {_sq(f"12.0 / (12.0 + {y})")} ELSE 0.4 END
        WHEN ana AND ({d}) >= t0 THEN
            CASE WHEN resp = 'N' THEN 0.6 + 0.25 * tau_s / (tau_s + {x}) ELSE s0 * {decay_s} END
        ELSE {pre_s} END)"""
    a = f"""(CASE
        WHEN t2 IS NOT NULL AND ({d}) >= t2 THEN
            CASE WHEN c2 THEN 0.6 * {_sq(f"30.0 / (30.0 + {y})")} ELSE 0.5 END
        WHEN ana AND ({d}) >= t0 THEN
            CASE resp WHEN 'C' THEN a0 * {decay_a} WHEN 'P' THEN a0 * (0.45 + 0.55 * {decay_a}) ELSE 0.8 END
        ELSE {pre_a} END)"""
    flare = f"((f1 AND ({d}) BETWEEN fs1 AND fs1 + fl1) OR (f2 AND ({d}) BETWEEN fs2 AND fs2 + fl2))"
    mas = _in_mas(d)
    s = f"(CASE WHEN {mas} THEN 1.0 WHEN {flare} THEN greatest({s}, 0.8) ELSE {s} END)"
    a = f"(CASE WHEN {flare} THEN greatest({a}, 0.6) ELSE {a} END)"
    return s, a


def _drift(d: str) -> str:
    """A factor of the inflammation around day d, uniform in 1 ± INFLAMMATION_DRIFT, drawn
    anew for each fortnight of follow-up (one hash: it is evaluated three times a visit)."""
    u = _u(102, f"(({d}) // 14)::INTEGER")
    return f"({_f(1 - INFLAMMATION_DRIFT)} + {_f(2 * INFLAMMATION_DRIFT)} * {u})"


def _tocilizumab(d: str) -> str:
    """Days since the latest tocilizumab start on day d while the patient is on it (or in the
    4 weeks after its stop, as its effect wears off); NULL when not on it."""
    return f"""(CASE WHEN drug3 = 'tocilizumab' AND ({d}) >= d2stop THEN ({d}) - d2stop
        WHEN drug2 = 'tocilizumab' AND trb IS NOT NULL AND ({d}) >= trb THEN ({d}) - trb
        WHEN drug2 = 'tocilizumab' AND ({d}) >= t2 AND (d2stop IS NULL OR ({d}) < d2stop + 28) THEN ({d}) - t2 END)"""


def _in_mas(d: str) -> str:
    """Whether day d lies in an MAS episode, from its onset to the day before its resolution."""
    return f"((masdx AND ({d}) >= md AND ({d}) < mde) OR (masfu AND ({d}) >= mo AND ({d}) < me))"


def _pick(u: str, table: Sequence[tuple[Any, ...]], col: int) -> str:
    """CASE choosing column ``col`` of the row whose cumulative probability first exceeds u."""
    whens = " ".join(f"WHEN {u} < {_f(row[0])} THEN {_lit(row[col])}" for row in table[:-1])
    return f"(CASE {whens} ELSE {_lit(table[-1][col])} END)"


def _lit(v: Any) -> str:
    if v is None:
        return "NULL"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, str):
        return "'" + v.replace("'", "''") + "'"
    return repr(v)


def _ds(d: str) -> str:
    return f"strftime(v0 + ({d})::INTEGER, '%Y-%m-%d')"


# ---- the query ------------------------------------------------------------------------------


def _remission_plan(src: str, pre: str, tin: str) -> str:
    """SQL over ``src`` adding the remission plan of a drug course: ``tin`` is the day the
    disease becomes inactive on it (NULL: never). A flare or an MAS during follow-up that begins
    before the inactivity has lasted ``sus`` days, and ends after it began, starts the count
    again 30 days after its end (two passes over the three). The drug is tapered from the first
    visit after ``sus`` quiet days ({pre}_kt) and stopped at the first visit ``taper_len`` days
    after that ({pre}_ks); {pre}_ok: the patient's clinic stops it (``stop_p``), the stop falls
    before the last visit and no flare or MAS overlaps the quiet days, the taper or the stop.
    Few query levels (each costs planning time for every column): the passes are nested."""
    q = f"{pre}_q0"
    for on, start, end in (
        ("masfu", "mo", "me"),
        ("f1", "fs1", "fs1 + fl1"),
        ("f2", "fs2", "fs2 + fl2"),
        ("masfu", "mo", "me"),
    ):  # greatest() skips the NULL of an event that does not restart the count
        q = f"greatest({q}, CASE WHEN {on} AND {start} < ({q}) + sus THEN {end} + 30 END)"
    dks = _vday(f"{pre}_ks")
    overlap = (
        f"(f1 AND fs1 <= {dks} AND fs1 + fl1 >= {pre}_q) OR (f2 AND fs2 <= {dks} AND fs2 + fl2 >= {pre}_q)"
        f" OR (masfu AND mo <= {dks} AND me >= {pre}_q)"
    )
    sql = f"SELECT *, {tin} AS {pre}_q0 FROM {src}"
    sql = f"SELECT *, {q} AS {pre}_q FROM ({sql})"
    sql = f"SELECT *, {_after(f'{pre}_q + sus')} AS {pre}_kt FROM ({sql})"
    sql = f"SELECT *, {_after(_vday(f'{pre}_kt') + ' + taper_len')} AS {pre}_ks FROM ({sql})"
    return f"SELECT *, coalesce(stop_p AND {pre}_ks <= lastk - 1 AND NOT ({overlap}), false) AS {pre}_ok FROM ({sql})"


# Adverse events that interrupt anakinra: the three infections and neutropenia. Their days and
# whether they interrupt are drawn as the occasions draw them (same hashes), so that the plan
# knows when the drug is off: from the event's day to its restart 14 days later (at the latest
# the day before the course ends).
_INTERRUPTING = (AE_INF1, AE_INF2, AE_INF3, AE_NEUT)
INTERRUPTION_DAYS = 14


def _ue2(j: int, slot: int) -> str:
    return f"((hash(sy_seed, p, {j}, {slot}) & 4294967295)::DOUBLE * 2.3283064365386963e-10)"


def _interruptions() -> str:
    """Per interrupting adverse event i (0-3): its day di{i} and whether it interrupts ii{i}."""
    span = "greatest(ana_end - t0 - 16, 1)"
    cols = []
    for i, j in enumerate(_INTERRUPTING):
        if j == AE_NEUT:
            day = f"t0 + 15 + floor({_u(81, j)} * {span})::INTEGER"
            on = f"ana AND neut AND ana_end - t0 > 30 AND {_ue2(j, 60)} > 0.85"
        else:
            k = j - AE_INF1
            day = f"t0 + 15 + floor(({k} + {_u(81, j)}) * {span} / 3.0)::INTEGER"
            rate = _f(INFECTION_RATE / 3 / 365.25)
            lo, hi = _INFECTIONS[2][0], _INFECTIONS[4][0]  # varicella and pneumonia interrupt
            on = (
                f"ana AND u_inf{k + 1} < {rate} * (ana_end - t0 - 16) AND ana_end - t0 > 30"
                f" AND {_ue2(j, 60)} >= {_f(lo)} AND {_ue2(j, 60)} < {_f(hi)}"
            )
        cols.append(f"CASE WHEN {on} THEN {day} END AS di{i}")
    return ",\n        ".join(cols)


def _heads() -> str:
    """hi{i}: interruption i stops the drug (it does not begin while an earlier one runs; of two
    on one day, the first); ri{i}: its restart day."""
    cols = []
    n = len(_INTERRUPTING)
    for i in range(n):
        inside = " OR ".join(
            f"(di{m} IS NOT NULL AND (di{m} < di{i} OR (di{m} = di{i} AND {m} < {i})) AND di{i} <= di{m} + {INTERRUPTION_DAYS})"
            for m in range(n)
            if m != i
        )
        cols.append(f"coalesce(di{i} IS NOT NULL AND NOT ({inside}), false) AS hi{i}")
        cols.append(f"least(di{i} + {INTERRUPTION_DAYS}, ana_end - 1) AS ri{i}")
    return ", ".join(cols)


def _interrupted(d: str) -> str:
    """Whether anakinra is interrupted (stopped for an adverse event, not yet restarted) on day d."""
    return (
        "("
        + " OR ".join(f"(hi{i} AND ({d}) >= di{i} AND ({d}) < ri{i})" for i in range(len(_INTERRUPTING)))
        + ")"
    )


def _patients_sql(first: int, last: int, only_amended: bool) -> str:
    """Per patient: demographics, schedule and the whole treatment plan."""
    vday = _vday
    pa = f"""
    SELECT p,
        'S' || sy_seed || '-' || lpad(p::VARCHAR, 7, '0') AS pid,
        {_u(1)} < 0.5 AS female,
        1.0 + 14.9 * {_u(2)} * sqrt({_u(2)}) AS age0,
        365 + floor({_u(3)} * 1826)::INTEGER AS fu,
        30 + floor(61 * sqrt({_u(4)}))::INTEGER AS ivl,
        10 + floor({_u(5)} * 50)::INTEGER AS delay,
        {_clip(f"1.0 + 0.1 * {_z(7)}", 0.78, 1.3)} AS fw,
        1.0 + 0.03 * {_z(8)} AS fh,
        1 + floor(20 * {_u(10)} * {_u(10)})::INTEGER AS jmax,
        {_u(11)} < 0.5 AS has_ref,
        {_u(12)} < 0.35 AS crp_dl,
        {_u(13)} < 0.12 AS temp_f,
        {_u(14)} < 0.15 AS ferr_ug,
        {_u(15)} < 0.2 AS plt_ul,
        {_u(16)} < 0.15 AS hb_gl,
        {_u(17)} < 0.3 AS tg_mmol,
        {_u(18)} < 0.4 AS fib_gl,
        {_u(19)} < 0.05 AS wt_lb,
        ({_u(12)} < 0.35)::INTEGER + 2 * ({_u(15)} < 0.2)::INTEGER + 4 * ({_u(16)} < 0.15)::INTEGER
            + 8 * ({_u(14)} < 0.15)::INTEGER + 16 * ({_u(17)} < 0.3)::INTEGER + 32 * ({_u(18)} < 0.4)::INTEGER AS units,
        {_u(20)} < 0.88 AS ana,
        {_u(21)} < 0.45 AS first_line,
        CASE WHEN {_u(22)} < 0.65 THEN 'C' WHEN {_u(22)} < 0.85 THEN 'P' ELSE 'N' END AS resp,
        1.6 + 0.8 * {_u(23)} AS tb,
        {_u(24)} < 0.05 AS mgkg,
        3.0 + 12.0 * {_u(25)} AS tau_s,
        15.0 + 45.0 * {_u(26)} AS tau_a,
        0.8 + 0.2 * {_u(27)} AS s0,
        0.6 + 0.4 * {_u(28)} AS a0,
        {_u(29)} AS u_pred,
        CASE WHEN {_u(30)} < 0.3 THEN 2.0 ELSE 1.0 END AS pred_t,
        {_u(31)} < 0.6 AS nsaid,
        {_u(32)} AS u_mtx,
        {_u(33)} < 0.45 AS switch_p,
        {_u(34)} < 0.5 AS can2,
        {_u(35)} < 0.75 AS c2,
        {_u(36)} < 0.03 AS ae_wd,
        20 + floor({_u(37)} * 330)::INTEGER AS ae_off,
        {_u(38)} AS u_wd,
        {_u(39)} < 0.3 AS remit_p,
        floor({_u(40)} * 3)::INTEGER AS remit_k,
        {_u(41)} < 0.35 AS isr,
        1 + floor({_u(42)} * 13)::INTEGER AS isr_off,
        {_u(43)} AS u_inf1, {_u(44)} AS u_inf2, {_u(45)} AS u_inf3,
        {_u(46)} < 0.04 AS neut, {_u(47)} < 0.05 AS altae,
        {_u(48)} < 0.4 AS f1p, {_u(49)} < 0.35 AS f2p,
        {_u(50)} AS u_kf1, {_u(51)} AS u_kf2,
        {_u(52)} AS u_fs1, {_u(53)} AS u_fs2,
        14 + floor({_u(54)} * 43)::INTEGER AS fl1, 14 + floor({_u(55)} * 43)::INTEGER AS fl2,
        {_u(56)} < 0.08 AS masdx,
        {_u(57)} AS u_md,
        10 + floor({_u(58)} * 21)::INTEGER AS mdur,
        {_u(59)} < 0.06 AS masfu_p,
        {_u(60)} AS u_km, {_u(61)} AS u_mo,
        10 + floor({_u(62)} * 21)::INTEGER AS mfdur,
        {_u(63)} < 0.6 AS csa,
        60 + floor({_u(64)} * 61)::INTEGER AS csa_lag,
        {_u(65)} AS u_eofu,
        {_u(66)} < {AMENDMENT_RATE} AS am,
        floor({_u(67)} * 6)::INTEGER AS am_type0,
        {_u(68)} AS u_ka,
        {_u(69)} < 0.5 AS lymph, {_u(70)} < 0.35 AS organ, {_u(71)} < 0.1 AS serositis,
        {_u(72)} < 0.5 AS tcz_only,
        {_u(73)} < 0.6 AS mtx_sc,
        {_u(74)} AS u_k0, {_u(75)} AS u_kn, {_u(76)} AS u_trig, {_u(77)} AS u_organ,
        {_u(78)} AS sev_dx, {_u(79)} AS sev_fu,
        {_u(86)} < {_f(UVEITIS_RATE)} AS uv, {_u(87)} AS u_kuv,
        0.005 + 0.06 * {_u(88)} AS pg_thr,
        180 + floor({_u(90)} * 186)::INTEGER AS sus,
        84 + floor({_u(91)} * 99)::INTEGER AS taper_len,
        {_u(92)} < {_f(REMISSION_STOP_SHARE)} AS stop_p,
        {_u(93)} < {_f(MTX_AE_RATE)} AS mtx_ae, 2 + floor({_u(94)} * 5)::INTEGER AS mtx_ae_k,
        {_u(95)} AS u_b2ae, 2 + floor({_u(96)} * 10)::INTEGER AS b2_ae_k,
        {_u(97)} < {_f(BIOLOGIC2_INEFFICACY_SHARE)} AS b2_ineff, 3 + floor({_u(98)} * 2)::INTEGER AS b2_in_k,
        {_z(99)} AS z_esr,
        0.6 * {_z(100)} AS hb_off,
        {_z(101)} AS z_crp
    FROM range({first}, {last}) t(p)
    {"WHERE " + _u(66) + f" < {AMENDMENT_RATE}" if only_amended else ""}"""

    pb = f"""
    SELECT *,
        {_clip(_exp(f"{_f(ESR_PATIENT_SD)} * z_esr"), 0.5, 2.0)} AS esr_f,
        {_clip(_exp(f"{_f(CRP_PATIENT_SD)} * z_crp"), 0.4, 2.5)} AS crp_f,
        DATE '{_DAY0.isoformat()}' + floor({_u(6)} * ({_SPAN} - fu))::INTEGER AS v0,
        (fu + ivl - 1) // ivl AS lastk,
        CASE WHEN first_line THEN 0 ELSE 1 + floor(u_k0 * least(4, (fu + ivl - 1) // ivl - 2))::INTEGER END AS k0
    FROM pa"""

    pc = f"""
    SELECT *,
        v0 - delay - floor(age0 * 365.25)::INTEGER AS birth,
        delay + floor(age0 * 365.25)::INTEGER AS ad0,
        1 - delay + floor(u_md * (delay - 5))::INTEGER AS md,
        {vday("k0")} AS t0,
        {vday("lastk")} AS dlast,
        CASE WHEN ana AND resp = 'N' THEN k0 + 2 + floor(u_kn * 2)::INTEGER
             WHEN ana AND resp = 'P' AND switch_p THEN k0 + 4 + floor(u_kn * 3)::INTEGER END AS kn0,
        CASE WHEN ana THEN k0 + 2 ELSE 2 END AS kflo
    FROM pb"""

    # flares (between visit kf and kf + 1), MAS during follow-up (between km and km + 1). The
    # second flare comes after the first has ended and 4 weeks have passed (35% of those with a
    # first); a flare near an MAS during follow-up (from 2 weeks before its onset to 4 weeks
    # after its end, or between the same two visits) is not had: a flare never overlaps an MAS.
    pd = """
    SELECT *,
        CASE WHEN kn0 <= lastk - 1 THEN kn0 END AS kn,
        f1p AND lastk - 1 - kflo >= 1 AS f1c,
        kflo + floor(u_kf1 * greatest(lastk - 1 - kflo, 1))::INTEGER AS kf1,
        masfu_p AND lastk >= 4 AS masfu,
        1 + floor(u_km * greatest(lastk - 2, 1))::INTEGER AS km,
        md + mdur AS mde
    FROM pc"""

    pe = f"""
    SELECT *,
        {vday("kf1")} + 3 + floor(u_fs1 * greatest({vday("kf1 + 1")} - {vday("kf1")} - 6, 1))::INTEGER AS fs1,
        {vday("km")} + 2 + floor(u_mo * greatest({vday("km + 1")} - {vday("km")} - 4, 1))::INTEGER AS mo
    FROM pd"""

    pe2 = f"""
    SELECT *, {_after("fs1 + fl1 + 28")} AS kf2min, least(mo + mfdur, dlast) AS me
    FROM pe"""

    pe3 = """
    SELECT *,
        kf2min + floor(u_kf2 * greatest(lastk - 1 - kf2min, 1))::INTEGER AS kf2,
        f1c AND f2p AND kf2min <= lastk - 1 AS f2c
    FROM pe2"""

    def near_mas(k: str, fs: str, fl: str) -> str:
        return f"(masfu AND (({k}) = km OR (({fs}) <= me + 28 AND ({fs}) + ({fl}) >= mo - 14)))"

    pe4 = f"""
    SELECT *,
        f1c AND NOT {near_mas("kf1", "fs1", "fl1")} AS f1,
        f2c AND NOT {near_mas("kf2", "fs2", "fl2")} AS f2
    FROM (SELECT *,
        {vday("kf2")} + 3 + floor(u_fs2 * greatest({vday("kf2 + 1")} - {vday("kf2")} - 6, 1))::INTEGER AS fs2
        FROM pe3)"""

    # anakinra in sustained inactive disease: tapered (every other day) from the first visit
    # after `sus` quiet days, stopped at the first visit `taper_len` days later
    pr = _remission_plan(
        "pe4",
        "ana",
        "CASE WHEN ana AND resp = 'C' THEN t0 + ceil(greatest(0.0,"
        " tau_a * (sqrt(1.4 * a0 * jmax) - 1.0), tau_s * (sqrt(s0 / least(pg_thr, 0.02)) - 1.0)))::INTEGER END",
    )

    # the anakinra stop: the earliest of inefficacy (a visit), remission (a visit), adverse event;
    # only that one is recorded (a later withdrawal would stop a drug no longer running)
    pf = f"""
    SELECT *, least(dkn, dkrs, tae) AS ts
    FROM (SELECT *, {vday("kn")} AS dkn, {vday("krs")} AS dkrs FROM (SELECT *,
        CASE WHEN ana_ok THEN ana_ks END AS krs,
        CASE WHEN ana AND ae_wd AND t0 + ae_off < dlast - 1 THEN t0 + ae_off END AS tae
        FROM pr))"""

    pg = f"""
    SELECT *,
        CASE WHEN ts IS NULL THEN NULL
             WHEN kn IS NOT NULL AND ts = dkn THEN 'inefficacy'
             WHEN krs IS NOT NULL AND ts = dkrs THEN 'sustained remission'
             ELSE 'adverse event' END AS stop_kind,
        {_pick("u_wd", _WITHDRAWALS, 1)} AS wd_term,
        {_pick("u_wd", _WITHDRAWALS, 2)} AS wd_grade,
        {_pick("u_wd", _WITHDRAWALS, 3)} AS wd_serious
    FROM pf"""

    # csa_on: an MAS during follow-up begins while the ciclosporin of the MAS at presentation
    # is still running; that course goes on (no stop, no second start)
    ph = f"""
    SELECT *,
        CASE WHEN stop_kind = 'inefficacy' THEN kn
             WHEN stop_kind = 'adverse event' AND {_after("tae")} <= lastk THEN {_after("tae")}
             WHEN NOT ana AND tcz_only AND lastk >= 4 THEN 3 END AS k2,
        CASE WHEN stop_kind IN ('inefficacy', 'sustained remission') THEN
             CASE WHEN stop_kind = 'inefficacy' THEN kn ELSE krs END END AS kstop,
        CASE WHEN NOT ana OR (resp = 'P' AND stop_kind = 'inefficacy') OR NOT can2
             THEN 'tocilizumab' ELSE 'canakinumab' END AS drug2,
        f1 AND stop_kind = 'sustained remission' AND fs1 > ts AS re1,
        f2 AND stop_kind = 'sustained remission' AND fs2 > ts AND NOT (f1 AND fs1 > ts) AS re2,
        f1 AND ana AND fs1 >= t0 AND (ts IS NULL OR fs1 < ts OR stop_kind = 'sustained remission') AS esc1,
        f2 AND ana AND fs2 >= t0 AND (ts IS NULL OR fs2 < ts OR stop_kind = 'sustained remission') AS esc2,
        masfu AND ana AND mo >= t0 AND (ts IS NULL OR mo < ts OR (stop_kind = 'sustained remission'
            AND ((f1 AND fs1 > ts AND mo > fs1) OR (f2 AND fs2 > ts AND mo > fs2)))) AS escm,
        csa AND masdx AND masfu AND mo + 1 <= mde + csa_lag AS csa_on,
        CASE WHEN ts IS NULL THEN dlast ELSE least(ts, dlast) END AS ana_end,
        CASE WHEN am_type0 = 4 AND NOT masdx AND NOT masfu THEN 0 ELSE am_type0 END AS am_type,
        1 + floor(u_ka * (lastk - 1))::INTEGER AS ka,
        u_pred < CASE WHEN NOT ana THEN 0.9 WHEN first_line THEN 0.5 ELSE 0.9 END AS pred,
        CASE WHEN NOT ana THEN 2 ELSE k0 + 1 END AS kp1,
        CASE WHEN NOT ana THEN 3 ELSE k0 + 1 END AS knsaid_stop,
        CASE WHEN NOT ana AND u_mtx < 0.7 THEN 1
             WHEN ana AND NOT first_line AND k0 >= 2 AND u_mtx < 0.4 THEN 1
             WHEN ana AND resp = 'P' AND u_mtx > 0.65 THEN k0 + 2 END AS kmtx
    FROM pg"""

    pi = f"""
    SELECT *, {vday("k2")} AS t2, {_wcurve("0")} AS wc0,
        2 + 4 * floor(u_kuv * greatest((lastk - 2) // 4 + 1, 1))::INTEGER AS kuv,
        CASE WHEN re1 THEN fs1 WHEN re2 THEN fs2 END AS tre,
        {vday("ana_kt")} AS ana_dkt,
        coalesce(ana_ok AND {vday("ana_kt")} < ts, false) AS ana_tap
    FROM ph"""

    # the second biologic in sustained inactive disease (responders), as anakinra above
    pj = _remission_plan(
        "pi",
        "b2",
        "CASE WHEN k2 IS NOT NULL AND c2 THEN t2 + ceil(greatest(0.0,"
        " 30.0 * (sqrt(0.84 * jmax) - 1.0), 12.0 * (sqrt(0.45 / least(pg_thr, 0.02)) - 1.0)))::INTEGER END",
    )

    # its stop: the earliest of an adverse event, inefficacy (non-responders) and remission; after
    # an adverse event or inefficacy the other IL-1/IL-6 blocker is started at the same visit
    b2_ae = (
        f"CASE WHEN drug2 = 'tocilizumab' THEN {_f(TOCILIZUMAB_AE_RATE)} ELSE {_f(CANAKINUMAB_AE_RATE)} END"
    )
    pk = f"""
    SELECT *, least(k2ae, k2in, k2rs) AS kstop2 FROM (SELECT *,
        CASE WHEN k2 IS NOT NULL AND u_b2ae < {b2_ae} AND k2 + b2_ae_k <= lastk - 1 THEN k2 + b2_ae_k END AS k2ae,
        CASE WHEN k2 IS NOT NULL AND NOT c2 AND b2_ineff AND k2 + b2_in_k <= lastk - 1 THEN k2 + b2_in_k END AS k2in,
        CASE WHEN k2 IS NOT NULL AND b2_ok THEN b2_ks END AS k2rs
        FROM pj)"""

    pl = f"""
    SELECT *,
        CASE WHEN kstop2 IS NULL THEN NULL WHEN kstop2 = k2in THEN 'inefficacy'
             WHEN kstop2 = k2ae THEN 'adverse event: ' || CASE
                 WHEN drug2 = 'canakinumab' THEN CASE WHEN u_b2ae < {_f(CANAKINUMAB_AE_RATE / 2)}
                     THEN 'neutrophil count decreased' ELSE 'alanine aminotransferase increased' END
                 WHEN u_b2ae < {_f(TOCILIZUMAB_AE_RATE / 3)} THEN 'infusion related reaction'
                 WHEN u_b2ae < {_f(TOCILIZUMAB_AE_RATE * 2 / 3)} THEN 'alanine aminotransferase increased'
                 ELSE 'neutrophil count decreased' END
             ELSE 'sustained remission' END AS stop2_kind,
        {vday("kstop2")} AS d2stop,
        b2_ok AND b2_kt < coalesce(kstop2, lastk) AS b2_tap,
        CASE WHEN kmtx IS NOT NULL THEN least(
            CASE WHEN ana_tap AND ana_kt > kmtx THEN ana_kt END,
            CASE WHEN b2_ok AND b2_kt < coalesce(kstop2, lastk) AND b2_kt > kmtx THEN b2_kt END,
            CASE WHEN mtx_ae AND kmtx + mtx_ae_k <= lastk - 1 THEN kmtx + mtx_ae_k END) END AS kmstop
    FROM pk"""

    pm = f"""
    SELECT *,
        CASE WHEN kmstop IS NULL THEN NULL WHEN ana_tap AND kmstop = ana_kt THEN 'sustained remission'
             WHEN b2_tap AND kmstop = b2_kt THEN 'sustained remission'
             ELSE 'adverse event: gastrointestinal intolerance' END AS mtx_stop_kind,
        CASE WHEN stop2_kind <> 'sustained remission' THEN
             CASE drug2 WHEN 'tocilizumab' THEN 'canakinumab' ELSE 'tocilizumab' END END AS drug3,
        CASE WHEN stop2_kind = 'sustained remission' THEN
             CASE WHEN f1 AND fs1 > d2stop THEN fs1 WHEN f2 AND fs2 > d2stop THEN fs2 END END AS trb,
        {_interruptions()}
    FROM pl"""

    pn = f"""
    SELECT *, {_heads()}
    FROM pm"""
    return f"""
    pa AS ({pa}),
    pb AS ({pb}),
    pc AS ({pc}),
    pd AS ({pd}),
    pe AS ({pe}),
    pe2 AS ({pe2}),
    pe3 AS ({pe3}),
    pe4 AS ({pe4}),
    pr AS ({pr}),
    pf AS ({pf}),
    pg AS ({pg}),
    ph AS ({ph}),
    pi AS ({pi}),
    pj AS ({pj}),
    pk AS ({pk}),
    pl AS ({pl}),
    pm AS ({pm}),
    pt AS ({pn})"""


# slots of each occasion (see _event_columns for what each slot is)
_DX = [0, 1, 2, 3, 4, 30, 34]
_CLIN = [5, 6, 7, 8, 10, 11]  # and the assessments 12-15 drawn per visit (_occasions_sql)
_TWO_WEEK = [5, 6, 8, 16]
# a flare draws the full MAS panel, so that MAS can be told from a flare
_FLARE = [2, 3, 4, 5, 6, 7, 8, 10, 11, 16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 48, 63]
_MAS_ON = [50, 2, 3, 4, 5, 7, 8, 16, 17, 18, 19, 20, 22, 23, 24, 25, 26, 27, 51, 52, 53, 54, 55, 56, 57, 48]
_MAS_2 = [5, 18, 22, 23, 26, 27]
_MAS_END = [5, 16, 18, 22, 23, 27]


def _lst(xs: Sequence[int]) -> str:
    return "[" + ", ".join(str(x) for x in xs) + "]::INTEGER[]"


# The columns the event level reads: only these are copied for every candidate event.
_EVENT_INPUTS = (
    "p", "pid", "j", "d", "ds", "sa", "aa", "act", "lim", "phys", "febrile", "wc", "wc0", "lab_mode",
    "sev", "mas_end", "mas_day", "dlast", "birth", "v0", "delay", "ad0", "female", "fh", "units", "has_ref", "crp_dl",
    "temp_f", "wt_lb", "mgkg", "lymph", "organ", "serositis", "u_organ", "uv", "kuv", "fl_len", "u_trig", "u_eofu",
    "uo6", "k0", "k2", "ka", "am", "am_type", "masdx", "pred", "pred_t", "nsaid", "csa", "csa_lag",
    "m31", "m32", "m33", "m35", "m36", "m40", "m41", "m42", "m44", "m45", "esc1", "esc2", "escm", "csa_on",
    "dose_k", "dose_esc", "dose_before", "drug2", "mtx_sc", "stop_kind", "wd_term", "wd_grade", "wd_serious",
    "crp_m", "esr_m", "hb_m", "intr", "rday", "dose_r", "r_taper", "ra", "ana_taper", "mtx_stop_kind",
    "stop2_kind", "drug3",
)  # fmt: skip


def _occasions_sql() -> str:
    """One row per occasion (regular visit or special occasion) with its day, the disease
    activity then, the dose bookkeeping and the list of event slots it may emit."""
    specials = _lst(SPECIAL)
    day = f"""CASE WHEN j < 100 THEN {_vday("j")}
        WHEN j = {TWO_WEEK} THEN t0 + 12 + floor({_u(80)} * 5)::INTEGER
        WHEN j = {FLARE1} THEN fs1 WHEN j = {FLARE2} THEN fs2
        WHEN j = {MASDX_ON} THEN md WHEN j = {MASDX_2} THEN md + 2 WHEN j = {MASDX_END} THEN mde
        WHEN j = {MASFU_ON} THEN mo WHEN j = {MASFU_2} THEN mo + 2 WHEN j = {MASFU_END} THEN me
        WHEN j = {AE_ISR} THEN t0 + isr_off
        WHEN j BETWEEN {AE_INF1} AND {AE_INF3} THEN t0 + 15
            + floor((j - {AE_INF1} + {_u(81, "j")}) * greatest(ana_end - t0 - 16, 1) / 3.0)::INTEGER
        WHEN j BETWEEN {AE_NEUT} AND {AE_ALT}
            THEN t0 + 15 + floor({_u(81, "j")} * greatest(ana_end - t0 - 16, 1))::INTEGER
        WHEN j = {AE_WITHDRAW} THEN tae END"""
    applies = f"""CASE WHEN j < 100 THEN true
        WHEN j = {TWO_WEEK} THEN ana AND {_vday("k0 + 1")} > t0 + 24 AND (ts IS NULL OR ts > t0 + 20)
        WHEN j = {FLARE1} THEN f1 WHEN j = {FLARE2} THEN f2
        WHEN j BETWEEN {MASDX_ON} AND {MASDX_END} THEN masdx
        WHEN j BETWEEN {MASFU_ON} AND {MASFU_END} THEN masfu
        WHEN j = {AE_ISR} THEN ana AND isr AND (ts IS NULL OR ts > t0 + isr_off)
        WHEN j = {AE_INF1} THEN ana AND u_inf1 < {_f(INFECTION_RATE / 3 / 365.25)} * (ana_end - t0 - 16) AND ana_end - t0 > 30
        WHEN j = {AE_INF2} THEN ana AND u_inf2 < {_f(INFECTION_RATE / 3 / 365.25)} * (ana_end - t0 - 16) AND ana_end - t0 > 30
        WHEN j = {AE_INF3} THEN ana AND u_inf3 < {_f(INFECTION_RATE / 3 / 365.25)} * (ana_end - t0 - 16) AND ana_end - t0 > 30
        WHEN j = {AE_NEUT} THEN ana AND neut AND ana_end - t0 > 30
        WHEN j = {AE_ALT} THEN ana AND altae AND ana_end - t0 > 30
        WHEN j = {AE_WITHDRAW} THEN stop_kind = 'adverse event' END"""
    s, a = _activity("d")

    # the inflammation CRP and ESR follow: S times a factor that drifts from one fortnight to
    # the next (IL-6 drive beyond the clinical score); ESR follows it days and weeks before
    def infl(lag: int) -> str:
        if lag == 0:
            return "sa * dr0"
        day = f"greatest(d - {lag}, 0)"
        return f"{_activity(day)[0]} * {_drift(day)}"

    se = " + ".join(f"{_f(w)} * {infl(lag)}" for lag, w in ESR_LAGS)
    esc = str(ANAKINRA_ESCALATED)
    # CRP follows today's systemic activity, suppressed within 2 weeks of a tocilizumab start;
    # ESR follows the lagged activity, more slowly damped on tocilizumab, and is higher with
    # anaemia, with age and in adolescent girls, and per patient (esr_f)
    crp_h = f"(CASE WHEN tcz_t IS NULL THEN 1.0 ELSE {_sq('greatest(0.0, 1.0 - tcz_t / 14.0)')} END)"
    esr_g = f"(CASE WHEN tcz_t IS NULL THEN 1.0 ELSE 0.35 + 0.65 * {_sq('42.0 / (42.0 + tcz_t)')} END)"
    age = _age("d")
    crp_a, crp_b = _LAB_MODEL[16][:2]
    esr_a, esr_b = _LAB_MODEL[17][:2]
    hb_a, hb_b = _LAB_MODEL[19][:2]
    hb_m = f"({_f(hb_a)} + hb_off + {_f(hb_b)} * sa)"
    crp_m = f"({_f(crp_a)} + {_f(crp_b)} * sa * dr0 * {crp_h} * crp_f)"
    esr_m = (
        f"(({_f(esr_a)} + {_f(esr_b)} * pow(se * {esr_g}, {_f(ESR_POWER)})) * esr_f"
        f" * (0.9 + 0.015 * {age} + CASE WHEN female AND {age} >= 12 THEN 0.1 ELSE 0.0 END)"
        f" * (1.0 + 0.1 * greatest(0.0, 12.0 - {hb_m})))"
    )
    oa = f"""
    SELECT pt.*, unnest(list_concat(range(lastk + 1)::INTEGER[], {specials})) AS j
    FROM pt"""
    ob = f"""
    SELECT *, {day} AS d
    FROM oa WHERE {applies}"""
    oc = f"""
    SELECT *,
        {s} AS sa,
        {a} AS aa,
        {_wcurve("d")} AS wc,
        ana AND d >= t0 AND (ts IS NULL OR d < ts OR d >= tre) AND NOT {_interrupted("d")} AS on_ana,
        ana_tap AND j < 100 AND j >= ana_kt AND j < krs AS ana_taper,
        {_tocilizumab("d")} AS tcz_t,
        {_drift("d")} AS dr0,
        CASE WHEN j < 100 THEN
            CASE WHEN escm AND km = j - 1 THEN mo WHEN esc2 AND kf2 = j - 1 THEN fs2
                 WHEN esc1 AND kf1 = j - 1 THEN fs1 END END AS onset_prev,
        CASE j WHEN {FLARE1} THEN kf1 WHEN {FLARE2} THEN kf2 WHEN {MASFU_ON} THEN km END AS kb,
        CASE j WHEN {FLARE1} THEN fl1 WHEN {FLARE2} THEN fl2 END AS fl_len,
        {_interrupted("d")} AS intr,
        coalesce((d >= ana_q AND (t2 IS NULL OR d < t2)) OR d >= b2_q, false) AS quiet,
        coalesce(CASE j {" ".join(f"WHEN {j} THEN hi{i}" for i, j in enumerate(_INTERRUPTING))} END, false) AS hd,
        CASE j {" ".join(f"WHEN {j} THEN ri{i}" for i, j in enumerate(_INTERRUPTING))} END AS rday,
        coalesce((j = {FLARE1} AND re1) OR (j = {FLARE2} AND re2), false) AS ra,
        coalesce(j IN ({FLARE1}, {FLARE2}) AND d = trb, false) AS rb,
        CASE WHEN j BETWEEN {MASDX_ON} AND {MASDX_END} OR (j <= {TWO_WEEK} AND masdx AND d >= md AND d < mde)
             THEN sev_dx ELSE sev_fu END AS sev,
        CASE WHEN j = {MASDX_ON} THEN mde ELSE me END AS mas_end,
        CASE WHEN j <= {TWO_WEEK} THEN CASE WHEN {_in_mas("d")} THEN 2 ELSE 0 END
             WHEN j < {MASDX_ON} OR j > {MASFU_END} THEN 0
             WHEN j = {MASDX_ON} OR j = {MASFU_ON} THEN 1 WHEN j = {MASDX_2} OR j = {MASFU_2} THEN 2
             ELSE 3 END AS lab_mode,
        j <= {TWO_WEEK} AND ((masdx AND d IN (md, md + 2, mde)) OR (masfu AND d IN (mo, mo + 2, me))) AS mas_day,
        hash(sy_seed, p, 82, j) AS ho1,
        hash(sy_seed, p, 83, j) AS ho2,
        hash(sy_seed, p, 84, j) AS ho3,
        hash(sy_seed, p, 85, j) AS ho4
    FROM ob"""
    # the anakinra dose at this visit and the dose in force just before it (the previous
    # visit's, or the escalated dose of a flare or MAS that began since)
    oc2 = f"""
    SELECT *,
        {se} AS se,
        CASE WHEN j < 100 AND on_ana THEN {_target("j", "d")} END AS tk,
        CASE WHEN j < 100 AND on_ana AND j > k0 AND onset_prev IS NULL THEN {_vday("j - 1")} END AS dprev,
        CASE WHEN kb IS NOT NULL THEN {_vday("kb")} END AS dkb
    FROM oc"""
    oc3 = f"""
    SELECT *,
        CASE WHEN dprev IS NOT NULL THEN {_target("j - 1", "dprev")} END AS tprev,
        CASE WHEN dprev IS NOT NULL THEN {_wcurve("dprev")} END AS wprev,
        CASE WHEN onset_prev IS NOT NULL THEN {_wcurve("onset_prev")} END AS wonset,
        CASE WHEN kb IS NOT NULL THEN {_target("kb", "dkb")} END AS tkb,
        CASE WHEN hd THEN {_target("k0 + 1", "rday")} END AS rtk,
        CASE WHEN hd THEN {_wcurve("rday")} END AS rwc,
        CASE WHEN kb IS NOT NULL THEN {_wcurve("dkb")} END AS wkb
    FROM oc2"""
    od = f"""
    SELECT *,
        strftime(v0 + d, '%Y-%m-%d') AS ds,
        CASE WHEN tk IS NOT NULL THEN {_dose("tk", "wc")} END AS dose_k,
        CASE WHEN wonset IS NOT NULL THEN {_dose(esc, "wonset")}
             WHEN dprev IS NOT NULL THEN {_dose("tprev", "wprev")} END AS dose_prev,
        CASE WHEN kb IS NOT NULL THEN {_dose(esc, "wc")} END AS dose_esc,
        CASE WHEN kb IS NOT NULL THEN {_dose("tkb", "wkb")} END AS dose_before,
        CASE WHEN hd THEN {_dose("rtk", "rwc")} END AS dose_r,
        coalesce(ana_tap AND rday >= ana_dkt, false) AS r_taper,
        (ho1 >> 32)::DOUBLE * 2.3283064365386963e-10 AS uo1,
        (ho1 & 4294967295)::DOUBLE * 2.3283064365386963e-10 AS uo2,
        (ho2 >> 32)::DOUBLE * 2.3283064365386963e-10 AS uo3,
        (ho2 & 4294967295)::DOUBLE * 2.3283064365386963e-10 AS uo4,
        (ho3 >> 32)::DOUBLE * 2.3283064365386963e-10 AS uo5,
        (ho3 & 4294967295)::DOUBLE * 2.3283064365386963e-10 AS uo6,
        {_zh("ho3")} AS zo
    FROM oc3"""
    oe = f"""
    SELECT *,
        least(75, floor(aa * jmax * (0.6 + 0.8 * uo5)))::INTEGER AS act,
        CASE WHEN j IN ({MASDX_END}, {MASFU_END}) THEN false WHEN j BETWEEN {FLARE1} AND {MASFU_2} THEN true
             ELSE uo4 < 0.85 * sa END AS febrile,
        pred AND j = kp1 AS m31, pred AND j = kp1 + 1 AS m32, pred AND j = kp1 + 2 AS m33,
        nsaid AND j = knsaid_stop AS m35,
        j = kmtx AS m36,
        ana AND j = k0 AS m40,
        j < 100 AND on_ana AND j > k0 AND (dose_k <> dose_prev OR (ana_taper AND j = ana_kt)) AS m41,
        j = kstop AS m42,
        j = kmstop AS m37,
        b2_tap AND j = b2_kt AS m39,
        j = kstop2 AS m49,
        j = kstop2 AND drug3 IS NOT NULL AS m59,
        {crp_m} AS crp_m,
        {esr_m} AS esr_m,
        {hb_m} AS hb_m,
        j = k2 AS m44,
        j = lastk AS m45
    FROM od"""
    of = f"""
    SELECT *,
        least(75, floor(act * 0.7 * uo6
            + CASE WHEN ana AND resp <> 'C' THEN floor(jmax * 0.25 * least(1.0, d / 730.0)) ELSE 0 END))::INTEGER AS lim,
        CASE WHEN act = 0 AND sa < 0.08 THEN CASE WHEN sa > pg_thr THEN 0.5 ELSE 0.0 END
             ELSE {_clip("round((0.5 + 6.0 * sa + 5.0 * aa + 0.7 * zo) * 2) / 2", 0.5, 10)} END AS phys,
        coalesce(m31 OR m32 OR m33 OR m35 OR m36 OR m40 OR m41 OR m42 OR m44 OR m45, false) AS has_med
    FROM oe"""
    # a regular visit on the day of an MAS occasion leaves the temperature and labs to it
    lab_visit = (
        "((NOT mas_day AND (j = 0 OR j = k0 OR uo1 < CASE WHEN d < 365 THEN 0.85 ELSE 0.45 END OR sa > 0.5))"
        " OR (am AND j = ka))"
    )

    # Which of the parent global, CHAQ, morning stiffness and pain a visit records, and whether a
    # lab visit has the blood count and the liver tests, are drawn per visit, so that only the
    # events recorded become candidates (16-bit pieces of one hash for the assessments).
    def piece(i: int) -> str:
        return f"((ho4 >> {16 * i}) & 65535)::DOUBLE * 1.52587890625e-05"

    rate = {12: _f(_RECORDED[12]), 13: _f(_RECORDED[13]), 15: _f(_RECORDED[15])}
    rate[14] = f"CASE WHEN quiet THEN {_f(STIFFNESS_QUIET)} ELSE {_f(_RECORDED[14])} END"
    assessments = ", ".join(
        f"CASE WHEN {piece(i)} < {rate[slot]} THEN [{slot}]::INTEGER[] ELSE []::INTEGER[] END"
        for i, slot in enumerate((12, 13, 14, 15))
    )
    labs = f"""list_concat([16, 17]::INTEGER[],
                CASE WHEN lab_mode > 0 OR uo2 < {_f(_RECORDED[18])} THEN [18, 19, 20, 21]::INTEGER[] ELSE []::INTEGER[] END,
                [22]::INTEGER[],
                CASE WHEN lab_mode > 0 OR uo3 < {_f(_RECORDED[23])} THEN [23, 24]::INTEGER[] ELSE []::INTEGER[] END,
                [25, 26, 27]::INTEGER[])"""
    meds = "[31, 32, 33, 35, 36, 40, 41, 42, 43, 44, 45]::INTEGER[]"
    # the stops and switches of methotrexate and the second biologic, only where they happen
    meds2 = """CASE WHEN m37 THEN [37, 38]::INTEGER[] ELSE []::INTEGER[] END,
            CASE WHEN m39 THEN [39]::INTEGER[] ELSE []::INTEGER[] END,
            CASE WHEN m49 THEN [49, 58]::INTEGER[] ELSE []::INTEGER[] END,
            CASE WHEN m59 THEN [59]::INTEGER[] ELSE []::INTEGER[] END"""
    slots = f"""CASE
        WHEN j < 100 THEN list_concat(
            CASE WHEN j = 0 THEN {_lst(_DX)} ELSE []::INTEGER[] END,
            {_lst(_CLIN)},
            {assessments},
            CASE WHEN j > 0 THEN [2, 3, 4]::INTEGER[] ELSE []::INTEGER[] END,
            CASE WHEN j % 4 = 0 THEN [9]::INTEGER[] WHEN j % 4 = 2 THEN [28]::INTEGER[] ELSE []::INTEGER[] END,
            CASE WHEN {lab_visit} THEN {labs} WHEN quiet AND NOT mas_day THEN [16, 17]::INTEGER[]
                 ELSE []::INTEGER[] END,
            CASE WHEN has_med THEN {meds} ELSE []::INTEGER[] END,
            {meds2},
            CASE WHEN am AND j = ka AND am_type IN (3, 5) THEN [46, 47]::INTEGER[] ELSE []::INTEGER[] END)
        WHEN j = {TWO_WEEK} THEN {_lst(_TWO_WEEK)}
        WHEN j IN ({FLARE1}, {FLARE2}) THEN CASE WHEN rb THEN list_append({_lst(_FLARE)}, 67) ELSE {_lst(_FLARE)} END
        WHEN j IN ({MASDX_ON}, {MASFU_ON}) THEN {_lst(_MAS_ON)}
        WHEN j IN ({MASDX_2}, {MASFU_2}) THEN {_lst(_MAS_2)}
        WHEN j IN ({MASDX_END}, {MASFU_END}) THEN {_lst(_MAS_END)}
        WHEN j = {AE_WITHDRAW} THEN [64, 65, 66]::INTEGER[]
        WHEN hd THEN [60, 61, 62]::INTEGER[]
        ELSE [60]::INTEGER[] END"""
    og = f"""
    SELECT {", ".join(_EVENT_INPUTS)}, unnest({slots}) AS slot
    FROM of"""
    return f"""
    oa AS ({oa}),
    ob AS ({ob}),
    oc AS ({oc}),
    oc2 AS ({oc2}),
    oc3 AS ({oc3}),
    od AS ({od}),
    oe AS ({oe}),
    of AS ({of}),
    og AS ({og})"""


# What each event slot is. Slots 0-29 are the frequent ones (sampled with a probability);
# the others are recorded when their occasion-level condition holds.
_KIND_OF: dict[int, str] = {
    0: "birth", 1: "diagnosis", 2: "finding", 3: "finding", 4: "finding", 5: "body_temperature",
    6: "finding", 7: "finding", 8: "weight", 9: "height", 10: "joint_exam",
    **{i: "assessment" for i in range(11, 16)}, **{i: "lab" for i in range(16, 28)}, 28: "finding",
    30: "medication_start", 31: "medication_dose_change", 32: "medication_dose_change",
    33: "medication_stop", 34: "medication_start", 35: "medication_stop", 36: "medication_start",
    40: "medication_start", 41: "medication_dose_change", 42: "medication_stop", 43: "discontinuation",
    44: "medication_start", 45: "end_of_follow_up", 46: "body_temperature", 47: "lab",
    37: "medication_stop", 38: "discontinuation", 39: "medication_dose_change", 49: "medication_stop",
    58: "discontinuation", 59: "medication_start", 61: "medication_stop", 62: "medication_start",
    63: "medication_start", 67: "medication_start",
    48: "medication_dose_change", 50: "mas_episode", 51: "medication_start", 52: "medication_stop",
    53: "medication_start", 54: "medication_stop", 55: "adverse_event", 56: "finding", 57: "finding",
    60: "adverse_event", 64: "adverse_event", 65: "medication_stop", 66: "discontinuation",
}  # fmt: skip
# event family of each slot: 1 measurement, 2 finding, 3 medication, 4 adverse event, 5 other
_FAMILY = {
    **{
        k: 1
        for k, v in _KIND_OF.items()
        if v in ("body_temperature", "weight", "height", "assessment", "lab")
    },
    **{k: 2 for k, v in _KIND_OF.items() if v == "finding"},
    **{k: 3 for k, v in _KIND_OF.items() if v.startswith("medication") or v == "discontinuation"},
    **{k: 4 for k, v in _KIND_OF.items() if v == "adverse_event"},
    **{
        k: 5
        for k, v in _KIND_OF.items()
        if v in ("birth", "diagnosis", "joint_exam", "end_of_follow_up", "mas_episode")
    },
}
# probability that a frequent slot is recorded at a regular visit (labs: at a lab visit)
_RECORDED = {
    0: 1.0, 1: 1.0, 5: 1.0, 6: 0.97, 8: 0.9, 9: 1.0, 10: 0.93, 11: 0.9, 12: 0.35, 13: 0.25, 14: 0.3,
    15: 0.15, 16: 0.97, 17: 0.85, 18: 0.6, 19: 0.6, 20: 0.6, 21: 0.6, 22: 0.4, 23: 0.35, 24: 0.35,
    25: 0.05, 26: 0.05, 27: 0.1,
}  # fmt: skip
_LAB_CODE = {
    16: "1988-5", 17: "4537-7", 18: "777-3", 19: "718-7", 20: "6690-2", 21: "751-8", 22: "2276-4",
    23: "1920-8", 24: "1742-6", 25: "2532-0", 26: "2571-8", 27: "3255-7", 47: "1988-5",
}  # fmt: skip
_ASSESSMENT = {11: "physician_global", 12: "parent_global", 13: "chaq", 14: "morning_stiffness", 15: "pain"}
_FINDING = {
    2: "lymphadenopathy",
    4: "serositis",
    6: "rash",
    7: "fever",
    56: "cns_involvement",
    57: "haemorrhage",
    28: "uveitis",
}
_CODE = {1: "sJIA", **_LAB_CODE, **_ASSESSMENT, **_FINDING}
_DRUG = {
    **{i: "prednisolone" for i in (30, 31, 32, 33)}, 34: "naproxen", 35: "naproxen", 36: "methotrexate",
    **{i: "anakinra" for i in (40, 41, 42, 43, 48, 60, 61, 62, 63, 64, 65, 66)}, 37: "methotrexate",
    38: "methotrexate",
    51: "methylprednisolone", 52: "methylprednisolone", 53: "ciclosporin", 54: "ciclosporin",
}  # fmt: skip
# Systemic features (slots 2-4: lymphadenopathy, the patient's organomegaly, serositis) and
# uveitis (slot 28, at an eye examination): whether present. At diagnosis as the patient's
# flags; at later visits while the systemic activity is high (> 0.5) in a patient who had the
# feature; in a flare (with its end) or at an MAS onset (ending with the episode) by chance.
# A feature absent is recorded at 40% of examinations (serositis 20%), uveitis absent at half
# the eye examinations of every fourth visit; a recorded absence ends an earlier presence.
_FEATURE_PRESENT = f"""CASE
    WHEN slot = 28 THEN uv AND j = kuv
    WHEN slot NOT BETWEEN 2 AND 4 THEN NULL
    WHEN j IN ({FLARE1}, {FLARE2}) THEN ue2 < CASE slot WHEN 2 THEN 0.45 WHEN 3 THEN 0.3 ELSE 0.1 END
    WHEN j IN ({MASDX_ON}, {MASFU_ON}) THEN ue2 < CASE slot WHEN 2 THEN 0.4 WHEN 3 THEN 0.6 ELSE 0.1 END
    ELSE CASE slot WHEN 2 THEN lymph WHEN 3 THEN organ ELSE serositis END AND (j = 0 OR sa > 0.5) END"""
_ROUTE = {30: "oral", 31: "oral", 32: "oral", 34: "oral", 40: "sc", 41: "sc", 48: "sc", 51: "iv", 53: "oral",
          62: "sc", 63: "sc"}  # fmt: skip
_FREQUENCY = {30: "daily", 31: "daily", 32: "daily", 34: "bid", 36: "weekly", 40: "daily", 41: "daily",
              48: "daily", 51: "daily", 53: "bid", 63: "daily"}  # fmt: skip
_DOSE_UNIT = {i: "mg" for i in (30, 31, 32, 34, 36, 39, 40, 41, 44, 48, 51, 53, 59, 62, 63, 67)}
_REASON = {33: "tapered off", 35: "no longer needed", 52: "pulse completed", 54: "MAS resolved",
           61: "interrupted: adverse event"}  # fmt: skip
# slots of the second biologic (its start, taper, stop, discontinuation, restart) and the third
_BIOLOGIC2 = (44, 39, 49, 58, 67)
_BIOLOGIC3 = 59


def _table(mapping: dict[int, Any], typ: str = "VARCHAR") -> str:
    """SQL list indexed by slot + 1 (NULL where the slot has no entry)."""
    top = max(mapping)
    return (
        "[" + ", ".join(_lit(mapping[i]) if i in mapping else "NULL" for i in range(top + 1)) + f"]::{typ}[]"
    )


def _by_slot(mapping: dict[int, Any], typ: str = "VARCHAR") -> str:
    return f"list_extract({_table(mapping, typ)}, slot + 1)"


def _emit_sql() -> str:
    """Whether each candidate event is recorded: frequent slots by their probability (blood
    counts and liver tests as panels), the others by their occasion-level condition."""
    frequent = f"""CASE
        WHEN mas_day AND (slot = 5 OR (j = {TWO_WEEK} AND slot = 16)) THEN false
        WHEN slot BETWEEN 2 AND 4 THEN fp OR ue1 < CASE slot WHEN 4 THEN 0.2 ELSE 0.4 END
        WHEN j >= 100 THEN true
        WHEN lab_mode > 0 AND slot BETWEEN 16 AND 27 THEN true
        WHEN slot = 28 THEN fp OR ue1 < 0.5
        WHEN slot = 7 THEN ue1 < 0.1 + 0.7 * sa
        WHEN slot BETWEEN 12 AND 15 OR slot BETWEEN 18 AND 21 OR slot BETWEEN 23 AND 24 THEN true
        ELSE {_by_slot(_RECORDED, "DOUBLE")} > ue1
            OR (slot = 22 AND sa > 0.5)
            OR (slot = 8 AND (j = 0 OR j = k0 OR j = k2 OR m41))
            OR (am AND j = ka AND (slot = 8 OR slot = 10 OR slot = 16)) END"""
    rare = f"""CASE slot
        WHEN 30 THEN pred WHEN 31 THEN m31 WHEN 32 THEN m32 WHEN 33 THEN m33
        WHEN 34 THEN nsaid WHEN 35 THEN m35 WHEN 36 THEN m36
        WHEN 40 THEN m40 WHEN 41 THEN m41 WHEN 42 THEN m42 WHEN 43 THEN m42 WHEN 44 THEN m44
        WHEN 45 THEN m45
        WHEN 46 THEN am AND j = ka AND am_type = 3 WHEN 47 THEN am AND j = ka AND am_type = 5
        WHEN 48 THEN (j = {FLARE1} AND esc1 OR j = {FLARE2} AND esc2 OR j = {MASFU_ON} AND escm)
                     AND dose_esc <> dose_before AND NOT intr AND NOT ra
        WHEN 63 THEN ra
        WHEN 53 THEN csa AND NOT (csa_on AND j = {MASFU_ON})
        WHEN 54 THEN csa AND mas_end + csa_lag <= dlast AND NOT (csa_on AND j = {MASDX_ON})
        WHEN 55 THEN j = {MASFU_ON}
        WHEN 56 THEN ue1 < 0.05 WHEN 57 THEN ue1 < 0.03
        ELSE true END"""
    return f"CASE WHEN slot < 30 THEN {frequent} ELSE {rare} END"


# Labs at ordinary occasions: canonical value = clip((a + b·S + c·S²) · exp(σ·z), low, high),
# S the systemic activity (0-1), z the event's normal deviate.
_LAB_MODEL = {  # slot: (a, b, c, sigma, low, high)
    16: (0.8, 130.0, 0.0, 0.5, 0.1, 400.0),  # CRP mg/L (drift, tocilizumab: see _occasions_sql)
    17: (5.0, 70.0, 0.0, 0.35, 1.0, 140.0),  # ESR mm/h (lagged activity, see _occasions_sql)
    18: (260.0, 320.0, 0.0, 0.14, 150.0, 1100.0),  # platelets 10*9/L: thrombocytosis when active
    19: (12.8, -3.0, 0.0, 0.05, 6.5, 16.5),  # haemoglobin g/dL: anaemia of inflammation
    20: (7.0, 14.0, 0.0, 0.18, 2.5, 45.0),  # WBC 10*9/L
    21: (3.2, 11.0, 0.0, 0.22, 0.8, 38.0),  # neutrophils 10*9/L
    22: (40.0, 0.0, 1800.0, 0.6, 8.0, 30000.0),  # ferritin ng/mL
    23: (28.0, 0.0, 0.0, 0.2, 12.0, 120.0),  # AST U/L
    24: (18.0, 0.0, 0.0, 0.3, 6.0, 150.0),  # ALT U/L
    25: (230.0, 250.0, 0.0, 0.2, 120.0, 2000.0),  # LDH U/L
    26: (95.0, 0.0, 0.0, 0.25, 40.0, 300.0),  # triglycerides mg/dL
    27: (260.0, 330.0, 0.0, 0.12, 160.0, 900.0),  # fibrinogen mg/dL
}
# Display of each lab: (scale from the canonical unit, power of ten to round to, unit, ref_low,
# ref_high) for the patient's laboratory: variant 0, or variant 1 when the patient's flag is set.
_LAB_UNITS: dict[int, tuple[tuple[float, float, str, float | None, float | None], ...]] = {
    16: ((1.0, 10.0, "mg/L", 0.0, 5.0), (0.1, 100.0, "mg/dL", 0.0, 0.5)),
    17: ((1.0, 1.0, "mm/h", 0.0, 20.0),) * 2,
    18: ((1.0, 1.0, "10*9/L", 150.0, 450.0), (1.0, 1.0, "10*3/uL", 150.0, 450.0)),
    19: ((1.0, 10.0, "g/dL", 11.5, 15.5), (10.0, 1.0, "g/L", 115.0, 155.0)),
    20: ((1.0, 10.0, "10*9/L", 4.5, 13.5),) * 2,
    21: ((1.0, 100.0, "10*9/L", None, None),) * 2,
    22: ((1.0, 1.0, "ng/mL", None, None), (1.0, 1.0, "ug/L", None, None)),
    23: ((1.0, 1.0, "U/L", None, None),) * 2,
    24: ((1.0, 1.0, "U/L", None, None),) * 2,
    25: ((1.0, 1.0, "U/L", None, None),) * 2,
    26: ((1.0, 1.0, "mg/dL", None, None), (1.0 / 88.57, 100.0, "mmol/L", None, None)),
    27: ((1.0, 1.0, "mg/dL", None, None), (0.01, 100.0, "g/L", None, None)),
}
# which bit of the patient's ``units`` mask selects variant 1 (7: never set)
_UNIT_BIT = {16: 0, 18: 1, 19: 2, 22: 3, 26: 4, 27: 5}


def _lab_sql() -> tuple[str, str, str, str, str]:
    """(canonical value, value, unit, ref_low, ref_high) of lab slots (``ls``: the lab's slot),
    in each patient's laboratory units. MAS occasions have labs of their own."""
    e = _exp

    def par(i: int) -> str:
        return _by_slot({k: v[i] for k, v in _LAB_MODEL.items()}, "DOUBLE").replace("slot + 1", "ls + 1")

    # an intercurrent (viral) infection raises CRP at some draws, not ESR (it lags)
    spike = (
        f"CASE WHEN ue2 < {_f(CRP_INTERCURRENT)} THEN 5.0 + 35.0 * ue2 / {_f(CRP_INTERCURRENT)} ELSE 0.0 END"
    )
    mean = f"CASE ls WHEN 16 THEN crp_m + {spike} WHEN 17 THEN esr_m WHEN 19 THEN hb_m ELSE {par(0)} + {par(1)} * sa + {par(2)} * sa * sa END"
    ordinary = f"greatest({par(4)}, least({par(5)}, ({mean}) * {e(f'{par(3)} * z')}))"
    mas = f"""CASE ls
        WHEN 16 THEN CASE lab_mode WHEN 3 THEN 3 + 10 * ue2 ELSE 30 + 100 * ue2 END
        WHEN 17 THEN CASE lab_mode WHEN 3 THEN 10 + 15 * ue2 ELSE 8 + 25 * ue2 END
        WHEN 18 THEN CASE lab_mode WHEN 1 THEN greatest(45.0, 170 - 110 * sev - 10 * ue2)
                     WHEN 2 THEN greatest(40.0, 160 - 110 * sev - 10 * ue2) ELSE 190 + 150 * ue2 END
        WHEN 19 THEN 7.5 + 2.5 * ue2
        WHEN 20 THEN 1.8 + 3.0 * ue2
        WHEN 21 THEN 0.6 + 2.0 * ue2
        WHEN 22 THEN CASE lab_mode WHEN 1 THEN greatest(1200.0, (1500 + 25000 * sev * sev) * {e("0.3 * z")})
                     WHEN 2 THEN greatest(1500.0, (2000 + 30000 * sev * sev) * {e("0.3 * z")})
                     ELSE 250 + 400 * ue2 END
        WHEN 23 THEN CASE lab_mode WHEN 3 THEN 20 + 25 * ue2 ELSE 60 + 500 * sev * (0.5 + ue2) END
        WHEN 24 THEN 50 + 400 * sev * (0.5 + ue2)
        WHEN 25 THEN 600 + 2500 * sev * ue2
        WHEN 26 THEN CASE lab_mode WHEN 3 THEN 100 + 50 * ue2 ELSE 170 + 350 * sev * (0.3 + ue2) END
        WHEN 27 THEN CASE lab_mode WHEN 1 THEN greatest(60.0, 320 - 200 * sev - 20 * ue2)
                     WHEN 2 THEN greatest(60.0, 300 - 200 * sev - 20 * ue2) ELSE 200 + 130 * ue2 END END"""
    canon = f"CASE WHEN ls > 0 THEN CASE WHEN lab_mode = 0 THEN {ordinary} ELSE {mas} END END"
    variant = f"((units >> {_by_slot(_UNIT_BIT | {s: 7 for s in _LAB_MODEL if s not in _UNIT_BIT}, 'INTEGER').replace('slot + 1', 'ls + 1')}) & 1)"
    idx = f"(ls * 2 + {variant} + 1)"

    def col(i: int, typ: str) -> str:
        flat: dict[int, Any] = {}
        for slot, variants in _LAB_UNITS.items():
            for v, row in enumerate(variants):
                flat[slot * 2 + v] = row[i]
        return f"list_extract({_table(flat, typ)}, {idx})"

    value = f"round(lv * {col(0, 'DOUBLE')} * {col(1, 'DOUBLE')}) / {col(1, 'DOUBLE')}"
    ref = "CASE WHEN has_ref THEN {} END"
    return canon, value, col(2, "VARCHAR"), ref.format(col(3, "DOUBLE")), ref.format(col(4, "DOUBLE"))


_AMEND_REASONS = {
    0: "'weight entered in pounds in the kilogram field (chart: ' || value || ' ' || unit || ')'",
    1: "'CRP entered with the wrong unit (laboratory report: ' || value || ' ' || unit || ')'",
    2: "'active and limited joint counts entered in swapped columns'",
    3: "'temperature entered in the wrong patient''s chart'",
    4: "'MAS episode resolution date added from the discharge letter'",
    5: "'laboratory result entered twice'",
}


def _events_sql() -> str:
    canon, lab_value, lab_unit, ref_low, ref_high = _lab_sql()
    tc = f"""round(CASE WHEN slot = 46 THEN 38.4 + round(ue2 * 10) / 10
        WHEN febrile AND j >= 100 THEN 38.3 + round(ue2 * 17) / 10
        WHEN febrile THEN 38.0 + round(ue2 * 18) / 10
        WHEN slot = 5 AND ue1 < {_f(LOW_GRADE_BASE)} + {_f(LOW_GRADE_S)} * sa THEN 37.3 + round(ue2 * 6) / 10
        ELSE 36.2 + round(ue2 * 10) / 10 END, 1)"""
    wm = "round(wc * (1.0 + 0.012 * z), 1)"
    value = f"""CASE WHEN fam = 1 THEN CASE
        WHEN ls > 0 THEN {lab_value}
        WHEN slot = 5 OR slot = 46 THEN CASE WHEN temp_f THEN round({tc} * 1.8 + 32, 1) ELSE {tc} END
        WHEN slot = 8 THEN CASE WHEN wt_lb THEN round({wm} / 0.45359237, 1) ELSE {wm} END
        WHEN slot = 9 THEN round({_hcurve("d")} + 0.4 * z, 1)
        WHEN slot = 11 THEN phys
        WHEN slot = 12 THEN {_clip("round((phys + 0.5 + 1.2 * z) * 2) / 2", 0, 10)}
        WHEN slot = 13 THEN {_clip("round((0.1 + 1.6 * aa + 0.3 * sa + 0.25 * z) * 8) / 8", 0, 3)}
        WHEN slot = 14 THEN CASE WHEN act = 0 AND ue2 < 0.9 THEN 0.0
                            ELSE least(240.0, round((10 + 100 * aa * (0.5 + ue2)) / 5) * 5) END
        WHEN slot = 15 THEN {_clip("round((0.8 * phys + 0.8 * z) * 2) / 2", 0, 10)} END END"""
    unit = f"""CASE WHEN fam = 1 THEN CASE
        WHEN ls > 0 THEN {lab_unit}
        WHEN slot = 5 OR slot = 46 THEN CASE WHEN temp_f THEN '[degF]' ELSE 'Cel' END
        WHEN slot = 8 THEN CASE WHEN wt_lb THEN '[lb_av]' ELSE 'kg' END
        WHEN slot = 9 THEN 'cm'
        WHEN slot = 14 THEN 'min'
        ELSE '{{score}}' END END"""

    def infection(col: int) -> str:
        return _pick("ue2", _INFECTIONS, col)

    infected = f"j BETWEEN {AE_INF1} AND {AE_INF3}"
    term = f"""CASE slot
        WHEN 55 THEN list_extract({_lit(list(_TRIGGERS))}::VARCHAR[], floor(u_trig * {len(_TRIGGERS)})::INTEGER + 1)
        WHEN 64 THEN wd_term
        ELSE CASE j WHEN {AE_ISR} THEN 'injection site reaction' WHEN {AE_NEUT} THEN 'neutrophil count decreased'
             WHEN {AE_ALT} THEN 'alanine aminotransferase increased' ELSE {infection(1)} END END"""
    grade = f"""CASE slot WHEN 55 THEN 2 WHEN 64 THEN wd_grade
        ELSE CASE j WHEN {AE_ISR} THEN CASE WHEN ue2 < 0.15 THEN 2 ELSE 1 END
             WHEN {AE_NEUT} THEN CASE WHEN ue2 > 0.85 THEN 3 ELSE 2 END
             WHEN {AE_ALT} THEN CASE WHEN ue2 < 0.7 THEN 1 ELSE 2 END
             ELSE CASE WHEN uo6 < {infection(2)} THEN 1 ELSE {infection(3)} END END END"""
    serious = f"""CASE slot WHEN 55 THEN false WHEN 64 THEN wd_serious
        ELSE CASE WHEN {infected} THEN {infection(4)} ELSE false END END"""
    action = f"""CASE slot WHEN 55 THEN 'none' WHEN 64 THEN 'drug_withdrawn'
        ELSE CASE WHEN {infected} THEN {infection(5)}
             WHEN j = {AE_NEUT} AND ue2 > 0.85 THEN 'drug_interrupted' ELSE 'none' END END"""
    ae_days = f"""CASE j WHEN {AE_ISR} THEN 3 + floor(ue2 * 15)::INTEGER WHEN {AE_NEUT} THEN 14 WHEN {AE_ALT} THEN 21
        ELSE {infection(6)} END"""
    pred0 = "greatest(2.5, least(60.0, round(pred_t * wc0 / 2.5) * 2.5))"

    def bio_dose(drug: str) -> str:
        return f"""CASE WHEN {drug} = 'canakinumab' THEN least(300.0, round(4 * wc))
                     ELSE least(800.0, round(CASE WHEN wc < 30 THEN 12 ELSE 8 END * wc)) END"""

    bio2 = ", ".join(str(x) for x in _BIOLOGIC2)
    dose = f"""CASE slot
        WHEN 40 THEN dose_k WHEN 41 THEN dose_k WHEN 48 THEN dose_esc
        WHEN 30 THEN {pred0}
        WHEN 31 THEN greatest(2.5, round({pred0} / 2 / 2.5) * 2.5)
        WHEN 32 THEN greatest(2.5, round({pred0} / 4 / 2.5) * 2.5)
        WHEN 34 THEN greatest(25.0, least(500.0, round(10 * wc0 / 25) * 25))
        WHEN 36 THEN greatest(2.5, least(20.0, round(0.4 * wc / 2.5) * 2.5))
        WHEN 44 THEN {bio_dose("drug2")} WHEN 39 THEN {bio_dose("drug2")} WHEN 67 THEN {bio_dose("drug2")}
        WHEN 59 THEN {bio_dose("drug3")} WHEN 62 THEN dose_r WHEN 63 THEN dose_esc
        WHEN 51 THEN least(1000.0, round(30 * wc / 10) * 10)
        WHEN 53 THEN greatest(10.0, least(150.0, round(2.5 * wc / 5) * 5)) END"""
    dose_unit = f"""CASE WHEN mgkg AND (slot BETWEEN 40 AND 41 OR slot IN (48, 62, 63)) THEN 'mg/kg'
        ELSE {_by_slot(_DOSE_UNIT)} END"""
    drug = f"CASE WHEN slot IN ({bio2}) THEN drug2 WHEN slot = {_BIOLOGIC3} THEN drug3 ELSE {_by_slot(_DRUG)} END"
    route = f"""CASE WHEN slot = 36 THEN CASE WHEN mtx_sc THEN 'sc' ELSE 'oral' END
        WHEN slot IN (44, 39, 67) THEN CASE WHEN drug2 = 'canakinumab' THEN 'sc' ELSE 'iv' END
        WHEN slot = {_BIOLOGIC3} THEN CASE WHEN drug3 = 'canakinumab' THEN 'sc' ELSE 'iv' END
        ELSE {_by_slot(_ROUTE)} END"""
    # a taper: anakinra every other day, tocilizumab every 4 weeks, canakinumab every 8 weeks
    frequency = f"""CASE WHEN slot IN (44, 67) THEN CASE WHEN drug2 = 'canakinumab' THEN 'every_4_weeks' ELSE 'every_2_weeks' END
        WHEN slot = 39 THEN CASE WHEN drug2 = 'canakinumab' THEN 'every_8_weeks' ELSE 'every_4_weeks' END
        WHEN slot = {_BIOLOGIC3} THEN CASE WHEN drug3 = 'canakinumab' THEN 'every_4_weeks' ELSE 'every_2_weeks' END
        WHEN slot = 41 AND ana_taper THEN 'every_other_day'
        WHEN slot = 62 THEN CASE WHEN r_taper THEN 'every_other_day' ELSE 'daily' END
        ELSE {_by_slot(_FREQUENCY)} END"""
    eofu = f"""CASE WHEN {_age("dlast")} >= 16 AND u_eofu < 0.7 THEN 'transferred to adult rheumatology'
        WHEN u_eofu < 0.5 THEN 'end of study period' WHEN u_eofu < 0.8 THEN 'lost to follow-up'
        ELSE 'moved to another region' END"""
    reason = f"""CASE slot WHEN 42 THEN stop_kind WHEN 43 THEN stop_kind
        WHEN 37 THEN mtx_stop_kind WHEN 38 THEN mtx_stop_kind WHEN 49 THEN stop2_kind WHEN 58 THEN stop2_kind
        WHEN 65 THEN 'adverse event: ' || wd_term WHEN 66 THEN 'adverse event: ' || wd_term
        WHEN 45 THEN {eofu} ELSE {_by_slot(_REASON)} END"""
    hhmm = "lpad((8 + hz % 14)::VARCHAR, 2, '0') || ':' || lpad(((hz // 14) % 60)::VARCHAR, 2, '0')"
    occurred = f"""CASE WHEN slot BETWEEN 6 AND 49 THEN ds ELSE CASE slot
        WHEN 0 THEN strftime(birth, '%Y-%m-%d')
        WHEN 1 THEN strftime(v0 - delay, '%Y-%m-%d')
        WHEN 5 THEN CASE WHEN lab_mode = 1 THEN ds || 'T' || {hhmm} ELSE ds END
        WHEN 52 THEN {_ds("d + 2")}
        WHEN 53 THEN {_ds("d + 1")}
        WHEN 54 THEN {_ds("mas_end + csa_lag")}
        WHEN 55 THEN {_ds("d - 3 - floor(ue2 * 5)")}
        WHEN 62 THEN {_ds("rday")}
        ELSE ds END END"""
    ended = f"""CASE WHEN slot BETWEEN 2 AND 4 AND fp THEN CASE
            WHEN j IN ({FLARE1}, {FLARE2}) THEN {_ds("least(d + fl_len, dlast)")}
            WHEN j IN ({MASDX_ON}, {MASFU_ON}) THEN {_ds("mas_end")} END
        WHEN slot >= 50 THEN CASE slot
        WHEN 50 THEN {_ds("mas_end")}
        WHEN 55 THEN {_ds("least(d + 10, dlast)")}
        WHEN 60 THEN {_ds(f"least(d + {ae_days}, dlast)")}
        WHEN 64 THEN {_ds("least(d + 14, dlast)")} END END"""
    code = f"""CASE WHEN slot = 3 THEN CASE WHEN u_organ < 0.4 THEN 'hepatomegaly'
        WHEN u_organ < 0.7 THEN 'splenomegaly' ELSE 'organomegaly' END ELSE {_by_slot(_CODE)} END"""
    present = f"""CASE WHEN fam = 2 THEN CASE slot
        WHEN 6 THEN CASE WHEN j >= {FLARE1} AND j <= {FLARE2} THEN ue2 < 0.7 ELSE ue2 < 0.75 * sa END
        WHEN 7 THEN febrile OR ue2 < 0.6 * sa
        WHEN 2 THEN fp WHEN 3 THEN fp WHEN 4 THEN fp WHEN 28 THEN fp
        ELSE true END END"""
    note = f"""CASE WHEN slot = 5 AND j >= {FLARE1} AND j <= {FLARE2} THEN 'unscheduled visit: flare'
        WHEN slot = 50 THEN CASE WHEN j = {MASDX_ON} THEN 'MAS at presentation' ELSE 'MAS during follow-up' END END"""
    is_am = f"""CASE WHEN am AND (j = ka OR slot = 50) THEN CASE am_type
        WHEN 0 THEN slot = 8
        WHEN 1 THEN slot = 16 AND (crp_dl OR lv <= 100)
        WHEN 2 THEN slot = 10 AND act <> lim
        WHEN 3 THEN slot = 46
        WHEN 4 THEN slot = 50 AND j = CASE WHEN masdx THEN {MASDX_ON} ELSE {MASFU_ON} END
        WHEN 5 THEN slot = 47 END ELSE false END"""
    return f"""
    ev AS (
        SELECT *,
            hash(sy_seed, p, j, CASE WHEN slot = 47 THEN 16 ELSE slot END) AS he,
            hash(sy_seed, p, j, CASE WHEN slot = 47 THEN 1016 ELSE slot + 1000 END) AS hz,
            CASE WHEN slot BETWEEN 16 AND 27 THEN slot WHEN slot = 47 THEN 16 ELSE 0 END AS ls
        FROM og),
    ew AS (
        SELECT *,
            (he >> 32)::DOUBLE * 2.3283064365386963e-10 AS ue1,
            (he & 4294967295)::DOUBLE * 2.3283064365386963e-10 AS ue2,
            {_zh("hz")} AS z
        FROM ev),
    ef AS (
        SELECT *, {_FEATURE_PRESENT} AS fp
        FROM ew),
    ex AS (
        SELECT *, {canon} AS lv, {_by_slot(_FAMILY, "INTEGER")} AS fam
        FROM ef WHERE {_emit_sql()}),
    fin AS (
        SELECT
            pid || '-' || (j * 100 + slot)::VARCHAR AS event_id,
            pid AS patient_id,
            {_by_slot(_KIND_OF)} AS kind,
            {occurred} AS occurred_at,
            {ended} AS ended_at,
            {code} AS code,
            ({value})::DOUBLE AS value,
            {unit} AS unit,
            CASE WHEN ls > 0 THEN {ref_low} END AS ref_low,
            CASE WHEN ls > 0 THEN {ref_high} END AS ref_high,
            {present} AS present,
            CASE WHEN slot = 0 THEN CASE WHEN female THEN 'female' ELSE 'male' END END AS sex,
            CASE WHEN fam = 3 OR fam = 4 THEN {drug} END AS drug,
            CASE WHEN fam = 3 THEN ({dose})::DOUBLE END AS dose,
            CASE WHEN fam = 3 THEN {dose_unit} END AS dose_unit,
            CASE WHEN fam = 3 THEN {route} END AS route,
            CASE WHEN fam = 3 THEN {frequency} END AS frequency,
            CASE WHEN slot = 10 THEN act END AS active_joints,
            CASE WHEN slot = 10 THEN lim END AS limited_joints,
            CASE WHEN fam = 4 THEN {term} END AS term,
            CASE WHEN fam = 4 THEN ({grade})::INTEGER END AS grade,
            CASE WHEN fam = 4 THEN {serious} END AS serious,
            CASE WHEN fam = 4 THEN {action} END AS action,
            CASE WHEN fam = 3 OR slot = 45 THEN {reason} END AS reason,
            {note} AS note,
            {is_am} AS is_am,
            am_type,
            crp_dl
        FROM ex)"""


def query(seed: int, first: int, last: int, *, amendments: bool = False) -> str:
    """SQL yielding the native events of patients ``first`` .. ``last - 1`` (or, with
    ``amendments``, their corrections and retractions), in a fixed order."""
    body = f"WITH {_patients_sql(first, last, amendments)},\n{_occasions_sql()},\n{_events_sql()}\n"
    if amendments:
        sets = """CASE am_type
            WHEN 0 THEN json_object('value', value::VARCHAR)
            WHEN 1 THEN json_object('unit', unit)
            WHEN 2 THEN json_object('active_joints', active_joints::VARCHAR, 'limited_joints', limited_joints::VARCHAR)
            WHEN 4 THEN json_object('ended_at', ended_at) END"""
        reason = "CASE am_type " + " ".join(f"WHEN {k} THEN {v}" for k, v in _AMEND_REASONS.items()) + " END"
        body += f"""SELECT CASE WHEN am_type IN (3, 5) THEN 'retract' ELSE 'correct' END AS op,
            event_id, {sets}::VARCHAR AS "set", {reason} AS reason
        FROM fin WHERE is_am"""
    else:
        overrides = {
            "value": "CASE WHEN is_am AND am_type = 0 THEN round(value * 2.2046, 1) ELSE value END",
            "unit": "CASE WHEN is_am AND am_type = 1 THEN CASE WHEN crp_dl THEN 'mg/L' ELSE 'mg/dL' END ELSE unit END",
            "active_joints": "CASE WHEN is_am AND am_type = 2 THEN limited_joints ELSE active_joints END",
            "limited_joints": "CASE WHEN is_am AND am_type = 2 THEN active_joints ELSE limited_joints END",
            "ended_at": "CASE WHEN is_am AND am_type = 4 THEN NULL ELSE ended_at END",
        }
        cols = ", ".join(f"{overrides[c]} AS {c}" if c in overrides else c for c in NATIVE_COLUMNS)
        body += f"SELECT {cols} FROM fin"
    return body.replace("sy_seed", f"{seed}::BIGINT")


# ---- writing --------------------------------------------------------------------------------


def chunk_size(patients: int) -> int:
    """Patients per chunk: a function of N only (never of the machine), so that the same N
    and seed give the same chunks and therefore the same bytes. Each chunk costs ~0.15 s of
    query planning, so chunks are large; small runs still get a few chunks to share out."""
    if patients >= 4 * CHUNK_PATIENTS:
        return CHUNK_PATIENTS
    return max(1000, -(-patients // 4))


def default_workers() -> int:
    """One worker per core this process may use, at most 8 (memory grows with workers: each
    holds a chunk's DuckDB pipeline and Parquet row group, ~100-150 MB)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, 8))


def check_options(*, patients: int, seed: int, out: str | Path, fmt: str | None = None) -> str:
    """The output format ("parquet" or "csv"), once the number of patients, the seed and the
    format are known to be valid: the file's extension decides, ``fmt`` is needed only for
    another extension and must agree with a .parquet or .csv one (as ``timeline ingest``
    reads a file by its extension unless told). Raises :class:`UsageError`."""
    if patients < 1 or patients > MAX_PATIENTS:
        raise UsageError(f"--patients must be from 1 to {MAX_PATIENTS:,}: {patients}")
    if seed < 0 or seed >= 2**63:
        raise UsageError(f"--seed must be a whole number from 0 to 2^63 - 1: {seed}")
    target = Path(out)
    by_name = FORMATS.get(target.suffix.lower())
    kind = fmt.lower() if fmt else by_name
    if fmt and kind not in ("parquet", "csv"):
        raise UsageError(f"unknown --format {fmt!r}: give parquet or csv")
    if kind not in ("parquet", "csv"):
        raise UsageError(
            f"cannot tell the format of {str(target)!r}: name it .parquet or .csv (or give --format)"
        )
    if by_name is not None and kind != by_name:
        raise UsageError(
            f"--format {fmt} does not match {str(target)!r}, a .{by_name} name: "
            f"leave out --format or name the file .{kind}"
        )
    return kind


def synthesize(
    *,
    patients: int,
    seed: int,
    out: str | Path,
    amendments: str | Path | None = None,
    fmt: str | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
    chunk: int | None = None,
) -> SynthResult:
    """Write a synthetic cohort of ``patients`` patients to ``out`` (Parquet or CSV, by
    extension or ``fmt``), and their amendments to ``amendments`` (JSON Lines) if given.

    Patients are generated in chunks (:func:`chunk_size`) by ``workers`` threads (default:
    :func:`default_workers`), each chunk by its own single-threaded DuckDB ``COPY`` into a
    part file; the parts are appended to the output in order as they complete (CSV: the
    bytes; Parquet: the row groups, under one footer) and deleted. The output is written under a temporary
    name and renamed when complete. ``chunk`` overrides the chunk size (tests): it changes
    the Parquet row groups, never the events."""
    kind = check_options(patients=patients, seed=seed, out=out, fmt=fmt)
    target = Path(out)
    for path in (target, *([Path(amendments)] if amendments is not None else [])):
        if path.is_dir():
            raise UsageError(f"{path} is a directory")
        if not path.parent.is_dir():
            raise UsageError(f"no such directory: {path.parent}")
    started = time.perf_counter()
    size = chunk or chunk_size(patients)
    chunks = [(lo, min(lo + size, patients + 1)) for lo in range(1, patients + 1, size)]
    n_workers = max(1, min(workers or default_workers(), len(chunks)))
    tmp = target.with_name(f".{target.name}.part-{os.getpid()}")
    try:
        parts = Path(tempfile.mkdtemp(prefix=f".{target.name}.chunks-", dir=target.parent))
    except OSError as exc:
        raise cannot_write(target, exc) from exc
    events = 0
    writing = target  # the file being written, for an error
    try:
        writer: _Appender = _ParquetAppender(tmp) if kind == "parquet" else _CsvAppender(tmp)
        pool = ThreadPoolExecutor(max_workers=n_workers, thread_name_prefix="synth")
        try:
            with writer:
                pending: dict[int, Future[int]] = {}
                submitted = 0
                for i in range(len(chunks)):
                    # keep every worker busy, at most two chunks each ahead of the writer
                    while submitted < len(chunks) and submitted < i + 2 * n_workers:
                        lo, hi = chunks[submitted]
                        part = parts / f"{submitted:06d}"
                        pending[submitted] = pool.submit(_write_chunk, seed, lo, hi, kind, part)
                        submitted += 1
                    events += pending.pop(i).result()
                    writer.append(parts / f"{i:06d}")
                    (parts / f"{i:06d}").unlink()
                    if progress is not None:
                        progress(100.0 * (chunks[i][1] - 1) / patients)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)  # on an error, drop the queued chunks
        n_amend: int | None = None
        if amendments is not None:
            writing = Path(amendments)
            n_amend = _write_amendments(seed, patients, writing)
        writing = target
        tmp.replace(target)
    except (duckdb.Error, OSError) as exc:
        raise cannot_write(writing, exc) from exc
    finally:
        tmp.unlink(missing_ok=True)
        shutil.rmtree(parts, ignore_errors=True)
    return SynthResult(
        path=str(target),
        format=kind,
        patients=patients,
        seed=seed,
        events=events,
        amendments=n_amend,
        amendments_path=str(amendments) if amendments is not None else None,
        seconds=time.perf_counter() - started,
    )


def _connect() -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    # One thread per chunk: a chunk's bytes must not depend on how DuckDB splits work.
    con.execute("SET threads = 1; SET preserve_insertion_order = true; SET enable_progress_bar = false")
    return con


def _write_chunk(seed: int, first: int, last: int, kind: str, path: Path) -> int:
    """Write patients first .. last - 1 to ``path``; returns the number of events."""
    options = (
        f"FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE {ROW_GROUP_SIZE}"
        if kind == "parquet"
        else "FORMAT csv, HEADER false"
    )
    con = _connect()
    try:
        row = con.execute(f"COPY ({query(seed, first, last)}) TO {_quote(str(path))} ({options})").fetchone()
    finally:
        con.close()
    return int(row[0]) if row else 0


def _quote(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _write_amendments(seed: int, patients: int, path: Path) -> int:
    """The amendments of the whole cohort, one JSON object per line, in patient order."""
    n = 0
    con = _connect()
    try:
        cur = con.execute(query(seed, 1, patients + 1, amendments=True))
        with replacing(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as fh:
            while rows := cur.fetchmany(10_000):
                for op, event_id, changes, reason in rows:
                    item: dict[str, Any] = {"op": op, "event_id": event_id}
                    if changes is not None:
                        item["set"] = json.loads(changes)
                    item["reason"] = reason
                    item["author"] = AMENDMENT_AUTHOR
                    fh.write(json.dumps(item, ensure_ascii=False) + "\n")
                    n += 1
    finally:
        con.close()
    return n


class _Appender:
    """Appends part files, in order, to one output file."""

    def __init__(self, path: Path) -> None:
        self.out = path.open("wb")

    def append(self, part: Path) -> None:
        raise NotImplementedError

    def close(self) -> None:
        self.out.close()

    def __enter__(self) -> _Appender:
        return self

    def __exit__(self, *exc: object) -> None:
        if exc[0] is None:
            self.close()
        else:
            self.out.close()


class _CsvAppender(_Appender):
    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.out.write((",".join(NATIVE_COLUMNS) + "\n").encode())

    def append(self, part: Path) -> None:
        with part.open("rb") as fh:
            shutil.copyfileobj(fh, self.out, 1 << 20)


class _ParquetAppender(_Appender):
    """One Parquet file made of the row groups of many: each part's data (everything between
    its leading magic and its footer) is copied as is; its row groups' metadata, with every
    absolute file offset shifted by where the data now starts, goes into one new footer."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.out.write(_MAGIC)
        self.pos = len(_MAGIC)
        self.template: list[list[Any]] | None = None
        self.schema: bytes = b""
        self.row_groups: list[bytes] = []
        self.rows = 0

    def append(self, part: Path) -> None:
        with part.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            fh.seek(size - 8)
            tail = fh.read(8)
            fh.seek(0)
            if fh.read(4) != _MAGIC or tail[4:] != _MAGIC:
                raise RuntimeError(f"{part} is not a Parquet file")
            footer_len = int.from_bytes(tail[:4], "little")
            body_end = size - 8 - footer_len
            fh.seek(body_end)
            meta, _ = _thrift_struct(fh.read(footer_len), 0)
            schema = _encode_field(meta, 2)
            if self.template is None:
                self.template, self.schema = meta, schema
            elif schema != self.schema:
                raise RuntimeError(f"{part}: schema differs from the first part")
            shift = self.pos - len(_MAGIC)
            for rg in _field(meta, 4)[1]:
                _shift_row_group(rg, shift)
                self.row_groups.append(_encode_struct(rg))
            self.rows += _field(meta, 3)
            fh.seek(len(_MAGIC))
            remaining = body_end - len(_MAGIC)
            while remaining > 0:
                block = fh.read(min(1 << 20, remaining))
                self.out.write(block)
                remaining -= len(block)
            self.pos += body_end - len(_MAGIC)

    def close(self) -> None:
        assert self.template is not None, "no part was appended"
        meta = []
        for fid, ttype, value in self.template:
            if fid == 3:
                value = self.rows
            elif fid == 4:
                value = (_T_STRUCT, self.row_groups)
                ttype = _T_RAW_LIST
            meta.append([fid, ttype, value])
        footer = _encode_struct(meta)
        self.out.write(footer)
        self.out.write(len(footer).to_bytes(4, "little"))
        self.out.write(_MAGIC)
        super().close()


# Thrift compact protocol, just enough to rewrite a Parquet footer. A struct is a list of
# [field id, type, value]; a list is (element type, [values]); a map (key type, value type,
# [(key, value)]); booleans inside structs carry their value in the type.
_MAGIC = b"PAR1"
_T_TRUE, _T_FALSE, _T_BYTE, _T_I16, _T_I32, _T_I64, _T_DOUBLE, _T_BINARY = 1, 2, 3, 4, 5, 6, 7, 8
_T_LIST, _T_SET, _T_MAP, _T_STRUCT = 9, 10, 11, 12
_T_RAW_LIST = 100  # a list of already encoded structs (ours, for the row groups)


def _varint(data: bytes, i: int) -> tuple[int, int]:
    shift = result = 0
    while True:
        b = data[i]
        i += 1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return result, i
        shift += 7


def _zigzag(n: int) -> int:
    return (n >> 1) ^ -(n & 1)


def _thrift_value(data: bytes, i: int, ttype: int) -> tuple[Any, int]:
    if ttype in (_T_TRUE, _T_FALSE):  # a boolean list element: one byte
        return data[i], i + 1
    if ttype == _T_BYTE:
        return data[i], i + 1
    if ttype in (_T_I16, _T_I32, _T_I64):
        n, i = _varint(data, i)
        return _zigzag(n), i
    if ttype == _T_DOUBLE:
        return data[i : i + 8], i + 8
    if ttype == _T_BINARY:
        n, i = _varint(data, i)
        return data[i : i + n], i + n
    if ttype in (_T_LIST, _T_SET):
        head = data[i]
        i += 1
        size, etype = head >> 4, head & 0x0F
        if size == 15:
            size, i = _varint(data, i)
        items = []
        for _ in range(size):
            item, i = _thrift_value(data, i, etype)
            items.append(item)
        return (etype, items), i
    if ttype == _T_MAP:
        size, i = _varint(data, i)
        if size == 0:
            return (0, 0, []), i
        kv = data[i]
        i += 1
        pairs = []
        for _ in range(size):
            k, i = _thrift_value(data, i, kv >> 4)
            v, i = _thrift_value(data, i, kv & 0x0F)
            pairs.append((k, v))
        return (kv >> 4, kv & 0x0F, pairs), i
    if ttype == _T_STRUCT:
        return _thrift_struct(data, i)
    raise RuntimeError(f"unsupported Thrift type {ttype} in a Parquet footer")


def _thrift_struct(data: bytes, i: int) -> tuple[list[list[Any]], int]:
    fields: list[list[Any]] = []
    fid = 0
    while True:
        head = data[i]
        i += 1
        if head == 0:
            return fields, i
        ttype, delta = head & 0x0F, head >> 4
        if delta:
            fid += delta
        else:
            n, i = _varint(data, i)
            fid = _zigzag(n)
        if ttype in (_T_TRUE, _T_FALSE):
            fields.append([fid, ttype, None])
        else:
            value, i = _thrift_value(data, i, ttype)
            fields.append([fid, ttype, value])


def _put_varint(out: bytearray, n: int) -> None:
    while n >= 0x80:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


def _put_value(out: bytearray, ttype: int, value: Any) -> None:
    if ttype in (_T_TRUE, _T_FALSE, _T_BYTE):
        out.append(value)
    elif ttype in (_T_I16, _T_I32, _T_I64):
        _put_varint(out, (value << 1) ^ (value >> 63))
    elif ttype == _T_DOUBLE:
        out += value
    elif ttype == _T_BINARY:
        _put_varint(out, len(value))
        out += value
    elif ttype in (_T_LIST, _T_SET, _T_RAW_LIST):
        etype, items = value
        if len(items) < 15:
            out.append(len(items) << 4 | etype)
        else:
            out.append(0xF0 | etype)
            _put_varint(out, len(items))
        for item in items:
            if ttype == _T_RAW_LIST:
                out += item
            else:
                _put_value(out, etype, item)
    elif ttype == _T_MAP:
        ktype, vtype, pairs = value
        _put_varint(out, len(pairs))
        if pairs:
            out.append(ktype << 4 | vtype)
            for k, v in pairs:
                _put_value(out, ktype, k)
                _put_value(out, vtype, v)
    elif ttype == _T_STRUCT:
        _put_struct(out, value)
    else:  # pragma: no cover - only types read by _thrift_value reach here
        raise RuntimeError(f"unsupported Thrift type {ttype}")


def _put_struct(out: bytearray, fields: list[list[Any]]) -> None:
    last = 0
    for fid, ttype, value in fields:
        wire = _T_LIST if ttype == _T_RAW_LIST else ttype
        if 0 < fid - last <= 15:
            out.append((fid - last) << 4 | wire)
        else:
            out.append(wire)
            _put_varint(out, (fid << 1) ^ (fid >> 63))
        last = fid
        if ttype not in (_T_TRUE, _T_FALSE):
            _put_value(out, ttype, value)
    out.append(0)


def _encode_struct(fields: list[list[Any]]) -> bytes:
    out = bytearray()
    _put_struct(out, fields)
    return bytes(out)


def _encode_field(fields: list[list[Any]], fid: int) -> bytes:
    out = bytearray()
    for f in fields:
        if f[0] == fid:
            _put_value(out, f[1], f[2])
    return bytes(out)


def _field(fields: list[list[Any]], fid: int) -> Any:
    for f in fields:
        if f[0] == fid:
            return f[2]
    raise RuntimeError(f"Parquet footer without field {fid}")


def _shift_row_group(rg: list[list[Any]], shift: int) -> None:
    """Move a RowGroup's absolute offsets by ``shift`` bytes. Page indexes (whose entries hold
    absolute offsets of their own) are dropped; DuckDB does not write them."""
    for f in rg:
        if f[0] == 5:  # file_offset
            f[2] += shift
    rg[:] = [f for f in rg if f[0] != 7]  # ordinal: an i16 that a long file overflows
    for chunk in _field(rg, 1)[1]:
        chunk[:] = [f for f in chunk if f[0] not in (4, 5, 6, 7)]
        for f in chunk:
            if f[0] == 2 and f[2]:  # file_offset (DuckDB writes 0)
                f[2] += shift
            elif f[0] == 3:  # ColumnMetaData
                for g in f[2]:
                    if g[0] in (9, 10, 11, 14):  # data, index, dictionary page; bloom filter
                        g[2] += shift


# ---- amendments ---------------------------------------------------------------------------

# the keys of an amendment, by op; ``set`` holds the native fields a correction changes
_AMENDMENT_KEYS = {
    "correct": ("op", "event_id", "set", "reason", "author"),
    "retract": ("op", "event_id", "reason", "author"),
}
_IDENTITY = ("event_id", "patient_id", "kind")


@dataclass
class Amendment:
    """One line of an amendments file, checked: ``changes`` maps native fields to their new
    value as text (None clears the field; empty for a retraction)."""

    line: int
    op: str
    event_id: str
    reason: str
    author: str
    changes: dict[str, str | None]


@dataclass
class AmendmentError(IngestError):
    """An amendments file was rejected: nothing of it was applied. Each error names its line
    (``RowError.line``); ``labels`` gives a line's amendment (``correct p1-crp1``) when it
    could be read."""

    labels: dict[int, str] = field(default_factory=dict)

    def summary(self) -> str:
        n = self.found
        return f"{self.source}: amendments rejected, nothing applied ({n:,} error{'s' if n != 1 else ''})"

    def details(self) -> list[str]:
        lines = []
        for e in self.errors:
            where = f"line {e.line}" if e.line is not None else "file"
            if e.line in self.labels:
                where += f" ({self.labels[e.line]})"
            if e.field:
                where += f", field {e.field}"
            lines.append(f"{self.source}: {where}: {e.reason}")
        return lines


@dataclass
class UnknownAmendedEventError(AmendmentError, UnknownEventError):
    """Every error of a rejected amendments file is an event id the store does not hold."""

    exit_code = 5


def read_amendments(path: str | Path) -> Iterator[dict[str, Any]]:
    """The amendments of a JSON Lines file, one dict per line (op, event_id, set, reason,
    author), as written; :func:`check_amendments` checks them."""
    for _, item in _lines(path, []):
        if isinstance(item, dict):
            yield item


def _lines(path: str | Path, errors: list[RowError]) -> Iterator[tuple[int, Any]]:
    """(line number, parsed JSON) of each non-blank line; a line that is not UTF-8 or not JSON
    is added to ``errors``."""
    source = Path(path)
    if not source.is_file():
        raise UsageError(f"no such amendments file: {source}")
    with source.open("rb") as fh:
        for number, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                errors.append(RowError(None, None, f"not valid UTF-8 (byte {exc.start + 1})", line=number))
                continue
            if not line.strip():
                continue
            try:
                yield number, json.loads(line.rstrip("\r\n"))
            except json.JSONDecodeError as exc:
                errors.append(
                    RowError(None, None, f"not valid JSON: {exc.msg} (column {exc.colno})", line=number)
                )


def _set_value(value: Any) -> str | None:
    """A value of ``set`` as native text: a number or true/false as a file writes it; null or
    an empty text clears the field. Raises ValueError for a list or an object."""
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return value.strip() or None
    raise ValueError(type(value).__name__)


def _label(item: Any) -> str | None:
    """``correct p1-crp1``: a line's amendment, in a message, when its op and id can be read."""
    event_id = item.get("event_id") if isinstance(item, dict) else None
    if (
        isinstance(item, dict)
        and item.get("op") in _AMENDMENT_KEYS
        and isinstance(event_id, str)
        and event_id.strip()
    ):
        return f"{item['op']} {item['event_id'].strip()}"
    return None


def _parse_amendment(number: int, item: Any, errors: list[RowError]) -> Amendment | None:
    """The amendment of one line, or None with its problems added to ``errors``."""
    found = len(errors)

    def bad(name: str | None, reason: str) -> None:
        errors.append(RowError(None, name, reason, line=number))

    if not isinstance(item, dict):
        bad(None, f"expected a JSON object, got {_json_type(item)}")
        return None
    op = item.get("op")
    if op not in _AMENDMENT_KEYS:
        bad("op", f"expected 'correct' or 'retract', got {json.dumps(op) if 'op' in item else 'nothing'}")
        return None
    keys = _AMENDMENT_KEYS[str(op)]
    for key in item:
        if key not in keys:
            hint = " (a retraction takes no set)" if key == "set" else _did_you_mean(str(key), keys)
            bad(str(key), f"unknown key{hint}")
    texts: dict[str, str] = {}
    for key in ("event_id", "reason", "author"):
        value = item.get(key)
        if key not in item:
            bad(key, "missing")
        elif not isinstance(value, str):
            bad(key, f"must be text, got {_json_type(value)}")
        elif not value.strip():
            bad(key, "must not be empty")
        else:
            texts[key] = value.strip()
    changes: dict[str, str | None] = {}
    if op == "correct":
        fields = item.get("set")
        if "set" not in item:
            bad("set", 'missing: give the fields to change, {"FIELD": VALUE, ...}')
        elif not isinstance(fields, dict):
            bad("set", f'must be an object {{"FIELD": VALUE, ...}}, got {_json_type(fields)}')
        elif not fields:
            bad("set", "is empty: give at least one field to change")
        else:
            for name, value in fields.items():
                if name not in NATIVE_COLUMNS:
                    bad(name, f"unknown field{_did_you_mean(name, NATIVE_COLUMNS)}")
                elif name in _IDENTITY:
                    bad(name, "cannot be corrected: retract the event and ingest it again")
                else:
                    try:
                        changes[name] = _set_value(value)
                    except ValueError:
                        bad(name, f"must be text, a number, true, false or null, got {_json_type(value)}")
    if len(errors) > found:
        return None
    return Amendment(number, str(op), texts["event_id"], texts["reason"], texts["author"], changes)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, str):
        return "text"
    if isinstance(value, int | float):
        return "a number"
    return "a list" if isinstance(value, list) else "an object"


def _did_you_mean(word: str, pool: Sequence[str]) -> str:
    from timeline.ingest import _did_you_mean as suggest

    return suggest(word, pool)


def check_amendments(store: Any, path: str | Path) -> tuple[list[Amendment], list[Amendment]]:
    """Check a whole amendments file against a store, writing nothing: every line's shape,
    fields and event, each amendment against its event as the amendments before it in the
    file leave it. Returns (to apply, already applied), in file order. A correction is already
    applied when the event already has its content, a retraction when the event is already
    retracted; and the amendments of an event are all already applied when its latest versions
    are what they would write from an earlier version (a file that corrects an event twice,
    applied again). Raises :class:`AmendmentError` naming every problem
    (:class:`UnknownAmendedEventError`, exit 5, when each one is an event the store does not
    hold)."""
    apply, done, errors, labels, unknown = _check(store, path)
    if errors:
        raise _rejected(str(path), errors, labels, unknown)
    return apply, done


def _rejected(source: str, errors: list[RowError], labels: dict[int, str], unknown: int) -> AmendmentError:
    """The error of a rejected file: its problems in line order (a line's own in the order
    found), exit 5 when each one is an event the store does not hold."""
    errors.sort(key=lambda e: e.line or 0)
    kind = UnknownAmendedEventError if unknown == len(errors) else AmendmentError
    return kind(source, errors, labels=labels)


def _check(
    store: Any, path: str | Path
) -> tuple[list[Amendment], list[Amendment], list[RowError], dict[int, str], int]:
    """:func:`check_amendments`, the problems returned rather than raised: (to apply, already
    applied, problems, each line's label, how many problems are unknown event ids). The
    amendments to apply are those of the events none of whose lines has a problem found here."""
    from timeline.ingest import _native_from_stored

    errors: list[RowError] = []
    labels: dict[int, str] = {}
    by_event: dict[str, list[Amendment]] = {}
    for number, item in _lines(path, errors):
        amendment = _parse_amendment(number, item, errors)
        if amendment is not None:
            by_event.setdefault(amendment.event_id, []).append(amendment)
        label = _label(item)
        if label is not None:
            labels[number] = label
    # every version of each event, oldest first: a native row, or None for a retraction
    versions: dict[str, list[dict[str, Any] | None]] = {}
    kinds: dict[str, str] = {}
    cur = store.con.execute(
        "SELECT * FROM events WHERE event_id IN (SELECT unnest(?::VARCHAR[])) ORDER BY event_id, seq",
        [sorted(by_event)],
    )
    names = [d[0] for d in cur.description]
    for values in cur.fetchall():
        row = dict(zip(names, values, strict=True))
        kinds[row["event_id"]] = row["kind"]
        versions.setdefault(row["event_id"], []).append(
            None if row["op"] == "retract" else _native_from_stored(row)
        )
    unknown = 0
    apply: list[Amendment] = []
    done: list[Amendment] = []
    for event_id, amendments in by_event.items():
        if event_id not in versions:
            unknown += len(amendments)
            near = _near_ids(store, event_id)
            errors.extend(
                RowError(None, "event_id", f"no event with id {event_id!r}{near}", line=a.line)
                for a in amendments
            )
            continue
        history = versions[event_id]
        outcome = _simulate(store, kinds[event_id], history[-1], amendments)
        if (isinstance(outcome, tuple) and not any(outcome[1])) or _applied_before(
            store, kinds[event_id], history, amendments
        ):
            done.extend(amendments)
        elif isinstance(outcome, tuple):
            apply.extend(a for a, writes in zip(amendments, outcome[1], strict=True) if writes)
            done.extend(a for a, writes in zip(amendments, outcome[1], strict=True) if not writes)
        else:
            errors.extend(outcome)
    return sorted(apply, key=lambda a: a.line), sorted(done, key=lambda a: a.line), errors, labels, unknown


def _simulate(
    store: Any, kind: str, state: dict[str, Any] | None, amendments: list[Amendment]
) -> tuple[list[dict[str, Any] | None], list[bool]] | list[RowError]:
    """An event's amendments applied in turn, from ``state`` (a native row; None: retracted),
    writing nothing: (the versions they write, whether each one writes), or their problems."""
    from timeline.events import KINDS, MODEL_ONLY
    from timeline.ingest import _same_native

    allowed = set(KINDS[kind].model_fields) - MODEL_ONLY if kind in KINDS else set(NATIVE_COLUMNS)
    written: list[dict[str, Any] | None] = []
    writes: list[bool] = []
    errors: list[RowError] = []
    for a in amendments:
        if a.op == "retract":
            writes.append(state is not None)
            if state is not None:
                written.append(None)
            state = None
            continue
        wrong = [name for name in a.changes if name not in allowed] if state is not None else []
        errors.extend(RowError(None, name, f"does not apply to kind {kind}", line=a.line) for name in wrong)
        if state is None:
            errors.append(
                RowError(
                    None, None,
                    "the event is retracted by then and cannot be corrected: to bring it back, ingest a row"
                    " with its event id and the corrected content",
                    line=a.line,
                )
            )  # fmt: skip
        if wrong or state is None:
            writes.append(False)
            continue
        row = {**state, **a.changes}
        same = _same_native(store.con, state, row)
        writes.append(not same)
        if not same:
            written.append(row)
            state = row
    return errors if errors else (written, writes)


def _applied_before(
    store: Any, kind: str, history: list[dict[str, Any] | None], amendments: list[Amendment]
) -> bool:
    """Whether an event's latest versions are what its amendments write from an earlier
    version (the file was applied already)."""
    for start in range(len(history) - 2, max(-1, len(history) - 2 - len(amendments)), -1):
        outcome = _simulate(store, kind, history[start], amendments)
        if isinstance(outcome, tuple) and _same_states(store, outcome[0], history[start + 1 :]):
            return True
    return False


def _same_states(store: Any, a: Sequence[dict[str, Any] | None], b: Sequence[dict[str, Any] | None]) -> bool:
    from timeline.ingest import _same_native

    if len(a) != len(b):
        return False
    for x, y in zip(a, b, strict=True):
        if (x is None) != (y is None):
            return False
        if x is not None and y is not None and not _same_native(store.con, x, y):
            return False
    return True


def _near_ids(store: Any, event_id: str) -> str:
    from timeline.ingest import near_event_ids

    return near_event_ids(store, event_id)


def apply_amendments(
    store: Any, path: str | Path, *, progress: Progress | None = None
) -> tuple[int, int, int]:
    """Apply an amendments file (JSON Lines, one correction or retraction per line) to a
    store. First the whole file is checked (:func:`check_amendments`): a file with any problem
    is rejected with every problem named, and nothing is applied. Then each correction goes
    through :func:`timeline.ingest.correct` and each retraction through
    :func:`timeline.ingest.retract`, each its own batch with its author and reason, all in one
    transaction: corrections the store's checks reject (a value out of range) reject the file,
    every one named, and nothing is applied; an interruption (:class:`AmendmentsInterrupted`)
    leaves nothing applied, or — as the transaction commits — all of it. An amendment already
    applied (the event already has the correction's content, or is already retracted) is
    skipped, so applying a file twice changes nothing. Returns (corrections, retractions,
    skipped).

    The problems are found in one pass, every line's: the amendments the first check leaves
    (those of the events whose lines all passed it) are written, and the store's checks of
    their values run, even when other lines have problems; then, if any line has one, the
    transaction is rolled back and every problem reported."""
    committing = False
    try:
        apply, done, errors, labels, unknown = _check(store, path)
        with store.transaction():
            counts = _apply_each(store, apply, errors, progress)
            if errors:
                labels = {**labels, **{a.line: f"{a.op} {a.event_id}" for a in apply}}
                raise _rejected(str(path), errors, labels, unknown)
            committing = True  # leaving the block commits
    except BaseException as exc:
        if _interrupt(exc):  # Ctrl-C, SIGTERM: how far it got
            raise AmendmentsInterrupted(committing) from exc
        raise
    return counts[0], counts[1], len(done) + counts[2]


def _interrupt(exc: BaseException) -> bool:
    """Ctrl-C, also as DuckDB reports a query it stopped."""
    return isinstance(exc, KeyboardInterrupt | duckdb.InterruptException) or (
        isinstance(exc, RuntimeError) and str(exc) == "Query interrupted"
    )


class AmendmentsInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) while an amendments file was applied: before the commit, nothing
    of it is applied; as it was committed (``committing``), all of it may be."""

    def __init__(self, committing: bool) -> None:
        super().__init__()
        self.committing = committing


def _apply_each(
    store: Any, apply: list[Amendment], errors: list[RowError], progress: Progress | None
) -> tuple[int, int, int]:
    """Write each amendment, in one transaction the caller holds; a correction the store's
    checks reject adds its errors to ``errors`` and the next is tried. Returns (corrections,
    retractions, found already applied)."""
    from timeline.ingest import correct, retract

    counts = [0, 0, 0]
    for i, a in enumerate(apply, start=1):
        try:
            if a.op == "correct":
                result = correct(store, a.event_id, a.changes, reason=a.reason, author=a.author)
            else:
                result = retract(store, a.event_id, reason=a.reason, author=a.author)
        except IngestError as exc:  # the store's checks of a correction: every one reported
            errors.extend(RowError(None, e.field, e.reason, line=a.line) for e in exc.errors)
            continue
        counts[2 if result.batch_id is None else 0 if a.op == "correct" else 1] += 1
        if progress is not None:
            progress(100.0 * i / len(apply))
    return counts[0], counts[1], counts[2]
