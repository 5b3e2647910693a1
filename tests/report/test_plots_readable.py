"""Figures a reviewer can read: cost axes scaled to the limit with outliers marked, units on
every axis, each dual variable on its own axes, distinct legends, the final evaluation marked."""

from __future__ import annotations

import numpy as np

from safe_trpo.report.figures import render_png
from safe_trpo.report.plots import CLIP_FACTOR, final_evaluation, training_plots, update_table


def lines_with(costs: list[float], worst: list[float], evaluation: bool) -> list[dict]:
    out = [{"type": "run_started", "seq": 0}]
    for u, (c, w) in enumerate(zip(costs, worst, strict=True)):
        out.append({"type": "update", "seq": u + 1, "update": u, "kl": 0.01, "target_kl": 0.01,
                    "accepted": True, "backtracks": 1, "return_mean": float(u), "episodes": 4,
                    "cpo": {"lambda": 2.0 + u, "case": "feasible"}, "algo": "cpo",
                    "constraints": [
                        {"name": "temp", "limit": 1.0, "ep_cost": c, "violated": c > 1.0,
                         "nu": 1000.0 * u, "episodes_over": int(w > 1.0), "ep_cost_max": w},
                        {"name": "vent", "limit": 2.0, "ep_cost": 0.5, "violated": False,
                         "nu": 0.001 * u, "episodes_over": 0, "ep_cost_max": 0.9}]})
    if evaluation:
        out.append({"type": "evaluation", "seq": len(out), "episodes": 10, "return_mean": 7.5,
                    "constraints": [{"name": "temp", "limit": 1.0, "ep_cost_mean": 0.4,
                                     "ep_cost_max": 1.5, "episodes_over": 1},
                                    {"name": "vent", "limit": 2.0, "ep_cost_mean": 0.2,
                                     "ep_cost_max": 0.3, "episodes_over": 0}]})
    return out


def specs_for(lines: list[dict]) -> dict[str, object]:
    t = update_table(lines, ["temp", "vent"])
    return {s.title: s for s in training_plots(t, (), final_evaluation(lines),
                                                {"temp": "K min"})}


def test_one_outlier_does_not_flatten_the_cost_plot_and_is_counted() -> None:
    costs = [0.5, 0.8, 0.6, 0.9, 0.7, 0.5]
    worst = [0.9, 1.2, 0.8, 500.0, 0.9, 0.6]  # one episode 500x the limit
    spec = specs_for(lines_with(costs, worst, False))[
        "Constraint 'temp': episode cost per update vs its limit"]
    assert spec.clip_at == CLIP_FACTOR * 1.0
    assert spec.ylabel == "episode cost (K min)"
    labels = [x.label for x in (*spec.data, *spec.refs, *spec.marks)]
    assert len(set(labels)) == len(labels), labels
    assert "temp: worst episode of the batch" in labels
    # The episode over the limit inside a batch whose mean is within is flagged.
    assert "temp: mean within, some episodes over" in labels
    uri, _ = render_png(spec)  # draws, with the clipped marker
    assert uri.startswith("data:image/png;base64,")
    calm = specs_for(lines_with(costs, [0.9] * 6, False))[
        "Constraint 'temp': episode cost per update vs its limit"]
    assert calm.clip_at is None


def test_units_duals_on_their_own_axes_and_the_evaluation_marked() -> None:
    specs = specs_for(lines_with([0.5] * 4, [0.9] * 4, True))
    for spec in specs.values():
        assert "(" in spec.ylabel and spec.xlabel, spec.title  # a unit on each axis
    duals = [t for t in specs if "nu" in t or "lambda" in t]
    # nu of 'temp' reaches 3000 while nu of 'vent' stays below 0.01: never on one axis.
    assert sorted(duals) == ["CPO lambda (trust-region dual) per update",
                             "Dual variable nu of 'temp' per update",
                             "Dual variable nu of 'vent' per update"]
    assert all(len(specs[t].data) == 1 for t in duals)
    temp = specs["Constraint 'temp': episode cost per update vs its limit"]
    ev = [m for m in temp.marks if m.label.startswith("final-policy evaluation")]
    assert [float(m.y[0]) for m in ev] == [0.4, 1.5]
    assert np.all([m.x[0] == 3 for m in ev]) and "1 of 10 over" in ev[0].label
    ret = specs["Mean episode return per update"]
    assert ret.marks and ret.marks[0].y[0] == 7.5
    # An evaluation recorded before the last update judged an older policy: not marked.
    lines = lines_with([0.5] * 4, [0.9] * 4, True)
    lines.append(dict(lines[-2], seq=len(lines), update=4))
    assert final_evaluation(lines) is None


def test_the_app_scales_cost_axes_by_the_reports_rule() -> None:
    import pandas as pd

    from safe_trpo.report.plots import _clip_at
    from safe_trpo.review.cost_charts import axis_top

    rng = np.random.default_rng(3)
    for _ in range(50):
        limit = float(rng.uniform(0.1, 10))
        mean = rng.exponential(limit, 30)
        worst = mean * rng.uniform(1, 200, 30)
        mean[rng.integers(30)] = np.nan
        assert axis_top(limit, pd.Series(mean), pd.Series(worst)) == _clip_at(limit, mean, worst)
