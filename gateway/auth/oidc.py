"""OpenID Connect single sign-on for the admin panel (issue 21, point 1; docs/governance.md
"Single sign-on (OIDC)"), with authlib: the authorization code flow with PKCE (S256), `state` and
`nonce`.

`start` makes the provider's authorization URL and the `Pending` login (state, nonce, PKCE
verifier) the browser keeps in a short-lived cookie, sealed with an HMAC under the client secret
(any replica can read it back; nothing is stored server-side). `finish` exchanges the code at the
token endpoint (authlib's OAuth2 client, client_secret_basic, the verifier), then verifies the ID
token (joserfc, authlib's JOSE library): its signature against the provider's JWKS (fetched again
once when a key id is unknown: the provider rotated), `iss`, `aud` (the client id), `exp`, `iat`,
`sub` and the `nonce`. The role comes from the claim mapping; a user no mapping names is refused.

With `userinfo` on, a role claim (or e-mail) the ID token does not carry is read from the provider's
userinfo endpoint with the access token (many providers release groups only there); its `sub` must be
the ID token's, and the ID token's own claims win. `logout_url` is OpenID Connect RP-initiated
logout: the provider's `end_session_endpoint` with `id_token_hint` and `post_logout_redirect_uri`.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import httpx
import orjson

from gateway.errors import AuthenticationFailed, InvalidRequest, PermissionDenied

if TYPE_CHECKING:
    from joserfc.jwk import KeySet

# authlib and joserfc (the `oidc` extra) are imported when single sign-on is used, not with the app.

# Roles from the most to the least powerful: a user mapped to several gets the first.
_RANK = ("owner", "operator", "auditor", "tenant_admin")
_ALGORITHMS = ["RS256", "RS384", "RS512", "PS256", "ES256", "ES384", "EdDSA"]
PENDING_TTL_S = 600


class OidcFailed(AuthenticationFailed):
    """The provider's answer could not be trusted (a bad token, a refused code): 401."""

    code = "oidc_failed"


class OidcRefused(PermissionDenied):
    """A verified user the panel does not admit (no role mapped, a domain not allowed): 403."""

    code = "oidc_refused"


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    scopes: tuple[str, ...] = ("openid", "email", "profile")
    discovery_url: str | None = None
    role_claim: str = "groups"
    # A claim value to a role; a tenant admin's role names its tenant: "tenant_admin:tn_...".
    role_mapping: Mapping[str, str] | None = None
    allowed_domains: tuple[str, ...] = ()
    redirect_url: str | None = None
    leeway_s: int = 60
    # Read the role claim and e-mail from the userinfo endpoint when the ID token lacks them.
    userinfo: bool = False


@dataclass(frozen=True)
class Pending:
    """A login under way: what the callback must find again."""

    state: str
    nonce: str
    verifier: str
    started: int


@dataclass(frozen=True)
class OidcUser:
    issuer: str
    sub: str
    email: str | None
    role: str
    tenant_id: str | None
    # The raw ID token: the `id_token_hint` of a later RP-initiated logout.
    id_token: str | None = None


class OidcClient:
    def __init__(self, config: OidcConfig, http: httpx.AsyncClient | None = None) -> None:
        self.config = config
        self._http = http
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    # The provider's metadata and keys ------------------------------------------------------------

    async def _get(self, url: str) -> dict[str, Any]:
        http = self._http or httpx.AsyncClient(timeout=10)
        try:
            answer = await http.get(url)
            answer.raise_for_status()
            found = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcFailed(f"The identity provider could not be reached ({url}): {exc}") from exc
        finally:
            if self._http is None:
                await http.aclose()
        if not isinstance(found, dict):
            raise OidcFailed(f"The identity provider's {url} is not a JSON object.")
        return found

    async def metadata(self) -> dict[str, Any]:
        if self._metadata is None:
            issuer = self.config.issuer.rstrip("/")
            url = self.config.discovery_url or f"{issuer}/.well-known/openid-configuration"
            found = await self._get(url)
            if found.get("issuer") != self.config.issuer:
                raise OidcFailed(f"The discovery document names the issuer {found.get('issuer')!r}.")
            self._metadata = found
        return self._metadata

    async def keys(self, *, refresh: bool = False) -> KeySet:
        from joserfc.jwk import KeySet

        if self._keys is None or refresh:
            self._keys = KeySet.import_key_set(await self._get(str((await self.metadata())["jwks_uri"])))  # type: ignore[arg-type]
        return self._keys

    # The flow ----------------------------------------------------------------------------------

    async def start(self, redirect_uri: str) -> tuple[str, Pending]:
        """The provider's authorization URL, and the login to seal in the browser's cookie."""
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        pending = Pending(
            secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48), int(time.time())
        )
        endpoint = str((await self.metadata())["authorization_endpoint"])
        client = AsyncOAuth2Client(
            self.config.client_id,
            scope=" ".join(self.config.scopes),
            redirect_uri=redirect_uri,
            code_challenge_method="S256",
        )
        url, _ = client.create_authorization_url(
            endpoint, state=pending.state, nonce=pending.nonce, code_verifier=pending.verifier
        )
        return url, pending

    async def finish(self, pending: Pending, code: str, redirect_uri: str) -> OidcUser:
        from authlib.integrations.base_client.errors import OAuthError
        from authlib.integrations.httpx_client import AsyncOAuth2Client

        metadata = await self.metadata()
        client = AsyncOAuth2Client(
            self.config.client_id,
            self.config.client_secret,
            token_endpoint_auth_method="client_secret_basic",
            timeout=10,
        )
        try:
            token = await client.fetch_token(
                str(metadata["token_endpoint"]),
                grant_type="authorization_code",
                code=code,
                redirect_uri=redirect_uri,
                code_verifier=pending.verifier,
            )
        except (OAuthError, httpx.HTTPError) as exc:
            raise OidcFailed(f"The identity provider refused the code: {exc}") from exc
        finally:
            await client.aclose()
        id_token = token.get("id_token")
        if not isinstance(id_token, str):
            raise OidcFailed("The identity provider answered without an ID token (is `openid` a scope?).")
        claims = await self.verify(id_token, pending.nonce)
        if self.config.userinfo and (self.config.role_claim not in claims or "email" not in claims):
            claims = await self.userinfo(claims, str(token.get("access_token", "")))
        return replace(self.user_of(claims), id_token=id_token)

    async def userinfo(self, claims: dict[str, Any], access_token: str) -> dict[str, Any]:
        """The ID token's claims completed by the userinfo endpoint's (the ID token's win)."""
        endpoint = (await self.metadata()).get("userinfo_endpoint")
        if not isinstance(endpoint, str) or not access_token:
            return claims  # nothing to ask: the mapping decides on the ID token alone
        http = self._http or httpx.AsyncClient(timeout=10)
        try:
            answer = await http.get(endpoint, headers={"authorization": f"Bearer {access_token}"})
            answer.raise_for_status()
            found = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            raise OidcFailed(f"The identity provider's userinfo endpoint failed: {exc}") from exc
        finally:
            if self._http is None:
                await http.aclose()
        if not isinstance(found, dict) or found.get("sub") != claims.get("sub"):
            raise OidcFailed("The userinfo endpoint answered for another subject than the ID token's.")
        return {**found, **claims}

    async def logout_url(self, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """Where to send the browser to end its session at the provider too, or None when the
        provider offers no `end_session_endpoint` (or cannot be reached: the panel's own logout
        is done either way)."""
        try:
            endpoint = (await self.metadata()).get("end_session_endpoint")
        except OidcFailed:
            return None
        if not isinstance(endpoint, str) or not endpoint.startswith(("https://", "http://")):
            return None
        query = urlencode(
            {
                "id_token_hint": id_token,
                "post_logout_redirect_uri": post_logout_redirect_uri,
                "client_id": self.config.client_id,
            }
        )
        return f"{endpoint}{'&' if '?' in endpoint else '?'}{query}"

    async def verify(self, id_token: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, once its signature, issuer, audience, times and nonce check out."""
        from joserfc import jwt
        from joserfc.errors import JoseError

        try:
            try:
                decoded = jwt.decode(id_token, await self.keys(), algorithms=_ALGORITHMS)
            except JoseError:  # perhaps a key the provider added since: its JWKS read once more
                decoded = jwt.decode(id_token, await self.keys(refresh=True), algorithms=_ALGORITHMS)
            jwt.JWTClaimsRegistry(
                leeway=self.config.leeway_s,
                iss={"essential": True, "value": self.config.issuer},
                aud={"essential": True, "value": self.config.client_id},
                sub={"essential": True},
                exp={"essential": True},
                iat={"essential": True},
                nonce={"essential": True, "value": nonce},
            ).validate(decoded.claims)
        except (JoseError, ValueError) as exc:
            raise OidcFailed(f"The ID token is not valid: {exc}") from exc
        return dict(decoded.claims)

    def user_of(self, claims: Mapping[str, Any]) -> OidcUser:
        """The admin the claims name, with the role the mapping gives (refused without one)."""
        sub = str(claims["sub"])
        email = claims.get("email") if isinstance(claims.get("email"), str) else None
        if email is not None and claims.get("email_verified") is False:
            email = None  # an address the provider did not verify names nobody
        domains = self.config.allowed_domains
        if domains and (email is None or email.rsplit("@", 1)[-1].lower() not in domains):
            raise OidcRefused("Your e-mail domain is not allowed to sign in to this panel.")
        role = self.role_of(claims.get(self.config.role_claim))
        if role is None:
            raise OidcRefused(
                f"Your account has no role in this panel (no `{self.config.role_claim}` value is mapped)."
            )
        name, _, tenant = role.partition(":")
        return OidcUser(self.config.issuer, sub, email.lower() if email else None, name, tenant or None)

    def role_of(self, values: Any) -> str | None:
        mapping = self.config.role_mapping or {}
        given = [values] if isinstance(values, str) else values if isinstance(values, list) else []
        roles = [mapping[v] for v in given if isinstance(v, str) and v in mapping]
        return min(roles, key=lambda r: _RANK.index(r.partition(":")[0]), default=None)

    # The browser's cookie ----------------------------------------------------------------------

    def seal(self, pending: Pending) -> str:
        body = base64.urlsafe_b64encode(orjson.dumps(pending.__dict__)).decode()
        return f"{body}.{self._mac(body)}"

    def unseal(self, sealed: str | None) -> Pending:
        """The login this browser started here, or a 400 (none, forged, expired)."""
        body, _, mac = (sealed or "").partition(".")
        if not body or not hmac.compare_digest(mac, self._mac(body)):
            raise InvalidRequest("No sign-in was started from this browser; start it again.")
        try:
            pending = Pending(**orjson.loads(base64.urlsafe_b64decode(body)))
        except (ValueError, TypeError) as exc:
            raise InvalidRequest("The sign-in cookie is damaged; start again.") from exc
        if time.time() - pending.started > PENDING_TTL_S:
            raise InvalidRequest("The sign-in took too long; start it again.")
        return pending

    def _mac(self, body: str) -> str:
        key = hashlib.sha256(b"tantra-oidc-pending:" + self.config.client_secret.encode()).digest()
        return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def check_roles(mapping: Mapping[str, str]) -> None:
    """A mapping naming an unknown role, or a tenant admin without its tenant, fails the start."""
    for value, role in mapping.items():
        name, _, tenant = role.partition(":")
        if name not in _RANK or (name == "tenant_admin") != bool(tenant):
            raise ValueError(
                f"oidc_role_mapping[{value!r}] = {role!r}: a role of {', '.join(_RANK)} "
                "(a tenant admin's as tenant_admin:<tenant id>)"
            )


__all__ = ["OidcClient", "OidcConfig", "OidcFailed", "OidcRefused", "OidcUser", "Pending", "check_roles"]
