"""Bundles: one zip a third party can check with nothing but Python and ``cryptography``.

Layout of ``FILE.zip``:
    <run_id>/audit.jsonl        the record
    <run_id>/<path>             every file the record binds (latest version on disk)
    ledger.json                 the ledger's entries for the run: {ledger, run_id, entries}
    signers.toml                the public keys the sign-offs carry (information, not trust:
                                the checker passes its own keyring)
    verify_bundle.py            the standalone checker (``safe_trpo/record/verify_bundle.py``)
    README.txt                  how to check it
"""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

from safe_trpo.errors import UserError
from safe_trpo.record import keys
from safe_trpo.record.audit import AUDIT_FILE, run_ledger_url, verify_chain_bytes
from safe_trpo.record.ledger import display_url, open_ledger
from safe_trpo.record.signoff import escaping_files

VERIFIER = Path(__file__).with_name("verify_bundle.py")
README = """This bundle holds one safe-trpo run's audit record, the files it binds, the ledger's
entries for it, the public keys its sign-offs carry, and a standalone checker.

    python verify_bundle.py THIS.zip --keyring YOUR_KEYRING.toml [--expect-head HASH]

needs Python 3.11+ and the `cryptography` package. Prefer your own copy of verify_bundle.py to
the one inside. The ledger entries here are a copy: they prove the record was not truncated or
re-chained only as far as you trust whoever made the bundle, or as far as they match a head you
kept (--expect-head) or the ledger itself.
"""


def write_bundle(run_dir: Path, out: Path, ledger: str | None = None) -> list[str]:
    """Write the bundle of ``run_dir`` to ``out``; returns the archive's member names.

    ledger: URL of the ledger to copy the run's entries from (default: the run's own).
    Files bound in the record are read only from inside the run folder (never through a link
    out of it); a missing one is left out, and the checker then names it.
    """
    run_dir = Path(run_dir)
    audit = run_dir / AUDIT_FILE
    if not audit.is_file():
        raise UserError(f"{run_dir}: not a run folder (no {AUDIT_FILE})")
    run_id = run_dir.resolve().name
    data = audit.read_bytes()
    lines = verify_chain_bytes(data).lines
    url = ledger or run_ledger_url(run_dir)
    with open_ledger(url) as led:
        entries = [e.as_dict() for e in led.entries(run_id)]
    if not entries:
        raise UserError(f"ledger {display_url(url)} does not know run {run_id!r}; pass --ledger "
                        f"URL for the ledger it was anchored in")
    outside = set(escaping_files(run_dir, lines))
    paths = sorted({str(ln["path"]) for ln in lines if ln.get("type") == "file"
                    and isinstance(ln.get("path"), str)} - outside)
    signers = {}
    for ln in lines:
        pub, fp = ln.get("public_key"), ln.get("key_fingerprint")
        if ln.get("type") == "signoff" and isinstance(pub, str) and isinstance(fp, str):
            signers[fp] = keys.KeyringEntry(str(ln.get("reviewer")), str(ln.get("role")), pub, fp)
    names = []
    try:
        with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as z:
            def add(name: str, payload: bytes) -> None:
                z.writestr(name, payload)
                names.append(name)
            add(f"{run_id}/{AUDIT_FILE}", data)
            for rel in paths:
                target = run_dir / rel
                if target.is_file() and not target.is_symlink():
                    add(f"{run_id}/{rel}", target.read_bytes())
            add("ledger.json", json.dumps({"ledger": display_url(url), "run_id": run_id,
                                           "entries": entries}, indent=1).encode())
            add("signers.toml", ("# public keys carried by the sign-offs (NOT a trust list)\n"
                                 + keys.keyring_text(list(signers.values()))).encode())
            add("verify_bundle.py", VERIFIER.read_bytes())
            add("README.txt", README.encode())
    except OSError as exc:
        raise UserError(f"--out {out}: cannot write the bundle ({exc.strerror})") from None
    return names
