"""POST /api/billing: validate an order and hand it to the broker."""

from __future__ import annotations

from aiohttp import web

from api_gateway.conventions import add_route
from api_gateway.publisher import BrokerUnavailable, OrderPublisher
from moviestream_common.conventions import ApiError
from moviestream_common.orders import MAX_BODY_BYTES, InvalidOrder, parse_order_body

PUBLISHER = web.AppKey("order_publisher", OrderPublisher)
POSTED = b'{"message": "Message posted"}'  # the same every time: not encoded again per order


async def post_order(request: web.Request) -> web.Response:
    # A declared length is refused before the body is read; a chunked one once it has been.
    if (request.content_length or 0) > MAX_BODY_BYTES or len(body := await request.read()) > MAX_BODY_BYTES:
        raise ApiError(413, f"an order body must be at most {MAX_BODY_BYTES} bytes")
    try:
        order = parse_order_body(body)
    except InvalidOrder as exc:
        raise ApiError(400, str(exc)) from None
    try:
        await request.app[PUBLISHER].publish(order)
    except BrokerUnavailable as exc:
        raise ApiError(503, f"order not accepted: {exc}") from None
    return web.Response(body=POSTED, content_type="application/json")


def add_routes(app: web.Application) -> None:
    add_route(app, ("POST",), "/api/billing", post_order)
