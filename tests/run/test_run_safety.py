"""One writer per run, nothing lost: live runs are locked, kills and signals leave a resumable
record, a full disk ends in one line. Through the CLI, with real signals and real write errors."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from safe_trpo.record.audit import read_lines, verify_run
from safe_trpo.run import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[2]

SLOW = """
[env]
id = "Pendulum-v1"
num_envs = 2
[algo]
steps_per_update = 200
total_steps = 40000
hidden_sizes = [8]
critic_epochs = 1
[run]
checkpoint_every = 1000
"""


def env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


def cli(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "safe_trpo.cli", *args], capture_output=True,
                          text=True, env=env(), timeout=180, **kw)


def start_training(tmp_path: Path, text: str = SLOW) -> subprocess.Popen:
    path = tmp_path / "s.toml"
    path.write_text(text)
    return subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "train", str(path), "--out",
                             str(tmp_path / "r"), "--no-progress"], env=env(),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_updates(tmp_path: Path, n: int) -> Path:
    deadline = time.time() + 120
    while time.time() < deadline:
        logs = list((tmp_path / "r").glob("*/audit.jsonl"))
        if logs and logs[0].read_bytes().count(b'"type":"update"') >= n:
            return logs[0].parent
        time.sleep(0.05)
    raise AssertionError("the run never got going")


def kinds(run_dir: Path) -> list[str]:
    return [ln["type"] for ln in read_lines(run_dir)]


def test_second_writer_refused_then_kill_before_first_checkpoint_resumes(tmp_path: Path) -> None:
    trainer = start_training(tmp_path, SLOW.replace("total_steps = 40000", "total_steps = 2000"))
    try:
        run_dir = wait_for_updates(tmp_path, 2)
        trainer.send_signal(signal.SIGSTOP)  # alive and holding its lock, whatever the load
        second = cli("resume", str(run_dir), "--no-progress")
        assert second.returncode == 2 and "another safe-trpo process" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        trainer.send_signal(signal.SIGKILL)
        trainer.wait()
    lines = read_lines(run_dir)
    assert not [ln for ln in lines if ln.get("role") == "checkpoint"]  # none written yet
    n_before = sum(ln["type"] == "update" for ln in lines)
    # The OS released the lock with the dead process; the run restarts from update 0.
    done = cli("resume", str(run_dir), "--no-progress")
    assert done.returncode == 0, done.stderr
    lines = read_lines(run_dir)
    resumed = [ln for ln in lines if ln["type"] == "resumed"]
    assert resumed[0]["from_update"] == 0 and resumed[0]["checkpoint"] is None
    assert [ln["update"] for ln in lines if ln["type"] == "update"][n_before:] == list(range(10))
    assert verify_run(run_dir).ok and lines[-1]["status"] == "completed"


def test_sigterm_checkpoints_the_state_reached(tmp_path: Path) -> None:
    trainer = start_training(tmp_path)
    run_dir = wait_for_updates(tmp_path, 3)
    trainer.send_signal(signal.SIGTERM)
    assert trainer.wait(timeout=60) == 1
    lines = read_lines(run_dir)
    done = sum(ln["type"] == "update" for ln in lines)
    assert done >= 3
    assert [ln["type"] for ln in lines[-2:]] == ["file", "run_finished"]
    assert lines[-2]["path"] == f"checkpoints/update_{done:06d}.pt"
    assert lines[-1]["status"] == "interrupted" and lines[-1]["updates"] == done
    assert verify_run(run_dir).ok
    # A crash mid-checkpoint leaves a temp file: resume cleans it, and continues from `done`.
    stray = run_dir / "checkpoints" / "update_999999.pt.tmp"
    stray.write_bytes(b"partial")
    resumed = subprocess.Popen([sys.executable, "-m", "safe_trpo.cli", "resume", str(run_dir),
                                "--no-progress"], env=env(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and b'"type":"resumed"' not in \
                (run_dir / "audit.jsonl").read_bytes():
            time.sleep(0.05)
        assert not stray.exists()
    finally:
        resumed.send_signal(signal.SIGINT)
        resumed.wait(timeout=60)
    resumed_line = next(ln for ln in read_lines(run_dir) if ln["type"] == "resumed")
    assert resumed_line["from_update"] == done
    assert verify_run(run_dir).ok


def test_checkpoint_rename_is_followed_by_a_directory_fsync(tmp_path: Path, monkeypatch) -> None:
    import torch

    from safe_trpo.algo.networks import ObsNormalizer, ValueNet
    from safe_trpo.algo.state import TrainState

    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("replace"),
                                                     real_replace(a, b))[1])

    def fsync(fd: int) -> None:
        events.append("fsync dir" if os.path.isdir(f"/proc/self/fd/{fd}") else "fsync file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    net = torch.nn.ModuleList([ValueNet(2, [4], "tanh")])
    state = TrainState(net[0], net, torch.optim.Adam(net.parameters()), ObsNormalizer(2, True),
                       __import__("numpy").zeros(0), __import__("numpy").random.default_rng(0),
                       space_spec={})
    ckpt.save_checkpoint(state, tmp_path)
    assert events == ["fsync file", "replace", "fsync dir"]


def limited(max_bytes: int):
    """Run the child with a per-file size limit: writes past it fail with EFBIG, the way a full
    disk fails them with ENOSPC (needs no root, unlike a small tmpfs)."""
    def apply() -> None:
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, (max_bytes, resource.RLIM_INFINITY))
    return apply


def small_tmpfs(folder: Path, kbytes: int) -> bool:
    """Mount a tmpfs of ``kbytes`` on ``folder`` (a real full disk: ENOSPC); False where this
    process may not mount (not root), and the caller falls back to a file-size limit."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={kbytes}k", "tmpfs",
                           str(folder)], capture_output=True).returncode == 0


# With [64, 64] networks a checkpoint outgrows 40 kB first (a per-process file-size limit also
# caps the SQLite ledger, 16 kB for such a run, so it cannot make the audit log fill first: the
# real 40 kB tmpfs, where the root user may mount one, fills wherever it fills).
@pytest.mark.parametrize(("max_bytes", "hidden", "tmpfs"),
                         [(40_000, "[64, 64]", False), (40_000, "[32, 32]", True)])
def test_a_full_disk_ends_in_one_line_and_the_run_resumes(tmp_path: Path, max_bytes: int,
                                                          hidden: str, tmpfs: bool) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SLOW.replace("total_steps = 40000", "total_steps = 2000").replace(
        "checkpoint_every = 1000", "checkpoint_every = 2").replace("[8]", hidden))
    out = tmp_path / "r"
    mounted = tmpfs and small_tmpfs(out, max_bytes // 1000)
    try:
        limit = {} if mounted else {"preexec_fn": limited(max_bytes)}
        # The ledger lives elsewhere (as in production): this is the run folder's disk filling.
        ledger = f"run.ledger={str(tmp_path / 'ledger.sqlite')!r}"
        full = cli("train", str(path), "--out", str(out), "--set", ledger, "--no-progress",
                   **limit)
        assert full.returncode == 2, full.stderr
        lines = full.stderr.strip().splitlines()
        assert len(lines) == 1 and "cannot write to the run folder" in lines[0], full.stderr
        assert "safe-trpo resume" in lines[0]
        run_dir = next(p for p in out.iterdir() if p.is_dir())
        assert verify_run(run_dir).ok  # nothing half-written is left in the chain
        assert not list(run_dir.glob("checkpoints/*.tmp"))
        if mounted:
            subprocess.run(["mount", "-o", "remount,size=64m", str(out)], check=True)
        done = cli("resume", str(run_dir), "--no-progress")  # space freed
        assert done.returncode == 0, done.stderr
        assert verify_run(run_dir).ok and read_lines(run_dir)[-1]["status"] == "completed"
    finally:
        if mounted:
            subprocess.run(["umount", "-l", str(out)], check=False)


def test_a_full_ledger_disk_stops_training_before_a_run_folder_exists(tmp_path: Path) -> None:
    path = tmp_path / "s.toml"
    path.write_text(SLOW)
    out = tmp_path / "r"
    full = cli("train", str(path), "--out", str(out), "--no-progress",
               preexec_fn=limited(6_000))  # the ledger's first pages do not fit
    assert full.returncode == 2, full.stderr
    lines = full.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot open it as a ledger" in lines[0], full.stderr
    assert not [p for p in out.iterdir() if p.is_dir()]  # no run without its ledger


def test_run_name_cannot_leave_the_output_folder(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "s.toml"
    path.parent.mkdir()
    path.write_text(SLOW.replace("[run]", '[run]\nname = "../../escaped"'))
    result = cli("train", str(path), "--out", str(tmp_path / "deep" / "r"), "--no-progress")
    assert result.returncode == 2 and "[run] name" in result.stderr
    assert not list(tmp_path.glob("escaped*")) and not (tmp_path / "deep" / "r").exists()
