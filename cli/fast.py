"""The `timeline` executable's start: `state` and `explain` with a plain command line run without
typer.

Importing typer and building click's command cost `timeline state` ~0.03 s CPU of its ~0.3 s
(helper 78, benchmarks/README.md), for a command line that is most often just ``state PATIENT
--at DATE --store FILE``. :func:`plain_command` reads such a line itself: only the command's own
options, a single-valued one at most once, every value a separate word or after ``=`` and not
itself beginning with ``-``, a non-empty PATIENT, a ``--wait`` that is a number of seconds.
Anything else (``--help``, a misspelt or missing option, a value that looks like an option, ``--``)
goes to typer, which says what is wrong as it always did. Either way the same function of
cli.show runs with the same arguments (tests/test_cli_fast.py compares them with typer's), so
the output and the exit code are the same.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

# an option's parameter name and its kind: one value, a repeatable value, or a flag
_ONE, _MANY, _FLAG = "one", "many", "flag"
_COMMON: dict[str, tuple[str, str]] = {
    "--at": ("at", _ONE),
    "--as-known-at": ("as_known_at", _ONE),
    "--rules": ("rules", _MANY),
    "--param": ("param", _MANY),
    "--store": ("store", _ONE),
    "-s": ("store", _ONE),
    "--wait": ("wait", _ONE),
    "--json": ("json_out", _FLAG),
}
_OPTIONS: dict[str, dict[str, tuple[str, str]]] = {
    "state": {**_COMMON, "--rule": ("rule", _MANY)},
    "explain": _COMMON,
}
_ARGUMENTS = {"state": ("patient",), "explain": ("patient", "rule_id")}


def plain_arguments(args: list[str]) -> tuple[str, dict[str, Any]] | None:
    """The command (`state` or `explain`) and the arguments its function in cli.show takes, as
    typer would pass them, when ``args`` (the command line after the program's name) are plain
    (see the module's docstring); None otherwise."""
    if not args or args[0] not in _OPTIONS:
        return None
    command, options = args[0], _OPTIONS[args[0]]
    given: dict[str, Any] = {}
    words: list[str] = []
    i = 1
    while i < len(args):
        word = args[i]
        i += 1
        if not word.startswith("-"):
            words.append(word)
            continue
        name, eq, value = word.partition("=") if word.startswith("--") else (word, "", "")
        if name not in options:
            return None
        key, kind = options[name]
        if kind == _FLAG:
            if eq:
                return None
            given[key] = True
            continue
        if not eq:
            if i >= len(args) or args[i].startswith("-"):
                return None
            value = args[i]
            i += 1
        if kind == _MANY:
            given.setdefault(key, []).append(value)
        elif key in given:
            return None
        else:
            given[key] = value
    if len(words) != len(_ARGUMENTS[command]) or "at" not in given or not words[0].strip():
        return None
    wait = 0.0
    if "wait" in given:
        try:
            wait = float(given["wait"])
        except ValueError:
            return None
        if not math.isfinite(wait) or wait < 0:
            return None
    store = given.get("store")
    rules = given.get("rules")
    out: dict[str, Any] = dict(zip(_ARGUMENTS[command], words, strict=True))
    out["at"] = given["at"]
    if command == "state":
        out["rule"] = given.get("rule")
    out |= {
        "as_known_at": given.get("as_known_at"),
        "rules": None if rules is None else [Path(r) for r in rules],
        "param": given.get("param"),
        "store": None if store is None else Path(store),
        "wait": wait,
        "json_out": bool(given.get("json_out")),
    }
    return command, out


def plain_command(args: list[str]) -> Callable[[], None] | None:
    """The command ``args`` give, to run with its arguments, when they are plain; None otherwise
    (typer parses them)."""
    found = plain_arguments(args)
    if found is None:
        return None
    command, kwargs = found

    def run() -> None:
        import gc

        # Python's collector would scan the objects of start-up (modules, the rule set
        # unpickled: long-lived, none of them garbage) dozens of times (~0.01 s of `state` and
        # of `explain`), then those of the one patient's computation, which reference counting
        # frees as it goes (Val tuples, lists: a few cycles at most, ~2 ms more of `state`'s
        # replay). Off for the command, as a cohort run turns it off while it works; on again
        # after it, whatever happens.
        holding = gc.isenabled()
        gc.disable()
        try:
            from cli import show

            getattr(show, command)(**kwargs)
        finally:
            if holding:
                gc.enable()

    return run


def entry() -> NoReturn:
    """The `timeline` executable: a plain `state` or `explain` here, anything else through
    cli.main (typer)."""
    command = plain_command(sys.argv[1:])
    if command is None:
        from cli.main import entry as through_typer

        through_typer()
    from cli.exits import run

    code = run(command, ())
    quick_exit(code)
    sys.exit(code)


def quick_exit(code: int) -> None:
    """End the process now with ``code``, without Python's teardown of the interpreter (every
    module's objects freed one by one: ~0.04 s of `timeline state`'s ~0.4 s), after flushing the
    standard streams and running the exit handlers (DuckDB's own among them); return, to exit as
    usual, if a stream cannot be flushed (what to say about it is for the usual path) or Python
    has no ``atexit._run_exitfuncs``. For `state` and `explain` only: they only read, and their
    store is closed, so nothing is left that teardown would finish."""
    import atexit

    run_exit_handlers = getattr(atexit, "_run_exitfuncs", None)
    if run_exit_handlers is None:  # pragma: no cover - another Python
        return
    try:
        for stream in (sys.stdout, sys.stderr):
            if stream is not None:
                stream.flush()
    except (OSError, ValueError):
        return
    run_exit_handlers()
    os._exit(code)
