"""End to end: the real Streamlit server, loaded and used in headless Chromium driven by
Playwright: the list shows the runs, report.html downloads, and a sign-off made in the browser
lands in the audit chain.

Playwright drives the system's Chromium (Debian's ``chromium`` package, which ``.ci/run``
installs) through ``executable_path``; no browser is downloaded. Without a Chromium binary the
browser test skips and says so. Set SAFE_TRPO_SCREENSHOT_DIR to keep screenshots of the pages
for a look by eye.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from safe_trpo.record import audit
from safe_trpo.record.audit import AuditLog
from safe_trpo.review import launch
from tests.review.fixtures import free_port, head, make_run, stop_process, wait_until
from tests.review.signing import PASS, key_file

pytestmark = pytest.mark.browser
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
TIMEOUT_MS = 90_000  # a loaded CI machine has taken over 30 s for a page to settle



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
def page() -> Iterator:
    """A Playwright page in headless system Chromium (skips, saying why, without one)."""
    binary = next(filter(None, map(shutil.which, CHROMIUM_NAMES)), None)
    if binary is None:
        pytest.skip("no Chromium binary found (apt-get install chromium); Playwright uses the "
                    "system's Chromium and downloads none")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="Playwright is not installed (pip install -e .[test])")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=binary, headless=True,
                                     args=["--no-sandbox", "--disable-gpu"])
        try:
            context = browser.new_context(accept_downloads=True,
                                          viewport={"width": 1400, "height": 1000})
            context.set_default_timeout(TIMEOUT_MS)
            yield context.new_page()
        finally:
            browser.close()


def wait_idle(page) -> None:
    """Wait until Streamlit has finished running the script (the page is complete).

    Streamlit draws a page element by element while its script runs; typing into a form before
    the run ends can land in an element that is then replaced. Idle on three polls in a row.
    """
    settled = ("[data-testid=stApp][data-test-script-state=notRunning]"
               "[data-test-connection-state=CONNECTED]")
    for _ in range(3):
        page.wait_for_selector(settled, state="attached")
        page.wait_for_timeout(200)


def screenshot(page, path: Path) -> None:
    """The whole page: Streamlit scrolls an inner container, which a plain full-page capture
    misses, so the window is made as tall as the tallest scrolling area first."""
    height = page.evaluate("Math.max(...[...document.querySelectorAll('*')]"
                           ".map(e => e.scrollHeight))")
    page.set_viewport_size({"width": 1400, "height": min(int(height or 1000), 12000)})
    page.wait_for_timeout(500)  # let the charts re-lay out at the new size
    page.screenshot(path=str(path))
    page.set_viewport_size({"width": 1400, "height": 1000})


def test_a_run_appears_and_can_be_signed_off_in_a_real_browser(page, server, tmp_path):
    url, reports = server
    shots = Path(os.environ.get("SAFE_TRPO_SCREENSHOT_DIR") or tmp_path)
    run_dir = reports / "cstr-cpo-seed0"
    (run_dir / "report.html").write_text("<html><body>report of cstr-cpo-seed0</body></html>")
    with AuditLog(run_dir) as log:  # only a report the chain binds is offered for download
        log.append_file(run_dir, run_dir / "report.html", "report")
    seq, hash_ = head(run_dir)

    page.goto(f"{url}/?page=Runs")
    page.get_by_text("Open a run").first.wait_for()
    wait_idle(page)
    assert "2 of 2 runs" in page.inner_text("body")
    # The table is drawn on a canvas; its accessible grid cells carry the text.
    cells = page.locator("[role=gridcell]").all_text_contents()
    for run_id in ("cstr-cpo-seed0", "cstr-trpo-seed1"):
        row = cells[cells.index(run_id):cells.index(run_id) + 5]
        assert row[2:5] == [run_id.split("-")[1], "completed", "intact"], row
    screenshot(page, shots / "review-runs.png")

    page.goto(f"{url}/?page=Review&run=cstr-cpo-seed0")
    page.get_by_text("Your reviewer key file").first.wait_for()
    wait_idle(page)
    text = page.inner_text("body")
    assert "INTACT" in text and "cstr-cpo-seed0" in text
    with page.expect_download() as download:
        page.get_by_role("button", name="Download report.html", exact=True).click()
    saved = tmp_path / "downloaded.html"
    download.value.save_as(saved)
    assert saved.read_bytes() == (run_dir / "report.html").read_bytes()
    key = tmp_path / "ada.key"
    key.write_bytes(key_file("Ada Lovelace", "model-risk reviewer"))
    page.locator('input[type="file"]').set_input_files(str(key))
    page.get_by_text("ada.key").first.wait_for()
    page.locator('input[type="password"]').fill(PASS)
    page.locator("label").filter(has_text=re.compile(r"^\s*approve\s*$")).first.click()
    page.locator("textarea").fill("Limits respected after update 2.")
    screenshot(page, shots / "review-run.png")
    page.get_by_role("button", name="Sign off", exact=True).click()
    page.get_by_text("Sign-off recorded").first.wait_for()
    screenshot(page, shots / "review-signed.png")
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
