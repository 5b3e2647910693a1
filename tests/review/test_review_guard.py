"""The review app answers only its user: the real server, served as ``safe-trpo review`` serves
it, refuses HTTP requests and websocket upgrades (``/_stcore/stream``, what the page uses to
submit a sign-off) whose Host or Origin is not the app's own address."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import urllib.request

import pytest

from safe_trpo.review import launch
from safe_trpo.review.serve import allowed_hosts, refusal
from tests.review.fixtures import free_port, make_run, stop_process, wait_until


def status(port: int, path: str, headers: dict[str, str], websocket: bool = False) -> int:
    """The HTTP status the server answers a raw request with (101 = websocket accepted)."""
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    if websocket:
        key = base64.b64encode(os.urandom(16)).decode()
        lines += ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {key}",
                  "Sec-WebSocket-Version: 13"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as conn:
        conn.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        first = conn.recv(4096).split(b"\r\n", 1)[0]
    return int(first.split()[1])


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def port(tmp_path_factory):
    reports = tmp_path_factory.mktemp("guard") / "reports"
    make_run(reports, "cstr-cpo-seed0")
    port = free_port()
    proc = subprocess.Popen(launch.build_command(reports, port), stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: healthy(port) or proc.poll() is not None, 90, "the app to start")
        assert proc.poll() is None, "the app exited early"
        yield port
    finally:
        stop_process(proc)


ATTACKS = {
    # Any other page on this machine (a dev server, a notebook's output) opening the websocket.
    "other local page": {"Origin": "http://localhost:3000"},
    "other local page, 127.0.0.1": {"Origin": "http://127.0.0.1:1"},
    # A DNS-rebinding page: its name now resolves to 127.0.0.1, so Host and Origin carry it.
    "dns rebinding": {"Host": "attacker.example:{port}", "Origin": "http://attacker.example:{port}"},
    "dns rebinding, no origin": {"Host": "attacker.example:{port}"},
    "opaque origin": {"Origin": "null"},
}


@pytest.mark.parametrize("name", list(ATTACKS))
@pytest.mark.parametrize(("path", "websocket"), [("/", False), ("/_stcore/stream", True)])
def test_foreign_host_or_origin_is_refused(port: int, name: str, path: str,
                                           websocket: bool) -> None:
    headers = {"Host": f"127.0.0.1:{port}"}
    headers.update({k: v.format(port=port) for k, v in ATTACKS[name].items()})
    assert status(port, path, headers, websocket) == 403


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_the_apps_own_address_is_served(port: int, host: str) -> None:
    own = {"Host": f"{host}:{port}", "Origin": f"http://{host}:{port}"}
    assert status(port, "/", own) == 200
    assert status(port, "/_stcore/stream", own, websocket=True) == 101


def test_refusal_rules() -> None:
    allowed = allowed_hosts("127.0.0.1", 8501)
    assert refusal("localhost:8501", "http://localhost:8501", allowed) is None
    assert refusal("[::1]:8501", None, allowed) is None
    assert refusal("LOCALHOST:8501", None, allowed) is None
    assert refusal(None, None, allowed) is not None
    assert refusal("localhost:8502", None, allowed) is not None
    assert refusal("localhost:8501", "https://localhost:8501.evil.example", allowed) is not None
    assert allowed_hosts("10.0.0.5", 80) == ["10.0.0.5:80"]
