"""The `evolution` dialect: Evolution API's own events, passed through as `evolution-event`.

Seed: `evolution-websocket-modes.md`, whose front-end listens to `evolution-event` and reads the
Evolution envelope (`event`, `instance`, `data`, `date_time`, `sender`). Only `provider.raw`
events from the "evolution" provider are shown, and their payload is redacted once more here so
that no secret (the envelope's `apikey`, `server_url`, media keys, binary blobs) can leave, even
if a plugin forgot to.
"""

from __future__ import annotations

from ._dialect_base import Dialect, Rendition
from ._events import Event, ProviderRaw
from ._records import RenderContext
from ._redact import redact_provider_payload

__all__ = ["evolution_dialect"]

NAME = "evolution"
EVOLUTION_EVENT = "evolution-event"


def evolution_dialect() -> Dialect:
    """The `evolution` dialect (Socket.IO, namespace "/")."""
    return Dialect(
        name=NAME, wire="socketio", events=frozenset({EVOLUTION_EVENT}), render=render_evolution
    )


def render_evolution(event: Event, ctx: RenderContext) -> tuple[Rendition, ...]:
    """Render an Evolution `provider.raw` event; every other event renders as nothing."""
    if not isinstance(event, ProviderRaw) or event.provider != "evolution":
        return ()
    payload = redact_provider_payload(event.payload)
    # The front-end switches on `event`; a plugin that passed only the data still names it.
    payload.setdefault("event", event.name)
    return (Rendition(EVOLUTION_EVENT, payload),)
