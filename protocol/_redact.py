"""Stripping secrets from provider payloads before anything leaves the gateway.

Raw provider events (`ProviderRaw`, the `evolution` dialect) carry credentials and key material:
Evolution's envelope has `apikey` and `server_url`, Baileys messages carry media keys and
thumbnails. `redact_provider_payload` removes them at any depth; DESIGN.md §5 requires that no
secret appears in any payload sent outward.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["redact_provider_payload"]

# Compared after lower-casing and dropping "_" and "-": "apiKey", "api_key", "API-KEY" all match.
_SECRET_KEYS = frozenset(
    {
        "apikey",
        "token",
        "accesstoken",
        "refreshtoken",
        "password",
        "secret",
        "clientsecret",
        "authorization",
        "serverurl",
        "base64",
        "jpegthumbnail",
        # Baileys media and end-to-end key material: older Evolution versions send it as
        # base64 text instead of bytes, so the bytes rule alone would miss it.
        "mediakey",
        "messagesecret",
    }
)
_BINARY = (bytes, bytearray, memoryview)


def _is_secret_key(key: object) -> bool:
    return str(key).lower().replace("_", "").replace("-", "") in _SECRET_KEYS


def redact_provider_payload(payload: Mapping[Any, Any]) -> dict[str, Any]:
    """A copy of `payload` without secrets, at any depth; `payload` itself is left untouched.

    Drops keys named like `apikey`, `api_key`, `token`, `access_token`, `server_url`, `base64`,
    `jpegThumbnail` (case, "_" and "-" ignored; a few more credentials and key material too) and
    every bytes value. Keys become strings. Iterative, so deep nesting cannot exhaust the stack.
    """
    root: dict[str, Any] = {}
    pending: list[tuple[Mapping[Any, Any] | list[Any] | tuple[Any, ...], Any]] = [(payload, root)]

    def shell(value: Any) -> Any:
        if isinstance(value, Mapping):
            copy: dict[str, Any] = {}
            pending.append((value, copy))
            return copy
        if isinstance(value, list | tuple):
            items: list[Any] = []
            pending.append((value, items))
            return items
        return value

    while pending:
        source, target = pending.pop()
        if isinstance(source, Mapping):
            for key, value in source.items():
                if not _is_secret_key(key) and not isinstance(value, _BINARY):
                    target[str(key)] = shell(value)
        else:
            target.extend(shell(item) for item in source if not isinstance(item, _BINARY))
    return root
