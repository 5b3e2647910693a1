"""The review app's Review page: one run's integrity, charts and tables by tab, its report.html,
and the sign-off section (``signoff_form``: signs with the reviewer's key through
``signoff.append_signoff``)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pandas as pd
import streamlit as st

from safe_trpo.record import signoff
from safe_trpo.record.anchor import run_ledger_problem
from safe_trpo.review import runs
from safe_trpo.review.charts import CELL_STYLES, flagged_chart
from safe_trpo.review.comparison_view import comparison_tab
from safe_trpo.review.cost_charts import constraints_tab
from safe_trpo.review.frames import md
from safe_trpo.review.signoff_form import signoff_section
from safe_trpo.review.verdict_view import verdict_panel


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
    if verdict is not None and verdict.chain.status in ("intact", "interrupted") and (
            ledger := run_ledger_problem(detail.run_dir, detail.lines, verdict.chain.status)):
        st.error(f"Ledger: {md(ledger)}")  # truncation or a re-chain the folder cannot show
    if verdict is None:
        return
    verdict_panel(summary.verdict)
    cols = st.columns(5)
    cols[0].metric("Status", summary.status)
    cols[1].metric("Updates", summary.updates)
    cols[2].metric("Worst margin, last update", "-" if summary.worst_margin_last is None
                   else f"{summary.worst_margin_last:.4g}")
    cols[3].metric("Updates violating", summary.updates_violating)
    cols[4].metric("Sign-off", summary.signoff)
    report_download(detail)
    tabs = st.tabs(["Training", "Constraints", "Line search & CPO", "Evaluation & backtest",
                    "Provenance", "Comparison"])
    upd, cons = runs.updates_frame(detail.lines), runs.constraints_frame(detail.lines)
    with tabs[0]:
        training_tab(upd)
    with tabs[1]:
        constraints_tab(cons, detail.lines)
    with tabs[2]:
        steps_tab(upd, detail.lines)
    with tabs[3]:
        results_tab(detail.lines)
    with tabs[4]:
        provenance_tab(detail)
    with tabs[5]:
        comparison_tab(detail.lines)
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
        from safe_trpo.report.build import build_report_html
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
                  "KL(old || new) per update (dashed: target; red: above target)", "target_kl",
                  y_title="KL(old || new) (nats)")
    flagged_chart(view, "return_mean", None, "Mean episode return per update",
                  y_title="episode return (sum of rewards)")


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
                      "CPO lambda (trust-region dual) per update; red: recovery step",
                      y_title="lambda (reward per unit of KL)")
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
