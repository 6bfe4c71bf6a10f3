"""The normalized event model: construction rules, keys, JSON round trips, hostile JSON."""

from __future__ import annotations

import enum
import types
import typing
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.protocol._errors import RemoteProtocolError
from omnirelay.protocol._events import (
    EVENT_TYPES,
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
    ProviderRaw,
    SessionQR,
    SessionState,
    SessionStatus,
    event_from_json,
    event_to_json,
)
from omnirelay.protocol._json import dumps, loads
from omnirelay.protocol._redact import redact_provider_payload

AT = datetime(2025, 7, 16, 11, 13, 54, tzinfo=UTC)
CHAT = ChatRef(id="77079856339@c.us", kind=ChatKind.DIRECT)
ANNA = Party(id="77079856339@c.us", phone="77079856339", name="Anna")
TEXT = Message(id="3A5F", kind=MessageKind.TEXT, from_me=False, text="hi")


def common(**fields: Any) -> dict[str, Any]:
    return {"provider": "evolution", "occurred_at": AT, **fields}


# --------------------------------------------------------------------------------------------
# Construction


def test_occurred_at_is_normalised_to_utc() -> None:
    almaty = datetime(2025, 7, 16, 16, 13, 54, tzinfo=timezone(timedelta(hours=5)))
    event = MessageDeleted(provider="waha", occurred_at=almaty, chat=CHAT, message_id="m")
    assert event.occurred_at == AT
    assert event.occurred_at.tzinfo is UTC


def test_a_naive_occurred_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        MessageDeleted(provider="waha", occurred_at=datetime(2025, 1, 1), chat=CHAT, message_id="m")


def test_a_naive_last_message_at_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        ChatUpdated(**common(chat=CHAT, last_message_at=datetime(2025, 1, 1)))


def test_direction_must_agree_with_the_event_class() -> None:
    mine = Message(id="m", kind=MessageKind.TEXT, from_me=True)
    with pytest.raises(ValueError, match="use MessageSent"):
        MessageReceived(**common(chat=CHAT, sender=ANNA, message=mine))
    with pytest.raises(ValueError, match="use MessageReceived"):
        MessageSent(**common(chat=CHAT, message=TEXT))


def test_events_are_frozen_and_hashable() -> None:
    event = MessageReceived(**common(chat=CHAT, sender=ANNA, message=TEXT))
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.provider = "meta"  # type: ignore[misc]
    raw = ProviderRaw(**common(name="x", payload={"a": [1]}))
    assert len({event, raw, raw}) == 2


def test_event_types_maps_every_type_name_to_its_class() -> None:
    assert set(EVENT_TYPES.values()) == set(typing.get_args(Event))
    for name, cls in EVENT_TYPES.items():
        assert cls.type == name
    assert sorted(EVENT_TYPES) == [
        "chat.created",
        "chat.updated",
        "contact.updated",
        "message.deleted",
        "message.edited",
        "message.reaction",
        "message.received",
        "message.sent",
        "message.status",
        "presence.updated",
        "provider.raw",
        "session.qr",
        "session.status",
    ]
    with pytest.raises(TypeError):
        EVENT_TYPES["x"] = MessageSent  # type: ignore[index]


def test_only_presence_qr_and_raw_events_are_ephemeral() -> None:
    ephemeral = {name for name, cls in EVENT_TYPES.items() if not cls.durable}
    assert ephemeral == {"presence.updated", "session.qr", "provider.raw"}


# --------------------------------------------------------------------------------------------
# Keys


@pytest.mark.parametrize(
    ("event", "key"),
    [
        (MessageReceived(**common(chat=CHAT, sender=ANNA, message=TEXT)), "message:3A5F"),
        (
            MessageSent(
                **common(chat=CHAT, message=Message(id="3EB0", kind=MessageKind.TEXT, from_me=True))
            ),
            "message:3EB0",
        ),
        (MessageDeleted(**common(chat=CHAT, message_id="3A5F")), "delete:3A5F"),
        (
            MessageStatus(**common(chat=CHAT, message_id="3A5F", state=DeliveryState.READ)),
            "status:3A5F:read",
        ),
        (
            MessageReaction(
                **common(chat=CHAT, sender=ANNA, message_id="R1", target_id="3A5F", emoji="👍")
            ),
            "reaction:R1",
        ),
        (ChatCreated(**common(chat=CHAT)), "chat:77079856339@c.us"),
        (ChatUpdated(**common(chat=CHAT, unread_count=0)), None),
        (ContactUpdated(**common(contact=ANNA)), None),
        (SessionStatus(**common(state=SessionState.CONNECTED)), None),
        (SessionQR(**common(qr="2@x")), None),
        (
            PresenceUpdated(**common(chat=CHAT, participant=ANNA, state=PresenceState.TYPING)),
            None,
        ),
        (ProviderRaw(**common(name="x", payload={})), None),
    ],
    ids=lambda value: getattr(value, "type", None),
)
def test_dedupe_keys(event: Event, key: str | None) -> None:
    assert event.dedupe_key() == key


def test_edit_key_depends_on_the_new_text_only() -> None:
    first = MessageEdited(**common(chat=CHAT, message_id="m", text="one"))
    again = MessageEdited(**common(chat=CHAT, message_id="m", text="one", provider="waha"))
    other = MessageEdited(**common(chat=CHAT, message_id="m", text="two"))
    assert first.dedupe_key() == again.dedupe_key()
    assert first.dedupe_key() != other.dedupe_key()
    key = first.dedupe_key()
    assert key.startswith("edit:m:")
    assert len(key.removeprefix("edit:m:")) == 40
    cleared = MessageEdited(**common(chat=CHAT, message_id="m", text=None))
    assert cleared.dedupe_key().startswith("edit:m:")


def test_coalesce_keys_exist_for_presence_and_qr_only() -> None:
    typing_ = PresenceUpdated(**common(chat=CHAT, participant=ANNA, state=PresenceState.TYPING))
    paused = PresenceUpdated(**common(chat=CHAT, participant=ANNA, state=PresenceState.PAUSED))
    assert (
        typing_.coalesce_key()
        == paused.coalesce_key()
        == "presence:77079856339@c.us:77079856339@c.us"
    )
    assert SessionQR(**common(qr="2@x")).coalesce_key() == "qr"
    assert ProviderRaw(**common(name="x", payload={})).coalesce_key() is None
    assert MessageDeleted(**common(chat=CHAT, message_id="m")).coalesce_key() is None


def test_delivery_states_only_move_forward() -> None:
    order = list(DeliveryState)
    assert [state.rank for state in order] == sorted(state.rank for state in order)
    assert DeliveryState.READ.advances(DeliveryState.DELIVERED)
    assert DeliveryState.PLAYED.advances(DeliveryState.READ)
    assert not DeliveryState.DELIVERED.advances(DeliveryState.READ)
    assert not DeliveryState.READ.advances(DeliveryState.READ)
    assert DeliveryState.PENDING.advances(None)


def test_failed_and_deleted_are_terminal() -> None:
    assert {s for s in DeliveryState if s.is_terminal} == {
        DeliveryState.FAILED,
        DeliveryState.DELETED,
    }
    for state in DeliveryState:
        if not state.is_terminal:
            assert not state.advances(DeliveryState.FAILED)
            assert not state.advances(DeliveryState.DELETED)
            assert DeliveryState.FAILED.advances(state)
    assert DeliveryState.DELETED.advances(DeliveryState.FAILED)
    assert not DeliveryState.FAILED.advances(DeliveryState.DELETED)


# --------------------------------------------------------------------------------------------
# JSON


def test_event_json_shape() -> None:
    event = MessageStatus(
        provider="meta",
        occurred_at=datetime(2022, 1, 1, 8, 1, tzinfo=UTC),
        chat=ChatRef(id="5511999999999", kind=ChatKind.DIRECT, alt_ids=("x",)),
        message_id="wamid.1",
        state=DeliveryState.READ,
    )
    assert event_to_json(event) == {
        "type": "message.status",
        "provider": "meta",
        "occurred_at": "2022-01-01T08:01:00Z",
        "chat": {"id": "5511999999999", "kind": "direct", "title": None, "alt_ids": ["x"]},
        "message_id": "wamid.1",
        "state": "read",
        "recipient_id": None,
        "error": None,
    }
    assert type(event_to_json(event)["state"]) is str


def test_decoding_fills_defaults_and_accepts_any_utc_offset() -> None:
    event = event_from_json(
        {
            "type": "chat.created",
            "provider": "telegram",
            "occurred_at": "2026-01-10T20:30:00.5+05:00",
            "chat": {"id": "123456789", "kind": "direct"},
        }
    )
    assert event == ChatCreated(
        provider="telegram",
        occurred_at=datetime(2026, 1, 10, 15, 30, 0, 500000, tzinfo=UTC),
        chat=ChatRef(id="123456789", kind=ChatKind.DIRECT),
    )


VALID = event_to_json(MessageReceived(**common(chat=CHAT, sender=ANNA, message=TEXT)))


@pytest.mark.parametrize(
    "obj",
    [
        pytest.param([VALID], id="not-an-object"),
        pytest.param({**VALID, "type": "message.exploded"}, id="unknown-type"),
        pytest.param({k: v for k, v in VALID.items() if k != "type"}, id="no-type"),
        pytest.param({k: v for k, v in VALID.items() if k != "sender"}, id="missing-field"),
        pytest.param({**VALID, "extra": 1}, id="unknown-field"),
        pytest.param({**VALID, "provider": 7}, id="int-for-str"),
        pytest.param({**VALID, "occurred_at": "2025-07-16T11:13:54"}, id="naive-datetime"),
        pytest.param({**VALID, "occurred_at": 1752664434}, id="epoch-datetime"),
        pytest.param({**VALID, "occurred_at": "yesterday"}, id="garbage-datetime"),
        pytest.param({**VALID, "occurred_at": "9999-12-31T23:59:59-05:00"}, id="overflow"),
        pytest.param({**VALID, "chat": "77079856339@c.us"}, id="str-for-object"),
        pytest.param({**VALID, "chat": {**VALID["chat"], "kind": "dm"}}, id="unknown-enum"),
        pytest.param({**VALID, "chat": {**VALID["chat"], "alt_ids": "abc"}}, id="str-for-list"),
        pytest.param({**VALID, "chat": {**VALID["chat"], "alt_ids": [1]}}, id="int-in-list"),
        pytest.param({**VALID, "message": {**VALID["message"], "from_me": 0}}, id="int-for-bool"),
        pytest.param({**VALID, "message": {**VALID["message"], "from_me": True}}, id="wrong-way"),
        pytest.param({**VALID, "sender": {**VALID["sender"], "is_me": "no"}}, id="str-for-bool"),
        pytest.param(
            {
                "type": "session.qr",
                "provider": "waha",
                "occurred_at": "2025-01-01T00:00:00Z",
                "qr": "2@x",
                "attempt": True,
            },
            id="bool-for-int",
        ),
        pytest.param(
            {
                "type": "provider.raw",
                "provider": "evolution",
                "occurred_at": "2025-01-01T00:00:00Z",
                "name": "x",
                "payload": [1],
            },
            id="list-for-payload",
        ),
    ],
)
def test_malformed_event_json_is_a_remote_error(obj: Any) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        event_from_json(obj)
    assert info.value.code == "invalid_event"


@pytest.mark.parametrize(
    "obj",
    [
        {**VALID, "chat": {**VALID["chat"], "kind": "x" * 100_000}},
        {**VALID, "occurred_at": "x" * 100_000},
        {**VALID, "type": "x" * 100_000},
        {**VALID, "x" * 100_000: 1},
    ],
    ids=["enum", "datetime", "type", "key"],
)
def test_decoding_errors_quote_only_a_short_prefix(obj: dict[str, Any]) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        event_from_json(obj)
    assert "x" * 41 not in str(info.value)


# Strategies derived from the classes themselves, so a field added later is covered too.

AWARE = st.datetimes(
    min_value=datetime(1900, 1, 1),
    max_value=datetime(2200, 1, 1),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-9, minutes=-30))]
    ),
)
JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**64 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=10)
)
JSON = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=15,
)


def strategy_for(tp: Any) -> st.SearchStrategy[Any]:
    if tp is str:
        return st.text(max_size=12)
    if tp is int:
        return st.integers(min_value=-(2**63), max_value=2**63)
    if tp is bool:
        return st.booleans()
    if tp is datetime:
        return AWARE
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return st.sampled_from(tp)
    if isinstance(tp, types.UnionType | typing._UnionGenericAlias):  # type: ignore[attr-defined]
        return st.one_of([strategy_for(arg) for arg in typing.get_args(tp)])
    if tp is type(None):
        return st.none()
    if tp == tuple[str, ...]:
        return st.lists(st.text(max_size=8), max_size=3).map(tuple)
    if tp == dict[str, Any]:
        return st.dictionaries(st.text(max_size=5), JSON, max_size=4)
    if attrs.has(tp):
        return instances(tp)
    raise NotImplementedError(f"no strategy for {tp!r}")


def instances(cls: type[Any], **overrides: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    hints = typing.get_type_hints(cls)
    fields = {
        field.name: overrides[field.name]
        if field.name in overrides
        else strategy_for(hints[field.name])
        for field in attrs.fields(cls)
    }
    return st.builds(cls, **fields)


def direction(from_me: bool) -> st.SearchStrategy[Message]:
    return instances(Message, from_me=st.just(from_me))


any_event: st.SearchStrategy[Event] = st.one_of(
    [
        instances(
            cls,
            **(
                {"message": direction(cls is MessageSent)}
                if cls in (MessageReceived, MessageSent)
                else {}
            ),
        )
        for cls in EVENT_TYPES.values()
    ]
)


@settings(max_examples=300, deadline=None)
@given(event=any_event)
def test_every_event_survives_a_json_round_trip(event: Event) -> None:
    obj = event_to_json(event)
    assert obj["type"] == event.type
    assert obj["occurred_at"].endswith("Z")
    assert event_from_json(loads(dumps(obj))) == event


def outcome(obj: Any) -> str:
    """ "decoded", or the code of the RemoteProtocolError; any other exception propagates."""
    try:
        event = event_from_json(obj)
    except RemoteProtocolError as exc:
        return exc.code
    assert type(event) in EVENT_TYPES.values()
    return "decoded"


def paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(obj, dict):
        for key, value in obj.items():
            found += paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for index, value in enumerate(obj):
            found += paths(value, (*prefix, index))
    return found


@settings(max_examples=300, deadline=None)
@given(event=any_event, data=st.data())
def test_a_mutated_event_decodes_or_raises_only_remote_errors(
    event: Event, data: st.DataObject
) -> None:
    obj = loads(dumps(event_to_json(event)))
    path = data.draw(st.sampled_from(paths(obj)))
    target = obj
    for step in path[:-1]:
        target = target[step]
    if isinstance(target, dict) and data.draw(st.booleans()):
        del target[path[-1]]
    else:
        target[path[-1]] = data.draw(JSON)
    assert outcome(obj) in {"decoded", "invalid_event"}


@settings(max_examples=200, deadline=None)
@given(
    obj=JSON
    | st.dictionaries(st.sampled_from([*EVENT_TYPES, "type", "provider", "occurred_at"]), JSON)
)
def test_arbitrary_json_raises_only_remote_errors(obj: Any) -> None:
    assert outcome(obj) in {"decoded", "invalid_event"}


# --------------------------------------------------------------------------------------------
# Redaction

EVOLUTION_UPSERT = {
    "event": "messages.upsert",
    "instance": "kz-support",
    "data": {
        "key": {"remoteJid": "77079856339@s.whatsapp.net", "fromMe": False, "id": "3A5F"},
        "message": {
            "imageMessage": {
                "url": "https://mmg.whatsapp.net/o1/v/t62.7118-24/f2/m269/x.enc",
                "mediaKey": "Fq1AQ3nlb8ZrGYjtVmdlX4CcbE3Qr1dTnvKNrRsAcbE=",
                "jpegThumbnail": "/9j/4AAQSkZJRgABAQAAAQABAAD",
                "fileSha256": b"\x01\x02",
            },
            "base64": "iVBORw0KGgo=",
        },
        "contacts": [{"token": "t"}, b"\x00", {"name": "x"}],
    },
    "server_url": "https://evo.example.kz",
    "date_time": "2025-10-21T19:40:39.412Z",
    "sender": "77011234567@s.whatsapp.net",
    "apikey": "429683C4C977415CAAFCCE10F7D57E11",
}


def test_redaction_removes_secrets_at_every_depth() -> None:
    assert redact_provider_payload(EVOLUTION_UPSERT) == {
        "event": "messages.upsert",
        "instance": "kz-support",
        "data": {
            "key": {"remoteJid": "77079856339@s.whatsapp.net", "fromMe": False, "id": "3A5F"},
            "message": {
                "imageMessage": {"url": "https://mmg.whatsapp.net/o1/v/t62.7118-24/f2/m269/x.enc"}
            },
            "contacts": [{}, {"name": "x"}],
        },
        "date_time": "2025-10-21T19:40:39.412Z",
        "sender": "77011234567@s.whatsapp.net",
    }
    assert "apikey" in EVOLUTION_UPSERT  # the input is not touched


@pytest.mark.parametrize(
    "key",
    ["apikey", "apiKey", "api_key", "API-KEY", "Token", "access_token", "accessToken", "serverUrl"],
)
def test_redaction_ignores_case_and_separators(key: str) -> None:
    assert redact_provider_payload({key: "secret", "keep": 1}) == {"keep": 1}


def test_redaction_survives_nesting_deeper_than_the_recursion_limit() -> None:
    payload: dict[str, Any] = {"apikey": "k"}
    for _ in range(5000):
        payload = {"a": [payload]}
    redacted = redact_provider_payload(payload)
    for _ in range(5000):
        redacted = redacted["a"][0]
    assert redacted == {}
