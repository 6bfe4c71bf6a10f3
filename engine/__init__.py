"""omnirelay's Trio runtime: engine, store, hub, transports, server and CLI.

Plugin authors need only `hookimpl`, `Provider`, `SessionContext`, the command classes,
`InboundCall`/`InboundReply`/`InboundRequest` (provider webhooks) and `StoreError` (what `emit`
raises when storage fails);
embedding in a Quart-Trio app needs `OmniRelay` and `load_config`.
"""

from __future__ import annotations

from ._app import OmniRelay as OmniRelay
from ._config import Config as Config
from ._config import ConfigError as ConfigError
from ._config import load_config as load_config
from ._engine import Engine as Engine
from ._engine import open_engine as open_engine
from ._inbound import InboundCall as InboundCall
from ._inbound import InboundReply as InboundReply
from ._inbound import InboundRequest as InboundRequest
from ._provider import Command as Command
from ._provider import CommandResult as CommandResult
from ._provider import Provider as Provider
from ._provider import SendText as SendText
from ._provider import SessionContext as SessionContext
from ._provider import TestConnection as TestConnection
from ._store import StoredEvent as StoredEvent
from ._store import StoreError as StoreError
from .hookspecs import hookimpl as hookimpl

__all__ = [
    "Command",
    "CommandResult",
    "Config",
    "ConfigError",
    "Engine",
    "InboundCall",
    "InboundReply",
    "InboundRequest",
    "OmniRelay",
    "Provider",
    "SendText",
    "SessionContext",
    "StoreError",
    "StoredEvent",
    "TestConnection",
    "hookimpl",
    "load_config",
    "open_engine",
]
