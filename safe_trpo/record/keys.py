"""Reviewer keys: Ed25519 key pairs, passphrase-encrypted key files, and keyrings.

A reviewer's key file (``reviewer new --key-out FILE``) is TOML holding their printed name, role,
fingerprint and the private key sealed with AES-256-GCM under a scrypt-derived key (name and
role authenticated with it): using it takes two components, the file and the passphrase.
A keyring is TOML with one ``[[reviewer]]`` table per trusted public key (name,
role, public_key as base64 of the 32 raw bytes, fingerprint): the trust list a team or a
regulator keeps. Nothing here stores a passphrase or an unencrypted private key.
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import tomllib
from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from safe_trpo.errors import UserError

PASSPHRASE_ENV = "SAFE_TRPO_PASSPHRASE"
KEYRING_ENV = "SAFE_TRPO_KEYRING"  # set by `report --keyring` / `review --keyring`
MIN_PASSPHRASE_CHARS = 8
SCRYPT_N = 2**17  # OWASP's minimum for scrypt (with r=8, p=1)
_AAD = b"safe-trpo reviewer key v1"
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


@dataclass(frozen=True)
class KeyringEntry:
    """A trusted reviewer: printed ``name``, ``role``, base64 ``public_key``, ``fingerprint``."""

    name: str
    role: str
    public_key: str
    fingerprint: str


@dataclass(frozen=True)
class ReviewerKey:
    """A decrypted private key, held in memory only for as long as it takes to sign."""

    name: str
    role: str
    private_key: Ed25519PrivateKey

    @property
    def public_key(self) -> str:
        return base64.b64encode(self.private_key.public_key().public_bytes(*_RAW)).decode()

    @property
    def fingerprint(self) -> str:
        return fingerprint_of(self.public_key)

    def sign(self, message: bytes) -> str:
        return base64.b64encode(self.private_key.sign(message)).decode()


def fingerprint_of(public_key_b64: str) -> str:
    """SHA-256 hex of the raw 32-byte public key."""
    return hashlib.sha256(base64.b64decode(public_key_b64, validate=True)).hexdigest()


def verify_signature(public_key_b64: str, signature_b64: str, message: bytes) -> bool:
    """True only for a well-formed Ed25519 signature of ``message`` by that key."""
    try:
        key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key_b64, validate=True))
        key.verify(base64.b64decode(signature_b64, validate=True), message)
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def read_passphrase(prompt: str, confirm: bool = False) -> str:
    """``$SAFE_TRPO_PASSPHRASE`` if set, else asked on the terminal (twice when ``confirm``)."""
    value = os.environ.get(PASSPHRASE_ENV)
    if value is None:
        try:
            value = getpass.getpass(prompt)
            if confirm and getpass.getpass("again: ") != value:
                raise UserError("the two passphrases differ")
        except EOFError:
            raise UserError(f"no passphrase: set {PASSPHRASE_ENV} or run in a terminal") from None
    return value


def _check_text(label: str, value: str) -> str:
    value = str(value).strip()
    if not value or len(value) > 120 or not value.isprintable():
        raise UserError(f"{label}: expected one line of 1-120 printable characters")
    return value


def new_reviewer(name: str, role: str, passphrase: str, key_out: Path, keyring: Path,
                 scrypt_n: int = SCRYPT_N) -> KeyringEntry:
    """Make a key pair; write the encrypted private key to ``key_out`` (owner-only, never over
    an existing file) and append the public key to ``keyring`` (created if missing).

    The private key is sealed with AES-256-GCM under a key derived from the passphrase by
    scrypt (r=8, p=1); a wrong passphrase fails the GCM tag, never yields a wrong key.
    scrypt_n: scrypt's cost (a power of two); more makes guessing the passphrase of a stolen
        key file slower, and unlocking too (2^17: about 0.3 s and 128 MiB).
    """
    name, role = _check_text("reviewer name", name), _check_text("--role", role)
    if len(passphrase) < MIN_PASSPHRASE_CHARS:
        raise UserError(f"passphrase: at least {MIN_PASSPHRASE_CHARS} characters")
    load_keyring(keyring) if Path(keyring).exists() else None  # a broken keyring fails first
    private = Ed25519PrivateKey.generate()
    key = ReviewerKey(name, role, private)
    salt, nonce = os.urandom(16), os.urandom(12)
    raw = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                serialization.NoEncryption())
    sealed = AESGCM(_kdf(passphrase.encode(), salt, scrypt_n)).encrypt(nonce, raw,
                                                                _aad(name, role))
    b64 = lambda b: json.dumps(base64.b64encode(b).decode())  # noqa: E731
    text = ("# safe-trpo reviewer key: private, encrypted with your passphrase. Do not share.\n"
            f"name = {json.dumps(name)}\nrole = {json.dumps(role)}\n"
            f"fingerprint = {json.dumps(key.fingerprint)}\n"
            f"[private_key]\ncipher = \"AES-256-GCM\"\nkdf = \"scrypt\"\n"
            f"scrypt_n = {scrypt_n}\nscrypt_r = 8\nscrypt_p = 1\nsalt = {b64(salt)}\n"
            f"nonce = {b64(nonce)}\nciphertext = {b64(sealed)}\n")
    try:
        fd = os.open(key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UserError(f"--key-out {key_out}: already exists; not overwriting a key") from None
    except OSError as exc:
        raise UserError(f"--key-out {key_out}: cannot create it ({exc.strerror})") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    entry = KeyringEntry(name, role, key.public_key, key.fingerprint)
    add_to_keyring(keyring, entry)
    return entry


def load_reviewer_key(path: Path, passphrase: str | bytes) -> ReviewerKey:
    """Decrypt a key file. ``passphrase``: text or bytes. UserError naming the file on a wrong
    passphrase or a file that is not a reviewer key."""
    return parse_reviewer_key(_read(path, "key file"), passphrase, str(path))


def parse_reviewer_key(data: bytes, passphrase: str | bytes, where: str) -> ReviewerKey:
    """``load_reviewer_key`` for bytes already in memory (the review app's upload)."""
    try:
        doc = tomllib.loads(data.decode("utf-8"))
        name, role, sealed = doc["name"], doc["role"], doc["private_key"]
        salt, nonce, blob = (base64.b64decode(sealed[k], validate=True)
                             for k in ("salt", "nonce", "ciphertext"))
        n = sealed["scrypt_n"]
        if not (isinstance(name, str) and isinstance(role, str) and isinstance(n, int)
                and 2 <= n <= 2**22 and sealed.get("kdf") == "scrypt"):
            raise TypeError
    except (UnicodeDecodeError, tomllib.TOMLDecodeError, KeyError, TypeError, ValueError):
        raise UserError(f"{where}: not a safe-trpo reviewer key file") from None
    secret = passphrase.encode() if isinstance(passphrase, str) else passphrase
    try:
        raw = AESGCM(_kdf(secret, salt, n)).decrypt(nonce, blob, _aad(name, role))
        private = Ed25519PrivateKey.from_private_bytes(raw)
    except (InvalidTag, ValueError):
        raise UserError(f"{where}: wrong passphrase (or a damaged key file)") from None
    return ReviewerKey(name, role, private)


def _aad(name: str, role: str) -> bytes:
    """Name and role are authenticated with the key: editing them fails decryption."""
    return _AAD + json.dumps([name, role]).encode()


def _kdf(secret: bytes, salt: bytes, n: int) -> bytes:
    try:
        return Scrypt(salt=salt, length=32, n=n, r=8, p=1).derive(secret)
    except (ValueError, MemoryError):
        raise UserError(f"scrypt cost n={n} is not usable") from None


def _read(path: Path, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise UserError(f"{path}: cannot read the {what} ({exc.strerror})") from None


def load_keyring(path: Path) -> dict[str, KeyringEntry]:
    """The keyring's entries by fingerprint; UserError naming the file and entry if malformed."""
    try:
        doc = tomllib.loads(_read(path, "keyring").decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise UserError(f"{path}: not a valid TOML keyring ({exc})") from None
    out: dict[str, KeyringEntry] = {}
    for i, item in enumerate(doc.get("reviewer", [])):
        where = f"{path}: [[reviewer]] {i + 1}"
        if not isinstance(item, dict) or not all(
                isinstance(item.get(k), str) for k in ("name", "role", "public_key")):
            raise UserError(f"{where}: expected name, role and public_key (strings)")
        try:
            fp = fingerprint_of(item["public_key"])
            Ed25519PublicKey.from_public_bytes(base64.b64decode(item["public_key"]))
        except ValueError:
            raise UserError(f"{where}: public_key is not a base64 Ed25519 key") from None
        if item.get("fingerprint", fp) != fp:
            raise UserError(f"{where}: fingerprint does not match public_key")
        out[fp] = KeyringEntry(item["name"], item["role"], item["public_key"], fp)
    return out


def configured_keyring() -> dict[str, KeyringEntry] | None:
    """The keyring named by ``$SAFE_TRPO_KEYRING``, or None when none is configured."""
    path = os.environ.get(KEYRING_ENV)
    return load_keyring(Path(path)) if path else None


def keyring_text(entries: list[KeyringEntry]) -> str:
    """TOML for ``entries`` (JSON string escapes are valid TOML basic strings)."""
    return "".join(f"\n[[reviewer]]\nname = {json.dumps(e.name)}\nrole = {json.dumps(e.role)}\n"
                   f"public_key = {json.dumps(e.public_key)}\n"
                   f"fingerprint = {json.dumps(e.fingerprint)}\n" for e in entries)


def add_to_keyring(path: Path, entry: KeyringEntry) -> None:
    path = Path(path)
    if path.exists() and entry.fingerprint in load_keyring(path):
        raise UserError(f"{path}: key {entry.fingerprint[:16]} is already in the keyring")
    try:
        with open(path, "a", encoding="utf-8") as f:
            if f.tell() == 0:
                f.write("# safe-trpo keyring: the reviewers whose sign-offs this team trusts.\n")
            f.write(keyring_text([entry]))
    except OSError as exc:
        raise UserError(f"--keyring {path}: cannot write it ({exc.strerror})") from None
