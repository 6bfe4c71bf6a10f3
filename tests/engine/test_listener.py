"""The one-port listener: native websockets on chosen paths, Hypercorn for everything else.

Real clients over 127.0.0.1: httpx for HTTP, the `websockets` sync client (in a worker thread,
since its asyncio client does not run under trio) for websockets, raw trio sockets where the
test is about bytes on the wire.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import pytest
import trio
import trio.testing
from hypercorn.config import Config as HypercornConfig
from hypercorn.typing import (
    ASGIReceiveCallable,
    ASGISendCallable,
    HTTPResponseStartEvent,
    Scope,
)
from hypercorn.utils import LifespanFailureError
from quart import request, websocket
from quart_trio import QuartTrio
from websockets.exceptions import ConnectionClosed as WsClosed
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection
from websockets.sync.client import connect as ws_connect
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from omnirelay.engine._frames import OutFrame, ws_binary_frame, ws_close_frame
from omnirelay.engine._listener import (
    ConnectionClosed,
    ListenerConfig,
    NativeWebSocket,
    WebSocketHandler,
    serve,
)

Address = tuple[str, int]


# -- the apps ----------------------------------------------------------------------------------


def make_app(events: list[str] | None = None) -> QuartTrio:
    app = QuartTrio(__name__)
    log = events if events is not None else []

    @app.before_serving
    async def startup() -> None:
        log.append("startup")

    @app.after_serving
    async def shutdown() -> None:
        log.append("shutdown")

    @app.get("/hello")
    async def hello() -> dict[str, Any]:
        client = request.scope["client"]
        assert client is not None
        return {"hello": "world", "client_port": client[1]}

    @app.post("/echo")
    async def echo() -> str | bytes:
        return await request.get_data(as_text=False, parse_form_data=False)

    @app.get("/ws")
    async def plain_get_on_native_path() -> dict[str, str]:
        return {"served_by": "asgi"}

    @app.websocket("/asgi-ws")
    async def asgi_echo() -> None:
        while True:
            await websocket.send("asgi:" + str(await websocket.receive()))

    return app


async def echo_handler(ws: NativeWebSocket) -> None:
    await ws.accept()
    while True:
        message = await ws.receive()
        if isinstance(message, str):
            assert ws.send_text_nowait(message)
        else:
            assert ws.send_nowait(ws_binary_frame(message))


@asynccontextmanager
async def running(
    config: ListenerConfig,
    app: Callable[[Scope, ASGIReceiveCallable, ASGISendCallable], Awaitable[None]] | None = None,
) -> AsyncIterator[Address]:
    async with trio.open_nursery() as nursery:
        address = await nursery.start(partial(serve, app or make_app(), config))
        try:
            yield address
        finally:
            nursery.cancel_scope.cancel()


def url(address: Address, path: str, scheme: str = "http") -> str:
    return f"{scheme}://{address[0]}:{address[1]}{path}"


def open_ws(address: Address, path: str = "/ws") -> ClientConnection:
    return ws_connect(url(address, path, "ws"), open_timeout=2, close_timeout=2, legacy=True)


def send_then_receive(ws: ClientConnection, message: str | list[str]) -> str | bytes:
    ws.send(message)
    return ws.recv(2)


async def ws_call(function: Callable[..., Any], *args: Any) -> Any:
    return await trio.to_thread.run_sync(partial(function, *args))


# -- raw sockets -------------------------------------------------------------------------------


async def connect_raw(address: Address) -> trio.SocketStream:
    stream = await trio.open_tcp_stream(*address)
    stream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return stream


async def read_until_eof(stream: trio.SocketStream) -> bytes:
    received = bytearray()
    with trio.fail_after(2):
        while data := await stream.receive_some():
            received += data
    return bytes(received)


async def read_exactly(stream: trio.SocketStream, size: int) -> bytes:
    received = bytearray()
    with trio.fail_after(5):
        while len(received) < size:
            data = await stream.receive_some(size - len(received))
            assert data, "unexpected EOF"
            received += data
    return bytes(received)


def split_response(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = dict(line.lower().split(": ", 1) for line in lines)
    return int(status_line.split()[1]), headers, body


async def raw_upgrade(address: Address, path: str = "/ws") -> trio.SocketStream:
    """A websocket client that completes the handshake and then reads only when told."""
    stream = await connect_raw(address)
    key = base64.b64encode(os.urandom(16))
    await stream.send_all(
        b"GET " + path.encode() + b" HTTP/1.1\r\nHost: test\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
        + key
        + b"\r\n\r\n"
    )
    head = bytearray()
    with trio.fail_after(2):
        while b"\r\n\r\n" not in head:
            head += await stream.receive_some(1)
    assert head.startswith(b"HTTP/1.1 101 ")
    return stream


def registering(send: trio.MemorySendChannel[NativeWebSocket]) -> WebSocketHandler:
    """A handler that accepts, hands the websocket to the test, then only reads."""

    async def handler(ws: NativeWebSocket) -> None:
        await ws.accept()
        await send.send(ws)
        while True:
            await ws.receive()

    return handler


async def read_until_close(
    stream: trio.SocketStream, payload: bytes
) -> tuple[int, CloseConnection]:
    """Read a raw websocket until the server's close frame (answering it): how many binary
    messages came before it, each checked to be exactly `payload` (whole frames only)."""
    client = Connection(ConnectionType.CLIENT)
    messages, pending = 0, b""
    with trio.fail_after(5):
        while True:
            data = await stream.receive_some(65536)
            assert data, "EOF before the close frame"
            client.receive_data(data)
            for event in client.events():
                if isinstance(event, BytesMessage):
                    pending += event.data
                    if event.message_finished:
                        assert pending == payload
                        messages, pending = messages + 1, b""
                elif isinstance(event, CloseConnection):
                    await stream.send_all(client.send(event.response()))
                    return messages, event


# -- HTTP through the hand-off -----------------------------------------------------------------


async def test_rest_get_is_handed_to_the_asgi_app() -> None:
    async with running(ListenerConfig()) as address, httpx.AsyncClient() as client:
        response = await client.get(url(address, "/hello"))
    assert response.status_code == 200
    assert response.json()["hello"] == "world"


async def test_post_body_reaches_the_asgi_app() -> None:
    body = os.urandom(200_000)
    async with running(ListenerConfig()) as address, httpx.AsyncClient() as client:
        response = await client.post(url(address, "/echo"), content=body)
    assert response.status_code == 200
    assert response.content == body


async def test_keep_alive_serves_several_requests_on_one_connection() -> None:
    async with running(ListenerConfig()) as address, httpx.AsyncClient() as client:
        ports = {(await client.get(url(address, "/hello"))).json()["client_port"] for _ in range(4)}
    assert len(ports) == 1


async def test_pipelined_requests_are_all_answered_in_order() -> None:
    async with running(ListenerConfig()) as address, await connect_raw(address) as stream:
        await stream.send_all(
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nfirst"
            b"POST /echo HTTP/1.1\r\nHost: t\r\nContent-Length: 6\r\n\r\nsecond"
            b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n"
        )
        raw = b""
        with trio.fail_after(2):
            while raw.count(b"HTTP/1.1 200 ") < 3 or not raw.endswith(b"}\n"):
                raw += await stream.receive_some()
    assert raw.count(b"HTTP/1.1 200 ") == 3
    assert raw.index(b"first") < raw.index(b"second") < raw.index(b'"hello"')


async def test_head_split_across_segments_is_reassembled() -> None:
    pieces = [
        b"PO",
        b"ST /echo HTTP/1.1\r\nHo",
        b"st: t\r\nContent-Le",
        b"ngth: 4\r\n",
        b"\r\nbo",
        b"dy",
    ]
    async with running(ListenerConfig()) as address, await connect_raw(address) as stream:
        for piece in pieces[:-1]:
            await stream.send_all(piece)
            await trio.sleep(0.02)  # separate TCP segments, separate reads on the server
        await stream.send_all(pieces[-1])
        with trio.fail_after(2):
            raw = b""
            while not raw.endswith(b"body"):
                raw += await stream.receive_some()
    status, _, body = split_response(raw)
    assert (status, body) == (200, b"body")


async def test_malformed_head_gets_400_with_a_json_error_and_is_closed() -> None:
    async with running(ListenerConfig()) as address, await connect_raw(address) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\nno colon here\r\n\r\n")
        status, headers, body = split_response(await read_until_eof(stream))
    assert status == 400
    assert headers["content-type"] == "application/json"
    assert json.loads(body)["error"]["code"] == "bad_request"


async def test_oversized_head_gets_431() -> None:
    config = ListenerConfig(max_head_size=4096)
    async with running(config) as address, await connect_raw(address) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 8000 + b"\r\n\r\n")
        status, _, body = split_response(await read_until_eof(stream))
    assert status == 431
    assert json.loads(body)["error"]["code"] == "head_too_large"


async def test_oversized_head_in_one_segment_gets_431() -> None:
    config = ListenerConfig(max_head_size=1024)
    async with running(config) as address, await connect_raw(address) as stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 1500 + b"\r\n\r\n")
        status, _, _ = split_response(await read_until_eof(stream))
    assert status == 431


async def get_hello(stream: trio.SocketStream) -> None:
    await stream.send_all(b"GET /hello HTTP/1.1\r\nHost: t\r\n\r\n")
    raw = b""
    with trio.fail_after(2):
        while not raw.endswith(b"}\n"):
            raw += await stream.receive_some()


# Hypercorn's keep-alive timer dies at birth under Quart-Trio unless the listener shields its
# restart (see _HandOffServer); without that, the next two tests wait the full timeouts.


async def test_idle_keep_alive_connection_is_closed_after_the_keep_alive_timeout() -> None:
    hypercorn_config = HypercornConfig()
    hypercorn_config.keep_alive_timeout = 0.2
    async with trio.open_nursery() as nursery:
        address = await nursery.start(
            partial(serve, make_app(), ListenerConfig(), hypercorn_config=hypercorn_config)
        )
        async with await connect_raw(address) as stream:
            await get_hello(stream)
            await get_hello(stream)  # still open after the first response
            with trio.fail_after(1):
                assert await stream.receive_some() == b""
        nursery.cancel_scope.cancel()


async def test_idle_keep_alive_connection_does_not_delay_shutdown() -> None:
    async with trio.open_nursery() as nursery:
        address = await nursery.start(partial(serve, make_app(), ListenerConfig()))
        async with await connect_raw(address) as stream:
            await get_hello(stream)
            nursery.cancel_scope.cancel()
            with trio.CancelScope(shield=True), trio.fail_after(1):
                assert await stream.receive_some() == b""


async def test_incomplete_head_is_closed_after_the_head_timeout() -> None:
    async with (
        running(ListenerConfig(request_head_timeout=0.2)) as address,
        await connect_raw(address) as stream,
    ):
        await stream.send_all(b"GET /hello HT")
        with trio.fail_after(1):
            assert await stream.receive_some() == b""


async def test_lifespan_startup_runs_before_serving_and_shutdown_after_cancellation() -> None:
    events: list[str] = []
    async with trio.open_nursery() as nursery:
        await nursery.start(partial(serve, make_app(events), ListenerConfig()))
        assert events == ["startup"]
        nursery.cancel_scope.cancel()
    assert events == ["startup", "shutdown"]


async def test_failed_lifespan_startup_is_raised_and_nothing_is_served() -> None:
    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    with pytest.RaisesGroup(LifespanFailureError, flatten_subgroups=True):
        async with trio.open_nursery() as nursery:
            await nursery.start(partial(serve, app, ListenerConfig()))


async def test_raw_asgi_app_without_lifespan_support_is_served() -> None:
    async def app(scope: Scope, receive: ASGIReceiveCallable, send: ASGISendCallable) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan here")
        start: HTTPResponseStartEvent = {
            "type": "http.response.start",
            "status": 204,
            "headers": [],
            "trailers": False,
        }
        await send(start)
        await send({"type": "http.response.body", "body": b"", "more_body": False})

    async with running(ListenerConfig(), app) as address, httpx.AsyncClient() as client:
        assert (await client.get(url(address, "/anything"))).status_code == 204


# -- native websockets -------------------------------------------------------------------------


async def test_native_websocket_echoes_text_and_binary_without_extensions() -> None:
    config = ListenerConfig(websocket_paths={"/ws": echo_handler})
    async with running(config) as address:
        ws = await ws_call(open_ws, address)
        try:
            assert ws.response.headers.get("Sec-WebSocket-Extensions") is None
            await ws_call(ws.send, "héllo")
            assert await ws_call(ws.recv, 2) == "héllo"
            await ws_call(ws.send, b"\x00\x01binary")
            assert await ws_call(ws.recv, 2) == b"\x00\x01binary"
            big = "x" * 70_000  # a 64-bit length in both directions
            await ws_call(ws.send, big)
            assert await ws_call(ws.recv, 2) == big
            pong = await ws_call(ws.ping)
            assert await ws_call(pong.wait, 2)
        finally:
            await ws_call(ws.close)


async def test_fragmented_client_message_is_reassembled() -> None:
    config = ListenerConfig(websocket_paths={"/ws": echo_handler})
    async with running(config) as address:
        ws = await ws_call(open_ws, address)
        try:
            await ws_call(ws.send, ["frag", "men", "ted"])
            assert await ws_call(ws.recv, 2) == "fragmented"
            await ws_call(ws.send, [b"ab", b"cd"])
            assert await ws_call(ws.recv, 2) == b"abcd"
        finally:
            await ws_call(ws.close)


async def test_client_close_reaches_the_handler_with_its_code() -> None:
    seen: list[tuple[int, str]] = []
    handler_done = trio.Event()

    async def handler(ws: NativeWebSocket) -> None:
        await ws.accept()
        try:
            await ws.receive()
        except ConnectionClosed as exc:
            seen.append((exc.code, exc.reason))
            raise
        finally:
            handler_done.set()

    async with running(ListenerConfig(websocket_paths={"/ws": handler})) as address:
        ws = await ws_call(open_ws, address)
        await ws_call(ws.close, 4000, "bye")
        with trio.fail_after(2):
            await handler_done.wait()
    assert seen == [(4000, "bye")]
    assert ws.close_code == 4000  # the server answered the close frame


async def test_message_over_max_message_size_closes_with_1009() -> None:
    config = ListenerConfig(websocket_paths={"/ws": echo_handler}, max_message_size=1000)
    async with running(config) as address:
        ws = await ws_call(open_ws, address)
        await ws_call(ws.send, "small")
        assert await ws_call(ws.recv, 2) == "small"
        with pytest.raises(WsClosed) as caught:  # raised by send() if the close wins the race
            await ws_call(send_then_receive, ws, ["a" * 600, "b" * 600])
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1009


async def test_reject_before_upgrade_is_a_real_401_with_a_json_body() -> None:
    heads = []

    async def handler(ws: NativeWebSocket) -> None:
        heads.append(ws.head)
        if ws.head.query("token") != "good token":
            body = json.dumps({"error": {"code": "unauthorized", "message": "bad token"}})
            await ws.reject(401, body.encode())
            return
        await ws.accept()
        await ws.receive()

    async with running(ListenerConfig(websocket_paths={"/ws": handler})) as address:
        with pytest.raises(InvalidStatus) as caught:
            await ws_call(open_ws, address, "/ws?token=wrong&x=%2F")
        good = await ws_call(open_ws, address, "/ws?token=good+token")
        await ws_call(good.close)
    response = caught.value.response
    assert response.status_code == 401
    assert response.headers["Content-Type"] == "application/json"
    assert json.loads(response.body or b"")["error"]["code"] == "unauthorized"
    head = heads[0]
    assert (head.method, head.path, head.target) == ("GET", "/ws", "/ws?token=wrong&x=%2F")
    assert head.query("x") == "/"
    assert head.query("missing") is None
    assert head.header("UPGRADE") == "websocket"
    assert head.client is not None
    assert head.client[0] == "127.0.0.1"


async def test_handler_that_never_answers_the_handshake_gets_403() -> None:
    async def handler(ws: NativeWebSocket) -> None:
        return

    async with running(ListenerConfig(websocket_paths={"/ws": handler})) as address:
        with pytest.raises(InvalidStatus) as caught:
            await ws_call(open_ws, address)
    assert caught.value.response.status_code == 403


async def test_broken_upgrade_on_a_native_path_is_refused_by_the_listener() -> None:
    async with (
        running(ListenerConfig(websocket_paths={"/ws": echo_handler})) as address,
        await connect_raw(address) as stream,
    ):
        await stream.send_all(
            b"GET /ws HTTP/1.1\r\nHost: t\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 8\r\nSec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAA==\r\n\r\n"
        )
        status, headers, body = split_response(await read_until_eof(stream))
    assert status == 426
    assert headers["sec-websocket-version"] == "13"
    assert json.loads(body)["error"]["code"] == "bad_request"


async def test_plain_get_to_a_native_path_reaches_the_asgi_app() -> None:
    config = ListenerConfig(websocket_paths={"/ws": echo_handler})
    async with running(config) as address, httpx.AsyncClient() as client:
        response = await client.get(url(address, "/ws"))
    assert response.json() == {"served_by": "asgi"}


async def test_websocket_on_another_path_is_served_by_the_asgi_app() -> None:
    config = ListenerConfig(websocket_paths={"/ws": echo_handler})
    async with running(config) as address:
        ws = await ws_call(open_ws, address, "/asgi-ws")
        try:
            await ws_call(ws.send, "ping")
            assert await ws_call(ws.recv, 2) == "asgi:ping"
        finally:
            await ws_call(ws.close)


async def test_slow_consumer_is_refused_without_blocking_and_others_keep_receiving() -> None:
    send_registered, registered = trio.open_memory_channel[NativeWebSocket](2)

    handler = registering(send_registered)

    max_buffer = 256 * 1024
    config = ListenerConfig(websocket_paths={"/ws": handler}, max_buffer=max_buffer)
    async with running(config) as address, await raw_upgrade(address) as slow:
        slow_ws = await registered.receive()
        fast = await ws_call(open_ws, address)
        fast_ws = await registered.receive()

        frame = ws_binary_frame(b"s" * 16384)
        accepted = 0
        while slow_ws.send_nowait(frame):  # synchronous: it cannot block, only refuse
            accepted += 1
            assert accepted < 100_000, "send_nowait never refused a reader that does not read"
        assert 0 < slow_ws.buffered <= max_buffer
        assert not slow_ws.closed

        assert fast_ws.send_nowait(OutFrame("still flowing").ws_bytes)
        assert await ws_call(fast.recv, 2) == "still flowing"

        # Everything accepted arrives once the slow client reads: whole frames, in order.
        received = await read_exactly(slow, accepted * len(frame))
        assert received == frame * accepted
        await trio.testing.wait_all_tasks_blocked()
        assert slow_ws.buffered == 0
        assert slow_ws.send_nowait(frame)
        assert await read_exactly(slow, len(frame)) == frame
        await ws_call(fast.close)


async def test_the_queue_is_bounded_in_frames_too_and_says_when_it_drained() -> None:
    send_registered, registered = trio.open_memory_channel[NativeWebSocket](1)

    handler = registering(send_registered)

    config = ListenerConfig(
        websocket_paths={"/ws": handler}, max_buffer=64 * 1024 * 1024, max_queued_frames=50
    )
    async with running(config) as address, await raw_upgrade(address) as slow:
        slow_ws = await registered.receive()
        drained = trio.Event()
        slow_ws.on_drained = drained.set
        big = ws_binary_frame(b"s" * 16384)
        sent_big = 0
        while slow_ws.buffered == 0:  # fill the kernel's buffers until our queue starts
            assert slow_ws.send_nowait(big)
            sent_big += 1
            assert sent_big < 100_000, "the kernel never pushed back"
        small = ws_binary_frame(b"x")
        accepted = 0
        while slow_ws.send_nowait(small):
            accepted += 1
            assert accepted < 1000, "the frame count was not enforced"
        # Refused by count long before the 64 MiB byte bound.
        assert 0 < accepted < 50
        assert slow_ws.buffered < 1024 * 1024
        assert not drained.is_set()

        expected = big * sent_big + small * accepted
        assert await read_exactly(slow, len(expected)) == expected
        with trio.fail_after(2):
            await drained.wait()
        assert slow_ws.buffered == 0
        assert slow_ws.send_nowait(small)


async def test_closing_as_slow_drops_the_backlog_but_finishes_the_frame_being_written() -> None:
    send_registered, registered = trio.open_memory_channel[NativeWebSocket](1)

    handler = registering(send_registered)

    config = ListenerConfig(websocket_paths={"/ws": handler}, max_buffer=64 * 1024 * 1024)
    async with running(config) as address, await raw_upgrade(address) as slow:
        slow_ws = await registered.receive()
        payload = b"s" * 16384
        frame = ws_binary_frame(payload)
        sent = 0
        while slow_ws.buffered == 0:  # the kernel is full; from here on frames queue up
            assert slow_ws.send_nowait(frame)
            sent += 1
            assert sent < 100_000, "the kernel never pushed back"
        for _ in range(100):
            assert slow_ws.send_nowait(frame)
        dropped = slow_ws.discard_queued()
        assert 100 <= dropped <= 101  # all but the frame already started
        assert slow_ws.buffered < len(frame)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_ws.close, 4008, "slow consumer")
            messages, close = await read_until_close(slow, payload)
        assert close.code == 4008
        assert messages == sent + 100 - dropped  # the backlog never went out


async def test_a_group_of_frames_is_taken_whole_and_never_split_by_a_discard() -> None:
    """One event's frames go together: refused together, and a discard keeps or drops the
    group as a whole, so a client never sees part of an event."""
    send_registered, registered = trio.open_memory_channel[NativeWebSocket](1)
    config = ListenerConfig(
        websocket_paths={"/ws": registering(send_registered)}, max_buffer=1024 * 1024
    )
    async with running(config) as address, await raw_upgrade(address) as slow:
        slow_ws = await registered.receive()
        payload = b"g" * 10007  # odd-sized: the kernel's cut falls inside a group
        group = [ws_binary_frame(payload)] * 3
        groups = 0
        while slow_ws.send_group_nowait(group):  # until the byte bound refuses a whole group
            groups += 1
            assert groups < 100_000, "never refused"
        assert slow_ws.buffered + 3 * len(group[0]) > 1024 * 1024
        slow_ws.discard_queued()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(slow_ws.close, 4008, "slow consumer")
            messages, close = await read_until_close(slow, payload)
        assert close.code == 4008
        assert messages > 0
        assert messages % 3 == 0  # whole groups only


async def test_closing_a_slow_consumer_is_bounded_by_the_close_timeout() -> None:
    send_registered, registered = trio.open_memory_channel[NativeWebSocket](1)

    handler = registering(send_registered)

    config = ListenerConfig(
        websocket_paths={"/ws": handler}, max_buffer=64 * 1024, close_timeout=0.2
    )
    async with running(config) as address, await raw_upgrade(address) as slow:
        slow_ws = await registered.receive()
        frame = ws_binary_frame(b"s" * 16384)
        while slow_ws.send_nowait(frame):
            pass
        with trio.fail_after(1):
            await slow_ws.close(4008, "too slow")
        assert slow_ws.closed
        assert not slow_ws.send_nowait(frame)
        with trio.fail_after(2):
            while await slow.receive_some():
                pass  # what the kernel had, then EOF


async def test_shutdown_closes_native_websockets_with_1001() -> None:
    events: list[str] = []
    config = ListenerConfig(websocket_paths={"/ws": echo_handler})
    async with trio.open_nursery() as nursery:
        address = await nursery.start(partial(serve, make_app(events), config))
        ws = await ws_call(open_ws, address)
        nursery.cancel_scope.cancel()
    with pytest.raises(WsClosed) as caught:
        await ws_call(ws.recv, 2)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1001
    assert events == ["startup", "shutdown"]


async def test_handler_exception_closes_with_1011_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(ws: NativeWebSocket) -> None:
        await ws.accept()
        await ws.receive()
        raise ValueError("a bug in one handler")

    config = ListenerConfig(websocket_paths={"/ws": echo_handler, "/broken": broken})
    with caplog.at_level(logging.ERROR, logger="omnirelay.engine.listener"):
        async with running(config) as address:
            victim = await ws_call(open_ws, address, "/broken")
            await ws_call(victim.send, "trigger")
            with pytest.raises(WsClosed) as caught:
                await ws_call(victim.recv, 2)
            other = await ws_call(open_ws, address)
            await ws_call(other.send, "still here")
            assert await ws_call(other.recv, 2) == "still here"
            await ws_call(other.close)
    assert caught.value.rcvd is not None
    assert caught.value.rcvd.code == 1011
    [record] = [r for r in caplog.records if r.name == "omnirelay.engine.listener"]
    assert record.exc_info is not None
    assert isinstance(record.exc_info[1], ValueError)


async def test_handler_exception_before_accept_is_http_500(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async def broken(ws: NativeWebSocket) -> None:
        raise KeyError("boom")

    with caplog.at_level(logging.ERROR, logger="omnirelay.engine.listener"):
        async with running(ListenerConfig(websocket_paths={"/ws": broken})) as address:
            with pytest.raises(InvalidStatus) as caught:
                await ws_call(open_ws, address)
    assert caught.value.response.status_code == 500


async def test_send_before_accept_is_a_caller_bug() -> None:
    errors: list[BaseException] = []

    async def handler(ws: NativeWebSocket) -> None:
        for call in (partial(ws.send_nowait, b""), ws.receive):
            try:
                result = call()
                if not isinstance(result, bool):
                    await result
            except RuntimeError as exc:
                errors.append(exc)
        await ws.reject(400, b"{}")

    async with running(ListenerConfig(websocket_paths={"/ws": handler})) as address:
        with pytest.raises(InvalidStatus):
            await ws_call(open_ws, address)
    assert len(errors) == 2


# -- frames ------------------------------------------------------------------------------------


def wsproto_server_bytes(event: TextMessage | BytesMessage | CloseConnection) -> bytes:
    return Connection(ConnectionType.SERVER).send(event)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 127, 65535, 65536, 70_000])
def test_out_frame_is_what_wsproto_would_send(size: int) -> None:
    text = ("é" + "a" * size)[:size]  # multi-byte UTF-8 where it fits
    frame = OutFrame(text)
    assert frame.ws_bytes == wsproto_server_bytes(TextMessage(data=text))
    assert frame.ws_bytes is frame.ws_bytes  # computed once
    assert frame.size == len(frame.ws_bytes)
    assert frame.text == text
    data = os.urandom(size)
    assert ws_binary_frame(data) == wsproto_server_bytes(BytesMessage(data=data))


def test_close_frame_is_what_wsproto_would_send() -> None:
    expected = wsproto_server_bytes(CloseConnection(code=4008, reason="too slow"))
    assert ws_close_frame(4008, "too slow") == expected
    with pytest.raises(ValueError, match="may not be sent"):
        ws_close_frame(1006, "")
    with pytest.raises(ValueError, match="at most 123"):
        ws_close_frame(1000, "x" * 124)
