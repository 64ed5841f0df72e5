"""Exponential backoff with jitter, for reconnecting to PostgreSQL and RabbitMQ."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Backoff:
    """Delays of 0.5 s, 1 s, 2 s ... up to `cap`, each with up to 25 % jitter."""

    def __init__(self, first: float = 0.5, cap: float = 15.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2**self.attempt)
        self.attempt += 1
        return delay * random.uniform(0.75, 1.0)

    def reset(self) -> None:
        self.attempt = 0


def retry_until(
    action: Callable[[], T],
    *,
    what: str,
    errors: tuple[type[BaseException], ...],
    timeout: float,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Call `action` until it succeeds, or re-raise its error once `timeout` seconds have passed."""
    deadline = time.monotonic() + timeout
    backoff = Backoff()
    while True:
        try:
            return action()
        except errors as exc:
            delay = backoff.next_delay()
            if time.monotonic() + delay > deadline:
                raise
            log.warning("%s failed, retrying", what, extra={"error": str(exc), "retry_in_s": round(delay, 2)})
            sleep(delay)
