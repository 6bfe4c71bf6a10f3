"""The engine: one gateway's store, hub, sessions and connections, under one nursery.

`open_engine(config)` builds everything from the configuration (plugin manager, providers,
dialects, authenticator, SQLite store), registers the configured sessions, starts those marked
`autostart`, and yields the `Engine`. Leaving the context shuts down in order: stop accepting
(`closing` is set), stop provider sessions (they report `stopped`), close client connections
with 1001, drain the store, cancel what is left after `supervisor.shutdown_grace`.

Ingest (`Engine.submit`): drop what clients never want (status broadcasts, system
notifications), store (durable events committed in one transaction, deduplicated), and the
store's writer hands the stored events to the hub in log order right after each commit.
"""

from __future__ import annotations

import logging
import random
from collections.abc import AsyncIterator, Callable, Iterable, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

import trio

from omnirelay.protocol._dialects import DialectRegistry
from omnirelay.protocol._events import (
    ChatKind,
    ChatRef,
    Event,
    MessageKind,
    MessageReceived,
    MessageSent,
)
from omnirelay.protocol._records import SessionRecord

from ._auth import Authenticator
from ._config import Config, ConfigError, SessionConfig
from ._connections import ConnectionRegistry
from ._eio_server import EngineIOServer, EngineIOSettings
from ._hub import Hub
from ._metrics import Metrics
from ._plugins import collect_dialects, collect_providers, make_plugin_manager
from ._provider import Provider
from ._sessions import SessionSupervisor
from ._sio_gateway import GatewayNamespace
from ._sio_server import SocketIOServer
from ._sqlite_store import open_sqlite_store
from ._store import SessionRow, Store, StoredEvent, StoreError
from ._webhooks import WebhookDispatcher

__all__ = ["Engine", "SessionError", "open_engine"]

logger = logging.getLogger("omnirelay.engine")

# How often the event log is pruned to the retention settings (seconds).
RETENTION_INTERVAL = 60.0


class SessionError(Exception):
    """A session request cannot be honoured; `code` is the stable REST error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _dropped_by_rule(event: Event) -> str | None:
    """The ingest rule that drops this event, or None to keep it (docs/architecture.md)."""
    chat = getattr(event, "chat", None)
    if isinstance(chat, ChatRef) and chat.kind is ChatKind.STATUS:
        return "status_broadcast"
    if (
        isinstance(event, MessageReceived | MessageSent)
        and event.message.kind is MessageKind.SYSTEM
    ):
        return "system_notification"
    return None


class Engine:
    """Everything one gateway runs; built by `open_engine`, never by hand."""

    def __init__(
        self,
        config: Config,
        *,
        store: Store,
        providers: Mapping[str, Provider],
        dialects: DialectRegistry,
        auth: Authenticator,
        metrics: Metrics,
        clock: Callable[[], datetime],
        rng: random.Random,
    ) -> None:
        self.config = config
        self.store = store
        self.providers = providers
        self.dialects = dialects
        self.auth = auth
        self.metrics = metrics
        self.clock = clock
        self.random = rng
        self.hub = Hub(
            epoch=lambda: store.epoch,
            on_delivered=metrics.delivered,
            on_render_error=metrics.render_error,
        )
        self.connections = ConnectionRegistry(per_tenant=config.limits.connections_per_tenant)
        socketio = config.socketio
        namespaces = {ns.name: GatewayNamespace(self, ns) for ns in socketio.namespaces}
        self.socketio = EngineIOServer(
            EngineIOSettings(
                ping_interval=socketio.ping_interval,
                ping_timeout=socketio.ping_timeout,
                max_payload=socketio.max_payload,
                max_buffer=config.clients.inbox_bytes,
                max_frames=config.clients.inbox_frames,
            ),
            SocketIOServer(namespaces),
        )
        self.webhooks = WebhookDispatcher(
            store,
            dialects.get(config.webhooks.dialect),
            config=config.webhooks,
            clock=clock,
            rng=rng,
        )
        self.closing = trio.Event()
        self.ready = False
        self._sessions: SessionSupervisor | None = None

    @property
    def sessions(self) -> SessionSupervisor:
        assert self._sessions is not None, "the engine is not running"
        return self._sessions

    # -- ingest ----------------------------------------------------------------------------

    def publish_committed(self, events: Sequence[StoredEvent]) -> None:
        """Called by the store's writer right after each commit, in log order."""
        for stored in events:
            self.metrics.events_in.labels(stored.event.type).inc()
            self.hub.publish(stored)
            self.webhooks.offer(stored)

    async def submit(self, session: SessionRecord, events: Iterable[Event]) -> list[StoredEvent]:
        """Ingest events of one session; returns what was stored (see the module docstring)."""
        kept = []
        for event in events:
            rule = _dropped_by_rule(event)
            if rule is None:
                kept.append(event)
            else:
                self.metrics.filtered.labels(rule).inc()
        if not kept:
            return []
        stored = await self.store.ingest(session.id, kept, received_at=self.clock())
        skipped = sum(1 for e in kept if e.durable) - sum(1 for s in stored if s.seq is not None)
        if skipped > 0:
            self.metrics.duplicates.inc(skipped)
        return stored

    # -- sessions --------------------------------------------------------------------------

    def _validated_options(
        self, provider: Provider, options: Mapping[str, Any]
    ) -> Mapping[str, Any]:
        if provider.validate_options is None:
            return dict(options)
        try:
            return provider.validate_options(options)
        except ValueError as exc:
            raise SessionError("invalid_options", str(exc)) from None

    async def create_session(
        self,
        *,
        session_id: str,
        tenant_id: str,
        provider: str,
        name: str | None = None,
        options: Mapping[str, Any] | None = None,
        autostart: bool = True,
        start: bool = True,
    ) -> SessionRow:
        """Store a session (create or update) and start it if asked; SessionError otherwise."""
        kind = self.providers.get(provider)
        if kind is None:
            known = ", ".join(sorted(self.providers)) or "none"
            raise SessionError("unknown_provider", f"no provider {provider!r} (known: {known})")
        try:
            SessionConfig(id=session_id, tenant=tenant_id, provider=provider)
        except ValueError as exc:
            raise SessionError("invalid_session_id", str(exc)) from None
        validated = self._validated_options(kind, options or {})
        existing = await self.store.get_session(session_id)
        record = SessionRecord(
            id=session_id,
            tenant_id=tenant_id,
            provider=provider,
            name=name,
            phone=existing.record.phone if existing else None,
            display_name=existing.record.display_name if existing else None,
        )
        if existing is not None and existing.record.tenant_id != tenant_id:
            raise SessionError("session_exists", f"session id {session_id!r} is taken")
        if not await self.store.put_session(
            record, provider_options=validated, autostart=autostart
        ):
            raise SessionError("session_exists", f"session id {session_id!r} is taken")
        if start:
            await self.sessions.start(record, kind, validated)
        row = await self.store.get_session(session_id)
        assert row is not None
        return row

    async def start_session(self, session_id: str) -> None:
        row = await self.store.get_session(session_id)
        if row is None:
            raise SessionError("session_not_found", f"no session {session_id!r}")
        provider = self.providers.get(row.record.provider)
        if provider is None:
            raise SessionError(
                "unknown_provider", f"session {session_id!r} needs provider {row.record.provider!r}"
            )
        await self.sessions.start(row.record, provider, row.provider_options)

    async def stop_session(self, session_id: str) -> bool:
        return await self.sessions.stop(session_id)

    async def delete_session(self, session_id: str) -> bool:
        await self.sessions.stop(session_id)
        return await self.store.delete_session(session_id)

    def session_state(self, row: SessionRow) -> dict[str, Any]:
        """The JSON shape of a session in REST answers."""
        actor = self.sessions.get(row.record.id)
        return {
            "id": row.record.id,
            "tenant": row.record.tenant_id,
            "provider": row.record.provider,
            "name": row.record.name,
            "phoneNumber": row.record.phone,
            "displayName": row.record.display_name,
            "state": row.state,
            "running": actor is not None and actor.running,
            "restarts": actor.restarts if actor is not None else 0,
            "lastError": actor.last_error if actor is not None else None,
            "autostart": row.autostart,
            "updatedAt": row.updated_at.isoformat().replace("+00:00", "Z"),
        }

    # -- retention -------------------------------------------------------------------------

    async def prune_log(self) -> int:
        """Apply `storage.retention_count` / `retention_age` to every tenant's log now."""
        storage = self.config.storage
        return await self.store.prune(
            None,
            keep_count=storage.retention_count,
            max_age=timedelta(seconds=storage.retention_age),
            now=self.clock(),
        )

    async def _retention(self) -> None:
        while True:
            await trio.sleep(RETENTION_INTERVAL)
            try:
                pruned = await self.prune_log()
            except StoreError as exc:
                logger.warning("pruning the event log failed (will retry): %s", exc)
                continue
            if pruned:
                logger.info("pruned %d event-log entries past retention", pruned)

    # -- lifecycle -------------------------------------------------------------------------

    async def _start(self, nursery: trio.Nursery) -> None:
        self._sessions = SessionSupervisor(self, nursery)
        await nursery.start(self.socketio.run)
        await nursery.start(self.webhooks.run)
        nursery.start_soon(self._retention)
        for session in self.config.sessions:
            await self.create_session(
                session_id=session.id,
                tenant_id=session.tenant,
                provider=session.provider,
                name=session.name,
                options=session.options,
                autostart=session.autostart,
                start=False,
            )
        for row in await self.store.list_sessions():
            if row.autostart and row.record.provider in self.providers:
                await self.start_session(row.record.id)
            elif row.autostart:
                logger.warning(
                    "session %s needs provider %r, which no plugin provides; not started",
                    row.record.id,
                    row.record.provider,
                )
        self.ready = True

    async def _shutdown(self) -> None:
        self.ready = False
        self.closing.set()
        if self._sessions is not None:
            await self._sessions.stop_all()
        for eio in list(self.socketio.connections.values()):
            eio.close("server shutting down")
        for connection in self.connections.list():
            connection.kick(True, 1001, "server shutting down")


def _check_dialects(config: Config, dialects: DialectRegistry) -> None:
    wanted = [
        (f"socketio.namespaces {n.name}", d) for n in config.socketio.namespaces for d in n.dialects
    ]
    wanted.append(("websocket.dialect", config.websocket.dialect))
    wanted.append(("webhooks.dialect", config.webhooks.dialect))
    for where, name in wanted:
        if name not in dialects:
            known = ", ".join(dialects.names())
            raise ConfigError(f"{where}: unknown dialect {name!r} (known: {known})")
    for where, name in wanted:
        wire = dialects.get(name).wire
        expected = "socketio" if where.startswith("socketio") else "envelope"
        if wire != expected:
            raise ConfigError(f"{where}: dialect {name!r} is for {wire}, not {expected}")


@asynccontextmanager
async def open_engine(
    config: Config,
    *,
    plugins: Iterable[str | object] = (),
    entry_points: bool = True,
    clock: Callable[[], datetime] = _utc_now,
    rng: random.Random | None = None,
) -> AsyncIterator[Engine]:
    """Run an engine for the duration of the `async with` block (see the module docstring).

    Raises ConfigError or PluginError before anything starts when the configuration or a
    plugin is unusable.
    """
    manager = make_plugin_manager((*config.plugins, *plugins), entry_points=entry_points)
    providers = collect_providers(manager)
    dialects = collect_dialects(manager)
    _check_dialects(config, dialects)
    auth = Authenticator.from_config(config.auth)
    metrics = Metrics()
    engine_box: list[Engine] = []

    def on_commit(events: Sequence[StoredEvent]) -> None:
        engine_box[0].publish_committed(events)

    async with open_sqlite_store(
        config.storage.path, on_commit=on_commit, busy_timeout=config.storage.busy_timeout
    ) as store:
        engine = Engine(
            config,
            store=store,
            providers=providers,
            dialects=dialects,
            auth=auth,
            metrics=metrics,
            clock=clock,
            rng=rng or random.Random(),
        )
        engine_box.append(engine)
        async with trio.open_nursery() as nursery:
            await engine._start(nursery)
            try:
                yield engine
            finally:
                with (
                    trio.CancelScope(shield=True),
                    trio.move_on_after(config.supervisor.shutdown_grace),
                ):
                    await engine._shutdown()
                nursery.cancel_scope.cancel()
