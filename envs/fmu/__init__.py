"""Bring your own plant: FMI 2.0 and 3.0 co-simulation FMUs as constrained Gymnasium envs.

``spec`` parses and checks the interface (``[env.kwargs]``) against the FMU's model description,
``simulator`` drives one FMU instance through fmpy, ``env`` is ``SafeTRPO/FMU-v0``, ``parallel``
runs many copies in worker processes with SAME_STEP autoreset, ``ray_backend`` runs them as Ray
actors, ``build_example`` compiles the example heated-tank FMU from C. Both backends share the
worker's request loop (``chunk``), the driver's side of it and the actors' TCP channel
(``channel``), and the assembly of the copies' infos (``batch``).

An FMU carries native code: it runs with the user's rights, like a plugin. Use FMUs you trust.
"""

from envs.fmu.env import FMUEnv
from envs.fmu.info import ENV_INFO
from envs.fmu.parallel import FMUVectorEnv, ParallelVectorEnv

__all__ = ["ENV_INFO", "FMUEnv", "FMUVectorEnv", "ParallelVectorEnv"]
