"""The `omnirelay` command as a user runs it: a real process, real signals, real clients."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import jwt
import trio

from .conftest import WsClient

CLI = [sys.executable, "-m", "omnirelay.engine._cli"]


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY")}
    environment.update(env or {})
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=environment, timeout=30, check=False
    )


def test_token_mints_a_jwt_for_the_tenant() -> None:
    result = run_cli(
        "token", "--tenant", "acme", "--sub", "agent-7", env={"OMNIRELAY_JWT_SECRET": "s" * 32}
    )
    assert result.returncode == 0, result.stderr
    claims = jwt.decode(result.stdout.strip(), "s" * 32, algorithms=["HS256"])
    assert claims["tenant"] == "acme"
    assert claims["sub"] == "agent-7"
    assert claims["exp"] > claims["iat"]


def test_configuration_errors_exit_2_with_a_sentence(tmp_path: Path) -> None:
    result = run_cli("token", "--tenant", "acme")
    assert result.returncode == 2
    assert "OMNIRELAY_JWT_SECRET" in result.stderr
    assert "Traceback" not in result.stderr
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'many'\n")
    result = run_cli("serve", "--config", str(bad))
    assert result.returncode == 2
    assert "server.port" in result.stderr
    assert "Traceback" not in result.stderr


async def test_serve_demo_streams_the_simulated_company_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    config = tmp_path / "omnirelay.toml"
    # A quick extra simulated number in the demo tenant, so the test need not sit through the
    # demo sessions' QR rounds.
    config.write_text(
        '[[sessions]]\nid = "quick"\ntenant = "demo"\nprovider = "simulator"\n'
        "options = { rate = 40.0, qr_rounds = 0, seed = 3 }\n"
    )
    environment = {k: v for k, v in os.environ.items() if not k.startswith("OMNIRELAY")}
    process = await trio.lowlevel.open_process(
        [
            *CLI,
            "serve",
            "--demo",
            "--port",
            "0",
            "--db",
            str(tmp_path / "demo.db"),
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environment,
    )
    try:
        assert process.stdout is not None
        banner = b""
        with trio.fail_after(20):
            while b"socket.io-client front-end" not in banner:
                chunk = await process.stdout.receive_some()
                assert chunk, "the server exited before printing its banner"
                banner += chunk
        text = banner.decode()
        token = re.search(r"^  (eyJ\S+)$", text, re.MULTILINE)
        url = re.search(r"(ws://127\.0\.0\.1:\d+/ws)", text)
        assert token is not None
        assert url is not None
        watched = await trio.to_thread.run_sync(
            lambda: run_cli(
                "watch",
                "--url",
                url.group(1),
                "--token",
                token.group(1),
                "--filter",
                "event=new_message",
                "--count",
                "2",
            )
        )
        assert watched.returncode == 0, watched.stderr
        lines = [json.loads(line) for line in watched.stdout.splitlines()]
        assert [e["event"] for e in lines] == ["subscribed", "new_message"]
        refused = await trio.to_thread.run_sync(
            lambda: run_cli("watch", "--url", url.group(1), "--token", "nope", "--count", "1")
        )
        assert refused.returncode == 1
        assert "invalid_token" in refused.stderr
        client = await WsClient.connect(f"{url.group(1)}?token={token.group(1)}")
        message = await client.recv_event("new_message", seconds=15)
        assert message["data"]["source"] == "whatsapp"
        assert isinstance(message["data"]["message_id"], int)
        # The banner's curl, as printed: a customer writes in through the simulator's webhook.
        hook = re.search(
            r"curl -X POST (\S+/hooks/simulator/demo-1) "
            r"-H 'X-Simulator-Secret: (\S+)'.*?-d '(.+?)'$",
            text,
            re.MULTILINE | re.DOTALL,
        )
        assert hook is not None
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                hook.group(1),
                content=hook.group(3).encode(),
                headers={"X-Simulator-Secret": hook.group(2), "Content-Type": "application/json"},
            )
        assert answer.json() == {"ok": True, "stored": True}
        with trio.fail_after(15):
            while (await client.recv_event("new_message"))["data"]["text"] != "Olá!":
                pass
        process.send_signal(signal.SIGTERM)
        code, _reason = await client.wait_closed(seconds=10)
        assert code == 1001
        with trio.fail_after(15):
            assert await process.wait() == 0
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
