"""Sign-off of a run: a reviewer's decision, bound to the chain head they reviewed.

A ``signoff`` line (DESIGN.md, "Audit record") carries ``reviewer, role, decision, comment,
reviewed_seq, reviewed_head_hash``. It is appended to the run's own hash chain, so it is as
tamper-evident as the training record it judges, and it names the exact head it judged, so any
later change to the run shows: a sign-off is *stale* when a line that adds evidence (anything
but another sign-off or the binding of a regenerated report.html) was appended after the head it
reviewed, when that head is no longer in the chain, or when the run no longer verifies.

Everything here is plain Python with no Streamlit, so the rules are tested directly and the
report module imports ``signoff_states`` from this one place.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AUDIT_FILE, AuditLog, RunVerdict, file_sha256, verify_chain_bytes

DECISIONS = ("approve", "reject", "needs_changes")
DECISION_LABELS = {"approve": "approve", "reject": "reject", "needs_changes": "needs changes"}
MAX_NAME_CHARS = 120  # reviewer name and role
MAX_COMMENT_CHARS = 5000


class SignoffRefused(UserError):
    """A sign-off that must not be written; the message says why and what to do."""


@dataclass(frozen=True)
class SignoffState:
    """One ``signoff`` line as read back, with whether it still holds.

    ``stale_reason`` is empty for a current sign-off and otherwise says what changed.
    """

    seq: int
    reviewer: str
    role: str
    decision: str
    comment: str
    reviewed_seq: int | None
    reviewed_head_hash: str | None
    time: str | None
    stale_reason: str

    @property
    def stale(self) -> bool:
        return bool(self.stale_reason)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def adds_evidence(line: dict[str, Any]) -> bool:
    """Whether a line changes what a reviewer judged (so earlier sign-offs go stale).

    Other sign-offs and the binding of a (re)generated report.html only describe the record;
    counting them would make every sign-off stale as soon as a second reviewer signs.
    """
    kind = line.get("type")
    return not (kind == "signoff" or (kind == "file" and line.get("role") == "report"))


def signoff_states(lines: list[dict[str, Any]], run_verified: bool = True) -> list[SignoffState]:
    """Every sign-off in ``lines`` with its staleness, in chain order.

    lines: the verified lines of a run's chain (``verify_run(...).chain.lines``), seq order.
    run_verified: False when the run fails verification now (tampered chain, changed files);
        every sign-off is then stale, whatever it reviewed.
    """
    by_seq = {line.get("seq"): line for line in lines if _is_int(line.get("seq"))}
    changes = sorted(seq for seq, line in by_seq.items() if adds_evidence(line))
    out = []
    for line in lines:
        if line.get("type") != "signoff":
            continue
        seq = line.get("seq")
        reviewed_seq = line.get("reviewed_seq")
        reviewed_hash = line.get("reviewed_head_hash")
        if not run_verified:
            reason = "the run no longer verifies"
        elif (not _is_int(reviewed_seq) or not _is_int(seq) or reviewed_seq not in by_seq
              or reviewed_seq >= seq):
            reason = f"reviewed_seq {reviewed_seq!r} names no earlier line of this chain"
        elif by_seq[reviewed_seq].get("hash") != reviewed_hash:
            reason = f"the reviewed head hash does not match line seq {reviewed_seq}"
        else:
            later = bisect.bisect_right(changes, reviewed_seq)
            reason = ""
            if later < len(changes):
                changed = by_seq[changes[later]]
                reason = (f"the run changed after review: {changed.get('type')} line "
                          f"at seq {changed.get('seq')}")
        out.append(SignoffState(
            seq=seq, reviewer=str(line.get("reviewer", "")), role=str(line.get("role", "")),
            decision=str(line.get("decision", "")), comment=str(line.get("comment", "")),
            reviewed_seq=reviewed_seq if _is_int(reviewed_seq) else None,
            reviewed_head_hash=reviewed_hash if isinstance(reviewed_hash, str) else None,
            time=line.get("time"), stale_reason=reason))
    return out


def overall_state(states: list[SignoffState]) -> str:
    """One word for a run's sign-off standing, for the list of runs.

    Only current sign-offs count, and each reviewer's latest one. Conservative: any current
    rejection wins, then any request for changes, then approval. ``stale`` when every sign-off
    is stale, ``none`` when there are none.
    """
    if not states:
        return "none"
    latest: dict[str, str] = {}
    for state in states:
        if not state.stale:
            latest[state.reviewer.casefold()] = state.decision
    decisions = set(latest.values())
    if not decisions:
        return "stale"
    for decision, word in (("reject", "rejected"), ("needs_changes", "needs changes"),
                           ("approve", "approved")):
        if decision in decisions:
            return word
    return "unknown"


def load_reviewers(path: Path) -> tuple[str, ...]:
    """Read the allow-list of reviewer names.

    path: a ``.toml`` file with ``reviewers = ["Ada Lovelace", ...]``, or any other file as
        plain text, one name per line (blank lines and lines starting with ``#`` ignored).
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read the reviewer list ({exc})") from exc
    if path.suffix.lower() == ".toml":
        try:
            names = tomllib.loads(text).get("reviewers")
        except tomllib.TOMLDecodeError as exc:
            raise UserError(f"{path}: not valid TOML ({exc})") from exc
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise UserError(f"{path}: reviewers: expected a list of names (strings)")
    else:
        names = [ln for ln in text.splitlines() if not ln.strip().startswith("#")]
    names = tuple(n.strip() for n in names if n.strip())
    if not names:
        raise UserError(f"{path}: the reviewer list names nobody; list at least one reviewer")
    return names


def validate_signoff(reviewer: str, role: str, decision: str, comment: str,
                     allowed: tuple[str, ...] | None) -> dict[str, str]:
    """Check the form's fields; returns them cleaned, or raises ``SignoffRefused``.

    allowed: the configured reviewer names (None: any name). Matching ignores case and outer
        spaces; the name is recorded as the list spells it.
    """
    reviewer, role, comment = (str(v or "").strip() for v in (reviewer, role, comment))
    for label, value in (("reviewer name", reviewer), ("role", role)):
        if not value:
            raise SignoffRefused(f"sign-off: {label} is required")
        if len(value) > MAX_NAME_CHARS or not value.isprintable():
            raise SignoffRefused(f"sign-off: {label}: expected one line of at most "
                                 f"{MAX_NAME_CHARS} printable characters")
    if decision not in DECISIONS:
        raise SignoffRefused(f"sign-off: decision: expected one of {', '.join(DECISIONS)}, "
                             f"got {decision!r}")
    if decision != "approve" and not comment:
        raise SignoffRefused(f"sign-off: a comment is required to "
                             f"{DECISION_LABELS[decision]!r}: say what must change")
    if len(comment) > MAX_COMMENT_CHARS:
        raise SignoffRefused(f"sign-off: comment: at most {MAX_COMMENT_CHARS} characters")
    if allowed is not None:
        match = [name for name in allowed if name.casefold() == reviewer.casefold()]
        if not match:
            raise SignoffRefused(f"sign-off: {reviewer!r} is not on the configured list of "
                                 f"reviewers")
        reviewer = match[0]
    return {"reviewer": reviewer, "role": role, "decision": decision, "comment": comment}


def verify_contained(run_dir: Path) -> RunVerdict:
    """``audit.verify_run`` that never reads outside ``run_dir``.

    A ``file`` line whose path leaves the run folder (``../``, an absolute path, a symlink out)
    is reported as a problem instead of being hashed, so a crafted chain cannot make the app
    read arbitrary files. Otherwise the verdict is the same as ``verify_run``'s (tested).
    """
    run_dir = Path(run_dir)
    base = run_dir.resolve()
    audit = run_dir / AUDIT_FILE
    if not audit.exists():
        raise UserError(f"{run_dir}: not a run folder (no {AUDIT_FILE})")
    if not audit.is_file():
        raise UserError(f"{audit}: not a regular file")
    if not audit.resolve().is_relative_to(base):
        raise UserError(f"{audit}: links outside its run folder; refusing to read it")
    chain = verify_chain_bytes(audit.read_bytes())
    latest: dict[str, dict[str, Any]] = {}
    for line in chain.lines:
        if line.get("type") == "file":
            latest[str(line.get("path"))] = line
    problems = []
    for rel, line in latest.items():
        target = (run_dir / rel).resolve()
        if rel in escaping_files(run_dir, [line]):
            problems.append(f"{rel}: recorded at seq {line['seq']} points outside the run folder")
        elif not target.is_file():
            problems.append(f"{rel}: recorded at seq {line['seq']} but missing")
        elif file_sha256(target) != line.get("sha256"):
            problems.append(f"{rel}: changed since recorded at seq {line['seq']}")
    finished = any(line.get("type") == "run_finished" for line in chain.lines)
    return RunVerdict(chain, problems, finished)


def escaping_files(run_dir: Path, lines: list[dict[str, Any]]) -> list[str]:
    """Paths of ``file`` lines that resolve outside ``run_dir`` (never to be read)."""
    base = Path(run_dir).resolve()
    return [str(ln.get("path")) for ln in lines if ln.get("type") == "file"
            and not (base / str(ln.get("path"))).resolve().is_relative_to(base)]


def run_has_ended(lines: list[dict[str, Any]]) -> bool:
    """True when the last lifecycle line is ``run_finished`` (not a later ``resumed``)."""
    lifecycle = [ln.get("type") for ln in lines
                 if ln.get("type") in ("run_started", "resumed", "run_finished")]
    return bool(lifecycle) and lifecycle[-1] == "run_finished"


def append_signoff(run_dir: Path, *, reviewer: str, role: str, decision: str, comment: str,
                   displayed_seq: int, displayed_hash: str,
                   allowed: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Verify the run now and append a ``signoff`` line; returns the written line.

    displayed_seq, displayed_hash: the chain head the reviewer's page showed. If the run has
        moved on since, the reviewer has not seen what they would sign, so it is refused.
    allowed: configured reviewer names, or None for any name.
    Raises ``SignoffRefused`` (nothing written) when a field is invalid, the name is not
    allowed, the chain is not intact, an approval meets a run that fails verification, the run
    has not ended (its trainer may still be appending), or the head moved.
    """
    fields = validate_signoff(reviewer, role, decision, comment, allowed)
    run_dir = Path(run_dir)
    name = run_dir.name
    verdict = verify_contained(run_dir)
    chain = verdict.chain
    if chain.status != "intact":
        raise SignoffRefused(f"{name}: the audit chain is {chain.status} ({chain.message}); "
                             f"no sign-off can be added to it")
    if fields["decision"] == "approve" and not verdict.ok:
        raise SignoffRefused(f"{name}: cannot approve a run that fails verification: "
                             f"{verdict.summary}")
    if not run_has_ended(chain.lines):
        raise SignoffRefused(f"{name}: the run has not finished (no run_finished after its "
                             f"last start or resume); sign it off once it has ended")
    head_seq = chain.n_lines - 1
    if (head_seq, chain.head_hash) != (displayed_seq, displayed_hash):
        raise SignoffRefused(f"{name}: the run changed while you reviewed it (the page "
                             f"showed up to seq {displayed_seq}, it now ends at seq "
                             f"{head_seq}); reload the page and review it again")
    # AuditLog.append takes the log's lock and links to the true head. If another writer got
    # in after the check above, the line still names the head the reviewer saw, so
    # ``signoff_states`` shows it as stale at once: never a sign-off of unseen content.
    with AuditLog(run_dir) as log:
        return log.append("signoff", **fields, reviewed_seq=head_seq,
                          reviewed_head_hash=chain.head_hash)
