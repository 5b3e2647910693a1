"""The review app follows no symbolic link out of its reports folder, and a malformed
sweep.json is a message on the page, not a crash."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from safe_trpo.record.audit import verify_run
from safe_trpo.report.build import build_report_html
from tests.review.fixtures import append, make_run, open_app, texts
from tests.review.test_review_sweeps import make_sweep

SECRET = "outside-secret-label"



def outside_sweep(tmp_path: Path) -> Path:
    """A sweep folder outside the reports folder whose summary names SECRET."""
    elsewhere = tmp_path / "elsewhere"
    make_sweep(elsewhere)
    summary = elsewhere / "sweeps" / "demo-abc123" / "sweep.json"
    data = json.loads(summary.read_text())
    data["configurations"][0]["label"] = SECRET
    summary.write_text(json.dumps(data))
    return summary


def page_text(at) -> str:
    return texts([*at.markdown, *at.caption, *at.error, *at.info, *at.warning]) + " ".join(
        str(e.label) for e in at.expander) + " ".join(str(df.value) for df in at.dataframe) \
        + " ".join(map(str, (o for s in at.selectbox for o in s.options)))


def test_symlinked_sweep_folder_is_not_followed(reports: Path, tmp_path: Path) -> None:
    summary = outside_sweep(tmp_path)
    (reports / "sweeps").mkdir()
    (reports / "sweeps" / "zz-via-link").symlink_to(summary.parent, target_is_directory=True)
    at = open_app(page="Sweeps")
    assert SECRET not in page_text(at) and "zz-via-link" not in page_text(at)


def test_symlinked_sweep_json_is_not_followed(reports: Path, tmp_path: Path) -> None:
    summary = outside_sweep(tmp_path)
    (reports / "sweeps" / "mine").mkdir(parents=True)
    (reports / "sweeps" / "mine" / "sweep.json").symlink_to(summary)
    at = open_app(page="Sweeps")
    assert SECRET not in page_text(at)


@pytest.mark.parametrize("configurations", ["not a list", [1, 2], [{"label": "x"}],
                                            [{"runs": "x", "label": "y"}]])
def test_malformed_sweep_json_is_a_message(reports: Path, configurations) -> None:
    make_sweep(reports)
    summary = reports / "sweeps" / "demo-abc123" / "sweep.json"
    data = json.loads(summary.read_text())
    data["configurations"] = configurations
    summary.write_text(json.dumps(data))
    at = open_app(page="Sweeps")  # fails on any exception
    assert "malformed" in texts(at.error)


def test_report_hashes_no_file_through_a_symlink(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("the reviewer's private key")
    run = make_run(tmp_path / "reports", "r", checkpoint=True)
    (run / "scenario.toml").symlink_to(secret)
    html = build_report_html(run)
    assert hashlib.sha256(secret.read_bytes()).hexdigest() not in html
    assert "symbolic link" in html
    # A bound file swapped for a link to an identical copy elsewhere is not taken as intact.
    ckpt = next((run / "checkpoints").iterdir())
    copy = run / "elsewhere.pt"  # inside the folder: only the link itself is wrong
    copy.write_bytes(ckpt.read_bytes())
    ckpt.unlink()
    ckpt.symlink_to(copy)
    verdict = verify_run(run)
    assert not verdict.ok and "symbolic link" in verdict.file_problems[0]
    append(run, "note", text="still readable")  # the record itself is untouched
