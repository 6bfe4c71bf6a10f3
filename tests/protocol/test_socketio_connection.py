"""Socket.IO namespace state, server and client role.

The server scenarios follow the official Socket.IO v5 test suite (its conformance app: `/`
and `/custom` emit `auth` with the CONNECT payload, `message` is answered `message-back`,
`message-with-ack` acked with the same args) minus the Engine.IO framing, which
test_engineio_session.py covers.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import Bundle, RuleBasedStateMachine, invariant, precondition, rule

from omnirelay.protocol import (
    AckReceived,
    Connected,
    ConnectRefused,
    ConnectRequested,
    Disconnected,
    EventReceived,
    LocalProtocolError,
    RemoteProtocolError,
    SocketClientConnection,
    SocketEvent,
    SocketServerConnection,
)

KNOWN = {"/", "/custom"}


class ConformanceApp:
    """What the official suite expects of a server, on top of SocketServerConnection."""

    def __init__(self) -> None:
        self.conn = SocketServerConnection()
        self.count = 0

    def feed(self, *messages: str | bytes) -> list[str | bytes]:
        out: list[str | bytes] = []
        for message in messages:
            for event in self.conn.receive(message):
                out.extend(self.handle(event))
        return out

    def handle(self, event: SocketEvent) -> list[str | bytes]:
        if isinstance(event, ConnectRequested):
            if event.namespace not in KNOWN:
                return self.conn.reject(event.namespace, "Invalid namespace")
            self.count += 1
            out = self.conn.accept(event.namespace, f"socket{self.count}")
            frames, _ = self.conn.emit(event.namespace, "auth", [event.auth or {}])
            return out + frames
        if isinstance(event, EventReceived):
            if event.name == "message":
                return self.conn.emit(event.namespace, "message-back", event.args)[0]
            if event.name == "message-with-ack" and event.ack_id is not None:
                return self.conn.ack(event.namespace, event.ack_id, event.args)
        return []


def test_connect_to_main_namespace_then_auth_event_follows_the_reply() -> None:
    app = ConformanceApp()
    reply, auth = app.feed("0")
    assert isinstance(reply, str)
    assert reply.startswith("0")
    assert json.loads(reply[1:]) == {"sid": "socket1"}
    assert auth == '2["auth",{}]'


def test_connect_with_a_payload() -> None:
    app = ConformanceApp()
    _, auth = app.feed('0{"token":"123"}')
    assert auth == '2["auth",{"token":"123"}]'


@pytest.mark.parametrize("connect", ["0/custom,", "0/custom", '0/custom,{"token":"abc"}'])
def test_connect_to_a_custom_namespace(connect: str) -> None:
    app = ConformanceApp()
    reply, auth = app.feed(connect)
    assert reply == '0/custom,{"sid":"socket1"}'
    assert auth == (
        '2/custom,["auth",{"token":"abc"}]' if "token" in connect else '2/custom,["auth",{}]'
    )


def test_unknown_namespace_is_refused_with_invalid_namespace() -> None:
    app = ConformanceApp()
    assert app.feed("0/random") == ['4/random,{"message":"Invalid namespace"}']
    assert app.conn.connected == {}


def test_refusal_can_carry_data() -> None:
    conn = SocketServerConnection()
    conn.receive_text('0/crm,{"token":"bad"}')
    assert conn.reject("/crm", "invalid token", {"code": "token_expired"}) == [
        '4/crm,{"message":"invalid token","data":{"code":"token_expired"}}'
    ]


def test_invalid_handshake_is_a_remote_error() -> None:
    with pytest.raises(RemoteProtocolError):
        ConformanceApp().feed("abc")


def test_leaving_the_main_namespace_keeps_the_connection() -> None:
    app = ConformanceApp()
    app.feed("0")
    assert app.conn.receive_text("1") == [Disconnected("/")]
    assert app.conn.connected == {}
    assert app.feed("0")[0] == '0{"sid":"socket2"}'


def test_connect_then_leave_a_custom_namespace() -> None:
    app = ConformanceApp()
    app.feed("0")
    app.feed("0/custom")
    assert app.feed("1/custom", '2["message","message to main namespace"]') == [
        '2["message-back","message to main namespace"]'
    ]


def test_plain_event_and_ack() -> None:
    app = ConformanceApp()
    app.feed("0")
    assert app.feed('2["message",1,"2",{"3":[true]}]') == ['2["message-back",1,"2",{"3":[true]}]']
    assert app.feed('2456["message-with-ack",1,"2",{"3":[false]}]') == ['3456[1,"2",{"3":[false]}]']


def test_binary_event_and_binary_ack_are_echoed() -> None:
    app = ConformanceApp()
    app.feed("0")
    out = app.feed(
        '52-["message",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    )
    assert out == [
        '52-["message-back",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    ]
    out = app.feed(
        '52-789["message-with-ack",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    )
    assert out == [
        '62-789[{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]',
        b"\x01\x02\x03",
        b"\x04\x05\x06",
    ]


@pytest.mark.parametrize("bad", ["abc", "2{}", '2abc["message-with-ack",1,"2",{"3":[false]}]'])
def test_invalid_formats_are_remote_errors(bad: str) -> None:
    app = ConformanceApp()
    app.feed("0")
    with pytest.raises(RemoteProtocolError):
        app.feed(bad)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("0", "0"),  # second CONNECT while connected
        ("0/custom", "0/custom"),
        ("0", '2/custom,["message"]'),  # event for a namespace not joined
        ("0", "1/custom"),
        ("0", '4{"message":"nope"}'),  # clients do not send CONNECT_ERROR
    ],
)
def test_state_violations_are_remote_errors(first: str, second: str) -> None:
    conn = SocketServerConnection()
    conn.receive_text(first)
    if conn.pending:
        conn.accept(next(iter(conn.pending)), "sid")
    with pytest.raises(RemoteProtocolError):
        conn.receive_text(second)


def test_a_connect_still_pending_gets_no_events() -> None:
    conn = SocketServerConnection()
    conn.receive_text("0/crm,")
    with pytest.raises(RemoteProtocolError):
        conn.receive_text('2/crm,["early"]')


def test_server_acks_emits_and_disconnects() -> None:
    conn = SocketServerConnection()
    conn.receive_text("0")
    conn.accept("/", "s1", pid="p1")
    frames, ack_id = conn.emit("/", "ping", ["x"], ack=True)
    assert frames == ['20["ping","x"]']
    assert ack_id == 0
    assert conn.receive_text('30["pong"]') == [AckReceived("/", 0, ("pong",))]
    assert conn.receive_text('30["again"]') == []  # an ack is delivered once
    assert conn.receive_text('399["unknown"]') == []
    _, ack_id = conn.emit("/", "late", ack=True)
    assert ack_id is not None
    conn.forget_ack("/", ack_id)
    assert conn.receive_text(f'3{ack_id}["too late"]') == []
    assert conn.disconnect("/") == ["1"]
    with pytest.raises(LocalProtocolError):
        conn.emit("/", "gone")


def test_local_misuse_is_a_local_error() -> None:
    conn = SocketServerConnection()
    with pytest.raises(LocalProtocolError):
        conn.accept("/", "sid")
    with pytest.raises(LocalProtocolError):
        conn.reject("/", "no")
    with pytest.raises(LocalProtocolError):
        conn.emit("/", "x")
    with pytest.raises(LocalProtocolError):
        conn.ack("/", 1)
    conn.receive_text("0")
    conn.accept("/", "sid")
    conn.receive_text('21["q"]')
    conn.ack("/", 1, ["answer"])
    with pytest.raises(LocalProtocolError):
        conn.ack("/", 1, ["twice"])
    with pytest.raises(LocalProtocolError):
        conn.emit("/", "disconnect")


def test_accept_reply_carries_pid_for_recovery() -> None:
    conn = SocketServerConnection()
    conn.receive_text("0/crm,")
    assert conn.accept("/crm", "s", pid="p") == ['0/crm,{"sid":"s","pid":"p"}']


class TestClient:
    def test_connect_accept_and_events(self) -> None:
        client = SocketClientConnection()
        assert client.connect("/crm", {"token": "t"}) == ['0/crm,{"token":"t"}']
        with pytest.raises(LocalProtocolError):
            client.connect("/crm")
        assert client.receive_text('0/crm,{"sid":"abc","pid":"p"}') == [
            Connected("/crm", "abc", "p")
        ]
        assert client.receive_text('2/crm,["messages.upsert",{"x":1}]') == [
            EventReceived("/crm", "messages.upsert", ({"x": 1},))
        ]
        assert client.receive_text('2["for /, not joined"]') == []
        frames, _ack_id = client.emit("/crm", "q", [1], ack=True)
        assert frames == ['2/crm,0["q",1]']
        assert client.receive_text('3/crm,0["a"]') == [AckReceived("/crm", 0, ("a",))]
        assert client.receive_text("1/crm,") == [Disconnected("/crm")]
        assert client.connected == {}

    def test_refused_connect(self) -> None:
        client = SocketClientConnection()
        client.connect("/evo-instance")
        assert client.receive_text('4/evo-instance,{"message":"Invalid namespace"}') == [
            ConnectRefused("/evo-instance", {"message": "Invalid namespace"})
        ]
        assert list(client.namespaces_to_reconnect()) == []

    @pytest.mark.parametrize("bad", ['0{"sid":"x"}', '0/crm,{"nosid":1}', '4{"message":"x"}'])
    def test_unsolicited_connect_replies_are_remote_errors(self, bad: str) -> None:
        client = SocketClientConnection()
        if "crm" in bad:
            client.connect("/crm")
        with pytest.raises(RemoteProtocolError):
            client.receive_text(bad)


Args = list[Any]
json_args = st.lists(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-1000, 1000),
        st.text(max_size=8),
        st.binary(max_size=4),
    ),
    max_size=3,
)


class NamespacesBackToBack(RuleBasedStateMachine):
    """A client connection and a server connection exchanging everything directly.

    Events on a connected namespace arrive once, in order, on the other side; every ack
    asked for and answered arrives once with its args; leaving works from either side.
    """

    namespaces = Bundle("namespaces")

    def __init__(self) -> None:
        super().__init__()
        self.client = SocketClientConnection()
        self.server = SocketServerConnection()
        self.sent: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        self.got: dict[tuple[str, str], list[tuple[Any, ...]]] = {}
        self.owed_by_server: list[tuple[str, int]] = []
        self.acks_expected: dict[tuple[str, str, int], tuple[Any, ...]] = {}
        self.acks_got: dict[tuple[str, str, int], tuple[Any, ...]] = {}

    def to_server(self, messages: list[str | bytes]) -> None:
        for message in messages:
            for event in self.server.receive(message):
                self.record("server", event)

    def to_client(self, messages: list[str | bytes]) -> None:
        for message in messages:
            for event in self.client.receive(message):
                self.record("client", event)

    def record(self, side: str, event: SocketEvent) -> None:
        if isinstance(event, EventReceived):
            self.got.setdefault((side, event.namespace), []).append((event.name, *event.args))
            if side == "server" and event.ack_id is not None:
                self.owed_by_server.append((event.namespace, event.ack_id))
        elif isinstance(event, AckReceived):
            key = (side, event.namespace, event.ack_id)
            assert key not in self.acks_got
            self.acks_got[key] = event.args

    @rule(target=namespaces, name=st.sampled_from(["/", "/crm", "/a"]))
    def namespace(self, name: str) -> str:
        return name

    @rule(
        namespace=namespaces, auth=st.none() | st.fixed_dictionaries({"token": st.text(max_size=5)})
    )
    def client_connects(self, namespace: str, auth: dict[str, str] | None) -> None:
        if namespace in self.client.connected or namespace in self.server.pending:
            with pytest.raises(LocalProtocolError):
                self.client.connect(namespace, auth)
            return
        messages = self.client.connect(namespace, auth)
        for message in messages:
            assert self.server.receive(message) == [ConnectRequested(namespace, auth)]

    @rule(namespace=namespaces, accept=st.booleans())
    def server_answers(self, namespace: str, accept: bool) -> None:
        if namespace not in self.server.pending:
            with pytest.raises(LocalProtocolError):
                self.server.accept(namespace, "sid")
            return
        if accept:
            self.to_client(self.server.accept(namespace, f"sid{namespace}"))
            assert self.client.connected[namespace] == f"sid{namespace}"
        else:
            self.to_client(self.server.reject(namespace, "no"))
            assert namespace not in self.client.connected

    @rule(namespace=namespaces, args=json_args, ack=st.booleans(), from_client=st.booleans())
    def emit(self, namespace: str, args: Args, ack: bool, from_client: bool) -> None:
        sender = self.client if from_client else self.server
        side = "server" if from_client else "client"
        if namespace not in sender.connected:
            with pytest.raises(LocalProtocolError):
                sender.emit(namespace, "e", args)
            return
        messages, ack_id = sender.emit(namespace, "e", args, ack=ack)
        self.sent.setdefault((side, namespace), []).append(("e", *args))
        if ack_id is not None and not from_client:
            self.acks_expected[("server", namespace, ack_id)] = ("answer", ack_id)
            # the client answers at once
            messages_back: list[str | bytes] = []
            self.to_client(messages)
            messages_back = self.client.ack(namespace, ack_id, ["answer", ack_id])
            self.to_server(messages_back)
            return
        (self.to_server if from_client else self.to_client)(messages)

    @rule()
    @precondition(lambda self: bool(self.owed_by_server))
    def server_acks(self) -> None:
        namespace, ack_id = self.owed_by_server.pop(0)
        if namespace not in self.server.connected:
            return
        self.acks_expected[("client", namespace, ack_id)] = (ack_id, b"\x00")
        self.to_client(self.server.ack(namespace, ack_id, [ack_id, b"\x00"]))

    @rule(namespace=namespaces, from_client=st.booleans())
    def leave(self, namespace: str, from_client: bool) -> None:
        sender = self.client if from_client else self.server
        if namespace not in sender.connected:
            return
        messages = sender.disconnect(namespace)
        (self.to_server if from_client else self.to_client)(messages)
        assert namespace not in self.client.connected
        assert namespace not in self.server.connected
        self.owed_by_server = [o for o in self.owed_by_server if o[0] != namespace]

    @invariant()
    def events_arrive_once_in_order(self) -> None:
        assert self.got == self.sent

    @invariant()
    def acks_arrive_once_with_their_args(self) -> None:
        for key, args in self.acks_got.items():
            assert self.acks_expected[key] == args

    @invariant()
    def both_sides_agree_on_namespaces(self) -> None:
        assert self.client.connected == self.server.connected


TestNamespacesBackToBack = NamespacesBackToBack.TestCase
TestNamespacesBackToBack.settings = settings(
    max_examples=150, stateful_step_count=30, deadline=None
)
