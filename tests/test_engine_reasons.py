"""The unknown reasons of all / any / at_least: each distinct reason once, in sorted order,
joined by '; '. The compiler builds them without a list per row (Compiler.sorted_reasons);
these tests hold that form to the list form it replaced, and to Python's sorted(set(...)),
for every number of items the compiler treats differently (1, 2, 3–8, more). And those of
arithmetic and coalesce, in item order, each clause once (Compiler.ordered_reasons), held to
the replay's concatenation."""

from __future__ import annotations

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from timeline.engine.compiler import Compiler
from timeline.engine.evaluate import MACROS
from timeline.engine.replay import _concat

# Reasons that are alike except where they differ (a shared prefix, '; ' inside one,
# non-ASCII, one a prefix of another) so that the order of close strings is exercised.
REASON = st.one_of(
    st.none(),
    st.sampled_from(
        [
            "no CRP recorded up to the date",
            "no CRP within 30 days",
            "no CRP within 30 days: the latest, on 2011-03-01, is too old",
            "no ESR (Westergren) recorded up to the date",
            "a; b",
            "a",
            "b",
            "Ärztliche Angabe fehlt",
            "zz",
        ]
    ),
    st.text(alphabet="ab; Z", min_size=1, max_size=6),
)


def sql_text(value: str | None) -> str:
    return "NULL::VARCHAR" if value is None else "'" + value.replace("'", "''") + "'"


def fast_and_list(con: duckdb.DuckDBPyConnection, whys: list[str | None]) -> tuple[str | None, str | None]:
    cols = ", ".join(f"{sql_text(w)} AS why{i}" for i, w in enumerate(whys))
    picked = [f"why{i}" for i in range(len(whys))]
    src, expr = Compiler.sorted_reasons(f"SELECT {cols}", picked)
    row = con.execute(f"SELECT {expr}, {Compiler.reasons(picked)} FROM ({src})").fetchone()
    assert row is not None
    return row[0], row[1]


def expected(whys: list[str | None]) -> str | None:
    return "; ".join(sorted({w for w in whys if w is not None})) or None


@pytest.fixture(scope="module")
def con() -> duckdb.DuckDBPyConnection:
    return duckdb.connect()


@settings(max_examples=300, deadline=None)
@given(whys=st.lists(REASON, min_size=1, max_size=11))
def test_sorted_reasons_equal_the_list_form_and_sorted_set(whys: list[str | None]) -> None:
    con = duckdb.connect()
    fast, listed = fast_and_list(con, whys)
    assert fast == listed
    assert fast == expected(whys)


@pytest.mark.parametrize("k", [1, 2, 3, 5, 8, 9])
def test_sorted_reasons_of_no_reason_is_null(con: duckdb.DuckDBPyConnection, k: int) -> None:
    assert fast_and_list(con, [None] * k) == (None, None)


@pytest.mark.parametrize("k", [2, 3, 8, 9])
def test_sorted_reasons_name_a_repeated_reason_once(con: duckdb.DuckDBPyConnection, k: int) -> None:
    whys: list[str | None] = ["no CRP", "no CRP"] + [None] * (k - 2)
    fast, _ = fast_and_list(con, whys)
    assert fast == "no CRP"


def test_sorted_reasons_of_two_put_the_smaller_first(con: duckdb.DuckDBPyConnection) -> None:
    assert fast_and_list(con, ["no fever", "no CRP"])[0] == "no CRP; no fever"


def test_sorted_reasons_of_three_or_more_are_in_order(con: duckdb.DuckDBPyConnection) -> None:
    fast, _ = fast_and_list(con, ["c", None, "a", "b", "a", None])
    assert fast == "a; b; c"


# ---- reasons in item order, each clause once (arithmetic, coalesce) ---------------------------

# Reasons of several clauses that share some ("; "-separated), with empty clauses and repeats.
CLAUSED = st.one_of(
    st.none(),
    st.just(""),
    st.lists(st.sampled_from(["no CRP", "no ESR", "no index_drug_start recorded up to the date", "a", ""]),
             min_size=1, max_size=4).map("; ".join),
)  # fmt: skip


def ordered(con: duckdb.DuckDBPyConnection, whys: list[str | None]) -> str | None:
    cols = ", ".join(f"{sql_text(w)} AS why{i}" for i, w in enumerate(whys))
    src, expr = Compiler.ordered_reasons(f"SELECT {cols}", [f"why{i}" for i in range(len(whys))])
    for macro in MACROS:
        con.execute(macro)
    row = con.execute(f"SELECT {expr} FROM ({src})").fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


@settings(max_examples=300, deadline=None)
@given(whys=st.lists(st.one_of(REASON, CLAUSED), min_size=1, max_size=9))
def test_ordered_reasons_equal_the_replays_concatenation(whys: list[str | None]) -> None:
    assert ordered(duckdb.connect(), whys) == _concat(whys)


def test_ordered_reasons_say_a_clause_an_earlier_reason_gave_once(con: duckdb.DuckDBPyConnection) -> None:
    whys: list[str | None] = ["no CRP; no ESR", None, "no ESR; no ferritin", "no CRP"]
    assert ordered(con, whys) == "no CRP; no ESR; no ferritin"


@pytest.mark.parametrize("k", [1, 2, 3, 7])
def test_ordered_reasons_of_no_reason_is_null(con: duckdb.DuckDBPyConnection, k: int) -> None:
    assert ordered(con, [None, ""] * k) is None
