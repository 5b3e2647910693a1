"""Data never runs code: an env id from a scenario or a run record imports nothing untrusted.

Each attack goes through the CLI, as an attacker would: a scenario naming ``os:system``, a module
that does something on import, and a received run folder whose re-hashed record names one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AUDIT_FILE, canonical_json, line_hash, read_lines, verify_run
from safe_trpo.run import trust

ROOT = Path(__file__).resolve().parents[2]

TINY = """
[env]
id = "Pendulum-v1"
num_envs = 2
[algo]
steps_per_update = 200
total_steps = 400
hidden_sizes = [8]
critic_epochs = 1
[run]
checkpoint_every = 1
"""

# A module that leaves a marker when imported and registers a Gymnasium id (Gymnasium's own
# ``module:EnvId-vN`` form).
EVIL = """
from pathlib import Path
Path({marker!r}).write_text("imported")
from gymnasium.envs.registration import register
register(id="Evil-v0", entry_point="gymnasium.envs.classic_control.pendulum:PendulumEnv",
         max_episode_steps=200)
"""


def cli(tmp_path: Path, *args: str, trust_env: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(tmp_path / "lib")]),
           "SAFE_TRPO_CONFIG": str(tmp_path / "no-user-config.toml")}
    env.pop(trust.ENV_VAR, None)
    if trust_env is not None:
        env[trust.ENV_VAR] = trust_env
    return subprocess.run([sys.executable, "-m", "safe_trpo.cli", *args], capture_output=True,
                          text=True, env=env, cwd=tmp_path, timeout=180)


def scenario(tmp_path: Path, env_id: str, extra: str = "") -> Path:
    path = tmp_path / "s.toml"
    path.write_text(TINY.replace('"Pendulum-v1"', json.dumps(env_id)).replace(
        "num_envs = 2", "num_envs = 2" + extra))
    return path


def one_line_error(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_os_system_in_a_scenario_runs_nothing(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    command = json.dumps(f"touch {marker}")
    path = scenario(tmp_path, "os:system", f"\nkwargs = {{ command = {command} }}")
    line = one_line_error(cli(tmp_path, "train", str(path), "--out", str(tmp_path / "r"),
                              "--no-progress"))
    assert not marker.exists()
    assert "not trusted" in line and "--trust-module os" in line
    assert not (tmp_path / "r").exists()


def test_a_module_named_by_a_scenario_is_not_imported_until_trusted(tmp_path: Path) -> None:
    marker = tmp_path / "imported"
    (tmp_path / "lib").mkdir()
    (tmp_path / "lib" / "evilmod.py").write_text(EVIL.format(marker=str(marker)))
    path = scenario(tmp_path, "evilmod:Evil-v0")
    line = one_line_error(cli(tmp_path, "train", str(path), "--out", str(tmp_path / "r"),
                              "--no-progress"))
    assert "--trust-module evilmod" in line and not marker.exists()
    # Trusted by the user's flag: Gymnasium's form imports the module and uses the id it made.
    done = cli(tmp_path, "train", str(path), "--out", str(tmp_path / "r"), "--no-progress",
               "--trust-module", "evilmod")
    assert done.returncode == 0, done.stderr
    assert marker.exists()
    # Trusted in the user's config file instead.
    marker.unlink()
    (tmp_path / "no-user-config.toml").write_text('trust_modules = ["evilmod"]\n')
    assert cli(tmp_path, "train", str(path), "--out", str(tmp_path / "r"),
               "--no-progress").returncode == 0


def rechain(run_dir: Path, edit) -> None:
    """What an attacker with write access does: edit a line and recompute every hash."""
    lines = read_lines(run_dir)
    prev = "0" * 64
    out = []
    for obj in lines:
        edit(obj)
        obj["prev_hash"] = prev
        obj["hash"] = line_hash(obj)
        prev = obj["hash"]
        out.append(canonical_json(obj) + "\n")
    (run_dir / AUDIT_FILE).write_text("".join(out), encoding="utf-8")


@pytest.mark.parametrize("command", ["evaluate", "resume"])
def test_a_received_run_record_cannot_choose_code(tmp_path: Path, command: str) -> None:
    done = cli(tmp_path, "train", str(scenario(tmp_path, "Pendulum-v1")), "--out",
               str(tmp_path / "r"), "--no-progress", "--set", "algo.total_steps=800")
    assert done.returncode == 0, done.stderr
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    marker = tmp_path / "pwned"

    def poison(obj: dict) -> None:
        if obj["type"] == "run_started":
            obj["scenario"]["env"]["id"] = "os:system"
            obj["scenario"]["env"]["kwargs"] = {"command": f"touch {marker}"}
        if obj["type"] == "run_finished":  # so that resume has something to do
            obj["status"] = "interrupted"

    rechain(run_dir, poison)
    assert verify_run(run_dir).ok  # the chain alone cannot tell
    line = one_line_error(cli(tmp_path, command, str(run_dir)))
    assert "not trusted" in line and not marker.exists()


def test_trust_rules() -> None:
    assert trust.is_trusted("tests.run.nan_env", ["tests.run"])
    assert not trust.is_trusted("tests.runner", ["tests.run"])
    assert trust.check_env_id("Pendulum-v1", registered=True) is None
    with pytest.raises(UserError, match="not a registered Gymnasium id"):
        trust.check_env_id("NoSuchEnv-v0", registered=False)
    with pytest.raises(UserError, match="expected a dotted module name"):
        trust.trust_from_flags(["../evil"])
