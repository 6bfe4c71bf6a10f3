"""Fan-out through the native listener: N websocket clients, M pre-built frames to each.

Starts `serve` with a native handler that registers every websocket, connects N raw clients
from a child process (so their reading does not count as server CPU), then hands each of M
pre-built frames to every websocket with `send_nowait` as fast as it can, letting other tasks
run once per frame (as the hub does between events). The clock stops when the clients have
received every byte. Prints one JSON object: deliveries per second and server CPU µs per
delivery (``time.process_time`` of this process, which only serves).

    python bench/listener_fanout.py [--clients 100] [--frames 2000] [--size 200] [--gc-freeze]

Only 127.0.0.1; clients are bounded to 2000.
"""

from __future__ import annotations

import argparse
import base64
import gc
import json
import os
import selectors
import socket
import subprocess
import sys
import time
from functools import partial
from typing import Any

import trio
from hypercorn.config import Config as HypercornConfig

from omnirelay.engine._frames import OutFrame
from omnirelay.engine._listener import ConnectionClosed, ListenerConfig, NativeWebSocket, serve

MAX_CLIENTS = 2000


async def lifespan_only_app(scope: Any, receive: Any, send: Any) -> None:
    """An ASGI app that only completes the lifespan: every frame here goes the native way."""
    if scope["type"] != "lifespan":
        raise RuntimeError("this benchmark serves only native websockets")
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        else:
            await send({"type": "lifespan.shutdown.complete"})
            return


def build_frames(count: int, size: int) -> list[bytes]:
    """`count` distinct frames whose payloads are all `size` bytes (an envelope-like JSON)."""
    frames = []
    for seq in range(count):
        head = f'{{"event":"new_message","data":{{"seq":{seq:08d},"text":"'
        tail = '"}}'
        padding = "x" * max(0, size - len(head) - len(tail))
        frames.append(OutFrame(head + padding + tail).ws_bytes)
    return frames


async def run_server(args: argparse.Namespace) -> dict[str, Any]:
    registered: list[NativeWebSocket] = []
    everyone_in = trio.Event()

    async def handler(ws: NativeWebSocket) -> None:
        await ws.accept()
        registered.append(ws)
        if len(registered) == args.clients:
            everyone_in.set()
        try:
            while True:
                await ws.receive()
        except ConnectionClosed:
            pass

    frames = build_frames(args.frames, args.size)
    frame_size = len(frames[0])
    config = ListenerConfig(
        websocket_paths={"/ws": handler},
        max_buffer=frame_size * args.frames + 1,  # measure delivery, not the refusal policy
    )
    hypercorn_config = HypercornConfig()
    hypercorn_config.backlog = max(128, args.clients)
    hypercorn_config.errorlog = None
    async with trio.open_nursery() as nursery:
        host, port = await nursery.start(
            partial(serve, lifespan_only_app, config, hypercorn_config=hypercorn_config)
        )
        command = [
            sys.executable,
            __file__,
            "--client",
            f"{host}:{port}:{args.clients}:{frame_size * args.frames}",
        ]
        process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE)
        assert process.stdout is not None
        lines = _LineReader(process.stdout)
        with trio.fail_after(60):
            assert await lines.next() == "ready"
            await everyone_in.wait()
        if args.gc_freeze:
            gc.collect()
            gc.freeze()

        refused = 0
        wall_start, cpu_start = time.perf_counter(), time.process_time()
        for frame in frames:
            for ws in registered:
                if not ws.send_nowait(frame):
                    refused += 1
            await trio.lowlevel.checkpoint()
        wall_sent, cpu_sent = time.perf_counter(), time.process_time()
        with trio.fail_after(120):
            assert await lines.next() == "done"
        wall_end, cpu_end = time.perf_counter(), time.process_time()
        await process.wait()
        nursery.cancel_scope.cancel()

    deliveries = args.clients * args.frames
    return {
        "clients": args.clients,
        "frames": args.frames,
        "frame_bytes": frame_size,
        "gc_freeze": args.gc_freeze,
        "deliveries": deliveries,
        "refused": refused,
        "seconds": round(wall_end - wall_start, 4),
        "deliveries_per_s": round(deliveries / (wall_end - wall_start)),
        "cpu_us_per_delivery": round((cpu_end - cpu_start) / deliveries * 1e6, 2),
        "send_loop_us_per_delivery": round((cpu_sent - cpu_start) / deliveries * 1e6, 2),
        "send_loop_seconds": round(wall_sent - wall_start, 4),
    }


class _LineReader:
    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            data = await self._stream.receive_some()
            if not data:
                raise RuntimeError("the client process exited early")
            self._buffer += data
        line, _, self._buffer = self._buffer.partition(b"\n")
        return line.decode().strip()


def run_clients(host: str, port: int, count: int, expected: int) -> None:
    """The child process: connect, upgrade, then read until every socket got `expected` bytes."""
    selector = selectors.DefaultSelector()
    remaining: dict[socket.socket, int] = {}
    for _ in range(count):
        sock = socket.create_connection((host, port))
        nonce = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET /ws HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: " + nonce + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            data = sock.recv(4096)
            if not data:
                raise SystemExit("the server closed during the handshake")
            head += data
        if not head.startswith(b"HTTP/1.1 101 "):
            raise SystemExit(f"handshake refused: {head[:40]!r}")
        sock.setblocking(False)
        remaining[sock] = expected - len(head.partition(b"\r\n\r\n")[2])
        selector.register(sock, selectors.EVENT_READ)
    print("ready", flush=True)
    while any(left > 0 for left in remaining.values()):
        events = selector.select(timeout=60)
        if not events:
            raise SystemExit("no data for 60 s")
        for key, _ in events:
            conn = key.fileobj
            assert isinstance(conn, socket.socket)
            data = conn.recv(1 << 20)
            if not data:
                raise SystemExit("the server closed a connection early")
            remaining[conn] -= len(data)
            if remaining[conn] <= 0:
                selector.unregister(conn)
    print("done", flush=True)
    for sock in remaining:
        sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=100)
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--size", type=int, default=200, help="payload bytes per frame")
    parser.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before sending")
    parser.add_argument("--client", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        host, port, count, expected = args.client.rsplit(":", 3)
        run_clients(host, int(port), int(count), int(expected))
        return
    if not 1 <= args.clients <= MAX_CLIENTS:
        parser.error(f"--clients must be between 1 and {MAX_CLIENTS}")
    if args.frames < 1 or args.size < 1:
        parser.error("--frames and --size must be positive")
    print(json.dumps(trio.run(run_server, args)))


if __name__ == "__main__":
    main()
