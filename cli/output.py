"""Rendering helpers: colour only on a terminal, JSON for scripts, errors on stderr."""

from __future__ import annotations

import json
import math
import os
import re
import sys
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


_documents = 0  # JSON documents started on stdout by this process
_notes: list[str] = []  # notes said on stderr by this run, repeated in its JSON document


def note(text: str) -> None:
    """A note on stderr (`note: …`), and under ``notes`` in the JSON document the command
    writes, so that a script reading only the JSON sees it too."""
    console(stderr=True).print(f"[yellow]note:[/] {esc(text)}", soft_wrap=True)
    _notes.append(text)


def clear_notes() -> None:
    """Forget the notes of an earlier run in this process (tests run many)."""
    _notes.clear()


def dump_json(data: Any, *, outcome: bool = True) -> None:
    """``data`` as JSON on stdout. A number that is not finite (a percentage change from 0,
    an overflow) is written as the string "Infinity", "-Infinity" or "NaN": JSON has no such
    numbers, and Python's bare tokens break other readers (jq, JavaScript).

    A command's document (``outcome``) begins with ``"ok": true`` unless it says ``ok``
    itself (a failure, ``verify``, ``rules check``): a script reads ``.ok`` from every
    command, whether it succeeded or not. ``outcome=False``: a document that is the command's
    product as it is (``rules schema``'s JSON Schema)."""
    global _documents
    if outcome and isinstance(data, dict) and "ok" not in data:
        data = {"ok": True, **data}
    if _notes and isinstance(data, dict) and "notes" not in data:
        data = {**data, "notes": list(_notes)}
    text = json.dumps(
        _finite(data),
        default=_default,
        indent=2,
        ensure_ascii=not is_utf8(sys.stdout),  # \u2264 where the encoding has no ≤
        allow_nan=False,
    )
    _documents += 1  # counted before it is written: a document cut short is still one
    text += "\n"
    # In pieces: with an unbuffered stdout (PYTHONUNBUFFERED=1) Python ignores a write that a
    # pipe took only in part (its reader exited meanwhile); the next piece meets the closed pipe
    for start in range(0, len(text), 1 << 16):
        sys.stdout.write(text[start : start + (1 << 16)])


def is_utf8(stream: Any) -> bool:
    """Whether a text stream writes UTF-8 (else what it cannot write is escaped)."""
    return str(getattr(stream, "encoding", None) or "utf-8").lower().replace("_", "-") in ("utf-8", "utf8")


def documents_written() -> int:
    """How many JSON documents ``dump_json`` has begun to write (so that a failing command
    does not add an error document after its own)."""
    return _documents


def error_document(message: str, details: list[str], exit_code: int) -> dict[str, Any]:
    """The ``error`` part of the JSON document of a command that failed under ``--json``:
    the one-line message and every detail line shown on stderr (none cut off), and the exit
    code."""
    return {"message": message, "details": details, "exit_code": exit_code}


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    no_color = bool(os.environ.get("NO_COLOR"))
    stream = sys.stderr if stderr else sys.stdout
    # Piped output is read by people too: do not squeeze it into 80 columns.
    width = None if stream.isatty() else 200
    return Console(stderr=stderr, no_color=no_color, highlight=False, soft_wrap=False, width=width)


# Characters shown as an escape: control characters (C0, DEL, C1: an ESC sequence in a patient
# id or a note would drive the terminal, a line break would split a line) and characters that do
# not show (zero-width, joiners, direction marks and isolates, a byte order mark, a soft
# hyphen, variation selectors, line and paragraph separators).
_HIDDEN = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180b-\u180f\u200b-\u200f"
    "\u2028-\u202e\u2060-\u206f\u3164\ufe00-\ufe0f\ufeff\uffa0\ufff0-\ufffb]"
)
_NAMED = {"\t": "\\t", "\n": "\\n", "\r": "\\r"}


def visible(text: str, *, lines: bool = False, tabs: bool = False) -> str:
    """``text`` with each control or invisible character as an escape (``\\x1b``, ``\\n``,
    ``\\u200b``): data shown on a terminal never drives it, and two values that look alike
    are told apart. ``lines``: line breaks of text laid out over lines are kept; ``tabs``:
    tabs too (a file shown as it is written)."""
    if _HIDDEN.search(text) is None:
        return text

    def shown(m: re.Match[str]) -> str:
        c = m.group()
        if (lines and c == "\n") or (tabs and c == "\t"):
            return c
        return _NAMED.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")

    return _HIDDEN.sub(shown, text)


def cell(text: object) -> Text:
    """Table cell text, never read as markup (units like [degF] contain brackets), its control
    characters shown as escapes (:func:`visible`). On a narrow terminal a long word (an event id,
    a date, a rule id) folds onto the next line rather than being cut to `V…`: an identifier
    shown in part is no identifier."""
    from rich.text import Text

    return Text("" if text is None else visible(str(text)), overflow="fold")


def file_text(text: str) -> Text:
    """A file's text shown as it is written: over its lines, its tabs kept, never read as
    markup, any other control or invisible character as an escape (:func:`visible`)."""
    from rich.text import Text

    return Text(visible(text, lines=True, tabs=True))


def esc(text: object, *, lines: bool = False) -> str:
    """Text placed inside a markup string (a patient id, a title, a path), never read as markup:
    ``[/]`` or ``[bold]`` in a patient id is shown as written, a control character as an escape
    (``lines``: but for line breaks)."""
    from rich.markup import escape

    return escape("" if text is None else visible(str(text), lines=lines))


def error(message: str, details: list[str] | None = None, found: int | None = None) -> None:
    """``found``: how many problems there are, when ``details`` lists only the first of them
    (an ingest lists 1,000 errors at most)."""
    err = console(stderr=True)
    # One line per error, never wrapped: scripts grep these lines, and a terminal wraps anyway.
    err.print(f"[bold red]error:[/] {_escape(message)}", soft_wrap=True)
    shown = details or []
    for line in shown[:50]:
        err.print(f"  {_escape(line)}", soft_wrap=True)
    total = max(found or 0, len(shown))
    if total > len(shown) and len(shown) > 50:
        err.print(f"  … {total - 50:,} more (--json lists the first {len(shown):,})", soft_wrap=True)
    elif total > len(shown):
        err.print(f"  … {total - len(shown):,} more, not listed", soft_wrap=True)
    elif len(shown) > 50:
        err.print(f"  … {len(shown) - 50} more (use --json for all)", soft_wrap=True)


LONGEST_LINE = 1000  # characters of an error line shown; a file's cell can be megabytes


def _escape(text: str) -> str:
    if len(text) > LONGEST_LINE:
        text = f"{text[:LONGEST_LINE]}… ({len(text) - LONGEST_LINE:,} more characters)"
    return esc(text)


def working(what: str) -> Any:
    """A spinner on stderr saying what a long step does, when stderr is a terminal (rich draws
    nothing live on a dumb one); a do-nothing context otherwise, so pipes and --json stay clean."""
    from contextlib import nullcontext

    if not sys.stderr.isatty():
        return nullcontext()
    return console(stderr=True).status(what)
