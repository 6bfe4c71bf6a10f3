"""The `envelope` dialect: the `data` of the plain-WebSocket JSON envelope (`/ws`).

Seed: `telegram-widget-envelope.md` (new_chat, new_message, user_typing, message_read,
user_online, user_offline) plus the extensions of DESIGN.md §4 (message_status,
session_status) and ours (chat_updated, message_edited, message_deleted, message_reaction).
The server wraps each rendition with `encode_envelope(name, payload, event.occurred_at)`.

`user_id` names the conversation: the provider chat id as a number when it is one a browser can
hold exactly (Telegram ids, WhatsApp JID digits), else the chat row id, else the contact row id.
`message_id` and `last_read_message_id` are message row ids.
"""

from __future__ import annotations

from typing import Any

from ._dialect_base import (
    Dialect,
    Rendition,
    first_present,
    iso_seconds,
    message_body,
    numeric_chat_id,
    required,
    source_name,
)
from ._errors import LocalProtocolError
from ._events import (
    ChatCreated,
    ChatRef,
    ChatUpdated,
    DeliveryState,
    Event,
    EventBase,
    MessageDeleted,
    MessageEdited,
    MessageReaction,
    MessageReceived,
    MessageSent,
    MessageStatus,
    PresenceState,
    PresenceUpdated,
    SessionStatus,
)
from ._records import RenderContext

__all__ = ["envelope_dialect"]

NAME = "envelope"
NEW_CHAT = "new_chat"
NEW_MESSAGE = "new_message"
USER_TYPING = "user_typing"
USER_ONLINE = "user_online"
USER_OFFLINE = "user_offline"
MESSAGE_READ = "message_read"
MESSAGE_STATUS = "message_status"
SESSION_STATUS = "session_status"
CHAT_UPDATED = "chat_updated"
MESSAGE_EDITED = "message_edited"
MESSAGE_DELETED = "message_deleted"
MESSAGE_REACTION = "message_reaction"


def envelope_dialect() -> Dialect:
    """The `envelope` dialect (plain WebSocket at /ws)."""
    return Dialect(
        name=NAME,
        wire="envelope",
        events=frozenset(
            {
                NEW_CHAT,
                NEW_MESSAGE,
                USER_TYPING,
                USER_ONLINE,
                USER_OFFLINE,
                MESSAGE_READ,
                MESSAGE_STATUS,
                SESSION_STATUS,
                CHAT_UPDATED,
                MESSAGE_EDITED,
                MESSAGE_DELETED,
                MESSAGE_REACTION,
            }
        ),
        render=render_envelope,
    )


def render_envelope(event: Event, ctx: RenderContext) -> tuple[Rendition, ...]:
    """Render `event` as envelope data; LocalProtocolError if a needed record is missing."""
    match event:
        case ChatCreated():
            payload: dict[str, Any] = {
                "user_id": _user_id(event, event.chat.id, ctx),
                "user_name": _chat_name(event.chat, ctx),
                "username": ctx.contact.username if ctx.contact is not None else None,
                "source": source_name(event.provider, event.chat.id),
                "first_message": event.first_message,
            }
            return (Rendition(NEW_CHAT, payload),)
        case MessageReceived() | MessageSent():
            return (Rendition(NEW_MESSAGE, _new_message(event, ctx)),)
        case PresenceUpdated():
            return _presence(event, ctx)
        case MessageStatus(state=DeliveryState.READ):
            row = required(ctx.message, "message record", NAME, event)
            payload = {
                "user_id": _user_id(event, event.chat.id, ctx),
                "last_read_message_id": row.id,
            }
            return (Rendition(MESSAGE_READ, payload),)
        case MessageStatus():
            row = required(ctx.message, "message record", NAME, event)
            payload = {
                "message_id": row.id,
                "user_id": _user_id(event, event.chat.id, ctx),
                "status": event.state.value,
            }
            return (Rendition(MESSAGE_STATUS, payload),)
        case SessionStatus():
            payload = {
                "session_id": ctx.session.id,
                "status": event.state.value,
                "reason": event.reason,
            }
            return (Rendition(SESSION_STATUS, payload),)
        case ChatUpdated():
            return (Rendition(CHAT_UPDATED, _chat_updated(event, ctx)),)
        case MessageEdited():
            payload = _about_message(event, event.chat.id, ctx)
            payload["text"] = event.text
            return (Rendition(MESSAGE_EDITED, payload),)
        case MessageDeleted():
            return (Rendition(MESSAGE_DELETED, _about_message(event, event.chat.id, ctx)),)
        case MessageReaction():
            payload = _about_message(event, event.chat.id, ctx)
            payload.update(
                {
                    "user_name": first_present(
                        event.sender.name, ctx.contact.name if ctx.contact is not None else None
                    ),
                    "emoji": event.emoji,
                    "from_me": event.sender.is_me,
                }
            )
            return (Rendition(MESSAGE_REACTION, payload),)
        case _:
            return ()


def _user_id(event: EventBase, provider_chat_id: str, ctx: RenderContext) -> int:
    number = numeric_chat_id(provider_chat_id)
    if number is not None:
        return number
    if ctx.chat is not None:
        return ctx.chat.id
    if ctx.contact is not None:
        return ctx.contact.id
    raise LocalProtocolError(
        f"dialect {NAME!r} cannot render {event.type}: chat id {provider_chat_id!r} is not "
        "numeric and the render context has neither a chat nor a contact record"
    )


def _chat_name(chat: ChatRef, ctx: RenderContext) -> str | None:
    """The conversation partner's name: contact record, chat record, then the event's title."""
    return first_present(
        ctx.contact.name if ctx.contact is not None else None,
        ctx.chat.title if ctx.chat is not None else None,
        chat.title,
    )


def _new_message(event: MessageReceived | MessageSent, ctx: RenderContext) -> dict[str, Any]:
    row = required(ctx.message, "message record", NAME, event)
    if isinstance(event, MessageReceived):
        user_name = first_present(event.sender.name, _chat_name(event.chat, ctx))
    else:
        # The conversation partner, not the operator who sent it: user_* always name the chat.
        user_name = _chat_name(event.chat, ctx)
    media = event.message.media
    payload: dict[str, Any] = {
        "message_id": row.id,
        "user_id": _user_id(event, event.chat.id, ctx),
        "user_name": user_name,
        "text": message_body(event.message),
        "file_path": media.url if media is not None else None,
        "source": source_name(event.provider, event.chat.id),
    }
    if isinstance(event, MessageSent):
        payload["from_me"] = True
    return payload


def _presence(event: PresenceUpdated, ctx: RenderContext) -> tuple[Rendition, ...]:
    # Presence is ephemeral and may concern a chat the gateway has not stored yet (a group
    # member typing before any message): with no number and no row there is nothing a widget
    # could match it to, so it is not shown rather than an error.
    if numeric_chat_id(event.chat.id) is None and ctx.chat is None and ctx.contact is None:
        return ()
    user_id = _user_id(event, event.chat.id, ctx)
    match event.state:
        case PresenceState.TYPING | PresenceState.RECORDING:
            user_name = first_present(event.participant.name, _chat_name(event.chat, ctx))
            return (Rendition(USER_TYPING, {"user_id": user_id, "user_name": user_name}),)
        case PresenceState.ONLINE:
            return (Rendition(USER_ONLINE, {"user_id": user_id}),)
        case PresenceState.OFFLINE:
            return (Rendition(USER_OFFLINE, {"user_id": user_id}),)
        case _:
            # "paused" only ends typing; the widget's typing indicator times out by itself.
            return ()


def _chat_updated(event: ChatUpdated, ctx: RenderContext) -> dict[str, Any]:
    payload: dict[str, Any] = {
        "user_id": _user_id(event, event.chat.id, ctx),
        "source": source_name(event.provider, event.chat.id),
    }
    # Only what changed: an absent key means "unchanged", so null never has to mean two things.
    changes = {
        "title": event.title,
        "unread_count": event.unread_count,
        "archived": event.archived,
        "pinned": event.pinned,
        "last_message_at": iso_seconds(event.last_message_at) if event.last_message_at else None,
        "last_message_text": event.last_message_text,
    }
    payload.update((key, value) for key, value in changes.items() if value is not None)
    return payload


def _about_message(
    event: MessageEdited | MessageDeleted | MessageReaction,
    provider_chat_id: str,
    ctx: RenderContext,
) -> dict[str, Any]:
    row = required(ctx.message, "message record", NAME, event)
    return {
        "message_id": row.id,
        "user_id": _user_id(event, provider_chat_id, ctx),
        "source": source_name(event.provider, provider_chat_id),
    }
