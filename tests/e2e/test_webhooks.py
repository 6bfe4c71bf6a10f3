"""Outgoing webhooks end to end: a real gateway, real tokens, a real receiver on 127.0.0.1.

These need the engine wiring (`Config.webhooks`, `Engine.webhooks` started in the engine's
nursery and fed by `publish_committed`, the `/api/webhooks` routes in the blueprint); until it
is in place they are skipped (see `pytestmark`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

from omnirelay.engine._config import Config
from omnirelay.engine._webhooks import WebhookConfig
from omnirelay.protocol import ChatKind

from ..engine.test_webhooks import Receiver
from .conftest import (
    Gateway,
    Scripted,
    WsClient,
    create_session,
    gateway_config,
    incoming,
    start_gateway,
)

pytestmark = pytest.mark.skipif(
    "webhooks" not in attrs.fields_dict(Config),
    reason="needs the engine wiring of webhooks (Config.webhooks, Engine.webhooks, routes)",
)

WEBHOOKS = WebhookConfig(
    timeout=1.0, backoff_base=0.05, backoff_max=0.2, max_attempts=4, allow_private_networks=True
)


def config_for(tmp_path: Path) -> Config:
    return gateway_config(tmp_path, webhooks=WEBHOOKS)


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with trio.open_nursery() as nursery:
        yield await Receiver().start(nursery)
        nursery.cancel_scope.cancel()


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with trio.open_nursery() as nursery:
        yield await start_gateway(nursery, config_for(tmp_path))
        nursery.cancel_scope.cancel()


async def create_webhook(gw: Gateway, tenant: str, **body: Any) -> dict[str, Any]:
    async with gw.http(tenant) as client:
        response = await client.post("/api/webhooks", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def dead_letters(client: httpx.AsyncClient, count: int) -> list[dict[str, Any]]:
    """The tenant's dead letters, once there are `count` of them."""
    with trio.fail_after(5):
        while True:
            dead: list[dict[str, Any]] = (await client.get("/api/webhooks/dead")).json()["dead"]
            if len(dead) == count:
                return dead
            await trio.sleep(0.02)


async def test_a_webhook_gets_exactly_the_envelopes_a_ws_client_gets(
    gateway: Gateway, receiver: Receiver
) -> None:
    await create_session(gateway, "acme", "wa-1")
    created = await create_webhook(gateway, "acme", url=receiver.url("/hook"))
    client = await WsClient.connect(gateway.ws_url(token=gateway.token("acme")))
    try:
        await gateway.scripted.feed("wa-1", incoming())
        on_ws = [await client.recv_event("new_chat"), await client.recv_event("new_message")]
    finally:
        await client.close()
    posted = await receiver.wait_for("/hook", 2)
    assert [r.envelope for r in posted] == on_ws
    for received in posted:
        digest = hmac.new(created["secret"].encode(), received.body, hashlib.sha256).hexdigest()
        assert received.headers["x-omnirelay-signature"] == f"sha256={digest}"
        assert received.headers["x-omnirelay-event"] == received.envelope["event"]


async def test_webhook_filters_narrow_like_ws_subscriptions(
    gateway: Gateway, receiver: Receiver
) -> None:
    await create_session(gateway, "acme", "wa-1")
    await create_webhook(
        gateway,
        "acme",
        url=receiver.url("/group"),
        filters=[{"chat_id": "120363000000000001@g.us", "event": "new_message"}],
    )
    await create_webhook(gateway, "acme", url=receiver.url("/all"))
    await gateway.scripted.feed("wa-1", incoming())
    await gateway.scripted.feed(
        "wa-1", incoming("120363000000000001@g.us", "oi", kind=ChatKind.GROUP)
    )
    await receiver.wait_for("/all", 4)
    (group,) = await receiver.wait_for("/group", 1)
    assert group.envelope["event"] == "new_message"
    assert group.envelope["data"]["text"] == "oi"


async def test_the_rest_api_hides_secrets_and_keeps_tenants_apart(
    gateway: Gateway, receiver: Receiver
) -> None:
    created = await create_webhook(
        gateway, "acme", url=receiver.url("/hook"), filters=[{"event": "new_message"}]
    )
    webhook_id = created["id"]
    async with gateway.http("acme") as acme:
        listed = (await acme.get("/api/webhooks")).json()["webhooks"]
        assert [w["id"] for w in listed] == [webhook_id]
        one = (await acme.get(f"/api/webhooks/{webhook_id}")).json()
        assert "secret" not in one
        assert created["secret"] not in str(listed) + str(one)
    async with gateway.http("globex") as globex:
        assert (await globex.get("/api/webhooks")).json() == {"webhooks": []}
        for method in ("GET", "PATCH", "DELETE"):
            answer = await globex.request(method, f"/api/webhooks/{webhook_id}", json={})
            assert answer.status_code == 404
            assert answer.json()["error"]["code"] == "webhook_not_found"
        refused = await globex.post(
            "/api/webhooks", json={"url": receiver.url("/x"), "tenant": "acme"}
        )
        assert refused.status_code == 403
    async with gateway.http(token="admin-secret") as admin:
        everything = (await admin.get("/api/webhooks")).json()["webhooks"]
        assert [w["tenant"] for w in everything] == ["acme"]
        named = await admin.post(
            "/api/webhooks", json={"url": receiver.url("/g"), "tenant": "globex"}
        )
        assert named.status_code == 201
        assert named.json()["tenant"] == "globex"
    async with gateway.http() as anonymous:
        answer = await anonymous.get("/api/webhooks")
        assert answer.status_code == 401
        assert answer.json()["error"]["code"] == "missing_token"
    async with gateway.http("acme") as acme:
        assert (await acme.delete(f"/api/webhooks/{webhook_id}")).status_code == 204
        assert (await acme.get("/api/webhooks")).json() == {"webhooks": []}


async def test_a_404_is_a_dead_letter_in_the_rest_api_and_a_replay_delivers_it(
    gateway: Gateway, receiver: Receiver
) -> None:
    await create_session(gateway, "acme", "wa-1")
    url = receiver.script("/hook", 404)
    created = await create_webhook(gateway, "acme", url=url, filters=[{"event": "new_chat"}])
    await gateway.scripted.feed("wa-1", incoming())
    (first,) = await receiver.wait_for("/hook", 1)
    async with gateway.http("acme") as acme:
        (letter,) = await dead_letters(acme, 1)
        assert letter["id"] == first.delivery
        assert letter["endpoint"] == created["id"]
        assert (letter["event"], letter["attempts"], letter["lastStatus"]) == ("new_chat", 1, 404)
        assert letter["seq"] == first.envelope["seq"]
        async with gateway.http("globex") as globex:
            assert (await globex.get("/api/webhooks/dead")).json()["dead"] == []
            foreign = await globex.post(f"/api/webhooks/dead/{letter['id']}/replay")
            assert foreign.status_code == 404
        replay = await acme.post(f"/api/webhooks/dead/{letter['id']}/replay")
        assert replay.status_code == 202
        _, again = await receiver.wait_for("/hook", 2)
        assert again.delivery == letter["id"]
        assert again.body == first.body
        assert await dead_letters(acme, 0) == []


async def test_pending_deliveries_survive_a_gateway_restart(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = config_for(tmp_path)
    url = receiver.script("/hook", *[503] * 100)
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        await create_webhook(gw, "acme", url=url, filters=[{"event": "new_message"}])
        await gw.scripted.feed("wa-1", incoming(), incoming(), incoming("77011112222@c.us"))
        await receiver.wait_for("/hook", 2)  # the head is failing, the rest wait behind it
        log = await gw.engine.store.read_log("acme", after=0, limit=100)
        nursery.cancel_scope.cancel()
    messages = [item.seq for item in log if item.event.type == "message.received"]
    assert len(messages) == 3
    failed = len(receiver.at("/hook"))
    assert {r.envelope["seq"] for r in receiver.at("/hook")} == {
        receiver.at("/hook")[0].envelope["seq"]
    }
    receiver.scripts["/hook"] = []  # healthy again

    async with trio.open_nursery() as nursery:
        await start_gateway(nursery, config, Scripted())
        posted = await receiver.wait_for("/hook", failed + 3)
        await trio.sleep(0.3)  # nothing more comes
        nursery.cancel_scope.cancel()

    after_restart = posted[failed:]
    assert len(receiver.at("/hook")) == failed + 3
    assert [int(r.envelope["seq"].split(":")[1]) for r in after_restart] == messages
    assert after_restart[0].delivery == posted[0].delivery  # the same delivery, at last
    assert len({r.delivery for r in after_restart}) == 3
