"""The REST API of outgoing webhooks (docs/webhooks.md): endpoints, dead letters, replay.

`register_webhook_routes(bp, get_engine, tenant_of_request)` adds the routes to the gateway's
blueprint; `engine/_app.py` calls it with its own `engine()` (ApiError 503 while starting or
stopping) and `tenant_of_request`. Every error is `{"error": {"code", "message"}}` through the
blueprint's `ApiError` handler. Another tenant's endpoint or delivery is answered exactly like
a missing one (404). Secrets are returned once, in the answer that creates the endpoint.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from quart import Blueprint, Response, request

from omnirelay.protocol._dialect_base import iso_millis
from omnirelay.protocol._envelope import Filter, Subscribe, decode_action
from omnirelay.protocol._errors import RemoteProtocolError
from omnirelay.protocol._json import dumps

from ._store import WebhookDeliveryRow, WebhookEndpointRow
from ._webhooks import WebhookDispatcher, WebhookError

__all__ = ["WebhookHost", "register_webhook_routes"]

MAX_FILTERS = 100
"""The most filters one endpoint may have (an event is matched against each)."""

MIN_SECRET_LENGTH = 16
MAX_SECRET_LENGTH = 256

_CREATE_KEYS = frozenset({"url", "secret", "filters", "enabled", "tenant"})
_UPDATE_KEYS = frozenset({"url", "filters", "enabled"})


class WebhookHost(Protocol):
    """What the routes need of the engine."""

    @property
    def webhooks(self) -> WebhookDispatcher: ...


TenantOfRequest = Callable[[dict[str, Any] | None], tuple[str | None, bool]]


def endpoint_json(row: WebhookEndpointRow) -> dict[str, Any]:
    """An endpoint in REST answers; never its secret."""
    return {
        "id": row.id,
        "tenant": row.tenant_id,
        "url": row.url,
        "filters": [f.to_json() for f in row.filters],
        "enabled": row.enabled,
        "createdAt": iso_millis(row.created_at),
    }


def dead_letter_json(row: WebhookDeliveryRow, epoch: str) -> dict[str, Any]:
    return {
        "id": row.id,
        "endpoint": row.endpoint_id,
        "tenant": row.tenant_id,
        "seq": f"{epoch}:{row.seq}",
        "event": row.event,
        "attempts": row.attempts,
        "lastStatus": row.last_status,
        "lastError": row.last_error,
        "createdAt": iso_millis(row.created_at),
        "updatedAt": iso_millis(row.updated_at),
    }


def decode_filters(value: Any) -> tuple[Filter, ...]:
    """A list of filter objects, each validated exactly like a `/ws` subscribe filter;
    RemoteProtocolError(code="invalid_filter") otherwise."""
    if not isinstance(value, list):
        raise RemoteProtocolError("filters must be a list of filter objects", code="invalid_filter")
    if len(value) > MAX_FILTERS:
        raise RemoteProtocolError(
            f"at most {MAX_FILTERS} filters per webhook", code="invalid_filter"
        )
    filters: list[Filter] = []
    for item in value:
        action = decode_action(dumps({"action": "subscribe", "filter": item}))
        assert isinstance(action, Subscribe)
        if action.filter not in filters:
            filters.append(action.filter)
    return tuple(filters)


def register_webhook_routes(
    bp: Blueprint,
    get_engine: Callable[[], WebhookHost],
    tenant_of_request: TenantOfRequest,
) -> None:
    """Add the `/api/webhooks` routes to `bp` (see the module docstring)."""
    # Imported here: _app imports this module to call this function.
    from ._app import ApiError, _json_body, json_response

    def dispatcher() -> WebhookDispatcher:
        return get_engine().webhooks

    def visible(owner: str, tenant: str | None, admin: bool) -> bool:
        return owner == tenant or (admin and tenant is None)

    def refused(error: WebhookError) -> ApiError:
        status = 409 if error.code == "too_many_webhooks" else 400
        return ApiError(status, error.code, error.message)

    def check_keys(body: dict[str, Any], allowed: frozenset[str]) -> None:
        unknown = sorted(body.keys() - allowed)
        if unknown:
            expected = ", ".join(sorted(allowed))
            raise ApiError(
                400, "invalid_body", f"unexpected field {unknown[0]!r} (expected: {expected})"
            )

    def filters_of(body: dict[str, Any]) -> tuple[Filter, ...] | None:
        if "filters" not in body:
            return None
        try:
            return decode_filters(body["filters"])
        except RemoteProtocolError as exc:
            raise ApiError(400, "invalid_filter", str(exc)) from None

    def enabled_of(body: dict[str, Any]) -> bool | None:
        enabled = body.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            raise ApiError(400, "invalid_body", "enabled must be true or false")
        return enabled

    async def endpoint_for_request(endpoint_id: str) -> WebhookEndpointRow:
        tenant, admin = tenant_of_request(None)
        row = await dispatcher().get_endpoint(endpoint_id)
        if row is None or not visible(row.tenant_id, tenant, admin):
            raise ApiError(404, "webhook_not_found", f"no webhook {endpoint_id!r}")
        return row

    @bp.get("/api/webhooks")
    async def list_webhooks() -> Response:
        tenant, _admin = tenant_of_request(None)
        rows = await dispatcher().list_endpoints(tenant)
        return json_response({"webhooks": [endpoint_json(row) for row in rows]})

    @bp.post("/api/webhooks")
    async def create_webhook() -> Response:
        body = await _json_body()
        tenant, admin = tenant_of_request(body)
        check_keys(body, _CREATE_KEYS)
        if tenant is None:
            raise ApiError(400, "invalid_body", "an admin must name the webhook's tenant")
        if not admin and "tenant" in body and body["tenant"] != tenant:
            raise ApiError(403, "forbidden", "a webhook can only be created in your own tenant")
        url, secret = body.get("url"), body.get("secret")
        if not isinstance(url, str):
            raise ApiError(400, "invalid_url", "url is a required string")
        if secret is not None and (
            not isinstance(secret, str) or not MIN_SECRET_LENGTH <= len(secret) <= MAX_SECRET_LENGTH
        ):
            raise ApiError(
                400,
                "invalid_body",
                f"secret must be a string of {MIN_SECRET_LENGTH}-{MAX_SECRET_LENGTH} characters",
            )
        filters = filters_of(body) or ()
        enabled = enabled_of(body)
        try:
            row = await dispatcher().create_endpoint(
                tenant,
                url=url,
                secret=secret,
                filters=filters,
                enabled=True if enabled is None else enabled,
            )
        except WebhookError as exc:
            raise refused(exc) from None
        # The only answer that ever carries the secret.
        return json_response({**endpoint_json(row), "secret": row.secret}, 201)

    @bp.get("/api/webhooks/dead")
    async def list_dead_letters() -> Response:
        tenant, _admin = tenant_of_request(None)
        limit = request.args.get("limit", "50")
        if not limit.isdigit() or not 1 <= int(limit) <= 500:
            raise ApiError(400, "invalid_parameter", "limit must be an integer from 1 to 500")
        cursor = request.args.get("cursor")
        if cursor is not None and not cursor.isdigit():
            raise ApiError(400, "invalid_cursor", "pass back a nextCursor this listing returned")
        webhooks, size = dispatcher(), int(limit)
        rows = await webhooks.list_dead(
            tenant,
            endpoint_id=request.args.get("endpoint"),
            before=None if cursor is None else int(cursor),
            limit=size + 1,  # one more than asked: is there a next page?
        )
        page = rows[:size]
        return json_response(
            {
                "dead": [dead_letter_json(row, webhooks.epoch) for row in page],
                "nextCursor": str(page[-1].position) if len(rows) > size else None,
            }
        )

    @bp.post("/api/webhooks/dead/<delivery_id>/replay")
    async def replay_dead_letter(delivery_id: str) -> Response:
        tenant, admin = tenant_of_request(None)
        webhooks = dispatcher()
        row = await webhooks.get_delivery(delivery_id)
        if row is None or not visible(row.tenant_id, tenant, admin):
            raise ApiError(404, "dead_letter_not_found", f"no dead letter {delivery_id!r}")
        if row.state != "dead" or await webhooks.replay(delivery_id) is None:
            raise ApiError(409, "not_dead", f"delivery {delivery_id!r} is not dead")
        return json_response(
            {"id": delivery_id, "endpoint": row.endpoint_id, "state": "pending"}, 202
        )

    @bp.get("/api/webhooks/<endpoint_id>")
    async def get_webhook(endpoint_id: str) -> Response:
        return json_response(endpoint_json(await endpoint_for_request(endpoint_id)))

    @bp.patch("/api/webhooks/<endpoint_id>")
    async def update_webhook(endpoint_id: str) -> Response:
        body = await _json_body()
        await endpoint_for_request(endpoint_id)
        check_keys(body, _UPDATE_KEYS)
        url = body.get("url")
        if url is not None and not isinstance(url, str):
            raise ApiError(400, "invalid_url", "url must be a string")
        filters, enabled = filters_of(body), enabled_of(body)
        try:
            row = await dispatcher().update_endpoint(
                endpoint_id, url=url, filters=filters, enabled=enabled
            )
        except WebhookError as exc:
            raise refused(exc) from None
        if row is None:
            raise ApiError(404, "webhook_not_found", f"no webhook {endpoint_id!r}")
        return json_response(endpoint_json(row))

    @bp.delete("/api/webhooks/<endpoint_id>")
    async def delete_webhook(endpoint_id: str) -> Response:
        await endpoint_for_request(endpoint_id)
        await dispatcher().delete_endpoint(endpoint_id)
        return Response("", status=204)
