"""The gateway as a whole: tenant isolation, persistence, supervision, REST."""

from __future__ import annotations

import tempfile
from pathlib import Path

import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from omnirelay.engine._config import SupervisorConfig
from omnirelay.protocol import ChatKind, DeliveryState, MessageStatus

from .conftest import (
    T0,
    Gateway,
    Scripted,
    WsClient,
    create_session,
    gateway_config,
    incoming,
    start_gateway,
)

TENANTS = ("acme", "globex", "initech")


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    traffic=st.lists(
        st.tuples(
            st.sampled_from(TENANTS), st.integers(100, 105), st.text(min_size=1, max_size=30)
        ),
        min_size=1,
        max_size=12,
    )
)
async def test_a_client_never_receives_another_tenants_events(
    traffic: list[tuple[str, int, str]],
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with trio.open_nursery() as nursery:
            gw = await start_gateway(nursery, gateway_config(Path(tmp)))
            for tenant in TENANTS:
                await create_session(gw, tenant, f"s-{tenant}")
            clients = {t: await WsClient.connect(gw.ws_url(token=gw.token(t))) for t in TENANTS}
            for tenant, chat, text in traffic:
                await gw.scripted.feed(
                    f"s-{tenant}", incoming(chat=f"{chat}@c.us", text=f"{tenant}|{text}")
                )
            for tenant, client in clients.items():
                expected = [f"{t}|{x}" for t, _c, x in traffic if t == tenant]
                received = []
                while len(received) < len(expected):
                    envelope = await client.recv_event("new_message")
                    received.append(envelope["data"]["text"])
                assert received == expected
                # and nothing else of anybody's arrives afterwards
                await client.nothing_within(0.05, lambda e: e["event"] == "new_message")
                await client.close()
            nursery.cancel_scope.cancel()


async def test_restarting_on_the_same_database_keeps_sessions_chats_and_messages(
    tmp_path: Path,
) -> None:
    config = gateway_config(tmp_path)
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "wa-1")
        await gw.scripted.feed(
            "wa-1", incoming(chat="5511999999999@c.us", text="olá", message_id="A1")
        )
        await gw.scripted.feed(
            "wa-1", incoming(chat="5511999999999@c.us", text="tudo bem?", message_id="A2")
        )
        nursery.cancel_scope.cancel()

    async with trio.open_nursery() as nursery:
        scripted = Scripted()
        gw = await start_gateway(nursery, config, scripted)
        await scripted.wait_started("wa-1")  # autostart: the session came back by itself
        async with gw.http("acme") as http:
            sessions = (await http.get("/api/sessions")).json()["sessions"]
            assert [s["id"] for s in sessions] == ["wa-1"]
            chats = (await http.get("/api/whatsapp/sessions/wa-1/chats")).json()["chats"]
            assert [c["chatId"] for c in chats] == ["5511999999999@c.us"]
            assert chats[0]["unreadCount"] == 2
            messages = (await http.get(f"/api/chats/{chats[0]['id']}/messages")).json()["messages"]
            assert [m["body"] for m in messages] == ["tudo bem?", "olá"]
        # The same provider message again changes nothing.
        await scripted.feed(
            "wa-1", incoming(chat="5511999999999@c.us", text="olá", message_id="A1")
        )
        async with gw.http("acme") as http:
            messages = (await http.get(f"/api/chats/{chats[0]['id']}/messages")).json()["messages"]
            assert len(messages) == 2
        nursery.cancel_scope.cancel()


async def test_a_crashing_session_is_restarted_and_others_keep_flowing(tmp_path: Path) -> None:
    config = gateway_config(
        tmp_path, supervisor=SupervisorConfig(backoff_initial=0.05, backoff_max=0.2)
    )
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await create_session(gw, "acme", "flaky")
        await create_session(gw, "acme", "steady")
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
        await gw.scripted.crash("flaky")
        failed = await client.recv_event("session_status")
        assert failed["data"]["session_id"] == "flaky"
        assert failed["data"]["status"] == "failed"
        assert "scripted crash" in failed["data"]["reason"]
        await gw.scripted.feed("steady", incoming(text="still here"))
        assert (await client.recv_event("new_message"))["data"]["text"] == "still here"
        await gw.scripted.wait_started("flaky")
        assert gw.scripted.started["flaky"] == 2
        await gw.scripted.feed("flaky", incoming(chat="999@c.us", text="back again"))
        assert (await client.recv_event("new_message"))["data"]["text"] == "back again"
        async with gw.http("acme") as http:
            state = (await http.get("/api/sessions/flaky")).json()
            assert state["restarts"] == 1
            assert state["running"] is True
        await client.close()
        nursery.cancel_scope.cancel()


async def test_chat_filters_and_pagination(gateway: Gateway) -> None:
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    for n in range(5):
        await gw.scripted.feed("wa-1", incoming(chat=f"55119{n:08d}@c.us", text=f"direct {n}"))
    await gw.scripted.feed(
        "wa-1", incoming(chat="120363123456789012@g.us", text="group", kind=ChatKind.GROUP)
    )
    async with gw.http("acme") as http:

        async def chat_ids(query: str) -> list[str]:
            response = await http.get(f"/api/whatsapp/sessions/wa-1/chats{query}")
            assert response.status_code == 200, response.text
            return [c["chatId"] for c in response.json()["chats"]]

        default = await chat_ids("")
        assert len(default) == 5
        assert all(c.endswith("@c.us") for c in default)
        assert len(await chat_ids("?includeGroups=true")) == 6
        assert len(await chat_ids("?chatType=all")) == 6
        assert await chat_ids("?chatType=group") == ["120363123456789012@g.us"]
        assert len(await chat_ids("?chatType=individual")) == 5

        pages, cursor = [], None
        while True:
            query = "?limit=2" + (f"&cursor={cursor}" if cursor else "")
            body = (await http.get(f"/api/whatsapp/sessions/wa-1/chats{query}")).json()
            pages.append([c["chatId"] for c in body["chats"]])
            assert body["seq"].split(":")[1].isdigit()
            cursor = body["nextCursor"]
            if cursor is None:
                break
        assert [len(p) for p in pages] == [2, 2, 1]
        assert [chat for page in pages for chat in page] == default

        for bad in (
            "?chatType=secret",
            "?includeGroups=maybe",
            "?limit=0",
            "?limit=x",
            "?cursor=%%%",
        ):
            response = await http.get(f"/api/whatsapp/sessions/wa-1/chats{bad}")
            assert response.status_code == 400, bad
            assert set(response.json()["error"]) == {"code", "message"}


async def test_messages_pagination_and_mark_read(gateway: Gateway) -> None:
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    for n in range(7):
        await gw.scripted.feed("wa-1", incoming(chat="111@c.us", text=f"m{n}", message_id=f"M{n}"))
    client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
    async with gw.http("acme") as http:
        chat = (await http.get("/api/whatsapp/sessions/wa-1/chats")).json()["chats"][0]
        assert chat["unreadCount"] == 7
        bodies, cursor = [], None
        while True:
            query = "?limit=3" + (f"&cursor={cursor}" if cursor else "")
            page = (await http.get(f"/api/chats/{chat['id']}/messages{query}")).json()
            bodies += [m["body"] for m in page["messages"]]
            cursor = page["nextCursor"]
            if cursor is None:
                break
        assert bodies == [f"m{n}" for n in reversed(range(7))]

        response = await http.post(f"/api/chats/{chat['id']}/read")
        assert response.status_code == 200
        assert response.json()["unreadCount"] == 0
        update = await client.recv_event("chat_updated")
        assert update["data"]["unread_count"] == 0

        for bad in ("99999999999999999999999", "0"):
            response = await http.get(f"/api/chats/{bad}/messages")
            assert response.status_code == 404
            assert response.json()["error"]["code"] == "chat_not_found"
        async with gw.http("globex") as other:
            assert (await other.get(f"/api/chats/{chat['id']}/messages")).status_code == 404
            assert (await other.post(f"/api/chats/{chat['id']}/read")).status_code == 404
    await client.close()


async def test_session_rest_lifecycle(gateway: Gateway) -> None:
    gw = gateway
    async with gw.http("acme") as http:
        assert (
            await http.post("/api/sessions", json={"id": "bad id", "provider": "scripted"})
        ).status_code == 400
        assert (await http.post("/api/sessions", json={"id": "x", "provider": "nope"})).json()[
            "error"
        ]["code"] == ("unknown_provider")
        assert (await http.post("/api/sessions", content=b"{oops")).json()["error"][
            "code"
        ] == "invalid_json"
        created = await http.post(
            "/api/sessions", json={"id": "wa-1", "provider": "scripted", "name": "Vendas"}
        )
        assert created.status_code == 201
        assert created.json()["name"] == "Vendas"
        assert (
            await http.post("/api/sessions", json={"id": "wa-1", "provider": "scripted"})
        ).status_code == 409
        await gw.scripted.wait_started("wa-1")
        test = (await http.post("/api/sessions/wa-1/test")).json()
        assert test == {
            "ok": True,
            "message": "scripted session is fine",
            "details": {"session": "wa-1"},
        }
        stopped = (await http.post("/api/sessions/wa-1/disconnect")).json()
        assert stopped["running"] is False
        assert (await http.post("/api/sessions/wa-1/test")).json()["ok"] is False
        started = (await http.post("/api/sessions/wa-1/connect")).json()
        assert started["running"] is True
        async with gw.http("globex") as other:
            assert (await other.get("/api/sessions/wa-1")).status_code == 404
            assert (await other.delete("/api/sessions/wa-1")).status_code == 404
            assert (await other.get("/api/sessions")).json() == {"sessions": []}
        assert (await http.delete("/api/sessions/wa-1")).status_code == 204
        assert (await http.get("/api/sessions/wa-1")).status_code == 404
    async with gw.http(token="admin-secret") as admin:
        response = await admin.post(
            "/api/sessions", json={"id": "g-1", "provider": "scripted", "tenant": "globex"}
        )
        assert response.status_code == 201
        assert response.json()["tenant"] == "globex"
        assert [s["id"] for s in (await admin.get("/api/sessions")).json()["sessions"]] == ["g-1"]
    async with gw.http() as anonymous:
        response = await anonymous.get("/api/sessions")
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "missing_token"


async def test_status_updates_flow_and_only_advance(gateway: Gateway) -> None:
    gw = gateway
    await create_session(gw, "acme", "wa-1")
    client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
    sent = incoming(chat="111@c.us", message_id="OUT1")
    await gw.scripted.feed("wa-1", sent)
    await client.recv_event("new_message")

    def status(state: DeliveryState, n: int) -> MessageStatus:
        return MessageStatus(
            provider="scripted",
            occurred_at=T0.replace(second=n),
            chat=sent.chat,
            message_id="OUT1",
            state=state,
        )

    await gw.scripted.feed(
        "wa-1", status(DeliveryState.READ, 5), status(DeliveryState.DELIVERED, 6)
    )
    read = await client.recv_event("message_read")
    assert read["data"]["user_id"] == 111
    await client.nothing_within(0.2, lambda e: e["event"] in ("message_status", "message_read"))
    await client.close()


async def test_health_readiness_and_metrics(gateway: Gateway) -> None:
    async with gateway.http() as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = (await http.get("/readyz")).json()
        assert ready["status"] == "ready"
        metrics = (await http.get("/metrics")).text
        for name in (
            "omnirelay_connections",
            "omnirelay_events_in_total",
            "omnirelay_fanout_seconds",
            "omnirelay_queue_drops_total",
            "omnirelay_session_restarts_total",
        ):
            assert name in metrics
        missing = await http.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "not_found"


async def test_the_simulator_streams_through_every_stage_without_render_errors(
    gateway: Gateway,
) -> None:
    gw = gateway
    client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
    async with gw.http("acme") as http:
        response = await http.post(
            "/api/sessions",
            json={
                "id": "sim",
                "provider": "simulator",
                "options": {"benchmark": True, "rate": 2000.0, "max_events": 1500, "seed": 11},
            },
        )
        assert response.status_code == 201, response.text
        seen: set[str] = set()
        with trio.fail_after(30):
            while not {"new_message", "user_typing", "message_read", "session_status"} <= seen:
                seen.add((await client.recv())["event"])
        metrics = (await http.get("/metrics")).text
    errors = [
        line for line in metrics.splitlines() if line.startswith("omnirelay_render_errors_total{")
    ]
    assert all(line.endswith(" 0.0") for line in errors), errors
    await client.close()


async def test_cors_for_rest_and_socketio_polling(tmp_path: Path) -> None:
    from omnirelay.engine._config import ServerConfig

    config = gateway_config(
        tmp_path,
        server=ServerConfig(
            host="127.0.0.1", port=0, cors_origins=("https://crm.example",), cors_credentials=True
        ),
    )
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        async with gw.http("acme") as http:
            allowed = {"Origin": "https://crm.example"}
            for response in (
                await http.get("/api/sessions", headers=allowed),
                await http.options(
                    "/api/sessions", headers={**allowed, "Access-Control-Request-Method": "POST"}
                ),
                await http.get("/socket.io/?EIO=4&transport=polling", headers=allowed),
                await http.options("/socket.io/?EIO=4&transport=polling", headers=allowed),
            ):
                assert response.status_code < 300, response.text
                assert response.headers["access-control-allow-origin"] == "https://crm.example"
                assert response.headers["access-control-allow-credentials"] == "true"
                assert "authorization" in response.headers["access-control-allow-headers"]
            other = await http.get("/api/sessions", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
        nursery.cancel_scope.cancel()
