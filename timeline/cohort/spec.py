"""Cohort files (YAML) → a checked :class:`CohortSpec`, with every problem reported at once.

A cohort file names rules by id; it is checked against a loaded :class:`RuleSet`: unknown
ids get a did-you-mean, a rule used as an outcome must be a boolean, durations must parse,
selectors use the rule language's selector syntax. Problems carry ``file:line:column``
exactly like rule files (and the same exit code, 8). See ``docs/cohorts.md``.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta
from itertools import pairwise
from pathlib import Path
from typing import Any, TypeVar

from timeline.errors import UsageError
from timeline.language import ast
from timeline.language.durations import Duration, DurationError, shift
from timeline.language.loader import (
    ParseFailure,
    Problem,
    RuleError,
    RuleParser,
    RuleSet,
    VariantProblem,
    VariantValuesError,
    YamlDoc,
    did_you_mean,
    field_unit,
    read_variant,
    rule_files,
    units_convert,
)

Path_ = tuple[str | int, ...]
ID_RE = re.compile(r"^[a-z][a-z0-9_]*$")
POLICIES = ("all", "followed", "on_drug")
CENSORS = ("end_of_follow_up", "death", "discontinuation")
COMPETING = ("death", "discontinuation")  # an end of follow-up is no event: it censors
AE_UNTIL = ("end_of_follow_up", "on_drug")  # the AE table's span
AE_DRUGS = ("any", "study")  # the AEs it counts: of any drug (or none named), or of the study drug
END_KINDS = ("end_of_follow_up", "death")
# `drug: index`: each patient's study drug is the drug of their own index event (an index of
# several drugs, "the first IL-1 or IL-6 biologic", follows each patient's own)
INDEX_DRUG = "index"
TOP_KEYS = (
    "cohort", "version", "title", "description", "rules", "index", "drug", "population", "subgroups",
    "follow_up", "baseline", "time_points", "assessment_window", "denominator", "outcomes",
    "time_to_event", "adverse_events", "discontinuations", "mas", "confidence",
)  # fmt: skip
KM_TRANSFORMS = ("log-log", "log")  # timeline.cohort.km.TRANSFORMS


class CohortError(RuleError):
    """A cohort file failed to load; carries every problem found (same shape as rule files)."""

    subject = "cohort file has"


@dataclass(frozen=True)
class TimePoint:
    label: str  # "3 months"
    slug: str  # "3_months": used in cell ids
    offset: Duration


@dataclass(frozen=True)
class Window:
    """An assessment window around a time point: the days from ``before`` before its date to
    ``after`` after it (both inclusive, either may be zero)."""

    before: Duration
    after: Duration

    def __str__(self) -> str:
        if _days(self.before) == _days(self.after):
            return f"±{self.before}"
        if self.before.is_zero:
            return f"+{self.after} (after only)"
        if self.after.is_zero:
            return f"−{self.before} (before only)"
        return f"−{self.before} / +{self.after}"

    def to_json(self) -> dict[str, str]:
        return {"before": str(self.before), "after": str(self.after)}


@dataclass(frozen=True)
class Subgroup:
    id: str
    label: str
    rule: str | None = None  # true at the index instant
    none_before_index: ast.Selector | None = None  # no such event before the index event
    any_before_index: ast.Selector | None = None  # at least one such event before it


@dataclass(frozen=True)
class Baseline:
    id: str
    rule: str
    label: str


@dataclass(frozen=True)
class Outcome:
    id: str
    rule: str
    label: str
    denominator: str  # all | followed | on_drug
    time_points: tuple[str, ...]  # slugs
    # None: the state at the end of the time point's date; else the nearest day of the
    # window with a recorded event on which the rule is known (docs/cohorts.md, "Time")
    window: Window | None = None

    def where(self, tp: str) -> str:
        """The key under which a patient's value of this outcome at time point ``tp`` is kept:
        the time point's slug, or with a window, the slug and the outcome's id (two outcomes
        of one rule with different windows may take different days)."""
        return tp if self.window is None else f"{tp}@{self.id}"


@dataclass(frozen=True)
class TimeToEvent:
    id: str
    rule: str
    label: str
    window: Duration
    censor: tuple[str, ...]
    # the event is the first instant from which the rule stays true to the end of the patient's
    # window (or censoring), not its first true instant: "resolved, and still so at 3 months"
    sustained: bool = False
    # events that end a patient's chance of the outcome (death; a stop of the study drug): the
    # patient's time ends there as a competing event, and the row estimates the cumulative
    # incidence by Aalen–Johansen's estimator instead of 1 − Kaplan–Meier
    competing: tuple[str, ...] = ()


@dataclass(frozen=True)
class MasSpec:
    select: ast.Selector | None
    rule: str | None
    merge_gap: Duration
    on_drug_rule: str | None


@dataclass(frozen=True)
class CohortSpec:
    id: str
    version: str
    title: str
    description: str
    source: str
    digest: str
    index: ast.Selector
    drug: str | None
    include: tuple[str, ...]
    exclude: tuple[str, ...]
    evaluate_at: str  # index | end_of_follow_up
    subgroups: tuple[Subgroup, ...]
    end_kinds: tuple[str, ...]
    otherwise: str  # last_event | open
    on_drug_rule: str | None
    baseline: tuple[Baseline, ...]
    time_points: tuple[TimePoint, ...]
    outcomes: tuple[Outcome, ...]
    time_to_event: tuple[TimeToEvent, ...]
    adverse_events: bool
    discontinuations: bool
    mas: MasSpec | None
    # the AE table's span: to the end of follow-up, or "on_drug": to the study drug's
    # discontinuation (that day included) when it comes first
    ae_until: str = "end_of_follow_up"
    # which AEs it counts: "any" drug's (or none named), or "study": those whose drug is the
    # study drug (each patient's own with drug: index)
    ae_drug: str = "any"
    # confidence intervals: their level (Kaplan–Meier and incidence rates), and the scale of the
    # Kaplan–Meier ones (log-log: SAS's and Stata's default; log: R survfit's)
    ci_level: float = 0.95
    km_transform: str = "log-log"

    @property
    def drug_from_index(self) -> bool:
        """``drug: index``: the study drug is each patient's own, the drug of their index event."""
        return self.drug == INDEX_DRUG

    def rule_ids(self) -> list[str]:
        """Every rule the cohort uses, once, in file order."""
        ids = [*self.include, *self.exclude]
        ids += [g.rule for g in self.subgroups if g.rule]
        ids += [self.on_drug_rule] if self.on_drug_rule else []
        ids += [b.rule for b in self.baseline] + [o.rule for o in self.outcomes]
        ids += [t.rule for t in self.time_to_event]
        if self.mas is not None:
            ids += [r for r in (self.mas.rule, self.mas.on_drug_rule) if r]
        return list(dict.fromkeys(ids))

    def manifest(self) -> dict[str, Any]:
        return {"file": self.source, "id": self.id, "version": self.version, "sha256": self.digest}


_Item = TypeVar("_Item", Outcome, TimeToEvent)


def _told_apart(items: list[_Item], unlabelled: list[int]) -> tuple[_Item, ...]:
    """Items of one rule given no label are labelled by their ids: two rows named by one
    rule's id could not be told apart (helpers 40, 49)."""
    rules = [item.rule for item in items]
    return tuple(
        replace(item, label=item.id) if i in unlabelled and rules.count(item.rule) > 1 else item
        for i, item in enumerate(items)
    )


def _label(rule_id: str, item_id: str) -> str:
    """An item's label when the file gives none: its rule's id, or for a rule read at other
    values (whose id is long: ``acr_pedi_30(index_drug=canakinumab)``) the item's own id."""
    return item_id if "(" in rule_id else rule_id


def slug(text: str) -> str:
    """A cell-id fragment: lower case, runs of anything else → ``_``."""
    s = re.sub(r"[^a-z0-9]+", "_", text.strip().lower()).strip("_")
    return s or "none"


class _Parser:
    def __init__(self, doc: YamlDoc, rules: RuleSet) -> None:
        self.doc = doc
        self.rules = rules
        self.selectors = RuleParser(doc, [0], rules.codebook)

    def fail(self, path: Path_, message: str) -> None:
        line, col = self.doc.where(path)
        self.doc.problems.append(Problem(self.doc.file, line, col, message))

    # -- small values
    def mapping(self, data: Any, path: Path_, allowed: Sequence[str], what: str) -> dict[str, Any]:
        if data is None:
            return {}
        if not isinstance(data, dict):
            self.fail(path, f"{what} must be a mapping with {', '.join(allowed)}")
            return {}
        for key in data:
            if key not in allowed:
                self.fail((*path, key), f"unknown key {key!r} in {what}{did_you_mean(key, allowed)}")
        return data

    def text(self, data: Any, path: Path_, default: str = "") -> str:
        if data is None:
            return default
        if not isinstance(data, str | int | float) or isinstance(data, bool):
            self.fail(path, f"expected text, not {type(data).__name__}")
            return default
        return str(data).strip()

    def ident(self, data: Any, path: Path_, what: str) -> str | None:
        if data is None:
            self.fail(path, f"{what} missing: give it an id (e.g. id: first_line)")
            return None
        if not isinstance(data, str) or not ID_RE.match(data):
            self.fail(path, f"{what} {data!r} must be lower_snake_case")
            return None
        return data

    def item_id(self, item: dict[str, Any], rid: str, path: Path_, what: str) -> str | None:
        """An item's id, by default its rule's; a rule read at other parameter values has an id
        no cell can be named by (``crp_normal(upper=3 mg/L)``): such an item names its own."""
        if "id" not in item and self.rules.rules[rid].variant_of is not None:
            self.fail(
                path, f"{what} needed: the rule is read at other parameter values ({rid}); name the item"
            )
            return None
        return self.ident(item.get("id", rid), path, what)

    def choice(self, data: Any, path: Path_, options: Sequence[str], what: str, default: str) -> str:
        if data is None:
            return default
        if data not in options:
            self.fail(
                path,
                f"{what} must be one of {', '.join(options)}, not {data!r}{did_you_mean(str(data), options)}",
            )
            return default
        return str(data)

    def flag(self, data: Any, path: Path_, default: bool) -> bool:
        if data is None:
            return default
        if not isinstance(data, bool):
            self.fail(path, f"expected true or false, not {data!r}")
            return default
        return data

    def duration(self, data: Any, path: Path_, what: str) -> Duration | None:
        try:
            d = Duration.parse(data)
        except DurationError as exc:
            self.fail(path, f"{what}: {exc}")
            return None
        if d.amount <= 0:
            self.fail(path, f"{what} must be after the index (a positive duration), not {data!r}")
            return None
        return d

    def rule(self, data: Any, path: Path_, want: str | None = "bool", what: str = "rule") -> str | None:
        if isinstance(data, dict):
            data = self.variant(data, path)
            if data is None:
                return None
        if not isinstance(data, str):
            self.fail(
                path, f"{what} must be a rule id (or {{id: RULE, with: {{PARAMETER: VALUE}}}}), not {data!r}"
            )
            return None
        try:  # a rule at other values may be named by its id, crp_normal(upper=3 mg/L), as the commands take it
            rule = self.rules.get(data)
        except UsageError as exc:
            self.fail(path, str(exc))
            return None
        if want is not None and rule.type.kind != want:
            need = "a boolean (true/false/unknown)" if want == "bool" else "a number"
            self.fail(path, f"{what} {data!r} is {rule.value_type}; it must be {need}")
            return None
        return rule.id

    def variant(self, data: dict[Any, Any], path: Path_) -> str | None:
        """``{id: RULE, with: {PARAMETER: VALUE}}``: the rule at other values of its parameters,
        added to the rule set as the rule files' own references are (its id, e.g.
        ``crp_normal(upper=3 mg/L)``, or None when it is reported)."""
        try:
            base, values, vid = read_variant(data)
        except VariantProblem as exc:
            for where, message in exc.all():
                self.fail((*path, *where), message)
            return None
        try:
            return self.rules.variant(base, values, vid)
        except UsageError as exc:  # an unknown rule, with a did-you-mean
            self.fail((*path, "id"), str(exc))
            return None
        except VariantValuesError as exc:
            for name, message in exc.wrong:
                self.fail((*path, "with", name), message)
            return None

    def rule_list(self, data: Any, path: Path_, what: str) -> tuple[str, ...]:
        if data is None:
            return ()
        items = data if isinstance(data, list) else [data]
        out = []
        for i, item in enumerate(items):
            rid = self.rule(item, (*path, i) if isinstance(data, list) else path, what=what)
            if rid:
                out.append(rid)
        return tuple(out)

    def selector(self, data: Any, path: Path_) -> ast.Selector | None:
        try:
            sel = self.selectors.selector(data, path)
        except ParseFailure:
            return None
        self._threshold_units(sel, path)
        return sel

    def _threshold_units(self, sel: ast.Selector, path: Path_) -> None:
        """A ``where`` threshold must convert to its field's unit (a rule file's selector is
        checked by the rule loader; a cohort file's, here)."""
        for cond in sel.where:
            unit = field_unit(sel, cond.field)
            have = cond.value.unit if isinstance(cond.value, ast.Const) else None  # a cohort has no params
            if not units_convert(have, unit):
                self.fail(path, f"where {cond.field}: units do not convert: {have} vs {unit}")
        for sub in sel.any_of:
            self._threshold_units(sub, path)

    def items(self, data: Any, path: Path_, what: str) -> list[tuple[Path_, dict[str, Any]]]:
        """A list of mappings, or a mapping of id → mapping (the id becomes ``id``)."""
        if data is None:
            return []
        out: list[tuple[Path_, dict[str, Any]]] = []
        if isinstance(data, dict):
            for key, value in data.items():
                p: Path_ = (*path, key)
                if isinstance(value, str):
                    value = {"rule": value}
                if not isinstance(value, dict):
                    self.fail(p, f"each entry of {what} must be a mapping")
                    continue
                out.append((p, {"id": key, **value}))
        elif isinstance(data, list):
            for i, value in enumerate(data):
                p = (*path, i)
                if isinstance(value, str):
                    value = {"rule": value}
                if not isinstance(value, dict):
                    self.fail(p, f"each entry of {what} must be a mapping or a rule id")
                    continue
                out.append((p, value))
        else:
            self.fail(path, f"{what} must be a list (or a mapping of id → entry)")
        return out

    def unique(self, seen: set[str], ident: str, path: Path_, what: str) -> None:
        if ident in seen:
            self.fail(path, f"{what} id {ident!r} is used twice")
        seen.add(ident)

    # -- the file
    def parse(self, data: Any, digest: str) -> CohortSpec | None:
        if not isinstance(data, dict):
            self.fail((), "a cohort file must be a mapping with cohort, version, index, population, …")
            return None
        meant: set[str] = set()  # the keys an unknown key is a misspelling of (timepoints: time_points)
        for key in data:
            if key not in TOP_KEYS:
                # at the key, not its value (a mapping's value begins on the next line)
                line, col = self.doc.key_where((key,))
                self.doc.problems.append(
                    Problem(self.doc.file, line, col, f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}")
                )
                meant.update(difflib.get_close_matches(str(key), TOP_KEYS, n=1, cutoff=0.6))
        for key in ("cohort", "version", "index"):
            if key not in data and key not in meant:  # a misspelt one is reported as such
                self.fail((), f"missing required key {key!r}")
        if isinstance(data.get("version"), float):
            self.fail(
                ("version",),
                f'write the version in quotes (version: "…"): unquoted, YAML reads it as the number '
                f"{data['version']:g}, so 1.10 and 1.1 would be one version",
            )
        elif "version" in data and not self.text(data["version"], ("version",)):
            self.fail(("version",), "version is empty")
        cid = self.ident(data.get("cohort", "cohort"), ("cohort",), "cohort id") or "cohort"
        self._rule_dirs(data.get("rules"), ("rules",))
        index = self._index(data.get("index"), ("index",))
        drug = self._drug(data.get("drug"), index)
        if drug == INDEX_DRUG and index is not None and not _drugs(index):
            self.fail(
                ("drug",),
                "drug: index follows the drug of each patient's index event, and the index selector "
                "names no drug: name its drugs (index: {first: {kind: medication_start, drug: "
                "[anakinra, canakinumab]}}), or the study drug (drug: NAME)",
            )
        elif drug == INDEX_DRUG and index is not None and not _always_a_drug(index):
            self.fail(
                ("drug",),
                "drug: index follows the drug of each patient's index event, and a branch of the "
                "index selector's any_of names no drug: its patients would have no study drug; "
                "name a drug in every branch",
            )
        pop = self.mapping(
            data.get("population"), ("population",), ("include", "exclude", "evaluate_at"), "population"
        )
        fu = self.mapping(
            data.get("follow_up"), ("follow_up",), ("end", "otherwise", "on_drug_rule"), "follow_up"
        )
        end_kinds = self._end_kinds(fu.get("end"), ("follow_up", "end"))
        on_drug_rule = (
            self.rule(fu["on_drug_rule"], ("follow_up", "on_drug_rule"), what="on_drug_rule")
            if fu.get("on_drug_rule") is not None
            else None
        )
        before = len(self.doc.problems)
        time_points = self._time_points(data.get("time_points"), ("time_points",))
        # the time points are reported on already (a misspelt key, a wrong item): the outcomes
        # are not also told that there are none, or that their `at` is not one of them
        tps_said = len(self.doc.problems) > before or ("time_points" in meant and "time_points" not in data)
        default_policy = self.choice(
            data.get("denominator"), ("denominator",), POLICIES, "denominator", "all"
        )
        window = self._window(data.get("assessment_window"), ("assessment_window",))
        outcomes = self._outcomes(
            data.get("outcomes"), ("outcomes",), time_points, default_policy, window, tps_said=tps_said
        )
        needs_drug = default_policy == "on_drug" or any(o.denominator == "on_drug" for o in outcomes)
        # no index (its problem reported: missing, misspelt, wrong): the study drug it would
        # give is not known, and what needs one is not also told it has none
        unknown_drug = drug is None and index is None
        if needs_drug and drug is None and on_drug_rule is None and not unknown_drug:
            self.fail(("denominator",) if default_policy == "on_drug" else ("outcomes",),
                      "the on_drug denominator needs the study drug (drug: NAME, or drug: index for each patient's own) or follow_up.on_drug_rule")  # fmt: skip
        ae, ae_until, ae_drug = self._adverse_events(data.get("adverse_events"), drug, unknown_drug)
        disc = self.flag(data.get("discontinuations"), ("discontinuations",), True)
        if disc and drug is None and not unknown_drug:
            self._no_study_drug(data, index)
        ci_level, km_transform = self._confidence(data.get("confidence"), ("confidence",))
        spec = CohortSpec(
            id=cid,
            version=self.text(data.get("version"), ("version",), "1"),
            title=self.text(data.get("title"), ("title",), cid),
            description=self.text(data.get("description"), ("description",)),
            source=self.doc.file,
            digest=digest,
            index=index or ast.Selector(name="index"),
            drug=drug,
            include=self.rule_list(pop.get("include"), ("population", "include"), "inclusion rule"),
            exclude=self.rule_list(pop.get("exclude"), ("population", "exclude"), "exclusion rule"),
            evaluate_at=self.choice(
                pop.get("evaluate_at"),
                ("population", "evaluate_at"),
                ("index", "end_of_follow_up"),
                "population.evaluate_at",
                "index",
            ),
            subgroups=self._subgroups(data.get("subgroups"), ("subgroups",)),
            end_kinds=end_kinds,
            otherwise=self.choice(
                fu.get("otherwise"),
                ("follow_up", "otherwise"),
                ("last_event", "open"),
                "follow_up.otherwise",
                "last_event",
            ),
            on_drug_rule=on_drug_rule,
            baseline=self._baseline(data.get("baseline"), ("baseline",)),
            time_points=time_points,
            outcomes=outcomes,
            time_to_event=self._tte(data.get("time_to_event"), ("time_to_event",), drug),
            adverse_events=ae,
            discontinuations=disc,
            mas=self._mas(data.get("mas"), ("mas",)),
            ae_until=ae_until,
            ae_drug=ae_drug,
            ci_level=ci_level,
            km_transform=km_transform,
        )
        return spec

    def _confidence(self, raw: Any, path: Path_) -> tuple[float, str]:
        """``confidence: {level: 0.95, km_transform: log-log}``: both optional."""
        m = self.mapping(raw, path, ("level", "km_transform"), "confidence")
        level = m.get("level", 0.95)
        if isinstance(level, bool) or not isinstance(level, int | float) or not 0 < level < 1:
            hint = (
                f" ({level:g}% is level: {level / 100:g})"
                if isinstance(level, int | float) and 1 < level < 100 and not isinstance(level, bool)
                else ""
            )
            self.fail(
                (*path, "level"),
                f"confidence.level is a proportion between 0 and 1 (0.95), not {level!r}{hint}",
            )
            level = 0.95
        transform = self.choice(m.get("km_transform"), (*path, "km_transform"), KM_TRANSFORMS,
                                "confidence.km_transform", "log-log")  # fmt: skip
        return float(level), transform

    def _adverse_events(
        self, raw: Any, drug: str | None, unknown_drug: bool = False
    ) -> tuple[bool, str, str]:
        """``adverse_events``: true, false, on_drug, or ``{until: end_of_follow_up | on_drug,
        drug: any | study}``; (counted, until, which drug's). ``unknown_drug``: the index that
        would name the study drug has a problem reported already."""
        path: Path_ = ("adverse_events",)
        until, which = "end_of_follow_up", "any"
        if raw == "on_drug":
            until = "on_drug"
        elif isinstance(raw, dict):
            for key in raw:
                if key not in ("until", "drug"):
                    self.fail((*path, key), f"unknown key {key!r} for adverse_events{did_you_mean(str(key), ['until', 'drug'])}; "
                              "it has until (end_of_follow_up or on_drug) and drug (any or study)")  # fmt: skip
            until = self.choice(raw.get("until"), (*path, "until"), AE_UNTIL, "adverse_events.until", until)
            which = self.choice(raw.get("drug"), (*path, "drug"), AE_DRUGS, "adverse_events.drug", which)
        elif isinstance(raw, str):
            self.fail(
                path,
                f"adverse_events is true, false, on_drug or {{until, drug}}, not {raw!r}{did_you_mean(raw.lower(), ['on_drug'])}",
            )
        else:
            return self.flag(raw, path, True), until, which
        if drug is None and not unknown_drug and (until == "on_drug" or which == "study"):
            what = (
                "adverse_events: drug: study counts the adverse events attributed to the study drug (the AE's drug)"
                if which == "study"
                else "adverse_events: on_drug counts adverse events up to the study drug's discontinuation"
            )
            self.fail(
                path, f"{what}, and needs the study drug (drug: NAME, or drug: index for each patient's own)"
            )
        return True, until, which

    def _rule_dirs(self, data: Any, path: Path_) -> None:
        """``rules:``, the study's own rule directories (relative to the cohort file): each
        must be a directory, and its rules must be among those the file is checked against
        (the cohort commands load them; from Python, :func:`cohort_rule_dirs` names them)."""
        if data is None:
            return
        items = data if isinstance(data, list) else [data]
        loaded = [Path(d) for d in self.rules.directories]
        for i, item in enumerate(items):
            where = (*path, i) if isinstance(data, list) else path
            if not isinstance(item, str) or not item.strip():
                self.fail(
                    where, "rules lists rule directories, relative to the cohort file (rules: [site_rules])"
                )
                continue
            d = _resolve_dir(self.doc.file, item)
            try:
                is_dir = d.is_dir()
            except OSError as exc:
                self.fail(where, f"rule directory {item!r} cannot be read: {exc.strerror or exc}")
                continue
            if not is_dir:
                what = "is not a directory" if d.exists() else "does not exist"
                self.fail(where, f"rule directory {item!r} {what} ({d})")
                continue
            here = d.resolve()
            # a directory read, or one under it (rule files are found in subdirectories too)
            if rule_files(d) and not any(here.is_relative_to(r) for r in loaded):
                self.fail(
                    where,
                    f"the rules of {item!r} were not loaded: the cohort commands load a cohort "
                    "file's rule directories; from Python, load "
                    "rule_dirs(cohort_rule_dirs(FILE)) (timeline.cohort.spec)",
                )

    def _index(self, data: Any, path: Path_) -> ast.Selector | None:
        if data is None:
            return None
        if not isinstance(data, dict) or set(data) != {"first"}:
            self.fail(
                path, "index is {first: SELECTOR}, e.g. {first: {kind: medication_start, drug: anakinra}}"
            )
            return None
        return self.selector(data["first"], (*path, "first"))

    def _drug(self, data: Any, index: ast.Selector | None) -> str | None:
        if data is not None:
            return self.text(data, ("drug",)).lower() or None
        if index is not None and len(index.drugs) == 1:
            return index.drugs[0]
        return None

    def _no_study_drug(self, data: dict[str, Any], index: ast.Selector | None) -> None:
        """Discontinuations asked for (or left at their default) without a study drug: the
        report has no drug to follow, so the table would be left out without a word."""
        drugs = _drugs(index) if index is not None else ()
        named = f"the index names {len(drugs)} drugs ({', '.join(drugs)})"
        fix = (
            "add drug: NAME (the drug whose stops to follow), drug: index (each patient's own index "
            "drug), or set discontinuations: false"
        )
        if "discontinuations" in data:
            why = named if len(drugs) > 1 else "the cohort names none"
            self.fail(
                ("discontinuations",), f"the discontinuation table needs the study drug and {why}: {fix}"
            )
        elif len(drugs) > 1:
            self.fail(
                ("index", "first", "drug"),  # or the nearest place that has a line
                f"{named} and the cohort names no study drug, so there would be no discontinuation table: {fix}",
            )

    def _end_kinds(self, data: Any, path: Path_) -> tuple[str, ...]:
        if data is None:
            return END_KINDS
        items = data if isinstance(data, list) else [data]
        out = []
        for i, k in enumerate(items):
            p = (*path, i) if isinstance(data, list) else path
            if k not in END_KINDS:
                self.fail(
                    p,
                    f"follow-up ends with end_of_follow_up or death, not {k!r}{did_you_mean(str(k), END_KINDS)}",
                )
            else:
                out.append(str(k))
        return tuple(out)

    def _time_points(self, data: Any, path: Path_) -> tuple[TimePoint, ...]:
        if data is None:
            return ()
        if not isinstance(data, list):
            self.fail(path, "time_points is a list of durations after the index, e.g. [3 months, 6 months]")
            return ()
        out: list[TimePoint] = []
        seen: set[str] = set()
        dates: dict[tuple[int, str], str] = {}  # the date's offset, as days or months → its label
        for i, item in enumerate(data):
            if isinstance(item, int | float) and not isinstance(item, bool):
                # a number alone: most often months in a study's time points, not the days a
                # duration's hint would suggest (helper 62)
                self.fail(
                    (*path, i), f"a time point needs a unit: write {item:g} months (or weeks, days, years)"
                )
                continue
            d = self.duration(item, (*path, i), "time point")
            if d is None:
                continue
            if d.unit == "hour":
                # helper 49: a time point is read at the end of its date, so 12 and 23 hours
                # were one time point, and 24 hours another name for 1 day
                self.fail((*path, i), f"a time point is a date after the index date: whole days, weeks, months "
                                      f"or years, not {item!r}")  # fmt: skip
                continue
            tp = TimePoint(label=str(d), slug=slug(str(d)), offset=d)
            self.unique(seen, tp.slug, (*path, i), "time point")
            key = (
                (d.amount * 7, "day")
                if d.unit == "week"
                else (d.amount * 12, "month")
                if d.unit == "year"
                else (d.amount, d.unit)
            )
            if key in dates and dates[key] != tp.label:
                self.fail((*path, i), f"time point {tp.label} is the date of {dates[key]}: give it once")
            dates.setdefault(key, tp.label)
            out.append(tp)
        return tuple(out)

    def _subgroups(self, data: Any, path: Path_) -> tuple[Subgroup, ...]:
        out: list[Subgroup] = []
        seen: set[str] = {"all"}
        allowed = ("id", "label", "rule", "none_before_index", "any_before_index")
        for p, item in self.items(data, path, "subgroups"):
            self.mapping(item, p, allowed, "a subgroup")
            # a sub-group given by its rule alone (a list of rule ids) is named by that rule
            gid = self.ident(item.get("id", item.get("rule")), p, "subgroup id")
            if gid is None:
                continue
            self.unique(seen, gid, p, "subgroup")
            given = [k for k in ("rule", "none_before_index", "any_before_index") if k in item]
            if len(given) != 1:
                self.fail(
                    p, "a subgroup is defined by exactly one of rule, none_before_index, any_before_index"
                )
                continue
            how = given[0]
            sub = Subgroup(id=gid, label=self.text(item.get("label"), (*p, "label"), gid))
            if how == "rule":
                rid = self.rule(item["rule"], (*p, "rule"), what="subgroup rule")
                if rid:
                    out.append(Subgroup(id=gid, label=sub.label, rule=rid))
                continue
            sel = self.selector(item[how], (*p, how))
            if sel is not None:
                none = sel if how == "none_before_index" else None
                out.append(
                    Subgroup(
                        id=gid,
                        label=sub.label,
                        none_before_index=none,
                        any_before_index=sel if none is None else None,
                    )
                )
        return tuple(out)

    def _baseline(self, data: Any, path: Path_) -> tuple[Baseline, ...]:
        out: list[Baseline] = []
        seen: set[str] = set()
        for p, item in self.items(data, path, "baseline"):
            self.mapping(item, p, ("id", "rule", "label"), "a baseline entry")
            rid = self.rule(item.get("rule"), (*p, "rule"), want=None, what="baseline rule")
            if rid is None:
                continue
            bid = self.item_id(item, rid, p, "baseline id") or rid
            self.unique(seen, bid, p, "baseline")
            out.append(
                Baseline(
                    id=bid, rule=rid, label=self.text(item.get("label"), (*p, "label"), _label(rid, bid))
                )
            )
        return tuple(out)

    def _window(self, data: Any, path: Path_) -> Window | None:
        """``30 days`` (either side), ``{before: 30 days, after: 14 days}``, or ``none`` / ``0
        days`` (the time point's date alone: the default)."""
        if data is None or data is False or (isinstance(data, str) and data.strip().lower() == "none"):
            return None
        if isinstance(data, dict):
            m = self.mapping(data, path, ("before", "after"), "assessment_window")
            for key in ("before", "after"):
                if key not in m:
                    self.fail(
                        path, f"assessment_window needs {key} (e.g. {{before: 30 days, after: 30 days}})"
                    )
            before = self._side(m.get("before"), (*path, "before")) if "before" in m else None
            after = self._side(m.get("after"), (*path, "after")) if "after" in m else None
        elif isinstance(data, str | int) and not isinstance(data, bool):
            before = after = self._side(data, path, whole=True)
        else:
            self.fail(
                path,
                "assessment_window is a duration either side of each time point (30 days), "
                "{before: DURATION, after: DURATION}, or none",
            )
            return None
        if before is None or after is None or (before.is_zero and after.is_zero):
            return None
        return Window(before, after)

    def _side(self, data: Any, path: Path_, whole: bool = False) -> Duration | None:
        try:
            d = Duration.parse(data)
        except DurationError:
            self.fail(
                path,
                f"assessment_window: {data!r} is not a length of days, weeks, months or years "
                + (
                    "(e.g. 30 days, 2 weeks, 1 month), nor none"
                    if whole
                    else "(e.g. 30 days, 2 weeks; 0 days for none)"
                ),
            )
            return None
        if d.amount < 0:
            self.fail(path, f"assessment_window: a length, zero or more, not {data!r}")
            return None
        if d.unit == "hour":
            self.fail(path, f"assessment_window: whole days, weeks, months or years, not {data!r} "
                            "(the window is made of days)")  # fmt: skip
            return None
        return d

    def _overlap(self, window: Window, tps: Sequence[TimePoint], path: Path_) -> None:
        """Windows around two of an outcome's time points must not share a day: one visit
        would then count at both."""
        ordered = sorted(tps, key=lambda t: t.offset.approx_hours)
        for a, b in pairwise(ordered):
            day = _first_shared_day(a.offset, b.offset, window)
            if day is not None:
                self.fail(
                    path,
                    f"assessment window {window} around {a.label} and around {b.label} overlap "
                    f"(for an index on {day}): one visit would count at both; narrow the window",
                )

    def _outcomes(
        self,
        data: Any,
        path: Path_,
        tps: tuple[TimePoint, ...],
        default: str,
        default_window: Window | None = None,
        tps_said: bool = False,
    ) -> tuple[Outcome, ...]:
        """``tps_said``: a problem of the time points is reported already; none follows from
        it here (helper 62: a misspelt ``timepoints:`` gave seven problems)."""
        out: list[Outcome] = []
        seen: set[str] = set()
        slugs = {tp.slug: tp for tp in tps}
        checked: set[tuple[Window, tuple[str, ...]]] = set()
        unlabelled: list[int] = []
        for p, item in self.items(data, path, "outcomes"):
            self.mapping(
                item, p, ("id", "rule", "label", "denominator", "at", "assessment_window"), "an outcome"
            )
            rid = self.rule(item.get("rule"), (*p, "rule"), what="outcome rule")
            if rid is None:
                continue
            oid = self.item_id(item, rid, p, "outcome id") or rid
            self.unique(seen, oid, p, "outcome")
            at: list[str] = []
            if "at" in item and (not isinstance(item["at"], list) or not item["at"]):
                self.fail((*p, "at"), "at lists some of the time_points (leave it out for all of them)")
            given = item.get("at")
            for i, raw in enumerate(given if isinstance(given, list) else []):
                d = self.duration(raw, (*p, "at", i), "outcome time point")
                if d is not None and slug(str(d)) not in slugs:
                    if tps and not tps_said:  # of time points missing or in part wrong: said of them
                        self.fail(
                            (*p, "at", i),
                            f"{raw!r} is not one of the time_points ({', '.join(t.label for t in tps)})",
                        )
                elif d is not None and slug(str(d)) in at:
                    self.fail((*p, "at", i), f"{raw!r} is listed twice in at")
                elif d is not None:
                    at.append(slug(str(d)))
            if not tps and not tps_said:  # once, at the first outcome
                tps_said = True
                self.fail(p, "outcomes are reported at time_points: add time_points: [3 months, …]")
            window = (
                self._window(item["assessment_window"], (*p, "assessment_window"))
                if "assessment_window" in item
                else default_window
            )
            at_slugs = tuple(at) or tuple(slugs)
            if window is not None and (window, at_slugs) not in checked:
                checked.add((window, at_slugs))
                where = (*p, "assessment_window") if "assessment_window" in item else ("assessment_window",)
                self._overlap(window, [slugs[s] for s in at_slugs if s in slugs], where)
            out.append(
                Outcome(
                    id=oid, rule=rid, label=self.text(item.get("label"), (*p, "label"), _label(rid, oid)),
                    denominator=self.choice(item.get("denominator"), (*p, "denominator"), POLICIES, "denominator", default),
                    time_points=at_slugs, window=window,
                )
            )  # fmt: skip
            if "label" not in item:
                unlabelled.append(len(out) - 1)
        # outcomes of one rule without labels (under other denominators, say) are told apart by id
        return _told_apart(out, unlabelled)

    def _competing(self, item: dict[str, Any], p: Path_, drug: str | None) -> tuple[str, ...]:
        """The causes a time-to-event item lists under ``competing``: death and discontinuation of
        the study drug (which needs one), each once."""
        raw = item.get("competing", [])
        raw = raw if isinstance(raw, list) else [raw]
        out: list[str] = []
        for i, c in enumerate(raw):
            if c not in COMPETING:
                why = (
                    "an end of follow-up is no event: it censors (list it under censor)"
                    if c == "end_of_follow_up"
                    else f"not {c!r}{did_you_mean(str(c), COMPETING)}"
                )
                self.fail((*p, "competing", i), f"a competing event is death or discontinuation; {why}")
            elif c == "discontinuation" and drug is None:
                self.fail(
                    (*p, "competing", i),
                    "discontinuation as a competing event needs the study drug (drug: NAME, or drug: index "
                    "for each patient's own), whose discontinuation date ends the patient's time",
                )
            elif c in out:
                self.fail((*p, "competing", i), f"{c} is listed twice")
            else:
                out.append(str(c))
        return tuple(out)

    def _tte(self, data: Any, path: Path_, drug: str | None) -> tuple[TimeToEvent, ...]:
        out: list[TimeToEvent] = []
        seen: set[str] = set()
        unlabelled: list[int] = []
        for p, item in self.items(data, path, "time_to_event"):
            self.mapping(
                item,
                p,
                ("id", "rule", "label", "window", "censor", "competing", "sustained"),
                "a time-to-event outcome",
            )
            sustained = self.flag(item.get("sustained"), (*p, "sustained"), False)
            rid = self.rule(item.get("rule"), (*p, "rule"), what="time-to-event rule")
            if "window" not in item:
                self.fail(p, "a time-to-event outcome needs a window (e.g. window: 3 months)")
            window = self.duration(item.get("window"), (*p, "window"), "window") if "window" in item else None
            competing = self._competing(item, p, drug)
            # without a study drug there is no discontinuation to censor at: the default is
            # what the report applies, never a cause it would silently skip; a competing
            # cause is not also censored
            raw = item.get(
                "censor",
                [c for c in CENSORS if (drug is not None or c != "discontinuation") and c not in competing],
            )
            raw = raw if isinstance(raw, list) else [raw]
            censor: list[str] = []
            for i, c in enumerate(raw):
                if c not in CENSORS:
                    self.fail(
                        (*p, "censor", i),
                        f"censor at end_of_follow_up, death or discontinuation, not {c!r}{did_you_mean(str(c), CENSORS)}",
                    )
                elif c == "discontinuation" and drug is None:
                    self.fail(
                        (*p, "censor", i),
                        "censoring at discontinuation needs the study drug (drug: NAME, or drug: "
                        "index for each patient's own), whose discontinuation date it censors at "
                        "(an on_drug_rule has none)",
                    )
                elif c in competing:
                    self.fail(
                        (*p, "censor", i),
                        f"{c} is listed as competing: a competing event ends the patient's time as an "
                        "event of its own, a censoring as if the patient were lost to follow-up; list it "
                        "under one of censor and competing",
                    )
                else:
                    censor.append(str(c))
            if rid is None or window is None:
                continue
            tid = self.item_id(item, rid, p, "time-to-event id") or rid
            self.unique(seen, tid, p, "time-to-event")
            out.append(
                TimeToEvent(id=tid, rule=rid, label=self.text(item.get("label"), (*p, "label"), _label(rid, tid)),
                            window=window, censor=tuple(censor), sustained=sustained, competing=competing)
            )  # fmt: skip
            if "label" not in item:
                unlabelled.append(len(out) - 1)
        # as outcomes: items of one rule without labels (sustained or not, other windows) by id
        return _told_apart(out, unlabelled)

    def _mas(self, data: Any, path: Path_) -> MasSpec | None:
        if data is None or data is False:
            return None
        m = self.mapping(data, path, ("episodes", "merge_gap", "on_drug_rule"), "mas")
        eps = m.get("episodes", {"select": {"kind": "mas_episode"}})
        if not isinstance(eps, dict) or len(eps) != 1 or next(iter(eps)) not in ("select", "rule"):
            self.fail(
                (*path, "episodes"), "mas.episodes is {select: SELECTOR} (recorded) or {rule: ID} (derived)"
            )
            return None
        select = self.selector(eps["select"], (*path, "episodes", "select")) if "select" in eps else None
        rule = (
            self.rule(eps["rule"], (*path, "episodes", "rule"), what="episode rule")
            if "rule" in eps
            else None
        )
        gap_raw = m.get("merge_gap", "0 days")
        try:
            gap = Duration.parse(gap_raw)
        except DurationError as exc:
            self.fail((*path, "merge_gap"), str(exc))
            gap = Duration(0, "day")
        if gap.amount < 0:
            self.fail((*path, "merge_gap"), f"merge_gap must be 0 or more, not {gap_raw!r}")
            gap = Duration(0, "day")
        on_drug = (
            self.rule(m["on_drug_rule"], (*path, "on_drug_rule"), what="on_drug_rule")
            if m.get("on_drug_rule")
            else None
        )
        if select is None and rule is None:
            return None
        return MasSpec(select=select, rule=rule, merge_gap=gap, on_drug_rule=on_drug)


def _drugs(sel: ast.Selector) -> tuple[str, ...]:
    """Every drug a selector names, its ``any_of`` branches included, once each."""
    out = list(sel.drugs)
    for sub in sel.any_of:
        out += _drugs(sub)
    return tuple(dict.fromkeys(out))


def _always_a_drug(sel: ast.Selector) -> bool:
    """Every event the selector matches names one of its drugs: it names drugs itself, or each
    of its ``any_of`` branches does."""
    return bool(sel.drugs) or (bool(sel.any_of) and all(_always_a_drug(sub) for sub in sel.any_of))


def load_cohort(path: str | Path, rules: RuleSet) -> CohortSpec:
    """Read and check a cohort file against ``rules``; raise :class:`CohortError` listing
    every problem (file:line:column) when anything is wrong."""
    p = Path(path)
    problems: list[Problem] = []
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise CohortError(
            [Problem(str(p), 0, 0, f"cannot read the cohort file: {exc.strerror or exc}")]
        ) from exc
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise CohortError([Problem(str(p), line, 1, "the cohort file is not UTF-8 text")]) from exc
    doc = YamlDoc(str(p), text, problems)
    spec = None
    if doc.data is None and not problems:
        problems.append(Problem(str(p), 1, 1, "empty cohort file"))
    elif doc.data is not None:
        spec = _Parser(doc, rules).parse(doc.data, hashlib.sha256(raw).hexdigest())
    if problems or spec is None:
        problems.sort(key=lambda p: (p.file, p.line, p.column))
        notes = []
        if any(p.message.startswith(_RULE_DIR_PROBLEMS) for p in problems):
            # a rule directory that is missing or not loaded: its rules' uses follow from it
            hidden = [p for p in problems if p.message.startswith("unknown rule")]
            problems = [p for p in problems if p not in hidden]
            if hidden:
                notes.append(
                    f"note: {len(hidden)} use(s) of unknown rules not listed: fix the rule directory first"
                )
        else:
            note = rules.only_builtin_note()
            if note is not None and any(p.message.startswith("unknown rule") for p in problems):
                notes.append(f"note: {note}, or the cohort file's rules: [DIR]")
        raise CohortError(problems or [Problem(str(p), 1, 1, "not a cohort file")], notes=notes)
    return spec


_RULE_DIR_PROBLEMS = ("rule directory ", "the rules of ")


def _days(d: Duration) -> tuple[int, str]:
    """A duration to compare with another: weeks as days (1 week is 7 days), months and
    years as they are (a month has no fixed number of days)."""
    return (d.amount * 7, "day") if d.unit == "week" else (d.amount, d.unit)


def _resolve_dir(cohort_file: str, item: str) -> Path:
    d = Path(item.strip()).expanduser()
    return d if d.is_absolute() else Path(cohort_file).parent / d


def cohort_rule_dirs(path: str | Path) -> list[Path]:
    """The rule directories a cohort file names (``rules:``), resolved against the file's
    folder, to load after the built-in pack and $TIMELINE_RULES and before ``--rules``; none
    when the file names none or cannot be read or parsed (:func:`load_cohort` then says why)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return []
    problems: list[Problem] = []
    data = YamlDoc(str(path), text, problems).data
    if problems or not isinstance(data, dict):
        return []
    raw = data.get("rules")
    items = raw if isinstance(raw, list) else [raw]
    return [_resolve_dir(str(path), x) for x in items if isinstance(x, str) and x.strip()]


def _moved(day: date, d: Duration, sign: int = 1) -> date:
    """The date ``day`` moved by ``d`` falls on, as ``(date + INTERVAL)::DATE`` in DuckDB."""
    return shift(datetime.combine(day, time()), d, sign).date()


def _first_shared_day(a: Duration, b: Duration, w: Window) -> date | None:
    """The first index date (over four years: every month length, a leap year) for which the
    window after time point ``a`` reaches the window before the later ``b``; None if none."""
    day = date(2000, 1, 1)
    while day < date(2004, 1, 1):
        if _moved(_moved(day, a), w.after) >= _moved(_moved(day, b), w.before, -1):
            return day
        day += timedelta(days=1)
    return None


__all__ = ["CohortError", "CohortSpec", "Window", "cohort_rule_dirs", "load_cohort", "slug"]
