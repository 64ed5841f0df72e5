"""The order and title patterns of openapi.yaml say exactly what the services accept."""

from __future__ import annotations

import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from api_gateway.docs import openapi_document
from moviestream_common.orders import InvalidOrder, parse_order_body

SCHEMAS = openapi_document()["components"]["schemas"]
VALID = {"user_id": "1", "number_of_items": "1", "total_amount": "1"}
# What a client might put in a number: ASCII digits and the look-alikes and extras the grammar refuses.
NEAR_NUMBERS = st.text(alphabet="0123456789.+-eE_, \t\n\u0663\uff13", max_size=22)


def ecma_fullmatch(pattern: str, text: str) -> bool:
    """The pattern as JSON Schema (ECMA-262) applies it: Python's $ would also match before a final newline."""
    return re.fullmatch(pattern.removeprefix("^").removesuffix("$"), text) is not None


def string_pattern(field: str) -> str:
    [pattern] = [choice["pattern"] for choice in SCHEMAS["Order"]["properties"][field]["oneOf"] if "pattern" in choice]
    return pattern


def accepted(field: str, text: str) -> bool:
    try:
        parse_order_body(json.dumps(VALID | {field: text}).encode())
    except InvalidOrder:
        return False
    return True


@pytest.mark.parametrize("field", VALID)
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_an_order_string_is_accepted_exactly_when_the_documented_pattern_matches(field: str, data) -> None:
    pattern = string_pattern(field)
    text = data.draw(st.one_of(NEAR_NUMBERS, st.from_regex(pattern.removesuffix("$") + r"\Z")))
    assert accepted(field, text) == ecma_fullmatch(pattern, text), text


@pytest.mark.parametrize(
    ("field", "edges"),
    [
        ("user_id", ["1", "9223372036854775807", "9223372036854775808", "0", "10000000000000000000"]),
        ("number_of_items", ["1", "1000000", "1000001", "999999", "0"]),
        ("total_amount", ["0", "0.0", "9999999999.99", "10000000000", "9999999999.999", "0.001"]),
    ],
)
def test_the_documented_patterns_hold_at_the_bounds(field: str, edges: list[str]) -> None:
    for text in edges:
        assert accepted(field, text) == ecma_fullmatch(string_pattern(field), text), text


@settings(max_examples=300, deadline=None)
@given(title=st.text(alphabet=st.sampled_from(" \t\n\x0b\x1c\x85\xa0\u2003\u3000\ufeff\x00ab"), max_size=6))
def test_the_title_pattern_refuses_what_the_inventory_refuses(title: str) -> None:
    refused_by_inventory = "\x00" in title or not title.strip()
    assert ecma_fullmatch(SCHEMAS["Title"]["pattern"], title) == (not refused_by_inventory and len(title) >= 1)
