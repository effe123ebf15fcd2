"""The per-user cache of loaded rule sets (`timeline.language.cache`): a hit is the same rule set
the loader would build, anything that went into the load invalidates it, and a cache that cannot
be used is skipped without an error."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.support import run_cli
from timeline.language import cache, loader
from timeline.language.loader import BUILTIN_DIR, RuleError, RuleSet

RULE = """\
id: r
version: '1'
description: a test rule
citation: the tests
params:
  upper: {{default: {default}, description: upper limit}}
define:
  normal: {{select: {{kind: lab, code: 1988-5}}, within: 30 days, upper: {right}}}
"""


def rule_dir(tmp_path: Path, right: str = "{param: upper}", default: str = "6 mg/L") -> Path:
    d = tmp_path / "rules"
    d.mkdir(exist_ok=True)
    (d / "r.yaml").write_text(RULE.format(right=right, default=default), encoding="utf-8")
    return d


@pytest.fixture
def cache_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    d = tmp_path / "cache"
    monkeypatch.setenv("TIMELINE_CACHE_DIR", str(d))
    return d


def entries(d: Path) -> list[Path]:
    return sorted(d.glob("rules-*.pickle"))


def same(a: RuleSet, b: RuleSet) -> bool:
    def parts(r: RuleSet) -> tuple[object, ...]:
        return (r.rules, r.order, r.types, r.sources, r.digest)

    return parts(a) == parts(b)


def test_a_second_load_of_the_builtin_pack_is_read_from_the_cache(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = cache.load_rules([BUILTIN_DIR / "sjia"])
    assert len(entries(cache_dir)) == 1
    monkeypatch.setattr(loader, "load_rules", lambda *a, **k: pytest.fail("parsed again"))
    assert same(cache.load_rules([BUILTIN_DIR / "sjia"]), first)


def test_a_cached_rule_set_equals_a_fresh_load(cache_dir: Path, tmp_path: Path) -> None:
    d = rule_dir(tmp_path)
    cache.load_rules([BUILTIN_DIR / "sjia", d])
    cached = cache.load_rules([BUILTIN_DIR / "sjia", d])
    assert same(cached, loader.load_rules([BUILTIN_DIR / "sjia", d]))


def test_editing_a_rule_file_invalidates_the_cache(cache_dir: Path, tmp_path: Path) -> None:
    d = rule_dir(tmp_path)
    before = cache.load_rules([d])
    path = d / "r.yaml"
    st = path.stat()
    rule_dir(tmp_path, default="9 mg/L")  # the same size
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with the old modification time
    after = cache.load_rules([d])
    assert after.digest != before.digest
    assert after.rules["r"] == loader.load_rules([d]).rules["r"]


def test_a_new_rule_file_invalidates_the_cache(cache_dir: Path, tmp_path: Path) -> None:
    d = rule_dir(tmp_path)
    cache.load_rules([d])
    (d / "s.yaml").write_text((d / "r.yaml").read_text().replace("id: r", "id: s"), encoding="utf-8")
    assert set(cache.load_rules([d]).rules) == {"r", "s"}


def test_parameter_overrides_are_part_of_the_key(cache_dir: Path, tmp_path: Path) -> None:
    d = rule_dir(tmp_path)
    default = cache.load_rules([d])
    changed = cache.load_rules([d], params={"r": {"upper": "5 mg/L"}})
    assert default.rules["r"].param("upper").effective != changed.rules["r"].param("upper").effective
    assert len(entries(cache_dir)) == 2


def test_rule_files_with_problems_are_reported_every_time_and_never_cached(
    cache_dir: Path, tmp_path: Path
) -> None:
    d = rule_dir(tmp_path, right="{param: nope}")
    for _ in range(2):
        with pytest.raises(RuleError) as caught:
            cache.load_rules([d])
        assert "nope" in str(caught.value.problems[0])
    assert entries(cache_dir) == []


def test_a_damaged_entry_is_ignored_and_replaced(cache_dir: Path, tmp_path: Path) -> None:
    d = rule_dir(tmp_path)
    fresh = cache.load_rules([d])
    (entry,) = entries(cache_dir)
    entry.write_bytes(b"not a pickle")
    assert same(cache.load_rules([d]), fresh)
    assert entry.read_bytes() != b"not a pickle"


def test_an_entry_that_another_user_could_have_written_is_not_read(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = rule_dir(tmp_path)
    cache.load_rules([d])
    (entry,) = entries(cache_dir)
    entry.chmod(0o666)
    calls: list[object] = []
    real = loader.load_rules

    def counted(*args: Any, **kwargs: Any) -> RuleSet:
        calls.append(args)
        return real(*args, **kwargs)

    monkeypatch.setattr(loader, "load_rules", counted)
    cache.load_rules([d])
    assert len(calls) == 1


def test_an_unwritable_cache_directory_loads_without_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("TIMELINE_CACHE_DIR", str(blocker / "cache"))  # cannot be created
    d = rule_dir(tmp_path)
    assert same(cache.load_rules([d]), loader.load_rules([d]))


def test_timeline_no_cache_turns_the_cache_off(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIMELINE_NO_CACHE", "1")
    d = rule_dir(tmp_path)
    cache.load_rules([d])
    cache.load_rules([d])
    assert not cache_dir.exists()


def test_only_the_newest_entries_are_kept(
    cache_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(cache, "KEEP", 2)
    d = rule_dir(tmp_path)
    for upper in ("1 mg/L", "2 mg/L", "3 mg/L"):
        cache.load_rules([d], params={"r": {"upper": upper}})
    assert len(entries(cache_dir)) == 2


def test_the_cli_reads_rules_through_the_cache(cache_dir: Path) -> None:
    result = run_cli("rules", "list", "--json")
    assert result.exit_code == 0, result.output
    assert len(entries(cache_dir)) == 1


def test_another_pyyaml_install_is_another_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """PyYAML parses the rule files: another install of it (another version writes its package
    anew) is another key, found without importing yaml."""
    import importlib.util

    d = rule_dir(tmp_path)
    before = cache.cache_key([d], None)
    other = tmp_path / "yaml" / "__init__.py"
    other.parent.mkdir()
    other.write_text("__version__ = '0.0'\n", encoding="utf-8")
    real = importlib.util.find_spec
    spec = importlib.util.spec_from_file_location("yaml", other)
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: spec if name == "yaml" else real(name, *a)
    )
    assert cache.cache_key([d], None) != before


def test_the_key_is_found_without_importlib_metadata(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """importlib.metadata's lookup of a version scans every entry of the import path (~0.5–2.5
    ms of `state`'s start): the key does without it."""
    from importlib import metadata

    d = rule_dir(tmp_path)
    before = cache.cache_key([d], None)
    monkeypatch.setattr(metadata, "version", lambda name: pytest.fail(f"metadata.version({name!r})"))
    assert cache.cache_key([d], None) == before


def test_nothing_is_written_to_a_directory_that_others_can_write(cache_dir: Path, tmp_path: Path) -> None:
    cache_dir.mkdir(mode=0o700)
    cache_dir.chmod(0o777)
    cache.load_rules([rule_dir(tmp_path)])
    assert entries(cache_dir) == []


def test_a_cached_rules_examples_stay_pickled_until_first_read(cache_dir: Path) -> None:
    """A rule read from the cache keeps its examples as their pickle (`timeline state` never
    reads them, and does not pay for unpickling them) until they are read: then they are the
    examples the loader built."""
    cache.load_rules([BUILTIN_DIR / "sjia"])
    cached = cache.load_rules([BUILTIN_DIR / "sjia"]).rules["fever_free"]
    assert isinstance(cached.__dict__["examples"], bytes)
    fresh = loader.load_rules([BUILTIN_DIR / "sjia"]).rules["fever_free"]
    assert fresh.examples and cached.examples == fresh.examples
    assert cached.__dict__["examples"] is cached.examples  # unpickled once, in place
