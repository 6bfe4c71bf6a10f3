"""The stored context a dialect renders with: the rows the engine has for an event.

Dialects need more than the event: front-ends address chats and messages by the gateway's own
row ids, and show counters (unread, last message) the store maintains. The engine fills a
`RenderContext` from its store after committing the event; the protocol layer only reads it.
Integer ids are database row ids; string ids are the provider's or the tenant's own.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from ._errors import LocalProtocolError
from ._events import ChatKind, optional_utc_datetime, utc_datetime

__all__ = ["ChatRecord", "ContactRecord", "MessageRecord", "RenderContext", "SessionRecord"]


@attrs.frozen(kw_only=True)
class SessionRecord:
    """A provider session (account, instance, bot) as stored; `phone` is digits when known."""

    id: str
    tenant_id: str
    provider: str
    name: str | None = None
    phone: str | None = None
    display_name: str | None = None


@attrs.frozen(kw_only=True)
class ChatRecord:
    """A chat row, after the event being rendered was applied to it.

    Datetimes must be timezone-aware (ValueError otherwise) and are stored in UTC.
    """

    id: int
    session_id: str
    provider_chat_id: str
    kind: ChatKind
    title: str | None = None
    unread_count: int = 0
    last_message_at: datetime | None = attrs.field(default=None, converter=optional_utc_datetime)
    last_message_text: str | None = None
    created_at: datetime | None = attrs.field(default=None, converter=optional_utc_datetime)


@attrs.frozen(kw_only=True)
class ContactRecord:
    """A contact row; `provider_id` is the provider's id for the person (JID, Telegram user id)."""

    id: int
    provider_id: str
    phone: str | None = None
    name: str | None = None
    username: str | None = None


@attrs.frozen(kw_only=True)
class MessageRecord:
    """A message row: the gateway's id for a provider message."""

    id: int
    provider_message_id: str


@attrs.frozen(kw_only=True)
class RenderContext:
    """Everything a dialect may use besides the event itself.

    `message` is the row the event is about; for a status, edit, delete or reaction that is the
    target message's row. `seq` is the event's log position (None for ephemeral events).
    `received_at` must be timezone-aware (ValueError otherwise). LocalProtocolError if
    `tenant_id` is not the session's tenant: rendering across tenants is always a bug.
    """

    tenant_id: str
    session: SessionRecord
    received_at: datetime = attrs.field(converter=utc_datetime)
    chat: ChatRecord | None = None
    contact: ContactRecord | None = None
    message: MessageRecord | None = None
    seq: int | None = None

    def __attrs_post_init__(self) -> None:
        if self.session.tenant_id != self.tenant_id:
            raise LocalProtocolError(
                f"render context for tenant {self.tenant_id!r} holds a session of tenant "
                f"{self.session.tenant_id!r}"
            )
