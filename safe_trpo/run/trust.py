"""Which Python modules a scenario or a run record may make safe-trpo import.

A scenario file and a run record are data, and data never chooses code to run. An ``[env] id``
is therefore resolved in one of three ways, checked before anything is imported or called:

* a Gymnasium registry id (``Pendulum-v1``, ``SafeTRPO/CSTR-v0``): registered by code that is
  already installed and imported (Gymnasium, its plugins, this project's ``envs``);
* ``module:EnvId-vN`` (Gymnasium's own form: importing ``module`` registers ``EnvId-vN``) or
  ``module:Class`` (an env or vector-env class): only when ``module`` is trusted, because
  importing a module runs its code. Importing a module named by a data file is running code
  from data, so Gymnasium's form needs trust too;
* trusted modules are this project's ``envs`` package and the modules the user names in their
  own settings: the ``trust_modules`` list of the user config file
  (``$SAFE_TRPO_CONFIG``, else ``$XDG_CONFIG_HOME/safe-trpo/config.toml``, else
  ``~/.config/safe-trpo/config.toml``), the ``--trust-module NAME`` flag of ``train``,
  ``resume``, ``evaluate`` and ``sweep``, or the ``SAFE_TRPO_TRUST_MODULES`` environment
  variable (comma-separated; the flag sets it, so sweep workers inherit it). Trusting a name
  trusts its submodules too (``tests.run`` covers ``tests.run.nan_env``).

Nothing here reads a scenario or a record: trust comes from the user's side only.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path

import tomllib

from safe_trpo.errors import UserError

ENV_VAR = "SAFE_TRPO_TRUST_MODULES"
CONFIG_VAR = "SAFE_TRPO_CONFIG"
SHIPPED = ("envs",)  # this project's own environments
_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")


def config_path() -> Path:
    """The user config file (it need not exist)."""
    if os.environ.get(CONFIG_VAR):
        return Path(os.environ[CONFIG_VAR]).expanduser()
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "safe-trpo" / "config.toml"


def _check_name(name: str, where: str) -> str:
    if not isinstance(name, str) or not _MODULE.fullmatch(name):
        raise UserError(f"{where}: expected a dotted module name such as 'mypkg.envs', "
                        f"got {name!r}")
    return name


def _from_config() -> list[str]:
    path = config_path()
    if not path.is_file():
        return []
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: cannot read the safe-trpo user config ({exc})") from None
    names = data.get("trust_modules", [])
    if not isinstance(names, list):
        raise UserError(f"{path}: trust_modules: expected a list of module names")
    return [_check_name(n, f"{path}: trust_modules") for n in names]


def trust_from_flags(names: Iterable[str]) -> None:
    """Add ``--trust-module`` names to this process's (and its children's) trusted modules."""
    names = [_check_name(n, "--trust-module") for n in names]
    if names:
        current = [n for n in os.environ.get(ENV_VAR, "").split(",") if n]
        os.environ[ENV_VAR] = ",".join(dict.fromkeys([*current, *names]))


def trusted_modules() -> tuple[str, ...]:
    """The shipped package, the user config's list and the environment's, in that order."""
    env = [_check_name(n.strip(), ENV_VAR) for n in os.environ.get(ENV_VAR, "").split(",")
           if n.strip()]
    return tuple(dict.fromkeys([*SHIPPED, *_from_config(), *env]))


def is_trusted(module: str, trusted: Iterable[str]) -> bool:
    return any(module == t or module.startswith(t + ".") for t in trusted)


def check_env_id(env_id: str, registered: bool) -> str | None:
    """The module ``env_id`` would import (None for a registry id), after checking trust.

    registered: whether ``env_id`` is already a Gymnasium registry id. Raises UserError, saying
    how to trust the module, for a ``module:...`` id whose module the user has not trusted.
    """
    where = f"[env] id = {env_id!r}"
    if registered:
        return None
    if ":" not in env_id:
        raise UserError(f"{where}: not a registered Gymnasium id (and not 'module:EnvId-vN' or "
                        f"'module:Class' from a trusted module)")
    module, _, attr = env_id.partition(":")
    if not _MODULE.fullmatch(module) or not attr:
        raise UserError(f"{where}: expected 'module:EnvId-vN' or 'module:Class'")
    if not is_trusted(module, trusted_modules()):
        raise UserError(f"{where}: module '{module}' is not trusted, so it is not imported "
                        f"(importing runs its code, and a scenario or run record alone cannot "
                        f"choose code to run); trust it with --trust-module {module} or add it "
                        f"to trust_modules in {config_path()}")
    return module
