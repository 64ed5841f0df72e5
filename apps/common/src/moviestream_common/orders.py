"""What an order is, and the one validation that the gateway and billing-app both apply.

The grammar is the one openapi.yaml states, and nothing more: ASCII digits,
no whitespace, sign, exponent, separators or leading zeros. A JSON number is
held to the same grammar as a string, by its own text in the body (the JSON
parser hands numbers over unconverted), so `1e5`, `1.0` for a count or
`0.001` are refused whether quoted or not, and an amount is never rounded
through a binary float.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from moviestream_common.conventions import strict_json

FIELDS = ("user_id", "number_of_items", "total_amount")
_FIELD_SET = frozenset(FIELDS)
MAX_BODY_BYTES = 16 * 1024
MAX_USER_ID = 2**63 - 1
MAX_ITEMS = 1_000_000
MAX_AMOUNT = Decimal("9999999999.99")  # fits NUMERIC(12, 2)

# re's [0-9] is ASCII only (\d would take any Unicode digit); fullmatch, since $ also matches before a newline.
WHOLE_NUMBER = re.compile(r"[1-9][0-9]*")
AMOUNT = re.compile(r"(0|[1-9][0-9]*)(\.[0-9]{1,2})?")
_BELOW_ONE = re.compile(r"0|-(0|[1-9][0-9]*)")
_NEGATIVE = re.compile(r"-(0|[1-9][0-9]*)(\.[0-9]+)?")
_TOO_PRECISE = re.compile(r"(0|[1-9][0-9]*)\.[0-9]{3,}")
_HOW_WRITTEN = "ASCII digits; no sign, spaces, exponent, separators or leading zeros"


class InvalidOrder(ValueError):
    """The data cannot be an order; the message says why."""


@dataclass(frozen=True)
class Order:
    user_id: int
    number_of_items: int
    total_amount: Decimal

    def to_json(self) -> bytes:
        # Formatted directly: the fields are validated numbers, so nothing needs escaping.
        return (
            f'{{"user_id":{self.user_id},"number_of_items":{self.number_of_items},'
            f'"total_amount":"{self.total_amount}"}}'
        ).encode()


def parse_order_body(body: bytes) -> Order:
    """An order from a message or request body, or InvalidOrder."""
    if len(body) > MAX_BODY_BYTES:
        raise InvalidOrder(f"body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = strict_json(body, parse_int=str, parse_float=str)
    except (ValueError, RecursionError) as exc:
        raise InvalidOrder(f"body is not valid JSON: {exc}") from None
    return parse_order(data)


def parse_order(data: Any) -> Order:
    """An order from parsed JSON whose numbers are kept as their text (see parse_order_body), or InvalidOrder."""
    if not isinstance(data, dict):
        raise InvalidOrder("an order must be a JSON object")
    if data.keys() != _FIELD_SET:
        missing = [name for name in FIELDS if name not in data]
        if missing:
            raise InvalidOrder(f"missing field(s): {', '.join(missing)}")
        raise InvalidOrder(f"unknown field(s): {', '.join(sorted(data.keys() - _FIELD_SET))}")
    return Order(
        user_id=_whole_number(data["user_id"], "user_id", MAX_USER_ID),
        number_of_items=_whole_number(data["number_of_items"], "number_of_items", MAX_ITEMS),
        total_amount=_amount(data["total_amount"]),
    )


def _text(value: Any, field: str, kind: str) -> str:
    # An int arrives here only from a caller that parsed JSON itself; bool is an int but never a number here.
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise InvalidOrder(f"{field} must be {kind} or a string of digits")
    return value


def _shown(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _whole_number(value: Any, field: str, maximum: int) -> int:
    text = _text(value, field, "a JSON integer")
    if not WHOLE_NUMBER.fullmatch(text):
        if _BELOW_ONE.fullmatch(text):
            raise InvalidOrder(f"{field} must be between 1 and {maximum}")
        raise InvalidOrder(f"{field} must be a whole number in {_HOW_WRITTEN}: {_shown(text)}")
    if len(text) > len(str(maximum)) or (number := int(text)) > maximum:
        raise InvalidOrder(f"{field} must be between 1 and {maximum}")
    return number


def _amount(value: Any) -> Decimal:
    text = _text(value, "total_amount", "a JSON number")
    if not AMOUNT.fullmatch(text):
        if _NEGATIVE.fullmatch(text):
            raise InvalidOrder("total_amount must not be negative")
        if _TOO_PRECISE.fullmatch(text):
            raise InvalidOrder("total_amount must have at most two decimal places")
        raise InvalidOrder(f"total_amount must be an amount in {_HOW_WRITTEN}: {_shown(text)}")
    integer_digits = text.partition(".")[0]
    if len(integer_digits) > len(str(int(MAX_AMOUNT))) or (amount := Decimal(text)) > MAX_AMOUNT:
        raise InvalidOrder(f"total_amount must be at most {MAX_AMOUNT}")
    return amount.quantize(Decimal("0.01"))
