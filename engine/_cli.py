"""The `omnirelay` command: `serve` runs the gateway, `token` mints a development JWT.

    omnirelay serve [--config F] [--host H] [--port P] [--db PATH] [--demo]
    omnirelay token --tenant T [--sub U] [--ttl S] [--config F]
    omnirelay watch --token T [--url ws://127.0.0.1:3000/ws] [--filter key=value ...]

Exit status: 0 after a clean stop (SIGINT or SIGTERM: clients get 1001, sessions stop, the
store drains), 2 for a configuration or plugin error (the message says which key or module),
1 for anything else.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence

import attrs
import trio

from ._auth import Authenticator, new_secret
from ._config import Config, ConfigError, SessionConfig, load_config
from ._plugins import PluginError

__all__ = ["main"]

logger = logging.getLogger("omnirelay")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omnirelay", description="Real-time messaging gateway")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the gateway")
    serve.add_argument("--config", help="TOML configuration file (default: $OMNIRELAY_CONFIG)")
    serve.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port to listen on (default 3000)")
    serve.add_argument("--db", help="SQLite database file (default omnirelay.db)")
    serve.add_argument(
        "--demo",
        action="store_true",
        help="also run a simulated company (tenant 'demo') and print a token to watch it",
    )

    token = commands.add_parser("token", help="mint a development JWT (HS256)")
    token.add_argument("--tenant", required=True, help="tenant claim")
    token.add_argument("--sub", help="user (sub claim)")
    token.add_argument(
        "--ttl", type=float, default=3600.0, help="seconds of validity (default 3600)"
    )
    token.add_argument("--config", help="TOML configuration file (for auth.jwt_secret)")

    watch = commands.add_parser("watch", help="print the live events of /ws, one JSON line each")
    watch.add_argument("--token", required=True, help="client JWT")
    watch.add_argument("--url", default="ws://127.0.0.1:3000/ws", help="the /ws endpoint")
    watch.add_argument(
        "--filter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="subscribe with this filter (repeatable; keys: user_id, chat_id, session_id, "
        "source, event)",
    )
    watch.add_argument("--count", type=int, help="stop after this many events")
    return parser


def demo_config(config: Config) -> tuple[Config, str | None]:
    """The configuration plus the demo sessions (and a fresh secret if none is set)."""
    generated = None
    auth = config.auth
    if auth.jwt_secret is None:
        generated = new_secret()
        auth = attrs.evolve(auth, jwt_secret=generated)
    existing = {s.id for s in config.sessions}
    sessions = list(config.sessions)
    hook_secret = new_secret()  # the simulator's webhook, for a curl in the banner
    for number in range(1, config.demo.sessions + 1):
        session_id = f"demo-{number}"
        if session_id not in existing:
            sessions.append(
                SessionConfig(
                    id=session_id,
                    tenant=config.demo.tenant,
                    provider="simulator",
                    name=f"Demo WhatsApp {number}",
                    options={
                        "rate": config.demo.rate,
                        "seed": number,
                        "webhook_secret": hook_secret,
                    },
                )
            )
    return attrs.evolve(config, auth=auth, sessions=tuple(sessions)), generated


def _banner(config: Config, host: str, port: int, token: str, generated: bool) -> str:
    base = f"http://{host}:{port}"
    ws = f"ws://{host}:{port}{config.websocket.path}"
    lines = [
        "",
        f"omnirelay demo is running on {base} (tenant {config.demo.tenant!r}).",
        "",
        "Token (valid 24 h):",
        f"  {token}",
        "",
        "Watch the live events (Ctrl+C to stop):",
        f"  omnirelay watch --url {ws} --token {token}",
        f"  curl -H 'Authorization: Bearer {token}' {base}/api/sessions",
        f"  curl -H 'Authorization: Bearer {token}' \\\n"
        f"       '{base}/api/whatsapp/sessions/demo-1/chats?chatType=all'",
    ]
    demo_1 = next((s for s in config.sessions if s.id == "demo-1"), None)
    secret = demo_1.options.get("webhook_secret") if demo_1 is not None else None
    if secret:
        message = '{"id": "hello-1", "from": "+55 11 98765-4321", "name": "Maria", "text": "Olá!"}'
        lines += [
            "",
            "Write in as a customer (the simulator's webhook):",
            f"  curl -X POST {base}/hooks/simulator/demo-1 -H 'X-Simulator-Secret: {secret}' \\",
            f"       -H 'Content-Type: application/json' -d '{message}'",
        ]
    lines += [
        "",
        "Or from a socket.io-client front-end:",
        f"  io('{base}', {{ auth: {{ token: '<the token>' }} }})",
        "    .on('whatsapp:new-message', console.log)",
    ]
    if generated:
        lines += ["", "(No OMNIRELAY_JWT_SECRET was set: a random one is used for this run.)"]
    return "\n".join(lines) + "\n"


def _serve(args: argparse.Namespace) -> int:
    from ._server import serve

    config = load_config(args.config, os.environ)
    server = config.server
    if args.host is not None:
        server = attrs.evolve(server, host=args.host)
    if args.port is not None:
        server = attrs.evolve(server, port=args.port)
    config = attrs.evolve(config, server=server)
    if args.db is not None:
        config = attrs.evolve(config, storage=attrs.evolve(config.storage, path=args.db))
    generated = None
    if args.demo:
        config, generated = demo_config(config)
    logging.basicConfig(
        level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )

    async def main() -> None:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                _engine, (host, port) = await nursery.start(serve, config)
                # Everything allocated so far lives as long as the process: keep the cyclic
                # GC from walking it on every collection (DESIGN.md §9: p99 and CPU per
                # delivery drop sharply with many connections).
                gc.freeze()
                if args.demo:
                    token = Authenticator.from_config(config.auth).mint(
                        config.demo.tenant, subject="demo-user", ttl=86_400
                    )
                    sys.stdout.write(_banner(config, host, port, token, generated is not None))
                else:
                    sys.stdout.write(f"omnirelay listening on http://{host}:{port}\n")
                sys.stdout.flush()
                async for signum in signals:
                    logger.info("%s received: shutting down", signal.Signals(signum).name)
                    nursery.cancel_scope.cancel()
                    break

    trio.run(main)
    return 0


def _token(args: argparse.Namespace) -> int:
    config = load_config(args.config, os.environ)
    token = Authenticator.from_config(config.auth).mint(args.tenant, subject=args.sub, ttl=args.ttl)
    sys.stdout.write(token + "\n")
    return 0


def _watch(args: argparse.Namespace) -> int:
    from ._watch import WatchError, watch

    filters = []
    for item in args.filter:
        key, sep, value = item.partition("=")
        if not sep:
            sys.stderr.write(f"omnirelay: --filter {item!r}: use KEY=VALUE\n")
            return 2
        filters.append({key: int(value) if value.lstrip("-").isdigit() else value})
    try:
        trio.run(watch, args.url, args.token, filters, args.count, sys.stdout)
    except WatchError as exc:
        sys.stderr.write(f"omnirelay: {exc}\n")
        return 1
    except KeyboardInterrupt:
        pass
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "serve":
            return _serve(args)
        if args.command == "watch":
            return _watch(args)
        return _token(args)
    except (ConfigError, PluginError) as exc:
        sys.stderr.write(f"omnirelay: {exc}\n")
        return 2


if __name__ == "__main__":
    sys.exit(main())
