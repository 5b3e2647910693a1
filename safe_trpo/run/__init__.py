"""The run lifecycle: build environments, train, checkpoint, resume, evaluate.

``trainer`` reads top to bottom (collect, learn, record, checkpoint); ``checkpoint`` saves and
restores ``algo.state.TrainState``; ``make_env`` builds the vector env a scenario names;
``evaluate`` and ``controllers`` run deterministic episodes of a policy or a baseline;
``policy_io`` loads a trained policy from a verified run folder; ``pid_tuning`` tunes the
shipped PID baselines. May import ``algo``, ``record``, ``config``, ``errors`` and ``envs``;
never ``report``, ``review``, ``sweep`` or ``finance``.
"""
