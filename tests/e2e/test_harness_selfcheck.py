"""The Socket.IO client harnesses, proven against the official `socket.io` server.

`tests/js/server_fixture.mjs` behaves like the socket.io-protocol conformance app (namespaces
"/" and "/custom": emit `auth` with the handshake's auth on connection, echo `message` as
`message-back`, ack `message-with-ack` with its args; any other namespace is refused with
"Invalid namespace"). Each scenario runs the real npm `socket.io-client` (`jsclient`) or
python-socketio's `AsyncClient` (`pyclient`) against it. `sio_server` is the one seam: the same
scenarios are meant to run against omnirelay's own server too.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
import socketio
import trio

from .jsclient import (
    NodeClient,
    NodeClientError,
    ReferenceServer,
    events,
    from_bytes,
    of_type,
    reference_server,
    require_node,
    run_node,
    to_bytes,
)
from .pyclient import binary_round_trip, call, collect, connect_error, run_python_client

TOKEN = "jwt.токен.😊"
TEXT = "Привет! Как дела? 😊 — ñ, 中文, e\u0301"
OBJECT = {"emoji": "😊", "имя": "Солнышко мое 😊", "list": [1, None, True, 2.5]}
BLOB = bytes(range(256))

# mode → (the `transports` option, the transport the client must end on)
TRANSPORTS = {
    "websocket-only": (["websocket"], "websocket"),
    "polling-only": (["polling"], "polling"),
    "polling-then-upgrade": (["polling", "websocket"], "websocket"),
}


@pytest.fixture
def node_ready() -> None:
    """Skip (under CI: fail) before trio starts, so the report shows why."""
    require_node("socket.io")


@pytest.fixture(params=["reference", "omnirelay"])
async def sio_server(
    request: pytest.FixtureRequest, node_ready: None
) -> AsyncIterator[ReferenceServer]:
    """The same scenarios against the official Node server and against ours (the conformance
    app of tests/conformance/socketio_app.py: same namespaces, same handlers)."""
    if request.param == "reference":
        async with reference_server() as server:
            yield server
        return
    from tests.conformance.socketio_app import run

    async with trio.open_nursery() as nursery:
        port = await nursery.start(run, 0)
        yield ReferenceServer("127.0.0.1", port)
        nursery.cancel_scope.cancel()


# --- the npm socket.io-client ---------------------------------------------------------------


@pytest.mark.parametrize("mode", TRANSPORTS)
async def test_js_transports_auth_and_echo(sio_server: ReferenceServer, mode: str) -> None:
    transports, final = TRANSPORTS[mode]
    upgrades = mode == "polling-then-upgrade"
    lines = await run_node(
        {
            "url": sio_server.base + "/",
            "options": {"transports": transports, "auth": {"token": TOKEN}},
            "steps": [
                {"wait": {"connect": True}},
                {"wait": {"event": "auth"}},
                # Echo on the final transport: after the upgrade, when there is one.
                *([{"wait": {"upgrade": True}}] if upgrades else []),
                {"emit": ["message", TEXT, OBJECT]},
                {"wait": {"event": "message-back"}},
                {"print_state": True},
            ],
        }
    )
    (connect,) = of_type(lines, "connect")
    assert isinstance(connect["id"], str)
    assert connect["recovered"] is False
    assert connect["transport"] in transports
    assert events(lines, "auth") == [[{"token": TOKEN}]]
    assert events(lines, "message-back") == [[TEXT, OBJECT]]
    assert of_type(lines, "upgrade") == ([{"t": "upgrade", "transport": "websocket"}] * upgrades)
    (state,) = of_type(lines, "state")
    assert state == {
        "t": "state",
        "id": connect["id"],
        "connected": True,
        "active": True,
        "recovered": False,
        "transport": final,
    }
    assert lines[-2:] == [{"t": "disconnect", "reason": "io client disconnect"}, {"t": "done"}]


@pytest.mark.parametrize("mode", ["websocket-only", "polling-only"])
async def test_js_ack_and_binary_both_ways(sio_server: ReferenceServer, mode: str) -> None:
    transports, _ = TRANSPORTS[mode]
    blob = from_bytes(BLOB)
    lines = await run_node(
        {
            "url": sio_server.base + "/custom",
            "options": {"transports": transports},
            "steps": [
                {"emit": ["message-with-ack", TEXT, 42, OBJECT], "ack": True},
                {"emit": ["message-with-ack", blob, {"nested": [blob]}], "ack": True},
                {"emit": ["message-with-ack"], "ack": True},
                {"emit": ["message", blob, TEXT, {"deep": {"b": from_bytes(b"\x00\xff")}}]},
                {"wait": {"event": "message-back"}},
            ],
        }
    )
    assert events(lines, "auth") == [[{}]]
    assert of_type(lines, "ack") == [
        {"t": "ack", "id": 0, "args": [TEXT, 42, OBJECT]},
        {"t": "ack", "id": 1, "args": [blob, {"nested": [blob]}]},
        {"t": "ack", "id": 2, "args": []},
    ]
    (back,) = events(lines, "message-back")
    assert to_bytes(back) == [BLOB, TEXT, {"deep": {"b": b"\x00\xff"}}]


async def test_js_unknown_namespace_is_refused(sio_server: ReferenceServer) -> None:
    spec = {"url": sio_server.base + "/nope", "options": {"transports": ["websocket"]}}
    lines = await run_node({**spec, "steps": [{"wait": {"connect_error": True}}]})
    assert of_type(lines, "connect_error") == [
        {"t": "connect_error", "message": "Invalid namespace", "data": None}
    ]
    assert of_type(lines, "connect") == []

    # Waiting for a connect that cannot come fails at once, not at the timeout.
    with trio.fail_after(5), pytest.raises(NodeClientError, match="Invalid namespace") as failed:
        await run_node({**spec, "steps": [{"wait": {"connect": True}}]})
    assert failed.value.lines[-1]["t"] == "error"


async def test_js_timeout_is_reported(sio_server: ReferenceServer) -> None:
    spec = {"url": sio_server.base + "/", "timeout": 300, "steps": [{"wait": {"event": "never"}}]}
    with pytest.raises(NodeClientError, match="timeout after 300 ms in step 0") as failed:
        await run_node(spec)
    assert failed.value.lines[-1]["t"] == "error"


async def test_js_interactive_client_survives_a_server_restart(node_ready: None) -> None:
    async with contextlib.AsyncExitStack() as first_server:
        first = await first_server.enter_async_context(reference_server())
        spec = {
            "url": first.base + "/custom",
            "options": {
                "transports": ["websocket"],
                "auth": {"token": TOKEN},
                "reconnectionDelay": 50,
                "reconnectionDelayMax": 100,
            },
            "steps": [
                {"wait": {"connect": True}},
                {"until_stdin": True},
                {"wait": {"disconnect": True}},
                {"wait": {"connect": 2}},
                {"emit": ["message-with-ack", "again"], "ack": True},
            ],
        }
        async with NodeClient(spec) as client:
            await client.wait_for("waiting_stdin")
            await first_server.aclose()  # the server goes away under the connected client
            await client.send_line("restarted")
            async with reference_server(first.port):
                rest = await client.finish()
    assert of_type(rest, "stdin") == [{"t": "stdin", "line": "restarted"}]
    (disconnect, _) = of_type(rest, "disconnect")  # the server's going, then our own at the end
    assert disconnect["reason"] in {"transport close", "transport error", "ping timeout"}
    assert of_type(rest, "reconnect")
    assert len(of_type(client.lines, "connect")) == 2
    assert events(client.lines, "auth") == [[{"token": TOKEN}], [{"token": TOKEN}]]
    assert of_type(rest, "ack") == [{"t": "ack", "id": 4, "args": ["again"]}]


async def test_js_interactive_client(sio_server: ReferenceServer) -> None:
    spec = {
        "url": sio_server.base + "/",
        "options": {"transports": ["websocket"]},
        "steps": [
            {"wait": {"connect": True}},
            {"wait": {"event": "auth"}},
            {"until_stdin": True},
            {"emit": ["message", "after the test acted"]},
            {"wait": {"event": "message-back"}},
        ],
    }
    async with NodeClient(spec) as client:
        head = await client.lines_until(lambda line: line["t"] == "waiting_stdin")
        assert [line["t"] for line in head] == ["connect", "event", "waiting_stdin"]
        # The test acts while the Node client is connected: here, a Python client joins.
        answer = await run_python_client(call(sio_server.base, "message-with-ack", "py"))
        assert answer == ["py"]
        await client.send_line()
        rest = await client.finish()
    assert events(rest, "message-back") == [["after the test acted"]]
    assert rest[-1] == {"t": "done"}


async def test_js_client_is_killed_on_exit(sio_server: ReferenceServer) -> None:
    spec = {"url": sio_server.base + "/", "steps": [{"until_stdin": True}]}
    client = NodeClient(spec)

    async def fail_inside() -> None:
        async with client:
            await client.wait_for("waiting_stdin")
            raise KeyError("the test's own exception propagates unwrapped")

    with pytest.raises(KeyError):
        await fail_inside()
    assert client.returncode is not None
    assert client.returncode != 0


# --- python-socketio's AsyncClient ----------------------------------------------------------


@pytest.mark.parametrize("mode", TRANSPORTS)
async def test_python_transports_auth_and_echo(sio_server: ReferenceServer, mode: str) -> None:
    transports, final = TRANSPORTS[mode]
    collected = await run_python_client(
        collect(
            sio_server.base,
            auth={"token": TOKEN},
            transports=transports,
            until={"auth": 1, "message-back": 1},
            emits=[["message", TEXT, OBJECT]],
        )
    )
    assert collected.transport == final
    assert collected.sid
    assert collected.args("auth") == [[{"token": TOKEN}]]
    assert collected.args("message-back") == [[TEXT, OBJECT]]


@pytest.mark.parametrize("mode", ["websocket-only", "polling-only"])
async def test_python_ack_and_binary(sio_server: ReferenceServer, mode: str) -> None:
    transports, _ = TRANSPORTS[mode]
    base = sio_server.base
    answer = await run_python_client(
        call(base, "message-with-ack", TEXT, 42, OBJECT, namespace="/custom", transports=transports)
    )
    assert answer == [TEXT, 42, OBJECT]
    answer = await run_python_client(
        call(base, "message-with-ack", BLOB, {"nested": [BLOB]}, transports=transports)
    )
    assert answer == [BLOB, {"nested": [BLOB]}]
    back = await run_python_client(binary_round_trip(base, BLOB, transports=transports))
    assert back == [BLOB, "марка 😊", {"nested": BLOB}]


async def test_python_unknown_namespace_is_refused(sio_server: ReferenceServer) -> None:
    refused = await run_python_client(connect_error(sio_server.base, namespace="/nope"))
    assert refused.data == [{"message": "Invalid namespace"}]
    assert "/nope" in refused.message


async def test_python_scenario_timeout(sio_server: ReferenceServer) -> None:
    never = collect(sio_server.base, until={"never": 1})
    with trio.fail_after(5), pytest.raises(TimeoutError, match=r"within 0\.5 s"):
        await run_python_client(never, seconds=0.5)


# --- acks from the server to the client (our conformance app's /ask namespace) ---------------


@pytest.fixture
async def our_server(node_ready: None) -> AsyncIterator[ReferenceServer]:
    from tests.conformance.socketio_app import run

    async with trio.open_nursery() as nursery:
        port = await nursery.start(run, 0)
        yield ReferenceServer("127.0.0.1", port)
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("mode", TRANSPORTS)
async def test_js_client_answers_a_server_ack(our_server: ReferenceServer, mode: str) -> None:
    transports, _final = TRANSPORTS[mode]
    spec = {
        "url": our_server.base + "/ask",
        "options": {"transports": transports, "forceNew": True},
        "acks": {"question": ["answer from js", {"$bytes": [9, 8, 7]}]},
        "steps": [
            {"wait": {"connect": True}},
            {"emit": ["ask", "how are you?", "😊"]},
            {"wait": {"event": "answer", "count": 1}},
        ],
    }
    lines = await run_node(spec)
    [question] = [
        line for line in lines if line.get("t") == "event" and line.get("name") == "question"
    ]
    assert question["args"] == ["how are you?", "😊"]
    assert question["ack"] is True
    assert events(lines, "answer") == [["answer from js", {"$bytes": [9, 8, 7]}]]


@pytest.mark.parametrize("mode", TRANSPORTS)
async def test_python_client_answers_a_server_ack(our_server: ReferenceServer, mode: str) -> None:
    transports, _final = TRANSPORTS[mode]

    async def scenario(sio: socketio.AsyncClient) -> list[Any]:
        answered = asyncio.Event()
        got: list[Any] = []

        async def question(*args: Any) -> tuple[Any, ...]:
            return ("answer from python", *args)

        async def answer(*args: Any) -> None:
            got.extend(args)
            answered.set()

        sio.on("question", question, namespace="/ask")
        sio.on("answer", answer, namespace="/ask")
        await sio.connect(
            our_server.base, namespaces=["/ask"], transports=transports, wait_timeout=5
        )
        await sio.emit("ask", data=("ça va?", b"\x00\xff"), namespace="/ask")
        await answered.wait()
        return got

    assert await run_python_client(scenario) == ["answer from python", "ça va?", b"\x00\xff"]
