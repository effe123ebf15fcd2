"""The clinical event kinds: one frozen pydantic model per kind, in a discriminated union.

These models are the single definition of the native event format. The columns a file
may carry, their types, and which of them each kind requires are all derived from the
models below, and the bulk validator in :mod:`timeline.ingest` checks files against them.

Adding a kind: subclass :class:`EventBase` with a ``kind: Literal["new_kind"]`` field and
the kind's own fields (each one a native column; reuse an existing column name where the
meaning is the same), add the class to ``EVENT_MODELS``, and document it in the README's
event format table. A new column name also needs an entry in ``COLUMN_TYPES``.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from timeline import codes

DATE_RE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
DATETIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:?\d{2})?$")

Precision = Literal["day", "minute", "second"]


def parse_when(text: str) -> tuple[datetime, Precision, bool]:
    """Parse an occurred_at value: (naive timestamp, precision, had an explicit offset).

    A date has precision ``day`` and stands for midnight at the start of that day.
    """
    s = text.strip()
    if DATE_RE.match(s):
        return datetime.combine(date.fromisoformat(s), datetime.min.time()), "day", False
    if DATETIME_RE.match(s):
        dt = datetime.fromisoformat(s.replace(" ", "T").replace("Z", "+00:00"))
        precision: Precision = "second" if s[16:17] == ":" else "minute"
        if dt.tzinfo is not None:
            return dt.astimezone(UTC).replace(tzinfo=None), precision, True
        return dt, precision, False
    raise ValueError(f"{text!r} is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM[:SS][Z|+HH:MM])")


def _check_when(value: str | None) -> str | None:
    if value is not None:
        parse_when(value)
    return value


class EventBase(BaseModel):
    """Fields every event has. The store adds seq, recorded_at and provenance itself."""

    # validators are built on first use: most commands never validate an event model, and
    # building the 17 kinds' validators on import costs every command ~10 ms
    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    event_id: str | None = Field(
        default=None,
        min_length=1,
        max_length=128,
        description="Stable id of the event; derived from the content when absent.",
    )
    patient_id: str = Field(min_length=1, max_length=128)
    occurred_at: str = Field(description="YYYY-MM-DD or YYYY-MM-DDTHH:MM[:SS][offset]")
    note: str | None = None

    _check = field_validator("occurred_at")(_check_when)


class Birth(EventBase):
    """The patient's birth date and sex; occurred_at is the date of birth."""

    kind: Literal["birth"]
    sex: Literal["female", "male", "other", "unknown"]


class Diagnosis(EventBase):
    """A diagnosis with its onset date (e.g. code ``sJIA``)."""

    kind: Literal["diagnosis"]
    code: str = Field(min_length=1)


class _Medication(EventBase):
    drug: str = Field(min_length=1)
    dose: float = Field(ge=0)
    dose_unit: str = Field(min_length=1, description="a UCUM mass unit (mg) or mg/kg")
    route: Literal["sc", "iv", "oral", "im", "topical", "other"] | None = None
    frequency: str | None = Field(default=None, description="see codes.FREQUENCIES")


class MedicationStart(_Medication):
    """First dose of a drug."""

    kind: Literal["medication_start"]


class MedicationDoseChange(_Medication):
    """A new dose of a drug the patient already takes."""

    kind: Literal["medication_dose_change"]


class MedicationStop(EventBase):
    """Last dose of a drug."""

    kind: Literal["medication_stop"]
    drug: str = Field(min_length=1)
    reason: str | None = None


class _Measurement(EventBase):
    value: float
    unit: str = Field(min_length=1)


class Weight(_Measurement):
    """Body weight (LOINC 29463-7), any UCUM mass unit; stored in kg."""

    kind: Literal["weight"]


class Height(_Measurement):
    """Body height (LOINC 8302-2), any UCUM length unit; stored in cm."""

    kind: Literal["height"]


class BodyTemperature(_Measurement):
    """Body temperature (LOINC 8310-5) in Cel or [degF]; stored in Cel."""

    kind: Literal["body_temperature"]


class Finding(EventBase):
    """A clinical finding seen (present) or looked for and absent (present = false)."""

    kind: Literal["finding"]
    code: str = Field(description="see codes.FINDINGS")
    present: bool = True
    ended_at: str | None = None

    _check_end = field_validator("ended_at")(_check_when)


class JointExam(EventBase):
    """A joint examination: count of active joints and of joints with limited motion."""

    kind: Literal["joint_exam"]
    active_joints: int = Field(ge=0, le=75)
    limited_joints: int | None = Field(default=None, ge=0, le=75)


class Assessment(_Measurement):
    """A scored assessment: physician_global, parent_global, pain, chaq, morning_stiffness."""

    kind: Literal["assessment"]
    code: str


# how a censored value's qualifier may be written, beside its two-character forms (ingest
# reads a file's the same way)
QUALIFIER_SPELLINGS = {"≤": "<=", "≥": ">="}


def _spelt_qualifier(value: Any) -> Any:
    """A qualifier as ingest reads one: ``≤`` and ``≥`` are ``<=`` and ``>=``."""
    return QUALIFIER_SPELLINGS.get(value, value) if isinstance(value, str) else value


class Lab(_Measurement):
    """A lab result by LOINC code, in any UCUM unit; optional reference range (same unit).

    ``qualifier``: a censored value (``value=5, qualifier="<"`` is ``<5``: below the lab's
    limit of 5), as a file's ``value`` writes it: stored as its bound and the qualifier, and
    hashed with it (an exact value, without one, keeps the hash and id it had before)."""

    kind: Literal["lab"]
    code: str
    ref_low: float | None = None
    ref_high: float | None = None
    qualifier: Literal["<", "<=", ">", ">="] | None = Field(
        default=None, description="a censored value's: <, <=, >, >= (also ≤, ≥); none for an exact value"
    )

    _check_qualifier = field_validator("qualifier", mode="before")(_spelt_qualifier)


class MasEpisode(EventBase):
    """A macrophage activation syndrome episode recorded by the clinician."""

    kind: Literal["mas_episode"]
    ended_at: str | None = Field(default=None, description="resolution; open when absent")

    _check_end = field_validator("ended_at")(_check_when)


class AdverseEvent(EventBase):
    """An adverse event graded by CTCAE v5, with the action taken on the drug."""

    kind: Literal["adverse_event"]
    term: str = Field(min_length=1)
    grade: int = Field(ge=1, le=5)
    serious: bool = False
    action: Literal["none", "dose_reduced", "drug_interrupted", "drug_withdrawn"] = "none"
    drug: str | None = None
    ended_at: str | None = None

    _check_end = field_validator("ended_at")(_check_when)


class Discontinuation(EventBase):
    """Treatment with a drug ended for good, with the reason."""

    kind: Literal["discontinuation"]
    drug: str = Field(min_length=1)
    reason: str = Field(min_length=1)


class EndOfFollowUp(EventBase):
    """The last date the patient was followed (reason: lost, transferred, study end...)."""

    kind: Literal["end_of_follow_up"]
    reason: str | None = None


class Death(EventBase):
    """The patient died."""

    kind: Literal["death"]
    reason: str | None = None


EVENT_MODELS: tuple[type[EventBase], ...] = (
    Birth, Diagnosis, MedicationStart, MedicationDoseChange, MedicationStop, Weight, Height,
    BodyTemperature, Finding, JointExam, Assessment, Lab, MasEpisode, AdverseEvent,
    Discontinuation, EndOfFollowUp, Death,
)  # fmt: skip

Event = Annotated[
    Union[  # noqa: UP007 - a runtime union of the classes above
        Birth,
        Diagnosis,
        MedicationStart,
        MedicationDoseChange,
        MedicationStop,
        Weight,
        Height,
        BodyTemperature,
        Finding,
        JointExam,
        Assessment,
        Lab,
        MasEpisode,
        AdverseEvent,
        Discontinuation,
        EndOfFollowUp,
        Death,
    ],
    Field(discriminator="kind"),
]

# Fields of a model that are no native column of their own: a lab's ``qualifier`` is written
# in its ``value`` (``<5``), as a file writes it (see to_native_row).
MODEL_ONLY = frozenset({"qualifier"})

# Native columns, in file order, with the DuckDB type each is cast to.
COLUMN_TYPES: dict[str, str] = {
    "event_id": "VARCHAR",
    "patient_id": "VARCHAR",
    "kind": "VARCHAR",
    "occurred_at": "VARCHAR",
    "ended_at": "VARCHAR",
    "code": "VARCHAR",
    "value": "DOUBLE",
    "unit": "VARCHAR",
    "ref_low": "DOUBLE",
    "ref_high": "DOUBLE",
    "present": "BOOLEAN",
    "sex": "VARCHAR",
    "drug": "VARCHAR",
    "dose": "DOUBLE",
    "dose_unit": "VARCHAR",
    "route": "VARCHAR",
    "frequency": "VARCHAR",
    "active_joints": "INTEGER",
    "limited_joints": "INTEGER",
    "term": "VARCHAR",
    "grade": "INTEGER",
    "serious": "BOOLEAN",
    "action": "VARCHAR",
    "reason": "VARCHAR",
    "note": "VARCHAR",
}
NATIVE_COLUMNS: tuple[str, ...] = tuple(COLUMN_TYPES)
CORE_COLUMNS = ("patient_id", "kind", "occurred_at")


def kind_name(model: type[EventBase]) -> str:
    annotation = model.model_fields["kind"].annotation
    return str(annotation.__args__[0])  # type: ignore[union-attr]


KINDS: dict[str, type[EventBase]] = {kind_name(m): m for m in EVENT_MODELS}


def kind_fields(kind: str) -> tuple[set[str], set[str]]:
    """(required, allowed) native columns of a kind, beyond the common ones."""
    model = KINDS[kind]
    common = set(EventBase.model_fields) | {"kind"}
    required = {n for n, f in model.model_fields.items() if f.is_required() and n not in common}
    allowed = set(model.model_fields) - common - MODEL_ONLY
    return required, allowed


def to_native_row(event: EventBase) -> dict[str, Any]:
    """The event as a row of native columns (absent fields are None). A censored lab value is
    written as a file writes it, its qualifier before the number (``<5``), so ingest stores
    and hashes it exactly as it does a file's."""
    data = event.model_dump()
    row = {col: data.get(col) for col in NATIVE_COLUMNS}
    qualifier = data.get("qualifier")
    if qualifier is not None:
        row["value"] = f"{qualifier}{data['value']!r}"
    return row


def frequency_codes() -> tuple[str, ...]:
    return tuple(codes.FREQUENCIES)


for _model in EVENT_MODELS:
    for _name in _model.model_fields:
        if _name not in COLUMN_TYPES and _name not in MODEL_ONLY:  # pragma: no cover - guards future kinds
            raise RuntimeError(f"{_model.__name__}.{_name} has no native column type")
