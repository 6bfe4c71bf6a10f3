"""Per-tenant and per-connection limits: a clear error, counted, and nobody else affected."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import socketio
import trio
import websockets.exceptions

from omnirelay.engine._config import LimitsConfig, SocketIOConfig, WebSocketConfig

from .conftest import (
    Gateway,
    WsClient,
    create_session,
    gateway_config,
    incoming,
    post_oversize,
    start_gateway,
)
from .pyclient import connect_error, run_python_client


async def test_the_101st_connection_is_refused_with_a_clear_error(gateway: Gateway) -> None:
    gw = gateway
    clients = [await WsClient.connect(gw.ws_url(token=gw.token("acme"))) for _ in range(100)]
    with pytest.raises(websockets.exceptions.InvalidStatus) as info:
        await WsClient.connect(gw.ws_url(token=gw.token("acme")))
    assert info.value.response.status_code == 429
    assert b"too_many_connections" in info.value.response.body
    refused = await run_python_client(connect_error(gw.base, auth={"token": gw.token("acme")}))
    assert refused.data[0]["data"] == {"code": "too_many_connections"}
    other = await WsClient.connect(gw.ws_url(token=gw.token("globex")))  # another tenant: fine
    await other.close()
    await clients.pop().close()
    for _ in range(500):  # the server notices the close a moment later
        if gw.engine.connections.count("acme") < 100:
            break
        await trio.sleep(0.01)
    replacement = await WsClient.connect(gw.ws_url(token=gw.token("acme")))  # room again
    async with gw.http() as http:
        metrics = (await http.get("/metrics")).text
    assert 'omnirelay_limit_refusals_total{limit="connections"} 2.0' in metrics
    for client in [*clients, replacement]:
        await client.close()


async def test_ws_rate_limit_errors_then_closes_1008(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, limits=LimitsConfig(client_events_per_minute=5))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
        for n in range(5):
            await client.send({"action": "ping", "id": n})
            assert (await client.recv_event("pong"))["data"] == {"id": n}
        await client.send({"action": "ping", "id": 5})
        error = await client.recv_event("error")
        assert error["data"]["code"] == "rate_limited"
        for n in range(9):  # refused 10 times in a row: closed with 1008
            await client.send({"action": "ping", "id": 100 + n})
        code, reason = await client.wait_closed()
        assert (code, reason) == (1008, "rate limit exceeded")
        nursery.cancel_scope.cancel()


async def test_socketio_rate_limit_answers_acks_with_an_error(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, limits=LimitsConfig(client_events_per_minute=3))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us"))

        async def scenario(sio: socketio.AsyncClient) -> list[Any]:
            await sio.connect(
                gw.base, namespaces=["/crm"], auth={"token": gw.token("acme")}, wait_timeout=5
            )
            answers = []
            for _ in range(4):
                answer = await sio.call(
                    "join_conversation", {"conversationId": 1}, namespace="/crm", timeout=5
                )
                answers.append(answer)
            return answers

        answers = await run_python_client(scenario)
        assert [a["ok"] for a in answers] == [True, True, True, False]
        assert answers[3]["error"]["code"] == "rate_limited"
        nursery.cancel_scope.cancel()


async def test_oversize_payloads_are_refused(tmp_path: Path) -> None:
    config = gateway_config(
        tmp_path,
        limits=LimitsConfig(max_payload=1000),
        websocket=WebSocketConfig(max_message_size=1000),
        socketio=SocketIOConfig(max_payload=1000),
    )
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
        await client.send({"action": "ping", "id": "x" * 2000})
        code, _reason = await client.wait_closed()
        assert code == 1009
        async with gw.http("acme") as http:
            publish = await http.post("/api/publish", json={"event": "big", "data": "x" * 2000})
            assert publish.status_code == 413
            assert publish.json()["error"]["code"] == "payload_too_large"
            # A body far over the limit is refused unread; the client's next request (on a
            # new connection: the refused one is closed) is answered, not left hanging.
            status, headers, body = await post_oversize(
                gw, "/api/publish", 5_000_000, {"Authorization": f"Bearer {gw.token('acme')}"}
            )
            assert status == 413
            assert headers["connection"] == "close"
            assert json.loads(body)["error"]["code"] == "payload_too_large"
            opened = await http.get("/socket.io/?EIO=4&transport=polling")
            sid = httpx.Response(200, text=opened.text[1:]).json()["sid"]
            post = await http.post(
                f"/socket.io/?EIO=4&transport=polling&sid={sid}", content="4" + "x" * 2000
            )
            assert post.status_code == 413
        nursery.cancel_scope.cancel()


async def test_rooms_per_socket_is_limited(tmp_path: Path) -> None:
    config = gateway_config(tmp_path, limits=LimitsConfig(rooms_per_socket=2))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        for n in range(3):
            await gw.scripted.feed("wa-1", incoming(chat=f"{n}11@c.us"))

        async def scenario(sio: socketio.AsyncClient) -> list[Any]:
            await sio.connect(
                gw.base, namespaces=["/crm"], auth={"token": gw.token("acme")}, wait_timeout=5
            )
            return [
                await sio.call(
                    "join_conversation", {"conversationId": n}, namespace="/crm", timeout=5
                )
                for n in (1, 2, 3)
            ]

        answers = await run_python_client(scenario)
        assert [a["ok"] for a in answers] == [True, True, False]
        assert answers[2]["error"]["code"] == "too_many_rooms"
        nursery.cancel_scope.cancel()
