"""The gateway's Socket.IO endpoint with unmodified clients: npm socket.io-client@4 and
python-socketio's AsyncClient, over 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import attrs
import pytest
import socketio
import trio

from omnirelay.engine._config import LimitsConfig
from omnirelay.protocol import ChatKind, Cursor, DeliveryState, MessageStatus

from .conftest import (
    T0,
    Gateway,
    create_session,
    gateway_config,
    incoming,
    start_embedded,
    start_gateway,
)
from .jsclient import NodeClient, events, require_node
from .pyclient import connect_error, run_python_client

TRANSPORTS = {
    "websocket-only": ["websocket"],
    "polling-only": ["polling"],
    "polling-then-upgrade": ["polling", "websocket"],
}


@pytest.fixture
def node_ready() -> None:
    require_node()


def node_spec(
    gw: Gateway, namespace: str, token: str | None, transports: list[str], steps: list[Any]
) -> dict[str, Any]:
    options: dict[str, Any] = {"transports": transports, "path": "/socket.io/", "forceNew": True}
    if token is not None:
        options["auth"] = {"token": token}
    return {"url": gw.base + namespace, "options": options, "steps": steps, "timeout": 15000}


async def first_chat_id(gw: Gateway, tenant: str, session_id: str) -> int:
    async with gw.http(tenant) as http:
        chats = (await http.get(f"/api/whatsapp/sessions/{session_id}/chats?chatType=all")).json()[
            "chats"
        ]
    return int(chats[0]["id"])


@pytest.mark.parametrize("mode", TRANSPORTS)
async def test_a_whatsapp_web_front_end_receives_the_seed_events(
    gateway: Gateway, node_ready: None, mode: str
) -> None:
    gw = gateway
    await create_session(gw, "cmd5rysyd0000le04ha593nam", "cmd5u0y7b0001xurbphmqfoe4")
    steps = [
        {"wait": {"connect": 1}},
        {"until_stdin": True},
        {"wait": {"event": "whatsapp:new-message", "count": 1}},
        {"wait": {"event": "chat:message", "count": 1}},
    ]
    token = gw.token("cmd5rysyd0000le04ha593nam")
    async with NodeClient(node_spec(gw, "/", token, TRANSPORTS[mode], steps)) as client:
        await client.wait_for("connect")
        await client.wait_for("waiting_stdin")
        await gw.scripted.feed("cmd5u0y7b0001xurbphmqfoe4", incoming(text="Привет! Как дела?"))
        await client.send_line()
        lines = await client.finish()
    # With connection-state recovery on (the default) a durable event carries its log offset as
    # an extra last argument; `(data) => …` handlers never see it.
    [[new_message, offset]] = events(lines, "whatsapp:new-message")
    # The first of the event's frames on "/": "<epoch>:<seq>.0" (docs/socketio.md).
    position, part = Cursor.parse_offset(offset)
    assert position.epoch == gw.engine.store.epoch
    assert position.seq > 0
    assert part == 0
    assert set(new_message) == {"sessionId", "companyId", "chat", "message"}
    assert new_message["sessionId"] == "cmd5u0y7b0001xurbphmqfoe4"
    assert new_message["companyId"] == "cmd5rysyd0000le04ha593nam"
    assert set(new_message["chat"]) == {
        "id",
        "chatId",
        "chatName",
        "chatType",
        "isGroup",
        "lastMessageAt",
        "lastMessageText",
        "unreadCount",
    }
    assert new_message["chat"]["chatId"] == "77079856339@c.us"
    assert new_message["chat"]["isGroup"] is False
    assert new_message["chat"]["unreadCount"] == 1
    assert set(new_message["message"]) == {
        "id",
        "messageId",
        "fromMe",
        "fromNumber",
        "fromName",
        "body",
        "messageType",
        "timestamp",
    }
    assert new_message["message"]["body"] == "Привет! Как дела?"
    assert new_message["message"]["fromMe"] is False
    [[chat_message, _offset]] = events(lines, "chat:message")
    assert set(chat_message) == {"chatId", "message"}
    assert chat_message["message"]["key"]["remoteJid"] == "77079856339@c.us"


@pytest.mark.parametrize("mode", TRANSPORTS)
async def test_bad_tokens_get_connect_error_and_nothing_else(
    gateway: Gateway, node_ready: None, mode: str
) -> None:
    gw = gateway
    cases = [
        (None, "missing_token"),
        ("garbage", "invalid_token"),
        (gw.auth.mint("acme", ttl=-60), "expired_token"),
    ]
    for token, code in cases:
        steps = [{"wait": {"connect_error": 1}}]
        async with NodeClient(node_spec(gw, "/crm", token, TRANSPORTS[mode], steps)) as client:
            error = await client.wait_for("connect_error")
            await client.finish(check=False)
        assert error["data"] == {"code": code}
        assert isinstance(error["message"], str)
        assert error["message"]
        refused = await run_python_client(
            connect_error(
                gw.base,
                namespace="/crm",
                auth={"token": token} if token else None,
                transports=TRANSPORTS[mode],
            )
        )
        assert refused.data == [{"message": error["message"], "data": {"code": code}}]


async def test_unknown_namespace_is_refused(gateway: Gateway) -> None:
    refused = await run_python_client(
        connect_error(gateway.base, namespace="/nope", auth={"token": gateway.token("acme")})
    )
    assert refused.data == [{"message": "Invalid namespace"}]


@attrs.define
class CrmResult:
    acks: list[Any] = attrs.field(factory=list)
    events: list[tuple[str, Any]] = attrs.field(factory=list)


async def test_crm_rooms_scope_and_join_acks(gateway: Gateway) -> None:
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    await gw.scripted.feed("wa-1", incoming(chat="5511999999999@c.us", text="first"))
    conversation = await first_chat_id(gw, "acme", "wa-1")
    ready, go = threading.Event(), threading.Event()

    async def scenario(sio: socketio.AsyncClient) -> CrmResult:
        result = CrmResult()
        arrived = asyncio.Event()

        async def on_any(event: str, *data: Any) -> None:
            result.events.append((event, data[0] if data else None))
            arrived.set()

        sio.on("*", on_any, namespace="/crm")
        await sio.connect(
            gw.base,
            namespaces=["/crm"],
            auth={"token": gw.token("acme")},
            transports=["websocket"],
            wait_timeout=5,
        )
        for payload in (
            {"conversationId": conversation},
            {"conversationId": 2**63},  # an integer beyond any row id: not found, socket stays
            {"conversationId": "not a number"},
        ):
            result.acks.append(
                await sio.call("join_conversation", payload, namespace="/crm", timeout=5)
            )
        result.acks.append(await sio.call("dance", {}, namespace="/crm", timeout=5))
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait, 10)
        while len([e for e in result.events if e[0].startswith("whatsapp:")]) < 2:
            arrived.clear()
            await arrived.wait()
        await asyncio.sleep(0.2)  # anything more would be a duplicate or a leak
        return result

    async with trio.open_nursery() as nursery:
        results: list[CrmResult] = []

        async def client() -> None:
            results.append(await run_python_client(scenario, seconds=20))

        nursery.start_soon(client)
        assert await trio.to_thread.run_sync(ready.wait, 15)
        # A message in the joined conversation, one in another chat (not joined), a status.
        await gw.scripted.feed(
            "wa-1", incoming(chat="5511999999999@c.us", text="in the room", message_id="R1")
        )
        await gw.scripted.feed("wa-1", incoming(chat="5511888888888@c.us", text="elsewhere"))
        status = MessageStatus(
            provider="scripted",
            occurred_at=T0,
            chat=incoming(chat="5511999999999@c.us").chat,
            message_id="R1",
            state=DeliveryState.READ,
        )
        await gw.scripted.feed("wa-1", status)
        go.set()
    [result] = results
    assert result.acks[0] == {"ok": True, "room": f"conversation:{conversation}"}
    assert result.acks[1]["error"]["code"] == "conversation_not_found"
    assert result.acks[2]["error"]["code"] == "invalid_conversation_id"
    assert result.acks[3]["error"]["code"] == "unknown_event"
    names = [name for name, _ in result.events]
    assert names == [
        "whatsapp:message",
        "whatsapp:message_status",
    ]  # once each, nothing from elsewhere
    message = result.events[0][1]
    assert message["conversationId"] == conversation
    assert message["message"]["body"] == "in the room"
    assert message["message"]["sender_type"] == "contact"
    assert isinstance(message["contact"]["id"], int)
    assert result.events[1][1]["status"] == "read"
    assert isinstance(result.events[1][1]["timestamp"], str)


async def test_200_clients_get_a_room_broadcast_exactly_once(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, limits=LimitsConfig(connections_per_tenant=300))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        await gw.scripted.feed("wa-1", incoming(chat="5511999999999@c.us", text="hello"))
        conversation = await first_chat_id(gw, "acme", "wa-1")
        token = gw.token("acme")
        ready, go = threading.Event(), threading.Event()

        async def scenario(first: socketio.AsyncClient) -> list[int]:
            clients = [first, *(socketio.AsyncClient(handle_sigint=False) for _ in range(199))]
            counts = [0] * len(clients)
            arrived = asyncio.Event()

            def counter(index: int) -> Any:
                async def on_broadcast(*_: Any) -> None:
                    counts[index] += 1
                    arrived.set()

                return on_broadcast

            async def join(index: int, sio: socketio.AsyncClient) -> None:
                sio.on("room-news", counter(index), namespace="/crm")
                await sio.connect(
                    gw.base,
                    namespaces=["/crm"],
                    auth={"token": token},
                    transports=["websocket"],
                    wait_timeout=10,
                )
                answer = await sio.call(
                    "join_conversation",
                    {"conversationId": conversation},
                    namespace="/crm",
                    timeout=10,
                )
                assert answer["ok"] is True

            try:
                await asyncio.gather(*(join(i, c) for i, c in enumerate(clients)))
                ready.set()
                await asyncio.get_running_loop().run_in_executor(None, go.wait, 20)
                while min(counts) < 1:
                    arrived.clear()
                    await arrived.wait()
                await asyncio.sleep(0.3)
                return counts
            finally:
                await asyncio.gather(*(c.disconnect() for c in clients[1:]), return_exceptions=True)

        results: list[list[int]] = []

        async def client() -> None:
            results.append(await run_python_client(scenario, seconds=40))

        async with trio.open_nursery() as inner:
            inner.start_soon(client)
            assert await trio.to_thread.run_sync(ready.wait, 35)
            async with gw.http("acme") as http:
                response = await http.post(
                    "/api/publish",
                    json={
                        "event": "room-news",
                        "data": {"text": "Olá 👋"},
                        "namespace": "/crm",
                        "room": f"conversation:{conversation}",
                    },
                )
                assert response.json() == {"delivered": 200}
            go.set()
        assert Counter(results[0]) == {1: 200}
        nursery.cancel_scope.cancel()


async def test_operator_disconnect_with_and_without_reconnect(
    gateway: Gateway, node_ready: None
) -> None:
    gw = gateway
    steps = [
        {"wait": {"connect": 1}},
        {"wait": {"disconnect": 1}},
        {"wait": {"connect": 2}},
        {"wait": {"disconnect": 2}},
        {"sleep": 500},
        {"print_state": True},
    ]
    spec = node_spec(gw, "/", gw.token("acme"), ["websocket"], steps)
    spec["options"].update(reconnectionDelay=50, reconnectionDelayMax=100)
    async with NodeClient(spec) as client, gw.http("acme") as http:
        first = await client.wait_for("connect")

        async def kick(socket_id: str, reconnect: bool) -> None:
            listed = (await http.get("/api/connections")).json()["connections"]
            assert [c["id"] for c in listed] == [socket_id]
            assert listed[0]["namespace"] == "/"
            response = await http.post(
                f"/api/connections/{socket_id}/disconnect", json={"reconnect": reconnect}
            )
            assert response.status_code == 200

        await kick(first["id"], reconnect=True)
        dropped = await client.wait_for("disconnect")
        assert dropped["reason"] == "transport close"
        second = await client.wait_for("connect")
        await kick(second["id"], reconnect=False)
        gone = await client.wait_for("disconnect")
        assert gone["reason"] == "io server disconnect"
        state = await client.wait_for("state")
        assert state["connected"] is False
        assert state["active"] is False  # it does not come back by itself
        await client.finish(check=False)


async def test_publish_to_namespace_and_to_one_socket(gateway: Gateway) -> None:
    gw = gateway
    ready, go = threading.Event(), threading.Event()

    async def scenario(sio: socketio.AsyncClient) -> list[tuple[str, Any]]:
        got: list[tuple[str, Any]] = []
        arrived = asyncio.Event()

        async def on_any(event: str, *data: Any) -> None:
            got.append((event, data[0] if data else None))
            arrived.set()

        sio.on("*", on_any, namespace="/")
        await sio.connect(
            gw.base, auth={"token": gw.token("acme")}, transports=["polling"], wait_timeout=5
        )
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait, 10)
        while len(got) < 2:
            arrived.clear()
            await arrived.wait()
        await asyncio.sleep(0.2)
        return got

    results: list[list[tuple[str, Any]]] = []

    async def client() -> None:
        results.append(await run_python_client(scenario, seconds=20))

    async with trio.open_nursery() as nursery, gw.http("acme") as http:
        nursery.start_soon(client)
        assert await trio.to_thread.run_sync(ready.wait, 15)
        [socket] = (await http.get("/api/connections")).json()["connections"]
        sent = [
            {"event": "to-namespace", "data": [1, "два", {"три": 3}], "namespace": "/"},
            {"event": "to-crm-only", "data": {}, "namespace": "/crm"},
            {"event": "to-socket", "data": "😊", "connection": socket["id"]},
            {"event": "to-nobody", "data": None, "connection": "no-such-socket"},
        ]
        delivered = [
            (await http.post("/api/publish", json=body)).json()["delivered"] for body in sent
        ]
        assert delivered == [1, 0, 1, 0]
        go.set()
    assert results[0] == [("to-namespace", [1, "два", {"три": 3}]), ("to-socket", "😊")]


@pytest.mark.parametrize("mode", ["websocket-only", "polling-only"])
async def test_socketio_works_through_asgi_when_embedded(
    tmp_path: Path, node_ready: None, mode: str
) -> None:
    async with trio.open_nursery() as nursery:
        gw = await start_embedded(nursery, gateway_config(tmp_path))
        await create_session(gw, "acme", "wa-1")
        steps = [
            {"wait": {"connect": 1}},
            {"until_stdin": True},
            {"wait": {"event": "whatsapp:new-message", "count": 1}},
        ]
        async with NodeClient(
            node_spec(gw, "/", gw.token("acme"), TRANSPORTS[mode], steps)
        ) as client:
            await client.wait_for("waiting_stdin")
            await gw.scripted.feed("wa-1", incoming(text="через ASGI ✨", kind=ChatKind.DIRECT))
            await client.send_line()
            lines = await client.finish()
        assert events(lines, "whatsapp:new-message")[0][0]["message"]["body"] == "через ASGI ✨"
        nursery.cancel_scope.cancel()


async def test_a_polling_client_that_stops_polling_is_dropped_not_waited_for(
    tmp_path: Path,
) -> None:
    from omnirelay.engine._config import ClientConfig
    from omnirelay.protocol import SessionQR

    config = gateway_config(tmp_path, clients=ClientConfig(inbox_bytes=4000, inbox_frames=100))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="known chat"))
        token = gw.token("acme")

        async def stalled_client(http: Any) -> str:
            """Handshake, join "/", then never poll again; returns the sid."""
            opened = await http.get("/socket.io/?EIO=4&transport=polling")
            sid = str(json.loads(opened.text[1:])["sid"])
            joined = await http.post(
                f"/socket.io/?EIO=4&transport=polling&sid={sid}",
                content="40" + json.dumps({"token": token}),
            )
            assert joined.text == "ok"
            reply = await http.get(f"/socket.io/?EIO=4&transport=polling&sid={sid}")
            assert reply.text.startswith("40{")
            return sid

        async with gw.http() as http:
            qr_sid = await stalled_client(http)
            for attempt in range(1, 41):  # ephemeral with a key: coalesced while it is behind
                qr = SessionQR(
                    provider="scripted", occurred_at=T0, qr=f"2@{attempt:03}" + "q" * 200
                )
                await gw.scripted.feed("wa-1", qr)
            # The first went out before any backlog; the next 38 were replaced by the 40th,
            # which goes out once that poll took the queue: the client catches up on the latest.
            first = await http.get(f"/socket.io/?EIO=4&transport=polling&sid={qr_sid}")
            assert first.text.count("whatsapp:qr-updated") == 1
            assert "2@001" in first.text
            latest = await http.get(f"/socket.io/?EIO=4&transport=polling&sid={qr_sid}")
            assert latest.text.count("whatsapp:qr-updated") == 1
            assert "2@040" in latest.text
            metrics = (await http.get("/metrics")).text
            assert "omnirelay_ephemeral_coalesced_total 38.0" in metrics
            assert "omnirelay_queue_drops_total 0.0" in metrics

            # Ephemeral without a key (a custom publish) that does not fit: dropped, counted;
            # the client stays connected.
            async with gw.http("acme") as api:
                delivered = 0
                for n in range(40):
                    body = {"event": "news", "data": f"{n:03} " + "n" * 200}
                    delivered += (await api.post("/api/publish", json=body)).json()["delivered"]
            assert delivered == 40  # handed to the connection: it applies its own policy
            still = await http.get(f"/socket.io/?EIO=4&transport=polling&sid={qr_sid}")
            assert still.status_code == 200
            assert 0 < still.text.count('"news"') < 40
            metrics = (await http.get("/metrics")).text
            assert "omnirelay_queue_drops_total 0.0" not in metrics

            durable_sid = await stalled_client(http)
            for n in range(100):  # durable: the buffer overflows and the transport is dropped
                await gw.scripted.feed(
                    "wa-1", incoming(chat="111@c.us", text=f"message {n} " + "x" * 100)
                )
            gone = await http.get(f"/socket.io/?EIO=4&transport=polling&sid={durable_sid}")
            # What was queued, then the close packet; after that the sid is unknown.
            assert gone.text.endswith("\x1e1")
            # Whole events only: each message as both of "/"'s dialects render it, never one
            # without the other (recovering from its offset would skip the missing half).
            whatsapp = gone.text.count('"whatsapp:new-message"')
            assert whatsapp > 0
            assert gone.text.count('"chat:message"') == whatsapp
            after = await http.get(f"/socket.io/?EIO=4&transport=polling&sid={durable_sid}")
            assert after.status_code == 400
            metrics = (await http.get("/metrics")).text
            # Both stalled clients: the first one stopped polling again after its one GET.
            assert "omnirelay_slow_consumer_disconnects_total 2.0" in metrics
        nursery.cancel_scope.cancel()


async def test_evolution_events_arrive_on_the_root_namespace_without_secrets(
    gateway: Gateway,
) -> None:
    from omnirelay.protocol import ProviderRaw

    gw = gateway
    await create_session(gw, "acme", "vendas-2024")
    ready, go = threading.Event(), threading.Event()

    async def scenario(sio: socketio.AsyncClient) -> Any:
        got = asyncio.Event()
        received: list[Any] = []

        async def on_event(data: Any) -> None:
            received.append(data)
            got.set()

        sio.on("evolution-event", on_event)
        await sio.connect(
            gw.base, auth={"token": gw.token("acme")}, transports=["websocket"], wait_timeout=5
        )
        ready.set()
        await asyncio.get_running_loop().run_in_executor(None, go.wait, 10)
        await got.wait()
        return received[0]

    raw = ProviderRaw(
        provider="evolution",
        occurred_at=T0,
        name="messages.upsert",
        payload={
            "event": "messages.upsert",
            "instance": "vendas-2024",
            "data": {
                "key": {"remoteJid": "5511999999999@s.whatsapp.net", "id": "3EB0"},
                "message": {"conversation": "Olá"},
            },
            "server_url": "http://evolution.internal:8080",
            "date_time": "2025-10-07T02:00:00.000Z",
            "sender": "5511888888888@s.whatsapp.net",
            "apikey": "B6D711FCDE4D4FD5936544120E713976",
        },
    )
    results: list[Any] = []

    async def client() -> None:
        results.append(await run_python_client(scenario, seconds=15))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(client)
        assert await trio.to_thread.run_sync(ready.wait, 10)
        await gw.scripted.feed("vendas-2024", raw)
        go.set()
    [event] = results
    assert event["instance"] == "vendas-2024"
    assert event["event"] == "messages.upsert"
    assert event["data"]["message"] == {"conversation": "Olá"}
    assert "apikey" not in event
    assert "server_url" not in event
    assert "B6D711FCDE4D4FD5936544120E713976" not in json.dumps(event)


@pytest.mark.parametrize("where", ["header", "query"])
async def test_the_token_may_come_from_the_handshake_header_or_query(
    gateway: Gateway, where: str
) -> None:
    gw = gateway
    token = gw.token("acme")

    async def scenario(sio: socketio.AsyncClient) -> str | None:
        if where == "header":
            await sio.connect(gw.base, headers={"Authorization": f"Bearer {token}"}, wait_timeout=5)
        else:
            await sio.connect(f"{gw.base}?token={token}", wait_timeout=5)
        sid = sio.get_sid("/")
        await sio.disconnect()
        return sid

    assert await run_python_client(scenario)


async def test_a_websocket_socket_dropped_as_slow_gets_its_close_without_the_backlog(
    tmp_path: Path,
) -> None:
    """A socket.io websocket client that stops reading overflows its buffer: the transport is
    dropped and what was still queued for it is discarded (it recovers that from its offset),
    so the close follows what its TCP connection already holds instead of megabytes more."""
    import socket as sockets

    from wsproto import ConnectionType, WSConnection
    from wsproto.events import AcceptConnection, CloseConnection, Message, Request

    from omnirelay.engine._config import ClientConfig

    inbox = 16 * 1024 * 1024
    config = gateway_config(tmp_path, clients=ClientConfig(inbox_bytes=inbox, inbox_frames=10**6))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="known chat"))

        raw = trio.socket.socket(sockets.AF_INET, sockets.SOCK_STREAM)
        raw.setsockopt(sockets.SOL_SOCKET, sockets.SO_RCVBUF, 4096)
        await raw.connect((gw.host, gw.port))
        stream = trio.SocketStream(raw)
        ws = WSConnection(ConnectionType.CLIENT)
        target = "/socket.io/?EIO=4&transport=websocket"
        await stream.send_all(ws.send(Request(host=f"{gw.host}:{gw.port}", target=target)))
        received = 0  # bytes of Engine.IO messages read

        async def next_message() -> str | bytes | None:
            nonlocal received
            while True:
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        continue
                    if isinstance(event, Message):
                        received += len(event.data)
                        return event.data
                    if isinstance(event, CloseConnection):
                        return None
                data = await stream.receive_some(65536)
                if not data:
                    return None
                ws.receive_data(data)

        with trio.fail_after(5):
            assert str(await next_message()).startswith("0{")  # Engine.IO open
            await stream.send_all(
                ws.send(Message(data="40" + json.dumps({"token": gw.token("acme")})))
            )
            assert str(await next_message()).startswith("40{")  # Socket.IO CONNECT reply

        # Then it stops reading while 4 KiB messages flow, until it is dropped as slow.
        async with gw.http() as http:
            for batch in range(40):
                await gw.scripted.feed(
                    "wa-1",
                    *(
                        incoming(chat="111@c.us", text=f"{batch}:{n} " + "x" * 4000)
                        for n in range(100)
                    ),
                )
                metrics = (await http.get("/metrics")).text
                if "omnirelay_slow_consumer_disconnects_total 1.0" in metrics:
                    break
            else:
                raise AssertionError("the stalled socket was never dropped")
        received = 0
        with trio.fail_after(20):
            while await next_message() is not None:
                pass
        # What the kernel held, not the 16 MiB the gateway had queued for it.
        assert received < inbox // 2
        await stream.aclose()
        nursery.cancel_scope.cancel()
