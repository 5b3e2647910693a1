"""Reviewer keys and keyrings for tests (in memory; no passphrase prompts)."""

from __future__ import annotations

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from safe_trpo.record.keys import KeyringEntry, ReviewerKey


def make_key(name: str = "Ada", role: str = "model-risk reviewer") -> ReviewerKey:
    return ReviewerKey(name, role, Ed25519PrivateKey.generate())


def keyring_of(*keys: ReviewerKey) -> dict[str, KeyringEntry]:
    return {k.fingerprint: KeyringEntry(k.name, k.role, k.public_key, k.fingerprint)
            for k in keys}
