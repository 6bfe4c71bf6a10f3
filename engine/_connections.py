"""The live client connections: counted per tenant, listed and kicked over REST.

Every transport registers its connection here before it is accepted (so the per-tenant limit
refuses the 101st with a clear error before any upgrade) and unregisters when it ends.
`kick` asks the connection's own task to end it: the registry never does I/O.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import attrs

__all__ = ["Connection", "ConnectionLimitExceeded", "ConnectionRegistry", "Kick"]

# reconnect: whether the client should come back by itself (drop the transport) or not
# (a protocol-level disconnect); code/reason: what the client is told.
Kick = Callable[[bool, int, str], None]


class ConnectionLimitExceeded(Exception):
    """The tenant already has `limits.connections_per_tenant` connections."""

    code = "too_many_connections"


@attrs.define(eq=False)
class Connection:
    id: str
    tenant_id: str
    subject: str | None
    transport: str
    remote: str | None
    connected_at: datetime
    kick: Kick = attrs.field(repr=False)
    details: dict[str, Any] = attrs.field(factory=dict)

    def describe(self) -> dict[str, Any]:
        """The JSON shape of `GET /api/connections`."""
        return {
            "id": self.id,
            "tenant": self.tenant_id,
            "user": self.subject,
            "transport": self.transport,
            "remote": self.remote,
            "connectedAt": self.connected_at.isoformat().replace("+00:00", "Z"),
            **self.details,
        }


class ConnectionRegistry:
    """All connections of one engine, with the per-tenant connection limit."""

    def __init__(self, *, per_tenant: int) -> None:
        self.per_tenant = per_tenant
        self._by_id: dict[str, Connection] = {}
        self._count: dict[str, int] = {}
        self.refused = 0

    def open(
        self,
        tenant_id: str,
        *,
        subject: str | None,
        transport: str,
        remote: str | None,
        kick: Kick,
        connection_id: str | None = None,
    ) -> Connection:
        """Register a connection; ConnectionLimitExceeded when the tenant is full."""
        if self._count.get(tenant_id, 0) >= self.per_tenant:
            self.refused += 1
            raise ConnectionLimitExceeded(
                f"tenant already has {self.per_tenant} connections (limits.connections_per_tenant)"
            )
        connection = Connection(
            id=connection_id or secrets.token_urlsafe(12),
            tenant_id=tenant_id,
            subject=subject,
            transport=transport,
            remote=remote,
            connected_at=datetime.now(UTC),
            kick=kick,
        )
        self._by_id[connection.id] = connection
        self._count[tenant_id] = self._count.get(tenant_id, 0) + 1
        return connection

    def close(self, connection: Connection) -> None:
        """Unregister this connection (not another one that reuses its id); idempotent."""
        if self._by_id.get(connection.id) is connection:
            del self._by_id[connection.id]
            left = self._count[connection.tenant_id] - 1
            if left:
                self._count[connection.tenant_id] = left
            else:
                del self._count[connection.tenant_id]

    def get(self, connection_id: str) -> Connection | None:
        return self._by_id.get(connection_id)

    def list(self, tenant_id: str | None = None) -> list[Connection]:
        return [c for c in self._by_id.values() if tenant_id is None or c.tenant_id == tenant_id]

    def count(self, tenant_id: str | None = None) -> int:
        if tenant_id is None:
            return len(self._by_id)
        return self._count.get(tenant_id, 0)
