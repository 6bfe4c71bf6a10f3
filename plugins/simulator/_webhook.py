"""The simulator's webhook: inject a customer's message into a running simulated session.

`POST /hooks/simulator/{session_id}` with the session's `webhook_secret` in the
`X-Simulator-Secret` header and a JSON body::

    {"id": "order-42", "from": "+55 11 98765-4321", "name": "Maria", "text": "Olá! 👋"}

becomes a `message.received` from that number, exactly as if the customer had written, and goes
through the same path as a real provider's push: stored, fanned out, then answered 200 (503
when the store cannot take it, so the sender retries). `id` makes it idempotent: posting the
same id again stores nothing (`"stored": false`). Useful to drive a demo or a front-end test
from curl, and the reference for writing a real provider's webhook (docs/plugins.md).
"""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from typing import Any

from omnirelay.engine import InboundCall, InboundReply
from omnirelay.protocol import ChatKind, ChatRef, Message, MessageKind, MessageReceived, Party
from omnirelay.protocol._errors import RemoteProtocolError
from omnirelay.protocol._json import loads

from ._options import SimulatorOptions

__all__ = ["SECRET_HEADER", "webhook"]

SECRET_HEADER = "x-simulator-secret"
MAX_TEXT = 4096


async def webhook(call: InboundCall) -> InboundReply:
    """The `Provider.webhook` of the simulator (see the module docstring)."""
    secret = SimulatorOptions.from_mapping(call.options).webhook_secret
    if secret is None:
        return InboundReply.error(
            404,
            "webhook_disabled",
            "this simulator session takes no webhooks: set its webhook_secret option",
        )
    given = call.request.headers.get(SECRET_HEADER, "")
    if not hmac.compare_digest(given.encode(), secret.encode()):
        return InboundReply.error(401, "bad_secret", "missing or wrong X-Simulator-Secret header")
    if call.request.method != "POST":
        return InboundReply.error(405, "method_not_allowed", "POST a JSON message")
    try:
        body = loads(call.request.body)
    except RemoteProtocolError:
        return InboundReply.error(400, "invalid_json", "the request body is not valid JSON")
    try:
        event = _message(body)
    except ValueError as exc:
        return InboundReply.error(400, "invalid_body", str(exc))
    stored = await call.emit(event)
    return InboundReply(200, {"ok": True, "stored": bool(stored)})


def _message(body: Any) -> MessageReceived:
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object with id, from and text")
    message_id, number, text = body.get("id"), body.get("from"), body.get("text")
    name = body.get("name")
    if not isinstance(message_id, str) or not 1 <= len(message_id) <= 128:
        raise ValueError("id must be a string of 1 to 128 characters (it makes retries safe)")
    digits = "".join(c for c in number if c.isdigit()) if isinstance(number, str) else ""
    if not 6 <= len(digits) <= 15 or not isinstance(number, str):
        raise ValueError("from must be a phone number with 6 to 15 digits")
    if not isinstance(text, str) or not 1 <= len(text) <= MAX_TEXT:
        raise ValueError(f"text must be a string of 1 to {MAX_TEXT} characters")
    if name is not None and (not isinstance(name, str) or len(name) > 128):
        raise ValueError("name must be a string of at most 128 characters")
    jid = f"{digits}@c.us"
    sender = Party(id=jid, phone=f"+{digits}", name=name or None)
    return MessageReceived(
        provider="simulator",
        occurred_at=datetime.now(UTC),
        chat=ChatRef(id=jid, kind=ChatKind.DIRECT, title=name or None),
        sender=sender,
        message=Message(id=f"hook-{message_id}", kind=MessageKind.TEXT, from_me=False, text=text),
    )
