"""Pre-built outgoing websocket frames, encoded once and shared by every receiver.

A fan-out of one event to N websockets must not frame it N times (DESIGN.md §7): the hub renders
an event once per wire format into an `OutFrame`, and every transport takes what it needs from
that one object: the text (long-polling, Socket.IO packets) or the complete websocket frame bytes
(the native listener writes them straight to the socket).

Frames built here are *server* frames: unmasked, FIN set, no extension bits, so they can only be
sent by the server side of a connection that negotiated no extension (the native listener refuses
permessage-deflate for exactly this reason).
"""

from __future__ import annotations

import struct

__all__ = ["OutFrame", "ws_binary_frame", "ws_close_frame"]

_FIN_TEXT = 0x81
_FIN_BINARY = 0x82
_FIN_CLOSE = 0x88

# Close codes that must never appear on the wire (RFC 6455 §7.4.1): they only report locally
# that no code was received, the connection dropped, or TLS failed.
_LOCAL_ONLY_CODES = frozenset({1004, 1005, 1006, 1015})


def _frame(first_byte: int, payload: bytes) -> bytes:
    length = len(payload)
    if length < 126:
        header = struct.pack("!BB", first_byte, length)
    elif length < 65536:
        header = struct.pack("!BBH", first_byte, 126, length)
    else:
        header = struct.pack("!BBQ", first_byte, 127, length)
    return header + payload


class OutFrame:
    """One rendered event in one wire format; immutable, shared by every receiver.

    `ws_bytes` is computed on first use and cached, so receivers that never need the websocket
    framing (long-polling) never pay for it. Raises `UnicodeEncodeError` on first use of
    `ws_bytes` if `text` holds lone surrogates (orjson never produces them).
    """

    __slots__ = ("_text", "_ws_bytes")

    def __init__(self, text: str) -> None:
        self._text = text
        self._ws_bytes: bytes | None = None

    @property
    def text(self) -> str:
        """The payload, e.g. ``42["evt",{...}]`` or an envelope JSON document."""
        return self._text

    @property
    def ws_bytes(self) -> bytes:
        """The complete unmasked server TEXT frame: RFC 6455 header plus the UTF-8 payload."""
        frame = self._ws_bytes
        if frame is None:
            frame = self._ws_bytes = _frame(_FIN_TEXT, self._text.encode())
        return frame

    @property
    def size(self) -> int:
        """Bytes on the wire for a websocket receiver, i.e. ``len(ws_bytes)``."""
        return len(self.ws_bytes)

    def __repr__(self) -> str:
        preview = self._text if len(self._text) <= 40 else self._text[:37] + "..."
        return f"OutFrame({preview!r})"


def ws_binary_frame(data: bytes) -> bytes:
    """A complete unmasked server BINARY frame carrying `data`."""
    return _frame(_FIN_BINARY, bytes(data))


def ws_close_frame(code: int, reason: str) -> bytes:
    """A complete unmasked server CLOSE frame.

    Raises `ValueError` if `code` may not be sent (outside 1000-4999, or one of the local-only
    codes 1004/1005/1006/1015) or the UTF-8 reason is longer than the 123 bytes a control frame
    leaves for it.
    """
    if not 1000 <= code <= 4999 or code in _LOCAL_ONLY_CODES:
        raise ValueError(f"close code {code} may not be sent on the wire")
    encoded = reason.encode()
    if len(encoded) > 123:
        raise ValueError(f"close reason is {len(encoded)} bytes, at most 123 fit a control frame")
    return _frame(_FIN_CLOSE, struct.pack("!H", code) + encoded)
