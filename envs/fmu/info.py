"""``ENV_INFO`` of SafeTRPO/FMU-v0 for ``safe-trpo envs`` and the scenario checks.

The cost names of an FMU environment are chosen by the scenario (the keys of ``[env.kwargs]
costs``), so the constraint-name check reads them from there (``costs_from_kwarg``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from envs.info import EnvInfo


@dataclass(frozen=True)
class FMUKwargs:
    """The ``[env.kwargs]`` of SafeTRPO/FMU-v0 (documentation only: ``envs.fmu.spec`` checks
    them against the FMU's model description)."""

    step_size: float = None  # type: ignore[assignment]
    """Model seconds per env step (the communication step of fmi2DoStep). Required."""
    episode_steps: int = None  # type: ignore[assignment]
    """Env steps per episode, then truncation. Required."""
    actions: Any = None
    """List of { name, low, high }: FMU inputs (Real); the policy [-1, 1] maps onto [low, high]."""
    observations: Any = None
    """List of output/state names or { name, low, high }; scaled to [-1, 1] over the range."""
    reward: Any = None
    """{ output = NAME } (maximised per step) or { track = NAME, setpoint = X, scale = S }."""
    costs: Any = None
    """name -> { output = NAME } or { output = NAME, above = X } / { ..., below = X }."""
    start_values: Any = None
    """NAME -> value set before initialisation of every episode."""
    randomize: Any = None
    """NAME -> [low, high]: a seeded uniform draw per episode, set before initialisation."""
    start_time: float = 0.0
    """Model time at which every episode starts (s)."""


ENV_INFO = EnvInfo(
    env_id="SafeTRPO/FMU-v0",
    summary="Any FMI 2.0/3.0 co-simulation FMU (from [env] data_files = { fmu = ... }) as a "
            "constrained environment.",
    costs={"<name>": "one per key of kwargs.costs: the FMU output itself, or how far it is "
                     "beyond its above/below bound at the end of the step (the output's unit "
                     "x steps)"},
    kwargs=FMUKwargs,
    episode="episode_steps steps of step_size model seconds, truncation only",
    example='[env]\nid = "SafeTRPO/FMU-v0"\ndata_files = { fmu = "plant.fmu" }\n'
            '[env.kwargs]\nstep_size = 1.0\nepisode_steps = 50\n'
            'actions = [{ name = "heat", low = 0.0, high = 1.0 }]\nobservations = ["T"]\n'
            'reward = { output = "production" }\n'
            'costs = { overheat = { output = "T", above = 80.0 } }\n\n'
            '[[constraints]]\nname = "overheat"\nlimit = 20.0',
    costs_from_kwarg="costs")
