"""`/ws` with the `websockets` package: envelopes, filters, bad input, auth, shutdown.

Every test in this file runs twice through `any_gateway`: on the native listener (standalone)
and through ASGI with the gateway embedded in a QuartTrio app.
"""

from __future__ import annotations

import httpx
import pytest
import trio
import websockets.exceptions

from .conftest import Gateway, WsClient, create_session, incoming


async def connect(gw: Gateway, tenant: str, **query: str) -> WsClient:
    return await WsClient.connect(gw.ws_url(token=gw.token(tenant), **query))


async def test_a_new_message_arrives_as_new_chat_then_new_message(any_gateway: Gateway) -> None:
    gw = any_gateway
    await create_session(gw, "acme", "wa-1")
    client = await connect(gw, "acme")
    await gw.scripted.feed("wa-1", incoming(text="Когда будет доставка?"))

    new_chat = await client.recv_event("new_chat")
    assert new_chat["data"] == {
        "user_id": 77079856339,
        "user_name": "Солнышко мое 😊",
        "username": None,
        "source": "scripted",  # a third-party provider's own name (docs/dialects.md)
        "first_message": "Когда будет доставка?",
    }
    new_message = await client.recv_event("new_message")
    data = new_message["data"]
    assert isinstance(data["message_id"], int)
    assert data["user_id"] == 77079856339
    assert data["text"] == "Когда будет доставка?"
    assert data["source"] == "scripted"
    assert new_message["timestamp"].endswith("Z")
    epoch, seq = new_message["seq"].split(":")
    assert epoch
    assert int(seq) == int(new_chat["seq"].split(":")[1]) + 1
    await client.close()


async def test_bad_tokens_are_refused_before_the_upgrade(any_gateway: Gateway) -> None:
    gw = any_gateway
    for url in (
        gw.ws_url(),
        gw.ws_url(token="garbage"),
        gw.ws_url(token=gw.auth.mint("acme", ttl=-60)),
    ):
        with pytest.raises(websockets.exceptions.InvalidStatus) as info:
            await WsClient.connect(url)
        response = info.value.response
        assert response.status_code == 401
        assert b'"error"' in response.body
        assert b"Traceback" not in response.body


async def test_the_bearer_header_works_too(any_gateway: Gateway) -> None:
    gw = any_gateway
    client = await WsClient.connect(
        gw.ws_url(), headers={"Authorization": f"Bearer {gw.token('acme')}"}
    )
    await client.send({"action": "ping", "id": 7})
    assert (await client.recv_event("pong"))["data"] == {"id": 7}
    await client.close()


async def test_filters_narrow_and_union(any_gateway: Gateway) -> None:
    gw = any_gateway
    await create_session(gw, "acme", "wa-1")
    client = await connect(gw, "acme")
    await client.send({"action": "subscribe", "filter": {"user_id": 111}})
    assert (await client.recv_event("subscribed"))["data"]["filter"] == {"user_id": ["111"]}

    await gw.scripted.feed("wa-1", incoming(chat="222@c.us", text="not for you"))
    await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text="for you"))
    got = await client.recv_event("new_message")
    assert got["data"]["text"] == "for you"

    await client.send({"action": "subscribe", "filter": {"event": "new_chat"}})
    await client.recv_event("subscribed")
    await gw.scripted.feed("wa-1", incoming(chat="333@c.us", text="third"))
    assert (await client.recv_event("new_chat"))["data"]["user_id"] == 333

    await client.send({"action": "unsubscribe", "filter": {"user_id": 111}})
    await client.recv_event("unsubscribed")
    await client.send({"action": "unsubscribe", "filter": {"event": "new_chat"}})
    await client.recv_event("unsubscribed")
    # No filters left: every event of the tenant again.
    await gw.scripted.feed("wa-1", incoming(chat="222@c.us", text="everyone again"))
    assert (await client.recv_event("new_message"))["data"]["text"] == "everyone again"
    await client.close()


@pytest.mark.parametrize(
    ("sent", "code"),
    [
        ("not json", "invalid_json"),
        ('["an", "array"]', "not_an_object"),
        ('{"action": "dance"}', "unknown_action"),
        ('{"action": "subscribe", "filter": {"colour": "red"}}', "invalid_filter"),
        ('{"action": "subscribe", "filter": {}}', "invalid_filter"),
        ('{"action": "resume", "since": "nope"}', "invalid_cursor"),
        (b"\x00\x01binary", "binary_not_supported"),
        ('{"action": "unsubscribe", "filter": {"user_id": 5}}', "not_subscribed"),
    ],
)
async def test_malformed_input_gets_an_error_and_the_connection_stays(
    any_gateway: Gateway, sent: str | bytes, code: str
) -> None:
    client = await connect(any_gateway, "acme")
    await client.send(sent)
    error = await client.recv_event("error")
    assert error["data"]["code"] == code
    assert isinstance(error["data"]["message"], str)
    await client.send({"action": "ping"})
    await client.recv_event("pong")
    await client.close()


async def test_server_publish_reaches_the_tenant_only(any_gateway: Gateway) -> None:
    gw = any_gateway
    mine, theirs = await connect(gw, "acme"), await connect(gw, "globex")
    async with gw.http("acme") as http:
        response = await http.post(
            "/api/publish", json={"event": "announcement", "data": {"text": "hi 👋"}}
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"delivered": 1}
    got = await mine.recv_event("announcement")
    assert got["data"] == {"text": "hi 👋"}
    await theirs.nothing_within(0.3)
    await mine.close()
    await theirs.close()


async def test_operator_disconnects_a_connection(any_gateway: Gateway) -> None:
    gw = any_gateway
    client = await connect(gw, "acme")
    async with gw.http("acme") as http:
        listed = (await http.get("/api/connections")).json()["connections"]
        assert len(listed) == 1
        connection_id = listed[0]["id"]
        async with gw.http("globex") as other:
            refused = await other.post(f"/api/connections/{connection_id}/disconnect", json={})
            assert refused.status_code == 404
        response = await http.post(
            f"/api/connections/{connection_id}/disconnect", json={"reconnect": False}
        )
        assert response.status_code == 200
    assert await client.wait_closed() == (4000, "disconnected by the server")


async def test_shutdown_closes_clients_with_1001(tmp_path: object) -> None:
    from pathlib import Path

    from .conftest import gateway_config, start_gateway

    assert isinstance(tmp_path, Path)
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, gateway_config(tmp_path))
        client = await connect(gw, "acme")
        nursery.cancel_scope.cancel()
    code, _reason = await client.wait_closed()
    assert code == 1001


async def test_user_routes_keep_working_when_embedded(tmp_path: object) -> None:
    from pathlib import Path

    from .conftest import gateway_config, start_embedded

    assert isinstance(tmp_path, Path)
    async with trio.open_nursery() as nursery:
        gw = await start_embedded(nursery, gateway_config(tmp_path))
        async with httpx.AsyncClient(base_url=gw.base) as http:
            assert (await http.get("/hello")).json() == {"hello": "from the user's own route"}
            assert (await http.get("/healthz")).json() == {"status": "ok"}
        nursery.cancel_scope.cancel()
