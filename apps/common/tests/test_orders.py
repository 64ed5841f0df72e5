from __future__ import annotations

import json
from decimal import Decimal

import pytest

from moviestream_common.orders import MAX_BODY_BYTES, InvalidOrder, Order, parse_order_body

VALID = {"user_id": "1", "number_of_items": "1", "total_amount": "1"}


def body(**fields: str) -> bytes:
    """A JSON body; each value is written into it as given (quote it for a string)."""
    values = {name: json.dumps(value) for name, value in VALID.items()} | fields
    return ("{" + ",".join(f'"{name}":{value}' for name, value in values.items()) + "}").encode()


def test_strings_and_numbers_give_the_same_order() -> None:
    as_strings = parse_order_body(b'{"user_id": "3", "number_of_items": "5", "total_amount": "180"}')
    as_numbers = parse_order_body(b'{"user_id": 3, "number_of_items": 5, "total_amount": 180}')
    assert as_strings == as_numbers == Order(3, 5, Decimal("180.00"))


def test_the_wire_format_round_trips() -> None:
    order = parse_order_body(b'{"user_id": 7, "number_of_items": 2, "total_amount": 0.1}')
    assert order.total_amount == Decimal("0.10")
    assert json.loads(order.to_json()) == {"user_id": 7, "number_of_items": 2, "total_amount": "0.10"}
    assert parse_order_body(order.to_json()) == order


@pytest.mark.parametrize(
    ("field", "raw", "expected"),
    [
        ("user_id", '"1"', 1),
        ("user_id", "9223372036854775807", 2**63 - 1),
        ("user_id", '"9223372036854775807"', 2**63 - 1),
        ("number_of_items", "1000000", 1_000_000),
        ("number_of_items", '"10"', 10),
        ("total_amount", '"0"', Decimal("0.00")),
        ("total_amount", "0", Decimal("0.00")),
        ("total_amount", "0.5", Decimal("0.50")),
        ("total_amount", '"0.05"', Decimal("0.05")),
        ("total_amount", "12.30", Decimal("12.30")),
        ("total_amount", '"9999999999.99"', Decimal("9999999999.99")),
        ("total_amount", "9999999999.99", Decimal("9999999999.99")),
    ],
)
def test_what_the_grammar_accepts(field: str, raw: str, expected: object) -> None:
    assert getattr(parse_order_body(body(**{field: raw})), field) == expected


ALL_FIELDS = ("user_id", "number_of_items", "total_amount")
# Each is refused in every field, quoted or (where it is JSON) not.
REFUSED_EVERYWHERE = [
    '"1e5"',
    "1e5",
    "1E2",
    '"1_0.5"',
    '"1_000"',
    '"+3"',
    '"-0"',
    "-0",
    '"-3"',
    "-3",
    '"\u0663"',  # ARABIC-INDIC DIGIT THREE
    '"\uff13"',  # FULLWIDTH DIGIT THREE
    '"\u0661\u0660"',
    '" 3"',
    '"3 "',
    '"3\\n"',
    '"\\t3"',
    '"007"',
    '"0x10"',
    '""',
    '"1,5"',
    '"Infinity"',
    '"NaN"',
    "true",
    "null",
    "[1]",
    '{"n": 1}',
]


@pytest.mark.parametrize("field", ALL_FIELDS)
@pytest.mark.parametrize("raw", REFUSED_EVERYWHERE)
def test_what_the_grammar_refuses_in_every_field(field: str, raw: str) -> None:
    with pytest.raises(InvalidOrder, match=field):
        parse_order_body(body(**{field: raw}))


@pytest.mark.parametrize(
    ("field", "raw", "message"),
    [
        ("user_id", '"0"', "between 1 and 9223372036854775807"),
        ("user_id", "0", "between 1 and 9223372036854775807"),
        ("user_id", "9223372036854775808", "between 1 and 9223372036854775807"),
        ("user_id", '"' + "9" * 5000 + '"', "between 1 and 9223372036854775807"),
        ("user_id", "1.0", "whole number"),
        ("user_id", "2.5", "whole number"),
        ("number_of_items", '"0"', "between 1 and 1000000"),
        ("number_of_items", "1000001", "between 1 and 1000000"),
        ("number_of_items", "-2", "between 1 and 1000000"),
        ("number_of_items", "5.0", "whole number"),
        ("number_of_items", '"five"', "whole number"),
        ("total_amount", '"0.001"', "two decimal places"),
        ("total_amount", "0.001", "two decimal places"),
        ("total_amount", "1.000", "two decimal places"),
        ("total_amount", '"10000000000"', "at most 9999999999.99"),
        ("total_amount", "10000000000.00", "at most 9999999999.99"),
        ("total_amount", '"' + "9" * 5000 + '"', "at most 9999999999.99"),
        ("total_amount", '"-0.01"', "must not be negative"),
        ("total_amount", "-5", "must not be negative"),
        ("total_amount", "1e40", "ASCII digits"),
        ("total_amount", '"00.5"', "ASCII digits"),
        ("total_amount", '".5"', "ASCII digits"),
        ("total_amount", '"5."', "ASCII digits"),
    ],
)
def test_each_refusal_says_why(field: str, raw: str, message: str) -> None:
    with pytest.raises(InvalidOrder, match=message):
        parse_order_body(body(**{field: raw}))


def test_a_field_given_twice_is_refused_not_overwritten() -> None:
    with pytest.raises(InvalidOrder, match="duplicate field"):
        parse_order_body(b'{"user_id": 1, "number_of_items": 1, "total_amount": 1, "user_id": 2}')


def test_oversized_and_non_json_bodies_are_refused() -> None:
    with pytest.raises(InvalidOrder, match="larger than"):
        parse_order_body(b" " * (MAX_BODY_BYTES + 1))
    with pytest.raises(InvalidOrder, match="not valid JSON"):
        parse_order_body(b'{"user_id": NaN}')
    with pytest.raises(InvalidOrder, match="not valid JSON"):
        parse_order_body("\u00e9".encode("latin-1"))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[]", "must be a JSON object"),
        (b'{"user_id": 1, "number_of_items": 1}', "missing field"),
        (b'{"user_id": 1, "number_of_items": 1, "total_amount": 1, "coupon": "x"}', "unknown field"),
    ],
)
def test_the_shape_is_checked(data: bytes, message: str) -> None:
    with pytest.raises(InvalidOrder, match=message):
        parse_order_body(data)
