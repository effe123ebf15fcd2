"""How a run of the command line ends: one exit code and at most one clean message.

``run`` runs the app and turns every way a command can end into an exit code (README, *Exit
codes*) and a one-line error on stderr:

- SIGTERM (``timeout``, systemd, a cancelled CI job): as Ctrl-C, ``error: terminated
  (SIGTERM)``, 143; a signal that arrives inside an import is sent again once it is over (raised
  there, it reached DuckDB's C start-up, which aborts the process);
- a standard stream the caller closed (``>&-``): /dev/null; an output encoding that is not
  UTF-8: what it cannot write is escaped, and JSON is ASCII;
- Ctrl-C: ``error: interrupted``, 130, wherever it arrives — in Python code (typer turns it
  into exit 130 and says nothing), in a DuckDB query (which stops and raises an error of its
  own instead), or while the command cleans up. A SIGINT handler records it, so that it is
  recognised whatever error it became, and interrupts the queries of the open stores
  (DuckDB alone lets some run on);
- a closed standard output (``timeline … | head -1``): nothing said, 141, what a shell
  reports for a tool that SIGPIPE ended — whether the write that found the pipe closed was
  the command's own (typer then exits 1), rich's (which exits 1 too), or the last flush
  before exit (Python then prints "Exception ignored … BrokenPipeError" at exit). Standard
  output is pointed at /dev/null, so that nothing is flushed into the closed pipe at exit;
- an output that standard output cannot take (``> /dev/full``, a full disk): ``error: cannot
  write to standard output: reason``, 1. Under ``PYTHONUNBUFFERED=1`` (set in many container
  images) Python's text layer writes straight to the file and drops, without a word, what a
  write the system took only in part leaves over — the rest of a table when the pipe's reader
  quits, or the disk fills, mid-write: exit 0 with the output cut. So standard output gets a
  buffered writer of its own (flushed at each line when unbuffered was asked for), which
  writes the rest or fails, and its failures are known for what they are;
- a library error: its message and exit code;
- an ``OSError`` that names a file (a path too long, a directory that cannot be searched,
  met where a command checks its arguments): ``error: PATH: reason``, 2 — a path that
  cannot be used is a bad command line. Stores, files to ingest and rule directories are
  checked where they are opened, and get their own codes (3, 6, 8), as when they are missing;
- damage found while reading rows: 3;
- anything else is a bug: 70, with the traceback under ``TIMELINE_DEBUG=1``.

A command given ``--json`` that fails also writes one JSON document on stdout, ``{"ok": false,
"error": {"message", "details", "exit_code"}}`` — the text error stays on stderr — unless it
wrote a document of its own (ingest's rejected batch, ``rules check``, ``cohort check``,
``verify``, ``rules test``: they carry the same ``ok`` and ``error``). A usage error that
click reports (exit 2) gets one too.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import sys
from collections.abc import Callable
from contextlib import suppress
from types import FrameType
from typing import Any

from cli.output import clear_notes, documents_written, dump_json, error, error_document, is_utf8

INTERRUPTED = 130  # 128 + SIGINT, what a shell reports for a command stopped by Ctrl-C
BROKEN_PIPE = 141  # 128 + SIGPIPE
USAGE = 2
INTERNAL = 70


TERMINATED = 143  # 128 + SIGTERM: what `timeout`, systemd and a cancelled CI job send


class _State:
    interrupted = False  # Ctrl-C (or SIGTERM) arrived during this run
    signum = signal.SIGINT  # which of the two
    finishing = False  # the command has ended: a Ctrl-C now only changes the exit code
    json = False  # --json was given
    documents = 0  # JSON documents written before this run


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """Ctrl-C, and SIGTERM alike: the command stops the same way, its temporary files (a copy
    of standard input, a half-written export or synth file) removed and the store unchanged —
    unless a batch was committing, which may then be kept (README, *Exit codes*)."""
    if _importing(frame):
        # raised inside an import, the exception can reach a C extension's start-up (DuckDB's
        # bindings abort the process: exit 134 and a C traceback): the signal is sent again
        # once the import has had a moment to finish
        import threading

        threading.Timer(0.05, os.kill, (os.getpid(), signum)).start()
        return
    _State.interrupted = True
    _State.signum = signal.Signals(signum)
    if _State.finishing:
        return
    store = sys.modules.get("timeline.store")
    if store is not None:  # a query of the main thread may not see the KeyboardInterrupt
        store.interrupt_queries()
    raise KeyboardInterrupt


def _importing(frame: FrameType | None) -> bool:
    """Whether the main thread is inside Python's import machinery."""
    while frame is not None:
        if frame.f_code.co_filename.startswith("<frozen importlib"):
            return True
        frame = frame.f_back
    return False


def run(app: Callable[[], Any], done: tuple[type[Exception], ...]) -> int:
    """Run ``app`` (the typer app) with the command line in ``sys.argv``; return the exit code.
    ``done``: exceptions that carry the exit code (``.code``) of a command that has already
    reported its outcome."""
    _State.interrupted = _State.finishing = False
    _State.signum = signal.SIGINT
    _State.json = _json_requested(sys.argv[1:])
    _State.documents = documents_written()
    clear_notes()
    _closed_streams()
    _guard_stdout()
    previous: dict[int, Any] = {}
    for signum in (signal.SIGINT, signal.SIGTERM):
        # not the main thread (an embedding program): signals stay its own
        with suppress(ValueError):
            previous[signum] = signal.signal(signum, _on_sigint)
    try:
        try:
            app()
            outcome: BaseException | None = None
        except BaseException as exc:  # typer ends every run with SystemExit
            outcome = exc
        _State.finishing = True
        code = _ending(outcome, done)
        try:
            sys.stdout.flush()  # now, not at exit: a closed pipe is found here
        except OSError as exc:
            _drop_stdout()  # what the buffer holds must not be tried again at exit
            if exc.errno != errno.EPIPE:
                return code or _fail(f"cannot write to standard output: {exc.strerror}", [], 1)
            return code or BROKEN_PIPE
        return code
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)


def _ending(exc: BaseException | None, done: tuple[type[Exception], ...]) -> int:
    from timeline.errors import TimelineError

    if _State.interrupted or _is_interrupt(exc):
        if _State.signum == signal.SIGTERM:
            return _fail("terminated (SIGTERM)", [], TERMINATED)
        return _fail("interrupted", [], INTERRUPTED)
    if _broken_pipe(exc):
        _drop_stdout()
        return BROKEN_PIPE
    if exc is None:
        return 0
    if isinstance(exc, SystemExit):
        shown = exc.__context__  # a usage error (click's) that typer has shown: exit 2
        message = getattr(shown, "format_message", None)
        if callable(message) and isinstance(getattr(shown, "exit_code", None), int):
            _json_error(str(message()), [], _code(exc.code))
        return _code(exc.code)
    if isinstance(exc, done):
        return int(getattr(exc, "code", 1))
    if isinstance(exc, TimelineError):
        return _fail(str(exc), exc.details(), exc.exit_code)
    if isinstance(exc, OSError) and getattr(exc, _STDOUT_MARK, False):
        _drop_stdout()  # and the JSON error document, if any, goes nowhere
        return _fail(f"cannot write to standard output: {exc.strerror or exc}", [], 1)
    if isinstance(exc, OSError) and exc.filename is not None:
        name = os.fsdecode(exc.filename) if isinstance(exc.filename, bytes) else str(exc.filename)
        return _fail(f"{name}: {exc.strerror or exc}", [], USAGE)
    from timeline.store import damage_message, is_damage, resolve_store_path

    if is_damage(exc):  # found while reading rows, after the store opened fine
        return _fail(damage_message(resolve_store_path(_store_arg()), exc), [], 3)
    if os.environ.get("TIMELINE_DEBUG"):
        raise exc
    return _fail(
        f"internal error: {type(exc).__name__}: {exc}",
        ["set TIMELINE_DEBUG=1 to see the traceback"],
        INTERNAL,
    )


def _is_interrupt(exc: BaseException | None) -> bool:
    """Ctrl-C, also as DuckDB reports it: a query it stopped raises ``InterruptException``
    (a connection interrupted from another thread) or ``RuntimeError('Query interrupted')``."""
    if isinstance(exc, KeyboardInterrupt):
        return True
    if isinstance(exc, RuntimeError) and str(exc) == "Query interrupted":
        return True
    # DuckDB's compiled module defines the exception; its package (imported or not: see
    # timeline.duck) re-exports the same class
    duckdb = sys.modules.get("_duckdb") or sys.modules.get("duckdb")
    return duckdb is not None and isinstance(exc, duckdb.InterruptException)


def _broken_pipe(exc: BaseException | None) -> bool:
    """A write to a closed pipe: raised, or (typer, rich) turned into exit 1."""
    if isinstance(exc, SystemExit):
        exc = exc.__context__
    return isinstance(exc, OSError) and exc.errno == errno.EPIPE


_STDOUT_MARK = "timeline_stdout"  # set on an OSError raised by a write to standard output


class _Stdout(io.TextIOWrapper):
    """Standard output whose write errors are marked as such (see the module's docstring)."""

    def write(self, s: str) -> int:
        try:
            return super().write(s)
        except OSError as exc:
            setattr(exc, _STDOUT_MARK, True)
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as exc:
            setattr(exc, _STDOUT_MARK, True)
            raise


_KEPT: dict[str, Any] = {}


def _closed_streams() -> None:
    """A standard stream the parent closed (``>&-``, ``<&-``) is None in Python: every write
    or read would fail with an AttributeError (a traceback, after a write had committed).
    Standard input then reads as empty; standard output and error go to /dev/null, as if
    redirected there."""
    # kept open for the rest of the process: _guard_stdout wraps the buffer of the one it finds
    if sys.stdin is None:
        sys.stdin = _KEPT.setdefault("stdin", open(os.devnull, encoding="utf-8"))  # noqa: SIM115
    if sys.stdout is None:
        sys.stdout = _KEPT.setdefault("stdout", open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = _KEPT.setdefault("stderr", open(os.devnull, "w", encoding="utf-8"))  # noqa: SIM115
    # an encoding that cannot write what the tables and reasons hold (≤, °, ×, —): escaped
    # rather than a UnicodeEncodeError (exit 70); JSON is then written in ASCII (output.py)
    for stream in (sys.stdout, sys.stderr):
        if not is_utf8(stream) and isinstance(stream, io.TextIOWrapper):
            with suppress(ValueError, OSError):
                stream.reconfigure(errors="backslashreplace")


def _guard_stdout() -> None:
    """Give standard output a buffered writer and mark its write errors (module docstring).
    Left as it is when it is not Python's own (a test's capture, an embedding program's), or
    already guarded. The original stays in ``sys.__stdout__``, so it is never closed under us."""
    out = sys.stdout
    if type(out) is not io.TextIOWrapper:
        return
    try:
        out.flush()
    except (OSError, ValueError):
        return
    buffer: Any = out.buffer
    unbuffered = isinstance(buffer, io.RawIOBase)
    if unbuffered:
        buffer = io.BufferedWriter(buffer)
    sys.stdout = _Stdout(
        buffer,
        encoding=out.encoding,
        errors=out.errors if is_utf8(out) else "backslashreplace",
        line_buffering=out.line_buffering or unbuffered,
    )


def _drop_stdout() -> None:
    """Point standard output at /dev/null (the Python documentation's recipe for SIGPIPE):
    what is left in its buffer must not be flushed into the closed pipe at exit."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # not a file (a test's capture)
        pass


def _code(code: object) -> int:
    if code is None:
        return 0
    return code if isinstance(code, int) else 1


def _fail(message: str, details: list[str], exit_code: int) -> int:
    error(message, details)
    _json_error(message, details, exit_code)
    return exit_code


def _json_requested(args: list[str]) -> bool:
    return "--json" in (args[: args.index("--")] if "--" in args else args)


def _json_error(message: str, details: list[str], exit_code: int) -> None:
    """The JSON error document on stdout, under --json, unless the command wrote its own."""
    if not _State.json or documents_written() > _State.documents:
        return
    with suppress(OSError):  # a closed pipe: found and reported when stdout is flushed
        dump_json({"ok": False, "error": error_document(message, details, exit_code)})


def _store_arg() -> str | None:
    """The --store value on the command line, if any (for messages outside a command)."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg in ("--store", "-s") and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--store="):
            return arg.split("=", 1)[1]
    return None
