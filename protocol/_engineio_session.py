"""Engine.IO v4 session without I/O, server role (the client role is in `_engineio_client`).

A session object is fed what arrived (a polling body, a websocket frame, the passing of time) and
answers with events (`EngineMessage`, `EngineClosed`, …) and with frames queued for the peer,
which the caller takes and writes. Time is the caller's: every method that can start or end a
timer takes `now` (seconds, any monotonic clock), `next_deadline()` says when to call
`handle_timeout(now)` next. Sub-second intervals work (the official test suite uses 300/200 ms).

Server role, per session (one `sid`)::

    transport polling ──(websocket with sid, "2probe"→"3probe", "5")──▶ transport websocket
          │                                                                  │
          └──────── client "1", ping timeout, bad packet, aborted GET ───────┴──▶ CLOSED

* one GET at a time: a second concurrent GET closes the session; the first GET is answered `1`
  and the second one gets `RemoteProtocolError(code="duplicate_poll")` (HTTP 400);
* a client `1` while a GET waits answers that GET with `6`;
* while an upgrade is probing, a GET is answered at once (`6` if nothing is queued), so the
  client's pause ends; after the upgrade, polling with that sid is refused without closing;
* a second websocket for a session that is already upgraded or upgrading is refused
  (`upgrade_refused`) and the session goes on.

Errors: `RemoteProtocolError` for what the peer did (the session is closed first when the
protocol says so: check `closed`), `LocalProtocolError` for calls the current state forbids.
"""

from __future__ import annotations

import enum
from typing import Literal

import attrs

from ._engineio import (
    EnginePacket,
    EnginePacketType,
    Handshake,
    decode_engine_packet,
    decode_engine_payload,
    encode_engine_packet,
    encode_engine_payload,
)
from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = [
    "EngineClosed",
    "EngineEvent",
    "EngineMessage",
    "EngineOpened",
    "EngineServerSession",
    "EngineUpgraded",
    "Transport",
]

Transport = Literal["polling", "websocket"]
Frame = str | bytes

_PING = "2"
_PONG = "3"
_NOOP = "6"
_CLOSE = "1"
_UPGRADE = "5"
_PROBE_PING = "2probe"
_PROBE_PONG = "3probe"


@attrs.frozen
class EngineOpened:
    """Client role: the server's handshake arrived; the session is open."""

    handshake: Handshake


@attrs.frozen
class EngineMessage:
    """A `message` packet: text or binary data for the layer above."""

    data: str | bytes


@attrs.frozen
class EngineUpgraded:
    """The session now runs over the websocket that probed; polling is over."""


@attrs.frozen
class EngineClosed:
    """The session ended; `reason` follows the reference implementation's wording."""

    reason: str


EngineEvent = EngineOpened | EngineMessage | EngineUpgraded | EngineClosed


class _Upgrade(enum.Enum):
    NONE = "none"
    AWAITING_PROBE = "awaiting_probe"  # a websocket with our sid is open, "2probe" not yet seen
    PROBING = "probing"  # "3probe" sent, waiting for "5"
    DONE = "done"


def _exceeds(frame: Frame, limit: int) -> bool:
    if isinstance(frame, bytes) or len(frame) > limit:
        return len(frame) > limit
    # A str of n characters is n to 4n UTF-8 bytes: encode only when it might be over.
    return len(frame) * 4 > limit and len(frame.encode("utf-8", "surrogatepass")) > limit


class EngineServerSession:
    """The server side of one Engine.IO session.

    Created on the handshake request; the open packet is queued at once. Outgoing frames are
    queued with `send` (data of a message packet) or `send_frame` (an Engine.IO frame encoded
    once for many receivers, e.g. `42[...]`); the caller takes them with `end_poll` on polling or
    `take_outgoing` on websocket. `probe_outgoing` are frames for the websocket still probing.
    """

    __slots__ = (
        "_closed_reason",
        "_outbox",
        "_ping_at",
        "_polling",
        "_pong_deadline",
        "_probe_outbox",
        "_upgrade",
        "_upgrade_deadline",
        "handshake",
        "ping_interval",
        "ping_timeout",
        "transport",
        "upgrade_timeout",
    )

    def __init__(
        self,
        sid: str,
        *,
        transport: Transport,
        now: float,
        ping_interval: float = 25.0,
        ping_timeout: float = 20.0,
        max_payload: int = 1_000_000,
        upgrade_timeout: float = 10.0,
    ) -> None:
        if transport not in ("polling", "websocket"):
            raise LocalProtocolError(f"unknown transport {transport!r}")
        if ping_interval <= 0 or ping_timeout <= 0 or max_payload <= 0:
            raise LocalProtocolError("ping_interval, ping_timeout and max_payload must be positive")
        self.transport: Transport = transport
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout
        self.upgrade_timeout = upgrade_timeout
        self.handshake = Handshake(
            sid=sid,
            upgrades=("websocket",) if transport == "polling" else (),
            ping_interval=round(ping_interval * 1000),
            ping_timeout=round(ping_timeout * 1000),
            max_payload=max_payload,
        )
        self._outbox: list[Frame] = [self.handshake.encode()]
        self._probe_outbox: list[Frame] = []
        self._polling = False
        self._upgrade = _Upgrade.NONE
        self._upgrade_deadline: float | None = None
        self._ping_at: float | None = now + ping_interval
        self._pong_deadline: float | None = None
        self._closed_reason: str | None = None

    # -- state ---------------------------------------------------------------------------------

    @property
    def sid(self) -> str:
        return self.handshake.sid

    @property
    def max_payload(self) -> int:
        return self.handshake.max_payload

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    @property
    def closed_reason(self) -> str | None:
        return self._closed_reason

    @property
    def upgrading(self) -> bool:
        """A websocket with this sid is open and has not finished the upgrade."""
        return self._upgrade in (_Upgrade.AWAITING_PROBE, _Upgrade.PROBING)

    @property
    def has_outgoing(self) -> bool:
        """Frames are queued (on polling: for the next GET)."""
        return bool(self._outbox)

    @property
    def poll_pending(self) -> bool:
        """A GET is waiting for `end_poll`."""
        return self._polling

    def next_deadline(self) -> float | None:
        """When `handle_timeout` must be called next, or None while no timer runs."""
        if self.closed:
            return None
        times = [
            t for t in (self._ping_at, self._pong_deadline, self._upgrade_deadline) if t is not None
        ]
        return min(times) if times else None

    # -- outgoing ------------------------------------------------------------------------------

    def send(self, data: str | bytes) -> None:
        """Queue a `message` packet with this data."""
        self.send_frame(encode_engine_packet(EnginePacket(EnginePacketType.MESSAGE, data)))

    def send_frame(self, frame: Frame) -> None:
        """Queue an already encoded Engine.IO frame (bytes = binary message)."""
        if self.closed:
            raise LocalProtocolError(f"session {self.sid} is closed ({self._closed_reason})")
        self._outbox.append(frame)

    def take_outgoing(self) -> list[Frame]:
        """Frames to write on the websocket transport, in order; empties the queue."""
        if self.transport != "websocket":
            raise LocalProtocolError(
                "take_outgoing is for the websocket transport; polling uses end_poll"
            )
        frames, self._outbox = self._outbox, []
        return frames

    def take_probe_outgoing(self) -> list[Frame]:
        """Frames to write on the websocket that is probing an upgrade."""
        frames, self._probe_outbox = self._probe_outbox, []
        return frames

    def close(self, reason: str = "forced close") -> None:
        """Close the session from our side; queued frames still go out, on polling then `1`."""
        if self.closed:
            return
        # What was queued still goes out (e.g. Socket.IO disconnects before a shutdown): on
        # polling followed by `1`, on websocket the caller writes it and then closes.
        frames = self._outbox
        self._set_closed(reason)
        self._outbox = [*frames, _CLOSE] if self.transport == "polling" else frames

    # -- polling -------------------------------------------------------------------------------

    def begin_poll(self) -> None:
        """A GET arrived for this session.

        Raises RemoteProtocolError `transport_mismatch` after an upgrade (the session goes on),
        `duplicate_poll` if a GET is already waiting (the session closes and the waiting GET
        gets `1`), `session_closed` once closed and drained.
        """
        if self.transport != "polling":
            raise RemoteProtocolError(
                "this session was upgraded to websocket", code="transport_mismatch"
            )
        if self.closed and not self._outbox:
            raise RemoteProtocolError("session is closed", code="session_closed")
        if self._polling:
            self._set_closed("duplicate poll", farewell=_CLOSE)
            raise RemoteProtocolError(
                "overlapping GET requests for one session", code="duplicate_poll"
            )
        self._polling = True

    def poll_ready(self) -> bool:
        """Whether the waiting GET should be answered now (`end_poll`)."""
        return self._polling and (
            bool(self._outbox)
            or self.closed
            or self.transport != "polling"
            or self._upgrade is _Upgrade.PROBING
        )

    def end_poll(self) -> str:
        """The body answering the waiting GET; empties the queue. `6` when nothing is queued."""
        if not self._polling:
            raise LocalProtocolError("no GET is waiting")
        self._polling = False
        if self.transport != "polling" or not self._outbox:
            return _NOOP
        frames, self._outbox = self._outbox, []
        return encode_engine_payload(frames)

    def abort_poll(self) -> list[EngineEvent]:
        """The waiting GET went away before its answer: the session is closed."""
        if not self._polling:
            raise LocalProtocolError("no GET is waiting")
        self._polling = False
        if self.closed:
            return []
        self._set_closed("transport error")
        return [EngineClosed("transport error")]

    def receive_post(self, body: str | bytes, now: float) -> list[EngineEvent]:
        """A POST body arrived. The HTTP answer is `ok` unless this raises (then HTTP 400)."""
        if self.closed:
            raise RemoteProtocolError("session is closed", code="session_closed")
        if self.transport != "polling":
            raise RemoteProtocolError(
                "this session was upgraded to websocket", code="transport_mismatch"
            )
        if len(body) > self.max_payload:
            self._set_closed("payload too large")
            raise RemoteProtocolError(
                f"payload of {len(body)} bytes exceeds maxPayload {self.max_payload}",
                code="payload_too_large",
            )
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

    # -- websocket -----------------------------------------------------------------------------

    def receive_frame(self, frame: str | bytes, now: float) -> list[EngineEvent]:
        """A frame arrived on the websocket transport."""
        if self.closed:
            raise RemoteProtocolError("session is closed", code="session_closed")
        if self.transport != "websocket":
            raise LocalProtocolError("receive_frame is for the websocket transport")
        if _exceeds(frame, self.max_payload):
            self._set_closed("payload too large")
            raise RemoteProtocolError("frame exceeds maxPayload", code="payload_too_large")
        try:
            packet = decode_engine_packet(frame)
        except RemoteProtocolError:
            self._set_closed("parse error")
            raise
        return self._receive_packet(packet, now)

    # -- upgrade -------------------------------------------------------------------------------

    def begin_upgrade(self, now: float) -> None:
        """A websocket request arrived carrying this sid.

        Raises RemoteProtocolError `upgrade_refused` when the session is not on polling or
        already upgrading: the caller accepts and at once closes that websocket, and this
        session goes on untouched.
        """
        if self.closed:
            raise RemoteProtocolError("session is closed", code="session_closed")
        if self.transport != "polling" or self._upgrade is not _Upgrade.NONE:
            raise RemoteProtocolError(
                "session is already upgraded or upgrading", code="upgrade_refused"
            )
        self._upgrade = _Upgrade.AWAITING_PROBE
        self._upgrade_deadline = now + self.upgrade_timeout

    def receive_probe_frame(self, frame: str | bytes, now: float) -> list[EngineEvent]:
        """A frame arrived on the websocket that is upgrading this session.

        `2probe` is answered `3probe` (take it with `take_probe_outgoing`); `5` completes the
        upgrade (`EngineUpgraded`: from now on use `receive_frame` and `take_outgoing` on that
        websocket). Anything else abandons the upgrade with RemoteProtocolError
        `upgrade_failed`: close that websocket; the session stays on polling.
        """
        if self.closed:
            raise RemoteProtocolError("session is closed", code="session_closed")
        if not self.upgrading:
            raise LocalProtocolError("no upgrade in progress")
        if self._upgrade is _Upgrade.AWAITING_PROBE and frame == _PROBE_PING:
            self._upgrade = _Upgrade.PROBING
            self._probe_outbox.append(_PROBE_PONG)
            return []
        if self._upgrade is _Upgrade.PROBING and frame == _UPGRADE:
            self._upgrade = _Upgrade.DONE
            self._upgrade_deadline = None
            self.transport = "websocket"
            return [EngineUpgraded()]
        self.abort_upgrade()
        raise RemoteProtocolError(
            f"unexpected frame during upgrade: {frame[:20]!r}", code="upgrade_failed"
        )

    def abort_upgrade(self) -> None:
        """The probing websocket closed or failed: stay on polling."""
        if self.upgrading:
            self._upgrade = _Upgrade.NONE
            self._upgrade_deadline = None
            self._probe_outbox.clear()

    # -- time ----------------------------------------------------------------------------------

    def handle_timeout(self, now: float) -> list[EngineEvent]:
        """Run the timers that are due: ping, ping timeout, upgrade timeout."""
        if self.closed:
            return []
        if self._pong_deadline is not None and now >= self._pong_deadline:
            self._set_closed("ping timeout")
            return [EngineClosed("ping timeout")]
        if self._upgrade_deadline is not None and now >= self._upgrade_deadline:
            self.abort_upgrade()
        if self._ping_at is not None and now >= self._ping_at:
            self._outbox.append(_PING)
            self._ping_at = None
            self._pong_deadline = now + self.ping_timeout
        return []

    # -- internals -----------------------------------------------------------------------------

    def _is_closed(self) -> bool:
        return self._closed_reason is not None

    def _set_closed(self, reason: str, *, farewell: str | None = None) -> None:
        # Only a close we decided on leaves something for the client: the `1` its next (or
        # waiting) GET receives. Any other end drops what was queued: the sid is dead.
        self._outbox = [farewell] if farewell is not None else []
        self._closed_reason = reason
        self._ping_at = self._pong_deadline = self._upgrade_deadline = None
        self.abort_upgrade()

    def _receive_packet(self, packet: EnginePacket, now: float) -> list[EngineEvent]:
        kind = packet.type
        if kind is EnginePacketType.MESSAGE:
            return [EngineMessage(packet.data)]
        if kind is EnginePacketType.PONG:
            self._pong_deadline = None
            self._ping_at = now + self.ping_interval
            return []
        if kind is EnginePacketType.CLOSE:
            # The client leaves; whatever we had queued is moot, a waiting GET ends with noop.
            self._set_closed("transport close")
            return [EngineClosed("transport close")]
        if kind is EnginePacketType.NOOP:
            return []
        self._set_closed("parse error")
        raise RemoteProtocolError(
            f"a client may not send {kind.name.lower()} packets here", code="invalid_packet"
        )
