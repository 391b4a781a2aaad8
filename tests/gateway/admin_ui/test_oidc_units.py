"""`OidcClient`'s own checks, with ID tokens signed here (joserfc, RS256) and the provider's
discovery and JWKS answered by a fake transport: the signature (a stranger's key with the same key id,
the JWKS read again once for an unknown one), issuer, nonce, the role mapping's ranking, the sealed
pending-login cookie, and the settings' validation."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey
from pydantic import ValidationError

from gateway import Settings
from gateway.auth.oidc import OidcClient, OidcConfig, OidcFailed, OidcRefused, Pending
from gateway.errors import InvalidRequest

ISSUER = "https://idp.example"
KEY = RSAKey.generate_key(2048, parameters={"kid": "k1"})
MAPPING = {"ops": "operator", "boss": "owner", "t1": "tenant_admin:tn_1", "read": "auditor"}


def _client(keys: list[RSAKey], reads: list[str] | None = None) -> OidcClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if reads is not None:
            reads.append(request.url.path)
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, "jwks_uri": f"{ISSUER}/jwks"})
        return httpx.Response(200, json=dict(KeySet(list(keys)).as_dict(private=False)))

    config = OidcConfig(ISSUER, "panel", "secret", role_mapping=MAPPING, allowed_domains=("example.com",))
    return OidcClient(config, httpx.AsyncClient(transport=httpx.MockTransport(answer)))


def _token(key: RSAKey, **claims: Any) -> str:
    now = int(time.time())
    base = {"iss": ISSUER, "aud": "panel", "sub": "s1", "iat": now, "exp": now + 60, "nonce": "n1"}
    return jwt.encode({"alg": "RS256", "kid": "k1"}, {**base, **claims}, key)


async def test_a_good_token_verifies() -> None:
    claims = await _client([KEY]).verify(_token(KEY), "n1")
    assert claims["sub"] == "s1"


@pytest.mark.parametrize(
    "claims",
    [{"nonce": "n2"}, {"iss": "https://evil.example"}, {"aud": ["other"]}, {"exp": int(time.time()) - 600}],
)
async def test_a_claim_that_does_not_match_fails(claims: dict[str, Any]) -> None:
    with pytest.raises(OidcFailed, match="not valid"):
        await _client([KEY]).verify(_token(KEY, **claims), "n1")


async def test_a_strangers_signature_fails_after_one_more_read_of_the_keys() -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "k1"})
    reads: list[str] = []
    with pytest.raises(OidcFailed, match="not valid"):
        await _client([KEY], reads).verify(_token(stranger), "n1")
    assert reads.count("/jwks") == 2


def test_the_most_powerful_mapped_role_wins_and_unmapped_users_are_refused() -> None:
    client = _client([KEY])
    user = client.user_of({"sub": "s", "email": "A@Example.com", "groups": ["read", "ops"]})
    assert (user.role, user.tenant_id, user.email) == ("operator", None, "a@example.com")
    tenant = client.user_of({"sub": "s", "email": "a@example.com", "groups": "t1"})
    assert (tenant.role, tenant.tenant_id) == ("tenant_admin", "tn_1")
    with pytest.raises(OidcRefused, match="no role"):
        client.user_of({"sub": "s", "email": "a@example.com", "groups": ["staff"]})
    with pytest.raises(OidcRefused, match="domain"):  # an unverified address names nobody
        client.user_of({"sub": "s", "email": "a@example.com", "email_verified": False, "groups": ["boss"]})


def test_the_pending_cookie_is_sealed() -> None:
    client = _client([KEY])
    sealed = client.seal(Pending("st", "no", "ve", int(time.time())))
    assert client.unseal(sealed).state == "st"
    body, _, mac = sealed.partition(".")
    for forged in (None, "", body + "." + "0" * len(mac), "x" + sealed):
        with pytest.raises(InvalidRequest):
            client.unseal(forged)
    with pytest.raises(InvalidRequest, match="too long"):
        client.unseal(client.seal(Pending("st", "no", "ve", int(time.time()) - 3600)))


def test_settings_refuse_an_unknown_role_or_half_a_configuration() -> None:
    with pytest.raises(ValidationError, match="king"):
        Settings(oidc_role_mapping={"a": "king"})
    with pytest.raises(ValidationError, match="tenant_admin"):
        Settings(oidc_role_mapping={"a": "tenant_admin"})
    with pytest.raises(ValidationError, match="together"):
        Settings(oidc_issuer=ISSUER)
    assert Settings().oidc_config() is None
    made = Settings(oidc_issuer=ISSUER, oidc_client_id="c", oidc_client_secret="s", oidc_scopes=["email"])
    config = made.oidc_config()
    assert config is not None and config.scopes == ("openid", "email")


def _provider(userinfo: dict[str, Any], discovery: dict[str, Any]) -> OidcClient:
    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("openid-configuration"):
            return httpx.Response(200, json={"issuer": ISSUER, **discovery})
        assert request.headers["authorization"] == "Bearer at-1"
        return httpx.Response(200, json=userinfo)

    config = OidcConfig(ISSUER, "panel", "secret", role_mapping=MAPPING, userinfo=True)
    return OidcClient(config, httpx.AsyncClient(transport=httpx.MockTransport(answer)))


async def test_userinfo_completes_the_id_token_for_its_own_subject_only() -> None:
    discovery = {"userinfo_endpoint": f"{ISSUER}/userinfo"}
    given = {"sub": "s1", "groups": ["ops"], "email": "x@example.com"}
    merged = await _provider(given, discovery).userinfo({"sub": "s1", "email": "a@example.com"}, "at-1")
    assert merged["groups"] == ["ops"] and merged["email"] == "a@example.com"  # the ID token's win
    with pytest.raises(OidcFailed, match="another subject"):
        await _provider({**given, "sub": "s2"}, discovery).userinfo({"sub": "s1"}, "at-1")
    # No endpoint in the discovery document: the ID token's claims alone.
    assert await _provider(given, {}).userinfo({"sub": "s1"}, "at-1") == {"sub": "s1"}


async def test_the_logout_url_only_with_an_end_session_endpoint() -> None:
    back = "https://panel.example/admin/ui/login"
    url = await _provider({}, {"end_session_endpoint": f"{ISSUER}/logout"}).logout_url("tok", back)
    assert url is not None and url.startswith(f"{ISSUER}/logout?")
    query = httpx.URL(url).params
    assert (query["id_token_hint"], query["post_logout_redirect_uri"], query["client_id"]) == (
        "tok",
        back,
        "panel",
    )
    assert await _provider({}, {}).logout_url("tok", back) is None
