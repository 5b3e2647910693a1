"""The fast assembly of vector infos gives exactly what Gymnasium's SyncVectorEnv (SAME_STEP)
gives: the same keys in the same order, dtypes, values and ``_key`` masks, for infos it builds
in one go and for those it hands to gymnasium's own loop."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from gymnasium.vector import VectorEnv

from envs.fmu import batch
from tests.envs.fmu_fixtures import info_layout


class Vector(VectorEnv):
    """Just enough of a VectorEnv to call gymnasium's ``_add_info``."""

    def __init__(self, n: int) -> None:
        self.num_envs = n


def sync_vector_env(infos: list[dict], finals: list[Any]) -> dict:
    """SyncVectorEnv's own loop (gymnasium 1.x, SAME_STEP): final first, then the info."""
    vec, out = Vector(len(infos)), {}
    for i, (info, final) in enumerate(zip(infos, finals, strict=True)):
        if final is not None:
            out = vec._add_info(out, {"final_obs": final[0], "final_info": final[1]}, i)
        out = vec._add_info(out, info, i)
    return out


def fmu_info(t: float, cost: float = 0.0) -> dict:
    return {"cost_overheat": cost, "cost": cost, "model_time": t}


OBS = np.array([0.5, -0.25], np.float32)
CASES = {
    "uniform": ([fmu_info(float(i)) for i in range(5)], [None] * 5, True),
    "all finished": ([{"model_time": 0.0}] * 4, [(OBS * i, fmu_info(5.0, i)) for i in range(4)],
                     True),
    "some finished, copy 0 too": ([fmu_info(1.0)] * 4, [(OBS, fmu_info(5.0)), None,
                                                        (OBS, fmu_info(5.0, 2.5)), None], True),
    "some finished, not copy 0": ([fmu_info(1.0)] * 3, [None, (OBS, fmu_info(5.0, 1.0)), None],
                                  True),
    "numpy scalars and ints": ([{"a": np.float32(i), "b": i, "c": i > 1} for i in range(3)],
                               [None] * 3, True),
    "empty infos": ([{}] * 3, [None, (OBS, {}), None], True),
    "a missing key": ([fmu_info(1.0), {"model_time": 2.0}, fmu_info(3.0)], [None] * 3, False),
    "mixed types": ([{"x": 1}, {"x": 2.5}, {"x": True}], [None] * 3, False),
    "arrays and objects": ([{"v": np.arange(2) + i, "s": "text"} for i in range(3)], [None] * 3,
                           False),
    "nested dict": ([{"d": {"y": float(i)}} for i in range(2)], [None] * 2, False),
    "a key that looks like a mask": ([{"x": 1.0, "_x": 2.0}] * 2, [None] * 2, False),
    "final infos differ": ([fmu_info(1.0)] * 2, [(OBS, {"a": 1.0}), (OBS, {"b": 1.0})], False),
}


@pytest.mark.parametrize("case", list(CASES))
def test_vector_infos_equal_sync_vector_env(case: str) -> None:
    infos, finals, fast = CASES[case]
    expected = sync_vector_env(infos, finals)
    vec, calls = Vector(len(infos)), []

    def add_info(*args: Any) -> dict:
        calls.append(args)
        return vec._add_info(*args)

    got = batch.vector_infos(infos, finals, add_info)
    assert info_layout(got) == info_layout(expected)
    assert list(got) == list(expected)  # the same key order (info_layout follows it too)
    assert (calls == []) is fast  # the fast path was taken exactly where expected


def test_masks_and_final_obs_are_separate_arrays() -> None:
    """Each key owns its arrays (as gymnasium's are), so changing one leaves the others."""
    infos, finals, _ = CASES["some finished, copy 0 too"]
    got = batch.vector_infos(infos, finals, Vector(4)._add_info)
    assert got["_final_obs"] is not got["_final_info"] and got["_cost"] is not got["_model_time"]
    assert got["final_obs"][0] is finals[0][0] and got["final_obs"][1] is None
    assert got["final_info"]["cost"].tolist() == [0.0, 0.0, 2.5, 0.0]
    assert got["final_info"]["_cost"].tolist() == [True, False, True, False]
