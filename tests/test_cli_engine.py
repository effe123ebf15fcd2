"""`timeline state`, `explain` and `history` on the example store: tables, JSON with a
reproducibility manifest, CSV, and clean errors (never a traceback)."""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path

import pytest

from tests.engine_support import write_rule
from tests.support import EXAMPLES, raw_connection, run_cli

CRP = {"kind": "lab", "code": "1988-5"}
NO_TRACEBACK = "Traceback"


def state_json(store: Path, *args: str | Path) -> dict:
    result = run_cli("state", "P001", "--store", store, "--json", *args)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def by_rule(data: dict) -> dict[str, dict]:
    return {s["rule"]: s for s in data["states"]}


# ---- state ----------------------------------------------------------------------------------------


def test_state_table_shows_each_rule_with_its_value_and_detail(example_store: Path) -> None:
    result = run_cli(
        "state",
        "P001",
        "--at",
        "2008-02-10",
        "--rule",
        "crp_normal",
        "--rule",
        "on_anakinra",
        "--store",
        example_store,
    )
    assert result.exit_code == 0, result.output
    assert "P001 at 2008-02-10 (as known at seq 14)" in result.stdout
    assert re.search(
        r"crp_normal\s*│\s*true\s*│\s*CRP 4 mg/L vs the limit ≤ 6 \(no lab range\)", result.stdout
    )
    assert re.search(r"on_anakinra\s*│\s*true", result.stdout)


def test_state_table_shows_the_reason_of_an_unknown(example_store: Path) -> None:
    result = run_cli("state", "P001", "--at", "2008-03-11", "--rule", "crp_normal", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert re.search(
        r"unknown\s*│\s*no CRP within 30 days: the latest, on 2008-02-10, is too old", result.stdout
    )


def test_state_json_gives_values_reasons_and_evidence(example_store: Path) -> None:
    data = state_json(example_store, "--at", "2008-03-11", "--rule", "crp_normal", "--rule", "on_anakinra")
    assert (data["patient_id"], data["at"]) == ("P001", "2008-03-11")
    states = by_rule(data)
    assert states["crp_normal"] == {
        "rule": "crp_normal",
        "patient_id": "P001",
        "at": "2008-03-11",
        "value": "unknown",
        "known": False,
        "qualifier": None,  # a censored value's (<, <=, >, >=): none here
        "unit": None,
        "reason": "no CRP within 30 days: the latest, on 2008-02-10, is too old",
        "note": states["crp_normal"]["note"],
        "evidence": [12],
    }
    assert states["on_anakinra"]["value"] is True
    assert states["on_anakinra"]["evidence"] == [10]


def test_state_json_gives_a_number_with_its_unit(example_store: Path) -> None:
    states = by_rule(state_json(example_store, "--at", "2008-02-10", "--rule", "anakinra_dose_mg_kg_day"))
    dose = states["anakinra_dose_mg_kg_day"]
    assert dose["value"] == pytest.approx(50 / 24.5, rel=1e-6)
    assert dose["unit"] == "mg/kg/d"
    assert dose["evidence"] == [3, 10]


def test_state_json_carries_a_reproducibility_manifest(example_store: Path) -> None:
    manifest = state_json(example_store, "--at", "2008-02-10", "--rule", "crp_normal")["manifest"]
    assert manifest["engine"].startswith("timeline ")
    assert re.fullmatch(r"[0-9a-f]{64}", manifest["rules_digest"])
    assert manifest["rules"]["crp_normal"] == "1"
    assert manifest["high_water"] == 14
    assert manifest["as_known_at"] is None


def test_state_as_known_at_ignores_a_later_correction_and_says_so(example_store: Path) -> None:
    with raw_connection(example_store, read_only=True) as con:
        (before,) = con.execute("SELECT max(recorded_at) FROM batches").fetchone()
    fixed = run_cli(
        "correct",
        "p1-crp2",
        "--set",
        "value=40",
        "--reason",
        "wrong unit",
        "--author",
        "tests",
        "--store",
        example_store,
    )
    assert fixed.exit_code == 0, fixed.output
    now = state_json(example_store, "--at", "2008-02-10", "--rule", "crp_normal")
    then = state_json(
        example_store, "--at", "2008-02-10", "--rule", "crp_normal", "--as-known-at", before.isoformat()
    )
    assert (by_rule(then)["crp_normal"]["value"], by_rule(now)["crp_normal"]["value"]) == (True, False)
    assert (then["manifest"]["high_water"], now["manifest"]["high_water"]) == (14, 15)
    assert then["manifest"]["as_known_at"] == before.isoformat() + "Z"
    assert by_rule(then)["crp_normal"]["evidence"] == [12]
    assert by_rule(now)["crp_normal"]["evidence"] == [15]


def test_state_at_a_date_time_sees_only_events_up_to_that_minute(example_store: Path) -> None:
    write_rule(
        example_store.parent / "site",
        "hot",
        {"exists": {"select": {"kind": "body_temperature"}, "window": "1 day"}},
    )
    args = ("--rules", example_store.parent / "site", "--rule", "hot")
    assert by_rule(state_json(example_store, "--at", "2008-01-10T09:29", *args))["hot"]["value"] is False
    assert by_rule(state_json(example_store, "--at", "2008-01-10T09:30", *args))["hot"]["value"] is True


# ---- explain ----------------------------------------------------------------------------------------


def test_explain_json_gives_the_rule_its_citation_and_the_events_used(example_store: Path) -> None:
    result = run_cli(
        "explain", "P001", "crp_normal", "--at", "2008-01-10", "--store", example_store, "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    tree = data["tree"]
    assert tree["rule"] == "crp_normal@1"
    assert "Quartier 2011" in tree["citation"]
    assert tree["value"] is False
    assert tree["parameters"] == {"upper": "6 mg/L", "validity": "30 days"}
    assert tree["derivation"]["op"] == "normal"
    assert tree["derivation"]["detail"] == "CRP 84 mg/L vs the lab's reference range 0–5"
    assert tree["derivation"]["events"] == [5]
    (event,) = data["events"]
    assert event["seq"] == 5
    assert event["event_id"] == "p1-crp1"
    assert event["occurred_at"] == "2008-01-10"
    assert event["recorded_at"].endswith("Z")  # UTC (" UTC" in the text view)
    assert (event["value"], event["unit"]) == (84, "mg/L")
    assert (event["original_value"], event["original_unit"]) == (8.4, "mg/dL")
    assert event["source"].endswith("events.csv row 5")
    assert data["manifest"]["high_water"] == 14


def test_explain_json_shows_each_clause_with_its_value(example_store: Path) -> None:
    site = example_store.parent / "site"
    write_rule(
        site,
        "calm",
        {
            "all": [
                {"rule": "crp_normal"},
                {"not": {"exists": {"select": {"kind": "finding", "code": "rash"}, "window": "7 days"}}},
            ]
        },
    )
    result = run_cli(
        "explain", "P001", "calm", "--at", "2008-01-12", "--rules", site, "--store", example_store, "--json"
    )
    assert result.exit_code == 0, result.output
    tree = json.loads(result.stdout)["tree"]
    assert (tree["rule"], tree["value"]) == ("calm@1", False)
    top = tree["derivation"]
    assert top["op"] == "all"
    first, second = top["children"]
    assert first["op"] == "rule crp_normal"
    assert first["children"][0]["rule"] == "crp_normal@1"
    assert first["children"][0]["value"] is False
    assert (second["op"], second["value"]) == ("not", False)
    exists = second["children"][0]
    assert (exists["op"], exists["value"], exists["events"]) == ("exists", True, [7])
    assert exists["window"] == {"from": "2008-01-05T23:59:59.999999Z", "to": "2008-01-12T23:59:59.999999Z"}


def test_explain_of_an_unknown_names_the_reason(example_store: Path) -> None:
    result = run_cli(
        "explain", "P001", "crp_normal", "--at", "2007-12-01", "--store", example_store, "--json"
    )
    data = json.loads(result.stdout)
    assert data["tree"]["value"] == "unknown"
    assert data["tree"]["reason"] == "no CRP recorded up to the date"
    assert data["events"] == []


def test_explain_renders_a_tree_and_the_events_used(example_store: Path) -> None:
    result = run_cli("explain", "P001", "crp_normal", "--at", "2008-01-10", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "crp_normal@1 = false" in result.stdout
    assert "events used" in result.stdout
    assert "p1-crp1" in result.stdout
    assert "CRP 84 mg/L (as given: 8.4 mg/dL)" in result.stdout


def test_explain_shows_a_window_without_a_start_as_open_not_none(example_store: Path) -> None:
    # on_drug looks at the drug's whole history up to the date: its window has no start
    result = run_cli("explain", "P001", "on_anakinra", "--at", "2008-03-01", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "window … → end of 2008-03-01" in result.stdout
    assert "None" not in result.stdout


@pytest.mark.parametrize(
    ("instant", "shown"),
    [
        (None, "…"),
        ("2008-01-12 23:59:59.999999", "end of 2008-01-12"),
        ("2008-01-12 00:00:00", "2008-01-12"),
        ("2008-01-12 10:30:00", "2008-01-12 10:30:00"),
    ],
)
def test_explain_text_shows_a_window_bound_by_its_day(instant: str | None, shown: str) -> None:
    from cli.engine import instant_text

    assert instant_text(instant) == shown


@pytest.mark.parametrize(
    ("unit", "shown"),
    [
        ("mg/L", "mg/L"),
        ("{joints}", "joints"),
        ("a", "years"),
        ("{score}", None),
        ("1", None),
        (None, None),
    ],
)
def test_state_text_shows_a_ucum_unit_as_a_reader_would_write_it(unit: str | None, shown: str | None) -> None:
    from timeline.units import display_unit

    assert display_unit(unit) == shown


def test_state_json_keeps_the_ucum_unit(example_store: Path) -> None:
    data = by_rule(state_json(example_store, "--at", "2008-03-01", "--rule", "age_years"))
    assert data["age_years"]["unit"] == "a"


@pytest.fixture
def ms_store(tmp_path: Path) -> Path:
    """A febrile patient whose MS score is -2.1001, just below the -2.1 cut-off, with a
    ferritin of 684.01 ng/mL, just above the MAS limit of 684."""
    rows = tmp_path / "ms.csv"
    rows.write_text(
        "patient_id,kind,occurred_at,code,value,unit,active_joints\n"
        "S1,body_temperature,2009-03-01,,39,Cel,\nS1,joint_exam,2009-03-01,,,,4\n"
        "S1,lab,2009-03-01,777-3,300,10*9/L,\nS1,lab,2009-03-01,2532-0,500,U/L,\n"
        "S1,lab,2009-03-01,3255-7,400,mg/dL,\nS1,lab,2009-03-01,2276-4,11999,ng/mL,\n"
        "S2,lab,2009-03-01,2276-4,684.01,ng/mL,\n",
        encoding="utf-8",
    )
    store = tmp_path / "ms.duckdb"
    assert run_cli("init", "--store", store).exit_code == 0
    assert run_cli("ingest", rows, "--store", store, "--author", "t").exit_code == 0
    return store


def test_state_shows_a_number_just_below_a_cut_off_on_its_side_of_it(ms_store: Path) -> None:
    result = run_cli("state", "S1", "--at", "2009-03-01", "--rule", "ms_score", "--store", ms_store)
    assert result.exit_code == 0, result.output
    assert re.search(r"ms_score\s*│\s*-2\.1001\s*│", result.stdout)


def test_explain_shows_a_lab_value_just_above_a_limit_on_its_side_of_it(ms_store: Path) -> None:
    result = run_cli("explain", "S2", "mas", "--at", "2009-03-01", "--store", ms_store)
    assert result.exit_code == 0, result.output
    assert "latest = 684.01 ng/mL" in result.stdout


# ---- history -----------------------------------------------------------------------------------------

CRP_INTERVALS = [
    ("2007-06-01T00:00:00Z", "2008-01-10T00:00:00Z", "unknown", "no CRP recorded up to the date"),
    ("2008-01-10T00:00:00Z", "2008-02-09T00:00:00Z", False, None),
    (
        "2008-02-09T00:00:00Z",
        "2008-02-10T00:00:00Z",
        "unknown",
        "no CRP within 30 days: the latest, on 2008-01-10, is too old",
    ),
    ("2008-02-10T00:00:00Z", "2008-03-11T00:00:00Z", True, None),
    (
        "2008-03-11T00:00:00Z",
        "2008-04-02T00:00:00Z",
        "unknown",
        "no CRP within 30 days: the latest, on 2008-02-10, is too old",
    ),
]


def test_history_json_gives_the_intervals_exact_at_change_points(example_store: Path) -> None:
    result = run_cli(
        "history", "P001", "--rule", "crp_normal", "--to", "2008-04-01", "--store", example_store, "--json"
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    got = [(i["start"], i["end"], i["value"], i["reason"]) for i in data["intervals"]]
    assert got == CRP_INTERVALS
    assert {i["rule"] for i in data["intervals"]} == {"crp_normal"}
    assert data["manifest"]["high_water"] == 14


def test_history_from_starts_at_the_beginning_of_that_day(example_store: Path) -> None:
    result = run_cli(
        "history",
        "P001",
        "--rule",
        "crp_normal",
        "--from",
        "2008-02-01",
        "--to",
        "2008-02-20",
        "--store",
        example_store,
        "--json",
    )
    got = [(i["start"], i["value"]) for i in json.loads(result.stdout)["intervals"]]
    assert got == [
        ("2008-02-01T00:00:00Z", False),
        ("2008-02-09T00:00:00Z", "unknown"),
        ("2008-02-10T00:00:00Z", True),
    ]


def test_history_csv_has_one_row_per_interval(example_store: Path) -> None:
    result = run_cli(
        "history", "P001", "--rule", "crp_normal", "--to", "2008-04-01", "--store", example_store, "--csv"
    )
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(io.StringIO(result.stdout)))
    # helper 47 #10: a patient column, and false as the rest of the CLI writes it (was False)
    assert list(rows[0]) == ["patient_id", "rule", "start", "end", "value", "unit", "reason"]
    assert {r["patient_id"] for r in rows} == {"P001"}
    assert [(r["start"], r["value"], r["reason"]) for r in rows][:2] == [
        ("2007-06-01 00:00:00", "unknown", "no CRP recorded up to the date"),
        ("2008-01-10 00:00:00", "false", ""),
    ]
    assert len(rows) == len(CRP_INTERVALS)


def test_history_renders_swimlanes_and_a_table_on_a_terminal(
    example_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: a terminal
    result = run_cli("history", "P001", "--rule", "crp_normal", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "█" in result.stdout or "░" in result.stdout
    assert "intervals" in result.stdout


def test_history_to_a_file_or_pipe_is_the_intervals_table_only(example_store: Path) -> None:
    """README: swimlanes on a terminal (helper 44: drawn into files)."""
    result = run_cli("history", "P001", "--rule", "crp_normal", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "█" not in result.stdout and "░" not in result.stdout
    assert result.stdout.startswith("P001: intervals")


@pytest.mark.parametrize(
    "command",
    [("history", "P001"), ("events", "P001"), ("events", "P001", "--history"), ("patients",)],
    ids=["history", "events", "events-history", "patients"],
)
def test_a_table_to_a_pipe_is_the_one_rich_writes_laid_out_without_it(
    example_store: Path, monkeypatch: pytest.MonkeyPatch, command: tuple[str, ...]
) -> None:
    """cli.plain lays a piped history, event list or patient list out (3,135 intervals: ~3 s
    through rich's table; 900 events ~0.5 s; 10k patients ~3.5 s), the same text to the byte: a
    history's title padded to the table's width and its caption on one line, superseded
    versions (dim on a terminal) as they are."""
    from cli import plain

    args = (*command, "--store", example_store)
    written = run_cli(*args)
    monkeypatch.setattr(plain, "plain_output", lambda: False)
    assert (written.exit_code, written.stdout) == (0, run_cli(*args).stdout)
    assert written.stdout.startswith("P001: " if command[0] != "patients" else "1 patient\n")


def test_history_table_says_how_to_see_why_a_true_or_false_holds(example_store: Path) -> None:
    """A history carries reasons for unknowns only: its caption names the command giving the rest,
    at the first true or false interval."""
    data = json.loads(
        run_cli("history", "P001", "--rule", "crp_normal", "--store", example_store, "--json").stdout
    )
    known = next(i for i in data["intervals"] if isinstance(i["value"], bool))
    result = run_cli("history", "P001", "--rule", "crp_normal", "--store", example_store)
    assert (
        f"why a value holds: timeline explain P001 crp_normal --at {known['start'][:10]} --store {example_store}"
        in result.stdout
    )


def test_history_table_shows_an_edge_at_the_end_of_a_day_by_its_day(example_store: Path) -> None:
    # the ACR Pedi baseline is known from the last instant of the index day
    result = run_cli("history", "P001", "--rule", "pedi_change_crp", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "│ end of 2008-01-11 │" in result.stdout
    assert "23:59:59" not in result.stdout


# ---- errors: one clean line, the right exit code, no traceback ------------------------------------------


@pytest.mark.parametrize("at", ["2009-13-01", "01/03/2009", "yesterday", "", "20090329", "2009-W13-7"])
def test_a_bad_at_value_is_a_usage_error(example_store: Path, at: str) -> None:
    result = run_cli("state", "P001", "--at", at, "--store", example_store)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --at {at!r} is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM)"
    )
    assert NO_TRACEBACK not in result.output


@pytest.mark.parametrize("at", ["0001-01-01", "1899-12-31", "9000-01-01", "9999-12-31T23:59"])
def test_an_at_value_outside_the_supported_years_is_a_usage_error(example_store: Path, at: str) -> None:
    result = run_cli("state", "P001", "--at", at, "--store", example_store)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --at {at!r} is out of range: give a date from 1900-01-01 to 8999-12-31"
    )


@pytest.mark.parametrize("at", ["1900-01-01", "8999-12-31"])
def test_an_at_value_at_the_ends_of_the_supported_years_is_evaluated(example_store: Path, at: str) -> None:
    result = run_cli("state", "P001", "--at", at, "--store", example_store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["states"]


def test_explain_at_an_out_of_range_date_is_a_usage_error(example_store: Path) -> None:
    result = run_cli("explain", "P001", "crp_normal", "--at", "0001-01-01", "--store", example_store)
    assert result.exit_code == 2
    assert "--at '0001-01-01' is out of range" in result.stderr


def test_a_bad_history_bound_is_named_by_its_option(example_store: Path) -> None:
    result = run_cli("history", "P001", "--from", "notadate", "--store", example_store)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --from 'notadate' is not a date (YYYY-MM-DD) or date-time (YYYY-MM-DDTHH:MM)"
    )


@pytest.mark.parametrize("bound", ["2008-02-10T10:00+01:00", "2008-02-10T10:00Z"])
def test_an_events_bound_with_an_offset_is_refused_as_at_is(example_store: Path, bound: str) -> None:
    # clinical times are the store's local times; an offset was compared as if it were one
    result = run_cli("events", "P001", "--from", bound, "--store", example_store)
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        f"error: --from {bound!r}: give clinical times without an offset (they are in the store's time zone)"
    )


def test_an_events_bound_in_iso_basic_form_is_refused(example_store: Path) -> None:
    # Python reads 20080210 as midnight; a date here means the whole day
    result = run_cli("events", "P001", "--to", "20080210", "--store", example_store)
    assert result.exit_code == 2
    assert "--to '20080210' is not a date (YYYY-MM-DD)" in result.stderr


def test_a_history_from_after_its_to_is_a_usage_error(example_store: Path) -> None:
    result = run_cli(
        "history", "P001", "--from", "2009-01-01", "--to", "2008-01-01", "--store", example_store
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --from 2009-01-01 is after --to 2008-01-01"


def test_a_history_of_a_single_day_is_allowed(example_store: Path) -> None:
    result = run_cli(
        "history", "P001", "--from", "2008-02-10", "--to", "2008-02-10", "--json", "--store", example_store
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["intervals"]


def test_an_at_value_with_a_time_zone_offset_is_refused(example_store: Path) -> None:
    result = run_cli(
        "explain", "P001", "crp_normal", "--at", "2009-03-01T10:00+02:00", "--store", example_store
    )
    assert result.exit_code == 2
    assert "give clinical times without an offset" in result.stderr
    assert NO_TRACEBACK not in result.output


def test_a_missing_at_option_is_a_usage_error(example_store: Path) -> None:
    result = run_cli("state", "P001", "--store", example_store)
    assert result.exit_code == 2
    assert "--at" in result.stderr
    assert NO_TRACEBACK not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("state", "P001", "--at", "2008-02-10", "--rule", "crp_norml"),
        ("explain", "P001", "crp_norml", "--at", "2008-02-10"),
        ("history", "P001", "--rule", "crp_norml"),
    ],
    ids=["state", "explain", "history"],
)
def test_an_unknown_rule_is_named_with_a_suggestion(example_store: Path, args: tuple[str, ...]) -> None:
    result = run_cli(*args, "--store", example_store)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: unknown rule 'crp_norml' (did you mean 'crp_normal'?)"
    assert NO_TRACEBACK not in result.output


@pytest.mark.parametrize(
    "args",
    [
        ("state", "p01", "--at", "2008-02-10"),
        ("explain", "p01", "crp_normal", "--at", "2008-02-10"),
        ("history", "p01"),
    ],
    ids=["state", "explain", "history"],
)
def test_a_patient_without_events_is_named_with_a_suggestion(
    example_store: Path, args: tuple[str, ...]
) -> None:
    result = run_cli(*args, "--store", example_store)
    assert result.exit_code == 5
    assert result.stderr.strip() == (
        f"error: patient 'p01' has no events in {example_store} as known at seq 14 (did you mean 'P001'?)"
    )
    assert result.stdout == ""
    assert NO_TRACEBACK not in result.output


def test_a_patient_known_only_later_has_no_state_as_known_before(example_store: Path, tmp_path: Path) -> None:
    late = tmp_path / "late.csv"
    late.write_text("patient_id,kind,occurred_at,sex\nP777,birth,2001-01-01,female\n", encoding="utf-8")
    assert run_cli("ingest", late, "--store", example_store, "--author", "tests").exit_code == 0
    assert run_cli("state", "P777", "--at", "2008-02-10", "--store", example_store).exit_code == 0
    result = run_cli(
        "state", "P777", "--at", "2008-02-10", "--as-known-at", "2000-01-01", "--store", example_store
    )
    assert result.exit_code == 5
    assert "patient 'P777' has no events" in result.stderr
    assert "the store learned of it later (seq 15, recorded " in result.stderr
    assert "did you mean" not in result.stderr


def test_a_patient_whose_events_were_all_retracted_is_told_so(example_store: Path, tmp_path: Path) -> None:
    late = tmp_path / "late.csv"
    late.write_text(
        "event_id,patient_id,kind,occurred_at,sex\nb777,P777,birth,2001-01-01,female\n", encoding="utf-8"
    )
    assert run_cli("ingest", late, "--store", example_store, "--author", "tests").exit_code == 0
    assert (
        run_cli(
            "retract", "b777", "--reason", "wrong chart", "--author", "t", "--store", example_store
        ).exit_code
        == 0
    )
    result = run_cli("state", "P777", "--at", "2008-02-10", "--store", example_store)
    assert result.exit_code == 5
    assert result.stderr.strip().endswith("as known at seq 16: its events were retracted")


def test_a_bad_as_known_at_value_is_a_usage_error(example_store: Path) -> None:
    result = run_cli("state", "P001", "--at", "2008-02-10", "--as-known-at", "soon", "--store", example_store)
    assert result.exit_code == 2
    assert "soon" in result.stderr
    assert NO_TRACEBACK not in result.output


def test_an_as_known_at_on_the_last_day_of_the_calendar_sees_the_whole_record(example_store: Path) -> None:
    result = run_cli("events", "P001", "--as-known-at", "9999-12-31", "--store", example_store, "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["high_water"] == 14


def test_an_as_known_at_before_year_1_in_utc_is_a_usage_error(example_store: Path) -> None:
    result = run_cli("events", "P001", "--as-known-at", "0001-01-01T00:00+05:00", "--store", example_store)
    assert result.exit_code == 2
    assert "--as-known-at '0001-01-01T00:00+05:00' is out of range" in result.stderr
    assert NO_TRACEBACK not in result.output


def test_a_missing_store_is_reported_without_a_traceback(tmp_path: Path) -> None:
    result = run_cli("state", "P001", "--at", "2008-02-10", "--store", tmp_path / "none.duckdb")
    assert result.exit_code == 3
    assert NO_TRACEBACK not in result.output


def test_a_broken_rule_directory_stops_state_with_exit_8(example_store: Path) -> None:
    site = example_store.parent / "site"
    site.mkdir()
    (site / "bad.yaml").write_text(
        "id: bad\nversion: '1'\ndescription: x\ncitation: x\ndefine: {al: [true]}\n"
    )
    result = run_cli("state", "P001", "--at", "2008-02-10", "--rules", site, "--store", example_store)
    assert result.exit_code == 8
    assert f"{site / 'bad.yaml'}:5:" in result.stderr
    assert NO_TRACEBACK not in result.output


def test_events_kind_is_read_in_any_case_as_ingest_reads_it(example_store: Path) -> None:
    lower = run_cli("events", "P001", "--kind", "lab", "--store", example_store, "--json")
    upper = run_cli("events", "P001", "--kind", "LAB", "--store", example_store, "--json")
    assert upper.exit_code == 0, upper.output
    assert json.loads(upper.stdout)["events"] == json.loads(lower.stdout)["events"] != []


def test_events_from_after_to_is_a_usage_error(example_store: Path) -> None:
    result = run_cli("events", "P001", "--from", "2008-01-01", "--to", "2005-01-01", "--store", example_store)
    assert result.exit_code == 2
    assert result.stderr.strip() == "error: --from 2008-01-01 is after --to 2005-01-01"


@pytest.mark.parametrize("command", ["state", "explain", "history"])
def test_an_infinite_value_is_valid_json_in_every_command(
    example_store: Path, tmp_path: Path, command: str
) -> None:
    write_rule(tmp_path / "rules", "huge", {"mul": [1.0e308, 10]})
    args = {
        "state": ("state", "P001", "--at", "2008-02-10", "--rule", "huge"),
        "explain": ("explain", "P001", "huge", "--at", "2008-02-10"),
        "history": ("history", "P001", "--rule", "huge"),
    }[command]
    result = run_cli(*args, "--rules", tmp_path / "rules", "--store", example_store, "--json")
    assert result.exit_code == 0, result.output
    assert "Infinity" in result.stdout
    json.loads(result.stdout, parse_constant=lambda token: pytest.fail(f"bare {token} in JSON"))


@pytest.mark.parametrize("threshold", [".nan", ".inf", "-.inf", "1e400 mg/L"])
def test_a_threshold_that_is_not_a_finite_number_is_a_rule_problem(tmp_path: Path, threshold: str) -> None:
    (tmp_path / "r.yaml").write_text(
        'id: r\nversion: "1"\ndescription: d\ncitation: c\n'
        f"define: {{lt: [{{latest: {{select: {{kind: lab, code: 1988-5}}, within: 90 days}}}}, {threshold}]}}\n",
        encoding="utf-8",
    )
    result = run_cli("rules", "check", "--rules", tmp_path)
    assert result.exit_code == 8
    assert "is not a finite number" in result.stderr


@pytest.mark.parametrize("value", ["nan", "inf", "1e400"])
def test_a_param_that_is_not_a_finite_number_is_a_command_line_problem(
    example_store: Path, value: str
) -> None:
    result = run_cli(
        "state",
        "P001",
        "--at",
        "2008-02-10",
        "--param",
        f"crp_normal.upper={value}",
        "--store",
        example_store,
    )
    assert result.exit_code == 2
    assert f"--param: crp_normal.upper: {value!r} is not a finite number" in result.stderr


# ---- ids that look like markup ---------------------------------------------------------------


@pytest.fixture(scope="module")
def markup_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two patients whose ids read as rich markup: a stray closing tag and a bold tag."""
    tmp = tmp_path_factory.mktemp("markup")
    src = tmp / "m.csv"
    src.write_text(
        "patient_id,kind,occurred_at,sex\n[/],birth,2001-01-01,female\n[bold]B[/bold],birth,2001-01-01,male\n",
        encoding="utf-8",
    )
    store = tmp / "m.duckdb"
    assert run_cli("init", "--store", store).exit_code == 0
    assert run_cli("ingest", src, "--store", store).exit_code == 0
    return store


@pytest.mark.parametrize(
    "command",
    [
        ["events", "[/]"],
        ["state", "[/]", "--at", "2005-01-01", "--rule", "age_years"],
        ["explain", "[/]", "age_years", "--at", "2005-01-01"],
        ["history", "[/]", "--rule", "age_years"],
    ],
)
def test_a_patient_id_with_a_closing_tag_is_shown_as_written(markup_store: Path, command: list[str]) -> None:
    result = run_cli(*command, "--store", markup_store)
    assert result.exit_code == 0, result.output
    assert "[/]" in result.stdout


def test_a_patient_id_with_a_bold_tag_keeps_its_tags_in_the_title(markup_store: Path) -> None:
    result = run_cli(
        "state", "[bold]B[/bold]", "--at", "2005-01-01", "--rule", "age_years", "--store", markup_store
    )
    assert result.exit_code == 0, result.output
    assert "[bold]B[/bold] at 2005-01-01" in result.stdout


# ---- explain's events are state's evidence ---------------------------------------------------------


@pytest.mark.parametrize("rule", ["fever_free", "complete_response", "acr_pedi_30", "inactive_disease"])
def test_explain_lists_as_events_used_exactly_the_evidence_state_reports(
    example_store: Path, rule: str
) -> None:
    state = run_cli("state", "P001", "--at", "2008-02-10", "--rule", rule, "--json", "--store", example_store)
    explain = run_cli("explain", "P001", rule, "--at", "2008-02-10", "--json", "--store", example_store)
    evidence = json.loads(state.stdout)["states"][0]["evidence"]
    data = json.loads(explain.stdout)
    assert sorted(e["seq"] for e in data["events"]) == sorted(evidence)


def test_explain_lists_what_the_clauses_read_besides_the_evidence_apart(example_store: Path) -> None:
    # inactive_disease is false by its physician global: the other clauses' events are read, not used
    data = json.loads(
        run_cli(
            "explain", "P001", "inactive_disease", "--at", "2008-02-10", "--json", "--store", example_store
        ).stdout
    )
    read = {e["seq"] for e in data["other_events"]}
    assert read and not read & {e["seq"] for e in data["events"]}


def test_a_bad_param_value_is_a_command_line_error(example_store: Path) -> None:
    result = run_cli(
        "state", "P001", "--at", "2008-02-10", "--param", "crp_normal.upper=banana", "--store", example_store
    )
    assert result.exit_code == 2
    assert result.stderr.startswith(
        "error: --param has 1 problem\n  --param: crp_normal.upper: 'banana' is not"
    )


def test_rules_check_of_a_file_says_it_is_not_a_directory() -> None:
    result = run_cli("rules", "check", "examples/events.csv")
    assert result.exit_code == 8
    assert "examples/events.csv: is a file, not a rule directory" in result.stderr


@pytest.mark.parametrize("command", [("rules", "check"), ("state", "P001", "--at", "2008-02-10", "--rules")])
def test_a_rule_directory_name_too_long_is_a_rule_problem_naming_the_reason(
    example_store: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    directory = tmp_path / ("a" * 300)
    result = (
        run_cli(*command, directory, "--store", example_store)
        if command[0] == "state"
        else run_cli(*command, directory)
    )
    # before: "internal error: OSError: [Errno 36] File name too long", exit 70
    assert (result.exit_code, result.stderr.splitlines()[1:]) == (
        8,
        [f"  {directory}: rule directory cannot be read: File name too long"],
    )


def test_an_unknown_rule_without_rules_says_that_rules_of_ones_own_need_rules_dir(
    example_store: Path,
) -> None:
    result = run_cli(
        "state", "P001", "--at", "2008-02-10", "--rule", "on_tocilizumab", "--store", example_store
    )
    assert (result.exit_code, result.stderr.strip()) == (
        2,
        "error: unknown rule 'on_tocilizumab'; only the built-in rules were loaded: "
        "rules of your own need --rules DIR (or $TIMELINE_RULES)",
    )


def test_explain_shows_a_constant_with_its_unit(example_store: Path, tmp_path: Path) -> None:
    write_rule(
        tmp_path, "r", {"mul": [{"latest": {"select": {"kind": "weight"}, "within": "1 year"}}, "14 d"]}
    )
    result = run_cli(
        "explain", "P001", "r", "--at", "2008-02-10", "--rules", tmp_path, "--store", example_store
    )
    assert "const = 14 d" in result.stdout


def test_history_notes_that_a_number_growing_with_time_shows_its_value_at_each_intervals_start(
    example_store: Path,
) -> None:
    result = run_cli("history", "P001", "--rule", "age_years", "--store", example_store, "--csv")
    assert result.exit_code == 0, result.output
    assert result.stderr.strip() == (
        "note: age_years grows with time (age, time_since): each interval shows the value at its start; "
        f"`timeline state P001 --at DATE --rule age_years --store {example_store}` gives it on a date"
    )


def test_a_number_in_a_bracketed_ucum_unit_is_shown_with_its_unit_in_tables() -> None:
    from datetime import datetime

    from cli.engine import _value_text
    from timeline.engine.evaluate import Result

    r = Result("t", "P", "2009-03-01", datetime(2009, 3, 1), "num", 100.4, "[degF]", None, [])
    from rich.text import Text

    assert Text.from_markup(_value_text(r)).plain == "100.4 [degF]"


def test_explain_shows_a_rule_read_at_long_values_by_its_name_with_its_parameters_line(
    tmp_path: Path,
) -> None:
    """Helper 41: remission's explanation repeated 300-character copy ids on every line."""
    store = tmp_path / "s.duckdb"
    rows = tmp_path / "r.csv"
    rows.write_text(
        "patient_id,kind,occurred_at,active_joints\nR,joint_exam,2009-01-01,0\n", encoding="utf-8"
    )
    run_cli("init", "--store", store)
    run_cli("ingest", rows, "--store", store, "--author", "t")
    result = run_cli(
        "explain", "R", "inactive_disease_carried_forward", "--at", "2009-02-01", "--store", store
    )
    assert result.exit_code == 0, result.output
    assert "inactive_disease(…)@2" in result.stdout and "carried_for," not in result.stdout
    assert "validity=4 months (as the reference gives it; default 90 days)" in " ".join(result.stdout.split())


def test_explain_lists_the_event_a_tie_left_unused(tmp_path: Path) -> None:
    """Helper 46: of two CRPs at one instant the one asserted first was nowhere in explain."""
    store = tmp_path / "t.duckdb"
    run_cli("init", "--store", store)
    for value in (6, 20):
        f = tmp_path / f"crp{value}.csv"
        f.write_text(f"patient_id,kind,code,occurred_at,value,unit\nX,lab,1988-5,2009-03-01,{value},mg/L\n")
        assert run_cli("ingest", f, "--store", store).exit_code == 0
    data = json.loads(
        run_cli("explain", "X", "crp_normal", "--at", "2009-03-01", "--json", "--store", store).stdout
    )
    (used,), (tied,) = data["events"], data["other_events"]
    assert (used["value"], tied["value"]) == (20.0, 6.0)
    assert tied["remarks"] == [
        f"at the same instant as seq {used['seq']}, asserted before it: not used (the last asserted wins)"
    ]


# ---- helper 59: the audit of the CLI's output --------------------------------------------------

ANSI_COLOUR = re.compile(r"\x1b\[3\dm")  # a foreground colour (bold and italics aside)


def test_rules_show_prints_the_rule_file_over_its_lines() -> None:
    """Helper 59: the file came out as one line with literal \\n (a regression)."""
    result = run_cli("rules", "show", "crp_normal")
    assert result.exit_code == 0, result.output
    assert "\\n" not in result.stdout
    source = (Path(__file__).resolve().parent.parent / "rules" / "sjia" / "crp_normal.yaml").read_text(
        encoding="utf-8"
    )
    assert source.rstrip("\n") in result.stdout


def test_a_file_shown_keeps_its_line_breaks_and_tabs_and_escapes_other_control_characters() -> None:
    from cli.output import file_text

    assert file_text("id: x\n# a\tb \x1b[31mred\n").plain == "id: x\n# a\tb \\x1b[31mred\n"


def test_rules_show_writes_a_boolean_parameter_as_yaml_does() -> None:
    result = run_cli("rules", "show", "inactive_disease")
    assert "param require_morning_stiffness = true" in result.stdout


@pytest.mark.parametrize(
    ("rule", "at", "colour"),
    [
        ("active_arthritis", "2008-01-10", "\x1b[31mtrue"),  # meaning: bad — disease, red
        ("crp_normal", "2008-01-10", "\x1b[31mfalse"),  # meaning: good, false — red
        ("crp_normal", "2008-02-10", "\x1b[32mtrue"),  # meaning: good — green
        ("on_anakinra", "2008-02-10", "\x1b[34mtrue"),  # meaning: neutral — blue
    ],
    ids=["bad-true-red", "good-false-red", "good-true-green", "neutral-true-blue"],
)
def test_state_colours_a_value_by_what_the_rule_says_it_means_on_a_terminal(
    example_store: Path, monkeypatch: pytest.MonkeyPatch, rule: str, at: str, colour: str
) -> None:
    """Helper 59: active arthritis (true is disease) was shown in green."""
    monkeypatch.setenv("FORCE_COLOR", "1")  # rich: a terminal
    result = run_cli("state", "P001", "--at", at, "--rule", rule, "--store", example_store)
    assert result.exit_code == 0, result.output
    assert colour in result.stdout


def test_state_has_no_colour_with_no_color_set_even_on_a_terminal(
    example_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("NO_COLOR", "1")
    result = run_cli(
        "state", "P001", "--at", "2008-01-10", "--rule", "active_arthritis", "--store", example_store
    )
    assert result.exit_code == 0, result.output
    assert ANSI_COLOUR.search(result.stdout) is None


def test_state_written_to_a_file_has_no_escape_codes(example_store: Path) -> None:
    result = run_cli("state", "P001", "--at", "2008-01-10", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "\x1b[" not in result.stdout


def test_history_swimlane_of_a_rule_whose_truth_is_disease_is_red_where_true(
    example_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    result = run_cli("history", "P001", "--rule", "active_arthritis", "--store", example_store)
    assert result.exit_code == 0, result.output
    lane = next(line for line in result.stdout.splitlines() if "active_arthritis │" in line)
    assert "\x1b[31m█" in lane and "\x1b[32m░" in lane  # true 4 joints, then false 0 joints
    assert "\x1b[32m█" not in lane


def test_explain_colours_the_rule_by_its_meaning(
    example_store: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    result = run_cli("explain", "P001", "active_arthritis", "--at", "2008-01-10", "--store", example_store)
    assert result.exit_code == 0, result.output
    top = next(line for line in result.stdout.splitlines() if "active_arthritis@" in line)
    assert "\x1b[31mtrue" in top


def test_explain_json_gives_the_rules_meaning(example_store: Path) -> None:
    result = run_cli(
        "explain", "P001", "active_arthritis", "--at", "2008-01-10", "--json", "--store", example_store
    )
    assert json.loads(result.stdout)["tree"]["meaning"] == "bad"


def test_explain_writes_a_boolean_parameter_as_yaml_does(example_store: Path) -> None:
    """Helper 59: `require_morning_stiffness=True`, Python's spelling."""
    result = run_cli("explain", "P001", "inactive_disease", "--at", "2008-02-10", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "require_morning_stiffness=true" in result.stdout
    data = run_cli(
        "explain", "P001", "inactive_disease", "--at", "2008-02-10", "--json", "--store", example_store
    ).stdout
    assert json.loads(data)["tree"]["parameters"]["require_morning_stiffness"] == "true"


def test_explain_names_an_events_source_by_its_row_of_data_not_as_a_line(example_store: Path) -> None:
    """Helper 59: `events.csv:1474` read as a line number, for an event on line 1475."""
    result = run_cli("explain", "P001", "crp_normal", "--at", "2008-01-10", "--store", example_store)
    assert result.exit_code == 0, result.output
    assert "events.csv row 5" in result.stdout
    lines = (Path(__file__).resolve().parent.parent / "examples" / "events.csv").read_text().splitlines()
    assert lines[5].startswith("p1-crp1,")  # row 5 of data is line 6, after the header


def test_explain_json_gives_an_events_source_file_and_row(example_store: Path) -> None:
    result = run_cli(
        "explain", "P001", "crp_normal", "--at", "2008-01-10", "--json", "--store", example_store
    )
    (event,) = json.loads(result.stdout)["events"]
    assert (Path(event["source_file"]).name, event["source_row"], event["change_reason"]) == (
        "events.csv", 5, None,
    )  # fmt: skip


def test_history_csv_writes_a_number_as_state_shows_it_with_its_unit_apart(example_store: Path) -> None:
    """Helper 59: -76.923077 without a unit in the CSV, -76.9231 % in `state`."""
    result = run_cli(
        "history",
        "P001",
        "--rule",
        "pedi_change_crp",
        "--to",
        "2008-02-10",
        "--csv",
        "--store",
        example_store,
    )
    assert result.exit_code == 0, result.output
    last = list(csv.DictReader(io.StringIO(result.stdout)))[-1]
    assert (last["value"], last["unit"]) == ("-95.2381", "%")
    state = run_cli(
        "state", "P001", "--at", "2008-02-10", "--rule", "pedi_change_crp", "--store", example_store
    )
    assert re.search(r"pedi_change_crp\s*│\s*-95\.2381 %", state.stdout)


def test_history_table_writes_a_number_as_state_shows_it_with_its_unit(example_store: Path) -> None:
    """The table gave the raw number without its unit (-95.238095238095, 0.0); it now shows
    what `state` shows on that day (-95.2381 %)."""
    args = ("P001", "--rule", "pedi_change_crp", "--store", example_store)
    result = run_cli("history", *args, "--to", "2008-02-10")
    assert result.exit_code == 0, result.output
    last = [line for line in result.stdout.splitlines() if line.startswith("│ pedi_change_crp")][-1]
    state = run_cli("state", "P001", "--at", "2008-02-10", *args[1:])
    shown = re.search(r"pedi_change_crp\s*│\s*(\S+ %)", state.stdout)
    assert shown is not None and shown.group(1) == "-95.2381 %"
    assert re.search(r"│\s*-95\.2381 %\s*│", last), last


def test_history_csv_leaves_the_unit_of_a_true_or_false_empty(example_store: Path) -> None:
    result = run_cli("history", "P001", "--rule", "crp_normal", "--csv", "--store", example_store)
    assert {r["unit"] for r in csv.DictReader(io.StringIO(result.stdout))} == {""}


@pytest.mark.parametrize("command", ["state", "history"])
def test_a_reason_two_parts_of_an_operation_give_is_said_once(example_store: Path, command: str) -> None:
    """Helper 59: "no index_drug_start recorded up to the date; no index_drug_start up to the
    date" (the value and its baseline, in two wordings). `state` replays in Python, `history`
    runs the compiled SQL: both say it once."""
    args = ["--at", "2007-12-01"] if command == "state" else ["--to", "2007-12-01"]
    result = run_cli(command, "P001", *args, "--rule", "pedi_change_crp", "--json", "--store", example_store)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    reason = (data["states"] if command == "state" else data["intervals"])[-1]["reason"]
    assert reason.count("no index_drug_start recorded up to the date") == 1
    assert "no index_drug_start up to the date" not in reason


@pytest.mark.parametrize(
    "command",
    [
        ["state", "P001", "--at", "2008-02-10"],
        ["explain", "P001", "crp_normal", "--at", "2008-02-10"],
        ["history", "P001", "--rule", "crp_normal"],
        ["events", "P001"],
        ["patients"],
    ],
    ids=["state", "explain", "history", "events", "patients"],
)
def test_an_as_known_at_before_the_first_batch_says_the_store_held_nothing_then(
    example_store: Path, command: list[str]
) -> None:
    """Helper 59: `events --as-known-at 2024-05-01` on a store made later gave an empty list, unexplained."""
    result = run_cli(*command, "--as-known-at", "2024-05-01", "--store", example_store)
    with raw_connection(example_store, read_only=True) as con:
        recorded = con.execute("SELECT min(recorded_at) FROM batches").fetchone()[0]
    assert (
        "note: as known at 2024-05-01 the store held no events: its first batch was recorded at "
        f"{recorded.isoformat(timespec='microseconds')} UTC (--as-known-at is when the store learned of events, "
        "not a clinical date)"
    ) in " ".join(result.stderr.split())
    assert NO_TRACEBACK not in result.output


def test_events_json_as_known_before_the_first_batch_carries_the_note(example_store: Path) -> None:
    result = run_cli("events", "P001", "--as-known-at", "seq:0", "--json", "--store", example_store)
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["events"] == []
    assert [n.split(":", 1)[0] for n in data["notes"]] == ["as known at seq"]


def test_an_as_known_at_after_the_first_batch_adds_no_note(example_store: Path) -> None:
    result = run_cli("events", "P001", "--as-known-at", "seq:14", "--store", example_store)
    assert (result.exit_code, result.stderr) == (0, "")


@pytest.mark.parametrize(
    "args",
    [
        ("state", "", "--at", "2008-02-10"),
        ("explain", "  ", "crp_normal", "--at", "2008-02-10"),
        ("history", ""),
        ("events", ""),
        ("cohort", "explain", str(EXAMPLES / "valencia" / "cohort.yaml"), ""),
    ],
    ids=["state", "explain", "history", "events", "cohort explain"],
)
def test_an_empty_patient_id_is_a_usage_error_naming_the_argument(
    example_store: Path, args: tuple[str, ...]
) -> None:
    """Helper 63: `state ""` was answered "patient '' has no events … (did you mean '7'?)", exit 5."""
    result = run_cli(*args, "--store", example_store)
    assert result.exit_code == 2
    assert "Invalid value for 'PATIENT': must not be empty: give a patient id" in result.stderr


@pytest.mark.parametrize(
    ("args", "title"),
    [
        (("events", "P001", "--kind", "birth"), "P001: 1 event (as known at seq 14)"),
        (("patients",), "1 patient"),
    ],
    ids=["one-event", "one-patient"],
)
def test_a_table_of_one_row_is_titled_in_the_singular(
    example_store: Path, args: tuple[str, ...], title: str
) -> None:
    result = run_cli(*args, "--store", example_store)
    assert (result.exit_code, result.stdout.splitlines()[0]) == (0, title)
