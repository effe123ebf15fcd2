"""`timeline codes`: a site's own codes (labs, assessments, findings), registered in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from cli.options import Command, Group, JsonOpt, StoreOpt, WaitOpt
from cli.output import cell, console, dump_json, esc

codes_app = typer.Typer(
    cls=Group,
    help="A site's own codes (codes.yaml): register them in the store, list what it knows.",
    epilog=(
        "Example:\n\n```\ntimeline codes add examples/site_rules/codes.yaml --author 'Dr. Ruiz'\n"
        "timeline codes list\n```"
    ),
    no_args_is_help=True,
)


@codes_app.command("add", cls=Command)
def codes_add(
    file: Annotated[
        Path,
        typer.Argument(
            metavar="FILE",
            help="A codes.yaml: labs (LOINC), assessments and findings with their units and ranges.",
        ),
    ],
    author: Annotated[
        str | None, typer.Option(metavar="NAME", help="Who registers them (required; or $TIMELINE_AUTHOR).")
    ] = None,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """Register a site's codes in the store, so that ingest accepts their events.

    Each value of a registered lab or assessment is converted to its unit on ingest and
    checked against its plausible range, as for the built-in codes. The rules beside the file
    may name them (a rule directory's codes.yaml is read with its rules). Registering a file
    again adds its new codes and the changed names, ranges and unit factors; a registered
    code's kind, unit and molar mass never change (its stored values are in that unit).
    Nothing is written unless the whole file is accepted.

    Example:

    ```
    timeline codes add site_rules/codes.yaml --author "Dr. Ruiz"
    ```
    """
    from cli.main import _author, _open
    from timeline import registry

    who = _author(author, required=True)
    with _open(store, write=True, wait=wait) as s:
        result = registry.register(s, file, who)
    if json_out:
        dump_json(result.to_json())
        return
    c = console()
    parts = [
        f"{len(result.added)} added",
        f"{len(result.changed)} changed",
        f"{len(result.unchanged)} unchanged",
    ]
    c.print(f"{esc(result.source)}: {', '.join(parts)}")
    for what, ids in (("added", result.added), ("changed", result.changed)):
        for code in ids:
            c.print(f"  {what} {esc(code)}")


@codes_app.command("list", cls=Command)
def codes_list(
    site: Annotated[bool, typer.Option("--site", help="Only the codes registered in the store.")] = False,
    store: StoreOpt = None,
    wait: WaitOpt = 0,
    json_out: JsonOpt = False,
) -> None:
    """List the codes events may name: built-in and registered, with unit and range.

    Example:

    ```
    timeline codes list --site
    timeline codes list --json | jq '.codes[] | select(.kind == "lab") | .code'
    ```
    """
    from cli.main import _open
    from timeline import codes, registry

    with _open(store, wait=wait) as s:
        site_rows = registry.registered(s)
        path = str(s.path)
    rows: list[dict[str, Any]] = []
    if not site:
        for kind, table in (("lab", codes.LABS), ("assessment", codes.ASSESSMENTS)):
            for c in table.values():
                rows.append(_row(kind, c.code, c.name, c.unit, c.low, c.high, "built-in"))
        for kind, v in codes.VITALS.items():
            rows.append(_row(kind, v.code, v.name, v.unit, v.low, v.high, "built-in"))
        for code, name in codes.FINDINGS.items():
            rows.append(_row("finding", code, name, None, None, None, "built-in"))
        for code, per_day in codes.FREQUENCIES.items():
            rows.append(_row("frequency", code, f"{per_day:.4g} doses a day", None, None, None, "built-in"))
            rows[-1]["per_day"] = per_day
    for r in site_rows:
        unit = None if r["kind"] in ("finding", "frequency") else r["unit"]
        where = f"{r['source_file']}:{r['source_line']}"
        rows.append(
            _row(r["kind"], r["code"], r["name"], unit, r["low"], r["high"], where)
            | {"registered_at": r["recorded_at"].isoformat() + "Z", "author": r["author"]}
            | ({"per_day": r["per_day"]} if r["kind"] == "frequency" else {})
        )
    if json_out:
        dump_json({"store": path, "codes": rows})
        return
    from rich.table import Table

    out = Table(title=f"codes ({len(rows)})")
    for col in ("kind", "code", "name", "unit", "range", "defined"):
        out.add_column(col)
    for r in rows:
        rng = "" if r["low"] is None and r["high"] is None else f"{_num(r['low'])}–{_num(r['high'])}"
        out.add_row(*(cell(v) for v in (r["kind"], r["code"], r["name"], r["unit"] or "", rng, r["defined"])))
    console().print(out)


def _row(
    kind: str, code: str, name: str, unit: str | None, low: float | None, high: float | None, defined: str
) -> dict[str, Any]:
    return {
        "kind": kind,
        "code": code,
        "name": name,
        "unit": unit,
        "low": low,
        "high": high,
        "defined": defined,
    }


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"
