"""The configuration tree: one frozen attrs record, loaded from TOML plus the environment.

Every option has a default that works (`Config()` runs a gateway on 127.0.0.1:3000 with
`omnirelay.db`), and every option is documented in docs/configuration.md (a test checks).
Precedence, lowest first: defaults, the TOML file (`--config` or `OMNIRELAY_CONFIG`), the named
environment variables (`OMNIRELAY_PORT`, …), the generic ones (`OMNIRELAY__SECTION__KEY`), then
command-line flags (applied by the CLI with `attrs.evolve`).

Errors: `ConfigError` with a message naming the offending key; never a cattrs traceback.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import cattrs
from cattrs.errors import BaseValidationError, ForbiddenExtraKeysError

from ._webhooks import WebhookConfig

__all__ = [
    "AuthConfig",
    "ClientConfig",
    "Config",
    "ConfigError",
    "DemoConfig",
    "LimitsConfig",
    "NamespaceConfig",
    "ServerConfig",
    "SessionConfig",
    "SocketIOConfig",
    "StorageConfig",
    "SupervisorConfig",
    "WebSocketConfig",
    "load_config",
]


class ConfigError(Exception):
    """The configuration cannot be used; the message says which key and why."""


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value <= 0:
        raise ValueError(f"{attribute.name} must be positive, not {value!r}")


def _non_negative(_instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must not be negative, not {value!r}")


@attrs.frozen(kw_only=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = attrs.field(default=3000)
    request_head_timeout: float = attrs.field(default=10.0, validator=_positive)
    graceful_timeout: float = attrs.field(default=5.0, validator=_non_negative)
    cors_origins: tuple[str, ...] = ()
    cors_credentials: bool = False

    @port.validator
    def _check_port(self, _attribute: attrs.Attribute[int], value: int) -> None:
        if not 0 <= value <= 65535:
            raise ValueError(f"port must be 0-65535, not {value}")


@attrs.frozen(kw_only=True)
class StorageConfig:
    path: str = "omnirelay.db"
    retention_count: int = attrs.field(default=1_000_000, validator=_positive)
    retention_age: float = attrs.field(default=86_400.0, validator=_positive)
    busy_timeout: float = attrs.field(default=5.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class AuthConfig:
    jwt_secret: str | None = attrs.field(default=None, repr=False)
    jwt_public_key_file: str | None = None
    tenant_claims: tuple[str, ...] = attrs.field(default=("tenant", "companyId", "tenantId"))
    audience: str | None = None
    issuer: str | None = None
    leeway: float = attrs.field(default=10.0, validator=_non_negative)
    admin_token: str | None = attrs.field(default=None, repr=False)

    @tenant_claims.validator
    def _check_claims(
        self, _attribute: attrs.Attribute[tuple[str, ...]], value: tuple[str, ...]
    ) -> None:
        if not value:
            raise ValueError("tenant_claims needs at least one claim name")


@attrs.frozen(kw_only=True)
class NamespaceConfig:
    name: str = attrs.field()
    dialects: tuple[str, ...]
    scope: str = attrs.field(default="tenant")  # "tenant" or "rooms"
    recovery: bool = True

    @name.validator
    def _check_name(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not value.startswith("/") or "," in value:
            raise ValueError(f"namespace {value!r} must start with / and contain no comma")

    @scope.validator
    def _check_scope(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if value not in ("tenant", "rooms"):
            raise ValueError(f"scope must be 'tenant' or 'rooms', not {value!r}")


def _default_namespaces() -> tuple[NamespaceConfig, ...]:
    return (
        NamespaceConfig(name="/", dialects=("whatsapp-web", "chat-sync", "evolution")),
        NamespaceConfig(name="/crm", dialects=("crm",), scope="rooms"),
    )


@attrs.frozen(kw_only=True)
class SocketIOConfig:
    path: str = "/socket.io/"
    ping_interval: float = attrs.field(default=25.0, validator=_positive)
    ping_timeout: float = attrs.field(default=20.0, validator=_positive)
    max_payload: int = attrs.field(default=1_000_000, validator=_positive)
    connect_timeout: float = attrs.field(default=45.0, validator=_positive)
    namespaces: tuple[NamespaceConfig, ...] = attrs.field(factory=_default_namespaces)

    @namespaces.validator
    def _check_unique(
        self, _attribute: attrs.Attribute[Any], value: tuple[NamespaceConfig, ...]
    ) -> None:
        names = [n.name for n in value]
        if len(names) != len(set(names)):
            raise ValueError(f"namespace names must be unique: {names}")


@attrs.frozen(kw_only=True)
class WebSocketConfig:
    path: str = "/ws"
    dialect: str = "envelope"
    max_message_size: int = attrs.field(default=1_000_000, validator=_positive)


@attrs.frozen(kw_only=True)
class ClientConfig:
    inbox_frames: int = attrs.field(default=1024, validator=_positive)
    inbox_bytes: int = attrs.field(default=4 * 1024 * 1024, validator=_positive)
    replay_limit: int = attrs.field(default=10_000, validator=_positive)


@attrs.frozen(kw_only=True)
class LimitsConfig:
    connections_per_tenant: int = attrs.field(default=100, validator=_positive)
    client_events_per_minute: int = attrs.field(default=100, validator=_positive)
    max_payload: int = attrs.field(default=1_000_000, validator=_positive)
    rooms_per_socket: int = attrs.field(default=100, validator=_positive)


@attrs.frozen(kw_only=True)
class SupervisorConfig:
    backoff_initial: float = attrs.field(default=1.0, validator=_positive)
    backoff_max: float = attrs.field(default=30.0, validator=_positive)
    shutdown_grace: float = attrs.field(default=5.0, validator=_non_negative)


@attrs.frozen(kw_only=True)
class SessionConfig:
    id: str = attrs.field()
    tenant: str
    provider: str
    name: str | None = None
    options: Mapping[str, Any] = attrs.field(factory=dict)
    autostart: bool = True

    @id.validator
    def _check_id(self, _attribute: attrs.Attribute[str], value: str) -> None:
        if not value or len(value) > 128 or not all(c.isalnum() or c in "-_." for c in value):
            raise ValueError(f"session id {value!r}: 1-128 letters, digits, '-', '_' or '.'")


@attrs.frozen(kw_only=True)
class DemoConfig:
    tenant: str = "demo"
    rate: float = attrs.field(default=1.0, validator=_positive)
    sessions: int = attrs.field(default=2, validator=_positive)


@attrs.frozen(kw_only=True)
class Config:
    server: ServerConfig = attrs.field(factory=ServerConfig)
    storage: StorageConfig = attrs.field(factory=StorageConfig)
    auth: AuthConfig = attrs.field(factory=AuthConfig)
    socketio: SocketIOConfig = attrs.field(factory=SocketIOConfig)
    websocket: WebSocketConfig = attrs.field(factory=WebSocketConfig)
    clients: ClientConfig = attrs.field(factory=ClientConfig)
    limits: LimitsConfig = attrs.field(factory=LimitsConfig)
    supervisor: SupervisorConfig = attrs.field(factory=SupervisorConfig)
    demo: DemoConfig = attrs.field(factory=DemoConfig)
    webhooks: WebhookConfig = attrs.field(factory=WebhookConfig)
    sessions: tuple[SessionConfig, ...] = ()
    plugins: tuple[str, ...] = ()
    log_level: str = "INFO"


# Named environment variables: (section, key) they set. Generic ones are OMNIRELAY__SECTION__KEY.
ENVIRONMENT: Mapping[str, tuple[str | None, str]] = {
    "OMNIRELAY_HOST": ("server", "host"),
    "OMNIRELAY_PORT": ("server", "port"),
    "OMNIRELAY_CORS_ORIGINS": ("server", "cors_origins"),
    "OMNIRELAY_DB": ("storage", "path"),
    "OMNIRELAY_JWT_SECRET": ("auth", "jwt_secret"),
    "OMNIRELAY_JWT_PUBLIC_KEY_FILE": ("auth", "jwt_public_key_file"),
    "OMNIRELAY_ADMIN_TOKEN": ("auth", "admin_token"),
    "OMNIRELAY_LOG_LEVEL": (None, "log_level"),
}


def _make_converter() -> cattrs.Converter:
    converter = cattrs.Converter(forbid_extra_keys=True)

    def structure_tuple_of_str(value: Any, _type: Any) -> tuple[str, ...]:
        if isinstance(value, str):  # from the environment: a comma-separated list
            return tuple(v.strip() for v in value.split(",") if v.strip())
        if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
            raise ValueError(f"expected a list of strings, not {value!r}")
        return tuple(value)

    def structure_mapping(value: Any, _type: Any) -> Mapping[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"expected a table, not {value!r}")
        return dict(value)

    def structure_strict(kind: type) -> Any:
        def structure(value: Any, _type: Any) -> Any:
            # Reject silent coercions (True as a port, "3000" as a float): say what is wrong.
            if kind is float and isinstance(value, int) and not isinstance(value, bool):
                return float(value)
            if type(value) is not kind:
                raise ValueError(f"expected {kind.__name__}, not {value!r}")
            return value

        return structure

    converter.register_structure_hook_func(lambda t: t == tuple[str, ...], structure_tuple_of_str)
    converter.register_structure_hook_func(lambda t: t == Mapping[str, Any], structure_mapping)
    for kind in (str, int, float, bool):
        converter.register_structure_hook(kind, structure_strict(kind))
    return converter


def _parse_env_value(text: str) -> Any:
    """Environment values are TOML scalars when they parse as one (`8080`, `true`, `2.5`,
    `["a","b"]`), else plain strings."""
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


def _format_exception(exc: BaseException, kind: type | None) -> str:
    # Our validators' messages say what is wrong; cattrs' default would only say "invalid value".
    if type(exc) is ValueError:
        return str(exc)
    return cattrs.v.format_exception(exc, kind)


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseValidationError | ForbiddenExtraKeysError):
        # "$.server.port" → "server.port": the path in the file the user edits.
        messages = cattrs.transform_error(error, format_exception=_format_exception)
        return "; ".join(m.replace(" @ $.", " at ").replace(" @ $", "") for m in messages)
    return str(error)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Build the configuration from a TOML file (optional) and the environment.

    `path` None falls back to `OMNIRELAY_CONFIG` from `environ`. Raises ConfigError.
    """
    environ = {} if environ is None else environ
    if path is None:
        path = environ.get("OMNIRELAY_CONFIG") or None
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None

    overrides: list[tuple[str | None, str, Any, str]] = []
    for name, (section, key) in ENVIRONMENT.items():
        if name in environ:
            value: Any = (
                environ[name]
                if key in ("jwt_secret", "admin_token", "host", "path")
                else (_parse_env_value(environ[name]))
            )
            overrides.append((section, key, value, name))
    for name, raw in environ.items():
        if name.startswith("OMNIRELAY__"):
            parts = name[len("OMNIRELAY__") :].lower().split("__")
            if len(parts) == 1:
                overrides.append((None, parts[0], _parse_env_value(raw), name))
            elif len(parts) == 2:
                overrides.append((parts[0], parts[1], _parse_env_value(raw), name))
            else:
                raise ConfigError(f"{name}: use OMNIRELAY__SECTION__KEY")
    for section, key, value, _name in overrides:
        target = data if section is None else data.setdefault(section, {})
        if not isinstance(target, dict):
            raise ConfigError(f"[{section}] must be a table")
        target[key] = value

    try:
        return _make_converter().structure(data, Config)
    except (BaseValidationError, ForbiddenExtraKeysError, ValueError, TypeError, KeyError) as exc:
        source = f" in {path}" if path is not None else ""
        raise ConfigError(f"invalid configuration{source}: {_describe(exc)}") from None
