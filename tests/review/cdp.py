"""A minimal Chrome DevTools Protocol client for the end-to-end test of the review app.

Just enough to start headless Chromium, load a page, read its text, type, click and take a
screenshot, over the ``websockets`` package that Streamlit already installs, so the test needs
no browser-automation dependency.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from websockets.sync.client import ClientConnection, connect

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                  "--no-first-run", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--disable-extensions",
                  "--remote-debugging-port=0", "--window-size=1400,1000"]


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        if path := shutil.which(name):
            return path
    return None


def wait_until(check, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; TimeoutError naming ``what``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := check():
            return value
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")


class Page:
    """One browser tab driven over its DevTools websocket."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._id = 0

    def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        self._ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:  # events arrive interleaved with replies; skip them
            msg = json.loads(self._ws.recv(timeout=30))
            if msg.get("id") == self._id:
                if "error" in msg:
                    raise RuntimeError(f"{method}: {msg['error']}")
                return msg["result"]

    def js(self, expression: str) -> Any:
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=True)
        if "exceptionDetails" in result:
            raise RuntimeError(f"{expression}: {result['exceptionDetails']}")
        return result["result"].get("value")

    def text(self) -> str:
        return self.js("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, needle: str, timeout: float = 60) -> None:
        try:
            wait_until(lambda: needle in self.text(), timeout, f"{needle!r} on the page")
        except TimeoutError as exc:
            raise TimeoutError(f"{exc}; the page reads:\n{self.text()[-3000:]}") from None

    def wait_idle(self, timeout: float = 60) -> None:
        """Wait until Streamlit has finished running the script (the page is complete).

        Streamlit draws a page element by element while its script runs; typing into a form
        before the run ends can land in an element that is then replaced.
        """
        state = ("(() => { const a = document.querySelector('[data-testid=stApp]');"
                 " return a ? a.getAttribute('data-test-script-state') + '/' +"
                 " a.getAttribute('data-test-connection-state') : ''; })()")
        seen = []

        def settled() -> bool:
            seen.append(self.js(state) == "notRunning/CONNECTED")
            return len(seen) >= 3 and all(seen[-3:])  # idle on three polls in a row

        wait_until(settled, timeout, "the app to finish running its script")

    def type_into(self, selector: str, text: str) -> None:
        """Focus the element and type as a user would (React sees real input events)."""
        found = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        f" if (!e) return false; e.focus(); return true; }})()")
        if not found:
            raise LookupError(f"no element matches {selector}")
        self.call("Input.insertText", text=text)

    def click_text(self, tag: str, text: str) -> None:
        """Click the first ``tag`` element whose visible text is exactly ``text``."""
        clicked = self.js(
            f"(() => {{ const e = [...document.querySelectorAll({json.dumps(tag)})]"
            f".find(x => x.innerText.trim() === {json.dumps(text)});"
            f" if (!e) return false; e.click(); return true; }})()")
        if not clicked:
            raise LookupError(f"no <{tag}> with text {text!r}")

    def screenshot(self, path: Path, width: int = 1400) -> None:
        """The whole page: the window is made as tall as the tallest scrolling area first
        (Streamlit scrolls an inner container, which a plain full-page capture misses)."""
        height = self.js("Math.max(...[...document.querySelectorAll('*')]"
                         ".map(e => e.scrollHeight))")
        self.call("Emulation.setDeviceMetricsOverride", width=width,
                  height=min(int(height or 1000), 12000), deviceScaleFactor=1, mobile=False)
        time.sleep(0.5)  # let the charts re-lay out at the new size
        data = self.call("Page.captureScreenshot", format="png")
        self.call("Emulation.clearDeviceMetricsOverride")
        Path(path).write_bytes(base64.b64decode(data["data"]))


@contextlib.contextmanager
def chromium(binary: str, profile: Path) -> Iterator[Page]:
    """Start headless Chromium with a fresh profile and yield its first tab."""
    proc = subprocess.Popen([binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                             "about:blank"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        port_file = profile / "DevToolsActivePort"
        wait_until(lambda: port_file.is_file() and port_file.read_text().strip(), 30,
                   "Chromium's DevTools port")
        port = int(port_file.read_text().split()[0])
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            targets = json.load(r)
        tab = next(t for t in targets if t.get("type") == "page")
        with connect(tab["webSocketDebuggerUrl"], max_size=None, open_timeout=10) as ws:
            page = Page(ws)
            page.call("Page.enable")
            yield page
    finally:
        stop_process(proc)


def stop_process(proc: subprocess.Popen) -> None:
    """Terminate ``proc``, killing it if it has not exited within 10 s."""
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
