"""The real npm `socket.io-client`, driven from trio through `tests/js/client.mjs`.

The Node script takes a JSON scenario (`url`, `options` for `io(url, options)`, `steps`, …; its
header documents the format) and prints one JSON object per line for everything that happened
(`{"t": "connect", …}`, `{"t": "event", "name": …, "args": […]}`, …, `{"t": "done"}`).

- `run_node(spec)` runs a scenario to its end and returns those lines.
- `NodeClient(spec)` keeps the client running while the test acts: read lines as they come
  (`await client.lines_until(...)`), answer a `{"until_stdin": true}` step with `send_line()`,
  and `await client.finish()`. The process is killed when the `async with` block exits.

Both skip the test when `npm ci --prefix tests/js` has not been run, or fail it when the
environment variable `CI` is set (CI must have the real client).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import attrs
import pytest
import trio

JS_DIR = Path(__file__).resolve().parents[1] / "js"
CLIENT = JS_DIR / "client.mjs"
SERVER_FIXTURE = JS_DIR / "server_fixture.mjs"
INSTALL = "npm ci --prefix tests/js --no-audit --no-fund"

Line = dict[str, Any]


def require_node(package: str = "socket.io-client") -> str:
    """The `node` executable; skips (under CI: fails) the test when it or `package` is missing."""
    node = shutil.which("node")
    reason = None
    if node is None:
        reason = "node is not installed"
    elif not (JS_DIR / "node_modules" / package / "package.json").is_file():
        reason = f"tests/js/node_modules/{package} is missing: run {INSTALL}"
    if reason is not None:
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI must run the real JS clients)")
        pytest.skip(reason)
    assert node is not None
    return node


class NodeClientError(AssertionError):
    """The scenario did not end with `{"t": "done"}` and exit 0."""

    def __init__(self, message: str, lines: Sequence[Line], stderr: str) -> None:
        shown = "\n".join(json.dumps(line, ensure_ascii=False) for line in lines)
        super().__init__(f"{message}\n--- stdout lines:\n{shown}\n--- stderr:\n{stderr[-4000:]}")
        self.lines = list(lines)
        self.stderr = stderr


def _parse(raw: bytes) -> Line:
    text = raw.decode("utf-8", "replace").rstrip("\r")
    try:
        value = json.loads(text)
    except ValueError:
        return {"t": "raw", "text": text}
    return value if isinstance(value, dict) else {"t": "raw", "text": text}


def _command(node: str, spec: dict[str, Any]) -> list[str]:
    return [node, str(CLIENT), json.dumps(spec, ensure_ascii=False)]


def _deadline(spec: dict[str, Any], seconds: float | None) -> float:
    # Leave the script's own timeout (which prints a useful error line) room to fire first.
    return seconds if seconds is not None else spec.get("timeout", 10_000) / 1000 + 5


async def run_node(
    spec: dict[str, Any],
    *,
    stdin_lines: Iterable[str] = (),
    seconds: float | None = None,
    check: bool = True,
) -> list[Line]:
    """Run the scenario to its end; its output lines, parsed.

    `stdin_lines` are written up front (each answers one `until_stdin` step, in order; use
    `NodeClient` to act in between). With `check` (the default) anything but a clean end —
    exit 0 after `{"t": "done"}` — raises `NodeClientError` showing every line and stderr.
    `seconds` bounds the process; by default the spec's own timeout plus 5 s.
    """
    node = require_node()
    stdin = "".join(f"{line}\n" for line in stdin_lines).encode()
    with trio.fail_after(_deadline(spec, seconds)):
        result = await trio.run_process(
            _command(node, spec),
            stdin=stdin,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            cwd=JS_DIR,
        )
    lines = [_parse(raw) for raw in result.stdout.splitlines() if raw.strip()]
    if check and (result.returncode != 0 or not lines or lines[-1].get("t") != "done"):
        raise NodeClientError(
            f"client.mjs exited {result.returncode}",
            lines,
            result.stderr.decode("utf-8", "replace"),
        )
    return lines


class NodeClient:
    """The Node client as a running process: read its lines while the test acts.

    ```
    async with NodeClient(spec) as client:
        await client.lines_until(lambda line: line["t"] == "waiting_stdin")
        ...  # act on the server while the client is connected
        await client.send_line("go")
        rest = await client.finish()
    ```
    """

    def __init__(self, spec: dict[str, Any], *, seconds: float | None = None) -> None:
        self.spec = spec
        self.seconds = _deadline(spec, seconds)
        self.lines: list[Line] = []  # every line so far
        self.cursor = 0  # lines before it were returned by lines_until / next_line
        self.stderr = b""
        self.eof = False
        self.returncode: int | None = None
        self._changed = trio.Event()
        self._stack = contextlib.AsyncExitStack()
        self._process: trio.Process | None = None

    async def __aenter__(self) -> NodeClient:
        node = require_node()
        async with contextlib.AsyncExitStack() as stack:
            nursery = await stack.enter_async_context(trio.open_nursery())
            stack.callback(nursery.cancel_scope.cancel)
            process = await trio.lowlevel.open_process(
                _command(node, self.spec),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=JS_DIR,
            )
            self._process = process
            stack.push_async_callback(self._kill)
            nursery.start_soon(self._read_stdout)
            nursery.start_soon(self._read_stderr)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        try:
            await self._stack.__aexit__(exc_type, exc, tb)
        except BaseExceptionGroup as group:
            # The nursery wraps the test's own exception: let the original propagate as is.
            if exc is not None and group.exceptions == (exc,):
                return False
            raise
        return False

    async def _kill(self) -> None:
        process = self._process
        assert process is not None
        with trio.CancelScope(shield=True):
            if process.returncode is None:
                process.kill()
            await process.wait()
            if process.stdin is not None:
                await process.stdin.aclose()
        self.returncode = process.returncode

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def _read_stdout(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        buffer = b""
        async for chunk in self._process.stdout:
            buffer += chunk
            *complete, buffer = buffer.split(b"\n")
            self.lines.extend(_parse(raw) for raw in complete if raw.strip())
            if complete:
                self._notify()
        if buffer.strip():
            self.lines.append(_parse(buffer))
        self.eof = True
        self._notify()

    async def _read_stderr(self) -> None:
        assert self._process is not None
        assert self._process.stderr is not None
        async for chunk in self._process.stderr:
            self.stderr += chunk

    def _error(self, message: str) -> NodeClientError:
        return NodeClientError(message, self.lines, self.stderr.decode("utf-8", "replace"))

    async def lines_until(
        self, predicate: Callable[[Line], bool], *, seconds: float = 10.0
    ) -> list[Line]:
        """The unread lines up to and including the first one `predicate` accepts."""
        with trio.move_on_after(seconds) as scope:
            while True:
                for index in range(self.cursor, len(self.lines)):
                    if predicate(self.lines[index]):
                        taken = self.lines[self.cursor : index + 1]
                        self.cursor = index + 1
                        return taken
                if self.eof:
                    raise self._error("client.mjs ended before the expected line")
                await self._changed.wait()
        assert scope.cancelled_caught
        raise self._error(f"no expected line within {seconds} s")

    async def next_line(self, *, seconds: float = 10.0) -> Line:
        return (await self.lines_until(lambda line: True, seconds=seconds))[-1]

    async def wait_for(self, t: str, *, seconds: float = 10.0, **fields: Any) -> Line:
        """The next line of type `t` whose other fields equal `fields` (skipping others)."""

        def match(line: Line) -> bool:
            return line.get("t") == t and all(line.get(k) == v for k, v in fields.items())

        return (await self.lines_until(match, seconds=seconds))[-1]

    async def send_line(self, text: str = "") -> None:
        """One line on the client's stdin: answers an `until_stdin` step."""
        assert self._process is not None
        assert self._process.stdin is not None
        await self._process.stdin.send_all(f"{text}\n".encode())

    async def finish(self, *, seconds: float | None = None, check: bool = True) -> list[Line]:
        """Wait for the scenario to end; the unread lines (`check`: it must end cleanly)."""
        assert self._process is not None
        with trio.move_on_after(self.seconds if seconds is None else seconds) as scope:
            await self._process.wait()
            while not self.eof:
                await self._changed.wait()
        if scope.cancelled_caught:
            raise self._error("client.mjs did not end in time")
        self.returncode = self._process.returncode
        rest = self.lines[self.cursor :]
        self.cursor = len(self.lines)
        if check and (self.returncode != 0 or not self.lines or self.lines[-1].get("t") != "done"):
            raise self._error(f"client.mjs exited {self.returncode}")
        return rest


# --- reading the lines ------------------------------------------------------------------------


def of_type(lines: Iterable[Line], t: str) -> list[Line]:
    return [line for line in lines if line.get("t") == t]


def events(lines: Iterable[Line], name: str | None = None) -> list[list[Any]]:
    """The args of each received event (named `name`, if given), in order."""
    return [
        line["args"]
        for line in lines
        if line.get("t") == "event" and (name is None or line.get("name") == name)
    ]


def to_bytes(value: Any) -> Any:
    """Turn the `{"$bytes": [...]}` markers in a received value into `bytes`, recursively."""
    if isinstance(value, dict):
        if set(value) == {"$bytes"}:
            return bytes(value["$bytes"])
        return {k: to_bytes(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_bytes(v) for v in value]
    return value


def from_bytes(value: Any) -> Any:
    """The inverse of `to_bytes`: `bytes` anywhere in a value become `{"$bytes": [...]}`."""
    if isinstance(value, bytes | bytearray):
        return {"$bytes": list(value)}
    if isinstance(value, dict):
        return {k: from_bytes(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [from_bytes(v) for v in value]
    return value


# --- the reference server ---------------------------------------------------------------------


@attrs.frozen
class ReferenceServer:
    """`tests/js/server_fixture.mjs`: the official `socket.io` server, conformance-app style."""

    host: str
    port: int

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"


@contextlib.asynccontextmanager
async def reference_server(port: int = 0) -> AsyncIterator[ReferenceServer]:
    """Run the Node reference server on 127.0.0.1 (`port` 0: a free one) for the block.

    It exits when its stdin closes; it is killed if it does not within 2 s.
    """
    node = require_node("socket.io")
    process = await trio.lowlevel.open_process(
        [node, str(SERVER_FIXTURE), str(port), "127.0.0.1"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        cwd=JS_DIR,
    )
    assert process.stdin is not None
    assert process.stdout is not None
    try:
        buffer = b""
        with trio.fail_after(10):
            while b"\n" not in buffer:
                chunk = await process.stdout.receive_some()
                if not chunk:
                    raise AssertionError(f"server_fixture.mjs exited: {buffer!r}")
                buffer += chunk
        line = _parse(buffer.split(b"\n", 1)[0])
        assert line.get("t") == "listening", line
        yield ReferenceServer(line["host"], line["port"])
    finally:
        with trio.CancelScope(shield=True):
            await process.stdin.aclose()
            with trio.move_on_after(2):
                await process.wait()
            if process.returncode is None:
                process.kill()
                await process.wait()
            await process.stdout.aclose()
