"""Fan-out benchmark: N plain-WebSocket clients over T tenants, one gateway process.

    python bench/fanout.py [--clients 200] [--tenants 4] [--events 1000] [--source publish]

Starts `omnirelay serve` as a separate process on 127.0.0.1 (a fresh SQLite file in a temp
dir), connects raw websocket clients (wsproto over trio sockets) to `/ws`, then drives events:

* `--source publish`: `POST /api/publish` to each tenant in turn (admin token), each carrying
  the send time; clients measure end-to-end latency (same machine, same monotonic clock);
* `--source simulator`: one simulator session per tenant in benchmark mode emitting
  `--events` events each through the full ingest path (store, log, hub); latency is not
  measured (envelope timestamps have one-second resolution), only throughput.

Prints one JSON object: deliveries/s, p50/p99 latency (ms), server CPU µs per delivery, server
RSS per idle connection (KiB). Everything is bounded: the run ends when every client got every
event or after `--timeout` seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import orjson
import trio
from _gateway import wait_port
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, CloseConnection, Request, TextMessage

SECRET = secrets.token_urlsafe(32)
ADMIN = secrets.token_urlsafe(16)


def proc_stat(pid: int) -> tuple[float, int]:
    """(CPU seconds used, RSS bytes) of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    cpu = (int(fields[11]) + int(fields[12])) / ticks
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, rss


class Client:
    def __init__(self, tenant: str) -> None:
        self.tenant = tenant
        self.received = 0
        self.latencies: list[float] = []
        self.connected = trio.Event()

    async def run(
        self, port: int, token: str, expected: int, done: trio.Event, done_count: list[int]
    ) -> None:
        stream = await trio.open_tcp_stream("127.0.0.1", port)
        ws = WSConnection(ConnectionType.CLIENT)
        await stream.send_all(
            ws.send(Request(host=f"127.0.0.1:{port}", target=f"/ws?token={token}"))
        )
        finished = False
        partial: list[str] = []
        async with stream:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                ws.receive_data(data)
                for event in ws.events():
                    if isinstance(event, AcceptConnection):
                        self.connected.set()
                    elif isinstance(event, TextMessage):
                        # wsproto hands out partial messages: buffer until the last piece.
                        partial.append(event.data)
                        if not event.message_finished:
                            continue
                        envelope = orjson.loads("".join(partial))
                        partial.clear()
                        if envelope["event"] in ("pong", "subscribed"):
                            continue
                        self.received += 1
                        data = envelope["data"]
                        sent = data.get("t") if isinstance(data, dict) else None
                        if sent is not None:
                            self.latencies.append(time.monotonic() - sent)
                        # publish: a known count; simulator: the session's last word is "stopped".
                        last = (
                            self.received >= expected
                            if expected
                            else envelope["event"] == "session_status"
                            and data.get("status") == "stopped"
                        )
                        if last and not finished:
                            finished = True
                            done_count[0] += 1
                            if done_count[0] == done_count[1]:
                                done.set()
                    elif isinstance(event, CloseConnection):
                        await stream.send_all(ws.send(event.response()))
                        return


async def main(args: argparse.Namespace) -> dict[str, Any]:
    tenants = [f"t{n}" for n in range(args.tenants)]
    tmp = tempfile.mkdtemp(prefix="omnirelay-bench-")
    config = Path(tmp) / "bench.toml"
    lines = [
        f"[limits]\nconnections_per_tenant = {args.clients}\n",
        "[clients]\ninbox_bytes = 67108864\ninbox_frames = 100000\n",
    ]
    if args.source == "simulator":
        for tenant in tenants:
            lines.append(
                f'[[sessions]]\nid = "sim-{tenant}"\ntenant = "{tenant}"\nprovider = "simulator"\n'
                f"autostart = false\noptions = {{ benchmark = true, rate = {args.rate}, "
                f"max_events = {args.events}, seed = 1 }}\n"
            )
    config.write_text("".join(lines))
    env = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY")}
    env.update(
        OMNIRELAY_JWT_SECRET=SECRET, OMNIRELAY_ADMIN_TOKEN=ADMIN, OMNIRELAY_LOG_LEVEL="WARNING"
    )
    process = await trio.lowlevel.open_process(
        [
            sys.executable,
            "-m",
            "omnirelay.engine._cli",
            "serve",
            "--port",
            "0",
            "--db",
            f"{tmp}/bench.db",
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    try:
        port = await wait_port(process)
        base = f"http://127.0.0.1:{port}"
        _, rss_before = proc_stat(process.pid)
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30
        ) as http:
            from omnirelay.engine._auth import Authenticator
            from omnirelay.engine._config import AuthConfig

            auth = Authenticator.from_config(AuthConfig(jwt_secret=SECRET))
            clients = [Client(tenants[n % len(tenants)]) for n in range(args.clients)]
            per_tenant = {t: sum(1 for c in clients if c.tenant == t) for t in tenants}
            expected = 0 if args.source == "simulator" else args.events // len(tenants)
            done = trio.Event()
            done_count = [0, len(clients)]
            result: dict[str, Any] = {}
            async with trio.open_nursery() as nursery:
                for client in clients:
                    token = auth.mint(client.tenant, ttl=3600)
                    nursery.start_soon(client.run, port, token, expected, done, done_count)
                with trio.fail_after(60):
                    for client in clients:
                        await client.connected.wait()
                await trio.sleep(0.5)
                _, rss_idle = proc_stat(process.pid)
                cpu_before, _ = proc_stat(process.pid)
                started = time.monotonic()
                if args.source == "publish":
                    sent = 0

                    async def publisher(worker: int) -> None:
                        nonlocal sent
                        for n in range(worker, expected * len(tenants), args.concurrency):
                            tenant = tenants[n % len(tenants)]
                            body = {
                                "tenant": tenant,
                                "event": "bench",
                                "data": {"t": time.monotonic(), "n": n},
                            }
                            response = await http.post("/api/publish", json=body)
                            response.raise_for_status()
                            sent += 1

                    async with trio.open_nursery() as publishers:
                        for worker in range(args.concurrency):
                            publishers.start_soon(publisher, worker)
                else:
                    for tenant in tenants:
                        (await http.post(f"/api/sessions/sim-{tenant}/connect")).raise_for_status()
                with trio.move_on_after(args.timeout):
                    await done.wait()
                elapsed = time.monotonic() - started
                cpu_after, _ = proc_stat(process.pid)
                delivered = sum(c.received for c in clients)
                latencies = sorted(x for c in clients for x in c.latencies)
                result = {
                    "source": args.source,
                    "clients": len(clients),
                    "tenants": len(tenants),
                    "clients_per_tenant": per_tenant,
                    "events_per_tenant": args.events if args.source == "simulator" else expected,
                    "delivered": delivered,
                    "complete": done.is_set(),
                    "seconds": round(elapsed, 3),
                    "deliveries_per_second": round(delivered / elapsed) if elapsed else None,
                    "latency_ms_p50": round(statistics.median(latencies) * 1000, 2)
                    if latencies
                    else None,
                    "latency_ms_p99": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 2)
                    if latencies
                    else None,
                    "server_cpu_us_per_delivery": round(
                        (cpu_after - cpu_before) / delivered * 1e6, 2
                    )
                    if delivered
                    else None,
                    "server_rss_kib_per_idle_connection": round(
                        (rss_idle - rss_before) / len(clients) / 1024, 1
                    ),
                    "python": sys.version.split()[0],
                }
                nursery.cancel_scope.cancel()
        return result
    finally:
        process.terminate()
        with trio.move_on_after(10):
            await process.wait()
        if process.returncode is None:
            process.kill()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--tenants", type=int, default=4)
    parser.add_argument(
        "--events", type=int, default=1000, help="publish: total; simulator: per tenant"
    )
    parser.add_argument("--source", choices=("publish", "simulator"), default="publish")
    parser.add_argument("--concurrency", type=int, default=8, help="concurrent publish requests")
    parser.add_argument("--rate", type=float, default=5000.0, help="simulator events/s per session")
    parser.add_argument("--timeout", type=float, default=120.0)
    arguments = parser.parse_args()
    if not 1 <= arguments.clients <= 5000 or not 1 <= arguments.tenants <= arguments.clients:
        parser.error("1 <= tenants <= clients <= 5000")
    print(json.dumps(trio.run(main, arguments), indent=2))
