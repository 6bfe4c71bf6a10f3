"""The five built-in dialects render the seeds' payloads exactly, and nothing else escapes them.

Golden fixtures live in tests/fixtures/seeds/<dialect>/. Those of whatsapp-web, crm and envelope
are the seed documents' JSON examples copied verbatim. The chat-sync and evolution seeds show
code, not emitted JSON: their fixtures are derived from that code (chat-sync: the Prisma row of
`handleChatUpsert`, the `chat:message` of `handleMessageUpsert` and the `chat:update` of
`handleChatUpdate`, fed the seed's own findChats example) and, for evolution, from the Evolution
envelope of a real `messages.upsert` with its secrets removed.
"""

from __future__ import annotations

import string
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from omnirelay.protocol._dialects import Dialect, DialectRegistry, Rendition, builtin_dialects
from omnirelay.protocol._envelope import encode_envelope
from omnirelay.protocol._errors import LocalProtocolError
from omnirelay.protocol._events import (
    ChatCreated,
    ChatKind,
    ChatRef,
    ChatUpdated,
    ContactUpdated,
    DeliveryState,
    Event,
    Media,
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
)
from omnirelay.protocol._json import dumps, loads
from omnirelay.protocol._records import (
    ChatRecord,
    ContactRecord,
    MessageRecord,
    RenderContext,
    SessionRecord,
)

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds"
BUILTIN_NAMES = ("whatsapp-web", "crm", "chat-sync", "evolution", "envelope")


def seed(path: str) -> Any:
    return loads((SEEDS / path).read_bytes())


def json_shape(value: Any) -> Any:
    """`value` with every scalar tagged by its JSON type, so 1 != True != 1.0 != "1"."""
    if isinstance(value, dict):
        return {key: json_shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [json_shape(item) for item in value]
    return (type(value).__name__, value)


def assert_same_json(actual: Any, expected: Any) -> None:
    """`actual`, sent through JSON, equals `expected` value for value and type for type."""
    assert json_shape(loads(dumps(actual))) == json_shape(expected)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def render(dialect: str, event: Event, ctx: RenderContext) -> tuple[Rendition, ...]:
    return builtin_dialects().get(dialect).render(event, ctx)


def only(renditions: tuple[Rendition, ...]) -> Rendition:
    assert len(renditions) == 1, renditions
    return renditions[0]


# --------------------------------------------------------------------------------------------
# whatsapp-web (seed: whatsapp-web-socket-events.md)

WW_SESSION = SessionRecord(
    id="cmd5u0y7b0001xurbphmqfoe4",
    tenant_id="cmd5rysyd0000le04ha593nam",
    provider="evolution",
    name="sales",
)
WW_CHAT_REF = ChatRef(id="77079856339@c.us", kind=ChatKind.DIRECT)
WW_CHAT = ChatRecord(
    id=101,
    session_id=WW_SESSION.id,
    provider_chat_id="77079856339@c.us",
    kind=ChatKind.DIRECT,
    title="Солнышко мое 😊",
    unread_count=1,
    last_message_at=utc("2025-07-16T11:13:54Z"),
    last_message_text="Привет! Как дела?",
)
WW_AT = utc("2025-07-16T11:13:54Z")


def ww_context(**records: Any) -> RenderContext:
    return RenderContext(
        tenant_id=WW_SESSION.tenant_id, session=WW_SESSION, received_at=WW_AT, **records
    )


def with_row_ids(expected: dict[str, Any], *paths: tuple[tuple[str, ...], str]) -> dict[str, Any]:
    """The seed with its cuid row ids replaced by ours: our rows have integer ids, rendered as
    strings, so the seed's cuids ("cmd5v5gkv…") cannot be reproduced, only their JSON type."""
    for path, value in paths:
        target = expected
        for key in path[:-1]:
            target = target[key]
        assert isinstance(target[path[-1]], str)
        target[path[-1]] = value
    return expected


def test_whatsapp_web_new_message_matches_the_seed() -> None:
    event = MessageReceived(
        provider="evolution",
        occurred_at=WW_AT,
        chat=WW_CHAT_REF,
        sender=Party(id="77079856339@c.us", phone="77079856339", name="Солнышко мое 😊"),
        message=Message(
            id="wamid.HBgNNzcwNzk4NTYzMzlBIBE...",
            kind=MessageKind.TEXT,
            from_me=False,
            text="Привет! Как дела?",
        ),
    )
    ctx = ww_context(
        chat=WW_CHAT,
        message=MessageRecord(id=202, provider_message_id="wamid.HBgNNzcwNzk4NTYzMzlBIBE..."),
    )
    rendition = only(render("whatsapp-web", event, ctx))
    assert rendition.name == "whatsapp:new-message"
    assert rendition.rooms == ()
    expected = with_row_ids(
        seed("whatsapp-web/new-message.json"), (("chat", "id"), "101"), (("message", "id"), "202")
    )
    assert_same_json(rendition.payload, expected)


def test_whatsapp_web_chat_updated_matches_the_seed() -> None:
    event = ChatUpdated(provider="evolution", occurred_at=WW_AT, chat=WW_CHAT_REF, unread_count=1)
    rendition = only(render("whatsapp-web", event, ww_context(chat=WW_CHAT)))
    assert rendition.name == "whatsapp:chat-updated"
    expected = with_row_ids(seed("whatsapp-web/chat-updated.json"), (("chatId",), "101"))
    assert_same_json(rendition.payload, expected)


def test_whatsapp_web_qr_updated_matches_the_seed() -> None:
    event = SessionQR(
        provider="evolution",
        occurred_at=WW_AT,
        qr="2@r8K3bq7XKzPq0yQv1m9sZt6cW4uJp2nD5eA0fG3hL8iB1oN7kM6xV9yT2wS4=",
        image_data_url="data:image/png;base64,iVBORw0KGg...",
    )
    rendition = only(render("whatsapp-web", event, ww_context()))
    assert rendition.name == "whatsapp:qr-updated"
    assert_same_json(rendition.payload, seed("whatsapp-web/qr-updated.json"))


def test_whatsapp_web_session_connected_matches_the_seed() -> None:
    event = SessionStatus(
        provider="evolution",
        occurred_at=WW_AT,
        state=SessionState.CONNECTED,
        me=Party(id="77079856339@c.us", phone="77079856339", name="Мой WhatsApp", is_me=True),
    )
    rendition = only(render("whatsapp-web", event, ww_context()))
    assert rendition.name == "whatsapp:session-connected"
    assert_same_json(rendition.payload, seed("whatsapp-web/session-connected.json"))


def test_whatsapp_web_session_disconnected_matches_the_seed() -> None:
    event = SessionStatus(provider="evolution", occurred_at=WW_AT, state=SessionState.LOGGED_OUT)
    rendition = only(render("whatsapp-web", event, ww_context()))
    assert rendition.name == "whatsapp:session-disconnected"
    assert_same_json(rendition.payload, seed("whatsapp-web/session-disconnected.json"))


def test_whatsapp_web_sent_message_says_from_me_and_names_the_session() -> None:
    event = MessageSent(
        provider="evolution",
        occurred_at=WW_AT,
        chat=WW_CHAT_REF,
        message=Message(id="3EB0AB", kind=MessageKind.TEXT, from_me=True, text="Всё хорошо"),
    )
    session = SessionRecord(
        id=WW_SESSION.id,
        tenant_id=WW_SESSION.tenant_id,
        provider="evolution",
        phone="77011234567",
        display_name="Мой WhatsApp",
    )
    ctx = RenderContext(
        tenant_id=session.tenant_id,
        session=session,
        received_at=WW_AT,
        chat=WW_CHAT,
        message=MessageRecord(id=203, provider_message_id="3EB0AB"),
    )
    payload = only(render("whatsapp-web", event, ctx)).payload
    assert payload["message"]["fromMe"] is True
    assert payload["message"]["fromNumber"] == "77011234567"
    assert payload["message"]["fromName"] == "Мой WhatsApp"
    assert payload["chat"]["chatName"] == "Солнышко мое 😊"


def test_whatsapp_web_ignores_status_broadcasts_and_system_notices() -> None:
    status_chat = ChatRef(id="status@broadcast", kind=ChatKind.STATUS)
    story = MessageReceived(
        provider="evolution",
        occurred_at=WW_AT,
        chat=status_chat,
        sender=Party(id="77079856339@s.whatsapp.net"),
        message=Message(id="s1", kind=MessageKind.IMAGE, from_me=False),
    )
    notice = MessageReceived(
        provider="waha",
        occurred_at=WW_AT,
        chat=WW_CHAT_REF,
        sender=Party(id="77079856339@c.us"),
        message=Message(id="n1", kind=MessageKind.SYSTEM, from_me=False),
    )
    ctx = ww_context(chat=WW_CHAT, message=MessageRecord(id=1, provider_message_id="x"))
    assert render("whatsapp-web", story, ctx) == ()
    assert render("whatsapp-web", notice, ctx) == ()


def test_whatsapp_web_group_chat_is_a_group_and_media_body_is_the_caption() -> None:
    group = ChatRef(id="120363123456789012@g.us", kind=ChatKind.GROUP, title="Продажи")
    event = MessageReceived(
        provider="evolution",
        occurred_at=WW_AT,
        chat=group,
        sender=Party(id="77079856339@s.whatsapp.net", name="Айгерим"),
        message=Message(
            id="g1",
            kind=MessageKind.IMAGE,
            from_me=False,
            caption="фото заказа",
            media=Media(mime_type="image/jpeg"),
        ),
    )
    chat = ChatRecord(
        id=7, session_id=WW_SESSION.id, provider_chat_id=group.id, kind=ChatKind.GROUP
    )
    ctx = ww_context(chat=chat, message=MessageRecord(id=8, provider_message_id="g1"))
    payload = only(render("whatsapp-web", event, ctx)).payload
    assert payload["chat"]["chatType"] == "group"
    assert payload["chat"]["isGroup"] is True
    assert payload["chat"]["chatName"] == "Продажи"
    assert payload["message"]["body"] == "фото заказа"
    assert payload["message"]["messageType"] == "image"
    # The record had no last message yet: the message itself fills it.
    assert payload["chat"]["lastMessageAt"] == "2025-07-16T11:13:54.000Z"


def test_whatsapp_web_disconnect_reason_comes_from_the_event_when_given() -> None:
    event = SessionStatus(
        provider="waha", occurred_at=WW_AT, state=SessionState.FAILED, reason="restart_limit"
    )
    payload = only(render("whatsapp-web", event, ww_context())).payload
    assert payload == {"sessionId": WW_SESSION.id, "reason": "restart_limit"}


@pytest.mark.parametrize("state", [SessionState.STARTING, SessionState.QR, SessionState.CONNECTING])
def test_whatsapp_web_shows_no_intermediate_session_states(state: SessionState) -> None:
    event = SessionStatus(provider="waha", occurred_at=WW_AT, state=state)
    assert render("whatsapp-web", event, ww_context()) == ()


def test_whatsapp_web_qr_falls_back_to_the_raw_code() -> None:
    event = SessionQR(provider="waha", occurred_at=WW_AT, qr="2@abc")
    assert only(render("whatsapp-web", event, ww_context())).payload["qrCode"] == "2@abc"


def test_whatsapp_web_contact_update_refreshes_its_chat_only_when_there_is_one() -> None:
    event = ContactUpdated(
        provider="evolution", occurred_at=WW_AT, contact=Party(id="77079856339@c.us", name="С")
    )
    assert render("whatsapp-web", event, ww_context()) == ()
    rendition = only(render("whatsapp-web", event, ww_context(chat=WW_CHAT)))
    assert rendition.name == "whatsapp:chat-updated"
    assert rendition.payload["chatId"] == "101"


# --------------------------------------------------------------------------------------------
# crm (seed: meta-whatsapp-crm-events.md)

CRM_SESSION = SessionRecord(id="meta-1", tenant_id="acme", provider="meta", phone="5511888888888")
CRM_CHAT_REF = ChatRef(id="5511999999999", kind=ChatKind.DIRECT)
CRM_CHAT = ChatRecord(
    id=123, session_id="meta-1", provider_chat_id="5511999999999", kind=ChatKind.DIRECT
)
CRM_ROW = MessageRecord(id=456, provider_message_id="wamid.HBgNNTUxMTk5OTk5OTk5ORUCABIYFjNFQjA")


def crm_context(**records: Any) -> RenderContext:
    return RenderContext(
        tenant_id="acme",
        session=CRM_SESSION,
        received_at=utc("2024-01-01T10:00:01Z"),
        chat=CRM_CHAT,
        message=CRM_ROW,
        **records,
    )


def test_crm_message_matches_the_seed() -> None:
    event = MessageReceived(
        provider="meta",
        occurred_at=utc("2024-01-01T10:00:00Z"),
        chat=CRM_CHAT_REF,
        sender=Party(id="5511999999999", phone="5511999999999", name="João Silva"),
        message=Message(
            id=CRM_ROW.provider_message_id, kind=MessageKind.TEXT, from_me=False, text="Olá!"
        ),
    )
    contact = ContactRecord(id=789, provider_id="5511999999999", phone="+55 11 99999-9999")
    rendition = only(render("crm", event, crm_context(contact=contact)))
    assert rendition.name == "whatsapp:message"
    assert rendition.rooms == ("conversation:123",)
    assert_same_json(rendition.payload, seed("crm/message.json"))


def test_crm_message_sent_matches_the_seed() -> None:
    event = MessageSent(
        provider="meta",
        occurred_at=utc("2024-01-01T10:01:00Z"),
        chat=CRM_CHAT_REF,
        message=Message(
            id=CRM_ROW.provider_message_id,
            kind=MessageKind.TEXT,
            from_me=True,
            text="Resposta automática",
        ),
    )
    rendition = only(render("crm", event, crm_context()))
    assert rendition.name == "whatsapp:message_sent"
    assert rendition.rooms == ("conversation:123",)
    assert_same_json(rendition.payload, seed("crm/message_sent.json"))


def test_crm_message_status_matches_the_seed() -> None:
    event = MessageStatus(
        provider="meta",
        occurred_at=datetime.fromtimestamp(1641024060, UTC),
        chat=CRM_CHAT_REF,
        message_id=CRM_ROW.provider_message_id,
        state=DeliveryState.READ,
        recipient_id="5511999999999",
    )
    rendition = only(render("crm", event, crm_context()))
    assert rendition.name == "whatsapp:message_status"
    assert rendition.rooms == ("conversation:123", "message:456")
    assert_same_json(rendition.payload, seed("crm/message_status.json"))


def test_crm_deleted_message_is_a_deleted_status() -> None:
    event = MessageDeleted(
        provider="evolution",
        occurred_at=utc("2024-01-01T10:02:00Z"),
        chat=CRM_CHAT_REF,
        message_id=CRM_ROW.provider_message_id,
    )
    rendition = only(render("crm", event, crm_context()))
    assert rendition.name == "whatsapp:message_status"
    assert rendition.payload == {"messageId": 456, "status": "deleted", "timestamp": "1704103320"}


def test_crm_platform_is_telegram_for_telegram_messages() -> None:
    event = MessageSent(
        provider="telegram",
        occurred_at=utc("2024-01-01T10:01:00Z"),
        chat=ChatRef(id="123456789", kind=ChatKind.DIRECT),
        message=Message(id="42", kind=MessageKind.TEXT, from_me=True, text="ok"),
    )
    assert only(render("crm", event, crm_context())).payload["platform"] == "telegram"


def test_crm_contact_phone_falls_back_to_the_whatsapp_jid() -> None:
    event = MessageReceived(
        provider="evolution",
        occurred_at=utc("2024-01-01T10:00:00Z"),
        chat=ChatRef(id="5511999999999@s.whatsapp.net", kind=ChatKind.DIRECT),
        sender=Party(id="5511999999999@s.whatsapp.net", name="João"),
        message=Message(id="3A5F", kind=MessageKind.TEXT, from_me=False, text="Oi"),
    )
    contact = ContactRecord(id=789, provider_id="5511999999999@s.whatsapp.net")
    payload = only(render("crm", event, crm_context(contact=contact))).payload
    assert payload["contact"] == {"id": 789, "name": "João", "phone_number": "5511999999999"}


def test_crm_needs_a_contact_record_for_a_received_message() -> None:
    event = MessageReceived(
        provider="meta",
        occurred_at=utc("2024-01-01T10:00:00Z"),
        chat=CRM_CHAT_REF,
        sender=Party(id="5511999999999"),
        message=Message(id="m", kind=MessageKind.TEXT, from_me=False, text="Olá!"),
    )
    with pytest.raises(LocalProtocolError, match="contact record"):
        render("crm", event, crm_context())


# --------------------------------------------------------------------------------------------
# chat-sync (seed: evolution-chat-sync.md; fixtures derived from its code, see module doc)

CS_SESSION = SessionRecord(id="vendas-2024", tenant_id="tenant-acme", provider="evolution")
CS_CHAT_REF = ChatRef(id="5511999999999@s.whatsapp.net", kind=ChatKind.DIRECT)
CS_AT = datetime.fromtimestamp(1696723200, UTC)  # the seed's conversationTimestamp
CS_CHAT = ChatRecord(
    id=1,
    session_id=CS_SESSION.id,
    provider_chat_id="5511999999999@s.whatsapp.net",
    kind=ChatKind.DIRECT,
    title="João Silva",
    unread_count=3,
    last_message_at=CS_AT,
)


def cs_context(**records: Any) -> RenderContext:
    return RenderContext(tenant_id="tenant-acme", session=CS_SESSION, received_at=CS_AT, **records)


def test_chat_sync_new_chat_is_the_seed_prisma_row() -> None:
    event = ChatCreated(provider="evolution", occurred_at=CS_AT, chat=CS_CHAT_REF)
    rendition = only(render("chat-sync", event, cs_context(chat=CS_CHAT)))
    assert rendition.name == "chat:new"
    assert_same_json(rendition.payload, seed("chat-sync/chat-new.json"))


def test_chat_sync_message_is_a_baileys_message() -> None:
    event = MessageReceived(
        provider="evolution",
        occurred_at=CS_AT,
        chat=CS_CHAT_REF,
        sender=Party(id="5511999999999@s.whatsapp.net", name="João"),
        message=Message(
            id="3A5F0C8B2E7D4A19B6C1",
            kind=MessageKind.TEXT,
            from_me=False,
            text="Olá! Ainda tem o produto?",
        ),
    )
    ctx = cs_context(chat=CS_CHAT, message=MessageRecord(id=9, provider_message_id="3A5F"))
    rendition = only(render("chat-sync", event, ctx))
    assert rendition.name == "chat:message"
    assert_same_json(rendition.payload, seed("chat-sync/chat-message.json"))


def test_chat_sync_chat_update_lists_only_what_changed() -> None:
    event = ChatUpdated(
        provider="evolution",
        occurred_at=CS_AT,
        chat=CS_CHAT_REF,
        title="João Silva",
        unread_count=0,
    )
    rendition = only(render("chat-sync", event, cs_context()))
    assert rendition.name == "chat:update"
    assert_same_json(rendition.payload, seed("chat-sync/chat-update.json"))


def test_chat_sync_group_media_reply_carries_participant_type_and_quote() -> None:
    group = ChatRef(id="120363123456789012@g.us", kind=ChatKind.GROUP)
    event = MessageReceived(
        provider="evolution",
        occurred_at=CS_AT,
        chat=group,
        sender=Party(id="5511999999999@s.whatsapp.net", name="João"),
        message=Message(
            id="AB12",
            kind=MessageKind.VOICE,
            from_me=False,
            media=Media(mime_type="audio/ogg; codecs=opus", url="https://media/1.ogg", size=4096),
            reply_to_id="3A5F0C8B2E7D4A19B6C1",
        ),
    )
    ctx = cs_context(chat=CS_CHAT)
    message = only(render("chat-sync", event, ctx)).payload["message"]
    assert message["key"] == {
        "remoteJid": "120363123456789012@g.us",
        "fromMe": False,
        "id": "AB12",
        "participant": "5511999999999@s.whatsapp.net",
    }
    assert message["messageType"] == "audioMessage"
    assert message["message"] == {
        "audioMessage": {
            "url": "https://media/1.ogg",
            "mimetype": "audio/ogg; codecs=opus",
            "fileLength": 4096,
            "ptt": True,
        }
    }
    assert message["contextInfo"] == {"stanzaId": "3A5F0C8B2E7D4A19B6C1"}


@pytest.mark.parametrize(
    ("event", "updates"),
    [
        (
            MessageEdited(
                provider="evolution", occurred_at=CS_AT, chat=CS_CHAT_REF, message_id="A1", text="x"
            ),
            {"messageId": "A1", "editedText": "x"},
        ),
        (
            MessageDeleted(
                provider="evolution", occurred_at=CS_AT, chat=CS_CHAT_REF, message_id="A1"
            ),
            {"messageId": "A1", "deleted": True},
        ),
        (
            MessageReaction(
                provider="evolution",
                occurred_at=CS_AT,
                chat=CS_CHAT_REF,
                sender=Party(id="5511999999999@s.whatsapp.net"),
                message_id="R1",
                target_id="A1",
                emoji="👍",
            ),
            {
                "messageId": "A1",
                "reaction": {
                    "id": "R1",
                    "emoji": "👍",
                    "senderId": "5511999999999@s.whatsapp.net",
                    "fromMe": False,
                },
            },
        ),
        (
            ContactUpdated(
                provider="evolution",
                occurred_at=CS_AT,
                contact=Party(id="5511999999999@s.whatsapp.net", name="João S."),
                avatar_url="https://pps.whatsapp.net/a.jpg",
            ),
            {"pushName": "João S.", "profilePicUrl": "https://pps.whatsapp.net/a.jpg"},
        ),
    ],
    ids=["edited", "deleted", "reaction", "contact"],
)
def test_chat_sync_message_and_contact_changes_are_chat_updates(
    event: Event, updates: dict[str, Any]
) -> None:
    rendition = only(render("chat-sync", event, cs_context()))
    assert rendition.name == "chat:update"
    assert rendition.payload == {"remoteJid": "5511999999999@s.whatsapp.net", "updates": updates}


# --------------------------------------------------------------------------------------------
# evolution (seed: evolution-websocket-modes.md)


def test_evolution_event_is_the_redacted_evolution_envelope() -> None:
    expected = seed("evolution/evolution-event.json")
    raw = loads(dumps(expected))
    # What the Evolution socket really delivers on top: the secrets the dialect must strip.
    raw["server_url"] = "https://evo.example.kz"
    raw["apikey"] = "429683C4C977415CAAFCCE10F7D57E11"
    context_info = raw["data"]["message"]["messageContextInfo"]
    context_info["messageSecret"] = "ffXSWIC3J1gm97hzKtcSdDROH2/yk14cmLBUW7m5hlk="
    context_info["deviceListMetadata"]["senderKeyHash"] = b"\x82\x022\x17"
    context_info["deviceListMetadata"]["recipientKeyHash"] = b"oF\xd0\x1c"
    event = ProviderRaw(
        provider="evolution",
        occurred_at=datetime.fromtimestamp(1761057639, UTC),
        name="messages.upsert",
        payload=raw,
    )
    ctx = RenderContext(
        tenant_id="kz",
        session=SessionRecord(id="kz-support", tenant_id="kz", provider="evolution"),
        received_at=datetime.fromtimestamp(1761057640, UTC),
    )
    rendition = only(render("evolution", event, ctx))
    assert rendition.name == "evolution-event"
    assert_same_json(rendition.payload, expected)
    assert "apikey" in raw  # the event's own payload is left as it was


def test_evolution_dialect_shows_only_raw_evolution_events() -> None:
    ctx = RenderContext(
        tenant_id="t",
        session=SessionRecord(id="s", tenant_id="t", provider="waha"),
        received_at=WW_AT,
    )
    waha_raw = ProviderRaw(provider="waha", occurred_at=WW_AT, name="message", payload={"a": 1})
    qr = SessionQR(provider="evolution", occurred_at=WW_AT, qr="2@x")
    assert render("evolution", waha_raw, ctx) == ()
    assert render("evolution", qr, ctx) == ()


def test_evolution_event_without_an_event_field_is_named_after_the_raw_event() -> None:
    ctx = ww_context()
    event = ProviderRaw(
        provider="evolution", occurred_at=WW_AT, name="presence.update", payload={"data": {}}
    )
    assert only(render("evolution", event, ctx)).payload == {
        "data": {},
        "event": "presence.update",
    }


# --------------------------------------------------------------------------------------------
# envelope (seed: telegram-widget-envelope.md)

TG_SESSION = SessionRecord(id="bot-1", tenant_id="org-1", provider="telegram")
TG_CHAT_REF = ChatRef(id="123456789", kind=ChatKind.DIRECT, title="Иван Петров")
TG_CHAT = ChatRecord(
    id=31,
    session_id="bot-1",
    provider_chat_id="123456789",
    kind=ChatKind.DIRECT,
    title="Иван Петров",
)
TG_CONTACT = ContactRecord(
    id=17, provider_id="123456789", name="Иван Петров", username="ivan_petrov"
)
IVAN = Party(id="123456789", name="Иван Петров", username="ivan_petrov")


def tg_context(**records: Any) -> RenderContext:
    return RenderContext(
        tenant_id="org-1",
        session=TG_SESSION,
        received_at=utc("2026-01-10T15:30:01Z"),
        **records,
    )


def envelope_case_new_chat() -> tuple[Event, RenderContext]:
    event = ChatCreated(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:30:00Z"),
        chat=TG_CHAT_REF,
        first_message="Привет!",
    )
    return event, tg_context(chat=TG_CHAT, contact=TG_CONTACT)


def envelope_case_new_message() -> tuple[Event, RenderContext]:
    event = MessageReceived(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:31:00Z"),
        chat=TG_CHAT_REF,
        sender=IVAN,
        message=Message(
            id="123456789:88", kind=MessageKind.TEXT, from_me=False, text="Когда будет доставка?"
        ),
    )
    row = MessageRecord(id=123, provider_message_id="123456789:88")
    return event, tg_context(chat=TG_CHAT, contact=TG_CONTACT, message=row)


def envelope_case_presence(
    state: PresenceState, at: str
) -> Callable[[], tuple[Event, RenderContext]]:
    def case() -> tuple[Event, RenderContext]:
        event = PresenceUpdated(
            provider="telegram",
            occurred_at=utc(at),
            chat=TG_CHAT_REF,
            participant=IVAN,
            state=state,
        )
        return event, tg_context(chat=TG_CHAT, contact=TG_CONTACT)

    return case


def envelope_case_message_read() -> tuple[Event, RenderContext]:
    group = ChatRef(id="-1234567890", kind=ChatKind.GROUP, title="Поддержка")
    event = MessageStatus(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:33:00Z"),
        chat=group,
        message_id="-1234567890:125",
        state=DeliveryState.READ,
    )
    row = MessageRecord(id=125, provider_message_id="-1234567890:125")
    return event, tg_context(message=row)


@pytest.mark.parametrize(
    ("fixture", "case"),
    [
        ("new_chat", envelope_case_new_chat),
        ("new_message", envelope_case_new_message),
        ("user_typing", envelope_case_presence(PresenceState.TYPING, "2026-01-10T15:32:00Z")),
        ("message_read", envelope_case_message_read),
        ("user_online", envelope_case_presence(PresenceState.ONLINE, "2026-01-10T15:34:00Z")),
        ("user_offline", envelope_case_presence(PresenceState.OFFLINE, "2026-01-10T15:35:00Z")),
    ],
)
def test_envelope_frames_match_the_seed(
    fixture: str, case: Callable[[], tuple[Event, RenderContext]]
) -> None:
    event, ctx = case()
    rendition = only(render("envelope", event, ctx))
    assert rendition.name == fixture
    frame = encode_envelope(rendition.name, rendition.payload, event.occurred_at)
    assert_same_json(loads(frame), seed(f"envelope/{fixture}.json"))


def test_envelope_sent_message_adds_from_me_and_names_the_customer() -> None:
    event = MessageSent(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:36:00Z"),
        chat=TG_CHAT_REF,
        sender=Party(id="999", name="Оператор", is_me=True),
        message=Message(
            id="123456789:89",
            kind=MessageKind.DOCUMENT,
            from_me=True,
            caption="Счёт",
            media=Media(mime_type="application/pdf", url="/files/invoice.pdf"),
        ),
    )
    row = MessageRecord(id=124, provider_message_id="123456789:89")
    payload = only(render("envelope", event, tg_context(contact=TG_CONTACT, message=row))).payload
    assert payload == {
        "message_id": 124,
        "user_id": 123456789,
        "user_name": "Иван Петров",
        "text": "Счёт",
        "file_path": "/files/invoice.pdf",
        "source": "telegram",
        "from_me": True,
    }


@pytest.mark.parametrize(
    ("provider", "chat_id", "expected_user_id", "expected_source"),
    [
        ("evolution", "77079856339@s.whatsapp.net", 77079856339, "whatsapp"),
        ("waha", "77079856339@c.us", 77079856339, "whatsapp"),
        ("meta", "5511999999999", 5511999999999, "whatsapp"),
        ("telegram", "-1001234567890", -1001234567890, "telegram"),
        # 18 digits exceed what a browser holds exactly: the chat row id stands in.
        ("evolution", "120363123456789012@g.us", 31, "whatsapp"),
        ("simulator", "77079856339@c.us", 77079856339, "whatsapp"),
        ("simulator", "42", 42, "telegram"),
        ("simulator-telegram", "user-a", 31, "telegram"),
        ("acme-chat", "room/7", 31, "acme-chat"),
    ],
)
def test_envelope_user_id_and_source_follow_the_provider_chat_id(
    provider: str, chat_id: str, expected_user_id: int, expected_source: str
) -> None:
    event = MessageReceived(
        provider=provider,
        occurred_at=utc("2026-01-10T15:31:00Z"),
        chat=ChatRef(id=chat_id, kind=ChatKind.DIRECT),
        sender=Party(id=chat_id),
        message=Message(id="m", kind=MessageKind.TEXT, from_me=False, text="hi"),
    )
    ctx = tg_context(chat=TG_CHAT, message=MessageRecord(id=1, provider_message_id="m"))
    payload = only(render("envelope", event, ctx)).payload
    assert (payload["user_id"], payload["source"]) == (expected_user_id, expected_source)


def test_envelope_without_a_numeric_id_or_record_reports_the_missing_context() -> None:
    event, _ = envelope_case_new_chat()
    event = ChatCreated(
        provider="evolution",
        occurred_at=event.occurred_at,
        chat=ChatRef(id="120363123456789012@g.us", kind=ChatKind.GROUP),
    )
    with pytest.raises(LocalProtocolError, match="neither a chat nor a contact record"):
        render("envelope", event, tg_context())


@pytest.mark.parametrize(
    ("state", "expected"),
    [
        (
            DeliveryState.DELIVERED,
            ("message_status", {"message_id": 125, "user_id": 123456789, "status": "delivered"}),
        ),
        (
            DeliveryState.PLAYED,
            ("message_status", {"message_id": 125, "user_id": 123456789, "status": "played"}),
        ),
        (DeliveryState.READ, ("message_read", {"user_id": 123456789, "last_read_message_id": 125})),
    ],
)
def test_envelope_read_is_message_read_and_other_states_are_message_status(
    state: DeliveryState, expected: tuple[str, dict[str, Any]]
) -> None:
    event = MessageStatus(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:33:00Z"),
        chat=TG_CHAT_REF,
        message_id="m",
        state=state,
    )
    rendition = only(
        render(
            "envelope", event, tg_context(message=MessageRecord(id=125, provider_message_id="m"))
        )
    )
    assert (rendition.name, rendition.payload) == expected


def test_envelope_paused_presence_renders_nothing() -> None:
    event = PresenceUpdated(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:32:00Z"),
        chat=TG_CHAT_REF,
        participant=IVAN,
        state=PresenceState.PAUSED,
    )
    assert render("envelope", event, tg_context()) == ()


def test_envelope_skips_presence_in_a_group_it_cannot_name() -> None:
    # A group member typing before the gateway stored anything of that group: an 18-digit group
    # id is no safe JavaScript number and there is no row yet, so nothing is shown.
    event = PresenceUpdated(
        provider="evolution",
        occurred_at=utc("2026-01-10T15:32:00Z"),
        chat=ChatRef(id="120363867565088995@g.us", kind=ChatKind.GROUP),
        participant=Party(id="77079856339@s.whatsapp.net"),
        state=PresenceState.TYPING,
    )
    context = RenderContext(
        tenant_id="t",
        session=SessionRecord(id="s", tenant_id="t", provider="evolution"),
        received_at=utc("2026-01-10T15:32:00Z"),
    )
    assert render("envelope", event, context) == ()


def test_envelope_chat_updated_lists_only_what_changed() -> None:
    event = ChatUpdated(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:40:00Z"),
        chat=TG_CHAT_REF,
        unread_count=0,
        last_message_at=utc("2026-01-10T15:39:30.250000+00:00"),
    )
    payload = only(render("envelope", event, tg_context())).payload
    assert payload == {
        "user_id": 123456789,
        "source": "telegram",
        "unread_count": 0,
        "last_message_at": "2026-01-10T15:39:30Z",
    }


def test_envelope_session_status_extension() -> None:
    event = SessionStatus(
        provider="telegram",
        occurred_at=utc("2026-01-10T15:00:00Z"),
        state=SessionState.FAILED,
        reason="409",
    )
    rendition = only(render("envelope", event, tg_context()))
    assert (rendition.name, rendition.payload) == (
        "session_status",
        {"session_id": "bot-1", "status": "failed", "reason": "409"},
    )


def test_envelope_edit_delete_and_reaction_name_the_target_message_row() -> None:
    at = utc("2026-01-10T15:45:00Z")
    ctx = tg_context(contact=TG_CONTACT, message=MessageRecord(id=123, provider_message_id="t"))
    edited = MessageEdited(
        provider="telegram", occurred_at=at, chat=TG_CHAT_REF, message_id="t", text="new"
    )
    deleted = MessageDeleted(provider="telegram", occurred_at=at, chat=TG_CHAT_REF, message_id="t")
    reaction = MessageReaction(
        provider="telegram",
        occurred_at=at,
        chat=TG_CHAT_REF,
        sender=IVAN,
        message_id="r",
        target_id="t",
        emoji="🔥",
    )
    base = {"message_id": 123, "user_id": 123456789, "source": "telegram"}
    assert only(render("envelope", edited, ctx)) == Rendition(
        "message_edited", {**base, "text": "new"}
    )
    assert only(render("envelope", deleted, ctx)) == Rendition("message_deleted", base)
    assert only(render("envelope", reaction, ctx)) == Rendition(
        "message_reaction",
        {**base, "user_name": "Иван Петров", "emoji": "🔥", "from_me": False},
    )


# --------------------------------------------------------------------------------------------
# Missing context


@pytest.mark.parametrize("dialect", ["whatsapp-web", "crm", "chat-sync", "envelope"])
def test_a_message_without_its_records_is_a_local_error_naming_the_record(dialect: str) -> None:
    event = MessageReceived(
        provider="evolution",
        occurred_at=WW_AT,
        chat=ChatRef(id="120363123456789012@g.us", kind=ChatKind.GROUP),
        sender=Party(id="77079856339@s.whatsapp.net"),
        message=Message(id="m", kind=MessageKind.TEXT, from_me=False, text="x"),
    )
    with pytest.raises(
        LocalProtocolError, match=rf"dialect '{dialect}' cannot render message.received"
    ):
        render(dialect, event, ww_context())


# --------------------------------------------------------------------------------------------
# Registry


def test_builtin_registry_holds_the_five_dialects_with_their_wires() -> None:
    registry = builtin_dialects()
    assert registry.names() == BUILTIN_NAMES
    assert len(registry) == 5
    assert {d.name: d.wire for d in registry} == {
        "whatsapp-web": "socketio",
        "crm": "socketio",
        "chat-sync": "socketio",
        "evolution": "socketio",
        "envelope": "envelope",
    }
    assert "crm" in registry
    assert "nope" not in registry


def test_registering_a_taken_name_is_refused() -> None:
    registry = builtin_dialects()
    clash = Dialect(name="crm", wire="socketio", events=frozenset(), render=lambda e, c: ())
    with pytest.raises(LocalProtocolError, match="'crm' is already registered"):
        registry.register(clash)
    assert registry.get("crm") is not clash


def test_an_unknown_dialect_error_lists_the_known_ones() -> None:
    with pytest.raises(LocalProtocolError, match="unknown dialect 'whatsapp'") as info:
        builtin_dialects().get("whatsapp")
    for name in BUILTIN_NAMES:
        assert repr(name) in str(info.value)
    with pytest.raises(LocalProtocolError, match="registered dialects: none"):
        DialectRegistry().get("crm")


def test_each_builtin_registry_is_independent() -> None:
    first, second = builtin_dialects(), builtin_dialects()
    extra = Dialect(name="extra", wire="envelope", events=frozenset({"x"}), render=lambda e, c: ())
    first.register(extra)
    assert "extra" in first
    assert "extra" not in second


def test_a_dialect_needs_a_name_and_a_known_wire() -> None:
    with pytest.raises(ValueError, match="name"):
        Dialect(name="", wire="socketio", events=frozenset(), render=lambda e, c: ())
    with pytest.raises(ValueError, match="wire"):
        Dialect(name="x", wire="sse", events=frozenset(), render=lambda e, c: ())  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Properties over arbitrary events and contexts

AT = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2100, 1, 1),
    timezones=st.sampled_from([UTC, timezone(timedelta(hours=5)), timezone(timedelta(hours=-3))]),
)
PROVIDERS = st.sampled_from(
    ["evolution", "meta", "waha", "telegram", "simulator", "simulator-whatsapp", "acme"]
)
CHAT_IDS = st.one_of(
    st.sampled_from(
        [
            "77079856339@c.us",
            "77079856339@s.whatsapp.net",
            "120363123456789012@g.us",
            "123456789012345@lid",
            "status@broadcast",
            "-1001234567890",
            "123456789",
            "0",
        ]
    ),
    st.integers(min_value=-(2**60), max_value=2**60).map(str),
    st.text(max_size=20),
)
TEXT = st.none() | st.text(max_size=20)
IDS = st.text(min_size=1, max_size=20)
ROW_IDS = st.integers(min_value=1, max_value=2**40)

chat_refs = st.builds(
    ChatRef,
    id=CHAT_IDS,
    kind=st.sampled_from(ChatKind),
    title=TEXT,
    alt_ids=st.lists(CHAT_IDS, max_size=2).map(tuple),
)
parties = st.builds(Party, id=CHAT_IDS, phone=TEXT, name=TEXT, username=TEXT, is_me=st.booleans())
media = st.none() | st.builds(
    Media,
    mime_type=TEXT,
    url=TEXT,
    file_name=TEXT,
    size=st.none() | st.integers(min_value=0, max_value=2**40),
    provider_media_id=TEXT,
)


def messages(from_me: bool) -> st.SearchStrategy[Message]:
    return st.builds(
        Message,
        id=IDS,
        kind=st.sampled_from(MessageKind),
        from_me=st.just(from_me),
        text=TEXT,
        caption=TEXT,
        media=media,
        reply_to_id=st.none() | IDS,
    )


SECRET_SPELLINGS = [
    "apikey",
    "apiKey",
    "api_key",
    "API-KEY",
    "token",
    "access_token",
    "server_url",
    "base64",
    "jpegThumbnail",
    "mediaKey",
    "messageSecret",
    "password",
    "secret",
    "client_secret",
    "refreshToken",
    "Authorization",
]
SENTINEL = "§leak§"
SECRET_NAMES = {key.lower().replace("_", "").replace("-", "") for key in SECRET_SPELLINGS}
PLAIN_KEYS = st.text(alphabet=string.ascii_lowercase + "_.", min_size=1, max_size=8).filter(
    lambda key: key.replace("_", "") not in SECRET_NAMES
)


def json_trees(with_secrets: bool) -> st.SearchStrategy[Any]:
    scalars: st.SearchStrategy[Any] = st.one_of(
        st.none(), st.booleans(), st.integers(), st.text(alphabet=string.printable, max_size=10)
    )
    if with_secrets:
        scalars = st.one_of(scalars, st.binary(min_size=1, max_size=4))

    def objects(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        keys = PLAIN_KEYS | st.sampled_from(SECRET_SPELLINGS) if with_secrets else PLAIN_KEYS
        plain = st.dictionaries(keys, children, max_size=4)
        if not with_secrets:
            return plain
        # Every secret key carries the sentinel, at its top or deep inside.
        secret_value = st.just(SENTINEL) | st.just({"nested": [SENTINEL]})
        return st.tuples(plain, st.sampled_from(SECRET_SPELLINGS), secret_value).map(
            lambda t: {**t[0], t[1]: t[2]}
        )

    return st.recursive(
        scalars, lambda children: st.lists(children, max_size=3) | objects(children), max_leaves=20
    )


def payloads(with_secrets: bool) -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(PLAIN_KEYS, json_trees(with_secrets), max_size=4).flatmap(
        lambda top: json_trees(with_secrets).map(lambda data: {**top, "data": data})
    )


def base(cls: type[Any], **fields: Any) -> st.SearchStrategy[Any]:
    return st.builds(cls, provider=PROVIDERS, occurred_at=AT, **fields)


events: st.SearchStrategy[Event] = st.one_of(
    base(MessageReceived, chat=chat_refs, sender=parties, message=messages(from_me=False)),
    base(MessageSent, chat=chat_refs, message=messages(from_me=True), sender=st.none() | parties),
    base(MessageEdited, chat=chat_refs, message_id=IDS, text=TEXT),
    base(MessageDeleted, chat=chat_refs, message_id=IDS),
    base(
        MessageStatus,
        chat=chat_refs,
        message_id=IDS,
        state=st.sampled_from(DeliveryState),
        recipient_id=TEXT,
        error=TEXT,
    ),
    base(
        MessageReaction,
        chat=chat_refs,
        sender=parties,
        message_id=IDS,
        target_id=IDS,
        emoji=st.sampled_from(["", "👍", "🔥"]),
    ),
    base(ChatCreated, chat=chat_refs, first_message=TEXT),
    base(
        ChatUpdated,
        chat=chat_refs,
        title=TEXT,
        unread_count=st.none() | st.integers(min_value=0, max_value=10**6),
        archived=st.none() | st.booleans(),
        pinned=st.none() | st.booleans(),
        last_message_at=st.none() | AT,
        last_message_text=TEXT,
    ),
    base(ContactUpdated, contact=parties, avatar_url=TEXT),
    base(
        PresenceUpdated, chat=chat_refs, participant=parties, state=st.sampled_from(PresenceState)
    ),
    base(
        SessionQR,
        qr=st.text(min_size=1, max_size=20),
        image_data_url=TEXT,
        pairing_code=TEXT,
        attempt=st.none() | st.integers(min_value=0, max_value=10),
    ),
    base(SessionStatus, state=st.sampled_from(SessionState), reason=TEXT, me=st.none() | parties),
    base(ProviderRaw, name=st.text(min_size=1, max_size=20), payload=payloads(with_secrets=True)),
)


@st.composite
def contexts(draw: st.DrawFn) -> RenderContext:
    session = draw(
        st.builds(
            SessionRecord,
            id=IDS,
            tenant_id=st.just("tenant"),
            provider=PROVIDERS,
            name=TEXT,
            phone=TEXT,
            display_name=TEXT,
        )
    )
    chat = draw(
        st.none()
        | st.builds(
            ChatRecord,
            id=ROW_IDS,
            session_id=st.just(session.id),
            provider_chat_id=CHAT_IDS,
            kind=st.sampled_from(ChatKind),
            title=TEXT,
            unread_count=st.integers(min_value=0, max_value=10**6),
            last_message_at=st.none() | AT,
            last_message_text=TEXT,
            created_at=st.none() | AT,
        )
    )
    contact = draw(
        st.none()
        | st.builds(
            ContactRecord, id=ROW_IDS, provider_id=CHAT_IDS, phone=TEXT, name=TEXT, username=TEXT
        )
    )
    message = draw(st.none() | st.builds(MessageRecord, id=ROW_IDS, provider_message_id=IDS))
    return RenderContext(
        tenant_id="tenant",
        session=session,
        received_at=draw(AT),
        chat=chat,
        contact=contact,
        message=message,
        seq=draw(st.none() | st.integers(min_value=0)),
    )


@settings(max_examples=200, deadline=None)
@given(event=events, ctx=contexts())
def test_every_rendition_is_declared_json_and_roomed_by_name(
    event: Event, ctx: RenderContext
) -> None:
    for dialect in builtin_dialects():
        refusal: str | None = None
        try:
            renditions = dialect.render(event, ctx)
        except LocalProtocolError as exc:
            # Only a missing record may stop a dialect, and the error must say so.
            refusal = str(exc)
        if refusal is not None:
            assert f"dialect {dialect.name!r} cannot render {event.type}" in refusal
            continue
        for rendition in renditions:
            assert rendition.name in dialect.events
            assert loads(dumps(rendition.payload)) == rendition.payload
            assert all(isinstance(room, str) and room for room in rendition.rooms)


@settings(max_examples=200, deadline=None)
@given(payload=payloads(with_secrets=True), name=st.text(min_size=1, max_size=10), at=AT)
def test_no_secret_ever_reaches_an_evolution_event(
    payload: dict[str, Any], name: str, at: datetime
) -> None:
    event = ProviderRaw(provider="evolution", occurred_at=at, name=name, payload=payload)
    ctx = ww_context()
    rendition = only(render("evolution", event, ctx))
    text = dumps(rendition.payload)
    assert SENTINEL not in text
    assert "apikey" not in text.lower().replace("_", "").replace("-", "")


@settings(max_examples=100, deadline=None)
@given(payload=payloads(with_secrets=False), at=AT)
def test_an_evolution_event_without_secrets_passes_through_unchanged(
    payload: dict[str, Any], at: datetime
) -> None:
    payload["event"] = "messages.upsert"
    event = ProviderRaw(
        provider="evolution", occurred_at=at, name="messages.upsert", payload=payload
    )
    assert only(render("evolution", event, ww_context())).payload == payload


def full_context(chat_id: str) -> RenderContext:
    return RenderContext(
        tenant_id="t",
        session=SessionRecord(id="s", tenant_id="t", provider="evolution", phone="77011234567"),
        received_at=WW_AT,
        chat=ChatRecord(id=1, session_id="s", provider_chat_id=chat_id, kind=ChatKind.DIRECT),
        contact=ContactRecord(id=2, provider_id=chat_id),
        message=MessageRecord(id=3, provider_message_id="m"),
    )


def catalogue() -> list[Event]:
    """At least one event per client-facing name of every built-in dialect."""
    chat = ChatRef(id="77079856339@c.us", kind=ChatKind.DIRECT)
    party = Party(id="77079856339@c.us", name="A")
    text = Message(id="m", kind=MessageKind.TEXT, from_me=False, text="hi")
    sent = Message(id="m2", kind=MessageKind.TEXT, from_me=True, text="ok")
    common: dict[str, Any] = {"provider": "evolution", "occurred_at": WW_AT}
    return [
        MessageReceived(**common, chat=chat, sender=party, message=text),
        MessageSent(**common, chat=chat, message=sent),
        MessageEdited(**common, chat=chat, message_id="m", text="x"),
        MessageDeleted(**common, chat=chat, message_id="m"),
        *(MessageStatus(**common, chat=chat, message_id="m", state=s) for s in DeliveryState),
        MessageReaction(
            **common, chat=chat, sender=party, message_id="r", target_id="m", emoji="👍"
        ),
        ChatCreated(**common, chat=chat),
        ChatUpdated(**common, chat=chat, unread_count=0),
        ContactUpdated(**common, contact=party),
        *(PresenceUpdated(**common, chat=chat, participant=party, state=s) for s in PresenceState),
        SessionQR(**common, qr="2@x"),
        *(SessionStatus(**common, state=s) for s in SessionState),
        ProviderRaw(**common, name="messages.upsert", payload={"event": "messages.upsert"}),
    ]


@pytest.mark.parametrize("name", BUILTIN_NAMES)
def test_every_declared_event_name_is_produced_by_some_event(name: str) -> None:
    dialect = builtin_dialects().get(name)
    produced = {
        rendition.name
        for event in catalogue()
        for rendition in dialect.render(event, full_context("77079856339@c.us"))
    }
    assert produced == dialect.events
