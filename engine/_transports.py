"""Websocket transports and HTTP glue shared by `/ws` and the Engine.IO endpoints.

* `NativeTransport`: a websocket on our own listener; frames are written as pre-built bytes.
* `QuartWebSocketTransport`: a websocket through ASGI (embedded mode): a bounded queue and a
  writer task awaiting Quart's `websocket.send`.

Both never block on send and refuse (return False) when their buffer would overflow;
`send_frames_nowait` takes one event's frames all or none.
`native_engineio_handler`, `quart_engineio_polling` and `quart_engineio_websocket` connect an
`EngineIOServer` to the native listener and to Quart routes.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Awaitable, Callable, Sequence

import trio
from quart import Response, request, websocket

from ._frames import OutFrame, ws_binary_frame
from ._listener import ConnectionClosed, NativeWebSocket, WebSocketHandler

__all__ = [
    "NativeTransport",
    "QuartWebSocketTransport",
    "TransportClosed",
    "native_engineio_handler",
    "quart_engineio_polling",
    "quart_engineio_websocket",
]


class TransportClosed(Exception):
    """The client went away (raised by a transport's `receive`)."""


class NativeTransport:
    """A native websocket: `OutFrame.ws_bytes` goes to the socket as is."""

    __slots__ = ("ws",)

    def __init__(self, ws: NativeWebSocket) -> None:
        self.ws = ws

    def send_frame_nowait(self, frame: OutFrame) -> bool:
        return self.ws.send_nowait(frame.ws_bytes)

    def send_frames_nowait(self, frames: Sequence[OutFrame]) -> bool:
        return self.ws.send_group_nowait([frame.ws_bytes for frame in frames])

    def send_text_nowait(self, text: str) -> bool:
        return self.ws.send_text_nowait(text)

    def send_bytes_nowait(self, data: bytes) -> bool:
        return self.ws.send_nowait(ws_binary_frame(data))

    @property
    def buffered(self) -> int:
        return self.ws.buffered

    def set_on_drained(self, callback: Callable[[], None] | None) -> None:
        self.ws.on_drained = callback

    def discard_queued(self) -> None:
        self.ws.discard_queued()

    async def receive(self) -> str | bytes:
        try:
            return await self.ws.receive()
        except ConnectionClosed:
            raise TransportClosed from None

    async def close(self, code: int, reason: str) -> None:
        await self.ws.close(code, reason)


class QuartWebSocketTransport:
    """A websocket through ASGI: sends are queued (bounded) and written by `run_writer`.

    Slower than the native path (every frame is awaited through the ASGI server) but the same
    behaviour. Run `run_writer` in a nursery for the life of the connection.
    """

    def __init__(self, *, max_bytes: int, max_frames: int) -> None:
        self.max_bytes = max_bytes
        self.max_frames = max_frames
        self._queue: deque[str | bytes] = deque()
        self._bytes = 0
        self._wake = trio.Event()
        self._closed = False
        self._on_drained: Callable[[], None] | None = None

    @property
    def buffered(self) -> int:
        return self._bytes

    def set_on_drained(self, callback: Callable[[], None] | None) -> None:
        self._on_drained = callback

    def discard_queued(self) -> None:
        self._queue.clear()
        self._bytes = 0

    def _put(self, item: str | bytes) -> bool:
        if self._closed:
            return False
        if len(self._queue) >= self.max_frames or self._bytes + len(item) > self.max_bytes:
            return False
        self._queue.append(item)
        self._bytes += len(item)
        self._wake.set()
        return True

    def send_frame_nowait(self, frame: OutFrame) -> bool:
        return self._put(frame.text)

    def send_frames_nowait(self, frames: Sequence[OutFrame]) -> bool:
        if self._closed or len(self._queue) + len(frames) > self.max_frames:
            return False
        if self._bytes + sum(len(frame.text) for frame in frames) > self.max_bytes:
            return False
        for frame in frames:
            self._put(frame.text)
        return True

    def send_text_nowait(self, text: str) -> bool:
        return self._put(text)

    def send_bytes_nowait(self, data: bytes) -> bool:
        return self._put(data)

    async def run_writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            while self._queue:
                item = self._queue.popleft()
                self._bytes -= len(item)
                await websocket.send(item)
            if self._on_drained is not None:
                self._on_drained()

    async def receive(self) -> str | bytes:
        try:
            return await websocket.receive()
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            raise TransportClosed from None

    async def close(self, code: int, reason: str) -> None:
        # Flush what is queued (bounded by the caller's deadline), then close.
        self._closed = True
        while self._queue:
            await websocket.send(self._queue.popleft())
        await websocket.close(code, reason)


def _headers(pairs: object) -> dict[str, str]:
    return {k.lower(): v for k, v in pairs.items()}  # type: ignore[attr-defined]


def native_engineio_handler(server: object) -> WebSocketHandler:
    """The native listener's handler for an Engine.IO endpoint path."""
    from ._eio_server import EngineIOServer

    assert isinstance(server, EngineIOServer)

    async def handle(ws: NativeWebSocket) -> None:
        head = ws.head
        query = {
            k: v for k in ("EIO", "transport", "sid", "token") if (v := head.query(k)) is not None
        }
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers}

        async def accept() -> NativeTransport:
            await ws.accept()
            return NativeTransport(ws)

        async def reject(status: int, body: str) -> None:
            await ws.reject(status, body.encode())

        remote = f"{head.client[0]}:{head.client[1]}" if head.client else None
        await server.handle_websocket(query, headers, remote, accept, reject)

    return handle


async def quart_engineio_polling(server: object) -> Response:
    """Answer the current Quart request as an Engine.IO long-polling request."""
    from ._eio_server import EngineIOServer

    assert isinstance(server, EngineIOServer)
    headers = _headers(request.headers)

    async def read_body() -> bytes:
        body = await request.get_data(cache=False, as_text=False)
        return body.encode() if isinstance(body, str) else body

    reply = await server.handle_polling(
        request.method, request.args.to_dict(), headers, read_body, request.remote_addr
    )
    response = Response(reply.body, status=reply.status, content_type=reply.content_type)
    for name, value in reply.headers:
        response.headers[name] = value
    return response


async def quart_engineio_websocket(
    server: object, *, max_bytes: int, max_frames: int
) -> Response | None:
    """Serve the current Quart websocket as an Engine.IO websocket (embedded mode)."""
    from ._eio_server import EngineIOServer

    assert isinstance(server, EngineIOServer)
    transport = QuartWebSocketTransport(max_bytes=max_bytes, max_frames=max_frames)
    refusal: list[Response] = []

    async with trio.open_nursery() as nursery:

        async def accept() -> QuartWebSocketTransport:
            await websocket.accept()
            nursery.start_soon(transport.run_writer)
            return transport

        async def reject(status: int, body: str) -> None:
            refusal.append(Response(body, status=status, content_type="application/json"))

        await server.handle_websocket(
            websocket.args.to_dict(),
            _headers(websocket.headers),
            websocket.remote_addr,
            accept,
            reject,
        )
        nursery.cancel_scope.cancel()
    return refusal[0] if refusal else None


RouteHandler = Callable[[], Awaitable[Response]]
