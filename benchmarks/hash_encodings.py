"""What the two per-event hashes cost, by encoding of their input, and how their storage
costs the write (issue #5: a cheaper hash scheme for ingest?).

It reads a store's ``events`` (read-only) into memory, builds from it a stand-in for the
ingest's stage (the native columns as ``tl_stage`` types them, times as schema 3 hashes
them), then times, alternating the candidates round by round, the CPU seconds (process
time, DuckDB's threads included) of ``SELECT max(f(row)) FROM …`` for each encoding ``f``
of the row-hash input (43 stored columns) and of the content-hash input (24 native
columns), with and without the SHA-256 over it; and the CPU of writing the 2.7M rows to a
fresh DuckDB file with the two hashes as 64-character hex text (today), as 32-byte BLOBs,
as base64 text, or not at all.

    python -m benchmarks.hash_encodings --store benchmarks/data/suite-10000/store.duckdb --runs 3

Candidates for the hashed bytes (every one injective on the values it is given;
benchmarks/README.md, "Ingest", has the measured figures and the decision):

* ``json``: ``json_array(v1, …, vn)::VARCHAR``, what schemes 2 and 3 hash today;
* ``list``: ``[v1::VARCHAR, …]::VARCHAR``, DuckDB's own quoting of a list of text;
* ``concat``: one ``concat`` of each text value as ``byte length ':' text`` (NULL ``-``)
  and each other value as its text and ``;`` (a DOUBLE's ``-0.0`` written out: DuckDB's
  cast writes it ``0.0``);
* ``sparse``: ``concat_ws(',', null bitmap, …)``: NULLs take no bytes (the bitmap says
  which columns are NULL), a text value is its byte length and its text;
* ``json_esc``: the JSON with ``~`` written ``~0`` and ``null`` written ``~1`` (fewer
  bytes to hash: 2 for a NULL instead of 4).

and, over ``json``, MD5 instead of SHA-256 and the SHA-256 as 32 bytes (``unhex``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from timeline import events as ev
from timeline.store import EVENT_COLUMNS, QUALIFIER

Cols = list[tuple[str, str]]


def _text(col: str, kind: str) -> str:
    if kind == "DOUBLE":  # DuckDB casts -0.0 to '0.0'
        return f"CASE WHEN {col} = 0 AND signbit({col}) THEN '-0.0' ELSE {col}::VARCHAR END"
    return col if kind == "VARCHAR" else f"{col}::VARCHAR"


def enc_json(cols: Cols) -> str:
    return f"json_array({', '.join(c for c, _ in cols)})::VARCHAR"


def enc_list(cols: Cols) -> str:
    return f"[{', '.join(_text(c, t) for c, t in cols)}]::VARCHAR"


def enc_concat(cols: Cols) -> str:
    parts = [
        f"coalesce(strlen({c}) || ':' || {c}, '-')" if t == "VARCHAR" else f"{_text(c, t)}, ';'"
        for c, t in cols
    ]
    return f"concat({', '.join(parts)})"


def enc_sparse(cols: Cols) -> str:
    bitmap = " | ".join(f"(({c} IS NULL)::BIGINT << {i})" for i, (c, _) in enumerate(cols))
    parts = [f"strlen({c})::VARCHAR, {c}" if t == "VARCHAR" else _text(c, t) for c, t in cols]
    return f"concat_ws(',', ({bitmap})::VARCHAR, {', '.join(parts)})"


def enc_json_esc(cols: Cols) -> str:
    return f"replace(replace({enc_json(cols)}, '~', '~0'), 'null', '~1')"


ENCODINGS: dict[str, Callable[[Cols], str]] = {
    "json": enc_json,
    "list": enc_list,
    "concat": enc_concat,
    "sparse": enc_sparse,
    "json_esc": enc_json_esc,
}


def _cpu(con: duckdb.DuckDBPyConnection, sql: str) -> float:
    c0 = time.process_time()
    con.execute(sql).fetchall()
    return time.process_time() - c0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, default=Path("benchmarks/data/suite-10000/store.duckdb"))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-write", action="store_true", help="only the hash expressions")
    args = ap.parse_args(argv)

    con = duckdb.connect()
    con.execute(f"ATTACH '{args.store}' AS s (READ_ONLY)")
    con.execute("CREATE TABLE e AS SELECT * FROM s.events")
    con.execute(
        """CREATE TABLE st AS SELECT event_id, patient_id, kind,
             CASE WHEN occurred_precision = 'day' THEN 'd' ELSE '' END || epoch_us(occurred_at) AS occurred_at,
             CASE WHEN ended_precision = 'day' THEN 'd' ELSE '' END || epoch_us(ended_at) AS ended_at,
             code, orig_value AS value, orig_unit AS unit, orig_ref_low AS ref_low, orig_ref_high AS ref_high,
             present, sex, drug, orig_dose AS dose, orig_dose_unit AS dose_unit, route, frequency,
             active_joints, limited_joints, term, grade, serious, action, reason, note
           FROM e"""
    )
    n = con.execute("SELECT count(*) FROM e").fetchone()
    print(f"{n[0] if n else 0:,} events from {args.store}")
    inputs: dict[str, tuple[str, Cols]] = {
        "row_hash": (
            "e",
            [(c, t.split()[0]) for c, t in EVENT_COLUMNS.items() if c not in ("row_hash", QUALIFIER)],
        ),
        "content_hash": ("st", [(c, ev.COLUMN_TYPES[c]) for c in ev.NATIVE_COLUMNS if c != "event_id"]),
    }
    for what, (table, cols) in inputs.items():
        queries = {"read": f"SELECT {', '.join(f'count({c})' for c, _ in cols)} FROM {table}"}
        for name, f in ENCODINGS.items():
            mean = con.execute(f"SELECT avg(strlen({f(cols)})) FROM {table}").fetchone()
            print(f"{what} {name}: {mean[0] if mean else 0:.0f} bytes an event")
            queries[name] = f"SELECT max(strlen({f(cols)})) FROM {table}"
            queries[f"sha256({name})"] = f"SELECT max(sha256({f(cols)})) FROM {table}"
        queries["md5(json)"] = f"SELECT max(md5({enc_json(cols)})) FROM {table}"
        queries["unhex(sha256(json))"] = f"SELECT max(unhex(sha256({enc_json(cols)}))) FROM {table}"
        times: dict[str, list[float]] = {k: [] for k in queries}
        for _ in range(args.runs):
            for k, q in queries.items():
                times[k].append(_cpu(con, q))
        for k, v in times.items():
            print(
                f"  {what} {k:22} CPU {statistics.median(v):6.2f} s  (runs {', '.join(f'{x:.2f}' for x in v)})"
            )

    if args.skip_write:
        return 0
    others = ", ".join(c for c in EVENT_COLUMNS if c not in ("content_hash", "row_hash"))
    stored = {
        "hex (VARCHAR, today)": "content_hash, row_hash",
        "32-byte BLOB": "unhex(content_hash) AS content_hash, unhex(row_hash) AS row_hash",
        "base64 (VARCHAR)": "to_base64(unhex(content_hash)) AS content_hash, to_base64(unhex(row_hash)) AS row_hash",
        "no hash columns": "NULL::VARCHAR AS content_hash, NULL::VARCHAR AS row_hash",
    }
    for i, sel in enumerate(stored.values()):  # the conversions happen here, not in the timed write
        con.execute(f"CREATE TABLE w_{i} AS SELECT {others}, {sel} FROM e")
    writes: dict[str, list[tuple[float, float]]] = {k: [] for k in stored}
    with tempfile.TemporaryDirectory(prefix="hash-enc-") as tmp:
        for _ in range(args.runs):
            for i, name in enumerate(stored):
                path = Path(tmp) / "w.duckdb"
                path.unlink(missing_ok=True)
                con.execute(f"ATTACH '{path}' AS w")
                c0 = time.process_time()
                con.execute(f"CREATE TABLE w.events AS SELECT * FROM w_{i}")
                con.execute("DETACH w")
                writes[name].append((time.process_time() - c0, os.path.getsize(path) / 2**20))
    for name, w in writes.items():
        cpu = statistics.median(x[0] for x in w)
        print(
            f"  write with {name:22} CPU {cpu:6.2f} s  file {w[0][1]:5.0f} MiB  (runs {', '.join(f'{x[0]:.2f}' for x in w)})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
