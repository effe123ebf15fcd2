"""Every ``--json`` output writes a time as ISO 8601 with its zone designator: ``Z`` for a system
time (``recorded_at``, ``as_known_at``, ``created_at``: UTC by design) and for a clinical time
in a UTC store, the store zone's offset for a clinical time in another; a date stays a date
(helper 72)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support import run_cli

# anything that reads as a time of day after a date, however written
LOOKS_LIKE_A_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")
ISO_WITH_ZONE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{6})?(Z|[+-]\d{2}:\d{2})$")


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def json_of(*args: str | Path) -> dict[str, Any]:
    result = run_cli(*args, "--json")
    assert result.exit_code == 0, result.output
    data: dict[str, Any] = json.loads(result.stdout)
    return data


def event(store: Path, event_id: str) -> dict[str, Any]:
    data = json_of("events", "P001", "--store", store)
    [found] = [e for e in data["events"] if e["event_id"] == event_id]
    return found


COMMANDS = [
    ("events", "P001"),
    ("events", "P001", "--history"),
    ("patients",),
    ("info",),
    ("verify",),
    ("changes",),
    ("changes", "--batches"),
    ("state", "P001", "--at", "2008-01-10"),
    ("explain", "P001", "crp_normal", "--at", "2008-01-10"),
    ("history", "P001", "--rule", "crp_normal"),
]


@pytest.mark.parametrize("args", COMMANDS, ids=[" ".join(a) for a in COMMANDS])
def test_every_time_a_json_output_writes_carries_its_zone(example_store: Path, args: tuple[str, ...]) -> None:
    run_cli(
        "correct",
        "p1-crp2",
        "--set",
        "value=5",
        "--reason",
        "typo",
        "--author",
        "t",
        "--store",
        example_store,
    )
    data = json_of(*args, "--store", example_store)
    times = [s for s in strings(data) if LOOKS_LIKE_A_TIME.match(s)]
    assert [t for t in times if not ISO_WITH_ZONE.match(t)] == []


def test_a_time_of_an_event_in_a_utc_store_ends_in_z(example_store: Path) -> None:
    assert event(example_store, "p1-t1")["occurred_at"] == "2008-01-10T09:30:00Z"


def test_a_date_of_an_event_stays_a_date(example_store: Path) -> None:
    assert event(example_store, "p1-crp1")["occurred_at"] == "2008-01-10"


def test_an_end_given_as_a_date_stays_a_date(example_store: Path) -> None:
    assert event(example_store, "p1-ae1")["ended_at"] == "2008-02-01"


def test_recorded_at_of_an_event_ends_in_z(example_store: Path) -> None:
    assert event(example_store, "p1-crp1")["recorded_at"].endswith("Z")


def test_a_time_in_a_store_of_another_zone_carries_that_zones_offset(tmp_path: Path) -> None:
    store = tmp_path / "madrid.duckdb"
    run_cli("init", "--store", store, "--timezone", "Europe/Madrid")
    data = tmp_path / "e.csv"
    data.write_text(
        "event_id,patient_id,kind,occurred_at,value,unit\n"
        "w1,P001,weight,2009-01-10T09:30,20,kg\nw2,P001,weight,2009-07-10T09:30,21,kg\n",
        encoding="utf-8",
    )
    run_cli("ingest", data, "--store", store, "--author", "t")
    events = json_of("events", "P001", "--store", store)["events"]
    assert [e["occurred_at"] for e in events] == ["2009-01-10T09:30:00+01:00", "2009-07-10T09:30:00+02:00"]


def test_recorded_at_in_a_store_of_another_zone_is_still_utc(tmp_path: Path) -> None:
    store = tmp_path / "madrid.duckdb"
    run_cli("init", "--store", store, "--timezone", "Europe/Madrid")
    data = tmp_path / "e.csv"
    data.write_text("event_id,patient_id,kind,occurred_at,value,unit\nw1,P001,weight,2009-01-10,20,kg\n")
    run_cli("ingest", data, "--store", store, "--author", "t")
    [e] = json_of("events", "P001", "--store", store)["events"]
    assert e["recorded_at"].endswith("Z")


def test_the_manifests_as_known_at_ends_in_z(example_store: Path) -> None:
    data = json_of("events", "P001", "--as-known-at", "2030-01-01", "--store", example_store)
    assert data["manifest"]["as_known_at"] == "2030-01-01T23:59:59.999999Z"


def test_the_manifests_as_known_at_given_back_reads_the_same_record(example_store: Path) -> None:
    first = json_of("events", "P001", "--as-known-at", "2030-01-01", "--store", example_store)["manifest"]
    again = json_of("events", "P001", "--as-known-at", first["as_known_at"], "--store", example_store)[
        "manifest"
    ]
    assert (again["as_known_at"], again["high_water"]) == (first["as_known_at"], first["high_water"])


def test_info_created_at_ends_in_z(example_store: Path) -> None:
    assert json_of("info", "--store", example_store)["created_at"].endswith("Z")


def test_explains_instant_of_a_date_query_is_the_end_of_that_day_with_its_zone(example_store: Path) -> None:
    data = json_of("explain", "P001", "crp_normal", "--at", "2008-01-10", "--store", example_store)
    assert data["instant"] == "2008-01-10T23:59:59.999999Z"


def test_explains_events_recorded_at_ends_in_z_not_utc_in_words(example_store: Path) -> None:
    data = json_of("explain", "P001", "crp_normal", "--at", "2008-01-10", "--store", example_store)
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z", data["events"][0]["recorded_at"])


def test_the_text_view_of_explain_still_says_utc_in_words(example_store: Path) -> None:
    result = run_cli("explain", "P001", "crp_normal", "--at", "2008-01-10", "--store", example_store)
    assert " UTC" in result.stdout


# ---- an offset of seconds (a zone's local mean time) is no RFC 3339 offset (helper 81) ----


def _madrid_events(tmp_path: Path, rows: str) -> list[dict[str, Any]]:
    store = tmp_path / "madrid.duckdb"
    run_cli("init", "--store", store, "--timezone", "Europe/Madrid")
    data = tmp_path / "e.csv"
    data.write_text("event_id,patient_id,kind,occurred_at,value,unit\n" + rows, encoding="utf-8")
    assert run_cli("ingest", data, "--store", store, "--author", "t").exit_code == 0
    events: list[dict[str, Any]] = json_of("events", "P001", "--store", store)["events"]
    return events


def test_a_time_whose_zone_offset_had_seconds_is_written_as_its_utc_instant(tmp_path: Path) -> None:
    # 11:45:16 in Madrid in 1900, its offset −00:14:44: 12:00 UTC
    [e] = _madrid_events(tmp_path, "w1,P001,weight,1900-06-01T11:45:16,20,kg\n")
    assert e["occurred_at"] == "1900-06-01T12:00:00Z"


def test_a_time_whose_zone_offset_had_seconds_is_rfc_3339(tmp_path: Path) -> None:
    [e] = _madrid_events(tmp_path, "w1,P001,weight,1900-06-01T09:30,20,kg\n")
    assert ISO_WITH_ZONE.match(e["occurred_at"])


def test_a_time_after_the_zone_took_a_standard_offset_keeps_it(tmp_path: Path) -> None:
    [e] = _madrid_events(tmp_path, "w1,P001,weight,1901-06-01T09:30,20,kg\n")
    assert e["occurred_at"] == "1901-06-01T09:30:00Z"  # Madrid was on GMT (+00:00) from 1901 to 1940


def test_the_events_text_view_keeps_a_time_whose_zone_offset_had_seconds_as_its_clock_read(
    tmp_path: Path,
) -> None:
    _madrid_events(tmp_path, "w1,P001,weight,1900-06-01T11:45:16,20,kg\n")
    out = run_cli("events", "P001", "--store", tmp_path / "madrid.duckdb").stdout
    assert "1900-06-01 11:45:16" in out
