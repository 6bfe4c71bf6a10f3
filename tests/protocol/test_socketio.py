from __future__ import annotations

import contextlib
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from omnirelay.protocol import (
    LocalProtocolError,
    RemoteProtocolError,
    SocketPacket,
    SocketPacketDecoder,
    SocketPacketType,
    encode_event_frame,
    encode_socket_packet,
)

T = SocketPacketType


def decode(*parts: str | bytes) -> SocketPacket:
    decoder = SocketPacketDecoder()
    result = None
    for part in parts:
        assert result is None, "packet completed before all parts were fed"
        result = (
            decoder.receive_text(part) if isinstance(part, str) else decoder.receive_binary(part)
        )
    assert result is not None
    return result


# Every example of docs/socket.io-protocol/v5-current.md, plus packets of the v5 test suite.
GOLDEN: list[tuple[list[str | bytes], SocketPacket]] = [
    (["0"], SocketPacket(T.CONNECT)),
    (
        ['0/admin,{"sid":"oSO0OpakMV_3jnilAAAA"}'],
        SocketPacket(T.CONNECT, "/admin", {"sid": "oSO0OpakMV_3jnilAAAA"}),
    ),
    (
        ['4{"message":"Not authorized"}'],
        SocketPacket(T.CONNECT_ERROR, "/", {"message": "Not authorized"}),
    ),
    (['2["foo"]'], SocketPacket(T.EVENT, "/", ["foo"])),
    (['2/admin,["bar"]'], SocketPacket(T.EVENT, "/admin", ["bar"])),
    (
        ['51-["baz",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"],
        SocketPacket(T.BINARY_EVENT, "/", ["baz", b"\x01\x02\x03\x04"]),
    ),
    (
        [
            '52-/admin,["baz",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
            b"\x01\x02",
            b"\x03\x04",
        ],
        SocketPacket(T.BINARY_EVENT, "/admin", ["baz", b"\x01\x02", b"\x03\x04"]),
    ),
    (['212["foo"]'], SocketPacket(T.EVENT, "/", ["foo"], 12)),
    (['3/admin,13["bar"]'], SocketPacket(T.ACK, "/admin", ["bar"], 13)),
    (
        ['61-15["bar",{"_placeholder":true,"num":0}]', b"\x01\x02\x03\x04"],
        SocketPacket(T.BINARY_ACK, "/", ["bar", b"\x01\x02\x03\x04"], 15),
    ),
    (["1"], SocketPacket(T.DISCONNECT)),
    (["1/admin,"], SocketPacket(T.DISCONNECT, "/admin")),
    (['0{"token":"123"}'], SocketPacket(T.CONNECT, "/", {"token": "123"})),
    (['0/custom,{"token":"abc"}'], SocketPacket(T.CONNECT, "/custom", {"token": "abc"})),
    (
        ['2["message",1,"2",{"3":[true]}]'],
        SocketPacket(T.EVENT, "/", ["message", 1, "2", {"3": [True]}]),
    ),
    (
        ['2456["message-with-ack",1,"2",{"3":[false]}]'],
        SocketPacket(T.EVENT, "/", ["message-with-ack", 1, "2", {"3": [False]}], 456),
    ),
    (['3456[1,"2",{"3":[false]}]'], SocketPacket(T.ACK, "/", [1, "2", {"3": [False]}], 456)),
    (
        [
            '62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
            b"\x01\x02\x03",
            b"\x04\x05\x06",
        ],
        SocketPacket(T.BINARY_ACK, "/", [b"\x01\x02\x03", b"\x04\x05\x06"], 789),
    ),
]


@pytest.mark.parametrize(("wire", "packet"), GOLDEN)
def test_golden_packets_decode_and_encode(wire: list[str | bytes], packet: SocketPacket) -> None:
    assert decode(*wire) == packet
    assert encode_socket_packet(packet) == wire


def test_namespaces_with_and_without_trailing_comma() -> None:
    assert decode("0/custom") == SocketPacket(T.CONNECT, "/custom")
    assert decode("0/custom,") == SocketPacket(T.CONNECT, "/custom")
    assert decode("1/custom") == SocketPacket(T.DISCONNECT, "/custom")
    assert encode_socket_packet(SocketPacket(T.CONNECT, "/custom")) == ["0/custom,"]


def test_event_frames_are_complete_engineio_frames() -> None:
    assert (
        encode_event_frame("/", "whatsapp:new-message", {"a": "é😊"})
        == '42["whatsapp:new-message",{"a":"é😊"}]'
    )
    assert encode_event_frame("/crm", "x", 1, None) == '42/crm,["x",1,null]'
    with pytest.raises(LocalProtocolError):
        encode_event_frame("/", "connect")
    with pytest.raises(LocalProtocolError):
        encode_event_frame("/", "x", b"bin")
    with pytest.raises(LocalProtocolError):
        encode_event_frame("crm", "x")


def test_events_with_bytes_become_binary_events() -> None:
    wire = encode_socket_packet(SocketPacket(T.EVENT, "/", ["file", {"data": b"\x00\xff"}], 7))
    assert wire == ['51-7["file",{"data":{"_placeholder":true,"num":0}}]', b"\x00\xff"]


@pytest.mark.parametrize(
    "packet",
    [
        SocketPacket(T.EVENT, "/", []),
        SocketPacket(T.EVENT, "/", ["connect"]),
        SocketPacket(T.EVENT, "/", {"not": "a list"}),
        SocketPacket(T.ACK, "/", ["no id"]),
        SocketPacket(T.CONNECT, "/", ["not an object"]),
        SocketPacket(T.DISCONNECT, "/", {"x": 1}),
        SocketPacket(T.CONNECT_ERROR, "/", None),
        SocketPacket(T.CONNECT, "/", None, 3),
        SocketPacket(T.EVENT, "/", ["x"], -1),
        SocketPacket(T.EVENT, "no-slash", ["x"]),
    ],
)
def test_encoding_invalid_packets_is_a_local_error(packet: SocketPacket) -> None:
    with pytest.raises(LocalProtocolError):
        encode_socket_packet(packet)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "abc",  # the test suite's "4abc" is EIO message "abc"
        "7",
        "2{}",  # "42{}": payload not an array
        '2abc["message-with-ack",1]',  # "42abc[...]": bad ack id
        "2",
        "2[]",
        '2["connect"]',
        "2[true]",
        "3[1]",
        '3/nsp,["x"]',
        "1{}",
        '0["x"]',
        "4",
        "4[1]",
        '5["x"]',
        '5x-["x"]',
        '5-["x"]',
        '1-1["x"]',
        '21["x"]x',
        '299999999999999999["x"]',
        '0/nsp,{"a":1}x',
    ],
)
def test_invalid_text_packets_are_remote_errors(text: str) -> None:
    with pytest.raises(RemoteProtocolError):
        SocketPacketDecoder().receive_text(text)


def test_attachment_rules() -> None:
    decoder = SocketPacketDecoder()
    with pytest.raises(RemoteProtocolError):
        decoder.receive_binary(b"unexpected")
    with pytest.raises(RemoteProtocolError):
        decoder.receive_text('2["after failure"]')  # a failed decoder stays failed

    decoder = SocketPacketDecoder()
    assert decoder.receive_text('52-["x",{"_placeholder":true,"num":0}]') is None
    assert decoder.awaiting_attachments == 2
    with pytest.raises(RemoteProtocolError):
        decoder.receive_text('2["text while waiting"]')

    decoder = SocketPacketDecoder()
    decoder.receive_text('51-["x",{"_placeholder":true,"num":3}]')
    with pytest.raises(RemoteProtocolError):
        decoder.receive_binary(b"a")

    with pytest.raises(RemoteProtocolError):
        SocketPacketDecoder(max_attachments=2).receive_text('53-["x"]')

    zero = SocketPacketDecoder().receive_text('50-["x"]')
    assert zero == SocketPacket(T.BINARY_EVENT, "/", ["x"])


json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10)
json_values = st.recursive(
    json_scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
values_with_binary = st.recursive(
    json_scalars | st.binary(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=10,
)
namespaces = st.just("/") | st.from_regex(r"/[a-z0-9_\-]{1,10}", fullmatch=True)
ack_ids = st.none() | st.integers(0, 2**53 - 1)
event_names = st.text(max_size=12).filter(
    lambda s: (
        s
        not in {
            "connect",
            "connect_error",
            "disconnect",
            "disconnecting",
            "newListener",
            "removeListener",
        }
    )
)

packets = st.one_of(
    st.builds(
        SocketPacket,
        st.just(T.CONNECT),
        namespaces,
        st.none() | st.dictionaries(st.text(max_size=5), json_values, max_size=3),
    ),
    st.builds(SocketPacket, st.just(T.DISCONNECT), namespaces),
    st.builds(
        SocketPacket,
        st.just(T.CONNECT_ERROR),
        namespaces,
        st.text(max_size=10) | st.fixed_dictionaries({"message": st.text(max_size=10)}),
    ),
    st.builds(
        SocketPacket,
        st.just(T.EVENT),
        namespaces,
        st.tuples(event_names, st.lists(values_with_binary, max_size=3)).map(
            lambda t: [t[0], *t[1]]
        ),
        ack_ids,
    ),
    st.builds(
        SocketPacket,
        st.just(T.ACK),
        namespaces,
        st.lists(values_with_binary, max_size=3),
        st.integers(0, 2**53 - 1),
    ),
)


def normalise(packet: SocketPacket) -> SocketPacket:
    """What a decoder gives back: EVENT/ACK holding bytes arrive as their binary type."""

    def has_bytes(value: Any) -> bool:
        if isinstance(value, bytes):
            return True
        if isinstance(value, list):
            return any(has_bytes(v) for v in value)
        if isinstance(value, dict):
            return any(has_bytes(v) for v in value.values())
        return False

    if has_bytes(packet.data):
        binary = {T.EVENT: T.BINARY_EVENT, T.ACK: T.BINARY_ACK}[packet.type]
        return SocketPacket(binary, packet.namespace, packet.data, packet.id)
    return packet


@given(packets)
def test_round_trip(packet: SocketPacket) -> None:
    decoder = SocketPacketDecoder(max_attachments=1000)
    result = None
    for part in encode_socket_packet(packet):
        result = (
            decoder.receive_text(part) if isinstance(part, str) else decoder.receive_binary(part)
        )
    assert result == normalise(packet)


@given(st.lists(st.text() | st.binary(max_size=5), max_size=4))
def test_arbitrary_input_raises_only_remote_errors(parts: list[str | bytes]) -> None:
    decoder = SocketPacketDecoder()
    for part in parts:
        try:
            if isinstance(part, str):
                decoder.receive_text(part)
            else:
                decoder.receive_binary(part)
        except RemoteProtocolError:
            return


@given(
    st.sampled_from("0123456"),
    st.sampled_from(["", "1-", "2-", "x-"]),
    st.sampled_from(["", "/nsp,", "/nsp", "/"]),
    st.sampled_from(["", "12", "9" * 20, "a"]),
    json_values.map(lambda v: __import__("json").dumps(v)) | st.text(max_size=10),
)
def test_near_miss_packets_raise_only_remote_errors(
    kind: str, count: str, nsp: str, ack: str, data: str
) -> None:
    with contextlib.suppress(RemoteProtocolError):
        SocketPacketDecoder().receive_text(kind + count + nsp + ack + data)
