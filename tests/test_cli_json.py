"""--json output parses, and carries what a script needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import (
    EXAMPLE_CSV,
    SLEEPING_VERIFY,
    interrupted_cli,
    output_env,
    run_cli,
    run_cli_into_closed_pipe,
    run_cli_into_pipe_closed_midway,
)


def test_events_json_lists_every_current_event_with_the_high_water(example_store: Path) -> None:
    data = json.loads(run_cli("events", "P001", "--store", example_store, "--json").stdout)
    assert (data["patient_id"], data["high_water"], len(data["events"])) == ("P001", 14, 14)


def test_events_json_carries_the_manifest_of_what_it_read(example_store: Path) -> None:
    data = json.loads(run_cli("events", "P001", "--store", example_store, "--json").stdout)
    assert (data["manifest"]["store"], data["manifest"]["high_water"]) == (str(example_store), 14)
    assert data["manifest"]["engine"].startswith("timeline ")


def test_events_json_is_ordered_by_occurrence(example_store: Path) -> None:
    data = json.loads(run_cli("events", "P001", "--store", example_store, "--json").stdout)
    times = [e["occurred_at"] for e in data["events"]]
    assert times == sorted(times)


def test_events_json_filters_by_kind_and_dates(example_store: Path) -> None:
    result = run_cli(
        "events",
        "P001",
        "--store",
        example_store,
        "--json",
        "--kind",
        "lab",
        "--from",
        "2008-02-01",
        "--to",
        "2008-02-10",
    )
    assert [e["event_id"] for e in json.loads(result.stdout)["events"]] == ["p1-crp2"]


def test_unknown_kind_filter_exits_2(example_store: Path) -> None:
    result = run_cli("events", "P001", "--store", example_store, "--kind", "labs")
    assert result.exit_code == 2
    assert result.stderr.startswith("error: --kind 'labs' is not a kind (kinds: birth, diagnosis, ")


def test_patients_json_counts_events_and_spans(example_store: Path) -> None:
    data = json.loads(run_cli("patients", "--store", example_store, "--json").stdout)
    assert data["patients"] == [
        {
            "patient_id": "P001",
            "events": 14,
            "first_event": "2001-04-12",  # dates, as the events give them (a time ends in Z)
            "last_event": "2008-02-10",
        }
    ]


@pytest.mark.parametrize("command", ["patients", "info"])
def test_a_store_commands_json_carries_the_manifest_of_what_it_read(
    example_store: Path, command: str
) -> None:
    from timeline import __version__

    data = json.loads(run_cli(command, "--store", example_store, "--json").stdout)
    head = json.loads(run_cli("verify", "--store", example_store, "--json").stdout)["head_hash"]
    assert data["manifest"] == {
        "engine": f"timeline {__version__}",
        "store": str(example_store),
        "high_water": 14,
        "head_hash": head,
        "as_known_at": None,
    }


def test_verify_json_carries_the_manifest_of_the_store_it_verified(example_store: Path) -> None:
    data = json.loads(run_cli("verify", "--store", example_store, "--json").stdout)
    assert (data["ok"], data["manifest"]["store"], data["manifest"]["high_water"]) == (
        True,
        str(example_store),
        14,
    )


def test_init_json_carries_the_manifest_of_the_new_empty_store(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    data = json.loads(run_cli("init", "--store", path, "--json").stdout)
    assert (data["manifest"]["store"], data["manifest"]["high_water"], data["store"]) == (
        str(path),
        0,
        str(path),
    )


def test_patients_json_as_known_at_gives_the_moment_and_high_water_it_read(example_store: Path) -> None:
    result = run_cli("patients", "--as-known-at", "2000-01-01", "--store", example_store, "--json")
    data = json.loads(result.stdout)
    assert (data["manifest"]["as_known_at"], data["manifest"]["high_water"], data["patients"]) == (
        "2000-01-01T23:59:59.999999Z",
        0,
        [],
    )


def test_ingest_json_describes_each_batch(store_path: Path) -> None:
    run_cli("init", "--store", store_path)
    result = run_cli("ingest", EXAMPLE_CSV, "--store", store_path, "--author", "t", "--json")
    batch = json.loads(result.stdout)["batches"][0]
    assert (batch["batch_id"], batch["added"], batch["duplicates"], batch["high_water"]) == (1, 14, 0, 14)


def test_verify_json_reports_ok_and_the_head_hash(example_store: Path) -> None:
    data = json.loads(run_cli("verify", "--store", example_store, "--json").stdout)
    assert (data["ok"], data["versions"], data["batches"], len(data["head_hash"]), data["problems"]) == (
        True,
        14,
        1,
        64,
        [],
    )


def test_correct_json_reports_the_new_seq(example_store: Path) -> None:
    result = run_cli(
        "correct",
        "p1-crp2",
        "--set",
        "value=5",
        "--reason",
        "r",
        "--author",
        "a",
        "--store",
        example_store,
        "--json",
    )
    data = json.loads(result.stdout)
    assert (data["batch_id"], data["added"], data["high_water"]) == (2, 1, 15)
    assert data["event_id"] == "p1-crp2"


def test_events_json_gives_the_as_known_at_moment_it_read_not_the_text_typed(example_store: Path) -> None:
    result = run_cli("events", "P001", "--as-known-at", "2027-01-01", "--store", example_store, "--json")
    assert json.loads(result.stdout)["as_known_at"] == "2027-01-01T23:59:59.999999Z"


def test_info_json_names_the_store_as_init_json_does(example_store: Path) -> None:
    data = json.loads(run_cli("info", "--store", example_store, "--json").stdout)
    assert data["store"] == str(example_store)


def test_piped_output_carries_no_colour_codes(example_store: Path) -> None:
    result = run_cli("events", "P001", "--store", example_store)
    assert "\x1b[" not in result.output


def test_events_of_an_unknown_patient_exits_5_with_a_suggestion(example_store: Path) -> None:
    result = run_cli("events", "P01", "--store", example_store, "--json")
    assert result.exit_code == 5
    assert "(did you mean 'P001'?)" in result.stderr


def test_events_filtered_to_nothing_is_an_empty_list_not_an_error(example_store: Path) -> None:
    result = run_cli("events", "P001", "--kind", "death", "--store", example_store, "--json")
    assert (result.exit_code, json.loads(result.stdout)["events"]) == (0, [])


@pytest.mark.parametrize(
    "args",
    [
        ("patients", "--json"),  # one JSON document
        ("events", "P001"),  # a rich table
        ("history", "P001", "--csv", "--rule", "crp_normal"),  # CSV rows
        ("state", "P001", "--at", "2008-06-01"),  # ends without the interpreter's teardown
        ("explain", "P001", "crp_normal", "--at", "2008-06-01"),  # likewise
    ],
    ids=["json", "table", "csv", "state", "explain"],
)
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_a_closed_pipe_on_standard_output_ends_silently_with_exit_141(
    example_store: Path, args: tuple[str, ...], unbuffered: bool
) -> None:
    # before: exit 1 (typer, rich), or 120 with "Exception ignored ... BrokenPipeError"
    result = run_cli_into_closed_pipe(*args, "--store", example_store, unbuffered=unbuffered)
    assert (result.exit_code, result.stderr) == (141, "")


@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
def test_a_pipe_closed_in_the_middle_of_a_write_ends_with_exit_141(
    example_store: Path, unbuffered: bool
) -> None:
    # before, under PYTHONUNBUFFERED=1: exit 0, the rest of the output dropped without a word
    args = ("history", "P001", "--json", "--store", example_store)  # ~35 kB: more than the pipe holds
    result = run_cli_into_pipe_closed_midway(*args, unbuffered=unbuffered)
    assert (result.exit_code, result.stderr) == (141, "")


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
@pytest.mark.parametrize("unbuffered", [False, True], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("json_out", [False, True], ids=["table", "json"])
def test_standard_output_on_a_full_device_is_a_clean_error_with_exit_1(
    example_store: Path, unbuffered: bool, json_out: bool
) -> None:
    # before: "internal error: OSError: [Errno 28] No space left on device", exit 70
    env = output_env(unbuffered)
    args = ["state", "P001", "--at", "2008-06-01", "--store", str(example_store)] + ["--json"] * json_out
    with open("/dev/full", "w") as full:
        done = subprocess.run(
            [sys.executable, "-m", "cli.main", *args], stdout=full, stderr=subprocess.PIPE, text=True, env=env
        )
    assert (done.returncode, done.stderr) == (
        1,
        "error: cannot write to standard output: No space left on device\n",
    )


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (("state", "NOPE", "--at", "2009-01-01"), 5),
        (("correct", "nosuch", "--set", "value=1", "--reason", "r", "--author", "a"), 5),
        (("verify", "--store", "missing.duckdb"), 3),
    ],
    ids=["state", "correct", "verify"],
)
def test_a_command_that_fails_under_json_writes_one_error_document(
    example_store: Path, tmp_path: Path, args: tuple[str, ...], code: int
) -> None:
    args = tuple(str(tmp_path / a) if a == "missing.duckdb" else a for a in args)
    result = run_cli(*args, "--json", *(() if "--store" in args else ("--store", example_store)))
    # before: stdout empty, only the text error on stderr
    assert result.stdout.startswith("{"), result.output
    message = result.stderr.removeprefix("error: ").removesuffix("\n")
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": {"message": message, "details": [], "exit_code": code},
    }
    assert (result.exit_code, result.stderr) == (code, f"error: {message}\n")


def test_a_usage_error_under_json_writes_an_error_document(example_store: Path) -> None:
    result = run_cli("state", "--json", "--store", example_store)  # no patient, no --at
    data = json.loads(result.stdout)
    assert (data["ok"], data["error"]["details"], data["error"]["exit_code"]) == (False, [], 2)
    assert data["error"]["message"].startswith("Missing argument")
    assert result.exit_code == 2
    assert data["error"]["message"] in result.stderr  # as click shows it


def test_a_rejected_ingest_under_json_also_carries_ok_and_the_error(
    example_store: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("patient_id,kind,occurred_at\nP001,weight,2009-13-01\n")
    result = run_cli("ingest", bad, "--store", example_store, "--author", "t", "--json")
    data = json.loads(result.stdout)
    assert (data["ok"], data["batches"], data["rejected"]["source"]) == (False, [], str(bad))
    assert data["error"] == {
        "message": f"{bad}: batch rejected, nothing written ({len(data['rejected']['errors'])} errors)",
        "details": [
            f"{bad}: row {e['row']}, field {e['field']}: {e['reason']}" for e in data["rejected"]["errors"]
        ],
        "exit_code": 6,
    }
    assert result.exit_code == 6


def test_an_interrupted_command_under_json_writes_an_error_document(example_store: Path) -> None:
    result = interrupted_cli(SLEEPING_VERIFY, "verify", "--store", example_store, "--json")
    assert json.loads(result.stdout) == {
        "ok": False,
        "error": {"message": "interrupted", "details": [], "exit_code": 130},
    }
    assert (result.exit_code, result.stderr) == (130, "error: interrupted\n")


def _with_encoding(encoding: str, *args: str | Path) -> subprocess.CompletedProcess[bytes]:
    env = {**output_env(False), "PYTHONIOENCODING": encoding}
    return subprocess.run(
        [sys.executable, "-m", "cli.main", *(str(a) for a in args)], capture_output=True, env=env, timeout=120
    )


def test_json_under_an_ascii_output_encoding_is_valid_json_with_escapes(example_store: Path) -> None:
    """Helper 44: a ≤ in a reason made exit 70 and an empty stdout under PYTHONIOENCODING=ascii."""
    done = _with_encoding("ascii", "state", "P001", "--at", "2008-06-01", "--store", example_store, "--json")
    assert done.returncode == 0, done.stderr
    assert b"\\u2264" in done.stdout  # ≤, in a reason or note
    assert "≤" in json.dumps(json.loads(done.stdout.decode("ascii")), ensure_ascii=False)


def test_a_table_under_an_ascii_output_encoding_is_written(example_store: Path) -> None:
    done = _with_encoding("ascii", "state", "P001", "--at", "2008-06-01", "--store", example_store)
    assert (done.returncode, done.stderr) == (0, b"")
    assert "P001 at 2008-06-01" in done.stdout.decode("ascii")


def test_a_table_on_a_narrow_terminal_folds_identifiers_instead_of_cutting_them() -> None:
    """Helper 44: at 40 columns event ids showed as `V…` and dates as `20…`."""
    import io

    from rich.console import Console
    from rich.table import Table

    from cli.output import cell

    table = Table()
    for name in ("event", "when", "value"):
        table.add_column(name)
    table.add_row(cell("V09-0057-crp"), cell("2007-04-03T10:00"), cell("3.2 mg/L"))
    out = io.StringIO()
    Console(file=out, width=30).print(table)
    columns = [
        "".join(line.split("│")[i].strip() for line in out.getvalue().splitlines()[3:-1]) for i in (1, 2)
    ]
    assert columns == ["V09-0057-crp", "2007-04-03T10:00"]


@pytest.mark.parametrize(
    "args",
    [
        ("info",),
        ("patients",),
        ("events", "P001"),
        ("state", "P001", "--at", "2008-02-10", "--rule", "crp_normal"),
        ("correct", "p1-crp2", "--set", "value=5", "--reason", "typo", "--author", "t"),
        ("retract", "p1-rash1", "--reason", "wrong patient", "--author", "t"),
        ("changes",),
    ],
    ids=["info", "patients", "events", "state", "correct", "retract", "changes"],
)
def test_a_successful_commands_json_says_ok_true(example_store: Path, args: tuple[str, ...]) -> None:
    result = run_cli(*args, "--store", example_store, "--json")
    assert (result.exit_code, json.loads(result.stdout)["ok"]) == (0, True)


def test_ingest_json_says_ok_true_when_every_file_was_added(store_path: Path) -> None:
    run_cli("init", "--store", store_path)
    result = run_cli("ingest", EXAMPLE_CSV, "--store", store_path, "--author", "t", "--json")
    assert json.loads(result.stdout)["ok"] is True


def test_rules_schema_is_a_json_schema_without_an_ok_key() -> None:
    schema = json.loads(run_cli("rules", "schema").stdout)
    assert "ok" not in schema and "$schema" in schema


def test_retract_json_counts_the_event_it_retracted(example_store: Path) -> None:
    result = run_cli(
        "retract",
        "p1-rash1",
        "--reason",
        "wrong patient",
        "--author",
        "t",
        "--store",
        example_store,
        "--json",
    )
    assert json.loads(result.stdout)["retracted"] == 1


def test_retract_json_counts_none_when_the_event_was_already_retracted(example_store: Path) -> None:
    args = (
        "retract",
        "p1-rash1",
        "--reason",
        "wrong patient",
        "--author",
        "t",
        "--store",
        example_store,
        "--json",
    )
    run_cli(*args)
    data = json.loads(run_cli(*args).stdout)
    assert (data["retracted"], data["batch_id"]) == (0, None)


def test_verify_json_counts_the_stored_versions_under_versions_not_events(example_store: Path) -> None:
    run_cli("retract", "p1-rash1", "--reason", "wrong patient", "--author", "t", "--store", example_store)
    data = json.loads(run_cli("verify", "--store", example_store, "--json").stdout)
    assert (data["versions"], "events" in data) == (15, False)


def test_info_json_names_the_store_file_once_under_store(example_store: Path) -> None:
    data = json.loads(run_cli("info", "--store", example_store, "--json").stdout)
    assert (data["store"], "path" in data) == (str(example_store), False)


def test_info_text_says_the_creation_time_is_utc(example_store: Path) -> None:
    lines = run_cli("info", "--store", example_store).stdout.splitlines()
    [created] = [line for line in lines if line.strip().startswith("created_at:")]
    assert created.endswith(" UTC")


@pytest.mark.parametrize(
    "args",
    [
        ("state", "P001", "--at", "2008-06-01"),
        ("state", "P001", "--at", "2008-06-01", "--json"),
        ("explain", "P001", "crp_normal", "--at", "2008-06-01"),
        ("explain", "P001", "crp_normal", "--at", "2008-06-01", "--json"),
        ("state", "NOPE", "--at", "2008-06-01", "--json"),  # exit 5
        ("explain", "P001", "nosuch", "--at", "2008-06-01"),  # exit 2
    ],
    ids=["state", "state-json", "explain", "explain-json", "unknown-patient", "unknown-rule"],
)
def test_state_and_explain_in_a_process_of_their_own_end_as_they_do_in_this_one(
    example_store: Path, args: tuple[str, ...]
) -> None:
    # the executable skips Python's teardown after `state` and `explain` (cli.main.entry): the
    # output and the exit code must be those of main() run in this process
    env = {**output_env(unbuffered=False), "TIMELINE_NO_CACHE": "1"}  # Python's usual buffer
    done = subprocess.run(
        [sys.executable, "-m", "cli.main", *args, "--store", str(example_store)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    here = run_cli(*args, "--store", example_store)
    assert (done.returncode, done.stdout, done.stderr) == (here.exit_code, here.stdout, here.stderr)
