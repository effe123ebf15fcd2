"""A store's register of a site's codes: ``timeline codes add FILE`` and what ingest reads.

A site defines its codes in a ``codes.yaml`` (:mod:`timeline.language.sitecodes`): the rules
beside it may name them, and registering the file in a store lets ingest accept their
events, convert each value to the code's unit and check it against the code's range. The
register is append-only, like the events: each registration adds rows (``seq``, when, who,
the file and its SHA-256), and a code's definition is its last row. A registered code keeps
its kind, unit and molar mass for good (its stored values are in that unit); its name, range
and unit factors may be changed by registering it again, for the events ingested after.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from timeline import codes
from timeline.errors import StoreError, UsageError
from timeline.store import CODE_COLUMNS, Store, sql_list, utc_now

TABLE = "codes"
HASHED = [c for c in CODE_COLUMNS if c not in ("prev_hash", "row_hash")]


def row_hash(prev_hash: str, values: Sequence[Any]) -> str:
    """The hash of a register row: SHA-256 of the previous row's hash and the JSON array of
    the row's values (``HASHED`` order; times in ISO form)."""
    text = json.dumps([v.isoformat() if isinstance(v, datetime) else v for v in values])
    return hashlib.sha256((prev_hash + text).encode()).hexdigest()


def broken_links(store: Store) -> tuple[int, list[str]]:
    """(rows, problems) of the register, for ``timeline verify``: a row altered; rows deleted,
    inserted or reordered, or a register from another store (its chain starts at the store's
    own genesis hash); a stored event naming a site code the register does not hold (rows
    deleted from its end, or the register dropped)."""
    present = has_table(store)
    problems = _unregistered(store, present)
    if not present:
        return 0, problems
    cols = ", ".join([*HASHED, "prev_hash", "row_hash"])
    rows = store.con.execute(f"SELECT {cols} FROM {TABLE} ORDER BY seq").fetchall()
    from timeline.integrity import genesis_hash

    prev = genesis_hash(store.con)
    for position, row in enumerate(rows, start=1):
        values, stored_prev, stored = row[: len(HASHED)], row[-2], row[-1]
        seq, code = values[0], values[2]
        if seq != position or stored_prev != prev:
            problems.append(
                f"code register row {seq} ({code}) does not link to the row before it: rows were deleted, inserted or reordered"
            )
        elif row_hash(prev, values) != stored:
            problems.append(f"code register row {seq} ({code}) was altered: it no longer matches its hash")
        prev = stored
    return len(rows), problems


def _unregistered(store: Store, present: bool) -> list[str]:
    """Stored events (every version) naming a code neither built in nor registered (``present``:
    whether the store has a register)."""
    held = f"(SELECT code FROM {TABLE})" if present else "(SELECT NULL::VARCHAR AS code WHERE false)"
    found = store.con.execute(
        f"""SELECT seq, event_id, CASE WHEN frequency IS NOT NULL AND frequency NOT IN {sql_list(codes.FREQUENCIES)}
                                       AND frequency NOT IN {held} THEN 'frequency ' || frequency
                                  ELSE kind || ' code ' || code END
            FROM events
            WHERE (kind = 'lab' AND code NOT IN {sql_list(codes.LABS)} AND code NOT IN {held})
               OR (kind = 'assessment' AND code NOT IN {sql_list(codes.ASSESSMENTS)} AND code NOT IN {held})
               OR (kind = 'finding' AND code NOT IN {sql_list(codes.FINDINGS)} AND code NOT IN {held})
               OR (frequency IS NOT NULL AND frequency NOT IN {sql_list(codes.FREQUENCIES)} AND frequency NOT IN {held})
            ORDER BY seq LIMIT 20"""
    ).fetchall()
    return [
        f"event seq {seq} ({event_id}) names {what}, which the code register does not hold: "
        "register rows were deleted or the register dropped"
        for seq, event_id, what in found
    ]


@dataclass(frozen=True)
class Registered:
    """What a registration did: codes added, changed (name, range, factors) and unchanged."""

    source: str
    added: list[str]
    changed: list[str]
    unchanged: list[str]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def has_table(store: Store) -> bool:
    """Whether the store has a register (its first ``codes add`` creates it); a register that is
    not the table it should be (a view, a column of another type) is a damaged store."""
    kind = store.codes_register()
    if kind is None:
        return False
    columns = store.con.execute(
        """SELECT column_name, data_type FROM duckdb_columns()
           WHERE database_name = current_database() AND schema_name = 'main' AND table_name = ?
           ORDER BY column_index""",
        [TABLE],
    ).fetchall()
    expected = [(name, typ.split()[0]) for name, typ in CODE_COLUMNS.items()]
    if kind != "table" or [(str(n), str(t)) for n, t in columns] != expected:
        raise StoreError(
            f"{store.path} is damaged: its register of codes ({TABLE}) is not the table timeline made "
            f"(found a {kind} with columns {', '.join(f'{n} {t}' for n, t in columns)})"
        )
    return True


def create_table(con: Any) -> None:
    cols = ", ".join(f"{k} {v}" for k, v in CODE_COLUMNS.items())
    con.execute(f"CREATE TABLE {TABLE} ({cols})")


def registered(store: Store, as_known_at: datetime | None = None) -> list[dict[str, Any]]:
    """Every registered code as it stands (its last registration), in code order; with
    ``as_known_at``, as it stood then (registrations recorded at or before it)."""
    if not has_table(store):
        return []
    when = "WHERE recorded_at <= ?" if as_known_at is not None else ""
    cur = store.con.execute(
        f"""SELECT * FROM {TABLE} {when}
            QUALIFY row_number() OVER (PARTITION BY code ORDER BY seq DESC) = 1
            ORDER BY kind, code""",
        [as_known_at] if as_known_at is not None else [],
    )
    names = [d[0] for d in cur.description or []]
    return [dict(zip(names, row, strict=True)) for row in cur.fetchall()]


def widest(store: Store, as_known_at: datetime | None = None) -> list[dict[str, Any]]:
    """The registered codes as :func:`registered` gives them, each with the widest range and
    unit factors it was registered with (up to ``as_known_at``): a store's values were checked
    against the definition of their day, so a narrower later one may refuse values it holds.
    ``current`` holds a narrowed code's current (low, high, factor_low, factor_high)."""
    rows = registered(store, as_known_at)
    if not rows:
        return rows
    when = "WHERE recorded_at <= ?" if as_known_at is not None else ""
    wide = {
        str(r[0]): r[1:]
        for r in store.con.execute(
            f"SELECT code, min(low), max(high), min(factor_low), max(factor_high) FROM {TABLE} {when} GROUP BY code",
            [as_known_at] if as_known_at is not None else [],
        ).fetchall()
    }
    out = []
    for r in rows:
        now = (r["low"], r["high"], r["factor_low"], r["factor_high"])
        widest_ = dict(zip(("low", "high", "factor_low", "factor_high"), wide[r["code"]], strict=True))
        if r["kind"] in ("lab", "assessment") and tuple(widest_.values()) != now:
            r = {**r, **widest_, "current": now}
        out.append(r)
    return out


def site_codes(store: Store, as_known_at: datetime | None = None) -> list[codes.SiteCode]:
    out = []
    for r in registered(store, as_known_at):
        factors = (
            (float(r["factor_low"]), float(r["factor_high"]))
            if r["factor_low"] is not None and r["factor_high"] is not None
            else codes.DEFAULT_FACTORS
        )
        code = codes.Code(
            r["code"],
            r["name"],
            r["unit"],
            r["low"],
            r["high"],
            molar_mass=r["molar_mass"],
            unit_factors=factors,
        )
        out.append(codes.SiteCode(r["kind"], code, f"{r['source_file']}:{r['source_line']}", r["per_day"]))
    return out


def codebook(store: Store, as_known_at: datetime | None = None) -> codes.CodeBook:
    """The codes a store's events may name: the built-in ones and those registered (as they
    stood at ``as_known_at``)."""
    site = site_codes(store, as_known_at)
    return codes.BUILTIN.with_site(site) if site else codes.BUILTIN


def read_file(path: str | Path) -> list[codes.SiteCode]:
    """The codes of a ``codes.yaml``; a file with problems raises :class:`CodesFileError` (exit 8)
    naming every problem's line."""
    from timeline.language.loader import CodesFileError, Problem, _Doc, _read_text
    from timeline.language.sitecodes import read

    target = Path(path)
    problems: list[Problem] = []
    if not target.is_file():
        what = (
            "is a directory: give the codes file" if target.is_dir()
            else "is not a regular file: give the codes file's path" if target.exists()
            else "does not exist"
        )  # fmt: skip
        raise CodesFileError([Problem(str(target), 0, 0, what)])
    text = _read_text(target, problems)
    found: list[codes.SiteCode] = []
    if text is not None:
        found = read(_Doc(str(target), text, problems))
    if problems:
        raise CodesFileError(problems)
    return found


def register(store: Store, path: str | Path, author: str) -> Registered:
    """Register the codes of ``path`` in ``store``: new codes added, codes whose name, range or
    unit factors differ added again (their new definition), the same definitions left. A code
    registered with another kind, unit or molar mass is refused at its line (exit 8); nothing
    is written unless the whole file is accepted."""
    if not author.strip():
        raise UsageError("--author must not be empty")
    target = Path(path)
    found = read_file(target)
    return add(store, found, author, str(target), hashlib.sha256(target.read_bytes()).hexdigest())


def add(store: Store, found: list[codes.SiteCode], author: str, source: str, digest: str) -> Registered:
    """Register ``found`` (read from ``source``, whose SHA-256 is ``digest``): see
    :func:`register`."""
    rows, result = plan(store, found, source)
    if rows:
        with store.transaction() as con:
            write(store, con, rows, author, digest)
    return result


def plan(
    store: Store, found: list[codes.SiteCode], source: str, *, keep_changed: bool = False
) -> tuple[list[codes.SiteCode], Registered]:
    """The codes of ``found`` to register in ``store``, and what registering them does: new
    codes are added; a code whose name, range or unit factors differ is registered again
    (with ``keep_changed``, it keeps the store's definition: counted changed, not registered). A code
    the store holds with another kind, unit or molar mass raises :class:`CodesFileError` at
    its line."""
    from timeline.language.loader import CodesFileError, Problem

    current = {sc.code.code: sc for sc in site_codes(store)}
    problems = []
    added: list[str] = []
    changed: list[str] = []
    unchanged: list[str] = []
    rows: list[codes.SiteCode] = []
    for sc in found:
        before = current.get(sc.code.code)
        if before is not None and not before.same_meaning(sc):
            was, now = before.code, sc.code
            diff = (
                f"kind {before.kind}, not {sc.kind}" if before.kind != sc.kind
                else f"unit {was.unit!r}, not {now.unit!r}" if was.unit != now.unit
                else f"{before.per_day:g} doses a day, not {sc.per_day:g}" if before.per_day != sc.per_day
                else f"molar mass {was.molar_mass}, not {now.molar_mass}"
            )  # fmt: skip
            problems.append(
                Problem(
                    *sc.place(),
                    1,
                    f"code {sc.code.code!r} is registered in {store.path} with {diff} (from {before.source}); "
                    "its stored values were read as registered, so that cannot change: define another code",
                )
            )
            continue
        if before is not None and before.same_definition(sc):
            unchanged.append(sc.code.code)
            continue
        if before is not None and keep_changed:  # counted as changed, but the store's definition stays
            changed.append(sc.code.code)
            continue
        (changed if before is not None else added).append(sc.code.code)
        rows.append(sc)
    if problems:
        raise CodesFileError(problems)
    return rows, Registered(source, added, changed, unchanged)


def write(store: Store, con: Any, rows: list[codes.SiteCode], author: str, digest: str) -> None:
    """Append ``rows`` to the register (creating it), each linked to the row before; the
    caller holds the transaction."""
    from timeline.integrity import genesis_hash

    recorded_at = utc_now()
    if not has_table(store):
        create_table(con)
    top = con.execute(f"SELECT seq, row_hash FROM {TABLE} ORDER BY seq DESC LIMIT 1").fetchone()
    seq, prev = (int(top[0]), str(top[1])) if top else (0, genesis_hash(con))
    values = []
    for sc in rows:
        at_file, at_line = sc.place()
        seq += 1
        c = sc.code
        factors = c.unit_factors if sc.kind in ("lab", "assessment") else (None, None)
        row = (seq, sc.kind, c.code, c.name, c.unit, c.low, c.high, c.molar_mass, *factors, sc.per_day,
               recorded_at, author, at_file, at_line, digest)  # fmt: skip
        prev, last = row_hash(prev, row), prev
        values.append((*row, last, prev))
    marks = ", ".join("?" * len(CODE_COLUMNS))
    con.executemany(f"INSERT INTO {TABLE} VALUES ({marks})", values)


def codes_yaml(rows: Sequence[dict[str, Any]], heading: str) -> str:
    """A ``codes.yaml`` defining the registered codes ``rows`` (as :func:`registered` gives
    them), each under a comment naming who registered it, when and from where, after the
    comment ``heading``. :func:`read_file` reads it back to the same definitions."""

    def text(value: str) -> str:  # a JSON string is a YAML double-quoted scalar
        return json.dumps(value, ensure_ascii=False)

    def number(value: float) -> str:  # repr round-trips; the reader takes 1e-06 as YAML gives it
        return repr(float(value))

    out = [f"# {line}".rstrip() for line in heading.splitlines()]
    for section, kind in (("labs", "lab"), ("assessments", "assessment"), ("findings", "finding"), ("frequencies", "frequency")):  # fmt: skip
        chosen = [r for r in rows if r["kind"] == kind]
        if not chosen:
            continue
        out.append(f"{section}:")
        for r in chosen:
            when = (
                r["recorded_at"].isoformat(timespec="seconds")
                if isinstance(r["recorded_at"], datetime)
                else r["recorded_at"]
            )
            out.append(
                f"  # registered {when} UTC by {r['author']} from {r['source_file']}:{r['source_line']}".replace(
                    "\n", " "
                )
            )
            if r.get("current"):
                lo, hi, flo, fhi = r["current"]
                out.append(
                    f"  # now {number(lo)}–{number(hi)}, unit factors [{number(flo)}, {number(fhi)}]: widest given here"
                )
            code = text(r["code"])
            if kind == "frequency":
                out.append(f"  {code}: {number(r['per_day'] or 0.0)}")
            elif kind == "finding":
                out.append(f"  {code}: {text(r['name'])}")
            else:
                out.append(f"  {code}:")
                out.append(f"    name: {text(r['name'])}")
                out.append(f"    unit: {text(r['unit'])}")
                out.append(f"    low: {number(r['low'])}")
                out.append(f"    high: {number(r['high'])}")
                if r["factor_low"] is not None and r["factor_high"] is not None:
                    out.append(f"    unit_factors: [{number(r['factor_low'])}, {number(r['factor_high'])}]")
                if r["molar_mass"] is not None:
                    out.append(f"    molar_mass: {number(r['molar_mass'])}")
    return "\n".join(out) + "\n"
