"""The simulator provider, driven through the public plugin API with a collecting `emit`.

Every test runs under trio's MockClock (the `autojump_clock` fixture), so minutes of simulated
WhatsApp pass in milliseconds and a fixed seed gives the same events every time.
"""

from __future__ import annotations

import base64
import json
import random
import re
from collections import Counter
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from omnirelay.engine import (
    Command,
    CommandResult,
    Provider,
    SendText,
    SessionContext,
)
from omnirelay.engine import TestConnection as CheckConnection  # pytest would collect Test*
from omnirelay.engine._config import Config, SessionConfig, StorageConfig
from omnirelay.engine._engine import open_engine
from omnirelay.engine._plugins import collect_providers, make_plugin_manager
from omnirelay.plugins.simulator import (
    PROVIDER,
    Company,
    SimulatorOptions,
    run,
    validate_options,
)
from omnirelay.plugins.simulator._company import (
    EXTRA_CHATS,
    PENDING_STATUSES,
    RECENT_MESSAGES,
)
from omnirelay.protocol import (
    ChatCreated,
    ChatKind,
    ChatUpdated,
    ContactUpdated,
    DeliveryState,
    Event,
    MessageDeleted,
    MessageEdited,
    MessageKind,
    MessageReaction,
    MessageReceived,
    MessageSent,
    MessageStatus,
    PresenceState,
    PresenceUpdated,
    SessionQR,
    SessionRecord,
    SessionState,
    SessionStatus,
    event_from_json,
    event_to_json,
)

BASE = datetime(2025, 7, 16, 11, 13, 54, tzinfo=UTC)
DIRECT_JID = re.compile(r"^\d{11,13}@c\.us$")
GROUP_JID = re.compile(r"^120363\d{12}@g\.us$")


def mock_wall_clock() -> datetime:
    """Wall time that follows trio's (mock) clock, as the engine's would follow real time."""
    return BASE + timedelta(seconds=trio.current_time())


@attrs.define
class Session:
    """A simulator session wired to a collecting emit and a command channel."""

    context: SessionContext
    events: list[Event]
    commands: trio.MemorySendChannel[Command]

    async def ask(self, command: Command) -> CommandResult:
        await self.commands.send(command)
        with trio.fail_after(60):
            return await command.wait_reply()

    def of_type(self, kind: type[Any]) -> list[Any]:
        return [event for event in self.events if isinstance(event, kind)]


def make_session(
    options: Mapping[str, Any], *, context_seed: int = 0, phone: str | None = None
) -> Session:
    events: list[Event] = []

    async def collect(session: SessionRecord, batch: tuple[Event, ...]) -> list[Any]:
        assert session.id == "sim-1"
        events.extend(batch)
        await trio.lowlevel.checkpoint()  # a real emit waits for the store
        return []

    send, receive = trio.open_memory_channel[Command](4)
    context = SessionContext(
        session=SessionRecord(id="sim-1", tenant_id="acme", provider="simulator", phone=phone),
        options=options,
        commands=receive,
        emit=collect,
        random=random.Random(context_seed),
        clock=mock_wall_clock,
    )
    return Session(context=context, events=events, commands=send)


async def simulate(**options: Any) -> Session:
    session = make_session(options)
    await run(session.context)
    return session


def connected_index(events: list[Event]) -> int:
    return next(
        i
        for i, event in enumerate(events)
        if isinstance(event, SessionStatus) and event.state is SessionState.CONNECTED
    )


# -- life cycle --------------------------------------------------------------------------------


async def test_links_with_qr_codes_before_any_message(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=1, qr_rounds=3, max_events=60)
    events = session.events
    first = events[0]
    assert isinstance(first, SessionStatus)
    assert first.state is SessionState.CONNECTING
    qrs = events[1:4]
    assert [qr.attempt for qr in qrs if isinstance(qr, SessionQR)] == [1, 2, 3]
    assert len({qr.qr for qr in session.of_type(SessionQR)}) == 3, "each round is a new code"
    for qr in session.of_type(SessionQR):
        assert qr.qr.startswith("2@")
        assert qr.image_data_url is not None
        prefix = "data:image/png;base64,"
        assert qr.image_data_url.startswith(prefix)
        assert base64.b64decode(qr.image_data_url[len(prefix) :]).startswith(b"\x89PNG\r\n")
    connected = events[4]
    assert isinstance(connected, SessionStatus)
    assert connected.state is SessionState.CONNECTED
    assert connected.me is not None
    assert connected.me.is_me
    assert DIRECT_JID.match(connected.me.id)
    assert connected.me.phone == "+" + connected.me.id.partition("@")[0]
    assert connected.me.name
    later = events[5:]
    assert later
    assert not [e for e in later if isinstance(e, SessionStatus | SessionQR)]
    assert [e.occurred_at for e in events] == sorted(e.occurred_at for e in events)


async def test_no_qr_rounds_connects_at_once_and_keeps_a_known_number(
    autojump_clock: trio.abc.Clock,
) -> None:
    session = make_session({"seed": 1, "qr_rounds": 0, "max_events": 5}, phone="5511987654321")
    await run(session.context)
    assert not session.of_type(SessionQR)
    connected = session.events[1]
    assert isinstance(connected, SessionStatus)
    assert connected.state is SessionState.CONNECTED
    assert connected.me is not None
    assert connected.me.id == "5511987654321@c.us"


async def test_same_seed_gives_the_same_events(autojump_clock: trio.abc.Clock) -> None:
    # Started together (same mock instant), with different engine generators: the seed
    # option alone decides what happens.
    options = {"seed": 42, "max_events": 300, "rate": 3.0}
    one = make_session(options, context_seed=1)
    two = make_session(options, context_seed=2)
    other = make_session({**options, "seed": 43}, context_seed=1)
    async with trio.open_nursery() as nursery:
        for session in (one, two, other):
            nursery.start_soon(run, session.context)
    assert len(one.events) == 300
    assert one.events == two.events
    assert one.events != other.events


async def test_without_a_seed_the_context_generator_decides(
    autojump_clock: trio.abc.Clock,
) -> None:
    one = make_session({"max_events": 100}, context_seed=7)
    two = make_session({"max_events": 100}, context_seed=7)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, one.context)
        nursery.start_soon(run, two.context)
    assert one.events == two.events


# -- what it emits -------------------------------------------------------------------------------


async def test_every_event_survives_the_json_round_trip(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=5, max_events=600, contacts=30)
    for event in session.events:
        encoded = event_to_json(event)
        json.dumps(encoded, ensure_ascii=False)
        assert event_from_json(encoded) == event
        assert event.provider == "simulator"
        assert event.occurred_at.tzinfo is not None


async def test_a_believable_company_in_several_languages(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=5, max_events=800, contacts=30)
    counts = Counter(type(event) for event in session.events)
    for kind in (
        ChatCreated,
        ChatUpdated,
        ContactUpdated,
        MessageDeleted,
        MessageEdited,
        MessageReaction,
        MessageReceived,
        MessageSent,
        MessageStatus,
        PresenceUpdated,
    ):
        assert counts[kind] > 0, f"no {kind.__name__} in 800 events"

    chats = {e.chat.id: e.chat.kind for e in session.events if hasattr(e, "chat")}
    direct = [jid for jid, kind in chats.items() if kind is ChatKind.DIRECT]
    groups = [jid for jid, kind in chats.items() if kind is ChatKind.GROUP]
    assert direct
    assert all(DIRECT_JID.match(jid) for jid in direct)
    assert groups
    assert all(GROUP_JID.match(jid) for jid in groups)

    presence = {e.state for e in session.of_type(PresenceUpdated)}
    assert {PresenceState.TYPING, PresenceState.ONLINE, PresenceState.OFFLINE} <= presence
    assert any(e.message.kind is MessageKind.IMAGE for e in session.of_type(MessageReceived))
    assert any(e.unread_count == 0 for e in session.of_type(ChatUpdated))
    assert any(e.title for e in session.of_type(ChatUpdated)), "a group was renamed"

    texts = " ".join(
        e.message.text or ""
        for e in session.of_type(MessageReceived) + session.of_type(MessageSent)
    )
    assert re.search("[а-яё]", texts), "no Russian"
    assert re.search("[ãõç]", texts), "no Portuguese"
    assert re.search("[¿¡ñ]", texts), "no Spanish"
    assert re.search(r"\b(the|you|is)\b", texts), "no English"
    assert re.search("[\U0001f300-\U0001faff]", texts), "no emoji"


async def test_message_ids_are_unique(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=9, max_events=500)
    ids = [e.message.id for e in session.events if isinstance(e, MessageReceived | MessageSent)] + [
        e.message_id for e in session.of_type(MessageReaction)
    ]
    assert len(ids) == len(set(ids))
    assert all(message_id.startswith("SIM9-") for message_id in ids)


async def test_outgoing_statuses_only_advance(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=11, max_events=800)
    sent = set()
    current: dict[str, DeliveryState] = {}
    for event in session.events:
        if isinstance(event, MessageSent):
            sent.add(event.message.id)
        elif isinstance(event, MessageStatus):
            assert event.message_id in sent, "a status for a message never sent"
            assert event.state.advances(current.get(event.message_id))
            current[event.message_id] = event.state
    assert DeliveryState.READ in current.values()
    assert DeliveryState.DELIVERED in current.values()


async def test_noise_the_gateway_filters_is_there(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=3, max_events=500)
    received = session.of_type(MessageReceived)
    stories = [e for e in received if e.chat.kind is ChatKind.STATUS]
    assert stories
    assert {e.chat.id for e in stories} == {"status@broadcast"}
    assert any(e.message.kind is MessageKind.SYSTEM for e in received)


# -- ending ------------------------------------------------------------------------------------


async def test_max_events_ends_the_run(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=2, max_events=37)
    assert len(session.events) == 37


async def test_duration_ends_the_run(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=2, duration=120.0, rate=2.0)
    assert trio.current_time() == pytest.approx(120.0)
    assert session.events[-1].occurred_at <= BASE + timedelta(seconds=120)
    assert 150 < len(session.events) < 300


async def test_fail_after_raises_runtime_error(autojump_clock: trio.abc.Clock) -> None:
    session = make_session({"seed": 2, "fail_after": 25})
    with pytest.raises(RuntimeError, match="fail_after"):
        await run(session.context)
    assert len(session.events) == 25

    session = make_session({"seed": 2, "fail_after": 0})
    with pytest.raises(RuntimeError, match="fail_after"):
        await run(session.context)
    assert session.events == []


async def test_benchmark_skips_qr_and_keeps_to_the_rate(autojump_clock: trio.abc.Clock) -> None:
    session = await simulate(seed=4, benchmark=True, rate=1000.0, duration=2.0)
    assert not session.of_type(SessionQR)
    connected = session.events[1]
    assert isinstance(connected, SessionStatus)
    assert connected.state is SessionState.CONNECTED
    assert 1900 <= len(session.events) <= 2300


async def test_memory_stays_bounded(autojump_clock: trio.abc.Clock) -> None:
    session = make_session({})
    company = Company(
        session.context,
        SimulatorOptions(seed=6, benchmark=True, rate=1e6, max_events=30_000, contacts=200),
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(company.run)
        await trio.sleep(0.001)
        for number in range(EXTRA_CHATS + 50):
            result = await session.ask(SendText(chat_id=f"5511900{number:06d}@c.us", text="Oi"))
            assert result.ok
    stats = company.statistics()
    assert stats.emitted == 30_000
    assert stats.chats == 200 + 2 + EXTRA_CHATS, "the oldest SendText chats were forgotten"
    assert stats.recent_messages <= RECENT_MESSAGES
    assert stats.pending_statuses <= PENDING_STATUSES
    assert stats.queued_beats <= 8


# -- commands ----------------------------------------------------------------------------------


async def test_test_connection_reports_link_state(autojump_clock: trio.abc.Clock) -> None:
    session = make_session({"seed": 8, "qr_rounds": 2})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, session.context)
        await trio.sleep(0.1)
        early = await session.ask(CheckConnection())
        assert early.ok
        assert early.details == {"connected": False, "events": 1}
        await trio.sleep(60)
        later = await session.ask(CheckConnection())
        assert later.ok
        assert later.details["connected"] is True
        assert later.details["events"] == len(session.events)
        assert "connected as +" in later.message
        nursery.cancel_scope.cancel()


async def test_send_text_emits_the_message_then_its_statuses(
    autojump_clock: trio.abc.Clock,
) -> None:
    session = make_session({"seed": 8, "qr_rounds": 1, "rate": 2.0})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, session.context)
        refused = await session.ask(SendText(chat_id="5511912345678@c.us", text="cedo demais"))
        assert not refused.ok
        assert "not connected" in refused.message
        await trio.sleep(30)

        result = await session.ask(SendText(chat_id="5511912345678@c.us", text="Olá! 👋"))
        assert result.ok, result.message
        message_id = result.details["message_id"]
        assert message_id.startswith("SIM8-")
        created = session.of_type(ChatCreated)[-1]
        sent = session.of_type(MessageSent)[-1]
        assert created.chat.id == sent.chat.id == "5511912345678@c.us"
        assert session.events.index(created) < session.events.index(sent)
        assert sent.message.id == message_id
        assert sent.message.text == "Olá! 👋"
        assert sent.message.from_me
        assert sent.chat.kind is ChatKind.DIRECT

        group = await session.ask(SendText(chat_id="120363000000000001@g.us", text="Bom dia"))
        assert group.ok
        assert session.of_type(MessageSent)[-1].chat.kind is ChatKind.GROUP

        await trio.sleep(600)
        states = [e.state for e in session.of_type(MessageStatus) if e.message_id == message_id]
        assert states[:1] == [DeliveryState.SENT]
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize(
    ("chat_id", "text", "reason"),
    [
        ("not-a-chat", "hello", "not a WhatsApp chat id"),
        ("status@broadcast", "hello", "not a WhatsApp chat id"),
        ("5511912345678@c.us", "   ", "empty"),
    ],
)
async def test_send_text_refuses_what_whatsapp_would(
    autojump_clock: trio.abc.Clock, chat_id: str, text: str, reason: str
) -> None:
    session = make_session({"seed": 8, "qr_rounds": 0})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, session.context)
        await trio.sleep(1)
        count = len(session.events)
        result = await session.ask(SendText(chat_id=chat_id, text=text))
        assert not result.ok
        assert reason in result.message
        assert not [e for e in session.events[count:] if isinstance(e, MessageSent)]
        nursery.cancel_scope.cancel()


@attrs.define(eq=False)
class Disconnect(Command):
    """A command the simulator does not know."""


async def test_unknown_commands_are_refused(autojump_clock: trio.abc.Clock) -> None:
    session = make_session({"seed": 8})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, session.context)
        result = await session.ask(Disconnect())
        assert not result.ok
        assert result.message.startswith("unsupported command Disconnect")
        nursery.cancel_scope.cancel()


async def test_a_command_cut_short_by_the_end_is_still_answered(
    autojump_clock: trio.abc.Clock,
) -> None:
    # max_events is reached by the SendText's own events: the reply must not be lost.
    session = make_session({"seed": 8, "qr_rounds": 0, "max_events": 3, "rate": 0.001})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(run, session.context)
        await trio.sleep(0.5)
        result = await session.ask(SendText(chat_id="5511912345678@c.us", text="Oi"))
    assert not result.ok
    assert "ended" in result.message


# -- options and registration ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"rate": 0}, "'rate'"),
        ({"rate": -1.5}, "'rate'"),
        ({"rate": "fast"}, "'rate'"),
        ({"rate": True}, "'rate'"),
        ({"rate": float("nan")}, "'rate'"),
        ({"seed": "abc"}, "'seed'"),
        ({"seed": 1.5}, "'seed'"),
        ({"qr_rounds": -1}, "'qr_rounds'"),
        ({"contacts": 0}, "'contacts'"),
        ({"contacts": 201}, "'contacts'"),
        ({"duration": 0}, "'duration'"),
        ({"max_events": 0}, "'max_events'"),
        ({"fail_after": -1}, "'fail_after'"),
        ({"benchmark": "yes"}, "'benchmark'"),
        ({"webhook_secret": "short"}, "'webhook_secret'"),
        ({"webhook_secret": 1234567890123456789}, "'webhook_secret'"),
        ({"rat": 1.0}, "'rat'"),
        ({"rate": 1.0, "speed": 2}, "'speed'"),
    ],
)
def test_bad_options_are_refused_naming_the_option(options: dict[str, Any], named: str) -> None:
    with pytest.raises(ValueError, match=named):
        validate_options(options)


def test_good_options_are_normalised() -> None:
    assert validate_options({}) == {}
    assert validate_options({"rate": 2, "seed": 7, "duration": None}) == {"rate": 2.0, "seed": 7}
    assert validate_options({"benchmark": True, "contacts": 200, "fail_after": 0}) == {
        "benchmark": True,
        "contacts": 200,
        "fail_after": 0,
    }
    assert SimulatorOptions.from_mapping({}) == SimulatorOptions()
    secret = "s" * 16
    assert validate_options({"webhook_secret": secret}) == {"webhook_secret": secret}
    assert secret not in repr(SimulatorOptions.from_mapping({"webhook_secret": secret}))


async def test_run_refuses_bad_options_too() -> None:
    session = make_session({"rate": 0})
    with pytest.raises(ValueError, match="'rate'"):
        await run(session.context)


def test_registers_as_the_simulator_provider() -> None:
    manager = make_plugin_manager(entry_points=False)
    providers = collect_providers(manager)
    provider = providers["simulator"]
    assert isinstance(provider, Provider)
    assert provider is PROVIDER
    assert provider.name == "simulator"
    assert provider.description
    validate: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = provider.validate_options
    assert validate is validate_options


# -- inside a real engine ------------------------------------------------------------------------


async def test_runs_inside_a_real_engine_and_fills_the_store(tmp_path: Path) -> None:
    # Real time, not the mock clock: the store works in threads. Benchmark mode makes it quick,
    # and its event sequence does not depend on timing, so a bare run predicts what lands.
    options = {"seed": 3, "benchmark": True, "rate": 20_000.0, "max_events": 600, "contacts": 12}
    expected = make_session(options)
    with trio.fail_after(10):
        await run(expected.context)
    messages = [e for e in expected.events if isinstance(e, MessageReceived | MessageSent)]
    noise = [
        e
        for e in messages
        if e.chat.kind is ChatKind.STATUS or e.message.kind is MessageKind.SYSTEM
    ]
    assert noise, "the run must contain noise for this test to mean anything"
    connected = expected.events[1]
    assert isinstance(connected, SessionStatus)
    assert connected.me is not None

    config = Config(
        storage=StorageConfig(path=str(tmp_path / "omnirelay.db")),
        sessions=(SessionConfig(id="sim-1", tenant="acme", provider="simulator", options=options),),
    )
    with trio.fail_after(20):
        async with open_engine(config, entry_points=False, rng=random.Random(0)) as engine:
            actor = engine.sessions.get("sim-1")
            assert actor is not None
            await actor.done.wait()
            row = await engine.store.get_session("sim-1")
            assert row is not None
            assert row.state == "stopped"
            assert row.record.display_name == connected.me.name

            page = await engine.store.list_chats("sim-1", kinds=frozenset(ChatKind), limit=500)
            kinds = {chat.kind for chat in page.items}
            assert kinds == {ChatKind.DIRECT, ChatKind.GROUP}
            assert "status@broadcast" not in {chat.provider_chat_id for chat in page.items}
            stored = [
                message
                for chat in page.items
                for message in (await engine.store.list_messages(chat.id, limit=500)).items
            ]

    assert len(stored) == len(messages) - len(noise)
    assert not [m for m in stored if m.kind == MessageKind.SYSTEM.value]
    assert {m.record.provider_message_id.rpartition("-")[2] for m in stored} == {
        e.message.id.rpartition("-")[2] for e in messages if e not in noise
    }
    assert any(m.from_me and m.status == DeliveryState.READ.value for m in stored)
