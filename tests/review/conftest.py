"""Fixtures every review-app test file uses."""

from pathlib import Path

import pytest


@pytest.fixture
def reports(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty reports folder the app is pointed at (``SAFE_TRPO_REPORTS``), no reviewer list."""
    root = tmp_path / "reports"
    root.mkdir()
    monkeypatch.setenv("SAFE_TRPO_REPORTS", str(root))
    monkeypatch.delenv("SAFE_TRPO_REVIEWERS", raising=False)
    return root
