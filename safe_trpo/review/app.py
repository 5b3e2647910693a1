"""Streamlit review app: the list of runs, one run's review and sign-off, a comparison of runs.

Started by ``safe-trpo review`` (``safe_trpo.review.launch``) as
``streamlit run app.py -- --reports DIR [--reviewers FILE]``. The same two settings may come from
the environment variables SAFE_TRPO_REPORTS and SAFE_TRPO_REVIEWERS (how tests set them); the
script arguments win. The address may carry ``?page=Review&run=<run id>``; a run id is only
accepted if it names a folder found in the reports folder. Run ids are paths relative to the
reports folder (``sweeps/<id>/runs/<job>/<run>`` for a sweep's runs). Text from the audit log,
paths and the address reach markdown only through ``runs.md``, which makes them literal.

The app reads only inside the reports folder, never unpickles anything (it does not load
checkpoints at all) and writes exactly one kind of thing: a ``signoff`` line, appended through
``AuditLog`` after the run has been verified again (``signoff.append_signoff``).
"""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import asdict
from pathlib import Path

import altair as alt
import pandas as pd
import streamlit as st

from safe_trpo.errors import UserError
from safe_trpo.record import signoff
from safe_trpo.review import runs
from safe_trpo.review.charts import CELL_STYLES, UPDATE_AXIS, chart
from safe_trpo.review.cost_charts import cost_units
from safe_trpo.review.frames import md
from safe_trpo.review.review_page import review_page
from safe_trpo.review.sweeps_page import sweeps_page

PAGES = ("Runs", "Review", "Compare", "Sweeps")
# Chart helpers and cell styles: charts.py. The Review page and its sign-off form: review_page.py.


def settings() -> tuple[Path, tuple[str, ...] | None]:
    """(reports folder, allowed reviewer names or None) from script args or environment."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--reports")
    parser.add_argument("--reviewers")
    parser.add_argument("--keyring")
    args, _ = parser.parse_known_args(sys.argv[1:])
    if args.keyring:  # the sign-off section reads it (record.keys.configured_keyring)
        os.environ["SAFE_TRPO_KEYRING"] = args.keyring
    reports = args.reports or os.environ.get("SAFE_TRPO_REPORTS") or "reports"
    reviewers = args.reviewers or os.environ.get("SAFE_TRPO_REVIEWERS")
    allowed = signoff.load_reviewers(Path(reviewers)) if reviewers else None
    return runs.reports_root(reports), allowed


@st.cache_resource
def run_cache() -> runs.RunCache:
    """One summary cache for the whole server, shared by every browser session."""
    return runs.RunCache()


def init_from_address(run_ids: list[str]) -> None:
    """On a session's first run, take the page and run from the address, checking the run."""
    state = st.session_state
    if state.get("address_read"):
        return
    state.address_read = True
    page = st.query_params.get("page")
    if page in PAGES:
        state.page = page
    run = st.query_params.get("run")
    if run is not None:
        if run in run_ids:
            state.run = run
        else:
            state.address_error = (f"Unknown run {md(repr(run))} in the address: it is not a run "
                                   f"folder in the reports folder. Pick a run below.")


def open_run(run_id: str) -> None:
    st.session_state.page = "Review"
    st.session_state.run = run_id


# --- the list of runs ------------------------------------------------------------------------

def styled_runs(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    """Colour integrity, sign-off and negative margins, so problems stand out in a long list."""
    def level(mapping: dict[str, str]):
        return lambda v: CELL_STYLES[mapping.get(v, "bad")]

    return (frame.style
            .map(level(runs.INTEGRITY_LEVELS), subset=["integrity"])
            .map(level(runs.SIGNOFF_LEVELS), subset=["sign-off"])
            .map(lambda v: CELL_STYLES["good" if v.startswith("within") and "training" not in v
                                       else "bad" if v.startswith("OVER") else "warn"],
                 subset=["limits at end"])
            .map(lambda v: CELL_STYLES["bad" if pd.notna(v) and v < 0 else ""],
                 subset=["worst margin, last update"])
            .map(lambda v: CELL_STYLES["warn" if v else ""], subset=["updates violating"])
            .format(precision=4, subset=["worst margin, last update"]))


def runs_page(root: Path) -> None:
    st.title("Runs")
    summaries = run_cache().summaries(root)
    if not summaries:
        st.info(f"No run folders in {md(root)} yet. "
                "Train one with `safe-trpo train SCENARIO.toml`.")
        return
    frame = runs.summaries_frame(summaries)
    query = st.text_input("Search", key="search",
                          placeholder="run id, scenario, algorithm, status, sign-off ...")
    shown = runs.filter_frame(frame, query)
    st.caption(f"{len(shown)} of {len(frame)} runs. Click a column header to sort. "
               "**Worst margin, last update**: the smallest (limit - episode cost) over the "
               "constraints of the last update; negative means violated. **Updates violating**: "
               "updates in which any constraint's episode cost exceeded its limit. "
               "**Limits at end**: whether any episode of the final policy's evaluation (or, "
               "without one, of the last updates) went over a limit; **training episodes over "
               "limit**: over / episodes, per constraint.")
    st.dataframe(styled_runs(shown.drop(columns="problem")), hide_index=True, key="runs_table",
                 column_config={
                     "integrity": st.column_config.TextColumn(
                         help="Hash chain and recorded files checked against the record"),
                 })
    if len(shown):
        choice = st.selectbox("Open a run", shown["run"].tolist(), key="open_choice")
        st.button("Review this run", on_click=open_run, args=(choice,), type="primary")
    bad = frame[frame["problem"] != ""]
    if len(bad):
        st.warning(f"{len(bad)} run folder(s) need attention: their record is incomplete, "
                   "damaged or not a run.")
        st.dataframe(bad[["run", "integrity", "problem"]], hide_index=True, key="problems")


# --- comparison ------------------------------------------------------------------------------

def compare_page(root: Path, run_ids: list[str]) -> None:
    st.title("Compare runs")
    state = st.session_state
    # Restore the choice after a visit to another page; drop runs whose folder went away.
    state.compare = [r for r in state.get("compare", state.get("chosen_compare", []))
                     if r in run_ids]
    chosen = state.chosen_compare = st.multiselect("Runs to compare (two or more)",
                                                   run_ids, key="compare")
    if len(chosen) < 2:
        st.info("Pick two or more runs to compare.")
        return
    details = [runs.load_run(runs.resolve_run(root, r), r) for r in chosen]
    for d in details:
        if d.problem:
            st.warning(f"{md(d.run_id)}: {md(d.problem)}")
    table = pd.DataFrame({d.run_id: {k: str(v) for k, v in asdict(runs.summarize(d)).items()
                                     if k not in ("run_id", "head_hash")} for d in details})
    st.dataframe(table, key="compare_table")
    upd = pd.concat([runs.updates_frame(d.lines).assign(run=d.run_id) for d in details])
    cons = pd.concat([runs.constraints_frame(d.lines).assign(run=d.run_id) for d in details])
    # Full run ids in the legend (labelLimit=0): cut to 160 px, runs of one scenario all read
    # the same.
    color = alt.Color("run:N", title="run", scale=alt.Scale(scheme="category10"),
                      legend=alt.Legend(orient="bottom", columns=1, labelLimit=0))
    for y, title in (("return_mean", "Mean episode return"), ("kl", "KL per update")):
        view = runs.thin(upd, upd[y].isna())
        axis = {"return_mean": "episode return (sum of rewards)",
                "kl": "KL(old || new) (nats)"}[y]
        chart([alt.Chart(view).mark_line().encode(x=UPDATE_AXIS, y=alt.Y(f"{y}:Q", title=axis),
                                                  color=color)], title)
    shared = set.intersection(*[set(cons.loc[cons["run"] == r, "constraint"]) for r in chosen])
    for name in sorted(shared):
        rows = cons[cons["constraint"] == name]
        view = runs.thin(rows, rows["violated"].eq(True))
        base = alt.Chart(view).encode(x=UPDATE_AXIS, color=color)
        unit = cost_units(details[0].lines).get(name, "sum of the per-step cost")
        chart([base.mark_line().encode(y=alt.Y("ep_cost:Q",
                                               title=f"mean episode cost ({unit})")),
               base.mark_line(strokeDash=[6, 4]).encode(y="limit:Q")],
              f"{md(name)}: episode cost vs limit (dashed)")
    if not shared:
        st.caption("These runs share no constraint.")


def main() -> None:
    st.set_page_config(page_title="safe-trpo review", layout="wide")
    try:
        root, allowed = settings()
    except UserError as exc:
        st.error(md(exc))
        return
    run_ids = runs.scan_run_ids(root)
    init_from_address(run_ids)
    page = st.sidebar.radio("Page", PAGES, key="page")
    st.sidebar.caption(f"Reports folder: {md(root)}")
    if allowed:
        st.sidebar.caption(f"Sign-off restricted to {len(allowed)} listed reviewer(s).")
    try:
        if page == "Runs":
            runs_page(root)
        elif page == "Review":
            review_page(root, run_ids, allowed)
        elif page == "Compare":
            compare_page(root, run_ids)
        else:
            sweeps_page(root)
    except UserError as exc:  # e.g. a run folder removed between the scan and the read
        st.error(md(exc))
    address = {"page": page}
    if page == "Review" and st.session_state.get("run") in run_ids:
        address["run"] = st.session_state.run
    if dict(st.query_params) != address:
        st.query_params.from_dict(address)


main()
