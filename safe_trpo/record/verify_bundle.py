#!/usr/bin/env python3
"""Check a safe-trpo run bundle with nothing but Python (3.11+) and `cryptography`.

    python verify_bundle.py BUNDLE.zip [--keyring KEYRING.toml] [--expect-head HASH]

Checks, and prints one line each: the hash chain of <run_id>/audit.jsonl; every file the record
binds against its latest recorded SHA-256; the ledger entries in ledger.json against the chain
(same seqs, same hashes: no truncation, no re-chain); a kept head, if given; each sign-off's
Ed25519 signature, and with --keyring whether its key is trusted under the signed name and
role. Exit 0 only if all hold; 1 naming the first failure; 2 if the bundle cannot be read.

This file is deliberately standalone (it is copied into every bundle): it repeats the record's
rules from safe_trpo.record (audit, anchor, signature) instead of importing them.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import sys
import zipfile
from typing import Any

import tomllib

GENESIS = "0" * 64
DOMAIN = b"safe-trpo signoff v1\n"
SIGNED = ("run_id", "reviewed_seq", "reviewed_head_hash", "decision", "comment", "time",
          "reviewer", "role")


def canonical(obj: dict[str, Any]) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def check_chain(data: bytes) -> tuple[list[dict[str, Any]], str | None, str]:
    """(verified lines, failure or None, note about a crash-cut tail)."""
    lines: list[dict[str, Any]] = []
    prev = GENESIS
    *complete, tail = data.split(b"\n")
    for i, raw in enumerate(complete):
        try:
            obj = json.loads(raw.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            return lines, f"chain: line seq {i}: not valid JSON", ""
        if not isinstance(obj, dict) or obj.get("seq") != i:
            return lines, f"chain: line seq {i}: seq is not {i}", ""
        if obj.get("prev_hash") != prev:
            return lines, f"chain: line seq {i}: prev_hash does not match line {i - 1}", ""
        body = {k: v for k, v in obj.items() if k != "hash"}
        if obj.get("hash") != hashlib.sha256(canonical(body).encode()).hexdigest():
            return lines, f"chain: line seq {i}: hash does not match its content", ""
        if raw != canonical(obj).encode():
            return lines, f"chain: line seq {i}: bytes are not the canonical serialisation", ""
        lines.append(obj)
        prev = obj["hash"]
    note = f" (line seq {len(lines)} cut off by a crash; not part of the record)" if tail else ""
    if not lines:
        return lines, "chain: the record is empty", note
    return lines, None, note


def check_files(z: zipfile.ZipFile, run_id: str, lines: list[dict[str, Any]]) -> list[str]:
    latest = {ln.get("path"): ln for ln in lines if ln.get("type") == "file"}
    problems = []
    for rel, ln in latest.items():
        name = f"{run_id}/{rel}"
        if not isinstance(rel, str) or ".." in rel.split("/") or rel.startswith("/"):
            problems.append(f"files: line seq {ln['seq']}: path {rel!r} leaves the run folder")
        elif name not in z.namelist():
            problems.append(f"files: {rel}: bound at seq {ln['seq']} but not in the bundle")
        elif hashlib.sha256(z.read(name)).hexdigest() != ln.get("sha256"):
            problems.append(f"files: {rel}: differs from its hash recorded at seq {ln['seq']}")
    return problems


def check_ledger(entries: list[dict[str, Any]], lines: list[dict[str, Any]]) -> list[str]:
    if not entries:
        return ["ledger: no entries for this run"]
    prev = GENESIS
    for i, e in enumerate(entries):
        if e.get("seq") != i or e.get("prev_hash") != prev:
            return [f"ledger: entries are not one chain at seq {i}"]
        prev = e.get("line_hash")
    for e, ln in zip(entries, lines, strict=False):
        if e["line_hash"] != ln["hash"]:
            return [f"ledger: line seq {e['seq']}: hash differs from the ledger's (rewritten)"]
    n, m = len(lines), len(entries)
    if m > n:
        return [f"ledger: TRUNCATED: the ledger anchors seq 0-{m - 1}, the record ends at seq "
                f"{n - 1}"]
    if n > m:
        return [f"ledger: line seq {m}: not in the ledger ({n - m} unanchored line(s))"]
    return []


def check_signoff(ln: dict[str, Any], run_id: str,
                  keyring: dict[str, dict[str, str]] | None) -> tuple[bool, str]:
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    who = f"sign-off seq {ln['seq']} by {ln.get('reviewer')!r} ({ln.get('role')!r})"
    pub, sig, fp = ln.get("public_key"), ln.get("signature"), ln.get("key_fingerprint")
    if not (isinstance(pub, str) and isinstance(sig, str) and isinstance(fp, str)):
        return False, f"signatures: {who}: unsigned"
    try:
        raw = base64.b64decode(pub, validate=True)
        if hashlib.sha256(raw).hexdigest() != fp:
            return False, f"signatures: {who}: key_fingerprint does not match public_key"
        message = DOMAIN + canonical({k: ln.get(k) for k in SIGNED}).encode()
        Ed25519PublicKey.from_public_bytes(raw).verify(base64.b64decode(sig, validate=True),
                                                       message)
    except (InvalidSignature, ValueError):
        return False, f"signatures: {who}: INVALID signature"
    if ln.get("run_id") != run_id:
        return False, f"signatures: {who}: signed for run {ln.get('run_id')!r}, not {run_id!r}"
    if keyring is None:
        return True, f"signatures: {who}: valid, identity unverified (no --keyring)"
    entry = keyring.get(fp)
    if entry is None:
        return False, f"signatures: {who}: key {fp[:16]} is not in the keyring"
    if (entry.get("name"), entry.get("role")) != (ln.get("reviewer"), ln.get("role")):
        return False, f"signatures: {who}: the keyring lists key {fp[:16]} under another name"
    return True, f"signatures: {who}: verified"


def load_keyring(path: str) -> dict[str, dict[str, str]]:
    with open(path, "rb") as f:
        doc = tomllib.load(f)
    out = {}
    for item in doc.get("reviewer", []):
        fp = hashlib.sha256(base64.b64decode(item["public_key"], validate=True)).hexdigest()
        out[fp] = item
    return out


def verify(path: str, keyring_path: str | None, expect_head: str | None) -> list[str]:
    """Print a line per check; return the failures."""
    keyring = load_keyring(keyring_path) if keyring_path else None
    with zipfile.ZipFile(path) as z:
        audits = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/audit.jsonl")]
        if len(audits) != 1:
            return ["bundle: expected exactly one <run_id>/audit.jsonl"]
        run_id = audits[0].split("/")[0]
        lines, chain_failure, note = check_chain(z.read(audits[0]))
        failures = [chain_failure] if chain_failure else []
        print(chain_failure or f"chain: {len(lines)} lines verified{note}")
        files = check_files(z, run_id, lines)
        print("\n".join(files) or "files: all bound files match")
        ledger = json.loads(z.read("ledger.json"))
        led = check_ledger(ledger.get("entries", []), lines) if ledger.get("run_id") == run_id \
            else [f"ledger: entries are for run {ledger.get('run_id')!r}, not {run_id!r}"]
        print("\n".join(led) or f"ledger: {len(lines)} entries match ({ledger.get('ledger')})")
        failures += files + led
        head = lines[-1]["hash"] if lines else GENESIS
        print(f"head: seq {len(lines) - 1} hash {head}")
        if expect_head:
            kept = [ln["seq"] for ln in lines if ln["hash"] == expect_head.strip().lower()]
            message = (f"kept head: found at seq {kept[0]}" if kept else
                       "kept head: not in this chain (truncated before it or rewritten)")
            print(message)
            failures += [] if kept else [message]
        for ln in lines:
            if ln.get("type") == "signoff":
                ok, message = check_signoff(ln, run_id, keyring)
                print(message)
                failures += [] if ok else [message]
    return failures


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("bundle")
    p.add_argument("--keyring", help="TOML keyring of trusted reviewer keys")
    p.add_argument("--expect-head", help="a head hash kept from an earlier `safe-trpo verify`")
    args = p.parse_args(argv)
    try:
        failures = verify(args.bundle, args.keyring, args.expect_head)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError, TypeError,
            tomllib.TOMLDecodeError) as exc:
        print(f"verify_bundle: cannot read the bundle or keyring: {exc}", file=sys.stderr)
        return 2
    print(f"BUNDLE FAILED: {failures[0]}" if failures else "BUNDLE VERIFIED")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
