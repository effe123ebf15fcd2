"""`timeline export`: the current timeline in another format (MEDS)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cli.options import StoreOpt, WaitOpt
from cli.output import console, dump_json, esc, working


def export(
    out_dir: Annotated[
        Path, typer.Argument(metavar="OUT_DIR", help="New (or empty) directory to write the dataset to.")
    ],
    fmt: Annotated[
        str,
        typer.Option(
            "--format", metavar="FORMAT", help="Output format: meds (Medical Event Data Standard 0.4)."
        ),
    ],
    as_known_at: Annotated[
        str | None,
        typer.Option(
            "--as-known-at",
            metavar="T",
            help="Export the record as it stood at T (UTC date or ISO date-time), or when sequence "
            "number N was written (seq:N, a manifest's high_water). Default: now.",
        ),
    ] = None,
    shard_rows: Annotated[
        int,
        typer.Option(
            "--shard-rows",
            metavar="N",
            help="At most about N rows per data file; a patient's rows are never split across files.",
        ),
    ] = 1_000_000,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print JSON for scripts instead of a line.")
    ] = False,
) -> None:
    """Write the current timeline as a MEDS dataset: data/*.parquet (subject_id, time, code,
    numeric_value, text_value, event_id, native, event_order) and metadata/ (dataset.json, codes.parquet,
    subject_splits.parquet, subject_ids.parquet mapping subject_id to patient id).

    Corrections are applied and retracted events left out. `timeline ingest OUT_DIR` reads the
    dataset back (same event ids and contents). See docs/meds.md for the codes.

    Example:

    ```
    timeline export --format meds study-meds/
    timeline export --format meds before-fixes/ --as-known-at seq:3470
    ```
    """
    from cli.engine import note_if_before_the_record
    from timeline.errors import UsageError
    from timeline.meds import export_meds
    from timeline.store import Store, manifest

    if fmt.lower() != "meds":
        raise UsageError(f"unknown export format {fmt!r} (use meds)")
    if str(out_dir) == "-":
        raise UsageError("-: a MEDS dataset is a directory; give its path")
    with Store.open(store, wait=wait) as s:
        moment = s.known_at(as_known_at)
        note_if_before_the_record(s, as_known_at, moment)
        with working(f"writing the MEDS dataset to {out_dir}…"):
            result = export_meds(s, out_dir, as_known_at=moment, shard_rows=shard_rows)
        meta = manifest(s, result.high_water, moment)
    if json_out:
        dump_json({"manifest": meta, **result.__dict__})
    else:
        console().print(esc(result.message()))
