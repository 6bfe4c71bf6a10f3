"""The server the official Engine.IO v4 and Socket.IO v5 test suites expect, on our stack.

    python -m tests.conformance.socketio_app --port 3000

Runs our listener (native websockets) and Quart (long-polling) with pingInterval 300 ms,
pingTimeout 200 ms, maxPayload 1000000:

* `/socket.io/`: namespaces `/` and `/custom`, each emitting `auth` with the CONNECT payload,
  answering `message` with `message-back` (same arguments) and acknowledging
  `message-with-ack` with the same arguments;
* `/ask` (ours): the server asks the client with an ack and reports the answer;
* `/engine.io/`: a raw Engine.IO echo server.

The suites live in socketio/socket.io (docs/engine.io-protocol/v4-test-suite and
docs/socket.io-protocol/v5-test-suite); run them against this app with `npm test` there.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
from typing import Any

import trio
from quart import Response
from quart_trio import QuartTrio

from omnirelay.engine._eio_server import EngineConnection, EngineIOServer, EngineIOSettings
from omnirelay.engine._listener import ListenerConfig, serve
from omnirelay.engine._sio_server import Ack, Socket, SocketIOServer
from omnirelay.engine._transports import (
    native_engineio_handler,
    quart_engineio_polling,
    quart_engineio_websocket,
)

SETTINGS = EngineIOSettings(ping_interval=0.3, ping_timeout=0.2, max_payload=1_000_000)


class ConformanceNamespace:
    async def on_connect(self, socket: Socket, auth: dict[str, Any] | None) -> None:
        socket.emit("auth", auth or {})

    async def on_event(
        self, socket: Socket, name: str | int | float, args: tuple[Any, ...], ack: Ack | None
    ) -> None:
        if name == "message":
            socket.emit("message-back", *args)
        elif name == "message-with-ack" and ack is not None:
            ack(*args)

    def on_disconnect(self, socket: Socket, reason: str) -> None:
        pass


class AskBack:
    """`/ask` (not part of the official suites): acks in the other direction. On `ask`, the
    server asks the client `question` with the same arguments, waits for the client's ack and
    emits `answer` with what the client acknowledged."""

    async def on_connect(self, socket: Socket, auth: dict[str, Any] | None) -> None:
        pass

    async def on_event(
        self, socket: Socket, name: str | int | float, args: tuple[Any, ...], ack: Ack | None
    ) -> None:
        if name == "ask":
            answer = await socket.call("question", *args, within=5)
            socket.emit("answer", *answer)

    def on_disconnect(self, socket: Socket, reason: str) -> None:
        pass


class Echo:
    """A raw Engine.IO handler that sends every message back."""

    async def opened(self, connection: EngineConnection) -> None:
        pass

    async def message(self, connection: EngineConnection, data: str | bytes) -> None:
        connection.send(data)

    def closed(self, connection: EngineConnection, reason: str) -> None:
        pass


def build() -> tuple[QuartTrio, EngineIOServer, EngineIOServer]:
    namespace = ConformanceNamespace()
    namespaces = {"/": namespace, "/custom": namespace, "/ask": AskBack()}
    socketio = EngineIOServer(SETTINGS, SocketIOServer(namespaces))
    engineio = EngineIOServer(SETTINGS, Echo())
    app = QuartTrio(__name__)

    @app.route("/socket.io/", methods=["GET", "POST", "PUT", "OPTIONS"])
    async def socketio_polling() -> Response:
        return await quart_engineio_polling(socketio)

    @app.route("/engine.io/", methods=["GET", "POST", "PUT", "OPTIONS"])
    async def engineio_polling() -> Response:
        return await quart_engineio_polling(engineio)

    # Upgrades that arrive on a reused keep-alive connection (aiohttp, python-socketio) reach
    # the ASGI app instead of the native listener: serve them here, the same way.
    @app.websocket("/socket.io/")
    async def socketio_websocket() -> Response | None:
        return await quart_engineio_websocket(socketio, max_bytes=2**22, max_frames=1024)

    @app.websocket("/engine.io/")
    async def engineio_websocket() -> Response | None:
        return await quart_engineio_websocket(engineio, max_bytes=2**22, max_frames=1024)

    return app, socketio, engineio


async def run(port: int, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
    app, socketio, engineio = build()
    config = ListenerConfig(
        host="127.0.0.1",
        port=port,
        websocket_paths={
            "/socket.io/": native_engineio_handler(socketio),
            "/engine.io/": native_engineio_handler(engineio),
        },
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(socketio.run)
        await nursery.start(engineio.run)
        _host, bound = await nursery.start(
            lambda task_status: serve(app, config, task_status=task_status)
        )
        task_status.started(bound)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=3000)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    async def serve_forever() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(run, args.port)
            print(f"conformance app listening on http://127.0.0.1:{port}", flush=True)

    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve_forever)


if __name__ == "__main__":
    main()
