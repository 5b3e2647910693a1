"""The review app's Sweeps page: the same per-configuration summary as ``sweep.html``.

A sweep is chosen from the folders ``find_sweeps`` reports (never from a path in the address),
and its runs are reviewable on the Review page under ids ``sweeps/<id>/runs/<job>/<run>``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from safe_trpo.errors import UserError
from safe_trpo.review.frames import md
from safe_trpo.sweep.summary import (
    HTML_FILE,
    find_sweeps,
    fmt,
    load_summary,
    summary_table,
)


def sweeps_page(root: Path) -> None:
    st.header("Sweeps")
    sweeps = find_sweeps(root)
    if not sweeps:
        st.info(f"No sweeps in {md(root)} (run `safe-trpo sweep SCENARIO --seeds 0-4`).")
        return
    names = [s.name for s in sweeps]
    name = st.selectbox("Sweep", names, key="sweep")
    sweep_dir = sweeps[names.index(name)]
    try:
        summary = load_summary(sweep_dir)
    except UserError as exc:
        st.error(md(exc))
        return
    try:
        _show_summary(summary)
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        # sweep.json is a plain file anyone with access to the folder can edit: a malformed one
        # is reported on the page, never a crash of the app.
        st.error(f"{md(sweep_dir.name)}/sweep.json is malformed "
                 f"({md(type(exc).__name__)}: {md(exc)}); showing nothing from it.")
        return
    page = sweep_dir / HTML_FILE
    if page.is_file() and page.resolve().is_relative_to(root):
        st.download_button("Download sweep.html", page.read_bytes(), file_name=f"{name}.html",
                           mime="text/html")


def _show_summary(summary: dict) -> None:
    """The summary's tables; raises KeyError/TypeError/... on a malformed summary."""
    table = pd.DataFrame(summary_table(summary))  # built first: nothing shown if it fails
    configs = summary.get("configurations", [])
    rows = [[_run_row(run) for run in config.get("runs", [])] for config in configs]
    # sweep.json is written by the sweep, not checked by a chain: all of it is shown literally.
    st.caption(f"Updated {md(summary.get('updated', '?'))}; "
               f"backend {md(summary.get('backend', '?'))}; seeds {md(summary.get('seeds'))}; "
               f"settings {md(summary.get('sets') or 'none')}.")
    method = summary.get("method")
    st.caption(md(method.get("text", "") if isinstance(method, dict) else ""))
    st.dataframe(table, hide_index=True, width="stretch")
    for config, config_rows in zip(configs, rows, strict=True):
        with st.expander(f"{md(config.get('label', '?'))}: runs"):
            st.dataframe(pd.DataFrame(config_rows), hide_index=True, width="stretch")


def _run_row(run: dict) -> dict:
    costs = "; ".join(f"{k} {fmt(v)}" for k, v in (run.get("final_costs") or {}).items())
    return {"seed": run.get("seed"), "state": run.get("state"),
            "verified": run.get("verified"), "final return": fmt(run.get("final_return")),
            "final episode costs": costs or "n/a", "within limits": run.get("within_limits"),
            "run": run.get("run_dir") or "", "reason": run.get("reason", "")}
