"""Slow consumers: while some clients stop reading, do the others keep their latency, and does
the gateway keep its memory bounded?

    python bench/slow_client.py [--clients 20] [--stalled 20] [--seconds 5] [--rate 1000]

Starts `omnirelay serve` as a separate process on 127.0.0.1 (a fresh SQLite file in a temp
dir) with one session of `bench-clock`, a provider declared by this very file: the gateway
loads it as the plugin module `slow_client` (this directory is put on its PYTHONPATH). The
session emits durable `message.received` events at `--rate` per second, in batches every
10 ms (one store transaction each), each text starting with `time.monotonic()` when the event
was built; clients measure latency against it (same machine, same monotonic clock), so it
covers the store commit, the fan-out and both sockets.

`--clients` healthy clients read `/ws` in this process. They parse frames by hand (the
gateway's frames are never masked): wsproto cannot parse 20 clients x 2000 events/s on one
core beside the gateway. After a warm-up (`--warmup` s, not measured) come phases of
`--seconds` each:

* `baseline`: only the healthy clients;
* `extra_readers` (the control, skipped with `--no-control`): `--stalled` more clients that
  read and discard everything, closed at the end of the phase. It shows what that many more
  subscribers cost when they all read;
* `stalled`: `--stalled` clients that complete the handshake and never read (SO_RCVBUF 4096
  set before connecting, as in tests/e2e/test_resume.py). The gateway writes to them without
  waiting; once the kernel's send buffer is full (about 2.8 MB per loopback socket on Linux)
  frames queue in the connection's buffer, bounded by `clients.inbox_bytes` and
  `clients.inbox_frames`, and the durable event that does not fit closes the client with 4008.
  The defaults (1000 events/s of ~1.2 KB envelopes) fill all that in about 3.5 s, inside the
  phase; 2000 events/s of 200-character texts (~420 B) take about 4 s, or more than the phase
  when the source falls behind.

Per phase: latency percentiles of the healthy clients (ms; for `stalled` also until and after
the last kick), `new_message` events each healthy client got, gateway RSS (VmRSS, sampled
every 100 ms) and, beside it, the peak memory of all TCP socket buffers of the machine
(/proc/net/sockstat: what the kernel holds for the sockets, outside the gateway's RSS), CPU
in cores (the gateway, this process, the whole machine from /proc/stat, and `other`: what
neither process was charged for, i.e. loopback softirq work and other programs; latencies
taken while `machine` is near the CPU count say more about the machine than about the
gateway), the gateway's mean fan-out time per event (`omnirelay_fanout_seconds`) and
`omnirelay_slow_consumer_disconnects_total` (GET /metrics, polled every 200 ms in every
phase). After the phases the source stops and each stalled client reads what reached it (at
most `--drain` s): a 4008 close frame if the gateway was still flushing it, EOF if the gateway
had given up on the closing handshake (its close timeout is 2 s), nothing if never kicked.

Prints one JSON object. Only 127.0.0.1; at most 1000 healthy and 1000 other clients; every
wait is bounded and the whole run ends after `--timeout` seconds at most.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from _gateway import wait_port

from omnirelay.engine import Provider, SessionContext, hookimpl
from omnirelay.protocol import ChatKind, ChatRef, Message, MessageKind, MessageReceived, Party

BENCH_DIR = os.path.dirname(os.path.abspath(__file__))  # the gateway imports this file from here
PROVIDER_NAME = "bench-clock"
TENANT = "bench"
SESSION_ID = "clock"
CHAT_NUMBER = "77000000001"
TICK = 0.01  # seconds between the source's batches (the simulator's benchmark pacing)
MAX_BATCH = 200  # events per emit at most (one store transaction)
MAX_CLIENTS = 1000
STALLED_RCVBUF = 4096
RSS_EVERY = 0.1
METRICS_EVERY = 0.2
CLOSE_WAIT = 3.0  # seconds for clients we close to see the gateway's answer
METRIC_LINE = re.compile(rb"^(omnirelay_[a-z_]+) (\S+)$", re.MULTILINE)  # unlabelled only
OP_CONTINUATION, OP_TEXT, OP_CLOSE = 0x0, 0x1, 0x8


# -- the source: a provider plugin, run inside the gateway process -----------------------------


async def run_clock(context: SessionContext) -> None:
    """The `bench-clock` session: `rate` text messages per second for `duration` seconds.

    Each text is `"<time.monotonic() when built> xxx…"`, `size` characters in all. A batch
    holds every event due by now (so the rate holds after a slow commit), at most MAX_BATCH;
    the session returns, and so stops, after `rate * duration` events.
    """
    rate = float(context.options["rate"])
    duration = float(context.options["duration"])
    padding = "x" * max(0, int(context.options["size"]) - 18)
    total = max(1, round(rate * duration))
    jid = f"{CHAT_NUMBER}@c.us"
    chat = ChatRef(id=jid, kind=ChatKind.DIRECT, title="Bench")
    sender = Party(id=jid, phone=CHAT_NUMBER, name="Bench")
    prefix = f"CLOCK-{time.time_ns():x}-"  # unique across restarts: the store deduplicates ids
    started = time.monotonic()
    emitted = 0
    with trio.move_on_after(duration + 30):
        while emitted < total:
            due = min(total, emitted + MAX_BATCH, math.floor((time.monotonic() - started) * rate))
            if due > emitted:
                occurred = context.clock()
                events = [
                    MessageReceived(
                        provider=PROVIDER_NAME,
                        occurred_at=occurred,
                        chat=chat,
                        sender=sender,
                        message=Message(
                            id=f"{prefix}{n}",
                            kind=MessageKind.TEXT,
                            from_me=False,
                            text=f"{time.monotonic():.6f} {padding}",
                        ),
                    )
                    for n in range(emitted, due)
                ]
                await context.emit(*events)
                emitted = due
            await trio.sleep(TICK)


@hookimpl
def omnirelay_providers() -> list[Provider]:
    """Declare `bench-clock` (only the gateway started by this benchmark loads this module)."""
    return [Provider(name=PROVIDER_NAME, run=run_clock, description="Timestamped messages.")]


# -- clients ------------------------------------------------------------------------------------


class FrameReader:
    """Messages from server-to-client websocket frames (never masked), without wsproto."""

    def __init__(self, initial: bytes = b"") -> None:
        self._buffer = bytearray(initial)
        self._fragments: list[bytes] = []
        self._opcode = OP_TEXT

    def feed(self, data: bytes) -> None:
        self._buffer += data

    def messages(self) -> list[tuple[int, bytes]]:
        """The complete messages buffered so far, as (opcode, payload); control frames too."""
        buffer = self._buffer
        size = len(buffer)
        out: list[tuple[int, bytes]] = []
        pos = 0
        while size - pos >= 2:
            first, second = buffer[pos], buffer[pos + 1]
            if second & 0x80:
                raise RuntimeError("the gateway sent a masked frame")
            length, head = second & 0x7F, 2
            if length == 126:
                if size - pos < 4:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 4], "big"), 4
            elif length == 127:
                if size - pos < 10:
                    break
                length, head = int.from_bytes(buffer[pos + 2 : pos + 10], "big"), 10
            end = pos + head + length
            if end > size:
                break
            payload = bytes(buffer[pos + head : end])
            pos = end
            opcode, final = first & 0x0F, bool(first & 0x80)
            if opcode >= OP_CLOSE:
                out.append((opcode, payload))
                continue
            if opcode != OP_CONTINUATION:
                self._opcode = opcode
            self._fragments.append(payload)
            if final:
                out.append((self._opcode, b"".join(self._fragments)))
                self._fragments.clear()
        del buffer[:pos]
        return out


def close_code(payload: bytes) -> int:
    return int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005


def client_close_frame(code: int) -> bytes:
    """A masked close frame, as a client must send it."""
    mask = os.urandom(4)
    payload = code.to_bytes(2, "big")
    return (
        bytes([0x80 | OP_CLOSE, 0x80 | len(payload)])
        + mask
        + bytes(byte ^ mask[n % 4] for n, byte in enumerate(payload))
    )


async def open_websocket(
    port: int, token: str, *, rcvbuf: int | None = None
) -> tuple[trio.SocketStream, bytes]:
    """Connect to `/ws` and upgrade; (stream, bytes that followed the 101 response head)."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        if rcvbuf is not None:
            # Before connect: the window the client advertises is what keeps the kernel small.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        await sock.connect(("127.0.0.1", port))
    except BaseException:
        sock.close()
        raise
    stream = trio.SocketStream(sock)
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /ws?token={token} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    )
    try:
        await stream.send_all(request.encode())
        head = b""
        with trio.fail_after(10):
            while b"\r\n\r\n" not in head and len(head) < 65536:
                data = await stream.receive_some(65536)
                if not data:
                    raise RuntimeError("the gateway closed the connection during the handshake")
                head += data
        status, _, rest = head.partition(b"\r\n\r\n")
        if not status.startswith(b"HTTP/1.1 101 "):
            raise RuntimeError(f"handshake refused: {status[:60]!r}")
    except BaseException:
        await trio.aclose_forcefully(stream)
        raise
    return stream, rest


class Window:
    """The measurement window open now: an index into the phases, or None (warm-up, between)."""

    def __init__(self) -> None:
        self.current: int | None = None


class HealthyClient:
    """Reads every frame as it comes; samples go to the window open when they arrived."""

    def __init__(self, phases: int) -> None:
        # array, not lists of tuples: 100 000s of samples the garbage collector need not scan.
        self.arrivals = [array("d") for _ in range(phases)]
        self.latencies = [array("d") for _ in range(phases)]
        self.seq_gaps = 0
        self.server_close: int | None = None  # a close the gateway started (should not happen)
        self.envelope_bytes: int | None = None
        self.connected = trio.Event()
        self.finished = trio.Event()
        self._stream: trio.SocketStream | None = None
        self._closing = False
        self._last_seq: int | None = None

    async def run(self, port: int, token: str, window: Window) -> None:
        try:
            stream, rest = await open_websocket(port, token)
            self._stream = stream
            self.connected.set()
            reader = FrameReader(rest)
            async with stream:
                while True:  # until a close frame or EOF (or the nursery's cancellation)
                    now = time.monotonic()
                    phase = window.current
                    for opcode, payload in reader.messages():
                        if opcode == OP_CLOSE:
                            await self._closed_by_server(payload)
                            return
                        if opcode == OP_TEXT:
                            self._envelope(payload, now, phase)
                    data = await stream.receive_some(65536)
                    if not data:
                        return
                    reader.feed(data)
        finally:
            self.finished.set()

    def _envelope(self, payload: bytes, now: float, phase: int | None) -> None:
        envelope = orjson.loads(payload)
        seq = envelope.get("seq")
        if seq is not None:
            number = int(seq.rsplit(":", 1)[1])
            if self._last_seq is not None and number != self._last_seq + 1:
                self.seq_gaps += 1
            self._last_seq = number
        if envelope["event"] != "new_message" or phase is None:
            return
        if self.envelope_bytes is None:
            self.envelope_bytes = len(payload)
        self.arrivals[phase].append(now)
        self.latencies[phase].append(now - float(envelope["data"]["text"].split(" ", 1)[0]))

    async def _closed_by_server(self, payload: bytes) -> None:
        if not self._closing:
            self.server_close = close_code(payload)
            self._closing = True
            assert self._stream is not None
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.send_all(client_close_frame(1000))

    async def close(self) -> None:
        """Start the closing handshake; `run` returns when the gateway answers."""
        if self._closing or self._stream is None:
            return
        self._closing = True
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await self._stream.send_all(client_close_frame(1000))


class DiscardingReader:
    """The control: reads and discards everything, parses nothing, until closed."""

    def __init__(self) -> None:
        self.received = 0
        self.finished = trio.Event()
        self._stream: trio.SocketStream | None = None

    async def run(self, port: int, token: str) -> None:
        try:
            stream, rest = await open_websocket(port, token)
            self._stream = stream
            self.received = len(rest)
            async with stream:
                while data := await stream.receive_some(65536):  # until EOF or cancellation
                    self.received += len(data)
        finally:
            self.finished.set()

    async def close(self) -> None:
        """Send a close frame; the gateway answers and closes, and `run` sees EOF."""
        if self._stream is not None:
            with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
                await self._stream.send_all(client_close_frame(1000))


class StalledClient:
    """Completes the handshake, then reads nothing until `drain`."""

    def __init__(self) -> None:
        self.stream: trio.SocketStream | None = None
        self.rest = b""
        self.outcome = "not_connected"

    async def connect(self, port: int, token: str) -> None:
        self.stream, self.rest = await open_websocket(port, token, rcvbuf=STALLED_RCVBUF)
        self.outcome = "connected"

    async def drain(self, seconds: float) -> None:
        """Read what reached this client: until a close frame, EOF, or `seconds`."""
        if self.stream is None:
            return
        reader = FrameReader(self.rest)
        self.outcome = "still_open"
        with trio.move_on_after(seconds):
            try:
                while True:  # bounded by the deadline
                    for opcode, payload in reader.messages():
                        if opcode == OP_CLOSE:
                            self.outcome = f"close_{close_code(payload)}"
                            return
                    data = await self.stream.receive_some(65536)
                    if not data:
                        self.outcome = "eof_without_close_frame"
                        return
                    reader.feed(data)
            except trio.BrokenResourceError:
                self.outcome = "reset"

    async def aclose(self) -> None:
        if self.stream is not None:
            await trio.aclose_forcefully(self.stream)


# -- measuring ----------------------------------------------------------------------------------


def rss_bytes(pid: int) -> int:
    """VmRSS of a process, bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def kernel_tcp_bytes() -> int:
    """Memory of every TCP socket buffer on the machine (`TCP: ... mem` of /proc/net/sockstat)."""
    for line in Path("/proc/net/sockstat").read_text().splitlines():
        if line.startswith("TCP:"):
            fields = line.split()
            return int(fields[fields.index("mem") + 1]) * os.sysconf("SC_PAGE_SIZE")
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used by a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_ticks() -> tuple[int, int]:
    """(busy, total) CPU ticks of the whole machine, all CPUs: softirq counts as busy."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle, iowait
    return sum(fields) - idle, sum(fields)


def delta(before: dict[str, float], after: dict[str, float], metric: str) -> float:
    return after.get(metric, 0.0) - before.get(metric, 0.0)


def cores_busy(
    elapsed: float, gateway: float, bench: float, machine_share: float
) -> dict[str, float]:
    """CPU use in cores: the gateway, this process, the machine, and what is left (softirq
    not charged to a process, other programs: a busy machine makes latencies meaningless)."""
    cpus = os.cpu_count() or 1
    machine = machine_share * cpus
    return {
        "gateway": round(gateway / elapsed, 2),
        "bench": round(bench / elapsed, 2),
        "machine": round(machine, 2),
        "other": round(max(0.0, machine - (gateway + bench) / elapsed), 2),
        "of": cpus,
    }


def mib(value: float) -> float:
    return round(value / (1024 * 1024), 1)


def latency_summary(values: Iterable[float]) -> dict[str, float | None]:
    """p50/p95/p99/max/mean in ms (nearest rank), None when there is no sample."""
    ordered = sorted(values)
    if not ordered:
        return dict.fromkeys(("p50", "p95", "p99", "max", "mean"))

    def rank(q: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]

    return {
        "p50": round(rank(0.50) * 1000, 2),
        "p95": round(rank(0.95) * 1000, 2),
        "p99": round(rank(0.99) * 1000, 2),
        "max": round(ordered[-1] * 1000, 2),
        "mean": round(sum(ordered) / len(ordered) * 1000, 2),
    }


async def scrape(http: httpx.AsyncClient) -> dict[str, float]:
    """The gateway's unlabelled metrics (counters, histogram sums and counts) by name."""
    response = await http.get("/metrics")
    response.raise_for_status()
    return {name.decode(): float(value) for name, value in METRIC_LINE.findall(response.content)}


class Sampler:
    """Polls the gateway while a phase runs: peak RSS, and when the slow-consumer kicks came."""

    def __init__(self, pid: int, http: httpx.AsyncClient) -> None:
        self.pid = pid
        self.http = http
        self.peak_rss = 0
        self.peak_kernel_tcp = 0
        self.first_kick: float | None = None
        self.all_kicked: float | None = None

    async def rss(self) -> None:
        while True:  # cancelled at the end of the phase
            self.peak_rss = max(self.peak_rss, rss_bytes(self.pid))
            self.peak_kernel_tcp = max(self.peak_kernel_tcp, kernel_tcp_bytes())
            await trio.sleep(RSS_EVERY)

    async def kicks(self, before: float, expected: int, started: float) -> None:
        """Seconds from `started` until the counter first moved and until it moved `expected`."""
        while True:  # cancelled at the end of the phase
            kicked = (await scrape(self.http)).get("omnirelay_slow_consumer_disconnects_total", 0)
            kicked -= before
            now = time.monotonic() - started
            if kicked > 0 and self.first_kick is None:
                self.first_kick = round(now, 2)
            if expected and kicked >= expected and self.all_kicked is None:
                self.all_kicked = round(now, 2)
            await trio.sleep(METRICS_EVERY)


# -- the run ------------------------------------------------------------------------------------


async def discard_output(process: trio.Process) -> None:
    """Keep reading the gateway's stdout so that it never blocks on a full pipe."""
    assert process.stdout is not None
    while await process.stdout.receive_some():  # until EOF or cancellation
        pass


def plan(args: argparse.Namespace) -> list[str]:
    return ["baseline", *(["extra_readers"] if args.control else []), "stalled"]


def write_config(path: Path, args: argparse.Namespace) -> None:
    # The session is stopped after the phases; `duration` only bounds it.
    duration = args.warmup + len(plan(args)) * (args.seconds + CLOSE_WAIT) + 10
    path.write_text(
        'plugins = ["slow_client"]\n'
        f"[limits]\nconnections_per_tenant = {args.clients + args.stalled + 10}\n"
        f"[clients]\ninbox_bytes = {args.inbox_bytes}\ninbox_frames = {args.inbox_frames}\n"
        f'[[sessions]]\nid = "{SESSION_ID}"\ntenant = "{TENANT}"\n'
        f'provider = "{PROVIDER_NAME}"\nautostart = false\n'
        f"options = {{ rate = {float(args.rate)}, size = {args.size}, duration = {duration} }}\n"
    )


async def main(args: argparse.Namespace) -> dict[str, Any]:
    with trio.fail_after(args.timeout), tempfile.TemporaryDirectory(prefix="omnirelay-") as tmp:
        return await start_gateway(args, Path(tmp))


async def start_gateway(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    secret, admin = secrets.token_urlsafe(32), secrets.token_urlsafe(16)
    config = tmp / "bench.toml"
    write_config(config, args)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [BENCH_DIR, env.get("PYTHONPATH")]))
    env.update(
        OMNIRELAY_JWT_SECRET=secret, OMNIRELAY_ADMIN_TOKEN=admin, OMNIRELAY_LOG_LEVEL="WARNING"
    )
    command = [
        sys.executable,
        "-m",
        "omnirelay.engine._cli",
        "serve",
        "--port",
        "0",
        "--db",
        str(tmp / "bench.db"),
        "--config",
        str(config),
    ]
    process = await trio.lowlevel.open_process(command, stdout=subprocess.PIPE, env=env)
    try:
        port = await wait_port(process)
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {admin}"},
            timeout=10,
        ) as http:
            return await run_phases(args, process, port, secret, http)
    finally:
        process.terminate()  # a clean stop: clients get 1001, the session stops
        with trio.CancelScope(shield=True):  # also after --timeout fired
            with trio.move_on_after(10):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()


async def run_phases(
    args: argparse.Namespace, process: trio.Process, port: int, secret: str, http: httpx.AsyncClient
) -> dict[str, Any]:
    from omnirelay.engine._auth import Authenticator
    from omnirelay.engine._config import AuthConfig

    auth = Authenticator.from_config(AuthConfig(jwt_secret=secret))
    names = plan(args)
    window = Window()
    healthy = [HealthyClient(len(names)) for _ in range(args.clients)]
    stalled = [StalledClient() for _ in range(args.stalled)]
    phases: dict[str, dict[str, Any]] = {}
    async with trio.open_nursery() as nursery:
        nursery.start_soon(discard_output, process)
        rss_idle = rss_bytes(process.pid)
        for client in healthy:
            nursery.start_soon(client.run, port, auth.mint(TENANT), window)
        with trio.fail_after(30):
            for client in healthy:
                await client.connected.wait()
        (await http.post(f"/api/sessions/{SESSION_ID}/connect")).raise_for_status()
        await trio.sleep(args.warmup)

        for index, name in enumerate(names):
            before = await scrape(http)
            sampler = Sampler(process.pid, http)
            rss_start = rss_bytes(process.pid)
            readers = [
                DiscardingReader() for _ in range(args.stalled if name == "extra_readers" else 0)
            ]
            cpu_server, cpu_bench = cpu_seconds(process.pid), time.process_time()
            busy, total = machine_ticks()
            started = time.monotonic()
            window.current = index
            async with trio.open_nursery() as phase_nursery:
                phase_nursery.start_soon(sampler.rss)
                kicks_before = before.get("omnirelay_slow_consumer_disconnects_total", 0)
                expected_kicks = len(stalled) if name == "stalled" else 0
                phase_nursery.start_soon(sampler.kicks, kicks_before, expected_kicks, started)
                for reader in readers:
                    phase_nursery.start_soon(reader.run, port, auth.mint(TENANT))
                if name == "stalled":
                    for slow in stalled:
                        phase_nursery.start_soon(slow.connect, port, auth.mint(TENANT))
                await trio.sleep(args.seconds)
                window.current = None
                elapsed = time.monotonic() - started
                cpu_server = cpu_seconds(process.pid) - cpu_server
                cpu_bench = time.process_time() - cpu_bench
                busy_now, total_now = machine_ticks()
                rss_end = rss_bytes(process.pid)
                after = await scrape(http)
                for reader in readers:
                    await reader.close()
                with trio.move_on_after(CLOSE_WAIT):
                    for reader in readers:
                        await reader.finished.wait()
                phase_nursery.cancel_scope.cancel()

            events = [len(client.latencies[index]) for client in healthy]
            fanned_out = delta(before, after, "omnirelay_fanout_seconds_count")
            result: dict[str, Any] = {
                "seconds": round(elapsed, 2),
                "subscribers": len(healthy)
                + len(readers)
                + (len(stalled) if name == "stalled" else 0),
                "latency_ms": latency_summary(x for c in healthy for x in c.latencies[index]),
                "events_per_healthy_client": {
                    "min": min(events),
                    "max": max(events),
                    "expected": round(args.rate * args.seconds),
                },
                "server_rss_mib": {
                    "start": mib(rss_start),
                    "peak": mib(max(sampler.peak_rss, rss_start, rss_end)),
                    "end": mib(rss_end),
                },
                "kernel_tcp_buffers_mib_peak": mib(sampler.peak_kernel_tcp),
                "cpu_cores_busy": cores_busy(
                    elapsed, cpu_server, cpu_bench, (busy_now - busy) / max(1, total_now - total)
                ),
                "fanout_ms_per_event": round(
                    delta(before, after, "omnirelay_fanout_seconds_sum") / fanned_out * 1000, 3
                )
                if fanned_out
                else None,
                "slow_disconnects": round(
                    delta(before, after, "omnirelay_slow_consumer_disconnects_total")
                ),
                "queue_drops": round(delta(before, after, "omnirelay_queue_drops_total")),
            }
            if name == "extra_readers":
                result["extra_readers_connected"] = sum(r.received > 0 for r in readers)
            if name == "stalled":
                result["stalled_clients_connected"] = sum(s.stream is not None for s in stalled)
                result["seconds_to_first_kick"] = sampler.first_kick
                result["seconds_to_all_kicked"] = sampler.all_kicked
                if sampler.all_kicked is not None:
                    split = started + sampler.all_kicked
                    pairs = [
                        (at, latency)
                        for c in healthy
                        for at, latency in zip(c.arrivals[index], c.latencies[index], strict=True)
                    ]
                    result["latency_ms_until_all_kicked"] = latency_summary(
                        latency for at, latency in pairs if at < split
                    )
                    result["latency_ms_after_all_kicked"] = latency_summary(
                        latency for at, latency in pairs if at >= split
                    )
            phases[name] = result

        # Stop the source, then see what reached each stalled client.
        (await http.post(f"/api/sessions/{SESSION_ID}/disconnect")).raise_for_status()
        async with trio.open_nursery() as drains:
            for slow in stalled:
                drains.start_soon(slow.drain, args.drain)
        outcomes: dict[str, int] = {}
        for slow in stalled:
            outcomes[slow.outcome] = outcomes.get(slow.outcome, 0) + 1
            await slow.aclose()
        rss_after = rss_bytes(process.pid)
        totals = await scrape(http)

        for client in healthy:
            await client.close()
        with trio.move_on_after(CLOSE_WAIT):
            for client in healthy:
                await client.finished.wait()
        nursery.cancel_scope.cancel()

    p99 = {name: result["latency_ms"]["p99"] for name, result in phases.items()}
    ratios = {
        f"p99_ratio_{name}_to_baseline": round(value / p99["baseline"], 2)
        if value and p99["baseline"]
        else None
        for name, value in p99.items()
        if name != "baseline"
    }
    envelope_bytes = next((c.envelope_bytes for c in healthy if c.envelope_bytes), None)
    return {
        "config": {
            "healthy_clients": args.clients,
            "stalled_clients": args.stalled,
            "seconds_per_phase": args.seconds,
            "warmup_seconds": args.warmup,
            "rate_events_per_second": args.rate,
            "text_chars": args.size,
            "envelope_bytes": envelope_bytes,
            "inbox_bytes": args.inbox_bytes,
            "inbox_frames": args.inbox_frames,
            "cpus": os.cpu_count(),
            "python": sys.version.split()[0],
        },
        "phases": phases,
        **ratios,
        "slow_disconnects_total": round(totals.get("omnirelay_slow_consumer_disconnects_total", 0)),
        "stalled_clients_after_drain": outcomes,
        "healthy_clients_closed_by_gateway": sum(c.server_close is not None for c in healthy),
        "healthy_seq_gaps": sum(c.seq_gaps for c in healthy),
        "server_rss_mib": {"idle": mib(rss_idle), "after_drain": mib(rss_after)},
    }


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=20, help="healthy clients")
    parser.add_argument("--stalled", type=int, default=20, help="clients that stop reading")
    parser.add_argument("--seconds", type=float, default=5.0, help="length of each phase")
    parser.add_argument("--warmup", type=float, default=1.0, help="unmeasured, before the phases")
    parser.add_argument("--rate", type=float, default=1000.0, help="durable events per second")
    parser.add_argument("--size", type=int, default=1000, help="characters per message text")
    parser.add_argument("--inbox-bytes", type=int, default=4 * 1024 * 1024)
    parser.add_argument("--inbox-frames", type=int, default=1024)
    parser.add_argument(
        "--control",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="run the extra_readers phase",
    )
    parser.add_argument("--drain", type=float, default=3.0, help="seconds to read stalled clients")
    parser.add_argument("--timeout", type=float, default=120.0, help="for the whole run")
    arguments = parser.parse_args()
    if not 1 <= arguments.clients <= MAX_CLIENTS or not 0 <= arguments.stalled <= MAX_CLIENTS:
        parser.error(f"1 <= --clients <= {MAX_CLIENTS} and 0 <= --stalled <= {MAX_CLIENTS}")
    if not 0 < arguments.rate <= 50_000 or not 18 <= arguments.size <= 100_000:
        parser.error("0 < --rate <= 50000 and 18 <= --size <= 100000")
    if min(arguments.seconds, arguments.drain, arguments.timeout) <= 0 or arguments.warmup < 0:
        parser.error("--seconds, --drain and --timeout must be positive, --warmup not negative")
    if arguments.inbox_bytes < 1 or arguments.inbox_frames < 1:
        parser.error("--inbox-bytes and --inbox-frames must be positive")
    print(json.dumps(trio.run(main, arguments), indent=2))
