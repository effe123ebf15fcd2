"""Notes and warnings wrap to a terminal's width, and are never wrapped when the output is not
a terminal: a line piped to a file or grep is whole (it was cut at column 200, rich's width
for piped output) (helper 72)."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from cli.output import clear_notes, console, note
from tests.support import run_cli

LONG = "the same quantity in another unit " * 12  # 408 characters, words of under 10


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class Pipe(io.StringIO):
    def isatty(self) -> bool:
        return False


@pytest.fixture(autouse=True)
def _no_notes_kept() -> None:
    clear_notes()


def test_a_note_piped_is_one_line_however_long(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stderr", Pipe())
    note(LONG)
    assert sys.stderr.getvalue() == f"note: {LONG}\n"  # type: ignore[attr-defined]


def test_a_note_on_a_terminal_wraps_at_its_width(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", Terminal())
    note(LONG)
    lines = sys.stderr.getvalue().splitlines()  # type: ignore[attr-defined]
    assert len(lines) > 1 and max(len(line) for line in lines) <= 80


def test_a_note_on_a_terminal_wraps_between_words(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setattr(sys, "stderr", Terminal())
    note(LONG)
    text = sys.stderr.getvalue()  # type: ignore[attr-defined]
    assert " ".join(line.strip() for line in text.splitlines()) == f"note: {LONG.strip()}"


def test_any_line_of_text_piped_is_not_wrapped(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdout", Pipe())
    console().print(f"  [1] footnote: {LONG}")
    assert sys.stdout.getvalue() == f"  [1] footnote: {LONG}\n"  # type: ignore[attr-defined]


def test_an_ingest_note_longer_than_200_columns_is_one_line_on_stderr(
    store_path: Path, tmp_path: Path
) -> None:
    run_cli("init", "--store", store_path)
    head = "event_id,patient_id,kind,occurred_at,code,value,unit"
    first, again = tmp_path / "a.csv", tmp_path / "b.csv"
    first.write_text(f"{head}\ncrp-{'x' * 150},P1,lab,2009-03-01,1988-5,10,mg/L\n", encoding="utf-8")
    again.write_text(f"{head}\ncrp-{'x' * 150},P1,lab,2009-03-01,1988-5,1,mg/dL\n", encoding="utf-8")
    run_cli("ingest", first, "--store", store_path, "--author", "t")
    result = run_cli("ingest", again, "--store", store_path, "--author", "t")
    [line] = [x for x in result.stderr.splitlines() if x.startswith("note:")]
    assert len(line) > 200 and line.endswith("the store keeps it as first given")
