"""The SQLite store: idempotent ingest, the per-tenant log, group commit, failures, listings."""

from __future__ import annotations

import functools
import itertools
import sqlite3
import tempfile
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.engine import _schema
from omnirelay.engine._sqlite_store import SQLiteStore, open_sqlite_store
from omnirelay.engine._store import NewWebhookDelivery, StoredEvent, StoreError, WebhookPlan
from omnirelay.protocol._envelope import Filter
from omnirelay.protocol._events import (
    ChatCreated,
    ChatKind,
    ChatRef,
    ChatUpdated,
    ContactUpdated,
    DeliveryState,
    Event,
    Message,
    MessageDeleted,
    MessageEdited,
    MessageKind,
    MessageReaction,
    MessageReceived,
    MessageSent,
    MessageStatus,
    Party,
    PresenceState,
    PresenceUpdated,
    SessionQR,
    SessionState,
    SessionStatus,
)
from omnirelay.protocol._records import SessionRecord

T0 = datetime(2025, 7, 16, 11, 13, 54, tzinfo=UTC)
NOW = datetime(2025, 7, 16, 12, 0, tzinfo=UTC)
ANNA = Party(id="77079856339@c.us", phone="77079856339", name="Anna")
ANNA_CHAT = ChatRef(id="77079856339@c.us", kind=ChatKind.DIRECT)
SALES = ChatRef(id="120363123456789012@g.us", kind=ChatKind.GROUP, title="Sales")
ALL_KINDS = frozenset(ChatKind)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def received(
    message_id: str,
    *,
    chat: ChatRef = ANNA_CHAT,
    sender: Party = ANNA,
    text: str | None = "hi",
    t: float = 0,
) -> MessageReceived:
    message = Message(id=message_id, kind=MessageKind.TEXT, from_me=False, text=text)
    return MessageReceived(
        provider="evolution", occurred_at=at(t), chat=chat, sender=sender, message=message
    )


def sent(message_id: str, *, chat: ChatRef = ANNA_CHAT, t: float = 0) -> MessageSent:
    message = Message(id=message_id, kind=MessageKind.TEXT, from_me=True, text="ok")
    return MessageSent(provider="evolution", occurred_at=at(t), chat=chat, message=message)


def status(
    message_id: str, state: DeliveryState, *, chat: ChatRef = ANNA_CHAT, t: float = 0
) -> MessageStatus:
    return MessageStatus(
        provider="evolution", occurred_at=at(t), chat=chat, message_id=message_id, state=state
    )


def session(session_id: str = "s1", tenant_id: str = "acme") -> SessionRecord:
    return SessionRecord(id=session_id, tenant_id=tenant_id, provider="evolution")


async def add_session(store: SQLiteStore, session_id: str = "s1", tenant_id: str = "acme") -> None:
    assert await store.put_session(
        session(session_id, tenant_id), provider_options={}, autostart=False
    )


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SQLiteStore]:
    async with open_sqlite_store(str(tmp_path / "store.db")) as store:
        await add_session(store)
        yield store


def types(stored: Sequence[StoredEvent]) -> list[str]:
    return [item.event.type for item in stored]


async def whole_log(store: SQLiteStore, tenant_id: str = "acme") -> list[StoredEvent]:
    return await store.read_log(tenant_id, after=0, limit=1000)


# --------------------------------------------------------------------------------------------
# Ingest


async def test_redelivered_message_changes_nothing(store: SQLiteStore) -> None:
    first = await store.ingest("s1", [received("m1")], received_at=NOW)
    again = await store.ingest("s1", [received("m1")], received_at=NOW + timedelta(seconds=5))

    assert types(first) == ["chat.created", "message.received"]
    assert again == []
    chat = first[-1].context.chat
    assert chat is not None
    page = await store.list_messages(chat.id)
    assert [view.record.provider_message_id for view in page.items] == ["m1"]
    assert len(await whole_log(store)) == 2
    assert await store.last_seq("acme") == 2
    refreshed = await store.get_chat(chat.id)
    assert refreshed is not None
    assert refreshed[0].unread_count == 1


async def test_a_duplicate_inside_one_call_is_applied_once(store: SQLiteStore) -> None:
    stored = await store.ingest("s1", [received("m1"), received("m1")], received_at=NOW)
    assert types(stored) == ["chat.created", "message.received"]


async def test_first_message_announces_its_chat_just_before_it(store: SQLiteStore) -> None:
    stored = await store.ingest("s1", [received("m1", text="Привет! Как дела?")], received_at=NOW)

    created, message = stored
    assert isinstance(created.event, ChatCreated)
    assert created.event.first_message == "Привет! Как дела?"
    assert created.event.chat == ANNA_CHAT
    assert (created.seq, message.seq) == (1, 2)
    assert created.context.chat is not None
    assert message.context.chat is not None
    # Each context holds the rows right after its own event.
    assert created.context.chat.unread_count == 0
    assert created.context.chat.last_message_at is None
    assert created.context.chat.title == "Anna"  # a direct chat is named after its sender
    assert created.context.contact is not None
    assert created.context.contact.name == "Anna"
    assert message.context.chat.id == created.context.chat.id
    assert message.context.chat.unread_count == 1
    assert message.context.chat.last_message_text == "Привет! Как дела?"
    assert message.context.chat.last_message_at == T0
    assert message.context.message is not None
    assert message.context.message.provider_message_id == "m1"
    assert message.context.contact is not None
    assert message.context.contact.provider_id == ANNA.id
    assert message.context.seq == 2
    assert message.context.received_at == NOW
    assert message.tenant_id == "acme"
    assert message.session_id == "s1"


async def test_group_message_names_the_chat_by_its_title_not_the_sender(
    store: SQLiteStore,
) -> None:
    stored = await store.ingest("s1", [received("g1", chat=SALES)], received_at=NOW)
    created, message = stored
    assert created.context.contact is None
    assert message.context.chat is not None
    assert message.context.chat.title == "Sales"
    assert message.context.contact is not None
    assert message.context.contact.name == "Anna"


async def test_unread_counts_received_messages_and_resets_on_our_own(store: SQLiteStore) -> None:
    for index in range(3):
        stored = await store.ingest("s1", [received(f"in{index}", t=index)], received_at=NOW)
    assert stored[-1].context.chat is not None
    assert stored[-1].context.chat.unread_count == 3

    (ours,) = await store.ingest("s1", [sent("out1", t=10)], received_at=NOW)
    assert ours.context.chat is not None
    assert ours.context.chat.unread_count == 0
    assert ours.context.chat.last_message_text == "ok"

    (again,) = await store.ingest("s1", [received("in3", t=11)], received_at=NOW)
    assert again.context.chat is not None
    assert again.context.chat.unread_count == 1


async def test_an_older_message_counts_but_does_not_replace_the_preview(
    store: SQLiteStore,
) -> None:
    await store.ingest("s1", [received("new", text="latest", t=100)], received_at=NOW)
    (old,) = await store.ingest("s1", [received("old", text="earlier", t=1)], received_at=NOW)
    assert old.context.chat is not None
    assert old.context.chat.last_message_text == "latest"
    assert old.context.chat.last_message_at == at(100)
    assert old.context.chat.unread_count == 2


async def test_mark_chat_read_logs_one_chat_update(store: SQLiteStore) -> None:
    stored = await store.ingest("s1", [received("m1"), received("m2")], received_at=NOW)
    chat = stored[-1].context.chat
    assert chat is not None

    (update,) = await store.mark_chat_read(chat.id, received_at=NOW)
    assert isinstance(update.event, ChatUpdated)
    assert update.event.unread_count == 0
    assert update.event.chat.id == ANNA_CHAT.id
    assert update.context.chat is not None
    assert update.context.chat.unread_count == 0
    assert update.seq == 4
    assert await store.mark_chat_read(chat.id, received_at=NOW) == []
    assert await store.mark_chat_read(999_999, received_at=NOW) == []


async def test_status_before_its_message_gets_a_row_the_message_fills(
    store: SQLiteStore,
) -> None:
    early = await store.ingest("s1", [status("m1", DeliveryState.DELIVERED)], received_at=NOW)
    assert types(early) == ["chat.created", "message.status"]
    placeholder = early[-1].context.message
    assert placeholder is not None
    chat = early[-1].context.chat
    assert chat is not None
    assert (await store.list_messages(chat.id)).items == ()  # nothing to show yet

    (message,) = await store.ingest("s1", [sent("m1", t=-5)], received_at=NOW)
    assert message.context.message == placeholder
    (view,) = (await store.list_messages(chat.id)).items
    assert view.record == placeholder
    assert view.status == "delivered"
    assert view.from_me
    assert view.text == "ok"
    assert view.occurred_at == at(-5)


async def test_statuses_only_move_forward(store: SQLiteStore) -> None:
    await store.ingest("s1", [sent("m1")], received_at=NOW)
    read = await store.ingest("s1", [status("m1", DeliveryState.READ)], received_at=NOW)
    assert types(read) == ["message.status"]

    late = await store.ingest("s1", [status("m1", DeliveryState.DELIVERED)], received_at=NOW)
    assert late == []
    chat = read[0].context.chat
    assert chat is not None
    (view,) = (await store.list_messages(chat.id)).items
    assert view.status == "read"

    failed = await store.ingest("s1", [status("m1", DeliveryState.FAILED)], received_at=NOW)
    deleted = await store.ingest("s1", [status("m1", DeliveryState.DELETED)], received_at=NOW)
    assert types(failed) == types(deleted) == ["message.status"]
    assert await store.ingest("s1", [status("m1", DeliveryState.PLAYED)], received_at=NOW) == []


async def test_edit_delete_and_reaction_point_at_the_target_row(store: SQLiteStore) -> None:
    (_, message) = await store.ingest("s1", [received("m1", text="helo")], received_at=NOW)
    target = message.context.message
    events: list[Event] = [
        MessageEdited(
            provider="evolution", occurred_at=at(1), chat=ANNA_CHAT, message_id="m1", text="hello"
        ),
        MessageReaction(
            provider="evolution",
            occurred_at=at(2),
            chat=ANNA_CHAT,
            sender=Party(id="me@c.us", name="Me", is_me=True),
            message_id="r1",
            target_id="m1",
            emoji="👍",
        ),
        MessageDeleted(provider="evolution", occurred_at=at(3), chat=ANNA_CHAT, message_id="m1"),
    ]
    stored = await store.ingest("s1", events, received_at=NOW)
    assert types(stored) == ["message.edited", "message.reaction", "message.deleted"]
    assert all(item.context.message == target for item in stored)
    assert stored[1].context.contact is not None
    assert stored[1].context.contact.name == "Me"
    assert message.context.chat is not None
    (view,) = (await store.list_messages(message.context.chat.id)).items
    assert (view.text, view.edited, view.deleted) == ("hello", True, True)


async def test_redelivered_edits_reactions_and_deletions_change_nothing(
    store: SQLiteStore,
) -> None:
    await store.ingest("s1", [received("m1", text="helo")], received_at=NOW)
    events: list[Event] = [
        MessageEdited(
            provider="evolution", occurred_at=at(1), chat=ANNA_CHAT, message_id="m1", text="hello"
        ),
        MessageReaction(
            provider="evolution",
            occurred_at=at(2),
            chat=ANNA_CHAT,
            sender=ANNA,
            message_id="r1",
            target_id="m1",
            emoji="❤️",
        ),
        MessageDeleted(provider="evolution", occurred_at=at(3), chat=ANNA_CHAT, message_id="m1"),
        status("m1", DeliveryState.READ),
    ]
    assert len(await store.ingest("s1", events, received_at=NOW)) == 4
    assert await store.ingest("s1", events, received_at=NOW) == []
    # An edit to new text is a new event. One back to an earlier text has that edit's key
    # (the key hashes the text), so it cannot be told from a redelivery and is dropped.
    for text, expected in (("hello!", ["message.edited"]), ("hello", [])):
        edit = MessageEdited(
            provider="evolution", occurred_at=at(4), chat=ANNA_CHAT, message_id="m1", text=text
        )
        assert types(await store.ingest("s1", [edit], received_at=NOW)) == expected


async def test_an_edit_that_comes_first_keeps_its_text(store: SQLiteStore) -> None:
    edit = MessageEdited(
        provider="evolution", occurred_at=at(5), chat=ANNA_CHAT, message_id="m1", text="fixed"
    )
    await store.ingest("s1", [edit], received_at=NOW)
    (message,) = await store.ingest("s1", [received("m1", text="fxied")], received_at=NOW)
    assert message.context.chat is not None
    (view,) = (await store.list_messages(message.context.chat.id)).items
    assert (view.text, view.edited) == ("fixed", True)


async def test_chat_events_upsert_and_update_only_given_fields(store: SQLiteStore) -> None:
    created = ChatCreated(provider="evolution", occurred_at=at(0), chat=SALES)
    assert types(await store.ingest("s1", [created], received_at=NOW)) == ["chat.created"]
    assert await store.ingest("s1", [created], received_at=NOW) == []

    update = ChatUpdated(provider="evolution", occurred_at=at(1), chat=SALES, unread_count=7)
    (stored,) = await store.ingest("s1", [update], received_at=NOW)
    assert stored.context.chat is not None
    assert (stored.context.chat.title, stored.context.chat.unread_count) == ("Sales", 7)
    # Not deduplicated: the same update twice is two updates.
    assert len(await store.ingest("s1", [update], received_at=NOW)) == 1

    unknown = ChatRef(id="new@c.us", kind=ChatKind.DIRECT)
    rename = ChatUpdated(provider="evolution", occurred_at=at(2), chat=unknown, title="Bob")
    fresh = await store.ingest("s1", [rename], received_at=NOW)
    assert types(fresh) == ["chat.created", "chat.updated"]
    assert fresh[1].context.chat is not None
    assert fresh[1].context.chat.title == "Bob"


async def test_contact_update_carries_its_direct_chat(store: SQLiteStore) -> None:
    await store.ingest("s1", [received("m1")], received_at=NOW)
    renamed = Party(id=ANNA.id, name="Anna K.")
    event = ContactUpdated(provider="evolution", occurred_at=at(1), contact=renamed)
    (stored,) = await store.ingest("s1", [event], received_at=NOW)
    assert stored.context.contact is not None
    assert stored.context.contact.name == "Anna K."
    assert stored.context.contact.phone == ANNA.phone  # None in the event keeps what we knew
    assert stored.context.chat is not None
    assert stored.context.chat.provider_chat_id == ANNA.id


async def test_session_status_updates_the_session_and_later_contexts(
    store: SQLiteStore,
) -> None:
    me = Party(id="77001112233@s.whatsapp.net", phone="77001112233", name="Shop")
    connected = SessionStatus(
        provider="evolution", occurred_at=at(0), state=SessionState.CONNECTED, me=me
    )
    stored = await store.ingest("s1", [connected, received("m1")], received_at=NOW)
    assert all(item.context.session.display_name == "Shop" for item in stored)
    row = await store.get_session("s1")
    assert row is not None
    assert (row.state, row.record.phone) == ("connected", "77001112233")


async def test_ephemeral_events_get_a_context_but_no_seq(store: SQLiteStore) -> None:
    typing = PresenceUpdated(
        provider="evolution",
        occurred_at=at(0),
        chat=ANNA_CHAT,
        participant=ANNA,
        state=PresenceState.TYPING,
    )
    alone = await store.ingest("s1", [typing], received_at=NOW)
    assert [item.seq for item in alone] == [None]
    assert alone[0].context.chat is None
    assert alone[0].context.contact is None

    qr = SessionQR(provider="evolution", occurred_at=at(0), qr="2@abc")
    mixed = await store.ingest("s1", [received("m1"), typing, qr], received_at=NOW)
    assert [item.seq for item in mixed] == [1, 2, None, None]
    assert mixed[2].context.chat is not None  # the message just created it
    assert mixed[2].context.contact is not None
    assert types(await whole_log(store)) == ["chat.created", "message.received"]


async def test_an_unknown_session_is_a_lookup_error(store: SQLiteStore) -> None:
    with pytest.raises(LookupError, match="unknown session 'nope'"):
        await store.ingest("nope", [received("m1")], received_at=NOW)
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.ingest("s1", [received("m1")], received_at=datetime(2025, 1, 1))
    assert await store.last_seq("acme") == 0


async def test_an_ephemeral_event_of_an_unknown_session_is_a_lookup_error(
    store: SQLiteStore,
) -> None:
    qr = SessionQR(provider="evolution", occurred_at=at(0), qr="2@abc")
    with pytest.raises(LookupError, match="unknown session"):
        await store.ingest("nope", [qr], received_at=NOW)


async def test_a_write_cancelled_before_it_is_queued_writes_nothing(store: SQLiteStore) -> None:
    with trio.CancelScope() as scope:
        scope.cancel()
        await store.ingest("s1", [received("m1")], received_at=NOW)
    assert await store.last_seq("acme") == 0


async def test_a_write_cancelled_after_it_is_queued_still_commits(store: SQLiteStore) -> None:
    with trio.CancelScope() as scope:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                functools.partial(store.ingest, "s1", [received("m1")], received_at=NOW)
            )
            await trio.testing.wait_all_tasks_blocked()
            scope.cancel()
    await add_session(store, "s2")  # queued behind it: once this is done, so is the ingest
    assert types(await whole_log(store)) == ["chat.created", "message.received"]


async def test_resaving_a_session_keeps_what_the_provider_reported(store: SQLiteStore) -> None:
    me = Party(id="77001112233@s.whatsapp.net", phone="77001112233", name="Shop")
    connected = SessionStatus(
        provider="evolution", occurred_at=at(0), state=SessionState.CONNECTED, me=me
    )
    await store.ingest("s1", [connected], received_at=NOW)
    await add_session(store)
    row = await store.get_session("s1")
    assert row is not None
    assert (row.record.phone, row.record.display_name, row.state) == (
        "77001112233",
        "Shop",
        "connected",
    )


async def test_seq_is_per_tenant(store: SQLiteStore) -> None:
    await add_session(store, "s2", "globex")
    seqs: dict[str, list[int | None]] = defaultdict(list)
    for index in range(4):
        for session_id in ("s1", "s2"):
            stored = await store.ingest(session_id, [received(f"m{index}")], received_at=NOW)
            seqs[stored[0].tenant_id] += [item.seq for item in stored]
    assert seqs["acme"] == seqs["globex"] == [1, 2, 3, 4, 5]
    assert await store.last_seq("acme") == await store.last_seq("globex") == 5
    assert await store.last_seq("initech") == 0
    assert {item.session_id for item in await whole_log(store, "globex")} == {"s2"}


async def test_read_log_replays_exactly_what_ingest_returned(store: SQLiteStore) -> None:
    batches: list[list[Event]] = [
        [received("m1", text="a"), status("m1", DeliveryState.READ)],
        [sent("m2", chat=SALES), received("m3", chat=SALES)],
        [
            MessageEdited(
                provider="evolution", occurred_at=at(1), chat=SALES, message_id="m3", text="b"
            ),
            ChatUpdated(provider="evolution", occurred_at=at(2), chat=SALES, pinned=True),
            ContactUpdated(
                provider="evolution", occurred_at=at(3), contact=ANNA, avatar_url="https://x/a"
            ),
            SessionStatus(
                provider="evolution",
                occurred_at=at(4),
                state=SessionState.DISCONNECTED,
                reason="network",
            ),
        ],
    ]
    returned: list[StoredEvent] = []
    for events in batches:
        returned += await store.ingest("s1", events, received_at=NOW)

    assert await whole_log(store) == returned
    assert [item.seq for item in returned] == list(range(1, len(returned) + 1))
    assert await store.read_log("acme", after=3, limit=2) == returned[3:5]
    with pytest.raises(ValueError, match="limit"):
        await store.read_log("acme", after=0, limit=0)


async def test_a_restart_keeps_everything(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    async with open_sqlite_store(path) as store:
        await store.put_session(session(), provider_options={"apikey": "k"}, autostart=True)
        returned = await store.ingest("s1", [received("m1"), sent("m2")], received_at=NOW)
        epoch = store.epoch
        chats = await store.list_chats("s1", kinds=ALL_KINDS)

    async with open_sqlite_store(path) as store:
        assert store.epoch == epoch
        row = await store.get_session("s1")
        assert row is not None
        assert (row.provider_options, row.autostart) == ({"apikey": "k"}, True)
        assert await store.list_chats("s1", kinds=ALL_KINDS) == chats
        assert await whole_log(store) == returned
        (next_one,) = await store.ingest("s1", [received("m3")], received_at=NOW)
        assert next_one.seq == 4
        assert await store.ingest("s1", [received("m1")], received_at=NOW) == []


async def test_in_memory_store_works_and_is_private() -> None:
    async with open_sqlite_store(":memory:") as store:
        await add_session(store)
        stored = await store.ingest("s1", [received("m1")], received_at=NOW)
        assert await whole_log(store) == stored
        assert len((await store.list_chats("s1", kinds=ALL_KINDS)).items) == 1
    async with open_sqlite_store(":memory:") as other:
        assert await other.list_sessions() == []


async def test_a_closed_store_refuses_work(tmp_path: Path) -> None:
    async with open_sqlite_store(str(tmp_path / "store.db")) as store:
        await add_session(store)
    with pytest.raises(StoreError, match="closed"):
        await store.ingest("s1", [received("m1")], received_at=NOW)
    with pytest.raises(StoreError, match="closed"):
        await store.last_seq("acme")


# --------------------------------------------------------------------------------------------
# Group commit and failures


async def test_concurrent_ingests_share_transactions(store: SQLiteStore) -> None:
    results: dict[int, list[StoredEvent]] = {}

    async def one(index: int) -> None:
        chat = ChatRef(id=f"{index % 5}@c.us", kind=ChatKind.DIRECT)
        sender = Party(id=chat.id, name=f"P{index % 5}")
        event = received(f"m{index}", chat=chat, sender=sender, t=index)
        results[index] = await store.ingest("s1", [event], received_at=NOW)

    async with trio.open_nursery() as nursery:
        for index in range(200):
            nursery.start_soon(one, index)

    stats = store.statistics()
    assert stats.batches < 200
    assert stats.largest_batch > 1
    assert stats.errors == 0
    assert stats.queue_depth == 0
    assert stats.rows == 205  # 200 messages and 5 new chats
    seqs = sorted(item.seq for stored in results.values() for item in stored if item.seq)
    assert seqs == list(range(1, 206))
    assert all(stored[-1].event.type == "message.received" for stored in results.values())
    assert sum(len(stored) == 2 for stored in results.values()) == 5
    page = await store.list_chats("s1", kinds=ALL_KINDS)
    assert sorted(chat.unread_count for chat in page.items) == [40] * 5


async def test_a_failing_call_does_not_fail_the_rest_of_its_batch(store: SQLiteStore) -> None:
    outcomes: dict[str, BaseException | list[StoredEvent]] = {}

    async def one(session_id: str, message_id: str) -> None:
        try:
            outcomes[message_id] = await store.ingest(
                session_id, [received(message_id)], received_at=NOW
            )
        except LookupError as exc:
            outcomes[message_id] = exc

    async with trio.open_nursery() as nursery:
        for index in range(20):
            nursery.start_soon(one, "s1", f"good{index}")
        nursery.start_soon(one, "ghost", "bad")
        for index in range(20, 40):
            nursery.start_soon(one, "s1", f"good{index}")

    assert isinstance(outcomes.pop("bad"), LookupError)
    assert all(isinstance(value, list) and value for value in outcomes.values())
    stats = store.statistics()
    assert stats.retried_batches >= 1
    assert stats.errors == 1
    assert await store.last_seq("acme") == 41  # one chat, forty messages


async def test_a_full_disk_is_a_store_error_and_nothing_is_half_written(
    store: SQLiteStore,
) -> None:
    await store.ingest("s1", [received("m0")], received_at=NOW)
    before = await whole_log(store)
    chats = await store.list_chats("s1", kinds=ALL_KINDS)

    # max_page_count is per connection: set it on the writer's, through the writer.
    def cap(conn: sqlite3.Connection) -> None:
        (pages,) = conn.execute("PRAGMA page_count").fetchone()
        conn.execute(f"PRAGMA max_page_count = {pages}")

    await store._write(cap)
    big = [received(f"big{index}", text="x" * 3000) for index in range(20)]
    with pytest.raises(StoreError, match="full"):
        await store.ingest("s1", big, received_at=NOW)
    assert await whole_log(store) == before
    assert await store.list_chats("s1", kinds=ALL_KINDS) == chats
    assert store.statistics().errors == 1

    await store._write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
    stored = await store.ingest("s1", big, received_at=NOW)
    assert len(stored) == 20  # the dedupe keys were rolled back with everything else
    assert await store.last_seq("acme") == len(before) + 20


async def test_a_database_locked_by_another_process_is_a_store_error(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    async with open_sqlite_store(path, busy_timeout=0.05) as store:
        await add_session(store)
        other = sqlite3.connect(path, isolation_level=None)
        try:
            other.execute("BEGIN IMMEDIATE")
            with pytest.raises(StoreError, match="locked"):
                await store.ingest("s1", [received("m1")], received_at=NOW)
            other.execute("ROLLBACK")
        finally:
            other.close()
        assert len(await store.ingest("s1", [received("m1")], received_at=NOW)) == 2


async def test_on_commit_hands_on_everything_in_log_order_before_ingest_returns(
    tmp_path: Path,
) -> None:
    handed: list[StoredEvent] = []
    typing = PresenceUpdated(
        provider="evolution",
        occurred_at=at(0),
        chat=ANNA_CHAT,
        participant=ANNA,
        state=PresenceState.TYPING,
    )
    async with open_sqlite_store(str(tmp_path / "store.db"), on_commit=handed.extend) as store:
        await add_session(store)

        async def one(index: int) -> None:
            events: list[Event] = [received(f"m{index}"), typing]
            stored = await store.ingest("s1", events, received_at=NOW)
            assert all(item in handed for item in stored)

        async with trio.open_nursery() as nursery:
            for index in range(30):
                nursery.start_soon(one, index)
        assert [item.seq for item in handed if item.seq is not None] == list(range(1, 32))
        assert sum(item.seq is None for item in handed) == 30

        handed.clear()
        (alone,) = await store.ingest("s1", [typing], received_at=NOW)
        assert handed == [alone]

        handed.clear()
        with trio.CancelScope() as scope:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    functools.partial(store.ingest, "s1", [received("late")], received_at=NOW)
                )
                await trio.testing.wait_all_tasks_blocked()
                scope.cancel()
        await add_session(store, "s2")
        assert types(handed) == ["message.received"]  # fanned out though nobody waited


async def test_a_failing_on_commit_is_a_bug_that_propagates(tmp_path: Path) -> None:
    def broken(events: Sequence[StoredEvent]) -> None:
        raise RuntimeError("hub bug")

    with pytest.RaisesGroup(pytest.RaisesExc(RuntimeError, match="hub bug")):
        async with open_sqlite_store(str(tmp_path / "store.db"), on_commit=broken) as store:
            await add_session(store)
            await store.ingest("s1", [received("m1")], received_at=NOW)


# --------------------------------------------------------------------------------------------
# Schema


async def test_a_version_1_database_is_migrated_with_its_data(tmp_path: Path) -> None:
    path = str(tmp_path / "old.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _schema.migrate(conn, target=1)
        conn.execute("INSERT INTO tenants (id, last_seq) VALUES ('acme', 7)")
        conn.execute(
            "INSERT INTO sessions (id, tenant_id, provider, updated_at) "
            "VALUES ('s1', 'acme', 'evolution', 0)"
        )
        conn.execute(
            "INSERT INTO chats (session_id, provider_chat_id, kind, created_at, last_message_at) "
            "VALUES ('s1', 'old@c.us', 'direct', 0, 10)"
        )
        (epoch,) = conn.execute("SELECT value FROM meta").fetchone()
    finally:
        conn.close()

    async with open_sqlite_store(path) as store:
        assert store.epoch == epoch
        page = await store.list_chats("s1", kinds=ALL_KINDS)
        assert [chat.provider_chat_id for chat in page.items] == ["old@c.us"]
        assert page.seq == 7
        (message,) = (await store.ingest("s1", [received("m1")], received_at=NOW))[-1:]
        assert message.seq == 9

    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (_schema.SCHEMA_VERSION,)
        indexes = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
        assert {"chats_by_activity", "messages_by_time", "dedupe_by_age"} <= indexes
    finally:
        conn.close()


async def test_a_newer_database_is_refused_untouched(tmp_path: Path) -> None:
    path = str(tmp_path / "future.db")
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA user_version = 99")
    conn.close()
    with pytest.raises(StoreError, match="newer than this omnirelay"):
        async with open_sqlite_store(path):
            pass  # pragma: no cover


async def test_a_database_that_cannot_be_opened_is_a_store_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unable to open"):
        async with open_sqlite_store(str(tmp_path / "missing" / "store.db")):
            pass  # pragma: no cover


# --------------------------------------------------------------------------------------------
# Sessions and listings


async def test_sessions_belong_to_one_tenant(store: SQLiteStore) -> None:
    assert not await store.put_session(
        session("s1", "globex"), provider_options={}, autostart=False
    )
    renamed = SessionRecord(id="s1", tenant_id="acme", provider="evolution", name="Vendas")
    assert await store.put_session(renamed, provider_options={"url": "u"}, autostart=True)
    row = await store.get_session("s1")
    assert row is not None
    assert (row.record.name, row.provider_options, row.autostart, row.state) == (
        "Vendas",
        {"url": "u"},
        True,
        "stopped",
    )
    await add_session(store, "s2", "globex")
    assert [r.record.id for r in await store.list_sessions()] == ["s1", "s2"]
    assert [r.record.id for r in await store.list_sessions("globex")] == ["s2"]
    assert await store.get_session("nope") is None


async def test_deleting_a_session_deletes_its_rows_but_not_its_log(store: SQLiteStore) -> None:
    stored = await store.ingest("s1", [received("m1")], received_at=NOW)
    chat = stored[-1].context.chat
    assert chat is not None
    assert await store.delete_session("s1")
    assert not await store.delete_session("s1")
    assert await store.get_chat(chat.id) is None
    assert (await store.list_messages(chat.id)).items == ()
    assert await whole_log(store) == stored
    # Same id again: a fresh session; the seq keeps counting.
    await add_session(store)
    again = await store.ingest("s1", [received("m1")], received_at=NOW)
    assert [item.seq for item in again] == [3, 4]


async def test_list_chats_filters_by_kind_and_pages_by_activity(store: SQLiteStore) -> None:
    events: list[Event] = []
    for index in range(5):
        chat = ChatRef(id=f"{index}@c.us", kind=ChatKind.DIRECT)
        events.append(received(f"d{index}", chat=chat, t=index))
    for index in range(2):
        group = ChatRef(id=f"{index}@g.us", kind=ChatKind.GROUP, title=f"G{index}")
        events.append(received(f"g{index}", chat=group, t=10 + index))
    status_chat = ChatRef(id="status@broadcast", kind=ChatKind.STATUS)
    events.append(received("s0", chat=status_chat, t=20))
    await store.ingest("s1", events, received_at=NOW)

    groups = await store.list_chats("s1", kinds=frozenset({ChatKind.GROUP}))
    assert [chat.provider_chat_id for chat in groups.items] == ["1@g.us", "0@g.us"]
    assert groups.seq == 16
    assert groups.next_cursor is None

    direct = frozenset({ChatKind.DIRECT})
    first = await store.list_chats("s1", kinds=direct, limit=2)
    assert [chat.provider_chat_id for chat in first.items] == ["4@c.us", "3@c.us"]
    assert first.next_cursor is not None
    # A chat created between two pages goes to the top; later pages do not shift.
    newcomer = ChatRef(id="9@c.us", kind=ChatKind.DIRECT)
    await store.ingest("s1", [received("d9", chat=newcomer, t=99)], received_at=NOW)
    second = await store.list_chats("s1", kinds=direct, limit=2, cursor=first.next_cursor)
    assert [chat.provider_chat_id for chat in second.items] == ["2@c.us", "1@c.us"]
    assert second.seq == 18
    assert second.next_cursor is not None
    third = await store.list_chats("s1", kinds=direct, limit=2, cursor=second.next_cursor)
    assert [chat.provider_chat_id for chat in third.items] == ["0@c.us"]
    assert third.next_cursor is None

    not_status = frozenset(ALL_KINDS - {ChatKind.STATUS, ChatKind.BROADCAST})
    everything = await store.list_chats("s1", kinds=not_status, limit=100)
    assert len(everything.items) == 8
    assert (await store.list_chats("s1", kinds=frozenset())).items == ()
    assert (await store.list_chats("nope", kinds=ALL_KINDS)).seq == 0


@pytest.mark.parametrize(
    "cursor", ["", "%%%", "bm9wZQ", "Y2hhdDp4OjE", "bWVzc2FnZToxOjE", "Y2hhdDoxOjE6MQ"]
)
async def test_a_malformed_cursor_is_a_clear_value_error(store: SQLiteStore, cursor: str) -> None:
    # "nope", "chat:x:1", a message cursor, "chat:1:1:1"
    with pytest.raises(ValueError, match="malformed cursor"):
        await store.list_chats("s1", kinds=ALL_KINDS, cursor=cursor)


async def test_list_messages_pages_newest_first(store: SQLiteStore) -> None:
    events = [received(f"m{index}", t=index % 3) for index in range(7)]
    stored = await store.ingest("s1", events, received_at=NOW)
    chat = stored[0].context.chat
    assert chat is not None
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_messages(chat.id, limit=3, cursor=cursor)
        seen += [view.record.provider_message_id for view in page.items]
        # A message arriving meanwhile (newest) never shows up in later pages.
        await store.ingest("s1", [received(f"late{len(seen)}", t=50)], received_at=NOW)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    # By time (0,1,2 repeating), ties broken by newest row first.
    assert seen == ["m5", "m2", "m4", "m1", "m6", "m3", "m0"]
    with pytest.raises(ValueError, match="malformed cursor"):
        await store.list_messages(chat.id, cursor="Y2hhdDoxOjE")  # a chat cursor
    with pytest.raises(ValueError, match="limit"):
        await store.list_messages(chat.id, limit=5000)


# --------------------------------------------------------------------------------------------
# Retention


async def test_prune_removes_only_the_oldest_entries(store: SQLiteStore) -> None:
    await add_session(store, "s2", "globex")
    for index in range(10):
        await store.ingest("s1", [received(f"m{index}")], received_at=NOW + timedelta(hours=index))
    await store.ingest("s2", [received("x")], received_at=NOW)

    assert await store.prune("acme", keep_count=8) == 3
    assert [item.seq for item in await whole_log(store)] == list(range(4, 12))
    later = NOW + timedelta(hours=10)
    # Logged more than 4.5 h before `later`: acme's seqs 4-7 (hours 2-5), both of globex's.
    assert await store.prune(max_age=timedelta(hours=4, minutes=30), now=later) == 6
    assert [item.seq for item in await whole_log(store)] == list(range(8, 12))
    assert await whole_log(store, "globex") == []  # its only entries were old too
    assert await store.last_seq("acme") == 11

    # The log is gone, the dedupe keys are not: a redelivery still changes nothing.
    assert await store.ingest("s1", [received("m0")], received_at=later) == []
    assert await store.prune(dedupe_max_age=timedelta(days=7), now=later) == 0
    assert await store.ingest("s1", [received("m0")], received_at=later) == []
    far = later + timedelta(days=8)
    await store.prune(dedupe_max_age=timedelta(days=7), now=far)
    # Even with its key forgotten, a stored message is not stored twice.
    assert await store.ingest("s1", [received("m0")], received_at=far) == []
    with pytest.raises(ValueError, match="keep_count"):
        await store.prune(keep_count=-1)


# --------------------------------------------------------------------------------------------
# Properties

CHATS = (
    ChatRef(id="c0@c.us", kind=ChatKind.DIRECT),
    ChatRef(id="c1@c.us", kind=ChatKind.DIRECT),
    ChatRef(id="g0@g.us", kind=ChatKind.GROUP, title="G"),
)
operations = st.lists(
    st.tuples(
        st.sampled_from(["in", "out", "status"]),
        st.integers(0, 7),
        st.sampled_from(list(DeliveryState)),
    ),
    min_size=1,
    max_size=30,
)


def to_event(kind: str, number: int, state: DeliveryState, t: int) -> Event:
    chat = CHATS[number % len(CHATS)]
    sender = Party(id=f"p{number}@c.us", name=f"P{number}") if chat.kind is ChatKind.GROUP else ANNA
    if kind == "in":
        return received(f"m{number}", chat=chat, sender=sender, t=t)
    if kind == "out":
        return sent(f"m{number}", chat=chat, t=t)
    return status(f"m{number}", state, chat=chat, t=t)


class Model:
    """What the store should hold after the same events, computed the obvious way."""

    def __init__(self) -> None:
        self.keys: set[str] = set()
        self.chats: set[str] = set()
        self.messages: set[str] = set()  # rows, placeholders included
        self.real: set[str] = set()
        self.status: dict[str, DeliveryState] = {}
        self.unread: Counter[str] = Counter()
        self.logged = 0

    def apply(self, event: Event) -> None:
        assert isinstance(event, MessageReceived | MessageSent | MessageStatus)
        key = event.dedupe_key()
        if key in self.keys:
            return
        self.keys.add(key)
        message_id = event.message_id if isinstance(event, MessageStatus) else event.message.id
        if message_id not in self.messages and event.chat.id not in self.chats:
            self.chats.add(event.chat.id)
            self.logged += 1
        self.messages.add(message_id)
        if isinstance(event, MessageStatus):
            if event.state.advances(self.status.get(message_id)):
                self.status[message_id] = event.state
                self.logged += 1
            return
        self.real.add(message_id)
        self.logged += 1
        if isinstance(event, MessageSent):
            self.unread[event.chat.id] = 0
        else:
            self.unread[event.chat.id] += 1


@settings(max_examples=100, deadline=None)
@given(operations=operations, cuts=st.lists(st.integers(0, 30), max_size=6))
async def test_random_message_and_status_streams_keep_the_invariants(
    operations: list[tuple[str, int, DeliveryState]], cuts: list[int]
) -> None:
    events = [
        to_event(kind, number, state, t) for t, (kind, number, state) in enumerate(operations)
    ]
    bounds = sorted({0, len(events), *(cut for cut in cuts if cut < len(events))})
    calls = [events[start:end] for start, end in itertools.pairwise(bounds)]
    model = Model()
    for event in events:
        model.apply(event)

    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "store.db")
        async with open_sqlite_store(path) as store:
            await add_session(store)
            returned: list[StoredEvent] = []
            for call in calls:
                returned += await store.ingest("s1", call, received_at=NOW)
            log = await whole_log(store)
            assert log == returned
            assert [item.seq for item in log] == list(range(1, model.logged + 1))
            assert await store.last_seq("acme") == model.logged
            # Everything again, as one redelivery: nothing changes.
            assert await store.ingest("s1", events, received_at=NOW) == []
            chats = await store.list_chats("s1", kinds=ALL_KINDS)
            assert {chat.provider_chat_id for chat in chats.items} == model.chats
            listed: list[Any] = []
            for chat in chats.items:
                assert chat.unread_count == model.unread[chat.provider_chat_id]
                listed += (await store.list_messages(chat.id, limit=100)).items
            assert sorted(v.record.provider_message_id for v in listed) == sorted(model.real)
            for view in listed:
                expected = model.status.get(view.record.provider_message_id)
                assert view.status == (expected.value if expected else None)

        conn = sqlite3.connect(path)
        try:
            rows = conn.execute("SELECT provider_message_id FROM messages").fetchall()
        finally:
            conn.close()
        assert sorted(row[0] for row in rows) == sorted(model.messages)


# --------------------------------------------------------------------------------------------
# Socket.IO connection-state recovery


async def test_recovery_sessions_are_saved_replaced_and_deleted(tmp_path: Path) -> None:
    path = str(tmp_path / "store.db")
    async with open_sqlite_store(path) as store:
        assert await store.load_recovery("p1") is None
        await store.save_recovery("p1", tenant_id="acme", namespace="/crm", sid="s1", rooms=["a"])
        await store.save_recovery(
            "p1", tenant_id="acme", namespace="/crm", sid="s2", rooms=["conversation:1", "b"]
        )
        await store.save_recovery("p2", tenant_id="globex", namespace="/", sid="x", rooms=[])
    async with open_sqlite_store(path) as store:  # durable across a restart
        row = await store.load_recovery("p1")
        assert row is not None
        assert (row.pid, row.tenant_id, row.namespace, row.sid) == ("p1", "acme", "/crm", "s2")
        assert row.rooms == ("conversation:1", "b")
        assert abs(row.updated_at - datetime.now(UTC)) < timedelta(minutes=1)
        await store.delete_recovery("p1")
        await store.delete_recovery("p1")  # deleting what is gone is fine
        assert await store.load_recovery("p1") is None
        empty = await store.load_recovery("p2")
        assert empty is not None
        assert empty.rooms == ()


async def test_prune_forgets_recovery_sessions_older_than_the_log_retention(
    store: SQLiteStore,
) -> None:
    await store.save_recovery("old", tenant_id="acme", namespace="/", sid="s", rooms=[])
    await store.save_recovery("other", tenant_id="globex", namespace="/", sid="s", rooms=[])
    now = datetime.now(UTC)
    assert await store.prune(max_age=timedelta(hours=1), now=now) == 0
    assert await store.load_recovery("old") is not None
    later = now + timedelta(hours=2)
    await store.prune("acme", max_age=timedelta(hours=1), now=later)
    assert await store.load_recovery("old") is None
    assert await store.load_recovery("other") is not None  # another tenant's prune
    await store.save_recovery("kept", tenant_id="acme", namespace="/", sid="s", rooms=[])
    await store.prune(keep_count=0, now=later + timedelta(days=1))  # no max_age: kept
    assert await store.load_recovery("kept") is not None
    await store.prune(max_age=timedelta(hours=1), now=later)
    assert await store.load_recovery("other") is None


# --------------------------------------------------------------------------------------------
# Outgoing webhooks


def _planned(*items: tuple[str, int]) -> tuple[NewWebhookDelivery, ...]:
    return tuple(
        NewWebhookDelivery(id=i, seq=seq, event="new_message", body="{}") for i, seq in items
    )


async def test_a_webhook_endpoint_starts_at_its_tenants_last_seq(store: SQLiteStore) -> None:
    await store.ingest("s1", [received("m1"), received("m2")], received_at=NOW)
    only = (Filter(event="new_message", user_id=[7, "8"]),)
    row = await store.create_webhook_endpoint(
        "w1",
        tenant_id="acme",
        url="https://example.com/a",
        secret="s3cr3t",
        filters=only,
        enabled=True,
        now=NOW,
        max_per_tenant=2,
    )
    assert row is not None
    assert (row.id, row.tenant_id, row.url, row.secret) == (
        "w1",
        "acme",
        "https://example.com/a",
        "s3cr3t",
    )
    assert (row.filters, row.enabled, row.cursor, row.created_at) == (only, True, 3, NOW)
    assert "s3cr3t" not in repr(row)
    fresh = await store.create_webhook_endpoint(
        "w2", tenant_id="new", url="u", secret="s", filters=(), enabled=False, now=NOW
    )
    assert fresh is not None
    assert (fresh.cursor, fresh.filters, fresh.enabled) == (0, (), False)
    await store.create_webhook_endpoint(
        "w3", tenant_id="acme", url="u", secret="s", filters=(), enabled=True, now=NOW
    )
    refused = await store.create_webhook_endpoint(
        "w4",
        tenant_id="acme",
        url="u",
        secret="s",
        filters=(),
        enabled=True,
        now=NOW,
        max_per_tenant=2,
    )
    assert refused is None
    assert [e.id for e in await store.list_webhook_endpoints("acme")] == ["w1", "w3"]
    assert [e.id for e in await store.list_webhook_endpoints()] == ["w1", "w2", "w3"]
    assert await store.get_webhook_endpoint("w4") is None

    updated = await store.update_webhook_endpoint("w1", enabled=False, filters=())
    assert updated is not None
    assert (updated.enabled, updated.filters, updated.url) == (False, (), "https://example.com/a")
    assert await store.update_webhook_endpoint("nope", enabled=True) is None


async def test_webhook_deliveries_queue_in_seq_order_and_plan_once(store: SQLiteStore) -> None:
    for endpoint_id, tenant in (("w1", "acme"), ("w2", "acme"), ("g1", "globex")):
        await store.create_webhook_endpoint(
            endpoint_id, tenant_id=tenant, url="u", secret="s", filters=(), enabled=True, now=NOW
        )
    plans = [
        WebhookPlan(endpoint_id="w1", cursor=3, deliveries=_planned(("a", 2), ("b", 2), ("c", 3))),
        WebhookPlan(endpoint_id="w2", cursor=3),
        WebhookPlan(endpoint_id="gone", cursor=3, deliveries=_planned(("x", 1))),
    ]
    assert await store.plan_webhook_deliveries(plans, now=NOW) == ["w1", "w2"]
    # Planning the same positions again (a crash between commit and cursor) queues nothing.
    assert await store.plan_webhook_deliveries(plans, now=NOW) == []
    later = [WebhookPlan(endpoint_id="g1", cursor=1, deliveries=_planned(("g", 1)))]
    assert await store.plan_webhook_deliveries(later, now=NOW) == ["g1"]
    assert await store.get_webhook_delivery("x") is None
    assert sorted(await store.pending_webhook_endpoints()) == ["g1", "w1"]
    assert await store.next_webhook_delivery("w2") is None
    endpoint = await store.get_webhook_endpoint("w1")
    assert endpoint is not None
    assert endpoint.cursor == 3

    head = await store.next_webhook_delivery("w1")
    assert head is not None
    assert (head.id, head.seq, head.state, head.attempts, head.next_attempt_at) == (
        "a",
        2,
        "pending",
        0,
        NOW,
    )
    retry_at = NOW + timedelta(seconds=5)
    assert await store.record_webhook_attempt(
        "a",
        state="pending",
        attempts=1,
        last_status=503,
        last_error="HTTP 503",
        next_attempt_at=retry_at,
        now=NOW,
    )
    head = await store.next_webhook_delivery("w1")
    assert head is not None  # still the head: order is kept while it is retried
    assert (head.id, head.attempts, head.last_status, head.next_attempt_at) == (
        "a",
        1,
        503,
        retry_at,
    )
    assert await store.record_webhook_attempt(
        "a",
        state="dead",
        attempts=2,
        last_status=404,
        last_error="HTTP 404",
        next_attempt_at=NOW,
        now=NOW,
    )
    assert not await store.record_webhook_attempt(  # not pending any more
        "a",
        state="delivered",
        attempts=3,
        last_status=200,
        last_error=None,
        next_attempt_at=NOW,
        now=NOW,
    )
    head = await store.next_webhook_delivery("w1")
    assert head is not None
    assert head.id == "b"
    await store.record_webhook_attempt(
        "b",
        state="delivered",
        attempts=1,
        last_status=200,
        last_error=None,
        next_attempt_at=NOW,
        now=NOW,
    )

    (dead,) = await store.list_webhook_deliveries("acme", state="dead")
    assert (dead.id, dead.endpoint_id, dead.attempts, dead.last_error) == ("a", "w1", 2, "HTTP 404")
    assert await store.list_webhook_deliveries("globex", state="dead") == []
    assert [d.id for d in await store.list_webhook_deliveries(None, state="pending")] == ["g", "c"]
    page = await store.list_webhook_deliveries(None, state="pending", limit=1)
    assert [d.id for d in page] == ["g"]
    rest = await store.list_webhook_deliveries(None, state="pending", before=page[-1].position)
    assert [d.id for d in rest] == ["c"]
    assert [
        d.id for d in await store.list_webhook_deliveries(None, state="pending", endpoint_id="w1")
    ] == ["c"]

    # A replay puts the dead one back at the head of its queue, attempts reset.
    assert await store.replay_webhook_delivery("b", now=NOW) is None  # delivered, not dead
    replayed = await store.replay_webhook_delivery("a", now=retry_at)
    assert replayed is not None
    assert (replayed.state, replayed.attempts, replayed.next_attempt_at) == ("pending", 0, retry_at)
    head = await store.next_webhook_delivery("w1")
    assert head is not None
    assert head.id == "a"

    # Deleting an endpoint takes its whole queue and its dead letters with it.
    assert await store.delete_webhook_endpoint("w1")
    assert not await store.delete_webhook_endpoint("w1")
    assert await store.get_webhook_delivery("c") is None
    assert await store.pending_webhook_endpoints() == ["g1"]


async def test_prune_webhook_deliveries_keeps_pending_ones(store: SQLiteStore) -> None:
    await store.create_webhook_endpoint(
        "w1", tenant_id="acme", url="u", secret="s", filters=(), enabled=True, now=NOW
    )
    deliveries = _planned(("done", 1), ("dead", 2), ("waiting", 3))
    await store.plan_webhook_deliveries(
        [WebhookPlan(endpoint_id="w1", cursor=3, deliveries=deliveries)], now=NOW
    )
    for delivery_id, state in (("done", "delivered"), ("dead", "dead")):
        await store.record_webhook_attempt(
            delivery_id,
            state=state,
            attempts=1,
            last_status=200,
            last_error=None,  # type: ignore[arg-type]
            next_attempt_at=NOW,
            now=NOW,
        )
    hour = timedelta(hours=1)
    assert await store.prune_webhook_deliveries(delivered_before=NOW, dead_before=NOW) == 0
    assert await store.prune_webhook_deliveries(delivered_before=NOW + hour, dead_before=NOW) == 1
    assert await store.get_webhook_delivery("done") is None
    assert await store.get_webhook_delivery("dead") is not None
    assert (
        await store.prune_webhook_deliveries(delivered_before=NOW + hour, dead_before=NOW + hour)
        == 1
    )
    assert await store.get_webhook_delivery("waiting") is not None


async def test_a_version_2_database_gets_the_recovery_and_webhook_tables(tmp_path: Path) -> None:
    path = str(tmp_path / "v2.db")
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        _schema.migrate(conn, target=2)
        conn.execute("INSERT INTO tenants (id, last_seq) VALUES ('acme', 5)")
    finally:
        conn.close()
    async with open_sqlite_store(path) as store:
        assert await store.last_seq("acme") == 5
        row = await store.create_webhook_endpoint(
            "w1", tenant_id="acme", url="u", secret="s", filters=(), enabled=True, now=NOW
        )
        assert row is not None
        assert row.cursor == 5
        await store.save_recovery("p", tenant_id="acme", namespace="/", sid="s", rooms=["r"])
        assert await store.load_recovery("p") is not None


@pytest.mark.parametrize("chat_id", [0, -1, 2**63, 10**30])
async def test_ids_no_row_can_have_are_simply_not_found(store: SQLiteStore, chat_id: int) -> None:
    # Ids come from URLs and client events: a huge one must not reach SQLite (OverflowError).
    assert await store.get_chat(chat_id) is None
    assert (await store.list_messages(chat_id)).items == ()
    assert await store.mark_chat_read(chat_id, received_at=NOW) == []
