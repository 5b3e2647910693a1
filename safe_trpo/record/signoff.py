"""Sign-off of a run: a reviewer's signed decision, bound to the chain head they reviewed.

A ``signoff`` line (DESIGN.md, "Audit record") carries ``reviewer, role, decision, comment,
reviewed_seq, reviewed_head_hash, run_id, time`` and an Ed25519 signature over them
(``record.signature``). It is appended to the run's own hash chain, so it is as
tamper-evident as the training record it judges, and it names the exact head it judged, so any
later change to the run shows: a sign-off is *stale* when a line that adds evidence (anything
but another sign-off or the binding of a regenerated ``report.html`` as role ``report``) was
appended after the head it reviewed, when that head is no longer in the chain, or when the run
no longer verifies. An approval also needs a run that may be approved (``approval_blocker``).

Everything here is plain Python with no Streamlit, so the rules are tested directly and the
report module imports ``signoff_states`` from this one place.
"""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tomllib

from safe_trpo.errors import UserError
from safe_trpo.record.audit import AUDIT_FILE, AuditLog, RunVerdict, file_sha256, verify_chain_bytes
from safe_trpo.record.keys import KeyringEntry, ReviewerKey
from safe_trpo.record.ledger import Ledger
from safe_trpo.record.signature import (
    ACCEPTABLE,
    UNSIGNED,
    UNVERIFIED,
    VERIFIED,
    sign_fields,
    signature_status,
)

DECISIONS = ("approve", "reject", "needs_changes")
DECISION_LABELS = {"approve": "approve", "reject": "reject", "needs_changes": "needs changes"}
MAX_NAME_CHARS = 120  # reviewer name and role
MAX_COMMENT_CHARS = 5000
REPORT_FILE = "report.html"  # the one file whose re-binding adds no evidence


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
    signature: str = UNSIGNED  # one of record.signature's states
    signature_detail: str = ""
    key_fingerprint: str | None = None

    @property
    def stale(self) -> bool:
        return bool(self.stale_reason)

    @property
    def verified(self) -> bool | None:
        """True: signed by a key in the trusted keyring; False: unsigned, invalid or untrusted;
        None: a valid signature whose identity was not checked (no keyring given)."""
        if self.signature == UNVERIFIED:
            return None
        return self.signature == VERIFIED


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def adds_evidence(line: dict[str, Any]) -> bool:
    """Whether a line changes what a reviewer judged (so earlier sign-offs go stale).

    Other sign-offs and the binding of a (re)generated report.html only describe the record;
    counting them would make every sign-off stale as soon as a second reviewer signs. Only a
    ``file`` line of role ``report`` whose path is ``report.html`` counts as such a binding:
    anything else bound under that role (a swapped checkpoint) is new evidence.
    """
    kind = line.get("type")
    return not (kind == "signoff" or (kind == "file" and line.get("role") == "report"
                                      and line.get("path") == REPORT_FILE))


def approval_blocker(lines: list[dict[str, Any]]) -> str:
    """Why the run in ``lines`` cannot be approved, or "" if it can.

    An approval needs a ``run_started`` line, at least one ``update``, and a last
    ``run_finished`` whose status is ``completed`` (not failed or interrupted). Rejecting or
    asking for changes stays possible.
    """
    if not any(line.get("type") == "run_started" for line in lines):
        return "the record has no run_started line"
    if not any(line.get("type") == "update" for line in lines):
        return "the record has no update"
    finished = [line for line in lines if line.get("type") == "run_finished"]
    status = finished[-1].get("status") if finished else "not finished"
    if status != "completed":
        return f"the run's status is {status}"
    return ""


def run_id_of(lines: list[dict[str, Any]], run_dir: Path) -> str:
    """The run id the record gives itself (``run_started``), else the folder's name."""
    started = next((ln for ln in lines if ln.get("type") == "run_started"), {})
    run_id = started.get("run_id")
    return run_id if isinstance(run_id, str) and run_id else Path(run_dir).resolve().name


def signoff_states(lines: list[dict[str, Any]], run_verified: bool = True,
                   keyring: dict[str, KeyringEntry] | None = None) -> list[SignoffState]:
    """Every sign-off in ``lines`` with its staleness and signature state, in chain order.

    lines: the verified lines of a run's chain (``verify_run(...).chain.lines``), seq order.
    run_verified: False when the run fails verification now (tampered chain, changed files);
        every sign-off is then stale, whatever it reviewed.
    keyring: trusted keys by fingerprint (``keys.load_keyring``), or None: signatures are then
        checked but identities reported as unverified.
    """
    by_seq = {line.get("seq"): line for line in lines if _is_int(line.get("seq"))}
    changes = sorted(seq for seq, line in by_seq.items() if adds_evidence(line))
    blocker = approval_blocker(lines)
    started = next((ln for ln in lines if ln.get("type") == "run_started"), {})
    run_id = started.get("run_id") if isinstance(started.get("run_id"), str) else None
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
        if not reason and line.get("decision") == "approve" and blocker:
            reason = f"this run cannot be approved: {blocker}"
        sig, sig_detail = signature_status(line, keyring, run_id)
        fp = line.get("key_fingerprint")
        out.append(SignoffState(
            seq=seq, reviewer=str(line.get("reviewer", "")), role=str(line.get("role", "")),
            decision=str(line.get("decision", "")), comment=str(line.get("comment", "")),
            reviewed_seq=reviewed_seq if _is_int(reviewed_seq) else None,
            reviewed_head_hash=reviewed_hash if isinstance(reviewed_hash, str) else None,
            time=line.get("time"), stale_reason=reason, signature=sig,
            signature_detail=sig_detail, key_fingerprint=fp if isinstance(fp, str) else None))
    return out


def decision_changes(states: list[SignoffState]) -> list[str]:
    """One line per reviewer who gave more than one decision, earliest first, so a later
    decision is always shown with the earlier ones (e.g. "Ada: reject (seq 12), then approve
    (seq 15)")."""
    by_reviewer: dict[str, list[SignoffState]] = {}
    for state in states:
        by_reviewer.setdefault(state.reviewer.casefold(), []).append(state)
    return [f"{group[0].reviewer}: " + ", then ".join(
        f"{DECISION_LABELS.get(s.decision, s.decision)} (seq {s.seq})" for s in group)
        for group in by_reviewer.values() if len({s.decision for s in group}) > 1]


def overall_state(states: list[SignoffState]) -> str:
    """One word for a run's sign-off standing, for the list of runs.

    Only current sign-offs with an acceptable signature count (see ``record.signature``), and
    each reviewer's latest one (``decision_changes`` shows the earlier ones beside it).
    Conservative: any current rejection wins, then any request for changes, then approval.
    ``stale`` when no sign-off counts, ``none`` when there are none.
    """
    if not states:
        return "none"
    latest: dict[str, str] = {}
    for state in states:
        if not state.stale and state.signature in ACCEPTABLE:
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


def append_signoff(run_dir: Path, *, key: ReviewerKey, decision: str, comment: str,
                   displayed_seq: int, displayed_hash: str,
                   allowed: tuple[str, ...] | None = None,
                   keyring: dict[str, KeyringEntry] | None = None,
                   ledger: Ledger | str | None = None) -> dict[str, Any]:
    """Verify the run now, sign, and append a ``signoff`` line; returns the written line.

    key: the reviewer's decrypted key (``keys.load_reviewer_key``); it gives the printed name
        and role, and is used only to sign, never stored.
    displayed_seq, displayed_hash: the chain head the reviewer saw. If the run has moved on
        since (another writer, or this same sign-off already written by a double click), the
        reviewer has not seen what they would sign: refused, checked under the log's lock.
    allowed: configured reviewer names, or None for any name.
    keyring: if given, the key must be in it under the same name and role.
    ledger: the run's ledger (default: its own, see ``AuditLog``).
    Raises ``SignoffRefused`` (nothing written) when a field is invalid, the signer is not
    allowed, the chain is not intact, an approval meets a run that fails verification or may
    not be approved (``approval_blocker``), the run has not ended, or the head moved.
    """
    fields = validate_signoff(key.name, key.role, decision, comment, allowed)
    if keyring is not None:
        entry = keyring.get(key.fingerprint)
        if entry is None or (entry.name, entry.role) != (key.name, key.role):
            raise SignoffRefused(f"sign-off: key {key.fingerprint[:16]} of {key.name!r} is not "
                                 f"in the configured keyring under that name and role")
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
    if fields["decision"] == "approve" and (blocker := approval_blocker(chain.lines)):
        raise SignoffRefused(f"{name}: cannot approve: {blocker} (reject or ask for changes)")
    head_seq = chain.n_lines - 1
    if (head_seq, chain.head_hash) != (displayed_seq, displayed_hash):
        raise SignoffRefused(f"{name}: the run changed while you reviewed it (the page "
                             f"showed up to seq {displayed_seq}, it now ends at seq "
                             f"{head_seq}); reload the page and review it again")
    signed = sign_fields(key, {
        "run_id": run_id_of(chain.lines, run_dir), "reviewed_seq": head_seq,
        "reviewed_head_hash": chain.head_hash, "decision": fields["decision"],
        "comment": fields["comment"],
        "time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    try:
        with AuditLog(run_dir, ledger) as log:
            return log.append("signoff", expect_head=(head_seq, chain.head_hash), **signed)
    except SignoffRefused:
        raise
    except UserError as exc:
        raise SignoffRefused(f"{name}: {exc}") from None
