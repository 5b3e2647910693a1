"""What the training progress bar shows after each update: the story of the run so far.

Steps as a plain integer (tqdm would print 400000 as ``4e+5``), the batch's mean return and KL,
and each constraint's mean episode cost against its limit, with how many of the batch's episodes
went over it and the worst one when the record has them (a mean within the limit can hide an
episode far over it).
"""

from __future__ import annotations

import math
from typing import Any


def _g(x: Any) -> str:
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}"


def constraint_text(c: dict[str, Any], episodes: Any) -> str:
    """``0.12/0.25`` (mean/limit), then ``, 3/32 over, max 1.5`` when counts are recorded."""
    text = f"{_g(c.get('ep_cost'))}/{_g(c.get('limit'))}"
    over = c.get("episodes_over")
    if isinstance(over, int) and not isinstance(over, bool):
        of = f"/{episodes}" if isinstance(episodes, int) else ""
        text += f" ({over}{of} over"
        text += f", max {_g(c.get('ep_cost_max'))})" if over else ")"
    return text


def postfix(row: dict[str, Any], env_steps: int) -> dict[str, str]:
    """The bar's postfix for one update row (strings, so tqdm prints them as they are)."""
    out = {"steps": str(int(env_steps)), "ret": _g(row.get("return_mean")),
           "kl": f"{row['kl']:.4f}" if isinstance(row.get("kl"), (int, float)) else "n/a"}
    for c in row.get("constraints") or []:
        if isinstance(c, dict):
            out[str(c.get("name"))] = constraint_text(c, row.get("episodes"))
    return out
