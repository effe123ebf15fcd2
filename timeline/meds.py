"""MEDS (Medical Event Data Standard) export and import of the current timeline.

A MEDS dataset is a directory::

    data/0.parquet, data/1.parquet, ...   subject_id, time, code, numeric_value, text_value,
                                          + event_id, native and event_order (extension columns)
    metadata/dataset.json                 MEDS dataset metadata (+ a "timeline" object)
    metadata/codes.parquet                every code with a description and parent codes
    metadata/subject_splits.parquet       every subject in the split "train"
    metadata/subject_ids.parquet          subject_id ↔ patient_id (our ids are text)
    metadata/site_codes.yaml              the site's own codes the store had registered, as a
                                          codes.yaml (only when it had some)

Every event becomes one *primary* row (at ``occurred_at``; its code names the kind, see
docs/meds.md) and, for some kinds, secondary rows (an ``//END`` row at ``ended_at``, a
static ``SEX//…`` row, a ``JOINT_EXAM//limited_joints`` row). ``numeric_value`` holds the
canonical value (float32, as MEDS requires) and ``code`` its canonical unit: that is the
analytic view. The primary row's ``native`` column holds the event exactly as ``timeline
ingest`` reads it (original value and unit, the precision of its times, every field) as a
JSON object, so that ``timeline ingest --format meds DIR`` restores the same current timeline:
same event ids, same contents. The kind is decoded from the primary row's code, the patient
from the subject map.

Export is a handful of DuckDB statements: one pass over the current timeline counts each
patient's rows and assigns the patients to shards, then one ``COPY … TO`` per shard builds
and sorts that shard's rows from its patients' events only, so memory follows the shard size.
A subject's rows stay in one shard, sorted by time (static rows first); a shard holds at most
``shard_rows`` rows plus the rest of the subject that crosses the limit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import duckdb

from timeline import __version__, codes, events, registry
from timeline.errors import IngestError, RowError, UsageError, cannot_write, first_line
from timeline.store import ASSERTED_SEQ, EVENT_COLUMNS, QUALIFIER, Store, _quote, out_of_room, utc_now
from timeline.store import sql_list as _in

MEDS_VERSION = "0.4.1"  # the schema followed: the `meds` package, 0.4.x
DATA_DIR = "data"
DATASET_JSON = "metadata/dataset.json"
CODES_PARQUET = "metadata/codes.parquet"
SPLITS_PARQUET = "metadata/subject_splits.parquet"
SUBJECTS_PARQUET = "metadata/subject_ids.parquet"
SITE_CODES_YAML = "metadata/site_codes.yaml"  # the store's register of a site's codes, if any
DEFAULT_SHARD_ROWS = 1_000_000

# The data columns in file order, with their DuckDB types (Parquet: INT64, TIMESTAMP(us),
# UTF8, FLOAT, UTF8, UTF8, UTF8, INT64).
DATA_COLUMNS: dict[str, str] = {
    "subject_id": "BIGINT",
    "time": "TIMESTAMP",
    "code": "VARCHAR",
    "numeric_value": "FLOAT",
    "text_value": "VARCHAR",
    "event_id": "VARCHAR",
    "native": "VARCHAR",
    "event_order": "BIGINT",
}
# Arrow's schema of the data files, stored in each file's key-value metadata as pyarrow does
# ("ARROW:schema": base64 of the IPC schema message), so that Arrow readers see text_value as
# large_string as meds 0.4 requires (Parquet itself has one string type). Made with pyarrow:
# base64.b64encode(pa.schema([("subject_id", pa.int64(), False), ("time", pa.timestamp("us")),
#   ("code", pa.string(), False), ("numeric_value", pa.float32()), ("text_value", pa.large_string()),
#   ("event_id", pa.string()), ("native", pa.string()), ("event_order", pa.int64())]).serialize().to_pybytes())
ARROW_SCHEMA = (
    "//////ABAAAQAAAAAAAKAAwABgAFAAgACgAAAAABBAAMAAAACAAIAAAABAAIAAAABAAAAAgAAACEAQAAQAEAAAABAADIAAAAmAAAAGgAAAA8"
    "AAAABAAAAOz+//8AAAECEAAAABwAAAAEAAAAAAAAAAsAAABldmVudF9vcmRlcgCc/v//AAAAAUAAAAAg////AAABBRAAAAAYAAAABAAAAAAA"
    "AAAGAAAAbmF0aXZlAABM////SP///wAAAQUQAAAAHAAAAAQAAAAAAAAACAAAAGV2ZW50X2lkAAAAAHj///90////AAABFBAAAAAcAAAABAAA"
    "AAAAAAAKAAAAdGV4dF92YWx1ZQAApP///6D///8AAAEDEAAAACAAAAAEAAAAAAAAAA0AAABudW1lcmljX3ZhbHVlAAAAmv///wAAAQCU////"
    "AAAABRAAAAAcAAAABAAAAAAAAAAEAAAAY29kZQAAAAAEAAQABAAAABAAFAAIAAYABwAMAAAAEAAQAAAAAAABChAAAAAcAAAABAAAAAAAAAAE"
    "AAAAdGltZQAABgAIAAYABgAAAAAAAgAQABQACAAAAAcADAAAABAAEAAAAAAAAAIQAAAAJAAAAAQAAAAAAAAACgAAAHN1YmplY3RfaWQAAAgA"
    "DAAIAAcACAAAAAAAAAFAAAAA"
)
NATIVE_FIELDS = tuple(c for c in events.NATIVE_COLUMNS if c not in ("event_id", "patient_id", "kind"))
_VITALS = tuple(codes.VITALS)
_SPECIAL_KIND_CODES = {"birth": "MEDS_BIRTH", "death": "MEDS_DEATH"}
_INTERVAL_KINDS = ("finding", "mas_episode", "adverse_event")


@dataclass(frozen=True)
class ExportResult:
    out_dir: str
    events: int
    rows: int
    subjects: int
    shards: list[dict[str, Any]] = field(default_factory=list)
    high_water: int = 0
    as_known_at: str | None = None
    seconds: float = 0.0
    site_codes: int = 0  # the site's codes written to metadata/site_codes.yaml

    def message(self) -> str:
        known = f" as known at {self.as_known_at}" if self.as_known_at else ""

        def n(count: int, word: str) -> str:
            return f"{count:,} {word}{'s' if count != 1 else ''}"

        return (
            f"{self.out_dir}: {n(self.events, 'event')} of {n(self.subjects, 'patient')}{known} as "
            f"{n(self.rows, 'MEDS row')} in {n(len(self.shards), 'shard')} (high-water seq {self.high_water})"
            + (f"; {n(self.site_codes, 'site code')} in {SITE_CODES_YAML}" if self.site_codes else "")
        )


# ---- export ------------------------------------------------------------------------------


def _when_text(ts: str, precision: str) -> str:
    """SQL rendering a stored time back as the native text ``timeline correct`` uses."""
    second = f"regexp_replace(strftime({ts}, '%Y-%m-%dT%H:%M:%S.%f'), '\\.000000$', '')"
    return f"""CASE {precision} WHEN 'day' THEN strftime({ts}, '%Y-%m-%d')
        WHEN 'minute' THEN strftime({ts}, '%Y-%m-%dT%H:%M') ELSE {second} END"""


def _native_json() -> str:
    """SQL for the ``native`` JSON object of a stored event ``e`` (absent fields left out)."""
    expr: dict[str, str] = {c: f"e.{c}" for c in NATIVE_FIELDS}
    expr["occurred_at"] = _when_text("e.occurred_at", "e.occurred_precision")
    expr["ended_at"] = _when_text("e.ended_at", "e.ended_precision")
    expr["value"], expr["unit"] = "e.orig_value", "e.orig_unit"
    expr["ref_low"], expr["ref_high"] = "e.orig_ref_low", "e.orig_ref_high"
    expr["dose"], expr["dose_unit"] = "e.orig_dose", "e.orig_dose_unit"
    expr["code"] = f"CASE WHEN e.kind IN {_in(_VITALS)} THEN NULL ELSE e.code END"  # implied by the kind
    # '"name":' || NULL is NULL and concat_ws skips NULLs: absent fields are left out. Numbers
    # and booleans print as JSON as they are (finite: ingest refuses the rest); text is quoted
    # and escaped by to_json. (Twice as fast as to_json of a map of the non-null entries.)
    entries = []
    for c in NATIVE_FIELDS:
        value = (
            f"({expr[c]})::VARCHAR" if events.COLUMN_TYPES[c] != "VARCHAR" else f"to_json({expr[c]})::VARCHAR"
        )
        if c == "value":  # a censored value as a file gives it, text: "<5" (its bound as given)
            value = (
                f"CASE WHEN e.{QUALIFIER} IS NULL THEN {value} "
                f"ELSE to_json(e.{QUALIFIER} || {_number('e.orig_value')})::VARCHAR END"
            )
        entries.append(f"{_quote(chr(34) + c + chr(34) + ':')} || {value}")
    return "'{' || concat_ws(',', " + ", ".join(entries) + ") || '}'"


def _part(text: str) -> str:
    """SQL: a field's text as one part of a ``//``-separated code, escaped so that the code
    splits back into its parts: ``/`` beside another ``/`` or at either end as ``%2F`` (the
    drug ``anakinra//x`` is ``anakinra%2F%2Fx``: ``^MEDICATION_START//anakinra//`` does not
    match it), line breaks and tabs as ``%0A``, ``%0D``, ``%09``, and ``%`` followed by two hex
    digits as ``%25``. Everything else is as stored (``mg/L``, ``%``, ``{score}``);
    :func:`code_parts` undoes it."""
    x = f"regexp_replace({text}, '%([0-9A-Fa-f]{{2}})', '%25\\1', 'g')"
    for char, code in ((10, "%0A"), (13, "%0D"), (9, "%09")):
        x = f"replace({x}, chr({char}), '{code}')"
    x = f"regexp_replace(regexp_replace({x}, '^/', '%2F'), '/$', '%2F')"
    return f"replace({x}, '//', '%2F%2F')"


def code_parts(code: str) -> list[str]:
    """The parts of an exported code, unescaped (see :func:`_part`)."""
    from urllib.parse import unquote

    return [unquote(p) for p in code.split("//")]


def _primary_code() -> str:
    code, drug, dose_unit, unit, term = (
        _part(f"e.{c}") for c in ("code", "drug", "dose_unit", "unit", "term")
    )
    return f"""CASE e.kind
        WHEN 'birth' THEN 'MEDS_BIRTH'
        WHEN 'death' THEN 'MEDS_DEATH'
        WHEN 'diagnosis' THEN 'DIAGNOSIS//' || {code}
        WHEN 'medication_start' THEN 'MEDICATION_START//' || {drug} || '//' || {dose_unit}
        WHEN 'medication_dose_change' THEN 'MEDICATION_DOSE_CHANGE//' || {drug} || '//' || {dose_unit}
        WHEN 'medication_stop' THEN 'MEDICATION_STOP//' || {drug}
        WHEN 'discontinuation' THEN 'DISCONTINUATION//' || {drug}
        WHEN 'lab' THEN 'LAB//' || {code} || '//' || {unit}
        WHEN 'assessment' THEN 'ASSESSMENT//' || {code} || '//' || {unit}
        WHEN 'finding' THEN 'FINDING//' || {code} || '//' || CASE WHEN e.present IS FALSE THEN 'absent' ELSE 'present' END
        WHEN 'joint_exam' THEN 'JOINT_EXAM//active_joints'
        WHEN 'mas_episode' THEN 'MAS_EPISODE//START'
        WHEN 'adverse_event' THEN 'ADVERSE_EVENT//' || {term} || '//grade_' || e.grade
        ELSE CASE WHEN e.kind IN {_in(_VITALS)} THEN upper(e.kind) || '//' || {unit} ELSE upper(e.kind) END
    END"""


def _end_code() -> str:
    return f"""CASE e.kind WHEN 'finding' THEN 'FINDING//' || {_part("e.code")} || '//END'
        WHEN 'mas_episode' THEN 'MAS_EPISODE//END'
        ELSE 'ADVERSE_EVENT//' || {_part("e.term")} || '//END' END"""


def _number(x: str) -> str:
    """SQL: a number as text, a whole one without its ``.0`` (5, 0.5)."""
    return f"regexp_replace(({x})::VARCHAR, '\\.0$', '')"


def _rows_list(qualifier: bool = True) -> str:
    """SQL: the MEDS rows of event ``e`` as a list of structs (part 0 is the primary row).
    A censored lab value (``<5``) has its bound in ``numeric_value`` and the value with its
    qualifier in ``text_value``; ``qualifier=False``: ``e`` has no qualifier column (a store
    made before censored values)."""
    numeric = f"""CASE WHEN e.kind IN {_in(("lab", "assessment", *_VITALS))} THEN e.value
        WHEN e.kind IN ('medication_start', 'medication_dose_change') THEN e.dose
        WHEN e.kind = 'joint_exam' THEN e.active_joints
        WHEN e.kind = 'adverse_event' THEN e.grade END"""
    censored = f"e.{QUALIFIER} || {_number('e.value')}" if qualifier else "NULL"
    text = f"""CASE WHEN e.kind IN ('medication_start', 'medication_dose_change') THEN e.frequency
        WHEN e.kind = 'lab' THEN {censored}
        WHEN e.kind IN ('medication_stop', 'discontinuation', 'end_of_follow_up', 'death') THEN e.reason
        WHEN e.kind = 'adverse_event' THEN e.action END"""

    def row(part: int, when: str, code: str, num: str = "NULL", txt: str = "NULL") -> str:
        return (
            f"{{'part': {part}, 'time': {when}, 'code': {code}, "
            f"'numeric_value': ({num})::DOUBLE, 'text_value': ({txt})::VARCHAR}}"
        )

    items = [
        row(0, "e.occurred_at", _primary_code(), numeric, text),
        f"CASE WHEN e.ended_at IS NOT NULL AND e.kind IN {_in(_INTERVAL_KINDS)} "
        f"THEN {row(1, 'e.ended_at', _end_code())} END",
        f"CASE WHEN e.kind = 'birth' THEN {row(2, 'NULL::TIMESTAMP', chr(39) + 'SEX//' + chr(39) + ' || e.sex')} END",
        "CASE WHEN e.kind = 'joint_exam' AND e.limited_joints IS NOT NULL THEN "
        f"{row(3, 'e.occurred_at', chr(39) + 'JOINT_EXAM//limited_joints' + chr(39), 'e.limited_joints')} END",
    ]
    return f"list_filter([{', '.join(items)}], lambda x: x IS NOT NULL)"


def subject_id_sql(patient: str) -> str:
    """SQL for the subject_id of a patient id: the first 63 bits of its SHA-256, so the same
    patient gets the same subject_id in every export, whatever else the store holds."""
    return f"(('0x' || left(sha256({patient}), 16))::UBIGINT >> 1)::BIGINT"


def export_meds(
    store: Store,
    out_dir: str | os.PathLike[str],
    *,
    as_known_at: datetime | None = None,
    shard_rows: int = DEFAULT_SHARD_ROWS,
) -> ExportResult:
    """Write the current timeline (as known at ``as_known_at``) as a MEDS dataset in
    ``out_dir``, which must not exist or be empty. The directory appears complete or not at all."""
    started = time.perf_counter()
    if shard_rows < 1:
        raise UsageError("--shard-rows must be at least 1")
    target = Path(out_dir)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{target} already exists and is not an empty directory; not overwriting it")
    if not target.parent.exists():
        raise UsageError(f"directory {target.parent} does not exist")
    hw = store.high_water(as_known_at)
    con = store.con
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise cannot_write(target, exc) from exc
    try:
        # mkdtemp makes the directory private; the dataset gets the user's usual permissions
        os.chmod(work, 0o777 & ~_umask())
        (work / DATA_DIR).mkdir()
        (work / "metadata").mkdir()
        # One row per patient: its subject_id, row count and shard (a light pass: only the
        # columns that decide how many rows an event makes are read).
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_meds_subjects AS
            WITH c AS (SELECT e.patient_id, count(*) AS n_events, sum(len({_rows_list()})) AS n_rows
                       FROM ({store.current_sql(hw)}) e GROUP BY e.patient_id),
                 s AS (SELECT *, {subject_id_sql("patient_id")} AS subject_id FROM c)
            SELECT *, (sum(n_rows) OVER (ORDER BY subject_id ROWS UNBOUNDED PRECEDING) - n_rows)
                      // {int(shard_rows)} AS shard
            FROM s"""
        )
        clash = con.execute(
            "SELECT subject_id, string_agg(patient_id, ', ') FROM tl_meds_subjects "
            "GROUP BY subject_id HAVING count(*) > 1 LIMIT 1"
        ).fetchone()
        if clash is not None:  # pragma: no cover - a 63-bit hash collision
            raise UsageError(f"patients {clash[1]} map to the same subject_id {clash[0]}")
        plan = con.execute(
            "SELECT shard, list(patient_id), sum(n_rows) FROM tl_meds_subjects GROUP BY shard ORDER BY shard"
        ).fetchall()
        # Then one COPY per shard, reading only that shard's patients (pruned before the
        # current-version window): memory follows the shard size, not the store's.
        shards: list[dict[str, Any]] = []
        # with asserted_seq: the rows of one instant in the order their events were asserted,
        # which a correction does not change
        columns = [*EVENT_COLUMNS, ASSERTED_SEQ]
        empty = f"SELECT * FROM ({store.current_sql(hw, columns=columns)}) WHERE false"  # an empty store: one empty shard
        for _, patients, n_rows in plan or [(0, [], 0)]:
            name = f"{DATA_DIR}/{len(shards)}.parquet"
            con.execute(
                f"""COPY (
                    SELECT s.subject_id, r.time, r.code, r.numeric_value::FLOAT AS numeric_value,
                           r.text_value, e.event_id,
                           CASE WHEN r.part = 0 THEN e.native::VARCHAR END AS native, e.event_order
                    FROM (SELECT e.patient_id, e.asserted_seq, e.event_id, {_native_json()} AS native,
                                 e.event_order, unnest({_rows_list()}) AS r
                          FROM (SELECT *, row_number() OVER (PARTITION BY patient_id ORDER BY asserted_seq)::BIGINT
                                          AS event_order
                                FROM ({store.current_sql(hw, patients, columns=columns) if patients else empty})) e) e
                    JOIN tl_meds_subjects s USING (patient_id)
                    ORDER BY s.subject_id, r.time NULLS FIRST, e.asserted_seq, r.part)
                TO {_quote(str(work / name))} (FORMAT parquet, COMPRESSION zstd,
                    KV_METADATA {{'ARROW:schema': {_quote(ARROW_SCHEMA)}}})"""
            )
            shards.append({"file": name, "rows": int(n_rows)})
        n_codes = _write_metadata(store, con, work, hw, as_known_at, shards)
        totals = con.execute(
            "SELECT coalesce(sum(n_events), 0), coalesce(sum(n_rows), 0), count(*) FROM tl_meds_subjects"
        ).fetchone()
        assert totals is not None
        if target.exists():
            target.rmdir()
        os.replace(work, target)
    except BaseException as exc:
        shutil.rmtree(work, ignore_errors=True)
        if isinstance(exc, OSError):
            raise cannot_write(target, exc) from exc
        raise
    finally:
        for name in ("tl_meds_subjects", "tl_meds_codes"):
            con.execute(f"DROP TABLE IF EXISTS {name}")
    return ExportResult(
        out_dir=str(target),
        events=int(totals[0]),
        rows=int(totals[1]),
        subjects=int(totals[2]),
        shards=shards,
        high_water=hw,
        as_known_at=as_known_at.isoformat() + "Z" if as_known_at else None,  # UTC
        seconds=time.perf_counter() - started,
        site_codes=n_codes,
    )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _write_metadata(
    store: Store,
    con: duckdb.DuckDBPyConnection,
    work: Path,
    hw: int,
    as_known_at: datetime | None,
    shards: list[dict[str, Any]],
) -> int:
    """Write the metadata files; returns how many site codes ``metadata/site_codes.yaml`` holds."""
    con.execute(
        f"""COPY (SELECT subject_id, patient_id FROM tl_meds_subjects ORDER BY subject_id)
            TO {_quote(str(work / SUBJECTS_PARQUET))} (FORMAT parquet)"""
    )
    con.execute(
        f"""COPY (SELECT subject_id, 'train' AS split FROM tl_meds_subjects ORDER BY subject_id)
            TO {_quote(str(work / SPLITS_PARQUET))} (FORMAT parquet)"""
    )
    data = _quote(str(work / DATA_DIR / "*.parquet"))
    found = [
        str(r[0])
        for r in con.execute(f"SELECT DISTINCT code FROM read_parquet({data}) ORDER BY 1").fetchall()
    ]
    con.execute(
        "CREATE OR REPLACE TEMP TABLE tl_meds_codes (code VARCHAR, description VARCHAR, parent_codes VARCHAR[])"
    )
    if found:
        book = registry.codebook(store, as_known_at)
        con.executemany("INSERT INTO tl_meds_codes VALUES (?, ?, ?)", [describe_code(c, book) for c in found])
    con.execute(f"COPY tl_meds_codes TO {_quote(str(work / CODES_PARQUET))} (FORMAT parquet)")
    register = registry.widest(store, as_known_at)
    if register:
        known = f", as known at {as_known_at.isoformat()}" if as_known_at else ""
        heading = (
            f"The site's own codes registered in {store.path.name} at seq {hw}{known} (timeline export --format meds).\n"
            "`timeline ingest` of this dataset registers those the store lacks; `timeline codes add` reads it too.\n"
            "A code whose range or unit factors were narrowed by a later registration is given the widest it\n"
            "had, so that every exported value is read back (its comment gives the current ones)."
        )
        (work / SITE_CODES_YAML).write_text(registry.codes_yaml(register, heading), encoding="utf-8")
    meta = {
        "dataset_name": store.path.stem,
        "dataset_version": f"seq {hw}",
        "etl_name": "timeline export --format meds",
        "etl_version": __version__,
        "meds_version": MEDS_VERSION,
        "created_at": utc_now().isoformat() + "Z",
        "raw_source_id_columns": ["event_id"],
        "other_extension_columns": ["native", "event_order"],
        "timeline": {
            "store": str(Path(store.path).resolve()),
            "timezone": store.timezone,
            "high_water": hw,
            "head_hash": store.head_hash(hw),
            "as_known_at": as_known_at.isoformat() + "Z" if as_known_at else None,  # UTC, as created_at
            "subject_map": SUBJECTS_PARQUET,
            "site_codes": SITE_CODES_YAML if register else None,
            "shards": shards,
            "time": "wall-clock time in the store's time zone (no offset)",
            "native": "primary row of each event: the native event as JSON; import reads it",
            "event_order": "the event's place among its patient's events in the order the store asserted "
            "them, from 1: at one instant the later asserted is the current value; import keeps the order",
        },
    }
    (work / DATASET_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return len(register)


def describe_code(code: str, book: codes.CodeBook = codes.BUILTIN) -> tuple[str, str, list[str]]:
    """(code, description, parent codes) for metadata/codes.parquet."""
    parts = code_parts(code)
    head = parts[0]
    parents: list[str] = []
    text = code
    if head == "LAB" and len(parts) >= 3:
        lab = book.labs.get(parts[1])
        text = f"{lab.name if lab else 'lab'} (LOINC {parts[1]}) in {parts[2]}"
        parents = [f"LOINC/{parts[1]}"]
    elif head.lower() in codes.VITALS:
        vital = codes.VITALS[head.lower()]
        text = f"{vital.name} (LOINC {vital.code}) in {parts[-1]}"
        parents = [f"LOINC/{vital.code}"]
    elif head == "ASSESSMENT" and len(parts) >= 3:
        a = book.assessments.get(parts[1])
        text = f"{a.name if a else parts[1]} in {parts[2]}"
    elif head == "FINDING" and len(parts) >= 3:
        name = book.findings.get(parts[1], parts[1])
        text = f"{name}: {'end' if parts[2] == 'END' else parts[2]}"
    elif head in ("MEDICATION_START", "MEDICATION_DOSE_CHANGE") and len(parts) >= 3:
        what = "first dose" if head == "MEDICATION_START" else "dose change"
        text = f"{parts[1]}: {what}, dose in {parts[2]} (numeric_value)"
    elif head in ("MEDICATION_STOP", "DISCONTINUATION") and len(parts) >= 2:
        text = f"{parts[1]}: {'last dose' if head == 'MEDICATION_STOP' else 'discontinued'} (reason in text_value)"
    elif head == "ADVERSE_EVENT" and len(parts) >= 3:
        text = f"adverse event {parts[1]}: " + (
            "end" if parts[2] == "END" else f"CTCAE {parts[2].replace('_', ' ')}"
        )
    elif head == "MAS_EPISODE":
        text = f"macrophage activation syndrome episode {parts[-1].lower()}"
    elif head == "JOINT_EXAM":
        text = f"joint examination: {parts[-1].replace('_', ' ')} (numeric_value)"
    elif head == "DIAGNOSIS" and len(parts) >= 2:
        text = f"diagnosis {parts[1]} (onset)"
    elif head == "SEX":
        text = f"sex {parts[-1]} (static)"
    elif head == "MEDS_BIRTH":
        text = "birth"
    elif head == "MEDS_DEATH":
        text = "death"
    elif head == "END_OF_FOLLOW_UP":
        text = "end of follow-up (reason in text_value)"
    return code, text, parents


# ---- import ------------------------------------------------------------------------------


def is_meds_dir(path: Path) -> bool:
    """Whether ``path`` looks like a MEDS dataset (a directory with ``data/``)."""
    return path.is_dir() and (path / DATA_DIR).is_dir()


def data_files(path: Path) -> list[Path]:
    return sorted((path / DATA_DIR).rglob("*.parquet"), key=lambda p: p.relative_to(path).as_posix())


def zone_note(store: Store, path: Path) -> str | None:
    """A note when the dataset's times were written in another time zone than the store's
    (``dataset.json``'s ``timeline.timezone``): its wall-clock times are stored as written,
    so an instant the two zones tell apart (an offset given later, a DST change) reads
    differently than at the source."""
    try:
        meta = json.loads((path / DATASET_JSON).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None  # a dataset from elsewhere, without ours: nothing to compare
    zone = meta.get("timeline", {}).get("timezone") if isinstance(meta, dict) else None
    if not isinstance(zone, str) or zone == store.timezone:
        return None
    return (
        f"{path.name}'s times are wall-clock times in {zone} (its dataset.json); this store's time "
        f"zone is {store.timezone}: they are stored as written. Ingest into a store made with "
        f"`timeline init --timezone {zone}` to keep the source's instants (docs/meds.md)"
    )


def dataset_digest(path: Path) -> str:
    """SHA-256 over the data files, the subject map and the site's codes (names and contents),
    in name order."""
    h = hashlib.sha256()
    for file in [*data_files(path), path / SUBJECTS_PARQUET, path / SITE_CODES_YAML]:
        if not file.is_file():  # missing; or not a file, which its reader reports
            continue
        h.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                h.update(chunk)
    return h.hexdigest()


def site_codes_to_register(store: Store, source: Path) -> tuple[list[codes.SiteCode], str, list[str]]:
    """The codes of the dataset's ``metadata/site_codes.yaml`` that ``store`` lacks, the file's
    SHA-256 and the codes the store keeps in a definition of its own (none, "" and none without
    the file). A code the store holds keeps the store's
    definition; one it holds with another kind, unit or molar mass, and a file with problems,
    reject the dataset naming the file and line."""
    from timeline.language.loader import CodesFileError

    path = source / SITE_CODES_YAML
    if not path.exists():
        return [], "", []
    try:
        found = registry.read_file(path)
        rows, planned = registry.plan(store, found, str(path), keep_changed=True)
    except CodesFileError as exc:
        raise IngestError(
            str(source),
            [
                RowError(None, None, f"{SITE_CODES_YAML}{f' line {p.line}' if p.line else ''}: {p.message}")
                for p in exc.problems
            ],
        ) from None
    return rows, hashlib.sha256(path.read_bytes()).hexdigest(), planned.changed


def _fail(
    source: Path, reason: str, row: int | None = None, field: str | None = None, file: str | None = None
) -> IngestError:
    return IngestError(str(source), [RowError(row, field, reason, file=file)])


_INTEGERS = (
    "BIGINT",
    "INTEGER",
    "SMALLINT",
    "TINYINT",
    "HUGEINT",
    "UBIGINT",
    "UINTEGER",
    "USMALLINT",
    "UTINYINT",
)
_TEXT = ("VARCHAR", "JSON")
# The columns ingest reads, the DuckDB types it accepts for each and how the message names them.
_READ_COLUMNS: dict[str, tuple[tuple[str, ...], str]] = {
    "subject_id": (_INTEGERS, "BIGINT (int64)"),
    # MEDS: timestamp[us] without a time zone; a date, a text or a time with a zone is not one
    "time": (
        ("TIMESTAMP", "TIMESTAMP_NS", "TIMESTAMP_MS", "TIMESTAMP_S"),
        "TIMESTAMP (timestamp[us], no time zone)",
    ),
    "code": (("VARCHAR",), "VARCHAR (string)"),
    "event_id": (_TEXT, "VARCHAR (string)"),
    "native": (_TEXT, "VARCHAR (string: a JSON object)"),
}
_MAX_REPORTED = 1000  # as timeline.ingest.MAX_REPORTED


def _file_types(
    con: duckdb.DuckDBPyConnection, files: list[Path], source: Path
) -> dict[Path, dict[str, str]]:
    """Each data file's columns and their DuckDB types (its footer only)."""
    found: dict[Path, dict[str, str]] = {}
    problems: list[RowError] = []
    for f in files:
        try:
            described = con.execute(f"DESCRIBE SELECT * FROM read_parquet({_quote(str(f))})").fetchall()
        except duckdb.Error as exc:
            name = f.relative_to(source).as_posix()
            problems.append(RowError(None, None, f"not readable as Parquet: {first_line(exc)}", file=name))
            continue
        found[f] = {str(r[0]): str(r[1]) for r in described}
    if problems:
        raise IngestError(str(source), problems)
    return found


def _damaged(con: duckdb.DuckDBPyConnection, files: list[Path], source: Path) -> None:
    """After reading the data files failed: reject the dataset naming the first file that
    cannot be read to the end (only its footer was read before; a damaged page fails only
    when read). Reads every value again, so it runs only once something has failed."""
    for f in files:
        try:
            con.execute(f"SELECT sum(hash(COLUMNS(*))) FROM read_parquet({_quote(str(f))})").fetchall()
        except duckdb.Error as exc:
            if out_of_room(exc):
                return
            name = f.relative_to(source).as_posix()
            raise _fail(source, f"not readable as Parquet: {first_line(exc)}", file=name) from exc


def _column_problems(types: dict[Path, dict[str, str]], source: Path) -> list[RowError]:
    """Missing columns and columns of the wrong type, each named with its data file (a column
    no file has, once for the dataset)."""
    problems: list[RowError] = []
    for name, (allowed, wanted) in _READ_COLUMNS.items():
        lacking = [f for f, cols in types.items() if name not in cols]
        if len(lacking) == len(types):
            hint = (
                " (only MEDS data exported by `timeline export --format meds` can be ingested: it keeps "
                "each event's id and native record beside the MEDS columns)"
                if name in ("event_id", "native")
                else ""
            )
            problems.append(RowError(None, name, f"required MEDS column is missing{hint}"))
            continue
        for f in lacking:
            problems.append(
                RowError(
                    None,
                    name,
                    "required MEDS column is missing (other data files have it)",
                    file=f.relative_to(source).as_posix(),
                )
            )
        for f, cols in types.items():
            if name in cols and cols[name] not in allowed:
                problems.append(
                    RowError(
                        None,
                        name,
                        f"must be {wanted}, not {cols[name]}",
                        file=f.relative_to(source).as_posix(),
                    )
                )
    for f, cols in types.items():  # event_order may be missing (an older export): file order
        if "event_order" in cols and cols["event_order"] not in _INTEGERS:
            problems.append(
                RowError(
                    None,
                    "event_order",
                    f"must be BIGINT (int64), not {cols['event_order']}",
                    file=f.relative_to(source).as_posix(),
                )
            )
    return problems


def dataset_metadata(source: Path) -> dict[str, Any] | None:
    """``metadata/dataset.json`` as a dict; None when there is none. One that is not a JSON
    object rejects the dataset: the checks it allows would be skipped."""
    path = source / DATASET_JSON
    if not path.exists():
        return None
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise _fail(source, f"{DATASET_JSON} is not readable as JSON: {first_line(exc)}") from exc
    if not isinstance(meta, dict):
        raise _fail(source, f"{DATASET_JSON} is not a JSON object")
    return meta


def listed_shards(meta: dict[str, Any] | None) -> dict[str, int] | None:
    """The data files and row counts an export recorded in ``dataset.json``
    (``timeline.shards``); None for a dataset from elsewhere, which records none."""
    shards = (
        (meta or {}).get("timeline", {}).get("shards")
        if isinstance((meta or {}).get("timeline"), dict)
        else None
    )
    if not isinstance(shards, list):
        return None
    listed: dict[str, int] = {}
    for s in shards:
        if isinstance(s, dict) and isinstance(s.get("file"), str) and isinstance(s.get("rows"), int):
            listed[s["file"]] = s["rows"]
    return listed


def _shard_problems(con: duckdb.DuckDBPyConnection, listed: dict[str, int]) -> list[RowError]:
    """The data files and row counts against those ``dataset.json`` lists."""
    present = {str(r[0]): int(r[1]) for r in con.execute("SELECT file, n FROM tl_meds_files").fetchall()}
    problems: list[RowError] = []
    for name, rows in listed.items():
        if name not in present:
            problems.append(
                RowError(None, None, f"is missing: {DATASET_JSON} lists it with {rows:,} rows", file=name)
            )
        elif present[name] != rows:
            problems.append(
                RowError(
                    None,
                    None,
                    f"has {present[name]:,} rows; {DATASET_JSON} lists it with {rows:,}",
                    file=name,
                )
            )
    for name in present:
        if name not in listed:
            problems.append(
                RowError(
                    None,
                    None,
                    f"is not listed in {DATASET_JSON} (it lists {len(listed)} data file{'s' if len(listed) != 1 else ''})",
                    file=name,
                )
            )
    return problems


def load_raw(con: duckdb.DuckDBPyConnection, source: Path) -> list[str]:
    """Build ingest's raw table ``tl_raw`` (native columns as text, ``__row``) from a MEDS
    dataset written by :func:`export_meds`; returns notes on what it did not read. Rows are
    numbered from 1 across the data files in name order; :func:`locate` turns those numbers
    back into file and row.

    A dataset whose ``dataset.json`` lists its data files (an export's) must be whole: every
    file listed, with its row count, every row a row of an event whose primary row (with
    ``native``) is there, every subject of the subject map with rows."""
    files = data_files(source)
    if not files:
        raise _fail(source, f"no MEDS data files: expected {DATA_DIR}/*.parquet")
    types = _file_types(con, files, source)
    problems = _column_problems(types, source)
    subjects = source / SUBJECTS_PARQUET
    if not subjects.exists():
        problems.append(
            RowError(None, None, f"{SUBJECTS_PARQUET} is missing: it maps each subject_id to a patient id")
        )
    if problems:
        raise IngestError(str(source), problems)
    listed = listed_shards(dataset_metadata(source))
    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_meds_map AS
            SELECT subject_id::BIGINT AS subject_id, patient_id::VARCHAR AS patient_id
            FROM read_parquet({_quote(str(subjects))})"""
        )
    except duckdb.Error as exc:
        raise _fail(
            source,
            f"{SUBJECTS_PARQUET} must have columns subject_id (integer) and patient_id (text): "
            f"{str(exc).splitlines()[0]}",
        ) from exc
    dup = con.execute(
        """SELECT 'subject_id ' || subject_id || ' appears more than once' FROM tl_meds_map
           GROUP BY subject_id HAVING count(*) > 1
           UNION ALL SELECT 'patient id ' || chr(39) || patient_id || chr(39) || ' appears more than once'
           FROM tl_meds_map GROUP BY patient_id HAVING count(*) > 1
           UNION ALL SELECT 'a row has no subject_id or no patient_id' FROM tl_meds_map
           WHERE subject_id IS NULL OR patient_id IS NULL
           LIMIT 10"""
    ).fetchall()
    if dup:
        raise IngestError(str(source), [RowError(None, None, f"{SUBJECTS_PARQUET}: {r[0]}") for r in dup])

    # Row numbers across the files: each file's rows follow the previous files' rows.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE tl_meds_files (idx INTEGER, file VARCHAR, path VARCHAR, n BIGINT, first BIGINT)"
    )
    offset = 0
    for i, f in enumerate(files):
        row = con.execute(f"SELECT count(*) FROM read_parquet({_quote(str(f))})").fetchone()
        n = int(row[0]) if row else 0
        con.execute(
            "INSERT INTO tl_meds_files VALUES (?, ?, ?, ?, ?)",
            [i, f.relative_to(source).as_posix(), str(f), n, offset],
        )
        offset += n
    if listed is not None and (problems := _shard_problems(con, listed)):
        raise IngestError(str(source), problems)
    data = (
        f"read_parquet([{', '.join(_quote(str(f)) for f in files)}], filename = true, "
        "file_row_number = true, union_by_name = true) d JOIN tl_meds_files fl ON fl.path = d.filename"
    )

    def optional(name: str, sql_type: str) -> str:  # a MEDS column ingest does not need
        present = any(name in cols for cols in types.values())
        return f"{f'TRY_CAST(d.{name} AS {sql_type})' if present else 'NULL'}::{sql_type} AS {name}"

    try:
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_meds_primary AS
            SELECT fl.first + d.file_row_number + 1 AS __g, fl.idx AS file_idx,
                   {optional("event_order", "BIGINT")},
                   d.file_row_number + 1 AS file_row, d.subject_id::BIGINT AS subject_id,
                   d.code, d.event_id::VARCHAR AS event_id, d.native::VARCHAR AS native, m.patient_id,
                   d.time::TIMESTAMP AS time, {optional("numeric_value", "FLOAT")}, {optional("text_value", "VARCHAR")},
                   CASE WHEN json_valid(d.native::VARCHAR) THEN json_type(d.native::VARCHAR) = 'OBJECT'
                        ELSE false END AS is_object
            FROM {data}
            LEFT JOIN tl_meds_map m ON m.subject_id = d.subject_id::BIGINT
            WHERE d.native IS NOT NULL"""
        )
    except duckdb.Error:
        _damaged(con, files, source)
        raise
    # The batch's order (its seqs): a patient's events in the order the source store asserted
    # them (event_order), which decides between two values of one instant; without it, file order.
    order = (
        "subject_id, event_order NULLS LAST, __g"
        if any("event_order" in c for c in types.values())
        else "__g"
    )
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE tl_meds_primary AS SELECT *, row_number() OVER (ORDER BY {order}) AS __row "
        "FROM tl_meds_primary"
    )
    kinds = ", ".join(f"({_quote(_SPECIAL_KIND_CODES.get(k, k.upper()))}, {_quote(k)})" for k in events.KINDS)
    con.execute("CREATE OR REPLACE TEMP TABLE tl_meds_kinds (prefix VARCHAR, kind VARCHAR)")
    con.execute(f"INSERT INTO tl_meds_kinds VALUES {kinds}")
    allowed = ", ".join(_quote(c) for c in NATIVE_FIELDS)
    # Identical problems (a subject missing from the map, on each of its rows) are one line:
    # the first row, with how many more rows have it.
    errors = con.execute(
        f"""WITH e AS (
            SELECT __g AS __row, 'subject_id' AS field,
                   'subject_id ' || subject_id || ' is not in {SUBJECTS_PARQUET}' AS reason
            FROM tl_meds_primary WHERE patient_id IS NULL AND subject_id IS NOT NULL
            UNION ALL SELECT __g AS __row, 'subject_id', 'missing value' FROM tl_meds_primary WHERE subject_id IS NULL
            UNION ALL SELECT __g AS __row, 'event_id', 'missing value: a primary row (one with a native record) '
                   || 'is an event and must carry its event id' FROM tl_meds_primary WHERE event_id IS NULL
            UNION ALL SELECT __g AS __row, 'code', 'missing value' FROM tl_meds_primary WHERE code IS NULL
            UNION ALL SELECT p.__g AS __row, 'code', 'code ' || chr(39) || p.code || chr(39)
                   || ' does not name a timeline event kind (e.g. LAB//, FINDING//, MEDS_BIRTH)'
            FROM tl_meds_primary p LEFT JOIN tl_meds_kinds k ON k.prefix = split_part(p.code, '//', 1)
            WHERE p.code IS NOT NULL AND k.kind IS NULL
            UNION ALL SELECT __g AS __row, 'native', 'not a JSON object: ' || left(native, 60)
            FROM tl_meds_primary WHERE NOT is_object
            UNION ALL SELECT __row, 'native', 'field ' || chr(39) || k || chr(39)
                   || ' given more than once in the object' FROM (
                SELECT __g AS __row, unnest(json_keys(native)) AS k FROM tl_meds_primary
                WHERE is_object AND len(json_keys(native)) <> len(list_distinct(json_keys(native))))
            GROUP BY __row, k HAVING count(*) > 1
            UNION ALL SELECT __row, 'native', 'unknown field ' || chr(39) || k || chr(39) FROM (
                SELECT __g AS __row, unnest(json_keys(CASE WHEN is_object THEN native ELSE '{{}}' END)) AS k
                FROM tl_meds_primary) WHERE k NOT IN ({allowed})),
        g AS (SELECT min(__row) AS __row, field, reason, count(*) AS n FROM e GROUP BY field, reason)
        SELECT fl.file, g.__row - fl.first, g.field, g.reason, g.n, count(*) OVER ()
        FROM g JOIN tl_meds_files fl ON g.__row > fl.first AND g.__row <= fl.first + fl.n
        ORDER BY g.__row, g.field, g.reason LIMIT {_MAX_REPORTED}"""
    ).fetchall()
    if errors:
        raise IngestError(
            str(source),
            [
                RowError(
                    int(r),
                    f,
                    str(m) + (f" (and {n - 1:,} more row{'s' if n > 2 else ''})" if n > 1 else ""),
                    file=file,
                )
                for file, r, f, m, n, _ in errors
            ],
            int(errors[0][5]),
        )
    n_primary = con.execute("SELECT count(*) FROM tl_meds_primary").fetchone()
    if (n_primary is None or n_primary[0] == 0) and offset > 0:
        # rows, none of them timeline's: a dataset from elsewhere. A dataset without rows (a
        # store's export before its first event) is read as a CSV file of headers only is
        # read: nothing to add, though its site codes are registered
        raise _fail(source, "no events: no data row carries a native record")
    notes = _unread_rows(con, data, source, whole=listed is not None)
    cols = ", ".join(f"json_extract_string(p.native, {_quote('$.' + c)}) AS {c}" for c in NATIVE_FIELDS)
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE tl_raw AS
        SELECT p.__row, p.event_id, p.patient_id, k.kind, {cols}
        FROM tl_meds_primary p JOIN tl_meds_kinds k ON k.prefix = split_part(p.code, '//', 1)"""
    )
    con.execute(
        """CREATE OR REPLACE TEMP TABLE tl_meds_where AS
        SELECT __row, file_idx, file_row, event_id, time, code, numeric_value, text_value FROM tl_meds_primary"""
    )
    con.execute("DROP TABLE tl_meds_primary")
    return notes


def _unread_rows(con: duckdb.DuckDBPyConnection, data: str, source: Path, *, whole: bool) -> list[str]:
    """Rows ingest cannot read back: without a native record and not a row of an event whose
    primary row is in the dataset (an event id without its primary row; no event id), and
    subjects of the map without rows. In an export (``whole``: its dataset.json lists its
    files) they are events, or patients, missing: the dataset is refused, naming them. In a
    dataset from elsewhere, a note says what is skipped."""
    found = con.execute(
        f"""SELECT fl.file, count(*), count(d.event_id), count(DISTINCT d.event_id),
                   min(d.file_row_number) + 1, arg_min(d.event_id, d.file_row_number),
                   arg_min(d.code, d.file_row_number),
                   count(*) FILTER (WHERE d.event_id IS NULL),
                   min(d.file_row_number) FILTER (WHERE d.event_id IS NULL) + 1,
                   arg_min(d.code, d.file_row_number) FILTER (WHERE d.event_id IS NULL)
            FROM {data}
            WHERE d.native IS NULL AND (d.event_id IS NULL OR d.event_id::VARCHAR NOT IN
                  (SELECT event_id FROM tl_meds_primary WHERE event_id IS NOT NULL))
            GROUP BY fl.idx, fl.file ORDER BY fl.idx"""
    ).fetchall()
    missing = con.execute(
        f"""SELECT count(*), string_agg(chr(39) || patient_id || chr(39), ', ' ORDER BY patient_id) FILTER (WHERE rn <= 5)
            FROM (SELECT patient_id, row_number() OVER (ORDER BY patient_id) AS rn FROM tl_meds_map
                  WHERE subject_id NOT IN (SELECT DISTINCT d.subject_id::BIGINT FROM {data}
                                           WHERE d.subject_id IS NOT NULL))"""
    ).fetchone()
    problems: list[RowError] = []
    notes: list[str] = []
    if missing is not None and missing[0]:
        problems.append(
            RowError(
                None,
                None,
                f"{missing[0]:,} subject{'s' if missing[0] != 1 else ''} of {SUBJECTS_PARQUET} "
                f"{'have' if missing[0] != 1 else 'has'} no rows in {DATA_DIR}/ (patient "
                f"{missing[1]}{', …' if missing[0] > 5 else ''}): a data file is missing or incomplete",
            )
        )
    if found and not whole:
        n = sum(int(r[1]) for r in found)
        codes_seen = con.execute(
            f"""SELECT count(*) FILTER (WHERE k.kind IS NULL), count(*) FILTER (WHERE m.patient_id IS NULL),
                       count(*) FILTER (WHERE d.event_id IS NULL)
                FROM {data} LEFT JOIN tl_meds_kinds k ON k.prefix = split_part(d.code, '//', 1)
                LEFT JOIN tl_meds_map m ON m.subject_id = d.subject_id::BIGINT
                WHERE d.native IS NULL AND (d.event_id IS NULL OR d.event_id::VARCHAR NOT IN
                      (SELECT event_id FROM tl_meds_primary WHERE event_id IS NOT NULL))"""
        ).fetchone()
        unknown, unmapped, no_id = (int(c) for c in codes_seen or (0, 0, 0))
        first = found[0]
        notes.append(
            f"{source.name}: {n:,} row{'s' if n != 1 else ''} skipped: without a native record, and no "
            f"primary row in the dataset shares {'their' if n != 1 else 'its'} event id ({no_id:,} without an "
            f"event id; {unknown:,} with a code that names no timeline event kind; {unmapped:,} of subjects "
            f"not in {SUBJECTS_PARQUET}); the first is {first[0]} row {first[4]} ({first[6]}). Its "
            f"{DATASET_JSON} lists no data files, so it is read as a dataset from elsewhere (docs/meds.md)"
        )
    for file, _n, n_with_id, n_events, first, first_id, first_code, n_no_id, first_no_id, code_no_id in found:
        if not whole:
            continue
        if n_with_id:
            problems.append(
                RowError(
                    int(first),
                    "native",
                    f"{n_with_id:,} row{'s' if n_with_id != 1 else ''} of {n_events:,} event"
                    f"{'s' if n_events != 1 else ''} without {'their' if n_events != 1 else 'its'} primary row "
                    f"(the row with the native record) in the dataset, from event {first_id!r} "
                    f"({first_code}): the events cannot be read back",
                    file=file,
                )
            )
        if n_no_id:
            problems.append(
                RowError(
                    int(first_no_id),
                    "event_id",
                    f"{n_no_id:,} row{'s' if n_no_id != 1 else ''} without an event id or a native record, "
                    f"from code {code_no_id!r}: {'they belong' if n_no_id != 1 else 'it belongs'} to no event",
                    file=file,
                )
            )
    if problems:
        raise IngestError(str(source), problems)
    return notes


def locate(con: duckdb.DuckDBPyConnection, exc: IngestError) -> IngestError:
    """Each error's data file and its row in that file, in place of the dataset-wide row
    number ``__row`` the checks of ingest give."""
    rows = sorted({e.row for e in exc.errors if e.row is not None and e.file is None})
    if not rows:
        return exc
    try:
        where = {
            int(r): (str(f), int(n))
            for r, f, n in con.execute(
                f"""SELECT w.__row, fl.file, w.file_row FROM tl_meds_where w
                    JOIN tl_meds_files fl ON fl.idx = w.file_idx
                    WHERE w.__row IN ({", ".join(str(int(r)) for r in rows)})"""
            ).fetchall()
        }
    except duckdb.Error:
        return exc
    located = [
        dataclasses.replace(e, row=where[e.row][1], file=where[e.row][0])
        if e.row is not None and e.file is None and e.row in where
        else e
        for e in exc.errors
    ]
    return IngestError(exc.source, located, exc.total)


def disagreement_note(store: Store, source: Path, batch_id: int) -> str | None:
    """A note when the MEDS columns of the primary rows of the events a batch added (time,
    code, numeric_value, text_value) are not what the export of those events writes: ingest
    reads the native record, so an edit of the MEDS columns alone is not read."""
    con = store.con
    row = con.execute(
        f"""WITH e AS (
                SELECT e.event_id, e.r.time AS time, e.r.code AS code,
                       e.r.numeric_value::FLOAT AS numeric_value, e.r.text_value AS text_value
                FROM (SELECT e.event_id, unnest({_rows_list(store.has_qualifier)}) AS r FROM events e
                      WHERE e.batch_id = ? AND e.op = 'assert') e
                WHERE e.r.part = 0),
            d AS (SELECT w.__row, fl.file, w.file_row,
                         w.time IS DISTINCT FROM e.time AS t, w.code IS DISTINCT FROM e.code AS c,
                         w.numeric_value IS DISTINCT FROM e.numeric_value AS v,
                         w.text_value IS DISTINCT FROM e.text_value AS x
                  FROM tl_meds_where w JOIN e USING (event_id) JOIN tl_meds_files fl ON fl.idx = w.file_idx)
            SELECT count(*) FILTER (WHERE t OR c OR v OR x), count(*) FILTER (WHERE t), count(*) FILTER (WHERE c),
                   count(*) FILTER (WHERE v), count(*) FILTER (WHERE x),
                   arg_min(file || ' row ' || file_row, __row) FILTER (WHERE t OR c OR v OR x)
            FROM d""",
        [batch_id],
    ).fetchone()
    if row is None or not row[0]:
        return None
    n, t, c, v, x, first = row
    which = ", ".join(
        f"{name} on {k:,}"
        for name, k in (("time", t), ("code", c), ("numeric_value", v), ("text_value", x))
        if k
    )
    return (
        f"{source.name}: {n:,} primary row{'s' if n != 1 else ''} of the events added disagree{'s' if n == 1 else ''} "
        f"with {'their' if n != 1 else 'its'} native record ({which}; the first is {first}): ingest reads "
        "`native`, which is authoritative; the MEDS columns are the analytic view written from it (docs/meds.md)"
    )


def drop_temps(con: duckdb.DuckDBPyConnection) -> None:
    for name in ("tl_meds_map", "tl_meds_files", "tl_meds_primary", "tl_meds_kinds", "tl_meds_where"):
        con.execute(f"DROP TABLE IF EXISTS {name}")
