"""End-to-end fixtures: a real gateway on 127.0.0.1 and real clients.

`Scripted` is a provider plugin built with the public plugin API: each of its sessions emits
whatever the test feeds it (`await scripted.feed(session_id, *events)`), and raises when the
test asks it to crash. The `websockets` package is asyncio-based, so its synchronous client
runs in worker threads (`WsClient`).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio
import websockets.exceptions
import websockets.sync.client

from omnirelay.engine import CommandResult, Provider, SessionContext, TestConnection, hookimpl
from omnirelay.engine._auth import Authenticator
from omnirelay.engine._config import AuthConfig, Config, ServerConfig, StorageConfig
from omnirelay.engine._engine import Engine
from omnirelay.engine._server import serve
from omnirelay.protocol import (
    ChatKind,
    ChatRef,
    Event,
    Message,
    MessageKind,
    MessageReceived,
    Party,
)

SECRET = "e2e-secret-that-is-long-enough-for-hs256"
T0 = datetime(2026, 1, 10, 15, 30, tzinfo=UTC)


class Crash(Exception):
    pass


class Scripted:
    """A provider plugin whose sessions emit what the test feeds them."""

    def __init__(self) -> None:
        self.inboxes: dict[
            str, trio.MemorySendChannel[tuple[tuple[Event, ...], trio.Event] | Exception]
        ] = {}
        self.started: dict[str, int] = {}
        self.ready: dict[str, trio.Event] = {}

    @hookimpl
    def omnirelay_providers(self) -> list[Provider]:
        return [Provider(name="scripted", run=self.run, description="test provider")]

    def _ready(self, session_id: str) -> trio.Event:
        return self.ready.setdefault(session_id, trio.Event())

    async def run(self, context: SessionContext) -> None:
        session_id = context.session.id
        send, receive = trio.open_memory_channel[tuple[tuple[Event, ...], trio.Event] | Exception](
            100
        )
        self.inboxes[session_id] = send
        self.started[session_id] = self.started.get(session_id, 0) + 1
        self._ready(session_id).set()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._commands, context)
            async for item in receive:
                if isinstance(item, Exception):
                    self.ready[session_id] = trio.Event()
                    raise item
                events, done = item
                await context.emit(*events)
                done.set()

    async def _commands(self, context: SessionContext) -> None:
        async for command in context.commands:
            if isinstance(command, TestConnection):
                command.reply(
                    CommandResult(True, "scripted session is fine", {"session": context.session.id})
                )
            else:
                command.reply(CommandResult(False, "unsupported"))

    async def wait_started(self, session_id: str) -> None:
        with trio.fail_after(10):
            await self._ready(session_id).wait()

    async def feed(self, session_id: str, *events: Event) -> None:
        """Have the session emit these events; returns once they are stored and fanned out."""
        await self.wait_started(session_id)
        done = trio.Event()
        await self.inboxes[session_id].send((events, done))
        with trio.fail_after(10):
            await done.wait()

    async def crash(self, session_id: str) -> None:
        await self.wait_started(session_id)
        await self.inboxes[session_id].send(Crash("scripted crash"))


_counter = iter(range(1, 10**9))


def incoming(
    chat: str = "77079856339@c.us",
    text: str = "Привет! Как дела? 😊",
    *,
    name: str = "Солнышко мое 😊",
    kind: ChatKind = ChatKind.DIRECT,
    message_id: str | None = None,
    at: datetime | None = None,
) -> MessageReceived:
    number = next(_counter)
    sender = Party(id=chat, phone=chat.split("@")[0], name=name)
    return MessageReceived(
        provider="scripted",
        occurred_at=at or T0 + timedelta(seconds=number),
        chat=ChatRef(
            id=chat, kind=kind, title=name if kind is ChatKind.DIRECT else "Grupo de Vendas"
        ),
        sender=sender,
        message=Message(
            id=message_id or f"MSG{number:06d}", kind=MessageKind.TEXT, from_me=False, text=text
        ),
    )


@attrs.define
class Gateway:
    engine: Engine
    host: str
    port: int
    scripted: Scripted
    auth: Authenticator

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def ws_url(self, path: str = "/ws", **query: str) -> str:
        q = "&".join(f"{k}={v}" for k, v in query.items())
        return f"ws://{self.host}:{self.port}{path}" + (f"?{q}" if q else "")

    def token(self, tenant: str, sub: str = "agent") -> str:
        return self.auth.mint(tenant, subject=sub)

    def http(self, tenant: str | None = None, token: str | None = None) -> httpx.AsyncClient:
        headers = {}
        if token is None and tenant is not None:
            token = self.token(tenant)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return httpx.AsyncClient(base_url=self.base, headers=headers, timeout=10)


def gateway_config(tmp_path: Path, **overrides: Any) -> Config:
    config = Config(
        server=ServerConfig(host="127.0.0.1", port=0, graceful_timeout=1.0),
        storage=StorageConfig(path=str(tmp_path / "omnirelay.db")),
        auth=AuthConfig(jwt_secret=SECRET, admin_token="admin-secret"),
    )
    return attrs.evolve(config, **overrides)


async def start_gateway(
    nursery: trio.Nursery, config: Config, scripted: Scripted | None = None
) -> Gateway:
    scripted = scripted or Scripted()
    engine, (host, port) = await nursery.start(
        lambda task_status: serve(config, plugins=(scripted,), task_status=task_status)
    )
    return Gateway(engine, host, port, scripted, Authenticator.from_config(config.auth))


@pytest.fixture
async def gateway(tmp_path: Path) -> AsyncIterator[Gateway]:
    async with trio.open_nursery() as nursery:
        gw = await start_gateway(nursery, gateway_config(tmp_path))
        yield gw
        nursery.cancel_scope.cancel()


async def create_session(
    gw: Gateway, tenant: str, session_id: str, provider: str = "scripted"
) -> None:
    async with gw.http(tenant) as client:
        response = await client.post("/api/sessions", json={"id": session_id, "provider": provider})
        assert response.status_code == 201, response.text
    if provider == "scripted":
        await gw.scripted.wait_started(session_id)


class WsClient:
    """The `websockets` package's client, driven from trio through worker threads."""

    def __init__(self, connection: websockets.sync.client.ClientConnection) -> None:
        self.connection = connection

    @classmethod
    async def connect(cls, url: str, headers: dict[str, str] | None = None) -> WsClient:
        def connect() -> websockets.sync.client.ClientConnection:
            # max_queue=None: a test that reads only some events must still close promptly
            # (a full client queue would stall websockets' own close handshake).
            connection = websockets.sync.client.connect(
                url, additional_headers=headers, open_timeout=5, max_queue=None
            )
            # websockets >= 17.1 wants its context manager entered (and exited by close()).
            return connection.__enter__()

        return cls(await trio.to_thread.run_sync(connect))

    async def recv(self, seconds: float = 5.0) -> dict[str, Any]:
        text = await trio.to_thread.run_sync(lambda: self.connection.recv(timeout=seconds))
        value: dict[str, Any] = json.loads(text)
        return value

    async def recv_event(self, name: str, seconds: float = 5.0) -> dict[str, Any]:
        """The next envelope named `name`, skipping others."""
        with trio.fail_after(seconds + 1):
            while True:
                envelope = await self.recv(seconds)
                if envelope["event"] == name:
                    return envelope

    async def nothing_within(
        self, seconds: float, accept: Callable[[dict[str, Any]], bool] = lambda e: True
    ) -> None:
        """Assert no (accepted) envelope arrives within `seconds`."""
        try:
            while True:
                envelope = await self.recv(seconds)
                assert not accept(envelope), f"unexpected envelope {envelope}"
        except TimeoutError:
            return

    async def send(self, value: Any) -> None:
        text = value if isinstance(value, str | bytes) else json.dumps(value)
        await trio.to_thread.run_sync(lambda: self.connection.send(text))

    async def wait_closed(self, seconds: float = 5.0) -> tuple[int | None, str | None]:
        def wait() -> None:
            try:
                while True:
                    self.connection.recv(timeout=seconds)
            except websockets.exceptions.ConnectionClosed:
                return

        await trio.to_thread.run_sync(wait)
        close = self.connection.protocol.close_rcvd
        return (close.code, close.reason) if close else (None, None)

    async def close(self) -> None:
        await trio.to_thread.run_sync(lambda: self.connection.__exit__(None, None, None))


async def post_oversize(
    gw: Gateway, path: str, size: int, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], bytes]:
    """POST a `size`-byte body over a raw socket; the status, headers and body of the answer.

    A raw client because the server answers before it has read the body and then closes: an
    HTTP client library would be left with a half-sent request (and its warnings).
    """
    stream = await trio.open_tcp_stream(gw.host, gw.port)
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {gw.host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {size}\r\n{extra}\r\n"
    ).encode()

    async def upload() -> None:
        try:
            await stream.send_all(head)
            chunk = b"x" * 65536
            for _ in range(size // len(chunk)):
                await stream.send_all(chunk)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass  # the server stopped reading: expected

    raw = b""
    async with stream, trio.open_nursery() as nursery:
        nursery.start_soon(upload)
        with trio.fail_after(10):
            while b"\r\n\r\n" not in raw:
                data = await stream.receive_some(65536)
                assert data, "closed before answering"
                raw += data
            top, _, body = raw.partition(b"\r\n\r\n")
            status_line, *lines = top.decode("latin-1").split("\r\n")
            answer = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
            while len(body) < int(answer.get("content-length", "0")):
                data = await stream.receive_some(65536)
                assert data, "closed before the whole answer"
                body += data
        nursery.cancel_scope.cancel()
    return int(status_line.split()[1]), answer, body


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Each e2e test binds real sockets on 127.0.0.1; mark them so `-m "not e2e"` skips them.
    for item in items:
        if "tests/e2e" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.e2e)


async def start_embedded(
    nursery: trio.Nursery, config: Config, scripted: Scripted | None = None
) -> Gateway:
    """The gateway mounted in a user's QuartTrio app, served by Hypercorn over ASGI."""
    import hypercorn.config
    import hypercorn.trio
    from quart_trio import QuartTrio

    from omnirelay.engine._app import OmniRelay

    scripted = scripted or Scripted()
    app = QuartTrio("user_app")

    @app.get("/hello")
    async def hello() -> dict[str, str]:
        return {"hello": "from the user's own route"}

    relay = OmniRelay(app, config=config, plugins=(scripted,))
    hconfig = hypercorn.config.Config()
    hconfig.bind = ["127.0.0.1:0"]
    hconfig.graceful_timeout = 1.0
    binds: list[str] = await nursery.start(
        lambda task_status: hypercorn.trio.serve(app, hconfig, task_status=task_status)  # type: ignore[arg-type]
    )
    host, port = binds[0].removeprefix("http://").rsplit(":", 1)
    with trio.fail_after(10):
        await relay.started.wait()
    assert relay.engine is not None
    return Gateway(relay.engine, host, int(port), scripted, Authenticator.from_config(config.auth))


@pytest.fixture(params=["native", "embedded"])
async def any_gateway(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Gateway]:
    """The same gateway, once on the native fast path and once embedded through ASGI."""
    async with trio.open_nursery() as nursery:
        start = start_gateway if request.param == "native" else start_embedded
        gw = await start(nursery, gateway_config(tmp_path))
        yield gw
        nursery.cancel_scope.cancel()
