"""``CI=1`` is CI: a missing redis-server or promtool fails the run instead of skipping its tests."""

from __future__ import annotations

import pytest
import test_budgets_redis
from ci_env import missing, on_ci


@pytest.mark.parametrize("value", ["1", "true", "TRUE", "yes", " on "])
def test_every_common_spelling_of_ci_is_ci(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert on_ci()
    with pytest.raises(pytest.fail.Exception):
        missing("tool not installed")


@pytest.mark.parametrize("value", ["", "0", "false", "no"])
def test_not_ci_skips(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("CI", value)
    assert not on_ci()
    with pytest.raises(pytest.skip.Exception):
        missing("tool not installed")


def test_ci_1_fails_the_redis_tests_when_redis_server_is_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "1")
    monkeypatch.setenv("PATH", "")  # no redis-server on it
    with pytest.raises(pytest.fail.Exception, match="redis-server not installed"):
        test_budgets_redis._redis_binary()
