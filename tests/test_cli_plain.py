"""cli.plain: `state`'s table and `explain`'s tree and tables, written without rich when standard
output is not a terminal, are the very text rich writes there (the same widths, wrapping,
cropping and box), and anything it cannot be sure of goes through rich."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.markup import escape
from rich.text import Text

from cli import plain
from cli.output import console, esc
from tests.support import subprocess_env


class Pipe(io.StringIO):
    encoding = "utf-8"

    def isatty(self) -> bool:
        return False


def through_rich(thing: object) -> str:
    """What cli.output's console writes of ``thing`` on a pipe (rich itself)."""
    out = Pipe()
    with contextlib.redirect_stdout(out):
        console().print(thing.to_rich() if isinstance(thing, plain.Table | plain.Tree) else thing)
    return out.getvalue()


def through_plain(thing: plain.Table | plain.Tree) -> str:
    return "\n".join(thing.lines()) + "\n"


# words as the commands' cells hold them: short and long, with the characters their reasons and
# units use (≤, →, —, …, µ, °), brackets that look like markup, and backslashes
WORD = st.one_of(
    st.sampled_from(
        [
            "no",
            "CRP",
            "within",
            "30",
            "days:",
            "≤",
            "→",
            "—",
            "…",
            "µmol/L",
            "°C",
            "[/]",
            "[bold]",
            "a\\",
            "x:y:",
        ]
    ),
    st.text(alphabet="abcdefghij_-.0123456789", min_size=1, max_size=60),
)
TEXT = st.lists(WORD, max_size=14).map(" ".join)
MARKUP = st.one_of(
    TEXT.map(esc),
    st.tuples(st.sampled_from(["red", "green", "yellow", "bold", "dim", "bold red"]), TEXT).map(
        lambda p: f"[{p[0]}]{esc(p[1])}[/]"
    ),
)
CELL = st.one_of(TEXT.map(plain.Cell), MARKUP)


@st.composite
def tables(draw: st.DrawFn) -> plain.Table:
    columns = draw(st.lists(TEXT.map(esc), min_size=1, max_size=7))
    table = plain.Table(title=draw(st.none() | TEXT.map(esc) | TEXT.map(plain.Cell)), title_justify="left")
    for header in columns:
        table.add_column(header)
    for _ in range(draw(st.integers(0, 6))):
        table.add_row(*draw(st.lists(CELL, min_size=len(columns), max_size=len(columns))))
    return table


@given(tables())
@settings(max_examples=300, deadline=None)
def test_a_table_is_written_as_rich_writes_it_on_a_pipe(table: plain.Table) -> None:
    try:
        text = through_plain(table)
    except plain.NotPlain:  # a column with no room inside its padding: through rich
        return
    assert text == through_rich(table)


def test_a_table_wider_than_the_page_wraps_its_widest_column_as_rich_does() -> None:
    table = plain.Table(title="p at d", title_justify="left")
    for header in ("rule", "value", "reason / detail"):
        table.add_column(header)
    table.add_row(plain.Cell("ms_score"), "[yellow]unknown[/]", plain.Cell("no LDH within 3 days; " * 12))
    table.add_row(plain.Cell("x" * 250), "1 ≤ 1", plain.Cell(""))
    assert len(through_plain(table).splitlines()) > 6  # wrapped and folded
    assert through_plain(table) == through_rich(table)


def test_a_cell_title_wider_than_its_table_is_cut_at_its_width_and_a_narrower_one_padded() -> None:
    """As rich writes a cli.output.cell title to a pipe (history's): not wrapped, cut or padded."""
    for title in ("no no", "P001: intervals"):
        table = plain.Table(title=plain.Cell(title), title_justify="left")
        table.add_column("value")
        table.add_row(plain.Cell("true"))
        assert through_plain(table) == through_rich(table)
        assert len(through_plain(table).splitlines()[0]) == len("value") + 4


def test_a_markup_word_longer_than_its_column_is_cut_with_an_ellipsis_as_rich_cuts_it() -> None:
    table = plain.Table(title=None)
    for header in ("rule", "value"):
        table.add_column(header)
    table.add_row(plain.Cell("y" * 150), "[red]" + "z" * 150 + "[/]")
    assert "…" in through_plain(table)
    assert through_plain(table) == through_rich(table)


@st.composite
def trees(draw: st.DrawFn, depth: int = 0) -> plain.Tree:
    label = draw(st.lists(MARKUP, min_size=1, max_size=3).map("\n".join))
    tree = plain.Tree(label)
    if depth < 4:
        for child in draw(st.lists(trees(depth + 1), max_size=3)):
            tree.children.append(child)
    return tree


@given(trees())
@settings(max_examples=200, deadline=None)
def test_a_tree_is_written_as_rich_writes_it_on_a_pipe(tree: plain.Tree) -> None:
    try:
        text = through_plain(tree)
    except plain.NotPlain:  # a label ending in a line break: through rich
        return
    assert text == through_rich(tree)


def test_a_tree_line_longer_than_the_page_is_cut_at_its_width_as_rich_cuts_it() -> None:
    tree = plain.Tree("root")
    tree.add("child").add("events seq " + ", ".join(str(n) for n in range(100, 200)))
    assert max(len(line) for line in through_plain(tree).splitlines()) == plain.WIDTH
    assert through_plain(tree) == through_rich(tree)


@given(
    st.lists(
        st.one_of(TEXT.map(esc), st.sampled_from(["[bold]", "[/]", "[dim]", "[yellow]", "\\", "\\[x]"])),
        max_size=10,
    ).map("".join)
)
@settings(max_examples=300, deadline=None)
def test_markup_reads_as_rich_reads_it(markup: str) -> None:
    try:
        text = plain.markup_text(markup)
    except plain.NotPlain:  # a closing tag that closes nothing: rich raises, plain defers to it
        return
    assert text == Text.from_markup(markup).plain


def test_markup_with_an_emoji_code_goes_through_rich() -> None:
    with pytest.raises(plain.NotPlain):
        plain.markup_text("fever :thumbs_up: gone")
    assert plain.markup_text("at 12:30:00") == "at 12:30:00"  # :30: is no emoji


def test_a_print_that_is_not_plain_is_written_by_rich() -> None:
    tree = plain.Tree("rash :smile: resolved")
    out = Pipe()
    with contextlib.redirect_stdout(out):
        plain.Console().print(tree)
    assert out.getvalue() == through_rich(tree)
    assert "😄" in out.getvalue()


def test_a_character_wider_than_one_cell_goes_through_rich() -> None:
    with pytest.raises(plain.NotPlain):
        plain.Table(columns=["患者"]).lines()


@given(st.text(alphabet=st.sampled_from("ab[]/\\#@ ez"), max_size=30))
def test_escaped_text_is_what_rich_escapes(text: str) -> None:
    assert esc(text) == escape(text)


def test_plain_output_only_on_a_utf8_pipe_that_rich_would_not_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.delenv("TTY_COMPATIBLE", raising=False)
    monkeypatch.setattr(sys, "stdout", Pipe())
    assert plain.plain_output()
    monkeypatch.setenv("FORCE_COLOR", "1")
    assert not plain.plain_output()


def test_plain_output_not_on_a_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(Pipe):
        def isatty(self) -> bool:
            return True

    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setattr(sys, "stdout", Terminal())
    assert not plain.plain_output()


def test_piped_state_and_explain_do_not_import_rich_console(example_store: Path) -> None:
    env = subprocess_env()
    for args in (["state", "P001", "--at", "2010-01-01"], ["explain", "P001", "fever", "--at", "2010-01-01"]):
        code = (
            "import sys; from cli.fast import plain_command; from cli.exits import run; "
            f"sys.argv = ['timeline', *{args!r}, '--store', {str(example_store)!r}]; "
            "c = run(plain_command(sys.argv[1:]), ()); "
            "print('rich.console' in sys.modules, c, file=sys.stderr)"
        )
        done = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert done.stderr.strip().splitlines()[-1] == "False 0", done.stderr
        assert "P001 at 2010-01-01" in done.stdout


def test_plain_output_not_with_a_rich_it_was_not_checked_against(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    monkeypatch.setattr(sys, "stdout", Pipe())
    monkeypatch.setattr(plain, "CHECKED_RICH", ("99.",))
    assert not plain.plain_output()


def test_richs_version_is_read_from_its_dist_info_without_importlib_metadata(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The version plain output is checked against comes from the name of rich's dist-info
    directory beside its package (importlib.metadata's scan of the import path cost ~0.5–2.5
    ms of `state`'s start): the version importlib.metadata gives."""
    from importlib import metadata

    installed = metadata.version("rich")
    monkeypatch.setattr(metadata, "version", lambda name: pytest.fail(f"metadata.version({name!r})"))
    assert plain._rich_version() == installed
    assert plain._rich_checked() is installed.startswith(plain.CHECKED_RICH)


def test_richs_version_without_its_dist_info_beside_it_is_importlib_metadatas(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from importlib import metadata

    installed = metadata.version("rich")
    monkeypatch.setattr(plain.os, "listdir", lambda path: [])
    assert plain._rich_version() == installed
