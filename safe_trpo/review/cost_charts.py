"""The review app's Constraints tab: each constraint's episode cost against its limit, on an
axis scaled to the limit (values above it drawn as triangles on the top edge, counted in the
title), the batch's worst episode next to its mean, the final policy's evaluation marked at the
last update, and each dual variable on its own axes (their scales differ by orders of
magnitude). The same rules as the report's figures (``report.plots``)."""

from __future__ import annotations

from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st

from safe_trpo.report.plots import CLIP_FACTOR, FinalEvaluation, final_evaluation
from safe_trpo.review import runs
from safe_trpo.review.charts import RED, UPDATE_AXIS, chart, line
from safe_trpo.review.frames import md

CLIP_COLOR, EVAL_COLOR = "#6a1b9a", "#00695c"


def axis_top(limit: float, mean: pd.Series, worst: pd.Series) -> float | None:
    """Top of the cost axis (the report's rule, ``report.plots._clip_at``); None: no clipping."""
    if not (np.isfinite(limit) and limit > 0):
        return None
    top = CLIP_FACTOR * limit
    means = mean.dropna()
    if len(means):
        top = max(top, 1.1 * float(np.percentile(means, 95)))
    values = pd.concat([mean, worst]).dropna()
    return top if len(values) and float(values.max()) > top else None


def cost_units(lines: list[dict[str, Any]]) -> dict[str, str]:
    """Constraint name -> unit of its episode cost (``envs.info.cost_units``)."""
    from envs.info import cost_units as env_cost_units

    env = runs.scenario_of(lines).get("env", {})
    return env_cost_units(env.get("id") if isinstance(env, dict) else None)


def cost_chart(rows: pd.DataFrame, name: str, unit: str,
               ev: FinalEvaluation | None) -> None:
    """One constraint's chart (see the module docstring)."""
    limit = float(rows["limit"].dropna().iloc[-1]) if rows["limit"].notna().any() else np.nan
    top = axis_top(limit, rows["ep_cost"], rows["ep_cost_max"])
    series = {"ep_cost": "mean episode cost of the batch"}
    if rows["ep_cost_max"].notna().any():
        series["ep_cost_max"] = "worst episode of the batch"
    long = rows.melt(id_vars=["update"], value_vars=list(series), var_name="series",
                     value_name="cost").assign(series=lambda d: d["series"].map(series))
    y_scale = alt.Scale(domain=[0, top], clamp=True) if top else alt.Undefined
    y = alt.Y("cost:Q", title=f"episode cost ({unit})", scale=y_scale)
    color = alt.Color("series:N", title=None, legend=alt.Legend(orient="bottom", labelLimit=0))
    layers = [line(long).encode(x=UPDATE_AXIS, y=y, color=color),
              alt.Chart(rows).mark_line(color=RED, strokeDash=[6, 4]).encode(
                  x=UPDATE_AXIS, y=alt.Y("limit:Q", scale=y_scale))]
    violated = rows[rows["violated"].eq(True)]
    layers.append(alt.Chart(violated).mark_point(color=RED, filled=True, size=60).encode(
        x="update:Q", y=alt.Y("ep_cost:Q", scale=y_scale),
        tooltip=["update", "ep_cost", "limit", "episodes_over", "ep_cost_max"]))
    above = pd.DataFrame()
    if top:
        peak = rows[["ep_cost", "ep_cost_max"]].max(axis=1)
        above = rows.assign(peak=peak)[peak > top]
        layers.append(alt.Chart(above.assign(edge=top)).mark_point(
            shape="triangle-up", color=CLIP_COLOR, filled=True, size=70).encode(
            x="update:Q", y=alt.Y("edge:Q", scale=y_scale), tooltip=["update", "peak"]))
    note = ""
    if ev is not None and name in ev.costs:
        mean, worst, over = ev.costs[name]
        points = pd.DataFrame({"update": [rows["update"].max()] * 2,
                               "value": [mean, worst], "what": ["evaluation mean",
                                                                 "evaluation worst episode"]})
        layers.append(alt.Chart(points.dropna()).mark_point(
            shape="diamond", color=EVAL_COLOR, filled=True, size=110).encode(
            x="update:Q", y=alt.Y("value:Q", scale=y_scale), tooltip=["what", "value"]))
        note = (f"; diamonds: final-policy evaluation (seq {ev.seq}) mean {mean:.3g}, worst "
                f"{worst:.3g}" + (f", {over} of {ev.episodes} episodes over" if isinstance(
                    over, int) else ""))
    clipped = (f"; triangles: {len(above)} updates above the axis top {top:.3g} (largest "
               f"{float(above['peak'].max()):.3g})" if len(above) else "")
    n_bad = int(rows["violated"].eq(True).sum())
    chart(layers, f"{md(name)}: episode cost vs limit {limit:.4g} (dashed) - {n_bad} of "
                  f"{len(rows)} updates with the mean over (red){md(clipped + note)}")


def constraints_tab(cons: pd.DataFrame, lines: list[dict[str, Any]]) -> None:
    if cons.empty:
        st.info("No constraint costs recorded yet.")
        return
    ev, units = final_evaluation(lines), cost_units(lines)
    for name, rows in cons.groupby("constraint", sort=False):
        view = runs.thin(rows, rows["violated"].eq(True))
        cost_chart(view, str(name), units.get(str(name), "sum of the per-step cost"), ev)
    for name, rows in cons.groupby("constraint", sort=False):
        if rows["nu"].notna().any():
            view = runs.thin(rows, rows["nu"].isna())
            chart([line(view).encode(x=UPDATE_AXIS, y=alt.Y(
                "nu:Q", title="nu (reward per unit of episode cost)"))],
                f"Dual variable nu of {md(name)} (CPO dual or Lagrange multiplier)")
