"""The verdict a reviewer reads first, computed once from a run's verified lines.

One module, one rule, used by the report's "At a glance", the review app's run page and list,
``safe-trpo verify``'s last line and the sweep summary, so they cannot disagree about a run.
A verdict has five parts:

- **status**: completed / interrupted / failed (from the last ``run_finished`` after the last
  start or resume), else "not finished";
- **integrity**: the chain and file check (``integrity_word``);
- **limits at the end**: whether the final policy kept every limit. The basis is the latest
  ``evaluation`` recorded after the last update (the final policy, run deterministically on fresh
  seeds); without one, the episodes of the last ``END_WINDOW`` update rows (the last policies, as
  they trained). A constraint is kept when *no episode* went over its limit, not when the mean
  did; a count that cannot be established (no episode finished, or an old record without
  ``episodes_over`` whose rows only say the mean) is "unknown", never "within";
- **training totals**: per constraint, training episodes over the limit and the worst episode
  (``run_finished.constraint_totals``, else summed over the current update rows' ``episodes_over``
  and ``ep_cost_max``; "not recorded" for records that have neither);
- **sign-offs**: current / stale, and how many carry a verified signature when the caller checked
  signatures (a state object with a boolean ``verified`` attribute), else "not checked".

Nothing here imports torch or Streamlit. ``lines`` are always the *verified* lines of the chain:
a verdict is never drawn from a line that failed verification.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

END_WINDOW = 5  # update rows that stand for "the end of training" when there is no evaluation


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _rows(line: dict[str, Any]) -> list[dict[str, Any]]:
    rows = line.get("constraints")
    return [c for c in rows if isinstance(c, dict)] if isinstance(rows, list) else []


def fmt_num(x: float | None) -> str:
    """A cost or limit as a reader wants it: 4 significant digits, "n/a" when unknown."""
    return "n/a" if x is None else f"{x:.4g}"


@dataclass(frozen=True)
class LimitCount:
    """Episodes judged against one constraint's limit.

    episodes: how many episodes were judged (None: not recorded). over: how many went over the
    limit (None: not recorded or not determinable). worst: the largest episode cost (None: not
    recorded / no episode). note: why a figure is partial or missing ("" when complete).
    """

    name: str
    limit: float | None
    episodes: int | None
    over: int | None
    worst: float | None
    note: str = ""

    @property
    def kept(self) -> bool | None:
        """True: no episode over; False: some over; None: cannot tell."""
        if self.over is not None and self.over > 0:
            return False
        if self.worst is not None and self.limit is not None and self.worst > self.limit:
            return False
        if self.over == 0 and self.episodes:
            return True
        return None

    def text(self) -> str:
        """``runaway: 3 of 40 episodes over limit 1 (worst 2.5)``."""
        of = f" of {self.episodes}" if self.episodes is not None else ""
        _, bound, note = self.note.rpartition("at least; ")
        over = ("episodes over: not recorded" if self.over is None
                else f"{'at least ' if bound else ''}{self.over}{of} episodes over")
        worst = "" if self.worst is None else f", worst {fmt_num(self.worst)}"
        note = f" [{note}]" if note else ""
        return f"{self.name}: {over} limit {fmt_num(self.limit)}{worst}{note}"


@dataclass(frozen=True)
class LimitsAtEnd:
    """Whether the final policy kept every limit, and on what evidence.

    basis: "evaluation" | "end of training" | "none". within: True / False / None (unknown).
    detail: the evaluation's seq, or the update indices of the window.
    """

    basis: str
    within: bool | None
    counts: tuple[LimitCount, ...]
    detail: str


@dataclass(frozen=True)
class SignoffSummary:
    state: str  # overall_state: none | approved | rejected | needs changes | stale
    current: int
    stale: int
    verified: int | None  # current sign-offs with a verified signature; None: not checked

    def text(self) -> str:
        if not self.current and not self.stale:
            return "none"
        checked = ("signatures not checked" if self.verified is None
                   else f"{self.verified} of {self.current} current with a verified signature")
        return f"{self.state} ({self.current} current, {self.stale} stale; {checked})"


@dataclass(frozen=True)
class Verdict:
    status: str  # completed | interrupted | failed | not finished | unknown
    reason: str  # run_finished's reason, or why the status is what it is
    integrity: str  # see integrity_word
    limits: LimitsAtEnd
    training: tuple[LimitCount, ...]
    signoffs: SignoffSummary

    @property
    def integrity_ok(self) -> bool:
        return self.integrity == "intact"

    @property
    def level(self) -> str:
        """ok | warn | bad: bad for broken integrity, a failed run or a limit not kept."""
        if self.integrity in ("tampered", "files changed", "unreadable") \
                or self.status == "failed" or self.limits.within is False:
            return "bad"
        if not self.integrity_ok or self.status != "completed" or self.limits.within is None \
                or any(c.over for c in self.training) or self.signoffs.state == "stale":
            return "warn"
        return "ok"

    def status_text(self) -> str:
        word = {"completed": "run completed", "failed": "run FAILED",
                "interrupted": "run INTERRUPTED"}.get(self.status, f"run {self.status.upper()}")
        return word + (f" ({self.reason})" if self.reason else "")

    def limits_text(self) -> str:
        lim = self.limits
        if lim.basis == "none":
            return "final policy: not evaluated, and no update row to judge"
        where = (f"on evaluation ({lim.detail})" if lim.basis == "evaluation"
                 else f"at the end of training ({lim.detail}; not evaluated)")
        head = {True: "within every limit", False: "OVER A LIMIT",
                None: "within limits UNKNOWN"}[lim.within]
        return f"final policy {head} {where}: " + "; ".join(c.text() for c in lim.counts)

    def training_text(self) -> str:
        if not self.training:
            return "training: no constraints"
        return "training episodes: " + "; ".join(c.text() for c in self.training)

    def headline(self) -> str:
        """One line: status, limits (with counts), training totals, sign-offs."""
        return (f"{self.status_text()}; {self.limits_text()}; {self.training_text()}; "
                f"sign-offs: {self.signoffs.text()}")


def integrity_word(chain_status: str, file_problems: Sequence[str]) -> str:
    """intact | interrupted | tampered | empty | files changed, from a verify_run result."""
    if chain_status != "intact":
        return chain_status
    return "files changed" if file_problems else "intact"


def run_status(lines: list[dict[str, Any]], integrity: str) -> tuple[str, str]:
    """(status, reason) from the last start / resume / finish line."""
    status, reason = "unknown", "no run_started line"
    for line in lines:
        kind = line.get("type")
        if kind in ("run_started", "resumed"):
            status, reason = "not finished", "no run_finished line: still running, or stopped " \
                                             "unrecorded"
        elif kind == "run_finished":
            status = str(line.get("status") or "unknown")
            reason = str(line.get("reason") or "")
    if status == "not finished" and integrity == "interrupted":
        return "interrupted", "log cut off mid-line (a crash), no run_finished line"
    return status, reason


def constraint_limits(lines: list[dict[str, Any]]) -> dict[str, float | None]:
    """Constraint name -> limit, from run_started's scenario, then any row naming others."""
    out: dict[str, float | None] = {}
    start = next((ln for ln in lines if ln.get("type") == "run_started"), {})
    scenario = start.get("scenario") if isinstance(start.get("scenario"), dict) else {}
    for c in scenario.get("constraints") or []:
        if isinstance(c, dict) and c.get("name") is not None:
            out[str(c["name"])] = _num(c.get("limit"))
    for line in lines:
        if line.get("type") == "update":
            for c in _rows(line):
                out.setdefault(str(c.get("name")), _num(c.get("limit")))
    return out


def _count_rows(name: str, limit: float | None, rows: list[dict[str, Any]]) -> LimitCount:
    """Episodes over ``limit`` summed over update rows, the worst of their ``ep_cost_max``.

    A row without ``episodes_over`` (a record written before it existed) counts as at least one
    episode over when its mean was over, and as unknown otherwise: the total is then a lower
    bound, or "not recorded" when that bound is 0.
    """
    episodes = over = uncounted = 0
    worst: float | None = None
    for row in rows:
        entry = next((c for c in _rows(row) if str(c.get("name")) == name), None)
        if entry is None:
            continue
        eps = _int(row.get("episodes")) or 0
        episodes += eps
        w = _num(entry.get("ep_cost_max"))
        if w is not None:
            worst = w if worst is None else max(worst, w)
        k = _int(entry.get("episodes_over"))
        if k is not None:
            over += k
            continue
        cost = _num(entry.get("ep_cost"))
        if cost is None and not eps:
            continue  # no episode finished in this batch: nothing to count
        uncounted += 1
        if cost is not None and limit is not None and cost > limit:
            over += 1  # the mean was over, so at least one episode was
    if not uncounted:
        return LimitCount(name, limit, episodes, over, worst)
    note = f"{uncounted} rows without episode counts (older record)"
    if over:
        return LimitCount(name, limit, episodes or None, over, worst, "at least; " + note)
    return LimitCount(name, limit, episodes or None, None, worst, note)


def current_rows(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Update rows that stand: rows redone after a resume (``from_update <=`` their index) drop."""
    kept: list[dict[str, Any]] = []
    for line in lines:
        if line.get("type") == "update":
            kept.append(line)
        elif line.get("type") == "resumed" and _num(line.get("from_update")) is not None:
            start = _num(line.get("from_update"))
            kept = [r for r in kept if not ((_num(r.get("update")) or -1) >= start)]
    return kept


def training_totals(lines: list[dict[str, Any]]) -> tuple[LimitCount, ...]:
    """Per constraint: training episodes over the limit and the worst one (module docstring)."""
    limits = constraint_limits(lines)
    finished = [ln for ln in lines if ln.get("type") in ("run_started", "resumed",
                                                           "run_finished")]
    last = finished[-1] if finished else {}
    totals = last.get("constraint_totals") if last.get("type") == "run_finished" else None
    if isinstance(totals, list):
        by_name = {str(t.get("name")): t for t in totals if isinstance(t, dict)}
        if set(limits) <= set(by_name):
            return tuple(LimitCount(n, _num(by_name[n].get("limit")) if _num(
                by_name[n].get("limit")) is not None else limits[n],
                _int(by_name[n].get("episodes")), _int(by_name[n].get("episodes_over")),
                _num(by_name[n].get("ep_cost_max"))) for n in limits)
    rows = current_rows(lines)
    return tuple(_count_rows(n, lim, rows) for n, lim in limits.items())


def _evaluation_counts(ev: dict[str, Any], limits: dict[str, float | None]
                       ) -> tuple[LimitCount, ...]:
    episodes = _int(ev.get("episodes"))
    by_name = {str(c.get("name")): c for c in _rows(ev)}
    out = []
    for name, limit in limits.items():
        c = by_name.get(name)
        if c is None:
            out.append(LimitCount(name, limit, episodes, None, None, "not in the evaluation"))
            continue
        over = _int(c.get("episodes_over"))
        frac = _num(c.get("frac_over_limit"))
        if over is None and frac is not None and episodes:
            over = round(frac * episodes)  # frac is k / n, so this recovers k exactly
        out.append(LimitCount(name, _num(c.get("limit")) if _num(c.get("limit")) is not None
                              else limit, episodes, over, _num(c.get("ep_cost_max"))))
    return tuple(out)


def limits_at_end(lines: list[dict[str, Any]]) -> LimitsAtEnd:
    """Whether the final policy kept every limit (module docstring: the one rule)."""
    limits = constraint_limits(lines)
    rows = current_rows(lines)
    last_update_seq = max((_int(r.get("seq")) or -1 for r in rows), default=-1)
    evals = [ln for ln in lines if ln.get("type") == "evaluation"
             and (_int(ln.get("seq")) or -1) > last_update_seq]
    if evals:
        ev = evals[-1]
        counts = _evaluation_counts(ev, limits)
        basis, detail = "evaluation", f"seq {ev.get('seq')}"
    elif rows:
        window = rows[-END_WINDOW:]
        counts = tuple(_count_rows(n, lim, window) for n, lim in limits.items())
        ids = [r.get("update") for r in window]
        basis, detail = "end of training", f"episodes of updates {ids[0]}-{ids[-1]}"
    else:
        return LimitsAtEnd("none", None, (), "no update rows")
    kept = [c.kept for c in counts]
    within = False if False in kept else (True if all(kept) else None)
    return LimitsAtEnd(basis, within, counts, detail)


def signoff_summary(states: Sequence[Any]) -> SignoffSummary:
    """From ``signoff.signoff_states`` (or anything with ``stale``, ``reviewer``, ``decision``
    and, when signatures were checked, a boolean ``verified``)."""
    from safe_trpo.record.signoff import overall_state

    current = [s for s in states if not s.stale]
    checked = [getattr(s, "verified", None) for s in current]
    verified = (sum(v is True for v in checked)
                if current and all(isinstance(v, bool) for v in checked) else None)
    return SignoffSummary(overall_state(list(states)), len(current), len(states) - len(current),
                          verified)


def run_verdict(lines: list[dict[str, Any]], integrity: str,
                signoffs: Sequence[Any] = ()) -> Verdict:
    """The verdict of a run.

    lines: the chain's *verified* lines, in seq order.
    integrity: ``integrity_word(...)`` of the same check.
    signoffs: sign-off states (``signoff.signoff_states``), optionally with ``verified``.
    """
    status, reason = run_status(lines, integrity)
    return Verdict(status, reason, integrity, limits_at_end(lines), training_totals(lines),
                   signoff_summary(signoffs))
