"""Fault injection while the simulator publishes: clients lose their connection mid-stream and
resume; what they end up with is checked against the log, seq by seq."""

from __future__ import annotations

from collections import Counter
from typing import Any

import trio

from omnirelay.engine._hub import EnvelopeFormat, SocketIOFormat
from omnirelay.protocol import Cursor

from .conftest import Gateway, WsClient
from .jsclient import NodeClient, require_node

SIMULATOR = {"benchmark": True, "rate": 300.0, "max_events": 1500, "seed": 5, "qr_rounds": 0}


async def start_simulator(gw: Gateway, session_id: str) -> None:
    async with gw.http("acme") as http:
        response = await http.post(
            "/api/sessions", json={"id": session_id, "provider": "simulator", "options": SIMULATOR}
        )
        assert response.status_code == 201, response.text


async def wait_until_stopped(gw: Gateway, session_id: str) -> None:
    actor = gw.engine.sessions.get(session_id)
    if actor is not None:
        with trio.fail_after(30):
            await actor.done.wait()


async def expected_frames(gw: Gateway, fmt: Any) -> Counter[tuple[int, str]]:
    """(seq, event name) of every frame the log renders in this format: what a client that
    missed nothing has seen, each exactly once."""
    expected: Counter[tuple[int, str]] = Counter()
    after = 0
    while True:
        page = await gw.engine.store.read_log("acme", after=after, limit=500)
        for stored in page:
            assert stored.seq is not None
            for rendition, _frame in fmt.render(
                stored, gw.engine.store.epoch, gw.engine.hub._render_one
            ):
                expected[(stored.seq, rendition.name)] += 1
            after = stored.seq
        if len(page) < 500:
            return expected


async def test_socketio_client_recovers_through_dropped_transports_without_gap_or_duplicate(
    gateway: Gateway,
) -> None:
    require_node()
    gw = gateway
    spec = {
        "url": gw.base + "/",
        "options": {
            "transports": ["websocket"],
            "auth": {"token": gw.token("acme")},
            "reconnectionDelay": 100,
            "reconnectionDelayMax": 200,
        },
        "steps": [{"wait": {"connect": 1}}, {"until_stdin": True}],
        "timeout": 60000,
    }
    async with NodeClient(spec, seconds=70) as client, gw.http("acme") as http:
        first = await client.wait_for("connect")
        await client.wait_for("waiting_stdin")
        await start_simulator(gw, "sim")
        for _ in range(2):  # drop the transport twice, mid-stream
            await trio.sleep(0.7)
            response = await http.post(
                f"/api/connections/{first['id']}/disconnect", json={"reconnect": True}
            )
            assert response.status_code == 200
            await client.wait_for("disconnect")
            again = await client.wait_for("connect")
            assert again["recovered"] is True
            assert again["id"] == first["id"]
        await wait_until_stopped(gw, "sim")
        await trio.sleep(0.3)
        await client.send_line()
        await client.finish()
    got: Counter[tuple[int, str]] = Counter()
    for line in client.lines:
        if line.get("t") == "event" and isinstance(line["args"][-1], str):
            got[(Cursor.parse_offset(line["args"][-1])[0].seq, line["name"])] += 1
    namespace = next(n for n in gw.engine.config.socketio.namespaces if n.name == "/")
    fmt = SocketIOFormat(
        "/", tuple(gw.engine.dialects.get(d) for d in namespace.dialects), offsets=True
    )
    expected = await expected_frames(gw, fmt)
    assert sum(expected.values()) > 500
    assert got == expected  # nothing missing, nothing twice


async def test_websocket_client_resumes_through_dropped_connections_without_gap_or_duplicate(
    gateway: Gateway,
) -> None:
    gw = gateway
    token = gw.token("acme")
    got: Counter[tuple[int, str]] = Counter()
    last: str | None = None

    async def read_for(client: WsClient, seconds: float) -> None:
        nonlocal last
        deadline = trio.current_time() + seconds
        while (left := deadline - trio.current_time()) > 0:
            try:
                envelope = await client.recv(seconds=left)
            except TimeoutError:
                return
            if "seq" in envelope:
                got[(int(envelope["seq"].split(":")[1]), envelope["event"])] += 1
                last = envelope["seq"]

    client = await WsClient.connect(gw.ws_url(token=token))
    await start_simulator(gw, "sim")
    for _ in range(3):  # the client drops its connection mid-stream and comes back
        await read_for(client, 0.6)
        await client.close()
        assert last is not None
        client = await WsClient.connect(gw.ws_url(token=token, since=last))
    await wait_until_stopped(gw, "sim")
    await read_for(client, 1.0)
    await client.close()
    expected = await expected_frames(gw, EnvelopeFormat(gw.engine.dialects.get("envelope")))
    assert sum(expected.values()) > 500
    assert got == expected


async def test_disk_full_during_ingest_loses_nothing_and_recovers(tmp_path: Any) -> None:
    """The store fails (a full disk, made with SQLite's max_page_count) while a provider is
    delivering: the provider is told (StoreError, which a webhook answers with 5xx and a poller
    with not advancing its offset), nothing is half-written, clients see nothing yet; once the
    fault clears the provider's retry lands, and clients get each event exactly once."""
    import sqlite3

    from omnirelay.engine import Provider, SessionContext, StoreError, hookimpl
    from omnirelay.engine._auth import Authenticator
    from omnirelay.engine._server import serve

    from .conftest import Scripted, create_session, gateway_config, incoming

    class Redelivering:
        """A provider whose upstream redelivers until acknowledged (like a webhook sender)."""

        def __init__(self) -> None:
            self.inbox_send, self.inbox = trio.open_memory_channel[Any](10)
            self.failures = 0
            self.failing = trio.Event()  # set after a few refused attempts
            self.acknowledged = trio.Event()

        @hookimpl
        def omnirelay_providers(self) -> list[Provider]:
            return [Provider(name="redelivering", run=self.run)]

        async def run(self, context: SessionContext) -> None:
            async for events in self.inbox:
                while True:
                    try:
                        await context.emit(*events)
                        break
                    except StoreError:
                        self.failures += 1
                        if self.failures >= 3:
                            self.failing.set()
                        await trio.sleep(0.05)
                self.acknowledged.set()

    provider = Redelivering()
    config = gateway_config(tmp_path)
    async with trio.open_nursery() as nursery:
        engine, (host, port) = await nursery.start(
            lambda task_status: serve(config, plugins=(provider,), task_status=task_status)
        )
        gw = Gateway(engine, host, port, Scripted(), Authenticator.from_config(config.auth))
        await create_session(gw, "acme", "fragile", provider="redelivering")
        client = await WsClient.connect(gw.ws_url(token=gw.token("acme")))

        def cap(conn: sqlite3.Connection) -> None:
            (pages,) = conn.execute("PRAGMA page_count").fetchone()
            conn.execute(f"PRAGMA max_page_count = {pages}")

        await engine.store._write(cap)  # the disk is full from now on
        big = [
            incoming(chat=f"9{n}@c.us", text="x" * 3000, message_id=f"BIG{n}") for n in range(10)
        ]
        await provider.inbox_send.send(big)
        with trio.fail_after(10):
            await provider.failing.wait()
        assert await engine.store.last_seq("acme") == 0  # nothing half-written
        await client.nothing_within(0.1)
        await engine.store._write(lambda conn: conn.execute("PRAGMA max_page_count = 1073741823"))
        with trio.fail_after(10):
            await provider.acknowledged.wait()
        texts = []
        while len(texts) < 10:
            envelope = await client.recv_event("new_message")
            texts.append(envelope["data"]["text"])
        assert len(texts) == 10
        await client.nothing_within(0.2, lambda e: e["event"] == "new_message")  # once each
        async with gw.http("acme") as http:
            chats = (await http.get("/api/whatsapp/sessions/fragile/chats")).json()["chats"]
            assert len(chats) == 10
        await client.close()
        nursery.cancel_scope.cancel()
