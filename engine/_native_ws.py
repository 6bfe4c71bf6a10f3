"""A websocket served natively by the listener: wsproto in, pre-built frames out.

The listener (`_listener.py`) reads the request head and, for an upgrade on a native path,
builds a `NativeWebSocket` and runs the configured handler with it. Outgoing data never goes
through wsproto or a trio stream: each frame is complete bytes built once for every receiver
(`OutFrame.ws_bytes`) and written with a synchronous non-blocking ``send()`` on the stdlib
socket. Only when the kernel buffer is full is the rest queued (whole frames, in order) and
written by the connection's own writer task, started on demand. Everything this side writes —
the 101 response, pongs, the close frame — goes through that one ordered path.

Errors: `ConnectionClosed` when the peer closed, vanished, or the websocket was closed here.
Calling `receive`/`send_nowait` before `accept()`, or `accept`/`reject` twice, is a bug in the
caller and raises `RuntimeError`.
"""

from __future__ import annotations

import collections
import itertools
import json
import socket
from typing import TYPE_CHECKING, Final, NoReturn

import trio
from wsproto.connection import ConnectionState
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    TextMessage,
)

from ._frames import OutFrame

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from wsproto.connection import Connection
    from wsproto.handshake import H11Handshake

    from ._listener import RequestHead

__all__ = ["ConnectionClosed", "NativeWebSocket"]

_RECV_SIZE: Final = 65536
# sendmsg() gathers at most this many queued frames per syscall (Linux IOV_MAX is 1024).
_IOV_BATCH: Final = 256
# After refusing a handshake, read and discard at most this much while waiting for the peer's EOF.
_LINGER_LIMIT: Final = 1 << 20

_CONNECTING: Final = 0  # handshake not answered yet
_OPEN: Final = 1
_CLOSING: Final = 2  # our close frame is queued or the peer's close is being answered
_CLOSED: Final = 3  # socket closed


class ConnectionClosed(Exception):
    """The websocket is closed: `code` and `reason` are the peer's, or ours if we closed first.

    1006 means the connection dropped without a close frame.
    """

    def __init__(self, code: int, reason: str = "") -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason

    def __str__(self) -> str:
        suffix = f": {self.reason}" if self.reason else ""
        return f"websocket closed with code {self.code}{suffix}"


class NativeWebSocket:
    """One websocket on the listener's fast path; owned by the task that runs its handler.

    `send_nowait` may be called from any task of the same trio run (the hub calls it); `receive`
    from one task at a time. Built by the listener only.
    """

    __slots__ = (
        "_buffered",
        "_close_code",
        "_close_reason",
        "_close_timeout",
        "_closed_event",
        "_conn",
        "_drained",
        "_handshake",
        "_max_buffer",
        "_max_frames",
        "_max_message",
        "_nursery",
        "_queue",
        "_reading",
        "_sock",
        "_state",
        "_trailing",
        "_tsock",
        "_writer_running",
        "head",
        "on_drained",
    )

    def __init__(
        self,
        head: RequestHead,
        sock: socket.socket,
        tsock: trio.socket.SocketType,
        handshake: H11Handshake,
        trailing: bytes,
        nursery: trio.Nursery,
        *,
        max_buffer: int,
        max_frames: int,
        max_message_size: int,
        close_timeout: float,
    ) -> None:
        self.head = head
        self._sock = sock  # the stdlib object, for synchronous non-blocking send()
        self._tsock = tsock  # the trio wrapper of the same socket, for waiting reads and close
        self._handshake: H11Handshake | None = handshake
        self._trailing = trailing  # bytes the client sent after the request head
        self._nursery = nursery  # where the writer task starts when the kernel buffer is full
        self._max_buffer = max_buffer
        self._max_frames = max_frames
        self._max_message = max_message_size
        self._close_timeout = close_timeout
        self._conn: Connection | None = None
        self._state = _CONNECTING
        self._queue: collections.deque[bytes | memoryview] | None = None  # made on first use
        self._buffered = 0
        self._writer_running = False
        self._drained: trio.Event | None = None
        self._closed_event: trio.Event | None = None
        self._reading = False
        self._close_code = 1006
        self._close_reason = ""
        #: Called (from the writer task) when a backlog has been written out; may send again.
        self.on_drained: Callable[[], None] | None = None

    # -- handshake ---------------------------------------------------------------------------

    async def accept(self, *, subprotocol: str | None = None) -> None:
        """Answer the upgrade with 101; `subprotocol` must be one the client offered.

        Never negotiates an extension (no permessage-deflate: frames stay shareable).
        Raises `RuntimeError` if the handshake was already answered, `wsproto`'s
        `LocalProtocolError` for a subprotocol the client did not offer.
        """
        handshake = self._handshake
        if self._state != _CONNECTING or handshake is None:
            raise RuntimeError("the websocket handshake was already answered")
        response = handshake.send(AcceptConnection(subprotocol=subprotocol, extensions=[]))
        conn = handshake.connection
        assert conn is not None
        self._handshake = None
        if self._trailing:
            conn.receive_data(self._trailing)
            self._trailing = b""
        self._conn = conn
        self._state = _OPEN
        self._write(response)
        await trio.lowlevel.checkpoint()

    async def reject(
        self, status: int, body: bytes, content_type: str = "application/json"
    ) -> None:
        """Refuse the upgrade with a real HTTP response (401, 400, 403 …), then close.

        Waits at most the close timeout for the response to be written and the client to hang
        up. Raises `RuntimeError` if the handshake was already answered, `ValueError` for a
        status outside 200-599.
        """
        handshake = self._handshake
        if self._state != _CONNECTING or handshake is None:
            raise RuntimeError("the websocket handshake was already answered")
        if not 200 <= status <= 599:
            raise ValueError(f"cannot refuse a websocket handshake with status {status}")
        self._handshake = None
        headers = [
            (b"content-type", content_type.encode("latin-1")),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        response = handshake.send(
            RejectConnection(status_code=status, headers=headers, has_body=True)
        ) + handshake.send(RejectData(data=body, body_finished=True))
        self._state = _CLOSING
        self._write(response)
        try:
            with trio.move_on_after(self._close_timeout):
                await self._wait_drained()
                if self._state != _CLOSED:
                    await shutdown_and_drain(self._tsock)
        finally:
            self._close_socket()

    # -- sending -----------------------------------------------------------------------------

    def send_nowait(self, frame: bytes) -> bool:
        """Write one complete pre-built frame now, or queue it behind earlier ones; never blocks.

        Returns False, queueing nothing, when the queued bytes would exceed `max_buffer` or
        the queue already holds `max_frames` frames (the caller applies its slow-consumer
        policy, usually ``close(4008)``), when the websocket is
        closing or closed, or when the connection turns out to be broken. Raises `RuntimeError`
        before `accept()`.
        """
        if self._state != _OPEN:
            if self._state == _CONNECTING:
                raise RuntimeError("send_nowait() before accept()")
            return False
        queue = self._queue
        if queue:
            if self._buffered + len(frame) > self._max_buffer or len(queue) >= self._max_frames:
                return False
            queue.append(frame)
            self._buffered += len(frame)
            return True
        return self._send_now(frame)

    def send_group_nowait(self, frames: Sequence[bytes]) -> bool:
        """`send_nowait` for frames that must go together or not at all (one event's frames):
        refused as a whole, and kept together in the queue (so `discard_queued` never splits
        them)."""
        if len(frames) == 1:
            return self.send_nowait(frames[0])
        return self.send_nowait(b"".join(frames))

    def send_text_nowait(self, text: str) -> bool:
        """Frame `text` as one TEXT message and `send_nowait` it (builds the frame each call)."""
        return self.send_nowait(OutFrame(text).ws_bytes)

    @property
    def buffered(self) -> int:
        """Bytes queued and not yet written to the kernel."""
        return self._buffered

    def discard_queued(self) -> int:
        """Drop the queued frames not yet started (one partly written is finished, so the
        framing stays valid); returns how many were dropped.

        For a client closed as too slow: what it has not received it gets again when it
        resumes, and the close frame then follows right after what the kernel holds instead
        of behind megabytes it would have to read first.
        """
        queue = self._queue
        if not queue:
            return 0
        started = queue[0] if isinstance(queue[0], memoryview) else None
        dropped = len(queue) - (started is not None)
        queue.clear()
        if started is not None:
            queue.append(started)
        self._buffered = len(started) if started is not None else 0
        return dropped

    @property
    def closed(self) -> bool:
        """True once closing began (here or by the peer) or the connection dropped."""
        return self._state >= _CLOSING

    def _write(self, data: bytes) -> None:
        # Protocol bytes (101, pong, close) are never refused: they keep their place in order.
        if self._state == _CLOSED:
            return
        if self._queue:
            self._queue.append(data)
            self._buffered += len(data)
        else:
            self._send_now(data)

    def _send_now(self, data: bytes) -> bool:
        try:
            sent = self._sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError:
            self._abort()
            return False
        if sent != len(data):
            if self._queue is None:
                self._queue = collections.deque()
            self._queue.append(memoryview(data)[sent:] if sent else data)
            self._buffered += len(data) - sent
            if not self._writer_running:
                self._writer_running = True
                self._nursery.start_soon(self._writer)
        return True

    async def _writer(self) -> None:
        # Runs only while something is queued; the fast path never touches it.
        try:
            while self._queue:
                await trio.lowlevel.wait_writable(self._sock)
                self._flush()
        except (OSError, trio.ClosedResourceError):
            self._abort()
        finally:
            self._writer_running = False
            if self._drained is not None:
                self._drained.set()
        if self._state == _OPEN and not self._queue and self.on_drained is not None:
            self.on_drained()

    def _flush(self) -> None:
        queue = self._queue
        assert queue is not None
        sock = self._sock
        while queue:
            try:
                if len(queue) == 1:
                    sent = sock.send(queue[0])
                else:
                    sent = sock.sendmsg(itertools.islice(queue, _IOV_BATCH))
            except BlockingIOError:
                return
            self._buffered -= sent
            while sent:
                first = queue[0]
                if sent >= len(first):
                    queue.popleft()
                    sent -= len(first)
                else:
                    queue[0] = memoryview(first)[sent:]
                    sent = 0

    async def _wait_drained(self) -> None:
        while self._queue and self._state != _CLOSED:
            if self._drained is None or self._drained.is_set():
                self._drained = trio.Event()
            await self._drained.wait()

    # -- receiving ---------------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next complete message: `str` for TEXT, `bytes` for BINARY.

        Answers pings itself. Raises `ConnectionClosed` when the peer closes or vanishes, when
        this side closed, or (code 1009, after closing) for a message over `max_message_size`.
        Raises `RuntimeError` before `accept()`.
        """
        if self._state == _CONNECTING:
            raise RuntimeError("receive() before accept()")
        if self._reading and self._state == _CLOSING:
            # close() is reading the peer's close reply; wait for it to finish.
            assert self._closed_event is not None
            await self._closed_event.wait()
        if self._state == _CLOSED:
            await trio.lowlevel.checkpoint()
            raise ConnectionClosed(self._close_code, self._close_reason)
        self._reading = True
        try:
            outcome = await self._read_message()
        finally:
            self._reading = False
        if isinstance(outcome, CloseConnection):
            await self._peer_closed(outcome)
        if outcome is None:
            await self.close(1009, "message too big")
            raise ConnectionClosed(1009, "message too big")
        return outcome

    async def _read_message(self) -> str | bytes | CloseConnection | None:
        """Read until a whole message (None if it grew too big), a close frame or EOF."""
        conn = self._conn
        assert conn is not None
        texts: list[str] = []
        blobs: list[bytes] = []
        size = 0
        while True:
            for event in conn.events():
                if isinstance(event, TextMessage):
                    if self._state != _OPEN:
                        continue  # closing: only the close reply matters now
                    size += len(event.data)
                    if size > self._max_message:
                        return None
                    if event.message_finished and not texts:
                        return event.data
                    texts.append(event.data)
                    if event.message_finished:
                        return "".join(texts)
                elif isinstance(event, BytesMessage):
                    if self._state != _OPEN:
                        continue
                    size += len(event.data)
                    if size > self._max_message:
                        return None
                    if event.message_finished and not blobs:
                        return bytes(event.data)
                    blobs.append(bytes(event.data))
                    if event.message_finished:
                        return b"".join(blobs)
                elif isinstance(event, Ping):
                    # A client that pings but never reads must not grow the queue: past
                    # max_buffer its pings go unanswered (the data refusals close it soon).
                    if self._state == _OPEN and self._buffered <= self._max_buffer:
                        self._write(conn.send(event.response()))
                elif isinstance(event, CloseConnection):
                    return event
            try:
                data = await self._tsock.recv(_RECV_SIZE)
            except (OSError, trio.ClosedResourceError):
                data = b""
            if not data:
                return CloseConnection(code=1006)
            conn.receive_data(data)

    async def _peer_closed(self, event: CloseConnection) -> NoReturn:
        """Finish the connection after a close frame or EOF from the peer; always raises."""
        conn = self._conn
        assert conn is not None
        try:
            if self._state == _OPEN:
                # The peer started the closing handshake (or vanished): answer, flush, hang up.
                self._state = _CLOSING
                self._close_code = int(event.code)
                self._close_reason = event.reason or ""
                self._closed_event = trio.Event()
                self._reading = True  # a concurrent receive() waits instead of reading
                if event.code != 1006 and conn.state in (
                    ConnectionState.OPEN,
                    ConnectionState.REMOTE_CLOSING,
                ):
                    self._write(conn.send(event.response()))
                    with trio.move_on_after(self._close_timeout):
                        await self._wait_drained()
            # Otherwise this is the reply to our close frame: the closing handshake is done.
        finally:
            self._reading = False
            self._close_socket()
        raise ConnectionClosed(self._close_code, self._close_reason)

    # -- closing -----------------------------------------------------------------------------

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Queue a close frame after everything queued, flush, wait for the reply, close.

        Bounded by the close timeout; then the socket is closed regardless. Idempotent: returns
        at once if closing already began. Before `accept()` it refuses the handshake instead
        (503 for 1001 "going away", else 403). Never raises for a broken connection.
        """
        if self._state == _CONNECTING:
            status = 503 if code == 1001 else 403
            message = reason or "websocket closed by the server"
            await self.reject(status, error_body("websocket_refused", message))
            return
        if self._state != _OPEN:
            await trio.lowlevel.checkpoint()
            return
        conn = self._conn
        assert conn is not None
        self._state = _CLOSING
        self._close_code = code
        self._close_reason = reason
        self._closed_event = trio.Event()
        self._write(conn.send(CloseConnection(code=code, reason=reason)))
        try:
            with trio.move_on_after(self._close_timeout):
                await self._wait_drained()
                if self._state == _CLOSED:
                    return
                if self._reading:
                    await self._closed_event.wait()  # receive() gets the reply and closes
                else:
                    self._reading = True
                    try:
                        await self._read_message()  # discards data until the reply or EOF
                    finally:
                        self._reading = False
        finally:
            self._close_socket()

    def _abort(self) -> None:
        # A write failed: the peer is gone. Drop what is queued and wake every waiter.
        if self._queue:
            self._queue.clear()
        self._buffered = 0
        self._close_socket()

    def _close_socket(self) -> None:
        self._state = _CLOSED
        # trio's close() calls notify_closing first: a task blocked reading or waiting to write
        # on this socket gets ClosedResourceError instead of waiting on a reused descriptor.
        self._tsock.close()
        if self._drained is not None:
            self._drained.set()
        if self._closed_event is not None:
            self._closed_event.set()

    async def _finish_handler(self, *, failed: bool) -> None:
        """After the handler returned (or raised): answer or close the websocket properly."""
        if self._state == _CONNECTING:
            if failed:
                body = error_body("internal_error", "the websocket handler failed")
                await self.reject(500, body)
            else:
                body = error_body("forbidden", "the websocket handshake was not accepted")
                await self.reject(403, body)
        elif failed:
            await self.close(1011, "internal error")
        else:
            await self.close(1000)


async def shutdown_and_drain(tsock: trio.socket.SocketType) -> None:
    """Send FIN, then discard input until the peer's EOF; the caller bounds it and closes.

    Closing a socket that still has unread input makes the kernel send RST, which can destroy a
    response the peer has not read yet. Never raises for a broken connection.
    """
    try:
        tsock.shutdown(socket.SHUT_WR)
        discarded = 0
        while discarded < _LINGER_LIMIT:
            data = await tsock.recv(_RECV_SIZE)
            if not data:
                return
            discarded += len(data)
    except (OSError, trio.ClosedResourceError):
        return


def error_body(code: str, message: str) -> bytes:
    return json.dumps({"error": {"code": code, "message": message}}).encode()
