"""Signing in the review app from tests: a real key file, uploaded with its passphrase."""

from __future__ import annotations

import tempfile
from pathlib import Path

from streamlit.testing.v1 import AppTest

from safe_trpo.record import keys

PASS = "correct horse"


def key_file(name: str, role: str) -> bytes:
    """A real reviewer key file (cheap scrypt cost for speed), as the reviewer would upload."""
    folder = Path(tempfile.mkdtemp())
    keys.new_reviewer(name, role, PASS, folder / "k.key", folder / "ring.toml", scrypt_n=2**10)
    return (folder / "k.key").read_bytes()


def fill_signoff(at: AppTest, name: str, role: str, decision: str | None, comment: str,
                 passphrase: str = PASS, key: bytes | None = None) -> AppTest:
    n = at.session_state["so_form_n"] if "so_form_n" in at.session_state else 0  # noqa: SIM401 (no .get)
    at.file_uploader(key=f"so_key_{n}").set_value(
        ("me.key", key if key is not None else key_file(name, role), "application/toml"))
    at.text_input(key=f"so_pass_{n}").input(passphrase)
    if decision is not None:
        at.radio(key=f"so_decision_{n}").set_value(decision)
    at.text_area(key=f"so_comment_{n}").input(comment)
    next(b for b in at.button if b.label == "Sign off").click().run()
    assert not at.exception, [e.value for e in at.exception]
    return at
