"""What a dialect is, and the field conventions the built-in dialects share.

A dialect renders one normalized event (plus its stored context) into zero or more
`Rendition`s: a client-facing event name, a JSON-able payload and the rooms it goes to. The
helpers below fix the conventions once: time formats, which ids are row ids, how a provider
chat id becomes a numeric `user_id`, and which `source` a provider is.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, Literal, TypeVar

import attrs

from ._errors import LocalProtocolError
from ._events import Event, EventBase, Message, utc_datetime
from ._records import RenderContext

__all__ = [
    "Dialect",
    "Rendition",
    "Wire",
    "epoch_seconds",
    "first_present",
    "iso_millis",
    "iso_seconds",
    "message_body",
    "numeric_chat_id",
    "phone_digits",
    "phone_from_jid",
    "required",
    "source_name",
]

Wire = Literal["socketio", "envelope"]
T = TypeVar("T")


@attrs.frozen
class Rendition:
    """One client-facing event: its name, its JSON-able payload, and the rooms it targets.

    Rooms are unscoped names ("conversation:123"); the server prefixes the tenant. No rooms
    means "every client of the tenant that uses this dialect".
    """

    name: str
    payload: Any = attrs.field(hash=False)
    rooms: tuple[str, ...] = ()


Renderer = Callable[[Event, RenderContext], tuple[Rendition, ...]]


@attrs.frozen(kw_only=True)
class Dialect:
    """A named renderer from normalized events to the shapes one family of front-ends expects.

    `events` lists every name `render` can produce. `render` returns () for events the dialect
    does not show, and raises LocalProtocolError when the context lacks a record it needs.
    """

    name: str = attrs.field(validator=attrs.validators.min_len(1))
    wire: Wire = attrs.field(validator=attrs.validators.in_(("socketio", "envelope")))
    events: frozenset[str]
    render: Renderer


def required(value: T | None, what: str, dialect: str, event: EventBase) -> T:
    """`value`, or LocalProtocolError saying which record the dialect needed."""
    if value is None:
        raise LocalProtocolError(
            f"dialect {dialect!r} cannot render {event.type}: the render context has no {what}"
        )
    return value


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def iso_millis(value: datetime) -> str:
    """JavaScript `Date.toISOString()` form: "2025-07-16T11:13:54.000Z" (truncated to ms)."""
    value = utc_datetime(value)
    value = value.replace(microsecond=value.microsecond // 1000 * 1000)
    return value.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_seconds(value: datetime) -> str:
    """ISO-8601 to the second: "2024-01-01T10:00:00Z"."""
    return utc_datetime(value).isoformat(timespec="seconds").replace("+00:00", "Z")


def epoch_seconds(value: datetime) -> int:
    """Whole seconds since 1970 (floor), computed exactly rather than through a float."""
    return (utc_datetime(value) - _EPOCH) // timedelta(seconds=1)


# JavaScript reads JSON numbers as doubles: beyond 2**53 a browser silently gets another id.
_JS_MAX_SAFE_INTEGER = 2**53 - 1
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,15})")
_USER_JID_SUFFIXES = ("@s.whatsapp.net", "@c.us")


def numeric_chat_id(provider_chat_id: str) -> int | None:
    """The chat id as a number a browser can hold exactly, or None.

    Telegram ids are numbers already ("-1001234567890"); for WhatsApp JIDs the part before "@"
    counts ("77079856339@c.us" → 77079856339). Group JIDs (18 digits) exceed 2**53 and give None.
    """
    local = provider_chat_id.partition("@")[0]
    if not _INTEGER.fullmatch(local):
        return None
    number = int(local)
    return number if abs(number) <= _JS_MAX_SAFE_INTEGER else None


def phone_digits(phone: str | None) -> str | None:
    """Only the digits of a phone number ("+7 707 985-63-39" → "77079856339"); None if none."""
    if phone is None:
        return None
    digits = "".join(ch for ch in phone if "0" <= ch <= "9")
    return digits or None


def phone_from_jid(party_id: str) -> str | None:
    """The phone digits of a WhatsApp user JID ("77079856339:12@s.whatsapp.net"), else None.

    Group, @lid and Telegram ids are not phone numbers and give None.
    """
    if not party_id.endswith(_USER_JID_SUFFIXES):
        return None
    local = party_id.partition("@")[0].partition(":")[0]
    return local if local.isascii() and local.isdigit() else None


_WHATSAPP_PROVIDERS = frozenset({"evolution", "meta", "waha"})


def source_name(provider: str, provider_chat_id: str) -> str:
    """The messenger a front-end should show: "whatsapp", "telegram" or a third party's name.

    The simulator imitates either messenger: "simulator-telegram" / "simulator-whatsapp" say so
    explicitly; plain "simulator" is WhatsApp when the chat id is a JID (has "@"), else Telegram.
    """
    if provider == "telegram":
        return "telegram"
    if provider in _WHATSAPP_PROVIDERS:
        return "whatsapp"
    if provider == "simulator" or provider.startswith(("simulator-", "simulator_")):
        flavour = provider[len("simulator") :].lstrip("-_")
        if flavour:
            return flavour
        return "whatsapp" if "@" in provider_chat_id else "telegram"
    return provider


def first_present(*values: str | None) -> str | None:
    """The first value that is neither None nor empty: a chain of fallbacks for a display field."""
    return next((value for value in values if value), None)


def message_body(message: Message) -> str | None:
    """The text a front-end shows for a message: its text, else its media caption."""
    return message.text if message.text is not None else message.caption
