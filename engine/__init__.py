"""omnirelay's Trio runtime: engine, store, hub, transports, server and CLI."""

from __future__ import annotations

__all__: list[str] = []
