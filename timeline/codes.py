"""Codes the store understands, with their canonical units and plausible ranges.

Labs and vital signs are identified by LOINC and measured in UCUM units; every value
is converted on ingest to its code's canonical unit (the original value and unit are
kept). Findings and assessments use short local codes. See ``DOMAIN.md`` for sources.

A site adds codes of its own without changing this file: a ``codes.yaml`` beside its rules
(read by the rule loader, :mod:`timeline.language.sitecodes`) and registered in the store with
``timeline codes add`` (read by ingest). A :class:`CodeBook` is the built-in codes and a
site's together.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

# A code's unit factors unless it gives its own (see Code.unit_factors)
DEFAULT_FACTORS = (1e-4, 1e4)


@dataclass(frozen=True)
class Code:
    code: str
    name: str
    unit: str  # canonical UCUM unit; "1" for unitless scores
    low: float | None = 0.0  # plausible range in the canonical unit (inclusive)
    high: float | None = None
    molar_mass: float | None = None  # g/mol, lets mmol/L convert to mass units
    validity_days: int = 30  # how long a measurement stays valid by default
    # The units a value may be recorded in, as their factor to the canonical unit: a unit
    # further off is not one this code is reported in, whatever UCUM says (weight in mg,
    # neutrophils per litre). Four orders of magnitude either way covers every laboratory
    # unit of these codes (g/L → mg/dL is 100, mg/L → g/dL 10⁻⁴); counts per µL or mm³ are
    # 10⁻⁶ of 10⁹/L and widen it for the cell counts.
    unit_factors: tuple[float, float] = DEFAULT_FACTORS


# the factors of a cell count's units: /uL and /mm3 are 1e-6 of 10*9/L
COUNT_FACTORS = (1e-6, 1e4)


# Plausible ranges: wide enough for every value a living patient has been reported with,
# narrow enough that a unit slip of a factor 1000 (a count per µL entered as 10³/µL, g/L as
# g/dL) lands outside for ordinary values. A value outside is refused at ingest (row, field,
# value, unit named); fix the record or its unit.
LABS: dict[str, Code] = {
    c.code: c
    for c in [
        # a Westergren tube is 200 mm long (ICSH 2011 ESR recommendations): nothing above
        Code("4537-7", "ESR (Westergren)", "mm/h", 0, 200),
        # the highest CRPs reported (sepsis, sJIA/MAS) are 500-600 mg/L; assays dilute to ~1000
        Code("1988-5", "CRP", "mg/L", 0, 1000),
        Code("30522-7", "hs-CRP", "mg/L", 0, 1000),
        # MAS/HLH ferritin reaches the hundreds of thousands (HLH-2004 uses > 500 as a criterion)
        Code("2276-4", "ferritin", "ng/mL", 0, 500000),
        # essential thrombocythaemia can exceed 3000 x 10^9/L; reactive thrombocytosis in sJIA
        # rarely exceeds 1500
        Code("777-3", "platelets", "10*9/L", 0, 5000, unit_factors=COUNT_FACTORS),
        # ischaemic hepatitis and acute liver failure: AST/ALT in the tens of thousands
        Code("1920-8", "AST", "U/L", 0, 50000),
        Code("1742-6", "ALT", "U/L", 0, 50000),
        # familial chylomicronaemia: up to ~ 10,000-20,000 mg/dL
        Code("2571-8", "triglycerides", "mg/dL", 0, 20000, molar_mass=885.7),
        # normal 200-400 mg/dL, acute phase < 1000-1500
        Code("3255-7", "fibrinogen", "mg/dL", 0, 2000),
        # polycythaemia stays under 30 g/dL; a value in g/L (120) entered as g/dL is refused
        Code("718-7", "haemoglobin", "g/dL", 0, 30),
        # hyperleukocytosis of acute leukaemia has been reported up to ~ 1000 x 10^9/L
        Code("6690-2", "WBC", "10*9/L", 0, 1000, unit_factors=COUNT_FACTORS),
        # the neutrophilia of leukaemoid reactions (sepsis, sJIA flares) stays under 100 x 10^9/L;
        # above it only leukaemias, whose differential reports blasts and precursors, not an
        # ANC. Any neutropenic count (>= 0.1) entered per µL in 10³/µL lands above 100.
        Code("751-8", "neutrophils", "10*9/L", 0, 100, unit_factors=COUNT_FACTORS),
        # LDH in MAS, haemolysis and tumour lysis: thousands, rarely > 10,000 U/L
        Code("2532-0", "LDH", "U/L", 0, 100000),
    ]
}

# Vital signs have a kind of their own; the kind implies the LOINC code.
VITALS: dict[str, Code] = {
    "weight": Code("29463-7", "body weight", "kg", 0.2, 300, validity_days=183),
    "height": Code("8302-2", "body height", "cm", 20, 250, validity_days=365),
    "body_temperature": Code("8310-5", "body temperature", "Cel", 25, 45, validity_days=1),
}

ASSESSMENTS: dict[str, Code] = {
    c.code: c
    for c in [
        Code("physician_global", "physician global assessment (VAS 0-10)", "{score}", 0, 10, validity_days=90),
        Code("parent_global", "parent/patient global assessment (VAS 0-10)", "{score}", 0, 10, validity_days=90),
        Code("pain", "pain (VAS 0-10)", "{score}", 0, 10, validity_days=90),
        Code("chaq", "Childhood Health Assessment Questionnaire (0-3)", "{score}", 0, 3, validity_days=90),
        Code("morning_stiffness", "morning stiffness duration", "min", 0, 1440, validity_days=90),
    ]
}  # fmt: skip

FINDINGS: dict[str, str] = {
    "fever": "recorded fever",
    "rash": "evanescent erythematous rash",
    "serositis": "serositis",
    "lymphadenopathy": "generalised lymphadenopathy",
    "hepatomegaly": "hepatomegaly",
    "splenomegaly": "splenomegaly",
    "organomegaly": "hepato- and/or splenomegaly",
    "arthralgia": "arthralgia",
    "uveitis": "active uveitis",
    "cns_involvement": "central nervous system involvement",
    "haemorrhage": "haemorrhagic manifestations",
}

SEXES = ("female", "male", "other", "unknown")
ROUTES = ("sc", "iv", "oral", "im", "topical", "other")
AE_ACTIONS = ("none", "dose_reduced", "drug_interrupted", "drug_withdrawn")

# Doses per day for each accepted frequency code: a daily dose (`daily_dose`) is the dose
# times this. `once` is a single dose, not a regimen: its daily dose is 0. The intervals are
# those of the sJIA biologics and their tapers: anakinra daily, every other day, every 3 days;
# tocilizumab IV every 2 weeks, SC weekly, every 10 days or every 2-3 weeks by weight;
# canakinumab every 4 weeks, tapered to every 6, 8 and 12 weeks.
FREQUENCIES: dict[str, float] = {
    "once": 0.0,
    "daily": 1.0,
    "bid": 2.0,
    "tid": 3.0,
    "qid": 4.0,
    "every_other_day": 0.5,
    "every_3_days": 1.0 / 3.0,
    "twice_weekly": 2.0 / 7.0,
    "weekly": 1.0 / 7.0,
    "every_10_days": 1.0 / 10.0,
    "every_2_weeks": 1.0 / 14.0,
    "every_3_weeks": 1.0 / 21.0,
    "every_4_weeks": 1.0 / 28.0,
    "monthly": 12.0 / 365.25,
    "every_6_weeks": 1.0 / 42.0,
    "every_8_weeks": 1.0 / 56.0,
    "every_12_weeks": 1.0 / 84.0,
}

DOSE_UNITS = ("mg", "mg/kg")  # canonical; any mass unit converts to mg


# ---- a site's codes ------------------------------------------------------------------------

SITE_KINDS = ("lab", "assessment", "finding", "frequency")


@dataclass(frozen=True)
class SiteCode:
    """A code a site defines (``codes.yaml``): a lab (LOINC), an assessment, a finding or a
    dosing frequency. A finding has a name only; a frequency its doses per day (``per_day``);
    ``code`` carries a lab's or an assessment's unit, range and conversions."""

    kind: str  # one of SITE_KINDS
    code: Code
    source: str = ""  # where it was defined: "site/codes.yaml:4", or the registered file
    per_day: float | None = None  # a frequency's doses per day (0: a single dose)

    def same_meaning(self, other: SiteCode) -> bool:
        """Whether values stored under one are values of the other: same kind, canonical unit
        and molar mass (a name, range or unit factors may differ)."""
        a, b = self.code, other.code
        return (self.kind, a.unit, a.molar_mass, self.per_day) == (
            other.kind,
            b.unit,
            b.molar_mass,
            other.per_day,
        )

    def place(self) -> tuple[str, int]:
        """(file, line) of ``source``."""
        file, line = self.source.rsplit(":", 1)
        return file, int(line)

    def meaning(self) -> str:
        """What its stored values are: "a lab in '10*9/L'", "a frequency of 0.2 doses a day"."""
        if self.kind == "frequency":
            return f"a frequency of {self.per_day or 0:g} doses a day"
        if self.kind == "finding":
            return "a finding"
        molar = f" (molar mass {self.code.molar_mass:g} g/mol)" if self.code.molar_mass is not None else ""
        return f"{'an' if self.kind == 'assessment' else 'a'} {self.kind} in {self.code.unit!r}{molar}"

    def same_definition(self, other: SiteCode) -> bool:
        return self.kind == other.kind and self.code == other.code and self.per_day == other.per_day


@dataclass(frozen=True)
class CodeBook:
    """The codes events and rules may name: the built-in tables, and a site's codes."""

    labs: Mapping[str, Code] = field(default_factory=lambda: LABS)
    assessments: Mapping[str, Code] = field(default_factory=lambda: ASSESSMENTS)
    findings: Mapping[str, str] = field(default_factory=lambda: FINDINGS)
    site: tuple[SiteCode, ...] = ()
    frequencies: Mapping[str, float] = field(default_factory=lambda: FREQUENCIES)

    def with_site(self, site: Iterable[SiteCode]) -> CodeBook:
        """This book with the site's codes added (a later definition of a code replaces an
        earlier one; callers refuse redefinitions of built-in codes before)."""
        labs, assessments, findings = dict(self.labs), dict(self.assessments), dict(self.findings)
        frequencies = dict(self.frequencies)
        added = list(self.site)
        for sc in site:
            if sc.kind == "lab":
                labs[sc.code.code] = sc.code
            elif sc.kind == "assessment":
                assessments[sc.code.code] = sc.code
            elif sc.kind == "frequency":
                frequencies[sc.code.code] = sc.per_day or 0.0
            else:
                findings[sc.code.code] = sc.code.name
            added = [a for a in added if a.code.code != sc.code.code] + [sc]
        return CodeBook(labs, assessments, findings, tuple(added), frequencies)

    def measured(self, kind: str, code: str | None) -> Code | None:
        """The code table row for a measurement event, or None if it has none."""
        if kind in VITALS:
            return VITALS[kind]
        if kind == "lab" and code is not None:
            return self.labs.get(code)
        if kind == "assessment" and code is not None:
            return self.assessments.get(code)
        return None

    def known(self) -> set[str]:
        """Every code a rule may name."""
        return set(self.labs) | set(self.findings) | set(self.assessments) | {c.code for c in VITALS.values()}

    def name(self, code: str) -> str | None:
        """What a code stands for: "ferritin", "body weight", "recorded fever"."""
        if code in self.labs:
            return self.labs[code].name
        if code in self.assessments:
            return self.assessments[code].name
        if code in self.findings:
            return self.findings[code]
        for vital in VITALS.values():
            if vital.code == code:
                return vital.name
        if code in self.frequencies:
            return f"{self.frequencies[code]:.4g} doses a day"
        return None

    def unit(self, code: str) -> str | None:
        """The canonical unit of a measured code (a lab, an assessment, a vital's LOINC)."""
        for table in (self.labs, self.assessments):
            if code in table:
                return table[code].unit
        for vital in VITALS.values():
            if vital.code == code:
                return vital.unit
        return None


# What people write for a code instead of the code: a lab's test name and its abbreviations,
# in British and American spelling (compared ignoring case, spaces and punctuation; each
# code's own name is also read). A rule or a file naming "CRP" is told "CRP is LOINC 1988-5".
SPELLINGS: dict[str, tuple[str, ...]] = {
    "4537-7": ("ESR", "sed rate", "sedimentation rate", "erythrocyte sedimentation rate"),
    "1988-5": ("CRP", "C-reactive protein"),
    "30522-7": ("hs-CRP", "high-sensitivity CRP", "high sensitivity C-reactive protein"),
    "2276-4": ("ferritin", "serum ferritin"),
    "777-3": ("platelets", "platelet", "platelet count", "PLT", "thrombocytes"),
    "1920-8": ("AST", "SGOT", "GOT", "aspartate aminotransferase", "aspartate transaminase"),
    "1742-6": ("ALT", "SGPT", "GPT", "alanine aminotransferase", "alanine transaminase"),
    "2571-8": ("triglycerides", "triglyceride", "TG", "TGs"),
    "3255-7": ("fibrinogen",),
    "718-7": ("haemoglobin", "hemoglobin", "Hb", "Hgb"),
    "6690-2": ("WBC", "white blood cells", "white cell count", "white blood cell count", "leukocytes",
               "leucocytes", "WCC"),
    "751-8": ("neutrophils", "neutrophil count", "ANC", "absolute neutrophil count"),
    "2532-0": ("LDH", "LD", "lactate dehydrogenase"),
    "physician_global": ("physician global", "PGA", "MD global"),
    "parent_global": ("parent global", "patient global", "PtGA"),
    "chaq": ("CHAQ",),
}  # fmt: skip

# Labs sJIA studies measure that are not built in: a site defines them in its codes.yaml.
# (name, spellings, the LOINC codes to define)
NOT_BUILT_IN: tuple[tuple[str, tuple[str, ...], str], ...] = (
    (
        "D-dimer",
        ("D-dimer", "D dimer", "fibrin D-dimer"),
        "LOINC 48065-7, D-dimer FEU, or 48066-5, D-dimer DDU",
    ),
)


def _plain(text: str) -> str:
    """``text`` as spellings are compared: lower case, letters and digits only (hs-CRP: hscrp)."""
    return "".join(ch for ch in text.lower() if ch.isalnum())


def named_code(text: str, book: CodeBook | None = None) -> tuple[str, str | None] | None:
    """What ``text``, written where a code goes, names when it is not a code but a code's name,
    an abbreviation of it or the code in other letters ("CRP", "hemoglobin", "CHAQ"): (what
    to say, the code to write — None for a lab that is not built in), or None.

    ``named_code("crp")`` → ``("crp is LOINC 1988-5 (CRP)", "1988-5")``."""
    book = BUILTIN if book is None else book
    word = _plain(text)
    if not word:
        return None
    for kind, vital in VITALS.items():
        if word in (_plain(kind), _plain(vital.name), _plain(vital.name.removeprefix("body "))):
            return (
                f"{text} is an event kind of its own (kind: {kind}; LOINC {vital.code}, {vital.name})",
                None,
            )
    tables: tuple[tuple[str, Mapping[str, object]], ...] = (
        ("lab", book.labs), ("assessment", book.assessments), ("finding", book.findings),
    )  # fmt: skip
    for kind, table in tables:
        for code in table:
            name = book.name(code) or code
            if word in {_plain(code), _plain(name), *(_plain(s) for s in SPELLINGS.get(code, ()))}:
                if kind == "lab":
                    shown = "" if _plain(name) == word else f" ({name})"
                    return f"{text} is LOINC {code}{shown}", code
                case = " (codes are written in lower case)" if _plain(code) == word else f" ({name})"
                return f"{text} is the {kind} code {code!r}{case}", code
    for name, spellings, define in NOT_BUILT_IN:
        if word in {_plain(s) for s in spellings}:
            return f"{name} is not a built-in code: define it in a codes.yaml ({define})", None
    return None


BUILTIN = CodeBook()


def builtin_kind(code: str) -> str | None:
    """The kind of a built-in code ("lab", "assessment", "finding", a vital's kind), or None."""
    if code in LABS:
        return "lab"
    if code in ASSESSMENTS:
        return "assessment"
    if code in FINDINGS:
        return "finding"
    if code in FREQUENCIES:
        return "frequency"
    for kind, vital in VITALS.items():
        if vital.code == code:
            return kind
    return None


def loinc_check_digit(number: str) -> int:
    """The check digit of a LOINC code's number part (LOINC Users' Guide, "Calculating Mod 10
    check digits"): the digits in odd places from the right, as one number, doubled; the
    digits in even places written before it; the check digit takes the sum of all those
    digits up to the next multiple of ten. ``2276`` → 4 (2276-4, ferritin)."""
    rev = number[::-1]
    odd = str(int(rev[0::2]) * 2)
    even = rev[1::2]
    total = sum(int(d) for d in even + odd)
    return (10 - total % 10) % 10
