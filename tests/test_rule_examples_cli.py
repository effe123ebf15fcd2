"""A rule file's examples: `rules check` refuses an example event's values as ingest would, at
its line, and `rules test` names the file and line of a failing example, once (helper 62,
finding 9, and the `rules test --json` part of finding 13)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

from tests.support import run_cli

HEAD = "id: ferritin_high\nversion: '1'\ndescription: a test rule\ncitation: the tests\n"
DEFINE = "define:\n  gt: [{latest: {select: {kind: lab, code: 2276-4}, within: 30 days}}, 1000 ng/mL]\n"


def rule_with_events(directory: Path, *events: str, expect: str = "true") -> Path:
    """``ferritin_high`` with one example holding ``events`` (flow mappings): the example
    begins on line 8 of the file, its first event on line 10."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "ferritin_high.yaml"
    body = textwrap.dedent(
        """\
        examples:
          - name: a high ferritin
            events:
        """
    )
    body += "".join(f"      - {e}\n" for e in events)
    body += f"    expect:\n      - {{at: '2020-03-01', value: {expect}}}\n"
    path.write_text(HEAD + DEFINE + body, encoding="utf-8")
    return path


def ferritin(value: object, unit: str) -> str:
    return (
        f"{{patient_id: X, kind: lab, code: 2276-4, occurred_at: '2020-03-01', value: {value}, unit: {unit}}}"
    )


def test_rules_check_refuses_an_example_events_unit_that_does_not_convert_at_its_line(tmp_path: Path) -> None:
    path = rule_with_events(tmp_path, ferritin(1500, "ng/mL"), ferritin(1500, "µg/L"))
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 8, result.output
    assert (
        f"{path}:11:" in result.stderr
        and "unit 'µg/L' cannot be converted to 'ng/mL' for ferritin: 'µg/L' is not a UCUM unit; "
        "UCUM writes it 'ug/L'"
        in result.stderr
    ), result.stderr


def test_rules_check_refuses_an_example_events_implausible_value_at_its_line(tmp_path: Path) -> None:
    path = rule_with_events(tmp_path, ferritin(900000000, "ug/L"))
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 8, result.output
    assert (
        f"{path}:10:" in result.stderr
        and "value 900000000 ug/L (9e+08 ng/mL) is outside the plausible range 0–500000 ng/mL for ferritin"
        in result.stderr
    ), result.stderr


def test_rules_check_refuses_an_example_events_date_that_is_no_date_at_its_line(tmp_path: Path) -> None:
    path = rule_with_events(tmp_path, ferritin(1500, "ng/mL").replace("2020-03-01", "2020-13-01"))
    result = run_cli("rules", "check", tmp_path)
    assert result.exit_code == 8, result.output
    assert (
        f"{path}:10:" in result.stderr
        and "'2020-13-01' is not a date: month must be in 1..12" in result.stderr
    )


def test_rules_check_accepts_an_example_event_in_a_unit_that_converts(tmp_path: Path) -> None:
    rule_with_events(tmp_path, ferritin(1.5, "mg/L"))
    assert run_cli("rules", "check", tmp_path).exit_code == 0


def test_rules_test_names_the_file_and_line_of_a_failing_example(tmp_path: Path) -> None:
    path = rule_with_events(tmp_path, ferritin(1500, "ng/mL"), expect="false")
    result = run_cli("rules", "test", tmp_path)
    assert result.exit_code == 9, result.output
    assert f"FAIL ferritin_high@1: a high ferritin ({path}:8)" in result.stdout


def test_rules_test_says_what_ingest_refuses_at_its_events_line_naming_the_example_once(
    tmp_path: Path,
) -> None:
    """A birth after the patient's ferritin: ingest refuses the ferritin (the example's first
    event, line 10), which `rules check`, reading one event at a time, cannot know."""
    birth = "{patient_id: X, kind: birth, occurred_at: '2021-01-01', sex: female}"
    path = rule_with_events(tmp_path, ferritin(1500, "ng/mL"), birth)
    result = run_cli("rules", "test", tmp_path)
    assert result.exit_code == 9, result.output
    assert (
        f"     {path}:10: ingest refuses field occurred_at: is before the patient's birth (2021-01-01)"
        in (result.stdout)
    )
    assert result.stdout.count("a high ferritin") == 1, result.stdout


def test_rules_test_json_gives_the_file_and_line_of_each_example(tmp_path: Path) -> None:
    path = rule_with_events(tmp_path, ferritin(1500, "ng/mL"), expect="false")
    data = json.loads(run_cli("rules", "test", tmp_path, "--json").stdout)
    (example,) = data["examples"]
    assert (example["file"], example["line"], example["passed"]) == (str(path), 8, False)
    assert data["error"]["details"] == [f"{path}:8: ferritin_high@1: a high ferritin"]
