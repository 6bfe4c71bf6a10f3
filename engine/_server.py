"""The standalone server: one engine, one port.

Websocket upgrades to `/ws` are served natively by our listener (encode-once frames written by
synchronous non-blocking sends); every other request goes to Hypercorn running the Quart-Trio
app (REST, health, metrics, webhooks). `serve` reports `(engine, (host, port))` through
`task_status` once it accepts connections; cancelling it shuts down cleanly (clients get 1001).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

import trio

from omnirelay.protocol._errors import RemoteProtocolError
from omnirelay.protocol._json import dumps

from ._app import create_app
from ._auth import AuthError, token_from_request
from ._config import Config
from ._connections import ConnectionLimitExceeded
from ._engine import Engine, open_engine
from ._listener import ListenerConfig, NativeWebSocket, WebSocketHandler
from ._listener import serve as serve_listener
from ._transports import NativeTransport, native_engineio_handler
from ._ws_endpoint import EnvelopeConnection, parse_since

__all__ = ["serve"]

logger = logging.getLogger("omnirelay.engine.server")


def _error_body(code: str, message: str) -> bytes:
    return dumps({"error": {"code": code, "message": message}}).encode()


def envelope_handler(engine: Engine) -> WebSocketHandler:
    """The native handler of the plain WebSocket path."""

    async def handle(ws: NativeWebSocket) -> None:
        head = ws.head
        token = token_from_request(
            {k.decode("latin-1"): v.decode("latin-1") for k, v in head.headers},
            {"token": head.query("token") or ""},
        )
        try:
            principal = engine.auth.verify(token)
        except AuthError as exc:
            await ws.reject(401, _error_body(exc.code, exc.message))
            return
        try:
            since = parse_since(head.query("since"))
        except RemoteProtocolError as exc:
            await ws.reject(400, _error_body(exc.code, str(exc)))
            return
        remote = f"{head.client[0]}:{head.client[1]}" if head.client else None
        try:
            connection = EnvelopeConnection.open(
                engine, principal, remote=remote, transport_name="websocket"
            )
        except ConnectionLimitExceeded as exc:
            engine.metrics.limits.labels("connections").inc()
            await ws.reject(429, _error_body(exc.code, str(exc)))
            return
        try:
            await ws.accept()
        except BaseException:
            connection.abandon()
            raise
        await connection.serve(NativeTransport(ws), since=since)

    return handle


async def serve(
    config: Config,
    *,
    plugins: Iterable[str | object] = (),
    task_status: trio.TaskStatus[tuple[Engine, tuple[str, int]]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the gateway until cancelled (see the module docstring)."""
    async with open_engine(config, plugins=plugins) as engine:
        app = create_app(engine)
        listener = ListenerConfig(
            host=config.server.host,
            port=config.server.port,
            websocket_paths={
                config.websocket.path: envelope_handler(engine),
                config.socketio.path: native_engineio_handler(engine.socketio),
            },
            request_head_timeout=config.server.request_head_timeout,
            max_message_size=config.websocket.max_message_size,
            max_buffer=config.clients.inbox_bytes,
            max_queued_frames=config.clients.inbox_frames,
            graceful_timeout=config.server.graceful_timeout,
        )

        async def run_listener(*, task_status: trio.TaskStatus[tuple[str, int]]) -> None:
            await serve_listener(app, listener, task_status=task_status)

        async with trio.open_nursery() as nursery:
            bound: tuple[str, int] = await nursery.start(run_listener)
            logger.info("omnirelay listening on http://%s:%d", *bound)
            task_status.started((engine, bound))
