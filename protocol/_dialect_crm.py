"""The `crm` dialect: the Socket.IO events of the Meta WhatsApp CRM front-end (namespace /crm).

Seed: `meta-whatsapp-crm-events.md`. Every id is one of our row ids as a JSON number
(`conversationId` = chat row, `message.id` / `messageId` = message row, `contact.id` = contact
row). Events go to the rooms `conversation:{chat row id}` and, for statuses,
`message:{message row id}`; clients join a conversation with `join_conversation`.
"""

from __future__ import annotations

from typing import Any

from ._dialect_base import (
    Dialect,
    Rendition,
    epoch_seconds,
    first_present,
    iso_seconds,
    message_body,
    phone_digits,
    phone_from_jid,
    required,
    source_name,
)
from ._events import Event, MessageDeleted, MessageReceived, MessageSent, MessageStatus
from ._records import RenderContext

__all__ = ["crm_dialect"]

NAME = "crm"
MESSAGE = "whatsapp:message"
MESSAGE_SENT = "whatsapp:message_sent"
MESSAGE_STATUS = "whatsapp:message_status"


def crm_dialect() -> Dialect:
    """The `crm` dialect (Socket.IO, namespace "/crm")."""
    return Dialect(
        name=NAME,
        wire="socketio",
        events=frozenset({MESSAGE, MESSAGE_SENT, MESSAGE_STATUS}),
        render=render_crm,
    )


def render_crm(event: Event, ctx: RenderContext) -> tuple[Rendition, ...]:
    """Render `event` for CRM clients; LocalProtocolError if a needed record is missing."""
    match event:
        case MessageReceived():
            return (_message(event, ctx),)
        case MessageSent():
            return (_message_sent(event, ctx),)
        case MessageStatus():
            return (_message_status(event, event.state.value, ctx),)
        case MessageDeleted():
            return (_message_status(event, "deleted", ctx),)
        case _:
            return ()


def _message(event: MessageReceived, ctx: RenderContext) -> Rendition:
    chat = required(ctx.chat, "chat record", NAME, event)
    row = required(ctx.message, "message record", NAME, event)
    contact = required(ctx.contact, "contact record", NAME, event)
    phone = (
        phone_digits(contact.phone)
        or phone_digits(event.sender.phone)
        or phone_from_jid(event.sender.id)
        or phone_from_jid(contact.provider_id)
    )
    payload = {
        "conversationId": chat.id,
        "message": {
            "id": row.id,
            "body": message_body(event.message) or "",
            "sender_type": "contact",
            "delivered_at": iso_seconds(event.occurred_at),
        },
        "contact": {
            "id": contact.id,
            "name": first_present(contact.name, event.sender.name),
            "phone_number": phone,
        },
    }
    return Rendition(MESSAGE, payload, rooms=(f"conversation:{chat.id}",))


def _message_sent(event: MessageSent, ctx: RenderContext) -> Rendition:
    chat = required(ctx.chat, "chat record", NAME, event)
    row = required(ctx.message, "message record", NAME, event)
    payload = {
        "messageId": row.id,
        "conversationId": chat.id,
        "message": {
            "id": row.id,
            "body": message_body(event.message) or "",
            "sender_type": "user",
            "delivered_at": iso_seconds(event.occurred_at),
        },
        "type": "sent",
        "platform": source_name(event.provider, event.chat.id),
    }
    return Rendition(MESSAGE_SENT, payload, rooms=(f"conversation:{chat.id}",))


def _message_status(
    event: MessageStatus | MessageDeleted, status: str, ctx: RenderContext
) -> Rendition:
    chat = required(ctx.chat, "chat record", NAME, event)
    row = required(ctx.message, "message record", NAME, event)
    payload: dict[str, Any] = {
        "messageId": row.id,
        "status": status,
        "timestamp": str(epoch_seconds(event.occurred_at)),
    }
    return Rendition(
        MESSAGE_STATUS, payload, rooms=(f"conversation:{chat.id}", f"message:{row.id}")
    )
