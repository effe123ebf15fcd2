"""Evaluate rules over a store: states at dates, explanations, and state histories.

All three run the SQL the compiler generates, but for one patient: `state` replays the
patient's events in Python (timeline.engine.replay), and so does an explanation of a rule that
reads no ``held_for``, node for node the tree the compiled relations give (``_ReplayExplainer``,
held to :class:`_Explainer` by tests/test_explain_replay.py); other rules are explained from
the very intermediate relations that produced the answer.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from timeline import codes
from timeline.duck import duckdb
from timeline.engine.compiler import COLUMNS, ENGINE_COLUMNS, Compiler, engine_columns, q_, reads_censored
from timeline.errors import ResourceError, UsageError
from timeline.language import ast
from timeline.language.loader import RuleSet, param_text
from timeline.moments import parse_at
from timeline.store import QUALIFIER, Store, current_of, insert_rows, lower_memory_limit, out_of_room
from timeline.store import manifest as store_manifest

# the columns of an event version explain lists (Session._events), in the order it reads them
LISTED = (
    "seq", "event_id", "op", "patient_id", "kind", "occurred_at", "occurred_precision", "recorded_at", "author",
    "code", "value", QUALIFIER, "unit", "orig_value", "orig_unit", "ref_low", "ref_high", "drug", "dose",
    "dose_unit", "frequency", "route", "active_joints", "limited_joints", "present", "term", "grade", "serious",
    "action", "reason", "ended_at", "ended_precision", "sex", "change_reason", "source_file", "source_row",
)  # fmt: skip

MACROS = [
    "CREATE OR REPLACE TEMP MACRO tl_fmt(v) AS "
    "CASE WHEN v IS NULL THEN NULL WHEN isinf(v::DOUBLE) THEN CASE WHEN v > 0 THEN '∞' ELSE '-∞' END "
    "ELSE regexp_replace(regexp_replace(regexp_replace(printf('%.4f', v::DOUBLE), '0+$', ''), '[.]$', ''), '^-0$', '0') END",
    # The reasons of two clauses (replay's ``_concat``): a clause ("; "-separated) of the second
    # that the first already gives is not said again ("no index_drug_start recorded up to the
    # date" of a value and of its baseline); without lists for the common case, one side NULL.
    # Each new clause is appended with its separator, so an empty clause is kept as _concat
    # keeps it. Folded over more reasons by Compiler.ordered_reasons.
    "CREATE OR REPLACE TEMP MACRO tl_why2(a, b) AS "
    "CASE WHEN coalesce(b, '') = '' THEN nullif(a, '') WHEN coalesce(a, '') = '' THEN b WHEN a = b THEN a "
    "ELSE a || array_to_string(list_transform(list_filter(string_split(b, '; '), "
    "lambda c: NOT list_contains(string_split(a, '; '), c)), lambda c: '; ' || c), '') END",
]


@dataclass(slots=True)
class Result:
    rule_id: str
    patient_id: str
    at: str
    q: datetime
    type: str  # bool | num
    value: bool | float | None
    unit: str | None
    why: str | None
    evidence: list[int]
    note: str | None = None
    # a censored value (a rule that is a lab's latest value, <5): ``value`` is its bound,
    # this its qualifier (<, <=, >, >=); None for every exact value
    qualifier: str | None = None

    def to_json(self) -> dict[str, Any]:
        value: Any = self.value
        if isinstance(value, float) and value in (float("inf"), float("-inf")):
            value = "Infinity" if value > 0 else "-Infinity"
        return {
            "rule": self.rule_id, "patient_id": self.patient_id, "at": self.at,
            "value": value if value is not None else "unknown", "known": self.value is not None,
            "qualifier": self.qualifier, "unit": self.unit, "reason": self.why, "note": self.note,
            "evidence": self.evidence,
        }  # fmt: skip


def manifest(store: Store, rules: RuleSet, high_water: int, as_known_at: datetime | None) -> dict[str, Any]:
    return {**store_manifest(store, high_water, as_known_at), **rules.manifest()}


class Session:
    """A store, a rule set and an as-known-at moment: what every evaluation needs."""

    def __init__(
        self,
        store: Store,
        rules: RuleSet,
        as_known_at: datetime | None = None,
        batch_patients: int | None = None,
        history_batch_patients: int | None = None,
    ) -> None:
        self.store = store
        self.rules = with_store_codes(store, rules)
        self._columns: tuple[str, ...] | None = None
        self._events_read: tuple[str, list[dict[str, Any]]] | None = None  # see _patient_events
        # the stored versions of that patient's events they were told from (names, rows), and
        # whether those rows carry every column explain lists an event by (see require_patient)
        self._versions: tuple[list[str], list[tuple[Any, ...]]] = ([], [])
        self._listing = False
        self.as_known_at = as_known_at
        # patients per staged run of a cohort run (see batches); histories take at most
        # history_batch_patients of them per run (see histories)
        self.batch_patients = batch_patients or BATCH_PATIENTS
        self.history_batch_patients = history_batch_patients or HISTORY_BATCH_PATIENTS
        # called with (batch, batches) before each batch of a cohort run or of histories
        self.progress: Callable[[int, int], None] | None = None
        self.high_water = store.high_water(as_known_at)
        store.head_hash(self.high_water)  # kept: a manifest may be made after the store closes
        # state() replays one patient in Python; False: through the SQL engine, as evaluate()
        self.replay = True
        self._con = store.con
        self._macros = False  # MACROS made on the connection (see con)

    @property
    def con(self) -> duckdb.DuckDBPyConnection:
        """The store's connection, with the macros the compiled SQL calls (:data:`MACROS`),
        made when it is first asked for: `state`'s replay, which runs no compiled SQL, never
        asks (two statements, ~1 ms of its start)."""
        if not self._macros:
            for macro in MACROS:
                self._con.execute(macro)
            self._macros = True
        return self._con

    @con.setter
    def con(self, con: duckdb.DuckDBPyConnection) -> None:
        self._con = con

    @property
    def columns(self) -> tuple[str, ...]:
        """The event columns the rules read (found when first needed: `state`'s replay reads
        every column and never asks)."""
        if self._columns is None:
            self._columns = engine_columns(self.rules)
        return self._columns

    def manifest(self) -> dict[str, Any]:
        return manifest(self.store, self.rules, self.high_water, self.as_known_at)

    def require_patient(self, patient: str, events: bool = False, listing: bool = False) -> None:
        """See :meth:`Store.require_patient`, as this session knows the store. ``events``: by
        reading the patient's current events, kept for :meth:`state` (which would read them
        next), rather than by counting them. ``listing`` (with ``events``): with every column
        :meth:`explain` lists an event by, so that it lists the events it read, and finds
        whether the patient has any retraction, from that one read of the patient's versions
        rather than by two more queries (~0.015 s of `explain` at 2.7M events)."""
        self._listing = listing
        if events and self._patient_events(patient):
            return
        self.store.require_patient(patient, self.high_water)

    def _patient_events(self, patient: str) -> list[dict[str, Any]]:
        """The patient's current events as :meth:`state` replays them, read once."""
        if self._events_read is None or self._events_read[0] != patient:
            # the columns the rules can read (the SQL engine's, and ``route`` for except_routes)
            columns = (*ENGINE_COLUMNS, "route", *(LISTED if self._listing else ()))
            names, rows = self.store.versions(patient, self.high_water, columns)
            self._versions = (names, rows) if self._listing else ([], [])
            self._events_read = (patient, current_of(names, rows))
        return self._events_read[1]

    def _compiler(
        self, patients: Sequence[str] | None, evidence: bool = True, dense: bool = False
    ) -> Compiler:
        return Compiler(self.rules, self._events_sql(patients), evidence, dense)

    def _events_sql(self, patients: Sequence[str] | None) -> str:
        """The current events the rules read: of the batch's patients (the view tl_bev, see
        :meth:`batches`), or of ``patients``."""
        if patients is None:
            return "SELECT * FROM tl_bev"
        # A few patients: their events are fetched first, by a statement the optimizer
        # plans (filter and projection pushed into the scan), because the rule query that
        # follows runs with the optimizer off and would otherwise scan every column of
        # every event (one patient, 2M-event store: `timeline state` 1.8 s → see README).
        self.con.execute(
            "CREATE OR REPLACE TEMP TABLE tl_ev AS "
            + self.store.current_sql(self.high_water, patients, columns=self.columns)
        )
        return "SELECT * FROM tl_ev"

    def _points(self, points: Sequence[tuple[str, datetime]], name: str = "tl_pts") -> None:
        self.con.execute(f"CREATE OR REPLACE TEMP TABLE {name} (patient_id VARCHAR, q TIMESTAMP)")
        insert_rows(self.con, name, ("VARCHAR", "TIMESTAMP"), points)

    def batches(self, points_sql: str, keyed: bool = False, size: int | None = None) -> Iterator[int]:
        """The points of ``points_sql`` (patient_id, q), in batches of ``size`` patients
        (default ``batch_patients``), each to be evaluated by one staged run. For each batch,
        tl_pts holds its points and the view tl_bev its patients' current events, read only
        within the seq range of their versions; yields the batch's number.

        ``size``: patients per batch (histories: see HISTORY_BATCH_PATIENTS).

        ``keyed``: in tl_pts and tl_bev a patient is an INTEGER key, its number in patient
        order, instead of the store's text id, and the table tl_pid (patient_id, pid) maps the
        batch's keys back. Every join, as-of lookup, window and grouping of the run then
        partitions and compares integers (DuckDB hashes and sorts them faster than the ids'
        strings); the final statement must turn the key back into the id through tl_pid.

        A staged run holds the rule graph's live relations for every patient it evaluates, so
        memory grows with the cohort: every patient's history at 100k patients ran out of
        memory inside the engine's 2 GiB after 18 minutes, 26 GB spilled. In batches it stays
        that of one batch. The seq range makes a batch read only the row groups holding its
        patients' events when the store keeps a patient's events together, as an ingest of
        patient-ordered files does; otherwise it costs nothing and prunes nothing."""
        hw = self.high_water
        self.con.execute(
            f"""CREATE OR REPLACE TEMP TABLE tl_all AS SELECT patient_id, q, pid, pid // {int(size or self.batch_patients)} AS b
                FROM (SELECT patient_id, q, (dense_rank() OVER (ORDER BY patient_id) - 1)::INTEGER AS pid
                      FROM ({points_sql}))"""
        )
        try:
            ranges = self.con.execute(
                f"""SELECT p.b, coalesce(min(e.seq), 0), coalesce(max(e.seq), -1)
                    FROM (SELECT DISTINCT patient_id, b FROM tl_all) p
                    LEFT JOIN events e ON e.patient_id = p.patient_id AND e.seq <= {int(hw)}
                    GROUP BY p.b ORDER BY p.b"""
            ).fetchall()
            ranges = ranges or [(0, 0, -1)]  # no points: one empty batch, an empty result
            for b, lo, hi in ranges:
                if self.progress is not None:
                    self.progress(b, len(ranges))
                current = self.store.current_sql(
                    hw,
                    patients_sql="SELECT patient_id FROM tl_all WHERE b = " + str(int(b)),
                    columns=self.columns,
                    seq_range=(lo, hi),
                )
                if keyed:
                    self.con.execute(
                        f"CREATE OR REPLACE TEMP TABLE tl_pid AS SELECT DISTINCT patient_id, pid FROM tl_all WHERE b = {b}"
                    )
                    self.con.execute(
                        f"CREATE OR REPLACE TEMP TABLE tl_pts AS SELECT pid AS patient_id, q FROM tl_all WHERE b = {b}"
                    )
                    current = f"""SELECT m.pid AS patient_id, e.* EXCLUDE (patient_id)
                        FROM ({current}) e JOIN tl_pid m ON m.patient_id = e.patient_id"""
                else:
                    self.con.execute(
                        f"CREATE OR REPLACE TEMP TABLE tl_pts AS SELECT patient_id, q FROM tl_all WHERE b = {b}"
                    )
                self.con.execute("CREATE OR REPLACE TEMP VIEW tl_bev AS " + current)
                yield b
        finally:
            self.con.execute("DROP VIEW IF EXISTS tl_bev")
            self.con.execute("DROP TABLE IF EXISTS tl_pid")
            self.con.execute("DROP TABLE IF EXISTS tl_all")

    def rule_ids(self, wanted: Sequence[str] | None) -> list[str]:
        if not wanted:
            return self.rules.listed()
        return [self.rules.get(rid).id for rid in wanted]  # a copy at other values is made here

    # ---- states
    def evaluate(
        self,
        points: Sequence[tuple[str, datetime]] | None,
        rule_ids: Sequence[str] | None = None,
        labels: dict[datetime, str] | None = None,
        points_sql: str | None = None,
        evidence: bool = True,
    ) -> list[Result]:
        """Every requested rule at every (patient, instant) point. Without ``evidence`` the
        results carry values and unknown reasons only (a cohort run counts; it explains one
        patient at a time)."""
        ids = self.rule_ids(rule_ids)
        if points_sql is not None:
            self.con.execute(f"CREATE OR REPLACE TEMP TABLE tl_given AS {points_sql}")
            patients = None
        else:
            assert points is not None
            self._points(points, "tl_given")
            distinct = sorted({p for p, _ in points})
            patients = distinct if len(distinct) <= 50 else None
        # the points, numbered: rows come back with a point's number, so each patient id and
        # instant becomes a Python object once per point, not once per rule and point (1.08M
        # results of 30k points: ~1.5 s of conversion saved)
        self.con.execute(
            """CREATE OR REPLACE TEMP TABLE tl_pn AS SELECT (row_number() OVER (ORDER BY patient_id, q))::INTEGER - 1 AS pi,
                   patient_id, q FROM (SELECT DISTINCT patient_id, q FROM tl_given)"""
        )
        comp = self._compiler(patients, evidence)
        # a few patients: all their points at once; else each batch's (see batches)
        comp.add(
            "pts",
            "SELECT patient_id, q FROM tl_pn" if patients else "SELECT DISTINCT patient_id, q FROM tl_pts",
        )
        roots = {rid: comp.rule(rid) for rid in ids}
        inner, outer = (", list_distinct(ev) AS ev, note", ", u.ev, u.note") if evidence else ("", "")
        # a rule that is a censored value: its qualifier and bound (see Compiler.censored_root)
        union = " UNION ALL ".join(
            f"SELECT {i} AS k, patient_id, q, b, x, why, "
            f"{'cq, cx' if comp.censored_root(rid) else 'NULL::VARCHAR AS cq, NULL::DOUBLE AS cx'}{inner} FROM {name}"
            for i, (rid, name) in enumerate(roots.items())
        )
        # per rule: (id, bool?, unit); per point: its label — computed once, not per row
        meta = []
        for rid in roots:
            rule = self.rules.rules[rid]
            num = rule.type.kind == "num"
            meta.append((rid, rule.type.kind, not num, rule.value_type.unit))
        shown = labels or {}
        results: list[Result] = []
        # an unknown reason repeats across many states ("no CRP recorded up to the date"):
        # each distinct text is kept once, not once per state (a cohort run keeps ~16 states
        # per patient: ~13M at 1M patients)
        reasons: dict[str, str] = {}

        def collect(rows: list[tuple[Any, ...]], pts: list[tuple[str, datetime]], at: list[str]) -> None:
            for k, pi, b, x, why, cq, cx, *extra in rows:  # extra: evidence and note, when asked for
                rid, kind, is_bool, unit = meta[k]
                value = b if is_bool else cx if cq is not None else x
                pid, q = pts[pi]
                ev, note = extra if extra else (None, None)
                if value is not None:
                    why = None
                elif why is not None:
                    why = reasons.setdefault(why, why)
                results.append(
                    Result(rid, pid, at[pi], q, kind, value, unit, why, sorted(ev) if ev else [], note, cq)
                )

        try:
            pts = self.con.execute("SELECT patient_id, q FROM tl_pn ORDER BY pi").fetchall()
            at = [shown.get(q) or q.isoformat(sep=" ") for _, q in pts]
            if patients is not None:
                # a few rows: numbered here (joining tl_pn in a query planned without the
                # optimizer cost ~0.2 s for one patient)
                number = {p: i for i, p in enumerate(pts)}
                with _small(self.con, True):
                    found = self.con.execute(
                        f"{comp.out.with_sql()}\nSELECT * FROM ({union}) ORDER BY patient_id, q, k"
                    ).fetchall()
                collect([(k, number[(pid, q)], *rest) for k, pid, q, *rest in found], pts, at)
            else:
                final = f"""SELECT u.k, p.pi, u.b, u.x, u.why, u.cq, u.cx{outer}
                    FROM ({union}) u JOIN tl_pn p USING (patient_id, q) ORDER BY p.pi, u.k"""
                # batches are in patient order, so their rows follow each other in point order;
                # each batch's rows become results before the next batch runs
                for _ in self.batches("SELECT * FROM tl_given"):
                    collect(staged(self.con, comp, roots, final), pts, at)
        finally:
            self.con.execute("DROP TABLE IF EXISTS tl_pn")
            self.con.execute("DROP TABLE IF EXISTS tl_given")
        return results

    def state(
        self, patient: str, at: str, rule_ids: Sequence[str] | None = None, evidence: bool = True
    ) -> list[Result]:
        """The rules for one patient at one moment, replayed in Python over the patient's
        events (see :mod:`timeline.engine.replay`): the same values, reasons, evidence and
        notes as :meth:`evaluate`, which the property tests check node by node, without the
        SQL engine's fixed cost per relation (the sJIA pack, the patient with most events of a
        10k cohort: 0.6 s in SQL, 0.08 s replayed with fetching its events).

        ``evidence``: False when only the values, reasons and notes are wanted (`timeline
        state` written as a table): every result's evidence is then empty, and the replay
        skips work whose only product is evidence (``Reference.evidence``: a ``held_for``
        stops at its first false moment, ~0.006 s of the 10k cohort's patient with most
        events)."""
        q, label = parse_at(at)
        if not self.replay:
            found = self.evaluate([(patient, q)], rule_ids, labels={q: label})
            if not evidence:
                for r in found:
                    r.evidence = []
            return found
        from timeline.engine.replay import Reference

        ids = self.rule_ids(rule_ids)
        ref = Reference(self.rules, self._patient_events(patient), evidence=evidence)
        out = []
        for rid in ids:
            rule = self.rules.rules[rid]
            v = ref.rule(rid, q)
            # a rule that is a censored value shows it: its bound and qualifier (<5 mg/L)
            shown = reads_censored(rule.define, self.rules) and v.qualifier is not None
            value = v.bound if shown else v.value
            why = v.why if value is None else None
            ev = sorted(set(v.ev)) if evidence else []
            out.append(
                Result(rid, patient, label, q, rule.type.kind, value, rule.value_type.unit, why, ev, v.note,
                       v.qualifier if shown else None)
            )  # fmt: skip
        return out

    # ---- explanations
    def explain(self, patient: str, rule_id: str, at: str) -> dict[str, Any]:
        """The derivation tree of one rule for one patient at one moment, as data."""
        q, label = parse_at(at)
        rule_id = self.rules.get(rule_id).id
        tree, listed, tied, comp = (
            self._replay_explanation(patient, rule_id, q)
            if self.replay and replay_explains(self.rules, rule_id)
            else self._sql_explanation(patient, rule_id, q)
        )
        # the answer's evidence (what `state` reports), then what the clauses read besides
        evidence = set(tree["derivation"].get("events", []))
        found = self._events(sorted(listed | set(tied)))
        self._annotate(found, tied)
        used = [e for e in found if e["seq"] in evidence]
        read = [e for e in found if e["seq"] not in evidence]
        withdrawn = self._events(self._retracted_read(patient, q, rule_id, comp))
        for e in withdrawn:
            e["remarks"] = [f"retracted (seq {e['seq']})"]  # why: its source, the retraction's reason
        return {
            "patient_id": patient,
            "at": label,
            "instant": q.isoformat(sep=" "),
            "manifest": self.manifest(),
            "tree": tree,
            "events": used,
            "other_events": read,
            "retracted_events": withdrawn,
        }

    def _sql_explanation(
        self, patient: str, rule_id: str, q: datetime
    ) -> tuple[dict[str, Any], set[int], dict[int, int], Compiler]:
        """The rule's tree, every event its clauses read and the events tied with those (see
        :meth:`_tied`), from the rule's compiled relations for the patient at ``q``."""
        self._points([(patient, q)])
        comp = self._compiler([patient])
        comp.add("pts", "SELECT DISTINCT patient_id, q FROM tl_pts")
        comp.rule(rule_id)
        with _small(self.con, True):
            rows = _Rows.fetch(self.con, comp, patient)
        builder = _Explainer(self, comp, patient, rows)
        tree = builder.rule(rule_id, "pts", q)
        listed = builder.seqs | set(tree["derivation"].get("events", []))
        return tree, listed, self._tied(patient, listed), comp

    def _replay_explanation(
        self, patient: str, rule_id: str, q: datetime
    ) -> tuple[dict[str, Any], set[int], dict[int, int], Compiler]:
        """:meth:`_sql_explanation`, from the replay of the patient's events that `state`
        runs (see :class:`_ReplayExplainer`): no SQL but the reading of the events."""
        from timeline.engine.replay import Reference

        comp = Compiler(self.rules, "SELECT * FROM tl_ev")  # its literals and predicates only
        builder = _ReplayExplainer(self, Reference(self.rules, self._patient_events(patient)), comp)
        tree = builder.rule(rule_id, q)
        listed = builder.seqs | set(tree["derivation"].get("events", []))
        return tree, listed, builder.tied(listed), comp

    def events_of(self, seqs: Sequence[int]) -> list[dict[str, Any]]:
        """The event versions with these sequence numbers, in full, as explain lists them."""
        return self._events(sorted(seqs))

    def _retracted_read(self, patient: str, q: datetime, rule_id: str, comp: Compiler) -> list[int]:
        """The retractions (their rows carry the content withdrawn), as known, of the patient's
        events up to ``q`` that a selector of the rule (or of a rule it reads) matches: what the
        record held and no longer does, which a reviewer must see beside the answer (a retracted
        fever can be why a child now counts as resolved)."""
        from timeline.language.loader import walk

        preds: dict[str, None] = {}
        todo, seen = [rule_id], set()
        while todo:
            rid = todo.pop()
            if rid in seen:
                continue
            seen.add(rid)
            for n in walk(self.rules.rules[rid].define):
                if isinstance(n, ast.Selector) and n.name != "birth":
                    preds[comp.predicate(n)] = None
                elif isinstance(n, ast.RuleRef):
                    todo.append(n.rule)
                elif isinstance(n, ast.OnDrug | ast.DailyDose):
                    drugs = n.drugs if isinstance(n, ast.OnDrug) else (n.drug,)
                    kinds = ", ".join(q_(k) for k in ast.MEDICATION_KINDS)
                    preds[f"(kind IN ({kinds}) AND drug IN ({', '.join(q_(d) for d in drugs)}))"] = None
        if not preds:
            return []
        names, versions = self._versions
        if self._events_read is not None and self._events_read[0] == patient and "op" in names:
            # the patient's every version as known (read by require_patient): without a
            # retraction among them the query below finds none
            op = names.index("op")
            if not any(v[op] == "retract" for v in versions):
                return []
        rows = self.con.execute(
            f"""SELECT r.seq FROM {self.store.events_relation} r
                WHERE r.patient_id = ? AND r.op = 'retract' AND r.seq <= {self.high_water} AND r.occurred_at <= ?
                  AND NOT EXISTS (SELECT 1 FROM events v WHERE v.event_id = r.event_id AND v.seq > r.seq
                                  AND v.seq <= {self.high_water})
                  AND ({" OR ".join(preds)})
                ORDER BY r.occurred_at, r.seq""",
            [patient, q],
        ).fetchall()
        return [int(r[0]) for r in rows]

    def _tied(self, patient: str, seqs: set[int]) -> dict[int, int]:
        """Current events of the patient at the instant, of the kind and code, of an event
        listed, that no clause names: the ones a tie left unused (the last asserted wins).
        Each → the listed event it is tied with."""
        if not seqs:
            return {}
        listed = ", ".join(str(x) for x in sorted(seqs))
        # the patient's current events: tl_ev, which the explanation's relations read (made by
        # _events_sql for this patient), not read from the store again; the events listed are
        # among them (every seq a relation gives comes from tl_ev), so they are read there too
        # (from the store, an IN list scanned its seq column: ~5 ms of `explain` at 2.7M events)
        rows = self.con.execute(
            f"""SELECT c.seq, min(l.seq) FROM tl_ev c
                JOIN (SELECT seq, occurred_at, kind, code FROM tl_ev WHERE seq IN ({listed})) l
                  ON c.occurred_at = l.occurred_at AND c.kind = l.kind AND c.code IS NOT DISTINCT FROM l.code
                WHERE c.seq NOT IN ({listed}) GROUP BY c.seq"""
        ).fetchall()
        return {int(a): int(b) for a, b in rows}

    def _annotate(self, found: list[dict[str, Any]], tied: dict[int, int]) -> None:
        """Say of each event listed what a reader of the record needs beside it: a tie left it
        unused; it is a corrected version; and — as known at an earlier moment — that it was
        corrected or retracted after that moment (what changed since)."""
        ids = [e["event_id"] for e in found]
        later: dict[str, tuple[int, str, str | None]] = {}
        if ids and self.as_known_at is not None:
            marks = ", ".join("?" for _ in ids)
            for event_id, seq, op, reason in self.con.execute(
                f"""SELECT event_id, seq, op, change_reason FROM events
                    WHERE seq > {self.high_water} AND event_id IN ({marks}) AND op <> 'ingest'
                    QUALIFY row_number() OVER (PARTITION BY event_id ORDER BY seq) = 1""",
                ids,
            ).fetchall():
                later[str(event_id)] = (int(seq), str(op), reason)
        for e in found:
            remarks = []
            if e["seq"] in tied:
                remarks.append(
                    f"at the same instant as seq {tied[e['seq']]}, asserted before it: not used (the last asserted wins)"
                )
            if e["version"] == "correct":
                remarks.append("a corrected version")
            if e["event_id"] in later:
                seq, op, reason = later[e["event_id"]]
                done = "corrected" if op == "correct" else "retracted"
                remarks.append(f"{done} after this moment (seq {seq}{': ' + reason if reason else ''})")
            e["remarks"] = remarks

    def _listed_versions(self, seqs: list[int]) -> list[dict[str, Any]] | None:
        """The versions of these seqs as :meth:`_events` reads them (the columns of
        :data:`LISTED`, in order of occurred_at and seq), from the versions require_patient
        read with them; None when any is not among those."""
        names, versions = self._versions
        if not versions:
            return None
        wanted = set(seqs)
        seq = names.index("seq")
        picked = [v for v in versions if v[seq] in wanted]
        if len(picked) != len(wanted):
            return None
        where = [names.index(c) for c in LISTED]
        out = [{c: v[i] for c, i in zip(LISTED, where, strict=True)} for v in picked]
        out.sort(key=lambda e: (e["occurred_at"], e["seq"]))
        return out

    def _events(self, seqs: list[int]) -> list[dict[str, Any]]:
        """The events used, in full. The seq range lets DuckDB skip every row group outside it
        (an IN list alone scanned all 35 columns of the store: 0.9 s at 20M events)."""
        if not seqs:
            return []
        from timeline.summary import describe, when

        rows = self._listed_versions(seqs)
        if rows is None:
            cur = self.con.execute(
                f"""SELECT {", ".join(self.store.column(c) for c in LISTED)}
                    FROM events WHERE seq BETWEEN {min(seqs)} AND {max(seqs)} AND seq IN ({", ".join(str(s) for s in seqs)})
                    ORDER BY occurred_at, seq"""
            )
            rows = [dict(zip(LISTED, row, strict=True)) for row in cur.fetchall()]
        out = []
        for e in rows:
            out.append(
                {
                    "seq": e["seq"],
                    "event_id": e["event_id"],
                    "version": e["op"],
                    "kind": e["kind"],
                    "occurred_at": when(e["occurred_at"], e["occurred_precision"]),
                    "recorded_at": e["recorded_at"].isoformat(sep=" ") + " UTC",
                    "author": e["author"],
                    "value": e["value"],
                    "qualifier": e["value_qualifier"],  # a censored value's (<, <=, >, >=)
                    "unit": e["unit"],
                    "original_value": e["orig_value"],
                    "original_unit": e["orig_unit"],
                    "description": describe(e, self.rules.codebook),
                    # "row N" as ingest's errors number rows: a CSV's N-th row after its header
                    # (line N + 1 unless a quoted field ran over lines), a JSON Lines file's line
                    "source": f"{e['source_file']} row {e['source_row']}" if e["source_file"] else None,
                    "source_file": e["source_file"],
                    "source_row": e["source_row"],
                    "change_reason": e["change_reason"],  # of a correction or a retraction
                }
            )
        return out

    # ---- histories
    def history(
        self,
        patient: str,
        rule_ids: Sequence[str] | None = None,
        start: str | None = None,
        end: str | None = None,
    ) -> list[dict[str, Any]]:
        """Intervals [start, end) over which each rule's value held, exact at change points,
        from ``start`` (the beginning of that day; else the first clinical event) through the
        whole day ``end`` (else the day of the last event): the last interval ends at the
        midnight after it.

        Replayed in Python over the patient's events, as :meth:`state` is (``replay``; else by
        the SQL engine, a query per rule): each rule at every instant where its value or reason
        can change (the replay's ``candidates``, a superset of the compiler's change points),
        consecutive equal values merged, so the intervals are the same (tests/
        test_engine_properties.py holds them to the set-based SQL of :meth:`histories`). The
        10k cohort's patient with most events: 52 rules, 3,135 intervals, 0.66 s against 5.0 s
        by the SQL engine (benchmarks/README.md, round 32)."""
        ids = self.rule_ids(rule_ids)
        lo = parse_at(start, "--from")[0] - timedelta(days=1) + timedelta(microseconds=1) if start else None
        hi = parse_at(end, "--to")[0] if end else None
        if lo is not None and hi is not None and lo > hi:
            raise UsageError(f"--from {start} is after --to {end}")
        if self.replay:
            return self._replayed_history(patient, ids, lo, hi)
        events_sql = self._events_sql([patient])  # fetched once, read by every rule below
        span = self.con.execute(
            f"SELECT min(occurred_at) FILTER (WHERE kind <> 'birth'), max(occurred_at) FROM ({events_sql})"
        ).fetchone()
        if span is None or span[1] is None:
            return []
        # By default: from the first clinical event to the end of the day of the last one.
        origin = lo or span[0] or span[1]
        hi = hi or datetime.combine(span[1].date(), datetime.max.time())
        out: list[dict[str, Any]] = []
        for rid in ids:
            comp = Compiler(self.rules, events_sql)
            cp = comp.change_points(self.rules.rules[rid].define)
            bounds = f"c >= {_ts(origin)} AND c <= {_ts(hi)}"
            comp.add(
                "pts",
                f"SELECT DISTINCT patient_id, c AS q FROM {cp} WHERE patient_id = {q_(patient)} AND {bounds} "
                f"UNION SELECT {q_(patient)}, {_ts(origin)}",
            )
            root = comp.rule(rid)
            # a rule that is a censored value: its qualifier and bound (see Compiler.censored_root)
            censored = "cq, cx" if comp.censored_root(rid) else "NULL::VARCHAR, NULL::DOUBLE"
            with _small(self.con, True):
                rows = self.con.execute(
                    f"{comp.out.with_sql()}\nSELECT q, b, x, why, {censored} FROM {root} ORDER BY q"
                ).fetchall()
            rule = self.rules.rules[rid]
            # the last interval runs to the instant after the window's last one, so that
            # every interval is [start, end) and one starting at that last instant (an event
            # at 23:59:59.999999 of the last day) is not empty
            out.extend(_intervals(rid, rule, rows, hi + timedelta(microseconds=1)))
        return out

    def _replayed_history(
        self, patient: str, ids: Sequence[str], lo: datetime | None, hi: datetime | None
    ) -> list[dict[str, Any]]:
        """:meth:`history` by the replay: the same span (the first clinical event, else the
        first event, to the end of the last event's day, unless given), the same points in it
        (the span's first instant and every instant where a rule can change), the same values
        and reasons (a censored rule's bound and qualifier, as the SQL gives them)."""
        from timeline.engine.replay import Reference

        events = self._patient_events(patient)
        if not events:
            return []
        clinical = [e["occurred_at"] for e in events if e["kind"] != "birth"]
        last = max(e["occurred_at"] for e in events)
        origin = lo or (min(clinical) if clinical else last)
        hi = hi or datetime.combine(last.date(), datetime.max.time())
        # values and reasons only: a history shows no evidence (Reference.evidence)
        ref = Reference(self.rules, events, evidence=False)
        comp = Compiler(self.rules, "SELECT * FROM tl_ev")  # which values are INTEGER columns
        integers: dict[int, bool] = {}
        out: list[dict[str, Any]] = []
        for rid in ids:
            rule = self.rules.rules[rid]
            censored = reads_censored(rule.define, self.rules)
            boolean = rule.type.kind == "bool"
            # a number as the SQL engine's relation reads back: an INTEGER (a joint count) or a DOUBLE
            whole = reads_as_integer(self.rules, comp, rule.define, integers)
            number: Callable[[Any], Any] = int if whole and self.rules.reported(rid) is None else float
            rows: list[tuple[Any, ...]] = []
            points = [c for c in ref.candidates(rule.define) if origin < c <= hi]
            for q in (origin, *points):
                v = ref.rule(rid, q)
                if censored and v.qualifier is not None:  # its bound and qualifier (cq, cx)
                    rows.append((q, None, None, v.why, v.qualifier, v.bound))
                elif boolean or v.value is None:
                    rows.append((q, v.value, None, v.why, None, None))
                else:
                    rows.append((q, None, number(v.value), v.why, None, None))
            out.extend(_intervals(rid, rule, rows, hi + timedelta(microseconds=1)))
        return out

    def states(self, points_sql: str, rule_ids: Sequence[str] | None = None, name: str = "tl_states") -> int:
        """Every requested rule at every point of ``points_sql`` (patient_id, q), values and
        unknown reasons only, written to the temp table ``name`` (rule_id, patient_id, q, b, x,
        why, qualifier: a censored value's, its bound in x, as in :meth:`histories`); returns
        the number of states. Nothing becomes a Python object: a cohort at scale (100k patients
        × 3 points × 36 rules = 10.8M states) stays in DuckDB, to be counted, joined or copied
        out there. The same values, reasons and qualifiers as :meth:`evaluate`."""
        ids = self.rule_ids(rule_ids)
        if not name.startswith("tl_"):
            raise UsageError(f"states table {name!r}: scratch tables are named tl_*")
        comp = self._compiler(None, evidence=False)
        comp.add("pts", "SELECT DISTINCT patient_id, q FROM tl_pts")
        roots = {rid: comp.rule(rid) for rid in ids}
        parts = []
        for rid, root in roots.items():
            # a rule that is a censored value: its bound as x, its qualifier (Compiler.censored_root)
            x, qualifier = ("coalesce(x, cx)", "cq") if comp.censored_root(rid) else ("x", "NULL::VARCHAR")
            value = "b" if self.rules.rules[rid].type.kind == "bool" else x
            parts.append(
                f"SELECT {q_(rid)} AS rule_id, patient_id, q, b, {x} AS x, "
                f"CASE WHEN {value} IS NULL THEN why END AS why, {qualifier} AS qualifier FROM {root}"
            )
        return self._into(name, points_sql, comp, roots, " UNION ALL ".join(parts))

    def histories(
        self,
        rule_ids: Sequence[str] | None = None,
        name: str = "tl_history",
        each: Callable[[str], None] | None = None,
    ) -> int:
        """Every patient's history of every requested rule, set-based: the same intervals as
        :meth:`history` (from each patient's first clinical event through the day of the last
        event, the last interval ending at the midnight after it), written to the temp table ``name`` (rule_id, patient_id, start, end,
        b, x, why, qualifier: a censored value's, its bound in x); returns the number of intervals. Each rule is evaluated at its own change
        points, for a batch of ``history_batch_patients`` patients at a time (at most
        ``batch_patients``; see :meth:`batches`, HISTORY_BATCH_PATIENTS), a stepwise rule once
        (see :meth:`Compiler.steps`), whatever reads it.

        ``each``: called after each batch with ``name``, which then holds that batch's intervals
        alone (the next batch replaces them): a caller writing them out as they come holds one
        batch, never the cohort's (1M patients: ~1B intervals). The batches are patients in id
        order, so their intervals sorted batch by batch are sorted as a whole."""
        ids = self.rule_ids(rule_ids)
        if not name.startswith("tl_"):
            raise UsageError(f"history table {name!r}: scratch tables are named tl_*")
        comp = self._compiler(None, evidence=False, dense=True)
        span = comp.add(
            "hspan",
            # id: the patient's id in the store (the batch's patients are integer keys, see
            # batches), which the final statement writes
            """SELECT s.*, m.patient_id AS id FROM (
                   SELECT patient_id, coalesce(min(occurred_at) FILTER (WHERE kind <> 'birth'), max(occurred_at)) AS origin,
                          date_trunc('day', max(occurred_at)) + INTERVAL '1 day' - INTERVAL 1 MICROSECOND AS hi
                   FROM ev GROUP BY patient_id) s JOIN tl_pid m ON m.pid = s.patient_id""",
        )
        parts = []
        roots = {}
        for rid in ids:
            if comp.stepwise(rid):
                # a stepwise rule is evaluated once, at its own change points (Compiler.steps),
                # and its history read from there: its values at those in the span, and as of
                # the span's origin. Another rule reading it looks it up there, and rules of one
                # family (the four ACR Pedi levels, a score and its threshold) share the
                # points, so the relations of their common subtrees are one
                root = roots[rid] = self._steps_in_span(comp, rid, span)
            else:
                # age or time since an event, which change continuously: evaluated at its
                # change points within the span, and at the span's origin
                cp = comp.change_points(self.rules.rules[rid].define)
                pts = comp.add(
                    comp.fresh("hp"),
                    f"""SELECT DISTINCT c.patient_id, c.c AS q FROM {cp} c JOIN {span} s ON s.patient_id = c.patient_id
                           AND c.c >= s.origin AND c.c <= s.hi
                        UNION SELECT patient_id, origin FROM {span}""",
                )
                root = roots[rid] = comp.rule(rid, pts)
            rule = self.rules.rules[rid]
            censored = comp.censored_root(rid)
            # the rule's value: a boolean's b, a number's x (a censored value's bound where it is
            # one: its qualifier is then cq, see Compiler.censored_root)
            v = "r.b" if rule.type.kind == "bool" else "coalesce(r.x, r.cx)" if censored else "r.x"
            # The windows carry the patient's key and what the intervals are made of: the value,
            # the unknown reason (NULL where the value is known) and a censored rule's qualifier.
            # The columns that are constants in every row of the rule (the other kind's value
            # column, NULL in a relation compiled for values, see Compiler.values_only; the
            # qualifier of a rule that is never censored) are written after them, and the span
            # (the patient's text id, the end of the last interval) is joined to the intervals.
            key = "v, why, qualifier" if censored else "v, why"
            b, x = ("w.v", "NULL::DOUBLE") if rule.type.kind == "bool" else ("NULL::BOOLEAN", "w.v")
            qualifier = "w.qualifier" if censored else "NULL::VARCHAR"
            parts.append(
                f"""SELECT {q_(rid)} AS rule_id, s.id AS patient_id, w.q AS start,
                        coalesce(w.next, s.hi + INTERVAL 1 MICROSECOND) AS "end", {b} AS b, {x} AS x, w.why,
                        {qualifier} AS qualifier
                    FROM (SELECT *, lead(q) OVER (PARTITION BY patient_id ORDER BY q) AS next
                          FROM (SELECT *, ({key}) IS NOT DISTINCT FROM lag(({key})) OVER (PARTITION BY patient_id ORDER BY q) AS same
                                FROM (SELECT r.patient_id, r.q, {v} AS v, CASE WHEN {v} IS NULL THEN r.why END AS why
                                             {", r.cq AS qualifier" if censored else ""} FROM {root} r))
                          WHERE NOT same) w
                    JOIN {span} s ON s.patient_id = w.patient_id"""
            )
        patients = (
            "SELECT DISTINCT patient_id, NULL::TIMESTAMP AS q "
            f"FROM ({self.store.current_sql(self.high_water, columns=['patient_id'])})"
        )
        # a history evaluates each rule at all its change points (~100 times a cohort run's
        # points), so its batches are smaller: see HISTORY_BATCH_PATIENTS
        size = min(self.batch_patients, self.history_batch_patients)
        return self._into(
            name, patients, comp, roots, " UNION ALL ".join(parts), keep={span}, keyed=True, size=size, each=each
        )

    @staticmethod
    def _steps_in_span(comp: Compiler, rid: str, span: str) -> str:
        """A stepwise rule's values at its change points within each patient's span (origin,
        hi] and the one before or at its origin, moved to it (STEP_ORIGIN, before every origin,
        is a step of every patient): the very rows of its evaluation at the points a history
        reads (those change points and the origin), taken from its steps rather than evaluated
        again at them (or, for a rule others read, looked up there as of each: an ASOF join)."""
        steps = comp.steps(rid)
        bound = ", f.cq, f.cx" if comp.censored_root(rid) else ""  # see Compiler.censored_root
        # The step at or before each origin is the last of the rule's points there: its steps
        # are one row per point (Compiler.steps), and STEP_ORIGIN is one of every patient's. So
        # the rows a history reads are those from that point through hi, found by one join
        # with the span. (A window over the steps finding it, max(q) FILTER q <= origin per
        # patient, cost ~7% of a history's CPU; rules of one family share this relation.)
        first = comp.add(
            comp.fresh("o"),
            f"""SELECT s.patient_id, s.origin, s.hi, max(p.q) AS oq
                FROM {span} s JOIN {comp.steps_points[rid]} p ON p.patient_id = s.patient_id AND p.q <= s.origin
                GROUP BY s.patient_id, s.origin, s.hi""",
        )
        found = comp.add(
            comp.fresh("n"),
            f"""SELECT f.patient_id, greatest(f.q, s.origin) AS q, f.b, f.x, f.why, f.ev, f.lo, f.hi, f.note{bound}
                FROM {steps} f JOIN {first} s ON s.patient_id = f.patient_id AND f.q >= s.oq AND f.q <= s.hi""",
        )
        if bound:
            comp.censored_relations.add(found)
        return found

    def _into(
        self,
        name: str,
        points_sql: str,
        comp: Compiler,
        roots: dict[str, str],
        select: str,
        keep: set[str] | None = None,
        keyed: bool = False,
        size: int | None = None,
        each: Callable[[str], None] | None = None,
    ) -> int:
        """``select`` over the compiled ``roots`` for every batch of the points, into the temp
        table ``name``; returns its number of rows (with ``each``, every batch's: ``name`` holds
        one batch's rows when ``each(name)`` is called after it). ``keyed``, ``size``: see
        :meth:`batches`."""
        total = 0
        for b in self.batches(points_sql, keyed, size):
            fresh = b == 0 or each is not None
            head = f"CREATE OR REPLACE TEMP TABLE {name} AS " if fresh else f"INSERT INTO {name} "
            staged(self.con, comp, roots, head + select, keep)
            if each is not None:
                total += self._count(name)
                each(name)
        return total if each is not None else self._count(name)

    def _count(self, table: str) -> int:
        found = self.con.execute(f"SELECT count(*) FROM {table}").fetchone()
        return int(found[0]) if found else 0


_NAME = re.compile(r"\b[a-z]+[0-9]*\b")
# DuckDB's memory during a staged run: past it, temp tables spill to disk. Its default (80% of
# RAM) let a 10k-patient cohort run reach 4.4 GB of RSS holding relations it would read once.
ENGINE_MEMORY_LIMIT = 2 * 2**30
# Patients per staged run (Session.batch_patients): see Session.batches.
BATCH_PATIENTS = 20_000
# Patients per staged run of Session.histories (Session.history_batch_patients). A history
# evaluates each rule at all its change points (~100 times a cohort run's points): at 2k patients
# its live relations already fill ENGINE_MEMORY_LIMIT (peak RSS ~2.0 GB, 42 MiB spilled), at 10k
# in one batch 1.9-3.3 GiB of temp files are written from the first fifth of the run on. In
# batches of 2,500 patients: the same intervals, 10k peak RSS ~3.27 -> ~2.2 GB and wall -11 to
# -24% (CPU within 2%), 5k CPU -7% (benchmarks/README.md, helper 80); each batch repeats the
# ~4 s of CPU of the run's ~240 statements' fixed cost.
HISTORY_BATCH_PATIENTS = 2_500


def staged(
    con: duckdb.DuckDBPyConnection,
    comp: Compiler,
    roots: dict[str, str],
    final: str,
    keep: set[str] | None = None,
) -> list[tuple[Any, ...]]:
    """Run a compiled rule set one statement per shared relation, then ``final`` over the
    roots (``roots``: rule id → its relation; ``keep``: other relations ``final`` reads).

    One WITH query of ~400 CTEs is what DuckDB plans worst at scale (whole sJIA pack, 10k
    patients × 3 points: 115 s as one query, 20 s staged; with the shared relations as
    MATERIALIZED CTEs, 2.8× the CPU of this for one patient). A relation read by several
    others becomes a temp table, computed once; a relation read once is a CTE of the statement
    that reads it (NOT MATERIALIZED: inlined where it is read, as a view would be, without a
    CREATE VIEW and a DROP VIEW of its own); the events relation ``ev`` stays one view. The
    sJIA pack's cohort run: 135 of its 562 relations are tables, 1,655 statements → 181. Each
    table is dropped as soon as its last reader has been computed (the tables of one
    statement's last reads in one call), so memory holds the live frontier of the rule graph
    rather than all of it. The roots stay tables: as CTEs of the final statement (20 of the
    pack's 44 roots are read by it alone) they saved no measurable time and raised the peak
    memory of every patient's history at 2k patients by 18 %. Running out of memory or temp
    disk raises :class:`ResourceError` naming the relation and the rule it belongs to."""
    keep = set(roots.values()) | (keep or set())
    sqls = dict(comp.out.ctes)
    order = {n: i for i, n in enumerate(sqls)}
    deps = {n: sorted(set(_NAME.findall(sql)) & sqls.keys() - {n}) for n, sql in sqls.items()}
    readers = {n: 0 for n in sqls}
    for n in sqls:
        for d in deps[n]:
            readers[d] += 1
    inlined = {n for n in sqls if readers[n] == 1 and n != "ev" and n not in keep}
    live: list[str] = []  # the tables (and the view ev) that exist, in order of creation

    def statement(name: str) -> tuple[str, list[str]]:
        """``name``'s SQL with the relations read once that it reads (transitively) as its
        CTEs, and the tables and views these and it read (once per reader)."""
        ctes, todo = set(), list(deps[name])
        while todo:
            d = todo.pop()
            if d in inlined and d not in ctes:
                ctes.add(d)
                todo += deps[d]
        ordered = sorted(ctes, key=order.__getitem__)
        reads = [d for n in (name, *ordered) for d in deps[n] if d not in inlined]
        with_ = "WITH " + ", ".join(f"{n} AS NOT MATERIALIZED ({sqls[n]})" for n in ordered) + "\n"
        return (with_ if ordered else "") + sqls[name], reads

    def drop(names: list[str]) -> None:
        if names:  # in one call: the tables a statement was the last reader of
            con.execute(";\n".join(f"DROP {'VIEW' if n == 'ev' else 'TABLE'} IF EXISTS {n}" for n in names))
            for n in names:
                live.remove(n)

    restore = lower_memory_limit(con, ENGINE_MEMORY_LIMIT)
    step = "the final statement"
    try:
        for name, sql in comp.out.ctes:
            if name in inlined:
                continue
            # `ev`, the current events, stays a view however many read it: each selector's
            # filter then reaches the store's own scan (zone maps, a few columns), where a
            # temp table held every event of the cohort (one-rule ACES task, 10k patients:
            # 1.7 s and 960 MB → 0.6 s and 190 MB; the whole pack: 1.75 → 1.38 GB)
            if name == "ev" and name not in keep:
                live.append(name)
                con.execute(f"CREATE OR REPLACE TEMP VIEW {name} AS {sql}")
                continue
            step = name
            body, reads = statement(name)
            live.append(name)
            con.execute(f"CREATE OR REPLACE TEMP TABLE {name} AS {body}")
            for d in reads:
                readers[d] -= 1
            drop([d for d in dict.fromkeys(reads) if readers[d] == 0 and d not in keep and d != "ev"])
        step = "the final statement"
        return con.execute(final).fetchall()
    except duckdb.Error as exc:
        if not out_of_room(exc):
            raise
        what = str(exc).splitlines()[0]
        if step in deps:
            step = f"relation {step} ({order[step] + 1} of {len(deps)}, {_owner(step, roots, deps)})"
        raise ResourceError(
            f"evaluation stopped at {step}: {what} — the store is unchanged; evaluate fewer patients "
            "at a time (Session(batch_patients=...)) or free temp disk space"
        ) from exc
    finally:
        drop(list(reversed(live)))
        con.execute(restore)


def _owner(name: str, roots: dict[str, str], deps: dict[str, list[str]]) -> str:
    """The rules whose relations include ``name``, for an error message."""
    owners = []
    for rid, root in roots.items():
        seen, todo = set(), [root]
        while todo:
            n = todo.pop()
            if n == name:
                owners.append(rid)
                break
            if n not in seen:
                seen.add(n)
                todo += deps.get(n, [])
    if not owners:
        return "read by no rule"
    return f"rule {owners[0]}" + (f" and {len(owners) - 1} more" if len(owners) > 1 else "")


@contextmanager
def _small(con: duckdb.DuckDBPyConnection, small: bool) -> Iterator[None]:
    """For a few patients every relation is tiny, and DuckDB's optimizer costs more than it
    saves on a query of several hundred CTEs (measured: 1.4 s → 0.8 s for the sJIA pack on
    one patient, same answers). Large cohorts keep the optimizer."""
    if not small:
        yield
        return
    con.execute("PRAGMA disable_optimizer")
    try:
        yield
    finally:
        con.execute("PRAGMA enable_optimizer")


def _ts(value: datetime) -> str:
    return f"TIMESTAMP '{value.isoformat(sep=' ')}'"


def _intervals(
    rid: str, rule: ast.Rule, rows: list[tuple[Any, ...]], end: datetime | None
) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for q, b, x, why, cq, cx in rows:
        value = b if rule.type.kind == "bool" else cx if cq is not None else x
        key = (value, cq, why if value is None else None)
        if current is not None and current["_key"] == key:
            continue
        if current is not None:
            current["end"] = q
            out.append(current)
        current = {
            "rule": rid, "start": q, "end": None, "_key": key,
            "value": "unknown" if value is None else value, "qualifier": cq,
            "reason": why if value is None else None,
        }  # fmt: skip
    if current is not None:
        current["end"] = end
        out.append(current)
    for item in out:
        item.pop("_key")
    return out


@dataclass
class _Rows:
    """Everything an explanation reads of one patient's compiled relations, fetched by one
    statement: the rows of every node's relation, by instant; the instant each ``at_anchor``
    evaluates its expression at, by instant; the moments each ``held_for`` checks, by
    instant. One statement of the rule's CTEs, each materialized, instead of a temp table
    per relation, a query per node and a DROP per table (complete_response of the 10k
    cohort's patient with most events: 84 CREATEs, 47 queries and 60 DROPs before)."""

    nodes: dict[str, list[dict[str, Any]]]
    anchored: dict[tuple[int, str], dict[datetime, datetime | None]]
    held: dict[tuple[int, str], dict[datetime, list[datetime]]]

    @classmethod
    def fetch(cls, con: duckdb.DuckDBPyConnection, comp: Compiler, patient: str) -> _Rows:
        mine = f"patient_id = {q_(patient)}"
        tables = list(dict.fromkeys(comp.out.names.values()))
        reads = [
            f"(SELECT list(r) FROM (SELECT {COLUMNS}{', cq, cx' if t in comp.censored_relations else ''} "
            f"FROM {t} WHERE {mine}) r)"
            for t in tables
        ]
        anchors = list(comp.anchored.items())
        reads += [f"(SELECT list([q, {at}]) FROM {a} WHERE {mine})" for _, (a, at) in anchors]
        helds = list(comp.held.items())
        reads += [f"(SELECT list([q0, q]) FROM {pts2} WHERE {mine})" for _, (pts2, _) in helds]
        ctes = ",\n".join(f"{n} AS MATERIALIZED ({sql})" for n, sql in comp.out.ctes)
        found = con.execute(f"WITH {ctes}\nSELECT {', '.join(reads)}").fetchone()
        assert found is not None
        nodes = {t: rows or [] for t, rows in zip(tables, found, strict=False)}
        anchored: dict[tuple[int, str], dict[datetime, datetime | None]] = {}
        for (key, _), rows in zip(anchors, found[len(tables) :], strict=False):
            anchored[key] = {}
            for q, at in rows or []:
                anchored[key].setdefault(q, at)
        held: dict[tuple[int, str], dict[datetime, list[datetime]]] = {}
        for (key, _), rows in zip(helds, found[len(tables) + len(anchors) :], strict=True):
            held[key] = {}
            for q0, q in sorted(rows or []):
                held[key].setdefault(q0, []).append(q)
        return cls(nodes, anchored, held)


@dataclass
class _Explainer:
    session: Session
    comp: Compiler
    patient: str
    rows: _Rows
    seqs: set[int] = field(default_factory=set)

    def row(self, table: str, q: datetime) -> dict[str, Any] | None:
        return next((r for r in self.rows.nodes[table] if r["q"] == q), None)

    def rule(self, rule_id: str, points: str, q: datetime) -> dict[str, Any]:
        tree = self.node(self.session.rules.rules[rule_id].define, points, q)
        return _rule_entry(self.session.rules, rule_id, tree, self.comp.censored_root(rule_id))

    def node(self, node: ast.Node, points: str, q: datetime) -> dict[str, Any]:
        table = self.comp.out.names[(node.nid, points)]
        out = _node_entry(node, self.session.rules.types[node.nid], self.row(table, q) or {}, self.seqs)
        children: list[dict[str, Any]] = []
        if isinstance(node, ast.RuleRef):
            children.append(self.rule(node.rule, points, q))
        elif isinstance(node, ast.AtAnchor):
            at = self.rows.anchored[(node.nid, points)].get(q)
            if at is not None:
                inner_points = self._points_name(node.expr)
                if inner_points:
                    children.append(self.node(node.expr, inner_points, at))
        elif isinstance(node, ast.HeldFor):
            _, inner_pts = self.comp.held[(node.nid, points)]
            moments = self.rows.held[(node.nid, points)].get(q, [])
            # every moment checked, with the value there, and the clause's whole derivation at
            # the moment that decided: the first not true, else the last
            inner = self.comp.out.names[(node.expr.nid, inner_pts)]
            col = "b" if self.session.rules.types[node.expr.nid].kind == "bool" else "x"
            at_moment = {r["q"]: (r[col], r["why"], r["ev"] or []) for r in self.rows.nodes[inner]}
            checks = []
            for m in moments:
                value, why, mev = at_moment.get(m, (None, None, []))
                self.seqs.update(int(x) for x in mev)
                checks.append(
                    {"at": m.isoformat(sep=" "), "value": "unknown" if value is None else value,
                     "reason": why if value is None else None}
                )  # fmt: skip
            # held_for is false if false at any moment, else unknown if unknown at any
            false = [m for m, c in zip(moments, checks, strict=True) if c["value"] is False]
            unknown = [m for m, c in zip(moments, checks, strict=True) if c["value"] == "unknown"]
            decided = next(iter(false or unknown or moments[-1:]), None)
            out["checked"] = checks
            if decided is not None:
                out["decided_at"] = decided.isoformat(sep=" ")
                out["children"] = [self.node(node.expr, inner_pts, decided)]
            return out
        else:
            for sub in ast.children(node):
                if (sub.nid, points) in self.comp.out.names:
                    children.append(self.node(sub, points, q))
        if children:
            out["children"] = children
        return out

    def _points_name(self, node: ast.Node) -> str | None:
        for (nid, pts), _ in self.comp.out.names.items():
            if nid == node.nid and pts != "pts":
                return pts
        return None


def replay_explains(rules: RuleSet, rule_id: str) -> bool:
    """Whether :class:`_ReplayExplainer` gives a rule's explanation: every rule but those that
    read ``held_for`` (the moments it checks are the compiler's change points, which the replay
    does not find: it evaluates at a superset of them), and those where an ``at_anchor``'s
    clause is evaluated at other instants in more than one place (the compiler's explanation
    shows such a clause from the first relation it finds, which the replay does not mimic).
    Found by walking the rule and the rules it reads."""
    # the places (chains of the nodes that evaluate a clause at other instants) where each node
    # is evaluated; () is the explained instant itself
    contexts: dict[int, set[tuple[int, ...]]] = {}
    anchors: list[ast.AtAnchor] = []
    todo: list[tuple[ast.Node, tuple[int, ...]]] = [(rules.rules[rule_id].define, ())]
    while todo:
        node, ctx = todo.pop()
        seen = contexts.setdefault(node.nid, set())
        if ctx in seen:
            continue
        seen.add(ctx)
        if isinstance(node, ast.HeldFor):
            return False
        if isinstance(node, ast.RuleRef):
            todo.append((rules.rules[node.rule].define, ctx))
            continue
        if isinstance(node, ast.AtAnchor):
            anchors.append(node)
            todo.append((node.expr, (*ctx, node.nid)))
            continue
        for sub in ast.children(node):
            inner = ctx
            if isinstance(node, ast.EpisodeCount) and sub is node.starting_when:
                inner = (*ctx, node.nid)
            todo.append((sub, inner))
        if isinstance(node, ast.InEpisode | ast.EpisodeCount) and node.episodes.when is not None:
            todo.append((node.episodes.when, (*ctx, node.nid, 0)))
    return all(len(contexts[a.expr.nid] - {()}) <= 1 for a in anchors)


@dataclass
class _ReplayExplainer:
    """An explanation built from the Python replay of the patient's events (the evaluator
    `state` runs, :mod:`timeline.engine.replay`) instead of the compiled SQL: the same tree,
    node for node, as :class:`_Explainer` makes from the relations (each clause's value,
    reason, events in the same order, detail, window and censored value; the clauses shown
    are those the compiler evaluates at the same instant), without parsing, planning and
    running the rule's relations (complete_response of the 10k cohort's patient with most
    events: ~80 materialized CTEs, 0.13 s). Not for rules that read ``held_for``
    (:func:`replay_explains`). tests/test_explain_replay.py compares the two."""

    session: Session
    ref: Any  # timeline.engine.replay.Reference, imported when first needed
    comp: Compiler  # for its literals only: which clauses it evaluates as relations
    seqs: set[int] = field(default_factory=set)
    windows: dict[tuple[int, datetime], tuple[datetime | None, datetime | None]] = field(default_factory=dict)
    integers: dict[int, bool] = field(default_factory=dict)

    def rule(self, rule_id: str, q: datetime) -> dict[str, Any]:
        rules = self.session.rules
        tree = self.node(rules.rules[rule_id].define, q)
        return _rule_entry(rules, rule_id, tree, self.comp.censored_root(rule_id))

    def row(self, node: ast.Node, q: datetime) -> dict[str, Any]:
        """The node's row at ``q``, as its relation holds it (see _Rows)."""
        v = self.ref.evaluate(node, q)
        value = v.value
        if value is not None and not isinstance(value, bool):
            # as the relation's column reads back: an INTEGER (a joint count) or a DOUBLE
            value = int(value) if self.integer(node) else float(value)
        lo, hi = self.window(node, q)
        row = {"b": value, "x": value, "why": v.why, "ev": v.ev, "note": v.note, "lo": lo, "hi": hi}
        if v.qualifier is not None and self.comp.carries(node):
            row["cq"], row["cx"] = v.qualifier, v.bound
        return row

    def node(self, node: ast.Node, q: datetime) -> dict[str, Any]:
        out = _node_entry(node, self.session.rules.types[node.nid], self.row(node, q), self.seqs)
        children: list[dict[str, Any]] = []
        if isinstance(node, ast.RuleRef):
            children.append(self.rule(node.rule, q))
        elif isinstance(node, ast.AtAnchor):
            a = self.ref.anchor(node.anchor, q)
            if a is not None:  # the clause at the anchored instant, even after q
                children.append(self.node(node.expr, self.ref.anchored_at(node, a["occurred_at"])))
        else:
            children += [self.node(sub, q) for sub in self.shown(node)]
        if children:
            out["children"] = children
        return out

    def integer(self, node: ast.Node) -> bool:
        """Whether the node's relation has an INTEGER value column (:func:`reads_as_integer`)."""
        return reads_as_integer(self.session.rules, self.comp, node, self.integers)

    def shown(self, node: ast.Node) -> list[ast.Node]:
        """The clauses of ``node`` the compiler evaluates at the node's own instants: not a
        comparison's literal threshold, nor what is evaluated at other instants (an
        episode_count's starting_when, an episode's condition; a normal's limits are literals)."""
        if isinstance(node, ast.Compare):
            numeric = self.session.rules.types[node.left.nid].kind == "num"
            if numeric and self.comp.literal(node.right) is not None:
                return [node.left]
            return [node.left, node.right]
        if isinstance(node, ast.EpisodeCount | ast.Normal | ast.InEpisode):
            return []
        return ast.children(node)

    def window(self, node: ast.Node, q: datetime) -> tuple[datetime | None, datetime | None]:
        """The node's ``lo`` and ``hi`` at ``q``, as the compiler's relation gives them: the
        time a clause looked at (a latest's look-back, an aggregate's window, the time since
        the anchor), passed up through not, clip, unknown_unless, a rule reference and a
        comparison (its left operand's, else its right's)."""
        key = (node.nid, q)
        found = self.windows.get(key)
        if found is None:
            found = self.windows[key] = self._window(node, q)
        return found

    def _window(self, node: ast.Node, q: datetime) -> tuple[datetime | None, datetime | None]:
        from timeline.engine.crossings import anchor_of
        from timeline.engine.replay import FAR, ORIGIN
        from timeline.language.durations import shift

        ref = self.ref
        if isinstance(node, ast.Latest | ast.Normal):
            return shift(q, ref.duration(node.within), -1), q
        if isinstance(node, ast.DailyDose):
            return shift(q, ref.duration(node.weight_within), -1), q
        if isinstance(node, ast.OnDrug):
            return None, q
        if isinstance(node, ast.Age | ast.TimeSince):
            a = ref.anchor(anchor_of(node), q)
            return (a["occurred_at"] if a is not None else None), q
        if isinstance(node, ast.Aggregate | ast.EpisodeCount):
            w = node.window
            at: datetime | None = q
            if w.anchor is not None:
                a = ref.anchor(w.anchor, q)
                at = a["occurred_at"] if a is not None else None
            lo = shift(at, ref.duration(w.start)) if w.start is not None and at is not None else None
            if w.end is None or at is None:  # least(NULL, q) is q
                return lo, q
            return lo, min(shift(at, ref.duration(w.end)), q)
        if isinstance(node, ast.InEpisode):
            inside = ref.episodes_at(node.episodes, q)
            if not inside:
                return None, None
            start, end = min(ep.s for ep in inside), max(ep.e for ep in inside)
            lo = None if start == ORIGIN else start
            return lo, None if node.episodes.when is not None or end == FAR else end
        if isinstance(node, ast.Compare):
            shown = self.shown(node)
            lo, hi = self.window(node.left, q)
            if len(shown) == 1:
                return lo, hi
            rlo, rhi = self.window(node.right, q)
            return (lo if lo is not None else rlo), (hi if hi is not None else rhi)
        if isinstance(node, ast.Not | ast.Clip):
            return self.window(node.item, q)
        if isinstance(node, ast.UnknownUnless):
            return self.window(node.value, q)
        if isinstance(node, ast.RuleRef):
            return self.window(self.session.rules.rules[node.rule].define, q)
        if isinstance(node, ast.AtAnchor):
            a = ref.anchor(node.anchor, q)
            if a is None:
                return None, None
            return self.window(node.expr, ref.anchored_at(node, a["occurred_at"]))
        return None, None  # constants, parameters, logic, arithmetic, coalesce, pct_change, findings

    def tied(self, listed: set[int]) -> dict[int, int]:
        """:meth:`Session._tied` over the replayed events: the patient's current events at the
        instant, of the kind and code, of an event listed, that are not listed, each → the
        smallest seq listed it is tied with."""
        if not listed:
            return {}
        events = self.ref.events
        first: dict[tuple[Any, ...], int] = {}
        for e in events:
            if e["seq"] in listed:
                key = (e["occurred_at"], e["kind"], e.get("code"))
                first[key] = min(first.get(key, e["seq"]), e["seq"])
        out = {}
        for e in events:
            if e["seq"] not in listed:
                found = first.get((e["occurred_at"], e["kind"], e.get("code")))
                if found is not None:
                    out[int(e["seq"])] = int(found)
        return out


def reads_as_integer(rules: RuleSet, comp: Compiler, node: ast.Node, memo: dict[int, bool]) -> bool:
    """Whether the node's relation has an INTEGER value column (it reads back as an int,
    written 6 in JSON, not 6.0): a latest, first, last, min, max or sum of an INTEGER
    column of the events (joint counts, grades), and what passes one on unchanged, or
    combines only such values by +, -, *, min or max without a conversion of units. The
    replay computes every number as a float; what it shows as the SQL engine would (an
    explanation's clauses, a history's values) is converted by this. ``memo``: by node id."""
    found = memo.get(node.nid)
    if found is None:
        found = memo[node.nid] = _reads_as_integer(rules, comp, node, memo)
    return found


def _reads_as_integer(rules: RuleSet, comp: Compiler, node: ast.Node, memo: dict[int, bool]) -> bool:
    from timeline.store import EVENT_COLUMNS

    def column(field: str) -> bool:
        return EVENT_COLUMNS.get(field) == "INTEGER"

    def integer(n: ast.Node) -> bool:
        return reads_as_integer(rules, comp, n, memo)

    if isinstance(node, ast.Latest):
        return column(node.field)
    if isinstance(node, ast.Aggregate):
        return node.fn in ("first", "last", "min", "max", "sum") and column(node.field)
    if isinstance(node, ast.RuleRef):
        return rules.reported(node.rule) is None and integer(rules.rules[node.rule].define)
    if isinstance(node, ast.AtAnchor):
        return integer(node.expr)
    if isinstance(node, ast.UnknownUnless):
        return integer(node.value)
    if isinstance(node, ast.Coalesce):
        return all(integer(i) for i in node.items)
    if isinstance(node, ast.Arith):
        items = node.items
        if node.op not in ("add", "sub", "mul", "min", "max") or not all(map(integer, items)):
            return False
        # a conversion of units multiplies by a DOUBLE
        return node.op == "mul" or not any(comp._scales(items, rules.types[items[0].nid].unit))
    return False


def _rule_entry(rules: RuleSet, rule_id: str, tree: dict[str, Any], censored_root: bool) -> dict[str, Any]:
    """A rule's entry of an explanation: its metadata and value (in the rule's unit, a censored
    value as state shows it: ``censored_root``) above ``tree``, its definition's derivation."""
    rule = rules.rules[rule_id]
    unit = rule.value_type.unit
    value = tree["value"]
    c = rules.reported(rule_id)
    if c is not None and isinstance(value, float):  # the definition's value, in the rule's unit
        value = round(c.apply(value), 9)
    # a rule that is a censored value shows it as state does: its bound and qualifier
    qualifier = tree.get("qualifier") if censored_root else None
    if qualifier is not None:
        value = tree["bound"] if c is None else round(c.apply(tree["bound"]), 9)
    return {
        "rule": f"{rule.id}@{rule.version}",
        "description": rule.description,
        "citation": rule.citation,
        "status": rule.status,
        "meaning": rule.meaning,
        "source": rule.source + (f" (overrides {rule.overrides})" if rule.overrides else ""),
        "parameters": {p.name: _param_text(p, p.name in dict(rule.variant_with)) for p in rule.params},
        **({"variant_of": rule.variant_of} if rule.variant_of else {}),
        "value": value,
        **({"qualifier": qualifier} if qualifier is not None else {}),
        "unit": unit,
        "reason": tree.get("reason") if qualifier is None else None,
        "derivation": tree,
    }


def _node_entry(node: ast.Node, t: ast.Type, row: dict[str, Any], seqs: set[int]) -> dict[str, Any]:
    """A clause's entry of an explanation, from its row (``b`` or ``x``, ``why``, ``ev``,
    ``note``, ``lo``, ``hi`` and, of a censored value, ``cq`` and ``cx``; empty: no row); the
    clause's events are added to ``seqs``."""
    value = row.get("b") if t.kind == "bool" else row.get("x")
    ev = list(dict.fromkeys(int(s) for s in row.get("ev") or []))  # a node's events, each once
    seqs.update(ev)
    out: dict[str, Any] = {
        "op": _op_name(node),
        "path": node.path,
        "value": "unknown" if value is None else value,
    }
    if t.kind == "num" and t.unit not in (None, "1", "?"):
        out["unit"] = t.unit
    if value is None and row.get("why"):
        out["reason"] = row["why"]
    if row.get("cq") is not None:  # a censored value: unknown, its qualifier and bound beside
        out["qualifier"], out["bound"] = row["cq"], row["cx"]
    if row.get("note"):
        out["detail"] = row["note"]
    if row.get("lo") is not None or row.get("hi") is not None:
        out["window"] = {
            "from": row["lo"].isoformat(sep=" ") if row.get("lo") else None,
            "to": row["hi"].isoformat(sep=" ") if row.get("hi") else None,
        }
    if ev:
        out["events"] = ev
    return out


def _param_text(p: ast.ParamSpec, referenced: bool = False) -> str:
    """A parameter's value as explain shows it, written as the rule file and the cohort
    report's header write it (:func:`param_text`); ``referenced``: given by the rule that reads
    this one at other parameter values, not by the site."""
    text = param_text(p.effective, p.unit)
    if p.value is not None:
        given = "as the reference gives it" if referenced else "site override"
        text += f" ({given}; default {param_text(p.default, p.unit)})"
    return text


def _op_name(node: ast.Node) -> str:
    names: dict[type[ast.Node], Callable[[Any], object]] = {
        ast.Logic: lambda n: n.op, ast.Compare: lambda n: n.op, ast.Aggregate: lambda n: n.fn,
        ast.Arith: lambda n: n.op,
    }  # fmt: skip
    for cls, fn in names.items():
        if isinstance(node, cls):
            return str(fn(node))
    if isinstance(node, ast.RuleRef):
        return f"rule {node.rule}"
    if isinstance(node, ast.Param):
        return f"param {node.name}"
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(node).__name__).lower()


def with_store_codes(store: Store, rules: RuleSet) -> RuleSet:
    """The rules, evaluated over ``store``: a code the rules' ``codes.yaml`` defines must mean what
    the store registered under it (its stored values were read that way, and the rules'
    thresholds are read in theirs), and a code only the store registered is read as registered
    (a site's dosing frequency gives its events' daily doses whatever the rule directories)."""
    if store.codes_register() is None and not rules.codebook.site:
        return rules  # the common case: no site codes anywhere (one catalogue lookup)
    from timeline import registry

    stored = registry.site_codes(store)
    if rules.codebook.site:
        check_codes(store, rules, stored)
    own = {sc.code.code for sc in rules.codebook.site}
    extra = [sc for sc in stored if sc.code.code not in own]
    return replace(rules, codebook=rules.codebook.with_site(extra)) if extra else rules


def check_codes(store: Store, rules: RuleSet, site: list[codes.SiteCode]) -> None:
    """Refuse the rules (exit 8, at the codes.yaml line) when a code they define means other
    than what ``store`` registered (``site``)."""
    from timeline.language.loader import Problem, RuleError

    stored = {sc.code.code: sc for sc in site}
    problems = []
    for sc in rules.codebook.site:
        there = stored.get(sc.code.code)
        if there is not None and not there.same_meaning(sc):
            problems.append(Problem(*sc.place(), 1,
                f"code {sc.code.code!r} is registered in {store.path} as {there.meaning()} "
                f"(from {there.source}), not as {sc.meaning()}: the store's values of it are "
                "read as registered"))  # fmt: skip
    if problems:
        raise RuleError(problems)


def open_session(
    store: Store, rule_dirs: Sequence[str] | None = None, as_known_at: datetime | None = None
) -> Session:
    from timeline.language.loader import load_rules
    from timeline.language.loader import rule_dirs as default_dirs

    rules = load_rules(default_dirs(rule_dirs or []))
    return Session(store, rules, as_known_at)


__all__ = ["Result", "Session", "duckdb", "open_session", "parse_at"]
