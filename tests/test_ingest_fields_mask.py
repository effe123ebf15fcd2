"""The ingest's one scan of single-row checks selects the rows with a column their kind requires
missing, or one it does not allow present, by one bit-mask test (``_fields_mask_sql``) instead
of one kind list per column: it must select exactly those rows, or a row would go unreported."""

from __future__ import annotations

import duckdb
from hypothesis import given, settings
from hypothesis import strategies as st

from timeline import events
from timeline.ingest import _ANY_KIND, _fields_mask_sql, _quote

_COLUMNS = [c for c in events.NATIVE_COLUMNS if c not in _ANY_KIND]
_VALUES = {"VARCHAR": "'x'", "DOUBLE": "1.5::DOUBLE", "INTEGER": "2::INTEGER", "BOOLEAN": "true"}
_CON = duckdb.connect()


def _states() -> st.SearchStrategy[dict[str, str]]:
    """Each column absent, given, or (a typed column) given with a value that cannot be read."""
    return st.fixed_dictionaries(
        {
            c: st.sampled_from(
                ["absent", "given"] + (["unreadable"] if events.COLUMN_TYPES[c] != "VARCHAR" else [])
            )
            for c in _COLUMNS
        }
    )


def _row_sql(kind: str | None, states: dict[str, str]) -> str:
    cols = [f"{_quote(kind) if kind is not None else 'NULL::VARCHAR'} AS kind"]
    for c in _COLUMNS:
        typ = events.COLUMN_TYPES[c]
        value = _VALUES[typ] if states[c] == "given" else f"NULL::{typ}"
        cols.append(f"{value} AS {c}")
        if typ != "VARCHAR":
            cols.append(f"{'true' if states[c] == 'unreadable' else 'false'} AS bad_{c}")
    return f"SELECT {', '.join(cols)}"


def _expected(kind: str | None, states: dict[str, str]) -> bool:
    """What the checks report: a required column absent, or a refused one present (a value
    that cannot be read is present); an unknown or missing kind is reported otherwise."""
    if kind not in events.KINDS:
        return False
    required, allowed = events.kind_fields(kind)
    present = {c for c, s in states.items() if s != "absent"}
    return bool((required - present) or (present - allowed))


@settings(max_examples=400, deadline=None)
@given(kind=st.sampled_from([*events.KINDS, "no_such_kind", None]), states=_states())
def test_the_mask_selects_exactly_the_rows_whose_kind_refuses_or_lacks_a_column(
    kind: str | None, states: dict[str, str]
) -> None:
    join, condition = _fields_mask_sql()
    row = _CON.execute(
        f"SELECT coalesce({condition}, false) FROM ({_row_sql(kind, states)}) s {join}"
    ).fetchone()
    assert row is not None
    assert row[0] is _expected(kind, states)


def test_every_kind_as_its_model_requires_passes_the_mask() -> None:
    join, condition = _fields_mask_sql()
    for kind in events.KINDS:
        required, _ = events.kind_fields(kind)
        states = {c: "given" if c in required else "absent" for c in _COLUMNS}
        row = _CON.execute(f"SELECT {condition} FROM ({_row_sql(kind, states)}) s {join}").fetchone()
        assert row == (False,), kind
