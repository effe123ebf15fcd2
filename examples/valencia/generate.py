"""Generate the synthetic Valencia cohort: 22 children with systemic JIA treated with anakinra.

The cohort is designed so that the rule engine, applied to these events with the working
definitions below, reproduces every figure of poster P71 (Pediatric Rheumatology 2011,
9(Suppl 1), "Anakinra treatment in patients with systemic-onset juvenile idiopathic
arthritis: The Valencia Experience"). No real patient is described: every date, value and
course is invented, but each chart is clinically coherent (presentation, prior therapy,
anakinra course, labs, joint counts, steroid tapers, adverse events, follow-up).

Run ``python examples/valencia/generate.py`` (or ``--out DIR``). It writes, byte for byte
the same on every run (fixed seed, a ``random.Random`` per patient seeded with
``"<SEED>-<patient id>"``, no wall clock, no set ordering):

- ``events.csv``       the charts in the native event format, stable ids ``V01-0001`` ...
- ``amendments.json``  five corrections and one retraction that ``load.py`` applies with
                       ``timeline.ingest.correct`` / ``retract`` after the ingest
- ``ground_truth.json`` per-patient and cohort figures, computed from the generated events
                       (after the amendments) by the small reference evaluator at the end of
                       this file, which also asserts that they equal the plan below

Working definitions the data are designed against (parameters in ground_truth.json)
------------------------------------------------------------------------------------
- T0 = the first anakinra ``medication_start``. Time points T3/T6/T12 = T0 + 3/6/12 calendar
  months (every T0 falls on day 1-28 of its month, so no month-end clamping ever happens).
- Age and disease duration at T0 = days / 365.25 (diagnosis ``occurred_at`` is the onset).
  Follow-up = T0 to ``end_of_follow_up``, days / 30.4375 (whole calendar months agree).
- Fever = ``body_temperature`` >= 38.0 Cel or ``finding`` fever present. Fever-free at D = a
  temperature is recorded in the 7 days up to and including D and no fever is. Rash-free
  at D = a rash finding is recorded in that window and none is present. The data give the
  same answers for 6-, 7- and 8-day windows (asserted), so the bound's inclusivity is moot.
- Fever and rash resolved within 3 months = fever-free and rash-free at T3. Every visit
  records temperature and rash (present true/false); the 3-month visit lies 0-6 days
  before T3; the first fever/rash-free record after the last fever comes >= 9 days later.
  The 4 non-resolvers have a fever recorded 0-6 days before T3.
- Active arthritis at t = ``active_joints`` > 0 at the most recent ``joint_exam`` in
  (t - 90 days, t]: the 90 calendar days ending at t. The 3/6/12-month visits lie 0-6 days before t (one is exactly on T6).
  Denominator (as treated): patients still followed at t (end_of_follow_up >= t) and still
  on anakinra at t (no anakinra ``medication_stop`` on or before t).
- Complete response (CR): at some visit D during the anakinra course (T0 <= D < stop), with
  no escalation (no DMARD or biologic started in (T0, D]): fever-free and rash-free at D,
  no active arthritis at D, the latest CRP within 30 days <= 6 mg/L and the latest ESR
  within 30 days (where measured) <= 10 mm/h. The CR date is the first such D. The 16 CR
  patients are also in that state at T6 and the 6 others never reach it while on anakinra,
  so "ever while on anakinra" and "at 6 months" give the same 16.
- DMARDs and biologics (first line = none started before T0; escalation = one started
  after T0): methotrexate, ciclosporin, etanercept, infliximab, tocilizumab (also listed:
  adalimumab, canakinumab, rilonacept, leflunomide, sulfasalazine, azathioprine,
  thalidomide). Not: prednisolone, methylprednisolone, naproxen, isoniazid. Methotrexate
  started before T0 and simply continued (V03, V10) is not an escalation.
- MAS: every episode is a clinician ``mas_episode`` (onset, ``ended_at`` resolution) and its
  labs meet the 2016 criteria: febrile, ferritin > 684 ng/mL and >= 2 of platelets <= 181,
  AST > 48, triglycerides > 156 mg/dL, fibrinogen <= 360 mg/dL, all drawn within 2 days of
  the ferritin. No other moment in the data meets the criteria (asserted with a 3-day
  window). Relation: at_diagnosis = onset before T0 and <= 60 days after the diagnosis
  (onset) date; on_anakinra = onset within the anakinra course.
- Anakinra 1-4 mg/kg/day sc once daily (<= 100 mg/day, <= 200 mg/day when escalated): the
  dose is re-set from the visit weight when it falls below 3/4 of its target; asserted in
  range against the latest weight at every dose and weight record.

Poster figure -> encoding
-------------------------
- 22 patients; age 8.6 (1.8-15.6); duration 2.4 (0-10.2): ages and durations are chosen
  to one decimal with sums 189.2 and 52.8; birth = T0 - round(age * 365.25) days.
- Follow-up 11-56 months: V22 11.2 months (started 2009-08-25, review end 2010-07-31),
  V05 56.25 months. Review period: first doses 2004-12-14 .. 2009-08-25; follow-up ends at
  the review cut-off 2010-07-31 or earlier (transfer to adult care, moved, lost).
- Fever and rash resolved within 3 months: 18/22. Not resolved: V06, V08, V11, V15.
- Active arthritis at 3/6/12 months: 5/22 (22.7 %, printed 22 %), 3/21 (14.3 %), 4/18
  (22.2 %). 6 months: V18 had stopped anakinra (day 108). 12 months: V06, V15, V18 had
  stopped, V22 followed only 11 months.
- Complete response 16/22 (72.7 %, printed 70 %), 6 of them first line (first line: 8).
- Stopped anakinra 3: V18 severe skin reaction (grade 3), V15 severe pneumonia (grade 3,
  serious), V06 positive tuberculin skin test (intradermoreaction; grade 2, latent TB);
  each with an ``adverse_event`` (action drug_withdrawn), a ``medication_stop`` and a
  ``discontinuation`` with the reason.
- MAS 10 episodes in 9 patients (9/22 = 40.9 %, printed 40 %): at diagnosis V07, V08, V09,
  V12, V14, V16, V18, V21; on anakinra V07 (month 14, after EBV) and V19 (day 22).

Per-patient plan (FL = first line; arthritis A = active, - = inactive, x = not in the
denominator; CR = visit of the first complete response)
------------------------------------------------------------------------------------------
pid sex T0         age  dur  FU   FL  fever/rash 3m  arth 3/6/12  CR   stop      MAS
V01 M   2004-12-14 15.6 10.2 30.1 no  yes            - - -        m2   -         -
V02 F   2005-03-08 13.9  9.7 46.5 no  yes            A A A        no   -         -
V03 F   2005-06-21 12.8  3.4 52.9 no  yes            - - -        m1   -         -
V04 M   2005-09-13 11.2  6.3 52.9 no  yes            - - A        m2   -         -
V05 F   2005-11-22  9.4  5.0 56.2 no  yes            - - -        m3   -         -
V06 M   2006-02-07  7.3  4.1 53.7 no  no (finding)   - - x        no   TST d265  -
V07 F   2006-04-25  6.1  2.8 51.2 no  yes            - - -        m2   -         dx + on
V08 F   2006-07-11 10.5  2.3 48.7 no  no             A A A        no   -         dx
V09 M   2006-10-03  4.6  1.9 45.9 no  yes            - - -        m1   -         dx
V10 F   2007-01-16 14.2  1.5 39.1 no  yes            - - -        m2   -         -
V11 M   2007-03-27  8.0  1.2 40.1 no  no (38.0)      - - -        m4   -         -
V12 M   2007-06-12 11.7  0.8 37.6 no  yes            A A A        no   -         dx
V13 F   2007-09-04  3.9  1.0 34.9 no  yes            - - -        m2   -         -
V14 F   2007-11-20  5.2  0.6 32.3 no  yes            A - -        m6   -         dx
V15 M   2008-02-12 12.3  0.3 29.6 yes no             - - x        no   pneu d212 -
V16 F   2008-05-06  6.8  0.2 26.8 yes yes            - - -        m2   -         dx
V17 M   2008-08-19  9.9  0.5 23.4 yes yes            - - -        m2   -         -
V18 F   2008-11-04  7.6  0.4 20.8 yes yes            A x x        no   skin d108 dx
V19 M   2009-01-27  2.9  0.1 18.1 yes yes            - - -        m2   -         on
V20 F   2009-04-14  1.8  0.0 15.5 yes yes            - - -        m1   -         -
V21 F   2009-06-09  9.1  0.2 13.7 yes yes            - - -        m2   -         dx
V22 M   2009-08-25  4.4  0.3 11.2 yes yes            - - x        m1   -         -

Boundary cases (each asserted to change a result if the bound were read the other way)
------------------------------------------------------------------------------------
- V21 MAS at diagnosis: platelets exactly 181 10*9/L, the only other criterion being
  fibrinogen 3.1 g/L (= 310 mg/dL); the episode meets the criteria only because <= 181.
- V17 at presentation: febrile, platelets 160, AST 55 and ferritin exactly 684 ng/mL: not
  MAS (> 684 is strict); no mas_episode is recorded.
- V11 3-month visit: 38.0 Cel exactly is fever, so V11 is a non-resolver.
- V06 3-month visit: 37.3 Cel in clinic but a fever finding (parent-reported spikes): fever.
- V05 CR visit (m3): CRP 0.6 mg/dL = 6 mg/L exactly, normal (<= 6); with < 6 the CR date
  would move to the next visit.
- V20 CR visit (m1): ESR exactly 10 mm/h, normal (<= 10).
- V14 6-month visit exactly on T6 (no active joints; the exam before shows 1): the time
  point is inclusive. V03's 3-month visit is exactly on T3.

Amendments (the ground truth holds after them; ``before_amendments`` in ground_truth.json
lists what differs as known before them, e.g. with ``--as-known-at`` the ingest time)
------------------------------------------------------------------------------------
- V16 m2 CRP "3.2 mg/dL" -> unit mg/L (before: 32 mg/L, CR date moves from m2 to m3).
- V09 m6 joint exam active 2 / limited 0 -> active 0 / limited 2 (swapped columns; before:
  6-month active arthritis 4/21 and V09 not in CR at T6).
- V13 m4 weight 10x too high (decimal point lost) -> corrected (before: 0.2 mg/kg/day).
- V04 first anakinra dose change 10x too high -> corrected (before: > 4 mg/kg/day).
- V07 MAS on anakinra recorded open -> resolution date added (``ended_at``).
- Retraction: V17 body temperature 38.4 Cel two days before T3, entered in the wrong chart
  (before: V17 not resolved at 3 months, 17/22).

CRP units: the hospital laboratory reported CRP in mg/dL until 2007-12-31 and in mg/L from
2008-01-01, so both units occur (the engine must convert). Other units exercised: ferritin
in ug/L (V09), platelets in 10*3/uL (V14), triglycerides in mmol/L and fibrinogen in g/L
(V08, V12, V19, V21), methylprednisolone 1 g, anakinra in mg/kg (V20).
CRP and ESR carry no laboratory reference range, so the rule parameters (6 mg/L, 10 mm/h)
decide normality; haemoglobin and WBC carry the laboratory's range.
"""

from __future__ import annotations

import argparse
import calendar
import csv
import io
import itertools
import json
import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from timeline import codes
from timeline.events import NATIVE_COLUMNS
from timeline.units import conversion

HERE = Path(__file__).resolve().parent
SEED = 20110901
REVIEW_END = date(2010, 7, 31)
REVIEW_END_REASON = "end of review period"
CRP_MG_L_FROM = date(2008, 1, 1)  # the laboratory switched CRP from mg/dL to mg/L
INGEST_AUTHOR = "valencia chart review (data entry)"
MONITOR = "R. Navarro (data monitor)"

DMARDS_AND_BIOLOGICS = (
    "methotrexate", "ciclosporin", "etanercept", "infliximab", "adalimumab", "tocilizumab",
    "canakinumab", "rilonacept", "leflunomide", "sulfasalazine", "azathioprine", "thalidomide",
)  # fmt: skip
FEVER_C = 38.0
CRP_NORMAL = 6.0
ESR_NORMAL = 10.0
JOINT_EXAM_VALID_DAYS = 90
LAB_VALID_DAYS = 30
FEVER_WINDOW_DAYS = 7
MAS_WINDOW_DAYS = 3
AT_DIAGNOSIS_DAYS = 60

LOINC = {
    "esr": "4537-7", "crp": "1988-5", "ferritin": "2276-4", "platelets": "777-3", "ast": "1920-8",
    "alt": "1742-6", "tg": "2571-8", "fibrinogen": "3255-7", "hb": "718-7", "wbc": "6690-2",
    "neutrophils": "751-8",
}  # fmt: skip

# Visit labels in schedule order; "final" is the last visit of a patient who left early.
LABELS = (
    "baseline", "w2", "m1", "m2", "m3", "m4", "m6", "m9", "m12", "m16", "m20", "m24",
    "m30", "m36", "m42", "m48", "m54", "final",
)  # fmt: skip
FULL_VISITS = {"baseline", "m3", "m6", "m12", "m24", "m36", "m48"}  # parent global and CHAQ
LAB_PANEL_VISITS = {"baseline", "m3", "m6", "m12"}  # haemoglobin, WBC, platelets, ferritin
NO_ESR = {"w2", "m20", "m30", "m42", "m54"}
HEIGHT_VISITS = {"baseline", "m12", "m24"}


def idx(label: str) -> int:
    return LABELS.index(label)


# ---- plan ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Course:
    """A drug course other than anakinra. ``start`` is days after the diagnosis date
    (``after_t0=False``) or after T0 (``after_t0=True``); ``stop`` is days relative to T0
    (negative = before T0; None = continues to the end of follow-up)."""

    drug: str
    start: int
    stop: int | None
    dose: float
    dose_unit: str
    route: str
    frequency: str
    stop_reason: str | None = None
    after_t0: bool = False
    note: str | None = None


@dataclass(frozen=True)
class Mas:
    """An MAS episode. ``onset`` is days after the diagnosis date (at diagnosis) or after T0
    (on anakinra); labs are (day offset from onset, analyte, value text, unit)."""

    onset: int
    length: int
    labs: tuple[tuple[int, str, str, str], ...]
    note: str
    ciclosporin: bool = False


@dataclass(frozen=True)
class Stop:
    day: int
    term: str
    grade: int
    serious: bool
    reason: str
    category: str


@dataclass(frozen=True)
class AE:
    day: int
    length: int
    term: str
    grade: int
    action: str = "none"
    drug: str | None = "anakinra"


@dataclass(frozen=True)
class Plan:
    pid: str
    sex: str
    t0: date
    age: float
    duration: float
    end: date
    end_reason: str
    role: str
    rash: bool
    fever_until: str  # first regular visit without fever
    rash_until: str  # first regular visit without rash
    joints: tuple[tuple[str, int, int], ...]  # (from visit, active, limited)
    labs_normal_from: str | None  # first visit with normal CRP/ESR when otherwise inactive
    cr: str | None  # expected visit of the first complete response
    wf: float = 1.0  # weight factor against the median growth curve
    prior: tuple[Course, ...] = ()
    pred_mg: float = 0.0  # prednisolone mg/day at T0
    pred_taper: tuple[str, ...] = ("m1", "m2", "m3", "m4")
    mas_dx: Mas | None = None
    mas_on: Mas | None = None
    stop: Stop | None = None
    post_normal_from: str | None = None
    aes: tuple[AE, ...] = ()
    dx_days: int | None = None  # override of round(duration * 365.25)
    anakinra_unit: str = "mg"
    escalate: tuple[tuple[str | int, float], ...] = ()  # (visit or day, target mg/kg/day)
    dx_findings: tuple[str, ...] = ("lymphadenopathy",)
    visit_offsets: tuple[tuple[str, int], ...] = ()  # (label, days before the time point)
    fever_by_finding: tuple[str, ...] = ()  # visits febrile by reported fever only


MTX = "methotrexate"
ETN = "etanercept"
CSA = "ciclosporin"
STEROIDS_ONLY = "treated with methylprednisolone pulses and prednisolone only"


def mtx(start: int, stop: int | None, reason: str | None = "inefficacy") -> Course:
    return Course(MTX, start, stop, 15, "mg", "sc", "weekly", reason)


def etn(start: int, stop: int, reason: str = "inefficacy") -> Course:
    return Course(ETN, start, stop, 0.4, "mg/kg", "sc", "twice_weekly", reason)


def csa(start: int, stop: int) -> Course:
    return Course(CSA, start, stop, 2.5, "mg/kg", "oral", "bid", "MAS resolved")


def _mas(*labs: tuple[int, str, str, str], onset: int, length: int, note: str, csa_: bool = False) -> Mas:
    return Mas(onset, length, labs, note, csa_)


PLANS: tuple[Plan, ...] = (
    Plan("V01", "male", date(2004, 12, 14), 15.6, 10.2, date(2007, 6, 19), "transferred to adult rheumatology",
         "long-standing disease, MTX and etanercept failed; CR at m2", True, "m1", "w2",
         (("baseline", 6, 8), ("m1", 0, 3)), "m2", "m2", wf=0.95,
         prior=(mtx(120, -75), etn(2400, -55)), pred_mg=20,
         aes=(AE(3, 12, "injection site reaction", 1),), dx_findings=("lymphadenopathy", "hepatomegaly")),
    Plan("V02", "female", date(2005, 3, 8), 13.9, 9.7, date(2009, 1, 20), "moved to another region",
         "polyarticular course: arthritis persists on anakinra, never CR", True, "m1", "m1",
         (("baseline", 10, 12), ("m1", 8, 12), ("m2", 7, 12), ("m3", 6, 12), ("m6", 5, 11), ("m9", 6, 11),
          ("m12", 5, 11), ("m16", 4, 11), ("m24", 3, 10), ("m36", 4, 10)), None, None, wf=1.05,
         prior=(mtx(100, -60), etn(1500, -200),
                Course("infliximab", 3345, -40, 6, "mg/kg", "iv", "every_4_weeks", "inefficacy")),
         pred_mg=15, pred_taper=("m6", "m12", "m16", "m24")),
    Plan("V03", "female", date(2005, 6, 21), 12.8, 3.4, date(2009, 11, 17), "transferred to adult rheumatology",
         "concomitant methotrexate continued (not an escalation); CR at m1", True, "w2", "w2",
         (("baseline", 3, 2), ("m1", 0, 0)), "m1", "m1",
         prior=(mtx(60, None, None),), pred_mg=10,
         aes=(AE(5, 9, "injection site reaction", 1), AE(240, 8, "upper respiratory tract infection", 1, drug=None)),
         visit_offsets=(("m3", 0),)),
    Plan("V04", "male", date(2005, 9, 13), 11.2, 6.3, date(2010, 2, 9), "lost to follow-up",
         "CR at m2, arthritis relapse at the 12-month visit (knee, ankle)", False, "m1", "baseline",
         (("baseline", 4, 3), ("m1", 0, 1), ("m12", 2, 1), ("m16", 0, 1)), "m2", "m2", wf=1.1,
         prior=(mtx(90, -400), etn(1200, -30)), pred_mg=15,
         aes=(AE(170, 30, "alanine aminotransferase increased", 1),)),
    Plan("V05", "female", date(2005, 11, 22), 9.4, 5.0, REVIEW_END, REVIEW_END_REASON,
         "CR at m3 with CRP exactly 0.6 mg/dL (boundary); longest follow-up", True, "w2", "w2",
         (("baseline", 2, 1), ("m1", 0, 0)), "m3", "m3", wf=0.9,
         prior=(mtx(75, -20), etn(900, -300)), pred_mg=10,
         aes=(AE(6, 16, "injection site reaction", 2),)),
    Plan("V06", "male", date(2006, 2, 7), 7.3, 4.1, REVIEW_END, REVIEW_END_REASON,
         "reported fever at 3 months; stopped anakinra for a positive tuberculin skin test", True, "m4", "m1",
         (("baseline", 3, 2), ("m2", 0, 1), ("m12", 1, 1), ("m16", 0, 0)), None, None,
         prior=(mtx(80, -45),), pred_mg=15,
         stop=Stop(265, "latent tuberculosis infection: positive tuberculin skin test (intradermoreaction 15 mm) "
                        "after a household contact", 2, False,
                   "infection: positive tuberculin skin test (intradermoreaction)", "infection"),
         post_normal_from="m16", fever_by_finding=("m3",)),
    Plan("V07", "female", date(2006, 4, 25), 6.1, 2.8, REVIEW_END, REVIEW_END_REASON,
         "MAS at diagnosis and again on anakinra (month 14, after EBV); CR at m2", True, "m1", "m1",
         (("baseline", 2, 2), ("m1", 0, 1)), "m2", "m2", wf=0.95,
         prior=(csa(21, -800), mtx(120, -30), etn(600, -60)), pred_mg=10,
         mas_dx=_mas((0, "ferritin", "8650", "ng/mL"), (0, "platelets", "112", "10*9/L"), (0, "ast", "186", "U/L"),
                     (1, "tg", "265", "mg/dL"), (1, "fibrinogen", "190", "mg/dL"),
                     onset=20, length=16, note="MAS at presentation; ciclosporin added", csa_=True),
         mas_on=_mas((0, "ferritin", "5230", "ng/mL"), (0, "platelets", "138", "10*9/L"), (0, "ast", "95", "U/L"),
                     (1, "tg", "210", "mg/dL"), (1, "fibrinogen", "280", "mg/dL"),
                     onset=429, length=14, note="MAS after EBV infection; anakinra increased, methylprednisolone"),
         aes=(AE(424, 21, "Epstein-Barr virus infection", 2, drug=None),), escalate=((429, 4.0), ("m16", 2.0))),
    Plan("V08", "female", date(2006, 7, 11), 10.5, 2.3, REVIEW_END, REVIEW_END_REASON,
         "refractory: fever to month 5, arthritis throughout, methotrexate added at m4 (escalation)", True,
         "m6", "m6", (("baseline", 8, 6), ("m1", 6, 6), ("m3", 5, 6), ("m6", 4, 6), ("m12", 3, 5), ("m24", 2, 5),
                      ("m36", 3, 5)), None, None, wf=1.05,
         prior=(csa(19, -520), mtx(150, -90, "gastrointestinal intolerance"),
                Course(MTX, 130, None, 15, "mg", "sc", "weekly", after_t0=True,
                       note="added for persistent fever and arthritis on anakinra")),
         pred_mg=20, pred_taper=("m6", "m9", "m12", "m16"),
         mas_dx=_mas((0, "ferritin", "12400", "ng/mL"), (0, "platelets", "96", "10*9/L"), (0, "ast", "240", "U/L"),
                     (0, "tg", "3.1", "mmol/L"), (0, "fibrinogen", "150", "mg/dL"),
                     onset=18, length=20, note="MAS at presentation; ciclosporin added", csa_=True),
         escalate=(("m2", 4.0),)),
    Plan("V09", "male", date(2006, 10, 3), 4.6, 1.9, REVIEW_END, REVIEW_END_REASON,
         "MAS at diagnosis (labs over 2 days, ferritin in ug/L); CR at m1; 6-month joint exam corrected", True,
         "w2", "w2", (("baseline", 1, 0), ("m1", 0, 0), ("m3", 0, 2)), "m1", "m1",
         prior=(csa(23, -500), mtx(100, -30)), pred_mg=5,
         mas_dx=_mas((0, "ferritin", "4120", "ug/L"), (1, "platelets", "134", "10*9/L"), (2, "ast", "77", "U/L"),
                     (2, "tg", "180", "mg/dL"), (2, "fibrinogen", "390", "mg/dL"),
                     onset=22, length=15, note="MAS at presentation; ciclosporin added", csa_=True),
         aes=(AE(4, 10, "injection site reaction", 1),)),
    Plan("V10", "female", date(2007, 1, 16), 14.2, 1.5, date(2010, 4, 20), "transferred to adult rheumatology",
         "concomitant methotrexate stopped in remission at month 10; CR at m2", False, "w2", "baseline",
         (("baseline", 2, 2), ("m2", 0, 0)), "m2", "m2",
         prior=(mtx(60, 300, "sustained remission"),), pred_mg=10,
         aes=(AE(265, 20, "neutrophil count decreased", 2),)),
    Plan("V11", "male", date(2007, 3, 27), 8.0, 1.2, REVIEW_END, REVIEW_END_REASON,
         "late systemic response: 38.0 Cel at the 3-month visit, anakinra increased; CR at m4", True,
         "m4", "m2", (("baseline", 3, 1), ("m2", 0, 0)), "m4", "m4",
         prior=(mtx(60, -30), etn(240, -45)), pred_mg=15,
         aes=(AE(7, 14, "injection site reaction", 1),), escalate=(("m3", 4.0),)),
    Plan("V12", "male", date(2007, 6, 12), 11.7, 0.8, REVIEW_END, REVIEW_END_REASON,
         "MAS at diagnosis; oligoarthritis persists on anakinra (intra-articular steroids), never CR", True,
         "w2", "w2", (("baseline", 4, 2), ("m1", 3, 2), ("m3", 2, 2), ("m6", 3, 3), ("m9", 2, 3), ("m12", 2, 3),
                      ("m16", 3, 3), ("m24", 2, 2), ("m30", 1, 2)), None, None,
         prior=(csa(20, -60), mtx(120, -14)), pred_mg=20, pred_taper=("m3", "m6", "m9", "m12"),
         mas_dx=_mas((0, "ferritin", "21800", "ng/mL"), (0, "platelets", "74", "10*9/L"), (0, "ast", "310", "U/L"),
                     (1, "tg", "305", "mg/dL"), (1, "fibrinogen", "1.1", "g/L"),
                     onset=19, length=18, note="MAS at presentation; ciclosporin added", csa_=True)),
    Plan("V13", "female", date(2007, 9, 4), 3.9, 1.0, REVIEW_END, REVIEW_END_REASON,
         "CR at m2; weight typo corrected; varicella (anakinra interrupted, not stopped)", True, "w2", "m1",
         (("baseline", 1, 1), ("m1", 0, 0)), "m2", "m2",
         prior=(mtx(90, -20),), pred_mg=7.5,
         aes=(AE(3, 8, "injection site reaction", 1), AE(610, 14, "varicella", 2, "drug_interrupted"))),
    Plan("V14", "female", date(2007, 11, 20), 5.2, 0.6, REVIEW_END, REVIEW_END_REASON,
         "MAS at diagnosis; arthritis active at 3 months, inactive exactly at T6; CR at m6", True, "w2", "w2",
         (("baseline", 4, 2), ("m1", 3, 2), ("m2", 2, 1), ("m4", 1, 0), ("m6", 0, 0)), "m4", "m6",
         prior=(csa(26, -60), mtx(60, -10)), pred_mg=10,
         mas_dx=_mas((0, "ferritin", "3150", "ng/mL"), (0, "platelets", "150", "10*3/uL"), (0, "ast", "58", "U/L"),
                     (1, "tg", "140", "mg/dL"), (1, "fibrinogen", "420", "mg/dL"),
                     onset=25, length=14, note="MAS at presentation; ciclosporin added", csa_=True),
         visit_offsets=(("m6", 0),)),
    Plan("V15", "male", date(2008, 2, 12), 12.3, 0.3, REVIEW_END, REVIEW_END_REASON,
         "first line; fever to month 4, CRP never normal; severe pneumonia at day 212, anakinra stopped", True,
         "m4", "m1", (("baseline", 2, 1), ("m2", 0, 0)), None, None,
         prior=(Course("tocilizumab", 300, None, 8, "mg/kg", "iv", "every_2_weeks", after_t0=True,
                       note="started after anakinra was stopped"),),
         pred_mg=20, pred_taper=("m3", "m4", "m6", "m9"),
         stop=Stop(212, "pneumonia (lobar, hospitalised, intravenous antibiotics)", 3, True,
                   "infection: severe pneumonia", "infection"),
         post_normal_from="m12", escalate=(("m2", 3.0),)),
    Plan("V16", "female", date(2008, 5, 6), 6.8, 0.2, REVIEW_END, REVIEW_END_REASON,
         "first line; MAS at diagnosis (steroids only); CR at m2 (CRP unit typo corrected)", True, "w2", "w2",
         (("baseline", 1, 0), ("m1", 0, 0)), "m2", "m2", pred_mg=15,
         mas_dx=_mas((0, "ferritin", "6900", "ng/mL"), (0, "platelets", "128", "10*9/L"), (0, "ast", "132", "U/L"),
                     (1, "tg", "230", "mg/dL"), (1, "fibrinogen", "240", "mg/dL"),
                     onset=24, length=16, note=f"MAS at presentation; {STEROIDS_ONLY}"),
         aes=(AE(2, 7, "injection site reaction", 1),)),
    Plan("V17", "male", date(2008, 8, 19), 9.9, 0.5, REVIEW_END, REVIEW_END_REASON,
         "first line; ferritin exactly 684 at presentation (not MAS); CR at m2; wrong-chart temperature retracted",
         True, "m1", "w2", (("baseline", 3, 1), ("m2", 0, 0)), "m2", "m2", wf=1.05, pred_mg=10,
         visit_offsets=(("m3", 5),)),
    Plan("V18", "female", date(2008, 11, 4), 7.6, 0.4, REVIEW_END, REVIEW_END_REASON,
         "first line; MAS at diagnosis (steroids only); arthritis at 3 months; severe skin reaction, stopped day 108",
         True, "w2", "w2", (("baseline", 3, 2), ("m1", 2, 2), ("m2", 2, 1), ("m3", 1, 1), ("m6", 2, 2),
                            ("m9", 1, 1), ("m12", 0, 0)), None, None,
         prior=(Course(MTX, 118, None, 10, "mg", "oral", "weekly", after_t0=True,
                       note="started after anakinra was stopped"),),
         pred_mg=10, pred_taper=("m6", "m9", "m12", "m16"),
         mas_dx=_mas((0, "ferritin", "2540", "ng/mL"), (0, "platelets", "165", "10*9/L"), (0, "ast", "64", "U/L"),
                     (1, "tg", "198", "mg/dL"), (1, "fibrinogen", "310", "mg/dL"),
                     onset=20, length=15, note=f"MAS at presentation; {STEROIDS_ONLY}"),
         stop=Stop(108, "severe skin reaction: extensive indurated injection-site plaques with generalised "
                        "urticarial eruption", 3, False, "adverse event: severe skin reaction", "skin_reaction"),
         post_normal_from="m12", aes=(AE(4, 10, "injection site reaction", 1),)),
    Plan("V19", "male", date(2009, 1, 27), 2.9, 0.1, REVIEW_END, REVIEW_END_REASON,
         "first line; MAS on anakinra at day 22 (anakinra increased); CR at m2", True, "w2", "w2",
         (("baseline", 2, 0), ("m1", 0, 0)), "m2", "m2", wf=0.95,
         prior=(Course("prednisolone", 25, 90, 1, "mg/kg", "oral", "daily", "tapered off", after_t0=True),),
         mas_on=_mas((0, "ferritin", "9800", "ng/mL"), (0, "platelets", "102", "10*9/L"), (1, "ast", "168", "U/L"),
                     (1, "tg", "2.8", "mmol/L"), (1, "fibrinogen", "1.7", "g/L"),
                     onset=22, length=13, note="MAS on anakinra; anakinra increased, methylprednisolone"),
         escalate=((22, 4.0), ("m6", 2.0)), visit_offsets=(("m1", -35),)),
    Plan("V20", "female", date(2009, 4, 14), 1.8, 0.0, REVIEW_END, REVIEW_END_REASON,
         "first line at diagnosis (duration 16 days), anakinra prescribed in mg/kg; CR at m1 with ESR exactly 10",
         True, "w2", "w2", (("baseline", 1, 0), ("m1", 0, 0)), "m1", "m1", dx_days=16, anakinra_unit="mg/kg",
         aes=(AE(2, 6, "injection site reaction", 1),)),
    Plan("V21", "female", date(2009, 6, 9), 9.1, 0.2, REVIEW_END, REVIEW_END_REASON,
         "first line; MAS at diagnosis with platelets exactly 181 (boundary); CR at m2", True, "w2", "w2",
         (("baseline", 2, 1), ("m1", 0, 0)), "m2", "m2", pred_mg=15,
         mas_dx=_mas((0, "ferritin", "1850", "ng/mL"), (0, "platelets", "181", "10*9/L"), (0, "ast", "42", "U/L"),
                     (1, "tg", "1.5", "mmol/L"), (1, "fibrinogen", "3.1", "g/L"),
                     onset=18, length=17, note=f"MAS at presentation; {STEROIDS_ONLY}"),
         aes=(AE(160, 7, "upper respiratory tract infection", 1, drug=None),)),
    Plan("V22", "male", date(2009, 8, 25), 4.4, 0.3, REVIEW_END, REVIEW_END_REASON,
         "first line; shortest follow-up (11 months); CR at m1", True, "w2", "w2",
         (("baseline", 1, 0), ("m1", 0, 0)), "m1", "m1",
         aes=(AE(5, 8, "injection site reaction", 1),)),
)  # fmt: skip


# ---- small helpers ---------------------------------------------------------------------


def add_months(d: date, n: int) -> date:
    y, m = divmod(d.month - 1 + n, 12)
    year, month = d.year + y, m + 1
    return date(year, month, min(d.day, calendar.monthrange(year, month)[1]))


def whole_months(a: date, b: date) -> int:
    return (b.year - a.year) * 12 + b.month - a.month - (1 if b.day < a.day else 0)


def num(x: float, places: int) -> str:
    """A number with at most ``places`` decimals, no trailing zeros."""
    text = f"{x:.{places}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def interp(points: Sequence[tuple[float, float]], x: float) -> float:
    for (x0, y0), (x1, y1) in itertools.pairwise(points):
        if x0 <= x <= x1:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


# Approximate median growth curves (age in years -> kg / cm).
WEIGHT: dict[str, list[tuple[float, float]]] = {
    "female": [(0, 3.2), (1, 9.0), (2, 11.5), (3, 13.9), (4, 16.1), (5, 18.2), (6, 20.2), (7, 22.4),
               (8, 25.0), (9, 28.2), (10, 31.9), (11, 36.0), (12, 40.5), (13, 44.5), (14, 48.0),
               (15, 50.5), (16, 52.5), (17, 53.5), (18, 54.5), (25, 56.0)],
    "male": [(0, 3.3), (1, 9.6), (2, 12.2), (3, 14.3), (4, 16.3), (5, 18.3), (6, 20.5), (7, 22.9),
             (8, 25.6), (9, 28.6), (10, 31.9), (11, 35.6), (12, 39.9), (13, 45.3), (14, 50.8),
             (15, 56.0), (16, 60.8), (17, 64.4), (18, 66.9), (25, 70.0)],
}  # fmt: skip
HEIGHT: dict[str, list[tuple[float, float]]] = {
    "female": [(0, 49), (1, 74), (2, 86), (3, 95), (4, 102), (5, 109), (6, 115), (7, 121), (8, 127),
               (9, 133), (10, 138), (11, 144), (12, 151), (13, 157), (14, 160), (15, 162), (16, 163),
               (18, 163.5), (25, 164)],
    "male": [(0, 50), (1, 76), (2, 87), (3, 96), (4, 103), (5, 110), (6, 116), (7, 122), (8, 128),
             (9, 133), (10, 138), (11, 143), (12, 149), (13, 156), (14, 164), (15, 170), (16, 173),
             (18, 176), (25, 177)],
}  # fmt: skip


# ---- building the charts ---------------------------------------------------------------


@dataclass
class Row:
    when: datetime
    order: int
    data: dict[str, str]
    tag: str | None = None


@dataclass
class Chart:
    plan: Plan
    rng: random.Random
    rows: list[Row] = field(default_factory=list)
    birth: date = date.min
    dx: date = date.min
    visits: list[tuple[str, date]] = field(default_factory=list)
    anakinra_mg: float = 0.0  # current daily dose (mg) or mg/kg for V20
    anakinra_target: float = 2.0
    doses: list[tuple[date, float]] = field(default_factory=list)

    def add(
        self, kind: str, when: date | datetime, tag: str | None = None, **fields: str | None
    ) -> dict[str, str]:
        ts = when if isinstance(when, datetime) else datetime.combine(when, datetime.min.time())
        text = when.strftime("%Y-%m-%dT%H:%M") if isinstance(when, datetime) else when.isoformat()
        data = {"patient_id": self.plan.pid, "kind": kind, "occurred_at": text}
        data.update({k: v for k, v in fields.items() if v is not None})
        self.rows.append(Row(ts, len(self.rows), data, tag))
        return data

    # measurements -------------------------------------------------------------------
    def lab(self, when: date | datetime, analyte: str, value: str, unit: str, tag: str | None = None,
            ref: tuple[str, str] | None = None) -> None:  # fmt: skip
        extra = {"ref_low": ref[0], "ref_high": ref[1]} if ref else {}
        self.add("lab", when, tag, code=LOINC[analyte], value=value, unit=unit, **extra)

    def crp(self, when: date, mg_l: float, tag: str | None = None) -> None:
        if when < CRP_MG_L_FROM:
            self.lab(when, "crp", num(mg_l / 10, 2), "mg/dL", tag)
        else:
            self.lab(when, "crp", num(mg_l, 1), "mg/L", tag)

    def temp(
        self, when: date | datetime, febrile: bool, exact: str | None = None, tag: str | None = None
    ) -> None:
        value = exact or (
            num(self.rng.uniform(38.3, 39.8), 1) if febrile else num(self.rng.uniform(36.3, 37.3), 1)
        )
        self.add("body_temperature", when, tag, value=value, unit="Cel")

    def age_at(self, d: date) -> float:
        return (d - self.birth).days / 365.25

    def weight_at(self, d: date) -> float:
        base = interp(WEIGHT[self.plan.sex], self.age_at(d)) * self.plan.wf
        return round(base * (1 + self.rng.uniform(-0.01, 0.01)), 1)

    def height_at(self, d: date) -> float:
        return round(interp(HEIGHT[self.plan.sex], self.age_at(d)) * (0.98 + 0.04 * (self.plan.wf - 0.9)), 1)


def _dose_for(target: float, weight: float, cap: float) -> float:
    step = 10.0 if weight >= 20 else 5.0
    dose = min(cap, max(step, round(target * weight / step) * step))
    while dose / weight > 3.85:  # head-room for the next visit's weight
        dose -= step
    return dose


def schedule(chart: Chart) -> list[tuple[str, date]]:
    p, rng, t0 = chart.plan, chart.rng, chart.plan.t0
    offsets = dict(p.visit_offsets)
    out: list[tuple[str, date]] = [("baseline", t0)]
    out.append(("w2", t0 + timedelta(days=rng.randint(12, 16))))
    out.append(("m1", t0 + timedelta(days=rng.randint(28, 33))))
    out.append(("m2", t0 + timedelta(days=rng.randint(56, 63))))
    out.append(("m3", add_months(t0, 3) - timedelta(days=rng.randint(1, 6))))
    out.append(("m4", add_months(t0, 4) + timedelta(days=rng.randint(10, 18))))
    for n in (6, 9, 12, 16, 20, 24, 30, 36, 42, 48, 54):
        k = rng.randint(1, 6) if n in (6, 12) else rng.randint(0, 10)
        out.append((f"m{n}", add_months(t0, n) - timedelta(days=k)))
    fixed: list[tuple[str, date]] = []
    for label, d in out:
        if label in offsets:
            k = offsets[label]
            n = int(label[1:])
            d = t0 + timedelta(days=-k) if k < 0 else add_months(t0, n) - timedelta(days=k)
        fixed.append((label, d))
    leaves_early = p.end_reason != REVIEW_END_REASON
    last = p.end - timedelta(days=21) if leaves_early else p.end
    fixed = [(label, d) for label, d in fixed if d <= last]
    if leaves_early:
        fixed.append(("final", p.end))
    return fixed


def state_at(p: Plan, label: str) -> tuple[bool, bool, int, int]:
    i = idx(label)
    febrile = i < idx(p.fever_until)
    rash = p.rash and i < idx(p.rash_until)
    active = limited = 0
    for start, a, lim in p.joints:
        if idx(start) <= i:
            active, limited = a, lim
    return febrile, rash, active, limited


def level_at(p: Plan, label: str, on_anakinra: bool) -> str:
    febrile, _, active, _ = state_at(p, label)
    i = idx(label)
    if febrile:
        return "high"
    if active > 0:
        return "moderate"
    if label == "w2":
        return "mild"
    normal_from = p.labs_normal_from if on_anakinra else p.post_normal_from
    return "normal" if normal_from is not None and i >= idx(normal_from) else "mild"


LEVELS: dict[str, dict[str, tuple[float, float]]] = {
    "high": {"crp": (60, 220), "esr": (55, 110), "pga": (6, 9), "parent": (6, 9), "chaq": (1.25, 2.5),
             "hb": (8.6, 10.6), "wbc": (14, 28), "plt": (420, 780), "ferritin": (250, 640)},
    "moderate": {"crp": (12, 40), "esr": (22, 50), "pga": (3, 6), "parent": (3, 6), "chaq": (0.5, 1.5),
                 "hb": (10, 11.5), "wbc": (9, 14), "plt": (350, 520), "ferritin": (80, 300)},
    "mild": {"crp": (7.5, 18), "esr": (12, 28), "pga": (1, 2.5), "parent": (1, 3), "chaq": (0.125, 0.625),
             "hb": (11, 12.5), "wbc": (7, 11), "plt": (280, 420), "ferritin": (40, 150)},
    "normal": {"crp": (0.4, 4.8), "esr": (2, 9), "pga": (0, 0.5), "parent": (0, 1), "chaq": (0, 0.125),
               "hb": (11.8, 13.8), "wbc": (5, 9.5), "plt": (200, 380), "ferritin": (15, 90)},
}  # fmt: skip
HB_REF = ("11", "14.5")
WBC_REF = ("4.5", "13.5")


def half_steps(rng: random.Random, lo: float, hi: float) -> str:
    return num(round(rng.uniform(lo, hi) * 2) / 2, 1)


def chaq(rng: random.Random, lo: float, hi: float) -> str:
    return num(round(rng.uniform(lo, hi) * 8) / 8, 3)


def build(plan: Plan) -> Chart:
    chart = Chart(plan, random.Random(f"{SEED}-{plan.pid}"))
    t0 = plan.t0
    chart.birth = t0 - timedelta(days=round(plan.age * 365.25))
    dx_days = plan.dx_days if plan.dx_days is not None else round(plan.duration * 365.25)
    chart.dx = t0 - timedelta(days=dx_days)
    chart.add("birth", chart.birth, sex=plan.sex)
    chart.add("diagnosis", chart.dx, code="sJIA", note="date of onset (first fever)")
    _presentation(chart)
    if plan.mas_dx is not None:
        _mas_episode(chart, chart.dx + timedelta(days=plan.mas_dx.onset), plan.mas_dx, on_anakinra=False)
    _prior_courses(chart)
    chart.visits = schedule(chart)
    _anakinra_and_visits(chart)
    _adverse_events(chart)
    chart.add("end_of_follow_up", plan.end, reason=plan.end_reason)
    return chart


def _presentation(chart: Chart) -> None:
    """The diagnostic work-up 14 days after onset: febrile, rash, arthritis, high CRP."""
    p, rng = chart.plan, chart.rng
    d = chart.dx + timedelta(days=14)
    chart.add("weight", d, value=num(chart.weight_at(d), 1), unit="kg")
    chart.add("height", d, value=num(chart.height_at(d), 1), unit="cm")
    chart.temp(d, True)
    chart.add("finding", d, code="fever", present="true", note="quotidian fever for 2 weeks")
    if p.rash:
        chart.add("finding", d, code="rash", present="true")
    for f in p.dx_findings:
        chart.add("finding", d, code=f, present="true")
    active = max(1, p.joints[0][1] // 2)
    chart.add("joint_exam", d, active_joints=str(active), limited_joints="0")
    chart.crp(d, rng.uniform(80, 200))
    chart.lab(d, "esr", str(rng.randint(60, 105)), "mm/h")
    chart.lab(d, "hb", num(rng.uniform(8.8, 10.4), 1), "g/dL", ref=HB_REF)
    chart.lab(d, "wbc", num(rng.uniform(16, 27), 1), "10*9/L", ref=WBC_REF)
    if p.pid == "V17":  # boundary: febrile, 2 criteria, ferritin exactly 684 -> not MAS
        chart.lab(d, "ferritin", "684", "ng/mL")
        chart.lab(d, "platelets", "160", "10*9/L")
        chart.lab(d, "ast", "55", "U/L")
        chart.lab(d, "tg", "121", "mg/dL")
        chart.lab(d, "fibrinogen", "455", "mg/dL")
        later = d + timedelta(days=7)
        chart.temp(later, True)
        chart.lab(later, "ferritin", "412", "ng/mL")
        chart.lab(later, "platelets", "268", "10*9/L")
        chart.lab(later, "ast", "31", "U/L")
    else:
        chart.lab(d, "ferritin", str(rng.randint(280, 640)), "ng/mL")
        chart.lab(d, "platelets", str(rng.randint(430, 760)), "10*9/L")
        chart.lab(d, "ast", str(rng.randint(18, 38)), "U/L")
    chart.add(
        "medication_start", d, drug="naproxen", dose="5", dose_unit="mg/kg", route="oral", frequency="bid"
    )
    chart.add("medication_stop", p.t0 + timedelta(days=rng.randint(60, 120)), drug="naproxen",
              reason="no longer needed")  # fmt: skip


def _mas_episode(chart: Chart, onset: date, mas: Mas, *, on_anakinra: bool) -> None:
    p, rng = chart.plan, chart.rng
    end = onset + timedelta(days=mas.length)
    chart.temp(datetime.combine(onset, datetime.min.time()).replace(hour=20), True)
    chart.add("finding", onset, code="fever", present="true", note="persistent fever, MAS suspected")
    for offset, analyte, value, unit in mas.labs:
        chart.lab(onset + timedelta(days=offset), analyte, value, unit)
    chart.crp(onset, rng.uniform(60, 140))
    chart.lab(onset, "esr", str(rng.randint(12, 30)), "mm/h")
    chart.temp(datetime.combine(onset + timedelta(days=4), datetime.min.time()).replace(hour=8), True)
    tag = "mas_open" if on_anakinra and p.pid == "V07" else None
    chart.add("mas_episode", onset, tag, ended_at=end.isoformat(), note=mas.note)
    weight = chart.weight_at(onset)
    pulse = 30 * weight
    dose, unit = ("1", "g") if pulse >= 1000 else ("30", "mg/kg")
    chart.add("medication_start", onset, drug="methylprednisolone", dose=dose, dose_unit=unit, route="iv",
              frequency="daily", note="pulse for MAS")  # fmt: skip
    chart.add(
        "medication_stop",
        onset + timedelta(days=2),
        drug="methylprednisolone",
        reason="3-day pulse completed",
    )
    # resolution: afebrile, ferritin falling, platelets recovering (no MAS criteria any more)
    if end not in {d for _, d in chart.visits}:
        chart.temp(end, False)
        chart.add("finding", end, code="rash", present="false")
    chart.lab(end, "ferritin", str(rng.randint(300, 600)), "ng/mL")
    chart.lab(end, "platelets", str(rng.randint(220, 320)), "10*9/L")
    if not on_anakinra:
        start = onset + timedelta(days=3)
        mg = min(60.0, 2 * weight)
        chart.add("medication_start", start, drug="prednisolone", dose=num(round(mg / 2.5) * 2.5, 1), dose_unit="mg",
                  route="oral", frequency="daily", note="after methylprednisolone pulses")  # fmt: skip
        if p.pred_mg:
            chart.add("medication_dose_change", p.t0 - timedelta(days=28), drug="prednisolone",
                      dose=num(p.pred_mg, 1), dose_unit="mg", route="oral", frequency="daily")  # fmt: skip
        else:  # pragma: no cover - every MAS-at-diagnosis plan is on prednisolone at T0
            raise AssertionError(p.pid)


def _prior_courses(chart: Chart) -> None:
    p, rng = chart.plan, chart.rng
    for c in p.prior:
        start = (p.t0 if c.after_t0 else chart.dx) + timedelta(days=c.start)
        chart.add("medication_start", start, drug=c.drug, dose=num(c.dose, 2), dose_unit=c.dose_unit, route=c.route,
                  frequency=c.frequency, note=c.note)  # fmt: skip
        if c.stop is not None:
            chart.add("medication_stop", p.t0 + timedelta(days=c.stop), drug=c.drug, reason=c.stop_reason)
    if p.pred_mg and p.mas_dx is None:
        start = (
            chart.dx + timedelta(days=rng.randint(20, 40)) if p.duration < 1 else p.t0 - timedelta(days=120)
        )
        start = min(start, p.t0 - timedelta(days=3))
        chart.add("medication_start", start, drug="prednisolone", dose=num(p.pred_mg, 1), dose_unit="mg",
                  route="oral", frequency="daily")  # fmt: skip


def _anakinra_and_visits(chart: Chart) -> None:
    p, rng, t0 = chart.plan, chart.rng, chart.plan.t0
    stop_day = t0 + timedelta(days=p.stop.day) if p.stop else None
    escalations = {k: v for k, v in p.escalate if isinstance(k, str)}
    day_escalations = sorted((t0 + timedelta(days=k), v) for k, v in p.escalate if isinstance(k, int))
    taper = {label: frac for label, frac in zip(p.pred_taper, (0.75, 0.5, 0.25, 0.0), strict=True)}
    typo_done = False
    weight = chart.weight_at(t0)

    def set_dose(when: date, target: float, first: bool = False) -> None:
        nonlocal typo_done
        chart.anakinra_target = target
        if p.anakinra_unit == "mg/kg":
            dose = target
            text = num(dose, 1)
        else:
            dose = _dose_for(target, weight, 100.0 if target <= 2.5 else 200.0)
            text = num(dose, 0)
        if not first and dose == chart.anakinra_mg:
            return
        chart.anakinra_mg = dose
        per_day = dose * weight if p.anakinra_unit == "mg/kg" else dose
        chart.doses.append((when, per_day))
        fields = {"drug": "anakinra", "dose_unit": p.anakinra_unit, "route": "sc", "frequency": "daily"}
        if first:
            chart.add("medication_start", when, dose=text, **fields)
            return
        tag = None
        if p.pid == "V04" and not typo_done:  # dose typo: 10x (corrected by an amendment)
            tag, text, typo_done = "dose_typo", num(dose * 10, 0), True
        chart.add("medication_dose_change", when, tag, dose=text, **fields)

    for label, d in chart.visits:
        # day-based anakinra changes (MAS) falling before this visit
        while (
            day_escalations and day_escalations[0][0] <= d and day_escalations[0][0] < (stop_day or date.max)
        ):
            when, target = day_escalations.pop(0)
            weight = chart.weight_at(when)
            chart.add("weight", when, value=num(weight, 1), unit="kg", note="weighed on admission")
            set_dose(when, target)
        on = stop_day is None or d < stop_day
        febrile, rash, active, limited = state_at(p, label)
        level = level_at(p, label, on)
        lv = LEVELS[level]
        weight = chart.weight_at(d)
        if label != "w2":
            tag = "weight_typo" if (p.pid == "V13" and label == "m4") else None
            text = num(weight * 10, 0) if tag else num(weight, 1)
            chart.add("weight", d, tag, value=text, unit="kg")
        if label in HEIGHT_VISITS:
            chart.add("height", d, value=num(chart.height_at(d), 1), unit="cm")
        # temperature and systemic findings
        exact = "38.0" if (p.pid == "V11" and label == "m3") else None
        reported = label in p.fever_by_finding
        chart.temp(d, febrile and not reported, exact=exact)
        if (label in ("baseline", "m3") or reported) and exact is None:
            note = "parents report evening spikes to 38.5 Cel" if reported else None
            chart.add("finding", d, code="fever", present="true" if febrile else "false", note=note)
        chart.add("finding", d, code="rash", present="true" if rash else "false")
        if label == "baseline":
            for f in p.dx_findings:
                chart.add("finding", d, code=f, present="true")
        # joints and global assessments
        if label != "w2":
            jtag = "joint_typo" if (p.pid == "V09" and label == "m6") else None
            a, lim = (limited, active) if jtag else (active, limited)
            chart.add("joint_exam", d, jtag, active_joints=str(a), limited_joints=str(lim))
            pga_lo, pga_hi = lv["pga"]
            if level == "moderate":
                pga_lo, pga_hi = min(8.0, pga_lo + 0.3 * active), min(9.0, pga_hi + 0.3 * active)
            chart.add(
                "assessment",
                d,
                code="physician_global",
                value=half_steps(rng, pga_lo, pga_hi),
                unit="{score}",
            )
        if label in FULL_VISITS:
            chart.add(
                "assessment", d, code="parent_global", value=half_steps(rng, *lv["parent"]), unit="{score}"
            )
            chart.add("assessment", d, code="chaq", value=chaq(rng, *lv["chaq"]), unit="{score}")
        # labs
        crp = rng.uniform(*lv["crp"])
        crp_tag = None
        if p.pid == "V05" and label == "m3":
            crp = 6.0  # boundary: 0.6 mg/dL = 6 mg/L, normal
        if p.pid == "V16" and label == "m2":
            crp, crp_tag = 3.2, "crp_unit_typo"
        if crp_tag:
            chart.lab(d, "crp", "3.2", "mg/dL", crp_tag)  # the report said mg/L
        else:
            chart.crp(d, crp)
        if label not in NO_ESR:
            esr = "10" if (p.pid == "V20" and label == "m1") else str(round(rng.uniform(*lv["esr"])))
            chart.lab(d, "esr", esr, "mm/h")
        if label in LAB_PANEL_VISITS:
            chart.lab(d, "hb", num(rng.uniform(*lv["hb"]), 1), "g/dL", ref=HB_REF)
            chart.lab(d, "wbc", num(rng.uniform(*lv["wbc"]), 1), "10*9/L", ref=WBC_REF)
            chart.lab(d, "platelets", str(round(rng.uniform(*lv["plt"]))), "10*9/L")
            chart.lab(d, "ferritin", str(round(rng.uniform(*lv["ferritin"]))), "ng/mL")
        if p.pid == "V04" and label == "m6":
            chart.lab(d, "alt", "85", "U/L")
        if p.pid == "V10" and label == "m9":
            chart.lab(d, "neutrophils", "0.9", "10*9/L")
            chart.lab(d, "wbc", "3.1", "10*9/L", ref=WBC_REF)
        # anakinra
        if label == "baseline":
            set_dose(d, 2.0, first=True)
        elif on:
            if label in escalations:
                set_dose(d, escalations[label])
            elif p.anakinra_unit == "mg" and chart.anakinra_mg / weight < 0.75 * chart.anakinra_target:
                set_dose(d, chart.anakinra_target)
        # prednisolone taper
        if p.pred_mg and label in taper:
            frac = taper[label]
            if frac:
                chart.add("medication_dose_change", d, drug="prednisolone", dose=num(round(p.pred_mg * frac / 2.5) * 2.5, 1),
                          dose_unit="mg", route="oral", frequency="daily")  # fmt: skip
            else:
                chart.add("medication_stop", d, drug="prednisolone", reason="tapered off")
    # extra events inside the anakinra course
    if p.mas_on is not None:
        _mas_episode(chart, t0 + timedelta(days=p.mas_on.onset), p.mas_on, on_anakinra=True)
    for when, target in day_escalations:  # pragma: no cover - all fall before a visit
        raise AssertionError((p.pid, when, target))
    if p.stop is not None and stop_day is not None:
        s = p.stop
        if s.category == "infection" and "pneumonia" in s.term:
            chart.temp(stop_day, True)
            chart.crp(stop_day, 184)
            chart.lab(stop_day, "wbc", "21.4", "10*9/L", ref=WBC_REF)
            chart.temp(stop_day + timedelta(days=12), False)
        chart.add("adverse_event", stop_day, term=s.term, grade=str(s.grade), serious="true" if s.serious else "false",
                  action="drug_withdrawn", drug="anakinra", ended_at=(stop_day + timedelta(days=14)).isoformat())  # fmt: skip
        chart.add("medication_stop", stop_day, drug="anakinra", reason=s.reason)
        chart.add("discontinuation", stop_day, drug="anakinra", reason=s.reason)
        if "tuberculin" in s.term:
            chart.add("medication_start", stop_day + timedelta(days=3), drug="isoniazid", dose="10", dose_unit="mg/kg",
                      route="oral", frequency="daily", note="treatment of latent tuberculosis")  # fmt: skip
            chart.add(
                "medication_stop",
                stop_day + timedelta(days=273),
                drug="isoniazid",
                reason="9-month course completed",
            )
            chart.add("medication_start", add_months(t0, 12) - timedelta(days=2), drug=MTX, dose="10", dose_unit="mg",
                      route="oral", frequency="weekly", note="started after anakinra was stopped")  # fmt: skip
    if p.pid == "V17":  # a febrile reading from another child's chart, retracted later
        chart.add(
            "body_temperature", add_months(t0, 3) - timedelta(days=2), "wrong_chart", value="38.4", unit="Cel"
        )


def _adverse_events(chart: Chart) -> None:
    p = chart.plan
    for ae in p.aes:
        start = p.t0 + timedelta(days=ae.day)
        chart.add("adverse_event", start, term=ae.term, grade=str(ae.grade), serious="false", action=ae.action,
                  drug=ae.drug, ended_at=(start + timedelta(days=ae.length)).isoformat())  # fmt: skip


# ---- amendments ------------------------------------------------------------------------


def amendments(by_tag: dict[tuple[str, str], dict[str, str]]) -> list[dict[str, Any]]:
    def eid(pid: str, tag: str) -> str:
        return by_tag[(pid, tag)]["event_id"]

    v13w = by_tag[("V13", "weight_typo")]
    v04d = by_tag[("V04", "dose_typo")]
    v07 = by_tag[("V07", "mas_open")]
    return [
        {"op": "correct", "event_id": eid("V16", "crp_unit_typo"), "set": {"unit": "mg/L"},
         "reason": "transcription error: the laboratory report gives CRP 3.2 mg/L (the laboratory has reported "
                   "mg/L since 2008-01-01); entered with the old unit mg/dL",
         "author": MONITOR},
        {"op": "correct", "event_id": eid("V09", "joint_typo"), "set": {"active_joints": "0", "limited_joints": "2"},
         "reason": "active and limited joint counts entered in swapped columns (chart: no active joints, "
                   "both hips limited)", "author": MONITOR},
        {"op": "correct", "event_id": v13w["event_id"], "set": {"value": num(float(v13w["value"]) / 10, 1)},
         "reason": "decimal point lost on entry (chart: " + num(float(v13w["value"]) / 10, 1) + " kg)",
         "author": MONITOR},
        {"op": "correct", "event_id": v04d["event_id"], "set": {"dose": num(float(v04d["dose"]) / 10, 0)},
         "reason": "dose entered 10x too high (prescription: " + num(float(v04d["dose"]) / 10, 0) + " mg/day)",
         "author": MONITOR},
        {"op": "correct", "event_id": v07["event_id"], "set": {"ended_at": v07["_ended_at"]},
         "reason": "MAS episode resolution date added from the discharge letter", "author": "Dr. C. Vidal (treating physician)"},
        {"op": "retract", "event_id": eid("V17", "wrong_chart"),
         "reason": "temperature entered in the wrong patient's chart (belongs to another child seen that day)",
         "author": MONITOR},
    ]  # fmt: skip


def apply_amendments(rows: list[dict[str, str]], items: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The current view after the amendments (what the store shows once they are applied)."""
    by_id = {r["event_id"]: dict(r) for r in rows}
    for a in items:
        if a["op"] == "retract":
            del by_id[a["event_id"]]
        else:
            row = by_id[a["event_id"]]
            for k, v in a["set"].items():
                if v == "":
                    row.pop(k, None)
                else:
                    row[k] = v
    return [by_id[r["event_id"]] for r in rows if r["event_id"] in by_id]


# ---- reference evaluator ---------------------------------------------------------------


@dataclass(frozen=True)
class Params:
    fever_window: int = FEVER_WINDOW_DAYS
    exam_valid: int = JOINT_EXAM_VALID_DAYS
    lab_valid: int = LAB_VALID_DAYS
    mas_window: int = MAS_WINDOW_DAYS
    ferritin_strict: bool = True  # ferritin > 684 (False: >= 684)
    platelets_inclusive: bool = True  # platelets <= 181 (False: < 181)
    fever_c: float = FEVER_C
    crp_normal: float = CRP_NORMAL
    time_point_inclusive: bool = True
    use_fever_findings: bool = True  # fever = temperature >= 38 OR a fever finding present
    esr_normal: float = ESR_NORMAL
    window_end_inclusive: bool = True  # "the 7 days up to and including the date"


def canonical(kind: str, code: str | None, value: str, unit: str) -> float:
    """A measured value in its code's canonical unit, converted as the store converts it."""
    target = codes.BUILTIN.measured(kind, code)
    assert target is not None, (kind, code)
    conv = conversion(unit, target.unit, target.molar_mass)
    return round(float(value) * conv.scale + conv.offset, 9)


def day_of(text: str) -> date:
    return date.fromisoformat(text[:10])


@dataclass
class Patient:
    pid: str
    rows: list[dict[str, str]]

    def of(self, kind: str, code: str | None = None) -> list[dict[str, str]]:
        return [r for r in self.rows if r["kind"] == kind and (code is None or r.get("code") == code)]

    def first(self, kind: str) -> dict[str, str]:
        found = self.of(kind)
        assert found, (self.pid, kind)
        return found[0]

    def values(self, kind: str, code: str | None = None) -> list[tuple[date, float]]:
        return [
            (day_of(r["occurred_at"]), canonical(kind, code, r["value"], r["unit"]))
            for r in self.of(kind, code)
        ]


def evaluate(rows: list[dict[str, str]], params: Params | None = None) -> dict[str, Any]:
    """Every figure of the poster, per patient and for the cohort, from native rows."""
    prm = params or Params()
    pids = sorted({r["patient_id"] for r in rows})
    patients = {pid: Patient(pid, [r for r in rows if r["patient_id"] == pid]) for pid in pids}
    per = {pid: _evaluate_patient(p, prm) for pid, p in patients.items()}
    return {"patients": per, "cohort": _cohort(per)}


def _evaluate_patient(p: Patient, prm: Params) -> dict[str, Any]:
    birth = day_of(p.first("birth")["occurred_at"])
    dx = day_of(p.first("diagnosis")["occurred_at"])
    starts = sorted(day_of(r["occurred_at"]) for r in p.of("medication_start") if r["drug"] == "anakinra")
    t0 = starts[0]
    stops = sorted(day_of(r["occurred_at"]) for r in p.of("medication_stop") if r["drug"] == "anakinra")
    stop = stops[0] if stops else None
    end = day_of(p.first("end_of_follow_up")["occurred_at"])
    course_end = stop or end
    dmard_starts = [
        (day_of(r["occurred_at"]), r["drug"])
        for r in p.of("medication_start")
        if r["drug"] in DMARDS_AND_BIOLOGICS
    ]
    prior = sorted({drug for d, drug in dmard_starts if d < t0})
    escalations = sorted((d, drug) for d, drug in dmard_starts if t0 < d < course_end)

    temps = p.values("body_temperature")
    fever_findings = [
        (day_of(r["occurred_at"]), r.get("present", "true") == "true") for r in p.of("finding", "fever")
    ]
    rash = [(day_of(r["occurred_at"]), r.get("present", "true") == "true") for r in p.of("finding", "rash")]

    def window(items: list[tuple[date, Any]], d: date, days: int) -> list[Any]:
        return [
            v
            for when, v in items
            if d - timedelta(days=days) <= when and (when < d or (prm.window_end_inclusive and when == d))
        ]

    def free_at(d: date) -> bool | None:
        """Fever-free and rash-free at d: False when a fever or a rash is recorded in the
        window, else None when a temperature or a rash record is missing from it."""
        t = window(temps, d, prm.fever_window)
        rs = window(rash, d, prm.fever_window)
        reported = prm.use_fever_findings and any(window(fever_findings, d, prm.fever_window))
        if any(v >= prm.fever_c for v in t) or reported or any(rs):
            return False
        if not t or not rs:
            return None
        return True

    t3 = add_months(t0, 3)
    resolved = free_at(t3) is True
    resolution = None
    if resolved:
        # the first day free from which no later day up to T3 has a fever or a rash (a fever on
        # a day without a rash record ends a spell too: V19's fevers in MAS)
        candidates = sorted({d for d, _ in temps if t0 <= d <= t3} & {d for d, _ in rash})
        recorded = sorted({d for d, _ in [*temps, *rash, *fever_findings] if t0 <= d <= t3})
        for d in candidates:
            if free_at(d) and all(free_at(x) is not False for x in recorded if x > d):
                resolution = d
                break

    exams = [(day_of(r["occurred_at"]), int(r["active_joints"])) for r in p.of("joint_exam")]

    def latest(items: list[tuple[date, float]], d: date, valid: int) -> tuple[date, float] | None:
        # valid N days: the N calendar days ending at d, d included (the engine's `within`)
        found = [(w, v) for w, v in items if d - timedelta(days=valid) < w <= d]
        return max(found) if found else None

    arthritis: dict[str, dict[str, Any]] = {}
    for n in (3, 6, 12):
        t = add_months(t0, n)
        evaluable = end >= t and (stop is None or stop > t)
        at = t if prm.time_point_inclusive else t - timedelta(days=1)
        exam = latest([(w, float(a)) for w, a in exams], at, prm.exam_valid)
        entry: dict[str, Any] = {"time_point": t.isoformat(), "evaluable": evaluable}
        if not evaluable:
            entry["why_not"] = (
                f"anakinra stopped {stop.isoformat()}"
                if stop is not None and stop <= t
                else "follow-up ended"
            )
        entry["exam_date"] = exam[0].isoformat() if exam else None
        entry["active_joints"] = int(exam[1]) if exam else None
        entry["active"] = (exam[1] > 0) if (exam and evaluable) else None
        arthritis[str(n)] = entry

    crps = p.values("lab", LOINC["crp"])
    esrs = p.values("lab", LOINC["esr"])

    def cr_state(d: date) -> bool:
        if not (t0 <= d < course_end) and not (stop is None and t0 <= d <= end):
            return False
        if any(e <= d for e, _ in escalations):
            return False
        if free_at(d) is not True:
            return False
        exam = latest([(w, float(a)) for w, a in exams], d, prm.exam_valid)
        if exam is None or exam[1] > 0:
            return False
        crp = latest(crps, d, prm.lab_valid)
        if crp is None or crp[1] > prm.crp_normal:
            return False
        esr = latest(esrs, d, prm.lab_valid)
        return not (esr is not None and esr[1] > prm.esr_normal)

    visit_dates = sorted({d for d, _ in temps} & {d for d, _ in rash} & {d for d, _ in exams})
    cr_date = next((d for d in visit_dates if cr_state(d)), None)
    t6 = add_months(t0, 6)

    weights = p.values("weight")
    doses: list[tuple[date, float, str]] = []
    for r in p.rows:
        if r["kind"] in ("medication_start", "medication_dose_change") and r["drug"] == "anakinra":
            doses.append((day_of(r["occurred_at"]), float(r["dose"]), r["dose_unit"]))
    mgkg: list[float] = []
    check_dates = sorted({d for d, _, _ in doses} | {d for d, _ in weights if t0 <= d < course_end})
    for d in check_dates:
        dose = max((x for x in doses if x[0] <= d), default=None)
        w = latest(weights, d, 183)
        if dose is None or w is None:
            continue
        mgkg.append(dose[1] if dose[2] == "mg/kg" else dose[1] / w[1])

    mas: list[dict[str, str | None]] = []
    for r in p.of("mas_episode"):
        onset = day_of(r["occurred_at"])
        if onset < t0 and (onset - dx).days <= AT_DIAGNOSIS_DAYS:
            relation = "at_diagnosis"
        elif t0 <= onset <= course_end:
            relation = "on_anakinra"
        else:
            relation = "other"
        mas.append(
            {
                "event_id": r["event_id"],
                "onset": onset.isoformat(),
                "resolution": r.get("ended_at"),
                "relation": relation,
            }
        )
    mas.sort(key=lambda m: str(m["onset"]))

    disc = None
    for r in p.of("discontinuation"):
        if r["drug"] == "anakinra":
            ae = next((a for a in p.of("adverse_event") if a.get("action") == "drug_withdrawn"), None)
            disc = {"date": r["occurred_at"], "reason": r["reason"],
                    "adverse_event": None if ae is None else {"event_id": ae["event_id"], "term": ae["term"],
                                                                "grade": int(ae["grade"]),
                                                                "serious": ae.get("serious") == "true"}}  # fmt: skip

    return {
        "sex": p.first("birth")["sex"],
        "birth_date": birth.isoformat(),
        "diagnosis_date": dx.isoformat(),
        "anakinra_start": t0.isoformat(),
        "anakinra_stop": stop.isoformat() if stop else None,
        "end_of_follow_up": end.isoformat(),
        "end_of_follow_up_reason": p.first("end_of_follow_up").get("reason"),
        "age_at_anakinra_start_years": round((t0 - birth).days / 365.25, 3),
        "disease_duration_years": round((t0 - dx).days / 365.25, 3),
        "follow_up_months": round((end - t0).days / 30.4375, 2),
        "follow_up_whole_months": whole_months(t0, end),
        "first_line": not prior,
        "dmards_biologics_before_anakinra": prior,
        "escalation_on_anakinra": [{"date": d.isoformat(), "drug": drug} for d, drug in escalations],
        "fever_rash_resolved_within_3m": resolved,
        "fever_rash_resolution_date": resolution.isoformat() if resolution else None,
        "active_arthritis": arthritis,
        "complete_response": cr_date is not None,
        "complete_response_date": cr_date.isoformat() if cr_date else None,
        "complete_response_state_at_6m": cr_state(t6) if (end >= t6) else False,
        "discontinuation": disc,
        "mas_episodes": mas,
        "anakinra_mg_per_kg_day": {"min": round(min(mgkg), 2), "max": round(max(mgkg), 2)},
        "derived_mas_dates": _derived_mas(p, prm),
    }


def _derived_mas(p: Patient, prm: Params) -> list[str]:
    """Dates of ferritin results that meet the 2016 criteria (febrile, ferritin > 684, >= 2 of 4)."""
    temps = p.values("body_temperature")
    fever_findings = [
        day_of(r["occurred_at"]) for r in p.of("finding", "fever") if r.get("present", "true") == "true"
    ]
    labs = {k: p.values("lab", LOINC[k]) for k in ("ferritin", "platelets", "ast", "tg", "fibrinogen")}
    out = []
    w = timedelta(days=prm.mas_window)
    for d, ferritin in labs["ferritin"]:
        if not (ferritin > 684 if prm.ferritin_strict else ferritin >= 684):
            continue

        def near(items: list[tuple[date, float]], _d: date = d) -> list[float]:
            return [v for when, v in items if _d - w <= when <= _d + w]

        febrile = any(v >= prm.fever_c for v in near(temps)) or any(
            d - w <= f <= d + w for f in fever_findings
        )
        plt_limit = 181.0 if prm.platelets_inclusive else 180.999
        criteria = [
            any(v <= plt_limit for v in near(labs["platelets"])),
            any(v > 48 for v in near(labs["ast"])),
            any(v > 156 for v in near(labs["tg"])),
            any(v <= 360 for v in near(labs["fibrinogen"])),
        ]
        if febrile and sum(criteria) >= 2:
            out.append(d.isoformat())
    return out


def _cohort(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    ages = [v["age_at_anakinra_start_years"] for v in per.values()]
    durs = [v["disease_duration_years"] for v in per.values()]
    fus = [v["follow_up_months"] for v in per.values()]

    def summary(xs: list[float]) -> dict[str, float]:
        mean = sum(xs) / len(xs)
        return {
            "mean": round(mean, 1),
            "min": round(min(xs), 1),
            "max": round(max(xs), 1),
            "mean_exact": round(mean, 4),
        }

    arth = {}
    for n in ("3", "6", "12"):
        den = sorted(pid for pid, v in per.items() if v["active_arthritis"][n]["evaluable"])
        num_ = sorted(pid for pid in den if per[pid]["active_arthritis"][n]["active"])
        arth[n] = {"n": len(num_), "N": len(den), "percent": round(100 * len(num_) / len(den), 1), "patients": num_,
                   "excluded": {pid: v["active_arthritis"][n]["why_not"] for pid, v in per.items()
                                if not v["active_arthritis"][n]["evaluable"]}}  # fmt: skip
    cr = sorted(pid for pid, v in per.items() if v["complete_response"])
    fl = sorted(pid for pid, v in per.items() if v["first_line"])
    resolved = sorted(pid for pid, v in per.items() if v["fever_rash_resolved_within_3m"])
    disc = {pid: v["discontinuation"]["reason"] for pid, v in per.items() if v["discontinuation"]}
    episodes = [(pid, m) for pid, v in per.items() for m in v["mas_episodes"]]
    return {
        "patients": len(per),
        "age_at_anakinra_start_years": summary(ages),
        "disease_duration_years": summary(durs),
        "follow_up_months": {"min": round(min(fus)), "max": round(max(fus)), "min_exact": min(fus), "max_exact": max(fus)},
        "fever_rash_resolved_within_3m": {"n": len(resolved), "N": len(per), "percent": round(100 * len(resolved) / len(per), 1),
                                          "not_resolved": sorted(set(per) - set(resolved))},
        "active_arthritis": arth,
        "complete_response": {"n": len(cr), "N": len(per), "percent": round(100 * len(cr) / len(per), 1),
                              "patients": cr, "first_line_n": len(set(cr) & set(fl)), "first_line_N": len(fl),
                              "first_line_patients": fl,
                              "state_at_6m_n": sum(1 for v in per.values() if v["complete_response_state_at_6m"])},
        "anakinra_discontinued": {"n": len(disc), "reasons": disc},
        "mas": {"episodes": len(episodes), "patients": len({pid for pid, _ in episodes}),
                "percent_patients": round(100 * len({pid for pid, _ in episodes}) / len(per), 1),
                "at_diagnosis": sum(1 for _, m in episodes if m["relation"] == "at_diagnosis"),
                "on_anakinra": sum(1 for _, m in episodes if m["relation"] == "on_anakinra"),
                "patients_list": sorted({pid for pid, _ in episodes})},
    }  # fmt: skip


# ---- checks against the plan and the poster ---------------------------------------------


def check(result: dict[str, Any]) -> None:
    c, per = result["cohort"], result["patients"]
    assert c["patients"] == 22
    assert (c["age_at_anakinra_start_years"]["mean"], c["age_at_anakinra_start_years"]["min"],
            c["age_at_anakinra_start_years"]["max"]) == (8.6, 1.8, 15.6), c["age_at_anakinra_start_years"]  # fmt: skip
    assert (c["disease_duration_years"]["mean"], c["disease_duration_years"]["min"],
            c["disease_duration_years"]["max"]) == (2.4, 0.0, 10.2), c["disease_duration_years"]  # fmt: skip
    assert (c["follow_up_months"]["min"], c["follow_up_months"]["max"]) == (11, 56), c["follow_up_months"]
    assert min(v["follow_up_whole_months"] for v in per.values()) == 11
    assert max(v["follow_up_whole_months"] for v in per.values()) == 56
    assert c["fever_rash_resolved_within_3m"]["n"] == 18, c["fever_rash_resolved_within_3m"]
    counts = {n: (a["n"], a["N"]) for n, a in c["active_arthritis"].items()}
    assert counts == {"3": (5, 22), "6": (3, 21), "12": (4, 18)}, counts
    assert (c["complete_response"]["n"], c["complete_response"]["first_line_n"]) == (16, 6), c[
        "complete_response"
    ]
    assert c["complete_response"]["state_at_6m_n"] == 16
    assert c["anakinra_discontinued"]["n"] == 3
    m = c["mas"]
    assert (m["episodes"], m["patients"], m["at_diagnosis"], m["on_anakinra"]) == (10, 9, 8, 2), m
    for plan in PLANS:
        v = per[plan.pid]
        assert round(v["age_at_anakinra_start_years"], 1) == plan.age, plan.pid
        assert round(v["disease_duration_years"], 1) == plan.duration, plan.pid
        assert v["complete_response"] == (plan.cr is not None), plan.pid
        assert v["complete_response_state_at_6m"] == (plan.cr is not None), plan.pid
        mgkg = v["anakinra_mg_per_kg_day"]
        assert mgkg["min"] >= 1.0 and mgkg["max"] <= 4.0, (plan.pid, mgkg)
        assert not v["escalation_on_anakinra"] or plan.cr is None, plan.pid
        # every recorded MAS episode is also met by its labs; nothing else is
        derived = [date.fromisoformat(x) for x in v["derived_mas_dates"]]
        for ep in v["mas_episodes"]:
            onset = date.fromisoformat(ep["onset"])
            assert any(onset <= x <= onset + timedelta(days=2) for x in derived), (plan.pid, ep)
            assert ep["relation"] in ("at_diagnosis", "on_anakinra"), (plan.pid, ep)
        for x in derived:
            assert any(date.fromisoformat(ep["onset"]) <= x <= date.fromisoformat(ep["resolution"])
                       for ep in v["mas_episodes"]), (plan.pid, x)  # fmt: skip


def check_cr_visits(result: dict[str, Any], charts: dict[str, Chart]) -> None:
    for plan in PLANS:
        v = result["patients"][plan.pid]
        if plan.cr is not None:
            visit = dict(charts[plan.pid].visits)[plan.cr]
            assert v["complete_response_date"] == visit.isoformat(), (
                plan.pid,
                v["complete_response_date"],
                visit,
            )


DOC_ROW = re.compile(
    r"^(V\d\d) ([MF]) +(\S+) +(\S+) +(\S+) +(\S+) +(yes|no) +(yes|no)(?: \(\S+\))? +([-Ax]) ([-Ax]) ([-Ax]) +(\S+)"
)


def check_docstring(result: dict[str, Any], charts: dict[str, Chart]) -> None:
    """The per-patient plan table in this module's docstring says what the data say."""
    seen = 0
    for line in (__doc__ or "").splitlines():
        m = DOC_ROW.match(line)
        if not m:
            continue
        seen += 1
        pid, sex, t0, age, dur, fu, fl, res, a3, a6, a12, cr = m.groups()
        v = result["patients"][pid]
        arth = [
            "x"
            if not v["active_arthritis"][n]["evaluable"]
            else "A"
            if v["active_arthritis"][n]["active"]
            else "-"
            for n in ("3", "6", "12")
        ]
        cr_date = dict(charts[pid].visits)[cr].isoformat() if cr != "no" else None
        assert (sex, t0, float(age), float(dur), float(fu)) == (
            v["sex"][0].upper(), v["anakinra_start"], round(v["age_at_anakinra_start_years"], 1),
            round(v["disease_duration_years"], 1), round(v["follow_up_months"], 1),
        ), line  # fmt: skip
        assert (fl == "yes", res == "yes", [a3, a6, a12], cr_date) == (
            v["first_line"], v["fever_rash_resolved_within_3m"], arth, v["complete_response_date"]
        ), line  # fmt: skip
    assert seen == 22


def robustness(rows: list[dict[str, str]], base: dict[str, Any]) -> None:
    """The answers do not depend on how the windows' bounds are read."""
    keys = ("fever_rash_resolved_within_3m", "fever_rash_resolution_date", "complete_response",
            "complete_response_date", "complete_response_state_at_6m", "active_arthritis")  # fmt: skip
    for prm in (Params(fever_window=6), Params(fever_window=8), Params(exam_valid=60), Params(mas_window=2)):
        other = evaluate(rows, prm)
        for pid, v in base["patients"].items():
            for k in keys:
                assert other["patients"][pid][k] == v[k], (prm, pid, k)
            assert other["patients"][pid]["derived_mas_dates"] == v["derived_mas_dates"], (prm, pid)


def boundary_effects(rows: list[dict[str, str]], base: dict[str, Any]) -> list[dict[str, Any]]:
    """Each documented boundary case, with what changes if its bound is read the other way."""
    out = []
    alt = evaluate(rows, Params(ferritin_strict=False))
    assert alt["patients"]["V17"]["derived_mas_dates"] and not base["patients"]["V17"]["derived_mas_dates"]
    out.append({"patient": "V17", "case": "ferritin exactly 684 ng/mL at presentation, febrile, platelets 160, AST 55",
                "rule": "ferritin > 684 (strict)", "expected": "no MAS (none recorded)",
                "if_misread": "ferritin >= 684 derives an MAS that was never there"})  # fmt: skip
    alt = evaluate(rows, Params(platelets_inclusive=False))
    v21 = base["patients"]["V21"]
    assert v21["derived_mas_dates"] and not alt["patients"]["V21"]["derived_mas_dates"]
    out.append({"patient": "V21", "case": "MAS at diagnosis: ferritin 1850, platelets exactly 181 10*9/L, fibrinogen "
                "3.1 g/L (310 mg/dL); AST 42 and triglycerides 1.5 mmol/L (133 mg/dL) do not qualify",
                "rule": "platelets <= 181 (inclusive)", "expected": "meets the 2016 criteria (recorded MAS)",
                "if_misread": "platelets < 181 leaves only one criterion: the recorded episode has no lab support"})  # fmt: skip
    alt = evaluate(rows, Params(fever_c=38.05))
    assert alt["cohort"]["fever_rash_resolved_within_3m"]["n"] == 19
    out.append({"patient": "V11", "case": "body temperature exactly 38.0 Cel at the 3-month visit",
                "rule": "fever = temperature >= 38.0", "expected": "fever: not resolved within 3 months",
                "if_misread": "> 38.0 counts 19/22 resolved"})  # fmt: skip
    alt = evaluate(rows, Params(use_fever_findings=False))
    assert alt["cohort"]["fever_rash_resolved_within_3m"]["n"] == 19
    assert alt["patients"]["V06"]["fever_rash_resolved_within_3m"]
    out.append({"patient": "V06", "case": "3-month visit: 37.3 Cel in clinic but a fever finding (reported spikes)",
                "rule": "fever = temperature >= 38 OR finding fever present", "expected": "not resolved",
                "if_misread": "temperature only counts 19/22 resolved"})  # fmt: skip
    alt = evaluate(rows, Params(crp_normal=5.999))
    assert (
        alt["patients"]["V05"]["complete_response_date"] != base["patients"]["V05"]["complete_response_date"]
    )
    out.append({"patient": "V05", "case": "CRP 0.6 mg/dL (= 6 mg/L exactly) at the first complete-response visit",
                "rule": "CRP normal <= 6 mg/L, after unit conversion", "expected":
                "complete response at " + base["patients"]["V05"]["complete_response_date"],
                "if_misread": "CRP < 6 (or no conversion) moves the date to "
                + str(alt["patients"]["V05"]["complete_response_date"])})  # fmt: skip
    alt = evaluate(rows, Params(esr_normal=9.999))
    assert (
        alt["patients"]["V20"]["complete_response_date"] != base["patients"]["V20"]["complete_response_date"]
    )
    out.append({"patient": "V20", "case": "ESR exactly 10 mm/h at the first complete-response visit",
                "rule": "ESR normal <= 10 mm/h", "expected": "complete response at "
                + base["patients"]["V20"]["complete_response_date"],
                "if_misread": "ESR < 10 moves the complete response to "
                + str(alt["patients"]["V20"]["complete_response_date"])})  # fmt: skip
    alt = evaluate(rows, Params(time_point_inclusive=False))
    assert alt["cohort"]["active_arthritis"]["6"]["n"] == 4
    out.append({"patient": "V14", "case": "6-month visit exactly on T6 with 0 active joints (previous exam: 1)",
                "rule": "time point inclusive: latest exam in (t - 90 days, t]", "expected": "inactive at 6 months",
                "if_misread": "an exclusive bound counts 4/21 with active arthritis at 6 months"})  # fmt: skip
    alt = evaluate(rows, Params(window_end_inclusive=False))
    assert not alt["patients"]["V03"]["fever_rash_resolved_within_3m"]
    out.append({"patient": "V03", "case": "3-month visit exactly on T3 (the only record in the 7 days up to T3)",
                "rule": "time point and fever window inclusive of the date itself",
                "expected": "fever-free and rash-free at T3, inactive arthritis at 3 months",
                "if_misread": "excluding the date itself leaves no temperature in the window: fever status unknown"})  # fmt: skip
    return out


# ---- output ----------------------------------------------------------------------------


def generate() -> tuple[list[dict[str, str]], list[dict[str, Any]], dict[str, Any]]:
    charts = {p.pid: build(p) for p in PLANS}
    rows: list[dict[str, str]] = []
    by_tag: dict[tuple[str, str], dict[str, str]] = {}
    for pid, chart in charts.items():
        ordered = sorted(chart.rows, key=lambda r: (r.when, r.order))
        for n, r in enumerate(ordered, start=1):
            data = {"event_id": f"{pid}-{n:04d}", **r.data}
            if r.tag == "mas_open":  # recorded open; the resolution date comes as a correction
                ended = data.pop("ended_at")
                by_tag[(pid, r.tag)] = {**data, "_ended_at": ended}
            elif r.tag:
                by_tag[(pid, r.tag)] = data
            rows.append(data)
    items = amendments(by_tag)
    current = apply_amendments(rows, items)
    result = evaluate(current)
    check(result)
    check_cr_visits(result, charts)
    check_docstring(result, charts)
    robustness(current, result)
    before = evaluate(rows)
    truth = ground_truth(result, before, boundary_effects(current, result))
    return rows, items, truth


def _differences(after: Any, before: Any, path: str = "") -> list[dict[str, Any]]:
    if isinstance(after, dict) and isinstance(before, dict):
        out = []
        for k in after:
            out.extend(_differences(after[k], before.get(k), f"{path}.{k}" if path else k))
        return out
    if after != before:
        return [{"path": path, "after_amendments": after, "before_amendments": before}]
    return []


def ground_truth(
    result: dict[str, Any], before: dict[str, Any], boundaries: list[dict[str, Any]]
) -> dict[str, Any]:
    plans = {p.pid: p for p in PLANS}
    patients = {}
    for pid, v in result["patients"].items():
        v = dict(v)
        v.pop("derived_mas_dates")
        patients[pid] = {"design": plans[pid].role, **v}
    diffs = [d for d in _differences(result["cohort"], before["cohort"]) if not d["path"].endswith("percent")]
    per_diffs = {
        pid: [d for d in _differences(v, before["patients"][pid]) if "derived" not in d["path"]]
        for pid, v in result["patients"].items()
    }
    return {
        "description": "Ground truth of the synthetic Valencia cohort (examples/valencia), computed from events.csv "
        "after amendments.json by the reference evaluator in generate.py. Poster P71, Pediatric Rheumatology 2011.",
        "generator": {"script": "examples/valencia/generate.py", "seed": SEED},
        "definitions": {
            "index_date": "T0 = first anakinra medication_start",
            "time_points_months": [3, 6, 12],
            "time_point": "T0 + n calendar months; inclusive (state on that date)",
            "age_and_duration": "(T0 - birth or diagnosis date) in days / 365.25",
            "follow_up": "(end_of_follow_up - T0) in days / 30.4375",
            "fever": "body_temperature >= 38.0 Cel or finding fever present=true",
            "fever_free_window_days": FEVER_WINDOW_DAYS,
            "fever_rash_resolved_within_3m": "fever-free and rash-free at T3 (a temperature and a rash finding "
            "recorded in the 7 days up to T3, none febrile or present); resolution date = first record date from "
            "which the patient stays fever- and rash-free up to T3",
            "active_arthritis": "active_joints > 0 at the latest joint_exam within 90 days up to the time point",
            "arthritis_denominator": "as treated: end_of_follow_up >= time point and anakinra not stopped on or "
            "before it",
            "complete_response": "first visit D in the anakinra course, no DMARD/biologic started in (T0, D], "
            "fever-free and rash-free at D, no active arthritis, latest CRP within 30 days <= 6 mg/L, latest ESR "
            "within 30 days (if any) <= 10 mm/h; steroids and NSAIDs allowed",
            "complete_response_denominator": "all 22 patients",
            "dmards_and_biologics": list(DMARDS_AND_BIOLOGICS),
            "first_line": "no DMARD or biologic started before T0 (steroids and NSAIDs allowed)",
            "crp_normal_mg_l": CRP_NORMAL,
            "esr_normal_mm_h": ESR_NORMAL,
            "lab_validity_days": LAB_VALID_DAYS,
            "joint_exam_validity_days": JOINT_EXAM_VALID_DAYS,
            "mas_2016": "febrile, ferritin > 684 ng/mL and >= 2 of platelets <= 181 10*9/L, AST > 48 U/L, "
            "triglycerides > 156 mg/dL, fibrinogen <= 360 mg/dL; labs within 3 days",
            "mas_relation": f"at_diagnosis: onset before T0 and <= {AT_DIAGNOSIS_DAYS} days after the diagnosis "
            "date; on_anakinra: onset within [T0, anakinra stop or end of follow-up]",
            "discontinuation": "discontinuation event for anakinra; cause = adverse_event with action "
            "drug_withdrawn on the same date",
            "anakinra_dose": "mg/day over the latest weight (within 183 days); mg/kg doses are already per kg",
        },
        "poster_printed": {
            "patients": 22,
            "age": "8.6 (1.8-15.6)",
            "disease_duration": "2.4 (0-10.2)",
            "follow_up": "11-56 months",
            "fever_rash_resolved_within_3m": "18 (82%)",
            "active_arthritis_3_6_12": "22% / 14% / 22%",
            "complete_response": "16 (70%), 6 first line",
            "stopped": "1 severe skin reaction, 2 infections",
            "mas": "10 episodes in 9 patients (40%): 8 at diagnosis, 2 on anakinra",
        },
        "cohort": result["cohort"],
        "patients": patients,
        "boundary_cases": boundaries,
        "before_amendments": {
            "how": "the same evaluation over the store as known at the ingest batch's recorded_at (before the "
            "corrections and the retraction of amendments.json)",
            "cohort_differences": diffs,
            "patient_differences": {pid: d for pid, d in per_diffs.items() if d},
        },
    }


def write_csv(rows: list[dict[str, str]]) -> str:
    used = [c for c in NATIVE_COLUMNS if any(c in r for r in rows)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=used, lineterminator="\n", extrasaction="raise")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in used})
    return buf.getvalue()


def write_all(out: Path) -> dict[str, Path]:
    rows, items, truth = generate()
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "events.csv": write_csv(rows),
        "amendments.json": json.dumps({"amendments": items}, indent=2, ensure_ascii=False) + "\n",
        "ground_truth.json": json.dumps(truth, indent=2, ensure_ascii=False) + "\n",
    }
    paths = {}
    for name, text in files.items():
        path = out / name
        path.write_text(text, encoding="utf-8", newline="\n")
        paths[name] = path
    return paths


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE, help="output directory (default: this directory)")
    args = parser.parse_args(argv)
    paths = write_all(args.out)
    n = paths["events.csv"].read_text(encoding="utf-8").count("\n") - 1
    print(f"wrote {n} events, amendments and ground truth to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
