"""`timeline synth`: write a synthetic sJIA cohort in the native format, at any scale."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import WaitOpt
from cli.output import console, dump_json, esc


def synth(
    patients: Annotated[
        int | None, typer.Option("--patients", "-n", metavar="N", help="Number of patients to generate.")
    ] = None,
    seed: Annotated[
        int, typer.Option("--seed", metavar="S", help="Random seed: the same N and seed give the same bytes.")
    ] = 1,
    out: Annotated[
        Path | None, typer.Option("--out", "-o", metavar="FILE", help="Output file, .parquet or .csv.")
    ] = None,
    amendments: Annotated[
        Path | None,
        typer.Option(
            "--amendments",
            metavar="FILE",
            help="Also write the cohort's corrections and retractions here (JSON Lines).",
        ),
    ] = None,
    fmt: Annotated[
        str | None,
        typer.Option(
            "--format", metavar="FORMAT", help="parquet or csv (default: from the extension of --out)."
        ),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            metavar="W",
            help="Threads (default: one per core, at most 8); never changes the output.",
        ),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="Overwrite --out and --amendments if they exist.")
    ] = False,
    apply_amendments: Annotated[
        Path | None,
        typer.Option(
            "--apply-amendments",
            metavar="FILE",
            help="Instead of generating: apply an amendments file to --store (after ingesting the events).",
        ),
    ] = None,
    store: Annotated[
        Path | None,
        typer.Option(
            "--store", "-s", metavar="FILE", help="Store for --apply-amendments (default: $TIMELINE_STORE)."
        ),
    ] = None,
    wait: WaitOpt = 0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
) -> None:
    """Generate a synthetic sJIA cohort: about 270 events per patient over 1-6 years of
    follow-up (visits, labs, growth, anakinra and other drugs, flares, MAS, adverse events),
    with mixed units, in the native event format. See docs/synth.md.

    The output is deterministic (same N and seed: same bytes, on any machine and with any
    number of workers) and written in chunks of patients, so memory does not grow with N.
    With --amendments, a JSON Lines file of corrections and retractions is written too; the
    events file carries the erroneous versions. Ingest the events, then apply it with
    --apply-amendments.

    Example:

    ```
    timeline synth -n 10000 --seed 42 --out big.parquet --amendments big.jsonl
    timeline init --store big.duckdb
    timeline ingest big.parquet --store big.duckdb
    timeline synth --apply-amendments big.jsonl --store big.duckdb
    ```
    """
    from timeline.errors import UsageError

    if apply_amendments is not None:
        if patients is not None or out is not None or amendments is not None:
            raise UsageError(
                "--apply-amendments does not generate: leave out --patients, --out and --amendments"
            )
        apply_file(apply_amendments, store, wait, json_out)
        return
    if patients is None or out is None:
        raise UsageError("give --patients N and --out FILE (or --apply-amendments FILE --store STORE)")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1: {workers}")
    from timeline.synth import check_options, synthesize

    paths = [path for path in (out, amendments) if path is not None]
    for path in paths:
        if str(path) == "-":
            raise UsageError("-: synth writes files (Parquet or CSV, and JSON amendments); give a path")
        if path.is_dir():
            raise UsageError(f"{path} is a directory")
    # the options before the files: a bad seed is a bad seed whether or not the file exists
    check_options(patients=patients, seed=seed, out=out, fmt=fmt)
    for path in paths:
        if path.exists() and not force:
            raise UsageError(f"{path} exists: use --force to overwrite it")
    if amendments is not None and amendments.resolve() == out.resolve():
        raise UsageError("--amendments must be another file than --out")

    with _Bar(f"{out.name}: generating", show=patients >= 20_000) as bar:
        result = synthesize(
            patients=patients,
            seed=seed,
            out=out,
            amendments=amendments,
            fmt=fmt,
            workers=workers,
            progress=bar,
        )
    if json_out:
        dump_json(result.__dict__)
    else:
        console().print(esc(result.message()))


def apply_file(path: Path, store: Path | None, wait: float, json_out: bool) -> None:
    """Apply an amendments file to a store and say what was applied (``timeline correct
    --file`` and ``timeline synth --apply-amendments``)."""
    from cli.output import note
    from timeline.store import Store
    from timeline.synth import AmendmentsInterrupted, apply_amendments

    with Store.open(store, write=True, wait=wait) as s, _Bar(f"{path.name}: applying", show=True) as bar:
        try:
            corrected, retracted, skipped = apply_amendments(s, path, progress=bar)
        except AmendmentsInterrupted as exc:  # then "error: interrupted" (or terminated), 130 or 143
            if exc.committing:
                note(
                    f"{path}: stopped as its amendments were committed: all of them may be applied, or none;"
                    " apply the file again to be sure (what is applied already is skipped)"
                )
            else:
                note(f"{path}: stopped before its amendments were committed: none of them is applied")
            raise
        target = s.path
    if json_out:
        dump_json(
            {"store": str(target), "corrections": corrected, "retractions": retracted, "skipped": skipped}
        )
    else:
        console().print(
            f"{esc(target)}: {corrected} corrections and {retracted} retractions applied from {esc(path)}"
            f" ({skipped} already applied)"
        )


class _Bar:
    """A rich progress bar on stderr, only when stderr is a terminal."""

    def __init__(self, label: str, show: bool) -> None:
        self.label = label
        self.show = show
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not (self.show and sys.stderr.isatty()):
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        from cli.output import console as make_console

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(), TimeRemainingColumn(), console=make_console(stderr=True), transient=True,
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task(self.label, total=100)

        def update(pct: float) -> None:
            self.bar.update(task, completed=pct)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()
