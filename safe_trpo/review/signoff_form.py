"""The Review page's sign-off section: the sign-offs so far (with their signature state) and a
form that signs with the reviewer's key.

The form asks for the reviewer's key file and passphrase (two components), decrypts the key in
memory, signs, and keeps neither: after a successful sign-off the whole form is replaced by a
fresh one (new widget keys), so the upload and passphrase are gone. It prevents accidents: no
decision is preselected; required fields are marked; a second click on the same form writes
nothing (the form it came from is no longer current, and the head is checked again under the
log's lock); a run that fails verification shows the reason instead of a form.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from safe_trpo.errors import UserError
from safe_trpo.record import keys, signoff
from safe_trpo.record.anchor import run_ledger_problem
from safe_trpo.review import runs
from safe_trpo.review.frames import md


def submit_signoff(root: Path, run_id: str, seq: int, head: str,
                   allowed: tuple[str, ...] | None, form_n: int) -> None:
    """Form callback. ``seq`` and ``head`` are bound when the page was drawn: what was shown.
    ``form_n`` names the form instance; a click from a form already used does nothing."""
    state = st.session_state
    if form_n != state.get("so_form_n", 0):
        return  # a double click: the first click's sign-off replaced this form
    upload = state.get(f"so_key_{form_n}")
    passphrase = state.get(f"so_pass_{form_n}") or ""
    decision = state.get(f"so_decision_{form_n}")
    missing = [label for label, value in (("key file", upload), ("passphrase", passphrase),
                                          ("decision", decision)) if not value]
    if missing:
        state.signoff_result = ("error", run_id, f"Sign-off refused, nothing written: "
                                f"{', '.join(missing)} required")
        return
    try:
        key = keys.parse_reviewer_key(upload.getvalue(), passphrase, upload.name)
        written = signoff.append_signoff(
            runs.resolve_run(root, run_id), key=key, decision=decision,
            comment=state.get(f"so_comment_{form_n}", ""), displayed_seq=seq,
            displayed_hash=head, allowed=allowed, keyring=keys.configured_keyring())
    except UserError as exc:
        state[f"so_pass_{form_n}"] = ""  # never keep a passphrase that was tried
        state.signoff_result = ("error", run_id, f"Sign-off refused, nothing written: {exc}")
        return
    finally:
        key = None  # noqa: F841 (drop the decrypted key now)
    state.so_form_n = form_n + 1  # a fresh, empty form: the key and passphrase are gone
    state.signoff_result = ("ok", run_id, f"Sign-off recorded: {written['decision']} by "
                            f"{written['reviewer']} ({written['role']}), signed with key "
                            f"{written['key_fingerprint'][:16]}, line seq {written['seq']}.")


def form_blocker(detail: runs.RunDetail) -> str:
    """Why no sign-off can be made on this run now (shown instead of the form), or ""."""
    verdict = detail.verdict
    if verdict.chain.status != "intact":
        return (f"The audit chain is {verdict.chain.status}: {verdict.chain.message}. No "
                f"sign-off can be added to it.")
    if not verdict.ok:
        return f"This run fails verification: {verdict.summary}. It cannot be signed off here."
    if problem := run_ledger_problem(detail.run_dir, detail.lines, verdict.chain.status):
        return f"This run fails verification against its ledger: {problem}."
    if not signoff.run_has_ended(detail.lines):
        return "This run has not finished; it can be signed off once it has ended."
    return ""


def signoff_section(root: Path, detail: runs.RunDetail, allowed: tuple[str, ...] | None) -> None:
    st.header("Sign-off")
    verdict = detail.verdict
    try:
        keyring = keys.configured_keyring()
    except UserError as exc:
        st.error(md(f"Keyring: {exc}"))
        keyring = None
    states = signoff.signoff_states(detail.lines, run_verified=verdict.ok, keyring=keyring)
    if states:
        st.dataframe(pd.DataFrame([{
            "seq": s.seq, "reviewer": s.reviewer, "role": s.role,
            "decision": signoff.DECISION_LABELS.get(s.decision, s.decision),
            "comment": s.comment, "time": s.time, "reviewed up to seq": s.reviewed_seq,
            "state": f"STALE: {s.stale_reason}" if s.stale else "current",
            "signature": f"{s.signature}: {s.signature_detail}"} for s in states]),
            hide_index=True, key="signoffs")
        st.caption("Signatures checked against the configured keyring." if keyring is not None
                   else "No keyring configured (review --keyring K): signatures are checked, "
                        "but whose keys they are is not.")
        for change in signoff.decision_changes(states):
            st.warning(md(f"Decision changed: {change}"))
        if any(s.stale for s in states):
            st.warning("Some sign-offs are stale: the run changed after they were given.")
    else:
        st.caption("No sign-offs yet.")
    result = st.session_state.pop("signoff_result", None)
    if result and result[1] == detail.run_id:
        (st.success if result[0] == "ok" else st.error)(md(result[2]))
    if blocker := form_blocker(detail):
        st.error(md(blocker))
        return
    if reason := signoff.approval_blocker(detail.lines):
        st.info(md(f"This run cannot be approved ({reason}); you can reject it or ask for "
                   f"changes."))
    head_seq, head = verdict.chain.n_lines - 1, verdict.chain.head_hash
    n = st.session_state.get("so_form_n", 0)
    with st.form(f"signoff_form_{n}"):
        st.caption(f"You sign the record up to line seq {head_seq} (head hash {md(head[:16])}"
                   f"...). Any later change makes this sign-off stale. Fields marked * are "
                   f"required; the key is used in memory to sign and is never stored.")
        st.file_uploader("Your reviewer key file *", key=f"so_key_{n}",
                         help="Made by `safe-trpo reviewer new`; your name and role come from it"
                         + (" (only names on the configured list may sign)" if allowed else ""))
        st.text_input("Passphrase *", key=f"so_pass_{n}", type="password")
        st.radio("Decision *", signoff.DECISIONS, index=None, key=f"so_decision_{n}",
                 horizontal=True, format_func=signoff.DECISION_LABELS.get)
        st.text_area("Comment (required to reject or to ask for changes)",
                     key=f"so_comment_{n}")
        st.form_submit_button("Sign off", type="primary", on_click=submit_signoff,
                              args=(root, detail.run_id, head_seq, head, allowed, n))
