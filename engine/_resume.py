"""Resuming a client from a log position: gap-free and duplicate-free.

A client that reconnects names the last position it saw, `"<epoch>:<seq>"` (plain WebSocket:
`resume` / `?since=`; Socket.IO: the `offset` socket.io-client sends back). The sequence:

1. `check_resume`: same epoch (the log was not reset), not newer than the log, and nothing
   after it pruned by retention — else the client must reload from REST (`resync_required`,
   or for Socket.IO a fresh, unrecovered session);
2. the subscriber's `LiveGate` starts holding live durable frames (they keep being offered
   while the replay reads the database);
3. `replay` renders the logged events after the position, exactly as they went out live
   (the log keeps each event's render context), through the subscriber's own filters;
4. the gate releases the held frames newer than the last replayed one, then passes live
   frames through again.

Replays are bounded (`limit` events): a client that missed more is told the replay is not
complete (or, on Socket.IO, is not recovered) and reloads instead.
"""

from __future__ import annotations

from collections.abc import Callable

import attrs

from omnirelay.protocol._envelope import Cursor

from ._hub import Group, Hub, Subscriber
from ._store import Store

__all__ = ["LiveGate", "ReplayResult", "ResumeCheck", "check_resume", "replay"]

PAGE = 500


@attrs.frozen
class ResumeCheck:
    ok: bool
    reason: str | None  # epoch_changed, too_old, unknown_seq
    current: int  # the tenant's last seq now


async def check_resume(store: Store, tenant_id: str, cursor: Cursor) -> ResumeCheck:
    current = await store.last_seq(tenant_id)
    if cursor.epoch != store.epoch:
        return ResumeCheck(False, "epoch_changed", current)
    if cursor.seq > current:
        return ResumeCheck(False, "unknown_seq", current)
    if cursor.seq < current:
        first = await store.read_log(tenant_id, after=cursor.seq, limit=1)
        if not first or first[0].seq != cursor.seq + 1:
            return ResumeCheck(False, "too_old", current)
    return ResumeCheck(True, None, current)


@attrs.frozen
class ReplayResult:
    replayed: int  # frames sent
    last_seq: int  # the last log position covered
    complete: bool  # everything up to the log's end at the time was covered
    overflow: bool  # the client's buffer filled up: it must be disconnected as slow


async def replay(
    store: Store,
    hub: Hub,
    subscriber: Subscriber,
    *,
    after: int,
    before: int | None,
    send: Callable[[Group], bool],
    limit: int,
    skip: int = 0,
) -> ReplayResult:
    """Send the subscriber's frames of the tenant's logged events in (after, before); of the
    event right after `after`, leave out the first `skip` renditions (a Socket.IO client that
    got part of it, see `SocketIOFormat`)."""
    sent = 0
    last = after
    events_seen = 0
    while True:
        page = await store.read_log(subscriber.tenant_id, after=last, limit=PAGE)
        for stored in page:
            assert stored.seq is not None
            if before is not None and stored.seq >= before:
                return ReplayResult(sent, last, True, False)
            if events_seen >= limit:
                return ReplayResult(sent, last, False, False)
            events_seen += 1
            first = skip if stored.seq == after + 1 else 0
            group = hub.render_for(subscriber, stored, skip=first)
            if group and not send(group):  # all of the event's frames or none
                return ReplayResult(sent, last, False, True)
            sent += len(group)
            last = stored.seq
        if len(page) < PAGE:
            return ReplayResult(sent, last, True, False)


class LiveGate:
    """Holds a subscriber's live durable events while a replay runs (see the module doc)."""

    __slots__ = ("_held", "first_live_seq", "holding")

    def __init__(self) -> None:
        self.holding = False
        self.first_live_seq: int | None = None  # the first durable event offered live
        self._held: list[tuple[int, Group]] = []

    def hold(self, frames: Group, seq: int | None) -> bool:
        """Every live event passes here first. Keep the event's frames for later if holding
        (durable only); False: send them now. Notes the first durable event offered live: a
        replay stops before it (the client has it, or will have it, live)."""
        if seq is not None and self.first_live_seq is None:
            self.first_live_seq = seq
        if not self.holding or seq is None:
            return False
        self._held.append((seq, frames))
        return True

    def start(self) -> None:
        self.holding = True

    def release(self, after: int) -> list[tuple[int, Group]]:
        """Stop holding; the held events newer than `after` (the rest were replayed)."""
        self.holding = False
        held, self._held = self._held, []
        return [(seq, frames) for seq, frames in held if seq > after]
