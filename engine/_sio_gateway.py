"""The gateway's Socket.IO namespaces: auth at CONNECT, one hub subscriber per socket, rooms.

Each configured namespace (`socketio.namespaces`) is served by a `GatewayNamespace`:

* CONNECT: the token comes from the CONNECT payload `{token}`, else the handshake's
  `Authorization: Bearer` header, else `?token=`. Invalid, expired or missing → the client's
  `connect_error` with `message` and `data.code` (docs/socketio.md); a full tenant →
  `too_many_connections`. Nothing else is revealed.
* Scope `tenant`: the socket receives every event of its tenant in the namespace's dialects.
  Scope `rooms`: only renditions addressed to a room it joined (or to no room at all).
* `join_conversation {conversationId}` / `leave_conversation {conversationId}` join/leave
  `conversation:{id}` (a chat of the socket's own tenant) and are acknowledged with
  `{ok: true, room}` or `{ok: false, error: {code, message}}`. Rooms are kept per socket, so
  they are tenant-scoped by construction; an event addressed to several rooms reaches a socket
  once.
* Slow consumers (`Outbox`): a durable frame that does not fit the socket's buffer drops its
  transport (the client reconnects by itself and recovers); ephemeral updates are coalesced
  latest-wins while the client is behind, and dropped (counted) only when even that overflows.
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any

import trio

from omnirelay.protocol._dialect_base import Rendition
from omnirelay.protocol._envelope import Cursor
from omnirelay.protocol._errors import RemoteProtocolError

from ._auth import AuthError, token_from_request
from ._config import NamespaceConfig
from ._connections import ConnectionLimitExceeded
from ._hub import Group, SocketIOFormat
from ._limits import RateLimiter
from ._outbox import Outbox
from ._resume import LiveGate, check_resume, replay
from ._sio_server import Ack, ConnectRefused, Socket
from ._store import StoredEvent

if TYPE_CHECKING:
    from ._connections import Connection
    from ._engine import Engine

__all__ = ["GatewayNamespace", "SocketSubscriber"]

TRANSPORT_LABEL = "socketio"


class SocketSubscriber:
    """The hub's view of one Socket.IO socket."""

    __slots__ = (
        "connection_id",
        "format",
        "gate",
        "outbox",
        "rooms",
        "scope",
        "socket",
        "tenant_id",
    )

    def __init__(
        self, engine: Engine, socket: Socket, tenant_id: str, fmt: SocketIOFormat, scope: str
    ) -> None:
        self.socket = socket
        self.tenant_id = tenant_id
        self.connection_id = socket.sid
        self.format = fmt
        self.scope = scope
        self.rooms: set[str] = set()
        self.gate = LiveGate()
        connection = socket.engine
        self.outbox = Outbox(
            send=socket.send_frames,
            backlog=lambda: connection.backlog,
            overflow=lambda: socket.close_transport(slow=True),
            metrics=engine.metrics,
            max_held=engine.config.clients.inbox_frames,
        )

    def wants(self, stored: StoredEvent, rendition: Rendition) -> bool:
        if self.scope == "tenant" or not rendition.rooms:
            return True
        return any(room in self.rooms for room in rendition.rooms)

    def in_room(self, room: str) -> bool:
        return room in self.rooms

    def deliver(
        self,
        frames: Group,
        *,
        durable: bool,
        seq: int | None = None,
        coalesce: Hashable | None = None,
    ) -> None:
        if self.gate.hold(frames, seq):
            return
        # Nothing durable is dropped silently: on overflow the transport is dropped, and the
        # client reconnects by itself and recovers what it missed.
        self.outbox.put(frames, durable=durable, coalesce=coalesce)


def _error(code: str, message: str) -> dict[str, Any]:
    return {"ok": False, "error": {"code": code, "message": message}}


class GatewayNamespace:
    """One configured namespace of the gateway (see the module docstring)."""

    def __init__(self, engine: Engine, config: NamespaceConfig) -> None:
        self.engine = engine
        self.config = config
        dialects = tuple(engine.dialects.get(d) for d in config.dialects)
        self.format = SocketIOFormat(config.name, dialects, offsets=config.recovery)

    async def on_connect(self, socket: Socket, auth: dict[str, Any] | None) -> None:
        engine = self.engine
        if engine.closing.is_set():
            raise ConnectRefused("the server is shutting down", {"code": "shutting_down"})
        info = socket.engine.info
        token = token_from_request(info.headers, info.query, auth)
        try:
            principal = engine.auth.verify(token)
        except AuthError as exc:
            raise ConnectRefused(exc.message, {"code": exc.code}) from None

        def kick(reconnect: bool, code: int, reason: str) -> None:
            if reconnect:
                socket.close_transport()
            else:
                socket.disconnect()

        recovery = await self._recovery(socket, principal.tenant, auth)
        stale = engine.connections.get(socket.sid)
        if stale is not None:
            # The client came back before its old transport was noticed gone: that one ends.
            stale.kick(True, 1000, "replaced by a recovered connection")
            engine.connections.close(stale)
        try:
            connection = engine.connections.open(
                principal.tenant,
                subject=principal.subject,
                transport=TRANSPORT_LABEL,
                remote=info.remote,
                kick=kick,
                connection_id=socket.sid,
            )
        except ConnectionLimitExceeded as exc:
            engine.metrics.limits.labels("connections").inc()
            raise ConnectRefused(str(exc), {"code": exc.code}) from None
        subscriber = SocketSubscriber(
            engine, socket, principal.tenant, self.format, self.config.scope
        )
        limiter = RateLimiter(engine.config.limits.client_events_per_minute, trio.current_time)
        socket.data.update(
            subscriber=subscriber, connection=connection, principal=principal, limiter=limiter
        )
        engine.hub.attach(subscriber)
        socket.engine.drain_listeners.append(subscriber.outbox.flush)
        engine.metrics.connection_opened(TRANSPORT_LABEL)
        if recovery is not None:
            rooms, after, skip = recovery
            subscriber.rooms.update(rooms)
            await self._replay(socket, subscriber, after, skip)
        connection.details.update(namespace=self.config.name, rooms=sorted(subscriber.rooms))
        if socket.pid is not None:
            await self._save_recovery(socket, subscriber)

    async def _recovery(
        self, socket: Socket, tenant: str, auth: dict[str, Any] | None
    ) -> tuple[tuple[str, ...], int, int] | None:
        """Connection-state recovery (socket.io-client sends back `pid` and `offset`): the
        rooms to restore, the log position to replay from and how many renditions of the next
        event the client has already (an offset `"<epoch>:<seq>.<n>"`, see `SocketIOFormat`),
        or None for a fresh session. Sets `socket.pid` (and, when recovered, the earlier
        `socket.sid`)."""
        if not self.config.recovery:
            return None
        engine = self.engine
        socket.pid = secrets.token_urlsafe(16)
        pid, offset = (auth or {}).get("pid"), (auth or {}).get("offset")
        if not isinstance(pid, str) or not isinstance(offset, str):
            return None
        try:
            cursor, part = Cursor.parse_offset(offset)
        except RemoteProtocolError:
            return None
        skip = 0
        if part is not None:  # renditions 0..part of event `seq` arrived, not the rest
            if cursor.seq < 1:
                return None
            cursor, skip = Cursor(cursor.epoch, cursor.seq - 1), part + 1
        row = await engine.store.load_recovery(pid)
        if row is None or row.tenant_id != tenant or row.namespace != self.config.name:
            return None
        check = await check_resume(engine.store, tenant, cursor)
        if not check.ok or check.current - cursor.seq > engine.config.clients.replay_limit:
            return None
        socket.pid, socket.sid = pid, row.sid
        return row.rooms, cursor.seq, skip

    async def _replay(
        self, socket: Socket, subscriber: SocketSubscriber, after: int, skip: int
    ) -> None:
        engine = self.engine
        subscriber.gate.start()
        result = await replay(
            engine.store,
            engine.hub,
            subscriber,
            after=after,
            before=subscriber.gate.first_live_seq,
            send=socket.send_frames,  # kept until the CONNECT reply is out, then sent in order
            limit=engine.config.clients.replay_limit,
            skip=skip,
        )
        for _seq, frames in subscriber.gate.release(after=result.last_seq):
            socket.send_frames(frames)

    async def _save_recovery(self, socket: Socket, subscriber: SocketSubscriber) -> None:
        assert socket.pid is not None
        await self.engine.store.save_recovery(
            socket.pid,
            tenant_id=subscriber.tenant_id,
            namespace=self.config.name,
            sid=socket.sid,
            rooms=sorted(subscriber.rooms),
        )

    async def on_event(
        self, socket: Socket, name: str | int | float, args: tuple[Any, ...], ack: Ack | None
    ) -> None:
        engine = self.engine
        engine.metrics.client_message(TRANSPORT_LABEL)
        limiter: RateLimiter = socket.data["limiter"]
        verdict = limiter.check()
        if verdict != "ok":
            engine.metrics.limits.labels("rate").inc()
            if verdict == "close":
                socket.disconnect()  # the client sees "io server disconnect" and stays away
                return
            error = _error("rate_limited", "too many events: limits.client_events_per_minute")
            if ack is not None:
                ack(error)
            else:
                socket.emit("error", error["error"])
            return
        if name in ("join_conversation", "leave_conversation"):
            answer = await self._conversation(socket, join=name == "join_conversation", args=args)
        else:
            answer = _error("unknown_event", f"the server does not handle {name!r}")
        if ack is not None:
            ack(answer)

    async def _conversation(
        self, socket: Socket, *, join: bool, args: tuple[Any, ...]
    ) -> dict[str, Any]:
        subscriber: SocketSubscriber = socket.data["subscriber"]
        connection: Connection = socket.data["connection"]
        payload = args[0] if args else None
        raw = payload.get("conversationId") if isinstance(payload, dict) else None
        if isinstance(raw, str) and raw.isdigit():
            raw = int(raw)
        if not isinstance(raw, int) or isinstance(raw, bool) or raw <= 0:
            return _error("invalid_conversation_id", "send {conversationId: <positive integer>}")
        room = f"conversation:{raw}"
        if join:
            found = await self.engine.store.get_chat(raw)
            if found is None or found[1] != subscriber.tenant_id:
                return _error("conversation_not_found", f"no conversation {raw}")
            if (
                room not in subscriber.rooms
                and len(subscriber.rooms) >= self.engine.config.limits.rooms_per_socket
            ):
                self.engine.metrics.limits.labels("rooms").inc()
                return _error("too_many_rooms", "limits.rooms_per_socket reached")
            subscriber.rooms.add(room)
        else:
            subscriber.rooms.discard(room)
        connection.details["rooms"] = sorted(subscriber.rooms)
        if socket.pid is not None:
            await self._save_recovery(socket, subscriber)
        return {"ok": True, "room": room}

    def on_disconnect(self, socket: Socket, reason: str) -> None:
        subscriber = socket.data.get("subscriber")
        connection = socket.data.get("connection")
        if subscriber is None or connection is None:
            return
        self.engine.hub.detach(subscriber)
        listeners = socket.engine.drain_listeners
        if subscriber.outbox.flush in listeners:
            listeners.remove(subscriber.outbox.flush)
        self.engine.connections.close(connection)
        self.engine.metrics.connection_closed(TRANSPORT_LABEL)
