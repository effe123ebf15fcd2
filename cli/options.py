"""Command-line options shared by every command (one definition, one help text), and the
command classes every command and group is made with (``cls=Command``, ``cls=Group``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

try:  # typer 0.2x coerces every value with a pydantic TypeAdapter, built when first parsed
    from typer._coercion import RuntimeParam, TypeDescriptor, build_runtime_param
    from typer._param_types import coerce_cli_path
except ImportError:  # pragma: no cover - another typer: its own coercion throughout
    RuntimeParam = None  # type: ignore[assignment,misc]


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


_NOT_PLAIN = object()


def _plain(annotation: Any, value: Any, param: Any, ctx: Any) -> Any:
    """``value`` as typer's coercion makes it, for the plain values of the plain types our
    commands take (a str, a float or a bool as given, an int default of a float option, a
    path, a list of them), or ``_NOT_PLAIN``. A path gets typer's checks, from the Path
    pydantic would make of the text."""
    kind = type(value)
    if annotation in (str, float, bool) and kind is annotation:
        return value
    if annotation is float and kind is int:  # a default written as 0: pydantic's lax float
        return float(value)
    if annotation is Path and kind is str:
        info = param.type_descriptor.parameter_info
        if info.path_type is None and not info.allow_dash:
            return coerce_cli_path(Path(value), info, path_type=Path, param=param, ctx=ctx)
    if annotation in (list[str], list[Path]) and kind in (list, tuple):
        items = [_plain(annotation.__args__[0], v, param, ctx) for v in value]
        return _NOT_PLAIN if any(v is _NOT_PLAIN for v in items) else items
    return _NOT_PLAIN


if RuntimeParam is not None:

    @dataclass(frozen=True)
    class _PlainFirst(RuntimeParam):
        """typer's coercion of one parameter, without building its pydantic TypeAdapter for a
        value that needs none (see ``_plain``): typer 0.29 builds one for every parameter of
        the command run, given or not, which imported and set up pydantic's validation
        machinery at every start (~13 adapters, a fifth of `timeline state`'s start-up
        beyond importing DuckDB). Any other value goes to typer's own coercion, errors and
        all."""

        descriptor: TypeDescriptor

        def _coerce_value(self, value: Any, param: Any, ctx: Any) -> Any:
            try:
                done = _plain(self.annotation, value, param, ctx)
            except AttributeError:  # a typer whose descriptors read otherwise: its own coercion
                done = _NOT_PLAIN
            if done is not _NOT_PLAIN:
                return done
            return build_runtime_param(self.descriptor)._coerce_value(value, param=param, ctx=ctx)


def _plain_first(param: Any) -> None:
    """Give a parameter the coercion ``_PlainFirst``, when typer is a version whose
    parameters carry a type descriptor and a runtime coercion not yet built."""
    descriptor = getattr(param, "type_descriptor", None)
    if RuntimeParam is None or descriptor is None or getattr(param, "_runtime_param", True) is not None:
        return
    info = getattr(descriptor, "parameter_info", None)
    if info is None or not hasattr(descriptor, "annotation"):
        return  # a typer whose descriptors differ from 0.29's: its own coercion throughout
    if getattr(descriptor, "file_annotation", None) is None and getattr(info, "parser", None) is None:
        param._runtime_param = _PlainFirst(info, descriptor.annotation, descriptor)


class _BareFlags:
    """Shows a command's flags and ``--help`` bare (see ``_bare``), and its named arguments
    without their type; mixed into typer's classes. Coerces plain values without pydantic
    (``_plain_first``)."""

    params: list[Any]

    def _bare_flags(self) -> None:
        for param in self.params:
            _bare(param if isinstance(param, TyperOption) else None)
            if type(param) is TyperArgument and param.metavar:
                param.__class__ = _NamedArgument
            _plain_first(param)

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        # made by typer when a parse or a help page first needs it, not in __init__
        option = _bare(super().get_help_option(ctx))  # type: ignore[misc]
        _plain_first(option)
        return option


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
JsonOpt = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print JSON for scripts (times in ISO 8601 with Z, or the store zone's offset for clinical times; dates as dates).",
    ),
]


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


def follow_up(
    *words: str | Path,
    store: Path | None = None,
    rules: list[Path] | None = None,
    params: list[str] | None = None,
    as_known_at: str | None = None,
) -> str:
    """A command a command suggests running next (``timeline explain P001 fever --at DATE``),
    with the options the user gave that it needs to give the same answer — the store, rule
    directories, parameter values and the moment of recording — each quoted for the shell, so
    that it works when pasted (a placeholder the reader replaces is a word in capitals, DATE)."""
    import shlex

    def quoted(word: str | Path) -> str:
        return shlex.quote(str(word))

    parts = ["timeline", *(quoted(w) for w in words)]
    for directory in rules or []:
        parts += ["--rules", quoted(directory)]
    for item in params or []:
        parts += ["--param", quoted(item)]
    if as_known_at is not None:
        parts += ["--as-known-at", quoted(as_known_at)]
    if store is not None:
        parts += ["--store", quoted(store)]
    return " ".join(parts)


def _patient(value: str) -> str:
    """A PATIENT argument: an empty one (`timeline state ""`, an unset shell variable) is a bad
    command line, not a patient to look for (it was answered "no events … did you mean '7'?",
    exit 5)."""
    if not value.strip():
        raise typer.BadParameter("must not be empty: give a patient id", param_hint="'PATIENT'")
    return value


PatientArg = Annotated[str, typer.Argument(metavar="PATIENT", help="Patient id.", callback=_patient)]


def _optional_patient(value: str | None) -> str | None:
    """An optional PATIENT argument (`history` takes --all instead): as :func:`_patient`."""
    return None if value is None else _patient(value)


OptionalPatientArg = Annotated[
    str | None,
    typer.Argument(
        metavar="[PATIENT]", help="Patient id (or --all).", show_default=False, callback=_optional_patient
    ),
]
