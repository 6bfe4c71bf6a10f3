"""Ingest throughput of the SQLite store: N single-event ingests from C concurrent tasks.

    python bench/store_ingest.py                       # the default matrix
    python bench/store_ingest.py --events 20000 --concurrency 1 100 2000 --synchronous FULL

Each ingest is one MessageReceived (a new message in one of `--chats` direct chats), the way a
provider session hands events over one at a time. Prints one JSON document: per run the
events/s the callers saw, the log rows/s written (new chats add a ChatCreated row), and how
the writer batched them. Runs on a fresh database file in a temporary directory.
"""

from __future__ import annotations

import argparse
import json
import platform
import sqlite3
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import trio

from omnirelay.engine._schema import Synchronous
from omnirelay.engine._sqlite_store import open_sqlite_store
from omnirelay.protocol._events import (
    ChatKind,
    ChatRef,
    Message,
    MessageKind,
    MessageReceived,
    Party,
)
from omnirelay.protocol._records import SessionRecord

T0 = datetime(2025, 7, 16, 11, 0, tzinfo=UTC)


def make_events(count: int, chats: int) -> list[MessageReceived]:
    events = []
    for index in range(count):
        jid = f"7707{index % chats:07d}@c.us"
        events.append(
            MessageReceived(
                provider="evolution",
                occurred_at=T0 + timedelta(milliseconds=index),
                chat=ChatRef(id=jid, kind=ChatKind.DIRECT),
                sender=Party(id=jid, phone=jid[:11], name=f"Contact {index % chats}"),
                message=Message(
                    id=f"3EB0{index:012d}",
                    kind=MessageKind.TEXT,
                    from_me=False,
                    text=f"Привет! Как дела? Message number {index}",
                ),
            )
        )
    return events


async def run(
    *, events: int, concurrency: int, chats: int, synchronous: Synchronous, max_batch: int
) -> dict[str, Any]:
    batch = make_events(events, chats)
    with tempfile.TemporaryDirectory() as directory:
        path = str(Path(directory) / "bench.db")
        async with open_sqlite_store(path, synchronous=synchronous, max_batch=max_batch) as store:
            session = SessionRecord(id="s1", tenant_id="acme", provider="evolution")
            await store.put_session(session, provider_options={}, autostart=False)
            before = store.statistics()
            pending = iter(batch)
            received_at = datetime.now(UTC)

            async def worker() -> None:
                for event in pending:
                    await store.ingest("s1", [event], received_at=received_at)

            start = time.perf_counter()
            async with trio.open_nursery() as nursery:
                for _ in range(concurrency):
                    nursery.start_soon(worker)
            seconds = time.perf_counter() - start
            stats = store.statistics()
            batches = stats.batches - before.batches
            rows = stats.rows - before.rows
            assert await store.last_seq("acme") == rows == events + min(chats, events)
    return {
        "synchronous": synchronous,
        "concurrency": concurrency,
        "events": events,
        "seconds": round(seconds, 3),
        "events_per_s": round(events / seconds),
        "log_rows_per_s": round(rows / seconds),
        "batches": batches,
        "average_batch": round((stats.requests - before.requests) / batches, 1),
        "largest_batch": stats.largest_batch,
    }


async def main_async(arguments: argparse.Namespace) -> dict[str, Any]:
    runs = []
    for synchronous in arguments.synchronous:
        for concurrency in arguments.concurrency:
            runs.append(
                await run(
                    events=arguments.events,
                    concurrency=concurrency,
                    chats=arguments.chats,
                    synchronous=synchronous,
                    max_batch=arguments.max_batch,
                )
            )
    return {
        "bench": "store_ingest",
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "machine": platform.machine(),
        "chats": arguments.chats,
        "max_batch": arguments.max_batch,
        "runs": runs,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 100, 2000])
    parser.add_argument("--chats", type=int, default=200)
    parser.add_argument("--max-batch", type=int, default=256)
    parser.add_argument(
        "--synchronous", nargs="+", choices=["FULL", "NORMAL"], default=["FULL", "NORMAL"]
    )
    print(json.dumps(trio.run(main_async, parser.parse_args()), indent=2))


if __name__ == "__main__":
    main()
