"""Hypothesis stateful test: no durable event is ever lost, duplicated or reordered for a client.

Random interleavings of publish, connect, disconnect, resume (`?since=` and the `resume`
action), gateway restart on the same database, and subscribe/unsubscribe, against a real
gateway on 127.0.0.1 and real `websockets` clients. The model is a list per client of the
seqs it must have received, in order:

* while connected, every event published that matches its filters (none: everything);
* on reconnecting with `?since=<the last seq it saw>`, every event after that (a new connection
  has no filters yet), then live ones;
* a `resume` action while connected and up to date adds nothing.

After every step each connected client sends a `ping` and reads up to its `pong`: frames go
out in order, so everything published before is in by then, and what it received must equal
the model exactly.

The gateway runs in a trio loop in a background thread for the life of one state machine
(rules are synchronous; each one runs a coroutine in that loop), so connections and the
gateway survive between steps like they would in production.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import attrs
import pytest
import trio
import trio.lowlevel
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from omnirelay.engine._config import LimitsConfig

from .conftest import Gateway, Scripted, WsClient, create_session, gateway_config, incoming
from .conftest import start_gateway as start_in

pytestmark = pytest.mark.e2e

T = TypeVar("T")
CHATS = ("111@c.us", "222@c.us")
CLIENTS = 3


class Portal:
    """A trio loop in a thread; `run` executes a coroutine function in it and returns."""

    def __init__(self) -> None:
        ready = threading.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self._stop: trio.Event | None = None
        self.nursery: trio.Nursery | None = None

        async def main() -> None:
            self._token = trio.lowlevel.current_trio_token()
            self._stop = trio.Event()
            async with trio.open_nursery() as nursery:
                self.nursery = nursery
                ready.set()
                await self._stop.wait()
                nursery.cancel_scope.cancel()

        self._thread = threading.Thread(target=trio.run, args=(main,), daemon=True)
        self._thread.start()
        assert ready.wait(10), "the trio loop did not start"

    def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        async def bounded() -> T:
            with trio.fail_after(30):
                return await fn()

        return trio.from_thread.run(bounded, trio_token=self._token)

    def close(self) -> None:
        assert self._stop is not None
        trio.from_thread.run_sync(self._stop.set, trio_token=self._token)
        self._thread.join(20)
        assert not self._thread.is_alive(), "the trio loop did not stop"


@attrs.define
class Running:
    gw: Gateway
    scope: trio.CancelScope
    done: trio.Event


@attrs.define
class Client:
    connection: WsClient | None = None
    started: bool = False
    since: int = 0  # the last seq it saw (or where it started)
    filters: set[str] = attrs.field(factory=set)
    received: list[int] = attrs.field(factory=list)
    expected: list[int] = attrs.field(factory=list)


class DeliveryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = Path(tempfile.mkdtemp(prefix="omnirelay-stateful-"))
        self.config = gateway_config(
            self.tmp, limits=LimitsConfig(client_events_per_minute=100_000)
        )
        self.portal = Portal()
        self.clients = [Client() for _ in range(CLIENTS)]
        self.log: list[tuple[int, str]] = []  # (seq, chat) of every message published
        self.pings = itertools.count()
        self.running = self.portal.run(self._start)
        self.portal.run(self._setup)

    # -- the gateway -----------------------------------------------------------------------

    async def _start(self) -> Running:
        nursery = self.portal.nursery
        assert nursery is not None

        async def host(task_status: trio.TaskStatus[Running]) -> None:
            done = trio.Event()
            try:
                async with trio.open_nursery() as inner:
                    gw = await start_in(inner, self.config, Scripted())
                    task_status.started(Running(gw, inner.cancel_scope, done))
            finally:
                done.set()

        running: Running = await nursery.start(host)
        return running

    async def _setup(self) -> None:
        gw = self.running.gw
        await create_session(gw, "acme", "wa-1")
        # Both chats exist before anyone connects: from then on each publish is one message
        # event, one seq, one envelope.
        for chat in CHATS:
            await gw.scripted.feed("wa-1", incoming(chat=chat, text="hello"))
        self.head = await gw.engine.store.last_seq("acme")

    def teardown(self) -> None:
        async def stop() -> None:
            for client in self.clients:
                if client.connection is not None:
                    await client.connection.close()
            self.running.scope.cancel()
            await self.running.done.wait()

        try:
            self.portal.run(stop)
        finally:
            self.portal.close()
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- reading -----------------------------------------------------------------------------

    async def _read_until(self, client: Client, event: str, check: Callable[[Any], bool]) -> Any:
        """Collect durable envelopes until the control envelope `event` passing `check`."""
        assert client.connection is not None
        while True:
            envelope = await client.connection.recv(15)
            if "seq" in envelope:
                seq = int(envelope["seq"].split(":")[1])
                client.received.append(seq)
                client.since = max(client.since, seq)
            elif envelope["event"] == event and check(envelope["data"]):
                return envelope["data"]
            else:
                assert envelope["event"] in ("pong", "subscribed", "unsubscribed", "resumed"), (
                    envelope
                )

    async def _connect(self, client: Client) -> None:
        gw = self.running.gw
        epoch = gw.engine.store.epoch
        client.connection = await WsClient.connect(
            gw.ws_url(token=gw.token("acme"), since=f"{epoch}:{client.since}")
        )
        client.filters = set()
        resumed = await self._read_until(client, "resumed", lambda data: True)
        assert resumed["complete"] is True

    # -- rules -------------------------------------------------------------------------------

    @rule(index=st.integers(0, CLIENTS - 1))
    def connect(self, index: int) -> None:
        client = self.clients[index]
        if client.started:
            return
        client.started = True
        client.since = self.head  # a new client starts from the current position
        self.portal.run(lambda: self._connect(client))

    @rule(index=st.integers(0, CLIENTS - 1))
    def disconnect(self, index: int) -> None:
        client = self.clients[index]
        if client.connection is None:
            return
        connection, client.connection = client.connection, None
        self.portal.run(connection.close)

    @rule(index=st.integers(0, CLIENTS - 1))
    def resume(self, index: int) -> None:
        client = self.clients[index]
        if not client.started or client.connection is not None:
            return
        client.expected.extend(seq for seq, _chat in self.log if seq > client.since)
        self.portal.run(lambda: self._connect(client))

    @rule(index=st.integers(0, CLIENTS - 1), chat=st.sampled_from(CHATS), count=st.integers(1, 60))
    def resume_while_publishing(self, index: int, chat: str, count: int) -> None:
        """Events keep coming while the replay reads the database: still no gap, no repeat."""
        client = self.clients[index]
        if not client.started or client.connection is not None:
            return
        gw = self.running.gw
        since = client.since

        async def go() -> int:
            async with trio.open_nursery() as nursery:
                # One event at a time from before the handshake to after the replay: some
                # land in the window where live events must be held back.
                nursery.start_soon(self._connect, client)
                for _ in range(count):
                    await gw.scripted.feed("wa-1", incoming(chat=chat))
                    await trio.lowlevel.checkpoint()
            return await gw.engine.store.last_seq("acme")

        head = self.portal.run(go)
        assert head == self.head + count
        client.expected.extend(seq for seq, _chat in self.log if seq > since)
        self._published(chat, head, skip=client)
        client.expected.extend(range(self.head + 1 - count, head + 1))

    @rule(index=st.integers(0, CLIENTS - 1))
    def resume_action(self, index: int) -> None:
        client = self.clients[index]
        if client.connection is None:
            return
        connection = client.connection
        epoch = self.running.gw.engine.store.epoch

        async def go() -> None:
            await connection.send({"action": "resume", "since": f"{epoch}:{client.since}"})
            resumed = await self._read_until(client, "resumed", lambda data: True)
            assert resumed["complete"] is True

        self.portal.run(go)

    @rule(chat=st.sampled_from(CHATS), count=st.integers(1, 4))
    def publish(self, chat: str, count: int) -> None:
        gw = self.running.gw

        async def go() -> int:
            await gw.scripted.feed("wa-1", *(incoming(chat=chat) for _ in range(count)))
            return await gw.engine.store.last_seq("acme")

        head = self.portal.run(go)
        assert head == self.head + count  # one seq per message, nothing else logged
        self._published(chat, head)

    def _published(self, chat: str, head: int, skip: Client | None = None) -> None:
        """The model's side of a publish: log it, and who had to receive it live."""
        for seq in range(self.head + 1, head + 1):
            self.log.append((seq, chat))
            for client in self.clients:
                if client is skip or client.connection is None:
                    continue
                if not client.filters or chat in client.filters:
                    client.expected.append(seq)
        self.head = head

    @rule(index=st.integers(0, CLIENTS - 1), chat=st.sampled_from(CHATS))
    def subscribe(self, index: int, chat: str) -> None:
        self._filter(index, chat, "subscribe")

    @rule(index=st.integers(0, CLIENTS - 1), chat=st.sampled_from(CHATS))
    def unsubscribe(self, index: int, chat: str) -> None:
        if chat in self.clients[index].filters:
            self._filter(index, chat, "unsubscribe")

    def _filter(self, index: int, chat: str, action: str) -> None:
        client = self.clients[index]
        if client.connection is None:
            return
        connection = client.connection

        async def go() -> None:
            await connection.send({"action": action, "filter": {"chat_id": chat}})
            await self._read_until(client, action + "d", lambda data: True)

        self.portal.run(go)
        if action == "subscribe":
            client.filters.add(chat)
        else:
            client.filters.discard(chat)

    @precondition(lambda self: self.head < 200)
    @rule()
    def restart(self) -> None:
        """Stop the gateway and start it again on the same database (a new port)."""

        async def go() -> Running:
            for client in self.clients:
                if client.connection is not None:
                    await client.connection.close()
                    client.connection = None
            self.running.scope.cancel()
            await self.running.done.wait()
            running = await self._start()
            await running.gw.scripted.wait_started("wa-1")
            assert await running.gw.engine.store.last_seq("acme") == self.head
            return running

        self.running = self.portal.run(go)

    # -- the invariant -----------------------------------------------------------------------

    @invariant()
    def every_client_has_exactly_its_events_in_order(self) -> None:
        for client in self.clients:
            if client.connection is not None:
                self.portal.run(lambda client=client: self._sync(client))  # type: ignore[misc]
                assert client.received == client.expected

    async def _sync(self, client: Client) -> None:
        """Ping and read up to the pong: everything sent before it has arrived by then."""
        assert client.connection is not None
        ping = next(self.pings)
        await client.connection.send({"action": "ping", "id": ping})
        await self._read_until(client, "pong", lambda data: data.get("id") == ping)


DeliveryMachine.TestCase.settings = settings(
    max_examples=12,
    stateful_step_count=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
test_delivery_never_loses_or_duplicates = DeliveryMachine.TestCase
