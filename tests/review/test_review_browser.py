"""End to end: the real Streamlit server, loaded and used in headless Chromium: the list shows
the runs, report.html downloads, and a sign-off made in the browser lands in the audit chain.

Needs a Chromium binary (Debian's ``chromium`` package; ``.ci/run`` installs it). Set
SAFE_TRPO_SCREENSHOT_DIR to keep screenshots of the pages for a look by eye.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from safe_trpo.record import audit
from safe_trpo.record.audit import AuditLog
from safe_trpo.review import launch
from tests.review.cdp import chromium, find_chromium, stop_process, wait_until
from tests.review.fixtures import head, make_run
from tests.review.signing import PASS, key_file

pytestmark = pytest.mark.browser


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.read().strip() == b"ok"
    except OSError:
        return False


@pytest.fixture
def server(tmp_path):
    """The app served exactly as ``safe-trpo review`` serves it, on a free local port."""
    reports = tmp_path / "reports"
    make_run(reports, "cstr-cpo-seed0", checkpoint=True, evaluation=True, recovery=(2,),
             kls=[0.008, 0.004, 0.013, 0.009])
    make_run(reports, "cstr-trpo-seed1", algo="trpo", seed=1)
    port = free_port()
    log_path = tmp_path / "streamlit.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(launch.build_command(reports, port), stdout=log,
                                stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: healthy(port) or proc.poll() is not None, 60, "the app's health check")
        if proc.poll() is not None:
            raise RuntimeError(f"the app exited early:\n{log_path.read_text()}")
        yield f"http://127.0.0.1:{port}", reports
    finally:
        stop_process(proc)


@pytest.fixture
def binary():
    found = find_chromium()
    if found is None:
        pytest.skip("no Chromium binary found (apt-get install chromium)")
    return found


def test_a_run_appears_and_can_be_signed_off_in_a_real_browser(binary, server, tmp_path):
    url, reports = server
    shots = Path(os.environ.get("SAFE_TRPO_SCREENSHOT_DIR") or tmp_path)
    run_dir = reports / "cstr-cpo-seed0"
    (run_dir / "report.html").write_text("<html><body>report of cstr-cpo-seed0</body></html>")
    with AuditLog(run_dir) as log:  # only a report the chain binds is offered for download
        log.append_file(run_dir, run_dir / "report.html", "report")
    seq, hash_ = head(run_dir)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with chromium(binary, tmp_path / "profile") as page:
        page.call("Page.setDownloadBehavior", behavior="allow", downloadPath=str(downloads))
        page.call("Page.navigate", url=f"{url}/?page=Runs")
        page.wait_for_text("Open a run")
        page.wait_idle()
        assert "2 of 2 runs" in page.text()
        # The table is drawn on a canvas; its accessible grid cells carry the text.
        cells = page.js("[...document.querySelectorAll('[role=gridcell]')]"
                        ".map(e => e.textContent)")
        for run_id in ("cstr-cpo-seed0", "cstr-trpo-seed1"):
            row = cells[cells.index(run_id):cells.index(run_id) + 5]
            assert row[2:5] == [run_id.split("-")[1], "completed", "intact"], row
        page.screenshot(shots / "review-runs.png")

        page.call("Page.navigate", url=f"{url}/?page=Review&run=cstr-cpo-seed0")
        page.wait_for_text("Your reviewer key file")
        page.wait_idle()
        assert "INTACT" in page.text() and "cstr-cpo-seed0" in page.text()
        page.click_text("button", "Download report.html")
        # 8 s usually; a loaded CI machine has taken over 30 s.
        got = wait_until(lambda: list(downloads.glob("*.html")), 90, "report.html to download")
        assert got[0].read_bytes() == (run_dir / "report.html").read_bytes()
        key = tmp_path / "ada.key"
        key.write_bytes(key_file("Ada Lovelace", "model-risk reviewer"))
        root = page.call("DOM.getDocument", depth=-1, pierce=True)["root"]["nodeId"]
        node = page.call("DOM.querySelector", nodeId=root, selector='input[type="file"]')
        page.call("DOM.setFileInputFiles", files=[str(key)], nodeId=node["nodeId"])
        page.wait_for_text("ada.key")
        page.type_into('input[type="password"]', PASS)
        page.click_text("label", "approve")
        page.type_into('textarea', "Limits respected after update 2.")
        page.screenshot(shots / "review-run.png")
        page.click_text("button", "Sign off")
        page.wait_for_text("Sign-off recorded")
        page.screenshot(shots / "review-signed.png")
    last = audit.read_lines(run_dir)[-1]
    assert (last["type"], last["reviewer"], last["role"], last["decision"]) == (
        "signoff", "Ada Lovelace", "model-risk reviewer", "approve")
    assert (last["reviewed_seq"], last["reviewed_head_hash"]) == (seq, hash_)
    assert audit.verify_run(run_dir).ok and last["signature"]


def test_launch_serves_the_app_and_takes_it_down_with_it(tmp_path):
    """``launch`` (what ``safe-trpo review`` calls) serves on 127.0.0.1, and a SIGTERM to the
    launcher stops the server too instead of leaving it running."""
    reports = tmp_path / "reports"
    make_run(reports, "r")
    port = free_port()
    code = ("import sys; from pathlib import Path; from safe_trpo.review.launch import launch; "
            f"sys.exit(launch(Path({str(reports)!r}), {port}))")
    log_path = tmp_path / "launch.log"
    with open(log_path, "wb") as log:
        # A session of its own: the launcher and the Streamlit it starts form one process
        # group, which the test can kill as a whole if it fails half way.
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    stopped = False
    try:
        wait_until(lambda: healthy(port) or proc.poll() is not None, 60, "the app's health check")
        assert healthy(port), log_path.read_text()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        wait_until(lambda: not healthy(port), 30, "the server to stop with its launcher")
        stopped = True
    finally:
        if not stopped:  # do not leave our server behind
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
