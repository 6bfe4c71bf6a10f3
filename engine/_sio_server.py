"""Socket.IO v5 server runtime: namespaces and sockets over `EngineIOServer` sessions.

`SocketIOServer` is the `EngineHandler` of an Engine.IO endpoint. Each Engine.IO session gets a
`SocketServerConnection` (the sans-IO namespace state of `omnirelay.protocol`); each namespace
it joins becomes a `Socket`, handed to that namespace's `NamespaceHandler`:

* `on_connect(socket, auth)`: raise `ConnectRefused(message, data)` to refuse (the client sees
  `connect_error`); emits made here go out after the CONNECT reply;
* `on_event(socket, name, args, ack)`: `ack` is None unless the client asked for one; runs as
  a task of its own (it may await, even `socket.call`); an exception in it closes that
  connection and is logged;
* `on_disconnect(socket, reason)`: synchronous cleanup, called exactly once per socket (also
  when `on_connect` refused or failed, so it must cope with a half-set-up socket).

A CONNECT to a namespace no handler serves is refused with `Invalid namespace`. A packet that
breaks the protocol closes the whole Engine.IO session, as the reference server does. Sending
never blocks (see `EngineConnection.send`).
"""

from __future__ import annotations

import functools
import logging
import secrets
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import trio

from omnirelay.protocol._errors import LocalProtocolError, RemoteProtocolError
from omnirelay.protocol._socketio import SocketPacket, SocketPacketType, encode_socket_packet
from omnirelay.protocol._socketio_connection import (
    AckReceived,
    ConnectRequested,
    Disconnected,
    EventReceived,
    SocketServerConnection,
)

from ._eio_server import EngineConnection
from ._frames import OutFrame

__all__ = ["Ack", "ConnectRefused", "NamespaceHandler", "Socket", "SocketIOServer"]

logger = logging.getLogger("omnirelay.engine.socketio")


class ConnectRefused(Exception):
    """Raised by `on_connect` to refuse: the client's `connect_error` gets `message` and `data`."""

    def __init__(self, message: str, data: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.data = data


class NamespaceHandler(Protocol):
    async def on_connect(self, socket: Socket, auth: dict[str, Any] | None) -> None: ...

    async def on_event(
        self, socket: Socket, name: str | int | float, args: tuple[Any, ...], ack: Ack | None
    ) -> None: ...

    def on_disconnect(self, socket: Socket, reason: str) -> None: ...


class _State:
    __slots__ = ("protocol", "sockets")

    def __init__(self, max_attachments: int) -> None:
        self.protocol = SocketServerConnection(max_attachments=max_attachments)
        self.sockets: dict[str, Socket] = {}


class Socket:
    """One client in one namespace."""

    __slots__ = (
        "_buffer",
        "_waiters",
        "connected",
        "data",
        "engine",
        "handler",
        "namespace",
        "pid",
        "sid",
    )

    def __init__(self, engine: EngineConnection, namespace: str, handler: NamespaceHandler) -> None:
        self.engine = engine
        self.namespace = namespace
        self.handler = handler
        self.sid = secrets.token_urlsafe(15)  # a handler may restore an earlier one (recovery)
        self.pid: str | None = None  # the recovery session id sent in the CONNECT reply, if any
        self.connected = False
        self.data: dict[str, Any] = {}  # the namespace handler's own per-socket state
        # Emits and frames (a recovery's replay) made before the CONNECT reply went out.
        self._buffer: list[str | bytes | tuple[OutFrame, ...]] = []
        self._waiters: dict[int, trio.MemorySendChannel[tuple[Any, ...]]] = {}

    @property
    def _protocol(self) -> SocketServerConnection:
        state = self.engine.state
        assert isinstance(state, _State)
        return state.protocol

    def _send(self, messages: list[str | bytes]) -> bool:
        if not self.connected:
            self._buffer.extend(messages)
            return True
        ok = True
        for message in messages:
            ok = self.engine.send(message) and ok
        return ok

    def emit(self, event: str, *args: Any) -> bool:
        """Emit to this socket now; False if its buffer is full (nothing was queued then)."""
        if self.connected and self.namespace not in self._protocol.connected:
            return False
        messages, _ = self._emit(event, args, ack=False)
        return self._send(messages)

    def _emit(
        self, event: str, args: tuple[Any, ...], *, ack: bool
    ) -> tuple[list[str | bytes], int | None]:
        protocol = self._protocol
        if not self.connected:
            # Not admitted yet: encode now, queue until the CONNECT reply is out.
            packet = SocketPacket(SocketPacketType.EVENT, self.namespace, [event, *args])
            return encode_socket_packet(packet), None
        return protocol.emit(self.namespace, event, args, ack=ack)

    async def call(self, event: str, *args: Any, within: float = 10.0) -> tuple[Any, ...]:
        """Emit and wait for the client's ack; TooSlowError after `within` seconds."""
        if not self.connected:
            raise LocalProtocolError("call() needs a connected socket")
        messages, ack_id = self._protocol.emit(self.namespace, event, args, ack=True)
        assert ack_id is not None
        send, receive = trio.open_memory_channel[tuple[Any, ...]](1)
        self._waiters[ack_id] = send
        try:
            self._send(messages)
            with trio.fail_after(within):
                return await receive.receive()
        finally:
            self._waiters.pop(ack_id, None)
            self._protocol.forget_ack(self.namespace, ack_id)

    def send_frame(self, frame: OutFrame) -> bool:
        """A pre-encoded EVENT frame of this namespace (the hub's encode-once path); before the
        CONNECT reply it is kept and sent right after it."""
        return self.send_frames((frame,))

    def send_frames(self, frames: Sequence[OutFrame]) -> bool:
        """`send_frame` for one event's frames: all of them or none."""
        if not self.connected:
            self._buffer.append(tuple(frames))
            return True
        return self.engine.send_frames(frames)

    def disconnect(self) -> None:
        """Remove the client from this namespace (it will not reconnect by itself)."""
        protocol = self._protocol
        if self.namespace in protocol.connected:
            for message in protocol.disconnect(self.namespace):
                self.engine.send(message)
        self._closed("server namespace disconnect")

    def close_transport(self, *, slow: bool = False) -> None:
        """Drop the whole connection: the client reconnects by itself (and, `slow`, recovers
        what was still queued for it, which is dropped rather than sent first)."""
        self.engine.close("forced close", discard=slow)

    def _closed(self, reason: str) -> None:
        state = self.engine.state
        if isinstance(state, _State) and state.sockets.get(self.namespace) is self:
            del state.sockets[self.namespace]
            self.connected = False
            self.handler.on_disconnect(self, reason)


class Ack:
    """The client's acknowledgement callback: call it once with the answer's arguments."""

    __slots__ = ("_done", "ack_id", "socket")

    def __init__(self, socket: Socket, ack_id: int) -> None:
        self.socket = socket
        self.ack_id = ack_id
        self._done = False

    def __call__(self, *args: Any) -> None:
        if self._done:
            return
        self._done = True
        socket = self.socket
        if socket.namespace in socket._protocol.connected:
            for message in socket._protocol.ack(socket.namespace, self.ack_id, args):
                socket.engine.send(message)


class SocketIOServer:
    """The Socket.IO layer of one Engine.IO endpoint (see the module docstring)."""

    def __init__(
        self,
        namespaces: Mapping[str, NamespaceHandler],
        *,
        max_attachments: int = 10,
        on_protocol_error: Callable[[EngineConnection, RemoteProtocolError], None] | None = None,
    ) -> None:
        self.namespaces = dict(namespaces)
        self.max_attachments = max_attachments
        self._on_protocol_error = on_protocol_error

    async def opened(self, connection: EngineConnection) -> None:
        connection.state = _State(self.max_attachments)

    async def message(self, connection: EngineConnection, data: str | bytes) -> None:
        state = connection.state
        assert isinstance(state, _State)
        try:
            events = state.protocol.receive(data)
        except RemoteProtocolError as exc:
            if self._on_protocol_error is not None:
                self._on_protocol_error(connection, exc)
            connection.close("parse error")
            return
        for event in events:
            if isinstance(event, ConnectRequested):
                await self._connect(connection, state, event)
            elif isinstance(event, EventReceived):
                socket = state.sockets.get(event.namespace)
                if socket is not None:
                    # Each event handler runs as its own task, as in the reference server: a
                    # handler waiting (for the store, for a client's ack) never stalls the
                    # connection, and the ack it waits for can arrive.
                    ack = Ack(socket, event.ack_id) if event.ack_id is not None else None
                    connection.server.spawn(
                        connection,
                        functools.partial(
                            socket.handler.on_event, socket, event.name, event.args, ack
                        ),
                    )
            elif isinstance(event, AckReceived):
                socket = state.sockets.get(event.namespace)
                waiter = socket._waiters.get(event.ack_id) if socket is not None else None
                if waiter is not None:
                    waiter.send_nowait(event.args)
            elif isinstance(event, Disconnected):
                socket = state.sockets.get(event.namespace)
                if socket is not None:
                    socket._closed("client namespace disconnect")

    async def _connect(
        self, connection: EngineConnection, state: _State, event: ConnectRequested
    ) -> None:
        protocol = state.protocol
        handler = self.namespaces.get(event.namespace)
        if handler is None:
            for message in protocol.reject(event.namespace, "Invalid namespace"):
                connection.send(message)
            return
        socket = Socket(connection, event.namespace, handler)
        try:
            await handler.on_connect(socket, event.auth)
        except ConnectRefused as refused:
            handler.on_disconnect(socket, "connect refused")
            for message in protocol.reject(event.namespace, refused.message, refused.data):
                connection.send(message)
            return
        except BaseException:
            handler.on_disconnect(socket, "connect failed")  # undo what it registered
            raise
        if connection.session.closed or event.namespace not in protocol.pending:
            handler.on_disconnect(socket, "transport close")
            return
        for message in protocol.accept(event.namespace, socket.sid, pid=socket.pid):
            connection.send(message)
        state.sockets[event.namespace] = socket
        socket.connected = True
        buffered, socket._buffer = socket._buffer, []
        for item in buffered:
            sent = (
                connection.send_frames(item) if isinstance(item, tuple) else connection.send(item)
            )
            if not sent:
                connection.close("slow consumer")  # what was buffered does not fit: reconnect
                return

    def closed(self, connection: EngineConnection, reason: str) -> None:
        state = connection.state
        if isinstance(state, _State):
            for socket in list(state.sockets.values()):
                socket._closed(reason)
