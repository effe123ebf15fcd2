"""A site's codes file (``codes.yaml``): labs, assessments and findings the built-in tables
(:mod:`timeline.codes`) lack, so that a site adds one by writing a file, not code.

.. code-block:: yaml

    labs:                       # LOINC codes, their check digit checked
      26499-4:
        name: neutrophils (absolute count)
        unit: 10*9/L            # canonical UCUM unit: every value is converted to it on ingest
        low: 0                  # plausible range in that unit: a value outside is refused
        high: 100
        unit_factors: count     # optional: a cell count (per µL is 10⁻⁶ of 10*9/L)
        molar_mass: 180.16      # optional, g/mol: lets mmol/L convert to a mass unit
    assessments:                # local codes: lowercase, digits, underscores
      jadas10: {name: JADAS-10, unit: "{score}", low: 0, high: 40}
    findings:                   # local codes, with what they stand for
      pericarditis: pericarditis
    frequencies:                # dosing intervals, as doses per day (a daily dose is dose x this)
      every_5_days: 0.2

The rule loader reads a ``codes.yaml`` in any rule directory (:func:`read`), so the rules
of that directory may name its codes; ``timeline codes add FILE`` registers the same file in
a store, so that ingest accepts, converts and range-checks their values. A site code adds;
it never redefines a built-in one.
"""

from __future__ import annotations

import difflib
import math
import re
from typing import Any

from timeline import codes
from timeline.language.loader import Problem, _Doc
from timeline.units import UnitError, conversion, is_valid, ucum_hint

SECTIONS = {"labs": "lab", "assessments": "assessment", "findings": "finding", "frequencies": "frequency"}
MEASURED_KEYS = ("name", "unit", "low", "high", "unit_factors", "molar_mass")
LOINC_RE = re.compile(r"^([1-9][0-9]{0,6})-([0-9])$")  # a LOINC number has no leading zero
# values are stored rounded to 9 decimal places of the code's unit (ingest): a range finer than
# this would be checked and stored as zeros
SMALLEST_HIGH = 1e-3
# a dosing frequency's doses per day: from once a year (zoledronate) to hourly; 0 is a single dose
MIN_PER_DAY, MAX_PER_DAY = 1 / 366, 24.0
LOCAL_RE = re.compile(r"^[a-z][a-z0-9_]*$")

Path_ = tuple[str | int, ...]


def read(doc: _Doc) -> list[codes.SiteCode]:
    """The site codes of a parsed ``codes.yaml``; every problem is recorded on ``doc``
    (file, line, column) and its code left out."""
    found: list[codes.SiteCode] = []
    seen: dict[str, int] = {}  # code → the line it is defined at
    data = doc.data
    if data is None:  # nothing in it, or a YAML error (already reported)
        if not any(p.file == doc.file for p in doc.problems):
            doc.problems.append(
                Problem(
                    doc.file,
                    1,
                    1,
                    "empty codes file: define labs, assessments, findings or frequencies, or remove it",
                )
            )
        return found

    def fail(path: Path_, message: str) -> None:
        line, col = doc.key_where(path)
        doc.problems.append(Problem(doc.file, line, col, message))

    if not isinstance(data, dict):
        fail((), f"a codes file maps its sections ({', '.join(SECTIONS)}) to their codes")
        return found
    for section, value in data.items():
        if section not in SECTIONS:
            close = difflib.get_close_matches(str(section), list(SECTIONS), n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail(
                (section,),
                f"unknown section {section!r}{hint}; a codes file has {', '.join(SECTIONS)}",
            )
            continue
        if value is None:
            continue
        if not isinstance(value, dict):
            fail((section,), f"{section} maps each code to its definition")
            continue
        kind = SECTIONS[section]
        for raw_code, spec in value.items():
            code = str(raw_code)
            path: Path_ = (section, raw_code)
            where = f"{doc.file}:{doc.key_where(path)[0]}"
            problem = _code_problem(kind, code)
            if problem:
                fail(path, problem)
                continue
            if code in seen:
                fail(
                    path,
                    f"{code!r} is also defined at line {seen[code]}: a code has one kind and one definition",
                )
                continue
            seen[code] = doc.key_where(path)[0]
            if kind == "frequency":
                per_day = _number(spec)
                if per_day is None or per_day < 0:
                    fail(
                        path,
                        f"frequency {code!r}: give its doses per day, a number (every 5 days: 0.2), not {spec!r}",
                    )
                    continue
                per_day = abs(per_day)  # -0.0
                if per_day != 0 and not MIN_PER_DAY <= per_day <= MAX_PER_DAY:
                    fail(
                        path,
                        f"frequency {code!r}: {per_day:g} doses a day is not a dosing interval; give 0 (a single "
                        f"dose) or from {MIN_PER_DAY:.4g} (once a year) to {MAX_PER_DAY:g} (hourly)",
                    )
                    continue
                name = f"{per_day:g} doses a day"
                found.append(codes.SiteCode(kind, codes.Code(code, name, "1", None, None), where, per_day))
                continue
            if kind == "finding":
                if not isinstance(spec, str) or not spec.strip():
                    fail(
                        path,
                        f"finding {code!r}: give what it stands for, e.g. {code}: {code.replace('_', ' ')}",
                    )
                    continue
                found.append(codes.SiteCode(kind, codes.Code(code, spec.strip(), "1", None, None), where))
                continue
            site = _measured(kind, code, spec, path, fail)
            if site is not None:
                found.append(codes.SiteCode(kind, site, where))
    return found


def _code_problem(kind: str, code: str) -> str | None:
    """What is wrong with a site code's spelling, or that it is a built-in code."""
    existing = codes.builtin_kind(code)
    if existing is not None:
        name = codes.BUILTIN.name(code)
        return (
            f"{code!r} is a built-in {existing} code ({name}); a site's codes add codes, they do not "
            "change the built-in ones"
        )
    if kind == "lab":
        m = LOINC_RE.match(code)
        if not m:
            return f"lab code {code!r} is not a LOINC code (digits, a hyphen, a check digit: 26499-4)"
        digit = codes.loinc_check_digit(m.group(1))
        if digit != int(m.group(2)):
            return (
                f"lab code {code!r}: the check digit of {m.group(1)} is {digit}, so this is not a LOINC "
                f"code ({m.group(1)}-{digit} would be); check it against loinc.org"
            )
        return None
    if not LOCAL_RE.match(code):
        return (
            f"{kind} code {code!r}: local codes are lowercase letters, digits and underscores (pericarditis)"
        )
    return None


def _measured(kind: str, code: str, spec: Any, path: Path_, fail: Any) -> codes.Code | None:
    if not isinstance(spec, dict):
        fail(path, f"{kind} {code!r} needs name, unit, low and high")
        return None
    ok = True
    for key in spec:
        if key not in MEASURED_KEYS:
            close = difflib.get_close_matches(str(key), MEASURED_KEYS, n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            fail((*path, key), f"unknown key {key!r}{hint}; a {kind} has {', '.join(MEASURED_KEYS)}")
            ok = False
    for key in ("name", "unit", "low", "high"):
        if key not in spec or spec[key] is None or (isinstance(spec[key], str) and not spec[key].strip()):
            why = {
                "name": "what it measures",
                "unit": "the canonical UCUM unit every value is converted to",
                "low": "the lowest plausible value, in the unit",
                "high": "the highest value a living patient has been reported with, in the unit: "
                "it refuses unit slips",
            }[key]
            fail(path, f"{kind} {code!r} needs {key} ({why})")
            ok = False
    if not ok:
        return None
    for key in ("name", "unit"):
        if not isinstance(spec[key], str | int | float) or isinstance(spec[key], bool):
            fail((*path, key), f"{key} must be text, not {spec[key]!r}")
            return None
    name, unit = str(spec["name"]).strip(), str(spec["unit"]).strip()
    if not is_valid(unit):
        fail(
            (*path, "unit"),
            f"unit {unit!r} is not a UCUM unit timeline reads (mg/L, 10*9/L, {{score}}){ucum_hint(str(unit))}",
        )
        return None
    bounds: list[float] = []
    for key in ("low", "high"):
        v = _number(spec[key])
        if v is None:
            fail((*path, key), f"{key} must be a number in {unit}, not {spec[key]!r}")
            return None
        bounds.append(v)
    if bounds[0] > bounds[1]:
        fail((*path, "low"), f"low {bounds[0]:g} is above high {bounds[1]:g}")
        return None
    if bounds[1] < SMALLEST_HIGH or 0 < abs(bounds[0]) < SMALLEST_HIGH * 1e-3:
        fail(
            (*path, "high" if bounds[1] < SMALLEST_HIGH else "low"),
            f"values are stored to 9 decimal places of {unit!r}: a range of {bounds[0]:g}–{bounds[1]:g} "
            "would lose them; give the code a smaller unit (pmol/L for mol/L, ug/L for g/L)",
        )
        return None
    molar = spec.get("molar_mass")
    if molar is not None:
        if (number := _number(molar)) is None or not number > 0:
            fail((*path, "molar_mass"), f"molar_mass is a positive number of g/mol, not {molar!r}")
            return None
        molar = number
    factors = codes.DEFAULT_FACTORS
    raw = spec.get("unit_factors")
    if raw == "count":
        try:  # the built-in counts' factors, from 10*9/L to this unit (per µL: 10⁻⁶…10⁴ of 10*9/L)
            per = conversion("10*9/L", unit).scale
        except UnitError:
            fail(
                (*path, "unit_factors"),
                f"unit_factors: count is for a cell count per volume (10*9/L, /uL), not {unit!r}",
            )
            return None
        factors = (codes.COUNT_FACTORS[0] * per, codes.COUNT_FACTORS[1] * per)
    elif raw is not None:
        lo, hi = (
            (_number(raw[0]), _number(raw[1])) if isinstance(raw, list) and len(raw) == 2 else (None, None)
        )
        if lo is None or hi is None or not 0 < lo <= 1 <= hi:
            fail(
                (*path, "unit_factors"),
                "unit_factors is `count` (a cell count) or [lowest, highest] factor of a recorded unit to "
                "the canonical one, the lowest at most 1 and the highest at least 1: [0.0001, 10000]",
            )
            return None
        factors = (lo, hi)
    if molar is not None:
        try:  # a molar mass must let a molar unit of this one convert
            conversion("mmol/L", unit, float(molar))
        except UnitError:
            fail((*path, "molar_mass"), f"molar_mass converts mol to g: {unit!r} is not a mass concentration")
            return None
    return codes.Code(
        code,
        name,
        unit,
        bounds[0],
        bounds[1],
        molar_mass=float(molar) if molar is not None else None,
        unit_factors=factors,
    )


def _number(value: Any) -> float | None:
    """A finite number as YAML gives it, or as text (YAML 1.1 reads ``1e5`` as a string)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        try:
            value = float(value.strip())
        except ValueError:
            return None
    if not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an integer of hundreds of digits
        return None
    return number if math.isfinite(number) else None
