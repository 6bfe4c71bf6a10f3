"""The normalized event model: what every provider plugin emits and every dialect renders.

A provider turns its own payloads into these small frozen value objects; the engine stores the
durable ones, coalesces the ephemeral ones and hands both to the dialects. Nothing here knows a
provider's wire format (secrets are stripped from raw payloads by `_redact`).

    EventBase                     provider, occurred_at (aware, normalised to UTC)
    ├── MessageReceived           message.received   durable
    ├── MessageSent               message.sent       durable
    ├── MessageEdited             message.edited     durable
    ├── MessageDeleted            message.deleted    durable
    ├── MessageStatus             message.status     durable
    ├── MessageReaction           message.reaction   durable
    ├── ChatCreated               chat.created       durable
    ├── ChatUpdated               chat.updated       durable
    ├── ContactUpdated            contact.updated    durable
    ├── PresenceUpdated           presence.updated   ephemeral
    ├── SessionQR                 session.qr         ephemeral
    ├── SessionStatus             session.status     durable
    └── ProviderRaw               provider.raw       ephemeral

`event_to_json` / `event_from_json` give the JSON form the store logs; decoding raises only
`RemoteProtocolError(code="invalid_event")`, whatever the input.
"""

from __future__ import annotations

import enum
import functools
import hashlib
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

import attrs
import cattrs

from ._errors import RemoteProtocolError

__all__ = [
    "EVENT_TYPES",
    "ChatCreated",
    "ChatKind",
    "ChatRef",
    "ChatUpdated",
    "ContactUpdated",
    "DeliveryState",
    "Event",
    "EventBase",
    "Media",
    "Message",
    "MessageDeleted",
    "MessageEdited",
    "MessageKind",
    "MessageReaction",
    "MessageReceived",
    "MessageSent",
    "MessageStatus",
    "Party",
    "PresenceState",
    "PresenceUpdated",
    "ProviderRaw",
    "SessionQR",
    "SessionState",
    "SessionStatus",
    "event_from_json",
    "event_to_json",
]


# --------------------------------------------------------------------------------------------
# Enumerations


class ChatKind(enum.StrEnum):
    """What kind of conversation a chat is."""

    DIRECT = "direct"
    GROUP = "group"
    BROADCAST = "broadcast"
    CHANNEL = "channel"
    STATUS = "status"  # WhatsApp status@broadcast: stories, not a conversation


class MessageKind(enum.StrEnum):
    """What a message carries."""

    TEXT = "text"
    IMAGE = "image"
    VIDEO = "video"
    AUDIO = "audio"
    VOICE = "voice"
    DOCUMENT = "document"
    STICKER = "sticker"
    LOCATION = "location"
    CONTACT = "contact"
    REACTION = "reaction"
    POLL = "poll"
    SYSTEM = "system"
    CALLBACK = "callback"
    UNKNOWN = "unknown"


class DeliveryState(enum.StrEnum):
    """How far an outgoing (or incoming) message has got.

    States only move forward: apply a new state when `new.advances(current)`. `failed` and
    `deleted` are terminal; only `deleted` may still follow `failed` (a failed message can be
    deleted), nothing follows `deleted`.
    """

    PENDING = "pending"
    SENT = "sent"
    DELIVERED = "delivered"
    READ = "read"
    PLAYED = "played"
    FAILED = "failed"
    DELETED = "deleted"

    @property
    def rank(self) -> int:
        """Position in the forward order; a higher rank supersedes a lower one."""
        return _DELIVERY_RANK[self]

    @property
    def is_terminal(self) -> bool:
        """True for `failed` and `deleted`: only a higher-ranked terminal state may follow."""
        return self in (DeliveryState.FAILED, DeliveryState.DELETED)

    def advances(self, current: DeliveryState | None) -> bool:
        """Whether this state should replace `current` (None: nothing known yet)."""
        return current is None or self.rank > current.rank


_DELIVERY_RANK: Mapping[DeliveryState, int] = MappingProxyType(
    {state: rank for rank, state in enumerate(DeliveryState)}
)


class PresenceState(enum.StrEnum):
    """What a chat participant is doing right now."""

    TYPING = "typing"
    RECORDING = "recording"
    PAUSED = "paused"
    ONLINE = "online"
    OFFLINE = "offline"


class SessionState(enum.StrEnum):
    """The life cycle of one provider session (account, instance, bot)."""

    STARTING = "starting"
    QR = "qr"
    CONNECTING = "connecting"
    CONNECTED = "connected"
    DISCONNECTED = "disconnected"
    LOGGED_OUT = "logged_out"
    FAILED = "failed"
    STOPPED = "stopped"


# --------------------------------------------------------------------------------------------
# Time


def utc_datetime(value: datetime) -> datetime:
    """Return `value` in UTC; ValueError if it is naive, TypeError if it is not a datetime.

    Shared with `_records`: every datetime the protocol layer holds is aware and in UTC, so
    rendering never has to guess a zone.
    """
    if not isinstance(value, datetime):
        raise TypeError(f"expected a datetime, got {type(value).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("datetime must be timezone-aware")
    return value.astimezone(UTC)


def optional_utc_datetime(value: datetime | None) -> datetime | None:
    """`utc_datetime` that lets None through."""
    return None if value is None else utc_datetime(value)


def format_utc(value: datetime) -> str:
    """ISO-8601 in UTC ending in "Z"; microseconds kept only when non-zero."""
    return utc_datetime(value).isoformat().replace("+00:00", "Z")


# --------------------------------------------------------------------------------------------
# Value objects


@attrs.frozen(kw_only=True)
class ChatRef:
    """A chat as the provider names it.

    `id` is the provider's chat id ("77079856339@c.us", "120363…@g.us", "-1001234567890");
    `alt_ids` keeps other spellings of the same chat (WhatsApp @lid / @s.whatsapp.net).
    """

    id: str
    kind: ChatKind
    title: str | None = None
    alt_ids: tuple[str, ...] = ()


@attrs.frozen(kw_only=True)
class Party:
    """A person or bot: a message sender, a chat participant, the session's own account."""

    id: str
    phone: str | None = None
    name: str | None = None
    username: str | None = None
    is_me: bool = False


@attrs.frozen(kw_only=True)
class Media:
    """An attachment; `url` is where a client can fetch it, when the provider gave one."""

    mime_type: str | None
    url: str | None = None
    file_name: str | None = None
    size: int | None = None
    provider_media_id: str | None = None


@attrs.frozen(kw_only=True)
class Message:
    """One message; `id` is the provider's message id."""

    id: str
    kind: MessageKind
    from_me: bool
    text: str | None = None
    caption: str | None = None
    media: Media | None = None
    reply_to_id: str | None = None


# --------------------------------------------------------------------------------------------
# Events


@attrs.frozen(kw_only=True)
class EventBase:
    """What every normalized event has: who reported it and when it happened.

    `provider` is "evolution", "meta", "waha", "telegram", "simulator" or a third party's name.
    `occurred_at` must be timezone-aware (ValueError otherwise) and is stored in UTC.
    """

    type: ClassVar[str]
    durable: ClassVar[bool]

    provider: str
    occurred_at: datetime = attrs.field(converter=utc_datetime)

    def dedupe_key(self) -> str | None:
        """The provider-scoped idempotency key, or None when the event is not deduplicated."""
        return None

    def coalesce_key(self) -> str | None:
        """For ephemeral events, the latest-wins key; None when nothing may be coalesced."""
        return None


@attrs.frozen(kw_only=True)
class MessageReceived(EventBase):
    """Someone else sent a message into a chat. ValueError if `message.from_me` is true."""

    type: ClassVar[str] = "message.received"
    durable: ClassVar[bool] = True

    chat: ChatRef
    sender: Party
    message: Message

    def __attrs_post_init__(self) -> None:
        # The class is the direction: a plugin that says otherwise has a bug worth surfacing.
        if self.message.from_me:
            raise ValueError("MessageReceived carries a message with from_me=True; use MessageSent")

    def dedupe_key(self) -> str:
        return f"message:{self.message.id}"


@attrs.frozen(kw_only=True)
class MessageSent(EventBase):
    """The session's own account sent a message (API, phone, another device).

    ValueError if `message.from_me` is false.
    """

    type: ClassVar[str] = "message.sent"
    durable: ClassVar[bool] = True

    chat: ChatRef
    message: Message
    sender: Party | None = None

    def __attrs_post_init__(self) -> None:
        if not self.message.from_me:
            raise ValueError(
                "MessageSent carries a message with from_me=False; use MessageReceived"
            )

    def dedupe_key(self) -> str:
        # Same key as MessageReceived: Evolution reports a phone-typed message once as an
        # upsert, an API-sent one as send.message; either way it is one message.
        return f"message:{self.message.id}"


@attrs.frozen(kw_only=True)
class MessageEdited(EventBase):
    """A message's text was changed; `text` is the new text."""

    type: ClassVar[str] = "message.edited"
    durable: ClassVar[bool] = True

    chat: ChatRef
    message_id: str
    text: str | None

    def dedupe_key(self) -> str:
        # Several edits of one message are distinct events; a redelivered edit is not.
        text = (self.text or "").encode("utf-8", "surrogatepass")
        return f"edit:{self.message_id}:{hashlib.sha1(text, usedforsecurity=False).hexdigest()}"


@attrs.frozen(kw_only=True)
class MessageDeleted(EventBase):
    """A message was deleted (revoked) for everyone."""

    type: ClassVar[str] = "message.deleted"
    durable: ClassVar[bool] = True

    chat: ChatRef
    message_id: str

    def dedupe_key(self) -> str:
        return f"delete:{self.message_id}"


@attrs.frozen(kw_only=True)
class MessageStatus(EventBase):
    """A message reached a delivery state; `recipient_id` names the reader in a group."""

    type: ClassVar[str] = "message.status"
    durable: ClassVar[bool] = True

    chat: ChatRef
    message_id: str
    state: DeliveryState
    recipient_id: str | None = None
    error: str | None = None

    def dedupe_key(self) -> str:
        return f"status:{self.message_id}:{self.state.value}"


@attrs.frozen(kw_only=True)
class MessageReaction(EventBase):
    """A reaction to `target_id`; `message_id` is the reaction's own id, `emoji` "" removes it."""

    type: ClassVar[str] = "message.reaction"
    durable: ClassVar[bool] = True

    chat: ChatRef
    sender: Party
    message_id: str
    target_id: str
    emoji: str

    def dedupe_key(self) -> str:
        return f"reaction:{self.message_id}"


@attrs.frozen(kw_only=True)
class ChatCreated(EventBase):
    """A chat was seen for the first time; `first_message` is its opening text, if known."""

    type: ClassVar[str] = "chat.created"
    durable: ClassVar[bool] = True

    chat: ChatRef
    first_message: str | None = None

    def dedupe_key(self) -> str:
        return f"chat:{self.chat.id}"


@attrs.frozen(kw_only=True)
class ChatUpdated(EventBase):
    """Some of a chat's attributes changed; every None field means "unchanged"."""

    type: ClassVar[str] = "chat.updated"
    durable: ClassVar[bool] = True

    chat: ChatRef
    title: str | None = None
    unread_count: int | None = None
    archived: bool | None = None
    pinned: bool | None = None
    last_message_at: datetime | None = attrs.field(default=None, converter=optional_utc_datetime)
    last_message_text: str | None = None


@attrs.frozen(kw_only=True)
class ContactUpdated(EventBase):
    """A contact's name, phone or avatar changed."""

    type: ClassVar[str] = "contact.updated"
    durable: ClassVar[bool] = True

    contact: Party
    avatar_url: str | None = None


@attrs.frozen(kw_only=True)
class PresenceUpdated(EventBase):
    """A participant started or stopped typing, came online or went offline."""

    type: ClassVar[str] = "presence.updated"
    durable: ClassVar[bool] = False

    chat: ChatRef
    participant: Party
    state: PresenceState

    def coalesce_key(self) -> str:
        return f"presence:{self.chat.id}:{self.participant.id}"


@attrs.frozen(kw_only=True)
class SessionQR(EventBase):
    """A new QR code (or pairing code) to link the session's account."""

    type: ClassVar[str] = "session.qr"
    durable: ClassVar[bool] = False

    qr: str
    image_data_url: str | None = None
    pairing_code: str | None = None
    attempt: int | None = None

    def coalesce_key(self) -> str:
        return "qr"


@attrs.frozen(kw_only=True)
class SessionStatus(EventBase):
    """The session changed state; `me` is the linked account once connected."""

    type: ClassVar[str] = "session.status"
    durable: ClassVar[bool] = True

    state: SessionState
    reason: str | None = None
    me: Party | None = None


@attrs.frozen(kw_only=True)
class ProviderRaw(EventBase):
    """A provider's own event, passed through for debugging consumers.

    `name` is the provider's event name ("messages.upsert"); `payload` must already be redacted
    (see `redact_provider_payload`) and must not be mutated after construction.
    """

    type: ClassVar[str] = "provider.raw"
    durable: ClassVar[bool] = False

    name: str
    # Excluded from the hash so the event stays hashable; equality still compares it.
    payload: dict[str, Any] = attrs.field(hash=False)


Event: TypeAlias = (
    MessageReceived
    | MessageSent
    | MessageEdited
    | MessageDeleted
    | MessageStatus
    | MessageReaction
    | ChatCreated
    | ChatUpdated
    | ContactUpdated
    | PresenceUpdated
    | SessionQR
    | SessionStatus
    | ProviderRaw
)

_EVENT_CLASSES: tuple[type[Event], ...] = (
    MessageReceived,
    MessageSent,
    MessageEdited,
    MessageDeleted,
    MessageStatus,
    MessageReaction,
    ChatCreated,
    ChatUpdated,
    ContactUpdated,
    PresenceUpdated,
    SessionQR,
    SessionStatus,
    ProviderRaw,
)

EVENT_TYPES: Mapping[str, type[Event]] = MappingProxyType({cls.type: cls for cls in _EVENT_CLASSES})
"""Type string ("message.received") → event class; read-only."""


# --------------------------------------------------------------------------------------------
# JSON


def _strict(kind: type[Any], name: str) -> Callable[[Any, Any], Any]:
    # cattrs coerces by default (str(123) == "123", int("7") == 7); a decoder must not.
    def structure(value: Any, _: Any) -> Any:
        if type(value) is not kind:
            raise TypeError(f"expected {name}, got {type(value).__name__}")
        return value

    return structure


def _structure_datetime(value: Any, _: Any) -> datetime:
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO-8601 string, got {type(value).__name__}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        # fromisoformat's own message repeats the whole input.
        raise ValueError(f"not an ISO-8601 datetime: {_preview(value)}") from None
    return utc_datetime(parsed)


def _structure_str_tuple(value: Any, _: Any) -> tuple[str, ...]:
    # A bare string is iterable too; without this check "abc" would become ("a", "b", "c").
    if not isinstance(value, list | tuple) or not all(type(item) is str for item in value):
        raise TypeError("expected a list of strings")
    return tuple(value)


def _structure_json_object(value: Any, _: Any) -> dict[str, Any]:
    if not isinstance(value, dict) or not all(type(key) is str for key in value):
        raise TypeError("expected a JSON object")
    return value


def _structure_enum(value: Any, cls: type[enum.StrEnum]) -> enum.StrEnum:
    if type(value) is not str:
        raise TypeError(f"expected a string, got {type(value).__name__}")
    try:
        return cls(value)
    except ValueError:
        raise ValueError(f"{_preview(value)} is not a {cls.__name__}") from None


@functools.cache
def _converter() -> cattrs.Converter:
    """Build the converter for event JSON.

    Cached because building hooks for thirteen classes costs far more than using them; it is
    fully configured here and never changed afterwards, so sharing it is safe.
    """
    converter = cattrs.Converter(forbid_extra_keys=True, detailed_validation=True)
    converter.register_structure_hook(str, _strict(str, "a string"))
    converter.register_structure_hook(int, _strict(int, "an integer"))
    converter.register_structure_hook(bool, _strict(bool, "a boolean"))
    converter.register_structure_hook(datetime, _structure_datetime)
    converter.register_unstructure_hook(datetime, format_utc)
    # By class, not by predicate: class hooks win, and the one for str would catch enums.
    converter.register_structure_hook(enum.StrEnum, _structure_enum)
    converter.register_unstructure_hook(enum.StrEnum, lambda member: member.value)
    converter.register_structure_hook_func(lambda cls: cls == tuple[str, ...], _structure_str_tuple)
    converter.register_unstructure_hook_func(lambda cls: cls == tuple[str, ...], list)
    # Provider payloads are JSON already; walking them would only cost time (and recursion).
    converter.register_structure_hook_func(
        lambda cls: cls == dict[str, Any], _structure_json_object
    )
    converter.register_unstructure_hook_func(lambda cls: cls == dict[str, Any], lambda d: d)
    return converter


def event_to_json(event: Event) -> dict[str, Any]:
    """The JSON-able form of `event`: `{"type": …, fields…}`, datetimes as "…Z" strings.

    A ProviderRaw's payload is included as is (not copied).
    """
    return {"type": event.type, **_converter().unstructure(event)}


def event_from_json(obj: Any) -> Event:
    """Rebuild an event from `event_to_json` output.

    Raises RemoteProtocolError(code="invalid_event") for anything malformed: not an object,
    unknown or missing type, missing or unknown fields, wrong JSON types, naive datetimes.
    """
    if not isinstance(obj, dict):
        raise RemoteProtocolError("an event must be a JSON object", code="invalid_event")
    type_name = obj.get("type")
    cls = EVENT_TYPES.get(type_name) if isinstance(type_name, str) else None
    if cls is None:
        raise RemoteProtocolError(f"unknown event type {_preview(type_name)}", code="invalid_event")
    fields = {key: value for key, value in obj.items() if key != "type"}
    try:
        return _converter().structure(fields, cls)
    except (
        cattrs.BaseValidationError,
        cattrs.ForbiddenExtraKeysError,
        ValueError,
        TypeError,
        KeyError,
        AttributeError,
        OverflowError,
    ) as exc:
        raise RemoteProtocolError(
            f"malformed {cls.type} event: {_describe(exc)}", code="invalid_event"
        ) from None


def _preview(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(exc: BaseException, limit: int = 200) -> str:
    # cattrs groups nest; the leaves say what was wrong, their notes say where.
    leaves: list[str] = []

    def walk(error: BaseException) -> None:
        if isinstance(error, BaseExceptionGroup):
            for inner in error.exceptions:
                walk(inner)
        elif isinstance(error, cattrs.ForbiddenExtraKeysError):
            # cattrs' own message repeats every unknown key in full.
            names = sorted(error.extra_fields)
            shown = ", ".join(_preview(name) for name in names[:3])
            more = f" and {len(names) - 3} more" if len(names) > 3 else ""
            leaves.append(f"unknown field(s) {shown}{more} for {error.cl.__name__}")
        else:
            where = "; ".join(getattr(error, "__notes__", ()))
            leaves.append(f"{error} ({where})" if where else str(error))

    walk(exc)
    text = "; ".join(leaves) or type(exc).__name__
    return text if len(text) <= limit else text[:limit] + "…"
