"""Engine.IO sessions, server and client role.

The scenario tests replay, call by call, what the official Engine.IO v4 test suite
(socketio/socket.io docs/engine.io-protocol/v4-test-suite) sends, with its 300 ms / 200 ms
heartbeat; the stateful test wires a client session to a server session back to back.
"""

from __future__ import annotations

import json

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from omnirelay.protocol import (
    EngineClientSession,
    EngineClosed,
    EngineMessage,
    EngineOpened,
    EngineServerSession,
    EngineUpgraded,
    LocalProtocolError,
    RemoteProtocolError,
)

INTERVAL, TIMEOUT = 0.3, 0.2


def polling_session(now: float = 0.0) -> EngineServerSession:
    session = EngineServerSession(
        "sid1", transport="polling", now=now, ping_interval=INTERVAL, ping_timeout=TIMEOUT
    )
    session.begin_poll()
    assert session.poll_ready()
    session.end_poll()  # the handshake
    return session


def websocket_session(now: float = 0.0) -> EngineServerSession:
    session = EngineServerSession(
        "sid1", transport="websocket", now=now, ping_interval=INTERVAL, ping_timeout=TIMEOUT
    )
    session.take_outgoing()
    return session


def get(session: EngineServerSession) -> str:
    session.begin_poll()
    assert session.poll_ready(), "the GET would hang"
    return session.end_poll()


class TestHandshake:
    def test_polling_handshake_offers_the_websocket_upgrade(self) -> None:
        session = EngineServerSession(
            "abc", transport="polling", now=0, ping_interval=0.3, ping_timeout=0.2
        )
        body = get(session)
        assert body.startswith("0")
        assert json.loads(body[1:]) == {
            "sid": "abc",
            "upgrades": ["websocket"],
            "pingInterval": 300,
            "pingTimeout": 200,
            "maxPayload": 1000000,
        }

    def test_websocket_handshake_offers_no_upgrade(self) -> None:
        session = EngineServerSession("abc", transport="websocket", now=0)
        [frame] = session.take_outgoing()
        assert isinstance(frame, str)
        assert json.loads(frame[1:])["upgrades"] == []

    def test_bad_settings_are_local_errors(self) -> None:
        with pytest.raises(LocalProtocolError):
            EngineServerSession("a", transport="smoke", now=0)  # type: ignore[arg-type]
        with pytest.raises(LocalProtocolError):
            EngineServerSession("a", transport="polling", now=0, ping_interval=0)


class TestPollingMessages:
    def test_one_text_packet_goes_both_ways(self) -> None:
        session = polling_session()
        assert session.receive_post("4hello", now=0.01) == [EngineMessage("hello")]
        session.send("hello")
        assert get(session) == "4hello"

    def test_several_text_and_binary_packets_keep_their_order(self) -> None:
        session = polling_session()
        events = session.receive_post("4test1\x1e4test2\x1ebAQIDBA==", now=0.01)
        assert events == [
            EngineMessage("test1"),
            EngineMessage("test2"),
            EngineMessage(b"\x01\x02\x03\x04"),
        ]
        for event in events:
            assert isinstance(event, EngineMessage)
            session.send(event.data)
        assert get(session) == "4test1\x1e4test2\x1ebAQIDBA=="

    def test_a_waiting_get_is_answered_when_something_is_sent(self) -> None:
        session = polling_session()
        session.begin_poll()
        assert not session.poll_ready()
        session.send_frame('42["pre-encoded"]')
        assert session.poll_ready()
        assert session.end_poll() == '42["pre-encoded"]'

    def test_invalid_packet_closes_the_session(self) -> None:
        session = polling_session()
        with pytest.raises(RemoteProtocolError):
            session.receive_post("abc", now=0.01)
        assert session.closed
        with pytest.raises(RemoteProtocolError) as info:
            session.begin_poll()
        assert info.value.code == "session_closed"

    def test_duplicate_get_answers_the_first_with_close_and_ends_the_session(self) -> None:
        session = polling_session()
        session.begin_poll()
        with pytest.raises(RemoteProtocolError) as info:
            session.begin_poll()
        assert info.value.code == "duplicate_poll"
        assert session.poll_ready()
        assert session.end_poll() == "1"
        with pytest.raises(RemoteProtocolError):
            session.begin_poll()

    def test_an_aborted_get_closes_the_session(self) -> None:
        session = polling_session()
        session.begin_poll()
        assert session.abort_poll() == [EngineClosed("transport error")]
        with pytest.raises(RemoteProtocolError):
            session.begin_poll()

    def test_client_close_answers_the_waiting_get_with_noop(self) -> None:
        session = polling_session()
        session.begin_poll()
        assert session.receive_post("1", now=0.01) == [EngineClosed("transport close")]
        assert session.poll_ready()
        assert session.end_poll() == "6"
        with pytest.raises(RemoteProtocolError):
            session.begin_poll()

    def test_packets_after_a_close_in_one_payload_are_ignored(self) -> None:
        session = polling_session()
        assert session.receive_post("4a\x1e1\x1e4b", now=0) == [
            EngineMessage("a"),
            EngineClosed("transport close"),
        ]

    def test_oversized_post_closes_the_session(self) -> None:
        session = EngineServerSession("s", transport="polling", now=0, max_payload=10)
        with pytest.raises(RemoteProtocolError) as info:
            session.receive_post("4" + "x" * 10, now=0)
        assert info.value.code == "payload_too_large"
        assert session.closed

    def test_non_utf8_post_closes_the_session(self) -> None:
        session = polling_session()
        with pytest.raises(RemoteProtocolError):
            session.receive_post(b"4\xff", now=0)
        assert session.closed

    def test_a_client_ping_is_the_wrong_heartbeat_direction(self) -> None:
        session = polling_session()
        with pytest.raises(RemoteProtocolError):
            session.receive_post("2", now=0)
        assert session.closed

    def test_server_close_sends_close_on_the_next_get(self) -> None:
        session = polling_session()
        session.close("server shutting down")
        assert session.closed_reason == "server shutting down"
        assert get(session) == "1"
        with pytest.raises(RemoteProtocolError):
            session.begin_poll()
        with pytest.raises(LocalProtocolError):
            session.send("late")


class TestHeartbeat:
    def test_polling_ping_pong_three_times(self) -> None:
        session = polling_session()
        now = 0.0
        for _ in range(3):
            session.begin_poll()
            assert session.next_deadline() == pytest.approx(now + INTERVAL)
            now += INTERVAL
            assert session.handle_timeout(now) == []
            assert session.poll_ready()
            assert session.end_poll() == "2"
            assert session.receive_post("3", now=now + 0.01) == []
            now += 0.01
        assert not session.closed

    def test_polling_ping_timeout_closes_the_session(self) -> None:
        session = polling_session()
        session.handle_timeout(INTERVAL)
        assert session.next_deadline() == pytest.approx(INTERVAL + TIMEOUT)
        assert session.handle_timeout(INTERVAL + TIMEOUT) == [EngineClosed("ping timeout")]
        assert session.next_deadline() is None
        with pytest.raises(RemoteProtocolError):
            get(session)

    def test_websocket_ping_pong_and_timeout(self) -> None:
        session = websocket_session()
        session.handle_timeout(INTERVAL)
        assert session.take_outgoing() == ["2"]
        session.receive_frame("3", now=INTERVAL + 0.1)
        assert session.handle_timeout(INTERVAL + TIMEOUT + 0.05) == []
        session.handle_timeout(2 * INTERVAL + 0.1)
        assert session.take_outgoing() == ["2"]
        assert session.handle_timeout(2 * INTERVAL + 0.1 + TIMEOUT) == [
            EngineClosed("ping timeout")
        ]


class TestWebsocket:
    def test_text_and_binary_frames(self) -> None:
        session = websocket_session()
        assert session.receive_frame("4hello", now=0) == [EngineMessage("hello")]
        assert session.receive_frame(b"\x01\x02", now=0) == [EngineMessage(b"\x01\x02")]
        session.send(b"\x01\x02")
        session.send("hello")
        assert session.take_outgoing() == [b"\x01\x02", "4hello"]

    def test_invalid_frame_and_client_close_end_the_session(self) -> None:
        session = websocket_session()
        with pytest.raises(RemoteProtocolError):
            session.receive_frame("abc", now=0)
        assert session.closed
        other = websocket_session()
        assert other.receive_frame("1", now=0) == [EngineClosed("transport close")]

    def test_oversized_frame_is_refused(self) -> None:
        session = EngineServerSession("s", transport="websocket", now=0, max_payload=8)
        with pytest.raises(RemoteProtocolError):
            session.receive_frame("4" + "é" * 4, now=0)
        assert session.closed

    def test_polling_calls_on_a_websocket_session_are_refused(self) -> None:
        session = websocket_session()
        with pytest.raises(RemoteProtocolError):
            session.begin_poll()
        with pytest.raises(RemoteProtocolError):
            session.receive_post("4x", now=0)
        with pytest.raises(LocalProtocolError):
            session.end_poll()
        assert not session.closed


class TestUpgrade:
    def upgraded(self) -> EngineServerSession:
        session = polling_session()
        session.begin_upgrade(now=0.01)
        assert session.receive_probe_frame("2probe", now=0.01) == []
        assert session.take_probe_outgoing() == ["3probe"]
        assert session.receive_probe_frame("5", now=0.02) == [EngineUpgraded()]
        return session

    def test_upgrade_answers_a_later_get_with_noop(self) -> None:
        session = polling_session()
        session.begin_upgrade(now=0.01)
        session.receive_probe_frame("2probe", now=0.01)
        assert session.take_probe_outgoing() == ["3probe"]
        assert get(session) == "6"
        assert session.receive_probe_frame("5", now=0.02) == [EngineUpgraded()]
        assert session.receive_frame("4hello", now=0.03) == [EngineMessage("hello")]
        session.send("hello")
        assert session.take_outgoing() == ["4hello"]

    def test_a_get_waiting_during_the_probe_gets_noop_and_no_noop_reaches_the_websocket(
        self,
    ) -> None:
        session = polling_session()
        session.begin_poll()
        session.begin_upgrade(now=0.01)
        assert not session.poll_ready()
        session.receive_probe_frame("2probe", now=0.01)
        assert session.poll_ready()
        assert session.end_poll() == "6"
        session.receive_probe_frame("5", now=0.02)
        assert session.take_outgoing() == []

    def test_messages_queued_during_the_probe_are_not_lost(self) -> None:
        session = polling_session()
        session.begin_upgrade(now=0.01)
        session.receive_probe_frame("2probe", now=0.01)
        session.send("during probe")
        session.receive_probe_frame("5", now=0.02)
        assert session.take_outgoing() == ["4during probe"]

    def test_polling_after_the_upgrade_is_refused_without_closing(self) -> None:
        session = self.upgraded()
        with pytest.raises(RemoteProtocolError) as info:
            session.begin_poll()
        assert info.value.code == "transport_mismatch"
        assert not session.closed
        assert session.receive_frame("4hello", now=0.03) == [EngineMessage("hello")]

    def test_a_second_websocket_after_the_upgrade_is_refused_without_closing(self) -> None:
        session = self.upgraded()
        with pytest.raises(RemoteProtocolError) as info:
            session.begin_upgrade(now=0.03)
        assert info.value.code == "upgrade_refused"
        assert not session.closed

    def test_a_second_websocket_during_the_upgrade_is_refused(self) -> None:
        session = polling_session()
        session.begin_upgrade(now=0.0)
        with pytest.raises(RemoteProtocolError):
            session.begin_upgrade(now=0.0)
        assert session.upgrading

    def test_a_bad_probe_abandons_the_upgrade_and_keeps_polling(self) -> None:
        session = polling_session()
        session.begin_upgrade(now=0.0)
        with pytest.raises(RemoteProtocolError) as info:
            session.receive_probe_frame("4hello", now=0.0)
        assert info.value.code == "upgrade_failed"
        assert not session.upgrading
        assert not session.closed
        session.send("still polling")
        assert get(session) == "4still polling"

    def test_the_upgrade_times_out(self) -> None:
        session = EngineServerSession("s", transport="polling", now=0, upgrade_timeout=1.0)
        session.begin_upgrade(now=0.0)
        assert session.next_deadline() == 1.0
        session.handle_timeout(1.0)
        assert not session.upgrading
        with pytest.raises(LocalProtocolError):
            session.receive_probe_frame("2probe", now=1.0)


class TestClientSession:
    def test_websocket_open_ping_and_timeout(self) -> None:
        client = EngineClientSession(transport="websocket")
        client.send("early")
        assert client.take_outgoing() == []
        handshake = EngineServerSession("s", transport="websocket", now=0).take_outgoing()[0]
        [opened] = client.receive_frame(handshake, now=0.0)
        assert isinstance(opened, EngineOpened)
        assert opened.handshake.sid == "s"
        assert client.take_outgoing() == ["4early"]
        assert client.receive_frame("2", now=10.0) == []
        assert client.take_outgoing() == ["3"]
        assert client.next_deadline() == pytest.approx(10.0 + 25.0 + 20.0)
        assert client.handle_timeout(54.0) == []
        assert client.handle_timeout(55.0) == [EngineClosed("ping timeout")]

    def test_first_packet_must_be_the_handshake(self) -> None:
        client = EngineClientSession(transport="websocket")
        with pytest.raises(RemoteProtocolError):
            client.receive_frame("4hello", now=0)
        assert client.closed

    def test_polling_post_bodies_respect_max_payload(self) -> None:
        client = EngineClientSession(transport="polling")
        server = EngineServerSession("s", transport="polling", now=0, max_payload=20)
        client.receive_poll_response(get(server), now=0)
        for i in range(5):
            client.send(f"msg{i}")
        bodies = []
        while (body := client.take_post_body()) is not None:
            bodies.append(body)
            assert len(body) <= 20
        received = [e for b in bodies for e in server.receive_post(b, now=0)]
        assert received == [EngineMessage(f"msg{i}") for i in range(5)]

    def test_client_close_on_polling_posts_close(self) -> None:
        client = EngineClientSession(transport="polling")
        server = EngineServerSession("s", transport="polling", now=0)
        client.receive_poll_response(get(server), now=0)
        client.close()
        assert client.closed
        body = client.take_post_body()
        assert body == "1"
        assert server.receive_post(body, now=0) == [EngineClosed("transport close")]

    def test_upgrade_needs_a_probe_answer(self) -> None:
        client = EngineClientSession(transport="polling")
        with pytest.raises(LocalProtocolError):
            client.start_upgrade()
        server = EngineServerSession("s", transport="polling", now=0)
        client.receive_poll_response(get(server), now=0)
        with pytest.raises(LocalProtocolError):
            client.finish_upgrade()
        assert client.start_upgrade() == "2probe"
        with pytest.raises(RemoteProtocolError):
            client.receive_probe_frame("3nope")
        assert client.may_poll


class BackToBack(RuleBasedStateMachine):
    """A client session and a server session with a fake clock and an ideal network.

    Whatever either side sends arrives exactly once and in order as long as the session lives;
    after a close, what arrived is a prefix of what was sent. Illegal local calls raise
    LocalProtocolError and change nothing.
    """

    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.server: EngineServerSession | None = None
        self.client: EngineClientSession | None = None
        self.get_in_flight = False
        self.sent_c2s: list[str | bytes] = []
        self.sent_s2c: list[str | bytes] = []
        self.got_c2s: list[str | bytes] = []
        self.got_s2c: list[str | bytes] = []
        self.probing = False

    # -- wiring ----------------------------------------------------------------------------

    def _server_events(self, events: list[object]) -> None:
        for event in events:
            if isinstance(event, EngineMessage):
                self.got_c2s.append(event.data)

    def _client_events(self, events: list[object]) -> None:
        for event in events:
            if isinstance(event, EngineMessage):
                self.got_s2c.append(event.data)

    @property
    def alive(self) -> bool:
        return (
            self.server is not None
            and self.client is not None
            and not self.server.closed
            and not self.client.closed
        )

    @rule(transport=st.sampled_from(["polling", "websocket"]))
    @precondition(lambda self: self.server is None)
    def connect(self, transport: str) -> None:
        assert transport in ("polling", "websocket")
        self.server = EngineServerSession(
            "sid", transport=transport, now=self.now, ping_interval=INTERVAL, ping_timeout=TIMEOUT
        )
        self.client = EngineClientSession(transport=transport)
        if transport == "polling":
            self.server.begin_poll()
            self._client_events(self.client.receive_poll_response(self.server.end_poll(), self.now))
        else:
            for frame in self.server.take_outgoing():
                self._client_events(self.client.receive_frame(frame, self.now))

    @rule(data=st.text(max_size=20).filter(lambda s: "\x1e" not in s) | st.binary(max_size=20))
    @precondition(lambda self: self.alive)
    def client_sends(self, data: str | bytes) -> None:
        assert self.client is not None
        self.client.send(data)
        self.sent_c2s.append(data)

    @rule(data=st.text(max_size=20).filter(lambda s: "\x1e" not in s) | st.binary(max_size=20))
    @precondition(lambda self: self.alive)
    def server_sends(self, data: str | bytes) -> None:
        assert self.server is not None
        self.server.send(data)
        self.sent_s2c.append(data)

    @rule()
    @precondition(
        lambda self: (
            self.alive
            and self.client is not None
            and self.client.may_poll
            and not self.get_in_flight
        )
    )
    def client_gets(self) -> None:
        assert self.server is not None
        self.server.begin_poll()
        self.get_in_flight = True
        self.answer_get()

    @rule()
    @precondition(lambda self: self.get_in_flight)
    def answer_get(self) -> None:
        assert self.server is not None
        assert self.client is not None
        if self.server.poll_ready():
            body = self.server.end_poll()
            self.get_in_flight = False
            self._client_events(self.client.receive_poll_response(body, self.now))

    @rule()
    @precondition(
        lambda self: self.alive and self.client is not None and self.client.transport == "polling"
    )
    def client_posts(self) -> None:
        assert self.server is not None
        assert self.client is not None
        body = self.client.take_post_body()
        if body is not None:
            self._server_events(self.server.receive_post(body, self.now))

    @rule()
    @precondition(
        lambda self: self.alive and self.server is not None and self.server.transport == "websocket"
    )
    def websocket_flush(self) -> None:
        assert self.server is not None
        assert self.client is not None
        for frame in self.server.take_outgoing():
            self._client_events(self.client.receive_frame(frame, self.now))
        for frame in self.client.take_outgoing():
            self._server_events(self.server.receive_frame(frame, self.now))

    @rule()
    @precondition(
        lambda self: (
            self.alive
            and self.client is not None
            and self.client.transport == "polling"
            and not self.probing
            and self.server is not None
            and not self.server.upgrading
        )
    )
    def start_upgrade(self) -> None:
        assert self.server is not None
        assert self.client is not None
        probe = self.client.start_upgrade()
        self.server.begin_upgrade(self.now)
        self.server.receive_probe_frame(probe, self.now)
        [answer] = self.server.take_probe_outgoing()
        self.client.receive_probe_frame(answer)
        self.probing = True

    @rule()
    @precondition(lambda self: self.alive and self.probing and not self.get_in_flight)
    def finish_upgrade(self) -> None:
        assert self.server is not None
        assert self.client is not None
        body = self.client.take_post_body()  # the pause waits for the last POST
        if body is not None:
            self._server_events(self.server.receive_post(body, self.now))
            if not self.alive:
                return
        first, *rest = self.client.finish_upgrade()
        assert self.server.receive_probe_frame(first, self.now) == [EngineUpgraded()]
        for frame in rest:
            self._server_events(self.server.receive_frame(frame, self.now))
        self.probing = False

    @rule(step=st.floats(min_value=0.0, max_value=INTERVAL / 3))
    @precondition(lambda self: self.server is not None)
    def time_passes(self, step: float) -> None:
        assert self.server is not None
        assert self.client is not None
        self.now += step
        self.server.handle_timeout(self.now)
        self.client.handle_timeout(self.now)

    @rule(choice=st.integers(0, 4))
    @precondition(lambda self: self.server is not None)
    def illegal_call_is_a_local_error(self, choice: int) -> None:
        assert self.server is not None
        assert self.client is not None
        server, client = self.server, self.client
        calls = []
        if not server.poll_pending:
            calls.append(server.end_poll)
        if server.transport == "polling":
            calls.append(server.take_outgoing)
        if not self.probing:
            calls.append(client.finish_upgrade)
        if server.closed:
            calls.append(lambda: server.send("x"))
        if client.transport == "websocket":
            calls.append(lambda: client.receive_poll_response("4x", self.now))
        if calls:
            with pytest.raises(LocalProtocolError):
                calls[choice % len(calls)]()

    @invariant()
    def what_arrived_is_a_prefix_of_what_was_sent(self) -> None:
        assert self.got_c2s == self.sent_c2s[: len(self.got_c2s)]
        assert self.got_s2c == self.sent_s2c[: len(self.got_s2c)]

    def teardown(self) -> None:
        if not self.alive:
            return
        assert self.server is not None
        assert self.client is not None
        # Drain: everything sent must now arrive, exactly once.
        if self.probing and not self.get_in_flight:
            self.finish_upgrade()
        for _ in range(3):
            if self.server.transport == "websocket":
                self.websocket_flush()
            else:
                self.client_posts()
                if self.get_in_flight:
                    self.answer_get()
                elif self.client.may_poll:
                    self.client_gets()
        assert self.got_c2s == self.sent_c2s
        assert self.got_s2c == self.sent_s2c


TestBackToBack = BackToBack.TestCase
TestBackToBack.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)


def test_server_close_on_websocket_still_hands_out_what_was_queued() -> None:
    session = websocket_session()
    session.send("1/crm,")
    session.close("server shutting down")
    assert session.take_outgoing() == ["41/crm,"]
    assert session.closed
