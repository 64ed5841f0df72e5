"""What an order is, and the one validation that the gateway and billing-app both apply."""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from moviestream_common.conventions import strict_json

FIELDS = ("user_id", "number_of_items", "total_amount")
MAX_BODY_BYTES = 16 * 1024
MAX_USER_ID = 2**63 - 1
MAX_ITEMS = 1_000_000
MAX_AMOUNT = Decimal("9999999999.99")  # fits NUMERIC(12, 2)


class InvalidOrder(ValueError):
    """The data cannot be an order; the message says why."""


@dataclass(frozen=True)
class Order:
    user_id: int
    number_of_items: int
    total_amount: Decimal

    def to_json(self) -> bytes:
        return json.dumps(
            {
                "user_id": self.user_id,
                "number_of_items": self.number_of_items,
                "total_amount": str(self.total_amount),
            },
            separators=(",", ":"),
        ).encode()


def parse_order_body(body: bytes) -> Order:
    """An order from a message or request body, or InvalidOrder."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidOrder(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = strict_json(body)
    except (ValueError, RecursionError) as exc:
        raise InvalidOrder(f"body is not valid JSON: {exc}") from None
    return parse_order(data)


def parse_order(data: Any) -> Order:
    if not isinstance(data, dict):
        raise InvalidOrder("an order must be a JSON object")
    missing = [name for name in FIELDS if name not in data]
    if missing:
        raise InvalidOrder(f"missing field(s): {', '.join(missing)}")
    unknown = sorted(set(data) - set(FIELDS))
    if unknown:
        raise InvalidOrder(f"unknown field(s): {', '.join(unknown)}")
    return Order(
        user_id=_integer(data["user_id"], "user_id", minimum=1, maximum=MAX_USER_ID),
        number_of_items=_integer(data["number_of_items"], "number_of_items", minimum=1, maximum=MAX_ITEMS),
        total_amount=_amount(data["total_amount"]),
    )


def _number(value: Any, field: str) -> Decimal:
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal)):
        raise InvalidOrder(f"{field} must be a number or a numeric string")
    if isinstance(value, str):
        text = value.strip()
        if not text or len(text) > 32:
            raise InvalidOrder(f"{field} must be a number or a numeric string")
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise InvalidOrder(f"{field} is not numeric: {value!r}") from None
    else:
        number = Decimal(value)
    if not number.is_finite():
        raise InvalidOrder(f"{field} must be a finite number")
    return number


def _integer(value: Any, field: str, *, minimum: int, maximum: int) -> int:
    number = _number(value, field)
    if number != number.to_integral_value():
        raise InvalidOrder(f"{field} must be a whole number")
    if not minimum <= number <= maximum:
        raise InvalidOrder(f"{field} must be between {minimum} and {maximum}")
    return int(number)


def _amount(value: Any) -> Decimal:
    number = _number(value, "total_amount")
    if number < 0:
        raise InvalidOrder("total_amount must not be negative")
    if number > MAX_AMOUNT:
        raise InvalidOrder(f"total_amount must be at most {MAX_AMOUNT}")
    if number.as_tuple().exponent < -2 and number != number.quantize(Decimal("0.01")):
        raise InvalidOrder("total_amount must have at most two decimal places")
    return number.quantize(Decimal("0.01"))
