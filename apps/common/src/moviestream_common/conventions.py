"""The HTTP conventions every service keeps, whatever its web framework.

Errors are answered as {"error": message}; a request carries an
X-Request-ID (the caller's if it sent a usable one, otherwise a new one)
into its log line, its response and any request it makes on.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

REQUEST_ID_HEADER = "X-Request-ID"
MAX_REQUEST_ID_LENGTH = 128

access_log = logging.getLogger("access")


class ApiError(Exception):
    """An error the client can act on, answered as {"error": message} with its status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientTooSlow(Exception):
    """The client did not send its request's head and body within the server's read deadline (answered 408)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"the request was not received within {seconds:g} s")
        self.seconds = seconds


# Visible ASCII only: an ID must read the same in the response, the log line and the request made on.
USABLE_REQUEST_ID = re.compile(rf"[!-~]{{1,{MAX_REQUEST_ID_LENGTH}}}")


def request_id_from(incoming: str | None) -> str:
    """The caller's request ID if it sent a usable one, otherwise a new one."""
    return incoming if incoming and USABLE_REQUEST_ID.fullmatch(incoming) else os.urandom(16).hex()


def readiness_answer(problems: dict[str, str]) -> tuple[dict[str, Any], int]:
    """/readyz's body and status: 200 when no dependency has a problem, else 503 naming each one."""
    if problems:
        return {"status": "unavailable", "problems": problems}, 503
    return {"status": "ok"}, 200


def log_access(method: str, path: str, status: int, seconds: float, request_id: str) -> None:
    """The one access line per request, with the same fields from every service.

    The record is the one `access_log.info("request", extra=...)` makes, and goes
    through the logger's level, filters and handlers as that would; made here
    without the general path (the `extra` checks, the caller lookup), which took
    half the line's time on the request's thread.
    """
    if not access_log.isEnabledFor(logging.INFO):
        return
    record = access_log.makeRecord(
        access_log.name, logging.INFO, "(unknown file)", 0, "request", (), None, "(unknown function)"
    )
    record.method = method
    record.path = path
    record.status = status
    record.duration_ms = round(seconds * 1000, 3)
    record.request_id = request_id
    access_log.handle(record)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


def _object_without_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    data = dict(pairs)
    if len(data) != len(pairs):
        seen: set[str] = set()
        twice = sorted({key for key, _ in pairs if key in seen or seen.add(key)})
        raise ValueError(f"duplicate field(s): {', '.join(twice)}")
    return data


def strict_json(
    body: bytes | str, *, parse_float: Callable[[str], Any] = Decimal, parse_int: Callable[[str], Any] = int
) -> Any:
    """JSON without NaN or Infinity and without a key given twice, else ValueError (or RecursionError).

    Fractions come as Decimal unless `parse_float` (and `parse_int`) say otherwise, as in json.loads.
    """
    if isinstance(body, bytes | bytearray):
        body = body.decode(json.detect_encoding(body), "surrogatepass")  # what json.loads does with bytes
    return _decoder(parse_float, parse_int).decode(body)


@functools.lru_cache(maxsize=8)
def _decoder(parse_float: Callable[[str], Any], parse_int: Callable[[str], Any]) -> json.JSONDecoder:
    """One decoder per pair of number parsers: json.loads with hooks builds a new one for every call."""
    return json.JSONDecoder(
        parse_float=parse_float,
        parse_int=parse_int,
        parse_constant=_reject_constant,
        object_pairs_hook=_object_without_duplicates,
    )


def parse_json(body: bytes) -> Any:
    """A request body parsed by `strict_json`, or a 400 saying why not."""
    try:
        return strict_json(body)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, f"body is not valid JSON: {exc}") from None
