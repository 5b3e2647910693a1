"""Signatures on sign-off lines: what is signed, and how a sign-off is checked against a keyring.

A signed ``signoff`` line carries, besides the fields it signs, ``key_fingerprint`` (SHA-256 hex
of the raw public key), ``public_key`` (base64), ``signature`` (base64 Ed25519) and
``signature_alg`` ("Ed25519"). The signature covers ``SIGNATURE_DOMAIN`` followed by the
canonical JSON (``audit.canonical_json``) of exactly ``SIGNED_FIELDS`` taken from the line:

    run_id, reviewed_seq, reviewed_head_hash, decision, comment, time, reviewer, role

so it binds one person's key to one decision on one exact record (the head hash names every
line before it), with the printed name, role, time and meaning. ``verify_bundle.py`` repeats
this definition with the standard library only; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Any

from safe_trpo.record.audit import canonical_json
from safe_trpo.record.keys import KeyringEntry, ReviewerKey, fingerprint_of, verify_signature

SIGNATURE_DOMAIN = b"safe-trpo signoff v1\n"
SIGNED_FIELDS = ("run_id", "reviewed_seq", "reviewed_head_hash", "decision", "comment", "time",
                 "reviewer", "role")
# Signature states, in the words the app, the report and verify show.
VERIFIED, UNVERIFIED, UNTRUSTED, INVALID, UNSIGNED = (
    "verified", "unverified identity", "key not in keyring", "INVALID", "unsigned")
ACCEPTABLE = (VERIFIED, UNVERIFIED)  # may count towards a run's standing


def signing_message(fields: dict[str, Any]) -> bytes:
    return SIGNATURE_DOMAIN + canonical_json({k: fields.get(k) for k in SIGNED_FIELDS}).encode()


def sign_fields(key: ReviewerKey, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (all of ``SIGNED_FIELDS`` except reviewer and role, taken from the key) plus
    the name, role and signature fields, ready to append."""
    out = {**fields, "reviewer": key.name, "role": key.role}
    missing = [k for k in SIGNED_FIELDS if k not in out]
    if missing:
        raise ValueError(f"cannot sign without {missing}")
    out.update(key_fingerprint=key.fingerprint, public_key=key.public_key,
               signature_alg="Ed25519", signature=key.sign(signing_message(out)))
    return out


def signature_status(line: dict[str, Any], keyring: dict[str, KeyringEntry] | None,
                     run_id: str | None) -> tuple[str, str]:
    """(state, why) for one signoff line.

    keyring: trusted keys by fingerprint, or None (then a valid signature is an "unverified
        identity": it proves the line was signed by the key it carries, not whose key that is).
    run_id: this run's id; a sign-off signed for another run is invalid here.
    """
    pub, sig, fp = line.get("public_key"), line.get("signature"), line.get("key_fingerprint")
    if not any((pub, sig, fp)):
        return UNSIGNED, "carries no signature"
    if not (isinstance(pub, str) and isinstance(sig, str) and isinstance(fp, str)):
        return INVALID, "signature fields are malformed"
    try:
        if fingerprint_of(pub) != fp:
            return INVALID, "key_fingerprint does not match public_key"
    except ValueError:
        return INVALID, "public_key is not base64"
    if line.get("signature_alg") != "Ed25519" or not verify_signature(
            pub, sig, signing_message(line)):
        return INVALID, "the Ed25519 signature does not verify over the signed fields"
    if run_id is not None and line.get("run_id") != run_id:
        return INVALID, f"signed for run {line.get('run_id')!r}, not this run ({run_id!r})"
    if keyring is None:
        return UNVERIFIED, f"valid signature by key {fp[:16]}; no keyring to say whose"
    entry = keyring.get(fp)
    if entry is None:
        return UNTRUSTED, f"key {fp[:16]} is not in the keyring"
    if (entry.name, entry.role) != (line.get("reviewer"), line.get("role")):
        return UNTRUSTED, (f"signed as {line.get('reviewer')!r} ({line.get('role')!r}) but the "
                           f"keyring lists key {fp[:16]} as {entry.name!r} ({entry.role!r})")
    return VERIFIED, f"signed by {entry.name} ({entry.role}), key {fp[:16]}"
