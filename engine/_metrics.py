"""Prometheus metrics of one engine (its own registry: two engines never mix numbers).

Exposed at `/metrics` (docs/operations.md lists them): connections by transport, events in
by type, frames out, fan-out latency, queue drops and slow-consumer kicks, provider session
restarts, client messages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

if TYPE_CHECKING:
    from ._store import StoredEvent

__all__ = ["CONTENT_TYPE", "Metrics"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.connections = Gauge(
            "omnirelay_connections", "Open client connections", ["transport"], registry=r
        )
        self.connections_total = Counter(
            "omnirelay_connections_opened", "Client connections opened", ["transport"], registry=r
        )
        self.events_in = Counter(
            "omnirelay_events_in", "Events stored or passed through, by type", ["type"], registry=r
        )
        self.duplicates = Counter(
            "omnirelay_events_duplicate", "Provider events skipped as already stored", registry=r
        )
        self.filtered = Counter(
            "omnirelay_events_filtered",
            "Provider events dropped by ingest rules",
            ["rule"],
            registry=r,
        )
        self.frames_out = Counter(
            "omnirelay_frames_out",
            "Frames handed to client connections, by event type",
            ["type"],
            registry=r,
        )
        self.fanout_seconds = Histogram(
            "omnirelay_fanout_seconds",
            "Time to render and hand one event to every subscriber",
            buckets=(0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0),
            registry=r,
        )
        self.drops = Counter(
            "omnirelay_queue_drops", "Ephemeral frames dropped for a full connection", registry=r
        )
        self.coalesced = Counter(
            "omnirelay_ephemeral_coalesced",
            "Ephemeral updates replaced by a newer one of the same key for a client behind",
            registry=r,
        )
        self.slow_kicks = Counter(
            "omnirelay_slow_consumer_disconnects", "Clients disconnected as too slow", registry=r
        )
        self.session_restarts = Counter(
            "omnirelay_session_restarts",
            "Provider session restarts after a crash",
            ["provider"],
            registry=r,
        )
        self.render_errors = Counter(
            "omnirelay_render_errors", "Events a dialect failed to render", ["dialect"], registry=r
        )
        self.limits = Counter(
            "omnirelay_limit_refusals",
            "Client actions refused by a limit (connections, rate, rooms)",
            ["limit"],
            registry=r,
        )
        self.client_messages = Counter(
            "omnirelay_client_messages", "Messages received from clients", ["transport"], registry=r
        )

    def connection_opened(self, transport: str) -> None:
        self.connections.labels(transport).inc()
        self.connections_total.labels(transport).inc()

    def connection_closed(self, transport: str) -> None:
        self.connections.labels(transport).dec()

    def client_message(self, transport: str) -> None:
        self.client_messages.labels(transport).inc()

    def delivered(self, stored: StoredEvent, frames: int, seconds: float) -> None:
        if frames:
            self.frames_out.labels(stored.event.type).inc(frames)
        self.fanout_seconds.observe(seconds)

    def render_error(self, dialect: str, stored: StoredEvent, error: Exception) -> None:
        self.render_errors.labels(dialect).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
