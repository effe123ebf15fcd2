"""The synthetic Valencia cohort (examples/valencia): it ingests cleanly, regenerates byte for
byte, and the raw events support every poster figure, checked with plain DuckDB SQL over a
loaded store against ground_truth.json. Rule-derived figures (fever resolution, arthritis,
complete response) are left to the engine; here we check that the raw events make them
unambiguous (a joint exam and a temperature where each time point needs one)."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.support import valencia_module
from timeline.ingest import ingest_file
from timeline.integrity import verify
from timeline.store import Store

ROOT = Path(__file__).resolve().parent.parent
VALENCIA = ROOT / "examples" / "valencia"
DMARDS = (
    "methotrexate", "ciclosporin", "etanercept", "infliximab", "adalimumab", "tocilizumab",
    "canakinumab", "rilonacept", "leflunomide", "sulfasalazine", "azathioprine", "thalidomide",
)  # fmt: skip
DMARD_SQL = "(" + ", ".join(f"'{d}'" for d in DMARDS) + ")"

# Per patient: anakinra start (T0), first stop, birth, diagnosis, end of follow-up.
PATIENT_CTE = """
    t0 AS (SELECT patient_id, min(occurred_at) AS t0 FROM ev
           WHERE kind = 'medication_start' AND drug = 'anakinra' GROUP BY 1),
    stp AS (SELECT patient_id, min(occurred_at) AS stop FROM ev
            WHERE kind = 'medication_stop' AND drug = 'anakinra' GROUP BY 1),
    pt AS (SELECT t0.patient_id, t0.t0, stp.stop,
                  (SELECT occurred_at FROM ev e WHERE e.patient_id = t0.patient_id AND kind = 'birth') AS birth,
                  (SELECT occurred_at FROM ev e WHERE e.patient_id = t0.patient_id AND kind = 'diagnosis') AS dx,
                  (SELECT occurred_at FROM ev e WHERE e.patient_id = t0.patient_id
                   AND kind = 'end_of_follow_up') AS fu_end
           FROM t0 LEFT JOIN stp USING (patient_id))
"""


@pytest.fixture(scope="module")
def truth() -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VALENCIA / "ground_truth.json").read_text(encoding="utf-8"))
    return data


@pytest.fixture(scope="module")
def loaded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Store, Any]]:
    path = tmp_path_factory.mktemp("valencia") / "valencia.duckdb"
    info = valencia_module("load").load(path)
    store = Store.open(path)
    yield store, info
    store.close()


def q(
    store: Store, sql: str, params: Sequence[Any] = (), *, as_known_at: datetime | None = None
) -> list[Any]:
    """Run ``sql`` over ``ev``, the current timeline (as known at ``as_known_at``)."""
    hw = store.high_water(as_known_at)
    return store.con.execute(f"WITH ev AS ({store.current_sql(hw)}), {PATIENT_CTE} {sql}", params).fetchall()


def csv_rows() -> list[dict[str, str]]:
    with (VALENCIA / "events.csv").open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


# ---- the files ------------------------------------------------------------------------


def test_regenerating_gives_byte_identical_files(tmp_path: Path) -> None:
    valencia_module("generate").write_all(tmp_path)
    for name in ("events.csv", "amendments.json", "ground_truth.json"):
        assert (tmp_path / name).read_bytes() == (VALENCIA / name).read_bytes(), name


def test_file_ingests_with_zero_errors_and_again_adds_nothing(tmp_path: Path) -> None:
    n = len(csv_rows())
    assert 2500 <= n <= 4000
    with Store.create(tmp_path / "s.duckdb", timezone="Europe/Madrid") as store:
        first = ingest_file(store, VALENCIA / "events.csv", author="test")
        again = ingest_file(store, VALENCIA / "events.csv", author="test")
    assert (first.added, first.duplicates) == (n, 0)
    assert (again.added, again.duplicates) == (0, n)


def test_event_ids_are_stable_and_patient_prefixed() -> None:
    rows = csv_rows()
    ids = [r["event_id"] for r in rows]
    assert len(set(ids)) == len(ids)
    assert all(i.startswith(r["patient_id"] + "-") and len(i) == 8 for i, r in zip(ids, rows, strict=True))


def test_all_dates_lie_in_the_past_and_in_the_review_period(loaded: tuple[Store, Any]) -> None:
    store, _ = loaded
    [(first_t0, last_t0, last_event)] = q(
        store, "SELECT min(t0), max(t0), (SELECT max(occurred_at) FROM ev) FROM pt"
    )
    assert first_t0 >= datetime(2004, 12, 1) and last_t0 <= datetime(2010, 7, 31)
    assert last_event <= datetime(2010, 7, 31)


# ---- the store after the amendments --------------------------------------------------------


def test_amendments_are_applied_and_the_chain_verifies(loaded: tuple[Store, Any]) -> None:
    store, info = loaded
    ops = dict(store.con.execute("SELECT op, count(*) FROM events GROUP BY 1").fetchall())
    assert ops == {"assert": info.events, "correct": 5, "retract": 1}
    assert verify(store).ok
    authors = {
        a for (a,) in store.con.execute("SELECT DISTINCT author FROM events WHERE op <> 'assert'").fetchall()
    }
    assert authors and all(a.strip() for a in authors)


def test_as_known_before_the_amendments_the_record_differs(loaded: tuple[Store, Any]) -> None:
    store, info = loaded
    before = info.ingested_at
    sql = """SELECT patient_id, kind, code, value, active_joints FROM ev WHERE event_id = ?"""
    amendments = json.loads((VALENCIA / "amendments.json").read_text(encoding="utf-8"))["amendments"]
    by_patient = {a["event_id"][:3]: a["event_id"] for a in amendments}
    crp, joints = by_patient["V16"], by_patient["V09"]  # CRP unit typo, swapped joint counts
    retracted = next(a["event_id"] for a in amendments if a["op"] == "retract")
    assert q(store, sql, [crp], as_known_at=before)[0][3] == 32.0  # 3.2 mg/dL as first entered
    assert q(store, sql, [crp])[0][3] == 3.2
    assert q(store, sql, [joints], as_known_at=before)[0][4] == 2
    assert q(store, sql, [joints])[0][4] == 0
    assert q(store, sql, [retracted], as_known_at=before)[0][3] == 38.4
    assert q(store, sql, [retracted]) == []


# ---- cohort figures with plain SQL ------------------------------------------------------------


def test_twenty_two_patients_age_and_disease_duration(
    loaded: tuple[Store, Any], truth: dict[str, Any]
) -> None:
    store, _ = loaded
    rows = q(
        store,
        """SELECT count(*), avg(datediff('day', birth, t0) / 365.25), min(datediff('day', birth, t0) / 365.25),
                  max(datediff('day', birth, t0) / 365.25), avg(datediff('day', dx, t0) / 365.25),
                  min(datediff('day', dx, t0) / 365.25), max(datediff('day', dx, t0) / 365.25)
           FROM pt""",
    )
    n, age_mean, age_min, age_max, dur_mean, dur_min, dur_max = rows[0]
    assert n == 22 == truth["cohort"]["patients"]
    assert (round(age_mean, 1), round(age_min, 1), round(age_max, 1)) == (8.6, 1.8, 15.6)
    assert (round(dur_mean, 1), round(dur_min, 1), round(dur_max, 1)) == (2.4, 0.0, 10.2)
    age = truth["cohort"]["age_at_anakinra_start_years"]
    dur = truth["cohort"]["disease_duration_years"]
    assert (age["mean"], age["min"], age["max"]) == (8.6, 1.8, 15.6)
    assert (dur["mean"], dur["min"], dur["max"]) == (2.4, 0.0, 10.2)
    per = dict(q(store, "SELECT patient_id, round(datediff('day', birth, t0) / 365.25, 3) FROM pt"))
    assert per == {pid: v["age_at_anakinra_start_years"] for pid, v in truth["patients"].items()}


def test_follow_up_is_11_to_56_months(loaded: tuple[Store, Any], truth: dict[str, Any]) -> None:
    store, _ = loaded
    (lo, hi, lo_whole, hi_whole), = q(
        store,
        """SELECT min(datediff('day', t0, fu_end) / 30.4375), max(datediff('day', t0, fu_end) / 30.4375),
                  min(datediff('month', t0, fu_end) - CASE WHEN day(fu_end) < day(t0) THEN 1 ELSE 0 END),
                  max(datediff('month', t0, fu_end) - CASE WHEN day(fu_end) < day(t0) THEN 1 ELSE 0 END)
           FROM pt""",
    )  # fmt: skip
    assert (round(lo), round(hi), lo_whole, hi_whole) == (11, 56, 11, 56)
    assert (truth["cohort"]["follow_up_months"]["min"], truth["cohort"]["follow_up_months"]["max"]) == (
        11,
        56,
    )


def test_three_discontinuations_with_their_reasons(loaded: tuple[Store, Any], truth: dict[str, Any]) -> None:
    store, _ = loaded
    rows = q(
        store,
        """SELECT d.patient_id, d.reason, a.term, a.grade, a.serious
           FROM ev d JOIN ev a ON a.patient_id = d.patient_id AND a.kind = 'adverse_event'
                AND a.action = 'drug_withdrawn' AND a.drug = 'anakinra' AND a.occurred_at = d.occurred_at
           JOIN pt ON pt.patient_id = d.patient_id AND pt.stop = d.occurred_at
           WHERE d.kind = 'discontinuation' AND d.drug = 'anakinra' ORDER BY 1""",
    )
    assert {r[0]: r[1] for r in rows} == truth["cohort"]["anakinra_discontinued"]["reasons"]
    by_reason = {r[1]: (r[2], r[3], r[4]) for r in rows}
    skin = next(v for k, v in by_reason.items() if "skin reaction" in k)
    pneumonia = next(v for k, v in by_reason.items() if "pneumonia" in k)
    tst = next(v for k, v in by_reason.items() if "tuberculin" in k)
    assert skin[1] == 3 and pneumonia[1:] == (3, True) and "intradermoreaction" in tst[0]
    assert sum(1 for k in by_reason if k.startswith("infection")) == 2
    assert q(store, "SELECT count(*) FROM ev WHERE kind = 'medication_stop' AND drug = 'anakinra'") == [(3,)]


def test_ten_mas_episodes_in_nine_patients(loaded: tuple[Store, Any], truth: dict[str, Any]) -> None:
    store, _ = loaded
    rows = q(
        store,
        """SELECT m.patient_id, m.occurred_at, m.ended_at,
                  CASE WHEN m.occurred_at < pt.t0 AND datediff('day', pt.dx, m.occurred_at) <= 60 THEN 'at_diagnosis'
                       WHEN m.occurred_at >= pt.t0 AND m.occurred_at <= coalesce(pt.stop, pt.fu_end) THEN 'on_anakinra'
                  END
           FROM ev m JOIN pt USING (patient_id) WHERE m.kind = 'mas_episode' ORDER BY 1, 2""",
    )
    assert len(rows) == 10 and len({r[0] for r in rows}) == 9
    assert sum(r[3] == "at_diagnosis" for r in rows) == 8 and sum(r[3] == "on_anakinra" for r in rows) == 2
    assert all(r[2] is not None and r[2] > r[1] for r in rows)  # every episode resolved (after amendments)
    expected = sorted(
        (pid, m["onset"], m["relation"]) for pid, v in truth["patients"].items() for m in v["mas_episodes"]
    )
    assert sorted((r[0], r[1].date().isoformat(), r[3]) for r in rows) == expected
    m = truth["cohort"]["mas"]
    assert (m["episodes"], m["patients"], m["at_diagnosis"], m["on_anakinra"]) == (10, 9, 8, 2)


MAS_LABS_SQL = """
    , anchor AS (SELECT patient_id, occurred_at AS at, value AS ferritin FROM ev
                 WHERE kind = 'lab' AND code = '2276-4' AND value > 684),
    scored AS (
        SELECT a.patient_id, a.at,
            bool_or(e.kind = 'body_temperature' AND e.value >= 38
                    OR e.kind = 'finding' AND e.code = 'fever' AND e.present) AS febrile,
            (bool_or(e.code = '777-3' AND e.value <= 181)::INT + bool_or(e.code = '1920-8' AND e.value > 48)::INT
             + bool_or(e.code = '2571-8' AND e.value > 156)::INT
             + bool_or(e.code = '3255-7' AND e.value <= 360)::INT) AS criteria
        FROM anchor a JOIN ev e ON e.patient_id = a.patient_id
             AND e.occurred_at::DATE BETWEEN a.at::DATE - 3 AND a.at::DATE + 3
        GROUP BY 1, 2)
"""


def test_every_mas_episode_meets_the_2016_criteria_and_nothing_else_does(loaded: tuple[Store, Any]) -> None:
    store, _ = loaded
    derived = q(
        store,
        MAS_LABS_SQL
        + """SELECT s.patient_id, s.at::DATE,
                    (SELECT count(*) FROM ev m WHERE m.kind = 'mas_episode' AND m.patient_id = s.patient_id
                     AND s.at::DATE BETWEEN m.occurred_at::DATE AND m.ended_at::DATE) AS in_episode
             FROM scored s WHERE s.febrile AND s.criteria >= 2 ORDER BY 1, 2""",
    )
    assert all(r[2] == 1 for r in derived), derived  # no derived MAS outside a recorded episode
    episodes = q(
        store,
        "SELECT patient_id, occurred_at::DATE FROM ev WHERE kind = 'mas_episode' ORDER BY 1, 2",
    )
    for pid, onset in episodes:  # every recorded episode has its labs
        assert any(p == pid and onset <= d <= onset + timedelta(days=2) for p, d, _ in derived), (pid, onset)


def test_boundary_values_are_stored_exactly(loaded: tuple[Store, Any]) -> None:
    store, _ = loaded
    # ferritin exactly 684 in a febrile non-MAS presentation, platelets exactly 181 in an MAS episode
    assert q(
        store, "SELECT count(*) FROM ev WHERE code = '2276-4' AND value = 684 AND patient_id = 'V17'"
    ) == [(1,)]
    assert q(store, "SELECT count(*) FROM ev WHERE kind = 'mas_episode' AND patient_id = 'V17'") == [(0,)]
    assert q(
        store, "SELECT count(*) FROM ev WHERE code = '777-3' AND value = 181 AND patient_id = 'V21'"
    ) == [(1,)]
    # 0.6 mg/dL is stored as exactly 6 mg/L; a temperature of exactly 38.0; an ESR of exactly 10
    assert q(
        store,
        "SELECT value, orig_value, orig_unit FROM ev WHERE code = '1988-5' AND patient_id = 'V05' AND value = 6",
    ) == [(6.0, 0.6, "mg/dL")]
    assert q(store, "SELECT count(*) FROM ev WHERE kind = 'body_temperature' AND value = 38.0") == [(1,)]
    assert q(
        store, "SELECT count(*) FROM ev WHERE code = '4537-7' AND value = 10 AND patient_id = 'V20'"
    ) == [(1,)]


def test_crp_comes_in_both_units_and_is_stored_in_mg_per_l(loaded: tuple[Store, Any]) -> None:
    store, _ = loaded
    units = dict(q(store, "SELECT orig_unit, count(*) FROM ev WHERE code = '1988-5' GROUP BY 1"))
    assert set(units) == {"mg/dL", "mg/L"} and min(units.values()) > 50
    assert q(store, "SELECT DISTINCT unit FROM ev WHERE code = '1988-5'") == [("mg/L",)]
    assert q(
        store,
        "SELECT count(*) FROM ev WHERE code = '1988-5' AND orig_unit = 'mg/dL' AND value <> round(orig_value * 10, 9)",
    ) == [(0,)]


def test_first_line_patients_had_no_dmard_or_biologic_before_anakinra(
    loaded: tuple[Store, Any], truth: dict[str, Any]
) -> None:
    store, _ = loaded
    prior = {
        pid
        for (pid,) in q(
            store,
            f"""SELECT DISTINCT e.patient_id FROM ev e JOIN pt USING (patient_id)
                WHERE e.kind = 'medication_start' AND e.drug IN {DMARD_SQL} AND e.occurred_at < pt.t0""",
        )
    }
    first_line = {pid for pid, v in truth["patients"].items() if v["first_line"]}
    assert first_line == set(truth["patients"]) - prior
    assert len(first_line) == 8
    cr = {pid for pid, v in truth["patients"].items() if v["complete_response"]}
    assert (len(cr), len(cr & first_line)) == (16, 6)
    # a complete responder never escalated to a DMARD or biologic while on anakinra
    escalated = {
        pid
        for (pid,) in q(
            store,
            f"""SELECT DISTINCT e.patient_id FROM ev e JOIN pt USING (patient_id)
                WHERE e.kind = 'medication_start' AND e.drug IN {DMARD_SQL} AND e.occurred_at > pt.t0
                  AND e.occurred_at < coalesce(pt.stop, pt.fu_end)""",
        )
    }
    assert escalated and not (escalated & cr)


# ---- what the engine needs at each time point -----------------------------------------------


def test_a_joint_exam_within_90_days_before_each_time_point(
    loaded: tuple[Store, Any], truth: dict[str, Any]
) -> None:
    store, _ = loaded
    rows = q(
        store,
        """, tp AS (SELECT pt.*, n, t0 + to_months(n) AS t FROM pt, (VALUES (3), (6), (12)) v(n))
        SELECT tp.patient_id, tp.n, tp.fu_end >= tp.t AND (tp.stop IS NULL OR tp.stop > tp.t) AS evaluable,
               (SELECT arg_max(active_joints, occurred_at) FROM ev e WHERE e.patient_id = tp.patient_id
                AND e.kind = 'joint_exam' AND e.occurred_at BETWEEN tp.t - INTERVAL 90 DAY AND tp.t) AS active,
               (SELECT max(occurred_at) FROM ev e WHERE e.patient_id = tp.patient_id
                AND e.kind = 'joint_exam' AND e.occurred_at <= tp.t) AS exam
        FROM tp ORDER BY 1, 2""",
    )
    counts: dict[str, list[int]] = {"3": [0, 0], "6": [0, 0], "12": [0, 0]}
    for pid, n, evaluable, active, exam in rows:
        gt = truth["patients"][pid]["active_arthritis"][str(n)]
        assert evaluable == gt["evaluable"], (pid, n)
        if not evaluable:
            continue
        t = datetime.fromisoformat(gt["time_point"])
        assert active is not None and t - exam <= timedelta(days=6), (pid, n)  # unambiguous: a recent exam
        assert (active > 0) == gt["active"], (pid, n)
        counts[str(n)][0] += active > 0
        counts[str(n)][1] += 1
    assert counts == {"3": [5, 22], "6": [3, 21], "12": [4, 18]}
    assert {n: [a["n"], a["N"]] for n, a in truth["cohort"]["active_arthritis"].items()} == counts


def test_temperature_and_rash_recorded_just_before_three_months(
    loaded: tuple[Store, Any], truth: dict[str, Any]
) -> None:
    store, _ = loaded
    rows = q(
        store,
        """SELECT pt.patient_id,
               count(*) FILTER (WHERE e.kind = 'body_temperature') AS temps,
               count(*) FILTER (WHERE e.kind = 'finding' AND e.code = 'rash') AS rash_records,
               bool_or(e.kind = 'body_temperature' AND e.value >= 38
                       OR e.kind = 'finding' AND e.code IN ('fever', 'rash') AND e.present) AS systemic
           FROM pt JOIN ev e ON e.patient_id = pt.patient_id
                AND e.occurred_at BETWEEN pt.t0 + INTERVAL 3 MONTH - INTERVAL 6 DAY AND pt.t0 + INTERVAL 3 MONTH
           GROUP BY 1 ORDER BY 1""",
    )
    assert len(rows) == 22
    for pid, temps, rash_records, systemic in rows:
        assert temps >= 1 and rash_records >= 1, pid
        assert systemic == (not truth["patients"][pid]["fever_rash_resolved_within_3m"]), pid
    assert truth["cohort"]["fever_rash_resolved_within_3m"]["n"] == sum(not r[3] for r in rows) == 18


def test_anakinra_dose_is_1_to_4_mg_per_kg_per_day(loaded: tuple[Store, Any]) -> None:
    store, info = loaded
    sql = """, dose AS (SELECT patient_id, occurred_at, dose, dose_unit FROM ev
                        WHERE kind IN ('medication_start', 'medication_dose_change') AND drug = 'anakinra'),
               wt AS (SELECT patient_id, occurred_at, value AS kg FROM ev WHERE kind = 'weight'),
               at_dose AS (SELECT d.patient_id, CASE WHEN d.dose_unit = 'mg/kg' THEN d.dose ELSE d.dose / w.kg END AS x
                           FROM dose d ASOF JOIN wt w ON d.patient_id = w.patient_id AND d.occurred_at >= w.occurred_at),
               at_weight AS (SELECT w.patient_id, CASE WHEN d.dose_unit = 'mg/kg' THEN d.dose ELSE d.dose / w.kg END AS x
                             FROM wt w ASOF JOIN dose d ON d.patient_id = w.patient_id AND w.occurred_at >= d.occurred_at
                             JOIN pt ON pt.patient_id = w.patient_id
                             WHERE w.occurred_at < coalesce(pt.stop, pt.fu_end + INTERVAL 1 DAY))
        SELECT min(x), max(x), count(*) FROM (SELECT * FROM at_dose UNION ALL SELECT * FROM at_weight)"""
    lo, hi, n = q(store, sql)[0]
    assert n > 250 and lo >= 1.0 and hi <= 4.0
    lo, hi, _ = q(store, sql, as_known_at=info.ingested_at)[0]
    assert lo < 1.0 and hi > 4.0  # the weight and dose typos, before their corrections
