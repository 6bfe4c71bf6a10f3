"""The simulated company: one WhatsApp number, its chats, and the session coroutine `run`.

`run(context)` is what the engine runs for each simulator session. It links the "phone"
(`connecting`, a few QR codes, `connected`), then plays a day at a small business: customers
type and write, the operator answers from the phone, outgoing messages go sent → delivered →
read, people come online, react, edit, delete, rename groups — plus the noise WhatsApp sends
that the gateway must filter out (status@broadcast stories, system notices). Meanwhile it
answers the engine's commands (`TestConnection`, `SendText`) from a second task.

The session ends when `duration` passes or `max_events` have been emitted (it returns, and the
engine reports the session `stopped`), raises RuntimeError after `fail_after` events, and
otherwise runs until the engine cancels it.

Determinism: every random choice comes from one `random.Random` (seeded with the `seed`
option, else the context's), every timestamp from `context.clock()`, every wait is
`trio.sleep`; with a fixed seed and trio's MockClock the event sequence is always the same.

Memory stays bounded however long it runs: the cast is fixed at start, and only the last
`RECENT_MESSAGES` messages (targets for reactions, edits, deletes), `PENDING_STATUSES`
outgoing messages still awaiting statuses and `EXTRA_CHATS` chats opened by `SendText` are kept.
"""

from __future__ import annotations

import collections
import logging
import math
import random
from collections.abc import Callable, Sequence
from datetime import datetime

import attrs
import trio

from omnirelay.engine import (
    Command,
    CommandResult,
    SendText,
    SessionContext,
    TestConnection,
)
from omnirelay.protocol import (
    ChatCreated,
    ChatKind,
    ChatRef,
    ChatUpdated,
    ContactUpdated,
    DeliveryState,
    Event,
    Media,
    Message,
    MessageDeleted,
    MessageEdited,
    MessageKind,
    MessageReaction,
    MessageReceived,
    MessageSent,
    MessageStatus,
    Party,
    PresenceState,
    PresenceUpdated,
    SessionQR,
    SessionState,
    SessionStatus,
)

from ._cast import REACTIONS, Cast, Contact, Group, avatar_data_url, make_cast, phrase_book
from ._options import SimulatorOptions
from ._qr import qr_image_data_url, qr_payload

__all__ = ["Company", "CompanyStatistics", "run"]

logger = logging.getLogger("omnirelay.plugins.simulator")

# Messages a reaction, edit or delete may still target; older ones are forgotten.
RECENT_MESSAGES = 32
# Outgoing messages still waiting for their next status; when full, the oldest simply stays
# "delivered" (or "sent") forever, as with a recipient who never opens WhatsApp.
PENDING_STATUSES = 64
# Chats outside the cast that SendText wrote to, least recently used first. A chat evicted and
# written to again gets a second chat.created, which the store deduplicates.
EXTRA_CHATS = 256
# Events per emit in benchmark mode: one store transaction each (DESIGN.md §9: batches of
# ~100 rows commit ~20x faster than single rows).
BENCHMARK_BATCH = 200
# Benchmark pacing granularity, seconds: one batch per tick at low rates, not one per event.
BENCHMARK_TICK = 0.01
# Seconds a QR code is shown before the next one (WhatsApp Web uses 20 s; demos are impatient).
QR_SECONDS = (4.0, 7.0)

_EMOJI_SUFFIXES = ("✨", "🌻", "😊", "🏖️", "💼", "🎧")
_NEXT_STATE = {
    None: DeliveryState.SENT,
    DeliveryState.SENT: DeliveryState.DELIVERED,
    DeliveryState.DELIVERED: DeliveryState.READ,
}

Beat = Callable[[datetime], list[Event]]
"""One step of a scene: given the time, the events to emit together (possibly none)."""


async def run(context: SessionContext) -> None:
    """The simulator's session coroutine (`Provider.run`); see the module docstring.

    Raises ValueError for bad options (the engine checks them before storing the session, so
    this only happens when it is driven by hand), RuntimeError after `fail_after` events, and
    whatever `context.emit` raises (StoreError: the engine restarts the session).
    """
    company = Company(context, SimulatorOptions.from_mapping(context.options))
    await company.run()


@attrs.frozen(kw_only=True)
class CompanyStatistics:
    """A simulated session's counters; the last four are bounded (see the module docstring).

    `emitted`: events handed to `context.emit`; `connected`: the QR code was "scanned";
    `chats`: chats known (the cast's plus those opened by SendText); `recent_messages`,
    `pending_statuses`, `queued_beats`: what is remembered to generate what comes next.
    """

    emitted: int
    connected: bool
    chats: int
    recent_messages: int
    pending_statuses: int
    queued_beats: int


@attrs.define
class _ChatState:
    """What the simulator remembers about one chat."""

    created: bool = False
    unread: int = 0
    pinned: bool = False


@attrs.define
class _Posted:
    """A recent message: what a reaction, edit or delete needs to know about it."""

    chat: ChatRef
    message_id: str
    author: Party
    kind: MessageKind
    lang: str


@attrs.define
class _Outgoing:
    """An outgoing message and the last status reported for it."""

    chat: ChatRef
    message_id: str
    state: DeliveryState | None = None


class Company:
    """One simulated WhatsApp account; `run()` plays it until a limit or cancellation."""

    def __init__(self, context: SessionContext, options: SimulatorOptions) -> None:
        self._context = context
        self._options = options
        # A seeded private generator rather than reseeding context.random: the engine shares
        # that one between sessions (and uses it for restart jitter).
        self._rng = context.random if options.seed is None else random.Random(options.seed)
        self._provider = context.session.provider
        phone = "".join(c for c in context.session.phone or "" if c.isdigit())
        self._cast: Cast = make_cast(
            self._rng,
            contacts=options.contacts,
            phone=phone or None,
            name=context.session.display_name,
        )
        self._contacts = {contact.jid: contact for contact in self._cast.contacts}
        self._groups = {group.jid: group for group in self._cast.groups}
        self._chats = {jid: _ChatState() for jid in (*self._contacts, *self._groups)}
        self._extra_chats: collections.OrderedDict[str, tuple[ChatRef, _ChatState]] = (
            collections.OrderedDict()
        )
        self._online = dict.fromkeys(self._contacts, False)
        self._recent: collections.deque[_Posted] = collections.deque(maxlen=RECENT_MESSAGES)
        self._pending: collections.deque[_Outgoing] = collections.deque(maxlen=PENDING_STATUSES)
        # Scenes queue their next beats here; they never queue more than a couple.
        self._followups: collections.deque[Beat] = collections.deque(maxlen=8)
        # Message ids: unique per session, also across restarts (the start time is in them),
        # so a restarted session's messages are not mistaken for redeliveries.
        started = int(context.clock().timestamp() * 1000)
        seed = "" if options.seed is None else str(options.seed)
        self._id_prefix = f"SIM{seed}-{started:X}-"
        self._ids = 0
        self._limit = min(
            (n for n in (options.max_events, options.fail_after) if n is not None), default=None
        )
        self._failed = False
        self._scope: trio.CancelScope | None = None
        self.emitted = 0
        """Events handed to `context.emit` so far (whether or not the engine kept them)."""
        self.connected = False

    @property
    def me(self) -> Party:
        """The session's own account."""
        return self._cast.me

    def statistics(self) -> CompanyStatistics:
        return CompanyStatistics(
            emitted=self.emitted,
            connected=self.connected,
            chats=len(self._chats) + len(self._extra_chats),
            recent_messages=len(self._recent),
            pending_statuses=len(self._pending),
            queued_beats=len(self._followups),
        )

    # -- running ------------------------------------------------------------------------------

    async def run(self) -> None:
        """Link, then simulate while serving commands; see `run` (the module function)."""
        logger.debug(
            "simulated session %s: %s, %d contacts, seed %s",
            self._context.session.id,
            self._cast.company,
            len(self._cast.contacts),
            self._options.seed,
        )
        duration = self._options.duration
        with trio.move_on_after(math.inf if duration is None else duration):
            async with trio.open_nursery() as nursery:
                self._scope = nursery.cancel_scope
                nursery.start_soon(self._serve_commands)
                await self._link()
                if self._options.benchmark:
                    await self._flood()
                else:
                    await self._chatter()
        if self._failed:
            # Raised here, outside the nursery, so the engine sees a plain RuntimeError.
            fail_after = self._options.fail_after
            raise RuntimeError(
                f"simulated crash after {self.emitted} events (fail_after={fail_after})"
            )

    async def _emit(self, events: Sequence[Event]) -> None:
        """Emit `events` (cut short at a limit); once a limit is reached, end the session.

        Never returns after the limit: it cancels the session's nursery and checkpoints, so
        whichever task called it unwinds.
        """
        if self._limit is not None:
            events = events[: max(self._limit - self.emitted, 0)]
        if events:
            self.emitted += len(events)
            await self._context.emit(*events)
        if self._limit is not None and self.emitted >= self._limit:
            fail_after = self._options.fail_after
            self._failed = fail_after is not None and self.emitted >= fail_after
            assert self._scope is not None
            self._scope.cancel()
            await trio.lowlevel.checkpoint()

    async def _link(self) -> None:
        """connecting → QR codes (attempt 1..n) → connected, as when a phone scans the code."""
        clock = self._context.clock
        await self._emit([self._status(clock(), SessionState.CONNECTING)])
        if not self._options.benchmark and self._options.qr_rounds:
            await trio.sleep(self._rng.uniform(0.5, 1.5))  # WhatsApp Web fetches its first code
            for attempt in range(1, self._options.qr_rounds + 1):
                payload = qr_payload(self._rng)
                qr = SessionQR(
                    provider=self._provider,
                    occurred_at=clock(),
                    qr=payload,
                    image_data_url=qr_image_data_url(payload),
                    attempt=attempt,
                )
                await self._emit([qr])
                await trio.sleep(self._rng.uniform(*QR_SECONDS))
        self.connected = True
        await self._emit([self._status(clock(), SessionState.CONNECTED, me=self.me)])

    async def _chatter(self) -> None:
        """Human pacing: exponential waits, `rate` events per second on average."""
        rate = self._options.rate
        wait = self._rng.expovariate(rate)
        while True:
            await trio.sleep(wait)
            events = self._next_beat(self._context.clock())
            await self._emit(events)
            # One exponential wait per event (a beat may carry two): a Poisson stream of `rate`.
            wait = sum(self._rng.expovariate(rate) for _ in range(max(1, len(events))))

    async def _flood(self) -> None:
        """Benchmark pacing: as many events as `rate` allows, in batches, no human waits."""
        rate = self._options.rate
        per_tick = max(1, min(BENCHMARK_BATCH, math.ceil(rate * BENCHMARK_TICK)))
        start = trio.current_time()
        planned = 0
        while True:
            # A checkpoint every round even when behind schedule, so commands and
            # cancellation are served at any rate.
            await trio.sleep_until(start + planned / rate)
            behind = int((trio.current_time() - start) * rate) - planned
            size = min(BENCHMARK_BATCH, max(per_tick, behind))
            now = self._context.clock()
            batch: list[Event] = []
            while len(batch) < size:
                batch.extend(self._next_beat(now))
            planned += len(batch)
            await self._emit(batch)

    # -- commands -----------------------------------------------------------------------------

    async def _serve_commands(self) -> None:
        async for command in self._context.commands:
            try:
                command.reply(await self._answer(command))
            finally:
                # Only reaches the engine when the session ended mid-command (a command is
                # answered once; later replies are ignored).
                command.reply(CommandResult(False, "the simulated session ended"))

    async def _answer(self, command: Command) -> CommandResult:
        if isinstance(command, TestConnection):
            message = (
                f"connected as {self.me.phone} ({self.me.name})"
                if self.connected
                else "waiting for the QR code to be scanned"
            )
            return CommandResult(
                True, message, {"connected": self.connected, "events": self.emitted}
            )
        if isinstance(command, SendText):
            return await self._send_text(command.chat_id, command.text)
        return CommandResult(
            False,
            f"unsupported command {type(command).__name__}: "
            "the simulator answers TestConnection and SendText",
        )

    async def _send_text(self, chat_id: str, text: str) -> CommandResult:
        if not self.connected:
            return CommandResult(False, "not connected yet: the QR code has not been scanned")
        if not text.strip():
            return CommandResult(False, "cannot send an empty message")
        found = self._chat_for(chat_id)
        if found is None:
            return CommandResult(
                False, f"cannot send to {chat_id!r}: not a WhatsApp chat id (…@c.us or …@g.us)"
            )
        chat, state = found
        now = self._context.clock()
        message = Message(id=self._next_id(), kind=MessageKind.TEXT, from_me=True, text=text)
        sent = MessageSent(
            provider=self._provider, occurred_at=now, chat=chat, message=message, sender=self.me
        )
        await self._emit([*self._open(chat, state, now, text), sent])
        self._pending.append(_Outgoing(chat=chat, message_id=message.id))
        self._remember(chat, message, self.me, self._cast.lang)
        return CommandResult(True, "sent", {"message_id": message.id, "chat_id": chat.id})

    def _chat_for(self, chat_id: str) -> tuple[ChatRef, _ChatState] | None:
        if chat_id in self._contacts:
            return self._contacts[chat_id].chat(), self._chats[chat_id]
        if chat_id in self._groups:
            return self._groups[chat_id].chat(), self._chats[chat_id]
        if chat_id in self._extra_chats:
            self._extra_chats.move_to_end(chat_id)
            return self._extra_chats[chat_id]
        local, _, server = chat_id.partition("@")
        kinds = {"c.us": ChatKind.DIRECT, "s.whatsapp.net": ChatKind.DIRECT, "g.us": ChatKind.GROUP}
        if server not in kinds or not local.isdigit():
            return None
        entry = (ChatRef(id=chat_id, kind=kinds[server]), _ChatState())
        self._extra_chats[chat_id] = entry
        if len(self._extra_chats) > EXTRA_CHATS:
            self._extra_chats.popitem(last=False)
        return entry

    # -- choosing what happens next ---------------------------------------------------------

    def _next_beat(self, now: datetime) -> list[Event]:
        if self._followups:
            return self._followups.popleft()(now)
        has_recent = 1 if self._recent else 0
        scenes: tuple[tuple[Beat, float], ...] = (
            (self._customer_writes, 28),
            (self._group_chatter, 10),
            (self._operator_writes, 10),
            (self._status_progress, 8 * min(len(self._pending), 6)),
            (self._presence_flip, 8),
            (self._reaction, 3 * has_recent),
            (self._edit, 2 * has_recent),
            (self._delete, 1 * has_recent),
            (self._housekeeping, 4),
            (self._group_rename, 1),
            (self._contact_update, 2),
            (self._story, 3),  # noise: status@broadcast
            (self._system_notice, 2),  # noise: system notification
        )
        beats, weights = zip(*scenes, strict=True)
        beat: Beat = self._rng.choices(beats, weights)[0]
        return beat(now)

    # -- scenes -----------------------------------------------------------------------------

    def _customer_writes(self, now: datetime) -> list[Event]:
        contact = self._rng.choice(self._cast.contacts)
        self._followups.append(lambda at: self._customer_message(at, contact))
        return [self._presence(now, contact.chat(), contact.party(), PresenceState.TYPING)]

    def _customer_message(self, now: datetime, contact: Contact) -> list[Event]:
        chat, state = contact.chat(), self._chats[contact.jid]
        message = self._incoming_message(contact.lang)
        sender = contact.party()
        events = [
            *self._open(chat, state, now, message.text or message.caption),
            MessageReceived(
                provider=self._provider, occurred_at=now, chat=chat, sender=sender, message=message
            ),
        ]
        state.unread += 1
        self._remember(chat, message, sender, contact.lang)
        if self._rng.random() < 0.35:
            reply_to = message.id if self._rng.random() < 0.2 else None
            self._followups.append(lambda at: self._operator_message(at, contact, reply_to))
        return events

    def _incoming_message(self, lang: str) -> Message:
        book = phrase_book(lang)
        roll = self._rng.random()
        message_id = self._next_id()
        if roll < 0.85:
            text = self._rng.choice(book.incoming)
            return Message(id=message_id, kind=MessageKind.TEXT, from_me=False, text=text)
        if roll < 0.93:
            media = Media(mime_type="image/jpeg", size=self._rng.randint(40_000, 400_000))
            caption = self._rng.choice(book.captions) if self._rng.random() < 0.6 else None
            return Message(
                id=message_id, kind=MessageKind.IMAGE, from_me=False, caption=caption, media=media
            )
        if roll < 0.98:
            media = Media(mime_type="audio/ogg; codecs=opus", size=self._rng.randint(4_000, 90_000))
            return Message(id=message_id, kind=MessageKind.VOICE, from_me=False, media=media)
        name = book.document.format(n=self._rng.randint(1000, 9999))
        media = Media(
            mime_type="application/pdf", file_name=name, size=self._rng.randint(20_000, 900_000)
        )
        return Message(id=message_id, kind=MessageKind.DOCUMENT, from_me=False, media=media)

    def _group_chatter(self, now: datetime) -> list[Event]:
        group = self._rng.choice(self._cast.groups)
        member = self._rng.choice(group.members)
        if self._rng.random() < 0.4:
            self._followups.append(lambda at: self._group_message(at, group, member))
            return [self._presence(now, group.chat(), member.party(), PresenceState.TYPING)]
        return self._group_message(now, group, member)

    def _group_message(self, now: datetime, group: Group, member: Contact) -> list[Event]:
        chat, state = group.chat(), self._chats[group.jid]
        text = self._rng.choice(phrase_book(group.lang).group_lines)
        message = Message(id=self._next_id(), kind=MessageKind.TEXT, from_me=False, text=text)
        sender = member.party()
        events = [
            *self._open(chat, state, now, text),
            MessageReceived(
                provider=self._provider, occurred_at=now, chat=chat, sender=sender, message=message
            ),
        ]
        state.unread += 1
        self._remember(chat, message, sender, group.lang)
        return events

    def _operator_writes(self, now: datetime) -> list[Event]:
        if self._rng.random() < 0.8:
            return self._operator_message(now, self._rng.choice(self._cast.contacts), None)
        group = self._rng.choice(self._cast.groups)
        return self._operator_message(now, group, None)

    def _operator_message(
        self, now: datetime, to: Contact | Group, reply_to: str | None
    ) -> list[Event]:
        """The operator types on the phone: the message, and the chat is read on the way."""
        chat, state = to.chat(), self._chats[to.jid]
        book = phrase_book(to.lang)
        text = self._rng.choice(book.group_lines if isinstance(to, Group) else book.replies)
        message = Message(
            id=self._next_id(), kind=MessageKind.TEXT, from_me=True, text=text, reply_to_id=reply_to
        )
        events: list[Event] = [
            *self._open(chat, state, now, text),
            MessageSent(
                provider=self._provider, occurred_at=now, chat=chat, message=message, sender=self.me
            ),
        ]
        if state.unread:
            state.unread = 0
            events.append(self._chat_update(now, chat, unread_count=0))
        self._pending.append(_Outgoing(chat=chat, message_id=message.id))
        self._remember(chat, message, self.me, to.lang)
        return events

    def _status_progress(self, now: datetime) -> list[Event]:
        # Mostly the oldest first, as recipients read in order, but not strictly.
        index = self._rng.randrange(min(3, len(self._pending)))
        outgoing = self._pending[index]
        outgoing.state = _NEXT_STATE[outgoing.state]
        if outgoing.state is DeliveryState.READ:
            del self._pending[index]
        return [
            MessageStatus(
                provider=self._provider,
                occurred_at=now,
                chat=outgoing.chat,
                message_id=outgoing.message_id,
                state=outgoing.state,
            )
        ]

    def _presence_flip(self, now: datetime) -> list[Event]:
        contact = self._rng.choice(self._cast.contacts)
        online = not self._online[contact.jid]
        self._online[contact.jid] = online
        state = PresenceState.ONLINE if online else PresenceState.OFFLINE
        return [self._presence(now, contact.chat(), contact.party(), state)]

    def _reaction(self, now: datetime) -> list[Event]:
        target = self._rng.choice(self._recent)
        if target.author.is_me:
            reactor = self._someone_in(target.chat)
        else:
            reactor = self.me if self._rng.random() < 0.6 else self._someone_in(target.chat)
        # Now and then a reaction is taken back: WhatsApp sends an empty one.
        emoji = "" if self._rng.random() < 0.1 else self._rng.choice(REACTIONS)
        return [
            MessageReaction(
                provider=self._provider,
                occurred_at=now,
                chat=target.chat,
                sender=reactor,
                message_id=self._next_id(),
                target_id=target.message_id,
                emoji=emoji,
            )
        ]

    def _edit(self, now: datetime) -> list[Event]:
        texts = [posted for posted in self._recent if posted.kind is MessageKind.TEXT]
        if not texts:
            return self._customer_writes(now)
        target = self._rng.choice(texts)
        text = self._rng.choice(phrase_book(target.lang).corrections)
        return [
            MessageEdited(
                provider=self._provider,
                occurred_at=now,
                chat=target.chat,
                message_id=target.message_id,
                text=text,
            )
        ]

    def _delete(self, now: datetime) -> list[Event]:
        target = self._rng.choice(self._recent)
        self._recent.remove(target)
        for outgoing in self._pending:
            if outgoing.message_id == target.message_id:
                self._pending.remove(outgoing)
                break
        return [
            MessageDeleted(
                provider=self._provider,
                occurred_at=now,
                chat=target.chat,
                message_id=target.message_id,
            )
        ]

    def _housekeeping(self, now: datetime) -> list[Event]:
        """The operator opens an unread chat on the phone (unread → 0), or pins one."""
        unread = [jid for jid, state in self._chats.items() if state.unread]
        if unread:
            jid = self._rng.choice(unread)
            self._chats[jid].unread = 0
            return [self._chat_update(now, self._known_chat(jid), unread_count=0)]
        created = [jid for jid, state in self._chats.items() if state.created]
        if not created:
            return self._customer_writes(now)
        jid = self._rng.choice(created)
        state = self._chats[jid]
        state.pinned = not state.pinned
        return [self._chat_update(now, self._known_chat(jid), pinned=state.pinned)]

    def _group_rename(self, now: datetime) -> list[Event]:
        """A member renames a group: chat.updated, and WhatsApp's system notice about it."""
        group = self._rng.choice(self._cast.groups)
        book = phrase_book(group.lang)
        titles = [title for title in book.groups if title != group.title]
        group.title = self._rng.choice(titles)
        actor = self._rng.choice(group.members)
        chat, state = group.chat(), self._chats[group.jid]
        notice = book.renamed.format(actor=actor.name, title=group.title)
        return [
            *self._open(chat, state, now, None),
            self._chat_update(now, chat, title=group.title),
            self._system_message(now, chat, actor.party(), notice),
        ]

    def _contact_update(self, now: datetime) -> list[Event]:
        """A contact changes their profile name or picture."""
        contact = self._rng.choice(self._cast.contacts)
        avatar = None
        if self._rng.random() < 0.5:
            contact.name = _renamed(contact.name, self._rng.choice(_EMOJI_SUFFIXES))
        else:
            avatar = avatar_data_url(contact.name, self._rng)
        return [
            ContactUpdated(
                provider=self._provider,
                occurred_at=now,
                contact=contact.party(),
                avatar_url=avatar,
            )
        ]

    def _story(self, now: datetime) -> list[Event]:
        """Noise: a contact posts a story, which arrives as a status@broadcast message."""
        contact = self._rng.choice(self._cast.contacts)
        book = phrase_book(contact.lang)
        message_id = self._next_id()
        if self._rng.random() < 0.7:
            message = Message(
                id=message_id,
                kind=MessageKind.IMAGE,
                from_me=False,
                caption=self._rng.choice(book.captions),
                media=Media(mime_type="image/jpeg", size=self._rng.randint(60_000, 600_000)),
            )
        else:
            text = self._rng.choice(book.incoming)
            message = Message(id=message_id, kind=MessageKind.TEXT, from_me=False, text=text)
        return [
            MessageReceived(
                provider=self._provider,
                occurred_at=now,
                chat=ChatRef(id="status@broadcast", kind=ChatKind.STATUS),
                sender=contact.party(),
                message=message,
            )
        ]

    def _system_notice(self, now: datetime) -> list[Event]:
        """Noise: "X added Y" in a group, or "security code changed" in a direct chat."""
        if self._rng.random() < 0.6:
            group = self._rng.choice(self._cast.groups)
            actor, other = self._rng.choice(group.members), self._rng.choice(self._cast.contacts)
            notice = phrase_book(group.lang).added.format(actor=actor.name, other=other.name)
            return [self._system_message(now, group.chat(), actor.party(), notice)]
        contact = self._rng.choice(self._cast.contacts)
        notice = phrase_book(contact.lang).security.format(actor=contact.name)
        return [self._system_message(now, contact.chat(), contact.party(), notice)]

    # -- building blocks --------------------------------------------------------------------

    def _next_id(self) -> str:
        self._ids += 1
        return f"{self._id_prefix}{self._ids:08d}"

    def _open(
        self, chat: ChatRef, state: _ChatState, now: datetime, first_message: str | None
    ) -> list[Event]:
        """`chat.created` the first time a chat is used, else nothing."""
        if state.created:
            return []
        state.created = True
        return [
            ChatCreated(
                provider=self._provider, occurred_at=now, chat=chat, first_message=first_message
            )
        ]

    def _remember(self, chat: ChatRef, message: Message, author: Party, lang: str) -> None:
        self._recent.append(
            _Posted(chat=chat, message_id=message.id, author=author, kind=message.kind, lang=lang)
        )

    def _known_chat(self, jid: str) -> ChatRef:
        if jid in self._contacts:
            return self._contacts[jid].chat()
        return self._groups[jid].chat()

    def _someone_in(self, chat: ChatRef) -> Party:
        """Another participant of `chat`: the contact, or a group member."""
        if chat.id in self._contacts:
            return self._contacts[chat.id].party()
        if chat.id in self._groups:
            return self._rng.choice(self._groups[chat.id].members).party()
        # A chat opened by SendText: the person at that number.
        return Party(id=chat.id, phone="+" + chat.id.partition("@")[0])

    def _status(self, now: datetime, state: SessionState, *, me: Party | None = None) -> Event:
        return SessionStatus(provider=self._provider, occurred_at=now, state=state, me=me)

    def _presence(
        self, now: datetime, chat: ChatRef, who: Party, state: PresenceState
    ) -> PresenceUpdated:
        return PresenceUpdated(
            provider=self._provider, occurred_at=now, chat=chat, participant=who, state=state
        )

    def _chat_update(
        self,
        now: datetime,
        chat: ChatRef,
        *,
        title: str | None = None,
        unread_count: int | None = None,
        pinned: bool | None = None,
    ) -> ChatUpdated:
        return ChatUpdated(
            provider=self._provider,
            occurred_at=now,
            chat=chat,
            title=title,
            unread_count=unread_count,
            pinned=pinned,
        )

    def _system_message(self, now: datetime, chat: ChatRef, actor: Party, text: str) -> Event:
        message = Message(id=self._next_id(), kind=MessageKind.SYSTEM, from_me=False, text=text)
        return MessageReceived(
            provider=self._provider, occurred_at=now, chat=chat, sender=actor, message=message
        )


def _renamed(name: str, suffix: str) -> str:
    """`name` with an emoji added, or its trailing emoji dropped if it has one."""
    head, _, tail = name.rpartition(" ")
    if head and not any(c.isalnum() for c in tail):
        return head
    return f"{name} {suffix}"
