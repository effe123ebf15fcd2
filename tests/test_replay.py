"""`timeline state` replays one patient in Python (timeline.engine.replay); cohort runs and
histories use the SQL engine. On the Valencia cohort — 22 patients, every rule of the sJIA
pack, each patient at its clinic dates and the day after — both must give the same states:
value, reason, evidence and note."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from tests.engine_support import result_difference, visit_days
from tests.support import run_cli, valencia_module
from timeline.engine.evaluate import Session
from timeline.language.loader import load_rules
from timeline.store import Store


@pytest.fixture(scope="module")
def valencia(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    path = tmp_path_factory.mktemp("valencia") / "valencia.duckdb"
    valencia_module("load").load(path)
    yield path


def test_state_replays_every_rule_of_the_pack_as_the_sql_engine_evaluates_it(valencia: Path) -> None:
    with Store.open(valencia) as store:
        session = Session(store, load_rules())
        points = visit_days(store)
        sql = session.evaluate(points, None)
        assert len(sql) == len(points) * len(session.rules.listed()) > 10_000
        by_point: dict[tuple[str, datetime], list[object]] = {}
        for r in sql:
            by_point.setdefault((r.patient_id, r.q), []).append(r)
        problems = []
        for (patient, q), found in by_point.items():
            replayed = session.state(patient, q.isoformat())
            for a, b in zip(replayed, found, strict=True):
                b.at = a.at  # the label: the instant as given, either way
                if problem := result_difference(a, b):
                    problems.append(f"{b.rule_id} for {patient} at {q}: {problem}")
        assert not problems, "\n".join(problems[:20])


def test_state_as_known_before_a_correction_replays_the_record_as_it_stood(valencia: Path) -> None:
    with Store.open(valencia) as store:
        first = store.con.execute("SELECT max(recorded_at) FROM batches WHERE batch_id = 1").fetchone()
        assert first is not None
        before = Session(store, load_rules(), as_known_at=first[0])
        now = Session(store, load_rules())
        for session in (before, now):
            replayed = session.state("V09", "2007-04-03")
            session.replay = False
            for a, b in zip(replayed, session.state("V09", "2007-04-03"), strict=True):
                assert result_difference(a, b) is None
        assert [r.value for r in before.state("V09", "2007-04-03", ["active_joint_count"])] != [
            r.value for r in now.state("V09", "2007-04-03", ["active_joint_count"])
        ]


def test_timeline_state_json_gives_the_sql_engines_states(valencia: Path) -> None:
    result = run_cli("state", "V09", "--at", "2007-04-03", "--store", valencia, "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)["states"]
    with Store.open(valencia) as store:
        session = Session(store, load_rules())
        session.replay = False
        want = [r.to_json() for r in session.state("V09", "2007-04-03")]
    assert printed == want
