"""Gymnasium environments of safe-trpo, registered on ``import envs``.

Conventions (DESIGN.md): Gymnasium 1.x API; the per-step cost is a non-negative float in
``info["cost"]`` (the Safety-Gymnasium convention) with named components in
``info["cost_<name>"]``; time limits are truncation, never termination. Each environment also
has a native batched ``VectorEnv`` (``gymnasium.make_vec`` picks it through
``vector_entry_point``) that follows Gymnasium's SAME_STEP autoreset: a finished copy is reset
inside the same ``step`` call, its last observation in ``info["final_obs"]`` and its last info
(costs included) in ``info["final_info"]``.
"""

from gymnasium.envs.registration import register, registry

_ENVS = {
    # id: (single-env entry point, native vector-env entry point)
    "SafeTRPO/SpeedLimit-v0": ("envs.speed_limit:SpeedLimitEnv",
                               "envs.speed_limit:SpeedLimitVectorEnv"),
    "SafeTRPO/CSTR-v0": ("envs.cstr_env:CSTREnv", "envs.cstr_env:CSTRVectorEnv"),
    "SafeTRPO/PressureVessel-v0": ("envs.pressure_env:PressureVesselEnv",
                                   "envs.pressure_env:PressureVesselVectorEnv"),
    "SafeTRPO/Portfolio-v0": ("envs.portfolio.env:PortfolioEnv",
                              "envs.portfolio.env:PortfolioVectorEnv"),
    "SafeTRPO/FMU-v0": ("envs.fmu.env:FMUEnv", "envs.fmu.parallel:FMUVectorEnv"),
}

for _env_id, (_entry, _vector_entry) in _ENVS.items():
    if _env_id not in registry:
        register(id=_env_id, entry_point=_entry, vector_entry_point=_vector_entry)
