"""The one exception type the CLI turns into a clear one-line message and a non-zero exit."""

from __future__ import annotations


class UserError(Exception):
    """Bad input from the user: a file, a key, a value, a run folder.

    The message must stand alone on one line and name the file, the key or row, and what was
    expected, e.g. ``scenarios/x.toml: [algo] target_kl: expected a number > 0, got -1``.
    """
