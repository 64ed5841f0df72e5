"""An aiohttp application served from a background thread, for tests that talk to it over real HTTP."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import Any

import urllib3
from aiohttp import web


class BackgroundServer:
    """Runs `factory()` (an AppRunner, as gunicorn's aiohttp worker takes it) on a free loopback port.

    The event loop has a thread of its own; `get`, `post`, `put`, `delete` send real requests and
    return urllib3 responses.
    """

    def __init__(self, factory: Callable[[], Awaitable[web.AppRunner]]) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="aiohttp-server", daemon=True)
        self.thread.start()
        self.runner: web.AppRunner = self._call(self._start(factory))
        self.port = self.runner.addresses[0][1]
        self.http = urllib3.HTTPConnectionPool("127.0.0.1", self.port, maxsize=1, retries=False, timeout=10)

    def _call(self, coroutine: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout=30)

    @staticmethod
    async def _start(factory: Callable[[], Awaitable[web.AppRunner]]) -> web.AppRunner:
        runner = await factory()
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    def request(self, method: str, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return self.http.request(method, path, **kwargs)

    def get(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return self.request("POST", path, **kwargs)

    def put(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return self.request("PUT", path, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        return self.request("DELETE", path, **kwargs)

    def close(self) -> None:
        self.http.close()
        self._call(self.runner.cleanup())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
