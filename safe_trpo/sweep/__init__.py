"""Seed and scenario sweeps: every combination of scenario x ``--set`` values x seed as its own
audited run, locally in a process pool or on Ray.

``plan`` expands the sweep into named jobs, ``backends`` runs them (one job function, two
executors), ``runner`` ties the two together and ``summary`` writes ``sweep.json`` and
``sweep.html`` from the runs' records. May import ``run`` (to train), ``report``, ``record``,
``config`` and ``errors``.
"""
