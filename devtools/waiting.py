"""Polling until something is true, with a deadline and a message that says what never happened."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Callable


class Timeout(AssertionError):
    pass


def answers_ok(url: str, timeout: float = 2) -> bool:
    """Does `url` answer 200 right now? Refused, timed out and error statuses all say no."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:  # noqa: S310 (loopback URLs of our own)
            return answer.status == 200
    except OSError:  # URLError and HTTPError are OSErrors
        return False


def wait_for(condition: Callable[[], object], *, timeout: float, what: str, interval: float = 0.02) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise Timeout(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)
