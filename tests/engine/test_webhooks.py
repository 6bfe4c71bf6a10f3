"""Outgoing webhooks: the dispatcher against a real store and a real HTTP receiver on 127.0.0.1.

`Receiver` is a small h11 server that records every request and answers from a script
(statuses, headers, or a hang past the client's timeout). The REST routes are tested here on a
minimal Quart-Trio app around the blueprint function (a header names the tenant); the
end-to-end tests in tests/e2e/test_webhooks.py run them in a real gateway with real tokens.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import json
import random
import socket
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import h11
import pytest
import trio
from quart import Blueprint, Response, request
from quart_trio import QuartTrio

from omnirelay.engine._app import ApiError, error_response
from omnirelay.engine._hub import EnvelopeFormat
from omnirelay.engine._sqlite_store import SQLiteStore, open_sqlite_store
from omnirelay.engine._store import StoredEvent
from omnirelay.engine._webhooks import (
    WebhookConfig,
    WebhookDispatcher,
    WebhookError,
    _retry_after_seconds,
    check_url,
    sign,
)
from omnirelay.engine._webhooks_api import register_webhook_routes
from omnirelay.protocol import (
    ChatKind,
    ChatRef,
    Message,
    MessageKind,
    MessageReceived,
    Party,
    SessionRecord,
    builtin_dialects,
)
from omnirelay.protocol._envelope import Filter

T0 = datetime(2026, 1, 10, 15, 30, tzinfo=UTC)
ENVELOPE = builtin_dialects().get("envelope")
SECRET = "whsec_test-secret-0123456789"

# Short real timings: every test ends within a couple of seconds.
FAST = WebhookConfig(
    timeout=0.5,
    backoff_base=0.05,
    backoff_max=0.2,
    max_attempts=4,
    allow_private_networks=True,
)


# --------------------------------------------------------------------------------------------
# A webhook receiver on 127.0.0.1


@attrs.frozen
class Hang:
    """Answer only after `seconds` (longer than the client waits)."""

    seconds: float


Answer = int | tuple[int, dict[str, str]] | Hang


@attrs.define
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def envelope(self) -> dict[str, Any]:
        value: dict[str, Any] = json.loads(self.body)
        return value

    @property
    def delivery(self) -> str:
        return self.headers["x-omnirelay-delivery"]


class Receiver:
    """Records POSTs and answers each path from its script (then 200 forever)."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.scripts: dict[str, list[Answer]] = {}
        self.port = 0
        self._changed = trio.Event()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, path: str, *answers: Answer) -> str:
        self.scripts[path] = list(answers)
        return self.url(path)

    def at(self, path: str) -> list[Received]:
        return [r for r in self.requests if r.path == path]

    async def start(self, nursery: trio.Nursery) -> Receiver:
        listeners = await nursery.start(
            functools.partial(trio.serve_tcp, host="127.0.0.1"), self._serve, 0
        )
        self.port = listeners[0].socket.getsockname()[1]
        return self

    async def wait_for(self, path: str, count: int, seconds: float = 5.0) -> list[Received]:
        with trio.fail_after(seconds):
            while len(self.at(path)) < count:
                await self._changed.wait()
        return self.at(path)

    async def _serve(self, stream: trio.SocketStream) -> None:
        conn = h11.Connection(h11.SERVER)
        try:
            while True:
                received = await self._read_request(conn, stream)
                if received is None:
                    return
                self.requests.append(received)
                self._changed.set()
                self._changed = trio.Event()
                await self._answer(conn, stream, received.path)
                if conn.our_state is h11.MUST_CLOSE:
                    return
                conn.start_next_cycle()
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError):
            return
        finally:
            await stream.aclose()

    async def _read_request(self, conn: h11.Connection, stream: trio.SocketStream) -> Any:
        target, headers, body = "", {}, b""
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                conn.receive_data(data)
                if not data and conn.their_state is h11.IDLE:
                    return None
                continue
            if isinstance(event, h11.Request):
                target = event.target.decode()
                headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return Received(target, headers, body, trio.current_time())
            elif isinstance(event, h11.ConnectionClosed):
                return None

    async def _answer(self, conn: h11.Connection, stream: trio.SocketStream, path: str) -> None:
        script = self.scripts.get(path, [])
        answer: Answer = script.pop(0) if script else 200
        if isinstance(answer, Hang):
            await trio.sleep(answer.seconds)
            answer = 200
        status, extra = answer if isinstance(answer, tuple) else (answer, {})
        body = b"ok" if status < 400 else f"no: scripted {status}".encode()
        headers = [("Content-Length", str(len(body))), *extra.items()]
        await stream.send_all(conn.send(h11.Response(status_code=status, headers=headers)))
        await stream.send_all(conn.send(h11.Data(data=body)) + conn.send(h11.EndOfMessage()))


# --------------------------------------------------------------------------------------------
# A store and a dispatcher, wired like the engine wires them


@asynccontextmanager
async def dispatching(
    path: Path, config: WebhookConfig = FAST
) -> AsyncIterator[tuple[SQLiteStore, WebhookDispatcher]]:
    box: list[WebhookDispatcher] = []

    def on_commit(events: Sequence[StoredEvent]) -> None:
        for stored in events:  # what Engine.publish_committed does
            box[0].offer(stored)

    async with open_sqlite_store(str(path), on_commit=on_commit) as store:
        dispatcher = WebhookDispatcher(store, ENVELOPE, config=config, rng=random.Random(7))
        box.append(dispatcher)
        async with trio.open_nursery() as nursery:
            await nursery.start(dispatcher.run)
            yield store, dispatcher
            nursery.cancel_scope.cancel()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    async with trio.open_nursery() as nursery:
        yield await Receiver().start(nursery)
        nursery.cancel_scope.cancel()


_numbers = iter(range(1, 10**9))


def message(chat: str = "77079856339@c.us", text: str = "Привет!") -> MessageReceived:
    number = next(_numbers)
    return MessageReceived(
        provider="evolution",
        occurred_at=T0 + timedelta(seconds=number),
        chat=ChatRef(id=chat, kind=ChatKind.DIRECT, title="Anna"),
        sender=Party(id=chat, phone=chat.split("@")[0], name="Anna"),
        message=Message(id=f"M{number}", kind=MessageKind.TEXT, from_me=False, text=text),
    )


async def add_session(store: SQLiteStore, session_id: str = "s1", tenant: str = "acme") -> None:
    record = SessionRecord(id=session_id, tenant_id=tenant, provider="evolution")
    assert await store.put_session(record, provider_options={}, autostart=False)


async def ingest(store: SQLiteStore, *events: MessageReceived, session: str = "s1") -> list[Any]:
    return await store.ingest(session, events, received_at=T0)


def envelopes(store: SQLiteStore, stored: Sequence[StoredEvent]) -> list[str]:
    """What a /ws client gets for these events."""
    fmt = EnvelopeFormat(ENVELOPE)
    return [
        frame.text
        for item in stored
        for _, frame in fmt.render(item, store.epoch, lambda d, s: d.render(s.event, s.context))
    ]


def seqs(requests: Sequence[Received]) -> list[int]:
    return [int(r.envelope["seq"].split(":")[1]) for r in requests]


async def settle(dispatcher: WebhookDispatcher, seconds: float = 5.0) -> None:
    """Until nothing is queued, planned-but-unsent or in flight."""
    with trio.fail_after(seconds):
        while True:
            stats = dispatcher.statistics()
            if not (stats.queue_depth or stats.workers or stats.in_flight):
                return
            await trio.sleep(0.01)


async def receiver_less_settle(dispatcher: WebhookDispatcher) -> None:
    """Until the one delivery there is has come to an end (delivered or dead)."""
    with trio.fail_after(5):
        while True:
            stats = dispatcher.statistics()
            if stats.delivered + stats.dead:
                return
            await trio.sleep(0.01)


# --------------------------------------------------------------------------------------------
# Delivery


async def test_the_ws_envelope_is_posted_with_a_valid_signature(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        endpoint = await dispatcher.create_endpoint(
            "acme", url=receiver.url("/hook"), secret=SECRET
        )
        assert endpoint.secret == SECRET
        stored = await ingest(store, message())
        first, second = await receiver.wait_for("/hook", 2)
        await settle(dispatcher)
        assert dispatcher.statistics().delivered == 2

    # A new chat's first message: new_chat, then new_message, exactly as /ws shows them.
    assert [first.body.decode(), second.body.decode()] == envelopes(store, stored)
    assert [first.envelope["event"], second.envelope["event"]] == ["new_chat", "new_message"]
    for received in (first, second):
        headers = received.headers
        expected = hmac.new(SECRET.encode(), received.body, hashlib.sha256).hexdigest()
        assert headers["x-omnirelay-signature"] == f"sha256={expected}"
        assert headers["content-type"] == "application/json"
        assert headers["x-omnirelay-event"] == received.envelope["event"]
        assert headers["x-omnirelay-attempt"] == "1"
        assert abs(int(headers["x-omnirelay-timestamp"]) - datetime.now(UTC).timestamp()) < 60
        assert received.envelope["seq"].startswith(f"{store.epoch}:")
    assert first.delivery != second.delivery


async def test_a_generated_secret_signs_and_differs_per_endpoint(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        one = await dispatcher.create_endpoint("acme", url=receiver.url("/one"))
        two = await dispatcher.create_endpoint("acme", url=receiver.url("/two"))
        await ingest(store, message())
        (received, *_) = await receiver.wait_for("/one", 2)
    assert one.secret.startswith("whsec_")
    assert len(one.secret) > 40
    assert one.secret != two.secret
    assert received.headers["x-omnirelay-signature"] == sign(one.secret, received.body)


async def test_a_5xx_is_retried_and_delivered_once(tmp_path: Path, receiver: Receiver) -> None:
    url = receiver.script("/hook", 500, 503, 200)
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        await ingest(store, message())  # the chat first, so one event to follow
        await dispatcher.create_endpoint("acme", url=url, filters=[Filter(event="new_message")])
        await ingest(store, message())
        requests = await receiver.wait_for("/hook", 3)
        await settle(dispatcher)
        await trio.sleep(0.3)  # longer than any backoff: nothing more comes
        stats = dispatcher.statistics()
    assert len(receiver.at("/hook")) == 3
    assert len({r.delivery for r in requests}) == 1  # the same delivery, retried
    assert len({r.body for r in requests}) == 1
    assert [r.headers["x-omnirelay-attempt"] for r in requests] == ["1", "2", "3"]
    assert (stats.delivered, stats.retries, stats.dead) == (1, 2, 0)
    # Backoff: each retry waits at least half of base·2^(n-1).
    assert requests[1].at - requests[0].at >= 0.025
    assert requests[2].at - requests[1].at >= 0.05


async def test_retry_after_is_honoured(tmp_path: Path, receiver: Receiver) -> None:
    url = receiver.script("/hook", (429, {"Retry-After": "1"}), 200)
    config = attrs.evolve(FAST, backoff_max=5.0)
    async with dispatching(tmp_path / "db", config) as (store, dispatcher):
        await add_session(store)
        await dispatcher.create_endpoint("acme", url=url, filters=[Filter(event="new_chat")])
        await ingest(store, message())
        first, second = await receiver.wait_for("/hook", 2)
    assert 0.9 <= second.at - first.at < 2.0
    assert first.delivery == second.delivery


async def test_a_timeout_is_retried(tmp_path: Path, receiver: Receiver) -> None:
    url = receiver.script("/hook", Hang(2.0), 200)
    config = attrs.evolve(FAST, timeout=0.3)
    async with dispatching(tmp_path / "db", config) as (store, dispatcher):
        await add_session(store)
        await dispatcher.create_endpoint("acme", url=url, filters=[Filter(event="new_chat")])
        await ingest(store, message())
        first, second = await receiver.wait_for("/hook", 2)
        await settle(dispatcher)
        stats = dispatcher.statistics()
    assert first.delivery == second.delivery
    assert 0.3 <= second.at - first.at < 1.5
    assert (stats.delivered, stats.retries) == (1, 1)


async def test_a_404_is_dead_at_once_and_a_replay_delivers_it(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = receiver.script("/hook", 404)
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        endpoint = await dispatcher.create_endpoint(
            "acme", url=url, filters=[Filter(event="new_chat")]
        )
        await ingest(store, message())
        (first,) = await receiver.wait_for("/hook", 1)
        await settle(dispatcher)
        (dead,) = await dispatcher.list_dead("acme")
        assert dead.id == first.delivery
        assert (dead.endpoint_id, dead.event, dead.attempts) == (endpoint.id, "new_chat", 1)
        assert dead.last_status == 404
        assert dead.last_error == "HTTP 404: no: scripted 404"
        assert await dispatcher.list_dead("globex") == []
        assert len(receiver.at("/hook")) == 1  # never retried

        replayed = await dispatcher.replay(dead.id)
        assert replayed is not None
        assert replayed.state == "pending"
        assert replayed.attempts == 0
        _, again = await receiver.wait_for("/hook", 2)
        await settle(dispatcher)
        assert again.delivery == dead.id
        assert again.body == first.body
        assert again.headers["x-omnirelay-attempt"] == "1"
        assert await dispatcher.list_dead("acme") == []
        assert await dispatcher.replay(dead.id) is None  # delivered: not dead any more
        row = await dispatcher.get_delivery(dead.id)
        assert row is not None
        assert row.state == "delivered"
        assert row.last_status == 200


async def test_after_max_attempts_a_delivery_is_dead(tmp_path: Path, receiver: Receiver) -> None:
    url = receiver.script("/hook", 500, 500, 500, 500, 500)
    config = attrs.evolve(FAST, max_attempts=3)
    async with dispatching(tmp_path / "db", config) as (store, dispatcher):
        await add_session(store)
        await dispatcher.create_endpoint("acme", url=url, filters=[Filter(event="new_chat")])
        await ingest(store, message())
        await receiver.wait_for("/hook", 3)
        await settle(dispatcher)
        await trio.sleep(0.3)
        (dead,) = await dispatcher.list_dead("acme")
    assert len(receiver.at("/hook")) == 3
    assert (dead.attempts, dead.last_status) == (3, 500)


async def test_connection_errors_are_retried_then_dead(tmp_path: Path) -> None:
    # Bound but not listening, for the whole test: connections are refused, and no other
    # server can take the port in the meantime (a freed port could be reused mid-test).
    with socket.socket() as refusing:
        refusing.bind(("127.0.0.1", 0))
        port = refusing.getsockname()[1]
        config = attrs.evolve(FAST, max_attempts=2)
        async with dispatching(tmp_path / "db", config) as (store, dispatcher):
            await add_session(store)
            await dispatcher.create_endpoint(
                "acme", url=f"http://127.0.0.1:{port}/", filters=[Filter(event="new_chat")]
            )
            await ingest(store, message())
            await receiver_less_settle(dispatcher)
            (dead,) = await dispatcher.list_dead("acme")
            stats = dispatcher.statistics()
    assert dead.attempts == 2
    assert dead.last_status is None
    assert dead.last_error is not None
    assert "ConnectError" in dead.last_error
    assert (stats.retries, stats.dead) == (1, 1)


async def test_order_is_kept_per_endpoint_and_a_failing_one_holds_up_only_itself(
    tmp_path: Path, receiver: Receiver
) -> None:
    slow = receiver.script("/slow", 500, 500, 500)
    fast = receiver.url("/fast")
    only_messages = [Filter(event="new_message")]
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        await add_session(store, "g1", "globex")
        await dispatcher.create_endpoint("acme", url=slow, filters=only_messages)
        await dispatcher.create_endpoint("acme", url=fast, filters=only_messages)
        await dispatcher.create_endpoint("globex", url=receiver.url("/other"))
        for _ in range(5):
            await ingest(store, message())
        await ingest(store, message(), session="g1")
        fast_requests = await receiver.wait_for("/fast", 5)
        await receiver.wait_for("/other", 2)
        slow_requests = await receiver.wait_for("/slow", 8)

    # The head of /slow was tried four times before anything behind it went.
    assert seqs(slow_requests) == [seqs(fast_requests)[0]] * 4 + seqs(fast_requests)[1:]
    assert seqs(fast_requests) == sorted(seqs(fast_requests))
    assert len({r.delivery for r in slow_requests[:4]}) == 1
    # Nobody else waited for /slow's head.
    head_delivered = slow_requests[3].at
    assert fast_requests[-1].at < head_delivered
    assert receiver.at("/other")[-1].at < head_delivered


async def test_filters_use_the_ws_keys_and_a_disabled_endpoint_gets_nothing(
    tmp_path: Path, receiver: Receiver
) -> None:
    anna, boris = "77079856339@c.us", "77011112222@c.us"
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        await add_session(store, "s2")
        await dispatcher.create_endpoint(
            "acme", url=receiver.url("/anna"), filters=[Filter(chat_id=anna, event="new_message")]
        )
        await dispatcher.create_endpoint(
            "acme",
            url=receiver.url("/union"),
            filters=[Filter(user_id=77011112222), Filter(session_id="s2", event="new_chat")],
        )
        await dispatcher.create_endpoint(
            "acme", url=receiver.url("/telegram"), filters=[Filter(source="telegram")]
        )
        await dispatcher.create_endpoint("acme", url=receiver.url("/off"), enabled=False)
        await dispatcher.create_endpoint("acme", url=receiver.url("/all"))
        await ingest(store, message(anna))
        await ingest(store, message(boris))
        await ingest(store, message(anna), session="s2")
        await receiver.wait_for("/all", 6)
        await settle(dispatcher)

    def names(path: str) -> list[tuple[str, Any]]:
        return [(r.envelope["event"], r.envelope["data"]["user_id"]) for r in receiver.at(path)]

    assert names("/anna") == [("new_message", 77079856339), ("new_message", 77079856339)]
    assert names("/union") == [
        ("new_chat", 77011112222),
        ("new_message", 77011112222),
        ("new_chat", 77079856339),  # session s2's new chat
    ]
    assert receiver.at("/telegram") == []
    assert receiver.at("/off") == []


async def test_an_endpoint_gets_only_events_logged_after_it_was_created(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        await ingest(store, message(), message())
        await dispatcher.create_endpoint("acme", url=receiver.url("/hook"))
        (stored,) = await ingest(store, message())
        (received,) = await receiver.wait_for("/hook", 1)
        await settle(dispatcher)
    assert seqs([received]) == [stored.seq]
    assert len(receiver.at("/hook")) == 1


async def test_a_full_queue_loses_nothing_and_keeps_the_order(
    tmp_path: Path, receiver: Receiver
) -> None:
    config = attrs.evolve(FAST, queue_size=1)
    async with dispatching(tmp_path / "db", config) as (store, dispatcher):
        await add_session(store)
        await dispatcher.create_endpoint("acme", url=receiver.url("/hook"))
        # One commit of 30 events: on_commit offers them back to back, far past the queue.
        stored = await ingest(store, *(message(f"7700000{n:04d}@c.us") for n in range(15)))
        requests = await receiver.wait_for("/hook", 30)
        assert dispatcher.statistics().overflows > 0
    assert seqs(requests) == [item.seq for item in stored]
    assert [r.body.decode() for r in requests] == envelopes(store, stored)


async def test_events_committed_while_the_dispatcher_was_down_are_delivered(
    tmp_path: Path, receiver: Receiver
) -> None:
    path = tmp_path / "db"
    new_chats = [Filter(event="new_chat")]
    async with dispatching(path) as (store, dispatcher):
        await add_session(store)
        await dispatcher.create_endpoint(
            "acme", url=receiver.script("/hook", *[503] * 50), filters=new_chats
        )
        await ingest(store, message("1@c.us"))
        await receiver.wait_for("/hook", 1)  # pending and failing when the gateway stops
    # Committed with no dispatcher at all (a crash right after the commit looks the same).
    async with open_sqlite_store(str(path)) as plain:
        await ingest(plain, message("2@c.us"), message("3@c.us"))
    before = len(receiver.at("/hook"))
    receiver.scripts["/hook"] = []  # the receiver is healthy again

    async with dispatching(path) as (store, dispatcher):
        await ingest(store, message("4@c.us"))
        requests = await receiver.wait_for("/hook", before + 4)
        await settle(dispatcher)
        log = await store.read_log("acme", after=0, limit=100)
        assert await dispatcher.list_dead("acme") == []

    after_restart = requests[before:]
    # The pending one first (the same delivery, at last), then the rest, in log order.
    assert seqs(after_restart) == [item.seq for item in log if item.event.type == "chat.created"]
    assert after_restart[0].delivery == requests[0].delivery
    assert len({r.delivery for r in after_restart}) == 4


async def test_a_deleted_endpoint_stops_retrying_and_loses_its_queue(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = receiver.script("/hook", *[500] * 50)
    async with dispatching(tmp_path / "db", attrs.evolve(FAST, max_attempts=50)) as (
        store,
        dispatcher,
    ):
        await add_session(store)
        endpoint = await dispatcher.create_endpoint("acme", url=url)
        await ingest(store, message())
        await receiver.wait_for("/hook", 2)
        assert await dispatcher.delete_endpoint(endpoint.id)
        assert not await dispatcher.delete_endpoint(endpoint.id)
        await settle(dispatcher)
        count = len(receiver.at("/hook"))
        await trio.sleep(0.3)
        assert len(receiver.at("/hook")) == count
        assert await store.pending_webhook_endpoints() == []
        assert await dispatcher.list_endpoints("acme") == []


async def test_a_tenant_has_at_most_max_endpoints(tmp_path: Path, receiver: Receiver) -> None:
    config = attrs.evolve(FAST, max_endpoints_per_tenant=2)
    async with dispatching(tmp_path / "db", config) as (_store, dispatcher):
        for _ in range(2):
            await dispatcher.create_endpoint("acme", url=receiver.url("/x"))
        with pytest.raises(WebhookError) as caught:
            await dispatcher.create_endpoint("acme", url=receiver.url("/x"))
        assert caught.value.code == "too_many_webhooks"
        await dispatcher.create_endpoint("globex", url=receiver.url("/x"))


# --------------------------------------------------------------------------------------------
# Small parts


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "example.com/hook",
        "http://",
        "http://localhost:8080/hook",
        "http://127.0.0.1/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://[::1]/hook",
        "https://" + "a" * 2050 + ".com/",
    ],
)
def test_urls_that_are_refused(url: str) -> None:
    with pytest.raises(WebhookError) as caught:
        check_url(url, allow_private_networks=False)
    assert caught.value.code == "invalid_url"


def test_urls_that_are_accepted() -> None:
    assert check_url("https://example.com/hook?x=1", allow_private_networks=False)
    assert check_url("http://93.184.216.34:8080/", allow_private_networks=False)
    assert check_url("http://127.0.0.1:9/hook", allow_private_networks=True)


def test_retry_after_takes_seconds_or_an_http_date() -> None:
    now = datetime(2026, 1, 10, 15, 30, tzinfo=UTC)
    assert _retry_after_seconds("7", now) == 7.0
    assert _retry_after_seconds("Sat, 10 Jan 2026 15:30:30 GMT", now) == 30.0
    assert _retry_after_seconds("Sat, 10 Jan 2026 15:00:00 GMT", now) == 0.0
    assert _retry_after_seconds("soon", now) is None
    assert _retry_after_seconds(None, now) is None


# --------------------------------------------------------------------------------------------
# The REST routes on a minimal app (the tenant comes from a header here; see tests/e2e)


@attrs.frozen
class Host:
    webhooks: WebhookDispatcher


def api_app(dispatcher: WebhookDispatcher) -> QuartTrio:
    bp = Blueprint("webhooks_test", __name__)

    def tenant_of_request(body: dict[str, Any] | None = None) -> tuple[str | None, bool]:
        tenant = request.headers.get("X-Tenant")
        if tenant == "admin":
            named = (body or {}).get("tenant") or request.args.get("tenant")
            return named, True
        if tenant is None:
            raise ApiError(401, "missing_token", "no tenant")
        return tenant, False

    @bp.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, error.message)

    register_webhook_routes(bp, lambda: Host(dispatcher), tenant_of_request)
    app = QuartTrio(__name__)
    app.register_blueprint(bp)
    return app


async def test_the_rest_routes_manage_endpoints_and_never_show_a_secret_twice(
    tmp_path: Path, receiver: Receiver
) -> None:
    async with dispatching(tmp_path / "db") as (_store, dispatcher):
        client = api_app(dispatcher).test_client()
        acme = {"X-Tenant": "acme"}
        created = await client.post(
            "/api/webhooks",
            json={"url": receiver.url("/a"), "filters": [{"event": "new_message", "user_id": 7}]},
            headers=acme,
        )
        assert created.status_code == 201
        body = await created.get_json()
        assert body["secret"].startswith("whsec_")
        assert body["filters"] == [{"event": ["new_message"], "user_id": ["7"]}]
        assert body["enabled"] is True
        assert body["tenant"] == "acme"
        endpoint_id = body["id"]

        listed = await (await client.get("/api/webhooks", headers=acme)).get_json()
        assert [w["id"] for w in listed["webhooks"]] == [endpoint_id]
        one = await (await client.get(f"/api/webhooks/{endpoint_id}", headers=acme)).get_json()
        assert "secret" not in one
        assert "secret" not in listed["webhooks"][0]
        assert body["secret"] not in json.dumps([listed, one])

        patched = await client.patch(
            f"/api/webhooks/{endpoint_id}", json={"enabled": False}, headers=acme
        )
        assert patched.status_code == 200
        assert (await patched.get_json())["enabled"] is False

        # Another tenant sees nothing and can touch nothing.
        globex = {"X-Tenant": "globex"}
        assert (await (await client.get("/api/webhooks", headers=globex)).get_json()) == {
            "webhooks": []
        }
        for method, path in [
            ("GET", f"/api/webhooks/{endpoint_id}"),
            ("PATCH", f"/api/webhooks/{endpoint_id}"),
            ("DELETE", f"/api/webhooks/{endpoint_id}"),
        ]:
            answer = await client.open(path, method=method, json={}, headers=globex)
            assert answer.status_code == 404
            assert (await answer.get_json())["error"]["code"] == "webhook_not_found"

        # An admin sees every tenant's.
        admin = await (await client.get("/api/webhooks", headers={"X-Tenant": "admin"})).get_json()
        assert [w["id"] for w in admin["webhooks"]] == [endpoint_id]

        deleted = await client.delete(f"/api/webhooks/{endpoint_id}", headers=acme)
        assert deleted.status_code == 204
        gone = await client.get(f"/api/webhooks/{endpoint_id}", headers=acme)
        assert gone.status_code == 404


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({}, 400, "invalid_url"),
        ({"url": "ftp://example.com"}, 400, "invalid_url"),
        ({"url": "https://example.com", "filters": {"event": "x"}}, 400, "invalid_filter"),
        ({"url": "https://example.com", "filters": [{}]}, 400, "invalid_filter"),
        ({"url": "https://example.com", "filters": [{"colour": "red"}]}, 400, "invalid_filter"),
        ({"url": "https://example.com", "filters": [{"user_id": True}]}, 400, "invalid_filter"),
        ({"url": "https://example.com", "secret": "short"}, 400, "invalid_body"),
        ({"url": "https://example.com", "enabled": "yes"}, 400, "invalid_body"),
        ({"url": "https://example.com", "filter": [{"event": "x"}]}, 400, "invalid_body"),
        ({"url": "https://example.com", "tenant": "globex"}, 403, "forbidden"),
    ],
)
async def test_the_rest_routes_refuse_bad_bodies(
    tmp_path: Path, body: dict[str, Any], status: int, code: str
) -> None:
    async with dispatching(tmp_path / "db", attrs.evolve(FAST, allow_private_networks=False)) as (
        _store,
        dispatcher,
    ):
        client = api_app(dispatcher).test_client()
        answer = await client.post("/api/webhooks", json=body, headers={"X-Tenant": "acme"})
        assert answer.status_code == status
        error = (await answer.get_json())["error"]
        assert error["code"] == code
        assert error["message"]


async def test_the_rest_dead_letter_list_and_replay_are_per_tenant(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = receiver.script("/hook", 410)
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        client = api_app(dispatcher).test_client()
        acme, globex = {"X-Tenant": "acme"}, {"X-Tenant": "globex"}
        created = await client.post(
            "/api/webhooks", json={"url": url, "filters": [{"event": "new_chat"}]}, headers=acme
        )
        endpoint_id = (await created.get_json())["id"]
        await ingest(store, message())
        (first,) = await receiver.wait_for("/hook", 1)
        await settle(dispatcher)

        listed = await (await client.get("/api/webhooks/dead", headers=acme)).get_json()
        (dead,) = listed["dead"]
        assert listed["nextCursor"] is None
        assert dead["id"] == first.delivery
        assert dead["endpoint"] == endpoint_id
        assert dead["seq"] == first.envelope["seq"]
        assert dead["event"] == "new_chat"
        assert (dead["attempts"], dead["lastStatus"]) == (1, 410)
        assert dead["lastError"].startswith("HTTP 410")
        assert dead["createdAt"].endswith("Z")
        assert "body" not in dead

        assert (await (await client.get("/api/webhooks/dead", headers=globex)).get_json())[
            "dead"
        ] == []
        foreign = await client.post(f"/api/webhooks/dead/{dead['id']}/replay", headers=globex)
        assert foreign.status_code == 404
        assert (await foreign.get_json())["error"]["code"] == "dead_letter_not_found"

        replay = await client.post(f"/api/webhooks/dead/{dead['id']}/replay", headers=acme)
        assert replay.status_code == 202
        assert await replay.get_json() == {
            "id": dead["id"],
            "endpoint": endpoint_id,
            "state": "pending",
        }
        (_, again) = await receiver.wait_for("/hook", 2)
        assert again.delivery == dead["id"]
        await settle(dispatcher)
        twice = await client.post(f"/api/webhooks/dead/{dead['id']}/replay", headers=acme)
        assert twice.status_code == 409
        assert (await (await client.get("/api/webhooks/dead", headers=acme)).get_json())[
            "dead"
        ] == []
        bad = await client.get("/api/webhooks/dead?limit=0", headers=acme)
        assert bad.status_code == 400


async def test_the_rest_dead_letter_list_pages_newest_first(
    tmp_path: Path, receiver: Receiver
) -> None:
    url = receiver.script("/hook", 404, 404, 404)
    async with dispatching(tmp_path / "db") as (store, dispatcher):
        await add_session(store)
        client = api_app(dispatcher).test_client()
        acme = {"X-Tenant": "acme"}
        await client.post(
            "/api/webhooks", json={"url": url, "filters": [{"event": "new_chat"}]}, headers=acme
        )
        await ingest(store, message("1@c.us"), message("2@c.us"), message("3@c.us"))
        await receiver.wait_for("/hook", 3)
        await settle(dispatcher)
        first = await (await client.get("/api/webhooks/dead?limit=2", headers=acme)).get_json()
        cursor = first["nextCursor"]
        second = await (
            await client.get(f"/api/webhooks/dead?limit=2&cursor={cursor}", headers=acme)
        ).get_json()
        bad = await client.get("/api/webhooks/dead?cursor=x", headers=acme)
        assert bad.status_code == 400
        assert (await bad.get_json())["error"]["code"] == "invalid_cursor"
    pages = [d["seq"] for d in first["dead"]] + [d["seq"] for d in second["dead"]]
    assert pages == [r.envelope["seq"] for r in reversed(receiver.at("/hook"))]
    assert second["nextCursor"] is None
