"""The record's CLI commands: ``verify``, ``ledger init``, ``reviewer new``, ``signoff``,
``bundle``. ``cli.py`` only wires argparse to these; each returns the exit code (0 success,
1 a check failed) and raises UserError for bad input (exit 2)."""

from __future__ import annotations

from pathlib import Path

from safe_trpo.errors import UserError
from safe_trpo.record import keys
from safe_trpo.record.anchor import expect_head_check, ledger_problems
from safe_trpo.record.audit import run_ledger_url, verify_run
from safe_trpo.record.ledger import display_url, init_ledger, open_ledger
from safe_trpo.record.signature import INVALID, UNSIGNED, UNTRUSTED, VERIFIED
from safe_trpo.record.signoff import (
    DECISION_LABELS,
    decision_changes,
    signoff_states,
)
from safe_trpo.record.verdict import integrity_word, run_verdict


def verify_command(run: Path, ledger: str | None = None, expect_head: str | None = None,
                   keyring: Path | None = None) -> int:
    """Check chain, files, ledger, kept head and sign-off signatures; print one line each."""
    verdict = verify_run(run)
    trusted = keys.load_keyring(keyring) if keyring is not None else None
    print(verdict.summary)
    problems = [verdict.summary] if not verdict.ok else []
    for problem in verdict.file_problems[1:]:
        print(f"  also: {problem}")
    lines = verdict.chain.lines
    run_id = Path(run).resolve().name
    url = ledger or run_ledger_url(Path(run))
    with open_ledger(url) as led:
        found = ledger_problems(lines, verdict.chain.status, led.entries(run_id), run_id,
                                display_url(url))
    for problem in found:
        print(problem)
    if not found:
        print(f"ledger {display_url(url)}: all {len(lines)} lines anchored and matching")
    problems += found
    head_seq = verdict.chain.n_lines - 1
    print(f"head: seq {head_seq} hash {verdict.chain.head_hash}  (keep it elsewhere; check "
          f"later with --expect-head)")
    if expect_head:
        outcome, message = expect_head_check(lines, expect_head)
        print(message)
        problems += [message] if outcome == "fail" else []
    failing = (INVALID, UNSIGNED, UNTRUSTED) if trusted is not None else (INVALID, UNSIGNED)
    states = signoff_states(lines, verdict.ok, trusted)
    for s in states:
        what = (f"sign-off seq {s.seq}: {DECISION_LABELS.get(s.decision, s.decision)} by "
                f"{s.reviewer} ({s.role}): signature {s.signature}: {s.signature_detail}"
                + (f"; STALE: {s.stale_reason}" if s.stale else ""))
        print(what)
        if s.signature in failing:
            problems.append(what)
    if states and trusted is None:
        print(f"{sum(s.signature != VERIFIED for s in states)} sign-off(s) with unverified "
              f"identity: pass --keyring K to check whose keys signed")
    for change in decision_changes(states):
        print(f"decisions changed: {change}")
    print(f"FAILED: {problems[0]}" if problems else "VERIFIED: chain, files, ledger"
          + (" and signatures" if states else "") + " hold")
    # The exit code is integrity's alone; the last line says what the record shows (a run
    # that verifies may still have FAILED, been INTERRUPTED or gone over its limits).
    whole = run_verdict(lines, integrity_word(verdict.chain.status, verdict.file_problems),
                        states)
    print(f"{'INTEGRITY NOT OK' if problems else 'INTEGRITY OK'}: {whole.headline()}")
    return 1 if problems else 0


def ledger_init_command(url: str, role: str) -> int:
    for line in init_ledger(url, role):
        print(line)
    return 0


def reviewer_new_command(name: str, role: str, key_out: Path, keyring: Path) -> int:
    passphrase = keys.read_passphrase("passphrase for the new key: ", confirm=True)
    entry = keys.new_reviewer(name, role, passphrase, key_out, keyring)
    print(f"key for {entry.name} ({entry.role}) written to {key_out} (encrypted); public key "
          f"{entry.fingerprint} added to {keyring}")
    return 0


def signoff_command(run: Path, key_file: Path, decision: str, comment: str,
                    head: str | None = None, ledger: str | None = None) -> int:
    """Sign the run's current head (or refuse if it is not ``head``, the one reviewed)."""
    from safe_trpo.record.signoff import append_signoff, verify_contained

    key = keys.load_reviewer_key(key_file, keys.read_passphrase(f"passphrase for {key_file}: "))
    chain = verify_contained(run).chain
    seq, current = chain.n_lines - 1, chain.head_hash
    if head is not None and head.strip().lower() != current:
        raise UserError(f"{run}: the record's head is now seq {seq} {current[:16]}..., not the "
                        f"--head you reviewed; review it again")
    line = append_signoff(run, key=key, decision=decision, comment=comment, displayed_seq=seq,
                          displayed_hash=current, ledger=ledger)
    print(f"signed: {DECISION_LABELS[line['decision']]} by {line['reviewer']} "
          f"({line['role']}) of run {line['run_id']} up to seq {seq}; line seq {line['seq']}")
    return 0


def bundle_command(run: Path, out: Path, ledger: str | None = None) -> int:
    from safe_trpo.record.bundle import write_bundle

    names = write_bundle(run, out, ledger)
    print(f"wrote {out}: {len(names)} entries (record, bound files, ledger entries, signers' "
          f"keys, verify_bundle.py)")
    print(f"check it with: python verify_bundle.py {out.name} --keyring KEYRING.toml  (use your "
          f"own copy of verify_bundle.py, not only the one inside)")
    return 0

