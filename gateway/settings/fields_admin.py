"""The admin panel's settings: named admin users' sessions, their cookie, and the first owner
(docs/configuration.md, "Admin panel"; docs/governance.md).

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr

from gateway.settings.fields_oidc import OidcFields


class AdminPanelFields(OidcFields):
    """The panel's own settings, and its single sign-on's (fields_oidc.py)."""

    admin_ui_enabled: bool = Field(
        True, description="Serve the control panel under /admin/ui (named admin users log in there)."
    )
    admin_session_ttl_s: float = Field(
        8 * 3600.0,
        gt=0,
        le=30 * 86_400,
        description="How long a panel login lasts before it must be repeated.",
    )
    admin_cookie_secure: Literal["auto", "always", "never"] = Field(
        "auto",
        description="The session cookie's Secure flag: auto sets it when the panel is reached over "
        "HTTPS (the request's scheme, or X-Forwarded-Proto from a trusted proxy).",
    )
    admin_bootstrap_user: str | None = Field(
        None,
        max_length=100,
        description="An owner made at start when no admin user exists yet (with admin_bootstrap_password).",
    )
    admin_bootstrap_password: SecretStr | None = Field(
        None, description="The bootstrap owner's password (at least 12 characters)."
    )
    admin_bootstrap_password_file: Path | None = Field(
        None, description="A file holding the bootstrap owner's password (first line)."
    )

    def bootstrap_owner(self) -> tuple[str, str] | None:
        """The bootstrap owner's name and password, when both are set."""
        password: str | None = None
        if self.admin_bootstrap_password is not None and self.admin_bootstrap_password.get_secret_value():
            password = self.admin_bootstrap_password.get_secret_value()
        elif self.admin_bootstrap_password_file is not None and self.admin_bootstrap_password_file.is_file():
            lines = self.admin_bootstrap_password_file.read_text().splitlines()
            password = lines[0].strip() if lines else None
        if not self.admin_bootstrap_user or not password:
            return None
        return self.admin_bootstrap_user, password
