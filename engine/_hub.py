"""The hub: who sees a stored event, rendered once per wire format, delivered without waiting.

Every client connection attaches one `Subscriber` per stream it receives (a plain WebSocket
has one; a Socket.IO client one per namespace). A subscriber names its `format` (the dialects
and framing it needs), says which renditions it `wants`, and takes frames with `deliver`, which
never blocks: it writes to the socket or queues, and applies the slow-consumer policy itself.
One event's frames for one subscriber go in one `deliver` call, all or none: an event is never
half-delivered (a client resuming from its seq would miss the rest).

`publish` runs synchronously in the task that committed the events (the store's writer), in log
order. For each format some subscriber of the tenant uses, the event is rendered and encoded
once; the same `OutFrame` object goes to every receiver. Tenants are separate dictionaries:
an event is only ever offered to subscribers of its own tenant.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any, Protocol

import attrs

from omnirelay.protocol._dialect_base import Dialect, Rendition, source_name
from omnirelay.protocol._envelope import encode_envelope
from omnirelay.protocol._socketio import encode_event_frame

from ._frames import OutFrame
from ._store import StoredEvent

__all__ = [
    "EnvelopeFormat",
    "Format",
    "Group",
    "Hub",
    "HubStatistics",
    "SocketIOFormat",
    "Subscriber",
    "Target",
    "filter_values",
    "render_isolated",
]

logger = logging.getLogger("omnirelay.engine.hub")

Frames = tuple[tuple[Rendition, OutFrame], ...]
Group = tuple[OutFrame, ...]  # one event's frames for one subscriber
RenderOne = Callable[[Dialect, StoredEvent], tuple[Rendition, ...]]


@attrs.frozen
class EnvelopeFormat:
    """JSON envelopes `{"event","data","timestamp","seq"}` in one dialect (plain WebSocket)."""

    dialect: Dialect

    def render(self, stored: StoredEvent, epoch: str, render_one: RenderOne) -> Frames:
        seq = f"{epoch}:{stored.seq}" if stored.seq is not None else None
        when = stored.event.occurred_at
        return tuple(
            (r, OutFrame(encode_envelope(r.name, r.payload, when, seq=seq)))
            for r in render_one(self.dialect, stored)
        )

    def custom(self, event: str, data: Any, now: datetime) -> OutFrame:
        return OutFrame(encode_envelope(event, data, now))


@attrs.frozen
class SocketIOFormat:
    """Socket.IO EVENT frames on one namespace, from each of its dialects in turn.

    With `offsets` (connection-state recovery on), a durable event carries its log position
    as the last argument, which socket.io-client keeps and sends back as `offset` when it
    reconnects: `"<epoch>:<seq>"` on the event's last frame, `"<epoch>:<seq>.<n>"` on the
    frames before it (its `n`-th rendition, counting across the namespace's dialects), so a
    connection cut between them recovers from exactly there.
    """

    namespace: str
    dialects: tuple[Dialect, ...]
    offsets: bool = False

    def render(self, stored: StoredEvent, epoch: str, render_one: RenderOne) -> Frames:
        renditions = [r for dialect in self.dialects for r in render_one(dialect, stored)]
        if not self.offsets or stored.seq is None:
            return tuple(
                (r, OutFrame(encode_event_frame(self.namespace, r.name, r.payload)))
                for r in renditions
            )
        last = len(renditions) - 1
        return tuple(
            (
                r,
                OutFrame(
                    encode_event_frame(
                        self.namespace,
                        r.name,
                        r.payload,
                        f"{epoch}:{stored.seq}" if n == last else f"{epoch}:{stored.seq}.{n}",
                    )
                ),
            )
            for n, r in enumerate(renditions)
        )

    def custom(self, event: str, data: Any, now: datetime) -> OutFrame:
        return OutFrame(encode_event_frame(self.namespace, event, data))


Format = EnvelopeFormat | SocketIOFormat


class Subscriber(Protocol):
    """One stream of frames to one client (see the module docstring)."""

    @property
    def tenant_id(self) -> str: ...

    @property
    def connection_id(self) -> str: ...

    @property
    def format(self) -> Format: ...

    def wants(self, stored: StoredEvent, rendition: Rendition) -> bool:
        """Whether this rendition of a stored event is for this subscriber (filters, rooms)."""
        ...

    def in_room(self, room: str) -> bool:
        """Whether the subscriber joined `room` (an unscoped room name)."""
        ...

    def deliver(
        self,
        frames: Group,
        *,
        durable: bool,
        seq: int | None = None,
        coalesce: Hashable | None = None,
    ) -> None:
        """Send or queue one event's frames now, all or none; never blocks, never raises for a
        slow client.

        `seq` is the event's log position (None for ephemeral events and custom publishes);
        `coalesce` the latest-wins key of an ephemeral event (see `Outbox`), None if it has none.
        """
        ...


def render_isolated(
    dialect: Dialect,
    stored: StoredEvent,
    failed: Callable[[Dialect, StoredEvent, Exception], None],
) -> tuple[Rendition, ...]:
    """`dialect.render` for a committed event, with a failure isolated to this one call.

    The event is committed already and dialects are plugin code: a renderer that fails on one
    event must not stop every other event, format and delivery (live frames, webhooks). The
    failure is loud (ERROR with traceback, `failed` counts it; the tests hold it at zero) and
    costs that dialect's receivers this one event live (they get it on resume).
    """
    try:
        return dialect.render(stored.event, stored.context)
    except Exception as exc:
        logger.error(
            "dialect %r failed to render %s (tenant %s, seq %s)",
            dialect.name,
            stored.event.type,
            stored.tenant_id,
            stored.seq,
            exc_info=exc,
        )
        failed(dialect, stored, exc)
        return ()


def filter_values(stored: StoredEvent, rendition: Rendition) -> dict[str, str | int | None]:
    """What a client `Filter` (`/ws` subscriptions, webhook filters) sees of one rendition:
    `event`, `session_id`, `user_id`, `chat_id` (the provider chat id) and `source`."""
    payload = rendition.payload if isinstance(rendition.payload, Mapping) else {}
    context = stored.context
    chat_id = context.chat.provider_chat_id if context.chat is not None else None
    return {
        "event": rendition.name,
        "session_id": context.session.id,
        "user_id": payload.get("user_id"),
        "chat_id": chat_id,
        "source": payload.get("source") or source_name(context.session.provider, chat_id or ""),
    }


@attrs.frozen
class Target:
    """Whom a server-side publish (`/api/publish`) addresses inside one tenant.

    All None: every subscriber of the tenant. `namespace` limits to that Socket.IO namespace
    ("" for plain WebSocket clients); `room` to subscribers in that room; `connection_id` to one
    connection.
    """

    namespace: str | None = None
    room: str | None = None
    connection_id: str | None = None


@attrs.frozen
class HubStatistics:
    subscribers: int
    tenants: int
    published: int
    delivered: int
    render_seconds: float
    render_errors: int


class Hub:
    """Routes stored events and server-side publishes to the subscribers of their tenant."""

    def __init__(
        self,
        *,
        epoch: Callable[[], str],
        on_delivered: Callable[[StoredEvent, int, float], None] | None = None,
        on_render_error: Callable[[str, StoredEvent, Exception], None] | None = None,
    ) -> None:
        self._epoch = epoch
        self._tenants: dict[str, dict[int, Subscriber]] = {}
        self._on_delivered = on_delivered
        self._on_render_error = on_render_error
        self._render_errors = 0
        self._published = 0
        self._delivered = 0
        self._render_seconds = 0.0

    def attach(self, subscriber: Subscriber) -> None:
        self._tenants.setdefault(subscriber.tenant_id, {})[id(subscriber)] = subscriber

    def detach(self, subscriber: Subscriber) -> None:
        subscribers = self._tenants.get(subscriber.tenant_id)
        if subscribers is not None:
            subscribers.pop(id(subscriber), None)
            if not subscribers:
                del self._tenants[subscriber.tenant_id]

    def subscribers(self, tenant_id: str | None = None) -> list[Subscriber]:
        if tenant_id is not None:
            return list(self._tenants.get(tenant_id, {}).values())
        return [s for subs in self._tenants.values() for s in subs.values()]

    def publish(self, stored: StoredEvent) -> int:
        """Offer a stored event to its tenant's subscribers; returns how many frames went out."""
        self._published += 1
        subscribers = self._tenants.get(stored.tenant_id)
        if not subscribers:
            return 0
        started = time.perf_counter()
        rendered: dict[Format, tuple[Frames, Group]] = {}
        durable = stored.event.durable
        coalesce = None if durable else stored.event.coalesce_key()
        delivered = 0
        # A copy: delivering may detach a subscriber (a slow client is kicked).
        for subscriber in tuple(subscribers.values()):
            fmt = subscriber.format
            cached = rendered.get(fmt)
            if cached is None:
                render_started = time.perf_counter()
                frames = fmt.render(stored, self._epoch(), self._render_one)
                cached = rendered[fmt] = (frames, tuple(frame for _, frame in frames))
                self._render_seconds += time.perf_counter() - render_started
            frames, every = cached
            if len(frames) == 1:  # the common case: the shared tuple, nothing built per client
                group = every if subscriber.wants(stored, frames[0][0]) else ()
            else:
                group = tuple(
                    frame for rendition, frame in frames if subscriber.wants(stored, rendition)
                )
                if len(group) == len(every):
                    group = every
            if group:
                subscriber.deliver(group, durable=durable, seq=stored.seq, coalesce=coalesce)
                delivered += len(group)
        self._delivered += delivered
        if self._on_delivered is not None:
            self._on_delivered(stored, delivered, time.perf_counter() - started)
        return delivered

    def _render_one(self, dialect: Dialect, stored: StoredEvent) -> tuple[Rendition, ...]:
        return render_isolated(dialect, stored, self._render_failed)

    def _render_failed(self, dialect: Dialect, stored: StoredEvent, exc: Exception) -> None:
        self._render_errors += 1
        if self._on_render_error is not None:
            self._on_render_error(dialect.name, stored, exc)

    def render_for(self, subscriber: Subscriber, stored: StoredEvent, *, skip: int = 0) -> Group:
        """The frames of one stored event this subscriber wants (replays use it), leaving out
        the first `skip` renditions (the client has them already)."""
        frames = subscriber.format.render(stored, self._epoch(), self._render_one)[skip:]
        return tuple(frame for rendition, frame in frames if subscriber.wants(stored, rendition))

    def publish_many(self, events: Iterable[StoredEvent]) -> None:
        for stored in events:
            self.publish(stored)

    def publish_custom(self, tenant_id: str, event: str, data: Any, target: Target) -> int:
        """A server-side publish of a custom event (ephemeral; not logged). Returns deliveries."""
        subscribers = self._tenants.get(tenant_id)
        if not subscribers:
            return 0
        now = datetime.now(UTC)
        frames: dict[Format, OutFrame] = {}
        delivered = 0
        for subscriber in tuple(subscribers.values()):
            if not _targets(subscriber, target):
                continue
            fmt = subscriber.format
            frame = frames.get(fmt)
            if frame is None:
                frame = frames[fmt] = fmt.custom(event, data, now)
            subscriber.deliver((frame,), durable=False)
            delivered += 1
        self._delivered += delivered
        return delivered

    def statistics(self) -> HubStatistics:
        return HubStatistics(
            subscribers=sum(len(s) for s in self._tenants.values()),
            tenants=len(self._tenants),
            published=self._published,
            delivered=self._delivered,
            render_seconds=self._render_seconds,
            render_errors=self._render_errors,
        )


def _targets(subscriber: Subscriber, target: Target) -> bool:
    if target.connection_id is not None and subscriber.connection_id != target.connection_id:
        return False
    if target.namespace is not None:
        fmt = subscriber.format
        namespace = fmt.namespace if isinstance(fmt, SocketIOFormat) else ""
        if namespace != target.namespace:
            return False
    return target.room is None or subscriber.in_room(target.room)
