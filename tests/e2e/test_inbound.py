"""Provider webhooks in (`/hooks/{provider}/{session_id}`), through the simulator's hook.

The answers a pushing provider relies on: 200 only once the event is stored, 503 (with
Retry-After) while the store cannot take it, so its retry lands later, exactly once.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import attrs
import httpx
import trio

from .conftest import (
    Gateway,
    WsClient,
    create_session,
    gateway_config,
    post_oversize,
    start_gateway,
)

SECRET = "simulator-hook-secret-42"
HEADERS = {"X-Simulator-Secret": SECRET}
QUIET = {"qr_rounds": 0, "rate": 0.0001, "seed": 3}  # links at once, then (almost) silent


async def simulator_session(gw: Gateway, session_id: str, **options: Any) -> None:
    async with gw.http("acme") as http:
        body = {"id": session_id, "provider": "simulator", "options": {**QUIET, **options}}
        response = await http.post("/api/sessions", json=body)
        assert response.status_code == 201, response.text
        for _ in range(500):  # bounded: the session starts within a moment
            state = (await http.get(f"/api/sessions/{session_id}")).json()
            if state["running"] and state["state"] == "connected":
                return
            await trio.sleep(0.01)
    raise AssertionError(f"session {session_id} did not start: {state}")


def hook(session_id: str = "sim", provider: str = "simulator") -> str:
    return f"/hooks/{provider}/{session_id}"


def customer(message_id: str, text: str = "Olá! Quero fazer um pedido 🛒") -> dict[str, Any]:
    return {"id": message_id, "from": "+55 11 98765-4321", "name": "Maria", "text": text}


async def new_messages(client: WsClient, seconds: float = 0.5) -> list[dict[str, Any]]:
    """The `new_message` envelopes that arrive within `seconds` of quiet."""
    got = []
    try:
        while True:
            envelope = await client.recv(seconds)
            if envelope["event"] == "new_message":
                got.append(envelope)
    except TimeoutError:
        return got


async def test_an_injected_message_is_stored_fanned_out_and_idempotent(gateway: Gateway) -> None:
    gw = gateway
    await simulator_session(gw, "sim", webhook_secret=SECRET)
    client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
    async with gw.http() as http:
        first = await http.post(hook(), json=customer("order-1"), headers=HEADERS)
        assert first.status_code == 200
        assert first.json() == {"ok": True, "stored": True}
        again = await http.post(hook(), json=customer("order-1"), headers=HEADERS)
        assert again.json() == {"ok": True, "stored": False}  # a redelivery changes nothing
    [envelope] = await new_messages(client)
    assert envelope["data"]["text"] == "Olá! Quero fazer um pedido 🛒"
    assert envelope["data"]["user_name"] == "Maria"
    await client.close()


async def test_every_bad_webhook_request_gets_a_clear_json_error(gateway: Gateway) -> None:
    gw = gateway
    await simulator_session(gw, "sim", webhook_secret=SECRET)
    await simulator_session(gw, "closed")  # no webhook_secret: the hook is off
    await create_session(gw, "acme", "scripted-1")  # a provider without webhooks
    before = await gw.engine.store.last_seq("acme")
    async with gw.http() as http:
        cases: list[tuple[httpx.Response, int, str]] = [
            (await http.post(hook(), json=customer("a")), 401, "bad_secret"),
            (
                await http.post(hook(), json=customer("a"), headers={"X-Simulator-Secret": "no"}),
                401,
                "bad_secret",
            ),
            (await http.post(hook("closed"), json=customer("a")), 404, "webhook_disabled"),
            (await http.post(hook("nobody"), json=customer("a")), 404, "session_not_found"),
            (await http.post(hook("sim", "telegram"), json={}), 404, "session_not_found"),
            (await http.post(hook("scripted-1", "scripted"), json={}), 404, "no_webhook"),
            (await http.get(hook(), headers=HEADERS), 405, "method_not_allowed"),
            (await http.post(hook(), content=b"{nope", headers=HEADERS), 400, "invalid_json"),
            (await http.post(hook(), json=[1], headers=HEADERS), 400, "invalid_body"),
            (
                await http.post(hook(), json={**customer("a"), "from": "abc"}, headers=HEADERS),
                400,
                "invalid_body",
            ),
            (
                await http.post(hook(), json={**customer("a"), "text": ""}, headers=HEADERS),
                400,
                "invalid_body",
            ),
        ]
        for response, status, code in cases:
            assert response.status_code == status, (code, response.text)
            assert response.json()["error"]["code"] == code
        status, _headers, body = await post_oversize(gw, hook(), 2_000_000, HEADERS)
        assert status == 413
        assert json.loads(body)["error"]["code"] == "payload_too_large"
        assert await gw.engine.store.last_seq("acme") == before  # nothing above was stored
        async with gw.http("acme") as api:
            await api.post("/api/sessions/sim/disconnect")
        stopped = await http.post(hook(), json=customer("late"), headers=HEADERS)
        assert stopped.status_code == 503
        assert stopped.json()["error"]["code"] == "session_stopped"
        assert stopped.headers["retry-after"] == "5"


async def test_a_locked_database_answers_503_and_the_retry_lands_once(tmp_path: Path) -> None:
    """Another process holds SQLite's write lock past busy_timeout: the push is refused with
    503 (nothing half-written, clients see nothing); once the lock is gone the provider's
    retry is stored and every client gets it exactly once."""
    config = gateway_config(tmp_path)
    config = attrs.evolve(config, storage=attrs.evolve(config.storage, busy_timeout=0.2))
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await simulator_session(gw, "sim", webhook_secret=SECRET)
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
        before = await gw.engine.store.last_seq("acme")

        other = sqlite3.connect(config.storage.path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # a second writer takes the lock and keeps it
        async with gw.http() as http:
            for attempt in range(3):  # the provider retries while the lock is held
                refused = await http.post(hook(), json=customer("order-7"), headers=HEADERS)
                assert refused.status_code == 503, (attempt, refused.text)
                assert refused.json()["error"]["code"] == "store_unavailable"
                assert refused.headers["retry-after"] == "5"
            assert await gw.engine.store.last_seq("acme") == before
            assert await new_messages(client, 0.2) == []
            other.execute("ROLLBACK")  # the fault clears
            other.close()
            accepted = await http.post(hook(), json=customer("order-7"), headers=HEADERS)
            assert accepted.json() == {"ok": True, "stored": True}
            late = await http.post(hook(), json=customer("order-7"), headers=HEADERS)
            assert late.json() == {"ok": True, "stored": False}
        [envelope] = await new_messages(client)
        assert envelope["data"]["text"] == "Olá! Quero fazer um pedido 🛒"
        await client.close()
        nursery.cancel_scope.cancel()


async def test_a_full_disk_answers_503_and_the_retry_lands_once(tmp_path: Path) -> None:
    config = gateway_config(tmp_path)
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, config)
        await simulator_session(gw, "sim", webhook_secret=SECRET)
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))
        store = gw.engine.store
        before = await store.last_seq("acme")

        def full(conn: sqlite3.Connection) -> None:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await store._write(full)  # type: ignore[attr-defined]
        text = "Um pedido grande: " + "🛒" * 3000  # needs new pages
        async with gw.http() as http:
            refused = await http.post(hook(), json=customer("big-1", text), headers=HEADERS)
            assert refused.status_code == 503
            assert refused.json()["error"]["code"] == "store_unavailable"
            assert await store.last_seq("acme") == before
            await store._write(  # type: ignore[attr-defined]
                lambda conn: conn.execute("PRAGMA max_page_count = 1073741823")
            )
            accepted = await http.post(hook(), json=customer("big-1", text), headers=HEADERS)
            assert accepted.json() == {"ok": True, "stored": True}
        [envelope] = await new_messages(client)
        assert envelope["data"]["text"] == text
        await client.close()
        nursery.cancel_scope.cancel()


async def test_a_failing_webhook_handler_is_a_500_without_details(tmp_path: Path) -> None:
    from omnirelay.engine import InboundCall, InboundReply, Provider, SessionContext, hookimpl
    from omnirelay.engine._auth import Authenticator
    from omnirelay.engine._server import serve

    from .conftest import Scripted

    class Exploding:
        @hookimpl
        def omnirelay_providers(self) -> list[Provider]:
            return [Provider(name="exploding", run=self.run, webhook=self.webhook)]

        async def run(self, context: SessionContext) -> None:
            await trio.sleep_forever()

        async def webhook(self, call: InboundCall) -> InboundReply:
            raise RuntimeError("secret internals: token=abc")

    config = gateway_config(tmp_path)
    async with trio.open_nursery() as nursery:
        engine, (host, port) = await nursery.start(
            lambda task_status: serve(config, plugins=(Exploding(),), task_status=task_status)
        )
        gw = Gateway(engine, host, port, Scripted(), Authenticator.from_config(config.auth))
        async with gw.http("acme") as http:
            created = await http.post("/api/sessions", json={"id": "x", "provider": "exploding"})
            assert created.status_code == 201
            answer = await http.post("/hooks/exploding/x", json={})
        assert answer.status_code == 500
        assert answer.json() == {
            "error": {"code": "internal_error", "message": "the webhook could not be processed"}
        }
        nursery.cancel_scope.cancel()
