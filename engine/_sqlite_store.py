"""The embedded store: `SQLiteStore`, opened with `open_sqlite_store` (interface: `_store.py`).

Threading model
    One *writer* connection, used only by the writer task through `trio.to_thread.run_sync`
    with a private limiter of one thread. Every write (ingest, session changes, mark-read,
    pruning) is a request on a bounded memory channel (`queue_size`, default 4096; a full
    queue makes writers wait, which back-pressures providers). The writer task takes the first
    request, everything else already queued (up to `max_batch`, default 256) and runs the whole
    batch in ONE transaction in a worker thread: group commit. While one batch commits, the
    next one queues up, so batches grow with load and one fsync serves many callers.
    Reads run on up to `readers` (default 4) separate read-only connections in worker threads;
    WAL lets them read beside the writer, each from a consistent snapshot. A call made only of
    ephemeral events (presence, QR, raw) writes nothing and runs on a reader.
    ":memory:" uses the writer connection for reads too, serialised by a lock (a private
    in-memory database exists per connection, so there is nothing else to read from).

Errors follow the interface's model (`_store.py`): sqlite3 failures become `StoreError`,
with nothing of the failed call written.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import sqlite3
import threading
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from types import MappingProxyType
from typing import Any, Generic, TypeVar

import attrs
import orjson
import outcome
import trio

from omnirelay.protocol._envelope import Filter
from omnirelay.protocol._events import ChatKind, Event, utc_datetime
from omnirelay.protocol._records import ChatRecord, MessageRecord, SessionRecord

from . import _schema, _sqlite
from ._schema import Synchronous, from_micros
from ._store import (
    MAX_PAGE,
    MessageView,
    OnCommit,
    Page,
    RecoveryRow,
    SessionRow,
    Store,
    StoredEvent,
    StoreError,
    StoreStatistics,
    WebhookDeliveryRow,
    WebhookEndpointRow,
    WebhookPlan,
    WebhookState,
)

__all__ = ["SQLiteStore", "open_sqlite_store"]

logger = logging.getLogger("omnirelay.engine.store")

_MAX_ROW_ID = 2**63 - 1


def _is_row_id(value: int) -> bool:
    """Whether `value` can be a SQLite row id; anything else names no row."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value <= _MAX_ROW_ID


T = TypeVar("T")

_PRUNE_CHUNK = 5000  # rows per prune transaction: keeps each one short for the writer


# --------------------------------------------------------------------------------------------
# Cursors: opaque to clients, "<kind>:<sort key>:<id>" in unpadded base64url.


def _encode_cursor(kind: str, sort_key: int, row_id: int) -> str:
    raw = f"{kind}:{sort_key}:{row_id}".encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _decode_cursor(kind: str, cursor: str) -> tuple[int, int]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode("ascii")).decode("ascii")
        found_kind, sort_key, row_id = text.split(":")
        if found_kind != kind:
            raise ValueError(f"a {found_kind!r} cursor")
        return int(sort_key), int(row_id)
    except (ValueError, UnicodeError, binascii.Error) as exc:
        raise ValueError(
            f"malformed cursor {cursor[:40]!r}: pass back a next_cursor this listing returned"
        ) from exc


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be 1-{MAX_PAGE}, not {limit}")


# --------------------------------------------------------------------------------------------
# The SQLite store


@attrs.define(eq=False)
class _Request(Generic[T]):
    """One write waiting for the writer; `done` is set once `result` is.

    `logs`: the job returns applied events, counted in the statistics' rows.
    """

    job: _sqlite.Job[T]
    logs: bool
    done: trio.Event = attrs.field(factory=trio.Event)
    result: outcome.Outcome[T] | None = None


def _store_error(exc: sqlite3.Error) -> StoreError:
    name = getattr(exc, "sqlite_errorname", None)
    detail = f"{exc} ({name})" if name else str(exc)
    error = StoreError(f"the database cannot do it right now: {detail}")
    error.__cause__ = exc
    return error


def _is_bug(exc: BaseException) -> bool:
    # Misuse of the sqlite3 API is ours to fix, not a condition to retry.
    return isinstance(exc, sqlite3.ProgrammingError | sqlite3.InterfaceError)


def _stored(applied: Sequence[_sqlite.Applied]) -> list[StoredEvent]:
    return [
        StoredEvent(
            tenant_id=context.tenant_id,
            session_id=context.session.id,
            seq=context.seq,
            event=event,
            context=context,
        )
        for event, context in applied
    ]


_SESSION_ROW_COLUMNS = f"{_sqlite.SESSION_COLUMNS}, provider_options, autostart, state, updated_at"
_MESSAGE_VIEW_COLUMNS = (
    "id, provider_message_id, chat_id, from_me, kind, coalesce(text, caption), sender_id, "
    "sender_name, status, occurred_at, edited, deleted, media_url"
)
_CHAT_SORT_KEY = "coalesce(last_message_at, created_at)"  # as in the chats_by_activity index


def _session_row(row: Sequence[Any]) -> SessionRow:
    return SessionRow(
        record=_sqlite.session_record(row),
        provider_options=MappingProxyType(orjson.loads(row[6])),
        autostart=bool(row[7]),
        state=row[8],
        updated_at=from_micros(row[9]),
    )


def _message_view(row: Sequence[Any]) -> MessageView:
    return MessageView(
        record=MessageRecord(id=row[0], provider_message_id=row[1]),
        chat_id=row[2],
        from_me=bool(row[3]),
        kind=row[4],
        text=row[5],
        sender_id=row[6],
        sender_name=row[7],
        status=row[8],
        occurred_at=from_micros(row[9]),
        edited=bool(row[10]),
        deleted=bool(row[11]),
        media_url=row[12],
    )


def _encode_filters(filters: Sequence[Filter]) -> str:
    return orjson.dumps([f.to_json() for f in filters]).decode()


def _endpoint_row(row: Sequence[Any]) -> WebhookEndpointRow:
    return WebhookEndpointRow(
        id=row[0],
        tenant_id=row[1],
        url=row[2],
        secret=row[3],
        filters=tuple(Filter(**spec) for spec in orjson.loads(row[4])),
        enabled=bool(row[5]),
        cursor=row[6],
        created_at=from_micros(row[7]),
    )


def _load_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> WebhookEndpointRow | None:
    row = conn.execute(
        f"SELECT {_sqlite.WEBHOOK_ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = ?",
        (endpoint_id,),
    ).fetchone()
    return None if row is None else _endpoint_row(row)


def _delivery_row(row: Sequence[Any]) -> WebhookDeliveryRow:
    return WebhookDeliveryRow(
        position=row[0],
        id=row[1],
        endpoint_id=row[2],
        tenant_id=row[3],
        seq=row[4],
        event=row[5],
        body=row[6],
        attempts=row[7],
        last_status=row[8],
        last_error=row[9],
        next_attempt_at=from_micros(row[10]),
        state=row[11],
        created_at=from_micros(row[12]),
        updated_at=from_micros(row[13]),
    )


def _load_delivery(conn: sqlite3.Connection, delivery_id: str) -> WebhookDeliveryRow | None:
    row = conn.execute(
        f"SELECT {_sqlite.WEBHOOK_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE id = ?",
        (delivery_id,),
    ).fetchone()
    return None if row is None else _delivery_row(row)


class SQLiteStore:
    """The embedded `Store`: SQLite in WAL mode, one group-committing writer, a reader pool.

    Made only by `open_sqlite_store`, which owns its writer task; usable only inside that
    context (afterwards every call raises StoreError).
    """

    def __init__(
        self,
        *,
        epoch: str,
        writer: sqlite3.Connection,
        writer_lock: threading.Lock,
        readers: _sqlite.ReaderPool,
        readers_limiter: trio.CapacityLimiter,
        max_batch: int,
        queue_size: int,
        on_commit: OnCommit | None,
    ) -> None:
        self._epoch = epoch
        self._on_commit = on_commit
        self._writer = writer
        self._writer_lock = writer_lock
        self._writer_limiter = trio.CapacityLimiter(1)
        self._readers = readers
        self._readers_limiter = readers_limiter
        self._max_batch = max_batch
        self._queue_size = queue_size
        self._send, self._receive = trio.open_memory_channel[_Request[Any]](queue_size)
        self._batches = 0
        self._requests = 0
        self._rows = 0
        self._errors = 0
        self._retried = 0
        self._largest = 0

    @property
    def epoch(self) -> str:
        return self._epoch

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(
            batches=self._batches,
            requests=self._requests,
            rows=self._rows,
            errors=self._errors,
            retried_batches=self._retried,
            largest_batch=self._largest,
            average_batch_size=self._requests / self._batches if self._batches else 0.0,
            queue_depth=self._send.statistics().current_buffer_used,
            queue_size=self._queue_size,
        )

    # -- the writer

    async def _run_writer(self, *, task_status: trio.TaskStatus[None]) -> None:
        """Serve write requests in batches until the request channel is closed and empty.

        Shielded: a cancellation of the surrounding code must not stop the writer while the
        engine's own (shielded) shutdown still records session states. It ends when
        `open_sqlite_store` closes the request channel on its way out, after draining it.
        """
        task_status.started()
        with trio.CancelScope(shield=True):
            await self._serve_batches()

    async def _serve_batches(self) -> None:
        try:
            async for first in self._receive:
                batch = [first]
                while len(batch) < self._max_batch:
                    try:
                        batch.append(self._receive.receive_nowait())
                    except (trio.WouldBlock, trio.EndOfChannel):
                        break
                try:
                    result = await trio.to_thread.run_sync(
                        _sqlite.run_batch,
                        self._writer,
                        self._writer_lock,
                        [request.job for request in batch],
                        limiter=self._writer_limiter,
                    )
                except BaseException:
                    # Cancelled before the thread started: these requests never ran.
                    _fail(batch, StoreError("the store closed before the write ran"))
                    raise
                self._finish(batch, result)
        finally:
            pending = []
            while True:
                try:
                    pending.append(self._receive.receive_nowait())
                except (trio.WouldBlock, trio.EndOfChannel):
                    break
            _fail(pending, StoreError("the store closed before the write ran"))
            self._receive.close()

    def _finish(self, batch: list[_Request[Any]], result: _sqlite.BatchResult) -> None:
        self._batches += 1
        self._requests += len(batch)
        self._largest = max(self._largest, len(batch))
        self._retried += result.retried
        committed: list[StoredEvent] = []
        for request, result_of_request in zip(batch, result.outcomes, strict=True):
            if isinstance(result_of_request, outcome.Error):
                self._errors += 1
                error = result_of_request.error
                if isinstance(error, sqlite3.Error) and not _is_bug(error):
                    logger.warning("store write failed: %s", error)
            elif request.logs and isinstance(result_of_request, outcome.Value):
                committed += result_of_request.value
            request.result = result_of_request
        self._rows += sum(1 for stored in committed if stored.seq is not None)
        try:
            # Before any caller resumes: what ingest returns has always been handed on.
            if committed and self._on_commit is not None:
                self._on_commit(committed)
        finally:
            for request in batch:
                request.done.set()

    async def _write(self, job: _sqlite.Job[T], *, logs: bool = False) -> T:
        request: _Request[T] = _Request(job, logs)
        try:
            await self._send.send(request)
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            raise StoreError("the store is closed") from None
        await request.done.wait()
        assert request.result is not None
        return _unwrap(request.result)

    async def _write_events(self, job: _sqlite.Job[list[_sqlite.Applied]]) -> list[StoredEvent]:
        # The StoredEvents are made in the writer's thread so that the writer task can hand
        # them to on_commit as they are.
        return await self._write(lambda conn: _stored(job(conn)), logs=True)

    async def _read(self, job: _sqlite.Job[T]) -> T:
        try:
            return await trio.to_thread.run_sync(
                self._readers.run, job, limiter=self._readers_limiter
            )
        except _sqlite.PoolClosed:
            raise StoreError("the store is closed") from None
        except sqlite3.Error as exc:
            if _is_bug(exc):
                raise
            raise _store_error(exc) from exc

    # -- sessions

    async def put_session(
        self, record: SessionRecord, *, provider_options: Mapping[str, Any], autostart: bool
    ) -> bool:
        """Insert or update; False if the id exists under another tenant (answer 409).

        TypeError if `provider_options` is not JSON-serialisable. A `phone` or
        `display_name` of None keeps what the provider reported.
        """
        options = orjson.dumps(dict(provider_options)).decode()
        job = functools.partial(
            _sqlite.put_session,
            record=record,
            provider_options=options,
            autostart=autostart,
            now=datetime.now(UTC),
        )
        return await self._write(job)

    async def get_session(self, session_id: str) -> SessionRow | None:
        def job(conn: sqlite3.Connection) -> SessionRow | None:
            row = conn.execute(
                f"SELECT {_SESSION_ROW_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
            ).fetchone()
            return None if row is None else _session_row(row)

        return await self._read(job)

    async def list_sessions(self, tenant_id: str | None = None) -> list[SessionRow]:
        def job(conn: sqlite3.Connection) -> list[SessionRow]:
            if tenant_id is None:
                rows = conn.execute(
                    f"SELECT {_SESSION_ROW_COLUMNS} FROM sessions ORDER BY tenant_id, id"
                )
            else:
                rows = conn.execute(
                    f"SELECT {_SESSION_ROW_COLUMNS} FROM sessions WHERE tenant_id = ? ORDER BY id",
                    (tenant_id,),
                )
            return [_session_row(row) for row in rows]

        return await self._read(job)

    async def delete_session(self, session_id: str) -> bool:
        """Delete it with its chats, messages, contacts and dedupe keys; the log stays."""
        return await self._write(functools.partial(_sqlite.delete_session, session_id=session_id))

    # -- ingest

    async def ingest(
        self, session_id: str, events: Sequence[Event], *, received_at: datetime
    ) -> list[StoredEvent]:
        """Apply `events` (one session's) in one transaction; return what to fan out.

        Durable events are deduplicated, applied to the rows and logged with the tenant's
        next seqs; a new chat is announced with a ChatCreated logged just before the event
        that created it. Ephemeral events are returned with a read-only context and seq None.
        A duplicate (or a status that does not advance) returns nothing. LookupError for an
        unknown session, StoreError if the database fails (then nothing was written).
        """
        received_at = utc_datetime(received_at)
        batch = tuple(events)
        if not batch:
            return []
        job = functools.partial(
            _sqlite.ingest, session_id=session_id, events=batch, received_at=received_at
        )
        if any(event.durable for event in batch):
            return await self._write_events(job)
        stored = _stored(await self._read(job))
        if self._on_commit is not None:
            self._on_commit(stored)
        return stored

    async def mark_chat_read(self, chat_id: int, *, received_at: datetime) -> list[StoredEvent]:
        if not _is_row_id(chat_id):
            return []
        job = functools.partial(
            _sqlite.mark_chat_read, chat_id=chat_id, received_at=utc_datetime(received_at)
        )
        return await self._write_events(job)

    # -- listings

    async def list_chats(
        self,
        session_id: str,
        *,
        kinds: frozenset[ChatKind],
        limit: int = 50,
        cursor: str | None = None,
    ) -> Page[ChatRecord]:
        """A session's chats of `kinds`, most recent activity first (last message, or
        creation for a chat without one), then newest row first; ValueError for a bad cursor.

        Keyset pagination: a page starts strictly after the previous page's last chat, so
        chats created meanwhile never shift or repeat the pages that follow.
        """
        _check_limit(limit)
        after = None if cursor is None else _decode_cursor("chat", cursor)
        kind_values = sorted(kind.value for kind in kinds)

        def job(conn: sqlite3.Connection) -> Page[ChatRecord]:
            row = conn.execute(
                "SELECT t.last_seq FROM sessions s JOIN tenants t ON t.id = s.tenant_id "
                "WHERE s.id = ?",
                (session_id,),
            ).fetchone()
            seq = 0 if row is None else int(row[0])
            if not kind_values:
                return Page(items=(), next_cursor=None, seq=seq)
            marks = ", ".join("?" * len(kind_values))
            sql = (
                f"SELECT {_sqlite.CHAT_COLUMNS}, {_CHAT_SORT_KEY} FROM chats "
                f"WHERE session_id = ? AND kind IN ({marks})"
            )
            parameters: list[Any] = [session_id, *kind_values]
            if after is not None:
                # Not a row value (key, id) < (?, ?): SQLite bounds an expression index
                # range only with a plain comparison, and would scan from the top instead.
                sql += f" AND {_CHAT_SORT_KEY} <= ? AND ({_CHAT_SORT_KEY} < ? OR id < ?)"
                parameters += [after[0], after[0], after[1]]
            sql += f" ORDER BY {_CHAT_SORT_KEY} DESC, id DESC LIMIT ?"
            rows = conn.execute(sql, (*parameters, limit + 1)).fetchall()
            items = tuple(_sqlite.chat_record(row) for row in rows[:limit])
            next_cursor = None
            if len(rows) > limit:
                last = rows[limit - 1]
                next_cursor = _encode_cursor("chat", last[-1], last[0])
            return Page(items=items, next_cursor=next_cursor, seq=seq)

        return await self._read(job)

    async def get_chat(self, chat_id: int) -> tuple[ChatRecord, str] | None:
        if not _is_row_id(chat_id):
            return None  # no row can have it (SQLite would raise OverflowError on a huge one)

        def job(conn: sqlite3.Connection) -> tuple[ChatRecord, str] | None:
            row = conn.execute(
                f"SELECT {_sqlite.CHAT_COLUMNS}, "
                "(SELECT tenant_id FROM sessions WHERE id = chats.session_id) "
                "FROM chats WHERE id = ?",
                (chat_id,),
            ).fetchone()
            if row is None or row[-1] is None:
                return None
            return _sqlite.chat_record(row), row[-1]

        return await self._read(job)

    async def list_messages(
        self, chat_id: int, *, limit: int = 50, cursor: str | None = None
    ) -> Page[MessageView]:
        """A chat's messages, newest first (by provider time, then row id).

        Rows made only for a status or reaction that came before its message are not listed
        until the message arrives. ValueError for a bad cursor or limit.
        """
        _check_limit(limit)
        after = None if cursor is None else _decode_cursor("message", cursor)
        if not _is_row_id(chat_id):
            return Page(items=(), next_cursor=None, seq=0)

        def job(conn: sqlite3.Connection) -> Page[MessageView]:
            row = conn.execute(
                "SELECT t.last_seq FROM chats c JOIN sessions s ON s.id = c.session_id "
                "JOIN tenants t ON t.id = s.tenant_id WHERE c.id = ?",
                (chat_id,),
            ).fetchone()
            seq = 0 if row is None else int(row[0])
            sql = (
                f"SELECT {_MESSAGE_VIEW_COLUMNS} FROM messages "
                "WHERE chat_id = ? AND placeholder = 0"
            )
            parameters: list[Any] = [chat_id]
            if after is not None:
                sql += " AND (occurred_at, id) < (?, ?)"
                parameters += after
            sql += " ORDER BY occurred_at DESC, id DESC LIMIT ?"
            rows = conn.execute(sql, (*parameters, limit + 1)).fetchall()
            items = tuple(_message_view(row) for row in rows[:limit])
            next_cursor = None
            if len(rows) > limit:
                last = rows[limit - 1]
                next_cursor = _encode_cursor("message", last[9], last[0])
            return Page(items=items, next_cursor=next_cursor, seq=seq)

        return await self._read(job)

    # -- the log

    async def last_seq(self, tenant_id: str) -> int:
        """The tenant's newest log position; 0 if it has none."""
        return await self._read(functools.partial(_sqlite.tenant_seq, tenant_id=tenant_id))

    async def read_log(self, tenant_id: str, *, after: int, limit: int) -> list[StoredEvent]:
        """Up to `limit` logged events with seq > `after`, in seq order, exactly as ingest
        returned them. The log is pruned from the oldest end only: if the first event is
        not `after + 1`, what lay between is gone. StoreError for an unreadable entry."""
        _check_limit(limit)

        def job(conn: sqlite3.Connection) -> list[StoredEvent]:
            rows = conn.execute(
                "SELECT seq, payload FROM event_log WHERE tenant_id = ? AND seq > ? "
                "ORDER BY seq LIMIT ?",
                (tenant_id, after, limit),
            ).fetchall()
            applied = []
            for seq, payload in rows:
                try:
                    applied.append(_sqlite.decode_payload(payload))
                except ValueError as exc:
                    raise StoreError(f"log entry {seq} of tenant {tenant_id!r}: {exc}") from exc
            return _stored(applied)

        return await self._read(job)

    async def prune(
        self,
        tenant_id: str | None = None,
        *,
        keep_count: int | None = None,
        max_age: timedelta | None = None,
        dedupe_max_age: timedelta | None = None,
        now: datetime | None = None,
    ) -> int:
        """Delete the oldest log entries of one tenant (or all: None); return how many.

        An entry goes if `keep_count` newer entries exist or it is older than `max_age`;
        only a prefix of each tenant's log goes (see `read_log`), in short transactions.
        `dedupe_max_age` also forgets older dedupe keys (keep them at least as long as a
        provider may redeliver: 7 days for Meta). `max_age` also forgets Socket.IO recovery
        sessions not saved since (their log is gone). `now` defaults to the wall clock.
        """
        if keep_count is not None and keep_count < 0:
            raise ValueError(f"keep_count must not be negative, not {keep_count}")
        now = datetime.now(UTC) if now is None else utc_datetime(now)
        cutoff = None if max_age is None else now - max_age
        if tenant_id is not None:
            tenants = [tenant_id]
        else:
            tenants = await self._read(
                lambda conn: [row[0] for row in conn.execute("SELECT id FROM tenants")]
            )
        deleted = 0
        for tenant in tenants:
            finished = keep_count is None and cutoff is None
            while not finished:
                job = functools.partial(
                    _sqlite.prune_log,
                    tenant_id=tenant,
                    keep_count=keep_count,
                    cutoff=cutoff,
                    chunk=_PRUNE_CHUNK,
                )
                count, finished = await self._write(job)
                deleted += count
        if dedupe_max_age is not None:
            forget = functools.partial(
                _sqlite.prune_dedupe,
                tenant_id=tenant_id,
                cutoff=now - dedupe_max_age,
                chunk=_PRUNE_CHUNK,
            )
            while await self._write(forget) == _PRUNE_CHUNK:
                pass
        if cutoff is not None:
            expire = functools.partial(
                _sqlite.prune_recovery, tenant_id=tenant_id, cutoff=cutoff, chunk=_PRUNE_CHUNK
            )
            while await self._write(expire) == _PRUNE_CHUNK:
                pass
        return deleted

    # -- Socket.IO connection-state recovery

    async def save_recovery(
        self, pid: str, *, tenant_id: str, namespace: str, sid: str, rooms: Sequence[str]
    ) -> None:
        job = functools.partial(
            _sqlite.save_recovery,
            pid=pid,
            tenant_id=tenant_id,
            namespace=namespace,
            sid=sid,
            rooms=orjson.dumps(list(rooms)).decode(),
            now=datetime.now(UTC),
        )
        await self._write(job)

    async def load_recovery(self, pid: str) -> RecoveryRow | None:
        def job(conn: sqlite3.Connection) -> RecoveryRow | None:
            row = conn.execute(
                "SELECT pid, tenant_id, namespace, sid, rooms, updated_at "
                "FROM recovery_sessions WHERE pid = ?",
                (pid,),
            ).fetchone()
            if row is None:
                return None
            return RecoveryRow(
                pid=row[0],
                tenant_id=row[1],
                namespace=row[2],
                sid=row[3],
                rooms=tuple(orjson.loads(row[4])),
                updated_at=from_micros(row[5]),
            )

        return await self._read(job)

    async def delete_recovery(self, pid: str) -> None:
        await self._write(functools.partial(_sqlite.delete_recovery, pid=pid))

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
        """Add an endpoint whose cursor is the tenant's last seq: it gets what is logged
        after. None (nothing written) if the tenant has `max_per_tenant` endpoints already;
        sqlite3.IntegrityError (a bug) if the id is taken."""
        encoded = _encode_filters(filters)
        when = utc_datetime(now)

        def job(conn: sqlite3.Connection) -> WebhookEndpointRow | None:
            created = _sqlite.create_webhook_endpoint(
                conn,
                endpoint_id=endpoint_id,
                tenant_id=tenant_id,
                url=url,
                secret=secret,
                filters=encoded,
                enabled=enabled,
                now=when,
                max_per_tenant=max_per_tenant,
            )
            return _load_endpoint(conn, endpoint_id) if created else None

        return await self._write(job)

    async def get_webhook_endpoint(self, endpoint_id: str) -> WebhookEndpointRow | None:
        return await self._read(functools.partial(_load_endpoint, endpoint_id=endpoint_id))

    async def list_webhook_endpoints(
        self, tenant_id: str | None = None
    ) -> list[WebhookEndpointRow]:
        columns = _sqlite.WEBHOOK_ENDPOINT_COLUMNS

        def job(conn: sqlite3.Connection) -> list[WebhookEndpointRow]:
            if tenant_id is None:
                rows = conn.execute(
                    f"SELECT {columns} FROM webhook_endpoints ORDER BY created_at, id"
                )
            else:
                rows = conn.execute(
                    f"SELECT {columns} FROM webhook_endpoints WHERE tenant_id = ? "
                    "ORDER BY created_at, id",
                    (tenant_id,),
                )
            return [_endpoint_row(row) for row in rows]

        return await self._read(job)

    async def update_webhook_endpoint(
        self,
        endpoint_id: str,
        *,
        url: str | None = None,
        filters: Sequence[Filter] | None = None,
        enabled: bool | None = None,
    ) -> WebhookEndpointRow | None:
        encoded = None if filters is None else _encode_filters(filters)

        def job(conn: sqlite3.Connection) -> WebhookEndpointRow | None:
            if not _sqlite.update_webhook_endpoint(
                conn, endpoint_id=endpoint_id, url=url, filters=encoded, enabled=enabled
            ):
                return None
            return _load_endpoint(conn, endpoint_id)

        return await self._write(job)

    async def delete_webhook_endpoint(self, endpoint_id: str) -> bool:
        return await self._write(
            functools.partial(_sqlite.delete_webhook_endpoint, endpoint_id=endpoint_id)
        )

    async def plan_webhook_deliveries(
        self, plans: Sequence[WebhookPlan], *, now: datetime
    ) -> list[str]:
        raw = [
            (
                plan.endpoint_id,
                plan.cursor,
                [(d.id, d.seq, d.event, d.body) for d in plan.deliveries],
            )
            for plan in plans
        ]
        if not raw:
            return []
        job = functools.partial(_sqlite.plan_webhook_deliveries, plans=raw, now=utc_datetime(now))
        return await self._write(job)

    async def next_webhook_delivery(self, endpoint_id: str) -> WebhookDeliveryRow | None:
        def job(conn: sqlite3.Connection) -> WebhookDeliveryRow | None:
            row = conn.execute(
                f"SELECT {_sqlite.WEBHOOK_DELIVERY_COLUMNS} FROM webhook_deliveries "
                "WHERE endpoint_id = ? AND state = 'pending' ORDER BY seq, position LIMIT 1",
                (endpoint_id,),
            ).fetchone()
            return None if row is None else _delivery_row(row)

        return await self._read(job)

    async def pending_webhook_endpoints(self) -> list[str]:
        def job(conn: sqlite3.Connection) -> list[str]:
            rows = conn.execute(
                "SELECT DISTINCT endpoint_id FROM webhook_deliveries WHERE state = 'pending'"
            )
            return [row[0] for row in rows]

        return await self._read(job)

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
        job = functools.partial(
            _sqlite.record_webhook_attempt,
            delivery_id=delivery_id,
            state=state,
            attempts=attempts,
            last_status=last_status,
            last_error=last_error,
            next_attempt_at=utc_datetime(next_attempt_at),
            now=utc_datetime(now),
        )
        return await self._write(job)

    async def get_webhook_delivery(self, delivery_id: str) -> WebhookDeliveryRow | None:
        return await self._read(functools.partial(_load_delivery, delivery_id=delivery_id))

    async def list_webhook_deliveries(
        self,
        tenant_id: str | None,
        *,
        state: WebhookState,
        endpoint_id: str | None = None,
        before: int | None = None,
        limit: int = 50,
    ) -> list[WebhookDeliveryRow]:
        _check_limit(limit)
        sql = f"SELECT {_sqlite.WEBHOOK_DELIVERY_COLUMNS} FROM webhook_deliveries WHERE state = ?"
        parameters: list[Any] = [state]
        if tenant_id is not None:
            sql += " AND tenant_id = ?"
            parameters.append(tenant_id)
        if endpoint_id is not None:
            sql += " AND endpoint_id = ?"
            parameters.append(endpoint_id)
        if before is not None:
            sql += " AND position < ?"
            parameters.append(before)
        sql += " ORDER BY position DESC LIMIT ?"
        parameters.append(limit)

        def job(conn: sqlite3.Connection) -> list[WebhookDeliveryRow]:
            return [_delivery_row(row) for row in conn.execute(sql, parameters)]

        return await self._read(job)

    async def replay_webhook_delivery(
        self, delivery_id: str, *, now: datetime
    ) -> WebhookDeliveryRow | None:
        when = utc_datetime(now)

        def job(conn: sqlite3.Connection) -> WebhookDeliveryRow | None:
            if not _sqlite.replay_webhook_delivery(conn, delivery_id=delivery_id, now=when):
                return None
            return _load_delivery(conn, delivery_id)

        return await self._write(job)

    async def prune_webhook_deliveries(
        self, *, delivered_before: datetime, dead_before: datetime
    ) -> int:
        job = functools.partial(
            _sqlite.prune_webhook_deliveries,
            delivered_cutoff=utc_datetime(delivered_before),
            dead_cutoff=utc_datetime(dead_before),
            chunk=_PRUNE_CHUNK,
        )
        deleted = 0
        while True:
            count = await self._write(job)
            deleted += count
            if count < _PRUNE_CHUNK:
                return deleted

    # -- closing

    def _close(self) -> None:
        # Blocking: run in a thread. Closing the last connection checkpoints the WAL.
        self._readers.close()
        with self._writer_lock:
            self._writer.close()


def _implements_store(store: SQLiteStore) -> Store:
    # Never called: mypy checks here that SQLiteStore has every method of Store.
    return store


def _unwrap(result: outcome.Outcome[T]) -> T:
    if isinstance(result, outcome.Error):
        error = result.error
        if isinstance(error, sqlite3.Error) and not _is_bug(error):
            raise _store_error(error) from error
    return result.unwrap()


def _fail(requests: Sequence[_Request[Any]], error: StoreError) -> None:
    for request in requests:
        request.result = outcome.Error(error)
        request.done.set()


@asynccontextmanager
async def open_sqlite_store(
    path: str,
    *,
    busy_timeout: float = 5.0,
    max_batch: int = 256,
    queue_size: int = 4096,
    readers: int = 4,
    synchronous: Synchronous = "FULL",
    on_commit: OnCommit | None = None,
) -> AsyncIterator[SQLiteStore]:
    """Open (creating or migrating) the database at `path` and run its writer.

    The writer task lives in a nursery of its own, opened here. On a normal exit the request
    channel closes, queued writes are drained and committed, then the connections close; if
    the body raises (or is cancelled) the batch in flight still completes, queued writes fail
    with StoreError. ":memory:" gives a private in-memory database (reads share the writer's
    connection).

    `on_commit(events)` receives every StoredEvent ingest and mark_chat_read produce, exactly
    once and before the call that produced it returns: for a batch, synchronously in the
    writer task right after its commit, in log order (ephemeral events of those calls in
    place, seq None); for an ingest of ephemeral events only (no commit), in the caller's
    task. So the hub sees events in seq order even when the caller was cancelled meanwhile.
    It must not block; if it raises, that is a bug and it propagates out of this context.

    `synchronous="FULL"` fsyncs every commit (durable across power loss; group commit keeps
    the cost per event low), "NORMAL" only survives process crashes. `max_batch` counts
    calls, not events. StoreError if the database cannot be opened or is newer than this
    code; ValueError for bad arguments.
    """
    if busy_timeout < 0:
        raise ValueError(f"busy_timeout must not be negative, not {busy_timeout}")
    for name, value in (("max_batch", max_batch), ("queue_size", queue_size), ("readers", readers)):
        if value < 1:
            raise ValueError(f"{name} must be at least 1, not {value}")

    def open_writer() -> tuple[sqlite3.Connection, str]:
        conn = _schema.open_connection(
            path, busy_timeout=busy_timeout, writer=True, synchronous=synchronous
        )
        try:
            before = _schema.migrate(conn)
            if before != _schema.SCHEMA_VERSION:
                logger.info("store %s: schema %d -> %d", path, before, _schema.SCHEMA_VERSION)
            return conn, _schema.read_epoch(conn)
        except BaseException:
            conn.close()
            raise

    try:
        writer, epoch = await trio.to_thread.run_sync(open_writer)
    except sqlite3.Error as exc:
        raise _store_error(exc) from exc
    lock = threading.Lock()
    shared = (writer, lock) if path == ":memory:" else None
    store = SQLiteStore(
        epoch=epoch,
        writer=writer,
        writer_lock=lock,
        readers=_sqlite.ReaderPool(
            functools.partial(
                _schema.open_connection, path, busy_timeout=busy_timeout, writer=False
            ),
            shared=shared,
        ),
        readers_limiter=trio.CapacityLimiter(1 if shared is not None else readers),
        max_batch=max_batch,
        queue_size=queue_size,
        on_commit=on_commit,
    )
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(store._run_writer)
            try:
                yield store
            finally:
                store._send.close()
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(store._close)
