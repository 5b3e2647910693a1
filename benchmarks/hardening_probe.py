"""Attacks, kills and bad inputs against whichever safe-trpo is on PYTHONPATH, counted.

Run it against two checkouts and compare the counts side by side (issue 14's before/after)::

    PYTHONPATH=/path/to/old python benchmarks/hardening_probe.py
    PYTHONPATH=/path/to/new python benchmarks/hardening_probe.py

Everything goes through the CLI or the real review server, as an attacker or a careless user
would do it. Full-disk runs use a small tmpfs when this process may mount one (root), else a
per-file size limit (RLIMIT_FSIZE), and report which.
"""

from __future__ import annotations

import base64
import json
import os
import resource
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CODE = Path(os.environ.get("PYTHONPATH", ".").split(os.pathsep)[0]).resolve()
sys.path.insert(0, str(CODE))
ENV = {**os.environ, "PYTHONPATH": str(CODE), "SAFE_TRPO_CONFIG": "/nonexistent"}
ENV.pop("SAFE_TRPO_TRUST_MODULES", None)

TINY = """
[env]
id = "Pendulum-v1"
num_envs = 2
[algo]
steps_per_update = 200
total_steps = {total}
hidden_sizes = [8]
critic_epochs = 1
[run]
checkpoint_every = {every}
"""


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    kw.setdefault("env", ENV)
    return subprocess.run([sys.executable, "-m", "safe_trpo.cli", *args], capture_output=True,
                          text=True, timeout=300, **kw)


def one_line(result: subprocess.CompletedProcess) -> bool:
    lines = result.stderr.strip().splitlines()
    return result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def train(tmp: Path, total: int = 400, every: int = 1, *extra: str) -> Path | None:
    s = write(tmp / "ok.toml", TINY.format(total=total, every=every))
    r = cli("train", str(s), "--out", str(tmp / "r"), "--no-progress", *extra)
    return Path(r.stdout.strip().splitlines()[-1]) if r.returncode == 0 else None


def rechain(run_dir: Path, edit) -> None:
    from safe_trpo.record.audit import canonical_json, line_hash, read_lines

    prev, out = "0" * 64, []
    for obj in read_lines(run_dir):
        edit(obj)
        obj["prev_hash"] = prev
        obj["hash"] = prev = line_hash(obj)
        out.append(canonical_json(obj) + "\n")
    (run_dir / "audit.jsonl").write_text("".join(out), encoding="utf-8")


# --- attacks ---------------------------------------------------------------------------------

def attacks(tmp: Path) -> dict[str, bool]:
    """name -> blocked"""
    out: dict[str, bool] = {}
    marker = tmp / "pwned"
    s = write(tmp / "a1.toml", TINY.format(total=200, every=1).replace(
        '"Pendulum-v1"', '"os:system"').replace(
        "num_envs = 2", f"num_envs = 1\nkwargs = {{ command = \"touch {marker}\" }}"))
    cli("train", str(s), "--out", str(tmp / "a1"), "--no-progress")
    out["scenario id os:system runs a command"] = not marker.exists()
    lib = tmp / "lib"
    write(lib / "evilmod.py", f"open({str(marker)!r}, 'w').write('x')\n")
    s = write(tmp / "a2.toml", TINY.format(total=200, every=1).replace('"Pendulum-v1"',
                                                                       '"evilmod:Evil-v0"'))
    cli("train", str(s), "--out", str(tmp / "a2"), "--no-progress",
        env={**ENV, "PYTHONPATH": f"{CODE}{os.pathsep}{lib}"})
    out["scenario module:EnvId imports an untrusted module"] = not marker.exists()
    for command in ("evaluate", "resume"):
        run = train(tmp / command, 400, 1)
        marker.unlink(missing_ok=True)

        def poison(obj: dict) -> None:
            if obj["type"] == "run_started":
                obj["scenario"]["env"]["id"] = "os:system"
                obj["scenario"]["env"]["kwargs"] = {"command": f"touch {marker}"}
            if obj["type"] == "run_finished":
                obj["status"] = "interrupted"

        rechain(run, poison)
        cli(command, str(run))
        out[f"{command} of a re-chained record naming os:system"] = not marker.exists()
    s = write(tmp / "deep" / "a5.toml", TINY.format(total=200, every=1).replace(
        "[run]", '[run]\nname = "../../escaped"'))
    cli("train", str(s), "--out", str(tmp / "deep" / "r"), "--no-progress")
    out["run.name = ../../x writes outside --out"] = not list(tmp.glob("escaped*"))
    out["second resume of a live run"] = second_writer(tmp / "live")
    out.update(server_attacks(tmp / "srv"))
    out.update(link_attacks(tmp / "links"))
    return out


def second_writer(tmp: Path) -> bool:
    """A second ``resume`` while the first trainer runs: refused, or does it write?"""
    # Checkpoints from the first update on: an older resume refuses a run without one, which
    # would count as blocked for the wrong reason. 1000 updates: still running at the end,
    # however slowly the second process starts on a loaded machine.
    s = write(tmp / "s.toml", TINY.format(total=200000, every=1))
    proc = subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "train", str(s), "--out",
                             str(tmp / "r"), "--no-progress"], env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        run = wait_updates(tmp / "r", 2)
        second = subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "resume", str(run),
                                   "--no-progress"], env=ENV, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL)
        deadline = time.time() + 90
        wrote = False
        while time.time() < deadline and second.poll() is None and not wrote:
            wrote = b'"type":"resumed"' in (run / "audit.jsonl").read_bytes()
            time.sleep(0.1)
        alive = proc.poll() is None
        if second.poll() is None:
            second.kill()
        second.wait()
        return alive and not wrote and second.returncode not in (0, -signal.SIGKILL)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def wait_updates(out: Path, n: int) -> Path:
    deadline = time.time() + 180
    while time.time() < deadline:
        logs = list(out.glob("*/audit.jsonl"))
        if logs and logs[0].read_bytes().count(b'"type":"update"') >= n:
            return logs[0].parent
        time.sleep(0.05)
    raise RuntimeError("run did not start")


def http_status(port: int, path: str, headers: dict[str, str], ws: bool) -> int:
    lines = [f"GET {path} HTTP/1.1", *(f"{k}: {v}" for k, v in headers.items())]
    if ws:
        lines += ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13",
                  f"Sec-WebSocket-Key: {base64.b64encode(os.urandom(16)).decode()}"]
    with socket.create_connection(("127.0.0.1", port), timeout=10) as c:
        c.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
        return int(c.recv(4096).split(b"\r\n")[0].split()[1])


def server_attacks(tmp: Path) -> dict[str, bool]:
    from safe_trpo.review import launch

    (tmp / "reports").mkdir(parents=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(launch.build_command(tmp / "reports", port), env=ENV,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = {}
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                if http_status(port, "/_stcore/health", {"Host": f"127.0.0.1:{port}"},
                               False) == 200:
                    break
            except OSError:
                time.sleep(0.2)
        cases = {"other local page (Origin localhost:3000)": {"Origin": "http://localhost:3000"},
                 "DNS rebinding (Host/Origin attacker.example)": {
                     "Host": f"attacker.example:{port}",
                     "Origin": f"http://attacker.example:{port}"},
                 "opaque Origin null": {"Origin": "null"}}
        for name, extra in cases.items():
            for path, ws in (("/", False), ("/_stcore/stream", True)):
                headers = {"Host": f"127.0.0.1:{port}", **extra}
                kind = "websocket" if ws else "HTTP"
                out[f"review app {kind}: {name}"] = http_status(port, path, headers, ws) == 403
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    return out


def link_attacks(tmp: Path) -> dict[str, bool]:
    import hashlib

    from safe_trpo.report.build import build_report_html
    from safe_trpo.sweep.summary import find_sweeps

    out = {}
    outside = tmp / "outside" / "s1"
    write(outside / "sweep.json", json.dumps({"format": 1}))
    (tmp / "reports" / "sweeps").mkdir(parents=True)
    (tmp / "reports" / "sweeps" / "linked").symlink_to(outside, target_is_directory=True)
    out["review app lists a symlinked sweeps/<id>"] = not find_sweeps(tmp / "reports")
    run = train(tmp, 200, 1)
    secret = write(tmp / "secret.txt", "private")
    (run / "scenario.toml").unlink()
    (run / "scenario.toml").symlink_to(secret)
    try:
        html = build_report_html(run)
    except Exception:
        html = ""
    out["report hashes a file through a symlink"] = \
        hashlib.sha256(secret.read_bytes()).hexdigest() not in html
    return out


# --- kills -----------------------------------------------------------------------------------

def kills(tmp: Path, n: int) -> tuple[int, int]:
    """SIGKILL after 0..n-1 updates (checkpoint every 4): how many then resume to completion."""
    ok = 0
    for k in range(n):
        d = tmp / f"k{k}"
        s = write(d / "s.toml", TINY.format(total=3000, every=4))
        proc = subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "train", str(s), "--out",
                                 str(d / "r"), "--no-progress"], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            run = wait_updates(d / "r", k) if k else wait_for_start(d / "r")
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        r = cli("resume", str(run), "--no-progress")
        v = cli("verify", str(run))
        ok += r.returncode == 0 and v.returncode == 0
    return ok, n


def wait_for_start(out: Path) -> Path:
    deadline = time.time() + 180
    while time.time() < deadline:
        logs = list(out.glob("*/audit.jsonl"))
        if logs and b"run_started" in logs[0].read_bytes():
            return logs[0].parent
        time.sleep(0.02)
    raise RuntimeError("run did not start")


def sigterms(tmp: Path, n: int) -> tuple[int, int]:
    """SIGTERM after 3 + k updates (checkpoint every 1000): runs whose last checkpoint holds
    every update done, and that resume from there."""
    from safe_trpo.record.audit import read_lines

    ok = 0
    for k in range(n):
        d = tmp / f"t{k}"
        s = write(d / "s.toml", TINY.format(total=40000, every=1000))
        proc = subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "train", str(s), "--out",
                                 str(d / "r"), "--no-progress"], env=ENV,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        run = wait_updates(d / "r", 3 + k)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=120)
        lines = read_lines(run)
        done = sum(ln["type"] == "update" for ln in lines)
        ckpts = [ln for ln in lines if ln.get("role") == "checkpoint"]
        ok += bool(ckpts) and ckpts[-1]["path"].endswith(f"{done:06d}.pt")
    return ok, n


def full_disks(tmp: Path, n: int) -> tuple[int, int, str]:
    """Runs on a nearly full disk: one-line error, record verifies, resumes once space frees."""
    mech = "tmpfs"
    ok = 0
    for k in range(n):
        d = tmp / f"f{k}"
        d.mkdir(parents=True)
        size = 24 + 16 * k  # kB: the disk fills at a different point each time
        mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}k", "tmpfs",
                                  str(d)], capture_output=True).returncode == 0
        s = write(tmp / f"f{k}.toml", TINY.format(total=2000, every=2).replace(
            "[8]", "[8]" if k % 2 == 0 else "[32, 32]"))
        kw = {}
        if not mounted:
            mech = "RLIMIT_FSIZE"

            def limit(b=size * 1024) -> None:
                signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
                resource.setrlimit(resource.RLIMIT_FSIZE, (b, resource.RLIM_INFINITY))
            kw["preexec_fn"] = limit
        try:
            r = cli("train", str(s), "--out", str(d / "r"), "--no-progress", **kw)
            runs = list((d / "r").glob("*/audit.jsonl")) if (d / "r").exists() else []
            if mounted:
                subprocess.run(["mount", "-o", "remount,size=64m", str(d)], check=True)
            if not runs:
                continue
            run = runs[0].parent
            good = one_line(r) and cli("verify", str(run)).returncode == 0
            good = good and cli("resume", str(run), "--no-progress").returncode == 0
            ok += good and cli("verify", str(run)).returncode == 0
        finally:
            if mounted:
                subprocess.run(["umount", str(d)])
    return ok, n, mech


# --- bad input -------------------------------------------------------------------------------

def bad_inputs(tmp: Path) -> dict[str, bool]:
    """name -> clean one-line error"""
    import numpy as np
    import pandas as pd

    base = TINY.format(total=200, every=1)
    cases = {
        "seed above 2**64": (base + "seed = 18446744073709551616\n", []),
        "seed 2**64-1 (--set)": (base, ["--set", "run.seed=18446744073709551615"]),
        "deeply nested TOML": (base + "[eval]\nx = " + "[" * 5000 + "]" * 5000 + "\n", []),
        "huge hidden_sizes": (base.replace("[8]", "[100000000000]"), []),
        "env constructor fails after import": (
            base.replace('"Pendulum-v1"', '"brokenenv:BrokenEnv"'), []),
    }
    # A module the user trusts (environment variable: an older CLI has no --trust-module flag).
    write(tmp / "lib" / "brokenenv.py", "import gymnasium as gym\n\n\nclass BrokenEnv(gym.Env):"
          "\n    def __init__(self):\n        self.scale = 1 / 0\n")
    env = {**ENV, "PYTHONPATH": f"{CODE}{os.pathsep}{tmp / 'lib'}",
           "SAFE_TRPO_TRUST_MODULES": "brokenenv"}
    out = {}
    for name, (text, extra) in cases.items():
        s = write(tmp / f"{len(out)}.toml", text)
        out[f"scenario: {name}"] = one_line(cli("train", str(s), "--out", str(tmp / "r"),
                                                "--no-progress", *extra, env=env))
    dates = pd.bdate_range("2020-01-01", periods=200)
    p = 100 * np.exp(np.cumsum(np.random.default_rng(0).normal(0, 0.01, (200, 3)), axis=0))
    frame = pd.DataFrame({"date": dates.strftime("%Y-%m-%d"), "A": p[:, 0], "B": p[:, 1],
                          "C": p[:, 2]})
    tz = frame.copy()
    tz["date"] = [f"{d}T16:00:00{'-05:00' if i < 90 else '-04:00'}"
                  for i, d in enumerate(tz["date"])]
    huge = frame.copy()
    huge.loc[100, "B"] = 1e308
    jump = frame.copy()
    jump.loc[120:, "C"] *= 1e6
    for name, f in (("mixed timezone offsets", tz), ("a 1e308 price", huge),
                    ("a x1e6 overnight jump", jump)):
        path = tmp / f"{name.replace(' ', '_')}.csv"
        f.to_csv(path, index=False)
        out[f"prices: {name}"] = one_line(cli("backtest", "--prices", str(path), "--policy",
                                              "equal-weight"))
    return out


def main() -> None:
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        print(f"code: {CODE}")
        a = attacks(tmp / "attacks")
        b = bad_inputs(tmp / "bad")
        k = kills(tmp / "kills", 8)
        s = sigterms(tmp / "sigterm", 3)
        f = full_disks(tmp / "disk", 5)
    for name, blocked in a.items():
        print(f"  attack  {'BLOCKED' if blocked else 'open   '}  {name}")
    for name, clean in b.items():
        print(f"  input   {'one line' if clean else 'NOT    '}  {name}")
    print(f"attacks blocked: {sum(a.values())}/{len(a)}")
    print(f"bad inputs with a clean one-line error: {sum(b.values())}/{len(b)}")
    print(f"SIGKILLed runs (after 0..7 updates, checkpoint every 4) resumed and verified: "
          f"{k[0]}/{k[1]}")
    print(f"SIGTERMed runs whose checkpoint holds every update done: {s[0]}/{s[1]}")
    print(f"full-disk runs ({f[2]}): one line, record verifies, resumes after space freed: "
          f"{f[0]}/{f[1]}")


if __name__ == "__main__":
    main()
