"""One TCP port for everything: native websockets on chosen paths, Hypercorn for the rest.

`serve` accepts connections itself and reads each request head with h11. A websocket upgrade on
a path listed in `ListenerConfig.websocket_paths` is served natively (`NativeWebSocket`: wsproto
for the handshake and incoming frames, pre-built outgoing frames written straight to the
socket). Every other connection — REST, long-polling, webhooks, metrics, plain GETs to a native
path, upgrades on other paths — is handed to Hypercorn's per-connection `TCPServer` running the
ASGI app, through a stream that first replays the bytes already read.

This relies on Hypercorn internals (`TCPServer`, `WorkerContext`, `Lifespan`, `wrap_app`,
`ConnectionState`) exactly as `hypercorn/trio/run.py:worker_serve` uses them in 0.18.0, which
pyproject pins; tests/engine/test_listener.py exercises the hand-off.

What a client can see from the listener itself (everything else comes from the ASGI app):

- a malformed request head: HTTP 400 ``{"error":{"code":"bad_request",...}}``, then close;
- a head over `max_head_size`: HTTP 431 ``{"error":{"code":"head_too_large",...}}``;
- no complete head within `request_head_timeout`: the connection is closed;
- a broken upgrade on a native path (bad version, no key): 400 or 426 with a JSON body.

Errors: `serve` raises what binding the port or the ASGI lifespan startup raises (`OSError`,
Hypercorn's `LifespanFailureError` / `LifespanTimeoutError`); a failing connection never reaches
it (see `_Server._handle_connection`).
"""

from __future__ import annotations

import errno
import logging
import socket
from collections.abc import Awaitable, Callable, Mapping
from random import randint
from types import MappingProxyType
from typing import Any, Final
from urllib.parse import parse_qsl, unquote, urlsplit

import attrs
import h11
import trio
from hypercorn.config import Config as HypercornConfig
from hypercorn.events import Event as HypercornEvent
from hypercorn.events import Updated
from hypercorn.trio.lifespan import Lifespan
from hypercorn.trio.statsd import StatsdLogger
from hypercorn.trio.tcp_server import TCPServer
from hypercorn.trio.worker_context import WorkerContext
from hypercorn.typing import AppWrapper, ASGIFramework, ConnectionState, LifespanState
from hypercorn.utils import wrap_app
from wsproto.connection import ConnectionType
from wsproto.events import RejectConnection
from wsproto.handshake import H11Handshake
from wsproto.utilities import RemoteProtocolError as HandshakeError

from ._native_ws import ConnectionClosed, NativeWebSocket, error_body, shutdown_and_drain

__all__ = [
    "ConnectionClosed",
    "ListenerConfig",
    "NativeWebSocket",
    "RequestHead",
    "WebSocketHandler",
    "serve",
]

logger = logging.getLogger("omnirelay.engine.listener")

WebSocketHandler = Callable[[NativeWebSocket], Awaitable[None]]

_RECV_SIZE: Final = 65536
_ACCEPT_BATCH: Final = 64  # connections accepted per wake-up before other tasks get a turn
# As trio.serve_listeners: out of descriptors or memory, wait a moment instead of spinning.
_ACCEPT_CAPACITY_ERRNOS: Final = frozenset(
    {errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS}
)
_ACCEPT_CAPACITY_SLEEP: Final = 0.1
# As trio.SocketListener: the connection died in the backlog; accept the next one.
_ACCEPT_IGNORABLE_ERRNOS: Final = frozenset(
    getattr(errno, name)
    for name in (
        "EPERM",
        "ECONNABORTED",
        "EPROTO",
        "ENETDOWN",
        "ENOPROTOOPT",
        "EHOSTDOWN",
        "ENONET",
        "EHOSTUNREACH",
        "EOPNOTSUPP",
        "ENETUNREACH",
        "ENOSR",
        "ESOCKTNOSUPPORT",
        "EPROTONOSUPPORT",
        "ETIMEDOUT",
        "ECONNRESET",
    )
    if hasattr(errno, name)
)
# The peer went away or the socket was closed under us: nothing to report, nothing to fix.
_NETWORK_ERRORS: Final = (
    OSError,
    trio.BrokenResourceError,
    trio.ClosedResourceError,
    ConnectionClosed,
)
_REASONS: Final = {
    400: "Bad Request",
    426: "Upgrade Required",
    431: "Request Header Fields Too Large",
}


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, not {value!r}")


def _frozen_paths(paths: Mapping[str, WebSocketHandler]) -> Mapping[str, WebSocketHandler]:
    for path in paths:
        if not path.startswith("/"):
            raise ValueError(f"websocket path {path!r} must start with '/'")
    return MappingProxyType(dict(paths))


@attrs.frozen
class ListenerConfig:
    """Where to listen, which paths are native websockets, and the listener's own limits.

    Hypercorn's settings (keep-alive, read timeouts, h11 limits after the hand-off) stay in the
    `hypercorn.config.Config` passed to `serve`; its `bind` and `graceful_timeout` are ignored.
    Raises `ValueError` for a path without a leading ``/`` or a non-positive limit.
    """

    host: str = "127.0.0.1"
    port: int = 0
    #: Exact request path (percent-decoded, without the query) -> handler.
    websocket_paths: Mapping[str, WebSocketHandler] = attrs.field(
        factory=dict, converter=_frozen_paths
    )
    #: Time for a new connection to send its complete request head. The listener owns it:
    #: Hypercorn's timers only start after the hand-off.
    request_head_timeout: float = attrs.field(default=10.0, validator=_positive)
    max_head_size: int = attrs.field(default=16384, validator=_positive)
    #: Largest incoming websocket message; a bigger one closes the websocket with 1009.
    max_message_size: int = attrs.field(default=1_000_000, validator=_positive)
    #: Outgoing bytes queued per websocket before `send_nowait` refuses more.
    max_buffer: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    #: Outgoing frames queued per websocket before `send_nowait` refuses more.
    max_queued_frames: int = attrs.field(default=1024, validator=_positive)
    #: After cancellation: time for Hypercorn's connections (and native closes) to finish.
    graceful_timeout: float = attrs.field(default=5.0, validator=_non_negative)
    #: Longest a websocket close (flush, close reply) or a refused request may take.
    close_timeout: float = attrs.field(default=2.0, validator=_positive)


@attrs.frozen
class RequestHead:
    """The HTTP request that opened a native websocket (what a handler authenticates)."""

    method: str
    target: str  # as sent, e.g. "/ws?token=..."
    path: str  # percent-decoded, without the query
    query_string: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-cased, in the order sent
    client: tuple[str, int] | None

    def header(self, name: str) -> str | None:
        """The first value of header `name` (any case), latin-1 decoded; None if absent."""
        key = name.lower().encode("latin-1")
        for header_name, value in self.headers:
            if header_name == key:
                return value.decode("latin-1")
        return None

    def query(self, name: str) -> str | None:
        """The first value of query parameter `name`, percent-decoded; None if absent."""
        for key, value in parse_qsl(self.query_string.decode("latin-1"), keep_blank_values=True):
            if key == name:
                return value
        return None


async def serve(
    app: ASGIFramework,
    config: ListenerConfig,
    *,
    hypercorn_config: HypercornConfig | None = None,
    task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve `app` and the native websocket paths on one port until cancelled.

    Runs the ASGI lifespan startup before accepting, reports the bound ``(host, port)`` through
    `task_status`, then serves. On cancellation: stops accepting, closes every native websocket
    with 1001 "going away" (Hypercorn's graceful shutdown does not know about them), gives
    Hypercorn's connections `config.graceful_timeout`, then runs the lifespan shutdown, and only
    then lets the cancellation through. Also returns (after the same shutdown) when Hypercorn's
    ``max_requests`` is reached, as `worker_serve` does.

    Raises `OSError` if the address cannot be bound, Hypercorn's lifespan errors if the app's
    startup or shutdown fails or times out.
    """
    hc = hypercorn_config if hypercorn_config is not None else HypercornConfig()
    stop = trio.Event()
    async with trio.open_nursery() as nursery:
        server = _Server(app, config, hc)
        address = await nursery.start(server.run, stop, nursery.cancel_scope)
        task_status.started(address)
        try:
            await trio.sleep_forever()
        finally:
            stop.set()


class _Server:
    """The state shared by one `serve` call's connections."""

    def __init__(self, app: ASGIFramework, config: ListenerConfig, hc: HypercornConfig) -> None:
        # What worker_serve sets up, in the same order.
        hc.set_statsd_logger_class(StatsdLogger)
        self._app: AppWrapper = wrap_app(app, hc.wsgi_max_body_size, "asgi")
        self._config = config
        self._hc = hc
        self._lifespan_state: LifespanState = {}
        max_requests = None
        if hc.max_requests is not None:
            max_requests = hc.max_requests + randint(0, hc.max_requests_jitter)
        self._context = WorkerContext(max_requests)
        self._connection_state = ConnectionState({})
        self._native: set[NativeWebSocket] = set()
        self._head_scopes: set[trio.CancelScope] = set()
        self._stopping = False

    async def run(
        self,
        stop: trio.Event,
        serve_scope: trio.CancelScope,
        *,
        task_status: trio.TaskStatus[tuple[str, int]] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # Shielded: the cancellation of serve() only sets `stop`; the shutdown below is the
        # response to it and is bounded by graceful_timeout, close_timeout and Hypercorn's
        # startup/shutdown timeouts.
        with trio.CancelScope(shield=True):
            lifespan = Lifespan(self._app, self._hc, self._lifespan_state)
            async with trio.open_nursery() as lifespan_nursery:
                await lifespan_nursery.start(lifespan.handle_lifespan)
                await lifespan.wait_for_startup()
                try:
                    self._connection_state = ConnectionState(self._lifespan_state.copy())
                    listening = await _bind(self._config.host, self._config.port, self._hc.backlog)
                    await self._serve(listening, stop, task_status)
                finally:
                    # Also after a failed bind or a crash: startup may have opened resources.
                    await lifespan.wait_for_shutdown()
                lifespan_nursery.cancel_scope.cancel()
        serve_scope.cancel()

    async def _serve(
        self,
        listening: socket.socket,
        stop: trio.Event,
        task_status: trio.TaskStatus[tuple[str, int]],
    ) -> None:
        """Accept and serve until `stop` (or Hypercorn's max_requests), then shut down."""
        async with trio.open_nursery() as connections:
            accept_scope = await connections.start(self._accept_loop, listening, connections)
            host, port = listening.getsockname()[:2]
            task_status.started((host, port))
            async with trio.open_nursery() as waiters:
                waiters.start_soon(_set_when, self._context.terminate.wait, stop)
                await stop.wait()
                waiters.cancel_scope.cancel()

            self._stopping = True
            accept_scope.cancel()
            for scope in self._head_scopes:
                scope.cancel()
            await self._context.terminated.set()  # Hypercorn closes its idle connections
            connections.cancel_scope.deadline = trio.current_time() + self._config.graceful_timeout
            for websocket in list(self._native):
                connections.start_soon(websocket.close, 1001, "going away")

    async def _accept_loop(
        self,
        listening: socket.socket,
        connections: trio.Nursery,
        *,
        task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        # Accepting on the stdlib socket hands us the stdlib object of each connection, which
        # the native path keeps for synchronous send(); trio wraps that same object.
        try:
            with trio.CancelScope() as scope:
                task_status.started(scope)
                while True:
                    await trio.lowlevel.wait_readable(listening)
                    for _ in range(_ACCEPT_BATCH):
                        try:
                            sock, address = listening.accept()
                        except BlockingIOError:
                            break
                        except OSError as exc:
                            if exc.errno in _ACCEPT_IGNORABLE_ERRNOS:
                                continue
                            if exc.errno in _ACCEPT_CAPACITY_ERRNOS:
                                logger.error(
                                    "accept() failed (%s); retrying in %.1f s",
                                    exc,
                                    _ACCEPT_CAPACITY_SLEEP,
                                )
                                await trio.sleep(_ACCEPT_CAPACITY_SLEEP)
                                break
                            raise
                        connections.start_soon(self._handle_connection, sock, address)
        finally:
            trio.lowlevel.notify_closing(listening)
            listening.close()

    async def _handle_connection(self, sock: socket.socket, address: Any) -> None:
        """Serve one connection; network errors end it quietly and never reach the nursery."""
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            tsock = trio.socket.from_stdlib_socket(sock)  # also makes it non-blocking
        except OSError:
            sock.close()
            return
        try:
            await self._dispatch(sock, tsock, address)
        except* _NETWORK_ERRORS:
            pass  # the peer went away: one connection's end is not the server's concern
        finally:
            tsock.close()

    async def _dispatch(
        self, sock: socket.socket, tsock: trio.socket.SocketType, address: Any
    ) -> None:
        outcome = await self._read_head(tsock)
        if outcome is None or self._stopping:
            return
        if isinstance(outcome, int):
            await self._refuse(tsock, outcome)
            return
        request, received, trailing = outcome
        path, query_string = _split_target(request.target)
        handler = self._config.websocket_paths.get(path)
        if handler is not None and _is_websocket_upgrade(request):
            head = RequestHead(
                method=request.method.decode("ascii"),
                target=request.target.decode("latin-1"),
                path=path,
                query_string=query_string,
                headers=tuple((bytes(name), bytes(value)) for name, value in request.headers),
                client=(str(address[0]), int(address[1])) if isinstance(address, tuple) else None,
            )
            raw_head = received[: len(received) - len(trailing)]
            await self._serve_native(sock, tsock, head, raw_head, trailing, handler)
        else:
            await self._hand_off(tsock, received)

    async def _read_head(
        self, tsock: trio.socket.SocketType
    ) -> tuple[h11.Request, bytes, bytes] | int | None:
        """The parsed head, all bytes read and those after the head; a status to refuse with;
        or None when the client left, timed out, or the server is stopping."""
        limit = self._config.max_head_size
        parser = h11.Connection(h11.SERVER, max_incomplete_event_size=limit)
        received = bytearray()
        with trio.move_on_after(self._config.request_head_timeout) as scope:
            self._head_scopes.add(scope)
            try:
                while True:
                    data = await tsock.recv(_RECV_SIZE)
                    if not data:
                        return None
                    received += data
                    parser.receive_data(data)
                    try:
                        event = parser.next_event()
                    except h11.RemoteProtocolError as exc:
                        return exc.error_status_hint
                    if isinstance(event, h11.Request):
                        trailing = parser.trailing_data[0]
                        if len(received) - len(trailing) > limit:
                            return 431  # h11 only limits a head that is still incomplete
                        return event, bytes(received), trailing
                    if event is not h11.NEED_DATA:
                        return None
            finally:
                self._head_scopes.discard(scope)
        return None

    async def _refuse(
        self, tsock: trio.socket.SocketType, status: int, extra_headers: bytes = b""
    ) -> None:
        if status == 431:
            body = error_body(
                "head_too_large",
                f"the request head exceeds {self._config.max_head_size} bytes",
            )
        else:
            body = error_body("bad_request", "malformed HTTP request head")
        reason = _REASONS.get(status, "Bad Request")
        response = (
            (
                f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                f"content-length: {len(body)}\r\nconnection: close\r\n"
            ).encode()
            + extra_headers
            + b"\r\n"
            + body
        )
        with trio.move_on_after(self._config.close_timeout):
            await _send_all(tsock, response)
            await shutdown_and_drain(tsock)

    async def _serve_native(
        self,
        sock: socket.socket,
        tsock: trio.socket.SocketType,
        head: RequestHead,
        raw_head: bytes,
        trailing: bytes,
        handler: WebSocketHandler,
    ) -> None:
        handshake = H11Handshake(ConnectionType.SERVER)
        try:
            handshake.receive_data(raw_head)
            events = list(handshake.events())
        except HandshakeError as exc:
            hint = exc.event_hint
            status = hint.status_code if isinstance(hint, RejectConnection) else 400
            extra = b"".join(
                name + b": " + value + b"\r\n"
                for name, value in (hint.headers if isinstance(hint, RejectConnection) else ())
            )
            await self._refuse(tsock, status, extra)
            return
        assert events, "a complete head always yields the handshake request"
        config = self._config
        async with trio.open_nursery() as nursery:
            websocket = NativeWebSocket(
                head,
                sock,
                tsock,
                handshake,
                trailing,
                nursery,
                max_buffer=config.max_buffer,
                max_frames=config.max_queued_frames,
                max_message_size=config.max_message_size,
                close_timeout=config.close_timeout,
            )
            self._native.add(websocket)
            try:
                failed = await _run_handler(handler, websocket)
                await websocket._finish_handler(failed=failed)
            finally:
                self._native.discard(websocket)
                websocket._close_socket()

    async def _hand_off(self, tsock: trio.socket.SocketType, received: bytes) -> None:
        stream = _ReplayStream(trio.SocketStream(tsock), received)
        # TCPServer is annotated to take an SSLStream but duck-types it: without do_handshake
        # it takes its plain-TCP path and only uses the members _ReplayStream has.
        server = _HandOffServer(
            self._app,
            self._hc,
            self._context,
            self._connection_state,
            stream,  # type: ignore[arg-type]
        )
        await server.run()


class _HandOffServer(TCPServer):
    """Hypercorn's per-connection server, with its keep-alive timer started under a shield.

    Hypercorn restarts the idle timer (`Updated(idle=True)`) from inside the ASGI app's final
    `send`, with `nursery.start`, so the timer task starts under the app's cancel scopes.
    Quart-Trio cancels its per-request nursery as soon as the response is complete, which kills
    the timer at birth: an idle keep-alive connection then never times out, and a graceful
    shutdown waits the full graceful timeout for it. Shielding just that restart fixes both.
    """

    async def protocol_send(self, event: HypercornEvent) -> None:
        if isinstance(event, Updated):
            with trio.CancelScope(shield=True):
                await super().protocol_send(event)
        else:
            await super().protocol_send(event)


async def _run_handler(handler: WebSocketHandler, websocket: NativeWebSocket) -> bool:
    """Run one handler; True if it failed with an exception other than a network error."""
    failed = False
    try:
        await handler(websocket)
    except* _NETWORK_ERRORS:
        pass
    except* Exception as group:
        # Log instead of propagating, deliberately and only here: the handler serves one
        # client, and one client's bug must not take the port down for everyone else. The
        # client gets 1011 (or HTTP 500 before the handshake was answered).
        failed = True
        error = group.exceptions[0] if len(group.exceptions) == 1 else group
        logger.error("websocket handler for %s failed", websocket.head.path, exc_info=error)
    return failed


class _ReplayStream:
    """What Hypercorn's `TCPServer` uses of a stream, replaying the already-read bytes first.

    Deliberately no `do_handshake`: TCPServer probes for it and, on AttributeError, treats the
    connection as plain TCP and reads `.socket` for the peer and local addresses.
    """

    __slots__ = ("_pending", "_stream", "socket")

    def __init__(self, stream: trio.SocketStream, pending: bytes) -> None:
        self._stream = stream
        self._pending = pending
        self.socket = stream.socket

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        pending = self._pending
        if not pending:
            return await self._stream.receive_some(max_bytes)
        await trio.lowlevel.checkpoint()
        if max_bytes is None or len(pending) <= max_bytes:
            self._pending = b""
            return pending
        self._pending = pending[max_bytes:]
        return pending[:max_bytes]

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(data)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


def _split_target(target: bytes) -> tuple[str, bytes]:
    """The percent-decoded path and the raw query string of a request target."""
    raw_path, _, query_string = target.partition(b"?")
    if not raw_path.startswith(b"/") and b"://" in raw_path:  # absolute-form (proxies)
        raw_path = urlsplit(raw_path).path or b"/"
    return unquote(raw_path.decode("latin-1")), query_string


def _is_websocket_upgrade(request: h11.Request) -> bool:
    """Whether the request asks for a websocket (version and key are wsproto's to check)."""
    if request.method != b"GET":
        return False
    upgrade = connection_upgrade = False
    for name, value in request.headers:
        if name == b"upgrade":
            upgrade = upgrade or any(
                token.strip().lower() == b"websocket" for token in value.split(b",")
            )
        elif name == b"connection":
            connection_upgrade = connection_upgrade or any(
                token.strip().lower() == b"upgrade" for token in value.split(b",")
            )
    return upgrade and connection_upgrade


async def _bind(host: str, port: int, backlog: int) -> socket.socket:
    """A non-blocking listening stdlib socket on the first address `host` resolves to."""
    infos = await trio.socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(backlog)
        sock.setblocking(False)
    except BaseException:
        sock.close()
        raise
    return sock


async def _send_all(tsock: trio.socket.SocketType, data: bytes) -> None:
    view = memoryview(data)
    while view:
        sent = await tsock.send(view)
        view = view[sent:]


async def _set_when(wait: Callable[[], Awaitable[None]], event: trio.Event) -> None:
    await wait()
    event.set()
