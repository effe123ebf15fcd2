"""Command-line options shared by every command (one definition, one help text)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        "-s",
        help="Store file. Default: $TIMELINE_STORE, else ./timeline.duckdb.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


def _seconds(value: float) -> float:
    import math

    if not math.isfinite(value) or value < 0:
        raise typer.BadParameter(f"{value} is not a number of seconds (0 or more)")
    return value


WaitOpt = Annotated[
    float,
    typer.Option(
        "--wait",
        metavar="SECONDS",
        help="If another process writes to the store, retry this long.",
        callback=_seconds,
    ),
]
AsKnownOpt = Annotated[
    str | None,
    typer.Option(
        "--as-known-at",
        metavar="T",
        help="Show the record as it stood at this moment (UTC date or ISO date-time). Default: now.",
    ),
]
