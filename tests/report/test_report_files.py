"""report.html, sweep.html and sweep.json are created with the user's umask, like any other
file the user makes (a reviewer in the same group must be able to read them)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from safe_trpo.report.build import write_report
from safe_trpo.sweep.summary import FORMAT, write_summary
from tests.review.fixtures import make_run


@pytest.fixture(params=[0o022, 0o027])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_report_and_sweep_files_follow_the_umask(tmp_path: Path, umask: int) -> None:
    run = make_run(tmp_path, "r")
    report = write_report(run)
    assert report.name == "report.html" and mode(report) == 0o666 & ~umask
    summary = {"format": FORMAT, "sweep_id": "s", "updated": "now", "seeds": [0], "sets": [],
               "backend": "local", "method": {"text": ""}, "configurations": [],
               "scenarios": []}
    for path in write_summary(tmp_path, summary):
        assert mode(path) == 0o666 & ~umask, path.name
