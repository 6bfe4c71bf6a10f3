"""The JSON envelope of the plain-WebSocket endpoint, and the actions its clients send.

Server → client, one text frame each (docs/envelope.md):

    {"event": "new_message", "data": {…}, "timestamp": "2026-01-10T15:30:00Z", "seq": "e1:42"}

`seq` ("<epoch>:<n>", a `Cursor`) is present on durable events so a client can `resume`.

Client → server: `subscribe` / `unsubscribe` with a `filter`, `resume` from a cursor, `ping`; any
of them may carry an `id` the reply echoes. `decode_action` and `decode_envelope` raise only
`RemoteProtocolError`, with a stable `code` (the table is in docs/envelope.md) and a message that
quotes at most a short prefix of the offending input.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime
from types import MappingProxyType
from typing import Any, ClassVar, TypeAlias

import attrs

from ._errors import LocalProtocolError, RemoteProtocolError
from ._events import utc_datetime
from ._json import dumps, loads

__all__ = [
    "FILTER_KEYS",
    "MAX_FILTER_VALUES",
    "Action",
    "Cursor",
    "Envelope",
    "Filter",
    "Ping",
    "Resume",
    "Subscribe",
    "Unsubscribe",
    "decode_action",
    "decode_envelope",
    "encode_action",
    "encode_envelope",
    "error_envelope",
]

FILTER_KEYS = ("user_id", "chat_id", "session_id", "source", "event")
"""The keys a filter may constrain, in their canonical order."""

MAX_FILTER_VALUES = 1000
"""The most values one filter key may list: a filter is matched against every event."""

_MAX_SCALAR_LENGTH = 256
_MAX_ID_LENGTH = 256
_MAX_ID_INT = 2**63
_PREVIEW = 40


# --------------------------------------------------------------------------------------------
# Cursor

_EPOCH = re.compile(r"[A-Za-z0-9._~-]{1,64}")
# ASCII digits only (int() would accept "٣" or "1_000"), bounded so parsing stays cheap.
_SEQ = re.compile(r"0|[1-9][0-9]{0,19}")


def _check_epoch(_: object, __: object, value: str) -> None:
    if not isinstance(value, str) or not _EPOCH.fullmatch(value):
        raise LocalProtocolError(
            "a cursor epoch is 1-64 characters of letters, digits, '.', '_', '~' or '-'"
        )


def _check_seq(_: object, __: object, value: int) -> None:
    if type(value) is not int or value < 0:
        raise LocalProtocolError("a cursor seq is an integer >= 0")


@attrs.frozen
class Cursor:
    """A position in a tenant's event log: "<epoch>:<seq>".

    The epoch changes when the log is reset, so a cursor from another epoch cannot be resumed.
    LocalProtocolError on an invalid epoch or a negative seq.
    """

    epoch: str = attrs.field(validator=_check_epoch)
    seq: int = attrs.field(validator=_check_seq)

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Read "<epoch>:<seq>"; RemoteProtocolError(code="invalid_cursor") if malformed."""
        if isinstance(text, str):
            epoch, colon, seq = text.partition(":")
            if colon and _EPOCH.fullmatch(epoch) and _SEQ.fullmatch(seq):
                return cls(epoch, int(seq))
        raise RemoteProtocolError(
            f"a cursor is '<epoch>:<seq>', got {_preview(text)}", code="invalid_cursor"
        )

    def __str__(self) -> str:
        return f"{self.epoch}:{self.seq}"

    @classmethod
    def parse_offset(cls, text: str) -> tuple[Cursor, int | None]:
        """Read a Socket.IO recovery offset: "<epoch>:<seq>" (everything up to that event) or
        "<epoch>:<seq>.<n>" (that event's renditions 0..n only, when a namespace renders one
        event several times). RemoteProtocolError(code="invalid_cursor") if malformed."""
        if isinstance(text, str):
            head, dot, part = text.rpartition(".")
            if dot and ":" in head and "." not in head.partition(":")[2] and _SEQ.fullmatch(part):
                return cls.parse(head), int(part)
        return cls.parse(text), None


# --------------------------------------------------------------------------------------------
# Envelope


def _timestamp(value: datetime) -> str:
    try:
        value = utc_datetime(value)
    except (TypeError, ValueError) as exc:
        raise LocalProtocolError(f"envelope timestamp: {exc}") from None
    return value.isoformat(timespec="seconds").replace("+00:00", "Z")


def encode_envelope(event: str, data: Any, timestamp: datetime, *, seq: str | None = None) -> str:
    """The envelope as compact JSON text, timestamp in UTC to the second.

    LocalProtocolError if `event` is empty, `timestamp` naive, `seq` not a cursor string, or
    `data` not JSON-serialisable.
    """
    if not isinstance(event, str) or not event:
        raise LocalProtocolError("an envelope's event name must be a non-empty string")
    envelope: dict[str, Any] = {"event": event, "data": data, "timestamp": _timestamp(timestamp)}
    if seq is not None:
        try:
            Cursor.parse(seq)
        except RemoteProtocolError as exc:
            raise LocalProtocolError(f"envelope seq: {exc}") from None
        envelope["seq"] = seq
    return dumps(envelope)


def error_envelope(code: str, message: str, timestamp: datetime) -> str:
    """An `error` envelope: `{"event": "error", "data": {"code", "message"}, …}`."""
    return encode_envelope("error", {"code": code, "message": message}, timestamp)


@attrs.frozen(kw_only=True)
class Envelope:
    """One decoded server frame."""

    event: str
    data: Any = attrs.field(hash=False)
    timestamp: datetime
    seq: Cursor | None = None


_ENVELOPE_KEYS = frozenset({"event", "data", "timestamp", "seq"})


def decode_envelope(text: str | bytes) -> Envelope:
    """Parse a server frame (for clients and tests).

    RemoteProtocolError with code `invalid_json`, `not_an_object`, `invalid_envelope` (missing,
    unknown or mistyped keys, a naive or unparsable timestamp) or `invalid_cursor` (bad `seq`).
    """
    obj = _load_object(text)
    unknown = obj.keys() - _ENVELOPE_KEYS
    if unknown:
        raise RemoteProtocolError(
            f"unexpected envelope key {_preview(min(unknown))}", code="invalid_envelope"
        )
    event = obj.get("event")
    if not isinstance(event, str) or not event:
        raise RemoteProtocolError(
            "an envelope needs a non-empty string 'event'", code="invalid_envelope"
        )
    if "data" not in obj:
        raise RemoteProtocolError("an envelope needs 'data'", code="invalid_envelope")
    seq = obj.get("seq")
    return Envelope(
        event=event,
        data=obj["data"],
        timestamp=_parse_timestamp(obj.get("timestamp")),
        seq=None if seq is None else Cursor.parse(seq),
    )


def _parse_timestamp(value: Any) -> datetime:
    if isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.utcoffset() is not None:
                try:
                    return utc_datetime(parsed)
                except OverflowError:
                    pass
    raise RemoteProtocolError(
        f"an envelope timestamp is an ISO-8601 time with a zone, got {_preview(value)}",
        code="invalid_envelope",
    )


# --------------------------------------------------------------------------------------------
# Filter


def _string_set(values: str | int | Iterable[str | int] | None) -> frozenset[str] | None:
    # Values compare by their string form, so 123 and "123" are one value (and one filter).
    if values is None:
        return None
    if isinstance(values, str | int):
        return frozenset({str(values)})
    return frozenset(str(value) for value in values)


@attrs.frozen(kw_only=True)
class Filter:
    """Which events a subscription wants: every listed key must match (any of its values).

    Each key takes a value or an iterable of values, kept in string form. LocalProtocolError if
    no key is set or a key's set is empty.
    """

    user_id: frozenset[str] | None = attrs.field(default=None, converter=_string_set)
    chat_id: frozenset[str] | None = attrs.field(default=None, converter=_string_set)
    session_id: frozenset[str] | None = attrs.field(default=None, converter=_string_set)
    source: frozenset[str] | None = attrs.field(default=None, converter=_string_set)
    event: frozenset[str] | None = attrs.field(default=None, converter=_string_set)

    def __attrs_post_init__(self) -> None:
        constrained = [getattr(self, key) for key in FILTER_KEYS if getattr(self, key) is not None]
        if not constrained:
            raise LocalProtocolError("a filter must constrain at least one key")
        if not all(constrained):
            raise LocalProtocolError("a filter key cannot list zero values")

    def matches(self, values: Mapping[str, str | int | None]) -> bool:
        """Whether an event described by `values` passes; a key it lacks (or None) fails."""
        for key in FILTER_KEYS:
            wanted: frozenset[str] | None = getattr(self, key)
            if wanted is None:
                continue
            value = values.get(key)
            if value is None or str(value) not in wanted:
                return False
        return True

    def to_json(self) -> dict[str, list[str]]:
        """The filter as a JSON object (sorted values), as a client would send it."""
        result: dict[str, list[str]] = {}
        for key in FILTER_KEYS:
            wanted: frozenset[str] | None = getattr(self, key)
            if wanted is not None:
                result[key] = sorted(wanted)
        return result


# --------------------------------------------------------------------------------------------
# Actions

ActionId: TypeAlias = str | int | None


@attrs.frozen(kw_only=True)
class Subscribe:
    """Add a subscription: from now on, also deliver events that match `filter`."""

    action: ClassVar[str] = "subscribe"

    filter: Filter
    id: ActionId = None


@attrs.frozen(kw_only=True)
class Unsubscribe:
    """Remove the subscription with an equal `filter`."""

    action: ClassVar[str] = "unsubscribe"

    filter: Filter
    id: ActionId = None


@attrs.frozen(kw_only=True)
class Resume:
    """Replay the durable events after `since`, then continue live."""

    action: ClassVar[str] = "resume"

    since: Cursor
    id: ActionId = None


@attrs.frozen(kw_only=True)
class Ping:
    """Ask for a `pong`; keeps intermediaries from closing an idle connection."""

    action: ClassVar[str] = "ping"

    id: ActionId = None


Action: TypeAlias = Subscribe | Unsubscribe | Resume | Ping

_ACTION_FIELDS: Mapping[str, frozenset[str]] = MappingProxyType(
    {
        "subscribe": frozenset({"action", "id", "filter"}),
        "unsubscribe": frozenset({"action", "id", "filter"}),
        "resume": frozenset({"action", "id", "since"}),
        "ping": frozenset({"action", "id"}),
    }
)


def encode_action(action: Action) -> str:
    """The action as compact JSON text, as a client sends it."""
    obj: dict[str, Any] = {"action": action.action}
    if action.id is not None:
        obj["id"] = action.id
    match action:
        case Subscribe() | Unsubscribe():
            obj["filter"] = action.filter.to_json()
        case Resume():
            obj["since"] = str(action.since)
        case Ping():
            pass
    return dumps(obj)


def decode_action(text: str | bytes) -> Action:
    """Parse a client frame into an action.

    RemoteProtocolError with code `invalid_json`, `not_an_object`, `invalid_action` (no string
    "action"), `unknown_action`, `unexpected_field`, `invalid_id`, `invalid_filter` or
    `invalid_cursor`.
    """
    obj = _load_object(text)
    name = obj.get("action")
    if not isinstance(name, str):
        raise RemoteProtocolError("an action needs a string 'action' field", code="invalid_action")
    allowed = _ACTION_FIELDS.get(name)
    if allowed is None:
        raise RemoteProtocolError(
            f"unknown action {_preview(name)}; expected one of {', '.join(_ACTION_FIELDS)}",
            code="unknown_action",
        )
    unexpected = obj.keys() - allowed
    if unexpected:
        raise RemoteProtocolError(
            f"unexpected field {_preview(min(unexpected))} in a {name} action",
            code="unexpected_field",
        )
    action_id = _action_id(obj.get("id"))
    match name:
        case "subscribe":
            return Subscribe(filter=_decode_filter(obj.get("filter")), id=action_id)
        case "unsubscribe":
            return Unsubscribe(filter=_decode_filter(obj.get("filter")), id=action_id)
        case "resume":
            since = obj.get("since")
            if not isinstance(since, str):
                raise RemoteProtocolError(
                    "resume needs 'since': '<epoch>:<seq>'", code="invalid_cursor"
                )
            return Resume(since=Cursor.parse(since), id=action_id)
        case _:
            return Ping(id=action_id)


def _action_id(value: Any) -> ActionId:
    if value is None:
        return None
    if type(value) is int and -_MAX_ID_INT <= value < _MAX_ID_INT:
        return value
    if type(value) is str and len(value) <= _MAX_ID_LENGTH and _is_utf8(value):
        return value
    raise RemoteProtocolError(
        f"an action 'id' is a string of at most {_MAX_ID_LENGTH} characters or a 64-bit "
        f"integer, got {_preview(value)}",
        code="invalid_id",
    )


def _decode_filter(value: Any) -> Filter:
    if not isinstance(value, dict):
        raise _filter_error(f"'filter' must be an object, got {_preview(value)}")
    if not value:
        raise _filter_error("'filter' must constrain at least one key")
    values: dict[str, frozenset[str]] = {}
    for key, item in value.items():
        if key not in FILTER_KEYS:
            raise _filter_error(
                f"unknown filter key {_preview(key)}; expected one of {', '.join(FILTER_KEYS)}"
            )
        items = item if isinstance(item, list) else [item]
        if not items:
            raise _filter_error(f"filter {key!r} lists no values")
        if len(items) > MAX_FILTER_VALUES:
            raise _filter_error(f"filter {key!r} lists more than {MAX_FILTER_VALUES} values")
        values[key] = frozenset(_filter_scalar(key, scalar) for scalar in items)
    return Filter(**values)


def _filter_scalar(key: str, value: Any) -> str:
    # bool is an int subclass and floats lose precision: neither is an id.
    if type(value) is int:
        return str(value)
    if type(value) is str and 0 < len(value) <= _MAX_SCALAR_LENGTH and _is_utf8(value):
        return value
    raise _filter_error(
        f"filter {key!r} values are non-empty strings (at most {_MAX_SCALAR_LENGTH} characters) "
        f"or integers, got {_preview(value)}"
    )


def _filter_error(message: str) -> RemoteProtocolError:
    return RemoteProtocolError(message, code="invalid_filter")


# --------------------------------------------------------------------------------------------
# Shared


def _load_object(text: str | bytes) -> dict[str, Any]:
    if not isinstance(text, str | bytes):
        raise RemoteProtocolError(
            f"expected JSON text, got {type(text).__name__}", code="invalid_json"
        )
    obj = loads(text)
    if not isinstance(obj, dict):
        raise RemoteProtocolError(
            f"expected a JSON object, got {type(obj).__name__}", code="not_an_object"
        )
    return obj


def _is_utf8(value: str) -> bool:
    # The stdlib fallback parser lets lone surrogates through; they could never be echoed back.
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _preview(value: object) -> str:
    text = repr(value)
    return text if len(text) <= _PREVIEW else text[:_PREVIEW] + "…"
