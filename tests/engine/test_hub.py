"""The hub in isolation: who gets a stored event, and that it is encoded once."""

from __future__ import annotations

import json
from collections.abc import Callable, Hashable
from datetime import UTC, datetime

import attrs
import pytest

from omnirelay.engine._frames import OutFrame
from omnirelay.engine._hub import EnvelopeFormat, Format, Hub, SocketIOFormat, Target
from omnirelay.engine._store import StoredEvent
from omnirelay.protocol import (
    ChatKind,
    ChatRecord,
    ChatRef,
    ContactRecord,
    Dialect,
    Message,
    MessageKind,
    MessageReceived,
    MessageRecord,
    Party,
    RenderContext,
    Rendition,
    SessionRecord,
    builtin_dialects,
)

AT = datetime(2026, 1, 10, 15, 30, tzinfo=UTC)
DIALECTS = builtin_dialects()


def stored(tenant: str, seq: int = 1) -> StoredEvent:
    event = MessageReceived(
        provider="evolution",
        occurred_at=AT,
        chat=ChatRef(id="77079856339@c.us", kind=ChatKind.DIRECT, title="Anna"),
        sender=Party(id="77079856339@c.us", phone="77079856339", name="Anna"),
        message=Message(id=f"M{seq}", kind=MessageKind.TEXT, from_me=False, text="hi"),
    )
    context = RenderContext(
        tenant_id=tenant,
        session=SessionRecord(id=f"s-{tenant}", tenant_id=tenant, provider="evolution"),
        received_at=AT,
        chat=ChatRecord(
            id=1,
            session_id=f"s-{tenant}",
            provider_chat_id="77079856339@c.us",
            kind=ChatKind.DIRECT,
        ),
        contact=ContactRecord(id=1, provider_id="77079856339@c.us", name="Anna"),
        message=MessageRecord(id=seq, provider_message_id=f"M{seq}"),
        seq=seq,
    )
    return StoredEvent(
        tenant_id=tenant, session_id=f"s-{tenant}", seq=seq, event=event, context=context
    )


@attrs.define(eq=False)
class Recorder:
    """A subscriber that keeps what it is handed."""

    tenant_id: str
    format: Format
    connection_id: str = "c"
    rooms: frozenset[str] = frozenset()
    frames: list[OutFrame] = attrs.field(factory=list)
    keys: list[Hashable | None] = attrs.field(factory=list)
    groups: list[tuple[OutFrame, ...]] = attrs.field(factory=list)
    accept: Callable[[Rendition], bool] = lambda rendition: True

    def wants(self, stored: StoredEvent, rendition: Rendition) -> bool:
        return self.accept(rendition)

    def in_room(self, room: str) -> bool:
        return room in self.rooms

    def deliver(
        self,
        frames: tuple[OutFrame, ...],
        *,
        durable: bool,
        seq: int | None = None,
        coalesce: Hashable | None = None,
    ) -> None:
        self.groups.append(frames)
        self.frames.extend(frames)
        self.keys.append(coalesce)


def envelope() -> EnvelopeFormat:
    return EnvelopeFormat(DIALECTS.get("envelope"))


def test_each_format_is_encoded_once_and_shared_by_all_its_receivers() -> None:
    hub = Hub(epoch=lambda: "E")
    a, b = Recorder("acme", envelope()), Recorder("acme", envelope())
    io = Recorder("acme", SocketIOFormat("/", (DIALECTS.get("whatsapp-web"),)))
    for subscriber in (a, b, io):
        hub.attach(subscriber)
    hub.publish(stored("acme"))
    assert [f.text.startswith('{"event":"new_message"') for f in a.frames] == [True]
    assert a.frames[0] is b.frames[0]  # the same object: encoded once
    assert io.frames[0].text.startswith('42["whatsapp:new-message",')
    assert '"seq":"E:1"' in a.frames[0].text


def test_an_events_frames_for_one_subscriber_come_as_one_group() -> None:
    """A namespace with several dialects renders one event several times: the subscriber gets
    them in one call, so its transport takes all of them or none (never half an event)."""
    hub = Hub(epoch=lambda: "E")
    three = SocketIOFormat(
        "/", tuple(DIALECTS.get(d) for d in ("whatsapp-web", "chat-sync", "evolution"))
    )
    everything = Recorder("acme", three)
    picky = Recorder("acme", three, accept=lambda r: r.name.startswith("whatsapp:"))
    for subscriber in (everything, picky):
        hub.attach(subscriber)
    hub.publish(stored("acme"))
    [group] = everything.groups
    assert len(group) >= 2
    assert group[0].text.startswith('42["whatsapp:new-message"')
    [only] = picky.groups
    assert only == tuple(f for f in group if f.text.startswith('42["whatsapp:'))
    assert everything.keys == [None]  # durable: nothing to coalesce


def test_socketio_offsets_say_how_much_of_an_event_a_frame_completes() -> None:
    hub = Hub(epoch=lambda: "E")
    three = SocketIOFormat(
        "/",
        tuple(DIALECTS.get(d) for d in ("whatsapp-web", "chat-sync", "evolution")),
        offsets=True,
    )
    recorder = Recorder("acme", three)
    hub.attach(recorder)
    hub.publish(stored("acme", seq=7))
    [group] = recorder.groups
    offsets = [json.loads(frame.text[2:])[-1] for frame in group]  # 4 (message) 2 (event)
    # The last frame completes event 7; the ones before it name their place in it.
    assert offsets == [f"E:7.{n}" for n in range(len(group) - 1)] + ["E:7"]


def test_an_event_only_reaches_its_own_tenant() -> None:
    hub = Hub(epoch=lambda: "E")
    mine, theirs = Recorder("acme", envelope()), Recorder("globex", envelope())
    hub.attach(mine)
    hub.attach(theirs)
    hub.publish(stored("acme"))
    assert len(mine.frames) == 1
    assert theirs.frames == []
    hub.detach(mine)
    hub.publish(stored("acme", 2))
    assert len(mine.frames) == 1
    assert hub.statistics().tenants == 1


def test_a_failing_renderer_is_isolated_and_reported() -> None:
    def broken(event: object, context: object) -> tuple[Rendition, ...]:
        raise RuntimeError("renderer bug")

    failures: list[tuple[str, Exception]] = []
    hub = Hub(epoch=lambda: "E", on_render_error=lambda name, s, exc: failures.append((name, exc)))
    bad_dialect = Dialect(name="broken", wire="socketio", events=frozenset(), render=broken)
    bad = Recorder("acme", SocketIOFormat("/", (bad_dialect, DIALECTS.get("whatsapp-web"))))
    good = Recorder("acme", envelope())
    hub.attach(bad)
    hub.attach(good)
    hub.publish(stored("acme"))
    assert len(good.frames) == 1
    # the namespace's other dialect still rendered
    assert [f.text[:26] for f in bad.frames] == ['42["whatsapp:new-message",']
    assert [name for name, _ in failures] == ["broken"]
    assert hub.statistics().render_errors == 1


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        (Target(), {"ws", "crm-room", "crm"}),
        (Target(namespace=""), {"ws"}),
        (Target(namespace="/crm"), {"crm-room", "crm"}),
        (Target(namespace="/crm", room="conversation:1"), {"crm-room"}),
        (Target(connection_id="crm"), {"crm"}),
    ],
)
def test_server_publish_targets(target: Target, expected: set[str]) -> None:
    hub = Hub(epoch=lambda: "E")
    crm = SocketIOFormat("/crm", (DIALECTS.get("crm"),))
    subscribers = [
        Recorder("acme", envelope(), connection_id="ws"),
        Recorder("acme", crm, connection_id="crm-room", rooms=frozenset({"conversation:1"})),
        Recorder("acme", crm, connection_id="crm"),
        Recorder("globex", envelope(), connection_id="other"),
    ]
    for subscriber in subscribers:
        hub.attach(subscriber)
    assert hub.publish_custom("acme", "note", {"x": 1}, target) == len(expected)
    assert {s.connection_id for s in subscribers if s.frames} == expected
