"""The durable store's interface: records, errors and the `Store` protocol the engine uses.

`Store` is what the engine, the hub, resume and the webhook dispatcher call; `SQLiteStore`
(`engine/_sqlite_store.py`, opened with `open_sqlite_store`) is the embedded implementation,
and a PostgreSQL one can follow behind the same interface.

Error model
    `StoreError`: the database cannot do it right now (disk full, I/O error, locked by another
    process past `busy_timeout`, store closed). Nothing of the failed call was written; the
    store keeps working once the fault clears, so callers answer 503 and retry later.
    `LookupError`: an event for a session that does not exist (a caller bug, not a failure).
    `ValueError`: bad arguments (a malformed cursor, a limit out of range, a naive datetime).
    "Not found" is never an exception: None, False or an empty result.
    In a batch, a failing call does not affect the others: the batch is rolled back and its
    calls run again one per transaction, so only the failing call sees its error.
    Cancelling a write after its request was queued does not withdraw it: it commits (or
    fails) all the same, `on_commit` still hands the events on, and the caller just does not
    see the outcome. Cancelling a read lets the query finish in its thread first.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Generic, Literal, Protocol, TypeAlias, TypeVar

import attrs

from omnirelay.protocol._envelope import Filter
from omnirelay.protocol._events import ChatKind, Event
from omnirelay.protocol._records import ChatRecord, MessageRecord, RenderContext, SessionRecord

__all__ = [
    "MAX_PAGE",
    "MessageView",
    "NewWebhookDelivery",
    "OnCommit",
    "Page",
    "RecoveryRow",
    "SessionRow",
    "Store",
    "StoreError",
    "StoreStatistics",
    "StoredEvent",
    "WebhookDeliveryRow",
    "WebhookEndpointRow",
    "WebhookPlan",
    "WebhookState",
]

T = TypeVar("T")

MAX_PAGE = 1000
"""The largest `limit` a listing or `read_log` accepts."""

OnCommit: TypeAlias = Callable[[Sequence["StoredEvent"]], None]
"""Hands on what ingest produced, in log order; see `open_sqlite_store`."""


class StoreError(Exception):
    """The store cannot do it right now; nothing of the call was written. Retry later."""


# --------------------------------------------------------------------------------------------
# Values


@attrs.frozen(kw_only=True)
class StoredEvent:
    """An event as the hub fans it out and the log replays it.

    `seq` is the tenant's log position, None for ephemeral events (never logged); `context`
    holds the rows as they were right after the event was applied.
    """

    tenant_id: str
    session_id: str
    seq: int | None
    event: Event
    context: RenderContext


@attrs.frozen(kw_only=True)
class Page(Generic[T]):
    """One page of a listing; pass `next_cursor` back for the next (None: this is the last).

    `seq` is the tenant's last log position when the page was read, from the same snapshot:
    a client that subscribes from `seq` misses nothing and sees nothing twice.
    """

    items: tuple[T, ...]
    next_cursor: str | None
    seq: int


@attrs.frozen(kw_only=True)
class SessionRow:
    """A session with its settings; `state` is its last SessionState value, or "stopped"."""

    record: SessionRecord
    provider_options: Mapping[str, Any] = attrs.field(hash=False)
    autostart: bool
    state: str
    updated_at: datetime


@attrs.frozen(kw_only=True)
class MessageView:
    """A message as the REST API lists it; `text` is the text, else the media caption."""

    record: MessageRecord
    chat_id: int
    from_me: bool
    kind: str
    text: str | None
    sender_id: str | None
    sender_name: str | None
    status: str | None
    occurred_at: datetime
    edited: bool
    deleted: bool
    media_url: str | None


@attrs.frozen(kw_only=True)
class StoreStatistics:
    """Counters since the store was opened.

    `batches`: transactions the writer ran for batches (a split batch counts once);
    `requests`: write requests completed; `rows`: log entries appended; `errors`: requests
    that ended in an error; `retried_batches`: batches rolled back and re-run one by one;
    `queue_depth`/`queue_size`: write requests waiting / the queue's bound.
    """

    batches: int
    requests: int
    rows: int
    errors: int
    retried_batches: int
    largest_batch: int
    average_batch_size: float
    queue_depth: int
    queue_size: int


@attrs.frozen(kw_only=True)
class RecoveryRow:
    """A Socket.IO connection-state recovery session (`pid`): what a client reconnecting with
    it gets back. `rooms` are unscoped room names."""

    pid: str
    tenant_id: str
    namespace: str
    sid: str
    rooms: tuple[str, ...]
    updated_at: datetime


@attrs.frozen(kw_only=True)
class WebhookEndpointRow:
    """An outgoing webhook of a tenant. `filters` empty means every event; `cursor` is the
    tenant log position up to which its deliveries were planned."""

    id: str
    tenant_id: str
    url: str
    secret: str = attrs.field(repr=False)
    filters: tuple[Filter, ...]
    enabled: bool
    cursor: int
    created_at: datetime


WebhookState: TypeAlias = Literal["pending", "delivered", "dead"]


@attrs.frozen(kw_only=True)
class WebhookDeliveryRow:
    """One envelope for one endpoint. `position` orders deliveries that share a seq;
    `next_attempt_at` is when a pending one is due."""

    position: int
    id: str
    endpoint_id: str
    tenant_id: str
    seq: int
    event: str
    body: str = attrs.field(repr=False)
    attempts: int
    last_status: int | None
    last_error: str | None
    next_attempt_at: datetime
    state: WebhookState
    created_at: datetime
    updated_at: datetime


@attrs.frozen(kw_only=True)
class NewWebhookDelivery:
    """A delivery to queue: its id, the log position of its event, the name and the body."""

    id: str
    seq: int
    event: str
    body: str = attrs.field(repr=False)


@attrs.frozen(kw_only=True)
class WebhookPlan:
    """What planning one endpoint's events produced: deliveries to queue (maybe none: every
    event was filtered out) and the log position planning reached."""

    endpoint_id: str
    cursor: int
    deliveries: tuple[NewWebhookDelivery, ...] = ()


class Store(Protocol):
    """The durable store the engine runs on. See the module docstring for the error model.

    An implementation is opened by an async context manager that owns its tasks and takes an
    `on_commit` callback (see `open_sqlite_store`): the hub's one source of stored events.
    """

    @property
    def epoch(self) -> str:
        """A random id made with the database; it changes only if the log is reset, so a
        client holding a seq from another epoch must resynchronise."""
        ...

    async def put_session(
        self, record: SessionRecord, *, provider_options: Mapping[str, Any], autostart: bool
    ) -> bool:
        """Insert or update a session; False if the id exists under another tenant."""
        ...

    async def get_session(self, session_id: str) -> SessionRow | None: ...

    async def list_sessions(self, tenant_id: str | None = None) -> list[SessionRow]:
        """Sessions of one tenant, or of all (None), by tenant then id."""
        ...

    async def delete_session(self, session_id: str) -> bool:
        """Delete a session with its chats, messages and contacts; its log stays."""
        ...

    async def ingest(
        self, session_id: str, events: Sequence[Event], *, received_at: datetime
    ) -> list[StoredEvent]:
        """Apply and log `events` atomically; return what to fan out, in order."""
        ...

    async def list_chats(
        self,
        session_id: str,
        *,
        kinds: frozenset[ChatKind],
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ChatRecord]: ...

    async def get_chat(self, chat_id: int) -> tuple[ChatRecord, str] | None:
        """The chat and its tenant's id."""
        ...

    async def list_messages(
        self, chat_id: int, *, limit: int = 50, cursor: str | None = None
    ) -> Page[MessageView]: ...

    async def mark_chat_read(self, chat_id: int, *, received_at: datetime) -> list[StoredEvent]:
        """Unread count to 0, logged as a ChatUpdated; [] if it was 0 or the chat is unknown."""
        ...

    async def last_seq(self, tenant_id: str) -> int: ...

    async def read_log(self, tenant_id: str, *, after: int, limit: int) -> list[StoredEvent]: ...

    async def prune(
        self,
        tenant_id: str | None = None,
        *,
        keep_count: int | None = None,
        max_age: timedelta | None = None,
        dedupe_max_age: timedelta | None = None,
        now: datetime | None = None,
    ) -> int:
        """Delete old log entries (and dedupe keys, and recovery sessions older than
        `max_age`); return how many log entries went."""
        ...

    def statistics(self) -> StoreStatistics: ...

    # -- Socket.IO connection-state recovery

    async def save_recovery(
        self, pid: str, *, tenant_id: str, namespace: str, sid: str, rooms: Sequence[str]
    ) -> None:
        """Insert or replace the recovery session `pid` (its clock restarts now)."""
        ...

    async def load_recovery(self, pid: str) -> RecoveryRow | None: ...

    async def delete_recovery(self, pid: str) -> None: ...

    # -- outgoing webhooks

    async def create_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        tenant_id: str,
        url: str,
        secret: str,
        filters: Sequence[Filter],
        enabled: bool,
        now: datetime,
        max_per_tenant: int | None = None,
    ) -> WebhookEndpointRow | None:
        """Add an endpoint that gets the tenant's events logged from now on; None if the
        tenant has `max_per_tenant` endpoints already."""
        ...

    async def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpointRow | None: ...

    async def list_webhook_endpoints(
        self, tenant_id: str | None = None
    ) -> list[WebhookEndpointRow]:
        """Endpoints of one tenant, or of all (None), oldest first."""
        ...

    async def update_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        filters: Sequence[Filter] | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpointRow | None:
        """Change the given fields; None if there is no such endpoint."""
        ...

    async def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        """Delete an endpoint with all its deliveries; False if there was none."""
        ...

    async def plan_webhook_deliveries(
        self, plans: Sequence[WebhookPlan], *, now: datetime
    ) -> list[str]:
        """Queue deliveries and move endpoint cursors, all in one transaction; an endpoint
        that is gone or already past the plan's cursor is skipped. Returns the endpoints
        advanced."""
        ...

    async def next_webhook_delivery(self, endpoint_id: str) -> WebhookDeliveryRow | None:
        """The head of an endpoint's queue: its pending delivery with the lowest seq."""
        ...

    async def pending_webhook_endpoints(self) -> list[str]:
        """Ids of the endpoints that have pending deliveries."""
        ...

    async def record_webhook_attempt(
        self,
        delivery_id: str,
        *,
        state: WebhookState,
        attempts: int,
        last_status: int | None,
        last_error: str | None,
        next_attempt_at: datetime,
        now: datetime,
    ) -> bool:
        """Record an attempt at a pending delivery; False if it is not pending any more."""
        ...

    async def get_webhook_delivery(self, delivery_id: str) -> WebhookDeliveryRow | None: ...

    async def list_webhook_deliveries(
        self,
        tenant_id: str | None,
        *,
        state: WebhookState,
        endpoint_id: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[WebhookDeliveryRow]:
        """Deliveries in `state` of one tenant (or all: None), newest first; `before` is a
        `position` to continue below."""
        ...

    async def replay_webhook_delivery(
        self, delivery_id: str, *, now: datetime
    ) -> WebhookDeliveryRow | None:
        """A dead delivery back to pending, attempts reset; None if it is not dead."""
        ...

    async def prune_webhook_deliveries(
        self, *, delivered_before: datetime, dead_before: datetime
    ) -> int:
        """Forget delivered and dead deliveries last updated before the given times."""
        ...
