"""What the benchmarks share: waiting for a gateway subprocess to listen."""

from __future__ import annotations

import re

import trio

__all__ = ["wait_port"]


async def wait_port(process: trio.Process) -> int:
    """The port `omnirelay serve` (started with stdout piped) says it listens on."""
    assert process.stdout is not None
    buffer = b""
    with trio.fail_after(30):
        while True:
            chunk = await process.stdout.receive_some()
            if not chunk:
                raise RuntimeError("the gateway exited before listening")
            buffer += chunk
            match = re.search(rb"listening on http://127\.0\.0\.1:(\d+)", buffer)
            if match:
                return int(match.group(1))
