"""What the store's threads run: group-commit batches, ingest transactions, the log codec,
and the pool of read connections.

Everything here is synchronous and blocking; `_sqlite_store.SQLiteStore` calls it through
`trio.to_thread.run_sync`. A *job* is a function of one connection; the writer thread runs a
batch of jobs with `run_batch`, inside one transaction. Jobs never commit or roll back
themselves, and they have no effect outside the database, so a failed batch can be rolled back
and its jobs run again one by one.

Idempotency: a redelivered event changes nothing and logs nothing. Messages, statuses,
deletions and chats are idempotent by their own rows (unique provider ids; a message row that
is not a placeholder is never applied twice; delivery states only move forward; a deleted
message stays deleted; a known chat is not created again). Edits and reactions leave no row
of their own, so their `dedupe_key()` is kept in the `dedupe` table, with its own retention.

Errors: sqlite3 exceptions propagate unchanged (the async layer turns them into `StoreError`);
`LookupError` for an event of an unknown session; `ValueError`/`TypeError` for caller bugs.
"""

from __future__ import annotations

import functools
import sqlite3
import threading
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime
from typing import Any, TypeAlias, TypeVar, assert_never

import attrs
import cattrs
import orjson
import outcome

from omnirelay.protocol._events import (
    ChatCreated,
    ChatKind,
    ChatRef,
    ChatUpdated,
    ContactUpdated,
    DeliveryState,
    Event,
    MessageDeleted,
    MessageEdited,
    MessageReaction,
    MessageReceived,
    MessageSent,
    MessageStatus,
    Party,
    PresenceUpdated,
    ProviderRaw,
    SessionQR,
    SessionStatus,
    event_from_json,
    event_to_json,
    utc_datetime,
)
from omnirelay.protocol._records import (
    ChatRecord,
    ContactRecord,
    MessageRecord,
    RenderContext,
    SessionRecord,
)

from ._schema import from_micros, optional_from_micros, optional_micros, to_micros

__all__ = [
    "CHAT_COLUMNS",
    "SESSION_COLUMNS",
    "WEBHOOK_DELIVERY_COLUMNS",
    "WEBHOOK_ENDPOINT_COLUMNS",
    "Applied",
    "BatchResult",
    "Job",
    "PlannedDelivery",
    "PoolClosed",
    "ReaderPool",
    "chat_record",
    "create_webhook_endpoint",
    "decode_payload",
    "delete_recovery",
    "delete_session",
    "delete_webhook_endpoint",
    "encode_payload",
    "ingest",
    "load_session",
    "mark_chat_read",
    "plan_webhook_deliveries",
    "prune_dedupe",
    "prune_log",
    "prune_recovery",
    "prune_webhook_deliveries",
    "put_session",
    "record_webhook_attempt",
    "replay_webhook_delivery",
    "run_batch",
    "save_recovery",
    "session_record",
    "tenant_seq",
    "update_webhook_endpoint",
]

T = TypeVar("T")
Job: TypeAlias = Callable[[sqlite3.Connection], T]
Applied: TypeAlias = tuple[Event, RenderContext]
"""An event as applied: the context carries the tenant, the session and the seq (None if
ephemeral), which is all a `StoredEvent` adds."""


# --------------------------------------------------------------------------------------------
# Batches


@attrs.frozen
class BatchResult:
    """The outcome of each job, in order; `retried` if the batch had to be split."""

    outcomes: tuple[outcome.Outcome[Any], ...]
    retried: bool


def run_batch(
    conn: sqlite3.Connection, lock: threading.Lock, jobs: Sequence[Job[Any]]
) -> BatchResult:
    """Run `jobs` in one transaction (group commit); isolate failures.

    If any job raises, or the commit fails, the whole transaction is rolled back and every
    job runs again in a transaction of its own, so only a failing job sees its error and no
    job is ever half-applied. `lock` serialises use of `conn` (shared with readers when the
    database is ":memory:").
    """
    with lock:
        if len(jobs) > 1:
            try:
                conn.execute("BEGIN IMMEDIATE")
                values = [job(conn) for job in jobs]
                conn.execute("COMMIT")
            except Exception as exc:
                _rollback(conn, exc)
            else:
                return BatchResult(tuple(outcome.Value(value) for value in values), False)
        return BatchResult(tuple(_run_alone(conn, job) for job in jobs), len(jobs) > 1)


def _run_alone(conn: sqlite3.Connection, job: Job[Any]) -> outcome.Outcome[Any]:
    try:
        conn.execute("BEGIN IMMEDIATE")
        value = job(conn)
        conn.execute("COMMIT")
    except Exception as exc:
        _rollback(conn, exc)
        return outcome.Error(exc)
    return outcome.Value(value)


def _rollback(conn: sqlite3.Connection, cause: BaseException) -> None:
    # SQLite may already have rolled back by itself (SQLITE_FULL, SQLITE_IOERR, ...).
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            cause.add_note(f"and the rollback failed too: {exc}")


# --------------------------------------------------------------------------------------------
# Readers


class PoolClosed(Exception):
    """The reader pool was closed: the store is closed."""


class ReaderPool:
    """Read-only connections, opened on first use; each used by one thread at a time.

    How many run at once is the caller's limiter's business (one connection per concurrent
    reader is opened, and kept). With `shared` (":memory:"), every read uses the writer's
    connection under the writer's lock instead: it is the only copy of the database.
    """

    def __init__(
        self,
        connect: Callable[[], sqlite3.Connection],
        *,
        shared: tuple[sqlite3.Connection, threading.Lock] | None = None,
    ) -> None:
        self._connect = connect
        self._shared = shared
        self._idle: list[sqlite3.Connection] = []
        self._mutex = threading.Lock()
        self._closed = False

    def run(self, job: Job[T]) -> T:
        """Run `job` in one read transaction (one snapshot). Blocks; PoolClosed if closed."""
        if self._shared is not None:
            shared_conn, lock = self._shared
            with lock:
                if self._closed:
                    raise PoolClosed
                return _read_transaction(shared_conn, job)
        with self._mutex:
            if self._closed:
                raise PoolClosed
            conn = self._idle.pop() if self._idle else None
        if conn is None:
            conn = self._connect()
        try:
            return _read_transaction(conn, job)
        finally:
            self._give_back(conn)

    def _give_back(self, conn: sqlite3.Connection) -> None:
        with self._mutex:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()

    def close(self) -> None:
        """Close idle connections now, busy ones when their query ends. Blocks briefly."""
        with self._mutex:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()


def _read_transaction(conn: sqlite3.Connection, job: Job[T]) -> T:
    conn.execute("BEGIN")
    try:
        return job(conn)
    finally:
        if conn.in_transaction:
            conn.execute("ROLLBACK")


def tenant_seq(conn: sqlite3.Connection, tenant_id: str) -> int:
    """The tenant's last log position; 0 if it has none."""
    row = conn.execute("SELECT last_seq FROM tenants WHERE id = ?", (tenant_id,)).fetchone()
    return 0 if row is None else int(row[0])


# --------------------------------------------------------------------------------------------
# Rows and records

SESSION_COLUMNS = "id, tenant_id, provider, name, phone, display_name"
CHAT_COLUMNS = (
    "id, session_id, provider_chat_id, kind, title, unread_count, last_message_at, "
    "last_message_text, created_at"
)
_CONTACT_COLUMNS = "id, provider_id, phone, name, username"


def session_record(row: Sequence[Any]) -> SessionRecord:
    """A `SessionRecord` from the `SESSION_COLUMNS` of a row."""
    return SessionRecord(
        id=row[0],
        tenant_id=row[1],
        provider=row[2],
        name=row[3],
        phone=row[4],
        display_name=row[5],
    )


def chat_record(row: Sequence[Any]) -> ChatRecord:
    """A `ChatRecord` from the `CHAT_COLUMNS` of a row."""
    return ChatRecord(
        id=row[0],
        session_id=row[1],
        provider_chat_id=row[2],
        kind=ChatKind(row[3]),
        title=row[4],
        unread_count=row[5],
        last_message_at=optional_from_micros(row[6]),
        last_message_text=row[7],
        created_at=from_micros(row[8]),
    )


def _contact_record(row: Sequence[Any]) -> ContactRecord:
    return ContactRecord(id=row[0], provider_id=row[1], phone=row[2], name=row[3], username=row[4])


def load_session(conn: sqlite3.Connection, session_id: str) -> SessionRecord | None:
    row = conn.execute(
        f"SELECT {SESSION_COLUMNS} FROM sessions WHERE id = ?", (session_id,)
    ).fetchone()
    return None if row is None else session_record(row)


# --------------------------------------------------------------------------------------------
# The log payload: {"event": event_to_json(event), "context": <RenderContext>}


@functools.cache
def _context_converter() -> cattrs.Converter:
    # Built once and never changed afterwards, like the event converter it sits beside.
    converter = cattrs.Converter()
    # Left as datetimes for orjson, which writes them like format_utc does, only faster.
    converter.register_unstructure_hook(datetime, lambda value: value)
    converter.register_structure_hook(
        datetime, lambda value, _: utc_datetime(datetime.fromisoformat(value))
    )
    return converter


def encode_payload(event: Event, context: RenderContext) -> str:
    """The JSON text logged for `event`; `decode_payload` gives back equal objects."""
    payload = {"event": event_to_json(event), "context": _context_converter().unstructure(context)}
    return orjson.dumps(payload, option=orjson.OPT_UTC_Z).decode()


def decode_payload(text: str | bytes) -> Applied:
    """The (event, context) `encode_payload` was given; ValueError if the text is not one."""
    try:
        payload = orjson.loads(text)
        event = event_from_json(payload["event"])
        context = _context_converter().structure(payload["context"], RenderContext)
    except Exception as exc:
        raise ValueError(f"not a log payload: {exc}") from exc
    return event, context


# --------------------------------------------------------------------------------------------
# Ingest


def ingest(
    conn: sqlite3.Connection, session_id: str, events: Sequence[Event], received_at: datetime
) -> list[Applied]:
    """Apply `events` of one session; return what to fan out, in order.

    Runs inside the caller's transaction. A call with ephemeral events only writes nothing and
    may run on a read-only connection. LookupError if the session does not exist.
    """
    session = load_session(conn, session_id)
    if session is None:
        raise LookupError(f"unknown session {session_id!r}")
    return _Ingest(conn, session, received_at).apply(events)


def mark_chat_read(conn: sqlite3.Connection, chat_id: int, received_at: datetime) -> list[Applied]:
    """Set a chat's unread count to 0, logging a ChatUpdated; [] if unknown or already 0."""
    row = conn.execute(
        "SELECT session_id, unread_count FROM chats WHERE id = ?", (chat_id,)
    ).fetchone()
    if row is None or row[1] == 0:
        return []
    session = load_session(conn, row[0])
    if session is None:  # a chat outlived its session: nothing to tell anyone
        return []
    return _Ingest(conn, session, received_at).mark_read(chat_id)


class _Ingest:
    """One call's worth of applying events to rows; holds the session as it evolves."""

    def __init__(
        self, conn: sqlite3.Connection, session: SessionRecord, received_at: datetime
    ) -> None:
        self._conn = conn
        self._session = session
        self._received_at = received_at
        self._received_us = to_micros(received_at)
        self._out: list[Applied] = []

    def apply(self, events: Iterable[Event]) -> list[Applied]:
        for event in events:
            if not event.durable:
                self._out.append((event, self._ephemeral_context(event)))
                continue
            # Messages, statuses, deletions and chats are idempotent by their rows (unique
            # provider ids, forward-only states); edits and reactions leave no row of their
            # own, so their dedupe keys are kept.
            match event:
                case MessageReceived() | MessageSent():
                    self._message(event)
                case MessageStatus():
                    self._status(event)
                case MessageEdited():
                    if self._first_sighting(event.dedupe_key()):
                        self._edited(event)
                case MessageDeleted():
                    self._deleted(event)
                case MessageReaction():
                    if self._first_sighting(event.dedupe_key()):
                        self._reaction(event)
                case ChatCreated():
                    self._chat_created(event)
                case ChatUpdated():
                    self._chat_updated(event)
                case ContactUpdated():
                    self._contact_updated(event)
                case SessionStatus():
                    self._session_status(event)
                case PresenceUpdated() | SessionQR() | ProviderRaw():  # pragma: no cover
                    raise AssertionError(f"{event.type} is ephemeral")
                case _:  # pragma: no cover
                    assert_never(event)
        return self._out

    def mark_read(self, chat_id: int) -> list[Applied]:
        row = self._conn.execute(
            f"UPDATE chats SET unread_count = 0 WHERE id = ? RETURNING {CHAT_COLUMNS}, alt_ids",
            (chat_id,),
        ).fetchone()
        chat = chat_record(row)
        ref = ChatRef(
            id=chat.provider_chat_id,
            kind=chat.kind,
            title=chat.title,
            alt_ids=tuple(orjson.loads(row[-1])),
        )
        event = ChatUpdated(
            provider=self._session.provider,
            occurred_at=self._received_at,
            chat=ref,
            unread_count=0,
        )
        self._log(event, chat=chat, contact=self._partner(chat))
        return self._out

    # -- the log

    def _first_sighting(self, key: str) -> bool:
        cursor = self._conn.execute(
            "INSERT INTO dedupe (session_id, key, seen_at) VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (self._session.id, key, self._received_us),
        )
        return cursor.rowcount == 1

    def _log(
        self,
        event: Event,
        *,
        chat: ChatRecord | None = None,
        contact: ContactRecord | None = None,
        message: MessageRecord | None = None,
    ) -> None:
        tenant_id = self._session.tenant_id
        row = self._conn.execute(
            "UPDATE tenants SET last_seq = last_seq + 1 WHERE id = ? RETURNING last_seq",
            (tenant_id,),
        ).fetchone()
        if row is None:
            raise LookupError(f"tenant {tenant_id!r} of session {self._session.id!r} is missing")
        context = RenderContext(
            tenant_id=tenant_id,
            session=self._session,
            received_at=self._received_at,
            chat=chat,
            contact=contact,
            message=message,
            seq=row[0],
        )
        self._conn.execute(
            "INSERT INTO event_log "
            "(tenant_id, seq, session_id, type, dedupe_key, payload, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                tenant_id,
                row[0],
                self._session.id,
                event.type,
                event.dedupe_key(),
                encode_payload(event, context),
                self._received_us,
            ),
        )
        self._out.append((event, context))

    def _ephemeral_context(self, event: Event) -> RenderContext:
        chat = contact = None
        if isinstance(event, PresenceUpdated):
            chat = self._find_chat(event.chat.id)
            contact = self._find_contact(event.participant.id)
        return RenderContext(
            tenant_id=self._session.tenant_id,
            session=self._session,
            received_at=self._received_at,
            chat=chat,
            contact=contact,
        )

    # -- rows

    def _find_chat(self, provider_chat_id: str) -> ChatRecord | None:
        row = self._conn.execute(
            f"SELECT {CHAT_COLUMNS} FROM chats WHERE session_id = ? AND provider_chat_id = ?",
            (self._session.id, provider_chat_id),
        ).fetchone()
        return None if row is None else chat_record(row)

    def _chat_by_id(self, chat_id: int) -> ChatRecord:
        row = self._conn.execute(
            f"SELECT {CHAT_COLUMNS} FROM chats WHERE id = ?", (chat_id,)
        ).fetchone()
        return chat_record(row)

    def _find_contact(self, provider_id: str) -> ContactRecord | None:
        row = self._conn.execute(
            f"SELECT {_CONTACT_COLUMNS} FROM contacts WHERE session_id = ? AND provider_id = ?",
            (self._session.id, provider_id),
        ).fetchone()
        return None if row is None else _contact_record(row)

    def _partner(self, chat: ChatRecord) -> ContactRecord | None:
        """The other person of a direct chat, when known; None for groups and the like."""
        if chat.kind is not ChatKind.DIRECT:
            return None
        return self._find_contact(chat.provider_chat_id)

    def _upsert_contact(self, party: Party, avatar_url: str | None = None) -> ContactRecord:
        # Most messages come from people we know, unchanged: reading is cheaper than writing.
        known = self._find_contact(party.id)
        if (
            known is not None
            and avatar_url is None
            and party.phone in (None, known.phone)
            and party.name in (None, known.name)
            and party.username in (None, known.username)
        ):
            return known
        # Fields the provider left out (None) keep what we knew.
        row = self._conn.execute(
            "INSERT INTO contacts (session_id, provider_id, phone, name, username, avatar_url) "
            "VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (session_id, provider_id) DO UPDATE SET "
            "phone = coalesce(excluded.phone, phone), name = coalesce(excluded.name, name), "
            "username = coalesce(excluded.username, username), "
            "avatar_url = coalesce(excluded.avatar_url, avatar_url) "
            f"RETURNING {_CONTACT_COLUMNS}",
            (self._session.id, party.id, party.phone, party.name, party.username, avatar_url),
        ).fetchone()
        return _contact_record(row)

    def _insert_chat(self, ref: ChatRef, title: str | None, created_at: datetime) -> ChatRecord:
        row = self._conn.execute(
            "INSERT INTO chats (session_id, provider_chat_id, kind, title, alt_ids, created_at) "
            f"VALUES (?, ?, ?, ?, ?, ?) RETURNING {CHAT_COLUMNS}",
            (
                self._session.id,
                ref.id,
                ref.kind.value,
                title,
                orjson.dumps(ref.alt_ids).decode(),
                to_micros(created_at),
            ),
        ).fetchone()
        return chat_record(row)

    def _chat(
        self,
        event: Event,
        ref: ChatRef,
        *,
        title_fallback: str | None = None,
        first_message: str | None = None,
        creator: ContactRecord | None = None,
    ) -> int:
        """The id of the chat `ref` names, created if new and then announced (ChatCreated).

        `title_fallback` names a chat that has no title yet (a direct chat's sender);
        `creator` is the context contact of the ChatCreated (default: the direct partner).
        A known chat takes the ref's title and any new alternative ids.
        """
        row = self._conn.execute(
            "SELECT id, title, alt_ids FROM chats WHERE session_id = ? AND provider_chat_id = ?",
            (self._session.id, ref.id),
        ).fetchone()
        if row is None:
            title = ref.title if ref.title is not None else title_fallback
            chat = self._insert_chat(ref, title, event.occurred_at)
            announcement = ChatCreated(
                provider=event.provider,
                occurred_at=event.occurred_at,
                chat=ref,
                first_message=first_message,
            )
            contact = creator if creator is not None else self._partner(chat)
            self._log(announcement, chat=chat, contact=contact)
            return int(chat.id)
        chat_id, stored_title, stored_alt_ids = row
        title = ref.title
        if title is None and stored_title is None:
            title = title_fallback
        if title is not None and title != stored_title:
            self._conn.execute("UPDATE chats SET title = ? WHERE id = ?", (title, chat_id))
        if ref.alt_ids:
            known: list[str] = orjson.loads(stored_alt_ids)
            merged = known + [alt for alt in ref.alt_ids if alt not in known]
            if len(merged) != len(known):
                self._conn.execute(
                    "UPDATE chats SET alt_ids = ? WHERE id = ?",
                    (orjson.dumps(merged).decode(), chat_id),
                )
        return int(chat_id)

    def _target(
        self, event: Event, ref: ChatRef, provider_message_id: str
    ) -> tuple[MessageRecord, int, str | None, bool]:
        """The row a status/edit/delete/reaction is about: (record, chat id, status, deleted).

        A message not seen yet gets a placeholder row (and its chat is upserted) so that the
        event has an id to point at; the message fills the row in when it arrives.
        """
        row = self._conn.execute(
            "SELECT id, chat_id, status, deleted FROM messages "
            "WHERE session_id = ? AND provider_message_id = ?",
            (self._session.id, provider_message_id),
        ).fetchone()
        if row is None:
            chat_id = self._chat(event, ref)
            (message_id,) = self._conn.execute(
                "INSERT INTO messages "
                "(session_id, chat_id, provider_message_id, placeholder, occurred_at) "
                "VALUES (?, ?, ?, 1, ?) RETURNING id",
                (self._session.id, chat_id, provider_message_id, to_micros(event.occurred_at)),
            ).fetchone()
            row = (message_id, chat_id, None, 0)
        record = MessageRecord(id=row[0], provider_message_id=provider_message_id)
        return record, row[1], row[2], bool(row[3])

    # -- one method per durable event

    def _message(self, event: MessageReceived | MessageSent) -> None:
        message = event.message
        existing = self._conn.execute(
            "SELECT id, placeholder FROM messages WHERE session_id = ? AND provider_message_id = ?",
            (self._session.id, message.id),
        ).fetchone()
        if existing is not None and not existing[1]:
            return  # stored already: a redelivery, or the same message reported both ways
        received = isinstance(event, MessageReceived)
        sender = self._upsert_contact(event.sender) if event.sender is not None else None
        body = message.text if message.text is not None else message.caption
        # A direct chat with no title yet is named after the person who wrote in it.
        partner = sender if received and event.chat.kind is ChatKind.DIRECT else None
        chat_id = self._chat(
            event,
            event.chat,
            title_fallback=partner.name if partner is not None else None,
            first_message=body,
            creator=partner,
        )
        media = message.media
        at = to_micros(event.occurred_at)
        values = (
            chat_id,
            int(message.from_me),
            message.kind.value,
            message.text,
            message.caption,
            media.url if media is not None else None,
            media.mime_type if media is not None else None,
            message.reply_to_id,
            event.sender.id if event.sender is not None else None,
            event.sender.name if event.sender is not None else None,
            at,
        )
        if existing is None:
            (row_id,) = self._conn.execute(
                "INSERT INTO messages (chat_id, from_me, kind, text, caption, media_url, "
                "media_mime_type, reply_to_id, sender_id, sender_name, occurred_at, "
                "session_id, provider_message_id) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (*values, self._session.id, message.id),
            ).fetchone()
        else:
            row_id = existing[0]
            # An edit that came first keeps its text; the status a placeholder got stays.
            self._conn.execute(
                "UPDATE messages SET chat_id = ?, from_me = ?, kind = ?, "
                "text = CASE WHEN edited THEN text ELSE ? END, caption = ?, media_url = ?, "
                "media_mime_type = ?, reply_to_id = ?, sender_id = ?, sender_name = ?, "
                "occurred_at = ?, placeholder = 0 WHERE id = ?",
                (*values, row_id),
            )
        # The preview follows the newest message; an older one (backfill) only counts.
        row = self._conn.execute(
            "UPDATE chats SET "
            "last_message_text = CASE WHEN last_message_at IS NULL OR last_message_at <= :at "
            "THEN :text ELSE last_message_text END, "
            "last_message_at = max(coalesce(last_message_at, :at), :at), "
            "unread_count = CASE WHEN :from_me THEN 0 ELSE unread_count + 1 END "
            f"WHERE id = :id RETURNING {CHAT_COLUMNS}",
            {"at": at, "text": body, "from_me": int(message.from_me), "id": chat_id},
        ).fetchone()
        chat = chat_record(row)
        # The context contact names the person the message is from; for our own messages,
        # the conversation partner (dialects name the chat by it, never by the operator).
        contact = sender if received else self._partner(chat)
        record = MessageRecord(id=row_id, provider_message_id=message.id)
        self._log(event, chat=chat, contact=contact, message=record)

    def _status(self, event: MessageStatus) -> None:
        record, chat_id, current, _ = self._target(event, event.chat, event.message_id)
        if not event.state.advances(None if current is None else DeliveryState(current)):
            return
        self._conn.execute(
            "UPDATE messages SET status = ? WHERE id = ?", (event.state.value, record.id)
        )
        chat = self._chat_by_id(chat_id)
        self._log(event, chat=chat, contact=self._partner(chat), message=record)

    def _edited(self, event: MessageEdited) -> None:
        record, chat_id, _, _ = self._target(event, event.chat, event.message_id)
        self._conn.execute(
            "UPDATE messages SET text = ?, edited = 1 WHERE id = ?", (event.text, record.id)
        )
        chat = self._chat_by_id(chat_id)
        self._log(event, chat=chat, contact=self._partner(chat), message=record)

    def _deleted(self, event: MessageDeleted) -> None:
        record, chat_id, _, deleted = self._target(event, event.chat, event.message_id)
        if deleted:
            return
        self._conn.execute("UPDATE messages SET deleted = 1 WHERE id = ?", (record.id,))
        chat = self._chat_by_id(chat_id)
        self._log(event, chat=chat, contact=self._partner(chat), message=record)

    def _reaction(self, event: MessageReaction) -> None:
        contact = self._upsert_contact(event.sender)
        record, chat_id, _, _ = self._target(event, event.chat, event.target_id)
        self._log(event, chat=self._chat_by_id(chat_id), contact=contact, message=record)

    def _chat_created(self, event: ChatCreated) -> None:
        if self._find_chat(event.chat.id) is not None:
            return
        chat = self._insert_chat(event.chat, event.chat.title, event.occurred_at)
        self._log(event, chat=chat, contact=self._partner(chat))

    def _chat_updated(self, event: ChatUpdated) -> None:
        chat_id = self._chat(event, event.chat)
        row = self._conn.execute(
            "UPDATE chats SET title = coalesce(?, title), "
            "unread_count = coalesce(?, unread_count), archived = coalesce(?, archived), "
            "pinned = coalesce(?, pinned), last_message_at = coalesce(?, last_message_at), "
            "last_message_text = coalesce(?, last_message_text) "
            f"WHERE id = ? RETURNING {CHAT_COLUMNS}",
            (
                event.title,
                event.unread_count,
                event.archived,
                event.pinned,
                optional_micros(event.last_message_at),
                event.last_message_text,
                chat_id,
            ),
        ).fetchone()
        chat = chat_record(row)
        self._log(event, chat=chat, contact=self._partner(chat))

    def _contact_updated(self, event: ContactUpdated) -> None:
        contact = self._upsert_contact(event.contact, event.avatar_url)
        chat = self._find_chat(event.contact.id)
        if chat is not None and chat.kind is not ChatKind.DIRECT:
            chat = None
        self._log(event, chat=chat, contact=contact)

    def _session_status(self, event: SessionStatus) -> None:
        me = event.me
        row = self._conn.execute(
            "UPDATE sessions SET state = ?, phone = coalesce(?, phone), "
            "display_name = coalesce(?, display_name), updated_at = ? "
            f"WHERE id = ? RETURNING {SESSION_COLUMNS}",
            (
                event.state.value,
                me.phone if me is not None else None,
                me.name if me is not None else None,
                self._received_us,
                self._session.id,
            ),
        ).fetchone()
        self._session = session_record(row)
        self._log(event)


# --------------------------------------------------------------------------------------------
# Sessions and retention


def put_session(
    conn: sqlite3.Connection,
    record: SessionRecord,
    provider_options: str,
    autostart: bool,
    now: datetime,
) -> bool:
    """Insert or update a session; False if its id belongs to another tenant.

    `provider_options` is JSON text. `phone` and `display_name` that are None keep what the
    provider reported (SessionStatus), so re-saving a session's settings does not erase them.
    """
    row = conn.execute("SELECT tenant_id FROM sessions WHERE id = ?", (record.id,)).fetchone()
    if row is not None and row[0] != record.tenant_id:
        return False
    conn.execute("INSERT INTO tenants (id) VALUES (?) ON CONFLICT DO NOTHING", (record.tenant_id,))
    conn.execute(
        "INSERT INTO sessions (id, tenant_id, provider, name, phone, display_name, "
        "provider_options, autostart, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (id) DO UPDATE SET provider = excluded.provider, name = excluded.name, "
        "phone = coalesce(excluded.phone, phone), "
        "display_name = coalesce(excluded.display_name, display_name), "
        "provider_options = excluded.provider_options, autostart = excluded.autostart, "
        "updated_at = excluded.updated_at",
        (
            record.id,
            record.tenant_id,
            record.provider,
            record.name,
            record.phone,
            record.display_name,
            provider_options,
            int(autostart),
            to_micros(now),
        ),
    )
    return True


def delete_session(conn: sqlite3.Connection, session_id: str) -> bool:
    """Delete a session with its contacts, chats, messages and dedupe keys (not its log)."""
    cursor = conn.execute("DELETE FROM sessions WHERE id = ?", (session_id,))
    if cursor.rowcount == 0:
        return False
    for table in ("messages", "chats", "contacts", "dedupe"):
        conn.execute(f"DELETE FROM {table} WHERE session_id = ?", (session_id,))
    return True


def prune_log(
    conn: sqlite3.Connection,
    tenant_id: str,
    keep_count: int | None,
    cutoff: datetime | None,
    chunk: int,
) -> tuple[int, bool]:
    """Delete up to `chunk` of a tenant's oldest log rows; return (deleted, finished).

    A row goes if more than `keep_count` newer rows exist or it was logged before `cutoff`.
    Only a prefix is ever deleted (the first row to keep stops it), so the log a client
    replays never has holes: either `after + 1` is there or everything before it is gone.
    """
    (last_seq,) = conn.execute(
        "SELECT coalesce(max(last_seq), 0) FROM tenants WHERE id = ?", (tenant_id,)
    ).fetchone()
    keep_after = last_seq - keep_count if keep_count is not None else 0
    cutoff_us = optional_micros(cutoff)
    rows = conn.execute(
        "SELECT seq, created_at FROM event_log WHERE tenant_id = ? ORDER BY seq LIMIT ?",
        (tenant_id, chunk),
    ).fetchall()
    end = None
    for seq, created_at in rows:
        if seq <= keep_after or (cutoff_us is not None and created_at < cutoff_us):
            end = seq
        else:
            break
    if end is None:
        return 0, True
    cursor = conn.execute(
        "DELETE FROM event_log WHERE tenant_id = ? AND seq <= ?", (tenant_id, end)
    )
    return cursor.rowcount, end != rows[-1][0] or len(rows) < chunk


def prune_dedupe(
    conn: sqlite3.Connection, tenant_id: str | None, cutoff: datetime, chunk: int
) -> int:
    """Forget up to `chunk` dedupe keys first seen before `cutoff`; return how many."""
    tenant_filter = (
        ""
        if tenant_id is None
        else " AND session_id IN (SELECT id FROM sessions WHERE tenant_id = ?)"
    )
    parameters: tuple[Any, ...] = (to_micros(cutoff),)
    if tenant_id is not None:
        parameters += (tenant_id,)
    cursor = conn.execute(
        "DELETE FROM dedupe WHERE (session_id, key) IN ("
        f"SELECT session_id, key FROM dedupe WHERE seen_at < ?{tenant_filter} LIMIT ?)",
        (*parameters, chunk),
    )
    return cursor.rowcount


# --------------------------------------------------------------------------------------------
# Socket.IO connection-state recovery


def save_recovery(
    conn: sqlite3.Connection,
    pid: str,
    tenant_id: str,
    namespace: str,
    sid: str,
    rooms: str,
    now: datetime,
) -> None:
    """Insert or replace the recovery session `pid`; `rooms` is a JSON list of room names."""
    conn.execute(
        "INSERT INTO recovery_sessions (pid, tenant_id, namespace, sid, rooms, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (pid) DO UPDATE SET "
        "tenant_id = excluded.tenant_id, namespace = excluded.namespace, sid = excluded.sid, "
        "rooms = excluded.rooms, updated_at = excluded.updated_at",
        (pid, tenant_id, namespace, sid, rooms, to_micros(now)),
    )


def delete_recovery(conn: sqlite3.Connection, pid: str) -> None:
    conn.execute("DELETE FROM recovery_sessions WHERE pid = ?", (pid,))


def prune_recovery(
    conn: sqlite3.Connection, tenant_id: str | None, cutoff: datetime, chunk: int
) -> int:
    """Forget up to `chunk` recovery sessions last saved before `cutoff`; return how many."""
    tenant_filter = "" if tenant_id is None else " AND tenant_id = ?"
    parameters: tuple[Any, ...] = (to_micros(cutoff),)
    if tenant_id is not None:
        parameters += (tenant_id,)
    cursor = conn.execute(
        "DELETE FROM recovery_sessions WHERE pid IN ("
        f"SELECT pid FROM recovery_sessions WHERE updated_at < ?{tenant_filter} LIMIT ?)",
        (*parameters, chunk),
    )
    return cursor.rowcount


# --------------------------------------------------------------------------------------------
# Outgoing webhooks: endpoints and their delivery queues

WEBHOOK_ENDPOINT_COLUMNS = "id, tenant_id, url, secret, filters, enabled, cursor, created_at"
WEBHOOK_DELIVERY_COLUMNS = (
    "position, id, endpoint_id, tenant_id, seq, event, body, attempts, last_status, "
    "last_error, next_attempt_at, state, created_at, updated_at"
)

PlannedDelivery: TypeAlias = tuple[str, int, str, str]
"""(delivery id, seq, event name, body) of a delivery to make."""


def create_webhook_endpoint(
    conn: sqlite3.Connection,
    endpoint_id: str,
    tenant_id: str,
    url: str,
    secret: str,
    filters: str,
    enabled: bool,
    now: datetime,
    max_per_tenant: int | None,
) -> bool:
    """Add an endpoint that receives the tenant's events from its current log position on;
    False (nothing written) if the tenant already has `max_per_tenant` endpoints."""
    if max_per_tenant is not None:
        (count,) = conn.execute(
            "SELECT count(*) FROM webhook_endpoints WHERE tenant_id = ?", (tenant_id,)
        ).fetchone()
        if count >= max_per_tenant:
            return False
    conn.execute(
        f"INSERT INTO webhook_endpoints ({WEBHOOK_ENDPOINT_COLUMNS}) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (
            endpoint_id,
            tenant_id,
            url,
            secret,
            filters,
            int(enabled),
            tenant_seq(conn, tenant_id),
            to_micros(now),
        ),
    )
    return True


def update_webhook_endpoint(
    conn: sqlite3.Connection,
    endpoint_id: str,
    url: str | None,
    filters: str | None,
    enabled: bool | None,
) -> bool:
    """Change the given fields (None keeps one); False if there is no such endpoint."""
    cursor = conn.execute(
        "UPDATE webhook_endpoints SET url = coalesce(?, url), filters = coalesce(?, filters), "
        "enabled = coalesce(?, enabled) WHERE id = ?",
        (url, filters, None if enabled is None else int(enabled), endpoint_id),
    )
    return cursor.rowcount == 1


def delete_webhook_endpoint(conn: sqlite3.Connection, endpoint_id: str) -> bool:
    """Delete an endpoint with all its deliveries (pending, delivered and dead)."""
    cursor = conn.execute("DELETE FROM webhook_endpoints WHERE id = ?", (endpoint_id,))
    if cursor.rowcount == 0:
        return False
    conn.execute("DELETE FROM webhook_deliveries WHERE endpoint_id = ?", (endpoint_id,))
    return True


def plan_webhook_deliveries(
    conn: sqlite3.Connection,
    plans: Sequence[tuple[str, int, Sequence[PlannedDelivery]]],
    now: datetime,
) -> list[str]:
    """For each (endpoint id, cursor, deliveries): queue the deliveries as pending and move
    the endpoint's cursor forward to `cursor`, in the caller's transaction.

    An endpoint that is gone, or whose cursor is already at or past `cursor` (planned
    before), is skipped whole, so planning the same events twice queues them once. Returns
    the ids of the endpoints that were advanced.
    """
    now_us = to_micros(now)
    advanced = []
    for endpoint_id, cursor, deliveries in plans:
        row = conn.execute(
            "UPDATE webhook_endpoints SET cursor = ? WHERE id = ? AND cursor < ? "
            "RETURNING tenant_id",
            (cursor, endpoint_id, cursor),
        ).fetchone()
        if row is None:
            continue
        advanced.append(endpoint_id)
        conn.executemany(
            "INSERT INTO webhook_deliveries (id, endpoint_id, tenant_id, seq, event, body, "
            "next_attempt_at, state, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
            [
                (delivery_id, endpoint_id, row[0], seq, event, body, now_us, now_us, now_us)
                for delivery_id, seq, event, body in deliveries
            ],
        )
    return advanced


def record_webhook_attempt(
    conn: sqlite3.Connection,
    delivery_id: str,
    state: str,
    attempts: int,
    last_status: int | None,
    last_error: str | None,
    next_attempt_at: datetime,
    now: datetime,
) -> bool:
    """Record the outcome of an attempt at a pending delivery; False if it is no longer
    pending (its endpoint was deleted meanwhile)."""
    cursor = conn.execute(
        "UPDATE webhook_deliveries SET state = ?, attempts = ?, last_status = ?, "
        "last_error = ?, next_attempt_at = ?, updated_at = ? WHERE id = ? AND state = 'pending'",
        (
            state,
            attempts,
            last_status,
            last_error,
            to_micros(next_attempt_at),
            to_micros(now),
            delivery_id,
        ),
    )
    return cursor.rowcount == 1


def replay_webhook_delivery(conn: sqlite3.Connection, delivery_id: str, now: datetime) -> bool:
    """A dead delivery back to pending, due now, its attempts reset; False if not dead."""
    now_us = to_micros(now)
    cursor = conn.execute(
        "UPDATE webhook_deliveries SET state = 'pending', attempts = 0, next_attempt_at = ?, "
        "updated_at = ? WHERE id = ? AND state = 'dead'",
        (now_us, now_us, delivery_id),
    )
    return cursor.rowcount == 1


def prune_webhook_deliveries(
    conn: sqlite3.Connection, delivered_cutoff: datetime, dead_cutoff: datetime, chunk: int
) -> int:
    """Forget up to `chunk` delivered and up to `chunk` dead deliveries last updated before
    their cutoff; return how many went. Pending deliveries are never pruned."""
    deleted = 0
    for state, cutoff in (("delivered", delivered_cutoff), ("dead", dead_cutoff)):
        cursor = conn.execute(
            "DELETE FROM webhook_deliveries WHERE position IN (SELECT position FROM "
            "webhook_deliveries WHERE state = ? AND updated_at < ? LIMIT ?)",
            (state, to_micros(cutoff), chunk),
        )
        deleted += cursor.rowcount
    return deleted
