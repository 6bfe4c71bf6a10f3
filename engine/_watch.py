"""`omnirelay watch`: a minimal `/ws` client that prints envelopes, one JSON line each.

It needs nothing beyond omnirelay's own dependencies (wsproto over a trio socket), so the
30-second tour in README works right after `pip install`. Errors (refused token, server gone)
raise `WatchError` with the server's JSON error when there is one.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, TextIO
from urllib.parse import urlsplit

import trio
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    CloseConnection,
    Ping,
    RejectConnection,
    RejectData,
    Request,
    TextMessage,
)

__all__ = ["WatchError", "watch"]


class WatchError(Exception):
    """The connection was refused or lost; the message says why."""


async def watch(
    url: str, token: str, filters: Sequence[dict[str, Any]], count: int | None, out: TextIO
) -> None:
    parts = urlsplit(url)
    if parts.scheme != "ws" or not parts.hostname:
        raise WatchError(f"{url!r}: expected ws://host:port/path (wss is not supported here)")
    port = parts.port or 80
    target = (parts.path or "/") + "?" + "&".join(filter(None, [parts.query, f"token={token}"]))
    try:
        stream = await trio.open_tcp_stream(parts.hostname, port)
    except OSError as exc:
        raise WatchError(f"cannot connect to {parts.hostname}:{port}: {exc.strerror}") from None
    ws = WSConnection(ConnectionType.CLIENT)
    printed = 0
    rejected: list[bytes] = []
    partial: list[str] = []
    async with stream:
        await stream.send_all(ws.send(Request(host=parts.netloc, target=target)))
        while True:
            data = await stream.receive_some(65536)
            if not data:
                raise WatchError("the server closed the connection")
            ws.receive_data(data)
            for event in ws.events():
                if isinstance(event, AcceptConnection):
                    for f in filters:
                        message = json.dumps({"action": "subscribe", "filter": f})
                        await stream.send_all(ws.send(TextMessage(message)))
                elif isinstance(event, RejectConnection | RejectData):
                    if isinstance(event, RejectData):
                        rejected.append(event.data)
                    if (isinstance(event, RejectData) and event.body_finished) or (
                        isinstance(event, RejectConnection) and not event.has_body
                    ):
                        body = b"".join(rejected).decode("utf-8", "replace")
                        raise WatchError(f"refused: {body or 'no reason given'}")
                elif isinstance(event, TextMessage):
                    partial.append(event.data)
                    if event.message_finished:
                        out.write("".join(partial) + "\n")
                        out.flush()
                        partial.clear()
                        printed += 1
                        if count is not None and printed >= count:
                            await stream.send_all(ws.send(CloseConnection(code=1000)))
                            return
                elif isinstance(event, Ping):
                    await stream.send_all(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    await stream.send_all(ws.send(event.response()))
                    if event.code == 1000:
                        return
                    raise WatchError(f"closed by the server: {event.code} {event.reason}")
