"""Engine.IO v4 session without I/O, client role: how we connect to Evolution API.

The mirror image of `EngineServerSession` (see its module for the model): fed what the server
sends and the caller's clock, it answers with events and queues what to send.
"""

from __future__ import annotations

import enum

from ._engineio import (
    EnginePacket,
    EnginePacketType,
    Handshake,
    decode_engine_packet,
    decode_engine_payload,
    encode_engine_packet,
    encode_engine_payload,
)
from ._engineio_session import (
    _CLOSE,
    _PONG,
    _PROBE_PING,
    _PROBE_PONG,
    _UPGRADE,
    EngineClosed,
    EngineEvent,
    EngineMessage,
    EngineOpened,
    Frame,
    Transport,
    _Upgrade,
)
from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = ["EngineClientSession"]


class _ClientState(enum.Enum):
    OPENING = "opening"
    OPEN = "open"
    CLOSED = "closed"


class EngineClientSession:
    """The client side of one Engine.IO session (how we connect to Evolution API).

    Start on polling or websocket; feed what the server sends with `receive_poll_response` /
    `receive_frame`; take what to send with `take_post_body` / `take_outgoing`. To upgrade:
    `start_upgrade()` gives the frame for a new websocket (`2probe`), `receive_probe_frame`
    takes the server's `3probe`, after which `may_poll` is False; once no GET or POST is in
    flight, `finish_upgrade()` gives the frames for the new websocket (`5` first).
    """

    __slots__ = (
        "_closed_reason",
        "_deadline",
        "_outbox",
        "_state",
        "_upgrade",
        "handshake",
        "transport",
    )

    def __init__(self, *, transport: Transport = "websocket") -> None:
        if transport not in ("polling", "websocket"):
            raise LocalProtocolError(f"unknown transport {transport!r}")
        self.transport: Transport = transport
        self.handshake: Handshake | None = None
        self._state = _ClientState.OPENING
        self._outbox: list[Frame] = []
        self._upgrade = _Upgrade.NONE
        self._deadline: float | None = None
        self._closed_reason: str | None = None

    @property
    def open(self) -> bool:
        return self._state is _ClientState.OPEN

    @property
    def closed(self) -> bool:
        return self._state is _ClientState.CLOSED

    @property
    def closed_reason(self) -> str | None:
        return self._closed_reason

    @property
    def may_poll(self) -> bool:
        """Whether a new GET may start (not while an upgrade pauses polling)."""
        return (
            self.transport == "polling"
            and self._state is not _ClientState.CLOSED
            and self._upgrade not in (_Upgrade.PROBING, _Upgrade.DONE)
        )

    def next_deadline(self) -> float | None:
        return None if self.closed else self._deadline

    # -- outgoing ------------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Queue a message packet (allowed before the handshake; sent once open)."""
        self.send_frame(encode_engine_packet(EnginePacket(EnginePacketType.MESSAGE, data)))

    def send_frame(self, frame: Frame) -> None:
        if self.closed:
            raise LocalProtocolError(f"session is closed ({self._closed_reason})")
        self._outbox.append(frame)

    def take_post_body(self) -> str | None:
        """The next POST body on polling, at most `maxPayload` bytes when possible; or None."""
        if self.transport != "polling" or self.handshake is None or not self._outbox:
            return None
        limit = self.handshake.max_payload if self.handshake else 1_000_000
        taken: list[Frame] = []
        size = 0
        while self._outbox:
            frame = self._outbox[0]
            cost = (len(frame) * 4 + 2) // 3 + 2 if isinstance(frame, bytes) else len(frame) + 1
            if taken and size + cost > limit:
                break
            taken.append(self._outbox.pop(0))
            size += cost
        return encode_engine_payload(taken)

    def take_outgoing(self) -> list[Frame]:
        """Frames to write on the websocket transport; empties the queue."""
        if self.transport != "websocket":
            raise LocalProtocolError("take_outgoing is for the websocket transport")
        if self.handshake is None:
            return []  # nothing may be sent before the server's handshake
        frames, self._outbox = self._outbox, []
        return frames

    def close(self) -> None:
        """Leave. On polling a `1` is queued for one last POST; on websocket just close it."""
        if self.closed:
            return
        # On polling one last POST carries `1`; a websocket is simply closed by the caller.
        self._outbox = [_CLOSE] if self.transport == "polling" and self.open else []
        self._set_closed("forced close")

    # -- incoming ------------------------------------------------------------------------------

    def receive_poll_response(self, body: str | bytes, now: float) -> list[EngineEvent]:
        """The body of a GET answer."""
        if self.transport != "polling":
            raise LocalProtocolError("receive_poll_response is for the polling transport")
        if self.closed:
            return []
        try:
            packets = decode_engine_payload(body)
        except RemoteProtocolError:
            self._set_closed("parse error")
            raise
        events: list[EngineEvent] = []
        for packet in packets:
            events.extend(self._receive_packet(packet, now))
            if self._is_closed():  # a close packet ends the payload
                break
        return events

    def receive_frame(self, frame: str | bytes, now: float) -> list[EngineEvent]:
        """A frame on the websocket transport."""
        if self.transport != "websocket":
            raise LocalProtocolError("receive_frame is for the websocket transport")
        if self.closed:
            return []
        try:
            packet = decode_engine_packet(frame)
        except RemoteProtocolError:
            self._set_closed("parse error")
            raise
        return self._receive_packet(packet, now)

    def transport_closed(self) -> list[EngineEvent]:
        """The underlying connection ended without a close packet."""
        if self.closed:
            return []
        self._set_closed("transport close")
        return [EngineClosed("transport close")]

    # -- upgrade -------------------------------------------------------------------------------

    def start_upgrade(self) -> str:
        """Begin probing a websocket: returns the first frame to send on it (`2probe`)."""
        if not self.open or self.transport != "polling" or self._upgrade is not _Upgrade.NONE:
            raise LocalProtocolError("upgrade needs an open polling session not already upgrading")
        assert self.handshake is not None
        if "websocket" not in self.handshake.upgrades:
            raise LocalProtocolError("the server offers no websocket upgrade")
        self._upgrade = _Upgrade.AWAITING_PROBE
        return _PROBE_PING

    def receive_probe_frame(self, frame: str | bytes) -> None:
        """The server's answer on the probing websocket; after `3probe`, polling pauses."""
        if self._upgrade is not _Upgrade.AWAITING_PROBE:
            raise LocalProtocolError("no probe is outstanding")
        if frame != _PROBE_PONG:
            self._upgrade = _Upgrade.NONE
            raise RemoteProtocolError(
                f"unexpected probe answer {frame[:20]!r}", code="upgrade_failed"
            )
        self._upgrade = _Upgrade.PROBING

    def abort_upgrade(self) -> None:
        """The probing websocket failed; keep polling."""
        if self._upgrade in (_Upgrade.AWAITING_PROBE, _Upgrade.PROBING):
            self._upgrade = _Upgrade.NONE

    def finish_upgrade(self) -> list[Frame]:
        """Switch to the websocket: `5`, then everything still queued, to send on it in order.

        Call only once the last GET answered and no POST is in flight.
        """
        if self._upgrade is not _Upgrade.PROBING or self.closed:
            raise LocalProtocolError("finish_upgrade needs a completed probe")
        self._upgrade = _Upgrade.DONE
        self.transport = "websocket"
        frames: list[Frame] = [_UPGRADE, *self._outbox]
        self._outbox = []
        return frames

    # -- time ----------------------------------------------------------------------------------

    def handle_timeout(self, now: float) -> list[EngineEvent]:
        """Close when the server's pings stopped for pingInterval + pingTimeout."""
        if self.closed or self._deadline is None or now < self._deadline:
            return []
        self._set_closed("ping timeout")
        return [EngineClosed("ping timeout")]

    # -- internals -----------------------------------------------------------------------------

    def _is_closed(self) -> bool:
        return self._state is _ClientState.CLOSED

    def _set_closed(self, reason: str) -> None:
        self._state = _ClientState.CLOSED
        self._closed_reason = reason
        self._deadline = None

    def _reset_deadline(self, now: float) -> None:
        assert self.handshake is not None
        self._deadline = now + (self.handshake.ping_interval + self.handshake.ping_timeout) / 1000

    def _receive_packet(self, packet: EnginePacket, now: float) -> list[EngineEvent]:
        kind = packet.type
        if self._state is _ClientState.OPENING:
            if kind is not EnginePacketType.OPEN or not isinstance(packet.data, str):
                self._set_closed("parse error")
                raise RemoteProtocolError(
                    "the first packet must be the handshake", code="invalid_handshake"
                )
            try:
                self.handshake = Handshake.decode(packet.data)
            except RemoteProtocolError:
                self._set_closed("parse error")
                raise
            self._state = _ClientState.OPEN
            self._reset_deadline(now)
            return [EngineOpened(self.handshake)]
        if kind is EnginePacketType.MESSAGE:
            return [EngineMessage(packet.data)]
        if kind is EnginePacketType.PING:
            self._reset_deadline(now)
            self._outbox.append(_PONG)
            return []
        if kind is EnginePacketType.NOOP:
            return []
        if kind is EnginePacketType.CLOSE:
            self._outbox.clear()
            self._set_closed("transport close")
            return [EngineClosed("transport close")]
        self._set_closed("parse error")
        raise RemoteProtocolError(
            f"a server may not send {kind.name.lower()} packets here", code="invalid_packet"
        )
