"""Who is connecting: JWT verification, the tenant claim, and the admin token.

A client's tenant comes only from its verified token, never from anything else it sends
(DESIGN.md §5). Tokens are HS256 with `auth.jwt_secret` or RS256 with the PEM public key in
`auth.jwt_public_key_file` (both may be configured; the token's header picks). `exp` is required.
The tenant is the first present claim of `auth.tenant_claims` (`tenant`, `companyId`,
`tenantId`); `sub` is the user.

Errors: `AuthError` with a stable `code` (documented in docs/rest.md) and a message safe to
show the client: it never echoes the token or a secret.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs
import jwt

from ._config import AuthConfig, ConfigError

__all__ = ["AuthError", "Authenticator", "Principal", "new_secret", "token_from_request"]


class AuthError(Exception):
    """The credential was refused; `code` is stable, `str()` is a sentence for the client."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@attrs.frozen
class Principal:
    """A verified caller: its tenant, its user (if the token names one) and all its claims."""

    tenant: str
    subject: str | None = None
    claims: Mapping[str, Any] = attrs.field(factory=dict, eq=False, repr=False)


@attrs.define(eq=False)
class Authenticator:
    """Verifies client tokens and the admin token; mints development tokens."""

    config: AuthConfig
    _public_key: str | None = None

    @classmethod
    def from_config(cls, config: AuthConfig) -> Authenticator:
        """Load the public key file if one is configured; ConfigError if it cannot be read."""
        key = None
        if config.jwt_public_key_file is not None:
            try:
                key = Path(config.jwt_public_key_file).read_text(encoding="ascii")
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(f"auth.jwt_public_key_file: cannot read it ({exc})") from None
            if "PUBLIC KEY" not in key:
                raise ConfigError("auth.jwt_public_key_file: not a PEM public key")
        return cls(config, key)

    @property
    def configured(self) -> bool:
        return self.config.jwt_secret is not None or self._public_key is not None

    def verify(self, token: str | None) -> Principal:
        """The principal a token proves; AuthError otherwise."""
        if not token:
            raise AuthError("missing_token", "an access token is required")
        if not self.configured:
            raise AuthError("auth_not_configured", "this server has no JWT key configured")
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise AuthError("invalid_token", "the access token is malformed") from None
        algorithm = header.get("alg")
        key: str | None
        if algorithm == "HS256":
            key = self.config.jwt_secret
        elif algorithm == "RS256":
            key = self._public_key
        else:
            raise AuthError("invalid_token", "the access token's algorithm is not accepted")
        if key is None:
            raise AuthError("invalid_token", f"this server does not accept {algorithm} tokens")
        options: jwt.types.Options = {
            "require": ["exp"],
            "verify_aud": self.config.audience is not None,
        }
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=self.config.audience,
                issuer=self.config.issuer,
                leeway=self.config.leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired_token", "the access token has expired") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError(
                "invalid_token", f"the access token lacks the {exc.claim!r} claim"
            ) from None
        except jwt.InvalidTokenError:
            raise AuthError("invalid_token", "the access token is invalid") from None
        for claim in self.config.tenant_claims:
            tenant = claims.get(claim)
            if isinstance(tenant, str | int) and not isinstance(tenant, bool) and str(tenant):
                subject = claims.get("sub")
                return Principal(str(tenant), str(subject) if subject is not None else None, claims)
        names = ", ".join(self.config.tenant_claims)
        raise AuthError("no_tenant", f"the access token names no tenant (claims tried: {names})")

    def is_admin(self, token: str | None) -> bool:
        """Whether `token` is the configured admin token (constant-time comparison)."""
        expected = self.config.admin_token
        if not expected or not token:
            return False
        return hmac.compare_digest(token.encode(), expected.encode())

    def mint(self, tenant: str, *, subject: str | None = None, ttl: float = 3600.0) -> str:
        """An HS256 token for `tenant` valid for `ttl` seconds (development and tests)."""
        if self.config.jwt_secret is None:
            raise ConfigError("minting tokens needs auth.jwt_secret (OMNIRELAY_JWT_SECRET)")
        now = int(time.time())
        claims: dict[str, Any] = {"tenant": tenant, "iat": now, "exp": now + int(ttl)}
        if subject is not None:
            claims["sub"] = subject
        if self.config.audience is not None:
            claims["aud"] = self.config.audience
        if self.config.issuer is not None:
            claims["iss"] = self.config.issuer
        return jwt.encode(claims, self.config.jwt_secret, algorithm="HS256")


def new_secret() -> str:
    """A random HS256 secret (used by `serve --demo` when none is configured)."""
    return secrets.token_urlsafe(32)


def token_from_request(
    headers: Mapping[str, str], query: Mapping[str, str], auth: Mapping[str, Any] | None = None
) -> str | None:
    """The bearer token of a request: Socket.IO auth payload `token`, then
    `Authorization: Bearer`, then `?token=`. Header names must be lower-case."""
    if auth is not None:
        token = auth.get("token")
        if isinstance(token, str) and token:
            return token.removeprefix("Bearer ").strip()
    header = headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    if scheme.lower() == "bearer" and value.strip():
        return value.strip()
    token = query.get("token")
    return token or None
