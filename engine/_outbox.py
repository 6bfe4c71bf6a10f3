"""The slow-consumer policy of one subscriber: what happens to a frame the client cannot take yet.

Each subscriber (a `/ws` client, a Socket.IO socket) hands its frames to an `Outbox`, which
writes them to the connection's transport without ever waiting:

It takes one event's frames at a time (a *group*: several when the subscriber's format renders
the event more than once, e.g. a Socket.IO namespace with several dialects), all or none:

* the transport takes the group (written now, or queued within `clients.inbox_bytes` and
  `clients.inbox_frames`): done;
* an ephemeral event with a coalesce key (typing, presence, QR) while the client is behind
  (the transport has a backlog): it is *held*, latest-wins per key. A newer update of the same
  key replaces the held one (counted in `omnirelay_ephemeral_coalesced_total`), so a client that
  falls behind gets the current state of each chat once it catches up, not every intermediate
  one. Held groups go out when the transport drains (`flush`), or before the next group
  without a key, so nothing overtakes them;
* a durable event that does not fit: the client is disconnected as slow (`overflow`) with
  none of the event's frames sent, so it resumes from the last seq it saw and gets the whole
  event again: nothing durable is silently lost, not even part of an event;
* any other ephemeral event that does not fit (a custom publish, or more held keys than the
  inbox has room for): dropped and counted in `omnirelay_queue_drops_total`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

from ._frames import OutFrame
from ._metrics import Metrics

__all__ = ["Outbox"]


class Outbox:
    """Delivers one subscriber's frames (see the module docstring)."""

    __slots__ = ("_backlog", "_held", "_max_held", "_metrics", "_overflow", "_send")

    def __init__(
        self,
        *,
        send: Callable[[Sequence[OutFrame]], bool],
        backlog: Callable[[], int],
        overflow: Callable[[], None],
        metrics: Metrics,
        max_held: int,
    ) -> None:
        self._send = send  # write or queue a group now; False (none sent) if it does not fit
        self._backlog = backlog  # bytes or frames the transport has not written yet
        self._overflow = overflow  # disconnect the client as slow
        self._metrics = metrics
        self._max_held = max_held
        self._held: dict[Hashable, Sequence[OutFrame]] = {}

    @property
    def held(self) -> int:
        """Ephemeral updates waiting for the transport to drain."""
        return len(self._held)

    def put(
        self, frames: Sequence[OutFrame], *, durable: bool, coalesce: Hashable | None = None
    ) -> None:
        """Send, hold or refuse one event's `frames`; never waits, never raises for a slow
        client."""
        held = self._held
        if coalesce is not None and not durable and (held or self._backlog()):
            if held.pop(coalesce, None) is not None:
                self._metrics.coalesced.inc()
            elif len(held) >= self._max_held:
                del held[next(iter(held))]  # the oldest held update gives way
                self._metrics.drops.inc()
            held[coalesce] = frames  # latest wins, in the position of the latest
            return
        if held:
            self.flush()
        if self._send(frames):
            return
        if durable:
            self._metrics.slow_kicks.inc()
            self._overflow()
        else:
            self._metrics.drops.inc()

    def flush(self) -> None:
        """Send the held updates in order (the transport drained); what does not fit is dropped."""
        held = self._held
        while held:
            frames = held.pop(next(iter(held)))
            if not self._send(frames):
                self._metrics.drops.inc()
