"""What each environment offers a scenario author (``safe-trpo envs``) and the checks made from
it before a run folder is created.

The facts live next to each environment's code, as its module's ``ENV_INFO``
(``envs.info.EnvInfo``): cost names with the unit of their episode sums, constructor kwargs with
defaults and docstrings, episode length, an example. They are found through Gymnasium's registry
(an id's entry point names the module; a ``package.module:Class`` id names it directly), and
the module's package is tried when the module itself has none. An environment without
``ENV_INFO`` (any other Gymnasium id) is still usable; its cost names are then checked at the
first step instead.
"""

from __future__ import annotations

import sys
import textwrap
from typing import Any

from envs.info import env_info
from safe_trpo.config import Scenario
from safe_trpo.errors import UserError
from safe_trpo.run.make_env import env_kwargs

PREFIX = "SafeTRPO/"
WIDTH = 100  # wrap width of ``safe-trpo envs``


def check_constraint_names(scenario: Scenario) -> None:
    """Refuse a ``[[constraints]] name`` the environment does not report (UserError naming the
    file, the constraint and the names it does report)."""
    info = env_info(scenario.env.id)
    if info is None:
        return
    names = info.cost_names(env_kwargs(scenario.env))
    if names is None:
        return
    for i, c in enumerate(scenario.constraints):
        if c.name not in names:
            source = scenario.source or "<scenario>"
            raise UserError(
                f"{source}: [[constraints]] #{i + 1} name = {c.name!r}: {scenario.env.id} "
                f"reports no such cost (its costs: {', '.join(names)}; see `safe-trpo envs`)")


def scenario_warnings(scenario: Scenario) -> list[str]:
    """Warnings for a scenario that loads but is likely a mistake (the environment's advice)."""
    info = env_info(scenario.env.id)
    advice = getattr(info, "advice", None)
    return list(advice(env_kwargs(scenario.env))) if advice else []


def registered_ids() -> list[str]:
    """Every Gymnasium id with the SafeTRPO/ prefix, sorted."""
    import gymnasium as gym

    import envs  # noqa: F401

    return sorted(i for i in gym.registry if i.startswith(PREFIX))


def _default(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, bool):
        return str(value).lower()
    if value is None:
        return "(unset)"
    return repr(value)


def describe_env(env_id: str) -> str:
    """The ``safe-trpo envs`` entry of one environment."""
    info = env_info(env_id)
    if info is None:
        return f"{env_id}\n  (its module defines no ENV_INFO: cost names and kwargs unknown)"
    out = [f"{env_id}", textwrap.fill(info.summary, WIDTH, initial_indent="  ",
                                      subsequent_indent="  "),
           textwrap.fill(f"episode: {info.episode}", WIDTH, initial_indent="  ",
                         subsequent_indent="    "),
           "  costs ([[constraints]] name; limit = budget on the episode sum):"]
    if info.costs_from_kwarg:
        out.append(f"    named by [env] kwargs.{info.costs_from_kwarg} (each name listed there)")
    costs = [*info.costs.items(), ("cost", "info['cost']: the sum of the named costs per step")]
    out += [textwrap.fill(meaning, WIDTH, initial_indent=f"    {name:<14} ",
                          subsequent_indent=" " * 19) for name, meaning in costs]
    docs = info.kwarg_docs()
    if docs:
        out.append("  kwargs ([env] kwargs = { name = value }), default, meaning and unit:")
        out += [f"    {k.name} = {_default(k.default)}\n" + textwrap.fill(
            k.doc or "(undocumented)", WIDTH, initial_indent=" " * 8, subsequent_indent=" " * 8)
            for k in docs]
    out.append("  example:")
    out += [f"    {line}" for line in info.example.splitlines()]
    return "\n".join(out)


OTHER_ENVS = """Any other Gymnasium environment
  [env] id = "Pendulum-v1" (a registered id) or "package.module:Class" (a class to import),
  with a flat Box observation space and a flat Box or Discrete action space. Constraints read
  non-negative per-step costs from info["cost_<name>"] (or info["cost"] for name = "cost");
  a module may define ENV_INFO (envs.info.EnvInfo) to be listed here and have its cost names
  checked before a run starts; without it, a cost the env never reports stops the run at its
  first step."""


def describe_envs() -> str:
    """Everything ``safe-trpo envs`` prints."""
    return "\n\n".join([*(describe_env(i) for i in registered_ids()), OTHER_ENVS])


def warn(scenario: Scenario, command: str) -> None:
    """Print ``scenario_warnings`` to stderr, one line each."""
    for text in scenario_warnings(scenario):
        print(f"safe-trpo {command}: warning: {text}", file=sys.stderr)
