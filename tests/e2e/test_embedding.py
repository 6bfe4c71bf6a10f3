"""docs/examples/embedded_app.py, served as the docs say, works as the docs say."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import httpx
import hypercorn.config
import hypercorn.trio
import pytest
import trio

from .conftest import SECRET, WsClient

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "embedded_app.py"


async def test_the_documented_embedding_example_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OMNIRELAY_JWT_SECRET", SECRET)
    monkeypatch.setenv("OMNIRELAY_DB", str(tmp_path / "embedded.db"))
    spec = importlib.util.spec_from_file_location("embedded_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)

    config = hypercorn.config.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 1.0
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            lambda task_status: hypercorn.trio.serve(module.app, config, task_status=task_status)
        )
        base = binds[0]
        with trio.fail_after(10):
            await module.relay.started.wait()
        async with httpx.AsyncClient(base_url=base) as http:
            assert (await http.get("/hello")).json() == {"hello": "from your own route"}
            assert (await http.get("/readyz")).json()["status"] == "ready"
        token = module.relay.engine.auth.mint("acme")
        client = await WsClient.connect(base.replace("http", "ws") + f"/ws?token={token}")
        await client.send({"action": "ping", "id": 1})
        assert (await client.recv_event("pong"))["data"] == {"id": 1}
        await client.close()
        nursery.cancel_scope.cancel()
