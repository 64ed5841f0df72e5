"""What aiohttp's HTTP server answers before a request reaches the application, made to keep the conventions.

aiohttp's parser answers a request it cannot take (a 100 KB request line or
header, a malformed head) with text/plain; here every such answer is JSON
{"error": ...}. aiohttp also waits as long as the keep-alive allows for a head
that comes a byte at a time; here a head has `read_timeout` seconds from its
first byte, then is answered 408. (The body's deadline is in the middleware,
api_gateway.conventions.)

aiohttp has no setting for the protocol class its Server builds, so the
runner swaps in a Server whose connections use the handler below.
"""

from __future__ import annotations

import asyncio
from http import HTTPStatus
from typing import Any

from aiohttp import web
from aiohttp.http_exceptions import LineTooLong
from aiohttp.streams import EMPTY_PAYLOAD
from aiohttp.web_protocol import RequestHandler, _ErrInfo

from api_gateway.conventions import error_response


class _RequestHandler(RequestHandler):
    """One client connection: aiohttp's, with JSON errors and a deadline for each request's head."""

    def __init__(self, manager: web.Server, *, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(manager, **kwargs)
        self._read_timeout = read_timeout
        self._head_deadline: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._messages:  # a whole head has come
            self._cancel_head_deadline()
        elif self._head_deadline is None and self._between_requests():
            self._head_deadline = self._loop.call_later(self._read_timeout, self._head_timed_out)

    def connection_lost(self, exc: BaseException | None) -> None:
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def handle_error(
        self,
        request: web.BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        super().handle_error(request, status, exc, message)  # logs, and raises if an answer has already begun
        if isinstance(exc, LineTooLong):  # its message quotes the line back
            text = (
                f"the request line and each header must be at most {max(self.max_line_size, self.max_field_size)} bytes"
            )
        elif message and status < 500:  # the first line says what is wrong, the lines after quote the request
            text = message.partition("\n")[0].rstrip(":")
        else:
            text = HTTPStatus(status).phrase
        response = error_response(status, text)
        response.force_close()
        return response

    def _between_requests(self) -> bool:
        """No request is being read or handled, so the bytes that come begin a new head."""
        if self._request_in_progress or self._messages:
            return False
        return self._request_count == 0 or (self._waiter is not None and not self._waiter.done())

    def _head_timed_out(self) -> None:
        self._head_deadline = None
        if not self._between_requests():
            return
        # Queued like one of the parser's own errors, so it is answered and logged the same way.
        message = f"the request head did not arrive within {self._read_timeout:g} s"
        self._request_count += 1
        self._messages.append((_ErrInfo(status=408, exc=TimeoutError(message), message=message), EMPTY_PAYLOAD))
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    def _cancel_head_deadline(self) -> None:
        if self._head_deadline is not None:
            self._head_deadline.cancel()
            self._head_deadline = None


class _Server(web.Server):
    def __call__(self) -> RequestHandler:
        return _RequestHandler(self, loop=self._loop, **self._kwargs)


class Runner(web.AppRunner):
    """An AppRunner (what gunicorn's aiohttp worker serves) whose connections are _RequestHandler's.

    `read_timeout` is passed on to each connection with aiohttp's own handler settings.
    """

    def __init__(self, app: web.Application, *, read_timeout: float, **kwargs: Any) -> None:
        super().__init__(app, read_timeout=read_timeout, **kwargs)

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _Server
        return server
