"""The algorithm tests train on hand-made environments in this folder (``module:Class`` ids).
Such a module runs only when the user trusts it (``safe_trpo.run.trust``); these tests are that
user, and say so for the one module they name."""

import pytest


@pytest.fixture(autouse=True)
def _trust_the_test_env_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SAFE_TRPO_TRUST_MODULES", "tests.algo.known_cost_env")
