"""The library never rewrites history: no SQL in it updates, deletes or drops stored rows."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support import ROOT

SOURCES = sorted((ROOT / "timeline").rglob("*.py")) + sorted((ROOT / "cli").rglob("*.py"))
# DML or DDL that could change or remove stored rows (upper case, as the library writes SQL).
FORBIDDEN = re.compile(
    r"\b(UPDATE\s+\w+\s+SET|DELETE\s+FROM|TRUNCATE|ALTER\s+TABLE|INSERT\s+OR\s+REPLACE)\b|ON\s+CONFLICT"
)
# Only the ingest scratch tables (tl_*) may be dropped or replaced.
DROP = re.compile(
    r"\b(DROP\s+TABLE|CREATE\s+OR\s+REPLACE\s+(?:TEMP\s+)?TABLE)\s+(?:IF\s+EXISTS\s+)?(\{?\w+\}?)"
)


def test_library_sources_are_found() -> None:
    names = {p.name for p in SOURCES}
    assert {"store.py", "ingest.py", "integrity.py", "main.py"} <= names


def test_library_inserts_into_events_and_batches() -> None:
    """The scan below reads the SQL the library actually runs (it is not looking at nothing)."""
    text = "\n".join(p.read_text(encoding="utf-8") for p in SOURCES)
    assert "INSERT INTO events" in text and "INSERT INTO batches" in text


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_library_source_has_no_update_or_delete(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert [m.group(0) for m in FORBIDDEN.finditer(text)] == []


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_library_drops_or_replaces_only_scratch_tables(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    targets = [m.group(2) for m in DROP.finditer(text)]
    assert [t for t in targets if not (t.startswith("tl_") or t == "{name}")] == []
