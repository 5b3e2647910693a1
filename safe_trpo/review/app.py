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
import hashlib
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd
import streamlit as st

from safe_trpo.errors import UserError
from safe_trpo.review import runs, signoff
from safe_trpo.review.runs import md
from safe_trpo.review.sweeps_page import sweeps_page

PAGES = ("Runs", "Review", "Compare", "Sweeps")
RED, GREY, BLUE = "#c62828", "#757575", "#1f77b4"
# Cell styles by level (text and colour together, so the meaning survives printing in grey).
CELL_STYLES = {"good": "color: #1b5e20", "warn": "background-color: #fff4e5; color: #8a4b00",
               "bad": "background-color: #fdecea; color: #b71c1c; font-weight: bold", "": ""}


def settings() -> tuple[Path, tuple[str, ...] | None]:
    """(reports folder, allowed reviewer names or None) from script args or environment."""
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("--reports")
    parser.add_argument("--reviewers")
    args, _ = parser.parse_known_args(sys.argv[1:])
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


UPDATE_AXIS = alt.X("update:Q", title="update", axis=alt.Axis(format="d", tickMinStep=1))


def line(frame: pd.DataFrame, **mark: Any) -> alt.Chart:
    """A line over updates; short series also get dots, so a single update is visible."""
    return alt.Chart(frame).mark_line(point=len(frame) <= 60, **mark)


def chart(layers: list[alt.Chart], title: str) -> None:
    # The title is page text rather than part of the Vega spec: Vega clips titles when the
    # axis labels are wide, and page text is what tests and screen readers find.
    st.markdown(f"**{title}**")
    st.altair_chart(alt.layer(*layers).properties(height=240).interactive())


def flagged_chart(view: pd.DataFrame, y: str, flagged: pd.Series | None, title: str,
                  reference: str | None = None, reference_color: str = GREY) -> None:
    """``y`` per update as a line, ``reference`` (a target or limit) dashed, and the flagged
    updates (violations, KL above target, recovery steps) as red dots with a tooltip."""
    layers = [line(view, color=BLUE).encode(x=UPDATE_AXIS, y=alt.Y(f"{y}:Q", title=y))]
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


# --- the list of runs ------------------------------------------------------------------------

def styled_runs(frame: pd.DataFrame) -> pd.io.formats.style.Styler:
    """Colour integrity, sign-off and negative margins, so problems stand out in a long list."""
    def level(mapping: dict[str, str]):
        return lambda v: CELL_STYLES[mapping.get(v, "bad")]

    return (frame.style
            .map(level(runs.INTEGRITY_LEVELS), subset=["integrity"])
            .map(level(runs.SIGNOFF_LEVELS), subset=["sign-off"])
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
               "updates in which any constraint's episode cost exceeded its limit.")
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


# --- one run ---------------------------------------------------------------------------------

def review_page(root: Path, run_ids: list[str], allowed: tuple[str, ...] | None) -> None:
    st.title("Review a run")
    if error := st.session_state.pop("address_error", None):
        st.error(error)
    if not run_ids:
        st.info(f"No run folders in {md(root)} yet.")
        return
    state = st.session_state
    # Streamlit forgets a widget's value while its page is not shown; keep the choice apart.
    if "run" not in state and state.get("chosen_run") in run_ids:
        state.run = state.chosen_run
    if state.get("run") not in run_ids:
        state.pop("run", None)  # the folder went away since it was chosen
    run_id = state.chosen_run = st.selectbox("Run", run_ids, key="run")
    detail = runs.load_run(runs.resolve_run(root, run_id), run_id)
    verdict = detail.verdict
    summary = runs.summarize(detail)
    known = [v for v in (summary.env_id, summary.algo) if v != "?"]
    seed = [] if summary.seed is None else [f"seed {summary.seed}"]
    st.subheader("  ·  ".join(md(v) for v in [run_id, *known, *seed]))
    if verdict is not None and verdict.ok:
        st.success(f"Integrity: {md(verdict.summary)}")
    else:
        st.error(f"Integrity: {md(verdict.summary if verdict else detail.integrity.upper())}")
    if detail.problem:
        st.warning(f"{md(run_id)}: {md(detail.problem)}")
    if verdict is None:
        return
    cols = st.columns(5)
    cols[0].metric("Status", summary.status)
    cols[1].metric("Updates", summary.updates)
    cols[2].metric("Worst margin, last update", "-" if summary.worst_margin_last is None
                   else f"{summary.worst_margin_last:.4g}")
    cols[3].metric("Updates violating", summary.updates_violating)
    cols[4].metric("Sign-off", summary.signoff)
    report_download(detail)
    tabs = st.tabs(["Training", "Constraints", "Line search & CPO", "Evaluation & backtest",
                    "Provenance"])
    upd, cons = runs.updates_frame(detail.lines), runs.constraints_frame(detail.lines)
    with tabs[0]:
        training_tab(upd)
    with tabs[1]:
        constraints_tab(cons)
    with tabs[2]:
        steps_tab(upd, detail.lines)
    with tabs[3]:
        results_tab(detail.lines)
    with tabs[4]:
        provenance_tab(detail)
    signoff_section(root, detail, allowed)


def bound_report(detail: runs.RunDetail) -> bytes | None:
    """The run folder's report.html, only if the verified chain binds exactly these bytes.

    Any file could be dropped into a run folder; only one named by a ``file`` line (the latest
    for ``report.html``) whose hash matches is the run's report. The bytes are hashed and
    offered together, so what is downloaded is what was checked.
    """
    path = runs.contained_file(detail.run_dir, "report.html")
    bound = [ln for ln in detail.lines
             if ln.get("type") == "file" and ln.get("path") == "report.html"]
    if path is None or not bound:
        return None
    data = path.read_bytes()
    return data if hashlib.sha256(data).hexdigest() == bound[-1].get("sha256") else None


def report_download(detail: runs.RunDetail) -> None:
    """Offer report.html: the one in the run folder if the chain binds it, else one built in
    memory (never written, since writing it would change the run and make its sign-offs
    stale)."""
    data = bound_report(detail)
    if data is not None:
        st.download_button("Download report.html", data, mime="text/html",
                           file_name=f"{detail.run_id.replace('/', '_')}-report.html")
        return
    if runs.contained_file(detail.run_dir, "report.html") is not None:
        st.warning("The report.html in this run folder is not bound into its audit chain (or "
                   "changed since it was): it is not offered. Build one from the record below.")
    try:
        from safe_trpo.report import build_report_html
    except ImportError:
        st.caption("No report.html in this run folder (make one with `safe-trpo report`).")
        return
    if signoff.escaping_files(detail.run_dir, detail.lines):
        # Building would hash the files the record names, and some lie outside the run folder.
        st.caption("No report.html: this record names files outside its run folder.")
        return
    key = ("report", detail.run_id, detail.lines[-1].get("hash") if detail.lines else None)
    if st.button("Build report.html"):
        try:
            st.session_state[str(key)] = build_report_html(detail.run_dir)
        except Exception as exc:  # a bug in the report must not take the review page down
            st.error(f"report.html could not be built: {md(exc)}")
    if str(key) in st.session_state:
        st.download_button("Download report.html", st.session_state[str(key)],
                           mime="text/html",
                           file_name=f"{detail.run_id.replace('/', '_')}-report.html")


def training_tab(upd: pd.DataFrame) -> None:
    if upd.empty:
        st.info("No updates recorded yet.")
        return
    view = runs.thin(upd, upd["kl_over_target"])
    if len(view) < len(upd):
        st.caption(f"Charts show {len(view)} of {len(upd)} updates (evenly spaced, plus every "
                   "flagged one); the tables list all.")
    flagged_chart(view, "kl", view["kl_over_target"],
                  "KL(old || new) per update (dashed: target; red: above target)", "target_kl")
    flagged_chart(view, "return_mean", None, "Mean episode return per update")


def constraints_tab(cons: pd.DataFrame) -> None:
    if cons.empty:
        st.info("No constraint costs recorded yet.")
        return
    for name, rows in cons.groupby("constraint", sort=False):
        violated = rows["violated"].eq(True)
        view = runs.thin(rows, violated)
        flagged_chart(view, "ep_cost", view["violated"].eq(True),
                      f"{md(name)}: episode cost vs limit (dashed) - {int(violated.sum())} of "
                      f"{len(rows)} updates violated (red)", "limit", RED)
    duals = runs.thin(cons, cons["nu"].isna())
    chart([line(duals).encode(x=UPDATE_AXIS, y=alt.Y("nu:Q", title="nu"),
                              color=alt.Color("constraint:N"))],
          "Dual variable per constraint (nu: CPO dual or Lagrange multiplier)")


def steps_tab(upd: pd.DataFrame, lines: list[dict[str, Any]]) -> None:
    failed = upd[upd["accepted"].eq(False)]
    recovery = upd[upd["case"].eq("recovery")]
    # "closed_form": the one-constraint case solved analytically (no solver involved).
    odd = upd[upd["solver_status"].notna()
              & ~upd["solver_status"].isin(["optimal", "closed_form"])]
    cols = st.columns(4)
    cols[0].metric("Line-search failures", len(failed))
    cols[1].metric("Backtracks (total)", f"{upd['backtracks'].sum():.0f}")
    cols[2].metric("CPO recovery steps", len(recovery))
    cols[3].metric("Solver not optimal", len(odd))
    step_cols = ["update", "kl", "target_kl", "accepted", "backtracks", "case", "lambda",
                 "solver_status", "solve_time_ms"]
    for title, rows in (("Line-search failures (step rejected, policy kept)", failed),
                        ("CPO recovery steps (no feasible step: costs reduced instead)",
                         recovery)):
        st.subheader(title)
        if len(rows):
            st.dataframe(rows[step_cols], hide_index=True)
        else:
            st.caption("None.")
    if len(odd):
        st.subheader("CPO solves with a status other than optimal")
        st.dataframe(odd[step_cols], hide_index=True)
    if upd["lambda"].notna().any():
        view = runs.thin(upd, upd["case"].eq("recovery"))
        flagged_chart(view, "lambda", view["case"].eq("recovery"),
                      "CPO lambda (trust-region dual) per update; red: recovery step")
    if upd["case"].notna().any():
        st.caption("CPO cases: " + ", ".join(f"{md(k)}: {v}" for k, v in
                                             upd["case"].value_counts().items()))
    nans = [ln for ln in lines if ln.get("type") == "nan_detected"]
    if nans:
        st.error(f"{len(nans)} NaN event(s) recorded:")
        st.dataframe(runs.events_frame(nans), hide_index=True)


def results_tab(lines: list[dict[str, Any]]) -> None:
    evals, costs = runs.evaluation_frames(lines)
    backtests = [ln for ln in lines if ln.get("type") == "backtest"]
    if evals.empty and not backtests:
        st.info("No evaluation or backtest recorded for this run.")
    if not evals.empty:
        st.subheader("Evaluation")
        st.dataframe(evals, hide_index=True)
    if not costs.empty:
        over = costs["mean over limit"].map({True: "OVER LIMIT", False: "within"})
        st.dataframe(costs.assign(**{"mean over limit": over}).style.map(
            lambda v: CELL_STYLES["bad" if v == "OVER LIMIT" else ""],
            subset=["mean over limit"]), hide_index=True)
    for bt in backtests:
        st.subheader(f"Backtest (line seq {md(bt.get('seq'))})")
        st.dataframe(runs.backtest_frame(bt), hide_index=True)
        with st.expander("Backtest record as written"):
            st.json({k: v for k, v in bt.items() if k not in ("prev_hash", "hash")})


def provenance_tab(detail: runs.RunDetail) -> None:
    started = next((ln for ln in detail.lines if ln.get("type") == "run_started"), {})
    rows = {k: started.get(k) for k in ("run_id", "scenario_file", "scenario_sha256", "seed",
                                         "git_commit", "planned_updates")}
    values = ["not recorded" if v is None else str(v) for v in rows.values()]
    st.dataframe(pd.DataFrame({"field": list(rows), "value": values}), hide_index=True)
    data_files = started.get("data_files")
    st.subheader("Data files")
    if isinstance(data_files, list) and data_files:
        st.dataframe(pd.DataFrame([f for f in data_files if isinstance(f, dict)]),
                     hide_index=True)
    else:
        st.caption("None recorded.")
    st.subheader("All events other than updates")
    st.dataframe(runs.events_frame(detail.lines), hide_index=True)
    with st.expander("Resolved scenario"):
        st.json(runs.scenario_of(detail.lines))
    with st.expander("Versions"):
        st.json(started.get("versions") if isinstance(started.get("versions"), dict) else {})


# --- sign-off --------------------------------------------------------------------------------

def submit_signoff(root: Path, run_id: str, seq: int, head: str,
                   allowed: tuple[str, ...] | None) -> None:
    """Form callback. ``seq`` and ``head`` are bound when the page was drawn: what was shown."""
    state = st.session_state
    try:
        written = signoff.append_signoff(
            runs.resolve_run(root, run_id), reviewer=state.get("so_name", ""),
            role=state.get("so_role", ""), decision=state.get("so_decision", ""),
            comment=state.get("so_comment", ""), displayed_seq=seq, displayed_hash=head,
            allowed=allowed)
    except UserError as exc:
        state.signoff_result = ("error", run_id, f"Sign-off refused, nothing written: {exc}")
    else:
        state.signoff_result = ("ok", run_id, f"Sign-off recorded: {written['decision']} by "
                                f"{written['reviewer']} ({written['role']}), "
                                f"line seq {written['seq']}.")
        if written["seq"] != seq + 1:
            state.signoff_result = ("error", run_id, f"Sign-off recorded at seq "
                                    f"{written['seq']}, but the run changed at the same moment, "
                                    f"so it is stale: review the run again.")


def signoff_section(root: Path, detail: runs.RunDetail, allowed: tuple[str, ...] | None) -> None:
    st.header("Sign-off")
    verdict = detail.verdict
    states = signoff.signoff_states(detail.lines, run_verified=verdict.ok)
    if states:
        st.dataframe(pd.DataFrame([{
            "seq": s.seq, "reviewer": s.reviewer, "role": s.role,
            "decision": signoff.DECISION_LABELS.get(s.decision, s.decision),
            "comment": s.comment, "time": s.time, "reviewed up to seq": s.reviewed_seq,
            "state": f"STALE: {s.stale_reason}" if s.stale else "current"} for s in states]),
            hide_index=True, key="signoffs")
        if any(s.stale for s in states):
            st.warning("Some sign-offs are stale: the run changed after they were given.")
    else:
        st.caption("No sign-offs yet.")
    result = st.session_state.pop("signoff_result", None)
    if result and result[1] == detail.run_id:
        (st.success if result[0] == "ok" else st.error)(md(result[2]))
    if verdict.chain.status != "intact":
        st.error(f"The audit chain is {md(verdict.chain.status)}: no sign-off can be added to it.")
    elif not verdict.ok:
        st.error("This run fails verification: it cannot be approved.")
    if not signoff.run_has_ended(detail.lines):
        st.info("This run has not finished; it can be signed off once it has ended.")
    head_seq, head = verdict.chain.n_lines - 1, verdict.chain.head_hash
    with st.form("signoff_form"):
        st.caption(f"You sign off the record up to line seq {head_seq} "
                   f"(head hash {md(head[:16])}...). Any later change makes this sign-off stale.")
        st.text_input("Reviewer name", key="so_name", help="Only names on the configured list"
                      if allowed else None)
        st.text_input("Role", key="so_role",
                      placeholder="e.g. model-risk reviewer, plant safety officer")
        st.radio("Decision", signoff.DECISIONS, key="so_decision", horizontal=True,
                 format_func=signoff.DECISION_LABELS.get)
        st.text_area("Comment", key="so_comment",
                     help="Required to reject or to ask for changes")
        st.form_submit_button("Sign off", type="primary", on_click=submit_signoff,
                              args=(root, detail.run_id, head_seq, head, allowed))


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
    color = alt.Color("run:N", title="run", scale=alt.Scale(scheme="category10"))
    for y, title in (("return_mean", "Mean episode return"), ("kl", "KL per update")):
        view = runs.thin(upd, upd[y].isna())
        chart([alt.Chart(view).mark_line().encode(x=UPDATE_AXIS, y=f"{y}:Q", color=color)],
              title)
    shared = set.intersection(*[set(cons.loc[cons["run"] == r, "constraint"]) for r in chosen])
    for name in sorted(shared):
        rows = cons[cons["constraint"] == name]
        view = runs.thin(rows, rows["violated"].eq(True))
        base = alt.Chart(view).encode(x=UPDATE_AXIS, color=color)
        chart([base.mark_line().encode(y=alt.Y("ep_cost:Q", title="episode cost")),
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
