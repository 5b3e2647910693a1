"""The review app's view of ``safe-trpo compare`` lines: the latest comparison as a table and
the example episode's trajectories (every controller on the same axes, limits drawn), built by
the same functions as the report's section, so the two cannot disagree."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from safe_trpo.report.comparison import comparison_figure, comparison_rows, solve_time_notes
from safe_trpo.review.frames import md


def comparison_frame(record: dict[str, Any]) -> pd.DataFrame:
    """One row per controller of a comparison line, as display text."""
    headers, rows = comparison_rows(record)
    return pd.DataFrame(rows, columns=headers)


def comparison_tab(lines: list[dict[str, Any]]) -> None:
    found = [ln for ln in lines if ln.get("type") == "comparison"]
    if not found:
        st.info("No comparison recorded for this run (`safe-trpo compare RUN --controllers "
                "pid,mpc`).")
        return
    record = found[-1]
    st.caption(f"Line seq {md(record.get('seq'))}: {md(record.get('episodes'))} episodes from "
               f"seed {md(record.get('seed'))}, every controller on the same episodes; 95 % "
               "intervals over episodes, worst episode beside each mean.")
    st.dataframe(comparison_frame(record), hide_index=True)
    for note in solve_time_notes(record):
        st.caption(md(note))
    try:
        st.pyplot(comparison_figure(record))
    except (TypeError, ValueError, KeyError, IndexError):
        st.warning("The example trajectories could not be drawn from this line.")
    if len(found) > 1:
        st.caption(f"{len(found) - 1} earlier comparison lines not shown.")
