"""omnirelay's protocol layer: wire formats and state machines, with no I/O.

Sans-IO in the manner of h11 and wsproto: objects are fed bytes or text and the caller's clock,
and answer with events and with data to send. Nothing here imports trio, opens a socket or
knows about the engine; tests/protocol/test_isolation.py holds it to that.

Errors: `LocalProtocolError` (the caller misused an object) and `RemoteProtocolError` (the peer
sent something invalid), both `ProtocolError`. Arbitrary input raises only the latter.
"""

from __future__ import annotations

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
from ._errors import LocalProtocolError as LocalProtocolError
from ._errors import ProtocolError as ProtocolError
from ._errors import RemoteProtocolError as RemoteProtocolError
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
    "RECORD_SEPARATOR",
    "RESERVED_EVENTS",
    "AckReceived",
    "ConnectRefused",
    "ConnectRequested",
    "Connected",
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
    "EventReceived",
    "Handshake",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "SocketClientConnection",
    "SocketEvent",
    "SocketPacket",
    "SocketPacketDecoder",
    "SocketPacketType",
    "SocketServerConnection",
    "Transport",
    "decode_engine_packet",
    "decode_engine_payload",
    "encode_engine_packet",
    "encode_engine_payload",
    "encode_event_frame",
    "encode_socket_packet",
]
