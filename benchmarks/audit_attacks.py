"""The attacker's table: each attack on a run folder, and whether `safe-trpo verify` catches it.

Run against any checkout (its code is taken from PYTHONPATH), e.g. before and after a change:

    PYTHONPATH=/path/to/checkout python benchmarks/audit_attacks.py

Prints one row per attack: verify's exit code and its last line. An attacker here can write the
run folder only (the ledger, when the checkout has one, is out of reach), except in the rows
marked "+ledger", where the attacker appends through safe-trpo's own writer.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

from safe_trpo.record.audit import AuditLog, canonical_json, line_hash, read_lines
from tests.review.fixtures import head, make_run


def rechain(run: Path, objs: list[dict]) -> None:
    prev, text = "0" * 64, []
    for i, obj in enumerate(objs):
        obj = {k: v for k, v in obj.items() if k != "hash"} | {"seq": i, "prev_hash": prev}
        obj["hash"] = prev = line_hash(obj)
        text.append(canonical_json(obj))
    (run / "audit.jsonl").write_text("\n".join(text) + "\n")


def truncate(run: Path) -> None:
    lines = (run / "audit.jsonl").read_text().splitlines(keepends=True)
    (run / "audit.jsonl").write_text("".join(lines[:-3]))


def rechain_edit(run: Path) -> None:
    objs = read_lines(run)
    objs[2]["forged"] = True
    rechain(run, objs)


def rechain_insert(run: Path) -> None:
    objs = read_lines(run)
    objs.insert(3, {"type": "evaluation", "return_mean": 1e9})
    rechain(run, objs)


def rechain_reorder(run: Path) -> None:
    objs = read_lines(run)
    objs[2], objs[3] = objs[3], objs[2]
    rechain(run, objs)


def forged_signoff(run: Path) -> None:
    seq, h = head(run)
    obj = {"seq": seq + 1, "type": "signoff", "prev_hash": h, "reviewer": "Ada", "role": "r",
           "decision": "approve", "comment": "", "reviewed_seq": seq, "reviewed_head_hash": h}
    obj["hash"] = line_hash(obj)
    with open(run / "audit.jsonl", "a") as f:
        f.write(canonical_json(obj) + "\n")


def forged_signoff_via_writer(run: Path) -> None:
    seq, h = head(run)
    with AuditLog(run) as log:
        log.append("signoff", reviewer="Ada", role="r", decision="approve", comment="",
                   reviewed_seq=seq, reviewed_head_hash=h)


def swap_checkpoint(run: Path) -> None:
    next((run / "checkpoints").iterdir()).write_bytes(b"other weights")


def swap_checkpoint_rechained(run: Path) -> None:
    ckpt = next((run / "checkpoints").iterdir())
    ckpt.write_bytes(b"other weights")
    import hashlib
    objs = read_lines(run)
    for obj in objs:
        if obj.get("type") == "file":
            obj["sha256"] = hashlib.sha256(b"other weights").hexdigest()
    rechain(run, objs)


ATTACKS = {
    "truncate last 3 lines": truncate,
    "edit seq 2 + re-chain": rechain_edit,
    "insert a line + re-chain": rechain_insert,
    "reorder seq 2/3 + re-chain": rechain_reorder,
    "swap checkpoint": swap_checkpoint,
    "swap checkpoint + re-hash + re-chain": swap_checkpoint_rechained,
    "append forged signoff (valid hash)": forged_signoff,
    "forged signoff via writer (+ledger)": forged_signoff_via_writer,
}


def main() -> None:
    root = Path(tempfile.mkdtemp()) / "out"
    for i, (name, attack) in enumerate(ATTACKS.items()):
        run = make_run(root, f"run{i}", checkpoint=True)
        attack(run)
        proc = subprocess.run([sys.executable, "-m", "safe_trpo.cli", "verify", str(run)],
                              capture_output=True, text=True)
        last = (proc.stdout + proc.stderr).strip().splitlines()[-1]
        print(json.dumps({"attack": name, "exit": proc.returncode, "last_line": last[:110]}))


if __name__ == "__main__":
    main()
