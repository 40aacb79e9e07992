"""Backends for the ingress tests: small ASGI apps under uvicorn on 127.0.0.x addresses.

Each `Backend` answers, on any path, a JSON description of the request it
got (its own name, method, path, query, headers, body length and SHA-256,
the proxy's address and port); `/echo` streams the request body back as it
arrives; `/stream` sends one chunk, waits for `release` to be set, then
sends a second one; `/ws` is a WebSocket echoing `<name>:<text>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json

import uvicorn


class Backend:
    def __init__(self, name: str, host: str) -> None:
        self.name = name
        self.host = host
        self.port = 0
        self.release = asyncio.Event()
        self.requests = 0
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task | None = None

    async def __aenter__(self) -> Backend:
        config = uvicorn.Config(self.app, host=self.host, port=0, log_level="warning", lifespan="off",
                                ws="websockets-sansio", timeout_graceful_shutdown=1, access_log=False,
                                interface="asgi3", proxy_headers=False)
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        for _ in range(500):
            if self._server.started or self._task.done():
                break
            await asyncio.sleep(0.01)
        if self._task.done():
            self._task.result()
        assert self._server.started, "backend did not start"
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc) -> None:
        assert self._server is not None and self._task is not None
        self.release.set()
        self._server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.wait_for(self._task, 10)

    async def app(self, scope, receive, send) -> None:
        if scope["type"] == "websocket":
            await self._websocket(receive, send)
        elif scope["type"] == "http":
            self.requests += 1
            if scope["path"] == "/echo":
                await self._echo(receive, send)
            elif scope["path"] == "/stream":
                await self._stream(send)
            else:
                await self._describe(scope, receive, send)

    async def _describe(self, scope, receive, send) -> None:
        digest = hashlib.sha256()
        length = 0
        while True:
            message = await receive()
            chunk = message.get("body", b"")
            digest.update(chunk)
            length += len(chunk)
            if not message.get("more_body"):
                break
        headers: dict[str, str] = {}
        for key, value in scope["headers"]:
            name = key.decode("latin-1")
            headers[name] = f"{headers[name]}, {value.decode('latin-1')}" if name in headers else value.decode("latin-1")
        body = json.dumps({
            "backend": self.name, "method": scope["method"], "path": scope["path"],
            "raw_path": scope.get("raw_path", b"").decode("latin-1"), "query": scope["query_string"].decode(),
            "headers": headers, "body_length": length, "body_sha256": digest.hexdigest(),
            "client": list(scope["client"] or ()),
        }).encode()
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body)),
                                (b"x-backend", self.name.encode())]})
        await send({"type": "http.response.body", "body": body})

    async def _echo(self, receive, send) -> None:
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"application/octet-stream")]})
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            await send({"type": "http.response.body", "body": message.get("body", b""), "more_body": True})
            if not message.get("more_body"):
                break
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async def _stream(self, send) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": b"first;", "more_body": True})
        await asyncio.wait_for(self.release.wait(), 10)
        await send({"type": "http.response.body", "body": b"second", "more_body": False})

    async def _websocket(self, receive, send) -> None:
        message = await receive()
        if message["type"] != "websocket.connect":
            return
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                return
            await send({"type": "websocket.send", "text": f"{self.name}:{message.get('text')}"})
