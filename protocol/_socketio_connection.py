"""Socket.IO v5 namespace state for one Engine.IO session, in the server and the client role.

Both objects consume Engine.IO message data (`receive_text` / `receive_binary`) and return
events; their methods that send return the Engine.IO message data to pass to the session's
`send`, in order. Nothing here knows about rooms, auth or handlers: the server reports a
`ConnectRequested` and the caller answers `accept` or `reject`.

Server rules (those of the reference server, which closes the whole connection on them): a
CONNECT for a namespace already connected or pending, any other packet for a namespace not
connected, or a CONNECT_ERROR from a client, is a RemoteProtocolError. An ACK for an id we are
not waiting for is ignored (it may answer an emit whose wait we gave up). A client DISCONNECT
from the last namespace leaves the Engine.IO session open.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._socketio import SocketPacket, SocketPacketDecoder, SocketPacketType, encode_socket_packet

__all__ = [
    "AckReceived",
    "ConnectRefused",
    "ConnectRequested",
    "Connected",
    "Disconnected",
    "EventReceived",
    "SocketClientConnection",
    "SocketEvent",
    "SocketServerConnection",
]

Message = str | bytes


@attrs.frozen
class ConnectRequested:
    """Server role: the client asks to join `namespace` with this auth payload (None if none)."""

    namespace: str
    auth: dict[str, Any] | None


@attrs.frozen
class Connected:
    """Client role: the server accepted us into `namespace`."""

    namespace: str
    sid: str
    pid: str | None = None


@attrs.frozen
class ConnectRefused:
    """Client role: CONNECT_ERROR; `data` is usually `{"message": ...}`."""

    namespace: str
    data: dict[str, Any] | str


@attrs.frozen
class EventReceived:
    """The peer emitted `name` with `args`; answer with `ack` if `ack_id` is not None."""

    namespace: str
    name: str | int | float
    args: tuple[Any, ...]
    ack_id: int | None = None


@attrs.frozen
class AckReceived:
    """The peer acknowledged our emit number `ack_id`."""

    namespace: str
    ack_id: int
    args: tuple[Any, ...]


@attrs.frozen
class Disconnected:
    """The peer left `namespace` (or, client role, the server removed us from it)."""

    namespace: str


SocketEvent = (
    ConnectRequested | Connected | ConnectRefused | EventReceived | AckReceived | Disconnected
)


def _encode(packet: SocketPacket) -> list[Message]:
    return encode_socket_packet(packet)


class _Base:
    __slots__ = ("_decoder", "_next_ack", "_owed", "_waiting", "connected")

    def __init__(self, max_attachments: int) -> None:
        self._decoder = SocketPacketDecoder(max_attachments=max_attachments)
        self.connected: dict[str, str] = {}  # namespace -> socket id
        self._next_ack = 0
        self._waiting: set[tuple[str, int]] = set()  # acks we asked for
        self._owed: set[tuple[str, int]] = set()  # acks the peer asked for

    def receive_text(self, text: str) -> list[SocketEvent]:
        packet = self._decoder.receive_text(text)
        return [] if packet is None else self._receive(packet)

    def receive_binary(self, data: bytes) -> list[SocketEvent]:
        packet = self._decoder.receive_binary(data)
        return [] if packet is None else self._receive(packet)

    def receive(self, data: str | bytes) -> list[SocketEvent]:
        """Engine.IO message data, text or binary."""
        if isinstance(data, str):
            return self.receive_text(data)
        return self.receive_binary(data)

    def emit(
        self, namespace: str, event: str, args: Sequence[Any] = (), *, ack: bool = False
    ) -> tuple[list[Message], int | None]:
        """Emit `event` with `args` on a connected namespace.

        Returns the messages to send and, when `ack` is asked, the ack id an `AckReceived`
        will carry.
        """
        self._require(namespace)
        ack_id = None
        if ack:
            ack_id = self._next_ack
            self._next_ack += 1
            self._waiting.add((namespace, ack_id))
        packet = SocketPacket(SocketPacketType.EVENT, namespace, [event, *args], ack_id)
        return _encode(packet), ack_id

    def ack(self, namespace: str, ack_id: int, args: Sequence[Any] = ()) -> list[Message]:
        """Answer the peer's emit number `ack_id` (once)."""
        if (namespace, ack_id) not in self._owed:
            raise LocalProtocolError(f"no ack {ack_id} is owed on {namespace}")
        self._owed.discard((namespace, ack_id))
        return _encode(SocketPacket(SocketPacketType.ACK, namespace, list(args), ack_id))

    def forget_ack(self, namespace: str, ack_id: int) -> None:
        """Stop waiting for ack `ack_id` (timed out); a late answer is then ignored."""
        self._waiting.discard((namespace, ack_id))

    def _require(self, namespace: str) -> None:
        if namespace not in self.connected:
            raise LocalProtocolError(f"namespace {namespace} is not connected")

    def _drop(self, namespace: str) -> None:
        self.connected.pop(namespace, None)
        self._waiting = {w for w in self._waiting if w[0] != namespace}
        self._owed = {o for o in self._owed if o[0] != namespace}

    def _event_or_ack(self, packet: SocketPacket) -> list[SocketEvent]:
        kind = packet.type
        if kind in (SocketPacketType.EVENT, SocketPacketType.BINARY_EVENT):
            name, *args = packet.data
            if packet.id is not None:
                self._owed.add((packet.namespace, packet.id))
            return [EventReceived(packet.namespace, name, tuple(args), packet.id)]
        assert packet.id is not None
        key = (packet.namespace, packet.id)
        if key not in self._waiting:
            return []
        self._waiting.discard(key)
        return [AckReceived(packet.namespace, packet.id, tuple(packet.data))]

    def _receive(self, packet: SocketPacket) -> list[SocketEvent]:
        raise NotImplementedError


class SocketServerConnection(_Base):
    """The server's view of one client: its namespaces, owed and awaited acks."""

    __slots__ = ("_pending",)

    def __init__(self, *, max_attachments: int = 10) -> None:
        super().__init__(max_attachments)
        self._pending: set[str] = set()

    @property
    def pending(self) -> frozenset[str]:
        """Namespaces whose CONNECT awaits `accept` or `reject`."""
        return frozenset(self._pending)

    def accept(self, namespace: str, sid: str, *, pid: str | None = None) -> list[Message]:
        """Admit the client into `namespace` under socket id `sid` (and session `pid`)."""
        if namespace not in self._pending:
            raise LocalProtocolError(f"no CONNECT to {namespace} is pending")
        self._pending.discard(namespace)
        self.connected[namespace] = sid
        data = {"sid": sid} if pid is None else {"sid": sid, "pid": pid}
        return _encode(SocketPacket(SocketPacketType.CONNECT, namespace, data))

    def reject(self, namespace: str, message: str, data: Any = None) -> list[Message]:
        """Refuse the CONNECT: the client sees `connect_error` with this message (and data)."""
        if namespace not in self._pending:
            raise LocalProtocolError(f"no CONNECT to {namespace} is pending")
        self._pending.discard(namespace)
        return self.refuse(namespace, message, data)

    @staticmethod
    def refuse(namespace: str, message: str, data: Any = None) -> list[Message]:
        """A CONNECT_ERROR for a namespace that was never pending (e.g. unknown namespace)."""
        body: dict[str, Any] = {"message": message}
        if data is not None:
            body["data"] = data
        return _encode(SocketPacket(SocketPacketType.CONNECT_ERROR, namespace, body))

    def disconnect(self, namespace: str) -> list[Message]:
        """Remove the client from `namespace`; it will not reconnect to it by itself."""
        self._require(namespace)
        self._drop(namespace)
        return _encode(SocketPacket(SocketPacketType.DISCONNECT, namespace))

    def _receive(self, packet: SocketPacket) -> list[SocketEvent]:
        kind, namespace = packet.type, packet.namespace
        if kind is SocketPacketType.CONNECT:
            if namespace in self.connected or namespace in self._pending:
                raise RemoteProtocolError(f"second CONNECT to {namespace}", code="invalid_state")
            self._pending.add(namespace)
            return [ConnectRequested(namespace, packet.data)]
        if namespace not in self.connected:
            raise RemoteProtocolError(
                f"{kind.name} for namespace {namespace!r} which is not connected",
                code="invalid_state",
            )
        if kind is SocketPacketType.DISCONNECT:
            self._drop(namespace)
            return [Disconnected(namespace)]
        if kind is SocketPacketType.CONNECT_ERROR:
            raise RemoteProtocolError("a client may not send CONNECT_ERROR", code="invalid_state")
        return self._event_or_ack(packet)


class SocketClientConnection(_Base):
    """Our side as a Socket.IO client: namespaces we asked to join or joined."""

    __slots__ = ("_connecting",)

    def __init__(self, *, max_attachments: int = 10) -> None:
        super().__init__(max_attachments)
        self._connecting: set[str] = set()

    def connect(self, namespace: str = "/", auth: dict[str, Any] | None = None) -> list[Message]:
        """Ask to join `namespace`; a `Connected` or `ConnectRefused` follows."""
        if namespace in self.connected or namespace in self._connecting:
            raise LocalProtocolError(f"already connected or connecting to {namespace}")
        self._connecting.add(namespace)
        return _encode(SocketPacket(SocketPacketType.CONNECT, namespace, auth))

    def disconnect(self, namespace: str) -> list[Message]:
        """Leave `namespace`."""
        self._require(namespace)
        self._drop(namespace)
        return _encode(SocketPacket(SocketPacketType.DISCONNECT, namespace))

    def namespaces_to_reconnect(self) -> Iterable[str]:
        """Namespaces joined or being joined: what to CONNECT again on a new session."""
        return [*self.connected, *self._connecting]

    def _receive(self, packet: SocketPacket) -> list[SocketEvent]:
        kind, namespace = packet.type, packet.namespace
        if kind is SocketPacketType.CONNECT:
            data = packet.data
            sid = data.get("sid") if isinstance(data, dict) else None
            pid = data.get("pid") if isinstance(data, dict) else None
            if namespace not in self._connecting or not isinstance(sid, str):
                raise RemoteProtocolError(
                    f"unexpected CONNECT reply for {namespace}", code="invalid_state"
                )
            self._connecting.discard(namespace)
            self.connected[namespace] = sid
            return [Connected(namespace, sid, pid if isinstance(pid, str) else None)]
        if kind is SocketPacketType.CONNECT_ERROR:
            if namespace not in self._connecting:
                raise RemoteProtocolError(
                    f"unexpected CONNECT_ERROR for {namespace}", code="invalid_state"
                )
            self._connecting.discard(namespace)
            return [ConnectRefused(namespace, packet.data)]
        if namespace not in self.connected:
            # The server may emit into a namespace we just left; that is a race, not an error.
            return []
        if kind is SocketPacketType.DISCONNECT:
            self._drop(namespace)
            return [Disconnected(namespace)]
        return self._event_or_ack(packet)
