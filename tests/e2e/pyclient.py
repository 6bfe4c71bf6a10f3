"""python-socketio's `AsyncClient` (the Python front-ends' client), driven from trio.

python-socketio runs on asyncio, so a scenario — a coroutine function taking the client — runs
in a worker thread with its own event loop:

```
collected = await run_python_client(
    collect(url, namespace="/crm", auth={"token": token}, until={"whatsapp:message": 1})
)
```

`run_python_client` bounds the scenario by a hard timeout and always shuts the client down
(closing its aiohttp session). The ready-made scenarios below cover the usual checks:
`collect` (connect, optionally emit, gather events), `call` (emit with ack),
`binary_round_trip` and `connect_error`. Write others as
`async def scenario(sio: socketio.AsyncClient) -> T`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import attrs
import socketio
import socketio.exceptions
import trio

T = TypeVar("T")
Scenario = Callable[[socketio.AsyncClient], Awaitable[T]]


async def run_python_client(
    scenario: Scenario[T], *, seconds: float = 10.0, **client_kwargs: Any
) -> T:
    """Run `scenario(client)` on a fresh `socketio.AsyncClient(**client_kwargs)`; its result.

    The scenario must end within `seconds` (else `TimeoutError`); the client is shut down
    afterwards whatever happened. `handle_sigint` defaults to False: a worker thread cannot
    install signal handlers, and Ctrl-C belongs to pytest.
    """
    client_kwargs.setdefault("handle_sigint", False)

    async def main() -> T:
        sio = socketio.AsyncClient(**client_kwargs)
        try:
            try:
                async with asyncio.timeout(seconds):
                    return await scenario(sio)
            except TimeoutError as exc:
                raise TimeoutError(
                    f"python-socketio scenario did not finish within {seconds} s"
                ) from exc
        finally:
            await asyncio.wait_for(_close(sio), 5)

    # The asyncio timeout above ends the scenario; this one only guards against a stuck loop.
    with trio.fail_after(seconds + 10):
        return await trio.to_thread.run_sync(lambda: asyncio.run(main()), abandon_on_cancel=True)


async def _close(sio: socketio.AsyncClient) -> None:
    with contextlib.suppress(Exception):
        await sio.shutdown()  # disconnects, or stops reconnecting
    # Closes the aiohttp session even when the client never connected.
    await sio.eio.disconnect(abort=True)


@attrs.frozen
class Collected:
    sid: str | None  # the namespace's Socket.IO id
    transport: str | None  # "websocket" or "polling" once connected
    events: list[tuple[str, list[Any]]]  # every event received on the namespace, in order

    def args(self, name: str) -> list[list[Any]]:
        """The args of each `name` event, in order."""
        return [args for event, args in self.events if event == name]


async def _connect(
    sio: socketio.AsyncClient,
    url: str,
    namespace: str,
    auth: Any,
    transports: Sequence[str] | None,
    socketio_path: str,
) -> None:
    await sio.connect(
        url,
        auth=auth,
        transports=list(transports) if transports is not None else None,
        namespaces=[namespace],
        socketio_path=socketio_path,
        wait_timeout=5,
    )


def collect(
    url: str,
    *,
    namespace: str = "/",
    auth: Any = None,
    transports: Sequence[str] | None = None,
    socketio_path: str = "socket.io",
    until: Mapping[str, int] | None = None,
    emits: Sequence[Sequence[Any]] = (),
) -> Scenario[Collected]:
    """Connect (with `auth`) to `namespace`, emit each `[name, *args]` of `emits`, and collect
    events until `until` ({event name: count}) is reached; then disconnect.

    `url` is the server's base URL (`http://127.0.0.1:PORT`): python-socketio takes the
    namespace separately.
    """

    async def scenario(sio: socketio.AsyncClient) -> Collected:
        events: list[tuple[str, list[Any]]] = []
        arrived = asyncio.Event()

        async def on_any(event: str, *data: Any) -> None:
            events.append((event, list(data)))
            arrived.set()

        sio.on("*", on_any, namespace=namespace)
        await _connect(sio, url, namespace, auth, transports, socketio_path)
        transport = sio.transport()
        for name, *args in emits:
            await sio.emit(name, data=tuple(args), namespace=namespace)
        wanted = Counter(until or {})
        while any(Counter(name for name, _ in events)[k] < n for k, n in wanted.items()):
            arrived.clear()
            await arrived.wait()
        sid = sio.get_sid(namespace)
        await sio.disconnect()
        return Collected(sid, transport, events)

    return scenario


def call(
    url: str,
    event: str,
    *args: Any,
    namespace: str = "/",
    auth: Any = None,
    transports: Sequence[str] | None = None,
    socketio_path: str = "socket.io",
    seconds: float = 5.0,
) -> Scenario[list[Any]]:
    """Connect, `await sio.call(event, *args)`, disconnect: the ack's args as a list."""

    async def scenario(sio: socketio.AsyncClient) -> list[Any]:
        await _connect(sio, url, namespace, auth, transports, socketio_path)
        answer = await sio.call(event, data=tuple(args), namespace=namespace, timeout=seconds)
        await sio.disconnect()
        # sio.call returns None for no args, the value for one, a tuple for several.
        if answer is None:
            return []
        return list(answer) if isinstance(answer, tuple) else [answer]

    return scenario


def binary_round_trip(
    url: str,
    payload: bytes,
    *,
    event: str = "message",
    reply: str = "message-back",
    namespace: str = "/",
    transports: Sequence[str] | None = None,
    socketio_path: str = "socket.io",
) -> Scenario[list[Any]]:
    """Emit `event` with `payload` (bytes, plus a text marker and a nested binary), return
    the args of the first `reply`: the conformance app sends back exactly what it got."""

    async def scenario(sio: socketio.AsyncClient) -> list[Any]:
        collected = await collect(
            url,
            namespace=namespace,
            transports=transports,
            socketio_path=socketio_path,
            until={reply: 1},
            emits=[[event, payload, "марка 😊", {"nested": payload}]],
        )(sio)
        return collected.args(reply)[0]

    return scenario


@attrs.frozen
class Refused:
    message: str  # the exception python-socketio raised from connect()
    data: list[Any]  # the connect_error handler's args: the server's CONNECT_ERROR payload


def connect_error(
    url: str,
    *,
    namespace: str = "/",
    auth: Any = None,
    transports: Sequence[str] | None = None,
    socketio_path: str = "socket.io",
) -> Scenario[Refused]:
    """Connect and expect the server to refuse the namespace (CONNECT_ERROR)."""

    async def scenario(sio: socketio.AsyncClient) -> Refused:
        errors: list[list[Any]] = []

        async def on_connect_error(*data: Any) -> None:
            errors.append(list(data))

        sio.on("connect_error", on_connect_error, namespace=namespace)
        try:
            await _connect(sio, url, namespace, auth, transports, socketio_path)
        except socketio.exceptions.ConnectionError as exc:
            return Refused(str(exc), errors[0] if errors else [])
        raise AssertionError(f"{namespace} accepted the connection, sid {sio.get_sid(namespace)}")

    return scenario
