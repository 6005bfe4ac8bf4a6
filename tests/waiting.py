"""Waiting for something a running host does in its own time (an event delivered, a message in the outbox)."""

from __future__ import annotations

import time
from typing import Any, Callable

import pytest


def eventually(check: Callable[[], Any], timeout: float = 10.0, interval: float = 0.1) -> Any:
    """Call `check` until it returns something truthy (then return it) or `timeout` passes (then fail)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"condition not met within {timeout}s; last value: {value!r}", pytrace=False)
        time.sleep(interval)
