"""JSON in and out for every codec: compact, UTF-8, strict about what a peer may send.

orjson does the work; stdlib json is the fallback only for the one case orjson refuses and the
peer may legitimately produce (integers beyond 64 bits, which JavaScript sends for large
numbers). NaN and Infinity are refused on input, as JSON.parse in a browser refuses them; on
output they become null, as JSON.stringify makes them.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = ["dumps", "loads"]


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def loads(text: str | bytes) -> Any:
    """Parse JSON text from a peer; raise RemoteProtocolError when it is not valid JSON."""
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError as exc:
        error: Exception = exc
    try:
        # orjson parses big integers as floats but refuses e.g. 1e400; stdlib is stricter
        # nowhere else, so this only rescues documents orjson rejected for their numbers.
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError, UnicodeDecodeError):
        pass
    raise RemoteProtocolError(f"invalid JSON: {error}", code="invalid_json") from None


def dumps(value: Any) -> str:
    """Serialise a JSON-compatible value compactly; LocalProtocolError if it is not one."""
    try:
        return orjson.dumps(value).decode()
    except TypeError as exc:
        if "64-bit" in str(exc):
            return json.dumps(value, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
        raise LocalProtocolError(f"value is not JSON-serialisable: {exc}") from exc
