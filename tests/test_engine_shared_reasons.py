"""The unknown reasons of an all / any / at_least whose items are comparisons of numbers with
constants depend on the numbers alone: such a comparison is unknown exactly when its number is,
and gives the number's reason. The SQL engine sorts them once for every node comparing the same
numbers (``Compiler.unknown_reasons``: the four ACR Pedi levels' improvements and their worsening
test), and must give the text each node's own items would make — the replay's, which builds
every node's reasons from its own items."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.engine_support import store_with, write_rule
from timeline.engine.compiler import Compiler
from timeline.engine.evaluate import Result, Session
from timeline.language.loader import load_rules

LABS = {"crp": ("1988-5", "mg/L"), "esr": ("4537-7", "mm/h"), "ferritin": ("2276-4", "ng/mL")}


def mean(lab: str) -> dict[str, Any]:
    """The mean of a lab over 30 days: a number that is never a censored value (the compiler
    keeps a ``latest`` value's qualifier, which a comparison may decide on)."""
    return {"mean": {"select": {"kind": "lab", "code": LABS[lab][0]}, "window": "30 days"}}


def above(lab: str, threshold: float) -> dict[str, Any]:
    return {"gt": [mean(lab), f"{threshold} {LABS[lab][1]}"]}


def lab(name: str, value: float, day: str = "2009-03-01") -> dict[str, Any]:
    code, unit = LABS[name]
    return {"patient_id": "P1", "kind": "lab", "code": code, "occurred_at": day, "value": value, "unit": unit}


def both(
    tmp_path: Path, rows: list[dict[str, Any]], defines: dict[str, Any], at: str = "2009-03-02"
) -> list[Result]:
    """Each rule's state by the replay and by the SQL engine, which must agree."""
    for rule_id, define in defines.items():
        write_rule(tmp_path / "rules", rule_id, define)
    rules = load_rules([tmp_path / "rules"])
    with store_with(tmp_path / "s.duckdb", rows) as store:
        replayed = Session(store, rules).state("P1", at, list(defines))
        sql = Session(store, rules)
        sql.replay = False
        compiled = sql.state("P1", at, list(defines))
    for r, c in zip(replayed, compiled, strict=True):
        assert (r.value, r.why, r.note, r.evidence) == (c.value, c.why, c.note, c.evidence), r.rule_id
    return compiled


def levels(low: float, high: float, n: int = 2) -> dict[str, Any]:
    """Two rules comparing the same three labs, at other thresholds."""
    return {
        "low": {"at_least": {"n": n, "of": [above("crp", low), above("esr", low), above("ferritin", low)]}},
        "high": {
            "at_least": {"n": n, "of": [above("crp", high), above("esr", high), above("ferritin", high)]}
        },
    }


def test_nodes_comparing_the_same_numbers_at_other_thresholds_sort_their_reasons_in_one_relation(
    tmp_path: Path,
) -> None:
    for rule_id, define in levels(10, 50).items():
        write_rule(tmp_path / "rules", rule_id, define)
    comp = Compiler(load_rules([tmp_path / "rules"]), "SELECT * FROM events")
    comp.add("pts", "SELECT 'P1' AS patient_id, TIMESTAMP '2009-03-02' AS q")
    roots = [comp.rule("low"), comp.rule("high")]
    shared = [name for name, _ in comp.out.ctes if name.startswith("ur")]
    assert len(shared) == 1
    assert all(shared[0] in sql for name, sql in comp.out.ctes if name in roots)


def test_the_unknown_items_reasons_are_those_of_their_numbers_sorted(tmp_path: Path) -> None:
    low, high = both(tmp_path, [lab("crp", 30)], levels(10, 50))
    assert low.value is None and high.value is None
    assert low.why == high.why
    assert low.why is not None
    reasons = low.why.split("; ")
    assert reasons == sorted(reasons) and len(reasons) == 2
    assert all("ESR" in r or "ferritin" in r for r in reasons)


def test_a_known_result_passes_no_reason_on_though_its_numbers_are_unknown(tmp_path: Path) -> None:
    # CRP above both thresholds, ESR and ferritin unknown: 1 of 3 is enough for n=1, so the
    # at_least is known; compared with an unknown (ESR above 20) it gives only ESR's reason
    one = {"at_least": {"n": 1, "of": [above("crp", 10), above("esr", 10), above("ferritin", 10)]}}
    (got,) = both(tmp_path, [lab("crp", 60)], {"r": {"eq": [one, above("esr", 20)]}})
    assert got.value is None
    assert got.why is not None
    assert "ferritin" not in got.why and "ESR" in got.why


def test_a_number_compared_twice_in_one_node_gives_its_reason_once(tmp_path: Path) -> None:
    define = {"any": [above("crp", 10), {"lt": [mean("crp"), "1 mg/L"]}, above("esr", 20)]}
    (got,) = both(tmp_path, [], {"r": define})
    assert got.value is None
    assert got.why is not None
    reasons = got.why.split("; ")
    assert len(reasons) == len(set(reasons)) == 2


def test_the_not_of_a_comparison_gives_its_numbers_reason(tmp_path: Path) -> None:
    define = {"all": [{"not": above("crp", 10)}, above("esr", 20), {"not": above("ferritin", 500)}]}
    (got,) = both(tmp_path, [lab("esr", 30)], {"r": define})
    assert got.value is None
    assert got.why is not None
    assert "ESR" not in got.why and "CRP" in got.why and "ferritin" in got.why


@settings(max_examples=25, deadline=None)
@given(
    present=st.fixed_dictionaries({k: st.one_of(st.none(), st.integers(0, 100)) for k in LABS}),
    low=st.integers(0, 60),
    high=st.integers(0, 60),
    n=st.integers(1, 3),
    day=st.sampled_from(["2009-03-01", "2009-01-31", "2009-01-30"]),
)
def test_nodes_sharing_their_reasons_agree_with_the_replay(
    tmp_path_factory: Any, present: dict[str, int | None], low: int, high: int, n: int, day: str
) -> None:
    # day: inside the 30 days before 2009-03-02, or just at / past its edge
    rows = [lab(k, v, day) for k, v in present.items() if v is not None]
    both(tmp_path_factory.mktemp("shared"), rows, levels(low, high, n))
