"""Resuming after a disconnect, on `/ws` and on Socket.IO: no gap, no duplicate, by seq."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

from omnirelay.engine._config import ServerConfig
from omnirelay.engine._ws_endpoint import EnvelopeSubscriber
from omnirelay.protocol import Cursor

from .conftest import Gateway, WsClient, create_session, gateway_config, incoming, start_gateway
from .jsclient import NodeClient, require_node


def seq_of(envelope: dict[str, Any]) -> int:
    return int(envelope["seq"].split(":")[1])


async def durable_envelopes(client: WsClient, count: int) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    while len(got) < count:
        envelope = await client.recv()
        if "seq" in envelope:
            got.append(envelope)
    return got


async def test_ws_resume_replays_what_was_missed_then_continues_live(gateway: Gateway) -> None:
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    token = gw.token("acme")
    first = await WsClient.connect(gw.ws_url(token=token))
    await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="one"))  # new_chat + new_message
    seen = await durable_envelopes(first, 2)
    last = seen[-1]["seq"]
    await first.close()

    for n in range(5):  # missed while away
        await gw.scripted.feed("wa-1", incoming(chat=f"22{n}@c.us", text=f"missed {n}"))
    again = await WsClient.connect(gw.ws_url(token=token, since=last))
    replayed = await durable_envelopes(again, 10)
    resumed = await again.recv_event("resumed")
    assert resumed["data"]["complete"] is True
    assert resumed["data"]["replayed"] == 10
    assert resumed["data"]["since"] == last
    await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="live again"))
    live = await durable_envelopes(again, 1)
    seqs = [seq_of(e) for e in seen + replayed + live]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))  # contiguous: no gap, no duplicate
    assert live[0]["data"]["text"] == "live again"
    await again.close()


async def test_ws_resume_action_with_events_flowing_meanwhile(gateway: Gateway) -> None:
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    token = gw.token("acme")
    watcher = await WsClient.connect(gw.ws_url(token=token))
    await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="start"))
    start = (await durable_envelopes(watcher, 2))[-1]["seq"]
    await watcher.close()
    for n in range(20):
        await gw.scripted.feed("wa-1", incoming(chat=f"3{n:02d}@c.us", text=f"while away {n}"))

    client = await WsClient.connect(gw.ws_url(token=token))
    got: list[dict[str, Any]] = []

    async def feed_during_resume() -> None:
        for n in range(20):
            await gw.scripted.feed("wa-1", incoming(chat=f"4{n:02d}@c.us", text=f"during {n}"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(feed_during_resume)
        await client.send({"action": "resume", "since": start, "id": "r1"})
        while True:
            envelope = await client.recv()
            if envelope["event"] == "resumed":
                assert envelope["data"]["id"] == "r1"
                break
            if "seq" in envelope:
                got.append(envelope)
    # everything fed during the resume arrives too, after the replay or live
    while len(got) < 80:
        got.extend(await durable_envelopes(client, 1))
    # Events that arrived live before the `resume` action are not sent again, so they may come
    # before the replayed ones (connect with ?since= for strict order): none missing, none twice.
    seqs = [seq_of(e) for e in got]
    first = seq_of({"seq": start}) + 1
    assert sorted(seqs) == list(range(first, first + 80))
    await client.close()


async def test_ws_resume_that_cannot_be_honoured_asks_for_a_resync(gateway: Gateway) -> None:
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    await gw.scripted.feed("wa-1", incoming(text="x"))
    client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
    epoch = gw.engine.store.epoch
    for since, reason in (("otherepoch:1", "epoch_changed"), (f"{epoch}:999", "unknown_seq")):
        await client.send({"action": "resume", "since": since})
        answer = await client.recv_event("resync_required")
        assert answer["data"]["reason"] == reason
        assert answer["data"]["seq"] == f"{epoch}:2"
    await gw.engine.store.prune("acme", keep_count=1)
    await client.send({"action": "resume", "since": f"{epoch}:0"})
    assert (await client.recv_event("resync_required"))["data"]["reason"] == "too_old"
    await client.close()


async def test_ws_since_must_be_a_cursor(gateway: Gateway) -> None:
    import pytest
    import websockets.exceptions

    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        await WsClient.connect(gateway.ws_url(token=gateway.token("acme"), since="nope"))
    assert info.value.response.status_code == 400
    assert b"invalid_cursor" in info.value.response.body


async def test_ws_resume_works_across_a_gateway_restart(tmp_path: Path) -> None:
    config = gateway_config(tmp_path)
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="before"))
        last = (await durable_envelopes(client, 2))[-1]["seq"]
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="missed before the restart"))
        nursery.cancel_scope.cancel()
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme"), since=last))
        [missed] = await durable_envelopes(client, 1)
        assert missed["data"]["text"] == "missed before the restart"
        assert (await client.recv_event("resumed"))["data"]["complete"] is True
        nursery.cancel_scope.cancel()


async def test_socketio_client_recovers_its_session_across_a_restart(tmp_path: Path) -> None:
    """The unmodified socket.io-client's own connection-state recovery, with the gateway
    restarted in between on the same port and database: same sid, every missed event once,
    in order (checked by the offsets the events carry)."""
    require_node()
    async with trio.open_nursery() as nursery:
        scopes: list[trio.CancelScope] = []
        gateways: list[Gateway] = []

        async def run_gateway(port: int, *, task_status: trio.TaskStatus[None]) -> None:
            server = ServerConfig(host="127.0.0.1", port=port, graceful_timeout=0.5)
            with trio.CancelScope() as scope:
                scopes.append(scope)
                async with trio.open_nursery() as inner:
                    gateways.append(
                        await start_gateway(inner, gateway_config(tmp_path, server=server))
                    )
                    task_status.started()
                    await trio.sleep_forever()

        await nursery.start(run_gateway, 0)
        gw = gateways[-1]
        await create_session(gw, "acme", "wa-1")
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="zero"))
        spec = {
            "url": gw.base + "/",
            "options": {
                "transports": ["websocket"],
                "auth": {"token": gw.token("acme")},
                "reconnectionDelay": 200,
                "reconnectionDelayMax": 300,
            },
            "steps": [
                {"wait": {"connect": 1}},
                {"until_stdin": True},
                {"wait": {"disconnect": 1}},
                {"wait": {"connect": 2}},
                {"wait": {"event": "whatsapp:new-message", "count": 3}},
            ],
            "timeout": 30000,
        }
        async with NodeClient(spec, seconds=40) as client:
            first = await client.wait_for("connect")
            assert first["recovered"] is False
            await client.wait_for("waiting_stdin")
            await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="one"))
            await client.wait_for("event", name="whatsapp:new-message")
            await client.send_line()
            scopes[-1].cancel()  # the gateway stops; the client sees its transport close
            await client.wait_for("disconnect")
            await nursery.start(run_gateway, gw.port)  # same port, same database
            again = gateways[-1]
            await again.scripted.feed("wa-1", incoming(chat="111@c.us", text="two"))
            await again.scripted.feed("wa-1", incoming(chat="111@c.us", text="three"))
            second = await client.wait_for("connect", seconds=20)
            await client.finish()
        assert second["recovered"] is True
        assert second["id"] == first["id"]
        messages = [
            line["args"] for line in client.lines if line.get("name") == "whatsapp:new-message"
        ]
        assert [args[0]["message"]["body"] for args in messages] == ["one", "two", "three"]
        # "<epoch>:<seq>.<n>": the first of the event's frames on "/" (see SocketIOFormat).
        offsets = [Cursor.parse_offset(args[-1])[0].seq for args in messages]
        assert offsets == sorted(set(offsets))  # increasing: in order, no duplicate
        scopes[-1].cancel()
        nursery.cancel_scope.cancel()


async def test_socketio_client_recovers_after_its_transport_is_dropped(gateway: Gateway) -> None:
    require_node()
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    spec = {
        "url": gw.base + "/",
        "options": {
            "transports": ["websocket"],
            "auth": {"token": gw.token("acme")},
            "reconnectionDelay": 300,
            "reconnectionDelayMax": 400,
        },
        "steps": [
            {"wait": {"connect": 1}},
            {"until_stdin": True},
            {"wait": {"connect": 2}},
            {"wait": {"event": "whatsapp:new-message", "count": 3}},
        ],
        "timeout": 20000,
    }
    async with NodeClient(spec) as client, gw.http("acme") as http:
        first = await client.wait_for("connect")
        await client.wait_for("waiting_stdin")
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="before"))
        await client.wait_for("event", name="whatsapp:new-message")
        await client.send_line()
        response = await http.post(
            f"/api/connections/{first['id']}/disconnect", json={"reconnect": True}
        )
        assert response.status_code == 200
        await client.wait_for("disconnect")
        for text in ("while away 1", "while away 2"):
            await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text=text))
        second = await client.wait_for("connect")
        await client.finish()
    assert second["recovered"] is True
    assert second["id"] == first["id"]
    bodies = [
        line["args"][0]["message"]["body"]
        for line in client.lines
        if line.get("name") == "whatsapp:new-message"
    ]
    assert bodies == ["before", "while away 1", "while away 2"]


async def test_retention_prunes_the_log_and_resume_then_asks_for_a_resync(tmp_path: Path) -> None:
    from omnirelay.engine._config import StorageConfig

    config = gateway_config(
        tmp_path, storage=StorageConfig(path=str(tmp_path / "r.db"), retention_count=3)
    )
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        for n in range(5):
            await gw.scripted.feed("wa-1", incoming(chat=f"5{n}@c.us", text=f"m{n}"))
        assert await gw.engine.prune_log() > 0
        assert [s.seq for s in await gw.engine.store.read_log("acme", after=0, limit=100)][-3:] == [
            8,
            9,
            10,
        ]
        client = await WsClient.connect(
            gw.ws_url(token=gw.token("acme"), since=f"{gw.engine.store.epoch}:1")
        )
        assert (await client.recv_event("resync_required"))["data"]["reason"] == "too_old"
        await client.close()
        nursery.cancel_scope.cancel()


async def test_recovery_can_be_turned_off_per_namespace(tmp_path: Path) -> None:
    require_node()
    from omnirelay.engine._config import NamespaceConfig, SocketIOConfig

    namespaces = (NamespaceConfig(name="/", dialects=("whatsapp-web",), recovery=False),)
    config = gateway_config(tmp_path, socketio=SocketIOConfig(namespaces=namespaces))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        spec = {
            "url": gw.base + "/",
            "options": {"transports": ["websocket"], "auth": {"token": gw.token("acme")}},
            "steps": [
                {"wait": {"connect": 1}},
                {"until_stdin": True},
                {"wait": {"event": "whatsapp:new-message", "count": 1}},
            ],
        }
        async with NodeClient(spec) as client:
            await client.wait_for("waiting_stdin")
            await gw.scripted.feed("wa-1", incoming(text="no offset here"))
            await client.send_line()
            await client.finish()
        [args] = [
            line["args"] for line in client.lines if line.get("name") == "whatsapp:new-message"
        ]
        assert len(args) == 1  # just the payload
        assert await gw.engine.store.load_recovery("anything") is None
        nursery.cancel_scope.cancel()


class StalledClient:
    """A raw `/ws` client that completes the handshake, then reads only when told to.

    Its small receive buffer, set before connecting, keeps the TCP window small, so the
    kernel cannot absorb what the client does not read: the gateway's own buffer fills.
    """

    def __init__(self, stream: trio.SocketStream, ws: WSConnection) -> None:
        self.stream = stream
        self.ws = ws
        self.close_code: int | None = None
        self._partial: list[str] = []

    @classmethod
    async def connect(cls, gw: Gateway, token: str) -> StalledClient:
        raw = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        await raw.connect((gw.host, gw.port))
        stream = trio.SocketStream(raw)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(
            ws.send(Request(host=f"{gw.host}:{gw.port}", target=f"/ws?token={token}"))
        )
        while not any(isinstance(e, AcceptConnection) for e in ws.events()):
            ws.receive_data(await stream.receive_some(65536))
        return cls(stream, ws)

    async def read(self, done: Callable[[list[dict[str, Any]]], bool]) -> list[dict[str, Any]]:
        """Read envelopes until `done(envelopes)` or the connection closes."""
        envelopes: list[dict[str, Any]] = []
        with trio.fail_after(20):
            while self.close_code is None and not done(envelopes):
                data = await self.stream.receive_some(65536)
                if not data:
                    break
                self.ws.receive_data(data)
                for event in self.ws.events():
                    if isinstance(event, TextMessage):
                        self._partial.append(event.data)
                        if event.message_finished:
                            envelopes.append(json.loads("".join(self._partial)))
                            self._partial.clear()
                    elif isinstance(event, CloseConnection):
                        self.close_code = event.code
        return envelopes


async def test_a_client_that_falls_behind_gets_the_latest_presence_per_chat(
    tmp_path: Path,
) -> None:
    from omnirelay.protocol import ChatKind, ChatRef, Party, PresenceState, PresenceUpdated

    from .conftest import T0

    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, gateway_config(tmp_path))
        await create_session(gw, "acme", "wa-1")
        token = gw.token("acme")
        client = await StalledClient.connect(gw, token)
        for _ in range(500):  # the gateway attaches it just after the handshake
            if subscribers := gw.engine.hub.subscribers("acme"):
                break
            await trio.sleep(0.01)
        [subscriber] = subscribers
        assert isinstance(subscriber, EnvelopeSubscriber)

        # Durable messages until the gateway holds a backlog for the client that does not read.
        messages = 0
        while subscriber.transport.buffered == 0:
            await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="m" * 8000))
            messages += 1
            assert messages < 2000, "the kernel absorbed everything"

        chats = [f"7707985633{n}@c.us" for n in range(3)]
        states = [PresenceState.TYPING, PresenceState.ONLINE, PresenceState.OFFLINE]
        final: dict[int, str] = {}
        fed = 0
        for round_ in range(30):
            for n, chat in enumerate(chats):
                state = states[(round_ + n) % 3]
                event = PresenceUpdated(
                    provider="scripted",
                    occurred_at=T0,
                    chat=ChatRef(id=chat, kind=ChatKind.DIRECT),
                    participant=Party(id=chat, phone=chat.split("@")[0], name=f"Cliente {n}"),
                    state=state,
                )
                await gw.scripted.feed("wa-1", event)
                final[int(chat.split("@")[0])] = state
                fed += 1
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="after the presence"))

        def has_last(envelopes: list[dict[str, Any]]) -> bool:
            return bool(envelopes) and envelopes[-1]["data"].get("text") == "after the presence"

        envelopes = await client.read(has_last)
        assert client.close_code is None  # coalescing kept it within its buffer
        names = {"user_typing": "typing", "user_online": "online", "user_offline": "offline"}
        presence = [e for e in envelopes if e["event"] in names]
        durable = [seq_of(e) for e in envelopes if "seq" in e]
        assert durable == list(range(1, len(durable) + 1))  # chat.created, messages, the last
        assert len(durable) == messages + 2
        # Each chat's last update is its current state; most intermediate ones were replaced.
        last = {e["data"]["user_id"]: names[e["event"]] for e in presence}
        assert last == final
        assert len(presence) < fed // 3
        # Held updates went out before the message that followed them.
        assert envelopes.index(presence[-1]) < len(envelopes) - 1
        async with gw.http() as http:
            metrics = (await http.get("/metrics")).text
        assert "omnirelay_ephemeral_coalesced_total 0.0" not in metrics
        assert "omnirelay_queue_drops_total 0.0" in metrics
        await client.stream.aclose()
        nursery.cancel_scope.cancel()


async def test_a_client_that_stops_reading_is_dropped_as_slow_and_resumes_with_everything(
    tmp_path: Path,
) -> None:
    from omnirelay.engine._config import ClientConfig

    total = 10_000
    config = gateway_config(tmp_path, clients=ClientConfig(inbox_bytes=64 * 1024))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        token = gw.token("acme")

        slow = await StalledClient.connect(gw, token)
        healthy = await WsClient.connect(gw.ws_url(token=token))
        received: list[int] = []

        async def read_healthy() -> None:
            while len(received) < total:
                envelope = await healthy.recv()
                if envelope["event"] == "new_message":
                    received.append(seq_of(envelope))

        async with trio.open_nursery() as readers:
            readers.start_soon(read_healthy)
            for batch in range(total // 500):
                await gw.scripted.feed(
                    "wa-1",
                    *(
                        incoming(chat="111@c.us", text=f"event {batch * 500 + n} " + "·" * 40)
                        for n in range(500)
                    ),
                )
        # The healthy client got everything, in order, while the slow one was not waited for.
        assert len(received) == total
        assert received == sorted(received)

        # The slow client now reads what reached it: some events, then close 4008.
        seen = [seq_of(e) for e in await slow.read(lambda _: False) if "seq" in e]
        assert slow.close_code == 4008
        assert 0 < len(seen) < total * 2  # far from everything
        await slow.stream.aclose()

        # It resumes from the last event it saw and ends up with every event, once.
        epoch = gw.engine.store.epoch
        again = await WsClient.connect(gw.ws_url(token=token, since=f"{epoch}:{seen[-1]}"))
        rest: list[int] = []
        while True:
            envelope = await again.recv()
            if envelope["event"] == "resumed":
                assert envelope["data"]["complete"] is True
                break
            if "seq" in envelope:
                rest.append(seq_of(envelope))
        everything = seen + rest
        assert everything == list(range(1, len(everything) + 1))  # chat.created, then all messages
        assert len(everything) == total + 1
        await again.close()
        await healthy.close()
        nursery.cancel_scope.cancel()


async def test_socketio_recovers_from_the_middle_of_an_event(gateway: Gateway) -> None:
    """On "/" one event is several frames (one per dialect). A connection cut between two of
    them leaves the client with the offset `"<epoch>:<seq>.<n>"`; recovering from it sends the
    rest of that event, then what followed: nothing twice, nothing missing. Raw long-polling,
    so the cut can be placed exactly."""
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="known chat"))
    token = gw.token("acme")
    base = "/socket.io/?EIO=4&transport=polling"

    def packets(body: str) -> list[tuple[str, list[Any]]]:
        """The (event name, args) of each EVENT packet of a polling body."""
        return [
            (args[0], args[1:])
            for packet in body.split("\x1e")
            if packet.startswith("42")
            for args in [json.loads(packet[2:])]
        ]

    async def open_socket(http: Any, auth: dict[str, Any]) -> tuple[str, dict[str, Any], str]:
        opened = await http.get(base)
        sid = str(json.loads(opened.text[1:])["sid"])
        assert (await http.post(f"{base}&sid={sid}", content="40" + json.dumps(auth))).text == "ok"
        reply = await http.get(f"{base}&sid={sid}")
        first, _, rest = reply.text.partition("\x1e")
        assert first.startswith("40{"), reply.text
        return sid, json.loads(first[2:]), rest

    async with gw.http() as http:
        sid, connected, _ = await open_socket(http, {"token": token})
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="cut in the middle"))
        event = packets((await http.get(f"{base}&sid={sid}")).text)
        assert len(event) >= 2
        offsets = [args[-1] for _name, args in event]
        assert offsets[-1].count(".") == 0  # the last frame completes the event
        assert offsets[0].endswith(".0")
        # The client got only the first frame, then lost its connection.
        assert (await http.post(f"{base}&sid={sid}", content="1")).text == "ok"
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="while away"))

        auth = {"token": token, "pid": connected["pid"], "offset": offsets[0]}
        again, recovered, rest = await open_socket(http, auth)
        assert recovered["sid"] == connected["sid"]  # recovered: same socket id
        missed = packets(rest)
        for _ in range(10):  # the replay may come in more than one poll
            if len(missed) >= len(event) * 2 - 1:
                break
            missed += packets((await http.get(f"{base}&sid={again}")).text)
        # The rest of the cut event, then the whole next one: nothing twice, nothing missing.
        assert missed[: len(event) - 1] == event[1:]
        assert [name for name, _ in missed[len(event) - 1 :]] == [name for name, _ in event]
        assert missed[-1][1][0] != event[-1][1][0]  # a different message
        assert len(missed) == len(event) * 2 - 1
