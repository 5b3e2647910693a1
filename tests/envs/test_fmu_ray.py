"""Ray actors reached over their direct channel: it is really used, it refuses a wrong key,
a closed port falls back to Ray actor calls (with one warning and the same rollout), a dead
actor is one clear line on both paths, and closing neither hangs nor leaves actors behind."""

from __future__ import annotations

import functools
import os
import socket
import time
import warnings
from multiprocessing import AuthenticationError, Pipe
from multiprocessing.connection import Connection
from pathlib import Path

import numpy as np
import pytest

from envs.fmu import FMUEnv, FMUVectorEnv, ParallelVectorEnv, channel, ray_backend
from safe_trpo.errors import UserError
from tests.envs import fmu_fixtures
from tests.envs.fmu_fixtures import TANK_KWARGS, N, rollout, same

tank_fmu = fmu_fixtures.tank_fmu
local_ray = fmu_fixtures.local_ray
kwargs = fmu_fixtures.kwargs
reference = fmu_fixtures.reference
DIED = r"^the Ray actor of env copies {}\+ died \((\w+)\); an FMU's native code may have crashed$"


def closed_port() -> int:
    """A port nothing listens on (connecting to it is refused at once)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def refuse(refused: set[int]) -> object:
    """A ``connect`` that sends the connections to actors number ``refused`` to a closed port."""
    calls = []

    def connect(address: tuple[str, int], authkey: bytes) -> Connection:
        calls.append(address)
        if len(calls) - 1 in refused:
            address = ("127.0.0.1", closed_port())
        return channel.connect(address, authkey)
    return connect


def test_actors_are_stepped_over_their_direct_channels(kwargs: dict, reference: list,
                                                       local_ray: None) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning
        venv = FMUVectorEnv(N, workers=3, backend="ray", **kwargs)
    assert venv._exec.direct == [True, True, True]
    assert all(type(link) is Connection for link in venv._exec.peers.links)
    assert same(rollout(venv), reference)


@pytest.mark.parametrize("refused", [{0, 1, 2}, {1}])
def test_a_refused_channel_falls_back_to_ray_calls_with_the_same_rollout(
        kwargs: dict, reference: list, local_ray: None, monkeypatch: pytest.MonkeyPatch,
        refused: set[int]) -> None:
    monkeypatch.setattr(ray_backend, "connect", refuse(refused))
    with pytest.warns(RuntimeWarning, match=rf"^Ray backend: no direct connection to "
                                            rf"{len(refused)} of 3 actors \([\d.]+:\d+: "
                                            rf"ConnectionRefusedError"):
        venv = FMUVectorEnv(N, workers=3, backend="ray", **kwargs)
    assert venv._exec.direct == [i not in refused for i in range(3)]
    assert same(rollout(venv), reference)


def test_a_silent_host_is_given_up_after_one_timeout(kwargs: dict, local_ray: None,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    tries = []

    def silent(address: tuple[str, int], authkey: bytes) -> Connection:
        tries.append(address)
        raise TimeoutError("timed out")
    monkeypatch.setattr(ray_backend, "connect", silent)
    with pytest.warns(RuntimeWarning, match="TimeoutError: timed out"):
        venv = FMUVectorEnv(4, workers=3, backend="ray", **kwargs)
    try:
        assert len(tries) == 1 and venv._exec.direct == [False] * 3  # one host: one try
        venv.reset(seed=0)
        assert venv.step(np.zeros((4, 1)))[0].shape == (4, 2)
    finally:
        venv.close()


def test_the_actor_refuses_a_wrong_key_and_serves_only_its_driver(tank_fmu: Path,
                                                                  local_ray: None) -> None:
    import ray

    actor = ray.remote(num_cpus=0.5)(ray_backend.ChunkActor).remote(
        [functools.partial(FMUEnv, fmu=str(tank_fmu), **TANK_KWARGS)], 0)
    key = os.urandom(32)
    status, address = ray.get(actor.open_channel.remote(key))
    assert status == "ok"
    with pytest.raises(AuthenticationError):
        channel.connect(tuple(address), os.urandom(32))
    conn = channel.connect(tuple(address), key)  # the port stayed open for the right key
    conn.send(("spaces", ()))
    status, (obs_space, _) = conn.recv()
    assert status == "ok" and obs_space.shape == (2,)
    with pytest.raises(ConnectionRefusedError):  # one driver: the port is closed now
        channel.connect(tuple(address), key)
    conn.send(("close", ()))
    assert conn.recv() == ("ok", None)
    ray.kill(actor)


def test_a_silent_peer_cannot_hang_the_handshake(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(channel, "CONNECT_TIMEOUT_S", 0.3)
    with socket.create_server(("127.0.0.1", 0)) as server:  # accepts, never answers
        start = time.monotonic()
        with pytest.raises(OSError):
            channel.connect(server.getsockname(), b"key", timeout=0.3)
        assert time.monotonic() - start < 5


@pytest.mark.parametrize("direct", [True, False])
def test_a_killed_actor_is_one_clear_line_and_close_does_not_hang(
        kwargs: dict, local_ray: None, monkeypatch: pytest.MonkeyPatch, direct: bool) -> None:
    import ray

    if not direct:
        monkeypatch.setattr(ray_backend, "connect", refuse({0, 1}))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        venv = FMUVectorEnv(N, workers=2, backend="ray", **kwargs)
    assert venv._exec.direct == [direct, direct]
    venv.reset(seed=0)
    ray.kill(venv._exec.actors[1])  # copies 3 and 4
    with pytest.raises(UserError, match=DIED.format(3)):
        for _ in range(3):  # Ray may take a moment to tear the actor down
            venv.step(np.zeros((N, 1)))
            time.sleep(0.5)
    start = time.monotonic()
    venv.close()
    assert time.monotonic() - start < 15
    with pytest.raises(ray.exceptions.RayActorError):  # close killed the survivor too
        while time.monotonic() - start < 30:  # ray.kill is asynchronous: a call may slip in
            ray.get(venv._exec.actors[0].pid.remote(), timeout=10)
            time.sleep(0.2)


def test_a_crashing_plant_on_ray_is_a_dead_actor_not_a_hang(tank_fmu: Path,
                                                            local_ray: None) -> None:
    venv = FMUVectorEnv(2, workers=2, backend="ray", fmu=str(tank_fmu),
                        **{**TANK_KWARGS, "start_values": {"abort_after": 2.0}})
    try:
        assert venv._exec.direct == [True, True]
        venv.reset(seed=0)
        venv.step(np.zeros((2, 1)))
        with pytest.raises(UserError, match=DIED.format(0)):
            venv.step(np.zeros((2, 1)))  # the C code calls abort() in both actors
    finally:
        venv.close()


@pytest.mark.parametrize("backend", ["ray", "process"])
def test_a_plant_failing_in_its_worker_constructor_is_its_own_error(
        tank_fmu: Path, tmp_path: Path, local_ray: None, backend: str) -> None:
    """Not "the actor died": the worker's constructor error reaches the caller as it was."""
    env_fn = functools.partial(FMUEnv, fmu=str(tmp_path / "gone.fmu"), **TANK_KWARGS)
    with pytest.raises(UserError, match=r"^env copy|gone.fmu: FMU file not found"):
        ParallelVectorEnv([env_fn] * 3, workers=2, backend=backend)


def test_close_waits_a_bounded_time_for_a_silent_worker() -> None:
    ours, theirs = Pipe()  # a worker that never answers
    start = time.monotonic()
    channel.Peers([ours], [0], lambda i: "died").close(timeout=0.3)
    assert time.monotonic() - start < 2
    assert theirs.recv() == ("close", ())
