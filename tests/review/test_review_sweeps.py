"""The review app's Sweeps page and the reviewability of runs made by a sweep."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from safe_trpo.record import audit
from safe_trpo.review import runs
from safe_trpo.sweep.summary import FORMAT, summary_table
from tests.review.fixtures import head, make_run, open_app, texts
from tests.review.signing import fill_signoff

APP = Path(__file__).resolve().parents[2] / "safe_trpo" / "review" / "app.py"



def make_sweep(root: Path) -> str:
    sweep = root / "sweeps" / "demo-abc123"
    job = sweep / "runs" / "cstr-s0"
    job.mkdir(parents=True)
    make_run(job, "cstr-cpo-s0-20260101")
    run = {"seed": 0, "state": "completed", "verified": True, "final_return": -30.5,
           "final_costs": {"temperature": 2.0}, "within_limits": True,
           "run_dir": "runs/cstr-s0/cstr-cpo-s0-20260101", "reason": ""}
    config = {"label": "cstr[limit=5]", "key": "k", "overrides": [], "n_runs": 1,
              "n_completed": 1, "n_failed": 0, "n_pending": 0,
              "return": {"median": -30.5, "q25": -30.5, "q75": -30.5, "min": -30.5,
                         "max": -30.5, "n": 1},
              "constraints": [{"name": "temperature", "limit": 5.0,
                               "ep_cost": {"median": 2.0, "q25": 2.0, "q75": 2.0, "min": 2.0,
                                           "max": 2.0, "n": 1},
                               "frac_within": 1.0, "n_unknown": 0}],
              "frac_within_all_limits": 1.0, "runs": [run]}
    summary = {"format": FORMAT, "sweep_id": "demo-abc123", "updated": "2026-01-01T00:00:00Z",
               "seeds": [0], "sets": [], "backend": "local",
               "method": {"text": "final = mean of the last 5 updates"},
               "configurations": [config]}
    (sweep / "sweep.json").write_text(json.dumps(summary))
    return "sweeps/demo-abc123/runs/cstr-s0/cstr-cpo-s0-20260101"


def test_sweep_runs_are_scanned_and_resolvable(reports: Path) -> None:
    make_run(reports, "plain-run")
    nested = make_sweep(reports)
    ids = runs.scan_run_ids(reports)
    assert ids == sorted(["plain-run", nested]) and "sweeps" not in ids
    assert runs.resolve_run(reports, nested) == reports / nested
    with pytest.raises(Exception, match="unknown run"):
        runs.resolve_run(reports, "sweeps/demo-abc123/../../plain-run")


def test_sweeps_page_shows_the_summary_and_the_run_reviews(reports: Path) -> None:
    nested = make_sweep(reports)
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params.update({"page": "Sweeps"})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    table = at.dataframe[0].value
    expected = summary_table(json.loads((reports / "sweeps/demo-abc123/sweep.json").read_text()))
    assert list(table["configuration"]) == ["cstr[limit=5]"]
    assert table["within all limits"][0] == expected[0]["within all limits"] == "100%"
    at = AppTest.from_file(APP, default_timeout=30)
    at.query_params.update({"page": "Review", "run": nested})
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert "Unknown run" not in "\n".join(str(e.value) for e in at.error)






def test_a_sweep_run_opens_from_the_list_and_the_address(reports: Path) -> None:
    make_run(reports, "zz-plain-run")  # listed too; "Review this run" must not open this one
    nested = make_sweep(reports)
    at = open_app()
    assert sorted(at.dataframe[0].value["run"]) == sorted([nested, "zz-plain-run"])
    at.selectbox(key="open_choice").set_value(nested).run()
    next(b for b in at.button if b.label == "Review this run").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.session_state.page == "Review" and at.selectbox(key="run").value == nested
    assert at.query_params == {"page": "Review", "run": nested}
    assert nested in texts(at.subheader)
    at = open_app(page="Review", run=nested)
    assert at.selectbox(key="run").value == nested and nested in texts(at.subheader)


def test_a_sweep_run_can_be_signed_off(reports: Path) -> None:
    nested = make_sweep(reports)
    run_dir = reports / nested
    seq, hash_ = head(run_dir)
    at = fill_signoff(open_app(page="Review", run=nested), "Ada Lovelace",
                      "model-risk reviewer", "approve", "ok")
    assert "Sign-off recorded: approve by Ada Lovelace" in texts(at.success), texts(at.error)
    last = audit.read_lines(run_dir)[-1]
    assert (last["type"], last["reviewed_seq"], last["reviewed_head_hash"]) == (
        "signoff", seq, hash_)
    assert audit.verify_run(run_dir).ok


def test_compare_labels_runs_by_id(reports: Path) -> None:
    make_run(reports, "cstr-cpo-s0-20260101")  # same folder name as the sweep's run
    nested = make_sweep(reports)
    at = open_app(page="Compare")
    at.multiselect(key="compare").set_value(["cstr-cpo-s0-20260101", nested]).run()
    assert not at.exception, [e.value for e in at.exception]
    assert list(at.dataframe[0].value.columns) == ["cstr-cpo-s0-20260101", nested]
