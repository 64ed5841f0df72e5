from __future__ import annotations

from decimal import Decimal

import pytest

from moviestream_common.orders import MAX_BODY_BYTES, InvalidOrder, Order, parse_order, parse_order_body


def test_strings_and_numbers_give_the_same_order() -> None:
    as_strings = parse_order({"user_id": " 3 ", "number_of_items": "5", "total_amount": "180"})
    as_numbers = parse_order({"user_id": 3, "number_of_items": 5.0, "total_amount": 180})
    assert as_strings == as_numbers == Order(3, 5, Decimal("180.00"))


def test_the_wire_format_round_trips() -> None:
    order = parse_order_body(b'{"user_id": 7, "number_of_items": 2, "total_amount": 0.1}')
    assert order.total_amount == Decimal("0.10")
    assert parse_order_body(order.to_json()) == order


@pytest.mark.parametrize(
    ("value", "field", "message"),
    [
        ("1e3", "total_amount", None),
        ("12.3", "total_amount", None),
        ("9999999999.99", "total_amount", None),
        ("10000000000", "total_amount", "at most"),
        ("1e999999", "total_amount", "at most"),
        ("NaN", "total_amount", "finite"),
        ("-0.01", "total_amount", "must not be negative"),
        ("0.001", "total_amount", "two decimal places"),
        ("", "user_id", "numeric string"),
        ("9" * 40, "user_id", "numeric string"),
        ("9223372036854775808", "user_id", "between 1 and"),
        ("0", "user_id", "between 1 and"),
        (True, "number_of_items", "must be a number"),
        (None, "number_of_items", "must be a number"),
        ([1], "number_of_items", "must be a number"),
        ("1000001", "number_of_items", "between 1 and 1000000"),
    ],
)
def test_each_field_is_bounded(value, field, message) -> None:
    data = {"user_id": "1", "number_of_items": "1", "total_amount": "1"} | {field: value}
    if message is None:
        parse_order(data)
        return
    with pytest.raises(InvalidOrder, match=message):
        parse_order(data)


def test_oversized_and_non_json_bodies_are_refused() -> None:
    with pytest.raises(InvalidOrder, match="larger than"):
        parse_order_body(b" " * (MAX_BODY_BYTES + 1))
    with pytest.raises(InvalidOrder, match="not valid JSON"):
        parse_order_body(b'{"user_id": NaN}')
    with pytest.raises(InvalidOrder, match="not valid JSON"):
        parse_order_body("\u00e9".encode("latin-1"))
