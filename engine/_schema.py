"""The SQLite schema of the embedded store, its migrations, and how connections are opened.

The schema version is `PRAGMA user_version`. `MIGRATIONS[n - 1]` takes a database from version
n - 1 to n; `migrate` applies the pending ones in order, each in its own transaction together
with the version bump, so a crash leaves the database at a whole version. A database newer
than this code (a downgrade) is refused with `sqlite3.DatabaseError`, never touched.

Conventions the rest of the store relies on:

- datetimes are INTEGER microseconds since the Unix epoch, UTC (`to_micros` / `from_micros`):
  exact, compact and ordered, so keyset pagination can compare them;
- booleans are INTEGER 0/1; JSON columns are TEXT;
- integer ids are SQLite rowids (`INTEGER PRIMARY KEY`), never reused while a row with the
  largest id exists; string ids are the provider's or the operator's.

Errors: sqlite3 exceptions propagate unchanged; the caller (`_store`) translates them.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Literal, TypeAlias

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Synchronous",
    "from_micros",
    "migrate",
    "open_connection",
    "optional_from_micros",
    "optional_micros",
    "read_epoch",
    "to_micros",
]

Synchronous: TypeAlias = Literal["FULL", "NORMAL"]
"""`PRAGMA synchronous` for the writer: FULL survives power loss, NORMAL only process crashes."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def to_micros(value: datetime) -> int:
    """Microseconds since the Unix epoch; `value` must be timezone-aware (TypeError otherwise)."""
    return (value - _EPOCH) // _MICROSECOND


def optional_micros(value: datetime | None) -> int | None:
    return None if value is None else to_micros(value)


def from_micros(value: int) -> datetime:
    """The aware UTC datetime `to_micros` was given."""
    return _EPOCH + timedelta(microseconds=value)


def optional_from_micros(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


# --------------------------------------------------------------------------------------------
# Migrations

Migration: TypeAlias = Callable[[sqlite3.Connection], None]


def _execute_all(conn: sqlite3.Connection, statements: Sequence[str]) -> None:
    # Not executescript(): it commits first, which would split a migration over transactions.
    for statement in statements:
        conn.execute(statement)


def _v1_tables(conn: sqlite3.Connection) -> None:
    """Version 1: every table, with the unique keys that make ingest idempotent."""
    _execute_all(
        conn,
        [
            """CREATE TABLE meta (
                key TEXT PRIMARY KEY,
                value TEXT NOT NULL
            ) WITHOUT ROWID""",
            # last_seq is the tenant's log position; it only grows, even when sessions go.
            """CREATE TABLE tenants (
                id TEXT PRIMARY KEY,
                last_seq INTEGER NOT NULL DEFAULT 0
            ) WITHOUT ROWID""",
            """CREATE TABLE sessions (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL REFERENCES tenants (id),
                provider TEXT NOT NULL,
                name TEXT,
                phone TEXT,
                display_name TEXT,
                provider_options TEXT NOT NULL DEFAULT '{}',
                autostart INTEGER NOT NULL DEFAULT 0,
                state TEXT NOT NULL DEFAULT 'stopped',
                updated_at INTEGER NOT NULL
            )""",
            "CREATE INDEX sessions_by_tenant ON sessions (tenant_id, id)",
            """CREATE TABLE contacts (
                id INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL,
                provider_id TEXT NOT NULL,
                phone TEXT,
                name TEXT,
                username TEXT,
                avatar_url TEXT,
                UNIQUE (session_id, provider_id)
            )""",
            """CREATE TABLE chats (
                id INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL,
                provider_chat_id TEXT NOT NULL,
                kind TEXT NOT NULL,
                title TEXT,
                alt_ids TEXT NOT NULL DEFAULT '[]',
                unread_count INTEGER NOT NULL DEFAULT 0,
                archived INTEGER NOT NULL DEFAULT 0,
                pinned INTEGER NOT NULL DEFAULT 0,
                last_message_at INTEGER,
                last_message_text TEXT,
                created_at INTEGER NOT NULL,
                UNIQUE (session_id, provider_chat_id)
            )""",
            # placeholder = 1: a row made for a status, edit, delete or reaction that arrived
            # before its message, so the event has a row id; the message fills it in later.
            """CREATE TABLE messages (
                id INTEGER PRIMARY KEY,
                session_id TEXT NOT NULL,
                chat_id INTEGER NOT NULL REFERENCES chats (id),
                provider_message_id TEXT NOT NULL,
                placeholder INTEGER NOT NULL DEFAULT 0,
                from_me INTEGER NOT NULL DEFAULT 0,
                kind TEXT NOT NULL DEFAULT 'unknown',
                text TEXT,
                caption TEXT,
                media_url TEXT,
                media_mime_type TEXT,
                reply_to_id TEXT,
                sender_id TEXT,
                sender_name TEXT,
                status TEXT,
                edited INTEGER NOT NULL DEFAULT 0,
                deleted INTEGER NOT NULL DEFAULT 0,
                occurred_at INTEGER NOT NULL,
                UNIQUE (session_id, provider_message_id)
            )""",
            # Keys of events with no row of their own to make them idempotent (edits,
            # reactions); apart from the log, so pruning it never lets a redelivery through.
            """CREATE TABLE dedupe (
                session_id TEXT NOT NULL,
                key TEXT NOT NULL,
                seen_at INTEGER NOT NULL,
                PRIMARY KEY (session_id, key)
            ) WITHOUT ROWID""",
            # A rowid table: payloads are large, and WITHOUT ROWID suits only small rows.
            """CREATE TABLE event_log (
                tenant_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                session_id TEXT NOT NULL,
                type TEXT NOT NULL,
                dedupe_key TEXT,
                payload TEXT NOT NULL,
                created_at INTEGER NOT NULL
            )""",
            "CREATE UNIQUE INDEX event_log_by_seq ON event_log (tenant_id, seq)",
        ],
    )
    conn.execute("INSERT INTO meta (key, value) VALUES ('epoch', ?)", (uuid.uuid4().hex,))


def _v2_listing_indexes(conn: sqlite3.Connection) -> None:
    """Version 2: indexes for the REST listings (keyset pages) and for retention."""
    _execute_all(
        conn,
        [
            # Must match the ORDER BY of list_chats expression for expression.
            """CREATE INDEX chats_by_activity ON chats
                (session_id, coalesce(last_message_at, created_at) DESC, id DESC)""",
            """CREATE INDEX messages_by_time ON messages (chat_id, occurred_at DESC, id DESC)
                WHERE placeholder = 0""",
            "CREATE INDEX dedupe_by_age ON dedupe (seen_at)",
        ],
    )


def _v3_recovery_and_webhooks(conn: sqlite3.Connection) -> None:
    """Version 3: Socket.IO recovery sessions, outgoing webhook endpoints and deliveries."""
    _execute_all(
        conn,
        [
            # rooms: a JSON list of unscoped room names.
            """CREATE TABLE recovery_sessions (
                pid TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                namespace TEXT NOT NULL,
                sid TEXT NOT NULL,
                rooms TEXT NOT NULL DEFAULT '[]',
                updated_at INTEGER NOT NULL
            ) WITHOUT ROWID""",
            "CREATE INDEX recovery_sessions_by_age ON recovery_sessions (updated_at)",
            # filters: a JSON list of Filter.to_json() objects, [] for every event. `cursor` is
            # the tenant log position up to which deliveries were planned (rows made, or the
            # event filtered out): the dispatcher resumes from it after a crash.
            """CREATE TABLE webhook_endpoints (
                id TEXT PRIMARY KEY,
                tenant_id TEXT NOT NULL,
                url TEXT NOT NULL,
                secret TEXT NOT NULL,
                filters TEXT NOT NULL DEFAULT '[]',
                enabled INTEGER NOT NULL DEFAULT 1,
                cursor INTEGER NOT NULL DEFAULT 0,
                created_at INTEGER NOT NULL
            )""",
            "CREATE INDEX webhook_endpoints_by_tenant ON webhook_endpoints (tenant_id, created_at)",
            # `position` orders deliveries of one event (several renditions share a seq).
            """CREATE TABLE webhook_deliveries (
                position INTEGER PRIMARY KEY,
                id TEXT NOT NULL UNIQUE,
                endpoint_id TEXT NOT NULL,
                tenant_id TEXT NOT NULL,
                seq INTEGER NOT NULL,
                event TEXT NOT NULL,
                body TEXT NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                last_status INTEGER,
                last_error TEXT,
                next_attempt_at INTEGER NOT NULL,
                state TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'dead')),
                created_at INTEGER NOT NULL,
                updated_at INTEGER NOT NULL
            )""",
            # Each endpoint's queue, head first.
            """CREATE INDEX webhook_deliveries_queue ON webhook_deliveries
                (endpoint_id, seq, position) WHERE state = 'pending'""",
            """CREATE INDEX webhook_deliveries_by_state ON webhook_deliveries
                (tenant_id, state, position)""",
            "CREATE INDEX webhook_deliveries_by_age ON webhook_deliveries (state, updated_at)",
        ],
    )


MIGRATIONS: tuple[Migration, ...] = (_v1_tables, _v2_listing_indexes, _v3_recovery_and_webhooks)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, *, target: int = SCHEMA_VERSION) -> int:
    """Bring the database to version `target`; return the version it was at before.

    `conn` must be in autocommit mode (isolation_level=None) with no open transaction.
    sqlite3.DatabaseError if the database is newer than this code or `target`.
    """
    if not 0 <= target <= SCHEMA_VERSION:
        raise ValueError(f"no schema version {target}; this code knows 0-{SCHEMA_VERSION}")
    (start,) = conn.execute("PRAGMA user_version").fetchone()
    if start > target:
        raise sqlite3.DatabaseError(
            f"the database has schema version {start}, newer than this omnirelay supports "
            f"({target}); upgrade omnirelay or use another database file"
        )
    for version in range(start + 1, target + 1):
        conn.execute("BEGIN IMMEDIATE")
        try:
            MIGRATIONS[version - 1](conn)
            # user_version is in the database header, so it commits (or not) with the rest.
            conn.execute(f"PRAGMA user_version = {version:d}")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    return int(start)


def read_epoch(conn: sqlite3.Connection) -> str:
    row = conn.execute("SELECT value FROM meta WHERE key = 'epoch'").fetchone()
    if row is None:
        raise sqlite3.DatabaseError("the database has no epoch: not an omnirelay store")
    return str(row[0])


# --------------------------------------------------------------------------------------------
# Connections


def open_connection(
    path: str,
    *,
    busy_timeout: float,
    writer: bool,
    synchronous: Synchronous = "FULL",
) -> sqlite3.Connection:
    """Open a connection usable from any one thread at a time (the caller serialises use).

    Autocommit mode: transactions are explicit (`BEGIN IMMEDIATE` for writes, `BEGIN` for
    consistent reads). The writer switches the database to WAL, which lets readers run beside
    it; readers are `query_only`. Blocks: call it from a worker thread.
    """
    conn = sqlite3.connect(
        path,
        timeout=busy_timeout,
        isolation_level=None,
        check_same_thread=False,
        cached_statements=256,
    )
    try:
        if writer:
            (mode,) = conn.execute("PRAGMA journal_mode = WAL").fetchone()
            if mode not in ("wal", "memory"):
                raise sqlite3.OperationalError(f"cannot switch the database to WAL (got {mode})")
            conn.execute(f"PRAGMA synchronous = {_check_synchronous(synchronous)}")
        else:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _check_synchronous(value: str) -> str:
    if value not in ("FULL", "NORMAL"):
        raise ValueError(f"synchronous must be 'FULL' or 'NORMAL', not {value!r}")
    return value
