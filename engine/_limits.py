"""Per-connection rate limit on what clients send (`limits.client_events_per_minute`).

A token bucket holding one minute's allowance, refilled continuously. A message that finds the
bucket empty is refused with an error (Socket.IO: the ack, or an `error` event; `/ws`: an
`error` envelope with code `rate_limited`). A client that keeps sending while refused —
`STRIKES` refused messages in a row — is disconnected with 1008 (policy violation). Every
refusal is counted in `omnirelay_rate_limited_total`.
"""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["STRIKES", "RateLimiter", "Verdict"]

STRIKES = 10

Verdict = str  # "ok", "refuse", "close"


class RateLimiter:
    __slots__ = ("_clock", "_last", "_per_second", "_tokens", "capacity", "strikes")

    def __init__(self, per_minute: int, clock: Callable[[], float]) -> None:
        self.capacity = float(per_minute)
        self._per_second = per_minute / 60.0
        self._tokens = self.capacity
        self._clock = clock
        self._last = clock()
        self.strikes = 0

    def check(self) -> Verdict:
        """Account for one client message: `ok`, `refuse` (answer with an error) or `close`."""
        now = self._clock()
        self._tokens = min(self.capacity, self._tokens + (now - self._last) * self._per_second)
        self._last = now
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            self.strikes = 0
            return "ok"
        self.strikes += 1
        return "close" if self.strikes >= STRIKES else "refuse"
