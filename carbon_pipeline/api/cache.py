"""Answers to callers without rights, kept for a short while: they are the same for everyone
(what carbon_reporter sees) and the warehouse changes once an hour, so a page that many people
open asks the warehouse once per API_CACHE_SECONDS per worker; and while one request computes
an answer, the others asking the same wait for it instead of asking the warehouse too.
Personal answers (a request with a token) are never kept. A kept answer carries `Age`
(seconds since it was computed)."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict

from starlette.types import ASGIApp, Message, Receive, Scope, Send

NEVER_KEPT = ("/health", "/docs", "/openapi.json", "/redoc")


class AnonymousCache:
    """ASGI middleware: a GET without an Authorization header whose answer is 200 is kept for
    `seconds`, at most `entries` of them (the least recently used go first)."""

    def __init__(self, app: ASGIApp, seconds: float, entries: int = 1024):
        self.app, self.seconds, self.entries = app, seconds, entries
        # Both touched only from the worker's event loop: no lock needed.
        self._kept: OrderedDict[bytes, tuple[float, list, bytes]] = OrderedDict()
        self._computing: dict[bytes, asyncio.Event] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] != "GET"
            or self.seconds <= 0
            or scope["path"] in NEVER_KEPT
            or any(name == b"authorization" for name, _ in scope["headers"])
        ):
            await self.app(scope, receive, send)
            return
        key = scope["path"].encode() + b"?" + scope.get("query_string", b"")
        if await self._serve_kept(key, send):
            return
        computing = self._computing.get(key)
        if computing is not None:  # another request is computing it: wait, then serve that
            await computing.wait()
            if await self._serve_kept(key, send):
                return
        self._computing[key] = done = asyncio.Event()
        try:
            await self._compute(key, scope, receive, send)
        finally:
            del self._computing[key]
            done.set()

    async def _serve_kept(self, key: bytes, send: Send) -> bool:
        kept = self._kept.get(key)
        now = time.monotonic()
        if kept is None or now - kept[0] >= self.seconds:
            return False
        self._kept.move_to_end(key)
        made, headers, body = kept
        age = [(b"age", str(int(now - made)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers + age})
        await send({"type": "http.response.body", "body": body})
        return True

    async def _compute(self, key: bytes, scope: Scope, receive: Receive, send: Send) -> None:
        made = time.monotonic()
        started: dict = {}
        parts: list[bytes] = []

        async def keep(message: Message) -> None:
            if message["type"] == "http.response.start":
                started.update(message)
            elif message["type"] == "http.response.body":
                parts.append(message.get("body", b""))
                if not message.get("more_body") and started.get("status") == 200:
                    self._kept[key] = (made, list(started.get("headers", [])), b"".join(parts))
                    self._kept.move_to_end(key)
                    while len(self._kept) > self.entries:
                        self._kept.popitem(last=False)
            await send(message)

        await self.app(scope, receive, keep)
