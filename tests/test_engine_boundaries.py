"""Golden boundary cases of the rule engine, one behaviour per test: window edges and their
inclusive/exclusive flags, validity expiry, ties at one instant, calendar months, baselines
of zero, units at a threshold, as-known-at, persistence, unknown reasons, incomplete windows
and episodes. Each test writes one or two small rules and a handful of events."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from datetime import date, datetime, timedelta
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.engine_support import CheckedSession, store_with, write_rule
from timeline.engine.evaluate import Result, Session
from timeline.ingest import append_rows, correct
from timeline.language.loader import load_rules
from timeline.store import Store

CRP = {"kind": "lab", "code": "1988-5"}
TEMPERATURE = {"kind": "body_temperature"}
FEVER = {"kind": "finding", "code": "fever"}
ANAKINRA_START = {"kind": "medication_start", "drug": "anakinra"}


def crp(at: str, value: float, unit: str = "mg/L", **extra: Any) -> dict[str, Any]:
    return {
        "patient_id": "X",
        "kind": "lab",
        "code": "1988-5",
        "occurred_at": at,
        "value": value,
        "unit": unit,
        **extra,
    }


def fever(at: str, **extra: Any) -> dict[str, Any]:
    return {"patient_id": "X", "kind": "finding", "code": "fever", "occurred_at": at, **extra}


def temperature(at: str, value: float, unit: str = "Cel") -> dict[str, Any]:
    return {"patient_id": "X", "kind": "body_temperature", "occurred_at": at, "value": value, "unit": unit}


def anakinra(at: str, kind: str = "medication_start", **extra: Any) -> dict[str, Any]:
    row = {"patient_id": "X", "kind": kind, "drug": "anakinra", "occurred_at": at}
    if kind != "medication_stop":
        row.update(dose=50, dose_unit="mg", frequency="daily")
    return {**row, **extra}


def mas(at: str, ended: str | None = None, **extra: Any) -> dict[str, Any]:
    row = {"patient_id": "X", "kind": "mas_episode", "occurred_at": at, **extra}
    if ended:
        row["ended_at"] = ended
    return row


class Bench:
    """Rules in a directory of their own, a store, and a session over them."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rules_dir = root / "rules"
        self._store: Store | None = None

    def rule(self, rule_id: str, define: Any, **extra: Any) -> None:
        write_rule(self.rules_dir, rule_id, define, **extra)

    def events(self, *batches: Sequence[dict[str, Any]]) -> Store:
        self._store = store_with(self.root / "store.duckdb", *batches)
        return self._store

    @property
    def store(self) -> Store:
        if self._store is None:
            self.events(
                [
                    {
                        "patient_id": "X",
                        "kind": "weight",
                        "occurred_at": "2000-01-01",
                        "value": 20,
                        "unit": "kg",
                    }
                ]
            )
        assert self._store is not None
        return self._store

    def session(self, as_known_at: datetime | None = None, **params: dict[str, Any]) -> Session:
        return CheckedSession(self.store, load_rules([self.rules_dir], params=params or None), as_known_at)

    def state(self, rule_id: str, at: str, **kwargs: Any) -> Result:
        return self.session(**kwargs).state("X", at, [rule_id])[0]

    def values(self, rule_id: str, *ats: str) -> list[bool | float | None]:
        session = self.session()
        return [session.state("X", at, [rule_id])[0].value for at in ats]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()


@pytest.fixture
def bench(tmp_path: Path) -> Iterator[Bench]:
    b = Bench(tmp_path)
    yield b
    b.close()


def seqs_of(store: Store, *event_ids: str) -> list[int]:
    by_id = {e["event_id"]: e["seq"] for e in store.events("X")}
    return sorted(by_id[i] for i in event_ids)


# ---- windows ----------------------------------------------------------------------------------


def test_a_seven_day_window_ending_at_a_date_covers_exactly_seven_calendar_days(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "7 days"}})
    bench.events([fever("2009-03-02")])
    assert bench.values("r", "2009-03-08", "2009-03-09") == [True, False]


def test_a_fever_eight_days_before_is_outside_a_seven_day_window(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "7 days"}})
    bench.events([fever("2009-03-01")])
    assert bench.values("r", "2009-03-07", "2009-03-08") == [True, False]


def test_a_window_at_a_date_time_reaches_back_exactly_its_length(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "7 days"}})
    bench.events([fever("2009-03-01T10:00")])
    assert bench.values("r", "2009-03-08T09:59", "2009-03-08T10:00") == [True, False]


def test_a_window_start_is_exclusive_by_default(bench: Bench) -> None:
    bench.rule("r", {"count": {"select": FEVER, "window": {"start": "-2 days", "end": "0 days"}}})
    bench.events([fever("2009-03-01T10:00")])
    assert bench.values("r", "2009-03-03T10:00", "2009-03-03T09:59") == [0, 1]


def test_an_inclusive_window_start_counts_an_event_exactly_at_it(bench: Bench) -> None:
    window = {"start": "-2 days", "end": "0 days", "start_inclusive": True}
    bench.rule("r", {"count": {"select": FEVER, "window": window}})
    bench.events([fever("2009-03-01T10:00")])
    assert bench.values("r", "2009-03-03T10:00", "2009-03-03T10:01") == [1, 0]


def test_a_window_end_is_inclusive_by_default(bench: Bench) -> None:
    bench.rule("r", {"count": {"select": FEVER, "window": {"start": "-3 days", "end": "-1 days"}}})
    bench.events([fever("2009-03-01T10:00")])
    assert bench.values("r", "2009-03-02T10:00", "2009-03-02T09:59") == [1, 0]


def test_an_exclusive_window_end_leaves_out_an_event_exactly_at_it(bench: Bench) -> None:
    window = {"start": "-3 days", "end": "-1 days", "end_inclusive": False}
    bench.rule("r", {"count": {"select": FEVER, "window": window}})
    bench.events([fever("2009-03-01T10:00")])
    assert bench.values("r", "2009-03-02T10:00", "2009-03-02T10:01") == [0, 1]


def test_exists_over_a_window_that_ends_after_the_date_is_unknown_until_it_is_complete(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": {"start": "-1 days", "end": "2 days"}}})
    bench.events([fever("2009-03-10")])
    result = bench.state("r", "2009-03-01")
    assert result.value is None
    assert result.why == "no fever so far, but the window ends after the date"


def test_exists_over_an_incomplete_window_is_true_as_soon_as_an_event_is_found(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": {"start": "-1 days", "end": "2 days"}}})
    bench.events([fever("2009-03-01")])
    assert bench.values("r", "2009-03-01") == [True]


def test_count_over_an_incomplete_window_is_unknown_even_with_events_found(bench: Bench) -> None:
    bench.rule("r", {"count": {"select": FEVER, "window": {"start": "-1 days", "end": "2 days"}}})
    bench.events([fever("2009-03-01")])
    result = bench.state("r", "2009-03-01")
    assert (result.value, result.why) == (None, "the window ends after the date")


def test_an_aggregate_over_an_empty_window_is_unknown_with_the_window_named(bench: Bench) -> None:
    bench.rule("r", {"max": {"select": CRP, "window": "7 days"}})
    bench.events([crp("2009-03-01", 5)])
    result = bench.state("r", "2009-03-08")
    assert (result.value, result.why) == (None, "no CRP in the window")


def test_first_and_last_in_a_window_break_a_tie_by_the_latest_recorded(bench: Bench) -> None:
    bench.rule("first", {"first": {"select": CRP, "window": "7 days"}})
    bench.rule("last", {"last": {"select": CRP, "window": "7 days"}})
    bench.events([crp("2009-03-01", 5), crp("2009-03-02", 7)], [crp("2009-03-01", 6), crp("2009-03-02", 9)])
    assert bench.values("first", "2009-03-03") == [6]
    assert bench.values("last", "2009-03-03") == [9]


def test_an_anchored_window_counts_from_the_anchor_event(bench: Bench) -> None:
    window = {
        "start": "0 days",
        "end": "14 days",
        "start_inclusive": True,
        "anchor": {"first": ANAKINRA_START},
    }
    bench.rule("r", {"count": {"select": FEVER, "window": window}})
    bench.events(
        [
            fever("2009-02-28"),
            anakinra("2009-03-01"),
            fever("2009-03-01"),
            fever("2009-03-15"),
            fever("2009-03-16"),
        ]
    )
    assert bench.values("r", "2009-03-15", "2009-03-20") == [2, 2]
    assert bench.state("r", "2009-03-10").why == "the window ends after the date"


def test_an_anchored_aggregate_without_its_anchor_is_unknown(bench: Bench) -> None:
    window = {"start": "0 days", "end": "14 days", "anchor": {"first": ANAKINRA_START}}
    bench.rule("r", {"count": {"select": FEVER, "window": window}})
    bench.events([fever("2009-03-01")])
    result = bench.state("r", "2009-04-01")
    assert (result.value, result.why) == (None, "no anakinra recorded up to the date")


def test_an_ever_window_counts_every_event_up_to_the_date(bench: Bench) -> None:
    bench.rule("r", {"count": {"select": FEVER, "window": "ever"}})
    bench.events([fever("1901-01-01"), fever("2009-03-01"), fever("2009-03-02")])
    assert bench.values("r", "1900-12-31", "2009-03-01", "2030-01-01") == [0, 2, 3]


def test_exists_over_an_ever_window_is_false_not_unknown_without_events(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "ever"}})
    bench.events([anakinra("2009-03-01")])
    assert bench.state("r", "2009-04-01").value is False


def test_an_ever_window_has_no_start_in_its_explanation(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "ever"}})
    bench.events([fever("2009-03-01")])
    tree = bench.session().explain("X", "r", "2009-04-01")["tree"]["derivation"]
    assert tree["window"] == {"from": None, "to": "2009-04-01 23:59:59.999999"}


def test_an_anchored_window_starting_ever_counts_everything_up_to_the_anchor(bench: Bench) -> None:
    window = {"start": "ever", "end": "0 days", "anchor": {"first": ANAKINRA_START}}
    bench.rule("r", {"count": {"select": FEVER, "window": window}})
    bench.events([fever("1990-01-01"), fever("2009-03-01"), anakinra("2009-03-01"), fever("2009-03-02")])
    assert bench.values("r", "2009-04-01") == [2]


def test_an_anchored_window_starting_ever_without_its_anchor_is_unknown(bench: Bench) -> None:
    window = {"start": "ever", "end": "0 days", "anchor": {"first": ANAKINRA_START}}
    bench.rule("r", {"exists": {"select": FEVER, "window": window}})
    bench.rule("total", {"sum": {"select": TEMPERATURE, "window": {**window, "end": "1 day"}}})
    bench.events([fever("2009-03-01"), temperature("2009-03-01", 38.5)])
    result = bench.state("r", "2009-04-01")
    assert (result.value, result.why) == (None, "no anakinra recorded up to the date")
    assert bench.state("total", "2009-04-01").value is None


def test_the_history_of_an_ever_window_changes_only_when_an_event_enters(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "ever"}})
    bench.events([anakinra("2009-01-01"), fever("2009-03-01")])
    session = bench.session()
    assert [(r[1], r[2]) for r in _history(session, ["r"])] == [
        (datetime(2009, 1, 1), False),
        (datetime(2009, 3, 1), True),
    ]
    assert [(r[1], r[2]) for r in _histories(session, ["r"])] == [
        (r[1], r[2]) for r in _history(session, ["r"])
    ]


def test_with_spans_a_finding_lasting_through_the_window_is_in_it(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "90 days", "spans": True}})
    bench.rule("plain", {"exists": {"select": FEVER, "window": "90 days"}})
    bench.events([fever("2009-01-01", ended_at="2009-12-31")])
    assert bench.values("r", "2009-06-01") == [True]
    assert bench.values("plain", "2009-06-01") == [False]


def test_with_spans_a_date_only_end_lasts_its_whole_day_and_no_longer(bench: Bench) -> None:
    # 7 days up to 16 March start after the end of 9 March: the end of 10 March is inside;
    # 7 days up to 17 March start after the end of 10 March: outside
    bench.rule("r", {"exists": {"select": FEVER, "window": "7 days", "spans": True}})
    bench.events([fever("2009-03-01", ended_at="2009-03-10")])
    assert bench.values("r", "2009-03-16", "2009-03-17") == [True, False]


def test_with_spans_an_event_without_an_end_is_an_instant(bench: Bench) -> None:
    bench.rule("r", {"count": {"select": FEVER, "window": "7 days", "spans": True}})
    bench.events([fever("2009-03-01"), fever("2009-03-05", ended_at="2009-03-20T12:00")])
    # 7 days up to 26 March cover 20 March, when the second ends at noon; up to 27 March, no
    assert bench.values("r", "2009-03-07", "2009-03-08", "2009-03-26", "2009-03-27") == [2, 1, 1, 0]


def test_with_spans_an_event_starting_after_the_date_is_not_counted(bench: Bench) -> None:
    bench.rule("r", {"exists": {"select": FEVER, "window": "7 days", "spans": True}})
    bench.events([fever("2009-03-10", ended_at="2009-03-20")])
    assert bench.values("r", "2009-03-09", "2009-03-10") == [False, True]


# ---- finding_present: a finding lasts until its end, or `within`, unless recorded absent ------


def present_rule(bench: Bench, within: str = "7 days") -> None:
    bench.rule("r", {"finding_present": {"select": FEVER, "within": within}})


def test_a_finding_without_an_end_lasts_exactly_within(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01T10:00")])
    assert bench.values("r", "2009-03-01T09:59", "2009-03-08T09:59", "2009-03-08T10:00") == [
        False,
        True,
        False,
    ]


def test_a_date_only_finding_without_an_end_lasts_within_calendar_days(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01")])
    assert bench.values("r", "2009-03-07", "2009-03-08") == [True, False]


def test_a_finding_with_a_timed_end_lasts_through_that_instant_and_no_longer(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01", ended_at="2009-03-20T12:00")])
    assert bench.values("r", "2009-03-20T12:00", "2009-03-20T12:01") == [True, False]


def test_a_recorded_end_is_not_extended_by_within(bench: Bench) -> None:
    present_rule(bench, "90 days")
    bench.events([fever("2009-03-01", ended_at="2009-03-10")])
    assert bench.values("r", "2009-03-10", "2009-03-11") == [True, False]


def test_a_recorded_end_outlasts_within(bench: Bench) -> None:
    present_rule(bench, "7 days")
    bench.events([fever("2009-01-01", ended_at="2009-12-31")])
    assert bench.values("r", "2009-06-01", "2009-12-31", "2010-01-01") == [True, True, False]


def test_a_later_absent_record_ends_a_finding_from_its_instant(bench: Bench) -> None:
    present_rule(bench, "90 days")
    bench.events([fever("2009-03-01"), fever("2009-03-05T08:00", present=False)])
    assert bench.values("r", "2009-03-05T07:59", "2009-03-05T08:00", "2009-04-01") == [True, False, False]


def test_an_absent_record_ends_a_finding_before_its_recorded_end(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01", ended_at="2009-03-31"), fever("2009-03-10", present=False)])
    assert bench.values("r", "2009-03-09", "2009-03-10") == [True, False]


def test_an_absent_record_before_a_finding_does_not_end_it(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-02-27", present=False), fever("2009-03-01")])
    assert bench.values("r", "2009-02-28", "2009-03-01") == [False, True]


def test_of_present_and_absent_at_one_instant_the_later_asserted_wins(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01", present=False)], [fever("2009-03-01")])
    assert bench.values("r", "2009-03-01") == [True]


def test_of_absent_and_present_at_one_instant_asserted_in_that_order_absent_wins(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01")], [fever("2009-03-01", present=False)])
    assert bench.values("r", "2009-03-01") == [False]


def test_an_absent_record_of_another_code_does_not_end_a_finding(bench: Bench) -> None:
    bench.rule(
        "r",
        {"finding_present": {"select": {"kind": "finding", "code": ["fever", "rash"]}, "within": "7 days"}},
    )
    bench.events(
        [
            fever("2009-03-01"),
            {
                "patient_id": "X",
                "kind": "finding",
                "code": "rash",
                "occurred_at": "2009-03-03",
                "present": False,
            },
        ]
    )
    assert bench.values("r", "2009-03-03") == [True]


def test_a_lasting_finding_is_the_evidence_and_note(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01", event_id="a"), fever("2009-03-03", event_id="b")])
    result = bench.state("r", "2009-03-04")
    assert (result.value, result.evidence, result.note) == (
        True,
        seqs_of(bench.store, "a", "b"),
        "fever: fever since 2009-03-03",
    )


def test_a_finding_ended_by_an_absent_record_shows_both_as_evidence(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01", event_id="a"), fever("2009-03-03", present=False, event_id="b")])
    result = bench.state("r", "2009-03-04")
    assert (result.value, result.evidence, result.note) == (
        False,
        seqs_of(bench.store, "a", "b"),
        "fever: fever recorded absent on 2009-03-03",
    )


def test_a_finding_never_recorded_is_false_and_says_so(bench: Bench) -> None:
    """Helper 46: "no uveitis lasting" read as if an eye examination had been recorded."""
    present_rule(bench)
    bench.events([fever("2009-03-01")])
    result = bench.state("r", "2009-02-20")
    assert (result.value, result.evidence, result.note) == (False, [], "no fever recorded up to the date")


def test_a_finding_that_no_longer_lasts_is_false_with_no_evidence(bench: Bench) -> None:
    present_rule(bench)
    bench.events([fever("2009-03-01")])
    result = bench.state("r", "2009-03-20")
    assert (result.value, result.why, result.evidence, result.note) == (
        False,
        None,
        [],
        "no fever lasting at the date",
    )


# ---- validity -----------------------------------------------------------------------------------


def test_a_value_valid_thirty_days_counts_up_to_and_including_the_thirtieth_day(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    bench.events([crp("2009-03-01", 2)])
    assert bench.values("r", "2009-03-30") == [2]


def test_a_value_expires_exactly_at_its_validity_and_the_reason_names_its_date(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    bench.events([crp("2009-03-01", 2)])
    result = bench.state("r", "2009-03-31")
    assert result.value is None
    assert result.why == "no CRP within 30 days: the latest, on 2009-03-01, is too old"
    assert result.evidence == seqs_of(bench.store, *[e["event_id"] for e in bench.store.events("X")])


def test_a_date_time_value_expires_at_the_same_time_of_day(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "1 day"}})
    bench.events([crp("2009-03-01T10:00", 2)])
    assert bench.values("r", "2009-03-02T09:59", "2009-03-02T10:00") == [2, None]


def test_latest_of_a_count_without_a_unit_reads_value_on_date(bench: Bench) -> None:
    joints = {"kind": "joint_exam"}
    bench.rule("r", {"latest": {"select": joints, "within": "90 days", "field": "active_joints"}})
    bench.events([{"patient_id": "X", "kind": "joint_exam", "occurred_at": "2009-03-01", "active_joints": 3}])
    assert bench.state("r", "2009-03-10").note == "joint exam 3 on 2009-03-01"


def test_a_comparison_note_writes_an_annotation_unit_as_a_word(bench: Bench) -> None:
    latest = {"latest": {"select": {"kind": "joint_exam"}, "within": "90 days", "field": "active_joints"}}
    bench.rule("r", {"gt": [latest, 0]})
    bench.events([{"patient_id": "X", "kind": "joint_exam", "occurred_at": "2009-03-01", "active_joints": 3}])
    assert bench.state("r", "2009-03-10").note == "3 > 0 joints"


def test_explain_lists_an_event_two_clauses_used_once(bench: Bench) -> None:
    latest = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"all": [{"gt": [latest, "1 mg/L"]}, {"lt": [latest, "100 mg/L"]}]})
    bench.events([crp("2009-03-01", 5, event_id="c")])
    data = bench.session().explain("X", "r", "2009-03-10")
    assert data["tree"]["derivation"]["events"] == seqs_of(bench.store, "c")


def test_latest_with_nothing_recorded_is_unknown(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    result = bench.state("r", "2009-03-31")
    assert (result.value, result.why, result.evidence) == (None, "no CRP recorded up to the date", [])


def test_an_event_later_on_the_same_day_is_invisible_at_an_earlier_time(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    bench.events([crp("2009-03-01T08:00", 2), crp("2009-03-01T16:00", 9)])
    assert bench.values("r", "2009-03-01T12:00", "2009-03-01") == [2, 9]


def test_a_date_only_event_is_visible_from_midnight(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    bench.events([crp("2009-03-01", 2)])
    assert bench.values("r", "2009-02-28T23:59", "2009-03-01T00:00") == [None, 2]


# ---- ties -------------------------------------------------------------------------------------------


def test_a_tie_at_one_instant_goes_to_the_latest_recorded_event(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    bench.events(
        [crp("2009-03-01T10:00", 5, event_id="first")], [crp("2009-03-01T10:00", 8, event_id="second")]
    )
    result = bench.state("r", "2009-03-01")
    assert result.value == 8
    assert result.evidence == seqs_of(bench.store, "second")


def test_an_explanation_names_the_event_that_won_a_tie(bench: Bench) -> None:
    bench.rule("r", {"normal": {"select": CRP, "within": "30 days", "upper": "6 mg/L"}})
    bench.events([crp("2009-03-01", 5, event_id="first")], [crp("2009-03-01", 8, event_id="second")])
    data = bench.session().explain("X", "r", "2009-03-01")
    assert data["tree"]["value"] is False
    assert [e["event_id"] for e in data["events"]] == ["second"]


def test_a_tie_between_first_anchors_goes_to_the_latest_recorded(bench: Bench) -> None:
    expr = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}}})
    bench.events(
        [anakinra("2009-03-01", event_id="a1"), crp("2009-02-20", 5, event_id="c")],
        [anakinra("2009-03-01", dose=100, event_id="a2")],
    )
    assert bench.state("r", "2009-03-05").evidence == seqs_of(bench.store, "a2", "c")


def _tied_crps(bench: Bench) -> Store:
    """Two CRPs at one instant, "first" asserted before "second" (which wins the tie)."""
    return bench.events(
        [crp("2009-03-01T10:00", 5, event_id="first")], [crp("2009-03-01T10:00", 8, event_id="second")]
    )


def _recorded_until_now(store: Store) -> datetime:
    found = store.con.execute("SELECT max(recorded_at) FROM batches").fetchone()
    assert found is not None
    return found[0]


def test_correcting_the_reference_range_of_the_tie_s_loser_leaves_the_winner_latest(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    store = _tied_crps(bench)
    correct(store, "first", {"ref_high": "10"}, reason="range of the lab", author="tests")
    result = bench.state("r", "2009-03-01")  # the replay and the SQL engine, checked alike
    assert (result.value, result.evidence) == (8, seqs_of(store, "second"))


def test_correcting_the_tie_s_loser_changes_no_state_as_known_before_and_after(bench: Bench) -> None:
    bench.rule("r", {"normal": {"select": CRP, "within": "30 days", "upper": "6 mg/L"}})
    store = _tied_crps(bench)
    before = _recorded_until_now(store)
    correct(store, "first", {"ref_high": "10"}, reason="range of the lab", author="tests")
    then = bench.session(as_known_at=before).state("X", "2009-03-01", ["r"])[0]
    now = bench.session().state("X", "2009-03-01", ["r"])[0]
    assert (
        (then.value, then.note)
        == (now.value, now.note)
        == (False, "CRP 8 mg/L vs the limit ≤ 6 (no lab range)")
    )


def test_the_winner_of_a_tie_is_named_by_its_current_version_after_both_were_corrected(
    bench: Bench,
) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    store = _tied_crps(bench)
    correct(store, "second", {"note": "repeated"}, reason="note", author="tests")
    correct(store, "first", {"note": "haemolysed"}, reason="note", author="tests")
    result = bench.state("r", "2009-03-01")
    assert result.value == 8
    assert result.evidence == seqs_of(store, "second") == [3]  # its correction, not its assertion (2)


def test_correcting_the_tie_s_loser_leaves_the_history_unchanged(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    store = _tied_crps(bench)
    before = _recorded_until_now(store)
    correct(store, "first", {"ref_high": "10"}, reason="range of the lab", author="tests")
    then, now = bench.session(as_known_at=before), bench.session()
    assert _history(now, ["r"]) == _history(then, ["r"])
    assert _histories(now, ["r"]) == _histories(then, ["r"])
    assert _history(now, ["r"])[0][1:3] == (datetime(2009, 3, 1, 10), 8)


def test_correcting_a_tied_first_anchor_s_loser_keeps_the_anchor(bench: Bench) -> None:
    expr = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}}})
    store = bench.events(
        [anakinra("2009-03-01", event_id="a1"), crp("2009-02-20", 5, event_id="c")],
        [anakinra("2009-03-01", dose=100, event_id="a2")],
    )
    correct(store, "a1", {"note": "given at home"}, reason="note", author="tests")
    assert bench.state("r", "2009-03-05").evidence == seqs_of(store, "a2", "c")


def test_correcting_a_tied_event_s_note_keeps_first_and_last_in_a_window(bench: Bench) -> None:
    bench.rule("first", {"first": {"select": CRP, "window": "7 days"}})
    bench.rule("last", {"last": {"select": CRP, "window": "7 days"}})
    store = bench.events(
        [crp("2009-03-01", 5, event_id="f1"), crp("2009-03-02", 7, event_id="l1")],
        [crp("2009-03-01", 6, event_id="f2"), crp("2009-03-02", 9, event_id="l2")],
    )
    correct(store, "f1", {"note": "repeat"}, reason="note", author="tests")
    correct(store, "l1", {"note": "repeat"}, reason="note", author="tests")
    assert (bench.values("first", "2009-03-03"), bench.values("last", "2009-03-03")) == ([6], [9])


def test_correcting_a_tied_dose_s_note_keeps_the_daily_dose(bench: Bench) -> None:
    bench.rule("r", {"daily_dose": {"drug": "anakinra", "per_kg": False}})
    store = bench.events(
        [anakinra("2009-03-01", event_id="a1")], [anakinra("2009-03-01", dose=100, event_id="a2")]
    )
    correct(store, "a1", {"note": "given at home"}, reason="note", author="tests")
    result = bench.state("r", "2009-03-02")
    assert (result.value, result.evidence) == (100, seqs_of(store, "a2"))


# ---- calendar months -------------------------------------------------------------------------------


def test_thirty_first_january_plus_one_month_is_twenty_eighth_february(bench: Bench) -> None:
    expr = {"latest": {"select": CRP, "within": "90 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}, "offset": "1 month"}})
    bench.events([anakinra("2009-01-31"), crp("2009-02-28", 7), crp("2009-03-01", 9)])
    assert bench.values("r", "2009-02-27", "2009-02-28", "2009-03-31") == [None, 7, 7]
    assert bench.state("r", "2009-02-27").why == "1 month after the anakinra is after the date"


def test_in_a_leap_year_thirty_first_january_plus_one_month_is_twenty_ninth_february(bench: Bench) -> None:
    expr = {"latest": {"select": CRP, "within": "90 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}, "offset": "1 month"}})
    bench.events([anakinra("2008-01-31"), crp("2008-02-28", 7), crp("2008-02-29", 9)])
    assert bench.values("r", "2008-02-28", "2008-02-29") == [None, 9]


def test_an_unknown_at_the_anchor_says_it_is_the_anchor_dates(bench: Bench) -> None:
    # without the prefix, "no CRP recorded up to the date" reads as if about the date asked
    # for, where a CRP may well be recorded
    expr = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}}})
    bench.events([anakinra("2009-03-01T09:00"), crp("2009-03-20", 4)])
    result = bench.state("r", "2009-04-01")
    assert (result.value, result.why) == (
        None,
        "at the anakinra (2009-03-01): no CRP recorded up to the date",
    )


def test_an_unknown_at_a_shifted_anchor_names_the_shift_and_its_date(bench: Bench) -> None:
    expr = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}, "offset": "1 month"}})
    bench.events([anakinra("2009-01-31"), crp("2008-12-01", 4)])
    assert bench.state("r", "2009-03-15").why == (
        "at the anakinra + 1 month (2009-02-28): no CRP within 30 days: the latest, on 2008-12-01, is too old"
    )


def test_a_known_value_at_the_anchor_carries_no_reason(bench: Bench) -> None:
    expr = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}}})
    bench.events([crp("2009-02-20", 4), anakinra("2009-03-01")])
    result = bench.state("r", "2009-04-01")
    assert (result.value, result.why) == (4, None)


# ---- whole_day: "the value at or before the index date" (DOMAIN.md, ACR Pedi baseline) -------

WHOLE_DAY = {"latest": {"select": CRP, "within": "30 days"}}


def test_a_whole_day_anchor_counts_a_value_later_on_a_date_only_anchors_day(bench: Bench) -> None:
    # a date-only start is midnight: without whole_day, a CRP drawn at the start visit is not the baseline
    bench.rule(
        "r", {"at_anchor": {"expr": WHOLE_DAY, "anchor": {"first": ANAKINRA_START}, "whole_day": True}}
    )
    bench.events([anakinra("2009-03-01"), crp("2009-03-01T15:00", 7)])
    assert bench.state("r", "2009-04-01").value == 7


def test_a_whole_day_anchor_counts_a_value_after_a_timed_dose_up_to_the_days_last_instant(
    bench: Bench,
) -> None:
    bench.rule(
        "r", {"at_anchor": {"expr": WHOLE_DAY, "anchor": {"first": ANAKINRA_START}, "whole_day": True}}
    )
    bench.events(
        [
            anakinra("2009-03-01T08:00"),
            crp("2009-02-27", 3),
            crp("2009-03-01T23:59:59", 7),
            crp("2009-03-02", 9),
        ]
    )
    assert bench.state("r", "2009-04-01").value == 7


def test_an_anchor_without_whole_day_is_its_instant(bench: Bench) -> None:
    bench.rule("r", {"at_anchor": {"expr": WHOLE_DAY, "anchor": {"first": ANAKINRA_START}}})
    bench.events([anakinra("2009-03-01T08:00"), crp("2009-02-27", 3), crp("2009-03-01T09:00", 7)])
    assert bench.state("r", "2009-04-01").value == 3


def test_a_whole_day_anchor_is_unknown_until_its_day_is_over(bench: Bench) -> None:
    bench.rule(
        "r", {"at_anchor": {"expr": WHOLE_DAY, "anchor": {"first": ANAKINRA_START}, "whole_day": True}}
    )
    bench.events([crp("2009-02-27", 3), anakinra("2009-03-01T08:00")])
    result = bench.state("r", "2009-03-01T12:00")
    assert (result.value, result.why) == (None, "the day of the anakinra ends after the date")
    assert bench.state("r", "2009-03-01").value == 3  # a date is its last instant


def test_a_whole_day_anchor_uses_the_day_the_offset_lands_on(bench: Bench) -> None:
    bench.rule(
        "r",
        {
            "at_anchor": {
                "expr": WHOLE_DAY,
                "anchor": {"first": ANAKINRA_START},
                "offset": "1 month",
                "whole_day": True,
            }
        },
    )
    bench.events([anakinra("2009-01-31T08:00"), crp("2009-02-28T20:00", 7), crp("2009-03-01", 9)])
    assert bench.values("r", "2009-02-28", "2009-04-01") == [7, 7]


def test_an_unknown_at_a_whole_day_anchor_names_the_day(bench: Bench) -> None:
    bench.rule(
        "r", {"at_anchor": {"expr": WHOLE_DAY, "anchor": {"first": ANAKINRA_START}, "whole_day": True}}
    )
    bench.events([anakinra("2009-03-01T09:00"), crp("2009-03-20", 4)])
    assert bench.state("r", "2009-04-01").why == (
        "on the day of the anakinra (2009-03-01): no CRP recorded up to the date"
    )


def test_the_history_of_a_whole_day_anchor_changes_at_the_anchor_and_at_the_end_of_its_day(
    bench: Bench,
) -> None:
    bench.rule(
        "r", {"at_anchor": {"expr": WHOLE_DAY, "anchor": {"first": ANAKINRA_START}, "whole_day": True}}
    )
    bench.events([crp("2009-02-27", 3), anakinra("2009-03-01T08:00"), crp("2009-03-01T10:00", 5)])
    session = bench.session()
    end_of_day = datetime(2009, 3, 1, 23, 59, 59, 999999)
    assert [(r[1], r[2]) for r in _history(session, ["r"])] == [
        (datetime(2009, 2, 27), None),
        (datetime(2009, 3, 1, 8), None),
        (end_of_day, 5),
    ]
    assert [(r[1], r[2]) for r in _histories(session, ["r"])] == [
        (r[1], r[2]) for r in _history(session, ["r"])
    ]


def test_a_one_month_validity_at_a_month_end_counts_back_one_calendar_month(bench: Bench) -> None:
    # q − 1 month: 28 Feb − 1 month = 28 Jan, so a value of 31 January is still valid on
    # 28 February and too old from 1 March (1 March − 1 month = 1 February)
    bench.rule("r", {"latest": {"select": CRP, "within": "1 month"}})
    bench.events([crp("2009-01-31T10:00", 4)])
    assert bench.values("r", "2009-02-28", "2009-03-01") == [4, None]


def test_the_history_of_a_one_month_validity_changes_where_the_state_does(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "1 month"}})
    bench.events([crp("2009-01-31T10:00", 4), crp("2009-04-01T10:00", 5)])
    intervals = bench.session().history("X", ["r"])
    assert [(i["start"], i["value"]) for i in intervals] == [
        (datetime(2009, 1, 31, 10), 4),
        (datetime(2009, 3, 1), "unknown"),
        (datetime(2009, 4, 1, 10), 5),
    ]


def _histories(session: Session, rule_ids: list[str]) -> list[tuple[Any, ...]]:
    """Session.histories' intervals of patient X: (rule, start, value)."""
    session.histories(rule_ids)
    kinds = {rid: session.rules.rules[rid].type.kind for rid in rule_ids}
    rows = session.con.execute(
        "SELECT rule_id, start, b, x, why FROM tl_history ORDER BY rule_id, start"
    ).fetchall()
    return [(rid, start, b if kinds[rid] == "bool" else x, why) for rid, start, b, x, why in rows]


def _history(session: Session, rule_ids: list[str]) -> list[tuple[Any, ...]]:
    """Session.history's intervals of patient X, in the same form."""
    out = [
        (i["rule"], i["start"], None if i["value"] == "unknown" else i["value"], i["reason"])
        for i in session.history("X", rule_ids)
    ]
    return sorted(out, key=lambda r: r[:2])


def test_a_history_whose_last_event_is_at_the_last_microsecond_ends_with_an_interval_that_holds_it(
    bench: Bench,
) -> None:
    # intervals are [start, end): the last one runs to the midnight after the last day, so a
    # value that starts at that day's last instant has an interval, not an empty one
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    bench.events([crp("2009-03-01T10:00", 4), crp("2009-03-02T23:59:59.999999", 50)])
    session = bench.session()
    intervals = session.history("X", ["r"], end="2009-03-02")
    assert [(i["start"], i["end"], i["value"]) for i in intervals] == [
        (datetime(2009, 3, 1, 10), datetime(2009, 3, 2, 23, 59, 59, 999999), 4),
        (datetime(2009, 3, 2, 23, 59, 59, 999999), datetime(2009, 3, 3), 50),
    ]
    session.histories(["r"])
    ends = session.con.execute('SELECT "end" FROM tl_history ORDER BY start').fetchall()
    assert [e for (e,) in ends] == [i["end"] for i in intervals]


def test_a_rule_over_age_has_the_same_history_at_once_as_for_one_patient(bench: Bench) -> None:
    # age changes continuously: a rule that reads it cannot be looked up at its change points
    bench.rule("years", {"age": "years"})
    bench.rule("over_two", {"ge": [{"rule": "years"}, 2]})
    bench.events(
        [
            {"patient_id": "X", "kind": "birth", "occurred_at": "2007-03-01", "sex": "female"},
            crp("2009-02-01", 4),
            crp("2009-03-10", 5),
        ]
    )
    session = bench.session()
    got = _histories(session, ["years", "over_two"])
    assert got == _history(session, ["years", "over_two"])
    assert ("over_two", datetime(2009, 2, 1), False, None) in got


def test_a_rule_read_before_its_first_change_point_has_its_value_before_any_event(bench: Bench) -> None:
    # held_for samples the CRP rule 30 days before the first CRP, before its first change point
    bench.rule("crp_low", {"le": [{"latest": {"select": CRP, "within": "30 days"}}, "10 mg/L"]})
    bench.rule("held", {"held_for": {"expr": {"rule": "crp_low"}, "duration": "30 days"}})
    bench.events([crp("2009-03-01", 4), crp("2009-03-20", 5), crp("2009-04-15", 6)])
    session = bench.session()
    got = _histories(session, ["crp_low", "held"])
    assert got == _history(session, ["crp_low", "held"])
    assert got[0][:3] == ("crp_low", datetime(2009, 3, 1), True)
    assert ("held", datetime(2009, 3, 31), True, None) in got


def test_a_rule_others_read_changing_at_the_first_event_has_the_same_history_at_once(bench: Bench) -> None:
    # Session.histories takes such a rule's intervals from its values at its own change points:
    # one falls on the first clinical event (the history's origin), which must start the first
    # interval once, with the value there
    bench.rule("crp", {"latest": {"select": CRP, "within": "30 days"}})
    bench.rule("crp_low", {"le": [{"rule": "crp"}, "10 mg/L"]})
    bench.events([crp("2009-03-01", 4), crp("2009-03-20", 50)])
    session = bench.session()
    got = _histories(session, ["crp", "crp_low"])
    assert got == _history(session, ["crp", "crp_low"])
    assert [(start, value) for rid, start, value, _ in got if rid == "crp"] == [
        (datetime(2009, 3, 1), 4),
        (datetime(2009, 3, 20), 50),
    ]


def test_a_rule_others_read_changing_before_the_first_event_starts_its_history_with_the_value_then(
    bench: Bench,
) -> None:
    # the birth is recorded before the origin (the first clinical event, the CRP) and changes
    # the rule there: the history starts at the origin with the value taken at the birth
    bench.rule("born", {"exists": {"select": {"kind": "birth"}, "window": "ever"}})
    bench.rule("unborn", {"not": {"rule": "born"}})
    birth = {"patient_id": "X", "kind": "birth", "occurred_at": "2007-03-01", "sex": "female"}
    bench.events([birth, crp("2009-03-09", 4), crp("2009-03-20", 5)])
    session = bench.session()
    got = _histories(session, ["born", "unborn"])
    assert got == _history(session, ["born", "unborn"])
    assert got == [("born", datetime(2009, 3, 9), True, None), ("unborn", datetime(2009, 3, 9), False, None)]


def test_each_patients_history_at_once_starts_with_the_step_at_or_before_its_own_origin(bench: Bench) -> None:
    # Session.histories takes, per patient, a stepwise rule's last step at or before that
    # patient's origin: a birth before it (X), the origin itself (Y), nothing but STEP_ORIGIN
    # (Z, no birth) and a birth that is the origin (W, no clinical event) — in one run
    bench.rule("born", {"exists": {"select": {"kind": "birth"}, "window": "ever"}})
    bench.rule("crp", {"latest": {"select": CRP, "within": "30 days"}})
    bench.rule("crp_low", {"le": [{"rule": "crp"}, "10 mg/L"]})
    birth = {"kind": "birth", "occurred_at": "2007-03-01", "sex": "female"}
    bench.events(
        [
            {"patient_id": "X", **birth},
            crp("2009-03-09", 4),
            {**crp("2009-03-01", 50), "patient_id": "Y"},
            {**crp("2009-03-20", 5), "patient_id": "Y"},
            {**crp("2009-02-01", 6), "patient_id": "Z"},
            {"patient_id": "W", **birth},
        ]
    )
    session = bench.session()
    ids = ["born", "crp", "crp_low"]
    session.histories(ids)
    rows = session.con.execute(
        'SELECT patient_id, rule_id, start, "end", b, x, why FROM tl_history ORDER BY ALL'
    ).fetchall()
    kinds = {rid: session.rules.rules[rid].type.kind for rid in ids}
    want = sorted(
        (p, i["rule"], i["start"], i["end"], None if i["value"] == "unknown" or kinds[i["rule"]] != "bool" else i["value"],
         None if i["value"] == "unknown" or kinds[i["rule"]] == "bool" else i["value"], i["reason"])
        for p in ("W", "X", "Y", "Z")
        for i in session.history(p, ids)
    )  # fmt: skip
    assert rows == want
    firsts = {(p, rid): start for p, rid, start, *_ in reversed(rows)}
    assert firsts[("X", "born")] == firsts[("X", "crp")] == datetime(2009, 3, 9)
    assert firsts[("Y", "crp")] == datetime(2009, 3, 1)
    assert firsts[("Z", "born")] == datetime(2009, 2, 1)
    assert firsts[("W", "born")] == datetime(2007, 3, 1)
    assert ("W", "born", datetime(2007, 3, 1), datetime(2007, 3, 2), True, None, None) in rows


# ---- age and time since: counts of days that step at midnight, with no event there -------------

BORN_2000 = {"patient_id": "X", "kind": "birth", "occurred_at": "2000-01-01", "sex": "female"}
# 5 years of 365.25 days: 1,826 days (2004-12-31) is 4.9993 years, 1,827 (2005-01-01) 5.0021


def test_a_comparison_with_age_changes_in_a_history_at_the_midnight_it_crosses(bench: Bench) -> None:
    bench.rule("five", {"ge": [{"age": "years"}, 5]})
    bench.events([BORN_2000, crp("2001-06-01", 4), crp("2006-06-01", 4)])
    session = bench.session()
    got = _history(session, ["five"])
    assert [(start, value) for _, start, value, _ in got if start.year >= 2004] == [
        (datetime(2005, 1, 1), True)
    ]
    assert _histories(session, ["five"]) == got


def test_held_for_a_condition_on_age_is_false_from_the_midnight_it_stops_holding(bench: Bench) -> None:
    # the condition's last true moment is 2004-12-31 23:59:59.999999; no event lies near it
    bench.rule("young", {"held_for": {"expr": {"lt": [{"age": "years"}, 5]}, "duration": "2 days"}})
    bench.events([BORN_2000, crp("2001-06-01", 4)])
    assert bench.values("young", "2004-12-31", "2005-01-01T00:00", "2004-12-31T23:59") == [True, False, True]


def test_an_episode_of_a_condition_on_age_starts_at_the_midnight_it_first_holds(bench: Bench) -> None:
    bench.rule("r", {"in_episode": {"when": {"ge": [{"age": "years"}, 5]}, "merge_gap": "0 days"}})
    bench.events([BORN_2000, crp("2001-06-01", 4)])
    result = bench.state("r", "2017-03-01")
    assert (result.value, result.note) == (True, "episode from 2005-01-01")
    assert bench.values("r", "2004-12-31") == [False]


def test_a_threshold_in_another_unit_is_crossed_on_the_same_day(bench: Bench) -> None:
    # 60 months = 5 years (UCUM's mean Julian month and year): the same midnight
    bench.rule("r", {"in_episode": {"when": {"le": ["60 mo", {"age": "years"}]}, "merge_gap": "0 days"}})
    bench.events([BORN_2000, crp("2001-06-01", 4)])
    assert bench.state("r", "2006-01-01").note == "episode from 2005-01-01"


def test_a_comparison_through_arithmetic_with_constants_is_crossed_exactly(bench: Bench) -> None:
    # age in months, 60.0 reached on day 1,827 as well (1,827 / 365.25 × 12 = 60.02)
    bench.rule("months", {"mul": [{"age": "years"}, 12]})
    bench.rule("r", {"in_episode": {"when": {"gt": [{"rule": "months"}, 60]}, "merge_gap": "0 days"}})
    bench.events([BORN_2000, crp("2001-06-01", 4)])
    assert bench.state("r", "2006-01-01").note == "episode from 2005-01-01"


def test_time_since_a_start_below_a_limit_ends_on_the_day_the_count_reaches_it(bench: Bench) -> None:
    since = {"time_since": {"first": ANAKINRA_START, "unit": "days"}}
    bench.rule("r", {"in_episode": {"when": {"lt": [since, "14 d"]}, "merge_gap": "0 days"}})
    bench.events([anakinra("2009-03-01T10:00"), crp("2009-06-01", 4)])
    result = bench.state("r", "2009-03-14")
    assert (result.value, result.note) == (True, "episode from 2009-03-01")
    assert bench.values("r", "2009-03-01T09:59", "2009-03-14T23:59", "2009-03-15T00:00") == [
        False,
        True,
        False,
    ]


def test_time_since_the_last_event_restarts_its_count_at_each_event(bench: Bench) -> None:
    since = {"time_since": {"last": FEVER, "unit": "days"}}
    bench.rule("r", {"held_for": {"expr": {"le": [since, 3]}, "duration": "10 days"}})
    bench.events([fever("2009-03-01"), fever("2009-03-04"), fever("2009-03-07"), fever("2009-03-12")])
    # counts 0-3 from each fever; 2009-03-11 is day 4 after the fever of the 7th
    assert bench.values("r", "2009-03-10", "2009-03-11", "2009-03-20") == [None, False, False]
    assert bench.values("r", "2009-03-10T23:59") == [None]


def test_a_condition_true_before_any_event_has_an_episode_from_the_start_of_the_record(bench: Bench) -> None:
    no_fever_yet = {"not": {"exists": {"select": FEVER, "window": "ever"}}}
    bench.rule("r", {"in_episode": {"when": no_fever_yet, "merge_gap": "0 days"}})
    bench.events([crp("2009-02-01", 4), fever("2009-03-01")])
    result = bench.state("r", "2009-02-15")
    assert (result.value, result.note) == (True, "episode from the start of the record")
    assert bench.values("r", "2009-02-28T23:59", "2009-03-01") == [True, False]


def test_an_episode_from_the_start_of_the_record_has_no_start_in_its_explanation(bench: Bench) -> None:
    no_fever_yet = {"not": {"exists": {"select": FEVER, "window": "ever"}}}
    bench.rule("r", {"in_episode": {"when": no_fever_yet, "merge_gap": "0 days"}})
    bench.events([crp("2009-02-01", 4), fever("2009-03-01")])
    tree = bench.session().explain("X", "r", "2009-02-15")["tree"]["derivation"]
    assert tree.get("window", {}).get("from") is None


def test_a_constant_condition_is_one_episode_open_from_the_start_of_the_record(bench: Bench) -> None:
    bench.rule("r", {"episode_count": {"episodes": {"when": True, "merge_gap": "0 days"}, "window": "ever"}})
    bench.rule("inside", {"in_episode": {"when": True, "merge_gap": "0 days"}})
    bench.events([crp("2009-02-01", 4)])
    assert bench.values("r", "2009-02-15") == [1.0]
    assert bench.state("inside", "2009-02-15").note == "episode from the start of the record"


def test_an_episode_over_a_rule_with_a_declared_unit_starts_at_its_crossing(bench: Bench) -> None:
    bench.rule("age_mo", {"age": "years"}, unit="mo")
    bench.rule("r", {"in_episode": {"when": {"ge": [{"rule": "age_mo"}, 60]}, "merge_gap": "0 days"}})
    bench.events([BORN_2000, crp("2001-06-01", 4)])
    assert bench.state("r", "2006-01-01").note == "episode from 2005-01-01"


def test_an_episode_of_a_condition_names_no_end_and_no_event_after_the_date(bench: Bench) -> None:
    """Where a condition's episode ends is known only after the date: a CRP drawn later ends it
    here, and would move the end if it were shown; the events used are those up to the date."""
    high = {"gt": [{"latest": {"select": CRP, "within": "30 days"}}, 10]}
    bench.rule("r", {"in_episode": {"when": high, "merge_gap": "0 days"}})
    bench.events([crp("2009-03-01", 40), crp("2009-03-05", 30), crp("2009-03-08", 35), crp("2009-03-10", 4)])
    result = bench.state("r", "2009-03-06")
    assert (result.value, result.note) == (True, "episode from 2009-03-01")
    assert bench.session().explain("X", "r", "2009-03-06")["tree"]["derivation"]["events"] == [1, 2]
    assert result.evidence == [1, 2]


def test_explain_of_held_for_lists_every_moment_and_explains_the_one_that_decided(bench: Bench) -> None:
    """60 moments checked; the false one is the 56th. The old explanation showed the first 40
    and the clause at the last moment, so the moment that made it false was missing."""
    low = {"le": [{"latest": {"select": CRP, "within": "30 days"}}, 10]}
    bench.rule("r", {"held_for": {"expr": low, "duration": "120 days"}})
    start = date(2009, 1, 1)
    draws = [crp((start + timedelta(days=2 * i)).isoformat(), 20 if i == 55 else 4) for i in range(60)]
    bench.events(draws)
    tree = bench.session().explain("X", "r", "2009-04-30")["tree"]["derivation"]
    assert tree["value"] is False
    assert len(tree["checked"]) >= 60
    assert [c["at"][:10] for c in tree["checked"] if c["value"] is False] == ["2009-04-21"]
    assert tree["decided_at"].startswith("2009-04-21")
    assert tree["children"][0]["value"] is False


@pytest.mark.parametrize("threads", [1, 4])
def test_explain_of_held_for_lists_its_evidence_in_seq_order_whatever_duckdbs_threads(
    bench: Bench, threads: int
) -> None:
    """The evidence of every moment checked, each event once, as the replay gives it: not in the
    order DuckDB's join met them, which changed with its number of threads (a 2-core and a
    4-core machine explained the same state with the same events in other orders)."""
    low = {"le": [{"latest": {"select": CRP, "within": "30 days"}}, 10]}
    bench.rule("r", {"held_for": {"expr": low, "duration": "120 days"}})
    start = date(2009, 1, 1)
    bench.events([crp((start + timedelta(days=3 * i)).isoformat(), 4) for i in range(40)])
    session = bench.session()
    session.con.execute(f"SET threads = {threads}")
    events = session.explain("X", "r", "2009-04-30")["tree"]["derivation"]["events"]
    assert len(events) > 30
    assert events == sorted(set(events))


# ---- comparisons, units, arithmetic ----------------------------------------------------------------


def test_a_false_comparison_note_states_the_relation_that_holds(bench: Bench) -> None:
    bench.rule("r", {"lt": [{"latest": {"select": CRP, "within": "30 days"}}, 20]})
    bench.events([crp("2009-03-01", 35)])
    assert (bench.state("r", "2009-03-01").value, bench.state("r", "2009-03-01").note) == (
        False,
        "35 ≥ 20 mg/L",
    )


def test_a_false_comparison_of_two_expressions_notes_the_relation_that_holds(bench: Bench) -> None:
    latest = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"gt": [latest, {"mul": [latest, 2]}]})
    bench.events([crp("2009-03-01", 35)])
    assert bench.state("r", "2009-03-01").note == "35 ≤ 70 mg/L"


def test_a_negation_keeps_the_note_of_its_item(bench: Bench) -> None:
    bench.rule("r", {"not": {"exists": {"select": CRP, "window": "30 days"}}})
    bench.events([crp("2009-03-01", 35)])
    assert bench.state("r", "2009-03-01").note == "exists of CRP: 1 event(s) in the window"


def test_an_unknown_unless_rule_that_is_known_has_the_detail_of_its_value(bench: Bench) -> None:
    crp_seen = {"exists": {"select": CRP, "window": "30 days"}}
    bench.rule(
        "r", {"unknown_unless": {"value": {"not": crp_seen}, "condition": crp_seen, "reason": "no CRP"}}
    )
    bench.events([crp("2009-03-01", 35)])
    assert bench.state("r", "2009-03-01").note == "exists of CRP: 1 event(s) in the window"


def test_a_negative_zero_threshold_is_written_0_in_the_note(bench: Bench) -> None:
    # both evaluators write it the same way (the replay wrote "-0", the SQL engine "0")
    bench.rule("r", {"ge": [{"latest": {"select": CRP, "within": "30 days"}}, -0.0]})
    bench.events([crp("2009-03-01", 4)])
    assert bench.state("r", "2009-03-01").note == "4 ≥ 0 mg/L"


@pytest.mark.parametrize(
    ("op", "expected"),
    [("gt", False), ("ge", True), ("lt", False), ("le", True), ("eq", True), ("ne", False)],
)
def test_each_comparison_exactly_at_the_threshold(bench: Bench, op: str, expected: bool) -> None:
    bench.rule("r", {op: [{"latest": {"select": CRP, "within": "30 days"}}, "6 mg/L"]})
    bench.events([crp("2009-03-01", 6)])
    assert bench.values("r", "2009-03-01") == [expected]


def test_a_crp_in_mg_per_dl_is_compared_with_a_threshold_in_mg_per_l(bench: Bench) -> None:
    bench.rule("le", {"le": [{"latest": {"select": CRP, "within": "30 days"}}, "6 mg/L"]})
    bench.rule("lt", {"lt": [{"latest": {"select": CRP, "within": "30 days"}}, "6 mg/L"]})
    bench.events([crp("2009-03-01", 0.6, "mg/dL")])
    assert bench.values("le", "2009-03-01") == [True]
    assert bench.values("lt", "2009-03-01") == [False]


def test_a_threshold_in_mg_per_dl_is_converted_to_the_value_s_unit(bench: Bench) -> None:
    bench.rule("r", {"ge": [{"latest": {"select": CRP, "within": "30 days"}}, "0.6 mg/dL"]})
    bench.events([crp("2009-03-01", 6), crp("2009-03-02", 5.9)])
    assert bench.values("r", "2009-03-01", "2009-03-02") == [True, False]


CRP_IN_MG_PER_DL = {"latest": {"select": CRP, "within": "30 days"}}


def test_a_rule_reports_its_value_in_the_unit_it_declares(bench: Bench) -> None:
    # computed in mg/L (the CRP code's unit), declared mg/dL: 4 mg/L is 0.4 mg/dL, not 4 mg/dL
    bench.rule("crp_dl", CRP_IN_MG_PER_DL, unit="mg/dL")
    bench.events([crp("2009-03-01", 4)])
    result = bench.state("crp_dl", "2009-03-01")
    assert (result.value, result.unit) == (0.4, "mg/dL")


def test_a_rule_that_reads_another_reads_it_in_its_declared_unit(bench: Bench) -> None:
    bench.rule("crp_dl", CRP_IN_MG_PER_DL, unit="mg/dL")
    bench.rule("above_3_mg_l", {"gt": [{"rule": "crp_dl"}, "3 mg/L"]})
    bench.rule("above_5_mg_l", {"gt": [{"rule": "crp_dl"}, "5 mg/L"]})
    bench.events([crp("2009-03-01", 4)])
    assert bench.values("above_3_mg_l", "2009-03-01") == [True]
    assert bench.values("above_5_mg_l", "2009-03-01") == [False]


def test_explain_shows_a_rule_in_its_declared_unit_and_its_definition_as_computed(bench: Bench) -> None:
    bench.rule("crp_dl", CRP_IN_MG_PER_DL, unit="mg/dL")
    bench.events([crp("2009-03-01", 4)])
    tree = bench.session().explain("X", "crp_dl", "2009-03-01")["tree"]
    assert (tree["value"], tree["unit"]) == (0.4, "mg/dL")
    assert (tree["derivation"]["value"], tree["derivation"]["unit"]) == (4.0, "mg/L")


def test_a_history_gives_a_rule_in_its_declared_unit(bench: Bench) -> None:
    bench.rule("crp_dl", CRP_IN_MG_PER_DL, unit="mg/dL")
    bench.events([crp("2009-03-01", 4), crp("2009-03-02", 12)])
    values = [r["value"] for r in bench.session().history("X", ["crp_dl"])]
    assert values[-2:] == [0.4, 1.2]


def test_a_fahrenheit_temperature_at_the_fever_threshold_is_fever(bench: Bench) -> None:
    febrile = {"kind": "body_temperature", "where": {"value": {"ge": "38.0 Cel"}}}
    bench.rule("r", {"exists": {"select": febrile, "window": "1 day"}})
    bench.events([temperature("2009-03-01", 100.4, "[degF]"), temperature("2009-03-02", 100.3, "[degF]")])
    assert bench.values("r", "2009-03-01", "2009-03-02") == [True, False]


def test_a_comparison_with_an_unknown_side_is_unknown_with_its_reason(bench: Bench) -> None:
    bench.rule("r", {"gt": [{"latest": {"select": CRP, "within": "30 days"}}, "6 mg/L"]})
    result = bench.state("r", "2009-03-01")
    assert (result.value, result.why) == (None, "no CRP recorded up to the date")


@pytest.mark.parametrize(
    ("value", "baseline", "expected"), [(0, 0, 0.0), (2, 0, math.inf), (7, 10, -30.0), (13, 10, 30.0)]
)
def test_pct_change_from_a_baseline(bench: Bench, value: float, baseline: float, expected: float) -> None:
    bench.rule("r", {"pct_change": {"value": value, "baseline": baseline}})
    assert bench.values("r", "2009-03-01") == [expected]


def test_pct_change_from_a_measured_baseline_of_zero_is_infinite_worsening(bench: Bench) -> None:
    latest = {"latest": {"select": CRP, "within": "90 days"}}
    baseline = {"at_anchor": {"expr": latest, "anchor": {"first": ANAKINRA_START}}}
    bench.rule("r", {"pct_change": {"value": latest, "baseline": baseline}})
    bench.events([crp("2009-03-01", 0), anakinra("2009-03-01"), crp("2009-04-01", 2)])
    assert bench.values("r", "2009-03-15", "2009-04-01") == [0, math.inf]
    assert bench.session().state("X", "2009-04-01", ["r"])[0].to_json()["value"] == "Infinity"


def test_division_by_zero_is_unknown_with_a_reason(bench: Bench) -> None:
    bench.rule("r", {"div": [6, 0]})
    result = bench.state("r", "2009-03-01")
    assert (result.value, result.why) == (None, "division by zero")


def test_division_of_three_operands_goes_left_to_right(bench: Bench) -> None:
    bench.rule("r", {"div": [12, 2, 3]})
    assert bench.values("r", "2009-03-01") == [2]


def test_clip_keeps_an_unknown_value_unknown(bench: Bench) -> None:
    bench.rule(
        "r", {"clip": {"value": {"latest": {"select": CRP, "within": "30 days"}}, "low": 1, "high": 10}}
    )
    bench.events([crp("2009-03-01", 50), crp("2009-05-01", 0.5)])
    assert bench.values("r", "2009-02-01", "2009-03-01", "2009-05-01") == [None, 10, 1]


def test_coalesce_takes_the_first_known_value_and_its_evidence(bench: Bench) -> None:
    first = {"latest": {"select": CRP, "within": "1 day"}}
    second = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"coalesce": [first, second, 0]})
    bench.events([crp("2009-03-01", 5, event_id="c")])
    assert bench.values("r", "2009-03-01", "2009-03-10", "2009-05-01") == [5, 5, 0]
    assert bench.state("r", "2009-03-10").evidence == seqs_of(bench.store, "c")
    assert bench.state("r", "2009-05-01").evidence == []


def test_coalesce_of_a_count_of_nothing_true_carries_no_other_item_s_evidence(bench: Bench) -> None:
    none_true = {"count_true": [{"gt": [{"latest": {"select": CRP, "within": "30 days"}}, "100 mg/L"]}]}
    bench.rule("r", {"coalesce": [none_true, {"count": {"select": CRP, "window": "30 days"}}]})
    bench.events([crp("2009-03-01", 5)])
    result = bench.state("r", "2009-03-01")
    assert (result.value, result.evidence) == (0, [])


# ---- three-valued logic and reasons --------------------------------------------------------------

UNKNOWN = {"latest": {"select": CRP, "within": "1 day"}}  # nothing recorded: unknown
UNKNOWN_BOOL = {"gt": [UNKNOWN, "6 mg/L"]}


@pytest.mark.parametrize(
    ("define", "expected"),
    [
        ({"all": [True, UNKNOWN_BOOL]}, None),
        ({"all": [False, UNKNOWN_BOOL]}, False),
        ({"any": [True, UNKNOWN_BOOL]}, True),
        ({"any": [False, UNKNOWN_BOOL]}, None),
        ({"not": UNKNOWN_BOOL}, None),
        ({"at_least": {"n": 2, "of": [True, UNKNOWN_BOOL, False]}}, None),
        ({"at_least": {"n": 2, "of": [True, UNKNOWN_BOOL, True]}}, True),
        ({"at_least": {"n": 2, "of": [False, UNKNOWN_BOOL, False]}}, False),
        ({"count_true": [True, UNKNOWN_BOOL, True]}, 2),
        ({"eq": [UNKNOWN_BOOL, True]}, None),
    ],
)
def test_three_valued_logic(bench: Bench, define: Any, expected: Any) -> None:
    bench.rule("r", define)
    result = bench.state("r", "2009-03-01")
    assert result.value == expected if expected is not None else result.value is None
    if expected is None:
        assert result.why == "no CRP recorded up to the date"


def test_unknown_unless_gives_its_reason_when_the_condition_is_false(bench: Bench) -> None:
    condition = {"exists": {"select": TEMPERATURE, "window": "1 day"}}
    bench.rule(
        "r", {"unknown_unless": {"value": True, "condition": condition, "reason": "no temperature taken"}}
    )
    bench.events([temperature("2009-03-01", 37)])
    assert bench.values("r", "2009-03-01") == [True]
    result = bench.state("r", "2009-03-02")
    assert (result.value, result.why) == (None, "no temperature taken")


def test_unknown_unless_adds_the_condition_s_own_reason_when_it_is_unknown(bench: Bench) -> None:
    bench.rule(
        "r", {"unknown_unless": {"value": True, "condition": UNKNOWN_BOOL, "reason": "too little recorded"}}
    )
    assert bench.state("r", "2009-03-01").why == "too little recorded; no CRP recorded up to the date"


def test_all_names_each_distinct_unknown_reason_once(bench: Bench) -> None:
    other = {"gt": [{"latest": {"select": {"kind": "lab", "code": "4537-7"}, "within": "1 day"}}, "20 mm/h"]}
    bench.rule("r", {"all": [UNKNOWN_BOOL, other, UNKNOWN_BOOL]})
    assert bench.state("r", "2009-03-01").why == (
        "no CRP recorded up to the date; no ESR (Westergren) recorded up to the date"
    )


def test_at_least_that_is_false_names_the_events_of_the_false_items(bench: Bench) -> None:
    low_crp = {"gt": [{"latest": {"select": CRP, "within": "30 days"}}, "6 mg/L"]}
    bench.rule("r", {"at_least": {"n": 1, "of": [low_crp]}})
    bench.events([crp("2009-03-01", 2, event_id="c")])
    result = bench.state("r", "2009-03-01")
    assert (result.value, result.evidence) == (False, seqs_of(bench.store, "c"))


def test_all_that_is_false_names_only_the_events_of_the_false_items(bench: Bench) -> None:
    bench.rule(
        "r",
        {
            "all": [
                {"le": [{"latest": {"select": CRP, "within": "30 days"}}, "6 mg/L"]},
                {"exists": {"select": FEVER, "window": "7 days"}},
            ]
        },
    )
    bench.events([crp("2009-03-01", 2, event_id="c"), fever("2009-02-01", event_id="f")])
    result = bench.state("r", "2009-03-01")
    assert (result.value, result.evidence) == (False, [])


# ---- anchors, persistence ------------------------------------------------------------------------


def test_at_anchor_after_the_date_uses_no_event_from_after_the_date(bench: Bench) -> None:
    expr = {"latest": {"select": CRP, "within": "30 days"}}
    bench.rule("r", {"at_anchor": {"expr": expr, "anchor": {"first": ANAKINRA_START}, "offset": "10 days"}})
    bench.events([anakinra("2009-03-01", event_id="a"), crp("2009-03-05", 7, event_id="c")])
    result = bench.state("r", "2009-03-03")
    assert (result.value, result.evidence) == (None, seqs_of(bench.store, "a"))
    assert bench.state("r", "2009-03-11").evidence == seqs_of(bench.store, "a", "c")


def test_held_for_is_true_exactly_when_the_duration_has_passed(bench: Bench) -> None:
    bench.rule("r", {"held_for": {"expr": {"on_drug": "anakinra"}, "duration": "7 days"}})
    bench.events([anakinra("2009-03-01")])
    assert bench.values("r", "2009-03-07T23:59", "2009-03-08T00:00", "2009-03-07") == [False, True, False]


def test_held_for_is_false_when_the_state_lapsed_inside_the_duration(bench: Bench) -> None:
    bench.rule("r", {"held_for": {"expr": {"on_drug": "anakinra"}, "duration": "7 days"}})
    bench.events([anakinra("2009-03-01"), anakinra("2009-03-05", "medication_stop"), anakinra("2009-03-06")])
    assert bench.values("r", "2009-03-12", "2009-03-13") == [False, True]


def test_held_for_names_each_distinct_unknown_reason_once_in_order(bench: Bench) -> None:
    expr = {"not": {"exists": {"select": FEVER, "window": "1 day"}}}
    unless = {
        "unknown_unless": {
            "value": expr,
            "condition": {"exists": {"select": TEMPERATURE, "window": "1 day"}},
            "reason": "no temperature",
        }
    }
    bench.rule("r", {"held_for": {"expr": unless, "duration": "3 days"}})
    bench.events([temperature("2009-03-01", 37)])
    result = bench.state("r", "2009-03-03")
    assert (result.value, result.why) == (
        None,
        "not known at every moment of the last 3 days: no temperature",
    )


def test_held_for_names_each_clause_of_its_moments_reasons_once(bench: Bench) -> None:
    def known_if(kind: str, reason: str) -> dict[str, Any]:
        value = {"not": {"exists": {"select": FEVER, "window": "1 day"}}}
        condition = {"exists": {"select": {"kind": kind}, "window": "2 days"}}
        return {"unknown_unless": {"value": value, "condition": condition, "reason": reason}}

    both = {"all": [known_if("body_temperature", "no temperature"), known_if("weight", "no weight")]}
    bench.rule("r", {"held_for": {"expr": both, "duration": "5 days"}})
    # before the weight and after its 2 days: both reasons; in between: the temperature's only
    bench.events(
        [{"patient_id": "X", "kind": "weight", "occurred_at": "2009-03-01", "value": 20, "unit": "kg"}]
    )
    result = bench.state("r", "2009-03-05")
    assert (result.value, result.why) == (
        None,
        "not known at every moment of the last 5 days: no temperature; no weight",
    )


# ---- drugs --------------------------------------------------------------------------------------------


def prednisolone(
    at: str, kind: str = "medication_start", route: str | None = "oral", **extra: Any
) -> dict[str, Any]:
    row: dict[str, Any] = {
        "patient_id": "X",
        "kind": kind,
        "drug": "prednisolone",
        "occurred_at": at,
        **extra,
    }
    if kind != "medication_stop":
        row.update(dose=1, dose_unit="mg/kg", frequency="daily")
        if route:
            row["route"] = route
    return row


SYSTEMIC = {"on_drug": {"drugs": ["prednisolone"], "except_routes": ["topical"]}}


def test_on_drug_except_a_route_does_not_read_a_start_by_that_route(bench: Bench) -> None:
    # prednisolone eye drops for uveitis are not a systemic steroid
    bench.rule("r", SYSTEMIC)
    bench.rule("any_route", {"on_drug": "prednisolone"})
    bench.events([prednisolone("2009-03-01", route="topical")])
    assert bench.values("r", "2009-03-02") == [False]
    assert bench.values("any_route", "2009-03-02") == [True]


def test_on_drug_except_a_route_says_so_when_nothing_else_was_recorded(bench: Bench) -> None:
    bench.rule("r", SYSTEMIC)
    bench.events([prednisolone("2009-03-01", route="topical")])
    assert (
        bench.state("r", "2009-03-02").note
        == "none of prednisolone recorded up to the date other than by topical route"
    )


def test_on_drug_except_a_route_keeps_an_oral_course_through_a_later_topical_start(bench: Bench) -> None:
    bench.rule("r", SYSTEMIC)
    bench.events(
        [
            prednisolone("2009-03-01", event_id="oral"),
            prednisolone("2009-03-10", route="topical", event_id="drops"),
        ]
    )
    result = bench.state("r", "2009-03-15")
    assert (result.value, result.evidence) == (True, seqs_of(bench.store, "oral"))


def test_on_drug_except_a_route_counts_a_start_without_a_route(bench: Bench) -> None:
    bench.rule("r", SYSTEMIC)
    bench.events([prednisolone("2009-03-01", route=None)])
    assert bench.values("r", "2009-03-02") == [True]


def test_on_drug_except_a_route_ends_at_a_stop_which_has_no_route(bench: Bench) -> None:
    bench.rule("r", SYSTEMIC)
    bench.events([prednisolone("2009-03-01"), prednisolone("2009-03-09", "medication_stop")])
    assert bench.values("r", "2009-03-08", "2009-03-09") == [True, False]


def test_on_drug_ends_at_the_stop_and_continues_through_a_dose_change(bench: Bench) -> None:
    bench.rule("r", {"on_drug": "anakinra"})
    bench.events(
        [
            anakinra("2009-03-01"),
            anakinra("2009-03-05", "medication_dose_change"),
            anakinra("2009-03-09", "medication_stop"),
        ]
    )
    assert bench.values("r", "2009-02-28", "2009-03-01", "2009-03-06", "2009-03-09") == [
        False,
        True,
        True,
        False,
    ]


def pulse(at: str, drug: str = "methylprednisolone") -> dict[str, Any]:
    """A single dose (frequency once): an intravenous steroid pulse."""
    return {"patient_id": "X", "kind": "medication_start", "drug": drug, "occurred_at": at, "dose": 30,
            "dose_unit": "mg/kg", "frequency": "once", "route": "iv"}  # fmt: skip


def test_on_drug_a_single_dose_is_on_from_its_time_to_the_end_of_its_day(bench: Bench) -> None:
    """Helper 39: one pulse recorded as a start kept the patient on the drug for ever."""
    bench.rule("r", {"on_drug": "methylprednisolone"})
    bench.events([pulse("2009-03-01T10:00")])
    assert bench.values("r", "2009-03-01T09:59", "2009-03-01T10:00", "2009-03-01", "2009-03-02") == [
        False,
        True,
        True,
        False,
    ]


def test_on_drug_a_single_dose_neither_starts_nor_ends_a_course(bench: Bench) -> None:
    bench.rule("r", {"on_drug": "prednisolone"})
    bench.events([prednisolone("2009-03-01"), pulse("2009-03-05", "prednisolone"),
                  prednisolone("2009-03-20", "medication_stop"), pulse("2009-03-25", "prednisolone")])  # fmt: skip
    assert bench.values("r", "2009-03-10", "2009-03-20", "2009-03-25", "2009-03-26") == [
        True,
        False,
        True,
        False,
    ]


def test_on_drug_names_a_single_dose_as_such(bench: Bench) -> None:
    bench.rule("r", {"on_drug": "methylprednisolone"})
    bench.events([pulse("2009-03-01")])
    assert bench.state("r", "2009-04-01").note == "methylprednisolone: single dose on 2009-03-01"


def test_on_drug_a_single_dose_and_a_stop_at_one_instant_are_both_read(bench: Bench) -> None:
    """Helper 41: the SQL engine kept one medication event per instant, so a pulse given as the
    course stopped hid the stop (on for ever), or was hidden by it."""
    bench.rule("r", {"on_drug": "prednisolone"})
    bench.events([prednisolone("2009-01-01"), prednisolone("2009-02-01", "medication_stop"),
                  pulse("2009-02-01", "prednisolone")])  # fmt: skip
    assert bench.values("r", "2009-02-01", "2009-02-02", "2009-03-01") == [True, False, False]
    spans = [(i["start"], i["value"]) for i in bench.session().history("X", ["r"], end="2009-03-01")]
    assert spans == [(datetime(2009, 1, 1), True), (datetime(2009, 2, 2), False)]


def test_on_drug_a_single_dose_at_a_course_start_keeps_the_course(bench: Bench) -> None:
    bench.rule("r", {"on_drug": "prednisolone"})
    bench.events([prednisolone("2009-02-01"), pulse("2009-02-01", "prednisolone")])
    assert bench.values("r", "2009-03-01") == [True]
    spans = [(i["start"], i["value"]) for i in bench.session().history("X", ["r"], end="2009-03-01")]
    assert spans == [(datetime(2009, 2, 1), True)]


def test_daily_dose_goes_on_through_a_single_dose_in_the_course(bench: Bench) -> None:
    """Helper 41: a pulse dose change inside a course made the daily dose 0 while on the drug."""
    bench.rule("r", {"daily_dose": {"drug": "anakinra", "per_kg": True, "weight_within": "90 days"}})
    bench.events([{"patient_id": "X", "kind": "weight", "occurred_at": "2009-01-01", "value": 20, "unit": "kg"},
                  anakinra("2009-01-01", dose=40), anakinra("2009-01-15T09:00", "medication_dose_change", dose=100,
                  frequency="once")])  # fmt: skip
    assert bench.values("r", "2009-01-14", "2009-01-15", "2009-01-20") == [2.0, 2.0, 2.0]


def test_the_history_of_on_drug_ends_a_single_dose_at_the_midnight_after_it(bench: Bench) -> None:
    bench.rule("r", {"on_drug": "methylprednisolone"})
    bench.events([pulse("2009-03-01T10:00"), crp("2009-03-05", 3)])
    spans = [(i["start"], i["end"], i["value"]) for i in bench.session().history("X", ["r"])]
    assert spans == [
        (datetime(2009, 3, 1, 10), datetime(2009, 3, 2), True),
        (datetime(2009, 3, 2), datetime(2009, 3, 6), False),
    ]


def test_daily_dose_per_kg_uses_the_frequency_and_the_latest_valid_weight(bench: Bench) -> None:
    bench.rule("r", {"daily_dose": {"drug": "anakinra", "per_kg": True, "weight_within": "30 days"}})
    weight = {"patient_id": "X", "kind": "weight", "occurred_at": "2009-03-01", "value": 25, "unit": "kg"}
    bench.events([weight, anakinra("2009-03-01", frequency="bid")])
    assert bench.values("r", "2009-03-01", "2009-03-31") == [4, None]
    assert (
        bench.state("r", "2009-03-31").why
        == "no weight within 30 days: the latest, on 2009-03-01, is too old"
    )


@pytest.mark.parametrize(
    ("frequency", "days"),
    [("every_3_days", 3), ("every_10_days", 10), ("every_3_weeks", 21), ("every_6_weeks", 42),
     ("every_8_weeks", 56), ("every_12_weeks", 84)],
)  # fmt: skip
def test_daily_dose_of_a_taper_interval_is_the_dose_over_its_days(
    bench: Bench, frequency: str, days: int
) -> None:
    bench.rule("r", {"daily_dose": {"drug": "canakinumab", "per_kg": False}})
    bench.events([anakinra("2009-03-01", drug="canakinumab", dose=840, frequency=frequency)])
    assert bench.values("r", "2009-03-01") == [pytest.approx(840 / days)]


@pytest.mark.parametrize(
    ("dose", "weight"), [({"dose": 4, "dose_unit": "mg/kg"}, None), ({"dose": 200, "dose_unit": "mg"}, 50)],
    ids=["in-mg-per-kg", "in-mg-by-weight"],
)  # fmt: skip
def test_a_dose_every_4_weeks_times_28_days_is_exactly_the_dose_at_a_threshold(
    bench: Bench, dose: dict[str, Any], weight: float | None
) -> None:
    """canakinumab 4 mg/kg every 4 weeks: its daily dose (1/28 of it) times 28 d is 4 mg/kg,
    both at and not above a "4 mg/kg" threshold (at 6 decimals it was 3.999996: below)."""
    per_course = {"mul": [{"daily_dose": {"drug": "canakinumab"}}, "28 d"]}
    bench.rule("at_least", {"ge": [per_course, "4 mg/kg"]})
    bench.rule("at_most", {"le": [per_course, "4 mg/kg"]})
    rows = [anakinra("2009-03-01", drug="canakinumab", frequency="every_4_weeks", **dose)]
    if weight is not None:
        rows.append(
            {"patient_id": "X", "kind": "weight", "occurred_at": "2009-03-01", "value": weight, "unit": "kg"}
        )
    bench.events(rows)
    assert bench.values("at_least", "2009-03-01") == [True]
    assert bench.values("at_most", "2009-03-01") == [True]


def test_normal_with_a_lower_limit_only_names_it_once_in_its_note(bench: Bench) -> None:
    bench.rule(
        "r",
        {"normal": {"select": {"kind": "lab", "code": "777-3"}, "within": "30 days", "lower": "150 10*9/L"}},
    )
    bench.events(
        [
            {
                "patient_id": "X",
                "kind": "lab",
                "code": "777-3",
                "occurred_at": "2009-03-01",
                "value": 140,
                "unit": "10*9/L",
            }
        ]
    )
    assert bench.state("r", "2009-03-01").note == "platelets 140 10*9/L vs the limit ≥ 150 (no lab range)"


def test_daily_dose_without_a_frequency_is_unknown(bench: Bench) -> None:
    bench.rule("r", {"daily_dose": {"drug": "anakinra", "per_kg": False}})
    start = {k: v for k, v in anakinra("2009-03-01").items() if k != "frequency"}
    bench.events([start])
    result = bench.state("r", "2009-03-01")
    assert (result.value, result.why) == (None, "frequency of the anakinra dose not recorded")


def tocilizumab(at: str, dose: float, unit: str, **extra: Any) -> dict[str, Any]:
    return {"patient_id": "X", "kind": "medication_start", "drug": "tocilizumab", "occurred_at": at,
            "dose": dose, "dose_unit": unit, "frequency": "every_2_weeks", **extra}  # fmt: skip


def test_latest_dose_of_a_selector_in_mg_per_kg_reads_only_doses_recorded_per_kg(bench: Bench) -> None:
    select = {"kind": "medication_start", "drug": "tocilizumab", "dose_unit": "mg/kg"}
    bench.rule("r", {"latest": {"select": select, "field": "dose", "within": "90 days"}})
    bench.events([tocilizumab("2009-03-01", 8, "mg/kg"), tocilizumab("2009-03-15", 160, "mg")])
    result = bench.state("r", "2009-03-20")
    assert (result.value, result.unit) == (8, "mg/kg")


def test_a_latest_dose_says_its_unit_and_a_missing_one_its_dose_unit(bench: Bench) -> None:
    select = {"kind": "medication_start", "drug": "tocilizumab", "dose_unit": "mg"}
    bench.rule("r", {"latest": {"select": select, "field": "dose", "within": "90 days"}})
    bench.events(
        [tocilizumab("2009-03-01", 160, "mg"), tocilizumab("2009-03-01", 8, "mg/kg", patient_id="Y")]
    )
    assert bench.state("r", "2009-03-20").note == "tocilizumab in mg 160 mg on 2009-03-01"
    assert (
        bench.session().state("Y", "2009-03-20", ["r"])[0].why
        == "no tocilizumab in mg recorded up to the date"
    )


def test_a_dose_recorded_in_grams_is_read_in_mg_by_a_selector_in_mg(bench: Bench) -> None:
    select = {"kind": "medication_start", "drug": "tocilizumab", "dose_unit": "mg"}
    bench.rule("r", {"max": {"select": select, "field": "dose", "window": "90 days"}})
    bench.events([tocilizumab("2009-03-01", 0.16, "g"), tocilizumab("2009-03-15", 12, "mg/kg")])
    result = bench.state("r", "2009-03-20")
    assert (result.value, result.unit) == (160, "mg")


def test_a_where_condition_on_the_dose_is_in_the_selectors_dose_unit(bench: Bench) -> None:
    select = {"kind": "medication_start", "dose_unit": "mg/kg", "where": {"dose": {"ge": 10}}}
    bench.rule("r", {"count": {"select": select, "window": "90 days"}})
    bench.events([tocilizumab("2009-03-01", 12, "mg/kg"), tocilizumab("2009-03-15", 160, "mg")])
    assert bench.values("r", "2009-03-20") == [1]


# ---- as known at -------------------------------------------------------------------------------------


def test_a_correction_recorded_after_the_as_known_at_moment_is_invisible(bench: Bench) -> None:
    bench.rule("r", {"normal": {"select": CRP, "within": "30 days", "upper": "6 mg/L"}})
    store = bench.events([crp("2009-03-01", 5, event_id="c")])
    before = store.con.execute("SELECT max(recorded_at) FROM batches").fetchone()[0]
    correct(store, "c", {"value": "50"}, reason="transcription error", author="tests")
    then, now = bench.session(as_known_at=before), bench.session()
    assert then.state("X", "2009-03-01", ["r"])[0].value is True
    assert now.state("X", "2009-03-01", ["r"])[0].value is False
    assert then.manifest()["high_water"] == 1
    assert now.manifest()["high_water"] == 2


def test_an_event_ingested_after_the_as_known_at_moment_is_invisible(bench: Bench) -> None:
    bench.rule("r", {"latest": {"select": CRP, "within": "30 days"}})
    store = bench.events([crp("2009-03-01", 5)])
    before = store.con.execute("SELECT max(recorded_at) FROM batches").fetchone()[0]
    append_rows(store, [crp("2009-03-02", 7)], author="tests")
    assert bench.session(as_known_at=before).state("X", "2009-03-05", ["r"])[0].value == 5
    assert bench.session().state("X", "2009-03-05", ["r"])[0].value == 7


# ---- episodes -----------------------------------------------------------------------------------------


def test_episodes_whose_gap_equals_the_merge_gap_merge(bench: Bench) -> None:
    window = {"start": "-1 year", "end": "0 days"}
    bench.rule(
        "r",
        {
            "episode_count": {
                "episodes": {"select": {"kind": "mas_episode"}, "merge_gap": "14 days"},
                "window": window,
            }
        },
    )
    bench.events([mas("2009-03-01", "2009-03-05T10:00"), mas("2009-03-19T10:00", "2009-03-25")])
    assert bench.values("r", "2009-04-01") == [1]


def test_episodes_whose_gap_exceeds_the_merge_gap_stay_apart(bench: Bench) -> None:
    window = {"start": "-1 year", "end": "0 days"}
    bench.rule(
        "r",
        {
            "episode_count": {
                "episodes": {"select": {"kind": "mas_episode"}, "merge_gap": "14 days"},
                "window": window,
            }
        },
    )
    bench.events([mas("2009-03-01", "2009-03-05T10:00"), mas("2009-03-19T10:01", "2009-03-25")])
    assert bench.values("r", "2009-04-01") == [2]


def test_a_date_only_end_covers_its_day_so_fourteen_free_days_are_a_fourteen_day_gap(bench: Bench) -> None:
    window = {"start": "-1 year", "end": "0 days"}
    bench.rule(
        "r",
        {
            "episode_count": {
                "episodes": {"select": {"kind": "mas_episode"}, "merge_gap": "14 days"},
                "window": window,
            }
        },
    )
    # ended on 5 March (the whole day); 6-19 March are free; the next starts on 20 March
    bench.events(
        [mas("2009-03-01", "2009-03-05"), mas("2009-03-20", "2009-03-25"), mas("2009-04-10", "2009-04-11")]
    )
    assert bench.values("r", "2009-05-01") == [2]


def test_an_unresolved_episode_stays_open(bench: Bench) -> None:
    bench.rule("r", {"in_episode": {"select": {"kind": "mas_episode"}, "merge_gap": "0 days"}})
    bench.events([mas("2009-03-01")])
    assert bench.values("r", "2009-02-28", "2009-03-01", "2010-03-01") == [False, True, True]


def test_an_episode_from_a_condition_lasts_while_the_condition_holds(bench: Bench) -> None:
    bench.rule("r", {"in_episode": {"when": {"on_drug": "anakinra"}, "merge_gap": "0 days"}})
    bench.events([anakinra("2009-03-01"), anakinra("2009-03-05", "medication_dose_change")])
    assert bench.values("r", "2009-02-28", "2009-03-01", "2009-03-06", "2009-06-01") == [
        False,
        True,
        True,
        True,
    ]


def test_an_episode_from_a_condition_ends_at_the_instant_the_condition_stops(bench: Bench) -> None:
    bench.rule("r", {"in_episode": {"when": {"on_drug": "anakinra"}, "merge_gap": "0 days"}})
    bench.events([anakinra("2009-03-01"), anakinra("2009-03-05T10:00", "medication_stop")])
    assert bench.values("r", "2009-03-05T09:59", "2009-03-05T10:00") == [True, False]


def test_episode_count_with_an_anchored_window_and_no_anchor_is_unknown(bench: Bench) -> None:
    window = {"start": "0 days", "end": "30 days", "anchor": {"first": ANAKINRA_START}}
    bench.rule("r", {"episode_count": {"episodes": {"select": {"kind": "mas_episode"}}, "window": window}})
    bench.events([mas("2009-03-01", "2009-03-05")])
    result = bench.state("r", "2009-05-01")
    assert (result.value, result.why) == (None, "no anakinra recorded up to the date")


def test_in_episode_ignores_an_episode_that_starts_after_the_date(bench: Bench) -> None:
    bench.rule("r", {"in_episode": {"select": {"kind": "mas_episode"}, "merge_gap": "14 days"}})
    bench.events([mas("2009-03-01", "2009-03-05"), mas("2009-03-12", "2009-03-20")])
    assert bench.values("r", "2009-03-08") == [False]


def _one_crp(bench: Bench, **ref: float) -> None:
    bench.rule("r", {"normal": {"select": CRP, "within": "30 days", "upper": "6 mg/L"}})
    bench.events([{"patient_id": "X", "kind": "lab", "code": "1988-5", "occurred_at": "2009-03-01", "value": 8,
                   "unit": "mg/L", **ref}])  # fmt: skip


@pytest.mark.parametrize(
    ("ref", "value", "note"),
    [
        ({"ref_low": 0}, False, "CRP 8 mg/L vs the lab's reference range ≥ 0, the limit ≤ 6"),
        ({"ref_high": 10}, True, "CRP 8 mg/L vs the lab's reference range ≤ 10"),
        ({"ref_low": 0, "ref_high": 10}, True, "CRP 8 mg/L vs the lab's reference range 0–10"),
    ],
    ids=["lab-low-only", "lab-high-only", "lab-both"],
)
def test_normal_names_which_bound_is_the_labs_and_which_the_rules(
    bench: Bench, ref: dict[str, float], value: bool, note: str
) -> None:
    # a lab giving one bound: the rule's limit stands in for the other (a CRP of 8 above the 6 mg/L limit)
    _one_crp(bench, **ref)
    result = bench.state("r", "2009-03-01")  # the replay and the SQL engine, checked alike
    assert (result.value, result.note) == (value, note)


# ---- anchored windows from a date-only anchor (README, "Anchored windows") ---------------------


def _after_start(end: str, end_inclusive: bool) -> dict[str, Any]:
    window = {"anchor": {"first": ANAKINRA_START}, "start": "0 days", "end": end, "start_inclusive": True}
    return {
        "exists": {"select": {"kind": "mas_episode"}, "window": {**window, "end_inclusive": end_inclusive}}
    }


def test_an_anchored_30_day_window_from_a_date_only_start_ends_at_midnight_of_day_30(bench: Bench) -> None:
    bench.rule("r", _after_start("30 days", True))
    bench.events([anakinra("2009-03-01"), mas("2009-03-31"), {**mas("2009-03-31T08:00"), "patient_id": "Y"},
                  {**anakinra("2009-03-01"), "patient_id": "Y"}])  # fmt: skip
    session = bench.session()
    assert [session.state(p, "2009-05-01", ["r"])[0].value for p in ("X", "Y")] == [True, False]


def test_an_anchored_window_ending_31_days_exclusive_takes_the_30th_day_whole(bench: Bench) -> None:
    bench.rule("r", _after_start("31 days", False))
    bench.events([anakinra("2009-03-01"), mas("2009-03-31T08:00"), {**mas("2009-04-01"), "patient_id": "Y"},
                  {**anakinra("2009-03-01"), "patient_id": "Y"}])  # fmt: skip
    session = bench.session()
    assert [session.state(p, "2009-05-01", ["r"])[0].value for p in ("X", "Y")] == [True, False]


# ---- a time compared with a time in another unit, on the boundary day -----------------------------
# 183 d and a count in months met on day 183: the count was rounded to 6 decimals (6.01232) and
# 183 d converted by a 12-digit factor (6.012320329), so `ge` was false on the day. The count is
# now unrounded and units of time convert by their exact ratios (a month is 487/16 days): both
# are 183 × 16 / 487, the same double. Each case: (the count's unit, the limit, the days at
# which the count reaches it exactly).
TIME_BOUNDARIES = [
    pytest.param("months", "183 d", 183, id="mo-vs-d"),
    pytest.param("days", "26 wk", 182, id="d-vs-wk"),
    pytest.param("months", "26 wk", 182, id="mo-vs-wk"),
    pytest.param("years", "183 d", 183, id="a-vs-d"),
    pytest.param("years", "48 mo", 1461, id="a-vs-mo"),  # 4 Julian years: 1,461 days
    pytest.param("months", "4 a", 1461, id="mo-vs-a"),
    pytest.param("days", "16 mo", 487, id="d-vs-mo"),  # 16 mean months: 487 days
    pytest.param("years", "1461 d", 1461, id="a-vs-d-4y"),
]
START_2009 = "2009-01-01"


def _day(n: int) -> str:
    return (date.fromisoformat(START_2009) + timedelta(days=n)).isoformat()


def _since(unit: str) -> dict[str, Any]:
    return {"time_since": {"first": ANAKINRA_START, "unit": unit}}


@pytest.mark.parametrize(("unit", "limit", "days"), TIME_BOUNDARIES)
def test_a_time_reaches_a_limit_in_another_unit_on_the_boundary_day(
    bench: Bench, unit: str, limit: str, days: int
) -> None:
    bench.rule("r", {"ge": [_since(unit), limit]})
    bench.events([anakinra(START_2009), crp(_day(days + 5), 4)])
    # CheckedSession: the replay (timeline state) and the SQL engine agree at each
    assert bench.values("r", _day(days - 1), _day(days), _day(days + 1)) == [False, True, True]


@pytest.mark.parametrize(("unit", "limit", "days"), TIME_BOUNDARIES)
def test_a_limit_in_another_unit_on_the_left_is_met_on_the_boundary_day(
    bench: Bench, unit: str, limit: str, days: int
) -> None:
    # the count converted to the limit's unit (183 d ≥ 6.0123… months: 183 again, exactly)
    bench.rule("r", {"ge": [limit, _since(unit)]})
    bench.events([anakinra(START_2009), crp(_day(days + 5), 4)])
    assert bench.values("r", _day(days - 1), _day(days), _day(days + 1)) == [True, True, False]


@pytest.mark.parametrize(("unit", "limit", "days"), TIME_BOUNDARIES)
def test_a_time_equals_a_limit_in_another_unit_only_on_the_boundary_day(
    bench: Bench, unit: str, limit: str, days: int
) -> None:
    bench.rule("r", {"eq": [_since(unit), limit]})
    bench.events([anakinra(START_2009), crp(_day(days + 5), 4)])
    assert bench.values("r", _day(days - 1), _day(days), _day(days + 1)) == [False, True, False]


@pytest.mark.parametrize(("unit", "limit", "days"), TIME_BOUNDARIES)
def test_a_cohort_evaluation_meets_a_limit_in_another_unit_on_the_boundary_day(
    bench: Bench, unit: str, limit: str, days: int
) -> None:
    # many points at once, as a cohort run evaluates them (the SQL engine), and the history's
    # change point (found by the crossing search) on the boundary day's midnight
    bench.rule("r", {"in_episode": {"when": {"ge": [_since(unit), limit]}, "merge_gap": "0 days"}})
    bench.rule("plain", {"ge": [_since(unit), limit]})
    bench.events([anakinra(START_2009), crp(_day(days + 5), 4)])
    session = bench.session()
    points = [("X", datetime.fromisoformat(_day(days + k) + "T12:00")) for k in (-1, 0, 1)]
    assert [r.value for r in session.evaluate(points, ["plain"])] == [False, True, True]
    assert bench.state("r", _day(days + 3)).note == f"episode from {_day(days)}"


def test_a_duration_parameter_of_183_days_is_reached_by_a_count_in_months_on_day_183(bench: Bench) -> None:
    """The audit's rule: `ge: [time_since … months, {param: min_time}]`, min_time 183 days."""
    bench.rule(
        "r", {"ge": [_since("months"), {"param": "min_time"}]}, params={"min_time": {"default": "183 days"}}
    )
    bench.events([anakinra(START_2009), crp(_day(200), 4)])
    assert bench.values("r", _day(182), _day(183), _day(184)) == [False, True, True]


def test_a_site_value_in_weeks_for_it_is_reached_on_its_day_too(bench: Bench) -> None:
    bench.rule(
        "r", {"ge": [_since("months"), {"param": "min_time"}]}, params={"min_time": {"default": "183 days"}}
    )
    bench.events([anakinra(START_2009), crp(_day(200), 4)])
    session = bench.session(r={"min_time": "26 weeks"})
    assert [session.state("X", _day(n), ["r"])[0].value for n in (181, 182, 183)] == [False, True, True]


DAYS_IN = {"d": Fraction(1), "wk": Fraction(7), "mo": Fraction(487, 16), "a": Fraction(1461, 4)}
COUNTS = {"days": "d", "months": "mo", "years": "a"}


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    count=st.sampled_from(sorted(COUNTS)),
    # up to 15 years after 2009: no event in the future, which ingest refuses
    limit=st.sampled_from(sorted(DAYS_IN)).flatmap(
        lambda u: st.tuples(st.integers(min_value=1, max_value=int(15 * 365.25 / DAYS_IN[u])), st.just(u))
    ),
    op=st.sampled_from(["ge", "gt", "le", "lt", "eq"]),
)
def test_a_time_compared_with_a_limit_in_any_unit_decides_as_exact_days(
    tmp_path_factory: pytest.TempPathFactory, count: str, limit: tuple[int, str], op: str
) -> None:
    """On the days either side of where the count meets the limit (in days, as an exact
    rational), each evaluator decides as the exact comparison of the whole days with it."""
    amount, limit_unit = limit
    bench = Bench(tmp_path_factory.mktemp("exact"))
    try:
        limit_days = amount * DAYS_IN[limit_unit]
        bench.rule("r", {op: [_since(count), f"{amount} {limit_unit}"]})
        bench.events([anakinra(START_2009), crp(_day(math.ceil(limit_days) + 5), 4)])
        days = sorted(
            {
                math.floor(limit_days) - 1,
                math.floor(limit_days),
                math.ceil(limit_days),
                math.ceil(limit_days) + 1,
            }
        )
        exact = {
            "ge": lambda d: d >= limit_days, "gt": lambda d: d > limit_days, "le": lambda d: d <= limit_days,
            "lt": lambda d: d < limit_days, "eq": lambda d: d == limit_days,
        }[op]  # fmt: skip
        assert bench.values("r", *map(_day, days)) == [exact(Fraction(d)) for d in days]
    finally:
        bench.close()
