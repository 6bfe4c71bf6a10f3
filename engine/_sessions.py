"""Provider sessions under supervision: one `SessionActor` per session, restarted with backoff.

An actor runs its provider's session coroutine. When that raises, the actor reports
`session.status failed` with the reason, waits (exponential backoff with jitter, capped at
`supervisor.backoff_max`, reset after a run that lasted longer than the cap) and starts it
again: a crashing provider never takes the engine down. Catching `Exception` here is the one
deliberate exception to "exceptions propagate": the session coroutine is plugin code. Errors
of the engine's own making (a store failure while reporting) are logged and retried the same
way; cancellation always propagates.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import trio

from omnirelay.protocol._events import SessionState, SessionStatus
from omnirelay.protocol._records import SessionRecord

from ._provider import Command, CommandResult, Provider, SessionContext
from ._store import StoreError

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["SessionActor", "SessionSupervisor", "describe_error"]

logger = logging.getLogger("omnirelay.engine.sessions")

# Commands waiting for a session: a handful is plenty (they come from REST calls, which wait).
COMMAND_BUFFER = 16


def describe_error(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` of the error, or of the errors inside an exception group (a crash inside
    a plugin's nursery arrives grouped)."""
    if isinstance(exc, BaseExceptionGroup):
        leaves = "; ".join(describe_error(e, limit) for e in exc.exceptions)
        return leaves[:limit]
    return f"{type(exc).__name__}: {exc}"[:limit]


class SessionActor:
    """One provider session and its restarts; its address is `commands` (a bounded channel)."""

    def __init__(
        self,
        engine: Engine,
        record: SessionRecord,
        provider: Provider,
        options: Mapping[str, Any],
    ) -> None:
        self.engine = engine
        self.record = record
        self.provider = provider
        self.options = options
        self.commands, self._command_inbox = trio.open_memory_channel[Command](COMMAND_BUFFER)
        self.scope = trio.CancelScope()
        self.done = trio.Event()
        self.restarts = 0
        self.running = False
        self.last_error: str | None = None
        self._seed = engine.random.getrandbits(64)

    async def run(
        self, *, task_status: trio.TaskStatus[SessionActor] = trio.TASK_STATUS_IGNORED
    ) -> None:
        supervisor = self.engine.config.supervisor
        delay = supervisor.backoff_initial
        try:
            with self.scope:
                task_status.started(self)
                while True:
                    started = trio.current_time()
                    context = SessionContext(
                        session=self.record,
                        options=self.options,
                        commands=self._command_inbox,
                        emit=self.engine.submit,
                        random=random.Random(f"{self.record.id}:{self._seed}:{self.restarts}"),
                        clock=self.engine.clock,
                        attempt=self.restarts,
                    )
                    self.running = True
                    try:
                        await self.provider.run(context)
                    except Exception as exc:
                        self.running = False
                        self.restarts += 1
                        self.last_error = describe_error(exc)
                        self.engine.metrics.session_restarts.labels(self.provider.name).inc()
                        logger.warning(
                            "session %s (%s) crashed, restarting: %s",
                            self.record.id,
                            self.provider.name,
                            self.last_error,
                            exc_info=exc,
                        )
                        await self._report(SessionState.FAILED, self.last_error)
                        if trio.current_time() - started > supervisor.backoff_max:
                            delay = supervisor.backoff_initial
                        await trio.sleep(delay * (0.5 + self.engine.random.random() / 2))
                        delay = min(delay * 2, supervisor.backoff_max)
                        continue
                    self.running = False
                    await self._report(SessionState.STOPPED, "the provider session ended")
                    return
        finally:
            self.running = False
            if self.scope.cancelled_caught or self.scope.cancel_called:
                with trio.CancelScope(shield=True), trio.move_on_after(1):
                    await self._report(SessionState.STOPPED, "session stopped")
            self.done.set()

    async def _report(self, state: SessionState, reason: str) -> None:
        event = SessionStatus(
            provider=self.provider.name, occurred_at=self.engine.clock(), state=state, reason=reason
        )
        try:
            await self.engine.submit(self.record, (event,))
        except StoreError as exc:
            logger.error("could not record status %s of session %s: %s", state, self.record.id, exc)

    async def command(self, command: Command, *, within: float) -> CommandResult:
        """Hand a command to the session and wait for its reply (or a timeout result)."""
        if not self.running:
            return CommandResult(False, "the session is not running")
        try:
            self.commands.send_nowait(command)
        except trio.WouldBlock:
            return CommandResult(False, "the session is busy: too many commands queued")
        with trio.move_on_after(within):
            return await command.wait_reply()
        return CommandResult(False, f"the session did not answer within {within:g} s")

    async def stop(self) -> None:
        self.scope.cancel()
        await self.done.wait()


class SessionSupervisor:
    """Starts and stops session actors inside the engine's nursery."""

    def __init__(self, engine: Engine, nursery: trio.Nursery) -> None:
        self.engine = engine
        self._nursery = nursery
        self._actors: dict[str, SessionActor] = {}

    def get(self, session_id: str) -> SessionActor | None:
        actor = self._actors.get(session_id)
        return actor if actor is not None and not actor.done.is_set() else None

    def actors(self) -> list[SessionActor]:
        return [a for a in self._actors.values() if not a.done.is_set()]

    async def start(
        self, record: SessionRecord, provider: Provider, options: Mapping[str, Any]
    ) -> SessionActor:
        """Start the session (a no-op if it already runs)."""
        current = self.get(record.id)
        if current is not None:
            return current
        actor = SessionActor(self.engine, record, provider, options)
        self._actors[record.id] = actor
        started: SessionActor = await self._nursery.start(actor.run)
        return started

    async def stop(self, session_id: str) -> bool:
        """Stop the session; False if it was not running."""
        actor = self.get(session_id)
        if actor is None:
            return False
        await actor.stop()
        return True

    async def stop_all(self) -> None:
        async with trio.open_nursery() as nursery:
            for actor in self.actors():
                nursery.start_soon(actor.stop)
