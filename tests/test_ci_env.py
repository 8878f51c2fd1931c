"""``CI=1`` is CI: a missing redis-server or promtool fails the run instead of skipping its tests
(tests/test_budgets_redis.py checks it on the Redis tests themselves)."""

from __future__ import annotations

import pytest
from ci_env import missing, on_ci


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", " on ", "github"])
def test_every_common_spelling_of_ci_is_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert on_ci()
    with pytest.raises(pytest.fail.Exception):
        missing("tool not installed")


@pytest.mark.parametrize("value", ["", "0", "false", "No", "off"])
def test_not_ci_skips(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert not on_ci()
    with pytest.raises(pytest.skip.Exception):
        missing("tool not installed")
