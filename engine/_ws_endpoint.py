"""The plain WebSocket endpoint (`/ws`): JSON envelopes out, client actions in.

Transport-agnostic: the same `serve_envelope_client` runs over the native fast path (our own
listener) and over ASGI when the gateway is embedded in a Quart app; each provides a
`MessageTransport`. The connection's task is the actor: it reads actions; the hub writes
frames from the publishing task through `EnvelopeSubscriber.deliver`, which never waits.

Close codes (docs/websocket.md): 1000 normal, 1001 server shutting down, 1008 rate limit
exceeded (after `rate_limited` errors were ignored), 1009 message too big,
1011 internal error, 4000 disconnected by the operator (do not reconnect), 4001 disconnected by
the operator (reconnect), 4008 too slow: durable events would overflow the connection's buffer
(reconnect and resume).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Hashable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import trio

from omnirelay.protocol._dialect_base import Rendition
from omnirelay.protocol._envelope import (
    Cursor,
    Filter,
    Ping,
    Resume,
    Subscribe,
    Unsubscribe,
    decode_action,
    encode_envelope,
)
from omnirelay.protocol._errors import RemoteProtocolError

from ._auth import Principal
from ._frames import OutFrame
from ._hub import EnvelopeFormat, Group, filter_values
from ._limits import RateLimiter
from ._metrics import Metrics
from ._outbox import Outbox
from ._resume import LiveGate, check_resume, replay
from ._store import StoredEvent
from ._transports import TransportClosed

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = [
    "CLOSE_GOING_AWAY",
    "CLOSE_KICKED",
    "CLOSE_KICKED_RECONNECT",
    "CLOSE_SLOW",
    "EnvelopeConnection",
    "EnvelopeSubscriber",
    "MessageTransport",
    "TransportClosed",
    "parse_since",
]

logger = logging.getLogger("omnirelay.engine.ws")

CLOSE_NORMAL = 1000
CLOSE_GOING_AWAY = 1001
CLOSE_POLICY = 1008
CLOSE_KICKED = 4000
CLOSE_KICKED_RECONNECT = 4001
CLOSE_SLOW = 4008


class MessageTransport(Protocol):
    """One websocket, as the endpoint needs it."""

    def send_frame_nowait(self, frame: OutFrame) -> bool:
        """Write or queue a frame now; False if the connection's buffer is full."""
        ...

    def send_frames_nowait(self, frames: Sequence[OutFrame]) -> bool:
        """`send_frame_nowait` for one event's frames: all or none."""
        ...

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet written (0 when the client keeps up)."""
        ...

    def set_on_drained(self, callback: Callable[[], None] | None) -> None:
        """Call `callback` each time the queue empties after a backlog (from the writer)."""
        ...

    def discard_queued(self) -> None:
        """Drop what is queued and not yet started (the client is closed as too slow)."""
        ...

    async def receive(self) -> str | bytes:
        """The next complete message; TransportClosed when the client is gone."""
        ...

    async def close(self, code: int, reason: str) -> None: ...


def _now() -> datetime:
    return datetime.now(UTC)


class EnvelopeSubscriber:
    """The hub's view of one `/ws` client: its filters and its transport."""

    __slots__ = (
        "_scope",
        "close_code",
        "close_reason",
        "connection_id",
        "filters",
        "format",
        "gate",
        "outbox",
        "tenant_id",
        "transport",
    )

    def __init__(
        self,
        *,
        tenant_id: str,
        connection_id: str,
        format: EnvelopeFormat,
        transport: MessageTransport,
        scope: trio.CancelScope,
        metrics: Metrics,
        max_held: int,
    ) -> None:
        self.tenant_id = tenant_id
        self.connection_id = connection_id
        self.format = format
        self.transport = transport
        self.filters: list[Filter] = []
        self.gate = LiveGate()
        self.close_code: int | None = None
        self.close_reason = ""
        self._scope = scope
        self.outbox = Outbox(
            send=transport.send_frames_nowait,
            backlog=lambda: transport.buffered,
            overflow=lambda: self.kick(CLOSE_SLOW, "slow consumer: too many events queued"),
            metrics=metrics,
            max_held=max_held,
        )

    def wants(self, stored: StoredEvent, rendition: Rendition) -> bool:
        if not self.filters:
            return True
        values = filter_values(stored, rendition)
        return any(f.matches(values) for f in self.filters)

    def in_room(self, room: str) -> bool:
        return False

    def deliver(
        self,
        frames: Group,
        *,
        durable: bool,
        seq: int | None = None,
        coalesce: Hashable | None = None,
    ) -> None:
        if self.close_code is not None:
            return
        if self.gate.hold(frames, seq):
            return
        # Nothing durable is dropped silently: on overflow the client is closed with 4008 and
        # resumes from the last seq it saw.
        self.outbox.put(frames, durable=durable, coalesce=coalesce)

    def kick(self, code: int, reason: str) -> None:
        """End the connection from any task: its own task closes it with this code."""
        if self.close_code is None:
            self.close_code, self.close_reason = code, reason
            self._scope.cancel()


def parse_since(value: str | None) -> Cursor | None:
    """The `?since=<epoch>:<seq>` of a `/ws` request; RemoteProtocolError if malformed."""
    return None if value is None else Cursor.parse(value)


class EnvelopeConnection:
    """One `/ws` client from registration to close.

    `open` registers it before the websocket is accepted, so the per-tenant connection limit
    refuses with a real HTTP error (ConnectionLimitExceeded); then `serve(transport)` runs the
    actor until the connection ends, or `abandon()` if the upgrade failed.
    """

    def __init__(
        self, engine: Engine, principal: Principal, *, remote: str | None, transport_name: str
    ) -> None:
        self.engine = engine
        self.transport_name = transport_name
        self.scope = trio.CancelScope()
        self.subscriber: EnvelopeSubscriber | None = None
        self.connection = engine.connections.open(
            principal.tenant,
            subject=principal.subject,
            transport=transport_name,
            remote=remote,
            kick=self._kick,
        )
        self.connection.details["filters"] = []
        self._pending_kick: tuple[int, str] | None = None

    @classmethod
    def open(
        cls, engine: Engine, principal: Principal, *, remote: str | None, transport_name: str
    ) -> EnvelopeConnection:
        """Register a connection; raises ConnectionLimitExceeded when the tenant is full."""
        return cls(engine, principal, remote=remote, transport_name=transport_name)

    def _kick(self, reconnect: bool, code: int, reason: str) -> None:
        if self.subscriber is not None:
            self.subscriber.kick(code, reason)
        else:
            self._pending_kick = (code, reason)
            self.scope.cancel()

    def abandon(self) -> None:
        """The upgrade did not happen: forget the registration."""
        self.engine.connections.close(self.connection)

    async def serve(self, transport: MessageTransport, *, since: Cursor | None = None) -> None:
        """Serve the accepted connection until it ends; closes the transport with the right
        code. With `since` (`?since=`), first replay what the client missed. Never raises for
        what the client does; an engine bug propagates."""
        engine = self.engine
        subscriber = self.subscriber = EnvelopeSubscriber(
            tenant_id=self.connection.tenant_id,
            connection_id=self.connection.id,
            format=EnvelopeFormat(engine.dialects.get(engine.config.websocket.dialect)),
            transport=transport,
            scope=self.scope,
            metrics=engine.metrics,
            max_held=engine.config.clients.inbox_frames,
        )
        transport.set_on_drained(subscriber.outbox.flush)
        if self._pending_kick is not None:
            subscriber.close_code, subscriber.close_reason = self._pending_kick
        engine.hub.attach(subscriber)
        if since is not None:
            subscriber.gate.start()  # from the first live event on, until the replay is done
        engine.metrics.connection_opened(self.transport_name)
        try:
            with self.scope:
                if since is not None:
                    await _resume(engine, subscriber, since, None)
                limiter = RateLimiter(
                    engine.config.limits.client_events_per_minute, trio.current_time
                )
                await _read_actions(engine, transport, subscriber, self.connection.details, limiter)
        finally:
            transport.set_on_drained(None)
            engine.hub.detach(subscriber)
            engine.connections.close(self.connection)
            engine.metrics.connection_closed(self.transport_name)
        if subscriber.close_code is not None:
            code, reason = subscriber.close_code, subscriber.close_reason
        else:
            code, reason = CLOSE_NORMAL, ""
        if code == CLOSE_SLOW:
            # It resumes from its last seq: the backlog would only delay the close frame.
            transport.discard_queued()
        with trio.move_on_after(2):
            await transport.close(code, reason)


async def _read_actions(
    engine: Engine,
    transport: MessageTransport,
    subscriber: EnvelopeSubscriber,
    details: dict[str, Any],
    limiter: RateLimiter,
) -> None:
    while True:
        try:
            message = await transport.receive()
        except TransportClosed:
            subscriber.close_code = CLOSE_NORMAL
            return
        engine.metrics.client_message("websocket")
        verdict = limiter.check()
        if verdict != "ok":
            engine.metrics.limits.labels("rate").inc()
            if verdict == "close":
                subscriber.kick(CLOSE_POLICY, "rate limit exceeded")
                return
            _reply_error(
                subscriber, "rate_limited", "too many messages: limits.client_events_per_minute"
            )
            continue
        if isinstance(message, bytes):
            _reply_error(subscriber, "binary_not_supported", "send JSON text messages")
            continue
        try:
            action = decode_action(message)
        except RemoteProtocolError as exc:
            _reply_error(subscriber, exc.code, str(exc))
            continue
        if isinstance(action, Ping):
            _reply(subscriber, "pong", {"id": action.id} if action.id is not None else {})
        elif isinstance(action, Subscribe):
            if action.filter not in subscriber.filters:
                subscriber.filters.append(action.filter)
            details["filters"] = [f.to_json() for f in subscriber.filters]
            _reply(subscriber, "subscribed", _ack(action.filter, action.id))
        elif isinstance(action, Unsubscribe):
            if action.filter not in subscriber.filters:
                _reply_error(
                    subscriber,
                    "not_subscribed",
                    "no subscription with exactly this filter",
                    action.id,
                )
                continue
            subscriber.filters.remove(action.filter)
            details["filters"] = [f.to_json() for f in subscriber.filters]
            _reply(subscriber, "unsubscribed", _ack(action.filter, action.id))
        elif isinstance(action, Resume):
            await _resume(engine, subscriber, action.since, action.id)


async def _resume(
    engine: Engine, subscriber: EnvelopeSubscriber, since: Cursor, action_id: str | int | None
) -> None:
    """Replay what the client missed after `since`, then continue live (docs/websocket.md)."""
    epoch = engine.store.epoch
    extra: dict[str, Any] = {} if action_id is None else {"id": action_id}
    check = await check_resume(engine.store, subscriber.tenant_id, since)
    if not check.ok:
        for _seq, frames in subscriber.gate.release(after=0):
            _send_or_kick(subscriber, frames)
        reason = check.reason or "unknown"
        _reply(
            subscriber,
            "resync_required",
            {"reason": reason, "seq": f"{epoch}:{check.current}", **extra},
        )
        return
    subscriber.gate.start()
    result = await replay(
        engine.store,
        engine.hub,
        subscriber,
        after=since.seq,
        # From the first event offered live on (delivered or held) the client has it already.
        before=subscriber.gate.first_live_seq,
        send=subscriber.transport.send_frames_nowait,
        limit=engine.config.clients.replay_limit,
    )
    held = subscriber.gate.release(after=result.last_seq)
    if result.overflow:
        subscriber.kick(CLOSE_SLOW, "slow consumer: the replay does not fit the buffer")
        return
    last = result.last_seq
    for seq, frames in held:
        _send_or_kick(subscriber, frames)
        last = max(last, seq)
    data = {
        "since": str(since),
        "replayed": result.replayed,
        "complete": result.complete,
        "seq": f"{epoch}:{last}",
        **extra,
    }
    _reply(subscriber, "resumed", data)


def _send_or_kick(subscriber: EnvelopeSubscriber, frames: Group) -> None:
    if not subscriber.transport.send_frames_nowait(frames):
        subscriber.kick(CLOSE_SLOW, "slow consumer: too many events queued")


def _ack(filter: Filter, action_id: str | int | None) -> dict[str, Any]:
    data: dict[str, Any] = {"filter": filter.to_json()}
    if action_id is not None:
        data["id"] = action_id
    return data


def _reply(subscriber: EnvelopeSubscriber, event: str, data: Any) -> None:
    subscriber.deliver((OutFrame(encode_envelope(event, data, _now())),), durable=False)


def _reply_error(
    subscriber: EnvelopeSubscriber, code: str, message: str, action_id: str | int | None = None
) -> None:
    # The shape of error_envelope, plus the id of the action it answers when there is one.
    data: dict[str, Any] = {"code": code, "message": message}
    if action_id is not None:
        data["id"] = action_id
    _reply(subscriber, "error", data)
