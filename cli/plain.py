"""`state`'s table and `explain`'s tree and tables written without rich, when what rich would
write is plain text: the same characters, byte for byte, without importing rich's console.

Importing rich's console and table and laying a table out through its segments and styles cost
`timeline state` ~0.035 s CPU of its ~0.25 s (the 10k store's patient with most events: ~0.022 s
of imports, ~0.014 s for its 52 rows); `explain` as much for its tree. On standard output that
is not a terminal rich writes no colour and no style, only text, the table's box and the tree's
guides: this module lays them out as rich does (rich 15, :data:`CHECKED_RICH`: the same column widths, the same
wrapping of a cell's words, the same cropping of a tree's lines at 200 columns), from the same
calls (``Table``, ``add_column``, ``add_row``, ``Tree``, ``add``, ``print``).

It is used only where that output is certain (:func:`plain_output`): standard output not a
terminal, nothing in the environment that makes rich treat it as one (``FORCE_COLOR``,
``TTY_COMPATIBLE``), the rich it was checked against, UTF-8 (else rich draws an ASCII box), not Windows (rich's legacy console),
not Jupyter. Any text it cannot be sure of — a character that is not one cell wide by rich's own
table of them, a control character, markup it does not read as rich does, an emoji code
(``:smile:`` becomes 😄 in rich's markup) — makes that one ``print`` go through rich instead:
each recorded table or tree is handed to rich as the same calls. tests/test_cli_plain.py holds
the two to each other on generated tables, trees and markup (the layout uses rich's own
``_wrap``, ``_ratio`` and ``cells``: run them before adding a version to :data:`CHECKED_RICH`).
"""

from __future__ import annotations

import os
import re
import sys
from dataclasses import dataclass, field
from typing import Any

# rich's box HEAVY_HEAD (a table's default) and its tree's guides (rich.tree.Tree.TREE_GUIDES[0])
_TOP, _HEAD, _HEAD_RULE, _BODY, _BOTTOM = (
    ("┏", "━", "┳", "┓"),
    "┃",
    ("┡", "━", "╇", "┩"),
    "│",
    ("└", "─", "┴", "┘"),
)
_SPACE, _CONTINUE, _FORK, _END = "    ", "│   ", "├── ", "└── "
WIDTH = 200  # cli.output.console's width when standard output is not a terminal

# rich.markup's tags, and an emoji code as rich.markup.render replaces it (rich._emoji_replace)
_TAGS = re.compile(r"""((\\*)\[([a-z#/@][^[]*?)])""")
_EMOJI = re.compile(r"(:(\S*?)(?:(?:\-)(emoji|text))?:)")
# control characters: rich strips some (BEL, BS, VT, FF, CR) from text; cli.output.visible shows
# them all as escapes, so one here is text this module was not written for
_CONTROL = re.compile("[\x00-\x09\x0b-\x1f\x7f]")
_NAMES = re.compile(r"[a-z ]+")  # the tags cli.show writes: style names (bold, dim, bold red…)


class NotPlain(Exception):
    """Text that rich might not write as it is: the print goes through rich."""


def plain_output() -> bool:
    """Whether rich's console (cli.output.console) would write standard output as plain text:
    no colour or style, a table laid out in :data:`WIDTH` columns, a line of text as it is."""
    if os.environ.get("FORCE_COLOR") is not None or os.environ.get("TTY_COMPATIBLE", "") in ("0", "1"):
        return False
    import builtins

    if sys.platform == "win32" or hasattr(builtins, "get_ipython"):
        return False  # pragma: no cover - rich's legacy Windows console, Jupyter
    if not _rich_checked():
        return False
    out = sys.stdout
    if out is None:
        return False
    try:
        if out.isatty():
            return False
    except ValueError:
        return False
    encoding = (getattr(out, "encoding", None) or "utf-8").lower()
    return encoding.startswith("utf")  # else rich draws the box in ASCII


# the rich versions whose layout this module was held to (tests/test_cli_plain.py); another
# rich (pyproject allows 13 and later) writes through itself
CHECKED_RICH = ("15.",)


def _rich_checked() -> bool:
    version = _rich_version()
    return version is not None and version.startswith(CHECKED_RICH)


def _rich_version() -> str | None:
    """The installed rich's version: from the name of its ``rich-VERSION.dist-info`` directory
    beside the package (~0.1 ms: one listing of the directory), else (none there, or more than
    one) from importlib.metadata, which finds it by scanning every entry of the import path
    (~0.5–2.5 ms of `state`'s start); None when rich is not installed."""
    from importlib.util import find_spec

    spec = find_spec("rich")
    places = (spec.submodule_search_locations or []) if spec is not None else []
    if len(places) == 1:
        beside = os.path.dirname(places[0])
        try:
            found = [n for n in os.listdir(beside) if n.startswith("rich-") and n.endswith(".dist-info")]
        except OSError:
            found = []
        if len(found) == 1:
            return found[0].removeprefix("rich-").removesuffix(".dist-info")
    from importlib import metadata

    try:
        return metadata.version("rich")
    except metadata.PackageNotFoundError:  # pragma: no cover - rich is a dependency
        return None


def markup_text(markup: str) -> str:
    """The text rich's markup renders ``markup`` to (its tags dropped, escaped brackets and
    backslashes as rich reads them); :class:`NotPlain` for what rich might render otherwise."""
    out: list[str] = []
    opened: list[str] = []

    def text(chunk: str) -> None:
        for m in _EMOJI.finditer(chunk):
            from rich._emoji_codes import EMOJI  # only where a code could be one

            if m.group(2).lower() in EMOJI:
                raise NotPlain(m.group(1))
        out.append(chunk)

    if "[" not in markup:
        text(markup)
    else:
        position = 0
        for m in _TAGS.finditer(markup):
            full, escapes, tag = m.groups()
            start, end = m.span()
            if start > position:
                text(markup[position:start].replace("\\[", "["))
            if escapes:
                backslashes, escaped = divmod(len(escapes), 2)
                if backslashes:
                    text("\\" * backslashes)
                if escaped:
                    text(full[len(escapes) :].replace("\\[", "["))
                    position = end
                    continue
            position = end
            if tag.startswith("/"):
                name = tag[1:].strip()
                if name:
                    if name not in opened:
                        raise NotPlain(tag)  # rich: a MarkupError
                    del opened[len(opened) - 1 - opened[::-1].index(name)]
                elif not opened:
                    raise NotPlain(tag)
                else:
                    opened.pop()
            elif _NAMES.fullmatch(tag) and tag.strip() == tag and "  " not in tag:
                opened.append(tag)
            else:
                raise NotPlain(tag)  # a link, a handler, a colour by number…: as rich reads it
        if position < len(markup):
            text(markup[position:].replace("\\[", "["))
    return _checked("".join(out))


def _checked(text: str) -> str:
    """``text`` when every character of it is one cell wide by rich's own table (so that its
    length is its width, and rich splits it between any two characters) and none is a control
    character but a line break."""
    from rich.cells import _is_single_cell_widths, get_character_cell_size

    body = text.replace("\n", "")
    if _is_single_cell_widths(body):
        return text
    # rich joins a character to the next over a zero-width joiner or variation selector 16
    if _CONTROL.search(body) or "\u200d" in body or "\ufe0f" in body:
        raise NotPlain(text)
    if any(get_character_cell_size(c) != 1 for c in set(body)):
        raise NotPlain(text)
    return text


@dataclass
class Cell:
    """A table cell as cli.output.cell makes it: text never read as markup, a long word folded."""

    text: str


def _cell_text(value: Any) -> tuple[str, bool]:
    """A cell's text and whether a word longer than its column is folded (a :class:`Cell`) or cut
    with an ellipsis (markup, as rich's column overflows)."""
    if isinstance(value, Cell):
        text, fold = _checked(value.text), True
    elif isinstance(value, str):
        text, fold = markup_text(value), False
    else:
        raise NotPlain(repr(value))
    if "\n" in text:  # a cell over lines: not what cli.show makes
        raise NotPlain(text)
    return text, fold


def _measure(text: str) -> tuple[int, int]:
    """rich.text.Text.__rich_measure__ of single-cell text: its longest word, its longest line."""
    lines = text.splitlines()
    longest = max(map(len, lines)) if lines else 0
    words = text.split()
    return (max(map(len, words)) if words else longest), longest


def _wrap(text: str, width: int, fold: bool) -> list[str]:
    """rich.text.Text.wrap, justified left, of single-cell text: its lines at ``width`` columns,
    each padded to it."""
    from rich._wrap import divide_line

    if width < 1 and text:  # no room for a character inside the padding
        raise NotPlain(text)
    out: list[str] = []
    for line in text.split("\n"):
        offsets = divide_line(line, width, fold=fold)
        pieces = [line[a:b] for a, b in zip([0, *offsets], [*offsets, len(line)], strict=True)]
        for piece in pieces:
            if len(piece) > width:  # Text.rstrip_end: whitespace beyond the width
                trailing = len(piece) - len(piece.rstrip())
                piece = piece[: len(piece) - min(trailing, len(piece) - width)]
            if len(piece) > width:  # Text.truncate
                piece = piece[:width] if fold else piece[: width - 1] + "…"
            out.append(piece.ljust(width))
    return out


@dataclass
class Table:
    """The calls of a rich.table.Table as cli.show makes them (a title, columns by name, rows);
    :meth:`lines` lays it out as rich does."""

    # markup (cli.show's tables), or a Cell: cli.output.cell's text (`history`'s table), which
    # rich cuts at the table's width and pads to it
    title: str | Cell | None = None
    title_justify: str = "left"
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)

    def add_column(self, header: str) -> None:
        self.columns.append(header)

    def add_row(self, *cells: Any, style: str | None = None) -> None:
        """``style``: a row's style (`events` dims superseded versions), which plain text does
        not show."""
        self.rows.append(cells)

    def to_rich(self) -> Any:
        from rich.table import Table as RichTable
        from rich.text import Text

        title = Text(self.title.text, overflow="fold") if isinstance(self.title, Cell) else self.title
        table = RichTable(title=title, title_justify=self.title_justify)  # type: ignore[arg-type]
        for header in self.columns:
            table.add_column(header)
        for row in self.rows:
            table.add_row(*(Text(c.text, overflow="fold") if isinstance(c, Cell) else c for c in row))
        return table

    def lines(self, max_width: int = WIDTH) -> list[str]:
        if self.title_justify != "left" or not self.columns:
            raise NotPlain("layout")
        header = [(markup_text(h), False) for h in self.columns]
        body = [
            [_cell_text(c) for c in row] + [("", False)] * (len(self.columns) - len(row)) for row in self.rows
        ]
        widths = self._widths([header, *body], max_width - (len(self.columns) + 1))
        if isinstance(self.title, Cell):
            # rich's console writes a pipe without wrapping (soft wrap): a text that folds is
            # cut at the table's width instead, and padded to it
            title = _checked(self.title.text)
            if "\n" in title:  # a title over lines: not what cli.engine makes
                raise NotPlain(title)
            width = sum(widths) + len(widths) + 1
            out = [title[:width].ljust(width)] if title else []
        else:
            out = markup_text(self.title).split("\n") if self.title else []  # never wrapped
        out.append(_TOP[0] + _TOP[2].join(_TOP[1] * w for w in widths) + _TOP[3])
        for i, row in enumerate([header, *body]):
            cells = [_wrap(text, w - 2, fold) for (text, fold), w in zip(row, widths, strict=True)]
            height = max(len(c) for c in cells)
            # a header's cells are aligned at the bottom, a row's at the top
            cells = [
                ([" " * (w - 2)] * (height - len(c)) + c)
                if i == 0
                else (c + [" " * (w - 2)] * (height - len(c)))
                for c, w in zip(cells, widths, strict=True)
            ]
            bar = _HEAD if i == 0 else _BODY
            for n in range(height):
                out.append(bar + bar.join(f" {c[n]} " for c in cells) + bar)
            if i == 0:
                out.append(
                    _HEAD_RULE[0] + _HEAD_RULE[2].join(_HEAD_RULE[1] * w for w in widths) + _HEAD_RULE[3]
                )
        out.append(_BOTTOM[0] + _BOTTOM[2].join(_BOTTOM[1] * w for w in widths) + _BOTTOM[3])
        return out

    @staticmethod
    def _widths(rows: list[list[tuple[str, bool]]], max_width: int) -> list[int]:
        """rich.table.Table._calculate_column_widths of a table that is not expanded, each
        column's cells padded by one space each side: every column as wide as its widest cell,
        the widest ones narrowed (to their longest word and below) while the table is wider
        than ``max_width``."""
        from rich._ratio import ratio_reduce

        if max_width < 1:
            raise NotPlain("width")

        columns = range(len(rows[0]))
        widths = [Table._column(rows, i, max_width)[1] or 1 for i in columns]
        if sum(widths) > max_width:
            excess = sum(widths) - max_width
            while sum(widths) and excess > 0:  # Table._collapse_widths
                widest = max(widths)
                second = max((w if w != widest else 0) for w in widths)
                ratios = [1 if w == widest else 0 for w in widths]
                if not second - widest or not any(ratios):
                    break
                widths = ratio_reduce(excess, ratios, [min(excess, widest - second)] * len(widths), widths)
                excess = sum(widths) - max_width
            if sum(widths) > max_width:
                widths = ratio_reduce(sum(widths) - max_width, [1] * len(widths), widths, widths)
            widths = [Table._column(rows, i, w)[1] or 0 for i, w in zip(columns, widths, strict=True)]
        return widths

    @staticmethod
    def _column(rows: list[list[tuple[str, bool]]], index: int, limit: int) -> tuple[int, int]:
        """rich.table.Table._measure_column: the column's narrowest and widest width within
        ``limit``, from its cells' (Padding's and Measurement.get's bounds, as rich applies them)."""
        if limit < 1:
            return 0, 0
        lo, hi = 0, 0
        for row in rows:
            text = row[index][0]
            inner = limit - 2
            if inner < 1:
                a, b = limit, limit
            else:
                a, b = _measure(text)
                a, b = min(max(0, min(a, b)), inner), min(max(0, b), inner)
                a, b = min(a + 2, limit), min(b + 2, limit)
            lo, hi = max(lo, a), max(hi, b)
        return min(lo, limit), min(hi, limit)


@dataclass
class Tree:
    """The calls of a rich.tree.Tree as cli.show makes them (a label, children added);
    :meth:`lines` lays it out as rich does: each label's lines after the guides, cut at the
    width (a piped console does not wrap them)."""

    label: str
    children: list[Tree] = field(default_factory=list)

    def add(self, label: str) -> Tree:
        child = Tree(label)
        self.children.append(child)
        return child

    def to_rich(self) -> Any:
        from rich.tree import Tree as RichTree

        def grow(node: Tree, into: Any) -> None:
            for child in node.children:
                grow(child, into.add(child.label))

        tree = RichTree(self.label)
        grow(self, tree)
        return tree

    def lines(self, max_width: int = WIDTH) -> list[str]:
        out: list[str] = []
        # the guides before a node's first line; each level's guide after it (rich.tree)
        stack: list[tuple[Tree, list[str]]] = [(self, [])]
        while stack:
            node, prefix = stack.pop()
            width = max_width - sum(len(p) for p in prefix)
            label = markup_text(node.label)
            if label.endswith("\n"):  # rich's last, empty line: not what cli.show makes
                raise NotPlain(label)
            if width < 1:
                raise NotPlain("width")
            # after a label's first line, and before its children's guides, the node's own
            # guide continues down (├── → │) or ends (└── → blank)
            inherited = [*prefix[:-1], _SPACE if prefix[-1] == _END else _CONTINUE] if prefix else []
            for n, line in enumerate(label.split("\n")):
                out.append("".join(prefix if n == 0 else inherited) + line[:width])
            last = len(node.children) - 1
            for i, child in reversed(list(enumerate(node.children))):
                stack.append((child, [*inherited, _END if i == last else _FORK]))
        return out


class Console:
    """Writes what cli.show prints to standard output: a :class:`Table`, a :class:`Tree` or a
    line of markup, as plain text when it is (:class:`NotPlain`: through rich's console)."""

    def print(self, thing: Any) -> None:
        try:
            if isinstance(thing, Table | Tree):
                text = "\n".join(thing.lines())
            elif isinstance(thing, str):
                text = markup_text(thing)
            else:
                raise NotPlain(repr(thing))
        except NotPlain:
            from cli.output import console

            console().print(thing.to_rich() if isinstance(thing, Table | Tree) else thing)
            return
        sys.stdout.write(text + "\n")
