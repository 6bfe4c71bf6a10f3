"""omnirelay's protocol layer: wire formats and state machines, with no I/O.

Sans-IO in the manner of h11 and wsproto: objects are fed bytes or text and the caller's clock,
and answer with events and with data to send. Nothing here imports trio, opens a socket or
knows about the engine; tests/protocol/test_isolation.py holds it to that.

Errors: `LocalProtocolError` (the caller misused an object) and `RemoteProtocolError` (the peer
sent something invalid), both `ProtocolError`. Arbitrary input raises only the latter.
"""

from __future__ import annotations

from ._dialect_base import Dialect as Dialect
from ._dialect_base import Rendition as Rendition
from ._dialects import DialectRegistry as DialectRegistry
from ._dialects import builtin_dialects as builtin_dialects
from ._engineio import RECORD_SEPARATOR as RECORD_SEPARATOR
from ._engineio import EnginePacket as EnginePacket
from ._engineio import EnginePacketType as EnginePacketType
from ._engineio import Handshake as Handshake
from ._engineio import decode_engine_packet as decode_engine_packet
from ._engineio import decode_engine_payload as decode_engine_payload
from ._engineio import encode_engine_packet as encode_engine_packet
from ._engineio import encode_engine_payload as encode_engine_payload
from ._engineio_client import EngineClientSession as EngineClientSession
from ._engineio_session import EngineClosed as EngineClosed
from ._engineio_session import EngineEvent as EngineEvent
from ._engineio_session import EngineMessage as EngineMessage
from ._engineio_session import EngineOpened as EngineOpened
from ._engineio_session import EngineServerSession as EngineServerSession
from ._engineio_session import EngineUpgraded as EngineUpgraded
from ._engineio_session import Transport as Transport
from ._envelope import FILTER_KEYS as FILTER_KEYS
from ._envelope import MAX_FILTER_VALUES as MAX_FILTER_VALUES
from ._envelope import Action as Action
from ._envelope import Cursor as Cursor
from ._envelope import Envelope as Envelope
from ._envelope import Filter as Filter
from ._envelope import Ping as Ping
from ._envelope import Resume as Resume
from ._envelope import Subscribe as Subscribe
from ._envelope import Unsubscribe as Unsubscribe
from ._envelope import decode_action as decode_action
from ._envelope import decode_envelope as decode_envelope
from ._envelope import encode_action as encode_action
from ._envelope import encode_envelope as encode_envelope
from ._envelope import error_envelope as error_envelope
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import ProtocolError as ProtocolError
from ._errors import RemoteProtocolError as RemoteProtocolError
from ._events import EVENT_TYPES as EVENT_TYPES
from ._events import ChatCreated as ChatCreated
from ._events import ChatKind as ChatKind
from ._events import ChatRef as ChatRef
from ._events import ChatUpdated as ChatUpdated
from ._events import ContactUpdated as ContactUpdated
from ._events import DeliveryState as DeliveryState
from ._events import Event as Event
from ._events import EventBase as EventBase
from ._events import Media as Media
from ._events import Message as Message
from ._events import MessageDeleted as MessageDeleted
from ._events import MessageEdited as MessageEdited
from ._events import MessageKind as MessageKind
from ._events import MessageReaction as MessageReaction
from ._events import MessageReceived as MessageReceived
from ._events import MessageSent as MessageSent
from ._events import MessageStatus as MessageStatus
from ._events import Party as Party
from ._events import PresenceState as PresenceState
from ._events import PresenceUpdated as PresenceUpdated
from ._events import ProviderRaw as ProviderRaw
from ._events import SessionQR as SessionQR
from ._events import SessionState as SessionState
from ._events import SessionStatus as SessionStatus
from ._events import event_from_json as event_from_json
from ._events import event_to_json as event_to_json
from ._records import ChatRecord as ChatRecord
from ._records import ContactRecord as ContactRecord
from ._records import MessageRecord as MessageRecord
from ._records import RenderContext as RenderContext
from ._records import SessionRecord as SessionRecord
from ._redact import redact_provider_payload as redact_provider_payload
from ._socketio import RESERVED_EVENTS as RESERVED_EVENTS
from ._socketio import SocketPacket as SocketPacket
from ._socketio import SocketPacketDecoder as SocketPacketDecoder
from ._socketio import SocketPacketType as SocketPacketType
from ._socketio import encode_event_frame as encode_event_frame
from ._socketio import encode_socket_packet as encode_socket_packet
from ._socketio_connection import AckReceived as AckReceived
from ._socketio_connection import Connected as Connected
from ._socketio_connection import ConnectRefused as ConnectRefused
from ._socketio_connection import ConnectRequested as ConnectRequested
from ._socketio_connection import Disconnected as Disconnected
from ._socketio_connection import EventReceived as EventReceived
from ._socketio_connection import SocketClientConnection as SocketClientConnection
from ._socketio_connection import SocketEvent as SocketEvent
from ._socketio_connection import SocketServerConnection as SocketServerConnection

__all__ = [
    "EVENT_TYPES",
    "FILTER_KEYS",
    "MAX_FILTER_VALUES",
    "RECORD_SEPARATOR",
    "RESERVED_EVENTS",
    "AckReceived",
    "Action",
    "ChatCreated",
    "ChatKind",
    "ChatRecord",
    "ChatRef",
    "ChatUpdated",
    "ConnectRefused",
    "ConnectRequested",
    "Connected",
    "ContactRecord",
    "ContactUpdated",
    "Cursor",
    "DeliveryState",
    "Dialect",
    "DialectRegistry",
    "Disconnected",
    "EngineClientSession",
    "EngineClosed",
    "EngineEvent",
    "EngineMessage",
    "EngineOpened",
    "EnginePacket",
    "EnginePacketType",
    "EngineServerSession",
    "EngineUpgraded",
    "Envelope",
    "Event",
    "EventBase",
    "EventReceived",
    "Filter",
    "Handshake",
    "LocalProtocolError",
    "Media",
    "Message",
    "MessageDeleted",
    "MessageEdited",
    "MessageKind",
    "MessageReaction",
    "MessageReceived",
    "MessageRecord",
    "MessageSent",
    "MessageStatus",
    "Party",
    "Ping",
    "PresenceState",
    "PresenceUpdated",
    "ProtocolError",
    "ProviderRaw",
    "RemoteProtocolError",
    "RenderContext",
    "Rendition",
    "Resume",
    "SessionQR",
    "SessionRecord",
    "SessionState",
    "SessionStatus",
    "SocketClientConnection",
    "SocketEvent",
    "SocketPacket",
    "SocketPacketDecoder",
    "SocketPacketType",
    "SocketServerConnection",
    "Subscribe",
    "Transport",
    "Unsubscribe",
    "builtin_dialects",
    "decode_action",
    "decode_engine_packet",
    "decode_engine_payload",
    "decode_envelope",
    "encode_action",
    "encode_engine_packet",
    "encode_engine_payload",
    "encode_envelope",
    "encode_event_frame",
    "encode_socket_packet",
    "error_envelope",
    "event_from_json",
    "event_to_json",
    "redact_provider_payload",
]
