"""Dialects by name: the registry a server consults, and the five built-in dialects.

    whatsapp-web   Socket.IO "/"      whatsapp:new-message, whatsapp:chat-updated, …
    crm            Socket.IO "/crm"   whatsapp:message, whatsapp:message_sent, …_status
    chat-sync      Socket.IO "/"      chat:message, chat:new, chat:update
    evolution      Socket.IO "/"      evolution-event
    envelope       plain WS "/ws"     new_chat, new_message, user_typing, message_read, …

There is no global registry: `builtin_dialects()` builds a fresh one, and the engine adds the
dialects plugins declare through its hook. The built-ins live in `_dialect_<name>.py`;
docs/dialects.md describes every payload field.
"""

from __future__ import annotations

from collections.abc import Iterator

import attrs

from ._dialect_base import Dialect, Renderer, Rendition, Wire
from ._dialect_chat_sync import chat_sync_dialect
from ._dialect_crm import crm_dialect
from ._dialect_envelope import envelope_dialect
from ._dialect_evolution import evolution_dialect
from ._dialect_whatsapp_web import whatsapp_web_dialect
from ._errors import LocalProtocolError

__all__ = [
    "Dialect",
    "DialectRegistry",
    "Renderer",
    "Rendition",
    "Wire",
    "builtin_dialects",
]


@attrs.define(eq=False)
class DialectRegistry:
    """Dialects by name, in registration order; one per server, built at start-up."""

    _dialects: dict[str, Dialect] = attrs.field(factory=dict, init=False)

    def register(self, dialect: Dialect) -> None:
        """Add `dialect`; LocalProtocolError if its name is already taken."""
        if dialect.name in self._dialects:
            raise LocalProtocolError(f"a dialect named {dialect.name!r} is already registered")
        self._dialects[dialect.name] = dialect

    def get(self, name: str) -> Dialect:
        """The dialect called `name`; LocalProtocolError naming the known ones if there is none."""
        try:
            return self._dialects[name]
        except KeyError:
            known = ", ".join(repr(known) for known in self.names()) or "none"
            raise LocalProtocolError(
                f"unknown dialect {name!r}; registered dialects: {known}"
            ) from None

    def names(self) -> tuple[str, ...]:
        """The registered names, in registration order."""
        return tuple(self._dialects)

    def __contains__(self, name: object) -> bool:
        return name in self._dialects

    def __iter__(self) -> Iterator[Dialect]:
        return iter(tuple(self._dialects.values()))

    def __len__(self) -> int:
        return len(self._dialects)


def builtin_dialects() -> DialectRegistry:
    """A new registry holding the five built-in dialects."""
    registry = DialectRegistry()
    for dialect in (
        whatsapp_web_dialect(),
        crm_dialect(),
        chat_sync_dialect(),
        evolution_dialect(),
        envelope_dialect(),
    ):
        registry.register(dialect)
    return registry
