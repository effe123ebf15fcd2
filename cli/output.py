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
    from pathlib import Path

    from rich.console import Console
    from rich.text import Text

    from timeline.store import Store


# The store's time zone, in which its clinical times (occurred_at, an interval's start) are
# wall-clock times; set by the command once it opened the store (see :func:`set_store_zone`).
_zone = "UTC"
# Keys of system times: when the store learned something, always UTC (recorded_at, ...)
SYSTEM_TIMES = frozenset({"recorded_at", "created_at", "registered_at", "as_known_at"})


def set_store_zone(zone: str) -> None:
    """The zone of the store a command read: its clinical times are written in JSON with that
    zone's offset (``Z`` in a UTC store)."""
    global _zone
    _zone = zone


def store_zone(store: Store) -> None:
    """:func:`set_store_zone` of an open store, its zone checked first: a store whose zone is
    not a known one is damaged (:meth:`Store.zone`'s error), not an internal error when a time
    is written in its offset. A UTC store's needs no check. A store whose zone is not known is
    closed before the error goes on (the command has no store to close)."""
    if store.timezone not in ("UTC", "Etc/UTC"):
        try:
            store.zone()
        except BaseException:
            store.close()
            raise
    set_store_zone(store.timezone)


def json_time(value: datetime, key: str | None = None) -> str:
    """A time as every ``--json`` output writes it: ISO 8601 with its zone designator, ``Z``
    for UTC — a system time (``recorded_at``, ``as_known_at``…: UTC by design), or a clinical
    time in a UTC store — else the store zone's offset at that wall-clock time
    (``2009-03-01T10:00:00+01:00``). A date stays a date (``2009-03-01``).

    An offset of seconds (a zone's local mean time before it took a standard offset, before 1901
    in most zones: Madrid's −00:14:44) is no RFC 3339 offset, which has hours and minutes only:
    such a time is written as its UTC instant (``1900-06-01T12:00:00Z`` for 11:45:16 in Madrid),
    the same instant in a form every reader of RFC 3339 takes."""
    if value.tzinfo is None:
        if key in SYSTEM_TIMES or _zone in ("UTC", "Etc/UTC"):
            return value.isoformat() + "Z"
        from zoneinfo import ZoneInfo

        value = value.replace(tzinfo=ZoneInfo(_zone))
    offset = value.utcoffset()
    if offset is not None and (offset.seconds % 60 or offset.microseconds):
        from datetime import UTC

        value = value.astimezone(UTC)
    text = value.isoformat()
    return text.removesuffix("+00:00") + "Z" if text.endswith("+00:00") else text


def utc_text(text: str | None) -> str | None:
    """A UTC time the library gives as naive ISO text (a store's ``created_at``, a manifest's
    ``as_known_at``) with its ``Z``, as :func:`json_time` writes one."""
    if not text or text.endswith("Z") or "+" in text[10:]:
        return text
    return text + "Z"


def dated(row: dict[str, Any]) -> dict[str, Any]:
    """An event row for JSON: ``occurred_at`` and ``ended_at`` of day precision as the dates
    they are (``2009-03-01``, not midnight with a zone: a date is no instant); a patient's row
    (``first_event``, ``last_event``) alike."""
    out = dict(row)
    for key, precision in (("occurred_at", "occurred_precision"), ("ended_at", "ended_precision")):
        if isinstance(out.get(key), datetime) and out.get(precision) == "day":
            out[key] = out[key].date()
    for key in ("first_event", "last_event"):  # a patient's span (patients): its precision said once
        if key + "_precision" in out:
            if isinstance(out.get(key), datetime) and out[key + "_precision"] == "day":
                out[key] = out[key].date()
            del out[key + "_precision"]
    return out


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return json_time(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if hasattr(value, "model_dump"):
        return value.model_dump(mode="json")
    raise TypeError(f"cannot serialise {type(value).__name__}")


def check_target(option: str, target: Path) -> None:
    """A file an option writes (``--parquet OUT``) can be written, checked before a run that can
    be long: not ``-`` (only ``--csv`` prints), not a directory, in a directory that exists."""
    from timeline.errors import UsageError

    if str(target) == "-":
        raise UsageError(f"{option} -: only --csv can print to standard output; give a file")
    if target.is_dir():
        raise UsageError(f"{option} {target} is a directory")
    if not target.parent.is_dir():
        raise UsageError(f"{option} {target}: directory {target.parent} does not exist")


class ProgressBar:
    """A transient progress bar on stderr, only on a terminal: ``with ProgressBar(label) as
    update`` gives ``update(stage, fraction done)``, or None when stderr is not a terminal."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.bar: Any = None

    def __enter__(self) -> Any:
        if not sys.stderr.isatty():
            return None
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        # rich's live display would otherwise take over standard output while it runs, and
        # `history --all --csv` writes its rows there under the bar
        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn(),
            console=console(stderr=True), transient=True, redirect_stdout=False,
        )  # fmt: skip
        self.bar.start()
        task = self.bar.add_task(self.label, total=1.0)

        def update(stage: str, frac: float) -> None:
            self.bar.update(task, description=stage, completed=frac)

        return update

    def __exit__(self, *exc: object) -> None:
        if self.bar is not None:
            self.bar.stop()


_documents = 0  # JSON documents started on stdout by this process
_notes: list[str] = []  # notes said on stderr by this run, repeated in its JSON document


def note(text: str) -> None:
    """A note on stderr (`note: …`), and under ``notes`` in the JSON document the command
    writes, so that a script reading only the JSON sees it too."""
    console(stderr=True).print(f"[yellow]note:[/] {esc(text)}")  # wrapped on a terminal only (see console)
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


# A time the library gives as text for people (an explanation's instant and window bounds,
# ``2009-03-01 23:59:59.999999``; an event's time to the minute; its ``recorded_at``, ``… UTC``),
# under the keys it uses: written in JSON as every other time is
_TEXT_TIME = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?( UTC)?")
_TEXT_TIME_KEYS = frozenset({"instant", "from", "to", "occurred_at", "ended_at", "recorded_at"})


def _text_time(value: str, key: str) -> str:
    if _TEXT_TIME.fullmatch(value) is None:
        return value
    utc = value.endswith(" UTC")
    parsed = datetime.fromisoformat(value.removesuffix(" UTC"))
    return json_time(parsed, "recorded_at" if utc else key)


def _finite(value: Any, key: str | None = None) -> Any:
    """``value`` ready for JSON: a number that is not finite as a string, a time as
    :func:`json_time` writes it (under ``key``: a system time is UTC)."""
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, datetime):
        return json_time(value, key)
    if isinstance(value, str) and key in _TEXT_TIME_KEYS:
        return _text_time(value, key)
    if isinstance(value, dict):
        return {k: _finite(v, k if isinstance(k, str) else None) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v, key) for v in value]
    return value


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    no_color = bool(os.environ.get("NO_COLOR"))
    stream = sys.stderr if stderr else sys.stdout
    # On a terminal, text wraps at its width, between words. Piped output is read by people
    # too, and by scripts: a table is laid out in 200 columns, not squeezed into 80, and a line
    # of text (a note, a warning, a footnote) is never wrapped at all — it was cut at column
    # 200, mid-sentence, and a grep for it found half. A call may still ask for soft_wrap.
    tty = stream.isatty()
    return Console(
        stderr=stderr, no_color=no_color, highlight=False, soft_wrap=not tty, width=None if tty else 200
    )


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
    (``lines``: but for line breaks). rich.markup.escape's rule, without importing rich's
    markup (and its text, style and colour modules: ~0.01 s of `state`, which renders no markup
    through rich when its output is piped: cli.plain); tests/test_cli_plain.py holds the two
    to each other."""
    markup = _MARKUP_TAG.sub(r"\1\1\\\2", "" if text is None else visible(str(text), lines=lines))
    if markup.endswith("\\") and not markup.endswith("\\\\"):
        return markup + "\\"
    return markup


# what rich's markup reads as a tag (rich.markup.escape), with the backslashes before it
_MARKUP_TAG = re.compile(r"(\\*)(\[[a-z#/@][^[]*?])")


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
