"""Outgoing webhooks: each durable event, as the `/ws` envelope, POSTed to a tenant's URLs.

Nothing is lost
    The event log is the outbox. Every endpoint has a *cursor*: the tenant log position up to
    which its deliveries are planned. Planning an event for an endpoint renders the envelope,
    applies the endpoint's filters and queues a `pending` delivery row holding the exact body;
    the rows and the new cursor are written in one transaction. Workers then deliver pending
    rows and record every attempt. So a delivery exists either in the log (after the cursor,
    planned again after a crash) or as a row (pending, delivered or dead), never nowhere.

    `offer(stored)` is the engine's synchronous hook, called by the store's writer right
    after each commit: it only hands the event to the planner through a bounded channel
    (`queue_size`), so the planner need not read the log back. It never blocks and does no
    I/O: when the channel is full the event is not queued, its tenant is marked for catch-up,
    and the planner reads what it missed from the log. On start the planner catches every
    endpoint up from its cursor to its tenant's last seq. The log is pruned by retention
    (`storage.retention_*`); an event pruned before it was planned (the gateway was down
    for longer than the retention) is counted in `statistics().lost` and logged.

Delivery
    One worker task per endpoint with pending deliveries, sending its head (lowest seq) and
    nothing else until that one is delivered or dead: order is kept per endpoint, and a
    failing endpoint holds up only itself. HTTP requests in flight across all endpoints are
    bounded by `concurrency`. 2xx: delivered. 429, 5xx, timeouts and connection errors: retried
    after an exponential backoff with jitter (`Retry-After` honoured, capped at
    `backoff_max`) until `max_attempts`, then dead. Any other status (3xx are not followed,
    4xx): dead at once. Dead deliveries stay for `dead_letter_retention`; `replay` puts one back
    in its endpoint's queue. Delivery is at least once: a request cut off by a shutdown is sent
    again after the restart, with the same `X-Omnirelay-Delivery` id.

Errors: `WebhookError` (with a stable `code`) for requests the API refuses. `StoreError` while
planning or delivering is logged and retried after a pause; any other exception is a bug and
propagates.
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import hmac
import ipaddress
import logging
import math
import random
import secrets
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import attrs
import httpx
import trio

from omnirelay.protocol._dialect_base import Dialect, Rendition
from omnirelay.protocol._envelope import Filter

from ._frames import OutFrame
from ._hub import EnvelopeFormat, filter_values, render_isolated
from ._store import (
    NewWebhookDelivery,
    Store,
    StoredEvent,
    StoreError,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    WebhookPlan,
    WebhookState,
)

__all__ = [
    "SIGNATURE_HEADER",
    "WebhookConfig",
    "WebhookDispatcher",
    "WebhookError",
    "WebhookStatistics",
    "sign",
]

logger = logging.getLogger("omnirelay.engine.webhooks")

SIGNATURE_HEADER = "X-Omnirelay-Signature"
USER_AGENT = "omnirelay-webhooks"

_PLAN_BATCH = 256  # offered events the planner takes at once
_PLAN_CHUNK = 256  # log positions planned per transaction: bounds memory and transaction size
_STORE_RETRY = 1.0  # seconds to wait after a StoreError before trying again
_HOUSEKEEPING_INTERVAL = 600.0  # seconds between prunings of delivered and dead deliveries
_EXCERPT_BYTES = 64 * 1024  # the most of a response body read (keeps the connection reusable)
_ERROR_LENGTH = 300  # characters of an error kept in last_error
_MAX_URL_LENGTH = 2048


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


@attrs.frozen(kw_only=True)
class WebhookConfig:
    """The `[webhooks]` section (docs/webhooks.md).

    `dialect`: the envelope dialect bodies are rendered in (that of `/ws`); `timeout`: seconds
    one attempt may take, connect to last byte; `backoff_base`/`backoff_max`: the first retry
    delay and the cap (seconds), doubling in between, with jitter; `max_attempts`: attempts
    before a delivery is dead; `concurrency`: requests in flight across all endpoints;
    `queue_size`: offered events buffered for the planner (more are read back from the log);
    `max_endpoints_per_tenant`; `allow_private_networks`: accept URLs naming loopback,
    private or link-local addresses (off: a tenant cannot make the gateway call its own
    network); `delivered_retention`/`dead_letter_retention`: seconds delivered and dead
    deliveries are kept.
    """

    dialect: str = "envelope"
    timeout: float = attrs.field(default=10.0, validator=_positive)
    backoff_base: float = attrs.field(default=1.0, validator=_positive)
    backoff_max: float = attrs.field(default=300.0, validator=_positive)
    max_attempts: int = attrs.field(default=8, validator=_positive)
    concurrency: int = attrs.field(default=16, validator=_positive)
    queue_size: int = attrs.field(default=1024, validator=_positive)
    max_endpoints_per_tenant: int = attrs.field(default=20, validator=_positive)
    allow_private_networks: bool = False
    delivered_retention: float = attrs.field(default=86_400.0, validator=_positive)
    dead_letter_retention: float = attrs.field(default=7 * 86_400.0, validator=_positive)


@attrs.frozen(kw_only=True)
class WebhookStatistics:
    """Counters since the dispatcher started.

    `queue_depth`/`queue_size`: offered events waiting for the planner / the bound;
    `overflows`: offers that found the queue full (their events were read from the log);
    `planned`: deliveries queued; `workers`: endpoints being worked on; `in_flight`: requests
    under way; `delivered`, `retries` (failed attempts to be retried), `dead`; `lost`: log
    entries pruned before they could be planned; `render_errors`: events the dialect failed on.
    """

    endpoints: int
    queue_depth: int
    queue_size: int
    overflows: int
    planned: int
    workers: int
    in_flight: int
    delivered: int
    retries: int
    dead: int
    lost: int
    render_errors: int


class WebhookError(Exception):
    """A webhook request the API refuses; `code` is the stable REST error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def sign(secret: str, body: bytes) -> str:
    """The `X-Omnirelay-Signature` value: "sha256=" + hex HMAC-SHA256 of the raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def check_url(url: str, *, allow_private_networks: bool) -> str:
    """The URL if deliveries may go there; WebhookError("invalid_url") otherwise.

    http or https with a host. Without `allow_private_networks`, "localhost" and IP literals
    that are not global (loopback, private, link-local, …) are refused; host names are not
    resolved here.
    """
    if not isinstance(url, str) or not url or len(url) > _MAX_URL_LENGTH:
        raise WebhookError("invalid_url", f"url must be a string of 1-{_MAX_URL_LENGTH} characters")
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise WebhookError("invalid_url", f"url is not a valid URL: {exc}") from None
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise WebhookError("invalid_url", "url must be an absolute http:// or https:// URL")
    if not allow_private_networks:
        host = parsed.host.lower().rstrip(".")
        private = host == "localhost" or host.endswith(".localhost")
        with contextlib.suppress(ValueError):  # a host name is not checked
            private = private or not ipaddress.ip_address(host).is_global
        if private:
            raise WebhookError(
                "invalid_url",
                "url names a private or loopback address; the operator may allow these "
                "with webhooks.allow_private_networks",
            )
    return url


def _utc_now() -> datetime:
    return datetime.now(UTC)


@attrs.define(eq=False)
class _Endpoint:
    """The dispatcher's view of one endpoint: its settings, planning cursor and worker."""

    id: str
    tenant_id: str
    url: str
    secret: str = attrs.field(repr=False)
    filters: tuple[Filter, ...]
    enabled: bool
    cursor: int
    wake: trio.Event = attrs.field(factory=trio.Event)
    working: bool = False
    deleted: bool = False

    @classmethod
    def from_row(cls, row: WebhookEndpointRow) -> _Endpoint:
        return cls(
            id=row.id,
            tenant_id=row.tenant_id,
            url=row.url,
            secret=row.secret,
            filters=row.filters,
            enabled=row.enabled,
            cursor=row.cursor,
        )

    def update(self, row: WebhookEndpointRow) -> None:
        self.url, self.filters, self.enabled = row.url, row.filters, row.enabled

    def accepts(self, stored: StoredEvent, rendition: Rendition) -> bool:
        if not self.enabled:
            return False
        if not self.filters:
            return True
        values = filter_values(stored, rendition)
        return any(f.matches(values) for f in self.filters)


_Nudge = None  # an item of the planner's channel that only says "look at the catch-up set"


class WebhookDispatcher:
    """Plans and delivers a gateway's outgoing webhooks (see the module docstring).

    `run` must be started in the engine's nursery (`await nursery.start(dispatcher.run)`);
    `offer` may be called before and after it runs. The endpoint methods keep the
    dispatcher's view of the endpoints in step with the store: the REST API goes through them.
    """

    def __init__(
        self,
        store: Store,
        dialect: Dialect,
        *,
        config: WebhookConfig | None = None,
        client_factory: Callable[[], httpx.AsyncClient] | None = None,
        clock: Callable[[], datetime] = _utc_now,
        rng: random.Random | None = None,
    ) -> None:
        self._store = store
        self._format = EnvelopeFormat(dialect)
        self._config = config = config if config is not None else WebhookConfig()
        self._client_factory = client_factory or self._default_client
        self._clock = clock
        self._random = rng or random.Random()
        self._send, self._receive = trio.open_memory_channel[StoredEvent | None](config.queue_size)
        self._limiter = trio.CapacityLimiter(config.concurrency)
        self._endpoints: dict[str, _Endpoint] = {}
        self._tenants: dict[str, dict[str, _Endpoint]] = {}
        self._catch_up: set[str] = set()  # tenants the planner must read from the log
        self._nursery: trio.Nursery | None = None
        self._client: httpx.AsyncClient | None = None
        self._overflows = 0
        self._planned = 0
        self._in_flight = 0
        self._delivered = 0
        self._retries = 0
        self._dead = 0
        self._lost = 0
        self._render_errors = 0

    def _default_client(self) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            timeout=self._config.timeout,
            follow_redirects=False,
            limits=httpx.Limits(max_connections=self._config.concurrency),
            headers={"User-Agent": USER_AGENT},
        )

    @property
    def epoch(self) -> str:
        """The store's epoch: a delivery's seq is "<epoch>:<seq>" in envelopes and the API."""
        return self._store.epoch

    # -- the engine's hook -------------------------------------------------------------------

    def offer(self, stored: StoredEvent) -> None:
        """Hand on a committed event (any event; only durable ones of tenants with endpoints
        are kept). Never blocks, never does I/O, never raises."""
        if stored.seq is None or stored.tenant_id not in self._tenants:
            return
        try:
            self._send.send_nowait(stored)
        except trio.WouldBlock:
            self._overflows += 1
            self._catch_up.add(stored.tenant_id)  # the planner is busy: it will look

    def _nudge(self, tenant_id: str) -> None:
        self._catch_up.add(tenant_id)
        # A full channel means the planner has work queued: it reads the set after that.
        with contextlib.suppress(trio.WouldBlock):
            self._send.send_nowait(_Nudge)

    def statistics(self) -> WebhookStatistics:
        return WebhookStatistics(
            endpoints=len(self._endpoints),
            queue_depth=self._send.statistics().current_buffer_used,
            queue_size=self._config.queue_size,
            overflows=self._overflows,
            planned=self._planned,
            workers=sum(1 for e in self._endpoints.values() if e.working),
            in_flight=self._in_flight,
            delivered=self._delivered,
            retries=self._retries,
            dead=self._dead,
            lost=self._lost,
            render_errors=self._render_errors,
        )

    # -- running -----------------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Catch up, then plan and deliver until cancelled. StoreError if the endpoints cannot
        be loaded at start."""
        for row in await self._store.list_webhook_endpoints():
            if row.id not in self._endpoints:
                self._add(_Endpoint.from_row(row))
        pending = await self._store.pending_webhook_endpoints()
        async with self._client_factory() as client, trio.open_nursery() as nursery:
            self._client, self._nursery = client, nursery
            try:
                for tenant_id in list(self._tenants):
                    self._nudge(tenant_id)
                for endpoint_id in pending:
                    endpoint = self._endpoints.get(endpoint_id)
                    if endpoint is not None:
                        self._kick(endpoint)
                nursery.start_soon(self._housekeeping)
                task_status.started()
                await self._plan_forever()
            finally:
                self._nursery = None

    def _add(self, endpoint: _Endpoint) -> None:
        self._endpoints[endpoint.id] = endpoint
        self._tenants.setdefault(endpoint.tenant_id, {})[endpoint.id] = endpoint

    def _remove(self, endpoint: _Endpoint) -> None:
        endpoint.deleted = True
        endpoint.wake.set()
        self._endpoints.pop(endpoint.id, None)
        of_tenant = self._tenants.get(endpoint.tenant_id, {})
        of_tenant.pop(endpoint.id, None)
        if not of_tenant:
            self._tenants.pop(endpoint.tenant_id, None)

    async def _housekeeping(self) -> None:
        config = self._config
        while True:
            now = self._clock()
            try:
                pruned = await self._store.prune_webhook_deliveries(
                    delivered_before=now - timedelta(seconds=config.delivered_retention),
                    dead_before=now - timedelta(seconds=config.dead_letter_retention),
                )
            except StoreError as exc:
                logger.warning("pruning webhook deliveries failed (will retry): %s", exc)
            else:
                if pruned:
                    logger.info("pruned %d webhook deliveries past retention", pruned)
            await trio.sleep(_HOUSEKEEPING_INTERVAL)

    # -- planning ----------------------------------------------------------------------------

    async def _plan_forever(self) -> None:
        while True:
            batch = [await self._receive.receive()]
            while len(batch) < _PLAN_BATCH:
                try:
                    batch.append(self._receive.receive_nowait())
                except trio.WouldBlock:
                    break
            offered: dict[str, dict[int, StoredEvent]] = {}
            for stored in batch:
                if stored is not None and stored.seq is not None:
                    offered.setdefault(stored.tenant_id, {})[stored.seq] = stored
            catch_up, self._catch_up = self._catch_up, set()
            for tenant_id in sorted(offered.keys() | catch_up):
                known = offered.get(tenant_id, {})
                try:
                    target = max(known, default=0)
                    if tenant_id in catch_up:
                        target = max(target, await self._store.last_seq(tenant_id))
                    await self._plan_tenant(tenant_id, known, target)
                except StoreError as exc:
                    logger.warning("planning webhooks of tenant %s failed: %s", tenant_id, exc)
                    await trio.sleep(_STORE_RETRY)
                    self._nudge(tenant_id)

    async def _plan_tenant(
        self, tenant_id: str, known: dict[int, StoredEvent], target: int
    ) -> None:
        """Plan the tenant's log positions up to `target` for every endpoint behind it."""
        while True:
            endpoints = [e for e in self._tenants.get(tenant_id, {}).values() if e.cursor < target]
            if not endpoints:
                return
            after = min(e.cursor for e in endpoints)
            upto = min(target, after + _PLAN_CHUNK)
            endpoints = [e for e in endpoints if e.cursor < upto]
            events = await self._events(tenant_id, known, after, upto)
            rendered = [(stored, self._render(stored)) for stored in events]
            plans = []
            for endpoint in endpoints:
                deliveries = [
                    NewWebhookDelivery(
                        id=uuid.uuid4().hex, seq=stored.seq, event=rendition.name, body=frame.text
                    )
                    for stored, frames in rendered
                    if stored.seq is not None and stored.seq > endpoint.cursor
                    for rendition, frame in frames
                    if endpoint.accepts(stored, rendition)
                ]
                plans.append(
                    WebhookPlan(endpoint_id=endpoint.id, cursor=upto, deliveries=tuple(deliveries))
                )
            advanced = set(await self._store.plan_webhook_deliveries(plans, now=self._clock()))
            for endpoint, plan in zip(endpoints, plans, strict=True):
                if endpoint.id in advanced:
                    endpoint.cursor = upto
                    self._planned += len(plan.deliveries)
                    if plan.deliveries:
                        self._kick(endpoint)
                elif not endpoint.deleted:
                    # Only the planner moves cursors, so this endpoint was deleted meanwhile.
                    self._remove(endpoint)

    async def _events(
        self, tenant_id: str, known: dict[int, StoredEvent], after: int, upto: int
    ) -> list[StoredEvent]:
        """The logged events with seq in (after, upto]: offered ones, else read from the log."""
        if all(seq in known for seq in range(after + 1, upto + 1)):
            return [known[seq] for seq in range(after + 1, upto + 1)]
        logged = await self._store.read_log(tenant_id, after=after, limit=upto - after)
        events = [stored for stored in logged if stored.seq is not None and stored.seq <= upto]
        first = events[0].seq if events and events[0].seq is not None else upto + 1
        if first > after + 1:
            lost = first - (after + 1)
            self._lost += lost
            logger.warning(
                "webhooks of tenant %s: %d events (seq %d-%d) were pruned from the log "
                "before they could be delivered",
                tenant_id,
                lost,
                after + 1,
                first - 1,
            )
        return events

    def _render(self, stored: StoredEvent) -> tuple[tuple[Rendition, OutFrame], ...]:
        return self._format.render(stored, self._store.epoch, self._render_one)

    def _render_one(self, dialect: Dialect, stored: StoredEvent) -> tuple[Rendition, ...]:
        return render_isolated(dialect, stored, self._render_failed)

    def _render_failed(self, dialect: Dialect, stored: StoredEvent, exc: Exception) -> None:
        self._render_errors += 1

    # -- delivering --------------------------------------------------------------------------

    def _kick(self, endpoint: _Endpoint) -> None:
        """Tell the endpoint's worker to look at its queue again; start one if none runs."""
        endpoint.wake.set()
        if not endpoint.working and not endpoint.deleted and self._nursery is not None:
            endpoint.working = True
            self._nursery.start_soon(self._work, endpoint)

    async def _work(self, endpoint: _Endpoint) -> None:
        """Deliver the endpoint's queue head first until it is empty (or the endpoint goes)."""
        try:
            while not endpoint.deleted:
                endpoint.wake = trio.Event()  # wake-ups from now on are news to this pass
                try:
                    head = await self._store.next_webhook_delivery(endpoint.id)
                except StoreError as exc:
                    logger.warning("webhook %s: reading its queue failed: %s", endpoint.id, exc)
                    await trio.sleep(_STORE_RETRY)
                    continue
                if head is None:
                    if endpoint.wake.is_set():
                        continue
                    return
                if not endpoint.enabled:
                    await endpoint.wake.wait()  # until it is enabled again (or deleted)
                    continue
                delay = (head.next_attempt_at - self._clock()).total_seconds()
                if delay > 0:
                    # A replay or a deletion wakes it early; a replayed delivery may now lead.
                    with trio.move_on_after(delay):
                        await endpoint.wake.wait()
                    continue
                await self._attempt(endpoint, head)
        finally:
            endpoint.working = False

    async def _attempt(self, endpoint: _Endpoint, delivery: WebhookDeliveryRow) -> None:
        assert self._client is not None
        config = self._config
        attempt = delivery.attempts + 1
        body = delivery.body.encode()
        started = self._clock()
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(endpoint.secret, body),
            "X-Omnirelay-Event": delivery.event,
            "X-Omnirelay-Delivery": delivery.id,
            "X-Omnirelay-Timestamp": str(int(started.timestamp())),
            "X-Omnirelay-Attempt": str(attempt),
        }
        status: int | None = None
        retry_after: str | None = None
        error: str | None = None
        fatal = False
        async with self._limiter:
            self._in_flight += 1
            try:
                with trio.fail_after(config.timeout):
                    async with self._client.stream(
                        "POST", endpoint.url, content=body, headers=headers
                    ) as response:
                        status = response.status_code
                        retry_after = response.headers.get("retry-after")
                        excerpt = await _read_excerpt(response)
                        if not 200 <= status < 300:
                            error = f"HTTP {status}" + (f": {excerpt}" if excerpt else "")
            except (trio.TooSlowError, httpx.TimeoutException):
                error = error or f"no answer within {config.timeout:g} s"
            except httpx.RequestError as exc:
                error = error or f"{type(exc).__name__}: {exc}"
            except httpx.InvalidURL as exc:
                error, fatal = f"invalid URL: {exc}", True
            finally:
                self._in_flight -= 1
        now = self._clock()
        state: WebhookState
        if status is not None and 200 <= status < 300:
            state, next_attempt_at = "delivered", now
        elif not fatal and (status is None or status == 429 or status >= 500):
            if attempt >= config.max_attempts:
                state, next_attempt_at = "dead", now
            else:
                state = "pending"
                delay = _retry_after_seconds(retry_after, now)
                if delay is None:
                    delay = self._backoff(attempt)
                next_attempt_at = now + timedelta(seconds=min(delay, config.backoff_max))
        else:
            state, next_attempt_at = "dead", now
        await self._record(
            delivery,
            state=state,
            attempts=attempt,
            last_status=status,
            last_error=None if error is None else error[:_ERROR_LENGTH],
            next_attempt_at=next_attempt_at,
        )
        # Counted once recorded: statistics never run ahead of what the store says.
        if state == "delivered":
            self._delivered += 1
        elif state == "dead":
            self._dead += 1
            logger.info(
                "webhook %s: delivery %s (seq %d, %s) is dead after %d attempts: %s",
                endpoint.id,
                delivery.id,
                delivery.seq,
                delivery.event,
                attempt,
                error,
            )
        else:
            self._retries += 1

    async def _record(
        self,
        delivery: WebhookDeliveryRow,
        *,
        state: WebhookState,
        attempts: int,
        last_status: int | None,
        last_error: str | None,
        next_attempt_at: datetime,
    ) -> None:
        while True:
            try:
                await self._store.record_webhook_attempt(
                    delivery.id,
                    state=state,
                    attempts=attempts,
                    last_status=last_status,
                    last_error=last_error,
                    next_attempt_at=next_attempt_at,
                    now=self._clock(),
                )
                return
            except StoreError as exc:
                # Not recorded means sent again later: at least once, never lost.
                logger.warning("webhook delivery %s: recording failed: %s", delivery.id, exc)
                await trio.sleep(_STORE_RETRY)

    def _backoff(self, attempt: int) -> float:
        """Seconds before retry `attempt` + 1: base·2^(attempt-1) capped, half of it jittered."""
        config = self._config
        exponent = min(attempt - 1, 64)  # 2**64 seconds is past any cap
        delay = min(config.backoff_max, config.backoff_base * 2.0**exponent)
        return delay / 2 + self._random.random() * delay / 2

    # -- endpoints (the REST API) ------------------------------------------------------------

    async def create_endpoint(
        self,
        tenant_id: str,
        *,
        url: str,
        secret: str | None = None,
        filters: Sequence[Filter] = (),
        enabled: bool = True,
    ) -> WebhookEndpointRow:
        """Add an endpoint; it gets the events logged from now on. WebhookError for a URL
        that is refused (`invalid_url`) or a tenant at its limit (`too_many_webhooks`)."""
        config = self._config
        check_url(url, allow_private_networks=config.allow_private_networks)
        row = await self._store.create_webhook_endpoint(
            "wh_" + secrets.token_hex(8),
            tenant_id=tenant_id,
            url=url,
            secret=secret if secret is not None else "whsec_" + secrets.token_urlsafe(32),
            filters=tuple(filters),
            enabled=enabled,
            now=self._clock(),
            max_per_tenant=config.max_endpoints_per_tenant,
        )
        if row is None:
            raise WebhookError(
                "too_many_webhooks",
                f"a tenant may have at most {config.max_endpoints_per_tenant} webhooks",
            )
        self._add(_Endpoint.from_row(row))
        # Events committed between the insert and now were not offered: read them back.
        self._nudge(tenant_id)
        return row

    async def list_endpoints(self, tenant_id: str | None) -> list[WebhookEndpointRow]:
        return await self._store.list_webhook_endpoints(tenant_id)

    async def get_endpoint(self, endpoint_id: str) -> WebhookEndpointRow | None:
        return await self._store.get_webhook_endpoint(endpoint_id)

    async def update_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        filters: Sequence[Filter] | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpointRow | None:
        """Change the given fields; None if there is no such endpoint. WebhookError for a
        refused URL. Events logged while an endpoint is disabled are not delivered to it."""
        if url is not None:
            check_url(url, allow_private_networks=self._config.allow_private_networks)
        row = await self._store.update_webhook_endpoint(
            endpoint_id,
            url=url,
            filters=None if filters is None else tuple(filters),
            enabled=enabled,
        )
        endpoint = self._endpoints.get(endpoint_id)
        if row is not None and endpoint is not None:
            endpoint.update(row)
            self._kick(endpoint)
        return row

    async def delete_endpoint(self, endpoint_id: str) -> bool:
        """Delete an endpoint with its queue and dead letters; False if there was none."""
        deleted = await self._store.delete_webhook_endpoint(endpoint_id)
        endpoint = self._endpoints.get(endpoint_id)
        if endpoint is not None:
            self._remove(endpoint)
        return deleted

    async def list_dead(
        self,
        tenant_id: str | None,
        *,
        endpoint_id: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[WebhookDeliveryRow]:
        """Dead letters, newest first; `before` continues below a `position`."""
        return await self._store.list_webhook_deliveries(
            tenant_id, state="dead", endpoint_id=endpoint_id, before=before, limit=limit
        )

    async def get_delivery(self, delivery_id: str) -> WebhookDeliveryRow | None:
        return await self._store.get_webhook_delivery(delivery_id)

    async def replay(self, delivery_id: str) -> WebhookDeliveryRow | None:
        """Put a dead delivery back in its endpoint's queue with its attempts reset; it goes
        out next (it has the lowest seq). None if it is not dead (or does not exist)."""
        row = await self._store.replay_webhook_delivery(delivery_id, now=self._clock())
        if row is not None:
            endpoint = self._endpoints.get(row.endpoint_id)
            if endpoint is not None:
                self._kick(endpoint)
        return row


async def _read_excerpt(response: httpx.Response) -> str:
    """The start of the response body as text; reads at most `_EXCERPT_BYTES`."""
    received = bytearray()
    async for chunk in response.aiter_raw():
        received += chunk
        if len(received) >= _EXCERPT_BYTES:
            break
    return bytes(received[:200]).decode("utf-8", "replace").strip()


def _retry_after_seconds(value: str | None, now: datetime) -> float | None:
    """Seconds a `Retry-After` header asks for (delta-seconds or an HTTP date), or None."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    seconds = (when - now).total_seconds()
    return max(0.0, seconds) if math.isfinite(seconds) else None
