"""A minimal but real OpenID Connect provider for the panel's single sign-on tests, built with
authlib's own authorization server (Flask integration, the authorization code grant with OpenID
Connect's `OpenIDCode` and PKCE's `CodeChallenge`, both required) and an RS256 key generated here.

It serves the discovery document, its JWKS, `/authorize` (a consent form: the user named in the
form signs in), `/token`, `/userinfo` (the access token's person, groups included) and `/logout`
(RP-initiated logout: each call recorded in `logouts`, then back to `post_logout_redirect_uri`), on
127.0.0.1 from a werkzeug thread. `faults` bends the ID tokens it issues for the failure tests:
another audience, an expiry already past, groups left to the userinfo endpoint only."""

from __future__ import annotations

import html
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from authlib.integrations.flask_oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import ClientMixin, grants
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oidc.core import UserInfo
from authlib.oidc.core import grants as oidc_grants
from authlib.oidc.core.models import AuthorizationCodeMixin
from flask import Flask, redirect, request
from joserfc.jwk import KeySet, RSAKey
from werkzeug.serving import make_server

from tests.servers import free_port

CLIENT_ID = "tantra-panel"
CLIENT_SECRET = "provider-secret-" + secrets.token_hex(8)


@dataclass
class Person:
    sub: str
    email: str
    groups: list[str]


@dataclass
class _Client(ClientMixin):
    client_id: str = CLIENT_ID
    client_secret: str = CLIENT_SECRET

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return None

    def get_allowed_scope(self, scope: str) -> str:
        return " ".join(s for s in scope.split() if s in ("openid", "email", "profile", "groups"))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri.startswith("http://127.0.0.1:") and redirect_uri.endswith(
            "/admin/ui/login/oidc/callback"
        )

    def check_client_secret(self, client_secret: str) -> bool:
        return secrets.compare_digest(client_secret, self.client_secret)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == "client_secret_basic" if endpoint == "token" else True

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type == "authorization_code"


@dataclass
class _Code(AuthorizationCodeMixin):
    code: str
    redirect_uri: str
    scope: str
    person: Person
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None
    auth_time: int = field(default_factory=lambda: int(time.time()))

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time


class OidcProvider:
    def __init__(self, people: dict[str, Person]) -> None:
        self.port = free_port()
        self.issuer = f"http://127.0.0.1:{self.port}"
        self.people = people
        self.key = RSAKey.generate_key(2048, parameters={"kid": "k1", "use": "sig", "alg": "RS256"})
        # Set by a test, reset after it: {"aud": "...", "exp_offset": -3600, "userinfo_only": True}.
        self.faults: dict[str, Any] = {}
        self.access_tokens: dict[str, Person] = {}
        self.logouts: list[dict[str, str]] = []
        self.app = self._app()
        self._server = make_server("127.0.0.1", self.port, self.app, threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, name="oidc-provider", daemon=True)

    def __enter__(self) -> OidcProvider:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._thread.join(timeout=10)

    def _app(self) -> Flask:
        app = Flask("oidc-provider")
        self._routes(app, self._authorization_server(app))
        return app

    def _id_token_claims(self, user: Person) -> UserInfo:
        if self.faults.get("userinfo_only"):
            return UserInfo(sub=user.sub)
        return UserInfo(sub=user.sub, email=user.email, email_verified=True, groups=user.groups)

    def _save_token(self, token: dict[str, Any], req: Any) -> None:
        self.access_tokens[token["access_token"]] = req.user

    def _authorization_server(self, app: Flask) -> AuthorizationServer:
        codes: dict[str, _Code] = {}
        client = _Client()
        provider = self

        class CodeGrant(grants.AuthorizationCodeGrant):
            TOKEN_ENDPOINT_AUTH_METHODS = ["client_secret_basic"]

            def save_authorization_code(self, code: str, req: Any) -> None:
                data = req.payload.data
                codes[code] = _Code(
                    code,
                    req.payload.redirect_uri,
                    req.scope,
                    req.user,
                    data.get("nonce"),
                    data.get("code_challenge"),
                    data.get("code_challenge_method"),
                )

            def query_authorization_code(self, code: str, _client: Any) -> _Code | None:
                return codes.get(code)

            def delete_authorization_code(self, authorization_code: _Code) -> None:
                codes.pop(authorization_code.code, None)

            def authenticate_user(self, authorization_code: _Code) -> Person:
                return authorization_code.person

        class OpenIDCode(oidc_grants.OpenIDCode):
            def exists_nonce(self, nonce: str, req: Any) -> bool:
                return any(c.nonce == nonce for c in codes.values())

            def resolve_client_private_key(self, _client: Any) -> KeySet:
                return KeySet([provider.key])

            def get_client_algorithm(self, _client: Any) -> str:
                return "RS256"

            def get_encode_header(self, _client: Any) -> dict[str, str]:
                return {"alg": "RS256", "kid": "k1"}

            def get_client_claims(self, _client: Any) -> dict[str, Any]:
                now = int(time.time())
                exp = now + 300 + int(provider.faults.get("exp_offset", 0))
                claims = {"iss": provider.issuer, "aud": [provider.faults.get("aud", CLIENT_ID)], "exp": exp}
                if "exp_offset" in provider.faults:
                    claims["iat"] = exp - 300
                return claims

            def generate_user_info(self, user: Person, scope: str) -> UserInfo:
                return provider._id_token_claims(user)

        server = AuthorizationServer(
            app, query_client=lambda cid: client if cid == CLIENT_ID else None, save_token=self._save_token
        )
        server.register_grant(CodeGrant, [OpenIDCode(require_nonce=True), CodeChallenge(required=True)])
        return server

    def _routes(self, app: Flask, server: AuthorizationServer) -> None:
        provider = self

        @app.get("/.well-known/openid-configuration")
        def discovery() -> dict[str, Any]:
            return {
                "issuer": provider.issuer,
                "authorization_endpoint": f"{provider.issuer}/authorize",
                "token_endpoint": f"{provider.issuer}/token",
                "jwks_uri": f"{provider.issuer}/jwks",
                "userinfo_endpoint": f"{provider.issuer}/userinfo",
                "end_session_endpoint": f"{provider.issuer}/logout",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
            }

        @app.get("/jwks")
        def jwks() -> dict[str, Any]:
            return dict(KeySet([provider.key]).as_dict(private=False))

        @app.route("/authorize", methods=["GET", "POST"])
        def authorize() -> Any:
            if request.method == "GET":
                server.get_consent_grant(end_user=None)  # validates the request (PKCE, nonce...)
                action = html.escape(request.full_path)
                return (
                    f'<form method="post" action="{action}"><label>User <input name="username"></label>'
                    '<button name="confirm" value="yes">Allow</button></form>'
                )
            person = provider.people.get(request.form.get("username", ""))
            return server.create_authorization_response(grant_user=person)

        @app.post("/token")
        def token() -> Any:
            return server.create_token_response()

        @app.get("/userinfo")
        def userinfo() -> Any:
            bearer = request.headers.get("authorization", "").removeprefix("Bearer ")
            person = provider.access_tokens.get(bearer)
            if person is None:
                return {"error": "invalid_token"}, 401
            return {"sub": person.sub, "email": person.email, "email_verified": True, "groups": person.groups}

        @app.get("/logout")
        def logout() -> Any:
            provider.logouts.append(dict(request.args))
            return redirect(request.args["post_logout_redirect_uri"])
