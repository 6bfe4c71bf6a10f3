"""Socket.IO v5 packets: the codec, and the decoder that reassembles binary attachments.

Text form: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON data>]`, e.g. `2["foo"]`,
`2/admin,["bar"]`, `212["foo"]`, `3/admin,13["bar"]`, `51-["baz",{"_placeholder":true,"num":0}]`
followed by one binary Engine.IO message per attachment. Each Socket.IO packet travels as the
data of an Engine.IO `message` packet, so on a websocket `2["foo"]` is the frame `42["foo"]`.

Decoding follows socket.io-parser's rules and is stricter where they are vague: an EVENT's data
must be an array starting with a non-reserved string (or a number), ACK data an array, CONNECT
data an object, CONNECT_ERROR an object or a string, DISCONNECT nothing; `4abc`, `42{}` and
`42abc[...]` are RemoteProtocolErrors.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from typing import Any, NoReturn

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._json import dumps, loads

__all__ = [
    "RESERVED_EVENTS",
    "SocketPacket",
    "SocketPacketDecoder",
    "SocketPacketType",
    "encode_event_frame",
    "encode_socket_packet",
]

RESERVED_EVENTS = frozenset(
    {"connect", "connect_error", "disconnect", "disconnecting", "newListener", "removeListener"}
)

# Ack ids are JavaScript numbers on the other side; beyond 2**53 they lose precision.
_MAX_ACK_ID = 2**53 - 1
_MAX_ACK_DIGITS = 16


class SocketPacketType(enum.IntEnum):
    CONNECT = 0
    DISCONNECT = 1
    EVENT = 2
    ACK = 3
    CONNECT_ERROR = 4
    BINARY_EVENT = 5
    BINARY_ACK = 6


_BINARY = (SocketPacketType.BINARY_EVENT, SocketPacketType.BINARY_ACK)
_WITH_ID = (
    SocketPacketType.EVENT,
    SocketPacketType.ACK,
    SocketPacketType.BINARY_EVENT,
    SocketPacketType.BINARY_ACK,
)


@attrs.frozen
class SocketPacket:
    """One Socket.IO packet with its attachments already put back in place.

    `data` is None when the packet has none (JSON null is never valid data in Socket.IO). Binary
    values inside `data` are `bytes`; encoding turns EVENT/ACK with bytes into BINARY_EVENT /
    BINARY_ACK by itself.
    """

    type: SocketPacketType
    namespace: str = "/"
    data: Any = None
    id: int | None = None


def _quote(text: str) -> str:
    return repr(text[:40]) + ("…" if len(text) > 40 else "")


def _has_binary(value: Any) -> bool:
    if isinstance(value, bytes | bytearray):
        return True
    if isinstance(value, list | tuple):
        return any(_has_binary(v) for v in value)
    if isinstance(value, dict):
        return any(_has_binary(v) for v in value.values())
    return False


def _deconstruct(value: Any, attachments: list[bytes]) -> Any:
    if isinstance(value, bytes | bytearray):
        attachments.append(bytes(value))
        return {"_placeholder": True, "num": len(attachments) - 1}
    if isinstance(value, list | tuple):
        return [_deconstruct(v, attachments) for v in value]
    if isinstance(value, dict):
        return {k: _deconstruct(v, attachments) for k, v in value.items()}
    return value


def _header(packet_type: int, namespace: str, ack_id: int | None, attachments: int | None) -> str:
    head = str(packet_type)
    if attachments is not None:
        head += f"{attachments}-"
    if namespace != "/":
        head += namespace + ","
    if ack_id is not None:
        head += str(ack_id)
    return head


def _check_namespace(namespace: str) -> None:
    if not namespace.startswith("/") or "," in namespace:
        raise LocalProtocolError(f"invalid namespace {namespace!r}: starts with / and has no comma")


def encode_socket_packet(packet: SocketPacket) -> list[str | bytes]:
    """Encode a packet as Engine.IO message data: the text part, then any attachments."""
    _check_namespace(packet.namespace)
    kind = packet.type
    if packet.id is not None and (kind not in _WITH_ID or not 0 <= packet.id <= _MAX_ACK_ID):
        raise LocalProtocolError(f"ack id {packet.id!r} is not valid on {kind.name}")
    if kind in (SocketPacketType.ACK, SocketPacketType.BINARY_ACK) and packet.id is None:
        raise LocalProtocolError("an ACK needs an id")
    data = packet.data
    if kind in (SocketPacketType.EVENT, SocketPacketType.BINARY_EVENT):
        if not isinstance(data, list | tuple) or not data or not isinstance(data[0], str | int):
            raise LocalProtocolError("EVENT data is a non-empty list starting with the event name")
        if isinstance(data[0], str) and data[0] in RESERVED_EVENTS:
            raise LocalProtocolError(f"{data[0]!r} is a reserved event name")
    elif kind in (SocketPacketType.ACK, SocketPacketType.BINARY_ACK):
        if not isinstance(data, list | tuple):
            raise LocalProtocolError("ACK data is a list")
    elif kind is SocketPacketType.CONNECT:
        if data is not None and not isinstance(data, dict):
            raise LocalProtocolError("CONNECT data is an object")
    elif kind is SocketPacketType.CONNECT_ERROR:
        if not isinstance(data, dict | str):
            raise LocalProtocolError("CONNECT_ERROR data is an object or a string")
    elif data is not None:
        raise LocalProtocolError("DISCONNECT carries no data")

    if kind in _WITH_ID and _has_binary(data):
        attachments: list[bytes] = []
        skeleton = _deconstruct(data, attachments)
        binary_kind = (
            SocketPacketType.BINARY_EVENT
            if kind in (SocketPacketType.EVENT, SocketPacketType.BINARY_EVENT)
            else SocketPacketType.BINARY_ACK
        )
        head = _header(binary_kind, packet.namespace, packet.id, len(attachments))
        return [head + dumps(skeleton), *attachments]
    if kind in _BINARY:  # asked for binary but there is none: send the plain type
        kind = (
            SocketPacketType.EVENT
            if kind is SocketPacketType.BINARY_EVENT
            else SocketPacketType.ACK
        )
    text = _header(kind, packet.namespace, packet.id, None)
    if data is not None:
        text += dumps(list(data) if isinstance(data, tuple) else data)
    return [text]


def encode_event_frame(namespace: str, event: str, *args: Any) -> str:
    """The complete Engine.IO websocket frame for a text EVENT: `42/nsp,["event",...]`.

    Built once per event and namespace, the same str is written to every receiver (and joined
    into polling payloads as is). Raises LocalProtocolError for binary args: encode those with
    `encode_socket_packet`.
    """
    if event in RESERVED_EVENTS:
        raise LocalProtocolError(f"{event!r} is a reserved event name")
    _check_namespace(namespace)
    if _has_binary(args):
        raise LocalProtocolError("binary arguments need encode_socket_packet")
    prefix = "42" if namespace == "/" else f"42{namespace},"
    return prefix + dumps([event, *args])


def _valid_data(kind: SocketPacketType, data: Any) -> bool:
    if kind is SocketPacketType.CONNECT:
        return isinstance(data, dict)
    if kind is SocketPacketType.CONNECT_ERROR:
        return isinstance(data, dict | str)
    if kind in (SocketPacketType.EVENT, SocketPacketType.BINARY_EVENT):
        if not isinstance(data, list) or not data:
            return False
        name = data[0]
        if isinstance(name, bool):
            return False
        return isinstance(name, int | float) or (
            isinstance(name, str) and name not in RESERVED_EVENTS
        )
    if kind in (SocketPacketType.ACK, SocketPacketType.BINARY_ACK):
        return isinstance(data, list)
    return False


def _parse_text(text: str) -> tuple[SocketPacket, int]:
    """Parse the text part; returns the packet (placeholders not yet replaced) and the
    number of attachments to wait for."""
    if not text or text[0] not in "0123456":
        raise RemoteProtocolError(
            f"unknown Socket.IO packet type in {_quote(text)}", code="invalid_packet"
        )
    kind = SocketPacketType(int(text[0]))
    i = 1
    attachments = 0
    if kind in _BINARY:
        dash = text.find("-", i)
        count = text[i:dash] if dash != -1 else ""
        if not count.isascii() or not count.isdigit() or len(count) > 6:
            raise RemoteProtocolError(
                f"illegal attachments in {_quote(text)}", code="invalid_packet"
            )
        attachments = int(count)
        i = dash + 1
    namespace = "/"
    if text.startswith("/", i):
        comma = text.find(",", i)
        end = len(text) if comma == -1 else comma
        namespace = text[i:end]
        i = end + 1 if comma != -1 else end
    ack_id = None
    start = i
    while i < len(text) and "0" <= text[i] <= "9":
        i += 1
    if i > start:
        if kind not in _WITH_ID or i - start > _MAX_ACK_DIGITS:
            raise RemoteProtocolError(f"invalid ack id in {_quote(text)}", code="invalid_packet")
        ack_id = int(text[start:i])
        if ack_id > _MAX_ACK_ID:
            raise RemoteProtocolError(
                f"ack id out of range in {_quote(text)}", code="invalid_packet"
            )
    data = None
    if i < len(text):
        data = loads(text[i:])
        if not _valid_data(kind, data):
            raise RemoteProtocolError(
                f"invalid payload for {kind.name} in {_quote(text)}", code="invalid_payload"
            )
    elif kind is not SocketPacketType.CONNECT and kind is not SocketPacketType.DISCONNECT:
        raise RemoteProtocolError(
            f"{kind.name} without data in {_quote(text)}", code="invalid_payload"
        )
    if kind in (SocketPacketType.ACK, SocketPacketType.BINARY_ACK) and ack_id is None:
        raise RemoteProtocolError(f"ACK without id in {_quote(text)}", code="invalid_packet")
    return SocketPacket(kind, namespace, data, ack_id), attachments


def _reconstruct(value: Any, attachments: Sequence[bytes], used: set[int]) -> Any:
    if isinstance(value, dict):
        if value.get("_placeholder") is True and len(value) == 2 and "num" in value:
            num = value["num"]
            if isinstance(num, bool) or not isinstance(num, int) or not 0 <= num < len(attachments):
                raise RemoteProtocolError(
                    "placeholder refers to no attachment", code="invalid_packet"
                )
            used.add(num)
            return attachments[num]
        return {k: _reconstruct(v, attachments, used) for k, v in value.items()}
    if isinstance(value, list):
        return [_reconstruct(v, attachments, used) for v in value]
    return value


class SocketPacketDecoder:
    """Turns Engine.IO message data back into Socket.IO packets, one connection's worth.

    Feed text with `receive_text` and binary with `receive_binary`; each returns a packet when
    one is complete, else None (waiting for attachments). Text while attachments are awaited,
    binary when none are, too many attachments, or a placeholder pointing nowhere raise
    RemoteProtocolError; the decoder is then unusable, as the connection should be.
    """

    __slots__ = ("_attachments", "_broken", "_expected", "_pending", "max_attachments")

    def __init__(self, *, max_attachments: int = 10) -> None:
        self.max_attachments = max_attachments
        self._pending: SocketPacket | None = None
        self._expected = 0
        self._attachments: list[bytes] = []
        self._broken = False

    @property
    def awaiting_attachments(self) -> int:
        return self._expected - len(self._attachments)

    def receive_text(self, text: str) -> SocketPacket | None:
        self._check()
        if self._pending is not None:
            self._fail("text packet while binary attachments were expected")
        try:
            packet, expected = _parse_text(text)
        except RemoteProtocolError:
            self._broken = True
            raise
        if expected > self.max_attachments:
            self._fail(f"{expected} attachments exceed the limit of {self.max_attachments}")
        if packet.type in _BINARY:
            self._pending, self._expected, self._attachments = packet, expected, []
            if expected == 0:
                return self._complete()
            return None
        return packet

    def receive_binary(self, data: bytes) -> SocketPacket | None:
        self._check()
        if self._pending is None:
            self._fail("binary data without a packet expecting it")
        self._attachments.append(bytes(data))
        if len(self._attachments) == self._expected:
            return self._complete()
        return None

    def _complete(self) -> SocketPacket:
        assert self._pending is not None
        used: set[int] = set()
        try:
            data = _reconstruct(self._pending.data, self._attachments, used)
        except RemoteProtocolError:
            self._broken = True
            raise
        packet = attrs.evolve(self._pending, data=data)
        self._pending, self._expected, self._attachments = None, 0, []
        return packet

    def _check(self) -> None:
        if self._broken:
            raise RemoteProtocolError(
                "decoder failed earlier; the connection must close", code="invalid_packet"
            )

    def _fail(self, message: str) -> NoReturn:
        self._broken = True
        raise RemoteProtocolError(message, code="invalid_packet")
