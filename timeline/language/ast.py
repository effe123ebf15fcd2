"""The rule language's syntax tree: small frozen classes, one class per node kind.

A rule file is parsed by :mod:`timeline.language.loader` into a :class:`Rule` whose
``define`` is a tree of :class:`Node`. Each node has a load-time type (boolean or a number
with a unit, see :class:`Type`) and is compiled by :mod:`timeline.engine.compiler` into a
relation ``(patient_id, q, b, x, why, ev, lo, hi)`` over many evaluation points at once.

The classes are plain Python (:class:`Frozen`), not pydantic models: every command that
evaluates rules imports this module, and building ~40 pydantic model classes (and importing
pydantic) took ~0.05 s of each command's start. What the loader gives them is checked as
pydantic checked it, and converted as it converted it (an int where a float goes is a float:
``30`` is shown ``30.0`` where a parameter's value is shown), when a tree is first built; the
cached trees (:mod:`timeline.language.cache`) are unpickled without either.
"""

from __future__ import annotations

import inspect
import operator
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, ClassVar, Literal, Self, dataclass_transform

from timeline.language.durations import Duration

# a comparison's operator as notes (and SQL) write it
SYMBOLS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "eq": "=", "ne": "<>"}
# A comparison's note states what holds between the two numbers: the operator when the
# comparison is true, its opposite when false ("35 ≥ 20 mm/h" beside a false `lt`), so
# that the detail never reads as the opposite of the value beside it.
SHOWN = {"gt": ">", "ge": "≥", "lt": "<", "le": "≤", "eq": "=", "ne": "≠"}
OPPOSITE = {"gt": "le", "ge": "lt", "lt": "ge", "le": "gt", "eq": "ne", "ne": "eq"}
# the events on_drug and daily_dose read: those that start, change or end a drug
MEDICATION_KINDS = ("medication_start", "medication_dose_change", "medication_stop", "discontinuation")


def _check(cls: type, name: str, value: Any, expected: object) -> typing.NoReturn:
    raise TypeError(f"{cls.__name__}.{name}: {value!r} is not {expected}")


def _converter(hint: Any, cls: type, name: str) -> Callable[[Any], Any]:
    """What a field of type ``hint`` makes of a value, as pydantic (lax mode, smart unions)
    made of the values the loader gives: an int (not a bool) where a float goes and no int
    does is that float, a list where a tuple goes is a tuple (of its items made), a dict is
    copied; any other value must be of the type itself."""
    origin = typing.get_origin(hint)
    if hint is Any or hint is object:
        return lambda v: v
    if origin is Literal:
        allowed = typing.get_args(hint)

        def literal(v: Any) -> Any:
            if not any(v == a and type(v) is type(a) for a in allowed):
                _check(cls, name, v, f"one of {allowed}")
            return v

        return literal
    if origin is types.UnionType or origin is typing.Union:
        members = typing.get_args(hint)
        plain = tuple(m for m in members if isinstance(m, type) and typing.get_origin(m) is None)
        made = [_converter(m, cls, name) for m in members if m not in plain]
        to_float = float in plain and int not in plain

        def union(v: Any) -> Any:
            if type(v) in plain or (isinstance(v, plain) and not isinstance(v, bool | int | float | str)):
                return v
            if to_float and type(v) is int:
                return float(v)
            for make in made:
                try:
                    return make(v)
                except TypeError:
                    pass
            _check(cls, name, v, hint)

        return union
    if origin is tuple:
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            item = _converter(args[0], cls, name)

            def many(v: Any) -> Any:
                if not isinstance(v, tuple | list):
                    _check(cls, name, v, hint)
                return tuple(item(x) for x in v)

            return many
        items = [_converter(a, cls, name) for a in args]

        def fixed(v: Any) -> Any:
            if not isinstance(v, tuple | list) or len(v) != len(items):
                _check(cls, name, v, hint)
            return tuple(make(x) for make, x in zip(items, v, strict=True))

        return fixed
    if origin is dict:
        return lambda v: dict(v) if isinstance(v, dict) else _check(cls, name, v, hint)
    if hint is float:
        return lambda v: float(v) if type(v) is int else v if type(v) is float else _check(cls, name, v, hint)
    if hint is int:  # an integral float is its int (pydantic's lax int, to 64 bits)
        return lambda v: (
            v
            if type(v) is int
            else int(v)
            if type(v) is float and v.is_integer() and abs(v) < 2**63
            else _check(cls, name, v, hint)
        )
    if hint in (bool, str):
        return lambda v: v if type(v) is hint else _check(cls, name, v, hint)
    if isinstance(hint, type):
        return lambda v: v if isinstance(v, hint) else _check(cls, name, v, hint)
    raise TypeError(f"{cls.__name__}.{name}: no converter for {hint!r}")  # pragma: no cover


@dataclass_transform(kw_only_default=True, frozen_default=True)
class Frozen:
    """Base of the tree's classes: fields declared by annotations (with their defaults), set
    once by keyword, immutable; equal when of the same class with equal fields; ``repr``, ``str``
    and ``hash`` as pydantic's models had them. An instance keeps its fields in its ``__dict__``,
    so that pickle stores and restores that alone."""

    field_names: ClassVar[tuple[str, ...]] = ()
    _defaults: ClassVar[dict[str, Any]] = {}
    _converters: ClassVar[dict[str, Callable[[Any], Any]] | None] = None
    _values: ClassVar[Callable[[dict[str, Any]], Any]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = inspect.get_annotations(cls)
        names = list(cls.field_names)
        defaults = dict(cls._defaults)
        for name in own:
            if name not in names:
                names.append(name)
            if name in cls.__dict__:
                defaults[name] = cls.__dict__[name]
            else:
                defaults.pop(name, None)
        cls.field_names = tuple(names)
        cls._defaults = defaults
        cls._converters = None  # made when the first instance is (never for cached trees)
        cls._values = operator.itemgetter(*names) if names else lambda _: 0

    @classmethod
    def _make_converters(cls) -> dict[str, Callable[[Any], Any]]:
        out: dict[str, Callable[[Any], Any]] = {}
        for name in cls.field_names:
            owner = next(c for c in cls.__mro__ if name in inspect.get_annotations(c))
            hint = eval(inspect.get_annotations(owner)[name], vars(sys.modules[owner.__module__]))
            out[name] = _converter(hint, cls, name)
        cls._converters = out
        return out

    def __init__(self, **values: Any) -> None:
        cls = type(self)
        converters = cls._converters or cls._make_converters()
        fields = self.__dict__
        for name in cls.field_names:
            if name in values:
                fields[name] = converters[name](values.pop(name))
            elif name in cls._defaults:
                fields[name] = cls._defaults[name]
            else:
                raise TypeError(f"{cls.__name__}: {name} is required")
        if values:
            raise TypeError(f"{cls.__name__}: no field {', '.join(values)}")

    @classmethod
    def construct(cls, **values: Any) -> Self:
        """An instance of values known to be right, neither checked nor converted (the
        engine's constants: no converter is made for them as the engine is imported)."""
        new = object.__new__(cls)
        new.__dict__.update({**cls._defaults, **values})
        return new

    def replace(self, **changes: Any) -> Self:
        """A copy with ``changes``, neither checked nor converted (as pydantic's model_copy)."""
        new = object.__new__(type(self))
        new.__dict__.update(self.__dict__)
        new.__dict__.update(changes)
        return new

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot set {name}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is frozen: cannot delete {name}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Frozen):
            return NotImplemented
        return type(self) is type(other) and self.__dict__ == other.__dict__

    def __hash__(self) -> int:
        return hash(type(self)._values(self.__dict__))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{n}={self.__dict__[n]!r}' for n in self.field_names)})"

    def __str__(self) -> str:
        return " ".join(f"{n}={self.__dict__[n]!r}" for n in self.field_names)


class Type(Frozen):
    """``bool``, or ``num`` with a UCUM unit ("1" when dimensionless)."""

    kind: Literal["bool", "num"]
    unit: str | None = None

    def __str__(self) -> str:
        return "boolean" if self.kind == "bool" else f"number [{self.unit or '1'}]"


# Made unchecked, as the engine's other constants of the tree (crossings.BIRTH, replay's WEIGHT):
# the first checked instance of a class makes its converters (evaluating its annotations), which
# a command whose rules come from the cache otherwise never needs.
BOOL = Type.construct(kind="bool")


class Node(Frozen):
    """Base of every expression node. ``nid`` is unique within a loaded rule set."""

    nid: int
    path: str  # where in the rule file, e.g. "define.all[2].gt[0]"


# ---- leaves --------------------------------------------------------------------------


class Const(Node):
    value: float | bool
    unit: str | None = None
    # a duration written where a value goes (``5 days``; UCUM writes ``5 d``): the loader reports
    # it once it knows what the value is compared with, so no rule that loads carries one
    written: str | None = None


class Param(Node):
    rule: str
    name: str


class RuleRef(Node):
    rule: str
    # a reference that stood for a copy of ``rule`` at values equal to its own (the loader reads
    # the rule itself then): the copy's (parameter, value as its id shows it), so that a copy of
    # the reading rule at other values passes them on
    passes: tuple[tuple[str, str], ...] = ()


# ---- event selection -----------------------------------------------------------------


class FieldCondition(Frozen):
    field: str
    op: Literal["gt", "ge", "lt", "le", "eq", "ne"]
    value: Const | Param


class Selector(Frozen):
    """Which events: kinds, codes, drugs (and drugs not), a dose unit, a finding's presence,
    field conditions."""

    name: str  # the rule's name for it, or a description of an inline selector
    kinds: tuple[str, ...] = ()
    codes: tuple[str, ...] = ()
    drugs: tuple[str, ...] = ()
    # doses are stored in mg or in mg/kg: a selector whose events' dose is read names which
    dose_unit: str | None = None
    present: bool | None = None
    where: tuple[FieldCondition, ...] = ()
    any_of: tuple[Selector, ...] = ()  # union of other selectors
    not_drugs: tuple[str, ...] = ()  # events of these drugs are not selected
    # the rule's text parameters naming more drugs (``drug: {param: index_drug}``, and for
    # ``not_drug``): the loader puts their values in ``drugs`` and ``not_drugs`` (the engines
    # read those alone), from ``written``: the drugs, drugs not and description as written
    drug_params: tuple[str, ...] = ()
    not_drug_params: tuple[str, ...] = ()
    written: tuple[tuple[str, ...], tuple[str, ...], str] | None = None
    # the canonical unit of each measured code named, as the loader's code book had it (a
    # site's code from its codes.yaml; built-in codes are looked up when absent)
    units: tuple[tuple[str, str], ...] = ()


class DurationRef(Frozen):
    """A duration given literally or by a parameter."""

    value: Duration | None = None
    param: tuple[str, str] | None = None  # (rule id, parameter name)
    negate: bool = False  # the window start of "the last D": -D


class Anchor(Frozen):
    """The first or last event of a selector at or before the evaluation point."""

    select: Selector
    which: Literal["first", "last"] = "first"


class Window(Frozen):
    """Bounds relative to the evaluation point (or to an anchor event), each inclusive or not.

    ``start`` and ``end`` are signed offsets: ``-7 days`` .. ``0 days`` is the week up to the
    point. Defaults: start exclusive, end inclusive, so an N-day window ending at a date covers
    exactly N calendar days. ``start`` None (``ever``): no lower bound, the whole record.
    """

    start: DurationRef | None
    end: DurationRef | None = None  # None: up to the evaluation point itself
    start_inclusive: bool = False
    end_inclusive: bool = True
    anchor: Anchor | None = None


# ---- event-derived values ----------------------------------------------------------------


class Latest(Node):
    """The value of the latest matching event at or before the point, if not older than
    ``within``; of events at the same instant, the last asserted wins (the order the events
    were first recorded in, which a correction does not change)."""

    select: Selector
    field: str = "value"
    within: DurationRef


class Aggregate(Node):
    """``spans`` (exists and count only): an event counts while it lasts, from ``occurred_at``
    to ``ended_at`` (a date-only end covers its whole day; without an end, an instant), so a
    finding recorded from January to December is in a window in June."""

    fn: Literal["count", "exists", "min", "max", "mean", "sum", "first", "last"]
    select: Selector
    field: str = "value"
    window: Window
    spans: bool = False


class FindingPresent(Node):
    """True while a record the selector matches, recorded present (``present`` true or not
    given), still lasts at the point: from its instant until its ``ended_at`` (a date-only end
    covers its whole day) or, recorded without an end, while it is no older than ``within``
    (as ``latest``'s). A later record of the same kind and code recorded absent (``present``
    false) ends it from its own instant (of two records at one instant, the last asserted
    wins). Never unknown: nothing lasting is false. The selector reads present and absent
    records alike, so it gives no ``present`` of its own."""

    select: Selector
    within: DurationRef


class Normal(Node):
    """The latest value within ``within`` lies in the lab's own reference range when the
    result carries one, otherwise at or below ``upper`` (and at or above ``lower``)."""

    select: Selector
    within: DurationRef
    upper: Const | Param | None = None
    lower: Const | Param | None = None


class OnDrug(Node):
    """True while the latest start/dose change/stop/discontinuation of any of the drugs at or
    before the point is a start or dose change. Starts and dose changes given by one of
    ``except_routes`` are not read; a stop or discontinuation has no route and ends the drug
    by every route."""

    drugs: tuple[str, ...]
    except_routes: tuple[str, ...] = ()
    drug_params: tuple[str, ...] = ()  # as Selector.drug_params: ``drugs`` holds their values
    written: tuple[str, ...] = ()  # the drugs as written, when it names some by parameters


class DailyDose(Node):
    """Current daily dose of a drug (dose × doses per day), per kg of the latest valid
    weight when ``per_kg``."""

    drug: str  # with ``drug_param``, the loader sets it to the parameter's value
    per_kg: bool = True
    weight_within: DurationRef
    drug_param: str | None = None  # as Selector.drug_params


class Age(Node):
    unit: Literal["years", "months", "days"] = "years"


class TimeSince(Node):
    """Time since the first (or last) matching event at or before the point."""

    anchor: Anchor
    unit: Literal["years", "months", "days"] = "years"


# ---- combinations ----------------------------------------------------------------------


class Compare(Node):
    op: Literal["gt", "ge", "lt", "le", "eq", "ne"]
    left: Node
    right: Node


class Logic(Node):
    op: Literal["all", "any"]
    items: tuple[Node, ...]


class Not(Node):
    item: Node


class AtLeast(Node):
    n: int
    items: tuple[Node, ...]


class Arith(Node):
    op: Literal["add", "sub", "mul", "div", "min", "max"]
    items: tuple[Node, ...]


class Clip(Node):
    item: Node
    low: float | None = None
    high: float | None = None


class Coalesce(Node):
    items: tuple[Node, ...]


class CountTrue(Node):
    """How many of the items are true (unknown items are not counted)."""

    items: tuple[Node, ...]


class UnknownUnless(Node):
    """``value`` when ``condition`` is true; otherwise unknown, with ``reason`` — how a rule
    says that too little was recorded to answer."""

    value: Node
    condition: Node
    reason: str


class PctChange(Node):
    """Percent change from ``baseline`` to ``value``. A baseline of 0 gives 0 when the value
    is 0 too (not improved, not worsened) and +infinity when it rose (worsened)."""

    value: Node
    baseline: Node


class AtAnchor(Node):
    """``expr`` evaluated at the anchor event's time (+ offset): a baseline.

    ``whole_day``: the anchored moment stands for its whole calendar day, so ``expr`` is
    evaluated at the last instant of that day ("at or before the index date"); until that day
    is over the value is unknown."""

    expr: Node
    anchor: Anchor
    offset: DurationRef
    whole_day: bool = False


class HeldFor(Node):
    """``expr`` has been true at every moment of the last ``duration`` up to the point."""

    expr: Node
    duration: DurationRef


class Episodes(Frozen):
    """Intervals from events (start at occurred_at, end at ended_at or open) or from the
    times a condition holds; intervals separated by no more than ``merge_gap`` merge."""

    select: Selector | None = None
    when: Node | None = None
    merge_gap: DurationRef


class InEpisode(Node):
    episodes: Episodes


class EpisodeCount(Node):
    """Episodes whose start lies in the window (optionally where ``starting_when`` holds at
    the start of the episode)."""

    episodes: Episodes
    window: Window
    starting_when: Node | None = None


NODE_CLASSES: tuple[type[Node], ...] = (
    Const, Param, RuleRef, Latest, Aggregate, FindingPresent, Normal, OnDrug, DailyDose, Age, TimeSince,
    Compare, Logic, Not, AtLeast, Arith, Clip, Coalesce, CountTrue, UnknownUnless, PctChange, AtAnchor,
    HeldFor, InEpisode, EpisodeCount,
)  # fmt: skip


# ---- rule files -------------------------------------------------------------------------


class WindowBound(Frozen):
    """A duration parameter that is the start or the end of a window in the mapping form
    (``{start: {param: from}, end: 0 days}``): with the other bound, a literal or another
    parameter of the rule, every value must leave the window starting at or before its end."""

    side: Literal["start", "end"]
    other: Duration | str  # the other bound: a literal, or the name of another parameter
    use: str  # where, for messages: "exists's window (r.yaml:9)"


class ParamSpec(Frozen):
    """A rule's parameter: a number or quantity, a boolean, a duration, or text (a drug's
    name, read where a drug is named: ``drug: {param: index_drug}``)."""

    name: str
    default: float | bool | Duration | str
    unit: str | None = None
    description: str = ""
    value: float | bool | Duration | str | None = None  # a site's override, when given
    # a site's value in a mass for a parameter in an amount of substance (156 mg/dL for one in
    # mmol/L), or the converse: ``value`` is in this unit until the loader converts it by the
    # molar mass of the lab the parameter is compared with (None in a loaded rule set)
    value_unit: str | None = None
    # a plain number (a default without a unit) is read in the unit of what the definition
    # compares it with (3 beside a CRP in mg/L is 3 mg/L): that unit, as the loader found it
    read_in: str | None = None
    # a duration the definition uses as a length (``within``, ``held_for``'s duration,
    # ``merge_gap``: "within", never negative) or as a window ("window", positive): every
    # value, default or site override, is checked as a literal there would be
    length: Literal["within", "window"] | None = None
    length_use: str = ""  # where, for messages: "held_for's duration (r.yaml:9)"
    bounds: tuple[WindowBound, ...] = ()  # the windows it starts or ends, checked the same way

    @property
    def effective(self) -> float | bool | Duration | str:
        return self.default if self.value is None else self.value


class Expectation(Frozen):
    at: str
    value: bool | float | None  # None = unknown
    reason_contains: str | None = None
    patient_id: str | None = None
    where: tuple[str | int, ...] = ()  # its value's place in the rule file, for messages


class Example(Frozen):
    name: str
    events: tuple[dict[str, object], ...]
    expect: tuple[Expectation, ...]
    params: tuple[tuple[str, float | bool | str], ...] = ()
    line: int = 0  # where it begins in its rule file (0: not read from a file)
    event_lines: tuple[int, ...] = ()  # where each of its events begins


# What a rule file's ``status:`` may say (DOMAIN.md's tags): its definition was read in a
# published source; sources disagree (a parameter); or it is a working definition. A file
# without one is "unspecified": nothing is claimed for it.
STATUSES = ("checked", "conflict", "working_definition")

# What a boolean rule being true means for the patient (a rule file's ``meaning:``): good news
# (fever-free, inactive disease, a response), bad news (disease activity, a complication), or
# neither (on a drug, a weight band). Plots colour a state by it; a rule without one is judged
# by the words of its id.
MEANINGS = ("good", "bad", "neutral")


class Rule(Frozen):
    id: str
    version: str
    description: str
    citation: str
    status: Literal["checked", "conflict", "working_definition", "unspecified"] = "unspecified"
    meaning: Literal["good", "bad", "neutral"] | None = None
    unit: str | None = None
    params: tuple[ParamSpec, ...] = ()
    define: Node
    examples: tuple[Example, ...] = ()
    source: str  # file path
    overrides: str | None = None  # the file of the built-in rule this one replaces
    type: Type = BOOL
    # a rule another rule reads at other parameter values (``{rule: {id: crp_normal, with:
    # {upper: 5 mg/L}}}``): a copy of ``variant_of`` under the id ``crp_normal(upper=5 mg/L)``,
    # its own parameters with those values. Evaluated where it is read; not listed as a rule.
    variant_of: str | None = None
    # each parameter the reference gives a value, and the value as the id shows it
    variant_with: tuple[tuple[str, str], ...] = ()

    @property
    def value_type(self) -> Type:
        """The type of the rule's value as it is reported: a number in its declared ``unit``,
        when it declares one (the loader has checked that the computed unit converts to it)."""
        if self.unit is not None and self.type.kind == "num":
            return Type.construct(kind="num", unit=self.unit)  # a validated unit (see BOOL)
        return self.type

    def param(self, name: str) -> ParamSpec:
        for p in self.params:
            if p.name == name:
                return p
        raise KeyError(name)

    # A rule's examples are pickled apart from the rest of it (the rule cache's entries), and
    # unpickled when first read (:class:`_PickledExamples`): `timeline state` and `explain`,
    # which never read them, do not unpickle them (~0.0015 s of their start for the sJIA pack,
    # half of the entry's unpickling).
    def __getstate__(self) -> dict[str, Any]:
        import pickle

        state = dict(self.__dict__)
        if not isinstance(state["examples"], bytes):
            state["examples"] = pickle.dumps(state["examples"], protocol=pickle.HIGHEST_PROTOCOL)
        return state

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Rule):  # examples still pickled compared as they are
            self.examples, other.examples  # noqa: B018 - reading them unpickles them
        return super().__eq__(other)

    def __hash__(self) -> int:
        self.examples  # noqa: B018 - as __eq__
        return super().__hash__()

    def __repr__(self) -> str:
        self.examples  # noqa: B018 - as __eq__
        return super().__repr__()

    def __str__(self) -> str:
        self.examples  # noqa: B018 - as __eq__
        return super().__str__()


class _PickledExamples:
    """``Rule.examples``: the examples of a rule unpickled from a pickle of it (see
    ``Rule.__getstate__``) are kept as their pickle's bytes until first read, then unpickled
    once, in place."""

    def __get__(self, rule: Rule | None, owner: type | None = None) -> Any:
        if rule is None:
            return ()  # the field's default, as the class had it
        found = rule.__dict__["examples"]
        if isinstance(found, bytes):
            import pickle

            found = rule.__dict__["examples"] = pickle.loads(found)
        return found

    def __set__(self, rule: Rule, value: object) -> None:
        raise AttributeError("Rule is frozen: cannot set examples")


# set once the class is made, its field and default declared (Frozen reads them as written)
Rule.examples = _PickledExamples()  # type: ignore[assignment]


def children(node: Node) -> list[Node]:
    """A node's direct sub-expressions, in field order."""
    out: list[Node] = []
    for name in type(node).field_names:
        value = getattr(node, name)
        if isinstance(value, Node):
            out.append(value)
        elif isinstance(value, tuple):
            out.extend(v for v in value if isinstance(v, Node))
    return out
