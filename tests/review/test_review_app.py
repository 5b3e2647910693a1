"""The review app driven headless with Streamlit's AppTest: pages, sign-off form, bad input."""

from __future__ import annotations

import importlib.util
import json
import pickle
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from safe_trpo.record import audit, keys, signoff
from safe_trpo.record.audit import AuditLog
from safe_trpo.review import runs
from tests.review.fixtures import append, head, make_malformed, make_run, open_app, texts
from tests.review.signing import PASS, fill_signoff, key_file

APP = Path(__file__).resolve().parents[2] / "safe_trpo" / "review" / "app.py"



def append_file(run_dir: Path, path: Path, role: str) -> None:
    with AuditLog(run_dir) as log:
        log.append_file(run_dir, path, role)






def table_with(at: AppTest, column: str):
    """The first table shown that has ``column`` (st.dataframe keys are not exposed to AppTest)."""
    return next(d.value for d in at.dataframe if column in d.value.columns)


def test_runs_page_lists_runs_and_searches(reports):
    make_run(reports, "cstr-cpo", algo="cpo")
    make_run(reports, "vessel-trpo", env_id="SafeTRPO/PressureVessel-v0", algo="trpo")
    at = open_app()
    table = at.dataframe[0].value
    assert sorted(table["run"]) == ["cstr-cpo", "vessel-trpo"]
    row = table.set_index("run").loc["cstr-cpo"]
    assert (row["algorithm"], row["status"], row["integrity"]) == ("cpo", "completed", "intact")
    assert row["worst margin, last update"] == pytest.approx(1.5)
    at.text_input(key="search").input("vessel").run()
    assert list(at.dataframe[0].value["run"]) == ["vessel-trpo"]
    at.button[0].click().run()  # "Review this run" on the one search result
    assert at.session_state.page == "Review" and at.session_state.run == "vessel-trpo"
    assert "INTACT" in texts(at.success)


def test_review_page_shows_the_record(reports):
    make_run(reports, "r1", checkpoint=True, evaluation=True, backtest=True, rejected=(1,),
             recovery=(2,), kls=[0.008, 0.0, 0.02, 0.009])
    at = open_app(page="Review", run="r1")
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Status"] == "completed" and metrics["Line-search failures"] == "1"
    assert metrics["CPO recovery steps"] == "1" and metrics["Updates violating"] == "2"
    assert len(at.get("vega_lite_chart")) >= 4  # KL, return, one per constraint, duals
    tables = [d.value for d in at.dataframe]
    failed = next(t for t in tables if "backtracks" in t and "solver_status" in t)
    assert list(failed["update"]) == [1.0]
    backtest = next(t for t in tables if "sharpe" in t).set_index("controller")
    # The trained policy's own row (labelled by the run folder the line names), not only the
    # baselines: the real writer keeps its figures under "metrics".
    assert backtest.loc[str(reports / "r1"), "sharpe"] == 1.2
    provenance = next(t for t in tables if "field" in t).set_index("field")["value"]
    assert provenance["scenario_sha256"] == "ab" * 32
    assert at.query_params == {"page": "Review", "run": "r1"}


def test_report_download(reports):
    run_dir = make_run(reports, "r1")
    before = (run_dir / "audit.jsonl").read_bytes()
    at = open_app(page="Review", run="r1")
    can_build = importlib.util.find_spec("safe_trpo.report.build") is not None
    if can_build:
        # Built in memory on request: writing it into the run would change the run.
        assert at.get("download_button") == []
        next(b for b in at.button if b.label == "Build report.html").click().run()
        # The only error box is the verdict's (this run's costs go over its limits).
        assert not at.exception and "could not be built" not in texts(at.error)
        assert all(e.value.startswith("**Verdict.**") for e in at.error)
        assert [b.label for b in at.get("download_button")] == ["Download report.html"]
        assert not (run_dir / "report.html").exists()
        assert (run_dir / "audit.jsonl").read_bytes() == before
    # A report.html dropped into the folder, not bound by the chain, is not "the" report.
    report = run_dir / "report.html"
    report.write_text("<html>not from this run</html>")
    at = open_app(page="Review", run="r1")
    assert "not bound into its audit chain" in texts(at.warning)
    assert at.get("download_button") == []
    assert any(b.label == "Build report.html" for b in at.button) == can_build
    # Bound by a file line: offered as is.
    report.write_text("<html>report of r1</html>")
    append_file(run_dir, report, "report")
    at.run()
    assert [b.label for b in at.get("download_button")] == ["Download report.html"]
    assert not any(b.label == "Build report.html" for b in at.button)
    assert "not bound" not in texts(at.warning)
    # Changed after it was bound: no longer offered.
    report.write_text("<html>edited afterwards</html>")
    at.run()
    assert at.get("download_button") == []
    assert "not bound into its audit chain (or changed" in texts(at.warning)


def test_log_text_is_not_rendered_as_markdown(reports):
    evil = "[x](http://evil)"
    make_run(reports, "r1", costs={evil: [1.0, 9.0]}, limits={evil: 5.0})
    at = open_app(page="Review", run="r1")
    sources = [str(m.value) for m in at.markdown]
    assert any(runs.md(evil) in m for m in sources)  # the chart title names it, escaped
    assert not any(evil in m for m in sources)  # never as link syntax
    assert evil in texts(at.markdown)  # and reads as itself once the escapes are read


@pytest.mark.parametrize("bad", ["../outside", "../../etc/passwd", "/etc", "r1/../../outside",
                                 "%2e%2e%2foutside", "link-out"])
def test_run_from_the_address_must_be_a_scanned_run(reports, bad):
    make_run(reports, "r1")
    outside = make_run(reports.parent, "outside", env_id="Secret/Env-v0")
    (reports / "link-out").symlink_to(outside)
    at = open_app(page="Review", run=bad)
    assert f"Unknown run {bad!r}" in texts(at.error)
    assert at.selectbox(key="run").value == "r1"  # fell back to a listed run
    assert at.selectbox(key="run").options == ["r1"]
    assert "Secret/Env-v0" not in json.dumps([d.value.to_dict() for d in at.dataframe],
                                             default=str)


def test_signoff_form_writes_the_line(reports):
    run_dir = make_run(reports, "r1", checkpoint=True)
    seq, hash_ = head(run_dir)
    at = fill_signoff(open_app(page="Review", run="r1"), "Ada Lovelace",
                      "model-risk reviewer", "approve", "Within limits after update 2.")
    assert "Sign-off recorded: approve by Ada Lovelace" in texts(at.success)
    last = audit.read_lines(run_dir)[-1]
    assert {k: last[k] for k in ("type", "reviewer", "role", "decision", "comment",
                                 "reviewed_seq", "reviewed_head_hash")} == {
        "type": "signoff", "reviewer": "Ada Lovelace", "role": "model-risk reviewer",
        "decision": "approve", "comment": "Within limits after update 2.",
        "reviewed_seq": seq, "reviewed_head_hash": hash_}
    assert audit.verify_run(run_dir).ok
    table = table_with(at, "reviewed up to seq")
    assert list(table["state"]) == ["current"]
    assert {m.label: m.value for m in at.metric}["Sign-off"] == "approved"


def test_approval_of_a_tampered_run_is_refused(reports):
    run_dir = make_run(reports, "r1", checkpoint=True)
    next((run_dir / "checkpoints").iterdir()).write_bytes(b"swapped")
    before = (run_dir / "audit.jsonl").read_bytes()
    at = open_app(page="Review", run="r1")
    # The form is replaced by the reason (not "has not finished"): nothing to click.
    assert "fails verification: FILES DO NOT MATCH" in texts(at.error)
    assert not [b for b in at.button if b.label == "Sign off"]
    assert "has not finished" not in texts(at.info)
    assert (run_dir / "audit.jsonl").read_bytes() == before


def test_signoff_goes_stale_when_the_run_changes(reports):
    run_dir = make_run(reports, "r1")
    at = fill_signoff(open_app(page="Review", run="r1"), "Ada", "reviewer", "approve", "ok")
    assert list(table_with(at, "reviewed up to seq")["state"]) == ["current"]
    line = append(run_dir, "evaluation", episodes=5, return_mean=1.0, constraints=[])
    at.run()
    state = table_with(at, "reviewed up to seq")["state"][0]
    assert state.startswith("STALE") and f"seq {line['seq']}" in state
    assert "stale" in texts(at.warning)
    assert {m.label: m.value for m in at.metric}["Sign-off"] == "stale"


def test_signoff_refused_when_the_run_changed_after_the_page_was_drawn(reports):
    run_dir = make_run(reports, "r1")
    at = open_app(page="Review", run="r1")
    append(run_dir, "evaluation", episodes=5, return_mean=1.0, constraints=[])
    before = (run_dir / "audit.jsonl").read_bytes()
    at = fill_signoff(at, "Ada", "reviewer", "approve", "ok")
    assert "changed while you reviewed it" in texts(at.error)
    assert (run_dir / "audit.jsonl").read_bytes() == before


def test_reviewer_allow_list(reports, monkeypatch, tmp_path):
    allow = tmp_path / "reviewers.toml"
    allow.write_text('reviewers = ["Ada Lovelace"]\n')
    monkeypatch.setenv("SAFE_TRPO_REVIEWERS", str(allow))
    run_dir = make_run(reports, "r1")
    before = (run_dir / "audit.jsonl").read_bytes()
    at = fill_signoff(open_app(page="Review", run="r1"), "Mallory", "reviewer", "approve", "")
    assert "not on the configured list" in texts(at.error)
    assert (run_dir / "audit.jsonl").read_bytes() == before
    at = fill_signoff(at, "Ada Lovelace", "reviewer", "reject", "limit too loose")
    assert audit.read_lines(run_dir)[-1]["reviewer"] == "Ada Lovelace"


def test_a_bad_reviewer_list_is_a_message(reports, monkeypatch, tmp_path):
    monkeypatch.setenv("SAFE_TRPO_REVIEWERS", str(tmp_path / "missing.txt"))
    at = open_app()
    assert "cannot read the reviewer list" in texts(at.error)


def test_malformed_folders_never_crash_a_page(reports):
    expected = make_malformed(reports)
    at = open_app()
    problems = table_with(at, "problem").set_index("run")
    assert set(problems.index) == set(expected) - {"only-started"}
    for run_id in expected:
        at = open_app(page="Review", run=run_id)
        shown = texts(at.error) + texts(at.warning) + texts(at.success)
        assert "Integrity" in shown, run_id
        if run_id != "only-started":
            assert run_id in texts(at.warning), run_id
    at = open_app(page="Review", run="only-started")
    assert "No updates recorded yet." in texts(at.info)


def test_compare_page(reports):
    make_run(reports, "a", costs={"temperature": [6.0, 4.0]}, limits={"temperature": 5.0})
    make_run(reports, "b", costs={"temperature": [3.0, 2.0, 1.0], "pressure": [1, 1, 1]},
             limits={"temperature": 5.0, "pressure": 2.0})
    at = open_app(page="Compare")
    assert "Pick two or more" in texts(at.info)
    at.multiselect(key="compare").set_value(["a", "b"]).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.columns) == ["a", "b"]
    assert table.loc["updates"].tolist() == ["2", "3"]
    titles = texts(at.markdown)
    assert "temperature: episode cost" in titles and "pressure: episode cost" not in titles
    assert len(at.get("vega_lite_chart")) == 3  # return, KL, the one shared constraint


def test_the_app_never_unpickles(reports, monkeypatch):
    run_dir = make_run(reports, "r1", checkpoint=True)

    def refuse(*args, **kwargs):
        raise AssertionError("the review app must not unpickle anything")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    for page in ("Runs", "Review", "Compare"):
        open_app(page=page, run="r1")
    at = fill_signoff(open_app(page="Review", run="r1"), "Ada", "reviewer", "approve", "ok")
    assert "Sign-off recorded" in texts(at.success)
    assert signoff.verify_contained(run_dir).ok


def test_the_chosen_run_survives_a_visit_to_another_page(reports):
    for run_id in ("a", "b", "c"):
        make_run(reports, run_id)
    at = open_app(page="Review", run="b")
    at.sidebar.radio(key="page").set_value("Runs").run()
    assert at.query_params == {"page": "Runs"}
    at.sidebar.radio(key="page").set_value("Review").run()
    assert at.selectbox(key="run").value == "b"
    assert at.query_params == {"page": "Review", "run": "b"}


# --- signed sign-offs and a form that prevents accidents (issues 13, 18, 14) -------------------

def test_form_has_nothing_preselected_and_marks_required_fields(reports):
    make_run(reports, "r1")
    at = open_app(page="Review", run="r1")
    assert at.radio(key="so_decision_0").value is None
    labels = [w.label for w in [*at.text_input, *at.radio]] + [
        u.label for u in at.get("file_uploader")]
    assert "Passphrase *" in labels and "Decision *" in labels
    assert "Your reviewer key file *" in labels
    at = fill_signoff(at, "Ada", "reviewer", None, "ok")  # no decision chosen
    assert "decision required" in texts(at.error)


def test_the_form_clears_after_a_successful_signoff(reports):
    make_run(reports, "r1")
    at = fill_signoff(open_app(page="Review", run="r1"), "Ada", "reviewer", "approve", "ok")
    assert "Sign-off recorded" in texts(at.success)
    assert at.session_state["so_form_n"] == 1
    assert at.text_input(key="so_pass_1").value == ""  # a fresh, empty form
    assert at.radio(key="so_decision_1").value is None
    assert not [k for k in ("so_pass_0", "so_key_0") if k in at.session_state]


def test_a_double_click_writes_one_signoff(reports, monkeypatch):
    # Both clicks of a double click run the callback with the args of the same drawn form.
    from types import SimpleNamespace

    from safe_trpo.review import signoff_form

    class State(dict):
        __getattr__ = dict.get
        __setattr__ = dict.__setitem__

    run_dir = make_run(reports, "r1")
    seq, hash_ = head(run_dir)
    data = key_file("Ada", "reviewer")
    state = State(so_key_0=SimpleNamespace(name="me.key", getvalue=lambda: data),
                  so_pass_0=PASS, so_decision_0="approve", so_comment_0="ok")
    monkeypatch.setattr(signoff_form, "st", SimpleNamespace(session_state=state))
    for _ in range(2):
        signoff_form.submit_signoff(reports, "r1", seq, hash_, None, 0)
    assert sum(ln["type"] == "signoff" for ln in audit.read_lines(run_dir)) == 1
    assert state["signoff_result"][0] == "ok" and state["so_form_n"] == 1


def test_wrong_passphrase_writes_nothing(reports):
    run_dir = make_run(reports, "r1")
    before = (run_dir / "audit.jsonl").read_bytes()
    at = fill_signoff(open_app(page="Review", run="r1"), "Ada", "reviewer", "approve", "ok",
                      passphrase="not it")
    assert "wrong passphrase" in texts(at.error)
    assert (run_dir / "audit.jsonl").read_bytes() == before


def test_signatures_shown_against_the_configured_keyring(reports, monkeypatch, tmp_path):
    run_dir = make_run(reports, "r1")
    folder = tmp_path / "k"
    folder.mkdir()
    keys.new_reviewer("Ada", "reviewer", PASS, folder / "ada.key", folder / "team.toml",
                      scrypt_n=2**10)
    keys.new_reviewer("Eve", "reviewer", PASS, folder / "eve.key", folder / "other.toml",
                      scrypt_n=2**10)
    monkeypatch.setenv("SAFE_TRPO_KEYRING", str(folder / "team.toml"))
    at = fill_signoff(open_app(page="Review", run="r1"), "Eve", "reviewer", "approve", "ok",
                      key=(folder / "eve.key").read_bytes())
    assert "is not in the configured keyring" in texts(at.error)
    at = fill_signoff(at, "Ada", "reviewer", "approve", "ok", key=(folder / "ada.key").read_bytes())
    assert "Sign-off recorded" in texts(at.success)
    assert list(table_with(at, "signature")["signature"])[0].startswith("verified")
    monkeypatch.delenv("SAFE_TRPO_KEYRING")
    at = open_app(page="Review", run="r1")
    assert list(table_with(at, "signature")["signature"])[0].startswith("unverified identity")
    assert audit.read_lines(run_dir)[-1]["key_fingerprint"]


def test_a_failed_run_cannot_be_approved_but_can_be_rejected(reports):
    run_dir = make_run(reports, "r1", finished=False)
    append(run_dir, "run_finished", status="failed", updates=3, env_steps=3, reason="NaN")
    at = open_app(page="Review", run="r1")
    assert "cannot be approved (the run's status is failed)" in texts(at.info)
    at = fill_signoff(at, "Ada", "reviewer", "approve", "ok")
    assert "cannot approve: the run's status is failed" in texts(at.error)
    at = fill_signoff(at, "Ada", "reviewer", "reject", "it failed")
    assert audit.read_lines(run_dir)[-1]["decision"] == "reject"


def test_a_truncated_run_shows_the_ledger_failure_and_no_form(reports):
    run_dir = make_run(reports, "r1")
    lines = (run_dir / "audit.jsonl").read_text().splitlines(keepends=True)
    (run_dir / "audit.jsonl").write_text("".join(lines[:-2]))  # the chain alone still verifies
    at = open_app(page="Review", run="r1")
    errors = texts(at.error)
    assert f"Ledger: TRUNCATED: the ledger anchors seq 0-{len(lines) - 1}" in errors
    assert "fails verification against its ledger" in errors
    assert not [b for b in at.button if b.label == "Sign off"]
