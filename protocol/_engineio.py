"""Engine.IO v4 packets and payloads: the codec, with no state.

A packet is one character of type (`0` open … `6` noop) followed by its data. Over a websocket
each frame is one packet; a binary frame is a `message` packet whose data is bytes. Over HTTP
long-polling several packets travel in one body joined by the record separator `\\x1e`, binary
ones as `b<base64>`. The handshake (`open`) carries exactly the keys `sid`, `upgrades`,
`pingInterval`, `pingTimeout`, `maxPayload`.

Everything here is pure: `decode_*` raise only `RemoteProtocolError`; `encode_*` raise
`LocalProtocolError` when asked to encode something the protocol cannot carry.
"""

from __future__ import annotations

import binascii
import enum
from collections.abc import Iterable

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._json import dumps, loads

__all__ = [
    "RECORD_SEPARATOR",
    "EnginePacket",
    "EnginePacketType",
    "Handshake",
    "decode_engine_packet",
    "decode_engine_payload",
    "encode_engine_packet",
    "encode_engine_payload",
]

RECORD_SEPARATOR = "\x1e"

# Bounded prefix of bad input quoted in error messages, so a hostile peer cannot make us log
# (or echo) megabytes.
_QUOTE = 40


class EnginePacketType(enum.IntEnum):
    OPEN = 0
    CLOSE = 1
    PING = 2
    PONG = 3
    MESSAGE = 4
    UPGRADE = 5
    NOOP = 6


@attrs.frozen
class EnginePacket:
    """One Engine.IO packet; `data` is bytes only for a binary `message`."""

    type: EnginePacketType
    data: str | bytes = ""


def _quote(data: str | bytes) -> str:
    return repr(data[:_QUOTE]) + ("…" if len(data) > _QUOTE else "")


def encode_engine_packet(packet: EnginePacket) -> str | bytes:
    """Encode one packet as a websocket frame: text, or raw bytes for a binary message."""
    if isinstance(packet.data, bytes):
        if packet.type is not EnginePacketType.MESSAGE:
            raise LocalProtocolError(
                f"only message packets carry binary data, not {packet.type.name}"
            )
        return packet.data
    return f"{packet.type.value}{packet.data}"


_TYPES = {str(t.value): t for t in EnginePacketType}


def decode_engine_packet(frame: str | bytes) -> EnginePacket:
    """Decode one websocket frame (or one text packet of a polling payload)."""
    if isinstance(frame, bytes | bytearray | memoryview):
        return EnginePacket(EnginePacketType.MESSAGE, bytes(frame))
    if not isinstance(frame, str):
        raise RemoteProtocolError("an Engine.IO frame is text or bytes", code="invalid_packet")
    packet_type = _TYPES.get(frame[:1])
    if packet_type is None:
        raise RemoteProtocolError(
            f"invalid Engine.IO packet {_quote(frame)}", code="invalid_packet"
        )
    return EnginePacket(packet_type, frame[1:])


def encode_engine_payload(frames: Iterable[str | bytes]) -> str:
    """Join encoded packets into one HTTP long-polling body (binary as `b<base64>`).

    Takes frames as `encode_engine_packet` returns them, so a frame encoded once for many
    receivers is reused as is. Raises LocalProtocolError for an empty list or a text frame
    containing the separator (JSON never does: it escapes control characters).
    """
    parts: list[str] = []
    for frame in frames:
        if isinstance(frame, bytes):
            parts.append("b" + binascii.b2a_base64(frame, newline=False).decode("ascii"))
        elif RECORD_SEPARATOR in frame:
            raise LocalProtocolError("a text packet cannot contain the record separator \\x1e")
        else:
            parts.append(frame)
    if not parts:
        raise LocalProtocolError("a polling payload holds at least one packet")
    return RECORD_SEPARATOR.join(parts)


def decode_engine_payload(body: str | bytes) -> list[EnginePacket]:
    """Split an HTTP long-polling body (text, or its UTF-8 bytes) into packets."""
    if isinstance(body, bytes | bytearray):
        try:
            body = bytes(body).decode("utf-8")
        except UnicodeDecodeError:
            raise RemoteProtocolError("polling body is not UTF-8", code="invalid_payload") from None
    if not isinstance(body, str):
        raise RemoteProtocolError("a polling payload is text", code="invalid_payload")
    if not body:
        raise RemoteProtocolError("empty polling payload", code="invalid_payload")
    packets = []
    for part in body.split(RECORD_SEPARATOR):
        if part.startswith("b"):
            try:
                data = binascii.a2b_base64(part[1:], strict_mode=True)
            except (binascii.Error, ValueError):
                raise RemoteProtocolError(
                    f"invalid base64 in binary packet {_quote(part)}", code="invalid_packet"
                ) from None
            packets.append(EnginePacket(EnginePacketType.MESSAGE, data))
        else:
            packets.append(decode_engine_packet(part))
    return packets


@attrs.frozen
class Handshake:
    """The data of the `open` packet. Intervals are in milliseconds, as on the wire."""

    sid: str
    upgrades: tuple[str, ...]
    ping_interval: int
    ping_timeout: int
    max_payload: int

    def encode(self) -> str:
        """The `open` packet as text: `0{"sid":…,"upgrades":[…],…}`."""
        return "0" + dumps(
            {
                "sid": self.sid,
                "upgrades": list(self.upgrades),
                "pingInterval": self.ping_interval,
                "pingTimeout": self.ping_timeout,
                "maxPayload": self.max_payload,
            }
        )

    @classmethod
    def decode(cls, data: str) -> Handshake:
        """Parse the data of an `open` packet sent by a server."""
        value = loads(data)
        if not isinstance(value, dict):
            raise RemoteProtocolError("handshake is not a JSON object", code="invalid_handshake")
        sid = value.get("sid")
        upgrades = value.get("upgrades", [])
        numbers = [value.get(k) for k in ("pingInterval", "pingTimeout", "maxPayload")]
        ints = [n for n in numbers if isinstance(n, int) and not isinstance(n, bool) and n > 0]
        if (
            not isinstance(sid, str)
            or not sid
            or not isinstance(upgrades, list)
            or not all(isinstance(u, str) for u in upgrades)
            or len(ints) != 3
        ):
            raise RemoteProtocolError(f"invalid handshake {_quote(data)}", code="invalid_handshake")
        interval, timeout, max_payload = ints
        return cls(sid, tuple(upgrades), interval, timeout, max_payload)
