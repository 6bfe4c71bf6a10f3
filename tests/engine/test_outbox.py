"""The slow-consumer policy: send, coalesce latest-wins while behind, disconnect, drop."""

from __future__ import annotations

from collections.abc import Sequence

import attrs

from omnirelay.engine._frames import OutFrame
from omnirelay.engine._metrics import Metrics
from omnirelay.engine._outbox import Outbox


@attrs.define
class Transport:
    """A connection's buffer: takes frames until `capacity`, has a backlog until drained."""

    capacity: int = 100
    backlog: int = 0
    written: list[str] = attrs.field(factory=list)

    def send(self, frames: Sequence[OutFrame]) -> bool:
        if len(self.written) + len(frames) > self.capacity:
            return False  # all or none
        self.written.extend(frame.text for frame in frames)
        return True


@attrs.define
class Harness:
    transport: Transport
    outbox: Outbox
    metrics: Metrics
    overflows: list[int]

    def value(self, name: str) -> float:
        sample = self.metrics.registry.get_sample_value(name)
        return sample or 0.0


def harness(*, capacity: int = 100, max_held: int = 10) -> Harness:
    transport = Transport(capacity=capacity)
    metrics = Metrics()
    overflows: list[int] = []
    outbox = Outbox(
        send=transport.send,
        backlog=lambda: transport.backlog,
        overflow=lambda: overflows.append(1),
        metrics=metrics,
        max_held=max_held,
    )
    return Harness(transport, outbox, metrics, overflows)


def test_a_client_that_keeps_up_gets_every_frame_at_once() -> None:
    h = harness()
    for n in range(3):
        h.outbox.put((OutFrame(f"typing {n}"),), durable=False, coalesce="chat-1")
    h.outbox.put((OutFrame("message"),), durable=True)
    assert h.transport.written == ["typing 0", "typing 1", "typing 2", "message"]
    assert h.outbox.held == 0


def test_while_behind_each_key_keeps_only_its_latest_update_in_the_latest_position() -> None:
    h = harness()
    h.transport.backlog = 1
    h.outbox.put((OutFrame("a: typing"),), durable=False, coalesce="a")
    h.outbox.put((OutFrame("b: typing"),), durable=False, coalesce="b")
    h.outbox.put((OutFrame("a: paused"),), durable=False, coalesce="a")
    assert h.transport.written == []
    assert h.outbox.held == 2
    h.transport.backlog = 0
    h.outbox.flush()  # the transport drained
    assert h.transport.written == ["b: typing", "a: paused"]
    assert h.value("omnirelay_ephemeral_coalesced_total") == 1
    assert h.value("omnirelay_queue_drops_total") == 0


def test_nothing_overtakes_held_updates() -> None:
    h = harness()
    h.transport.backlog = 1
    h.outbox.put((OutFrame("qr 1"),), durable=False, coalesce="qr")
    h.outbox.put((OutFrame("qr 2"),), durable=False, coalesce="qr")
    h.outbox.put((OutFrame("message"),), durable=True)  # goes after the held update
    h.outbox.put((OutFrame("news"),), durable=False)  # no key: not held either
    assert h.transport.written == ["qr 2", "message", "news"]


def test_held_updates_wait_for_the_drain_even_once_the_backlog_is_gone() -> None:
    h = harness()
    h.transport.backlog = 1
    h.outbox.put((OutFrame("qr 1"),), durable=False, coalesce="qr")
    h.transport.backlog = 0
    h.outbox.put((OutFrame("qr 2"),), durable=False, coalesce="qr")  # replaces, keeps order
    assert h.transport.written == []
    h.outbox.flush()
    assert h.transport.written == ["qr 2"]


def test_a_durable_frame_that_does_not_fit_disconnects_the_client() -> None:
    h = harness(capacity=1)
    h.outbox.put((OutFrame("one"),), durable=True)
    h.outbox.put((OutFrame("two"),), durable=True)
    assert h.overflows == [1]
    assert h.value("omnirelay_slow_consumer_disconnects_total") == 1
    assert h.value("omnirelay_queue_drops_total") == 0


def test_an_ephemeral_frame_without_a_key_that_does_not_fit_is_dropped_and_counted() -> None:
    h = harness(capacity=1)
    h.outbox.put((OutFrame("one"),), durable=False)
    h.outbox.put((OutFrame("two"),), durable=False)
    assert h.transport.written == ["one"]
    assert h.overflows == []
    assert h.value("omnirelay_queue_drops_total") == 1


def test_held_keys_are_bounded_the_oldest_gives_way() -> None:
    h = harness(max_held=3)
    h.transport.backlog = 1
    for key in "abcde":
        h.outbox.put((OutFrame(key),), durable=False, coalesce=key)
    assert h.outbox.held == 3
    assert h.value("omnirelay_queue_drops_total") == 2
    h.outbox.flush()
    assert h.transport.written == ["c", "d", "e"]


def test_held_updates_that_no_longer_fit_are_dropped_when_flushed() -> None:
    h = harness(capacity=1)
    h.transport.backlog = 1
    h.outbox.put((OutFrame("a"),), durable=False, coalesce="a")
    h.outbox.put((OutFrame("b"),), durable=False, coalesce="b")
    h.outbox.flush()
    assert h.transport.written == ["a"]
    assert h.outbox.held == 0
    assert h.value("omnirelay_queue_drops_total") == 1


def test_a_durable_event_that_does_not_fit_whole_sends_none_of_its_frames() -> None:
    h = harness(capacity=3)
    h.outbox.put((OutFrame("e1 a"), OutFrame("e1 b")), durable=True)
    h.outbox.put((OutFrame("e2 a"), OutFrame("e2 b")), durable=True)  # one would fit: not enough
    assert h.transport.written == ["e1 a", "e1 b"]
    assert h.overflows == [1]


def test_an_ephemeral_events_frames_are_held_and_replaced_together() -> None:
    h = harness()
    h.transport.backlog = 1
    h.outbox.put((OutFrame("qr 1 / ww"), OutFrame("qr 1 / crm")), durable=False, coalesce="qr")
    h.outbox.put((OutFrame("qr 2 / ww"), OutFrame("qr 2 / crm")), durable=False, coalesce="qr")
    h.outbox.flush()
    assert h.transport.written == ["qr 2 / ww", "qr 2 / crm"]
