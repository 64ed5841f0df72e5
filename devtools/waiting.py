"""Polling until something is true, with a deadline and a message that says what never happened."""

from __future__ import annotations

import time
from collections.abc import Callable


class Timeout(AssertionError):
    pass


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
