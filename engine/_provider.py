"""What a provider plugin declares, and what its session coroutine is given.

A provider is a kind of account (Evolution instance, WAHA session, Telegram bot, simulator).
A plugin declares it with `omnirelay_providers` returning `Provider` records. For every
configured session of that kind the engine runs `provider.run(context)` in a `SessionActor`:
restarted with backoff when it raises, cancelled when the session is stopped.

The `SessionContext` is the whole API a session sees:

* `await context.emit(*events)` returns once the durable events are committed and fanned out
  (so a webhook handler answers 200 only after, and a poller advances its offset only after);
  raises `StoreError` when the store cannot take them (answer the provider 5xx / retry);
* `context.commands` is a bounded channel of `Command`s (send a message, test the connection)
  each carrying a `reply` the session must answer;
* `context.session`, `context.options` describe the account; `context.attempt` counts the
  restarts before this run (0 on the first); `context.random` is this session's own generator
  (derived from the engine's and the session id, so a seeded engine replays exactly) and
  `context.clock` the engine's clock.
"""

from __future__ import annotations

import random
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import attrs
import trio

from omnirelay.protocol._events import Event
from omnirelay.protocol._records import SessionRecord

if TYPE_CHECKING:
    from ._inbound import InboundCall, InboundReply
    from ._store import StoredEvent

__all__ = [
    "Command",
    "CommandResult",
    "Provider",
    "SendText",
    "SessionContext",
    "TestConnection",
]


@attrs.frozen
class CommandResult:
    """A session's answer to a command: `ok`, a message, and JSON-able details."""

    ok: bool
    message: str = ""
    details: Mapping[str, Any] = attrs.field(factory=dict)


@attrs.define(eq=False)
class Command:
    """Something the engine asks a running session to do; answer exactly once with `reply`."""

    _done: trio.Event = attrs.field(factory=trio.Event, init=False, repr=False)
    _result: CommandResult | None = attrs.field(default=None, init=False, repr=False)

    def reply(self, result: CommandResult) -> None:
        """Answer the command (a second answer is ignored)."""
        if self._result is None:
            self._result = result
            self._done.set()

    async def wait_reply(self) -> CommandResult:
        await self._done.wait()
        assert self._result is not None
        return self._result


@attrs.define(eq=False)
class TestConnection(Command):
    """Check the provider connection now and say how it is."""

    __test__ = False  # not a pytest test class, despite the name


@attrs.define(eq=False)
class SendText(Command):
    """Send `text` to the provider chat `chat_id` (a provider chat id, e.g. a JID)."""

    chat_id: str = ""
    text: str = ""


@attrs.frozen
class Provider:
    """A provider kind declared by a plugin.

    `run` is the session coroutine. `validate_options` (optional) checks and normalises a
    session's `options` before it is stored: raise ValueError with a sentence naming the option.
    `webhook` (optional) answers the provider's pushes to `/hooks/{name}/{session_id}`
    (`omnirelay.engine._inbound`): verify the request, `await call.emit(...)`, return a reply.
    """

    name: str
    run: Callable[[SessionContext], Awaitable[None]]
    description: str = ""
    validate_options: Callable[[Mapping[str, Any]], Mapping[str, Any]] | None = None
    webhook: Callable[[InboundCall], Awaitable[InboundReply]] | None = None


Emit = Callable[[SessionRecord, tuple[Event, ...]], Awaitable[list["StoredEvent"]]]


@attrs.define(eq=False)
class SessionContext:
    """What a provider session coroutine gets from the engine (see the module docstring)."""

    session: SessionRecord
    options: Mapping[str, Any]
    commands: trio.MemoryReceiveChannel[Command]
    _emit: Emit = attrs.field(repr=False)
    random: random.Random = attrs.field(factory=random.Random, repr=False)
    clock: Callable[[], datetime] = attrs.field(default=lambda: datetime.now(UTC), repr=False)
    attempt: int = 0

    async def emit(self, *events: Event) -> list[StoredEvent]:
        """Store the events (durable ones in one transaction) and fan them out.

        Returns what was stored, in log order (a redelivered event is not in it). Raises
        StoreError when the store cannot take them right now; nothing is half-written.
        """
        return await self._emit(self.session, events)
