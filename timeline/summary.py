"""One-line human descriptions of stored events, shared by tables and explanations."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from timeline import codes


def _num(x: float | None) -> str:
    if x is None:
        return "?"
    return f"{x:g}"


def when(ts: datetime | None, precision: str | None) -> str:
    """occurred_at as the user gave it: a date stays a date."""
    if ts is None:
        return ""
    if precision == "day":
        return ts.strftime("%Y-%m-%d")
    if precision == "minute":
        return ts.strftime("%Y-%m-%d %H:%M")
    return ts.isoformat(sep=" ")


def _measure(e: dict[str, Any]) -> str:
    # a censored value with its qualifier: <5 mg/L (below the lab's limit of 5)
    qualifier = e.get("value_qualifier") or ""
    text = f"{qualifier}{_num(e.get('value'))} {e.get('unit') or ''}".strip()
    if e.get("orig_unit") and e.get("orig_unit") != e.get("unit"):
        text += f" (as given: {qualifier}{_num(e.get('orig_value'))} {e['orig_unit']})"
    if e.get("ref_low") is not None or e.get("ref_high") is not None:
        text += f" [ref {_num(e.get('ref_low'))}–{_num(e.get('ref_high'))}]"
    return text


def describe(e: dict[str, Any], book: codes.CodeBook = codes.BUILTIN) -> str:
    kind = e.get("kind")
    if kind == "birth":
        return f"born, sex {e.get('sex')}"
    if kind == "diagnosis":
        return f"diagnosis {e.get('code')}"
    if kind in ("medication_start", "medication_dose_change"):
        verb = "start" if kind == "medication_start" else "dose change"
        parts = [f"{e.get('drug')} {verb}: {_num(e.get('dose'))} {e.get('dose_unit')}"]
        parts += [p for p in (e.get("route"), e.get("frequency")) if p]
        return " ".join(parts)
    if kind == "medication_stop":
        return f"{e.get('drug')} stop" + (f" ({e['reason']})" if e.get("reason") else "")
    if kind in codes.VITALS:
        return f"{codes.VITALS[kind].name} {_measure(e)}"
    if kind == "lab":
        name = book.labs[e["code"]].name if e.get("code") in book.labs else e.get("code")
        return f"{name} {_measure(e)}"
    if kind == "assessment":
        return f"{e.get('code')} {_measure(e)}"
    if kind == "finding":
        return f"{e.get('code')} {'present' if e.get('present') is not False else 'absent'}"
    if kind == "joint_exam":
        limited = e.get("limited_joints")
        return f"{e.get('active_joints')} active joints" + (
            f", {limited} limited" if limited is not None else ""
        )
    if kind == "mas_episode":
        return "MAS episode" + (
            f" until {when(e.get('ended_at'), e.get('ended_precision'))}" if e.get("ended_at") else " (open)"
        )
    if kind == "adverse_event":
        text = f"{e.get('term')} (CTCAE grade {e.get('grade')}{', serious' if e.get('serious') else ''})"
        if e.get("action") and e["action"] != "none":
            text += f", {e['action'].replace('_', ' ')}"
        return text
    if kind == "discontinuation":
        return f"{e.get('drug')} discontinued: {e.get('reason')}"
    if kind == "end_of_follow_up":
        return "end of follow-up" + (f" ({e['reason']})" if e.get("reason") else "")
    if kind == "death":
        return "death" + (f" ({e['reason']})" if e.get("reason") else "")
    return str(kind)
