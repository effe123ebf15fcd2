"""JSON Schema for rule files, so editors validate them as they are typed.

Point your editor's YAML support at the output of ``timeline rules schema`` (for example
``# yaml-language-server: $schema=rule.schema.json`` at the top of a rule file).
"""

from __future__ import annotations

from typing import Any

from timeline import codes, events
from timeline.language import ast
from timeline.language.loader import AGGREGATES, ARITH, COMPARISONS, NUMERIC_FIELDS

DURATION = {
    "oneOf": [
        {"type": "string", "pattern": r"^\s*-?\d+\s*(hours?|h|days?|d|weeks?|wk|months?|mo|years?|y|a)\s*$"},
        {"$ref": "#/$defs/param_ref"},
    ]
}

# a drug: its name, or a text parameter of the rule naming it
DRUG = {"oneOf": [{"type": "string"}, {"$ref": "#/$defs/param_ref"}]}
DRUGS = {"type": "array", "items": DRUG}


def _op(name: str, arg: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "type": "object",
        "description": description,
        "properties": {name: arg},
        "required": [name],
        "additionalProperties": False,
    }


def _mapping(required: list[str], props: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def one_or_many(values: list[str]) -> dict[str, Any]:
    return {"oneOf": [{"enum": values}, {"type": "array", "items": {"enum": values}}]}


def rule_schema() -> dict[str, Any]:
    expr = {"$ref": "#/$defs/expr"}
    exprs = {"type": "array", "items": expr, "minItems": 1}
    sel = {"$ref": "#/$defs/selector"}
    window = {"$ref": "#/$defs/window"}
    anchor = {"$ref": "#/$defs/anchor"}
    episodes = {"$ref": "#/$defs/episodes"}
    ops: list[dict[str, Any]] = [
        _op("const", _mapping(["value"], {"value": {"type": ["number", "boolean"]}, "unit": {"type": "string"}}), "a constant"),
        _op("param", {"type": "string"}, "a parameter of this rule"),
        _op("rule", {"oneOf": [{"type": "string"},
                               _mapping(["id", "with"], {"id": {"type": "string"},
                                                          "with": {"type": "object", "minProperties": 1,
                                                                   "additionalProperties": {"oneOf": [
                                                                       {"type": ["number", "string", "boolean"]},
                                                                       {"$ref": "#/$defs/param_ref"}]}}})]},
            "the value of another rule at the same moment; {id, with}: at other values of its parameters"),
        _op("latest", _mapping(["select", "within"], {"select": sel, "within": DURATION, "field": {"enum": list(NUMERIC_FIELDS)}}),
            "latest value at or before the moment, no older than within"),
        _op("finding_present", _mapping(["select", "within"], {"select": sel, "within": DURATION}),
            "a finding recorded present lasts until its end, or within without one, unless recorded absent later"),
        _op("normal", _mapping(["select", "within"], {"select": sel, "within": DURATION, "upper": expr, "lower": expr}),
            "latest value within the lab's reference range (or the given limits)"),
        _op("on_drug", {"oneOf": [DRUG, DRUGS, _mapping(["drugs"], {"drugs": {"oneOf": [DRUG, DRUGS]},
                                                       "except_routes": {"type": "array", "items": {"enum": list(codes.ROUTES)}}})]},
            "on any of the drugs (a name, or {param: p}: a text parameter of this rule; except_routes: events given by these routes are not read)"),
        _op("daily_dose", _mapping(["drug"], {"drug": DRUG, "per_kg": {"type": "boolean"}, "weight_within": DURATION}),
            "current daily dose (per kg of the latest valid weight)"),
        _op("age", {"enum": ["years", "months", "days"]}, "age at the moment"),
        _op("time_since", _mapping([], {"first": sel, "last": sel, "unit": {"enum": ["years", "months", "days"]}}),
            "time since the first/last matching event"),
        _op("not", expr, "negation (unknown stays unknown)"),
        _op("at_least", _mapping(["n", "of"], {"n": {"type": "integer", "minimum": 1}, "of": exprs}), "at least n of the items are true"),
        _op("count_true", exprs, "how many items are true"),
        _op("clip", _mapping(["value"], {"value": expr, "low": {"type": "number"}, "high": {"type": "number"}}), "clip a number"),
        _op("coalesce", exprs, "first known value"),
        _op("unknown_unless", _mapping(["value", "condition", "reason"], {"value": expr, "condition": expr, "reason": {"type": "string"}}),
            "value when condition holds, otherwise unknown with reason"),
        _op("pct_change", _mapping(["value", "baseline"], {"value": expr, "baseline": expr}), "percent change from baseline"),
        _op("at_anchor", _mapping(["expr", "anchor"], {"expr": expr, "anchor": anchor, "offset": DURATION,
                                                   "whole_day": {"type": "boolean"}}),
            "the expression evaluated at the anchor event (a baseline); whole_day: at the end of its day"),
        _op("held_for", _mapping(["expr", "duration"], {"expr": expr, "duration": DURATION}),
            "true continuously over the last duration"),
        _op("in_episode", episodes, "the moment lies inside an episode"),
        _op("episode_count", _mapping(["episodes", "window"], {"episodes": episodes, "window": window, "starting_when": expr}),
            "episodes starting in the window"),
    ]  # fmt: skip
    for name in AGGREGATES:
        ops.append(
            _op(
                name,
                _mapping(
                    ["select", "window"],
                    {
                        "select": sel,
                        "window": window,
                        "field": {"enum": list(NUMERIC_FIELDS)},
                        "spans": {"type": "boolean"},
                    },
                ),
                f"{name} over a window",
            )
        )
    for name in COMPARISONS:
        ops.append(
            _op(name, {"type": "array", "items": expr, "minItems": 2, "maxItems": 2}, f"comparison {name}")
        )
    for name in ("all", "any"):
        ops.append(_op(name, exprs, f"three-valued {name}"))
    for name in ARITH:
        ops.append(_op(name, {"type": "array", "items": expr, "minItems": 2}, f"arithmetic {name}"))
    all_codes = sorted(
        set(codes.LABS)
        | set(codes.FINDINGS)
        | set(codes.ASSESSMENTS)
        | {v.code for v in codes.VITALS.values()}
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "timeline rule file",
        "type": "object",
        "required": ["id", "version", "description", "citation", "define"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": "^[a-z][a-z0-9_]*$"},
            "version": {"type": ["string", "integer"]},
            "description": {"type": "string"},
            "citation": {"type": "string"},
            "status": {"enum": list(ast.STATUSES)},
            "meaning": {"enum": list(ast.MEANINGS)},
            "unit": {"type": "string"},
            "params": {
                "type": "object",
                "additionalProperties": {
                    "oneOf": [
                        {"type": ["number", "string", "boolean"]},
                        _mapping(["default"], {"default": {"type": ["number", "string", "boolean"]}, "unit": {"type": "string"}, "description": {"type": "string"}}),
                    ]
                },
            },
            "events": {"type": "object", "additionalProperties": sel},
            "define": expr,
            "examples": {
                "type": "array",
                "items": _mapping(
                    ["events", "expect"],
                    {
                        "name": {"type": "string"},
                        "params": {"type": "object"},
                        "events": {"type": "array", "items": {"type": "object", "properties": {c: {} for c in events.NATIVE_COLUMNS}, "additionalProperties": False}},
                        "expect": {"type": "array", "items": _mapping(["at", "value"], {
                            "at": {"type": "string"}, "value": {"type": ["boolean", "number", "string"]},
                            "reason_contains": {"type": "string"}, "patient_id": {"type": "string"}})},
                    },
                ),
            },
        },
        "$defs": {
            "param_ref": _mapping(["param"], {"param": {"type": "string"}}),
            "expr": {"oneOf": [{"type": "number"}, {"type": "boolean"}, {"type": "string", "description": "a quantity such as '6 mg/L'"}, *ops]},
            "selector": {
                "oneOf": [
                    {"type": "string", "description": "a name from this rule's events"},
                    _mapping([], {
                        "kind": one_or_many(list(events.KINDS)), "code": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}], "examples": all_codes},
                        "drug": {"oneOf": [DRUG, DRUGS]},
                        "not_drug": {"oneOf": [DRUG, DRUGS], "description": "events of these drugs are left out"},
                        "dose_unit": {"enum": list(codes.DOSE_UNITS)},
                        "present": {"type": "boolean"},
                        "where": {"type": "object", "propertyNames": {"enum": list(NUMERIC_FIELDS)},
                                  "additionalProperties": {"type": "object", "propertyNames": {"enum": list(COMPARISONS)}, "minProperties": 1, "maxProperties": 1}},
                        "any_of": {"type": "array", "items": sel},
                    }),
                ]
            },
            "anchor": {"oneOf": [_mapping(["first"], {"first": sel}), _mapping(["last"], {"last": sel})]},
            "window": {
                "oneOf": [
                    DURATION,
                    {"const": "ever"},
                    _mapping(["start"], {"start": {"oneOf": [DURATION, {"const": "ever"}]}, "end": DURATION, "start_inclusive": {"type": "boolean"},
                                                "end_inclusive": {"type": "boolean"}, "anchor": anchor}),
                ]
            },
            "episodes": {
                "oneOf": [
                    _mapping(["select"], {"select": sel, "merge_gap": DURATION}),
                    _mapping(["when"], {"when": expr, "merge_gap": DURATION}),
                ]
            },
        },
    }  # fmt: skip
