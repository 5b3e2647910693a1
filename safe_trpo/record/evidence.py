"""Run-level constraint evidence from the ``update`` lines of an audit record.

A run's mean episode cost can sit under a limit while single episodes exceed it. The totals
here count, over every training episode the run's current updates saw, how many episodes
exceeded each limit and how bad the worst one was. They read only the JSON rows (no torch), so
the trainer, the report and an outside checker compute the same figures.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def current_update_rows(lines: Iterable[dict[str, Any]], below: int | None = None
                        ) -> list[dict[str, Any]]:
    """The last ``update`` line of each update index, in index order.

    After a resume the updates after the checkpoint are redone and recorded again; the last row
    of an index is the one whose policy the run continued from, so each update counts once.
    ``below``: keep only indices < below (the updates the run has completed).
    """
    latest: dict[int, dict[str, Any]] = {}
    for line in lines:
        if line.get("type") != "update" or not isinstance(line.get("update"), int):
            continue
        if below is None or line["update"] < below:
            latest[line["update"]] = line
    return [latest[k] for k in sorted(latest)]


def constraint_totals(rows: Iterable[dict[str, Any]],
                      constraints: Iterable[tuple[str, float]]) -> list[dict[str, Any]]:
    """Per constraint: ``{name, limit, episodes, episodes_over, ep_cost_max}`` over ``rows``.

    Args:
        rows: update rows (see ``current_update_rows``), each with ``episodes`` and a
            ``constraints[]`` list carrying ``name``, ``episodes_over`` and ``ep_cost_max``.
        constraints: (name, limit) of each constraint of the scenario, in order.

    ``episodes`` is the number of finished training episodes; ``ep_cost_max`` is None when none
    finished. A row written before ``episodes_over`` existed makes that constraint's
    ``episodes_over`` None (unknown), never a silent 0.
    """
    rows = list(rows)
    out = []
    for name, limit in constraints:
        episodes, over, worst = 0, 0, None
        for row in rows:
            entry = next((c for c in row.get("constraints") or [] if c.get("name") == name),
                         None)
            if entry is None:
                continue
            episodes += int(row.get("episodes") or 0)
            if over is not None:
                over = None if entry.get("episodes_over") is None else \
                    over + int(entry["episodes_over"])
            if entry.get("ep_cost_max") is not None:
                worst = max(worst, float(entry["ep_cost_max"])) if worst is not None \
                    else float(entry["ep_cost_max"])
        out.append({"name": name, "limit": limit, "episodes": episodes,
                    "episodes_over": over, "ep_cost_max": worst})
    return out
