"""The admin panel's single sign-on settings (OIDC, issue 21 point 1; docs/governance.md "Single
sign-on (OIDC)"). A mixin of the panel's own (`AdminPanelFields`, fields_admin.py), so `Settings`
reads them from TANTRA_* exactly as the schema's own; all restart only."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator

from gateway.auth.oidc import OidcConfig, check_roles


class OidcFields(BaseModel):
    oidc_issuer: str | None = Field(
        None,
        description="The OIDC provider's issuer URL (exactly as its ID tokens name it); set with the "
        "client id and secret, the panel offers single sign-on at /admin/ui/login/oidc.",
    )
    oidc_discovery_url: str | None = Field(
        None,
        description="The provider's discovery document; unset: <issuer>/.well-known/openid-configuration.",
    )
    oidc_client_id: str | None = Field(None, description="The panel's client id at the provider.")
    oidc_client_secret: SecretStr | None = Field(
        None, description="The panel's client secret at the provider."
    )
    oidc_client_secret_file: Path | None = Field(
        None, description="A file holding the client secret (first line)."
    )
    oidc_scopes: list[str] = Field(
        default_factory=lambda: ["openid", "email", "profile"],
        description="Scopes asked for (`openid` is added when missing); include the one that "
        "releases the role claim.",
    )
    oidc_role_claim: str = Field(
        "groups", description="The ID token's claim (a string or a list of strings) the role mapping reads."
    )
    oidc_role_mapping: dict[str, str] = Field(
        default_factory=dict,
        description="A role-claim value to a panel role (owner, operator, auditor, "
        "tenant_admin:<tenant id>); a user no value maps is refused, none is an owner unless mapped so.",
    )
    oidc_allowed_domains: list[str] = Field(
        default_factory=list,
        description="E-mail domains allowed to sign in (a verified `email` claim); empty: any.",
    )
    oidc_redirect_url: str | None = Field(
        None,
        description="The callback URL registered at the provider; unset: the request's own "
        "<scheme://host>/admin/ui/login/oidc/callback (set it behind a proxy that rewrites the host).",
    )

    oidc_userinfo: bool = Field(
        False,
        description="Read the role claim and e-mail from the provider's userinfo endpoint when the "
        "ID token does not carry them (providers that release groups only there).",
    )

    @field_validator("oidc_role_mapping")
    @classmethod
    def _known_roles(cls, mapping: dict[str, str]) -> dict[str, str]:
        check_roles(mapping)
        return mapping

    @model_validator(mode="after")
    def _whole(self) -> OidcFields:
        given = [self.oidc_issuer, self.oidc_client_id]
        if any(given) and not (all(given) and self.oidc_secret()):
            raise ValueError("OIDC needs oidc_issuer, oidc_client_id and a client secret together")
        return self

    def oidc_secret(self) -> str | None:
        if self.oidc_client_secret is not None and self.oidc_client_secret.get_secret_value():
            return self.oidc_client_secret.get_secret_value()
        if self.oidc_client_secret_file is not None and self.oidc_client_secret_file.is_file():
            lines = self.oidc_client_secret_file.read_text().splitlines()
            return lines[0].strip() if lines and lines[0].strip() else None
        return None

    def oidc_config(self) -> OidcConfig | None:
        """The provider's configuration, or None: single sign-on is off."""
        secret = self.oidc_secret()
        if not (self.oidc_issuer and self.oidc_client_id and secret):
            return None
        scopes = self.oidc_scopes if "openid" in self.oidc_scopes else ["openid", *self.oidc_scopes]
        return OidcConfig(
            issuer=self.oidc_issuer,
            client_id=self.oidc_client_id,
            client_secret=secret,
            scopes=tuple(scopes),
            discovery_url=self.oidc_discovery_url,
            role_claim=self.oidc_role_claim,
            role_mapping=dict(self.oidc_role_mapping),
            allowed_domains=tuple(d.lower().lstrip("@") for d in self.oidc_allowed_domains),
            redirect_url=self.oidc_redirect_url,
            userinfo=self.oidc_userinfo,
        )
