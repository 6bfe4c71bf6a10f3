"""Provider webhooks in: `GET|POST /hooks/{provider}/{session_id}`.

A provider that pushes (Meta Cloud API, Telegram in webhook mode, WAHA, Evolution's webhook
transport, the simulator's injection hook) declares `Provider.webhook`, an async function that
gets an `InboundCall` and returns an `InboundReply`. The engine does the rest, the same way for
every provider, so a push is acknowledged only once it is stored:

* unknown session, or a session of another provider → 404; a provider without a webhook → 404;
  a stopped session → 503 (`session_stopped`), so the provider retries once it runs again;
* the handler checks the request's signature itself (each provider signs differently; compare
  in constant time) and answers 401/403 on a bad one, 400 on a body it cannot read;
* `await call.emit(*events)` stores and fans out; it returns only after the commit. If the
  store cannot take them (`StoreError`: disk full, database locked past `busy_timeout`) the
  engine answers **503** with `Retry-After`, whatever the handler was doing: nothing was
  half-written and the provider's retry lands later. Ingest is idempotent on provider ids, so
  a redelivered push changes nothing;
* any other exception in the handler → 500 with a JSON error (logged with its traceback; the
  client never sees it).

Every answer is JSON unless the handler chooses otherwise (Meta's verification challenge is
plain text).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any

import attrs

from omnirelay.protocol._events import Event
from omnirelay.protocol._json import dumps
from omnirelay.protocol._records import SessionRecord

from ._store import StoredEvent, StoreError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["InboundCall", "InboundReply", "InboundRequest", "handle_inbound"]

logger = logging.getLogger("omnirelay.engine.inbound")

RETRY_AFTER_SECONDS = 5


@attrs.frozen
class InboundRequest:
    """The HTTP request as the provider sent it: `headers` lower-cased, `body` the raw bytes
    (what signatures are computed over)."""

    method: str
    headers: Mapping[str, str]
    query: Mapping[str, str]
    body: bytes


@attrs.frozen
class InboundReply:
    """What to answer the provider. `body` is JSON-encoded unless it is `str` or `bytes`."""

    status: int = 200
    body: Any = attrs.field(factory=lambda: {"ok": True})
    content_type: str = "application/json"
    headers: Mapping[str, str] = attrs.field(factory=dict)

    @classmethod
    def error(cls, status: int, code: str, message: str) -> InboundReply:
        """The gateway's error shape: `{"error": {"code", "message"}}`."""
        return cls(status, {"error": {"code": code, "message": message}})

    def encoded(self) -> bytes:
        body = self.body
        if isinstance(body, bytes):
            return body
        if isinstance(body, str):
            return body.encode()
        return dumps(body).encode()


@attrs.frozen
class InboundCall:
    """One webhook request for one session, as a provider's `webhook` handler sees it."""

    request: InboundRequest
    session: SessionRecord
    options: Mapping[str, Any]
    _emit: Callable[[SessionRecord, tuple[Event, ...]], Awaitable[list[StoredEvent]]] = attrs.field(
        repr=False, alias="emit"
    )

    async def emit(self, *events: Event) -> list[StoredEvent]:
        """Store the events and fan them out (as `SessionContext.emit`); StoreError when the
        store cannot take them: let it propagate, the engine answers 503."""
        return await self._emit(self.session, events)


async def handle_inbound(
    engine: Engine, provider_name: str, session_id: str, request: InboundRequest
) -> InboundReply:
    """Answer one provider webhook request (see the module docstring)."""
    row = await engine.store.get_session(session_id)
    if row is None or row.record.provider != provider_name:
        return InboundReply.error(
            404, "session_not_found", f"no {provider_name} session {session_id!r}"
        )
    provider = engine.providers.get(provider_name)
    if provider is None or provider.webhook is None:
        return InboundReply.error(
            404, "no_webhook", f"the {provider_name} provider does not take webhooks"
        )
    actor = engine.sessions.get(session_id)
    if actor is None or not actor.running:
        return _unavailable("session_stopped", f"session {session_id!r} is not running")
    call = InboundCall(request, row.record, row.provider_options, emit=engine.submit)
    try:
        return await provider.webhook(call)
    except StoreError as exc:
        logger.warning(
            "webhook for session %s not stored (provider will retry): %s", session_id, exc
        )
        return _unavailable("store_unavailable", "storage is unavailable; retry later")
    except Exception:
        logger.exception("the %s webhook handler failed for session %s", provider_name, session_id)
        return InboundReply.error(500, "internal_error", "the webhook could not be processed")


def _unavailable(code: str, message: str) -> InboundReply:
    reply = InboundReply.error(503, code, message)
    return attrs.evolve(reply, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
