"""Compare a run's chain with its ledger entries and with a head kept elsewhere.

This is what catches the attacks a hash chain alone cannot: deleting the last lines
(truncation), and rewriting from some seq on and re-hashing everything after it (a re-chain).
Pure functions over the verified lines and the ledger's entries, so ``verify`` and the bundle
builder share them; ``verify_bundle.py`` repeats the same rules with the standard library.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from safe_trpo.errors import UserError
from safe_trpo.record.audit import run_ledger_url
from safe_trpo.record.ledger import GENESIS_HASH, LedgerEntry, display_url, open_ledger


def ledger_problems(lines: list[dict[str, Any]], chain_status: str, entries: list[LedgerEntry],
                    run_id: str, ledger_name: str) -> list[str]:
    """Every disagreement between the file's verified ``lines`` and the ledger's ``entries``.

    chain_status: the chain verdict's status; after "tampered" the file's length says nothing
        (verification stopped early), so only the verified prefix is compared.
    Returns [] when every anchored line is in the file with its hash and vice versa.
    """
    if not entries:
        return [f"ledger {ledger_name} does not know run {run_id!r} (not anchored there, or "
                f"the folder was renamed; pass --ledger URL for the ledger it was written to)"]
    problems = []
    prev = GENESIS_HASH
    for i, entry in enumerate(entries):
        if entry.seq != i or entry.prev_hash != prev:
            problems.append(f"ledger {ledger_name}: its own entries for run {run_id!r} are not "
                            f"one chain at seq {i}")
            break
        prev = entry.line_hash
    for entry, line in zip(entries, lines, strict=False):
        if entry.line_hash != line.get("hash"):
            problems.append(f"line seq {entry.seq}: hash differs from the ledger's (ledger "
                            f"{entry.line_hash[:16]}..., file {str(line.get('hash'))[:16]}...): "
                            f"the record was rewritten from seq {entry.seq}")
            break
    n, m = len(lines), len(entries)
    if chain_status == "tampered":
        return problems
    if m > n:
        problems.append(f"TRUNCATED: the ledger anchors seq 0-{m - 1} but the file ends at seq "
                        f"{n - 1}: line seq {n}" + (f"-{m - 1}" if m - 1 > n else "")
                        + " missing")
    elif n > m:
        problems.append(f"line seq {m}: not in the ledger ({n - m} line(s) at the end were never "
                        f"anchored: appended outside safe-trpo, or a crash before anchoring)")
    return problems


def expect_head_check(lines: list[dict[str, Any]], expected: str) -> tuple[str, str]:
    """("ok" | "fail", message) for a head hash the user kept elsewhere.

    The kept head passes if it is the current head, or an earlier line still in the chain (lines
    appended since, e.g. sign-offs, are named); it fails if no line of the chain has that hash.
    """
    expected = expected.strip().lower()
    for line in lines:
        if line.get("hash") == expected:
            later = len(lines) - 1 - line["seq"]
            return "ok", (f"kept head found: seq {line['seq']}"
                          + (f" ({later} line(s) appended since)" if later else " (current head)"))
    return "fail", (f"the kept head {expected[:16]}... is not in this chain: the record was "
                    f"truncated before it or rewritten")


def run_ledger_problem(run_dir: Path, lines: list[dict[str, Any]], chain_status: str,
                       url: str | None = None) -> str:
    """The first disagreement between a run folder and its ledger (or why the ledger cannot be
    read), or "" when they agree. url: the ledger (default: the run's own)."""
    run_id = Path(run_dir).resolve().name
    url = url or run_ledger_url(Path(run_dir))
    try:
        with open_ledger(url) as led:
            entries = led.entries(run_id)
    except UserError as exc:
        return str(exc)
    found = ledger_problems(lines, chain_status, entries, run_id, display_url(url))
    return found[0] if found else ""
