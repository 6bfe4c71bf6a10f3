"""The `chat-sync` dialect: the Socket.IO events of the Evolution chat-sync front-end.

Seed: `evolution-chat-sync.md`, whose back-end re-emits Evolution events after writing Prisma
rows. We reproduce what its front-end receives: `chat:message` with a Baileys-shaped message
synthesised from the normalized one, `chat:new` with the chat row in the seed's Prisma shape,
and `chat:update` with the chat's WhatsApp id and a small `updates` object. `chatId` and the
row's `id` are our chat row id (a JSON number); `remoteJid` and message ids are provider ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from ._dialect_base import (
    Dialect,
    Rendition,
    epoch_seconds,
    first_present,
    iso_millis,
    message_body,
    required,
)
from ._events import (
    ChatCreated,
    ChatKind,
    ChatUpdated,
    ContactUpdated,
    Event,
    MessageDeleted,
    MessageEdited,
    MessageKind,
    MessageReaction,
    MessageReceived,
    MessageSent,
)
from ._records import RenderContext

__all__ = ["chat_sync_dialect"]

NAME = "chat-sync"
CHAT_MESSAGE = "chat:message"
CHAT_NEW = "chat:new"
CHAT_UPDATE = "chat:update"

# Baileys' message content keys. Kinds without one (system, callback, unknown) are rendered as
# plain text ("conversation"), which is all the seed's consumer reads anyway.
_BAILEYS_TYPES: Mapping[MessageKind, str] = MappingProxyType(
    {
        MessageKind.TEXT: "conversation",
        MessageKind.IMAGE: "imageMessage",
        MessageKind.VIDEO: "videoMessage",
        MessageKind.AUDIO: "audioMessage",
        MessageKind.VOICE: "audioMessage",
        MessageKind.DOCUMENT: "documentMessage",
        MessageKind.STICKER: "stickerMessage",
        MessageKind.LOCATION: "locationMessage",
        MessageKind.CONTACT: "contactMessage",
        MessageKind.REACTION: "reactionMessage",
        MessageKind.POLL: "pollCreationMessage",
    }
)
_USER_JID_SUFFIXES = ("@s.whatsapp.net", "@c.us")


def chat_sync_dialect() -> Dialect:
    """The `chat-sync` dialect (Socket.IO, namespace "/")."""
    return Dialect(
        name=NAME,
        wire="socketio",
        events=frozenset({CHAT_MESSAGE, CHAT_NEW, CHAT_UPDATE}),
        render=render_chat_sync,
    )


def render_chat_sync(event: Event, ctx: RenderContext) -> tuple[Rendition, ...]:
    """Render `event` for chat-sync clients; LocalProtocolError if a needed record is missing."""
    match event:
        case MessageReceived() | MessageSent():
            chat = required(ctx.chat, "chat record", NAME, event)
            payload = {"chatId": chat.id, "message": baileys_message(event, ctx)}
            return (Rendition(CHAT_MESSAGE, payload),)
        case ChatCreated():
            return (Rendition(CHAT_NEW, _chat_row(event, ctx)),)
        case ChatUpdated():
            return (_update(event.chat.id, _chat_changes(event)),)
        case MessageEdited():
            return (
                _update(event.chat.id, {"messageId": event.message_id, "editedText": event.text}),
            )
        case MessageDeleted():
            return (_update(event.chat.id, {"messageId": event.message_id, "deleted": True}),)
        case MessageReaction():
            reaction = {
                "id": event.message_id,
                "emoji": event.emoji,
                "senderId": event.sender.id,
                "fromMe": event.sender.is_me,
            }
            return (_update(event.chat.id, {"messageId": event.target_id, "reaction": reaction}),)
        case ContactUpdated():
            remote_jid = ctx.chat.provider_chat_id if ctx.chat is not None else event.contact.id
            changes = {
                "pushName": event.contact.name,
                "phone": event.contact.phone,
                "profilePicUrl": event.avatar_url,
            }
            return (_update(remote_jid, _present(changes)),)
        case _:
            return ()


def baileys_message(event: MessageReceived | MessageSent, ctx: RenderContext) -> dict[str, Any]:
    """The message as Evolution's `messages.upsert` data would carry it (the fields we know)."""
    message = event.message
    key: dict[str, Any] = {"remoteJid": event.chat.id, "fromMe": message.from_me, "id": message.id}
    if event.chat.kind is ChatKind.GROUP and event.sender is not None:
        key["participant"] = event.sender.id
    if isinstance(event, MessageReceived):
        push_name = event.sender.name
    else:
        own_name = event.sender.name if event.sender is not None else None
        push_name = first_present(own_name, ctx.session.display_name, ctx.session.name)
    message_type = _BAILEYS_TYPES.get(message.kind, "conversation")
    body = message_body(message)
    if message_type == "conversation":
        content: dict[str, Any] = {"conversation": body or ""}
    else:
        media = message.media
        details = {
            "url": media.url if media else None,
            "mimetype": media.mime_type if media else None,
            "fileName": media.file_name if media else None,
            "fileLength": media.size if media else None,
            "caption": body,
            "ptt": True if message.kind is MessageKind.VOICE else None,
        }
        content = {message_type: _present(details)}
    result: dict[str, Any] = {
        "key": key,
        "pushName": push_name,
        "message": content,
        "messageType": message_type,
        "messageTimestamp": epoch_seconds(event.occurred_at),
    }
    if message.reply_to_id is not None:
        result["contextInfo"] = {"stanzaId": message.reply_to_id}
    return result


def _chat_row(event: ChatCreated, ctx: RenderContext) -> dict[str, Any]:
    chat = required(ctx.chat, "chat record", NAME, event)
    remote_jid = chat.provider_chat_id
    contact_number = remote_jid
    for suffix in _USER_JID_SUFFIXES:
        contact_number = contact_number.removesuffix(suffix)
    contact_name = first_present(
        chat.title,
        event.chat.title,
        ctx.contact.name if ctx.contact is not None else None,
        contact_number,
    )
    last_message_at = chat.last_message_at or chat.created_at or event.occurred_at
    return {
        "id": chat.id,
        "whatsappChatId": remote_jid,
        "contactName": contact_name,
        "contactNumber": contact_number,
        "status": "ACTIVE",
        "tenantId": ctx.tenant_id,
        "lastMessageAt": iso_millis(last_message_at),
        "unreadCount": chat.unread_count,
    }


def _chat_changes(event: ChatUpdated) -> dict[str, Any]:
    # Only what changed: None in the event means "unchanged", so it is left out here.
    last_at = event.last_message_at
    return _present(
        {
            "name": event.title,
            "unreadCount": event.unread_count,
            "archived": event.archived,
            "pinned": event.pinned,
            "conversationTimestamp": epoch_seconds(last_at) if last_at is not None else None,
            "lastMessageText": event.last_message_text,
        }
    )


def _update(remote_jid: str, updates: dict[str, Any]) -> Rendition:
    return Rendition(CHAT_UPDATE, {"remoteJid": remote_jid, "updates": updates})


def _present(values: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in values.items() if value is not None}
