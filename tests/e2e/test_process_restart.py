"""The gateway as a separate OS process, killed with SIGKILL while the simulator publishes and
started again on the same port and database: an unmodified socket.io-client (its own
connection-state recovery) and a `websockets` client (`?since=`) carry on with every durable
event exactly once, checked seq by seq against the log the two processes wrote."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import IO, Any

import attrs
import httpx
import trio
import websockets.exceptions

from omnirelay.engine._auth import Authenticator
from omnirelay.engine._config import AuthConfig, Config, load_config
from omnirelay.engine._hub import EnvelopeFormat, Format, SocketIOFormat
from omnirelay.engine._plugins import collect_dialects, make_plugin_manager
from omnirelay.engine._sqlite_store import open_sqlite_store
from omnirelay.engine._store import StoredEvent
from omnirelay.protocol import Cursor, SessionState, SessionStatus
from omnirelay.protocol._dialect_base import Dialect, Rendition

from .conftest import SECRET, WsClient
from .jsclient import Line, NodeClient, require_node

CLI = [sys.executable, "-m", "omnirelay.engine._cli"]
# A steady stream (about 200 events/s, most of them durable) that ends by itself
# 4 s into each run of the process, so the test can wait for everything to arrive.
SIMULATOR = "{ rate = 200.0, qr_rounds = 0, seed = 7, max_events = 800 }"
QUIET = 1.0  # seconds without a new event: the simulator of the second run has finished

Frame = tuple[int, str]  # (seq, event name) of one durable frame


def free_port() -> int:
    """A port nothing listens on now; both runs of the gateway bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def write_config(tmp_path: Path, port: int) -> Path:
    config = tmp_path / "omnirelay.toml"
    config.write_text(
        'log_level = "WARNING"\n\n'
        f'[server]\nhost = "127.0.0.1"\nport = {port}\n\n'
        f"[storage]\npath = {str(tmp_path / 'omnirelay.db')!r}\n\n"
        f'[auth]\njwt_secret = "{SECRET}"\n\n'
        '[[sessions]]\nid = "sim"\ntenant = "acme"\nprovider = "simulator"\n'
        f"options = {SIMULATOR}\n"
    )
    return config


@attrs.define
class GatewayProcess:
    """`omnirelay serve --config FILE` in a process of its own (its output goes to `log`)."""

    process: trio.Process
    base: str
    log: Path

    @classmethod
    async def start(cls, config: Path, port: int, log: Path) -> GatewayProcess:
        environment = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY")}
        output: IO[bytes]
        with log.open("ab") as output:
            process = await trio.lowlevel.open_process(
                [*CLI, "serve", "--config", str(config)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=environment,
            )
        return cls(process, f"http://127.0.0.1:{port}", log)

    async def ready(self, seconds: float = 15.0) -> str:
        """Wait until `/readyz` answers 200; the log's epoch it reports."""
        async with httpx.AsyncClient(base_url=self.base, timeout=2) as http:
            with trio.fail_after(seconds):
                while True:
                    assert self.process.returncode is None, self.output()
                    try:
                        response = await http.get("/readyz")
                    except httpx.TransportError:
                        response = None
                    if response is not None and response.status_code == 200:
                        epoch: str = response.json()["epoch"]
                        return epoch
                    await trio.sleep(0.05)

    async def kill(self) -> None:
        """SIGKILL: no shutdown at all, the kernel just closes its sockets."""
        with trio.CancelScope(shield=True):
            if self.process.returncode is None:
                self.process.kill()
            await self.process.wait()

    def output(self) -> str:
        return f"gateway output:\n{self.log.read_text(errors='replace')[-4000:]}"


def get_dialect(name: str) -> Dialect:
    return collect_dialects(make_plugin_manager()).get(name)


def render_log(log: Iterable[StoredEvent], epoch: str, fmt: Format, first: int) -> list[Frame]:
    """(seq, name) of every frame the log from seq `first` on renders in this format, in the
    order a client that misses nothing receives them."""

    def render_one(dialect: Dialect, stored: StoredEvent) -> tuple[Rendition, ...]:
        return dialect.render(stored.event, stored.context)

    frames: list[Frame] = []
    for stored in log:
        assert stored.seq is not None
        if stored.seq >= first:
            frames.extend(
                (stored.seq, rendition.name)
                for rendition, _frame in fmt.render(stored, epoch, render_one)
            )
    return frames


async def read_log(config: Config) -> tuple[str, list[StoredEvent]]:
    """The epoch and the whole event log of tenant acme (the gateway is not running)."""
    async with open_sqlite_store(config.storage.path) as store:
        log: list[StoredEvent] = []
        after = 0
        while page := await store.read_log("acme", after=after, limit=500):
            log.extend(page)
            assert page[-1].seq is not None
            after = page[-1].seq
        return store.epoch, log


def seq_of(cursor: str, epoch: str) -> int:
    """The seq of an `<epoch>:<seq>` cursor or a Socket.IO `<epoch>:<seq>.<n>` offset, which
    must be of this epoch."""
    position, _part = Cursor.parse_offset(cursor)
    assert position.epoch == epoch, f"{cursor} is not of epoch {epoch}"
    return position.seq


def is_durable(line: Line) -> bool:
    """An event socket.io-client printed whose last argument is an offset (a durable one:
    ephemeral events carry none)."""
    args = line.get("args")
    return (
        line.get("t") == "event"
        and isinstance(args, list)
        and bool(args)
        and isinstance(args[-1], str)
    )


def sio_frames(lines: Iterable[Line], epoch: str) -> list[Frame]:
    """(seq, name) of the durable events socket.io-client printed, in order."""
    return [(seq_of(line["args"][-1], epoch), line["name"]) for line in lines if is_durable(line)]


def check_stream(name: str, got: list[Frame], expected: list[Frame]) -> None:
    """No gap and no duplicate, by seq: in log order, every seq the log has for this client
    (from the first one it saw to the log's end), and every frame of each seq exactly once."""
    seqs = [seq for seq, _ in got]
    twice = sorted(frame for frame, count in Counter(got).items() if count > 1)
    assert not twice, f"{name}: {len(twice)} frames received twice, first ones {twice[:10]}"
    logged = sorted({seq for seq, _ in expected})
    missing = sorted(set(logged) - set(seqs))
    assert not missing, f"{name}: {len(missing)} seqs missing (gaps), first ones {missing[:10]}"
    assert sorted(set(seqs)) == logged, f"{name}: seqs that are not in the log"
    assert seqs == sorted(seqs), f"{name}: out of order"
    assert got == expected, f"{name}: the frames differ from the log's"


async def test_clients_resume_without_gap_or_duplicate_after_the_process_is_killed(
    tmp_path: Path,
) -> None:
    require_node()
    port = free_port()
    config_file = write_config(tmp_path, port)
    config = load_config(config_file, {})
    token = Authenticator.from_config(AuthConfig(jwt_secret=SECRET)).mint("acme", subject="agent")
    ws_url = f"ws://127.0.0.1:{port}/ws?token={token}"
    log = tmp_path / "gateway.log"
    processes: list[GatewayProcess] = []

    # The /ws client, before the kill: every durable envelope as (seq cursor, event name).
    before: list[tuple[str, str]] = []
    flowing = trio.Event()  # it has 50 of them
    closed = trio.Event()

    async def read_until_killed(client: WsClient) -> None:
        try:
            while True:
                try:
                    envelope = await client.recv(seconds=0.5)
                except TimeoutError:
                    continue  # (a short wait keeps this task cancellable)
                if "seq" in envelope:
                    before.append((envelope["seq"], envelope["event"]))
                    if len(before) >= 50:
                        flowing.set()
        except websockets.exceptions.ConnectionClosed:
            closed.set()

    try:
        gateway = await GatewayProcess.start(config_file, port, log)
        processes.append(gateway)
        epoch = await gateway.ready()
        spec = {
            "url": f"{gateway.base}/",
            "options": {
                "transports": ["websocket"],
                "auth": {"token": token},
                "reconnectionDelay": 200,
                "reconnectionDelayMax": 400,
            },
            "steps": [{"wait": {"connect": 1}}, {"until_stdin": True}],
            "timeout": 40000,
        }
        async with NodeClient(spec, seconds=45) as sio, trio.open_nursery() as nursery:
            first = await sio.wait_for("connect")
            assert first["recovered"] is False
            ws = await WsClient.connect(ws_url)
            nursery.start_soon(read_until_killed, ws)

            # Both receive durable events; then the process dies mid-stream.
            with trio.fail_after(10):
                await flowing.wait()
                for _ in range(50):
                    await sio.lines_until(is_durable)
            await gateway.kill()
            with trio.fail_after(10):
                await closed.wait()
            await ws.close()
            gone = await sio.wait_for("disconnect")
            # (an RST instead of a FIN is "transport error": the same loss to the client)
            assert gone["reason"] in ("transport close", "transport error")
            sio_before = len(sio.lines)

            # Same command, same port, same database.
            gateway = await GatewayProcess.start(config_file, port, log)
            processes.append(gateway)
            assert await gateway.ready() == epoch  # the log was not reset

            # /ws: reconnect from the last seq seen, a little later (so what the new process
            # logged meanwhile is replayed while more arrives live): the missed events (the
            # replay, then live ones held meanwhile), `resumed`, then live ones.
            await trio.sleep(1.5)
            last = before[-1][0]
            ws = await WsClient.connect(f"{ws_url}&since={last}")
            missed: list[tuple[str, str]] = []
            live: list[tuple[str, str]] = []
            resumed: dict[str, Any] | None = None
            with trio.fail_after(20):
                while True:
                    try:
                        envelope = await ws.recv(seconds=QUIET)
                    except TimeoutError:
                        break
                    if envelope["event"] == "resumed":
                        assert resumed is None
                        resumed = envelope["data"]
                    elif "seq" in envelope:
                        (live if resumed else missed).append((envelope["seq"], envelope["event"]))
            await ws.close()
            assert resumed is not None, "no `resumed` after connecting with ?since="
            assert resumed["since"] == last
            assert resumed["complete"] is True
            assert 0 < resumed["replayed"] <= len(missed)

            # socket.io-client came back by itself and recovered its session.
            again = await sio.wait_for("connect", seconds=15)
            assert again["recovered"] is True, "socket.io-client got a fresh session"
            assert again["id"] == first["id"]
            with trio.fail_after(20):  # until the stream has ended
                seen = -1
                while seen != len(sio.lines):
                    seen = len(sio.lines)
                    await trio.sleep(QUIET)
            await sio.send_line()
            await sio.finish()
        await gateway.kill()  # no shutdown events: the log ends where the clients stopped

        logged_epoch, stored = await read_log(config)
        assert logged_epoch == epoch

        ws_got = [(seq_of(c, epoch), name) for c, name in [*before, *missed, *live]]
        ws_expected = render_log(
            stored, epoch, EnvelopeFormat(get_dialect(config.websocket.dialect)), ws_got[0][0]
        )
        sio_got = sio_frames(sio.lines, epoch)
        namespace = next(n for n in config.socketio.namespaces if n.name == "/")
        sio_format = SocketIOFormat(
            "/", tuple(get_dialect(d) for d in namespace.dialects), offsets=True
        )
        sio_expected = render_log(stored, epoch, sio_format, sio_got[0][0])

        # The log shows the two runs: the simulator's session starts again (`connecting`) at
        # `restart`, the second process's first event; the first run was cut short (its
        # simulator never reached `stopped`).
        statuses: list[tuple[int, SessionState]] = []
        for entry in stored:
            if isinstance(entry.event, SessionStatus):
                assert entry.seq is not None
                statuses.append((entry.seq, entry.event.state))
        [restart] = [seq for seq, state in statuses[1:] if state is SessionState.CONNECTING]
        assert all(state is not SessionState.STOPPED for seq, state in statuses if seq < restart)
        # Each client saw events from both processes: before the kill, and after the restart.
        assert ws_got[len(before) - 1][0] < restart <= ws_got[-1][0]
        sio_seqs_before = [seq for seq, _ in sio_frames(sio.lines[:sio_before], epoch)]
        assert sio_seqs_before
        assert sio_seqs_before[-1] < restart <= sio_got[-1][0]
        check_stream("/ws", ws_got, ws_expected)
        check_stream("socket.io", sio_got, sio_expected)
    finally:
        for process in processes:
            await process.kill()
