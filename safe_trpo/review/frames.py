"""DataFrame builders for the review app: audit lines into tables (updates, constraints, results,
events), chart thinning, and the text helpers ``num`` and ``md``."""

from __future__ import annotations

import math
import string
from typing import Any

import pandas as pd


def num(value: Any) -> float | None:
    """A finite float from a log value, else None (missing, null, bool, text, NaN, inf)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


# Every ASCII punctuation character may be backslash-escaped in CommonMark, and escaping all of
# them also defuses Streamlit's extensions ($ math, :color[...] directives, bare-URL autolinks).
_MD_SPECIAL = frozenset(string.punctuation)


def md(text: Any) -> str:
    """``text`` (from the audit log, a path, the address) made literal for Streamlit markdown.

    Newlines become spaces: every use is a one-line message, and a line break would let the text
    start a heading, list or code block of its own.
    """
    flat = " ".join(str(text).splitlines())
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in flat)


def _constraints(line: dict[str, Any]) -> list[dict[str, Any]]:
    value = line.get("constraints")
    return [c for c in value if isinstance(c, dict)] if isinstance(value, list) else []


def filter_frame(frame: pd.DataFrame, query: str) -> pd.DataFrame:
    """Rows where every word of ``query`` appears (any case) in one of the text columns."""
    words = query.casefold().split()
    if not words or frame.empty:
        return frame
    text = frame.astype(str).agg(" ".join, axis=1).str.casefold()
    mask = pd.Series(True, index=frame.index)
    for word in words:
        mask &= text.str.contains(word, regex=False)
    return frame[mask]


# --- tables for the review and comparison pages -------------------------------------------

UPDATE_NUMBERS = ["update", "env_steps", "kl", "target_kl", "backtracks", "return_mean",
                  "episodes", "lambda", "solve_time_ms", "value_loss"]


def updates_frame(lines: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per ``update`` line; missing or malformed values are NaN/None, never 0."""
    rows = []
    for ln in lines:
        if ln.get("type") != "update":
            continue
        cpo = ln.get("cpo") if isinstance(ln.get("cpo"), dict) else {}
        row = {k: num(ln.get(k)) for k in UPDATE_NUMBERS}
        row.update({"seq": ln.get("seq"), "lambda": num(cpo.get("lambda")),
                    "solve_time_ms": num(cpo.get("solve_time_ms")),
                    "accepted": ln.get("accepted") if isinstance(ln.get("accepted"), bool)
                    else None,
                    "case": cpo.get("case"), "solver_status": cpo.get("solver_status")})
        rows.append(row)
    columns = ["seq", *UPDATE_NUMBERS, "accepted", "case", "solver_status"]
    frame = pd.DataFrame(rows, columns=columns)
    for col in UPDATE_NUMBERS:
        frame[col] = pd.to_numeric(frame[col])
    frame["kl_over_target"] = frame["kl"] > frame["target_kl"]
    return frame


def constraints_frame(lines: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (update, constraint): limit, ep_cost, violated, margin, nu, and the batch's
    worst episode and episodes over the limit (NaN in records that predate them)."""
    rows = []
    for ln in lines:
        if ln.get("type") != "update":
            continue
        for c in _constraints(ln):
            violated = c.get("violated")
            rows.append({"update": num(ln.get("update")), "constraint": str(c.get("name", "?")),
                         "limit": num(c.get("limit")), "ep_cost": num(c.get("ep_cost")),
                         "violated": violated if isinstance(violated, bool) else None,
                         "margin": num(c.get("margin")), "nu": num(c.get("nu")),
                         "ep_cost_max": num(c.get("ep_cost_max")),
                         "episodes_over": num(c.get("episodes_over"))})
    frame = pd.DataFrame(rows, columns=["update", "constraint", "limit", "ep_cost", "violated",
                                        "margin", "nu", "ep_cost_max", "episodes_over"])
    for col in ("update", "limit", "ep_cost", "margin", "nu", "ep_cost_max", "episodes_over"):
        frame[col] = pd.to_numeric(frame[col])
    return frame


def _label(line: dict[str, Any], default: str) -> str:
    for key in ("policy", "controller", "label", "name"):
        if isinstance(line.get(key), str):
            return line[key]
    return default


def evaluation_frames(lines: list[dict[str, Any]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per ``evaluation`` line, one row per evaluated constraint)."""
    evals, costs = [], []
    for ln in lines:
        if ln.get("type") != "evaluation":
            continue
        label = _label(ln, "trained policy")
        evals.append({"seq": ln.get("seq"), "controller": label, "episodes": ln.get("episodes"),
                      "seed": ln.get("seed"), "deterministic": ln.get("deterministic"),
                      "return_mean": num(ln.get("return_mean")),
                      "return_std": num(ln.get("return_std"))})
        for c in _constraints(ln):
            mean, limit = num(c.get("ep_cost_mean")), num(c.get("limit"))
            costs.append({"seq": ln.get("seq"), "controller": label,
                          "constraint": str(c.get("name", "?")), "limit": limit,
                          "ep_cost_mean": mean, "ep_cost_max": num(c.get("ep_cost_max")),
                          "frac_over_limit": num(c.get("frac_over_limit")),
                          "mean over limit": None if mean is None or limit is None
                          else mean > limit})
    return pd.DataFrame(evals), pd.DataFrame(costs)


def _scalars(metrics: dict[str, Any]) -> dict[str, Any]:
    """The scalar metrics, with one level of tables spread out (``breach_days.<limit>``)."""
    out: dict[str, Any] = {}
    for k, v in metrics.items():
        if isinstance(v, dict):
            out.update({f"{k}.{kk}": vv for kk, vv in _scalars(v).items() if "." not in kk})
        elif isinstance(v, (int, float, str, bool)) or v is None:
            out[k] = v
        elif (isinstance(v, list) and len(v) == 2
              and all(isinstance(x, (int, float)) for x in v)):
            out[k] = f"{v[0]:.2f} .. {v[1]:.2f}"  # an interval, e.g. sharpe_ci95
    return out


def backtest_frame(line: dict[str, Any]) -> pd.DataFrame:
    """A ``backtest`` line as one row per controller (the policy, then each baseline).

    ``safe-trpo backtest`` writes ``policy`` (the run folder as given), ``metrics`` (its
    figures) and ``baselines`` ({name: figures}); a ``policy`` table of figures is read too.
    """
    rows = []
    policy = line.get("policy")
    own = policy if isinstance(policy, dict) else line.get("metrics")
    if isinstance(own, dict):
        label = policy if isinstance(policy, str) else "trained policy"
        rows.append({"controller": label, **_scalars(own)})
    baselines = line.get("baselines")
    if isinstance(baselines, dict):
        items = list(baselines.items())
    elif isinstance(baselines, list):
        items = [(_label(b, f"baseline {i}"), b) for i, b in enumerate(baselines)]
    else:
        items = []
    rows += [{"controller": str(name), **_scalars(m)} for name, m in items if isinstance(m, dict)]
    if not rows:  # metrics at the top level of the line
        chain_fields = {"seq", "type", "prev_hash", "hash", "time"}
        rows.append({"controller": _label(line, "trained policy"),
                     **_scalars({k: v for k, v in line.items() if k not in chain_fields})})
    return pd.DataFrame(rows)


def events_frame(lines: list[dict[str, Any]]) -> pd.DataFrame:
    """Every line that is not an ``update``: starts, resumes, NaNs, files, results, sign-offs."""
    rows = []
    for ln in lines:
        kind = ln.get("type")
        if kind == "update":
            continue
        details = {k: v for k, v in ln.items()
                   if k not in ("seq", "type", "prev_hash", "hash", "time", "scenario",
                                "versions")}
        rows.append({"seq": ln.get("seq"), "type": kind, "time": ln.get("time"),
                     "details": ", ".join(f"{k}={v}" for k, v in details.items())[:300]})
    return pd.DataFrame(rows, columns=["seq", "type", "time", "details"])


def thin(frame: pd.DataFrame, keep: pd.Series, max_points: int = 2000) -> pd.DataFrame:
    """Every k-th row so that at most ~max_points remain, plus every row where ``keep`` is True.

    For charts of long runs: the browser stays fast and no flagged point (a violation, a KL
    over target) is ever dropped.
    """
    step = max(1, math.ceil(len(frame) / max_points))
    if step == 1:
        return frame
    regular = pd.Series(range(len(frame)), index=frame.index) % step == 0
    return frame[regular | keep.fillna(False).astype(bool)]
