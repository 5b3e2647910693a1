"""Chart and table-style helpers shared by the review app's pages: colours, cell styles, the
update axis, and line charts with flagged points (Altair, drawn through Streamlit)."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

RED, GREY, BLUE = "#c62828", "#757575", "#1f77b4"
# Cell styles by level (text and colour together, so the meaning survives printing in grey).
CELL_STYLES = {"good": "color: #1b5e20", "warn": "background-color: #fff4e5; color: #8a4b00",
               "bad": "background-color: #fdecea; color: #b71c1c; font-weight: bold", "": ""}


UPDATE_AXIS = alt.X("update:Q", title="policy update (index)",
                    axis=alt.Axis(format="d", tickMinStep=1))


def line(frame: pd.DataFrame, **mark: Any) -> alt.Chart:
    """A line over updates; short series also get dots, so a single update is visible."""
    return alt.Chart(frame).mark_line(point=len(frame) <= 60, **mark)


def chart(layers: list[alt.Chart], title: str) -> None:
    # The title is page text rather than part of the Vega spec: Vega clips titles when the
    # axis labels are wide, and page text is what tests and screen readers find.
    st.markdown(f"**{title}**")
    st.altair_chart(alt.layer(*layers).properties(height=240).interactive())


def flagged_chart(view: pd.DataFrame, y: str, flagged: pd.Series | None, title: str,
                  reference: str | None = None, reference_color: str = GREY,
                  y_title: str | None = None) -> None:
    """``y`` per update as a line, ``reference`` (a target or limit) dashed, and the flagged
    updates (violations, KL above target, recovery steps) as red dots with a tooltip.
    y_title: the axis title with its unit (default: the column name)."""
    layers = [line(view, color=BLUE).encode(x=UPDATE_AXIS, y=alt.Y(f"{y}:Q", title=y_title or y))]
    tooltip = ["update", y]
    if reference is not None:
        layers.append(alt.Chart(view).mark_line(color=reference_color, strokeDash=[6, 4])
                      .encode(x=UPDATE_AXIS, y=f"{reference}:Q"))
        tooltip.append(reference)
    if flagged is not None:
        layers.append(alt.Chart(view[flagged.fillna(False).astype(bool)])
                      .mark_point(color=RED, filled=True, size=60)
                      .encode(x="update:Q", y=f"{y}:Q", tooltip=tooltip))
    chart(layers, title)
