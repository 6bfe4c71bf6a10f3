from __future__ import annotations

import time
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from omnirelay.engine._auth import Authenticator, AuthError, token_from_request
from omnirelay.engine._config import AuthConfig, ConfigError

SECRET = "test-secret-with-enough-length-for-hs256"


def hs256(claims: dict[str, object], secret: str = SECRET) -> str:
    return jwt.encode(claims, secret, algorithm="HS256")


def in_an_hour() -> int:
    return int(time.time()) + 3600


@pytest.fixture
def auth() -> Authenticator:
    return Authenticator.from_config(AuthConfig(jwt_secret=SECRET, admin_token="admin-token"))


@pytest.mark.parametrize("claim", ["tenant", "companyId", "tenantId"])
def test_tenant_comes_from_any_configured_claim(auth: Authenticator, claim: str) -> None:
    principal = auth.verify(hs256({claim: "acme", "sub": "u1", "exp": in_an_hour()}))
    assert principal.tenant == "acme"
    assert principal.subject == "u1"


def test_claims_are_tried_in_order_and_numbers_become_strings(auth: Authenticator) -> None:
    token = hs256({"companyId": 42, "tenant": "first", "exp": in_an_hour()})
    assert auth.verify(token).tenant == "first"
    assert auth.verify(hs256({"companyId": 42, "exp": in_an_hour()})).tenant == "42"


@pytest.mark.parametrize(
    ("token", "code"),
    [
        (None, "missing_token"),
        ("", "missing_token"),
        ("not.a.jwt", "invalid_token"),
        ("garbage", "invalid_token"),
        (hs256({"tenant": "acme"}), "invalid_token"),  # no exp
        (hs256({"tenant": "acme", "exp": int(time.time()) - 3600}), "expired_token"),
        (
            hs256(
                {"tenant": "acme", "exp": in_an_hour()}, secret="another-secret-of-enough-length!!"
            ),
            "invalid_token",
        ),
        (hs256({"sub": "u", "exp": in_an_hour()}), "no_tenant"),
        (hs256({"tenant": "", "exp": in_an_hour()}), "no_tenant"),
        (hs256({"tenant": True, "exp": in_an_hour()}), "no_tenant"),
        (jwt.encode({"tenant": "a", "exp": in_an_hour()}, None, algorithm="none"), "invalid_token"),
    ],
)
def test_bad_tokens_are_refused_with_a_stable_code(
    auth: Authenticator, token: str | None, code: str
) -> None:
    with pytest.raises(AuthError) as info:
        auth.verify(token)
    assert info.value.code == code
    if token:
        assert token not in str(info.value)
    assert SECRET not in str(info.value)


def test_rs256_with_a_public_key_file(tmp_path: Path) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public_pem = private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    key_file = tmp_path / "jwt.pub"
    key_file.write_bytes(public_pem)
    auth = Authenticator.from_config(AuthConfig(jwt_public_key_file=str(key_file)))
    token = jwt.encode({"tenant": "acme", "exp": in_an_hour()}, private, algorithm="RS256")
    assert auth.verify(token).tenant == "acme"
    with pytest.raises(AuthError, match="HS256"):
        auth.verify(hs256({"tenant": "acme", "exp": in_an_hour()}))


def test_unreadable_or_wrong_key_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        Authenticator.from_config(AuthConfig(jwt_public_key_file=str(tmp_path / "missing.pem")))
    not_a_key = tmp_path / "x.pem"
    not_a_key.write_text("hello")
    with pytest.raises(ConfigError):
        Authenticator.from_config(AuthConfig(jwt_public_key_file=str(not_a_key)))


def test_unconfigured_server_refuses_everyone() -> None:
    auth = Authenticator.from_config(AuthConfig())
    with pytest.raises(AuthError) as info:
        auth.verify(hs256({"tenant": "acme", "exp": in_an_hour()}))
    assert info.value.code == "auth_not_configured"
    with pytest.raises(ConfigError):
        auth.mint("acme")


def test_audience_and_issuer_are_enforced_when_configured() -> None:
    auth = Authenticator.from_config(AuthConfig(jwt_secret=SECRET, audience="crm", issuer="idp"))
    good = auth.mint("acme", subject="u")
    assert auth.verify(good).tenant == "acme"
    with pytest.raises(AuthError):
        auth.verify(hs256({"tenant": "acme", "exp": in_an_hour(), "aud": "other", "iss": "idp"}))
    with pytest.raises(AuthError):
        auth.verify(hs256({"tenant": "acme", "exp": in_an_hour(), "aud": "crm"}))


def test_minted_tokens_verify_and_expire(auth: Authenticator) -> None:
    principal = auth.verify(auth.mint("acme", subject="agent-7", ttl=60))
    assert (principal.tenant, principal.subject) == ("acme", "agent-7")
    with pytest.raises(AuthError) as info:
        auth.verify(auth.mint("acme", ttl=-60))
    assert info.value.code == "expired_token"


def test_admin_token(auth: Authenticator) -> None:
    assert auth.is_admin("admin-token")
    assert not auth.is_admin("admin-tokem")
    assert not auth.is_admin(None)
    assert not Authenticator.from_config(AuthConfig()).is_admin("")


def test_token_sources_in_order() -> None:
    assert token_from_request({}, {}, {"token": "a"}) == "a"
    assert token_from_request({}, {}, {"token": "Bearer a"}) == "a"
    assert token_from_request({"authorization": "Bearer b"}, {"token": "c"}) == "b"
    assert token_from_request({"authorization": "Basic x"}, {"token": "c"}) == "c"
    assert token_from_request({}, {}, {"token": 5}) is None
    assert token_from_request({}, {}) is None
