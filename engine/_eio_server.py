"""Engine.IO v4 server runtime: the sans-IO sessions of `omnirelay.protocol` driven over trio.

One `EngineIOServer` per endpoint path (`/socket.io/`, the conformance app's `/engine.io/`). It
keeps the sessions by sid and runs one timer task per session in its own nursery. Transports:

* HTTP long-polling: `handle_polling` is called by an HTTP route (Quart, standalone or
  embedded) with the request's method, query, headers and body, and returns an `HttpReply`;
* websocket: `handle_websocket` is called by the native listener or the ASGI route with
  `accept`/`reject` callables, for a new session or to upgrade a polling one.

The layer above (Socket.IO) is an `EngineHandler`: told when a session opens, gets each message,
told once when it closes. It sends with `EngineConnection.send` (message data) or `send_frame`
(a pre-encoded `OutFrame` shared by many receivers: on websocket its cached bytes are written
as is). Sending never blocks; it returns False when the connection's buffer (`max_buffer`
bytes) is full, and the caller applies its slow-consumer policy.

Errors to HTTP clients follow the reference server: status 400 with a JSON body
`{"code": n, "message": "..."}` (0 unknown transport, 1 unknown session id, 2 bad handshake
method, 3 bad request, 5 unsupported protocol version).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import attrs
import trio

from omnirelay.protocol._engineio_session import (
    EngineClosed,
    EngineEvent,
    EngineMessage,
    EngineServerSession,
    EngineUpgraded,
)
from omnirelay.protocol._errors import RemoteProtocolError
from omnirelay.protocol._json import dumps

from ._frames import OutFrame
from ._transports import TransportClosed

__all__ = [
    "EngineConnection",
    "EngineHandler",
    "EngineIOServer",
    "EngineIOSettings",
    "HttpReply",
    "RequestInfo",
    "WebSocketTransport",
]

logger = logging.getLogger("omnirelay.engine.engineio")

TEXT = "text/plain; charset=UTF-8"


class WebSocketTransport(Protocol):
    """A websocket as the Engine.IO server needs it (native or ASGI)."""

    def send_frame_nowait(self, frame: OutFrame) -> bool: ...

    def send_frames_nowait(self, frames: Sequence[OutFrame]) -> bool: ...

    def send_text_nowait(self, text: str) -> bool: ...

    def send_bytes_nowait(self, data: bytes) -> bool: ...

    @property
    def buffered(self) -> int: ...

    def set_on_drained(self, callback: Callable[[], None] | None) -> None: ...

    def discard_queued(self) -> None: ...

    async def receive(self) -> str | bytes:
        """The next message; raises TransportClosed when the client is gone."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


@attrs.frozen
class EngineIOSettings:
    ping_interval: float = 25.0
    ping_timeout: float = 20.0
    max_payload: int = 1_000_000
    upgrade_timeout: float = 10.0
    max_buffer: int = 4 * 1024 * 1024
    max_frames: int = 1024


@attrs.frozen
class RequestInfo:
    """What the handshake request said: lower-cased headers, query, peer address."""

    headers: Mapping[str, str]
    query: Mapping[str, str]
    remote: str | None


@attrs.frozen
class HttpReply:
    status: int
    body: str
    content_type: str = TEXT
    headers: tuple[tuple[str, str], ...] = ()


class EngineHandler(Protocol):
    async def opened(self, connection: EngineConnection) -> None: ...

    async def message(self, connection: EngineConnection, data: str | bytes) -> None: ...

    def closed(self, connection: EngineConnection, reason: str) -> None: ...


def _error(code: int, message: str, status: int = 400) -> HttpReply:
    return HttpReply(status, dumps({"code": code, "message": message}), "application/json")


class EngineConnection:
    """One Engine.IO session and whatever transport currently carries it."""

    def __init__(
        self, server: EngineIOServer, session: EngineServerSession, info: RequestInfo
    ) -> None:
        self.server = server
        self.session = session
        self.info = info
        self.ws: WebSocketTransport | None = None
        self.lock = trio.Lock()  # incoming messages are handled one at a time, in order
        self.closed = trio.Event()
        self.state: object = None  # the layer above keeps its per-connection state here
        self._poll_wakeup = trio.Event()
        self._rearm = trio.Event()
        self._queued = 0  # characters waiting for the next GET
        self._queued_frames = 0
        #: Called when the transport has written out a backlog (the layer above may send its
        #: held frames): after a GET took the queue, or when the websocket's writer caught up.
        self.drain_listeners: list[Callable[[], None]] = []
        self._reported = False
        self._ws_scope: trio.CancelScope | None = None
        self._drained = trio.Event()  # a closed polling session's last GET was answered

    @property
    def sid(self) -> str:
        return self.session.sid

    @property
    def transport(self) -> str:
        return self.session.transport

    @property
    def backlog(self) -> int:
        """What was sent and not yet written out to the client (0 when it keeps up)."""
        if self.ws is not None and self.session.transport == "websocket":
            return self.ws.buffered
        return self._queued

    def _attach_websocket(self, transport: WebSocketTransport) -> None:
        self.ws = transport
        self._queued = self._queued_frames = 0
        transport.set_on_drained(self._notify_drained)

    def _polled(self) -> None:
        self._queued = self._queued_frames = 0
        self._notify_drained()

    def _notify_drained(self) -> None:
        for listener in tuple(self.drain_listeners):
            listener()

    # -- sending (never blocks) ------------------------------------------------------------

    def send(self, data: str | bytes) -> bool:
        """Send Engine.IO message data (what the Socket.IO encoder returns)."""
        if self.session.closed:
            return False
        if self.ws is not None and self.session.transport == "websocket":
            self._write_control()
            if isinstance(data, bytes):
                return self.ws.send_bytes_nowait(data)
            return self.ws.send_text_nowait("4" + data)
        settings = self.server.settings
        if (
            self._queued + len(data) > settings.max_buffer
            or self._queued_frames >= settings.max_frames
        ):
            return False
        self.session.send(data)
        self._queued += len(data)
        self._queued_frames += 1
        self._poll_wakeup.set()
        return True

    def send_frame(self, frame: OutFrame) -> bool:
        """Send an Engine.IO text frame encoded once for many receivers."""
        return self.send_frames((frame,))

    def send_frames(self, frames: Sequence[OutFrame]) -> bool:
        """Send frames that go together (one event's) all or none."""
        if self.session.closed:
            return False
        if self.ws is not None and self.session.transport == "websocket":
            self._write_control()
            return self.ws.send_frames_nowait(frames)
        settings = self.server.settings
        size = sum(len(frame.text) for frame in frames)
        if (
            self._queued + size > settings.max_buffer
            or self._queued_frames + len(frames) > settings.max_frames
        ):
            return False
        for frame in frames:
            self.session.send_frame(frame.text)
        self._queued += size
        self._queued_frames += len(frames)
        self._poll_wakeup.set()
        return True

    def flush(self) -> None:
        """Hand what the session queued (pings, the handshake, a farewell) to the transport."""
        if self.ws is not None and self.session.transport == "websocket":
            self._write_control()
        else:
            self._poll_wakeup.set()

    def _write_control(self) -> None:
        assert self.ws is not None
        for frame in self.session.take_outgoing():
            if isinstance(frame, bytes):
                self.ws.send_bytes_nowait(frame)
            else:
                self.ws.send_text_nowait(frame)

    def close(self, reason: str = "forced close", *, discard: bool = False) -> None:
        """End the session from our side. What is queued still goes out first, unless
        `discard` (a client dropped as too slow: it recovers what it missed, and the backlog
        would only delay the close): then the websocket's unsent frames are dropped."""
        if discard and self.ws is not None and self.session.transport == "websocket":
            self.ws.discard_queued()
        if not self.session.closed:
            self.session.close(reason)
        self._finish(self.session.closed_reason or reason)

    def _finish(self, reason: str) -> None:
        self.flush()
        self._rearm.set()
        if self._ws_scope is not None:
            self._ws_scope.cancel()  # the websocket task closes its transport
        if not self._reported:
            self._reported = True
            self.closed.set()
            self.server.handler.closed(self, reason)

    async def _handle(self, events: list[EngineEvent]) -> None:
        for event in events:
            if isinstance(event, EngineMessage):
                await self.server.handler.message(self, event.data)
            elif isinstance(event, EngineClosed):
                self._finish(event.reason)
            elif isinstance(event, EngineUpgraded):
                self._poll_wakeup.set()  # a GET still waiting is answered with noop
        self.flush()

    async def wait_poll_ready(self) -> None:
        while not self.session.poll_ready():
            await self._poll_wakeup.wait()
            self._poll_wakeup = trio.Event()


class EngineIOServer:
    """All Engine.IO sessions of one endpoint (see the module docstring)."""

    def __init__(
        self,
        settings: EngineIOSettings,
        handler: EngineHandler,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.clock = clock
        self.connections: dict[str, EngineConnection] = {}
        self._nursery: trio.Nursery | None = None

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Own the session timers until cancelled; then close every session."""
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                task_status.started()
                await trio.sleep_forever()
        finally:
            self._nursery = None
            for connection in list(self.connections.values()):
                connection.close("server shutting down")

    def spawn(self, connection: EngineConnection, fn: Callable[[], Awaitable[None]]) -> None:
        """Run `fn` as a task of its own for `connection` (a handler that may wait, e.g. for a
        client's ack). An exception in it is logged with its traceback and closes that
        connection only: one client's failure must not take the endpoint down."""

        async def guarded() -> None:
            try:
                await fn()
            except Exception:
                logger.exception("handler failed for session %s; closing it", connection.sid)
                connection.close("internal error")

        if self._nursery is None or connection.session.closed:
            return
        self._nursery.start_soon(guarded)

    # -- sessions --------------------------------------------------------------------------

    def _new_session(self, transport: str, info: RequestInfo) -> EngineConnection:
        if self._nursery is None:
            raise RuntimeError("EngineIOServer.run is not running")
        session = EngineServerSession(
            secrets.token_urlsafe(15),
            transport="polling" if transport == "polling" else "websocket",
            now=self.clock(),
            ping_interval=self.settings.ping_interval,
            ping_timeout=self.settings.ping_timeout,
            max_payload=self.settings.max_payload,
            upgrade_timeout=self.settings.upgrade_timeout,
        )
        connection = EngineConnection(self, session, info)
        self.connections[session.sid] = connection
        self._nursery.start_soon(self._timer, connection)
        return connection

    async def _timer(self, connection: EngineConnection) -> None:
        session = connection.session
        try:
            while not session.closed:
                deadline = session.next_deadline()
                with trio.move_on_at(deadline if deadline is not None else float("inf")):
                    await connection._rearm.wait()
                connection._rearm = trio.Event()
                events = session.handle_timeout(self.clock())
                async with connection.lock:
                    await connection._handle(events)
            # Closed by us on polling: the client may still collect the farewell `1` with one
            # more GET within a ping timeout; after that the sid is forgotten.
            if session.transport == "polling" and session.has_outgoing:
                with trio.move_on_after(self.settings.ping_timeout):
                    await connection._drained.wait()
        finally:
            self.connections.pop(session.sid, None)
            connection._finish(session.closed_reason or "server shutting down")

    # -- HTTP long-polling -----------------------------------------------------------------

    def _check_query(self, query: Mapping[str, str], *, websocket: bool) -> HttpReply | None:
        if query.get("EIO") != "4":
            return _error(5, "Unsupported protocol version")
        transport = query.get("transport")
        if transport not in ("polling", "websocket"):
            return _error(0, "Transport unknown")
        if transport == "websocket" and not websocket:
            return _error(3, "Bad request")
        if transport == "polling" and websocket:
            return _error(3, "Bad request")
        return None

    async def handle_polling(
        self,
        method: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        read_body: Callable[[], Awaitable[bytes]],
        remote: str | None,
    ) -> HttpReply:
        """Answer one long-polling request (CORS headers are the HTTP route's business)."""
        if method == "OPTIONS":
            return HttpReply(204, "")  # the preflight: the route adds the CORS headers
        problem = self._check_query(query, websocket=False)
        if problem is not None:
            return problem
        sid = query.get("sid")
        if sid is None:
            if method != "GET":
                return _error(2, "Bad handshake method")
            connection = self._new_session("polling", RequestInfo(headers, query, remote))
            await self.handler.opened(connection)
            return await self._poll(connection)
        existing = self.connections.get(sid)
        if existing is None:
            return _error(1, "Session ID unknown")
        if method == "GET":
            return await self._poll(existing)
        if method == "POST":
            return await self._post(existing, read_body)
        return _error(3, "Bad request")

    async def _poll(self, connection: EngineConnection) -> HttpReply:
        session = connection.session
        try:
            session.begin_poll()
        except RemoteProtocolError as exc:
            if session.closed:
                connection._finish(session.closed_reason or exc.code)
            return _error(3 if exc.code != "session_closed" else 1, str(exc))
        answered = False
        try:
            await connection.wait_poll_ready()
            body = session.end_poll()
            answered = True
            connection._polled()
            if session.closed:
                connection._finish(session.closed_reason or "forced close")
                connection._drained.set()
            return HttpReply(200, body)
        finally:
            if not answered and session.poll_pending:
                # The client went away before the answer (an aborted GET): the session ends.
                events = session.abort_poll()
                with trio.CancelScope(shield=True):
                    await connection._handle(events)

    async def _post(
        self, connection: EngineConnection, read_body: Callable[[], Awaitable[bytes]]
    ) -> HttpReply:
        session = connection.session
        body = await read_body()
        async with connection.lock:
            try:
                events = session.receive_post(body, self.clock())
            except RemoteProtocolError as exc:
                if session.closed:
                    connection._finish(session.closed_reason or exc.code)
                status = 413 if exc.code == "payload_too_large" else 400
                return _error(3 if exc.code != "session_closed" else 1, str(exc), status)
            await connection._handle(events)
        connection._rearm.set()  # a pong moves the next ping
        return HttpReply(200, "ok")

    # -- websocket -------------------------------------------------------------------------

    async def handle_websocket(
        self,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        remote: str | None,
        accept: Callable[[], Awaitable[WebSocketTransport]],
        reject: Callable[[int, str], Awaitable[None]],
    ) -> None:
        """Serve one websocket request from handshake to close (new session or upgrade)."""
        problem = self._check_query(query, websocket=True)
        if problem is not None:
            await reject(problem.status, problem.body)
            return
        sid = query.get("sid")
        if sid is None:
            transport = await accept()
            connection = self._new_session("websocket", RequestInfo(headers, query, remote))
            connection._attach_websocket(transport)
            connection.flush()
            await self.handler.opened(connection)
            await self._serve_websocket(connection, transport)
            return
        existing = self.connections.get(sid)
        if existing is None:
            await reject(400, dumps({"code": 1, "message": "Session ID unknown"}))
            return
        connection = existing
        try:
            connection.session.begin_upgrade(self.clock())
        except RemoteProtocolError:
            # The reference server answers the upgrade and closes it: the session goes on.
            transport = await accept()
            await transport.close(1008, "session already upgraded")
            return
        connection._rearm.set()
        transport = await accept()
        try:
            upgraded = await self._probe(connection, transport)
        except TransportClosed:
            connection.session.abort_upgrade()
            return
        if upgraded:
            await self._serve_websocket(connection, transport)

    async def _probe(self, connection: EngineConnection, transport: WebSocketTransport) -> bool:
        session = connection.session
        while True:
            frame = await transport.receive()
            async with connection.lock:
                try:
                    events = session.receive_probe_frame(frame, self.clock())
                except RemoteProtocolError:
                    await transport.close(1002, "upgrade failed")
                    return False
                for answer in session.take_probe_outgoing():
                    if isinstance(answer, str):
                        transport.send_text_nowait(answer)
                if any(isinstance(e, EngineUpgraded) for e in events):
                    connection._attach_websocket(transport)
                    await connection._handle(events)
                    return True
                connection.flush()  # a waiting GET is released with noop

    async def _serve_websocket(
        self, connection: EngineConnection, transport: WebSocketTransport
    ) -> None:
        session = connection.session
        code, reason = 1000, ""
        with trio.CancelScope() as scope:
            connection._ws_scope = scope
            if session.closed:
                scope.cancel()
            while True:
                try:
                    frame = await transport.receive()
                except TransportClosed:
                    async with connection.lock:
                        if not session.closed:
                            session.close("transport close")
                            connection._finish("transport close")
                    return
                async with connection.lock:
                    try:
                        events = session.receive_frame(frame, self.clock())
                    except RemoteProtocolError as exc:
                        code = 1009 if exc.code == "payload_too_large" else 1002
                        reason = exc.code
                        connection._ws_scope = None
                        connection._finish(session.closed_reason or exc.code)
                        break
                    await connection._handle(events)
                connection._rearm.set()
        connection._ws_scope = None
        if session.closed_reason == "server shutting down":
            code, reason = 1001, "server shutting down"
        elif session.closed_reason == "ping timeout":
            code, reason = 1002, "ping timeout"
        with trio.CancelScope(shield=True), trio.move_on_after(2):
            await transport.close(code, reason)
