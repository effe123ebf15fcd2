"""Shared fixtures: a fresh store per test, a store holding the example events, a clean
environment for the CLI."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import EXAMPLE_CSV
from timeline.ingest import ingest_file
from timeline.store import Store


@pytest.fixture(scope="session")
def _rule_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tests' own cache of loaded rule sets, never the developer's ~/.cache."""
    return tmp_path_factory.mktemp("rule-cache")


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch, _rule_cache: Path) -> None:
    """No store, author, debug flag, forced colour or rule directories from the developer's
    shell; rule sets are cached in a directory of the test session's own."""
    for name in (
        "TIMELINE_STORE", "TIMELINE_AUTHOR", "TIMELINE_DEBUG", "FORCE_COLOR", "TIMELINE_RULES",
        "TIMELINE_NO_CACHE",
    ):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("TIMELINE_CACHE_DIR", str(_rule_cache))


@pytest.fixture
def store_path(tmp_path: Path) -> Path:
    return tmp_path / "store.duckdb"


@pytest.fixture
def store(store_path: Path) -> Iterator[Store]:
    s = Store.create(store_path)
    yield s
    s.close()


@pytest.fixture(scope="session")
def example_store_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store holding examples/events.csv as batch 1 (built once; copy it before use)."""
    path = tmp_path_factory.mktemp("template") / "example.duckdb"
    with Store.create(path) as s:
        ingest_file(s, EXAMPLE_CSV, author="baseline")
    return path


@pytest.fixture
def example_store(example_store_template: Path, tmp_path: Path) -> Path:
    """A private copy of a store holding the 14 example events."""
    path = tmp_path / "example.duckdb"
    shutil.copy(example_store_template, path)
    return path
