"""The HTTP side of the gateway as a Quart-Trio blueprint: REST, health, metrics, and `/ws`.

`create_blueprint(get_engine)` serves the engine that `get_engine()` returns: the standalone
server passes its running engine; `OmniRelay` (the extension for a user's own QuartTrio app)
starts the engine in the app's lifespan. In the standalone server websocket upgrades to `/ws`
never reach Quart (the native listener serves them); embedded, the `/ws` route here serves them
through ASGI with the same endpoint logic.

Errors are JSON `{"error": {"code", "message"}}` with a fitting status (docs/rest.md lists the
codes); a client never sees a traceback.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Mapping
from typing import Any

import trio
from quart import Blueprint, Quart, Response, current_app, request, websocket
from quart_trio import QuartTrio
from werkzeug.exceptions import HTTPException

from omnirelay.protocol._dialect_base import iso_millis
from omnirelay.protocol._errors import RemoteProtocolError
from omnirelay.protocol._events import ChatKind
from omnirelay.protocol._json import dumps, loads
from omnirelay.protocol._records import ChatRecord
from omnirelay.protocol._socketio import RESERVED_EVENTS

from ._auth import AuthError, Principal, token_from_request
from ._config import Config, load_config
from ._connections import ConnectionLimitExceeded
from ._engine import Engine, SessionError, open_engine
from ._hub import Target
from ._inbound import InboundRequest, handle_inbound
from ._metrics import CONTENT_TYPE
from ._provider import TestConnection
from ._store import MessageView, Page, StoreError
from ._transports import QuartWebSocketTransport, quart_engineio_polling, quart_engineio_websocket
from ._webhooks_api import register_webhook_routes
from ._ws_endpoint import CLOSE_KICKED, CLOSE_KICKED_RECONNECT, EnvelopeConnection, parse_since

__all__ = ["ApiError", "OmniRelay", "create_app", "create_blueprint"]

logger = logging.getLogger("omnirelay.engine.app")

INDIVIDUAL = frozenset({ChatKind.DIRECT})
GROUPS = frozenset({ChatKind.GROUP})
ALL_CHATS = frozenset({ChatKind.DIRECT, ChatKind.GROUP, ChatKind.CHANNEL, ChatKind.BROADCAST})
COMMAND_TIMEOUT = 10.0


class ApiError(Exception):
    """An error answered as `{"error": {"code", "message"}}` with `status`."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def json_response(body: Any, status: int = 200) -> Response:
    return Response(dumps(body), status=status, content_type="application/json")


def error_response(status: int, code: str, message: str) -> Response:
    return json_response({"error": {"code": code, "message": message}}, status)


_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
    429: "too_many_requests",
}


def _page_response(engine: Engine, name: str, items: list[Any], page: Page[Any]) -> Response:
    """A listing page: the items, the cursor to the next page, and the log position the page
    was read at (subscribe or resume from there and nothing is missed in between)."""
    return json_response(
        {name: items, "nextCursor": page.next_cursor, "seq": f"{engine.store.epoch}:{page.seq}"}
    )


def _http_error(error: HTTPException) -> Response:
    status = error.code or 500
    response = error_response(
        status, _HTTP_CODES.get(status, "http_error"), error.description or ""
    )
    if status == 413:
        # The body was not read: the connection cannot carry another request (Hypercorn would
        # wait for the app to take the rest, the client for an answer to its next request).
        response.headers["Connection"] = "close"
    return response


def cors_headers(
    origins: tuple[str, ...], credentials: bool, headers: Mapping[str, str]
) -> tuple[tuple[str, str], ...]:
    """CORS response headers for a request from `headers["origin"]`, or () if not allowed.

    `origins` is the allow list (`"*"` allows any origin; with credentials the origin is still
    echoed, never `*`, as browsers require).
    """
    origin = headers.get("origin")
    if not origin or not origins or (origin not in origins and "*" not in origins):
        return ()
    result = [
        ("Access-Control-Allow-Origin", origin),
        ("Vary", "Origin"),
        ("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS"),
        ("Access-Control-Allow-Headers", "authorization, content-type"),
    ]
    if credentials:
        result.append(("Access-Control-Allow-Credentials", "true"))
    return tuple(result)


def chat_json(chat: ChatRecord) -> dict[str, Any]:
    """A chat in REST answers: the `chat` object of `whatsapp:new-message`."""
    return {
        "id": str(chat.id),
        "chatId": chat.provider_chat_id,
        "chatName": chat.title,
        "chatType": "group" if chat.kind is ChatKind.GROUP else "individual",
        "kind": chat.kind.value,
        "isGroup": chat.kind is ChatKind.GROUP,
        "lastMessageAt": iso_millis(chat.last_message_at) if chat.last_message_at else None,
        "lastMessageText": chat.last_message_text,
        "unreadCount": chat.unread_count,
    }


def message_json(message: MessageView) -> dict[str, Any]:
    return {
        "id": str(message.record.id),
        "messageId": message.record.provider_message_id,
        "chatId": str(message.chat_id),
        "fromMe": message.from_me,
        "fromNumber": message.sender_id,
        "fromName": message.sender_name,
        "body": message.text,
        "messageType": message.kind,
        "status": message.status,
        "timestamp": iso_millis(message.occurred_at),
        "edited": message.edited,
        "deleted": message.deleted,
        "mediaUrl": message.media_url,
    }


def _limit(default: int = 50, maximum: int = 500) -> int:
    raw = request.args.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 1 <= int(raw) <= maximum:
        raise ApiError(400, "invalid_parameter", f"limit must be an integer from 1 to {maximum}")
    return int(raw)


def _bool_arg(name: str) -> bool | None:
    raw = request.args.get(name)
    if raw is None:
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise ApiError(400, "invalid_parameter", f"{name} must be true or false")


async def _json_body() -> dict[str, Any]:
    raw = await request.get_data(cache=False, as_text=False)
    if not raw:
        return {}
    try:
        body = loads(raw)
    except RemoteProtocolError:
        raise ApiError(400, "invalid_json", "the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "the request body must be a JSON object")
    return body


def create_blueprint(
    get_engine: Callable[[], Engine | None],
    *,
    socketio_path: str = "/socket.io/",
    websocket_path: str = "/ws",
    name: str = "omnirelay",
) -> Blueprint:
    """The gateway's routes, bound to the engine `get_engine()` returns when a request comes."""
    bp = Blueprint(name, __name__)

    def engine() -> Engine:
        current = get_engine()
        if current is None or not current.ready:
            raise ApiError(503, "not_ready", "the gateway is starting or stopping")
        return current

    def caller() -> tuple[Principal | None, bool]:
        """(principal, is_admin) of the request; ApiError 401 when neither."""
        gateway = engine()
        token = token_from_request(
            {k.lower(): v for k, v in request.headers.items()},
            {"token": request.args.get("token", "")},
        )
        if gateway.auth.is_admin(token):
            return None, True
        try:
            return gateway.auth.verify(token), False
        except AuthError as exc:
            raise ApiError(401, exc.code, exc.message) from None

    def tenant_of_request(body: dict[str, Any] | None = None) -> tuple[str | None, bool]:
        """The tenant a request acts for: the token's; an admin may name one (or None: all)."""
        principal, admin = caller()
        if not admin:
            assert principal is not None
            return principal.tenant, False
        named = (body or {}).get("tenant") or request.args.get("tenant")
        if named is not None and not isinstance(named, str):
            raise ApiError(400, "invalid_body", "tenant must be a string")
        return named, True

    register_webhook_routes(bp, engine, tenant_of_request)

    async def session_for_request(session_id: str) -> Any:
        tenant, admin = tenant_of_request()
        row = await engine().store.get_session(session_id)
        if row is None or (not admin and row.record.tenant_id != tenant):
            # Another tenant's session is answered exactly like a missing one.
            raise ApiError(404, "session_not_found", f"no session {session_id!r}")
        return row

    async def chat_for_request(chat_id: int) -> ChatRecord:
        tenant, admin = tenant_of_request()
        found = await engine().store.get_chat(chat_id)
        if found is None or (not admin and found[1] != tenant):
            raise ApiError(404, "chat_not_found", f"no chat {chat_id}")
        return found[0]

    @bp.after_request
    async def _cors(response: Response) -> Response:
        # Every answer of the gateway's routes (REST and Socket.IO polling, preflights
        # included) carries the configured CORS headers (server.cors_origins): one place.
        current = get_engine()
        if current is not None:
            config = current.config.server
            headers = {k.lower(): v for k, v in request.headers.items()}
            for name, value in cors_headers(config.cors_origins, config.cors_credentials, headers):
                response.headers[name] = value
        return response

    @bp.errorhandler(ApiError)
    async def _api_error(error: ApiError) -> Response:
        return error_response(error.status, error.code, error.message)

    @bp.errorhandler(SessionError)
    async def _session_error(error: SessionError) -> Response:
        status = {"session_not_found": 404, "session_exists": 409}.get(error.code, 400)
        return error_response(status, error.code, error.message)

    @bp.errorhandler(StoreError)
    async def _store_error(error: StoreError) -> Response:
        logger.error("store unavailable: %s", error)
        return error_response(503, "store_unavailable", "storage is unavailable; retry later")

    @bp.errorhandler(HTTPException)
    async def _http_exception(error: HTTPException) -> Response:
        return _http_error(error)

    # -- health ------------------------------------------------------------------------------

    @bp.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok"})

    @bp.get("/readyz")
    async def readyz() -> Response:
        current = get_engine()
        if current is None or not current.ready:
            return error_response(503, "not_ready", "the gateway is starting or stopping")
        return json_response({"status": "ready", "epoch": current.store.epoch})

    @bp.get("/metrics")
    async def metrics() -> Response:
        current = get_engine()
        if current is None:
            return error_response(503, "not_ready", "the gateway is starting or stopping")
        return Response(current.metrics.render(), content_type=CONTENT_TYPE)

    # -- provider webhooks (engine/_inbound.py) -----------------------------------------------

    @bp.route("/hooks/<provider>/<session_id>", methods=["GET", "POST"])
    async def provider_webhook(provider: str, session_id: str) -> Response:
        gateway = engine()
        body = await request.get_data(cache=False, as_text=False)
        inbound = InboundRequest(
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            query=request.args.to_dict(),
            body=body.encode() if isinstance(body, str) else body,
        )
        reply = await handle_inbound(gateway, provider, session_id, inbound)
        response = Response(reply.encoded(), status=reply.status, content_type=reply.content_type)
        for name, value in reply.headers.items():
            response.headers[name] = value
        return response

    # -- sessions ----------------------------------------------------------------------------

    @bp.get("/api/sessions")
    async def list_sessions() -> Response:
        tenant, _admin = tenant_of_request()
        gateway = engine()
        rows = await gateway.store.list_sessions(tenant)
        return json_response({"sessions": [gateway.session_state(r) for r in rows]})

    @bp.post("/api/sessions")
    async def create_session() -> Response:
        body = await _json_body()
        tenant, admin = tenant_of_request(body)
        if tenant is None:
            raise ApiError(400, "invalid_body", "an admin must name the session's tenant")
        if not admin and "tenant" in body and body["tenant"] != tenant:
            raise ApiError(403, "forbidden", "a session can only be created in your own tenant")
        session_id, provider = body.get("id"), body.get("provider")
        options, name = body.get("options", {}), body.get("name")
        autostart = body.get("autostart", True)
        if not isinstance(session_id, str) or not isinstance(provider, str):
            raise ApiError(400, "invalid_body", "id and provider are required strings")
        if not isinstance(options, dict) or not (name is None or isinstance(name, str)):
            raise ApiError(400, "invalid_body", "options must be an object and name a string")
        if not isinstance(autostart, bool):
            raise ApiError(400, "invalid_body", "autostart must be true or false")
        gateway = engine()
        if await gateway.store.get_session(session_id) is not None:
            raise ApiError(409, "session_exists", f"session id {session_id!r} is taken")
        row = await gateway.create_session(
            session_id=session_id,
            tenant_id=tenant,
            provider=provider,
            name=name,
            options=options,
            autostart=autostart,
            start=autostart,
        )
        return json_response(gateway.session_state(row), 201)

    @bp.get("/api/sessions/<session_id>")
    async def get_session(session_id: str) -> Response:
        row = await session_for_request(session_id)
        return json_response(engine().session_state(row))

    @bp.delete("/api/sessions/<session_id>")
    async def delete_session(session_id: str) -> Response:
        await session_for_request(session_id)
        await engine().delete_session(session_id)
        return Response("", status=204)

    @bp.post("/api/sessions/<session_id>/connect")
    async def connect_session(session_id: str) -> Response:
        await session_for_request(session_id)
        gateway = engine()
        await gateway.start_session(session_id)
        return json_response(gateway.session_state(await session_for_request(session_id)))

    @bp.post("/api/sessions/<session_id>/disconnect")
    async def disconnect_session(session_id: str) -> Response:
        await session_for_request(session_id)
        gateway = engine()
        await gateway.stop_session(session_id)
        return json_response(gateway.session_state(await session_for_request(session_id)))

    @bp.post("/api/sessions/<session_id>/test")
    async def test_session(session_id: str) -> Response:
        await session_for_request(session_id)
        actor = engine().sessions.get(session_id)
        if actor is None:
            return json_response(
                {"ok": False, "message": "the session is not running", "details": {}}
            )
        result = await actor.command(TestConnection(), within=COMMAND_TIMEOUT)
        return json_response(
            {"ok": result.ok, "message": result.message, "details": dict(result.details)}
        )

    # -- chats and messages ------------------------------------------------------------------

    @bp.get("/api/whatsapp/sessions/<session_id>/chats")
    async def list_chats(session_id: str) -> Response:
        await session_for_request(session_id)
        chat_type = request.args.get("chatType")
        include_groups = _bool_arg("includeGroups")
        if chat_type is not None:
            kinds = {"all": ALL_CHATS, "group": GROUPS, "individual": INDIVIDUAL}.get(chat_type)
            if kinds is None:
                raise ApiError(
                    400, "invalid_parameter", "chatType must be all, group or individual"
                )
        else:
            kinds = ALL_CHATS if include_groups else INDIVIDUAL
        gateway = engine()
        try:
            page = await gateway.store.list_chats(
                session_id, kinds=kinds, limit=_limit(), cursor=request.args.get("cursor")
            )
        except ValueError as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from None
        return _page_response(gateway, "chats", [chat_json(c) for c in page.items], page)

    @bp.get("/api/chats/<int:chat_id>/messages")
    async def list_messages(chat_id: int) -> Response:
        await chat_for_request(chat_id)
        gateway = engine()
        try:
            page = await gateway.store.list_messages(
                chat_id, limit=_limit(), cursor=request.args.get("cursor")
            )
        except ValueError as exc:
            raise ApiError(400, "invalid_cursor", str(exc)) from None
        return _page_response(gateway, "messages", [message_json(m) for m in page.items], page)

    @bp.post("/api/chats/<int:chat_id>/read")
    async def mark_read(chat_id: int) -> Response:
        await chat_for_request(chat_id)
        gateway = engine()
        await gateway.store.mark_chat_read(chat_id, received_at=gateway.clock())
        found = await gateway.store.get_chat(chat_id)
        assert found is not None
        return json_response(chat_json(found[0]))

    # -- server API --------------------------------------------------------------------------

    @bp.post("/api/publish")
    async def publish() -> Response:
        body = await _json_body()
        tenant, _admin = tenant_of_request(body)
        if tenant is None:
            raise ApiError(400, "invalid_body", "an admin must name the tenant to publish to")
        event, data = body.get("event"), body.get("data")
        if not isinstance(event, str) or not event or event in RESERVED_EVENTS:
            raise ApiError(400, "invalid_body", "event must be a non-empty, non-reserved string")
        target = Target(
            namespace=body.get("namespace"),
            room=body.get("room"),
            connection_id=body.get("connection"),
        )
        if not all(
            v is None or isinstance(v, str)
            for v in (target.namespace, target.room, target.connection_id)
        ):
            raise ApiError(400, "invalid_body", "namespace, room and connection must be strings")
        gateway = engine()
        if len(dumps(data)) > gateway.config.limits.max_payload:
            raise ApiError(413, "payload_too_large", "data exceeds limits.max_payload")
        delivered = gateway.hub.publish_custom(tenant, event, data, target)
        return json_response({"delivered": delivered})

    @bp.get("/api/connections")
    async def list_connections() -> Response:
        tenant, _admin = tenant_of_request()
        connections = engine().connections.list(tenant)
        return json_response({"connections": [c.describe() for c in connections]})

    @bp.post("/api/connections/<connection_id>/disconnect")
    async def disconnect_connection(connection_id: str) -> Response:
        body = await _json_body()
        tenant, admin = tenant_of_request()
        reconnect = body.get("reconnect", False)
        if not isinstance(reconnect, bool):
            raise ApiError(400, "invalid_body", "reconnect must be true or false")
        connection = engine().connections.get(connection_id)
        if connection is None or (not admin and connection.tenant_id != tenant):
            raise ApiError(404, "connection_not_found", f"no connection {connection_id!r}")
        if reconnect:
            connection.kick(True, CLOSE_KICKED_RECONNECT, "disconnected by the server; reconnect")
        else:
            connection.kick(False, CLOSE_KICKED, "disconnected by the server")
        return json_response({"disconnected": connection_id, "reconnect": reconnect})

    # -- plain WebSocket through ASGI (embedded mode) ----------------------------------------

    # -- Socket.IO: long-polling always through here; websockets only when embedded ----------

    @bp.route(socketio_path, methods=["GET", "POST", "PUT", "OPTIONS"])
    async def socketio_polling() -> Response:
        return await quart_engineio_polling(engine().socketio)

    @bp.websocket(socketio_path)
    async def socketio_websocket() -> Response | None:
        gateway = engine()
        return await quart_engineio_websocket(
            gateway.socketio,
            max_bytes=gateway.config.clients.inbox_bytes,
            max_frames=gateway.config.clients.inbox_frames,
        )

    @bp.websocket(websocket_path)
    async def ws() -> Response | None:
        gateway = engine()
        token = token_from_request(
            {k.lower(): v for k, v in websocket.headers.items()},
            {"token": websocket.args.get("token", "")},
        )
        try:
            principal = gateway.auth.verify(token)
        except AuthError as exc:
            return error_response(401, exc.code, exc.message)
        try:
            since = parse_since(websocket.args.get("since"))
        except RemoteProtocolError as exc:
            return error_response(400, exc.code, str(exc))
        remote = websocket.remote_addr
        try:
            connection = EnvelopeConnection.open(
                gateway, principal, remote=remote, transport_name="websocket-asgi"
            )
        except ConnectionLimitExceeded as exc:
            gateway.metrics.limits.labels("connections").inc()
            return error_response(429, exc.code, str(exc))
        transport = QuartWebSocketTransport(
            max_bytes=gateway.config.clients.inbox_bytes,
            max_frames=gateway.config.clients.inbox_frames,
        )
        try:
            await websocket.accept()
        except BaseException:
            connection.abandon()
            raise
        async with trio.open_nursery() as nursery:
            nursery.start_soon(transport.run_writer)
            try:
                await connection.serve(transport, since=since)
            finally:
                nursery.cancel_scope.cancel()
        return None

    return bp


def _install_json_errors(app: Quart) -> None:
    @app.errorhandler(HTTPException)
    async def _http_exception(error: HTTPException) -> Response:
        return _http_error(error)

    @app.errorhandler(Exception)
    async def _unexpected(error: Exception) -> Response:
        logger.exception("unhandled error in %s %s", request.method, request.path, exc_info=error)
        return error_response(500, "internal_error", "an internal error occurred")


def create_app(engine: Engine) -> QuartTrio:
    """The standalone server's app: the blueprint bound to a running engine."""
    # `omnirelay` is a namespace package: Quart cannot find root or instance paths by itself.
    here = os.path.dirname(os.path.abspath(__file__))
    app = QuartTrio("omnirelay.engine", root_path=here, instance_path=here)
    app.config["MAX_CONTENT_LENGTH"] = engine.config.limits.max_payload
    config = engine.config
    app.register_blueprint(
        create_blueprint(
            lambda: engine, socketio_path=config.socketio.path, websocket_path=config.websocket.path
        )
    )
    _install_json_errors(app)
    return app


class OmniRelay:
    """Mounts the gateway into an existing QuartTrio app and runs its engine in the lifespan::

        app = QuartTrio(__name__)
        relay = OmniRelay(app, config=load_config("omnirelay.toml"))

    Your own routes keep working; the gateway's are added under `url_prefix` (default none).
    `relay.engine` is the running engine between startup and shutdown (`relay.started` is set
    once it runs).
    """

    def __init__(
        self,
        app: QuartTrio | None = None,
        *,
        config: Config | None = None,
        url_prefix: str | None = None,
        plugins: tuple[str | object, ...] = (),
    ) -> None:
        self.config = config if config is not None else load_config(None, os.environ)
        self.plugins = plugins
        self.engine: Engine | None = None
        self.url_prefix = url_prefix
        self.started = trio.Event()
        self._stop = trio.Event()
        self._stopped = trio.Event()
        if app is not None:
            self.init_app(app)

    def init_app(self, app: QuartTrio) -> None:
        blueprint = create_blueprint(
            lambda: self.engine,
            socketio_path=self.config.socketio.path,
            websocket_path=self.config.websocket.path,
        )
        app.register_blueprint(blueprint, url_prefix=self.url_prefix)
        app.before_serving(self._startup)
        app.after_serving(self._shutdown)

    async def _run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        try:
            async with open_engine(self.config, plugins=self.plugins) as engine:
                self.engine = engine
                self.started.set()
                task_status.started()
                await self._stop.wait()
        finally:
            self.engine = None
            self._stopped.set()

    async def _startup(self) -> None:
        self.started, self._stop, self._stopped = trio.Event(), trio.Event(), trio.Event()
        app = current_app._get_current_object()  # type: ignore[attr-defined]
        await app.nursery.start(self._run)

    async def _shutdown(self) -> None:
        # Stop the engine ourselves: quart-trio would otherwise wait 5 s for the background task.
        self._stop.set()
        await self._stopped.wait()
