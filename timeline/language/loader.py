"""Rule files (YAML) → checked syntax trees, with every problem reported at once.

Loading never executes anything from a rule file. Problems carry ``file:line:column``:
YAML syntax, unknown operators, rules, codes, kinds or parameters (with a did-you-mean),
cycles between rules, type errors (a boolean compared with a number) and units that do not
convert (ferritin compared with U/L).
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from timeline import codes
from timeline.errors import TimelineError, UsageError
from timeline.language import ast
from timeline.language.durations import (
    DURATION_WORDS,
    EXAMPLES,
    Duration,
    DurationError,
    DurationTooLong,
    close_matches,
    misspelt,
)
from timeline.language.durations import english as durations_english
from timeline.language.examples import event_problems
from timeline.moments import parse_at
from timeline.units import (
    Conversion,
    UnitError,
    by_molar_mass,
    combine,
    conversion,
    is_valid,
    ucum_hint,
    ucum_spelling,
)
from timeline.units import parse as parse_unit

if TYPE_CHECKING:
    import yaml

Path_ = tuple[str | int, ...]
ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
# params.yaml's key (and --param NAME=VALUE's rule) for a value every rule with the parameter takes
ALL_RULES = "all_rules"

BUILTIN_DIR = Path(__file__).resolve().parent.parent.parent / "rules"


@dataclass(frozen=True)
class Problem:
    file: str
    line: int
    column: int
    message: str

    def __str__(self) -> str:
        if self.line == 0:  # about the whole file (or directory, or --param), not a place in it
            return f"{self.file}: {self.message}"
        return f"{self.file}:{self.line}:{self.column}: {self.message}"


@dataclass
class RuleError(TimelineError):
    """Rule files failed to load; carries every problem found."""

    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # shown after the problems, not counted
    exit_code = 8
    subject = "rule files have"

    def __post_init__(self) -> None:
        if self.problems and all(p.file == "--param" for p in self.problems):
            # a value given on the command line, not a file: a usage error (exit 2)
            self.exit_code = 2
            self.subject = "--param has"
        super().__init__(self.summary())

    def summary(self) -> str:
        n = len(self.problems)
        return f"{self.subject} {n} problem{'s' if n != 1 else ''}"

    def details(self) -> list[str]:
        return [str(p) for p in self.problems] + self.notes


@dataclass
class CodesFileError(RuleError):
    """A codes file with problems, or codes a store cannot take (exit 8, as a rule file)."""

    subject = "codes file has"


# ---- YAML with positions ------------------------------------------------------------------


def _yaml_loader() -> Any:
    """libyaml's parser (shipped in PyYAML's wheels) is ~10× faster than the pure-Python one and
    keeps line/column marks; fall back when PyYAML was built without it. Imported here, not at
    the top: a rule set read from the cache (``timeline.language.cache``) needs no YAML."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Values in one YAML document, aliases expanded. A few nested aliases (`&a [*b, *b, …]`) expand
# exponentially: nine levels of nine made `cohort check` run out of memory. The sJIA pack's
# largest file has a few hundred.
MAX_YAML_VALUES = 100_000


# An expression's nesting (keys and list positions from the top of the file) and the items of
# one operator. The sJIA pack's deepest definition has 6 operators nested, its widest operator 8
# items; past these the evaluators would exhaust Python's recursion or DuckDB's expression
# depth (a crash, not a message).
MAX_DEPTH = 150
MAX_ITEMS = 250


_PLAIN_TAGS = ("tag:yaml.org,2002:map", "tag:yaml.org,2002:seq")


class _TooLarge(Exception):
    def __init__(self, path: Path_) -> None:
        self.path = path


class _Doc:
    """A parsed YAML document and the line/column of every value in it."""

    def __init__(self, file: str, text: str, problems: list[Problem]) -> None:
        self.file = file
        self.marks: dict[Path_, tuple[int, int]] = {(): (1, 1)}
        self.key_marks: dict[Path_, tuple[int, int]] = {}  # where a mapping's key is written
        self.problems = problems
        self.data: Any = None
        import yaml

        self._mapping, self._sequence = yaml.MappingNode, yaml.SequenceNode
        self._budget = MAX_YAML_VALUES
        try:
            loader = _yaml_loader()(text)
            try:
                node = loader.get_single_node()
                if node is not None:
                    self.data = self._walk(node, (), loader)
            finally:
                loader.dispose()
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problems.append(Problem(file, line, col, f"YAML syntax error: {_yaml_problem(exc, text)}"))
        except yaml.YAMLError as exc:
            problems.append(Problem(file, 1, 1, f"YAML error: {exc}"))
        except RecursionError:  # an alias inside itself (&x {not: *x}), or absurd nesting
            self.data = None
            problems.append(
                Problem(file, 1, 1, "a YAML alias (*name) contains itself, or the file is nested too deeply")
            )
        except _TooLarge as exc:
            self.data = None
            line, col = self.where(exc.path[:1])  # the top-level key being read
            problems.append(
                Problem(
                    file, line, col,
                    f"more than {MAX_YAML_VALUES:,} values once its aliases (*name) are expanded; not read",
                )
            )  # fmt: skip

    def _walk(self, node: yaml.Node, path: Path_, loader: Any) -> Any:
        self._budget -= 1
        if self._budget < 0:
            raise _TooLarge(path)
        self.marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
        if isinstance(node, self._mapping | self._sequence) and node.tag not in _PLAIN_TAGS:
            # a scalar's tag is refused by the safe constructor; a collection is walked here
            line, col = self.marks[path]
            self.problems.append(Problem(self.file, line, col, f"YAML tag {node.tag!r} is not allowed"))
            return None
        if isinstance(node, self._mapping):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = str(loader.construct_object(key_node))
                if key in out:
                    self.problems.append(
                        Problem(
                            self.file,
                            key_node.start_mark.line + 1,
                            key_node.start_mark.column + 1,
                            f"duplicate key {key!r}",
                        )
                    )
                self.key_marks[(*path, key)] = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
                out[key] = self._walk(value_node, (*path, key), loader)
            return out
        if isinstance(node, self._sequence):
            return [self._walk(v, (*path, i), loader) for i, v in enumerate(node.value)]
        try:
            value = loader.construct_object(node)
        except ValueError as exc:  # YAML read it as a date that does not exist (2009-13-01)
            line, col = self.marks[path]
            self.problems.append(Problem(self.file, line, col, f"{node.value!r} is not a valid date: {exc}"))
            return node.value
        if isinstance(value, datetime | date):
            return value.isoformat()
        return value

    def where(self, path: Path_) -> tuple[int, int]:
        p = tuple(path)
        while p and p not in self.marks:
            p = p[:-1]
        return self.marks.get(p, (1, 1))

    def key_where(self, path: Path_) -> tuple[int, int]:
        """Where the key of ``path`` is written (its value may begin on a later line)."""
        return self.key_marks.get(tuple(path)) or self.where(path)

    def reported(self, path: Path_) -> bool:
        """Whether a problem is already recorded at ``path``'s place (a refused YAML tag)."""
        line, col = self.where(path)
        return any((p.file, p.line, p.column) == (self.file, line, col) for p in self.problems)


def _fmt(path: Path_) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


# words other languages and tools use for a comparison or a key of this one
_SPELLINGS = {
    "gte": "ge", ">=": "ge", "=>": "ge", "lte": "le", "<=": "le", "=<": "le", ">": "gt", "<": "lt",
    "==": "eq", "=": "eq", "equals": "eq", "!=": "ne", "neq": "ne", "<>": "ne",
    "within": "window", "window": "within",
}  # fmt: skip


# the words of logic other languages write, and how this one writes them: "did you mean"
# by spelling would turn `and` into any and `none` into ne
_LOGIC = {
    **dict.fromkeys(("and", "&&", "&", "both", "every", "all_of"), ("AND", "all: [...]")),
    **dict.fromkeys(("or", "||", "|", "either", "some", "one_of"), ("OR", "any: [...]")),
    **dict.fromkeys(("none", "none_of", "neither", "nor"), ("NONE OF", "not: {any: [...]}")),
    **dict.fromkeys(("!", "~", "negate", "false_if", "is_not"), ("NOT", "not: {...}")),
    **dict.fromkeys(("nand",), ("NOT AND", "not: {all: [...]}")),
}


def _operator_hint(op: str) -> str:
    """What to write for an unknown operator: the language's way of a word of logic, in any
    case (``AND``), an operator written in capitals (``ALL``), else a near spelling."""
    word = op.strip().lower()
    if word in _LOGIC:
        name, form = _LOGIC[word]
        return f": the language writes {name} as {form}"
    if word in OPERATORS:
        return f": operators are written in lowercase, {word!r}"
    return did_you_mean(op, OPERATORS)


def did_you_mean(word: str, pool: Iterable[str]) -> str:
    choices = list(pool)
    if _SPELLINGS.get(word) in choices:
        return f" (did you mean {_SPELLINGS[word]!r}?)"
    close = close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class _Fail(Exception):
    """Abandon parsing of one subtree; the problem is already recorded."""


# ---- operators -----------------------------------------------------------------------------

AGGREGATES = ("count", "exists", "min", "max", "mean", "sum", "first", "last")
COMPARISONS = ("gt", "ge", "lt", "le", "eq", "ne")
ARITH: dict[str, Any] = {
    "add": "add",
    "sub": "sub",
    "mul": "mul",
    "div": "div",
    "min_of": "min",
    "max_of": "max",
}
OPERATORS = (
    "const", "param", "rule", "latest", *AGGREGATES, "finding_present", "normal", "on_drug", "daily_dose", "age",
    "time_since", *COMPARISONS, "all", "any", "not", "at_least", "count_true", *ARITH, "clip",
    "coalesce", "unknown_unless", "pct_change", "at_anchor", "held_for", "in_episode", "episode_count",
)  # fmt: skip
SELECTOR_KEYS = ("kind", "code", "drug", "not_drug", "dose_unit", "present", "where", "any_of")
PARAM_KEYS = ("default", "unit", "description")
EXPECTATION_KEYS = ("at", "value", "reason_contains", "patient_id")
EXAMPLE_KEYS = ("name", "events", "expect", "params")
RULE_KEYS = (
    "id",
    "version",
    "description",
    "citation",
    "status",
    "meaning",
    "unit",
    "params",
    "events",
    "define",
    "examples",
)
# keys a rule file's author may write for one of RULE_KEYS that spelling does not suggest
RULE_KEY_SYNONYMS = {
    "source": "citation", "sources": "citation", "reference": "citation", "references": "citation",
    "ref": "citation", "cite": "citation", "definition": "define", "def": "define",
    "expression": "define", "parameters": "params", "tests": "examples", "selectors": "events",
    "name": "id", "state": "status",
}  # fmt: skip
NUMERIC_FIELDS = ("value", "ref_low", "ref_high", "dose", "active_joints", "limited_joints", "grade")
# the unit of a value whose type is unknown: a sub-expression with a problem (reported), or one
# whose type is wrong (reported where it is read); nothing built on it is reported again
UNREAD = "?"
_QUANTITY = re.compile(r"^\s*(-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)\s+(\S+)\s*$")
_WHOLE = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([A-Za-z]+)\s*$")  # a number and a word
_WORDED = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*([^\W\d_]+)\s*$")  # ... in any alphabet: 30 días


class _RuleParser:
    """Turns one rule document into a :class:`ast.Rule`, recording problems."""

    def __init__(self, doc: _Doc, next_id: list[int], book: codes.CodeBook = codes.BUILTIN) -> None:
        self.doc = doc
        self.next_id = next_id
        self.book = book
        self.rule_id = "?"
        self.params: dict[str, ast.ParamSpec] = {}
        self.selectors: dict[str, ast.Selector] = {}
        self.refs: list[tuple[str, Path_]] = []
        # rules read at other parameter values: (variant id, rule id, values as written, where)
        self.variants: list[tuple[str, str, dict[str, Any], Path_]] = []
        # duration parameters used as lengths or windows: name → (length kind, where used)
        self.lengths: dict[str, tuple[str, str]] = {}
        # duration parameters that start or end a window: name → the windows, with their other bound
        self.bounds: dict[str, list[ast.WindowBound]] = {}
        self.bad_params: set[str] = set()  # declared, but with a problem already reported
        # parameters read where a value goes ({param: p}: name → where first) and those read
        # as a duration (within:, window:…) or passed on in a with: — a duration parameter
        # read only as a value is a quantity of time (6 months: 6 mo)
        self.value_uses: dict[str, Path_] = {}
        self.other_uses: set[str] = set()
        # text parameters (a default that is no number, quantity, duration or boolean): a
        # drug's name, valid only if the definition names a drug by it; name → why it is not
        # another kind of value (reported if no drug is named by it)
        self.text_params: dict[str, str] = {}
        self.drug_uses: set[str] = set()  # parameters named where a drug is
        # A rule file's definition is read whole: a sub-expression with a problem stands as a
        # value of no known type (UNREAD), so that the problems of the others, their types
        # included, are found in the same run (a cohort file's expressions fail as a whole)
        self.partial = False
        self.broken = False  # some sub-expression had a problem

    # -- problems
    def fail(self, path: Path_, message: str) -> _Fail:
        line, col = self.doc.where(path)
        self.doc.problems.append(Problem(self.doc.file, line, col, message))
        return _Fail()

    def nid(self) -> int:
        self.next_id[0] += 1
        return self.next_id[0]

    def gather(self, *parts: Callable[[], Any]) -> list[Any]:
        """Each part read, so that a problem in one does not hide those of the others; fails
        once all are read if any did."""
        out: list[Any] = []
        failed = False
        for part in parts:
            try:
                out.append(part())
            except _Fail:
                failed = True
        if failed:
            raise _Fail()
        return out

    def sub(self, data: Any, path: Path_) -> ast.Node:
        """A sub-expression; in a rule file one with a problem (reported) stands as UNREAD."""
        try:
            return self.expr(data, path)
        except _Fail:
            if not self.partial:
                raise
            self.broken = True
            return ast.Const(nid=self.nid(), path=_fmt(path), value=0.0, unit=UNREAD)

    # -- the rule
    def rule(self, data: Any, source: str) -> ast.Rule | None:
        self.partial = True
        if not isinstance(data, dict):
            self.fail((), "a rule file must be a mapping with id, version, description, citation, define")
            return None
        for key in data:
            if key not in RULE_KEYS:
                hint = did_you_mean(key, RULE_KEYS)
                if not hint and str(key).lower() in RULE_KEY_SYNONYMS:
                    hint = f" (did you mean {RULE_KEY_SYNONYMS[str(key).lower()]!r}?)"
                self.fail((key,), f"unknown key {key!r}{hint}")
        missing = [k for k in ("id", "version", "description", "citation", "define") if k not in data]
        for key in missing:
            self.fail((), f"missing required key {key!r}")
        for key in [k for k in ("version", "description", "citation") if k in data]:
            value = data[key]
            if key == "version" and isinstance(value, float):
                self.fail(
                    (key,),
                    f'write the version in quotes (version: "…"): unquoted, YAML reads it as the number '
                    f"{value:g}, so 1.10 and 1.1 would be one version",
                )
                missing.append(key)
            elif isinstance(value, bool) or not isinstance(value, str | int | float):
                if not self.doc.reported((key,)):  # a refused YAML tag reads as nothing
                    shown = "nothing" if value is None else f"a {type(value).__name__}"
                    self.fail((key,), f"{key} must be text, not {shown}")
                missing.append(key)
            elif not str(value).strip():
                self.fail((key,), f"{key} is empty")
                missing.append(key)
        rid = str(data.get("id", "?"))
        self.rule_id = rid
        if "id" in data and not ID_RE.match(rid):
            self.fail(("id",), f"rule id {rid!r} must be lower_snake_case")
        elif rid == ALL_RULES:
            self.fail(
                ("id",),
                f"rule id {ALL_RULES!r} is reserved: params.yaml gives under it values for every rule",
            )
        # a rule that does not say how far its definition was checked claims nothing
        status = data.get("status", "unspecified")
        if "status" in data and status not in ast.STATUSES:
            self.fail(
                ("status",),
                f"status must be checked, conflict or working_definition, not {status!r}"
                f"{did_you_mean(str(status), ast.STATUSES)}",
            )
            status = "unspecified"
        meaning = data.get("meaning")
        if meaning is not None and meaning not in ast.MEANINGS:
            self.fail(
                ("meaning",),
                f"meaning (of the rule being true, for the patient) is good, bad or neutral, not {meaning!r}"
                f"{did_you_mean(str(meaning), ast.MEANINGS)}",
            )
            meaning = None
        unit = data.get("unit")
        unit_wrong = unit_problem(str(unit)) if unit is not None else None
        if unit_wrong:
            self.fail(("unit",), f"unit {unit_wrong}")
        self._params(data.get("params") or {})
        self._selectors(data.get("events") or {})
        define: ast.Node | None = None
        if "define" in data:
            try:
                define = self.expr(data["define"], ("define",))
            except _Fail:
                define = None
        self._check_lengths()
        self._durations_read_as_values()
        if define is not None and not self.broken:  # a parameter read in a part not read is read
            self._check_text_params()
            for name in self.params:
                if name not in self.bad_params and not _reads(rid, define, name):
                    self.fail(
                        ("params", name),
                        f"parameter {name!r} is declared but the definition never reads it: a value "
                        f"given to it (params.yaml, --param, with: {{{name}: …}}) would change nothing; "
                        f"read it ({{param: {name}}}) or remove it",
                    )
        examples = self._examples(data.get("examples") or [])
        if "id" in missing or not ID_RE.match(rid) or define is None:
            return None
        # a rule without its version, description or citation (reported) is still type-checked
        return ast.Rule(
            id=rid,
            version=str(data["version"]).strip() if "version" not in missing else "",
            description=str(data["description"]).strip() if "description" not in missing else "",
            citation=str(data["citation"]).strip() if "citation" not in missing else "",
            status=status,
            meaning=meaning,
            unit=str(unit) if unit is not None else None,
            params=tuple(self.params.values()),
            define=define,
            examples=tuple(examples),
            source=source,
        )

    def _params(self, data: Any) -> None:
        if not isinstance(data, dict):
            self.fail(("params",), "params must be a mapping of name → {default, unit, description}")
            return
        for name, spec in data.items():
            path: Path_ = ("params", name)
            if not ID_RE.match(name):
                self.fail(path, f"parameter name {name!r} must be lower_snake_case")
            if not isinstance(spec, dict):
                spec = {"default": spec}
            for key in spec:
                if key not in PARAM_KEYS:
                    self.fail(
                        (*path, key),
                        f"unknown key {key!r} for a parameter{did_you_mean(str(key), PARAM_KEYS)}",
                    )
            if "default" not in spec:
                self.fail(path, f"parameter {name!r} needs a default")
                self.bad_params.add(name)
                continue
            default: float | bool | Duration | str
            try:
                default, unit = parse_param_value(spec["default"], spec.get("unit"))
            except ValueError as exc:
                text = drug_name(spec["default"])
                if text is None or "unit" in spec:
                    self.fail((*path, "default"), str(exc))
                    self.bad_params.add(name)
                    continue
                default, unit = text, None  # a drug's name, if the definition uses it as one
                self.text_params[name] = str(exc)
            self.params[name] = ast.ParamSpec(
                name=name, default=default, unit=unit, description=str(spec.get("description", ""))
            )

    def _example_event(self, e: dict[str, Any], path: Path_) -> None:
        """What ingest would refuse in an example's event for its shape, said at its line here
        (its values and units are checked when `rules test` ingests it): a missing core field,
        an unknown kind, a field its kind needs or does not have."""
        from timeline import events  # pydantic's models: imported only as rule files are read

        for key in events.CORE_COLUMNS:
            if e.get(key) is None or str(e[key]).strip() == "":
                self.fail(
                    path, f"an example event needs {key} (every event has patient_id, kind, occurred_at)"
                )
                return
        kind = str(e["kind"])
        if kind not in events.KINDS:
            self.fail((*path, "kind"), f"unknown kind {kind!r}{did_you_mean(kind, events.KINDS)}")
            return
        required, allowed = events.kind_fields(kind)
        common = set(events.EventBase.model_fields) | {"kind"}
        for key in sorted(required - {k for k, v in e.items() if v is not None}):
            self.fail(path, f"a {kind} event needs {key}")
        for key in e:
            if key in events.NATIVE_COLUMNS and key not in allowed | common and e[key] is not None:
                self.fail(
                    (*path, key),
                    f"a {kind} event has no {key} (its fields: {', '.join(sorted(allowed)) or 'none beyond the common ones'})",
                )
        for key, message in event_problems(e, self.book):  # its values, as ingest checks them
            self.fail((*path, key), message)

    def _check_text_params(self) -> None:
        """A text parameter names a drug (``drug: {param: p}``): one the definition never names
        a drug by is reported as the value its default is not (the type checker refuses one
        read as a value)."""
        for name, why in self.text_params.items():
            if name not in self.drug_uses:
                self.fail(
                    ("params", name, "default"),
                    f"{why}; text is a drug's name, for a parameter the definition names a drug by "
                    f"(drug: {{param: {name}}})",
                )
                self.bad_params.add(name)  # said once: not also "never read"

    def drugs(self, data: dict[str, Any], key: str, path: Path_) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """A selector's ``drug`` or ``not_drug``: one drug or a list, each a name or a text
        parameter; (the names, the parameters)."""
        if data.get(key) is None:
            return (), ()
        listed = isinstance(data[key], list)
        if listed and not data[key]:  # it would select every event: drug: [] is a mistake
            raise self.fail((*path, key), f"{key} names one drug or a list of at least one")
        named = [self.drug(item, (*path, key, i) if listed else (*path, key))
                 for i, item in enumerate(data[key] if listed else [data[key]])]  # fmt: skip
        return tuple(d for d, _ in named if d is not None), tuple(p for _, p in named if p is not None)

    def drug(self, data: Any, path: Path_) -> tuple[str | None, str | None]:
        """A drug as a rule names it: (its name, None), or for ``{param: p}`` (None, p), a text
        parameter of the rule."""
        if isinstance(data, dict) and set(data) == {"param"}:
            name = str(data["param"])
            spec = self.params.get(name)
            if name in self.bad_params:
                raise _Fail()
            if spec is None:
                raise self.fail(
                    (*path, "param"), f"unknown parameter {name!r}{did_you_mean(name, self.params)}"
                )
            if not isinstance(spec.default, str):
                raise self.fail(
                    (*path, "param"),
                    f"parameter {name!r} is {value_text(spec.default, spec.unit)}, not a drug's name "
                    f"(declare it with one: {name}: {{default: anakinra}})",
                )
            self.drug_uses.add(name)
            return None, name
        text = drug_name(data)
        if text is None:
            raise self.fail(path, f"a drug is named by its name (anakinra) or {{param: name}}, not {data!r}")
        return text, None

    def _durations_read_as_values(self) -> None:
        """A duration parameter read only where a value goes (``ge: [{time_since: …, unit:
        months}, {param: min_time}]``) is a quantity of time in the UCUM unit of its word:
        ``6 months`` is 6 mo (30.4375 days each, as time_since counts months), ``183 days`` is
        183 d; compared with a time in another unit it is converted, as any quantity is. One
        also read as a length or a window, or passed on in a ``with:``, stays a duration and
        cannot be read as a value (the two would differ: a window's months are calendar months)."""
        for name in self.value_uses:
            spec = self.params.get(name)
            if spec is None or not isinstance(spec.default, Duration) or name in self.other_uses:
                continue  # one also read as a duration: the type checker says it cannot be both
            self.params[name] = spec.replace(
                default=float(spec.default.amount), unit=_UCUM_OF[spec.default.unit]
            )

    def _check_lengths(self) -> None:
        """A duration parameter used as a length, a window or a window's start or end: its
        default is checked as a literal duration there would be, and the uses are kept for
        site overrides."""
        defaults = {name: spec.default for name, spec in self.params.items()}
        for name in dict.fromkeys([*self.lengths, *self.bounds]):
            kind, use = self.lengths.get(name, (None, ""))
            bounds = tuple(self.bounds.get(name, ()))
            spec = self.params[name].replace(length=kind, length_use=use, bounds=bounds)
            self.params[name] = spec
            problem = duration_problem(spec, spec.default, defaults, checked=defaults)
            if problem:
                self.fail(("params", name, "default"), f"parameter {name!r} is {spec.default}, but {problem}")

    def _selectors(self, data: Any) -> None:
        if not isinstance(data, dict):
            self.fail(("events",), "events must be a mapping of name → selector")
            return
        for name, spec in data.items():
            with contextlib.suppress(_Fail):
                self.selectors[name] = self.selector(spec, ("events", name), name=name)

    def _examples(self, data: Any) -> list[ast.Example]:
        from timeline import events  # pydantic's models: imported only as rule files are read

        out: list[ast.Example] = []
        if not isinstance(data, list):
            self.fail(("examples",), "examples must be a list")
            return out
        for i, ex in enumerate(data):
            path: Path_ = ("examples", i)
            if not isinstance(ex, dict) or "events" not in ex or "expect" not in ex:
                unknown = [str(k) for k in ex if k not in EXAMPLE_KEYS] if isinstance(ex, dict) else []
                for k in unknown:  # expected: for expect:, event: for events:
                    self.fail((*path, k), f"unknown key {k!r} for an example{did_you_mean(k, EXAMPLE_KEYS)}")
                if not unknown:
                    self.fail(path, "an example needs name, events and expect")
                continue
            evs = ex["events"] or []
            if not isinstance(evs, list) or not all(isinstance(e, dict) for e in evs):
                self.fail((*path, "events"), "events must be a list of native event rows")
                continue
            for j, e in enumerate(evs):
                for key in e:
                    if key not in events.NATIVE_COLUMNS:
                        self.fail(
                            (*path, "events", j, key),
                            f"unknown event field {key!r}{did_you_mean(key, events.NATIVE_COLUMNS)}",
                        )
                self._example_event(e, (*path, "events", j))
            expects: list[ast.Expectation] = []
            patients = sorted({str(e["patient_id"]) for e in evs if str(e.get("patient_id") or "").strip()})
            for j, exp in enumerate(ex["expect"] or []):
                unknown = [k for k in exp if k not in EXPECTATION_KEYS] if isinstance(exp, dict) else []
                if unknown:  # before a missing key: `valeu` is the value misspelt
                    k = str(unknown[0])
                    self.fail(
                        (*path, "expect", j, k),
                        f"unknown key {k!r} for an expectation{did_you_mean(k, EXPECTATION_KEYS)}",
                    )
                    continue
                if not isinstance(exp, dict) or "at" not in exp or "value" not in exp:
                    self.fail(
                        (*path, "expect", j),
                        "an expectation needs at and value (true, false, a number or unknown)",
                    )
                    continue
                at, where = exp["at"], (*path, "expect", j)
                wrong = _moment_problem(at)
                if wrong is not None:
                    self.fail((*where, "at"), wrong)
                    continue
                bad = [
                    k
                    for k in ("reason_contains", "patient_id")
                    if exp.get(k) is not None and not isinstance(exp[k], str)
                ]
                if bad:
                    self.fail((*where, bad[0]), f"{bad[0]} is text, not {exp[bad[0]]!r}")
                    continue
                if exp.get("patient_id") is not None and exp["patient_id"] not in patients:
                    self.fail(
                        (*where, "patient_id"),
                        f"no event of this example is for patient {exp['patient_id']!r} "
                        f"(its events are for {', '.join(map(repr, patients)) or 'no patient'})",
                    )
                    continue
                value = exp["value"]
                if value == "unknown":
                    value = None
                elif not isinstance(value, bool | int | float):
                    self.fail(
                        (*path, "expect", j, "value"),
                        f"expected value must be true, false, a number or unknown, not {value!r}",
                    )
                    continue
                elif exp.get("reason_contains") is not None:
                    # rules test compares a reason only of an unknown: this one could only fail
                    self.fail(
                        (*where, "reason_contains"),
                        f"reason_contains is for an expected unknown (an unknown says why); "
                        f"{str(value).lower()} has no reason: remove it, or expect unknown",
                    )
                    continue
                expects.append(
                    ast.Expectation(
                        at=str(exp["at"]),
                        value=value,
                        reason_contains=exp.get("reason_contains"),
                        patient_id=exp.get("patient_id"),
                        where=(*where, "value"),
                    )
                )
            params = ex.get("params") or {}
            if not isinstance(params, dict):
                self.fail((*path, "params"), "an example's params map a parameter name to its value")
                continue
            if not self._example_params(params, (*path, "params")):
                continue
            out.append(
                ast.Example(
                    name=str(ex.get("name", f"example {i + 1}")),
                    events=tuple(evs),
                    expect=tuple(expects),
                    params=tuple((str(k), v) for k, v in params.items()),
                    line=self.doc.where(path)[0],
                    event_lines=tuple(self.doc.where((*path, "events", j))[0] for j in range(len(evs))),
                )
            )
        return out

    def _example_params(self, params: dict[str, Any], path: Path_) -> bool:
        """An example's parameter values: names of this rule's parameters, each a value its
        default could be (checked here, at their lines, as a site's would be when loaded)."""
        ok = True
        others = values_with(self.params, params)
        for name, raw in params.items():
            spec = self.params.get(str(name))
            if spec is None:
                self.fail(
                    (*path, name),
                    f"rule {self.rule_id!r} has no parameter {name!r}{did_you_mean(str(name), self.params)}",
                )
                ok = False
                continue
            try:
                override_value(spec, raw, others, params)
            except ByMolarMass:
                pass  # read when the example runs, by the molar mass of the lab it is compared with
            except ValueError as exc:
                self.fail((*path, name), f"{name}: {exc}")
                ok = False
        return ok

    # -- durations, quantities, selectors
    def duration(self, data: Any, path: Path_, nonneg: bool = False) -> ast.DurationRef:
        """A duration, literal or {param: name}; ``nonneg``: a length, which cannot be negative."""
        ref = self._duration(data, path)
        if nonneg and ref.value is not None and ref.value.amount < 0:
            raise self.fail(path, f"{path[-1]} is a length: it cannot be negative ({ref.value})")
        if nonneg and ref.param is not None:
            self._uses_as_length(ref.param[1], "within", _use_name(path), path)
        return ref

    def _uses_as_length(self, name: str, kind: str, use: str, path: Path_) -> None:
        if self.lengths.get(name, ("",))[0] != "window":  # a window's check is the stricter
            self.lengths[name] = (kind, self._use_at(use, path))

    def _use_at(self, use: str, path: Path_) -> str:
        """A use of a parameter as messages name it: "held_for's duration (r.yaml:9)"."""
        line, _ = self.doc.where(path)
        return f"{use} ({Path(self.doc.file).name}:{line})"

    def _window_bounds(
        self, lower: ast.DurationRef | None, upper: ast.DurationRef | None, path: Path_
    ) -> None:
        """A window whose start or end is a parameter: every value of it (default, site,
        example) is checked with the other bound, as two literals are when the window is read."""
        if lower is None or upper is None:
            return
        start = lower.param[1] if lower.param is not None else None
        end = upper.param[1] if upper.param is not None else None
        if start == end:  # two literals (checked where read) or one parameter: never reversed
            return
        if start is not None:
            other: Duration | str | None = upper.value if end is None else end
            assert other is not None
            use = self._use_at(_use_name(path), (*path, "start"))
            self.bounds.setdefault(start, []).append(ast.WindowBound(side="start", other=other, use=use))
        if end is not None:
            other = lower.value if start is None else start
            assert other is not None
            use = self._use_at(_use_name(path), (*path, "end"))
            self.bounds.setdefault(end, []).append(ast.WindowBound(side="end", other=other, use=use))

    def _duration(self, data: Any, path: Path_) -> ast.DurationRef:
        if isinstance(data, dict) and set(data) == {"param"}:
            name = str(data["param"])
            spec = self.params.get(name)
            if name in self.bad_params:
                raise _Fail()  # its default's problem is reported; it is not also unknown
            if spec is None:
                raise self.fail(
                    (*path, "param"), f"unknown parameter {name!r}{did_you_mean(name, self.params)}"
                )
            if not isinstance(spec.default, Duration):
                given = value_text(spec.default, spec.unit)
                unit = (
                    f": give its default a unit, e.g. '{given} days'"
                    if isinstance(spec.default, float) and spec.unit is None
                    else ""
                )
                raise self.fail(
                    (*path, "param"),
                    f"{_use_name(path)} needs a duration ({EXAMPLES}), but parameter {name!r} is {given}{unit}",
                )
            self.other_uses.add(name)
            return ast.DurationRef(param=(self.rule_id, name))
        try:
            return ast.DurationRef(value=Duration.parse(data))
        except DurationError as exc:
            raise self.fail(path, str(exc)) from None

    def quantity(self, data: Any, path: Path_) -> ast.Const | ast.Param:
        node = self.expr(data, path)
        if not isinstance(node, ast.Const | ast.Param):
            raise self.fail(path, "expected a constant (e.g. 6 mg/L) or {param: name}")
        return node

    def selector(self, data: Any, path: Path_, name: str | None = None) -> ast.Selector:
        from timeline import events  # pydantic's models: imported only as rule files are read

        if isinstance(data, str):
            if data in self.selectors:
                return self.selectors[data]
            raise self.fail(path, f"unknown event selector {data!r}{did_you_mean(data, self.selectors)}")
        if not isinstance(data, dict):
            raise self.fail(
                path, "a selector is a name from events: or a mapping with kind, code, drug, present, where"
            )
        wrong = [key for key in data if key not in SELECTOR_KEYS]
        for key in wrong:
            self.fail((*path, key), f"unknown selector key {key!r}{did_you_mean(key, SELECTOR_KEYS)}")

        def many(key: str) -> tuple[str, ...]:
            value = data.get(key)
            if value is None:
                return ()
            items = value if isinstance(value, list) else [value]
            return tuple(str(v).lower() if key == "kind" else str(v) for v in items)

        kinds, code_list = many("kind"), many("code")

        def kinds_known() -> None:
            for k in kinds:
                if k not in events.KINDS:
                    raise self.fail((*path, "kind"), f"unknown kind {k!r}{did_you_mean(k, events.KINDS)}")

        def codes_known() -> None:
            known = self.book.known()
            unknown = [c for c in code_list if c not in known and kinds != ("diagnosis",)]
            for c in unknown:
                self.fail((*path, "code"), unknown_code(c, known, self.book))
            if unknown:
                raise _Fail()

        def conditions() -> list[ast.FieldCondition]:
            where: list[ast.FieldCondition] = []
            for fname, cond in (data.get("where") or {}).items():
                fpath: Path_ = (*path, "where", fname)
                if fname not in NUMERIC_FIELDS:
                    raise self.fail(
                        fpath,
                        f"where: {fname!r} is not a numeric event field{did_you_mean(fname, NUMERIC_FIELDS)}",
                    )
                if not isinstance(cond, dict) or len(cond) != 1 or next(iter(cond)) not in COMPARISONS:
                    op = str(next(iter(cond))) if isinstance(cond, dict) and len(cond) == 1 else ""
                    raise self.fail(
                        fpath,
                        f"where: {fname} takes one comparison, e.g. {{ge: 38 Cel}}"
                        f"{did_you_mean(op, COMPARISONS) if op else ''}",
                    )
                op, value = next(iter(cond.items()))
                where.append(ast.FieldCondition(field=fname, op=op, value=self.quantity(value, (*fpath, op))))
            return where

        def present_flag() -> bool | None:
            present = data.get("present")
            if present is not None and not isinstance(present, bool):
                raise self.fail((*path, "present"), "present must be true or false")
            return present

        def unit_of_doses() -> str | None:
            dose_unit = data.get("dose_unit")
            if dose_unit is not None:
                dose_unit = str(dose_unit).strip().lower()
                if dose_unit not in codes.DOSE_UNITS:
                    raise self.fail(
                        (*path, "dose_unit"),
                        f"dose_unit is mg or mg/kg (doses are stored in one of them: any mass unit as mg), "
                        f"not {data['dose_unit']!r}",
                    )
            return dose_unit

        (drugs, drug_params), (not_drugs, not_drug_params), _, _, where, any_of, present, dose_unit = self.gather(
            lambda: self.drugs(data, "drug", path),
            lambda: self.drugs(data, "not_drug", path),
            kinds_known,
            codes_known,
            conditions,
            lambda: tuple(self.gather(*(functools.partial(self.selector, s, (*path, "any_of", i))
                                        for i, s in enumerate(data.get("any_of") or [])))),
            present_flag,
            unit_of_doses,
        )  # fmt: skip
        if wrong:
            raise _Fail()
        shown = (*drugs, *(f"{{{p}}}" for p in drug_params))  # bound_drugs puts the values in
        label = name or _describe_selector(
            kinds,
            code_list,
            shown,
            present,
            dose_unit,
            self.book,
            (*not_drugs, *(f"{{{p}}}" for p in not_drug_params)),
        )
        written = (drugs, not_drugs, label) if drug_params or not_drug_params else None
        selector = ast.Selector(
            units=tuple((c, u) for c in code_list if (u := self.book.unit(c)) is not None),
            name=label,
            kinds=kinds,
            codes=code_list,
            drugs=drugs,
            drug_params=drug_params,
            not_drugs=not_drugs,
            not_drug_params=not_drug_params,
            written=written,
            dose_unit=dose_unit,
            present=present,
            where=tuple(where),
            any_of=any_of,
        )
        if any(c.field == "dose" for c in where) and field_unit(selector, "dose") is None:
            raise self.fail((*path, "where", "dose"), _mixed_doses(label))
        return selector

    def anchor(self, data: Any, path: Path_) -> ast.Anchor:
        if not isinstance(data, dict) or len(data) != 1 or next(iter(data)) not in ("first", "last"):
            raise self.fail(path, "an anchor is {first: SELECTOR} or {last: SELECTOR}")
        which, sel = next(iter(data.items()))
        return ast.Anchor(select=self.selector(sel, (*path, which)), which=which)

    def flag(self, data: dict[str, Any], key: str, default: bool, path: Path_) -> bool:
        """A true/false option of a mapping; anything else is an error, not Python truthiness
        (``start_inclusive: "no"`` was true)."""
        value = data.get(key, default)
        if not isinstance(value, bool):
            raise self.fail((*path, key), f"{key} is true or false, not {value!r}")
        return value

    def window(self, data: Any, path: Path_) -> ast.Window:
        if data == "ever":  # the whole record up to the point
            return ast.Window(start=None, end=ast.DurationRef(value=Duration(0, "day")))
        if isinstance(data, str) and did_you_mean(data, ["ever"]):
            raise self.fail(path, f"{data!r} is not a duration or ever{did_you_mean(data, ['ever'])}")
        if isinstance(data, str) or (isinstance(data, dict) and set(data) == {"param"}):
            d = self.duration(data, path)
            if d.param is not None:
                self._uses_as_length(d.param[1], "window", _use_name(path), path)
            if d.value is not None and d.value.amount <= 0:
                raise self.fail(
                    path,
                    f"a window of {d.value} is empty: give a positive duration (the last 7 days: 7 days)",
                )
            start = ast.DurationRef(value=d.value.negate()) if d.value is not None else d.replace(negate=True)
            return ast.Window(start=start, end=ast.DurationRef(value=Duration(0, "day")))
        if isinstance(data, int | float) and not isinstance(data, bool):  # window: 30
            raise self.fail(
                path, f"{_not_a_duration(data)} (a window is a duration, ever, or {{start, end, …}})"
            )
        if not isinstance(data, dict):
            raise self.fail(
                path,
                "a window is a duration ('7 days'), ever, or {start, end, start_inclusive, end_inclusive, anchor}",
            )
        allowed = ("start", "end", "start_inclusive", "end_inclusive", "anchor")
        wrong = [key for key in data if key not in allowed]
        for key in wrong:
            self.fail((*path, key), f"unknown window key {key!r}{did_you_mean(key, allowed)}")
        if "start" not in data or ("end" not in data and "anchor" not in data):
            if wrong:  # a misspelt key (ned: 0 days) is not also missing
                raise _Fail()
            raise self.fail(path, "a window needs start and end (signed durations, e.g. -7 days and 0 days)")
        anchor, lower, upper, *_ = self.gather(
            lambda: self.anchor(data["anchor"], (*path, "anchor")) if "anchor" in data else None,
            lambda: None if data["start"] == "ever" else self.duration(data["start"], (*path, "start")),
            lambda: self.duration(data["end"], (*path, "end")) if "end" in data else None,
            lambda: self.flag(data, "start_inclusive", False, path),
            lambda: self.flag(data, "end_inclusive", True, path),
        )
        if wrong:
            raise _Fail()
        a, b = (lower.value if lower else None), (upper.value if upper else None)
        if a is not None and b is not None and a.approx_hours > b.approx_hours:
            raise self.fail(path, f"the window starts ({a}) after it ends ({b})")
        self._window_bounds(lower, upper, path)
        return ast.Window(
            start=lower,
            end=upper,
            start_inclusive=self.flag(data, "start_inclusive", False, path),
            end_inclusive=self.flag(data, "end_inclusive", True, path),
            anchor=anchor,
        )

    def episodes(self, data: Any, path: Path_) -> ast.Episodes:
        if not isinstance(data, dict) or ("select" in data) == ("when" in data):
            raise self.fail(
                path, "episodes are {select: SELECTOR, merge_gap: D} or {when: CONDITION, merge_gap: D}"
            )
        if "select" in data:
            select, gap = self.gather(
                lambda: self.selector(data["select"], (*path, "select")),
                lambda: self.duration(data.get("merge_gap", "0 days"), (*path, "merge_gap"), nonneg=True),
            )
            return ast.Episodes(select=select, merge_gap=gap)
        when = self.sub(data["when"], (*path, "when"))
        gap = self.duration(data.get("merge_gap", "0 days"), (*path, "merge_gap"), nonneg=True)
        return ast.Episodes(when=when, merge_gap=gap)

    # -- expressions
    def expr(self, data: Any, path: Path_) -> ast.Node:
        if len(path) > MAX_DEPTH:
            raise self.fail(path, f"nested more than {MAX_DEPTH} levels deep")
        p = _fmt(path)
        if isinstance(data, bool):
            return ast.Const(nid=self.nid(), path=p, value=data)
        if isinstance(data, int | float):
            if not math.isfinite(data):
                raise self.fail(path, f"{data!r} is not a finite number")
            return ast.Const(nid=self.nid(), path=p, value=float(data))
        if isinstance(data, str):
            m = _QUANTITY.match(data)
            if m:
                unit = m.group(2)
                problem = unit_problem(unit)
                if problem and self.partial and unit.lower() in DURATION_WORDS:
                    with contextlib.suppress(DurationError):  # 5 days: said once what it meets is known
                        time = _UCUM_OF[Duration.parse(data).unit]
                        return ast.Const(
                            nid=self.nid(), path=p, value=float(m.group(1)), unit=time, written=data
                        )
                if problem:
                    raise self.fail(path, problem + _value_hint(m.group(1), unit))
                if not math.isfinite(float(m.group(1))):
                    raise self.fail(path, f"{data!r} is not a finite number")
                return ast.Const(nid=self.nid(), path=p, value=float(m.group(1)), unit=unit)
            raise self.fail(
                path,
                f"{data!r} is not an expression (a number, '6 mg/L', true/false or {{operator: ...}})"
                f"{self._meant(data)}",
            )
        if isinstance(data, dict) and len(data) > 1:
            found = ", ".join(map(str, data))
            ops = [str(k) for k in data if k in OPERATORS]
            hint = (
                f": the others belong inside {ops[0]} (indent them under it)"
                if len(ops) == 1
                else ": give each its own expression, e.g. in all: [...]"
                if len(ops) > 1
                else ""
            )
            raise self.fail(
                path, f"an expression is a mapping with exactly one operator, but this one has {found}{hint}"
            )
        if not isinstance(data, dict) or len(data) != 1:
            raise self.fail(
                path, "an expression is a mapping with exactly one operator, e.g. {latest: {...}}"
            )
        op, arg = next(iter(data.items()))
        sub: Path_ = (*path, op)
        nid, sp = self.nid(), _fmt(sub)
        if op not in OPERATORS:
            raise self.fail(sub, f"unknown operator {op!r}{_operator_hint(op)}")

        def items(min_n: int = 1) -> tuple[ast.Node, ...]:
            if not isinstance(arg, list) or len(arg) < min_n:
                raise self.fail(sub, f"{op} takes a list of at least {min_n} expressions")
            if len(arg) > MAX_ITEMS:
                raise self.fail(sub, f"{op} takes at most {MAX_ITEMS} expressions, not {len(arg)}")
            return self.exprs((x, (*sub, i)) for i, x in enumerate(arg))

        def keys(required: Sequence[str], optional: Sequence[str] = ()) -> dict[str, Any]:
            if not isinstance(arg, dict):
                raise self.fail(sub, f"{op} takes a mapping with {', '.join(required)}")
            wrong = [k for k in arg if k not in (*required, *optional)]
            for key in wrong:  # each one said: two misspelt keys are two problems
                hint = did_you_mean(key, (*required, *optional))
                if key == "within" and op in AGGREGATES:
                    hint = " (did you mean 'window'? the latest value no older than a duration is latest: {select, within})"
                self.fail((*sub, key), f"unknown key {key!r} for {op}{hint}")
            absent = [k for k in required if k not in arg]
            for key in absent:
                if not any(did_you_mean(k, [key]) for k in wrong):  # a misspelt key is not also missing
                    self.fail(sub, f"{op} needs {key!r}")
            if wrong or absent:
                raise _Fail()
            return arg

        if op == "const":
            a = keys(["value"], ["unit"])
            return ast.Const(nid=nid, path=sp, value=a["value"], unit=a.get("unit"))
        if op == "param":
            name = str(arg)
            if name in self.bad_params:
                raise _Fail()  # its default's problem is reported; it is not also unknown
            if name not in self.params:
                raise self.fail(sub, f"unknown parameter {name!r}{did_you_mean(name, self.params)}")
            self.value_uses.setdefault(name, sub)
            return ast.Param(nid=nid, path=sp, rule=self.rule_id, name=name)
        if op == "rule":
            if isinstance(arg, dict):
                return ast.RuleRef(nid=nid, path=sp, rule=self._variant(arg, sub))
            self.refs.append((str(arg), sub))
            return ast.RuleRef(nid=nid, path=sp, rule=str(arg))
        if op == "latest":
            a = keys(["select", "within"], ["field"])
            select, fname, within = self.gather(
                lambda: self.selector(a["select"], (*sub, "select")),
                lambda: self._field(a.get("field", "value"), (*sub, "field")),
                lambda: self.duration(a["within"], (*sub, "within"), nonneg=True),
            )
            return ast.Latest(nid=nid, path=sp, select=select, field=fname, within=within)
        if op in AGGREGATES:
            a = keys(["select", "window"], ["field", "spans"])

            def spanning() -> bool:
                spans = self.flag(a, "spans", False, sub)
                if spans and op not in ("exists", "count"):
                    raise self.fail((*sub, "spans"), f"spans applies to exists and count, not to {op}")
                return spans

            spans, select, fname, window = self.gather(
                spanning,
                lambda: self.selector(a["select"], (*sub, "select")),
                lambda: self._field(a.get("field", "value"), (*sub, "field")),
                lambda: self.window(a["window"], (*sub, "window")),
            )
            return ast.Aggregate(
                nid=nid, path=sp, fn=op, select=select, field=fname, window=window, spans=spans
            )
        if op == "finding_present":
            a = keys(["select", "within"])

            def findings() -> ast.Selector:
                sel = self.selector(a["select"], (*sub, "select"))
                if _gives_present(sel):
                    raise self.fail(
                        (*sub, "select"),
                        "finding_present reads the records its selector matches recorded present and absent "
                        "(a later absent record ends a present one): its selector gives no present",
                    )
                return sel

            def lasting() -> ast.DurationRef:
                within = self.duration(a["within"], (*sub, "within"), nonneg=True)
                if within.value is not None and within.value.amount == 0:
                    raise self.fail(
                        (*sub, "within"),
                        "finding_present's within is how long a record without an end lasts: 0 would make "
                        "such a record never present; give a length (e.g. 90 days)",
                    )
                return within

            sel, within = self.gather(findings, lasting)
            return ast.FindingPresent(nid=nid, path=sp, select=sel, within=within)
        if op == "normal":
            a = keys(["select", "within"], ["upper", "lower"])
            select, within, upper, lower = self.gather(
                lambda: self.selector(a["select"], (*sub, "select")),
                lambda: self.duration(a["within"], (*sub, "within"), nonneg=True),
                lambda: self.quantity(a["upper"], (*sub, "upper")) if "upper" in a else None,
                lambda: self.quantity(a["lower"], (*sub, "lower")) if "lower" in a else None,
            )
            return ast.Normal(nid=nid, path=sp, select=select, within=within, upper=upper, lower=lower)
        if op == "on_drug":
            routes: list[Any] = []
            if isinstance(arg, dict) and set(arg) != {"param"}:
                a = keys(["drugs"], ["except_routes"])
                arg = a["drugs"]
                routes = a.get("except_routes") or []
                routes = routes if isinstance(routes, list) else [routes]
                for i, r in enumerate(routes):
                    if r not in codes.ROUTES:
                        raise self.fail(
                            (*sub, "except_routes", i),
                            f"unknown route {r!r}{did_you_mean(str(r), codes.ROUTES)}; routes are {', '.join(codes.ROUTES)}",
                        )
            names = arg if isinstance(arg, list) else [arg]
            if not names or any(
                not (isinstance(n, str) and n.strip()) and not isinstance(n, dict) for n in names
            ):
                raise self.fail(sub, "on_drug names one drug or a list of drugs, e.g. on_drug: anakinra")
            named = [self.drug(n, (*sub, i) if isinstance(arg, list) else sub) for i, n in enumerate(names)]
            literal = tuple(d for d, _ in named if d is not None)
            by_param = tuple(p for _, p in named if p is not None)
            return ast.OnDrug(
                nid=nid, path=sp, drugs=literal, except_routes=tuple(str(r) for r in routes),
                drug_params=by_param, written=literal if by_param else (),
            )  # fmt: skip
        if op == "daily_dose":
            a = keys(["drug"], ["per_kg", "weight_within"])
            (drug, drug_param), per_kg, weight_within = self.gather(
                lambda: self.drug(a["drug"], (*sub, "drug")),
                lambda: self.flag(a, "per_kg", True, sub),
                lambda: self.duration(
                    a.get("weight_within", "183 days"), (*sub, "weight_within"), nonneg=True
                ),
            )
            return ast.DailyDose(
                nid=nid,
                path=sp,
                drug=drug or "",
                drug_param=drug_param,
                per_kg=per_kg,
                weight_within=weight_within,
            )
        if op == "age":
            unit = arg if isinstance(arg, str) else (arg or {}).get("unit", "years")
            if unit not in ("years", "months", "days"):
                raise self.fail(sub, "age is measured in years, months or days")
            return ast.Age(nid=nid, path=sp, unit=str(unit))  # type: ignore[arg-type]
        if op == "time_since":
            a = keys([], ["first", "last", "unit"])
            which = [k for k in ("first", "last") if k in a]
            if len(which) != 1:
                raise self.fail(sub, "time_since needs first: SELECTOR or last: SELECTOR")
            unit = a.get("unit", "years")
            if unit not in ("years", "months", "days"):
                raise self.fail((*sub, "unit"), "time_since is measured in years, months or days")
            anchor = ast.Anchor(select=self.selector(a[which[0]], (*sub, which[0])), which=which[0])
            return ast.TimeSince(nid=nid, path=sp, anchor=anchor, unit=unit)
        if op in COMPARISONS:
            if not isinstance(arg, list) or len(arg) != 2:
                raise self.fail(sub, f"{op} compares exactly two expressions: [left, right]")
            return ast.Compare(
                nid=nid, path=sp, op=op, left=self.sub(arg[0], (*sub, 0)), right=self.sub(arg[1], (*sub, 1))
            )
        if op in ("all", "any"):
            return ast.Logic(nid=nid, path=sp, op=op, items=items())
        if op == "not":
            return ast.Not(nid=nid, path=sp, item=self.sub(arg, sub))
        if op == "at_least":
            a = keys(["n", "of"])
            if not isinstance(a["n"], int) or a["n"] < 1:
                raise self.fail((*sub, "n"), "n must be a whole number ≥ 1")
            of = a["of"]
            if not isinstance(of, list) or len(of) < a["n"]:
                raise self.fail(
                    (*sub, "of"), f"at_least n={a['n']} needs at least {a['n']} expressions in of"
                )
            return ast.AtLeast(
                nid=nid,
                path=sp,
                n=a["n"],
                items=self.exprs((x, (*sub, "of", i)) for i, x in enumerate(of)),
            )
        if op == "count_true":
            return ast.CountTrue(nid=nid, path=sp, items=items())
        if op in ARITH:
            return ast.Arith(nid=nid, path=sp, op=ARITH[op], items=items(2))
        if op == "clip":
            a = keys(["value"], ["low", "high"])
            for bound in ("low", "high"):
                x = a.get(bound)
                if x is not None and (
                    isinstance(x, bool) or not isinstance(x, int | float) or not math.isfinite(x)
                ):
                    raise self.fail(
                        (*sub, bound), f"clip's {bound} is a plain number, in the value's unit: not {x!r}"
                    )
            if a.get("low") is not None and a.get("high") is not None and a["low"] > a["high"]:
                raise self.fail(sub, f"clip's low ({a['low']}) is above its high ({a['high']})")
            return ast.Clip(
                nid=nid,
                path=sp,
                item=self.sub(a["value"], (*sub, "value")),
                low=a.get("low"),
                high=a.get("high"),
            )
        if op == "coalesce":
            return ast.Coalesce(nid=nid, path=sp, items=items(2))
        if op == "unknown_unless":
            a = keys(["value", "condition", "reason"])
            return ast.UnknownUnless(
                nid=nid, path=sp, value=self.sub(a["value"], (*sub, "value")),
                condition=self.sub(a["condition"], (*sub, "condition")), reason=str(a["reason"]),
            )  # fmt: skip
        if op == "pct_change":
            a = keys(["value", "baseline"])
            return ast.PctChange(
                nid=nid, path=sp, value=self.sub(a["value"], (*sub, "value")),
                baseline=self.sub(a["baseline"], (*sub, "baseline")),
            )  # fmt: skip
        if op == "at_anchor":
            a = keys(["expr", "anchor"], ["offset", "whole_day"])
            expr = self.sub(a["expr"], (*sub, "expr"))
            anchor, offset, whole_day = self.gather(
                lambda: self.anchor(a["anchor"], (*sub, "anchor")),
                lambda: self.duration(a.get("offset", "0 days"), (*sub, "offset")),
                lambda: self.flag(a, "whole_day", False, sub),
            )
            return ast.AtAnchor(
                nid=nid, path=sp, expr=expr, anchor=anchor, offset=offset,
                whole_day=whole_day,
            )  # fmt: skip
        if op == "held_for":
            a = keys(["expr", "duration"])
            expr = self.sub(a["expr"], (*sub, "expr"))
            return ast.HeldFor(
                nid=nid,
                path=sp,
                expr=expr,
                duration=self.duration(a["duration"], (*sub, "duration"), nonneg=True),
            )
        if op == "in_episode":
            return ast.InEpisode(nid=nid, path=sp, episodes=self.episodes(arg, sub))
        if op == "episode_count":
            a = keys(["episodes", "window"], ["starting_when"])
            when = self.sub(a["starting_when"], (*sub, "starting_when")) if "starting_when" in a else None
            episodes, window = self.gather(
                lambda: self.episodes(a["episodes"], (*sub, "episodes")),
                lambda: self.window(a["window"], (*sub, "window")),
            )
            return ast.EpisodeCount(
                nid=nid, path=sp, episodes=episodes, window=window,
                starting_when=when,
            )  # fmt: skip
        raise self.fail(sub, f"operator {op!r} is not supported")  # pragma: no cover

    def _meant(self, text: str) -> str:
        """What a name written as a value may have meant: a selector's or a test's latest value."""
        if text in self.selectors:
            return f"; the latest value of the events {text!r} selects is {{latest: {{select: {text}, within: 30 days}}}}"
        named = codes.named_code(text, self.book)
        if named is None:
            return ""
        said, code = named
        if code is not None and code in self.book.labs:
            return f"; {said}: its latest value is {{latest: {{select: {{kind: lab, code: {code}}}, within: 30 days}}}}"
        return f"; {said}"

    def _variant(self, arg: dict[Any, Any], path: Path_) -> str:
        """``{id: crp_normal, with: {upper: 5 mg/L}}``: the rule at other values of its
        parameters. Returns the variant's id (``crp_normal(upper=5 mg/L)``); the loader makes
        the variant once every rule is read (:func:`_variants`)."""
        try:
            base, values, vid = read_variant(arg, (self.rule_id, self.params, self.bad_params))
        except VariantProblem as exc:
            for where, message in exc.all():
                if message:  # else the parameter's own problem is reported
                    self.fail((*path, *where), message)
            raise _Fail() from None
        self.refs.append((base, (*path, "id")))
        self.variants.append((vid, base, values, path))
        for raw in values.values():  # a drug's name passed on to the rule read names a drug
            if isinstance(raw, dict) and str(raw.get("param")) in self.text_params:
                self.drug_uses.add(str(raw["param"]))
            if isinstance(raw, dict) and "param" in raw:
                self.other_uses.add(str(raw["param"]))
        return vid

    def exprs(self, parts: Iterable[tuple[Any, Path_]]) -> tuple[ast.Node, ...]:
        """Every item of a list, so that a problem in one does not hide those in the others."""
        return tuple(self.gather(*(functools.partial(self.sub, data, path) for data, path in parts)))

    def _field(self, name: Any, path: Path_) -> str:
        if name not in NUMERIC_FIELDS:
            raise self.fail(
                path, f"{name!r} is not a numeric event field{did_you_mean(str(name), NUMERIC_FIELDS)}"
            )
        return str(name)


def unknown_code(code: str, known: Iterable[str], book: codes.CodeBook = codes.BUILTIN) -> str:
    """An unknown code, with the closest known one and what that one stands for: a code
    close in spelling may be a different test altogether (26499-4 is not 2276-4, ferritin)."""
    text = f"unknown code {code!r}"
    named = codes.named_code(code, book)  # CRP: a test's name, not its code
    if named is not None:
        said, right = named
        return f"{text}: {said}" + (f" (code: {right})" if right is not None else "")
    close = close_matches(code, list(known), n=1, cutoff=0.6)
    if close:
        name = book.name(close[0])
        text += f" (did you mean {close[0]!r}" + (f", {name}" if name else "") + "?)"
    return text + (
        "; a site's own codes are defined in a codes.yaml beside its rules (README: adding a code)"
    )


def _describe_selector(
    kinds: Sequence[str],
    code_list: Sequence[str],
    drugs: Sequence[str],
    present: bool | None,
    dose_unit: str | None = None,
    book: codes.CodeBook = codes.BUILTIN,
    not_drugs: Sequence[str] = (),
) -> str:
    parts: list[str] = []
    for c in code_list:
        parts.append(book.labs[c].name if c in book.labs else c)
    parts += list(drugs)
    if not parts:
        parts = [k.replace("_", " ") for k in kinds]
    text = " or ".join(parts) or "event"
    if not_drugs:
        text += f" other than {' or '.join(not_drugs)}"
    if dose_unit is not None:
        text += f" in {dose_unit}"  # "no tocilizumab in mg recorded": there may be one in mg/kg
    if present is False:
        text = f"no {text} (recorded absent)"
    return text


def _mixed_doses(selector: str) -> str:
    """Why a dose cannot be read from a selector that does not fix its unit."""
    return (
        f"the doses of {selector!r} may be in mg or in mg/kg (as each was recorded): "
        "add dose_unit: mg or dose_unit: mg/kg to the selector, "
        "or use daily_dose, which converts one into the other with the weight"
    )


def _use_name(path: Path_) -> str:
    """How a duration's place reads in a message: "held_for's duration", "count's window"."""
    names = [p for p in path if isinstance(p, str)]
    if len(names) >= 2 and names[-2] in OPERATORS:
        return f"{names[-2]}'s {names[-1]}"
    return names[-1] if names else "a duration"


def duration_problem(
    spec: ast.ParamSpec,
    value: Any,
    others: Mapping[str, Any] | None = None,
    checked: Collection[str] = (),
) -> str | None:
    """Why a value cannot be a duration parameter used as a length, a window or a window's
    start or end, or None. ``others``: the values the rule's other parameters have beside it
    (a window between two parameters is checked with the other's); ``checked``: those whose
    values are checked with it, so that a window between two of them is reported once, at
    its start."""
    if not isinstance(value, Duration):
        return None
    if spec.length == "window" and value.amount <= 0:
        return f"it is {spec.length_use}, a window, which needs a positive duration (the last 7 days: 7 days)"
    if spec.length is not None and value.amount < 0:
        return f"it is {spec.length_use}, a length, which cannot be negative"
    for bound in spec.bounds:
        if bound.side == "end" and isinstance(bound.other, str) and bound.other in checked:
            continue  # a window between two parameters checked together: the start's check reports it
        other = bound.other if isinstance(bound.other, Duration) else (others or {}).get(bound.other)
        if not isinstance(other, Duration):
            continue
        named = f", parameter {bound.other!r}" if isinstance(bound.other, str) else ""
        if bound.side == "start" and value.approx_hours > other.approx_hours:
            return f"it is the start of {bound.use}, which would then start after it ends ({other}{named})"
        if bound.side == "end" and value.approx_hours < other.approx_hours:
            return f"it is the end of {bound.use}, which would then end before it starts ({other}{named})"
    return None


def unit_problem(unit: str) -> str | None:
    """Why ``unit`` is not a UCUM unit ("'mm/hr' is not a UCUM unit: unknown unit symbol
    'hr'", as ingest says it), or None when it is one."""
    if is_valid(unit):
        return None
    try:
        parse_unit(unit)
    except UnitError as exc:
        reason = str(exc)
        return f"{unit!r} is not a UCUM unit" + (ucum_hint(unit) if unit in reason else f": {reason}")
    return f"{unit!r} is not a UCUM unit"  # pragma: no cover - is_valid said it was not


_DRUG = re.compile(r"^(?=[^a-z]*[a-z])[a-z0-9][a-z0-9 ._+/()'-]{0,99}$")  # with a letter: 6-mercaptopurine


def drug_name(value: Any) -> str | None:
    """A drug's name as events store it (lower case), or None if ``value`` cannot be one: text
    starting with a letter or a digit and holding a letter, no longer than 100 characters, not
    true or false, not a number and a word (``20 mm/hr`` is a value with a mistyped unit)."""
    if not isinstance(value, str):
        return None
    text = value.strip().lower()
    if _QUANTITY.match(text) or _WHOLE.match(text):  # 20 mm/hr, 3 dayz: a mistyped value, not a drug
        return None
    return text if _DRUG.match(text) and text not in ("true", "false") else None


def parse_param_value(value: Any, unit: Any = None) -> tuple[float | bool | Duration, str | None]:
    """A parameter value: a duration ('30 days'), a quantity ('6 mg/L'), a number or a boolean."""
    if isinstance(value, bool):
        return value, None
    if isinstance(value, int | float):
        problem = unit_problem(str(unit)) if unit is not None else None
        if problem:
            raise ValueError(problem)
        return _finite(float(value), value), str(unit) if unit is not None else None
    text = str(value)
    if text.strip().lower() in ("true", "false"):  # as --param and a quoted YAML value give it
        return text.strip().lower() == "true", None
    try:
        return Duration.parse(text), None
    except DurationTooLong:
        raise
    except DurationError as exc:
        m = _WHOLE.match(text) or _WORDED.match(text)
        # 0.25 years: durations are whole numbers; 14 dayz, 30 días: a duration, misspelt or in
        # another language (not a unit)
        if m and (
            m.group(2).lower() in DURATION_WORDS or (misspelt(m.group(2)) and unit_problem(m.group(2)))
        ):
            raise ValueError(str(exc)) from None
    m = _QUANTITY.match(text)
    if m:
        problem = unit_problem(m.group(2))
        if problem:
            raise ValueError(f"{value!r}: {problem}")
        return _finite(float(m.group(1)), value), m.group(2)
    try:
        number = float(text)
    except ValueError:
        raise ValueError(
            f"{value!r} is not a number, a quantity ('6 mg/L'), a duration ('30 days') or true/false"
        ) from None
    return _finite(number, value), None


class VariantProblem(Exception):
    """A ``{id, with}`` reference that cannot be read: where in it (keys below it) and why;
    ``also``: the problems of its other values (each value of a ``with:`` is read, so that two
    wrong values are reported together). An empty message: reported already."""

    def __init__(
        self, where: tuple[Any, ...], message: str, also: Sequence[tuple[tuple[Any, ...], str]] = ()
    ) -> None:
        super().__init__(message)
        self.where, self.message, self.also = where, message, tuple(also)

    def all(self) -> list[tuple[tuple[Any, ...], str]]:
        """Every problem: (where, message), the first first."""
        return [(self.where, self.message), *self.also]


def read_variant(
    arg: Mapping[Any, Any], reader: tuple[str, Mapping[str, ast.ParamSpec], Collection[str]] | None = None
) -> tuple[str, dict[str, Any], str]:
    """A reference to a rule at other parameter values, ``{id: crp_normal, with: {upper: 5
    mg/L}}`` (in a rule file or a cohort file): the rule id, the values as written, and the
    variant's id (``crp_normal(upper=5 mg/L)``). Whether the rule has those parameters, and
    the values suit them, is checked where the variant is made.

    In a rule file (``reader``: its id, its parameters and those already reported) a value may
    be one of the reading rule's own parameters, ``{param: limit}``: the copy is then
    ``crp_normal(upper=crp_strict.limit)``, its value the parameter's (a site's, an example's)."""
    for key in arg:
        if key not in ("id", "with"):
            raise VariantProblem(
                (key,), f"unknown key {key!r} for rule{did_you_mean(str(key), ('id', 'with'))}"
            )
    if "id" not in arg:
        raise VariantProblem((), "rule takes a rule id, or {id: RULE, with: {PARAMETER: VALUE}}")
    base = arg["id"]
    if not isinstance(base, str):
        raise VariantProblem(("id",), f"rule's id must be a rule id, not {base!r}")
    if not ID_RE.match(base):
        raise VariantProblem(
            ("id",),
            f"rule's id must be the id of a rule file, not {base!r}: a rule read at other values is read at "
            "others by giving them all in one with",
        )
    values = arg.get("with")
    if "with" not in arg:
        raise VariantProblem(
            (),
            f"{{id: {base}}} without with: for the rule as it is, write {base} alone; at other values of "
            "its parameters, give them: {id: RULE, with: {PARAMETER: VALUE}}",
        )
    if not isinstance(values, dict) or not values:
        raise VariantProblem(
            ("with",), "rule's with maps parameters of the rule to their values here, e.g. {upper: 5 mg/L}"
        )
    shown: dict[str, str] = {}
    wrong: list[tuple[tuple[Any, ...], str]] = []
    for name, raw in values.items():
        try:
            shown[name] = _variant_value(name, raw, reader)
        except VariantProblem as exc:
            wrong.append((exc.where, exc.message))
    if wrong:
        raise VariantProblem(*wrong[0], also=wrong[1:])
    return base, dict(values), variant_id(base, shown)


def _variant_value(
    name: Any, raw: Any, reader: tuple[str, Mapping[str, ast.ParamSpec], Collection[str]] | None
) -> str:
    """One value of a ``with:`` as the copy's id shows it (see :func:`read_variant`)."""
    if not isinstance(name, str) or not ID_RE.match(name):
        raise VariantProblem(("with", name), f"parameter name {name!r} must be lower_snake_case")
    if isinstance(raw, dict) and set(raw) == {"param"} and reader is not None:
        rid, params, reported = reader
        own = str(raw["param"])
        if own in reported:
            raise VariantProblem(("with", name, "param"), "")
        if own not in params:
            raise VariantProblem(
                ("with", name, "param"),
                f"unknown parameter {own!r}{did_you_mean(own, params)} of {rid!r}",
            )
        return f"{rid}.{own}"
    if isinstance(raw, dict | list) or raw is None:
        own_too = " or {param: NAME}, a parameter of this rule" if reader is not None else ""
        raise VariantProblem(
            ("with", name),
            f"{name}: a value is a number, a quantity ('5 mg/L'), a duration ('30 days'), true/false, "
            f"a drug's name{own_too}",
        )
    value: float | bool | Duration | str
    try:
        value, unit = parse_param_value(raw)
    except ValueError as exc:
        quantity, unit = _as_quantity(raw)  # 0.25 h: for a parameter that is a time quantity
        text = drug_name(raw)  # for a text parameter, a drug's name
        if quantity is None and text is None:
            raise VariantProblem(("with", name), f"{name}: {exc}") from None
        value = quantity if quantity is not None else str(text)
    return value_text(value, unit)


def value_text(value: float | bool | Duration | str, unit: str | None = None) -> str:
    """A parameter value as a variant's id shows it: ``5 mg/L``, ``30 days``, ``true``,
    ``canakinumab``."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Duration):
        return str(value)
    text = f"{value:.15g}"
    return f"{text} {unit}" if unit else text


def variant_id(rule_id: str, values: Mapping[str, str]) -> str:
    """The id of a rule read at other parameter values: ``crp_normal(upper=5 mg/L)``, the
    parameters in name order."""
    return f"{rule_id}({', '.join(f'{k}={values[k]}' for k in sorted(values))})"


def variant_parts(vid: str, rule_id: str) -> dict[str, str]:
    """The values a variant's id shows, by parameter (the inverse of :func:`variant_id`). A
    value is a number, a quantity, a duration, true/false or ``reader.param``, where the reader
    may itself be a copy, ``crp_strict(limit=1 mg/L, validity=3 days).limit``: the id is split
    only outside parentheses."""
    parts: list[str] = [""]
    depth = 0
    for ch in vid[len(rule_id) + 1 : -1]:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            parts.append("")
        else:
            parts[-1] += ch
    return dict(part.strip().split("=", 1) for part in parts)


def _finite(x: float, given: Any) -> float:
    """Thresholds are finite: NaN compares false with everything in Python and above every
    number in DuckDB, so the two evaluators would disagree."""
    if not math.isfinite(x):
        raise ValueError(f"{given!r} is not a finite number")
    return x


# ---- rule sets ----------------------------------------------------------------------------


# a rule asked for at other parameter values by its id: crp_normal(upper=3 mg/L, validity=14 days)
_ASKED_VARIANT = re.compile(r"^([a-z][a-z0-9_]*)\((.+)\)$", re.DOTALL)


@dataclass
class RuleSet:
    """Loaded, checked rules by id, in dependency order (a rule after those it uses)."""

    rules: dict[str, ast.Rule]
    order: list[str]
    types: dict[int, ast.Type]  # node id → type
    sources: list[str]
    digest: str
    notes: list[str] = field(default_factory=list)  # worth saying, not wrong: an empty directory
    # what `rules check` warns of, not wrong in the language but likely not meant: a limit a
    # lab's values never reach, a quantity parameter's default without its unit
    warnings: list[str] = field(default_factory=list)
    # the codes its rules may name: the built-in ones and the directories' codes.yaml
    codebook: codes.CodeBook = codes.BUILTIN
    # every rule directory read, resolved (one may hold only params.yaml or codes.yaml)
    directories: list[str] = field(default_factory=list)

    def get(self, rule_id: str) -> ast.Rule:
        """The rule of an id; a rule at other parameter values (``crp_normal(upper=3 mg/L)``) is
        made when first asked for, under its id as the loader writes it (the rule's ``id``)."""
        if rule_id not in self.rules and (m := _ASKED_VARIANT.match(rule_id)) and m.group(1) in self.rules:
            return self.rules[self._asked_variant(m.group(1), m.group(2), rule_id)]
        if rule_id not in self.rules:
            # a mistyped id on the command line (exit 2), not a problem in the rule files
            hint = did_you_mean(rule_id, self.rules)  # a typo, most likely; else perhaps a user rule
            note = None if hint else self.only_builtin_note()
            raise UsageError(f"unknown rule {rule_id!r}{hint}" + (f"; {note}" if note else ""))
        return self.rules[rule_id]

    def _asked_variant(self, base: str, text: str, asked: str) -> str:
        values: dict[str, str] = {}
        for part in text.split(","):
            name, sep, value = part.partition("=")
            if not sep or not name.strip():
                raise UsageError(
                    f"rule {asked!r}: give each parameter as NAME=VALUE, e.g. crp_normal(upper=3 mg/L)"
                )
            if name.strip() in values:
                raise UsageError(f"rule {asked!r}: {name.strip()} is given twice")
            values[name.strip()] = self._read_back(value.strip())
        try:
            _, given, vid = read_variant({"id": base, "with": values})
            return self.variant(base, given, vid)
        except VariantProblem as exc:
            raise UsageError("; ".join(f"rule {asked!r}: {message}" for _, message in exc.all())) from None
        except VariantValuesError as exc:
            raise UsageError(f"rule {asked!r}: {exc}") from None

    def _read_back(self, value: str) -> str:
        """A value as a copy's id shows it, which may name another rule's parameter
        (``complete_response.index_drug``, ``acr_pedi_30(index_drug=x).index_drug``): that
        parameter's value, so that an id from explain's output can be asked for again; any other
        value as it is."""
        m = re.match(r"^(.+)\.([a-z][a-z0-9_]*)$", value, re.DOTALL)
        if m is None or not (m.group(1) in self.rules or _ASKED_VARIANT.match(m.group(1))):
            return value
        try:
            spec = self.get(m.group(1)).param(m.group(2))
        except (KeyError, UsageError):
            return value
        return value_text(spec.effective, spec.unit)

    def variant(self, rule_id: str, values: Mapping[str, Any], vid: str) -> str:
        """Add (once) the rule ``rule_id`` at other parameter values under ``vid`` (from
        :func:`read_variant`), for a reader outside the rule files: a cohort file. Returns
        ``vid``; :class:`VariantValuesError` for values that do not suit the parameters."""
        if vid in self.rules:
            return vid
        rule = self.get(rule_id)
        nids: dict[int, int] = {}
        last = max(n.nid for r in self.rules.values() for n in walk(r.define) if isinstance(n, ast.Node))
        before = set(self.rules)
        copy = variant_rule(rule, vid, values, [last], nids, self.rules)
        for new, old in nids.items():
            self.types[new] = self.types[old]
        self.rules[vid] = copy
        for made in [r for r in self.rules if r not in before]:  # the copies it reads first
            base = self.rules[made].variant_of
            assert base is not None
            self.order.insert(self.order.index(base) + 1, made)  # after everything it reads
        return vid

    def listed(self) -> list[str]:
        """The rules in evaluation order, without the variants (rules read at other parameter
        values, evaluated where they are read): what "every rule" means to a user."""
        return [rid for rid in self.order if self.rules[rid].variant_of is None]

    def only_builtin_note(self) -> str | None:
        """What to say beside an unknown rule when only the built-in pack was loaded: a user's
        rules are read only from the directories they are given in."""
        if any(not from_builtin(s) for s in self.sources):
            return None
        return "only the built-in rules were loaded: rules of your own need --rules DIR (or $TIMELINE_RULES)"

    def dependencies(self, rule_id: str) -> list[str]:
        """The rule and every rule it uses, in evaluation order."""
        needed: set[str] = set()

        def visit(rid: str) -> None:
            if rid in needed:
                return
            needed.add(rid)
            for ref in _rule_refs(self.rules[rid].define):
                visit(ref)

        visit(rule_id)
        return [r for r in self.order if r in needed]

    def grows_with_time(self, rule_id: str) -> bool:
        """Whether a rule's number changes between change points (``age``, ``time_since`` and
        arithmetic on them): a history shows it at each interval's start."""

        def grows(node: ast.Node) -> bool:
            if isinstance(node, ast.Age | ast.TimeSince):
                return True
            if isinstance(node, ast.RuleRef):
                return self.grows_with_time(node.rule)
            if isinstance(node, ast.UnknownUnless):
                return grows(node.value)
            if isinstance(node, ast.Arith | ast.Clip | ast.Coalesce | ast.PctChange):
                return any(grows(child) for child in ast.children(node))
            return False  # a boolean, an event's value, a baseline at an anchor: a step

        rule = self.rules[rule_id]
        return rule.type.kind == "num" and grows(rule.define)

    def duration(self, ref: ast.DurationRef) -> Duration:
        """A duration as written, or the value of the parameter it names (negated for ``-param``)."""
        if ref.value is not None:
            return ref.value
        assert ref.param is not None
        value = self.rules[ref.param[0]].param(ref.param[1]).effective
        assert isinstance(value, Duration)
        return value.negate() if ref.negate else value

    def reported(self, rule_id: str) -> Conversion | None:
        """How a rule's computed value becomes the value it reports, in the unit its file
        declares (``unit: mg/dL`` on a CRP computed in mg/L divides it by 10); None when the
        two are the same unit, or differ only by an annotation ({score} and 1). The loader
        has checked that they convert."""
        rule = self.rules[rule_id]
        computed = rule.type.unit or "1"
        if rule.unit is None or rule.type.kind != "num" or computed in ("?", rule.unit):
            return None
        c = conversion(computed, rule.unit)
        return None if (c.scale, c.offset) == (1.0, 0.0) else c

    def manifest(self) -> dict[str, Any]:
        return {
            "rules_digest": self.digest,
            "rules": {rid: self.rules[rid].version for rid in self.order},
            "overrides": {rid: r.source for rid, r in self.rules.items() if r.overrides},
            # the site's parameter values (params.yaml, --param): a sensitivity run at another
            # limit says which, where the digest only says that something differs
            "parameters": {
                rid: given
                for rid, r in sorted(self.rules.items())
                if r.variant_of is None
                and (given := {p.name: _given(p) for p in r.params if p.value is not None})
            },
        }


def _given(p: ast.ParamSpec) -> str:
    """A site's value of a parameter as a manifest records it: ``2 mg/L``, ``6 months``, ``true``."""
    return param_text(p.value, p.unit)


def param_text(value: Any, unit: str | None) -> str:
    """A parameter's value as a rule file would write it: ``2 mg/L``, ``6 months``, ``true``."""
    text = (
        str(value).lower()
        if isinstance(value, bool)
        else f"{value:.12g}"
        if isinstance(value, float)
        else str(value)
    )
    return f"{text} {unit}" if unit and not isinstance(value, bool | str) else text


def _children(node: Any) -> Iterable[Any]:
    if isinstance(node, ast.Frozen):
        for name in type(node).field_names:
            yield from _flatten(getattr(node, name))


def _flatten(value: Any) -> Iterable[Any]:
    if isinstance(value, ast.Frozen):
        yield value
    elif isinstance(value, tuple):
        for v in value:
            yield from _flatten(v)


def walk(node: Any) -> Iterable[Any]:
    """Every model reachable from ``node`` (nodes, selectors, windows...), depth first."""
    yield node
    for child in _children(node):
        yield from walk(child)


def _rule_refs(node: ast.Node) -> list[str]:
    return [n.rule for n in walk(node) if isinstance(n, ast.RuleRef)]


def rule_dirs(extra: Sequence[str | os.PathLike[str]] = (), builtin: bool = True) -> list[Path]:
    """The built-in pack, then $TIMELINE_RULES (os.pathsep-separated), then ``extra``."""
    dirs: list[Path] = []
    if builtin:
        dirs.append(BUILTIN_DIR / "sjia")
    env = os.environ.get("TIMELINE_RULES")
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.extend(Path(d) for d in extra)
    return dirs


def _yaml_problem(exc: Any, text: str) -> str:
    """PyYAML's account of a syntax error, with what usually causes it when that is plain: a
    tab where it looked for indentation, or an unquoted bracketed unit inside a flow list."""
    problem = str(exc.problem or exc)
    mark = exc.problem_mark
    if mark is None:
        return problem
    row = text.splitlines()[mark.line] if mark.line < len(text.splitlines()) else ""
    if "\t" in row[: mark.column + 1]:
        return f"{problem} (a tab character: YAML indents with spaces, never tabs)"
    if "another document" in problem:
        return f"{problem} (a rule file holds one rule: put the rule after --- in a file of its own)"
    if re.search(r"\d\s+\[[^\]]+\]", row) and ("'['" in problem or "',' or ']'" in problem):
        return f'{problem} (a unit in brackets inside [ ] or {{ }} must be quoted, e.g. "100.4 [degF]")'
    return problem


def _moment_problem(text: object) -> str | None:
    """What is wrong with an example's ``at``, if anything: a date or a date-time, without an
    offset, in the range ``--at`` takes."""
    try:
        parse_at(str(text), "at")
    except UsageError as exc:
        return str(exc)
    return None


def _read_text(path: Path, problems: list[Problem]) -> str | None:
    """A rule file's text, or None with the problem recorded (not a readable file, not UTF-8)."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        problems.append(Problem(str(path), 0, 0, f"cannot read it: {exc.strerror or exc}"))
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        before = data[: exc.start]
        line = before.count(b"\n") + 1
        col = exc.start - (before.rfind(b"\n") + 1) + 1
        problems.append(
            Problem(str(path), line, col, f"not UTF-8 (byte 0x{data[exc.start]:02x}): save the file as UTF-8")
        )
        return None


_ID_LINE = re.compile(r"""^id:\s*["']?([a-z][a-z0-9_]*)["']?\s*(?:#.*)?$""", re.MULTILINE)


def _id_line(text: str) -> str | None:
    """The rule id a file's ``id:`` line gives, read without YAML (for a file it cannot parse)."""
    m = _ID_LINE.search(text)
    return m.group(1) if m else None


def _once(dirs: Sequence[str | os.PathLike[str]]) -> list[str | os.PathLike[str]]:
    """Each directory once, at the last place it is given: the same folder named twice, the
    same way or another (``$TIMELINE_RULES``, a cohort file's ``rules:``, ``--rules``, a
    relative or absolute path, a symlink), would otherwise define each of its rules twice. At
    its last place its rules override those of the folders before it, as they would."""

    def key(d: str | os.PathLike[str]) -> str:
        try:
            return str(Path(d).resolve())
        except (OSError, RuntimeError):
            return str(d)

    keys = [key(d) for d in dirs]
    return [d for i, d in enumerate(dirs) if keys[i] not in keys[i + 1 :]]


def directories_of(dirs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """The rule directories of ``dirs`` as a rule set records them: each read once, resolved."""
    out = []
    for d in _once(dirs):
        with contextlib.suppress(OSError):  # a path that cannot name a directory: reported by the loader
            if Path(d).is_dir():
                out.append(str(Path(d).resolve()))
    return out


def rule_files(directory: Path) -> list[Path]:
    """The rule files of a directory and its subfolders (``params.yaml`` included), in the
    order they are read: ``*.yaml``, then ``*.yml``, in any case (``R.YAML`` too, as saved by
    some editors). A hidden folder or file (a name starting with ``.``: ``.ipynb_checkpoints/``,
    ``.git/``, an editor's ``.r.yaml.swp``) is not read."""
    found: list[Path] = []
    # os.walk, not Path.rglob: the same files (links to folders not followed, unreadable
    # folders skipped), without pathlib's cost per path (~0.5 ms of every command's start)
    for root, dirs, files in os.walk(directory):
        dirs[:] = [d for d in dirs if not d.startswith(".")]  # a hidden folder is not read
        for name in (*dirs, *files):  # a folder named x.yaml is listed, as rglob lists it
            if not name.startswith(".") and _suffix(name).lower() in (".yaml", ".yml"):
                found.append(Path(root, name))
    return sorted(found, key=lambda p: (p.suffix.lower() == ".yml", p))


def _suffix(name: str) -> str:
    """``Path(name).suffix``."""
    i = name.rfind(".")
    return name[i:] if 0 < i < len(name) - 1 else ""


_NESTED_PARAMS = (
    "a params.yaml is read only at the top of a rule directory, not in a subfolder: move the "
    "values you mean into {top}/params.yaml and this file out of the rule directory"
)
_ONCE_PER_DIRECTORY = (
    " (a rule directory, its subfolders included, defines each rule once; only a later "
    "directory overrides: move the copy you do not mean out of the rule directory)"
)


def load_rules(
    dirs: Sequence[str | os.PathLike[str]] | None = None,
    *,
    params: dict[str, dict[str, Any]] | None = None,
    site_params: bool = True,
) -> RuleSet:
    """Load and check every ``*.yaml`` rule file of the directories (later ones override
    earlier ones by id), plus ``params.yaml`` site overrides found in them (unless
    ``site_params`` is false: the rules' own defaults, as their examples are written for)."""
    problems: list[Problem] = []
    next_id = [0]
    rules: dict[str, ast.Rule] = {}
    refs: dict[str, list[tuple[str, Path_, _Doc]]] = {}
    # rules read at other parameter values, by the rule that reads them: (variant id, rule id,
    # values, where, file)
    asked: dict[str, list[tuple[str, str, dict[str, Any], Path_, _Doc]]] = {}
    docs: dict[str, _Doc] = {}
    site: dict[str, dict[str, Any]] = {}
    places: _Places = {}
    sources: list[str] = []
    failed: set[str] = set()  # ids of rule files that did not load
    orphans: list[tuple[str, str, dict[str, Any], Path_, _Doc]] = []  # what they read at other values
    notes: list[str] = []
    hasher = hashlib.sha256()
    listed: list[list[Path]] = []
    roots: list[Path] = []  # the rule directories of listed, as given
    top: dict[Path, Path] = {}  # each file's rule directory, as given
    given = dirs if dirs is not None else rule_dirs()
    for d in _once(given):
        directory = Path(d)
        try:
            is_dir = directory.is_dir()
        except OSError as exc:  # a path that cannot name a file: too long, not searchable
            problems.append(
                Problem(str(directory), 0, 0, f"rule directory cannot be read: {exc.strerror or exc}")
            )
            continue
        if not is_dir:
            what = (
                "is a file, not a rule directory" if directory.exists() else "rule directory does not exist"
            )
            problems.append(Problem(str(directory), 0, 0, what))
            continue
        files = rule_files(directory)
        if not files:
            notes.append(f"{directory} holds no rule files (*.yaml or *.yml): no rules were read from it")
        listed.append(files)
        roots.append(directory)
    # a file under two directories given (--rules site --rules site/labs) is read once, as the
    # last one's, as a directory named twice is
    for i, (root, files) in enumerate(zip(roots, listed, strict=True)):
        later = {p.resolve() for other in listed[i + 1 :] for p in other}
        listed[i] = [p for p in files if p.resolve() not in later]
        top.update((p, root) for p in listed[i])
    # a directory's codes.yaml first, all of them: a rule may name a code another directory defines
    texts: dict[Path, str | None] = {p: _read_text(p, problems) for files in listed for p in files}
    book = _site_codes([(p, t) for p, t in texts.items() if t is not None and _is_codes_file(p)], problems)
    for path in (p for files in listed for p in files):
        text = texts[path]
        if text is None:
            continue
        hasher.update(path.name.encode() + b"\0" + text.encode() + b"\0")
        if _is_codes_file(path):
            continue
        doc = _Doc(str(path), text, problems)
        if path.stem == "params":
            if path.parent != top[path]:
                # an archived or copied params.yaml (old/params.yaml) would silently decide the
                # site's values: only the one at the top of a rule directory is read
                problems.append(Problem(str(path), 1, 1, _NESTED_PARAMS.format(top=top[path])))
                continue
            if site_params:
                _site_params(doc, site, places)
            continue
        sources.append(str(path))
        parser = _RuleParser(doc, next_id, book)
        rule = parser.rule(doc.data, str(path)) if doc.data is not None else None
        if doc.data is None and not any(p.file == str(path) for p in problems):
            problems.append(Problem(str(path), 1, 1, "empty rule file"))
        if rule is None:
            # the rule it defines, so that references to it are not also "unknown": its id
            # as read, else as written on an `id:` line (the YAML did not parse), else the name
            failed.add(parser.rule_id)
            failed.add(_id_line(text) or path.stem)
            # the rules it reads at other values are still checked (a misspelt with: is said
            # with the file's other problems); a value that is its own parameter cannot be
            for vid, base, values, where in parser.variants:
                plain = {k: v for k, v in values.items() if not isinstance(v, dict)}
                if plain:
                    orphans.append((f"{vid}#{path}", base, plain, where, doc))
            continue
        if rule.id in rules:
            previous = rules[rule.id]
            if top[Path(previous.source)] == top[path]:
                # two files of one rule directory, in one folder or not (an archived copy in
                # old/ is not an override): only a later directory overrides an earlier one's
                line, col = doc.where(("id",))
                again = f"rule id {rule.id!r} is also defined in {previous.source}"
                if Path(previous.source).parent != path.parent:
                    again += _ONCE_PER_DIRECTORY
                problems.append(Problem(str(path), line, col, again))
                continue
            rule = rule.replace(overrides=previous.source)
        rules[rule.id] = rule
        refs[rule.id] = [(r, p, doc) for r, p in parser.refs]
        docs[rule.id] = doc
        asked[rule.id] = [(vid, base, values, where, doc) for vid, base, values, where in parser.variants]
    # the variants the rules read (not those of a file another directory's rule overrides)
    requests: dict[str, tuple[str, dict[str, Any], str, list[tuple[_Doc, Path_]]]] = {}
    for reader, asks in [*asked.items(), ("", orphans)]:
        for vid, base, values, where, doc in asks:
            requests.setdefault(vid, (base, values, reader, []))[3].append((doc, where))
    for rid, overrides in (params or {}).items():
        site.setdefault(rid, {}).update(overrides)
        for name in overrides:
            places[(rid, name)] = ("--param", 0, 0)
        places.setdefault((rid, ""), ("--param", 0, 0))
    rules = _apply_site_params(rules, _for_all_rules(rules, site, problems, places, notes), problems, places)
    rules = _variants(rules, requests, docs, next_id, problems, places)
    rules = {rid: rule for rid, rule in rules.items() if "#" not in rid}  # read for a file that failed
    rules = _same_as_their_rule({rid: bound_drugs(rule) for rid, rule in rules.items()})
    for items in refs.values():
        for target, ref_path, doc in items:
            if target not in rules and target not in failed:
                line, col = doc.where(ref_path)
                problems.append(
                    Problem(doc.file, line, col, f"unknown rule {target!r}{did_you_mean(target, rules)}")
                )
    order = _toposort(rules, docs, problems)
    types: dict[int, ast.Type] = {}
    checker = _TypeChecker(rules, docs, types, problems, book)
    checkable = _checkable(rules)
    for rid in order:
        if rid in checkable:
            before = len(problems)
            checker.check_rule(rules[rid])
            if len(problems) == before and types[rules[rid].define.nid].unit != UNREAD:  # its type is known
                _check_expected(rules[rid], types[rules[rid].define.nid], docs[rid], problems)
                if rules[rid].meaning is not None and types[rules[rid].define.nid].kind != "bool":
                    line, col = docs[rid].where(("meaning",))
                    problems.append(Problem(rules[rid].source, line, col,
                                            "meaning says what the rule being true means: a number has no true"))  # fmt: skip
    rules = _molar_values(rules, checker.param_molar, problems, places)
    for rid in rules.keys() - checkable:  # a duration written as a value, in a rule not type-checked
        for node in walk(rules[rid].define):
            if isinstance(node, ast.Const) and node.written is not None:
                line, col = docs[rid].where(_path_of(node))
                problems.append(Problem(docs[rid].file, line, col, unit_problem(_written_unit(node)) or ""))
    if problems:
        # a variant is checked as a copy of its rule: a problem in the rule is not said twice;
        # each file's problems in the order of its lines
        first_at = {found.file: i for i, found in reversed(list(enumerate(problems)))}
        unique = sorted(
            dict.fromkeys(problems), key=lambda found: (first_at[found.file], found.line, found.column)
        )
        raise RuleError(unique)
    rules = _molar_converted(rules, checker.molar, types)
    for (rid, name), unit in checker.read_in.items():
        if rid in rules:
            specs = tuple(p.replace(read_in=unit) if p.name == name else p for p in rules[rid].params)
            rules[rid] = rules[rid].replace(params=specs)
    warnings = [*_plain_defaults(rules), *checker.warnings]
    for rid in order:
        rules[rid] = rules[rid].replace(type=types[rules[rid].define.nid])
    hasher.update(json.dumps(site, sort_keys=True, default=str).encode())
    return RuleSet(
        rules=rules, order=order, types=types, sources=sources, digest=hasher.hexdigest(), notes=notes,
        codebook=book, directories=directories_of(given), warnings=list(dict.fromkeys(warnings)),
    )  # fmt: skip


def _is_codes_file(path: Path) -> bool:
    """A directory's ``codes.yaml`` (``Codes.yml`` too): a site's codes, not a rule."""
    return path.stem.lower() == "codes"


def _site_codes(files: list[tuple[Path, str]], problems: list[Problem]) -> codes.CodeBook:
    """The built-in codes and those of the rule directories' ``codes.yaml`` files; a code two
    files define differently is a problem at the second."""
    if not files:
        return codes.BUILTIN
    from timeline.language.sitecodes import read as read_codes  # read only where a site has codes

    seen: dict[str, codes.SiteCode] = {}
    for path, text in files:
        doc = _Doc(str(path), text, problems)
        for sc in read_codes(doc):
            first = seen.get(sc.code.code)
            if first is not None and not first.same_definition(sc):
                problems.append(Problem(*sc.place(), 1,
                    f"code {sc.code.code!r} is also defined, differently, at {first.source}"))  # fmt: skip
                continue
            seen.setdefault(sc.code.code, sc)
    return codes.BUILTIN.with_site(seen.values())


# where each site parameter value was given: (rule id, name) → (file, line, column); the
# rule id alone under name "" (a params.yaml line, or --param)
_Places = dict[tuple[str, str], tuple[str, int, int]]


def _site_params(doc: _Doc, site: dict[str, dict[str, Any]], places: _Places) -> None:
    if doc.data is None:
        return
    if not isinstance(doc.data, dict) or not all(isinstance(v, dict) for v in doc.data.values()):
        line, col = doc.where(())
        doc.problems.append(Problem(doc.file, line, col, "params.yaml maps rule id → {parameter: value}"))
        return
    for rid, values in doc.data.items():
        site.setdefault(rid, {}).update(values)
        places[(rid, "")] = (doc.file, *doc.where((rid,)))
        for name in values:
            places[(rid, name)] = (doc.file, *doc.where((rid, name)))


def _for_all_rules(
    rules: Mapping[str, ast.Rule],
    site: dict[str, dict[str, Any]],
    problems: list[Problem],
    places: _Places,
    notes: list[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """The site's values by rule, with those given for all rules (``all_rules:`` in params.yaml,
    ``--param NAME=VALUE``) given to every rule with that parameter, unless a value is given
    for the rule itself. A name no rule has is a problem where it is given."""
    out = {rid: dict(values) for rid, values in site.items() if rid != ALL_RULES}
    everyone = site.get(ALL_RULES, {})
    names = {p.name for r in rules.values() for p in r.params}
    for name, raw in everyone.items():
        place = places.get((ALL_RULES, name), ("params", 0, 0))
        holders = [
            rid for rid, r in rules.items() if r.variant_of is None and any(p.name == name for p in r.params)
        ]
        if not holders:
            problems.append(
                Problem(*place, f"no rule has a parameter {name!r}{did_you_mean(str(name), names)}")
            )
            continue
        wrong: dict[str, list[str]] = {}  # why → the rules it does not suit: one problem, not one a rule
        kept: list[str] = []  # rules whose own value (a params.yaml's) wins over --param's for all
        for rid in holders:
            if name in out.get(rid, {}):
                if place[0] == "--param" and places.get((rid, name), place)[0] != "--param":
                    kept.append(f"{rid} ({out[rid][name]}, {places[(rid, name)][0]})")
                continue
            try:
                override_value(rules[rid].param(name), raw)
            except ByMolarMass:
                pass  # read when applied, by the molar mass of the lab it is compared with
            except ValueError as exc:
                wrong.setdefault(str(exc), []).append(rid)
                continue
            out.setdefault(rid, {})[name] = raw
            places[(rid, name)] = place
        for why, rids in wrong.items():
            problems.append(Problem(*place, f"{name} (of {', '.join(rids)}): {why}"))
        if kept and notes is not None:
            notes.append(f"--param {name}={everyone[name]} is not given to {', '.join(kept)}: a value for one rule wins "
                         f"over one for all rules; give --param RULE.{name} to change it")  # fmt: skip
    return out


def _apply_site_params(
    rules: dict[str, ast.Rule], site: dict[str, dict[str, Any]], problems: list[Problem], places: _Places
) -> dict[str, ast.Rule]:
    def problem(rid: str, name: str, message: str) -> None:
        file, line, col = places.get((rid, name), ("params", 0, 0))
        problems.append(Problem(file, line, col, message))

    out = dict(rules)
    for rid, values in site.items():
        if rid not in rules:
            problem(rid, "", f"parameter override for unknown rule {rid!r}{did_you_mean(rid, rules)}")
            continue
        rule = rules[rid]
        specs = {p.name: p for p in rule.params}
        others = values_with(specs, values)
        for name, raw in values.items():
            if name not in specs:
                problem(rid, name, f"rule {rid!r} has no parameter {name!r}{did_you_mean(name, specs)}")
                continue
            try:
                value = override_value(specs[name], raw, others, values)
            except ByMolarMass as by:  # converted once the checker finds the lab's molar mass
                specs[name] = by.kept(specs[name])
                continue
            except ValueError as exc:
                problem(rid, name, f"{rid}.{name}: {exc}")
                continue
            specs[name] = specs[name].replace(value=value, value_unit=None)
        out[rid] = rule.replace(params=tuple(specs.values()))
    return out


def _variants(
    rules: dict[str, ast.Rule],
    requests: Mapping[str, tuple[str, dict[str, Any], str, list[tuple[_Doc, Path_]]]],
    docs: dict[str, _Doc],
    next_id: list[int],
    problems: list[Problem],
    places: _Places,
) -> dict[str, ast.Rule]:
    """The rules read at other parameter values (``{rule: {id: R, with: {...}}}``), added to
    ``rules``: each a copy of its rule, with the values given (checked as a site's would be;
    ``{param: p}``: the reading rule's parameter, at its site's value) and the site's values
    of the others."""
    out = dict(rules)
    pending = dict(requests)
    while pending:
        # a copy of a rule that reads copies at its own parameters is made after them (it reads
        # its own copies of them: variant_rule)
        ready = [vid for vid, (base, *_) in pending.items()
                 if base not in rules or not any(t in pending for t in _rule_refs(rules[base].define))]  # fmt: skip
        for vid in ready or list(pending):  # none ready: a cycle, which the loader reports
            _variant_request(vid, pending.pop(vid), rules, out, docs, next_id, problems, places)
    return out


def _same_as_their_rule(rules: dict[str, ast.Rule]) -> dict[str, ast.Rule]:
    """The rules without the copies whose every parameter has its rule's value (a reading rule
    passing on its own default, or the site's value), each reference to one reading the rule
    itself: the same answers, evaluated once (the pack's rules pass their ``index_drug`` on to
    the rules they read; with one value everywhere, no copy is made)."""
    same = {
        vid: rule.variant_of
        for vid, rule in rules.items()
        if rule.variant_of is not None
        and rule.variant_of in rules
        and all(p.effective == rules[rule.variant_of].param(p.name).effective for p in rule.params)
    }
    if not same:
        return rules

    def reread(value: ast.Frozen, update: dict[str, Any]) -> None:
        if isinstance(value, ast.RuleRef) and value.rule in same:
            update["rule"], update["passes"] = same[value.rule], rules[value.rule].variant_with

    return {
        rid: rule.replace(define=_rebuilt(rule.define, reread))
        if any(isinstance(n, ast.RuleRef) and n.rule in same for n in walk(rule.define))
        else rule
        for rid, rule in rules.items()
        if rid not in same
    }


def _variant_request(
    vid: str,
    request: tuple[str, dict[str, Any], str, list[tuple[_Doc, Path_]]],
    rules: dict[str, ast.Rule],
    out: dict[str, ast.Rule],
    docs: dict[str, _Doc],
    next_id: list[int],
    problems: list[Problem],
    places: _Places,
) -> None:
    base, values, reader, where = request
    rule = rules.get(base)
    if rule is not None:  # else reported at the reference as an unknown rule (or its file failed)
        given = {
            name: _own_value(rules[reader], raw) if isinstance(raw, dict) else raw
            for name, raw in values.items()
        }
        # (a parameter declared but never read is refused with its file: see _RuleParser.rule)
        try:
            out[vid] = variant_rule(rule, vid, given, next_id, None, out)
            for name, raw in values.items():  # a plain number passed on is read in the unit it is given to
                target = next((p for p in rule.params if p.name == name), None)
                if isinstance(raw, dict) and target is not None and target.unit and reader in out:
                    specs = tuple(p.replace(read_in=p.read_in or target.unit)
                                  if p.name == str(raw.get("param")) and p.unit is None else p
                                  for p in out[reader].params)  # fmt: skip
                    out[reader] = out[reader].replace(params=specs)
        except VariantValuesError as exc:
            for name, message in exc.wrong:
                own = values.get(name)
                if (
                    rule.overrides is not None
                    and base in docs
                    and not any(p.name == name for p in rule.params)
                ):
                    # a site's own version of a rule, without a parameter the rules reading it give
                    # it (the pack's rules pass index_drug on): said once, at the override
                    line, col = docs[base].where(("id",))
                    problems.append(Problem(rule.source, line, col,
                        f"{base} overrides {rule.overrides} without its parameter {name!r}, which rules "
                        f"reading it give it (with: {{{name}: …}}): declare {name} here and read it, "
                        "as the rule it overrides does"))  # fmt: skip
                    continue
                given_at = None
                if isinstance(own, dict) and any(
                    p.name == name for p in rule.params
                ):  # say whose value it was
                    spec = rules[reader].param(str(own["param"]))
                    given_at = places.get((reader, str(own["param"])))
                    site = ", as params.yaml or --param sets it" if spec.value is not None else ""
                    message += f" (the value of {reader}.{own['param']}{site})"
                if given_at is not None:  # at the value's own place: params.yaml's line, or --param (exit 2)
                    problems.append(Problem(*given_at, message))
                    continue
                for doc, path in where:
                    line, col = doc.where((*path, "with", name))
                    problems.append(Problem(doc.file, line, col, message))
            return
        for made, copy in out.items():
            if made not in docs and copy.variant_of is not None:
                docs[made] = docs[copy.variant_of]


@functools.lru_cache(maxsize=1024)
def from_builtin(source: str) -> bool:
    """Whether a rule file (or rule directory) is the built-in pack's (a path resolved once:
    every command's start-up asks it of each rule). A file that is no link is where its
    directory resolves to: each directory is resolved once (the pack's 44 files, one by one,
    took ~1 ms of `timeline state`)."""
    path = Path(source)
    if path.name in ("", ".", "..") or path.is_symlink():
        return path.resolve().is_relative_to(BUILTIN_DIR)
    return (_resolved(str(path.parent)) / path.name).is_relative_to(BUILTIN_DIR)


@functools.lru_cache(maxsize=1024)
def _resolved(directory: str) -> Path:
    return Path(directory).resolve()


def drugs_named(rule: ast.Rule) -> set[str]:
    """The drugs a rule's definition names (selectors, on_drug, daily_dose)."""
    out: set[str] = set()
    for n in walk(rule.define):
        if isinstance(n, ast.Selector | ast.OnDrug):
            out.update(n.drugs)
        elif isinstance(n, ast.DailyDose):
            out.add(n.drug)
    return out


def known_drugs(rules: RuleSet) -> set[str]:
    """The drugs the built-in pack's rules name: real drugs, never a misspelling to warn of
    when no patient of a store had them (a list of DMARDs names many). As its files write
    them — a drug parameter at its default, not at a value a site or ``--param`` gives
    (``index_drug=anakinara`` is no known drug)."""
    out: set[str] = set()
    for rule in rules.rules.values():
        if not from_builtin(rule.source):
            continue
        by_param: set[str] = set()  # the rule's parameters naming a drug
        for n in walk(rule.define):
            if isinstance(n, ast.Selector):
                out.update(n.written[0] if n.written else n.drugs)
                by_param.update(n.drug_params, n.not_drug_params)
            elif isinstance(n, ast.OnDrug):
                out.update(n.written if n.drug_params else n.drugs)
                by_param.update(n.drug_params)
            elif isinstance(n, ast.DailyDose):
                out.update([n.drug] if n.drug_param is None else [])
                by_param.update([n.drug_param] if n.drug_param else [])
        out.update(p.default for p in rule.params if p.name in by_param and isinstance(p.default, str))
    return out


def _reads(rule_id: str, define: ast.Node, name: str) -> bool:
    """Whether the definition ``define`` of rule ``rule_id`` reads its parameter ``name``: as a
    value or threshold, a duration, a drug's name, or passed on to a rule it reads."""
    ref = f"{rule_id}.{name}"
    # passed on to a rule read at other values: `crp_normal(upper=crp_strict.limit)`, the
    # whole name (a parameter `win` is not read by passing on `win2`)
    mention = re.compile(rf"(?<![\w.]){re.escape(ref)}(?![\w])")
    for n in walk(define):
        if isinstance(n, ast.Param) and (n.rule, n.name) == (rule_id, name):
            return True
        if isinstance(n, ast.DurationRef) and n.param == (rule_id, name):
            return True
        if isinstance(n, ast.Selector | ast.OnDrug) and name in n.drug_params:
            return True
        if isinstance(n, ast.Selector) and name in n.not_drug_params:
            return True
        if isinstance(n, ast.DailyDose) and n.drug_param == name:
            return True
        if isinstance(n, ast.RuleRef) and any(mention.search(t) for t in (n.rule, *(v for _, v in n.passes))):
            return True
    return False


def _own_value(reader: ast.Rule, raw: Any) -> Any:
    """A value given to a rule read at other values: as written, or for ``{param: p}`` the
    reading rule's parameter ``p`` (its site's value) written as a value (``3 mg/L``)."""
    if not isinstance(raw, dict):
        return raw
    spec = reader.param(str(raw["param"]))
    # a site's value kept in its own unit until the molar mass is known (156 mg/dL for a
    # parameter in mmol/L) is passed on in it: the copy converts it by its own lab's
    unit = spec.value_unit if spec.value is not None and spec.value_unit is not None else spec.unit
    return value_text(spec.effective, unit)


class VariantValuesError(Exception):
    """Values a rule cannot be read at: (parameter, why) for each."""

    def __init__(self, wrong: list[tuple[str, str]]) -> None:
        super().__init__("; ".join(message for _, message in wrong))
        self.wrong = wrong


def variant_rule(
    rule: ast.Rule,
    vid: str,
    values: Mapping[str, Any],
    next_id: list[int],
    nids: dict[int, int] | None = None,
    rules: dict[str, ast.Rule] | None = None,
) -> ast.Rule:
    """A copy of ``rule`` under ``vid``, its parameters at ``values`` (checked as a site's
    would be; the others keep the rule's values), every node a new id from ``next_id``
    (``nids``: filled with each new id's old one; a rule copied twice has two new ids per node). :class:`VariantValuesError` names every
    value that does not suit its parameter.

    A rule that reads another at its own parameters (``crp_normal(upper=crp_strict.limit)``)
    passes the copy's values on: the copy reads ``crp_normal(upper=<vid>.limit)``, made and
    added to ``rules`` here if it is not there yet."""
    specs = {p.name: p for p in rule.params}
    others = values_with(specs, values)
    wrong: list[tuple[str, str]] = []
    for name, raw in values.items():
        if name not in specs:
            wrong.append((name, f"rule {rule.id!r} has no parameter {name!r}{did_you_mean(name, specs)}"))
            continue
        try:
            value = override_value(specs[name], raw, others, values)
        except ByMolarMass as by:  # converted once the checker finds the lab's molar mass
            specs[name] = by.kept(specs[name])
            continue
        except ValueError as exc:
            wrong.append((name, f"{rule.id}.{name}: {exc}"))
            continue
        specs[name] = specs[name].replace(value=value, value_unit=None)
    if wrong:
        raise VariantValuesError(wrong)
    nids = {} if nids is None else nids
    # the copies it reads at its own parameters (or the rules themselves, read at equal values):
    # (rule read, values as the reference shows them) → the copy at this copy's values
    retarget: dict[tuple[str, tuple[tuple[str, str], ...]], str] = {}
    refs = dict.fromkeys((n.rule, n.passes) for n in walk(rule.define) if isinstance(n, ast.RuleRef))
    for target, passes in refs if rules is not None else ():
        assert rules is not None
        read = rules.get(target)
        if read is None:
            continue
        base, shown = (
            (read.variant_of, dict(read.variant_with))
            if read.variant_of is not None
            else (target, dict(passes))
        )
        own = {name: text.split(".", 1)[1] for name, text in shown.items() if text.startswith(f"{rule.id}.")}
        if base is None or not own:
            continue
        passed = {name: f"{vid}.{own[name]}" if name in own else text for name, text in shown.items()}
        retarget[(target, passes)] = copy_id = variant_id(base, passed)
        if copy_id not in rules:
            original = rules[base]
            given = {
                name: value_text(specs[own[name]].effective, specs[own[name]].unit) if name in own
                else value_text(read.param(name).effective, read.param(name).unit)
                for name in shown
            }  # fmt: skip
            rules[copy_id] = variant_rule(original, copy_id, given, next_id, nids, rules)
    define = _renamed(rule.define, rule.id, vid, next_id, nids, retarget)
    return bound_drugs(rule.replace(
        id=vid, params=tuple(specs.values()), define=define, examples=(), overrides=None, variant_of=rule.id,
        variant_with=tuple(variant_parts(vid, rule.id).items()),
    ))  # fmt: skip


def _renamed(
    value: Any,
    base: str,
    vid: str,
    next_id: list[int],
    nids: dict[int, int],
    retarget: Mapping[tuple[str, tuple[tuple[str, str], ...]], str],
) -> Any:
    """A copy of a rule's definition for its variant: every node a new id (unique in the rule
    set; ``nids`` records new → old), the rule's own parameters read from the variant, and the
    copies it reads at its own parameters replaced by those at the variant's (``retarget``)."""

    def rename(model: ast.Frozen, update: dict[str, Any]) -> None:
        if isinstance(model, ast.RuleRef) and (model.rule, model.passes) in retarget:
            update["rule"], update["passes"] = retarget[(model.rule, model.passes)], ()
        if isinstance(model, ast.Node):  # children first: they were rebuilt before their parent
            next_id[0] += 1
            update["nid"] = next_id[0]
            nids[next_id[0]] = model.nid
        if isinstance(model, ast.Param) and model.rule == base:
            update["rule"] = vid
        if isinstance(model, ast.DurationRef) and model.param is not None and model.param[0] == base:
            update["param"] = (vid, model.param[1])

    return _rebuilt(value, rename)


def bound_drugs(rule: ast.Rule) -> ast.Rule:
    """``rule`` with the drugs it names by its text parameters (``drug: {param: index_drug}``)
    named by their current values (the site's, an example's, a copy's) where the engines read
    drug names; the same rule when it names none so. Binding again (a copy at another value)
    starts from the drugs as written."""
    values = {p.name: p.effective for p in rule.params if isinstance(p.effective, str)}
    if not values:
        return rule

    def bind(value: ast.Frozen, update: dict[str, Any]) -> None:
        if isinstance(value, ast.Selector) and value.written is not None:
            drugs, not_drugs, name = value.written
            for p in (*value.drug_params, *value.not_drug_params):  # an inline selector's description
                name = name.replace(f"{{{p}}}", str(values[p]))
            update["drugs"] = tuple(dict.fromkeys([*drugs, *(str(values[p]) for p in value.drug_params)]))
            update["not_drugs"] = tuple(
                dict.fromkeys([*not_drugs, *(str(values[p]) for p in value.not_drug_params)])
            )
            update["name"] = name
        if isinstance(value, ast.OnDrug) and value.drug_params:
            update["drugs"] = tuple(
                dict.fromkeys([*value.written, *(str(values[p]) for p in value.drug_params)])
            )
        if isinstance(value, ast.DailyDose) and value.drug_param is not None:
            update["drug"] = str(values[value.drug_param])

    return rule.replace(define=_rebuilt(rule.define, bind))


def _rebuilt(value: Any, change: Callable[[ast.Frozen, dict[str, Any]], None]) -> Any:
    """A copy of a rule's syntax tree (nodes, selectors, windows; node ids kept), each model
    rebuilt from its rebuilt fields after ``change(model, fields)`` has changed those it changes."""
    if isinstance(value, tuple):
        return tuple(_rebuilt(v, change) for v in value)
    if not isinstance(value, ast.Frozen):
        return value
    update = {name: _rebuilt(getattr(value, name), change) for name in type(value).field_names}
    change(value, update)
    return value.replace(**update)


def values_with(specs: Mapping[str, ast.ParamSpec], given: Mapping[str, Any]) -> dict[str, Any]:
    """The value of each parameter once the ``given`` ones are set (one that does not parse
    keeps its value: its problem is reported), so that two parameters given together are
    checked with each other, whatever their order."""
    out: dict[str, Any] = {name: spec.effective for name, spec in specs.items()}
    for name, raw in given.items():
        with contextlib.suppress(ValueError):
            out[str(name)] = parse_param_value(raw)[0]
    return out


def override_value(
    spec: ast.ParamSpec, raw: Any, others: Mapping[str, Any] | None = None, checked: Collection[str] = ()
) -> float | bool | Duration | str:
    """A site's (or an example's) value for a parameter, in the parameter's unit; ValueError
    when it is not a value the default could be. ``others`` and ``checked``: the values the
    rule's other parameters take with it, and which of them are given with it (as for
    :func:`duration_problem`)."""
    if isinstance(spec.default, str):
        text = drug_name(raw)
        if text is None:
            raise ValueError(
                f"{raw!r} is not a drug's name (text with a letter), as the default, {spec.default}"
            )
        return text
    quantity, unit = (
        _as_quantity(raw) if type(spec.default) is float and spec.unit in _TIME_UNITS else (None, None)
    )
    value: float | bool | Duration
    if quantity is None:
        try:
            value, unit = parse_param_value(raw)
        except DurationTooLong:
            raise
        except ValueError:
            if isinstance(spec.default, Duration):  # said as a duration, whatever the text looked like
                raise ValueError(f"{_not_a_duration(raw)}; the default is {spec.default}") from None
            raise
    else:
        value = quantity
    if isinstance(value, Duration) and type(spec.default) is float and spec.unit in _TIME_UNITS:
        unit = _UCUM_OF[value.unit]  # 1 hour for a quantity in min: 60 min
        value = float(value.amount)
    if isinstance(spec.default, Duration) and not isinstance(value, Duration):  # said as a duration
        raise ValueError(f"{_not_a_duration(raw)}; the default is {spec.default}")
    if type(value) is not type(spec.default):
        hint = (
            f": a duration needs its unit, e.g. '{raw} days'"
            if isinstance(spec.default, Duration) and isinstance(value, float) and unit in (None, "1")
            else f": the default is a plain number, read in the unit of what the rule compares it "
            f"with; write the rule's default with the unit it is meant in (e.g. '{spec.default:g} "
            f"months' for months), and a duration given for it is converted"
            if isinstance(value, Duration) and type(spec.default) is float and spec.unit in (None, "1")
            else ""
        )
        raise ValueError(
            f"{raw!r} is not the same kind of value as the default, {value_text(spec.default, spec.unit)}{hint}"
        )
    if unit not in (None, "1") and spec.unit in (None, "1"):
        raise ValueError(
            f"{raw!r} has a unit; the parameter is a plain number (its default is {value_text(spec.default)})"
        )
    too_short = duration_problem(spec, value, others, checked)
    if too_short:
        raise ValueError(f"{value} cannot be its value: {too_short}")
    if unit is not None and spec.unit is not None and unit != spec.unit:
        if "{" in f"{unit}{spec.unit}" and unit != "1":  # a score is not a percentage: 2 % is no 0.02
            raise ValueError(f"{raw!r} is not in {spec.unit}, the parameter's unit (its default is "
                             f"{value_text(spec.default, spec.unit)}); give the number alone or in {spec.unit}")  # fmt: skip
        try:
            converted = conversion(unit, spec.unit).apply(float(value))  # type: ignore[arg-type]
        except UnitError as exc:
            if by_molar_mass(unit, spec.unit):
                raise ByMolarMass(float(value), unit, spec, raw) from None  # type: ignore[arg-type]
            raise ValueError(str(exc)) from None
        if not math.isfinite(converted):
            raise ValueError(f"{raw!r} in {spec.unit} is too large a number")
        return converted
    return value


class ByMolarMass(ValueError):
    """A site's value in a mass for a parameter in an amount of substance (``156 mg/dL`` for
    one whose default is ``1.76 mmol/L``), or the converse: it converts by the molar mass of
    the lab the parameter is compared with, which the type checker finds; kept in its own unit
    (``ParamSpec.value_unit``) until then. As an error (no such lab): :func:`molar_problem`."""

    def __init__(self, value: float, unit: str, spec: ast.ParamSpec, raw: Any) -> None:
        super().__init__(molar_problem(raw, unit, spec.unit or "", "it is compared with no lab"))
        self.value, self.unit = value, unit

    def kept(self, spec: ast.ParamSpec) -> ast.ParamSpec:
        return spec.replace(value=self.value, value_unit=self.unit)


def _substance(unit: str) -> str:
    try:
        return "an amount of substance" if parse_unit(unit).dim[3] else "a mass"
    except UnitError:  # pragma: no cover - the unit converted by a molar mass: it parses
        return "a quantity"


def molar_problem(raw: Any, unit: str, to: str, why: str) -> str:
    """Why ``raw`` (in ``unit``) cannot be read in ``to``, a parameter's unit that converts
    to it only by a molar mass: ``why`` there is none to take."""
    return (
        f"{raw!r} is {_substance(unit)} ({unit}) and the parameter's unit, {to}, {_substance(to)}: "
        f"they convert only by the molar mass of what is measured, and {why} whose code gives one "
        f"(a site's codes.yaml gives a code's molar_mass); give the value in {to}"
    )


def _not_a_duration(raw: Any) -> str:
    """Why ``raw`` is not a duration, as a literal duration would be told."""
    try:
        Duration.parse(raw)
    except DurationError as exc:
        return str(exc)
    return f"{raw!r} is not a duration ({EXAMPLES})"  # pragma: no cover - called for one that is not


# a duration word's UCUM unit, and the units of time a quantity parameter may have
_UCUM_OF = {"hour": "h", "day": "d", "week": "wk", "month": "mo", "year": "a"}
_TIME_UNITS = frozenset({"s", "min", "h", "d", "wk", "mo", "a"})


def _as_quantity(raw: Any) -> tuple[float | None, str | None]:
    """``raw`` as a time with a UCUM unit when it is written so (``0.25 h``, ``1.5 hours``: a
    quantity, though a duration's words are whole numbers), else (None, None)."""
    m = _QUANTITY.match(raw) if isinstance(raw, str) else None
    unit = ucum_spelling(m.group(2)) if m else None
    if m is None or unit not in _TIME_UNITS:
        return None, None
    return _finite(float(m.group(1)), raw), unit


def _check_expected(rule: ast.Rule, t: ast.Type, doc: _Doc, problems: list[Problem]) -> None:
    """Every expected value of the rule's examples is of its type: a boolean rule's never a
    number, a number rule's never true or false (rules test would only fail on it)."""
    if t.kind == "num":
        t = t.replace(unit=rule.unit or t.unit)
    for example in rule.examples:
        for exp in example.expect:
            if exp.value is None or isinstance(exp.value, bool) == (t.kind == "bool"):
                continue
            line, col = doc.where(exp.where)
            if t.kind == "bool":
                given, wanted = f"a number ({exp.value:.12g})", "true, false or unknown"
            else:
                given = f"a boolean ({str(exp.value).lower()})"
                unit = f" in {t.unit}" if t.unit not in (None, "1") else ""
                wanted = f"a number{unit} or unknown"
            problems.append(
                Problem(
                    doc.file,
                    line,
                    col,
                    f"expected value is {given}, but rule {rule.id!r} is a {t}: expect {wanted}",
                )
            )


def _checkable(rules: dict[str, ast.Rule]) -> set[str]:
    """Rules that lie on no cycle, nor read one that does: safe to type-check while other
    files have problems (a rule that did not load is read as a value of unknown type)."""
    memo: dict[str, bool] = {}

    def ok(rid: str, stack: frozenset[str]) -> bool:
        if rid in memo:
            return memo[rid]
        if rid not in rules:
            return True
        if rid in stack:
            return False
        memo[rid] = all([ok(ref, stack | {rid}) for ref in _rule_refs(rules[rid].define)])
        return memo[rid]

    return {rid for rid in rules if ok(rid, frozenset())}


def _toposort(rules: dict[str, ast.Rule], docs: dict[str, _Doc], problems: list[Problem]) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}

    def visit(rid: str, stack: list[str]) -> None:
        if state.get(rid) == 2 or rid not in rules:
            return
        if state.get(rid) == 1:
            cycle = [*stack[stack.index(rid) :], rid]
            doc = docs[rid]
            line, col = doc.where(("define",))
            problems.append(Problem(doc.file, line, col, f"rules form a cycle: {' → '.join(cycle)}"))
            return
        state[rid] = 1
        for ref in _rule_refs(rules[rid].define):
            visit(ref, [*stack, rid])
        state[rid] = 2
        order.append(rid)

    for rid in sorted(rules):
        visit(rid, [])
    return order


# ---- types and units ------------------------------------------------------------------------


def units_convert(have: str | None, want: str | None) -> bool:
    """Whether a threshold in ``have`` can be compared with a field in ``want`` (a missing or
    dimensionless unit on either side is taken as the other's)."""
    if have in (None, "1") or want in (None, "1"):
        return True
    assert have is not None and want is not None
    try:
        conversion(have, want)
    except UnitError:
        return False
    return True


def _gives_present(sel: ast.Selector) -> bool:
    """Whether a selector, or one of its alternatives, fixes ``present``."""
    return sel.present is not None or any(_gives_present(s) for s in sel.any_of)


def field_unit(select: ast.Selector, field_name: str) -> str | None:
    """The canonical unit of a numeric field of the selected events, or None if they mix."""
    if field_name in ("active_joints", "limited_joints"):
        return "{joints}"
    if field_name == "grade":
        return "1"
    if field_name == "dose":
        return _dose_unit(select)
    units: set[str] = set()
    for sel in (select, *select.any_of):
        found = False
        known = dict(sel.units)
        for c in sel.codes:
            unit = known.get(c) or codes.BUILTIN.unit(c)
            if unit is not None:
                units.add(unit)
                found = True
        for k in sel.kinds:
            if k in codes.VITALS:
                units.add(codes.VITALS[k].unit)
                found = True
            elif k in ("lab", "assessment") and not sel.codes:
                return None  # every code of the kind, in its own unit: labs beside weights (kg)
        if not found and sel is not select:
            units.add("?")
    units.discard("?")
    return units.pop() if len(units) == 1 else None


def _dose_unit(select: ast.Selector) -> str | None:
    """The unit of the doses a selector matches: its ``dose_unit``, or the one every branch of
    its ``any_of`` fixes; None when doses in mg and in mg/kg could both match."""
    if select.dose_unit is not None:
        return select.dose_unit
    if not select.any_of:
        return None
    units = {_dose_unit(s) for s in select.any_of}
    return units.pop() if len(units) == 1 else None


class _TypeChecker:
    def __init__(
        self,
        rules: dict[str, ast.Rule],
        docs: dict[str, _Doc],
        types: dict[int, ast.Type],
        problems: list[Problem],
        book: codes.CodeBook = codes.BUILTIN,
    ) -> None:
        self.rules = rules
        self.docs = docs
        self.types = types
        self.problems = problems
        self.book = book
        # a value in an amount of substance beside a lab read in a mass unit (1.76 mmol/L of
        # triglycerides beside their mg/dL), converted with the code's molar mass as ingest
        # converts it: a constant's node id, or a parameter's (rule, name) → (unit, molar mass)
        self.molar: dict[int | tuple[str, str], tuple[str, float]] = {}
        # a plain-number parameter's (rule, name) → the unit of what it is compared with
        self.read_in: dict[tuple[str, str], str] = {}
        # a parameter's (rule, name) → the molar mass of each thing it is compared with (None:
        # no lab of one molar mass), for a site's value in a mass where it is in an amount of
        # substance, or the converse
        self.param_molar: dict[tuple[str, str], set[float | None]] = {}
        self.warnings: list[str] = []
        self.rule: ast.Rule | None = None
        # durations written where a value goes (5 days), not yet met by what they are read with
        self.durations: dict[int, ast.Const] = {}

    def fail(self, node: ast.Node, message: str) -> ast.Type:
        assert self.rule is not None
        doc = self.docs[self.rule.id]
        line, col = doc.where(_path_of(node))
        self.problems.append(Problem(doc.file, line, col, message))
        return ast.Type(kind="num", unit=UNREAD)

    def fail_at_unit(self, message: str) -> None:
        """A problem with the rule's declared ``unit:``, located at that line."""
        assert self.rule is not None
        doc = self.docs[self.rule.id]
        line, col = doc.where(("unit",))
        self.problems.append(Problem(doc.file, line, col, message))

    def check_rule(self, rule: ast.Rule) -> None:
        self.rule = rule
        result = self.check(rule.define)
        if rule.unit is not None and result.kind == "bool":
            self.fail_at_unit(f"rule declares unit {rule.unit!r} but its value is a boolean")
        elif rule.unit is not None and not is_valid(rule.unit):
            pass  # reported where the unit is read
        elif rule.unit is not None and result.kind == "num" and result.unit not in (None, "?", rule.unit):
            try:
                conversion(result.unit or "1", rule.unit)
            except UnitError:
                self.fail_at_unit(f"rule declares unit {rule.unit!r} but its value is in {result.unit!r}")
        for node in walk(rule.define):
            if isinstance(node, ast.Selector):
                for cond in node.where:
                    unit = field_unit(node, cond.field)
                    self._unit_of_threshold(
                        cond.value,
                        unit,
                        f"where {cond.field} {cond.op}",
                        f"{node.name}'s {cond.field}",
                        _molar_mass(node, self.book) if cond.field == "value" else None,
                        (node, cond.field),
                    )
        for const in self.durations.values():  # met by nothing that says what it should be
            self.fail(const, unit_problem(_written_unit(const)) or "")
        self.durations.clear()

    def _unit_of_threshold(
        self,
        value: ast.Const | ast.Param,
        unit: str | None,
        op: str,
        what: str,
        molar: float | None = None,
        read: tuple[ast.Selector, str] | None = None,
    ) -> None:
        """A limit of a selector's ``where:`` (``read``: the selector and the field it limits)."""
        t = self.check(value)
        if isinstance(value, ast.Param):
            self.param_molar.setdefault((value.rule, value.name), set()).add(molar)
        if self._duration_met(value, unit, op, what):
            return
        self._plain_read_in(value, t, unit, None)
        if read is not None and t.kind == "num" and unit not in (None, "1", "?", UNREAD):
            assert unit is not None
            self._plausible_limit(value, t.unit or unit, *read, where=True)
        if (
            t.kind == "num"
            and not units_convert(t.unit, unit)
            and not self._by_molar_mass(value, t, unit, molar)
        ):
            self.fail(value, f"units do not convert: {t.unit} vs {unit}")

    def _by_molar_mass(self, value: ast.Node, t: ast.Type, unit: str | None, molar: float | None) -> bool:
        """Whether ``value``, a constant or a parameter of type ``t``, converts to ``unit`` (a
        lab's) with the lab's molar mass, as ingest converts a value recorded so: recorded to
        be read in ``unit`` (True)."""
        if molar is None or t.unit in (None, UNREAD) or unit in (None, UNREAD):
            return False
        if not isinstance(value, ast.Const | ast.Param) or (isinstance(value, ast.Const) and value.written):
            return False
        assert t.unit is not None and unit is not None
        try:
            conversion(t.unit, unit, molar)
        except UnitError:
            return False
        self.molar[value.nid if isinstance(value, ast.Const) else (value.rule, value.name)] = (unit, molar)
        return True

    def check(self, node: ast.Node) -> ast.Type:
        t = self._check(node)
        self.types[node.nid] = t
        return t

    def want_bool(self, node: ast.Node, context: str) -> None:
        t = self.check(node)
        if t.kind != "bool" and t.unit != UNREAD:
            self.fail(node, f"{context} needs a boolean, but this is a {t}")

    def want_num(self, node: ast.Node, context: str) -> ast.Type:
        t = self.check(node)
        if t.kind != "num":
            self.fail(node, f"{context} needs a number, but this is a boolean")
        return t

    def _check(self, node: ast.Node) -> ast.Type:
        num = ast.Type
        if isinstance(node, ast.Const):
            if node.written is not None:
                self.durations[node.nid] = node
            return ast.BOOL if isinstance(node.value, bool) else num(kind="num", unit=node.unit)
        if isinstance(node, ast.Param):
            spec = self.rules[node.rule].param(node.name)
            if isinstance(spec.default, str):
                return self.fail(
                    node,
                    f"parameter {node.name!r} is a drug's name ({spec.default}), not a value to compare or compute with",
                )
            if isinstance(spec.default, bool):
                return ast.BOOL
            if isinstance(spec.default, Duration):
                return self.fail(
                    node,
                    f"parameter {node.name!r} is a duration read as a length or a window (or passed on "
                    f"in a with:) elsewhere in the definition, and cannot also be a value: give the "
                    f"value a parameter of its own, e.g. {node.name}_value: {{default: "
                    f"{spec.default.amount} {_UCUM_OF[spec.default.unit]}}}",
                )
            return num(kind="num", unit=spec.unit)
        if isinstance(node, ast.RuleRef):
            if node.rule not in self.rules:  # it did not load: its problems are reported
                return num(kind="num", unit=UNREAD)
            target = self.rules[node.rule]
            t = self.types.get(target.define.nid)
            if t is None:  # pragma: no cover - toposort guarantees order
                return self.fail(node, f"rule {node.rule!r} is not checked yet")
            if target.unit is not None and t.kind == "num" and t.unit != "?":
                # another rule's value is read in its declared unit (see RuleSet.reported)
                with contextlib.suppress(UnitError):  # not convertible: reported on that rule
                    conversion(t.unit or "1", target.unit)
                    return ast.Type(kind="num", unit=target.unit)
            return t
        if isinstance(node, ast.Latest):
            unit = field_unit(node.select, node.field)
            if unit is None and node.field == "dose":
                return self.fail(node, _mixed_doses(node.select.name))
            if unit is None and node.field == "value":
                return self.fail(
                    node, f"the events selected by {node.select.name!r} have no single unit: select one code"
                )
            return num(kind="num", unit=unit)
        if isinstance(node, ast.Aggregate):
            if node.fn == "exists":
                return ast.BOOL
            if node.fn == "count":
                return num(kind="num", unit="1")
            unit = field_unit(node.select, node.field)
            if unit is None and node.field == "dose":
                return self.fail(node, _mixed_doses(node.select.name))
            if unit is None:
                return self.fail(
                    node, f"the events selected by {node.select.name!r} have no single unit: select one code"
                )
            return num(kind="num", unit=unit)
        if isinstance(node, ast.FindingPresent):
            return ast.BOOL
        if isinstance(node, ast.Normal):
            unit = field_unit(node.select, "value")
            if unit is None:
                self.fail(node, "normal needs a selector of one lab code")
                return ast.BOOL
            for side, bound in (("upper", node.upper), ("lower", node.lower)):
                if bound is not None:
                    self._compatible(bound, self.check(bound), unit, f"normal's {side}", node)
            return ast.BOOL
        if isinstance(node, ast.OnDrug):
            return ast.BOOL
        if isinstance(node, ast.DailyDose):
            return num(kind="num", unit="mg/kg/d" if node.per_kg else "mg/d")
        if isinstance(node, ast.Age | ast.TimeSince):
            return num(kind="num", unit={"years": "a", "months": "mo", "days": "d"}[node.unit])
        if isinstance(node, ast.Compare):
            # a comparison is a boolean whatever its sides: a wrong side is reported once, and
            # what reads the comparison is not told it is no boolean
            left, right = self.check(node.left), self.check(node.right)
            if UNREAD in (left.unit, right.unit):
                self._compatible(node.right, right, left.unit, node.op, node.left)  # a duration met
            elif left.kind != right.kind:
                self.fail(node, f"{node.op} compares a {left} with a {right}")
            elif left.kind == "bool" and node.op not in ("eq", "ne"):
                self.fail(node, f"{node.op} cannot order booleans")
            elif left.kind == "num":
                self._compatible(node.right, right, left.unit, node.op, node.left)
            return ast.BOOL
        if isinstance(node, ast.Logic | ast.AtLeast):
            for item in node.items:
                self.want_bool(item, node.op if isinstance(node, ast.Logic) else "at_least")
            return ast.BOOL
        if isinstance(node, ast.Not):
            self.want_bool(node.item, "not")
            return ast.BOOL
        if isinstance(node, ast.CountTrue):
            for item in node.items:
                self.want_bool(item, "count_true")
            return num(kind="num", unit="1")
        if isinstance(node, ast.Arith):
            ts = [self.want_num(i, node.op) for i in node.items]
            if node.op in ("add", "sub", "min", "max"):
                for item, t in zip(node.items[1:], ts[1:], strict=True):
                    self._compatible(item, t, ts[0].unit, node.op, node.items[0])
                return ts[0]
            units = [t.unit or "1" for t in ts]
            if UNREAD in units:
                return num(kind="num", unit=UNREAD)
            if node.op == "mul":  # a factor of 1 changes nothing: 2.44 × a count is a count
                units = [u for u in units if u != "1"] or ["1"]
                if len(units) == 1:
                    return num(kind="num", unit=units[0])
            return num(kind="num", unit=combine(units, node.op))
        if isinstance(node, ast.Clip):
            return self.want_num(node.item, "clip")
        if isinstance(node, ast.Coalesce):
            ts = [self.check(i) for i in node.items]
            known = [t for t in ts if t.unit != UNREAD]
            if len({t.kind for t in known}) > 1:
                return self.fail(node, "coalesce mixes booleans and numbers")
            return known[0] if known else ts[0]
        if isinstance(node, ast.UnknownUnless):
            self.want_bool(node.condition, "unknown_unless condition")
            return self.check(node.value)
        if isinstance(node, ast.PctChange):
            a = self.want_num(node.value, "pct_change")
            b = self.want_num(node.baseline, "pct_change")
            self._compatible(node.baseline, b, a.unit, "pct_change", node.value)
            return num(kind="num", unit="%")
        if isinstance(node, ast.AtAnchor):
            return self.check(node.expr)
        if isinstance(node, ast.HeldFor):
            self.want_bool(node.expr, "held_for")
            return ast.BOOL
        if isinstance(node, ast.InEpisode | ast.EpisodeCount):
            if node.episodes.when is not None:
                self.want_bool(node.episodes.when, "episodes when")
            if isinstance(node, ast.EpisodeCount):
                if node.starting_when is not None:
                    self.want_bool(node.starting_when, "starting_when")
                return num(kind="num", unit="1")
            return ast.BOOL
        return self.fail(node, f"cannot type {type(node).__name__}")  # pragma: no cover

    def _compatible(
        self, node: ast.Node, t: ast.Type, unit: str | None, op: str = "", other: ast.Node | None = None
    ) -> None:
        """``node``, of type ``t``, is read in ``unit``: that of ``other``, beside it in ``op``."""
        what = _what(other) if other is not None else "a value"
        for a, b in ((node, other), (other, node)):
            if isinstance(a, ast.Param):  # the molar mass of what it is read beside (a site's mg/dL)
                mass = _molar_mass(b, self.book) if b is not None else None
                self.param_molar.setdefault((a.rule, a.name), set()).add(mass)
        self._plain_read_in(node, t, unit, other)
        if other is not None:
            self._plain_read_in(other, self.types.get(other.nid), t.unit, node)
        if self._duration_met(node, unit, op, what, other):
            return
        if (
            other is not None
            and isinstance(node, ast.Const)
            and node.unit is not None
            and self._duration_met(other, node.unit, op, _what(node), node)
        ):
            return
        if t.kind != "num" or t.unit in (None, UNREAD) or unit in (None, UNREAD):
            return
        try:
            conversion(t.unit, unit)
        except UnitError:
            if other is not None and self._by_molar_mass(node, t, unit, _molar_mass(other, self.book)):
                return
            if other is not None and self._by_molar_mass(other, self.types[other.nid], t.unit, _molar_mass(node, self.book)):  # fmt: skip
                return
            if other is not None and "1" in (t.unit, unit):
                self._count_has_no_unit(*((node, t.unit, other) if unit == "1" else (other, unit, node)))
                return
            self.fail(node, f"units do not convert: {t.unit} vs {unit}")

    def _plain_read_in(
        self, node: ast.Node, t: ast.Type | None, unit: str | None, other: ast.Node | None
    ) -> None:
        """A parameter without a unit read beside a value in ``unit``: recorded as read in it;
        a limit beside a lab's value outside the values the lab's code may take (the plausible
        range ingest checks): a warning, for the rule can then never be true, or always."""
        if t is None or t.kind != "num" or unit in (None, "1", "?", UNREAD) or self.rule is None:
            return
        assert unit is not None
        if isinstance(node, ast.Param) and t.unit is None:
            spec = self.rules[node.rule].param(node.name)
            if isinstance(spec.default, float):
                self.read_in.setdefault((node.rule, node.name), unit)
        self._plausible(node, t.unit or unit, other)

    def _plausible(self, node: ast.Node, unit: str, other: ast.Node | None) -> None:
        """A constant or a parameter's default compared with a lab whose code has a plausible
        range, outside that range: a warning (1000 mg/dL of ferritin is 10⁷ ng/mL)."""
        if other is None:
            return
        select = getattr(other, "select", None)
        if isinstance(select, ast.Selector):
            self._plausible_limit(node, unit, select, getattr(other, "field", "value"))

    def _plausible_limit(
        self, node: ast.Node, unit: str, select: ast.Selector, field: str, where: bool = False
    ) -> None:
        """A constant or a parameter's default that limits the ``field`` of what ``select``
        selects (compared with its latest value, or, ``where``, in the selector's ``where:``),
        outside the plausible range of its code: a warning."""
        if self.rule is None or not isinstance(node, ast.Const | ast.Param):
            return
        if field != "value" or select.any_of or len(select.codes) != 1:
            return
        code = self.book.labs.get(select.codes[0]) or self.book.assessments.get(select.codes[0])
        if code is None or (code.low is None and code.high is None):
            return
        value: object
        if isinstance(node, ast.Const):
            value, shown = node.value, f"{node.value:g} {node.unit or ''}".strip()
        else:
            spec = self.rules[node.rule].param(node.name)
            if self.rules[node.rule].variant_of is not None:
                return
            value, shown = spec.default, f"parameter {node.name!r} ({value_text(spec.default, spec.unit)})"
        if isinstance(value, bool) or not isinstance(value, float):
            return
        try:
            canonical = conversion(unit, code.unit, code.molar_mass).apply(value)
        except UnitError:
            return
        low, high = code.low, code.high
        if (low is not None and canonical < low) or (high is not None and canonical > high):
            plausible = (
                f"{low:g}–{high:g} {code.unit}" if high is not None else f"at least {low:g} {code.unit}"
            )
            outcome = (
                f"the where: of selector {select.name!r} selects every {code.name} or none"
                if where
                else "the comparison never changes"
            )
            self.warnings.append(
                f"{self.rule.source}: {shown} is {canonical:.6g} {code.unit}, outside the values "
                f"{code.name} can take ({plausible}, as ingest checks them): {outcome}"
            )

    def _count_has_no_unit(self, value: ast.Node, unit: str, count: ast.Node) -> None:
        """``value``, in ``unit``, beside ``count``, a plain number (a count): said so, at the
        value (a parameter: at its default)."""
        what = f"{_what(count)}, {_plain(count)},"
        if isinstance(value, ast.Param):
            assert self.rule is not None
            spec = self.rules[value.rule].param(value.name)
            doc = self.docs[self.rule.id]
            line, col = doc.where(("params", value.name, "default"))
            self.problems.append(Problem(doc.file, line, col,
                f"parameter {value.name!r} is compared with {what} which has no unit: write its "
                f"default without {unit!r}, e.g. {spec.default:g}"))  # fmt: skip
        elif isinstance(value, ast.Const) and not isinstance(value.value, bool):
            self.fail(value, f"{_what(count)} is {_plain(count)}, which has no unit: write "
                             f"{value.value:g}, without {unit!r}")  # fmt: skip
        else:
            self.fail(value, f"units do not convert: {unit} vs 1 ({_what(count)} is {_plain(count)}, which has no unit)")  # fmt: skip

    def _duration_met(
        self, node: ast.Node, unit: str | None, op: str, what: str, other: ast.Node | None = None
    ) -> bool:
        """Whether ``node`` is a duration (``5 days``, ``5 d``) read beside ``what``, a value in
        ``unit`` that is not a time (a CRP): reported so (True). A duration word beside a time
        (``time_since`` in days) is told its UCUM spelling."""
        if not isinstance(node, ast.Const) or isinstance(node.value, bool) or not _is_time(node.unit):
            return False
        shown = node.written or f"{node.value:g} {node.unit}"
        if unit == UNREAD:  # what it meets has a problem of its own
            self.durations.pop(node.nid, None)
            return node.written is not None
        if _is_time(unit) or (unit in (None, "1") and node.written is None):
            if node.written is None:
                return False
            self.durations.pop(node.nid, None)
            self.fail(node, unit_problem(_written_unit(node)) or "")
            return True
        self.durations.pop(node.nid, None)
        verb = "compares" if op in COMPARISONS or op.startswith(("normal", "where")) else "combines"
        if unit in (None, "1"):
            self.fail(
                node,
                f"{op} {verb} {what}, {_plain(other)}, with a duration ({shown}): write the "
                f"plain number (e.g. {node.value:g}); a duration says how long or how recent (within:, "
                "window:, held_for's duration)",
            )
            return True
        plain = f"{what} [{unit or '1'}]"
        self.fail(
            node,
            f"{op} {verb} {plain} with a duration ({shown}): a value to compare it with is a quantity in "
            f"{unit or 'its unit'} or a unit that converts to it (e.g. {node.value:g} {unit or ''}".rstrip()
            + "); a duration says how long or how recent (within:, window:, held_for's duration)",
        )
        return True


# words that count (2 episodes, 3 flares): a count is a plain number, without a unit
_COUNT_WORDS = frozenset(
    w + s for w in ("episode", "flare", "time", "event", "dose", "visit", "attack", "occurrence", "count", "relapse")
    for s in ("", "s")
)  # fmt: skip


def _value_hint(number: str, word: str) -> str:
    """What a value written with a word that is no UCUM unit meant (after its problem): a
    count (``2 episodes``: the plain number 2), or a time in another language or misspelt
    (``4 semanas``: ``4 wk``, as UCUM writes a time where a value goes)."""
    if ucum_hint(word):
        return ""  # the problem says UCUM's spelling already
    if word.lower() in _COUNT_WORDS:
        return f"; a count has no unit: write the plain number, {number}"
    meant = durations_english(word)
    if meant is not None:
        return f"; {number} {meant}s where a value goes is written in UCUM, '{number} {_UCUM_OF[meant]}'"
    return ""


def _plain_defaults(rules: Mapping[str, ast.Rule]) -> list[str]:
    """A warning for each parameter of a rule file whose default is a number without a unit
    read in one (3 beside a CRP in mg/L: a US author's 0.3, meant in mg/dL, would be 0.3 mg/L);
    a score's number is plain (``{score}``)."""
    out = []
    for rule in rules.values():
        for p in rule.params if rule.variant_of is None else ():
            if p.unit is None and p.read_in and "{" not in p.read_in and type(p.default) is float:
                out.append(
                    f"{rule.source}: parameter {p.name!r} has a default without a unit "
                    f"({p.default:g}): it is read in {p.read_in}, the unit of what it is compared "
                    f"with or given to, as a site's number for it is; write '{p.default:g} {p.read_in}'"
                )
    return out


def _molar_mass(node: Any, book: codes.CodeBook) -> float | None:
    """The molar mass of what ``node`` reads, when it is the value of labs (latest, an
    aggregate, normal; a selector) all of one molar mass (triglycerides: 885.7 g/mol)."""
    select = node if isinstance(node, ast.Selector) else getattr(node, "select", None)
    if not isinstance(select, ast.Selector) or getattr(node, "field", "value") != "value":
        return None
    masses: set[float | None] = set()
    for sel in (select, *select.any_of):
        if not sel.codes:
            return None
        for c in sel.codes:
            code = book.labs.get(c) or book.assessments.get(c)
            masses.add(code.molar_mass if code is not None else None)
    return masses.pop() if len(masses) == 1 and None not in masses else None


def _molar_values(
    rules: dict[str, ast.Rule],
    masses: Mapping[tuple[str, str], set[float | None]],
    problems: list[Problem],
    places: _Places,
) -> dict[str, ast.Rule]:
    """The rules with each site value kept in its own unit (``ParamSpec.value_unit``: 156
    mg/dL for a parameter in mmol/L) converted to its parameter's unit by the molar mass of
    the labs the parameter is compared with (``masses``: those the type checker found, None
    for a comparison with anything else); a problem where there is not one such molar mass.
    A parameter passed on in a ``with:`` (``tg_high(above=tg_strict.limit)``) is compared with
    what the copy's parameter is compared with (the copy converts its value alike)."""
    passed: dict[tuple[str, str], list[tuple[str, str]]] = {}  # (reader, param) → the copies' (id, param)
    for vid, copy in rules.items():
        for target, text in copy.variant_with:
            reader, _, name = str(text).rpartition(".")
            if reader in rules:
                passed.setdefault((reader, name), []).append((vid, target))

    def compared(key: tuple[str, str], seen: set[tuple[str, str]]) -> set[float | None]:
        found = set(masses.get(key, set()))
        seen.add(key)
        for other in passed.get(key, []):
            if other not in seen:
                found |= compared(other, seen)
        return found

    out = dict(rules)
    for rid, rule in rules.items():
        if not any(p.value_unit is not None for p in rule.params):
            continue
        params = list(rule.params)
        for i, spec in enumerate(params):
            if spec.value_unit is None or not isinstance(spec.value, float) or spec.unit is None:
                continue
            found = compared((rid, spec.name), set())
            known = sorted(m for m in found if m is not None)
            shown = f"{spec.value:.12g} {spec.value_unit}"
            if len(known) == 1:
                value = conversion(spec.value_unit, spec.unit, known[0]).apply(spec.value)
                params[i] = spec.replace(value=value, value_unit=None)
                continue
            why = (
                f"it is compared with labs of {len(known)} molar masses "
                f"({', '.join(f'{m:g}' for m in known)} g/mol), not one"
                if len(known) > 1
                else "it is compared with no lab"
            )
            base = rule.variant_of or rid
            file, line, col = (
                places.get((rid, spec.name)) or places.get((base, spec.name)) or (rule.source, 0, 0)
            )
            problems.append(Problem(file, line, col, f"{base}.{spec.name}: {molar_problem(shown, spec.value_unit, spec.unit, why)}"))  # fmt: skip
        out[rid] = rule.replace(params=tuple(params))
    return out


def _molar_converted(
    rules: dict[str, ast.Rule],
    molar: Mapping[int | tuple[str, str], tuple[str, float]],
    types: dict[int, ast.Type],
) -> dict[str, ast.Rule]:
    """The rules with each value the type checker found in an amount of substance beside a
    lab in a mass unit (``1.76 mmol/L`` of triglycerides) converted to the lab's unit with its
    molar mass (155.9 mg/dL), as ingest converts a value so recorded: the engines convert
    units without molar masses. A parameter's default and site value are converted alike."""
    if not molar:
        return rules

    def convert(value: float, unit: str, to: tuple[str, float]) -> float:
        return conversion(unit, to[0], to[1]).apply(value)

    def change(value: ast.Frozen, update: dict[str, Any]) -> None:
        if isinstance(value, ast.Const) and value.nid in molar and value.unit is not None:
            to = molar[value.nid]
            update.update(value=convert(float(value.value), value.unit, to), unit=to[0])
            types[value.nid] = ast.Type(kind="num", unit=to[0])

    out = dict(rules)
    for rid, rule in rules.items():
        if not any((rid, p.name) in molar for p in rule.params) and not any(
            isinstance(n, ast.Const) and n.nid in molar for n in walk(rule.define)
        ):
            continue
        params = list(rule.params)
        for i, spec in enumerate(params):
            to = molar.get((rid, spec.name))
            if to is None or spec.unit is None or not isinstance(spec.default, float):
                continue
            unit = spec.unit
            value = spec.value if isinstance(spec.value, float) else None
            params[i] = spec.replace(default=convert(spec.default, unit, to), unit=to[0],
                                     value=None if value is None else convert(value, unit, to))  # fmt: skip
            for node in walk(rule.define):
                if isinstance(node, ast.Param) and (node.rule, node.name) == (rid, spec.name):
                    types[node.nid] = ast.Type(kind="num", unit=to[0])
        out[rid] = rule.replace(define=_rebuilt(rule.define, change), params=tuple(params))
    return out


def _path_of(node: ast.Node) -> Path_:
    """Where a node is written, as a document's marks are keyed ("define.all[2]")."""
    return tuple(int(x) if x.isdigit() else x for x in re.findall(r"[^.\[\]]+", node.path))


def _is_time(unit: str | None) -> bool:
    """Whether ``unit`` is a unit of time (``d``, ``h``, ``wk``, ``a``)."""
    if unit in (None, "1", UNREAD):
        return False
    assert unit is not None
    try:
        conversion(unit, "s")
    except UnitError:
        return False
    return True


def _written_unit(node: ast.Const) -> str:
    """The word of a duration written where a value goes: ``days`` of ``5 days``."""
    return (node.written or "").split()[-1]


def _plain(node: ast.Node | None) -> str:
    """What a value without a unit is, as a message says it: a count, or a plain number."""
    counts = isinstance(node, ast.EpisodeCount | ast.CountTrue) or (
        isinstance(node, ast.Aggregate) and node.fn == "count"
    )
    return "a count" if counts else "a plain number"


def _what(node: ast.Node) -> str:
    """A value as a message names it: the events it reads ("CRP", "crp"), a rule, a parameter."""
    if isinstance(node, ast.Latest | ast.Aggregate | ast.Normal):
        return node.select.name
    if isinstance(node, ast.RuleRef):
        return f"rule {node.rule}"
    if isinstance(node, ast.Param):
        return f"parameter {node.name}"
    if isinstance(node, ast.DailyDose):
        return f"the daily dose of {node.drug}"
    if isinstance(node, ast.EpisodeCount):
        return "the episode count"
    if isinstance(node, ast.CountTrue):
        return "count_true"
    if isinstance(node, ast.Const):
        return node.written or f"{node.value:g} {node.unit or ''}".strip()
    return "a value"


# Public names for other YAML formats that reuse this machinery (cohort files): a document
# with the position of every value, the selector parser, and its "problem already recorded".
YamlDoc = _Doc
RuleParser = _RuleParser
ParseFailure = _Fail
