"""Markdown from the record is escaped everywhere the review app shows it: a run folder name,
a constraint name, a status, a reviewer's name and comment, a sweep's labels never become a
live link, image, heading or HTML on any page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from tests.review.fixtures import append, head, make_run, open_app
from tests.review.test_review_sweeps import make_sweep

LINK = "[click me](https://evil.example/steal)"
IMAGE = "![pixel](https://evil.example/p.png)"
HTML = "<img src=https://evil.example/h.png>"
PAYLOAD = f"{LINK} {IMAGE} {HTML} **bold** # heading"
FOLDER = "[click](javascript:alert(1)) ![i](x.png)"  # no '/' in a folder name
LIVE = ("](", "<img", "https://evil", "javascript:", "**bold**")

KINDS = ("markdown", "caption", "title", "header", "subheader", "error", "warning", "info",
         "success")


def shown(at) -> list[str]:
    """The markdown source of every element Streamlit renders as markdown, and widget labels,
    with each backslash-escaped character removed: what is left is what markdown acts on."""
    out = [str(e.value) for kind in KINDS for e in getattr(at, kind)]
    out += [str(e.label) for e in [*at.expander, *at.tabs, *at.metric, *at.selectbox]]
    return [re.sub(r"\\.", "", text) for text in out]


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "reports"
    root.mkdir()
    monkeypatch.setenv("SAFE_TRPO_REPORTS", str(root))
    monkeypatch.delenv("SAFE_TRPO_REVIEWERS", raising=False)
    run = make_run(root, FOLDER, costs={PAYLOAD: [1.0, 9.0]}, limits={PAYLOAD: 5.0},
                   finished=False, evaluation=True)
    append(run, "nan_detected", where=PAYLOAD, update=1, action=PAYLOAD)
    append(run, "run_finished", status=PAYLOAD, updates=2, env_steps=2000, reason=PAYLOAD)
    other = make_run(root, "plain", costs={PAYLOAD: [1.0, 2.0]}, limits={PAYLOAD: 5.0})
    seq, head_hash = head(other)
    # Written as a line (not through the form): what a received, re-chained record can hold.
    append(other, "signoff", reviewer="Ada " + LINK, role="model risk " + IMAGE,
           decision=PAYLOAD, comment=PAYLOAD, reviewed_seq=seq, reviewed_hash=head_hash)
    make_sweep(root)
    summary = root / "sweeps" / "demo-abc123" / "sweep.json"
    data = json.loads(summary.read_text())
    data["configurations"][0]["label"] = PAYLOAD
    data["method"]["text"] = PAYLOAD
    summary.write_text(json.dumps(data))
    return root


@pytest.mark.parametrize("query", [{"page": "Runs"}, {"page": "Review", "run": FOLDER},
                                   {"page": "Review", "run": "plain"}, {"page": "Sweeps"}])
def test_no_markdown_from_the_record_is_live(reports: Path, query: dict[str, str]) -> None:
    at = open_app(**query)
    for text in shown(at):
        for live in LIVE:
            assert live not in text, f"{live!r} unescaped in {text!r}"


def test_compare_page_escapes_names(reports: Path) -> None:
    at = open_app(page="Compare")
    at.multiselect(key="compare").set_value([FOLDER, "plain"]).run()
    assert not at.exception
    for text in shown(at):
        for live in LIVE:
            assert live not in text, f"{live!r} unescaped in {text!r}"
