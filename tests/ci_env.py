"""One reading of the ``CI`` variable for the whole suite: on CI a missing system tool fails, never skips.

CI services set ``CI=true``; people and other runners write ``CI=1`` or ``CI=yes``: any value but an empty one,
``0``, ``false``, ``no`` or ``off`` means CI.
"""

from __future__ import annotations

import os
from typing import NoReturn

import pytest

NOT_CI_VALUES = frozenset({"", "0", "false", "no", "off"})


def on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in NOT_CI_VALUES


def missing(message: str) -> NoReturn:
    """A required tool is absent: fail on CI (a skip would hide the gap), skip locally."""
    if on_ci():
        pytest.fail(message)
    pytest.skip(message)
