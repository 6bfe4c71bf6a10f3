from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.protocol import (
    EnginePacket,
    EnginePacketType,
    Handshake,
    LocalProtocolError,
    ProtocolError,
    RemoteProtocolError,
    decode_engine_packet,
    decode_engine_payload,
    encode_engine_packet,
    encode_engine_payload,
)

T = EnginePacketType

# Byte strings from docs/engine.io-protocol/v4-current.md and the v4 test suite.
GOLDEN_PACKETS = [
    ('0{"sid":"abc"}', EnginePacket(T.OPEN, '{"sid":"abc"}')),
    ("1", EnginePacket(T.CLOSE)),
    ("2", EnginePacket(T.PING)),
    ("2probe", EnginePacket(T.PING, "probe")),
    ("3", EnginePacket(T.PONG)),
    ("3probe", EnginePacket(T.PONG, "probe")),
    ("4hello", EnginePacket(T.MESSAGE, "hello")),
    ("4€", EnginePacket(T.MESSAGE, "€")),
    ("5", EnginePacket(T.UPGRADE)),
    ("6", EnginePacket(T.NOOP)),
    (b"\x01\x02\x03\x04", EnginePacket(T.MESSAGE, b"\x01\x02\x03\x04")),
]


@pytest.mark.parametrize(("wire", "packet"), GOLDEN_PACKETS)
def test_every_packet_type_matches_the_specification(
    wire: str | bytes, packet: EnginePacket
) -> None:
    assert decode_engine_packet(wire) == packet
    assert encode_engine_packet(packet) == wire


def test_polling_payloads_match_the_specification() -> None:
    assert decode_engine_payload("4hello\x1e2\x1e4world") == [
        EnginePacket(T.MESSAGE, "hello"),
        EnginePacket(T.PING),
        EnginePacket(T.MESSAGE, "world"),
    ]
    assert decode_engine_payload("4hello\x1ebAQIDBA==") == [
        EnginePacket(T.MESSAGE, "hello"),
        EnginePacket(T.MESSAGE, b"\x01\x02\x03\x04"),
    ]
    assert encode_engine_payload(["4hello", b"\x01\x02\x03\x04"]) == "4hello\x1ebAQIDBA=="
    assert encode_engine_payload(["4test1", "4test2", "4test3"]) == "4test1\x1e4test2\x1e4test3"


def test_handshake_has_exactly_the_five_keys() -> None:
    handshake = Handshake("lv_VI97HAXpY6yYWAAAC", ("websocket",), 25000, 5000, 1000000)
    assert handshake.encode() == (
        '0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],'
        '"pingInterval":25000,"pingTimeout":5000,"maxPayload":1000000}'
    )
    assert Handshake.decode(handshake.encode()[1:]) == handshake


@pytest.mark.parametrize(
    "data",
    [
        "",
        "[]",
        '{"sid":""}',
        '{"sid":"a","upgrades":"websocket","pingInterval":1,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"a","upgrades":[],"pingInterval":true,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"a","upgrades":[],"pingInterval":0,"pingTimeout":1,"maxPayload":1}',
        '{"sid":"a","upgrades":[],"pingInterval":1,"pingTimeout":1}',
    ],
)
def test_invalid_handshakes_are_remote_errors(data: str) -> None:
    with pytest.raises(RemoteProtocolError):
        Handshake.decode(data)


@pytest.mark.parametrize("wire", ["", "abc", "7", "9x", "b", "x4hello"])
def test_invalid_packets_are_remote_errors(wire: str) -> None:
    with pytest.raises(RemoteProtocolError) as info:
        decode_engine_packet(wire)
    assert info.value.code == "invalid_packet"


@pytest.mark.parametrize("body", ["", "abc", "4a\x1e", "b!!!", "bAQI", "4ok\x1ebAQIDBA"])
def test_invalid_payloads_are_remote_errors(body: str) -> None:
    with pytest.raises(RemoteProtocolError):
        decode_engine_payload(body)


def test_encoding_what_the_protocol_cannot_carry_is_a_local_error() -> None:
    with pytest.raises(LocalProtocolError):
        encode_engine_packet(EnginePacket(T.PING, b"\x00"))
    with pytest.raises(LocalProtocolError):
        encode_engine_payload([])
    with pytest.raises(LocalProtocolError):
        encode_engine_payload(["4a\x1eb"])


def test_protocol_error_itself_cannot_be_raised() -> None:
    with pytest.raises(TypeError):
        ProtocolError("abstract")
    assert issubclass(LocalProtocolError, ProtocolError)
    assert issubclass(RemoteProtocolError, ProtocolError)


text_packets = st.builds(
    EnginePacket,
    st.sampled_from(list(T)),
    st.text().filter(lambda s: "\x1e" not in s),
)
binary_packets = st.builds(EnginePacket, st.just(T.MESSAGE), st.binary())
packets = text_packets | binary_packets


@given(packets)
def test_packet_round_trip(packet: EnginePacket) -> None:
    assert decode_engine_packet(encode_engine_packet(packet)) == packet


@given(st.lists(packets, min_size=1, max_size=8))
def test_payload_round_trip(batch: list[EnginePacket]) -> None:
    body = encode_engine_payload([encode_engine_packet(p) for p in batch])
    assert decode_engine_payload(body) == batch


@given(st.text() | st.binary())
def test_arbitrary_frames_raise_only_remote_errors(frame: str | bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_engine_packet(frame)


@given(st.binary())
def test_arbitrary_payload_bytes_raise_only_remote_errors(body: bytes) -> None:
    with contextlib.suppress(RemoteProtocolError):
        decode_engine_payload(body)


@given(st.text())
def test_arbitrary_payloads_and_handshakes_raise_only_remote_errors(text: str) -> None:
    for decode in (decode_engine_payload, Handshake.decode):
        with contextlib.suppress(RemoteProtocolError):
            decode(text)
