"""The `whatsapp-web` dialect: the Socket.IO events of the whatsapp-web.js style front-end.

Seed: `whatsapp-web-socket-events.md`. Ids the seed shows as strings are strings: `chat.id`,
`message.id` and `chatId` are our row ids rendered with `str()`, `companyId` is the tenant id,
`sessionId` the session id; `chat.chatId`, `message.messageId` and `fromNumber` are provider ids.
Timestamps are `Date.toISOString()` strings. Status broadcasts and system notices are not
shown, as the seed's back-end filters them out.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._dialect_base import (
    Dialect,
    Rendition,
    first_present,
    iso_millis,
    message_body,
    phone_digits,
    required,
)
from ._events import (
    ChatCreated,
    ChatKind,
    ChatRef,
    ChatUpdated,
    ContactUpdated,
    Event,
    MessageKind,
    MessageReceived,
    MessageSent,
    SessionQR,
    SessionState,
    SessionStatus,
)
from ._records import RenderContext

__all__ = ["whatsapp_web_dialect"]

NAME = "whatsapp-web"
NEW_MESSAGE = "whatsapp:new-message"
CHAT_UPDATED = "whatsapp:chat-updated"
QR_UPDATED = "whatsapp:qr-updated"
SESSION_CONNECTED = "whatsapp:session-connected"
SESSION_DISCONNECTED = "whatsapp:session-disconnected"

# Reasons for a disconnect the provider did not explain; "client_logout" is the seed's example.
_DEFAULT_REASONS: Mapping[SessionState, str] = MappingProxyType(
    {
        SessionState.DISCONNECTED: "disconnected",
        SessionState.LOGGED_OUT: "client_logout",
        SessionState.FAILED: "failed",
        SessionState.STOPPED: "stopped",
    }
)


def whatsapp_web_dialect() -> Dialect:
    """The `whatsapp-web` dialect (Socket.IO, namespace "/")."""
    return Dialect(
        name=NAME,
        wire="socketio",
        events=frozenset(
            {NEW_MESSAGE, CHAT_UPDATED, QR_UPDATED, SESSION_CONNECTED, SESSION_DISCONNECTED}
        ),
        render=render_whatsapp_web,
    )


def render_whatsapp_web(event: Event, ctx: RenderContext) -> tuple[Rendition, ...]:
    """Render `event` for whatsapp-web clients; LocalProtocolError if a needed record is missing."""
    match event:
        case MessageReceived() | MessageSent():
            if event.chat.kind is ChatKind.STATUS or event.message.kind is MessageKind.SYSTEM:
                return ()
            return (Rendition(NEW_MESSAGE, _new_message(event, ctx)),)
        case ChatCreated() | ChatUpdated():
            if event.chat.kind is ChatKind.STATUS:
                return ()
            return (Rendition(CHAT_UPDATED, _chat_updated(event, ctx)),)
        case ContactUpdated():
            # A contact is shown through its chat; without one there is nothing to refresh.
            if ctx.chat is None or ctx.chat.kind is ChatKind.STATUS:
                return ()
            return (Rendition(CHAT_UPDATED, _chat_updated(event, ctx)),)
        case SessionQR():
            qr_code = event.image_data_url if event.image_data_url is not None else event.qr
            return (Rendition(QR_UPDATED, {"sessionId": ctx.session.id, "qrCode": qr_code}),)
        case SessionStatus(state=SessionState.CONNECTED):
            return (Rendition(SESSION_CONNECTED, _session_connected(event, ctx)),)
        case SessionStatus(state=state) if state in _DEFAULT_REASONS:
            reason = event.reason if event.reason is not None else _DEFAULT_REASONS[state]
            payload = {"sessionId": ctx.session.id, "reason": reason}
            return (Rendition(SESSION_DISCONNECTED, payload),)
        case _:
            return ()


def _chat_type(chat: ChatRef) -> str:
    # The front-end knows two kinds; broadcast lists and channels are one-to-many like groups.
    return "individual" if chat.kind is ChatKind.DIRECT else "group"


def _new_message(event: MessageReceived | MessageSent, ctx: RenderContext) -> dict[str, Any]:
    chat = required(ctx.chat, "chat record", NAME, event)
    row = required(ctx.message, "message record", NAME, event)
    message = event.message
    sender = event.sender
    if isinstance(event, MessageReceived):
        from_number = event.sender.id
        contact_name = ctx.contact.name if ctx.contact is not None else None
        from_name = first_present(event.sender.name, contact_name, event.sender.phone, from_number)
    else:
        from_number = first_present(sender.id if sender else None, ctx.session.phone) or ""
        me_name = sender.name if sender else None
        from_name = first_present(me_name, ctx.session.display_name, ctx.session.name) or ""
    chat_name = first_present(
        chat.title,
        event.chat.title,
        from_name if event.chat.kind is ChatKind.DIRECT and not message.from_me else None,
        chat.provider_chat_id,
    )
    last_message_at = chat.last_message_at or event.occurred_at
    last_message_text = chat.last_message_text
    if last_message_text is None:
        last_message_text = message_body(message)
    return {
        "sessionId": ctx.session.id,
        "companyId": ctx.tenant_id,
        "chat": {
            "id": str(chat.id),
            "chatId": chat.provider_chat_id,
            "chatName": chat_name,
            "chatType": _chat_type(event.chat),
            "isGroup": _chat_type(event.chat) == "group",
            "lastMessageAt": iso_millis(last_message_at),
            "lastMessageText": last_message_text,
            "unreadCount": chat.unread_count,
        },
        "message": {
            "id": str(row.id),
            "messageId": message.id,
            "fromMe": message.from_me,
            "fromNumber": from_number,
            "fromName": from_name,
            "body": message_body(message) or "",
            "messageType": message.kind.value,
            "timestamp": iso_millis(event.occurred_at),
        },
    }


def _chat_updated(
    event: ChatCreated | ChatUpdated | ContactUpdated, ctx: RenderContext
) -> dict[str, Any]:
    chat = required(ctx.chat, "chat record", NAME, event)
    last_message_at = chat.last_message_at
    last_message_text = chat.last_message_text
    if isinstance(event, ChatUpdated):
        # The record already has the update applied; the event fills what the store lacks.
        last_message_at = last_message_at or event.last_message_at
        if last_message_text is None:
            last_message_text = event.last_message_text
    return {
        "sessionId": ctx.session.id,
        "companyId": ctx.tenant_id,
        "chatId": str(chat.id),
        "lastMessageAt": iso_millis(last_message_at) if last_message_at else None,
        "lastMessageText": last_message_text,
        "unreadCount": chat.unread_count,
    }


def _session_connected(event: SessionStatus, ctx: RenderContext) -> dict[str, Any]:
    me = event.me
    digits = phone_digits(me.phone if me else None) or phone_digits(ctx.session.phone)
    if digits is None and me is not None and "@" in me.id:
        digits = phone_digits(me.id.partition("@")[0].partition(":")[0])
    phone_number = f"+{digits}" if digits else None
    display_name = first_present(
        me.name if me else None, ctx.session.display_name, ctx.session.name, phone_number
    )
    return {"sessionId": ctx.session.id, "phoneNumber": phone_number, "displayName": display_name}
