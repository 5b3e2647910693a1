"""The verdict panel at the top of the review app's run page (``record.verdict`` decides; the
report's "At a glance", ``verify`` and sweeps use the same rule)."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from safe_trpo.record.verdict import LimitCount, Verdict
from safe_trpo.review.frames import md


def _count(c: LimitCount | None) -> str:
    if c is None or c.over is None:
        return "not recorded"
    bound = "at least " if c.note.startswith("at least") else ""
    return f"{bound}{c.over}" + (f" of {c.episodes}" if c.episodes is not None else "")


def limits_frame(v: Verdict) -> pd.DataFrame:
    """One row per constraint: limit, the end's count and worst, training's count and worst."""
    final = {c.name: c for c in v.limits.counts}
    rows = []
    for t in v.training:
        c = final.get(t.name)
        # Short headers: the table must fit the page without cutting a column off.
        rows.append({"constraint": t.name, "limit": t.limit,
                     "end: episodes over": _count(c),
                     "end: worst episode": None if c is None else c.worst,
                     "training: episodes over": _count(t),
                     "training: worst": t.worst})
    return pd.DataFrame(rows)


def verdict_panel(v: Verdict | None) -> None:
    """Status, integrity, limits at the end (with counts), training totals and sign-offs."""
    if v is None:
        return
    within = {True: "within every limit", False: "**OVER A LIMIT**",
              None: "**unknown**"}[v.limits.within]
    basis = ("on the final policy's evaluation" if v.limits.basis == "evaluation"
             else "at the end of training (not evaluated: run `safe-trpo evaluate`)"
             if v.limits.basis == "end of training" else "no update rows")
    status = md(v.status_text()).replace("FAILED", "**FAILED**").replace(
        "INTERRUPTED", "**INTERRUPTED**")
    over = sum(c.over or 0 for c in v.training)
    bound = "at least " if any(c.note.startswith("at least") for c in v.training) else ""
    body = "  \n".join([
        f"**Verdict.** Status: {status} · integrity: **{md(v.integrity)}**",
        f"Limits at the end: {within} {basis}; {md(v.limits.detail)}",
        f"Training: {bound}{over} episode(s) over a limit in total"
        + ("" if all(c.over is not None and not c.note for c in v.training)
           else " (episode counts partly not recorded: older record)"),
        f"Sign-offs: {md(v.signoffs.text())}"])
    {"ok": st.success, "warn": st.warning, "bad": st.error}[v.level](body)
    if v.training:
        st.dataframe(limits_frame(v), hide_index=True, key="verdict_limits")
