"""Command-line options shared by every command (one definition, one help text), and the
command classes every command and group is made with (``cls=Command``, ``cls=Group``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


def _bare(option: TyperOption | None) -> TyperOption | None:
    """``option`` shown without a value placeholder in the help if it is a flag: typer (0.29)
    writes one after every option that has no metavar, a flag's too (``--json <bool>``,
    ``--help -h <bool>``), which reads as if the flag took a value (``--json true``). An empty
    metavar is shown as nothing."""
    if option is not None and option.is_flag and option.metavar is None:
        option.metavar = ""
    return option


class _NamedArgument(TyperArgument):
    """An argument with a metavar (``PATIENT``): the help shows the name alone. typer (0.29)
    adds its type beside it (``PATIENT <str>``), which says nothing the name does not."""

    def display_type_rich(self, ctx: Any) -> str | None:
        return None


class _BareFlags:
    """Shows a command's flags and ``--help`` bare (see ``_bare``), and its named arguments
    without their type; mixed into typer's classes."""

    params: list[Any]

    def _bare_flags(self) -> None:
        for param in self.params:
            _bare(param if isinstance(param, TyperOption) else None)
            if type(param) is TyperArgument and param.metavar:
                param.__class__ = _NamedArgument

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        # made by typer when a parse or a help page first needs it, not in __init__
        return _bare(super().get_help_option(ctx))  # type: ignore[misc]


class Command(_BareFlags, TyperCommand):
    """typer's command, with its flags and ``--help`` shown bare."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bare_flags()


class Group(_BareFlags, TyperGroup):
    """typer's command group, with its flags (``--version``) and ``--help`` shown bare."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._bare_flags()


StoreOpt = Annotated[
    Path | None,
    typer.Option(
        "--store",
        "-s",
        metavar="FILE",
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
        help="Show the record as the store held it at this moment of recording (UTC date or ISO "
        "date-time; system time, not a clinical cut-off date), or when sequence number N was written "
        "(seq:N, a manifest's high_water). Default: now.",
    ),
]


def _patient(value: str) -> str:
    """A PATIENT argument: an empty one (`timeline state ""`, an unset shell variable) is a bad
    command line, not a patient to look for (it was answered "no events … did you mean '7'?",
    exit 5)."""
    if not value.strip():
        raise typer.BadParameter("must not be empty: give a patient id", param_hint="'PATIENT'")
    return value


PatientArg = Annotated[str, typer.Argument(metavar="PATIENT", help="Patient id.", callback=_patient)]
