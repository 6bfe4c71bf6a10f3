from __future__ import annotations

import re
import typing
from pathlib import Path

import attrs
import pytest

from omnirelay.engine._config import (
    Config,
    ConfigError,
    NamespaceConfig,
    load_config,
)

DOCS = Path(__file__).resolve().parents[2] / "docs" / "configuration.md"


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "omnirelay.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults_work_without_any_file() -> None:
    config = load_config(None, {})
    assert config == Config()
    assert config.server.port == 3000
    assert [n.name for n in config.socketio.namespaces] == ["/", "/crm"]
    assert config.socketio.namespaces[1].scope == "rooms"
    assert config.limits.connections_per_tenant == 100
    assert config.limits.client_events_per_minute == 100


def test_file_then_named_then_generic_environment(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
        log_level = "DEBUG"
        [server]
        port = 4000
        host = "0.0.0.0"
        [limits]
        connections_per_tenant = 10
        [[sessions]]
        id = "vendas-2024"
        tenant = "acme"
        provider = "evolution"
        options = { url = "http://127.0.0.1:8080", mode = "instance" }
        [[socketio.namespaces]]
        name = "/"
        dialects = ["whatsapp-web"]
        """,
    )
    config = load_config(
        None,
        {
            "OMNIRELAY_CONFIG": str(path),
            "OMNIRELAY_PORT": "5000",
            "OMNIRELAY__LIMITS__CONNECTIONS_PER_TENANT": "20",
            "OMNIRELAY_JWT_SECRET": "12345",  # a secret stays a string even if it looks numeric
            "OMNIRELAY_CORS_ORIGINS": "http://a.example, http://b.example",
        },
    )
    assert config.server.port == 5000
    assert config.server.host == "0.0.0.0"
    assert config.limits.connections_per_tenant == 20
    assert config.auth.jwt_secret == "12345"
    assert config.server.cors_origins == ("http://a.example", "http://b.example")
    assert config.log_level == "DEBUG"
    assert config.sessions[0].options == {"url": "http://127.0.0.1:8080", "mode": "instance"}
    assert config.socketio.namespaces == (NamespaceConfig(name="/", dialects=("whatsapp-web",)),)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[server]\nport = "x"', "expected int, not 'x' at server.port"),
        ("[server]\nprt = 1", "prt"),
        ("[server]\nport = 70000", "port must be 0-65535"),
        ('[[sessions]]\nid = "a b"\ntenant = "t"\nprovider = "p"', "session id 'a b'"),
        ('[[sessions]]\nid = "a"', "required field missing at sessions[0].tenant"),
        ('[[socketio.namespaces]]\nname = "crm"\ndialects = []', "must start with /"),
        ("[storage]\nretention_age = -1", "retention_age must be positive"),
        ("[auth]\nleeway = true", "expected float"),
        ('[[socketio.namespaces]]\nname = "/"\ndialects = []\nscope = "world"', "scope must be"),
        ("x = ", "not valid TOML"),
    ],
)
def test_bad_configuration_names_the_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text), {})
    assert message in str(info.value)


def test_missing_file_and_bad_environment_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "nope.toml", {})
    with pytest.raises(ConfigError, match=r"server\.port"):
        load_config(None, {"OMNIRELAY_PORT": "many"})
    with pytest.raises(ConfigError, match="SECTION__KEY"):
        load_config(None, {"OMNIRELAY__A__B__C": "1"})


def all_options(cls: type, prefix: str = "") -> list[str]:
    """Every leaf option as it is written in docs: `server.port`, `sessions[].id`."""
    attrs.resolve_types(cls)
    names = []
    for field in attrs.fields(cls):
        kind = field.type
        args = typing.get_args(kind)
        if isinstance(kind, type) and attrs.has(kind):
            names.extend(all_options(kind, f"{prefix}{field.name}."))
        elif typing.get_origin(kind) is tuple and args and attrs.has(args[0]):
            names.extend(all_options(args[0], f"{prefix}{field.name}[]."))
        else:
            names.append(prefix + field.name)
    return names


def test_every_option_is_documented_with_its_default() -> None:
    text = DOCS.read_text(encoding="utf-8")
    documented = set(re.findall(r"^\| `([a-z_.\[\]]+)` \|", text, flags=re.MULTILINE))
    options = all_options(Config)
    assert "server.port" in options
    assert "socketio.namespaces[].scope" in options
    missing = [option for option in options if option not in documented]
    assert missing == [], "document these options in docs/configuration.md"
    assert documented - set(options) == set(), (
        "docs/configuration.md documents options that do not exist"
    )
