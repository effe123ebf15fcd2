"""`rules list` says where each rule comes from and cuts descriptions at a word; `cohort run`
words a change to a site's own rule rightly (helper 62, finding 13)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cli.engine import cut_at_word
from tests.cohort_support import COHORT, RULES, build_store, write
from tests.engine_support import write_rule
from tests.support import run_cli
from timeline.language.loader import BUILTIN_DIR

LONG = "True while the latest C-reactive protein is within the laboratory's own reference range or below the quokka limit"


def listed_row(result_stdout: str, rule_id: str) -> str:
    row = next((line for line in result_stdout.splitlines() if re.match(rf"│ {rule_id}\s", line)), None)
    assert row is not None, result_stdout
    return row


def test_rules_list_says_a_built_in_rule_comes_from_the_pack() -> None:
    result = run_cli("rules", "list")
    assert re.search(r"│ built-in\s+│", listed_row(result.stdout, "crp_normal"))


def test_rules_list_names_the_directory_of_a_users_own_rule(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_rule(tmp_path / "mine", "my_rule", True)
    result = run_cli("rules", "list", "--rules", "mine")
    assert re.search(r"│ mine/\s+│", listed_row(result.stdout, "my_rule"))


def test_rules_list_says_which_rule_an_override_replaces(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()
    shutil.copy(BUILTIN_DIR / "sjia" / "crp_normal.yaml", tmp_path / "mine")
    result = run_cli("rules", "list", "--rules", "mine")
    assert re.search(r"│ mine/ \(overrides built-in\)\s+│", listed_row(result.stdout, "crp_normal"))


def test_rules_list_json_gives_where_each_rule_comes_from(tmp_path: Path) -> None:
    write_rule(tmp_path / "mine", "my_rule", True)
    data = json.loads(run_cli("rules", "list", "--rules", tmp_path / "mine", "--json").stdout)
    origin = {r["id"]: r["from"] for r in data["rules"]}
    assert (origin["my_rule"], origin["crp_normal"]) == (f"{tmp_path / 'mine'}/", "built-in")


def test_a_long_description_is_cut_at_a_word_with_an_ellipsis() -> None:
    assert (
        cut_at_word(LONG, 90)
        == "True while the latest C-reactive protein is within the laboratory's own reference range …"
    )


def test_rules_list_shows_a_long_description_cut_short(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_rule(tmp_path / "mine", "my_rule", True, description=LONG)
    out = run_cli("rules", "list", "--rules", "mine").stdout
    assert "range …" in out and "quokka" not in out


@given(st.text(alphabet="ab (,", max_size=60), st.integers(min_value=5, max_value=40))
def test_a_text_cut_at_a_word_is_never_a_word_cut_in_two(text: str, width: int) -> None:
    norm = " ".join(text.split())
    cut = cut_at_word(text, width)
    if len(norm) <= width:
        assert cut == norm
        return
    kept = cut.removesuffix(" …")
    assert cut.endswith(" …") and norm.startswith(kept) and len(kept) <= width
    if " " in norm[:width]:  # else the first word alone is longer than the width
        assert norm[len(kept)] in " ,;:("  # what follows is a space, or punctuation left off


def test_cohort_run_says_a_parameter_of_a_sites_own_rule_changed_from_its_file_not_the_pack(
    tmp_path: Path,
) -> None:
    joints = {"latest": {"select": {"kind": "joint_exam"}, "field": "active_joints", "within": "90 days"}}
    write_rule(
        tmp_path / "own", "joints_over", {"gt": [joints, {"param": "n"}]}, params={"n": {"default": 0}}
    )
    text = COHORT.read_text(encoding="utf-8")
    cohort = write(tmp_path, text.replace("outcomes:\n", "outcomes:\n  - {id: joints, rule: joints_over}\n"))
    store = build_store(tmp_path / "c.duckdb")
    result = run_cli(
        "cohort", "run", cohort, "--store", store, "--rules", RULES, "--rules", tmp_path / "own",
        "--param", "joints_over.n=2",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "pack's" not in result.stdout
    assert "changed from the rule files: joints_over.n = 2 (default 0)" in result.stdout
