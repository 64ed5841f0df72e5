"""POST /api/billing: validate an order and hand it to the broker."""

from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from api_gateway.publisher import BrokerUnavailable, OrderPublisher
from moviestream_common.orders import MAX_BODY_BYTES, InvalidOrder, parse_order
from moviestream_common.web import ApiError, json_body

bp = Blueprint("billing", __name__)


@bp.post("/api/billing")
def post_order() -> Response:
    if (request.content_length or 0) > MAX_BODY_BYTES or len(request.get_data()) > MAX_BODY_BYTES:
        raise ApiError(413, f"an order body must be at most {MAX_BODY_BYTES} bytes")
    try:
        order = parse_order(json_body())
    except InvalidOrder as exc:
        raise ApiError(400, str(exc)) from None
    publisher: OrderPublisher = current_app.extensions["order_publisher"]
    try:
        publisher.publish(order)
    except BrokerUnavailable as exc:
        raise ApiError(503, f"order not accepted: {exc}") from None
    return jsonify(message="Message posted")
