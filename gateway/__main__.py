"""`python -m gateway` / `tantra-gateway`: serve the gateway with uvicorn, configured from TANTRA_*.

python -m gateway                 serve (the default)
python -m gateway migrate         bring the database schema up to date (Alembic)
python -m gateway bootstrap ...   for `make run`: an admin key file and a dev tenant with a key
python -m gateway admin create-user --username NAME --role ROLE [--tenant ID] [--password-file F]
                                  a named admin user of the panel (password from the file, from
                                  TANTRA_NEW_ADMIN_PASSWORD, else asked for)
python -m gateway memory copy --from faiss --to pgvector [--kind memory|vector-store] [--all]
                                  fill another vector backend (gateway/memory_copy.py)
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import getpass
import os
import secrets
import signal
import sys
from pathlib import Path
from types import FrameType

import uvicorn

from gateway import memory_copy
from gateway.app import create_app
from gateway.auth import KeyAdmin, hash_key
from gateway.auth.identities import AdminIdentities
from gateway.http.drain import Drain
from gateway.observability import configure_logging
from gateway.observability.logs import resolve_format
from gateway.settings.load import ConfigError, load_settings
from gateway.settings.schema import Settings
from gateway.store import AuditContext, Database, Limits, Store
from gateway.store.admin_users import ROLES, AdminUserStore, AlreadyExists


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m gateway", description="Tantra's OpenAI-compatible gateway."
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("serve", help="serve the gateway (the default)")
    commands.add_parser("migrate", help="bring the database schema up to date")
    boot = commands.add_parser(
        "bootstrap", help="make an admin key file and a dev tenant with an API key, unless they exist"
    )
    boot.add_argument("--admin-key-file", type=Path, required=True, help="created with a new key if missing")
    boot.add_argument("--dev-key-file", type=Path, required=True, help="holds the dev key; made if missing")
    boot.add_argument("--tenant", default="dev", help="the dev tenant's name (default: dev)")
    _admin_commands(commands)
    memory_copy.add_commands(commands)
    args = parser.parse_args(argv)
    if args.command == "bootstrap" and not args.admin_key_file.exists():
        # Before the settings are read: TANTRA_ADMIN_KEY_FILE may name this very file, and the
        # settings check that it exists.
        _write_secret(args.admin_key_file, "tantra-admin-" + secrets.token_urlsafe(32))

    try:
        settings = load_settings(Settings)
    except ConfigError as exc:
        # Every problem at once, each with its setting's name; values that may be secret are not shown.
        print(f"tantra-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    if args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "memory":
        _copy_memory(settings, args)
    elif args.command == "admin":
        asyncio.run(_create_admin_user(settings, args))
    elif args.command == "bootstrap":
        dev_key = args.dev_key_file.read_text().strip() if args.dev_key_file.exists() else None
        secret = asyncio.run(_bootstrap(settings, dev_key, args.tenant))
        if secret is not None:
            _write_secret(args.dev_key_file, secret)
            print(f"created a key for tenant {args.tenant!r} in {args.dev_key_file}", file=sys.stderr)
    else:
        serve(settings)


def serve(settings: Settings) -> None:
    configure_logging(
        log_format=resolve_format(settings.log_format),
        level=settings.log_level,
        log_prompts=settings.log_prompts,
    )
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # Logging is structlog's (configured above); the gateway writes its own access line.
        log_config=None,
        access_log=False,
        # The gateway's own x-request-id and error envelope replace uvicorn's extras.
        server_header=False,
        # The drain has already waited for in-flight requests; this bounds what is left after it.
        timeout_graceful_shutdown=5,
    )
    # One process, two listening sockets: the API port, and the operator port (metrics, upstream
    # health, detailed readiness) that the listener gate (gateway/http/listeners.py) tells apart.
    sockets = [config.bind_socket()]
    if settings.operator_port:
        sockets.append(_listener(config, settings.operator_port).bind_socket())
    DrainingServer(config, app.state.components.drain, settings.drain_grace_s).run(sockets=sockets)


def _listener(config: uvicorn.Config, port: int) -> uvicorn.Config:
    """The same server settings on another port (only its socket is used)."""
    return uvicorn.Config(config.app, host=config.host, port=port, log_config=None)


class DrainingServer(uvicorn.Server):
    """uvicorn, except that the first SIGTERM drains before exiting: uvicorn alone would close
    its listening socket at once (new clients get a refused connection, not a 503) and give
    in-flight streams only its own timeout. A second signal, or SIGINT, exits as uvicorn does."""

    def __init__(self, config: uvicorn.Config, drain: Drain, grace_s: float) -> None:
        super().__init__(config)
        self._drain = drain
        self._grace_s = grace_s

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        if sig != signal.SIGTERM or self._drain.draining or not self.started:
            super().handle_exit(sig, frame)
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            super().handle_exit(sig, frame)
            return
        exit_now = functools.partial(super().handle_exit, sig, frame)
        loop.call_soon_threadsafe(self._drain.begin, self._grace_s, exit_now)


async def _migrate(settings: Settings) -> None:
    database = Database(settings.database_url)
    try:
        await database.migrate()
    finally:
        await database.close()
    print(f"database schema is up to date ({database.url.render_as_string(hide_password=True)})")


async def _bootstrap(settings: Settings, dev_key: str | None, tenant_name: str) -> str | None:
    """A new dev key's secret, or None when `dev_key` still works (so bootstrapping is idempotent)."""
    database = Database(settings.database_url)
    try:
        await database.migrate()
        store = Store(database)
        if dev_key:
            record = await store.find_key(hash_key(dev_key))
            if record is not None and record.revoked_at is None:
                return None
        audit = AuditContext(actor="bootstrap")
        admin = KeyAdmin(store, bus=None)
        tenant = await store.find_tenant(tenant_name)
        if tenant is None:
            tenant = await admin.create_tenant(tenant_name, Limits(), audit=audit)
        _, secret = await admin.create_key(
            tenant.id, name="dev", limits=Limits(), expires_at=None, audit=audit
        )
        return secret
    finally:
        await database.close()


def _admin_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    admin = commands.add_parser("admin", help="named admin users of the control panel")
    actions = admin.add_subparsers(dest="admin_command", required=True)
    create = actions.add_parser(
        "create-user", help="create an admin user (owner, operator, auditor, tenant_admin)"
    )
    create.add_argument("--username", required=True)
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--tenant", default=None, help="the tenant id a tenant_admin manages")
    create.add_argument("--password-file", type=Path, default=None, help="first line: the password")


async def _create_admin_user(settings: Settings, args: argparse.Namespace) -> None:
    if args.password_file is not None:
        password = args.password_file.read_text().splitlines()[0].strip()
    else:
        password = os.environ.get("TANTRA_NEW_ADMIN_PASSWORD") or getpass.getpass(
            f"password for {args.username}: "
        )
    database = Database(settings.database_url)
    try:
        await database.migrate()
        identities = AdminIdentities(AdminUserStore(database), session_ttl_s=settings.admin_session_ttl_s)
        try:
            user = await identities.create_user(
                args.username, password, args.role, args.tenant, audit=AuditContext(actor="cli")
            )
        except (ValueError, AlreadyExists) as exc:
            print(f"tantra-gateway: {exc}", file=sys.stderr)
            raise SystemExit(2) from None
        print(f"created admin user {user.username!r} ({user.role}), id {user.user_id}")
    finally:
        await database.close()


def _copy_memory(settings: Settings, args: argparse.Namespace) -> None:
    try:
        copied = asyncio.run(memory_copy.run(settings, args))
    except ValueError as exc:
        print(f"tantra-gateway: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    for kind, done in copied.items():
        print(
            f"{kind}: {done.rows} vectors of {done.owners} owners copied from {args.source} to "
            f"{args.target} ({done.missing} in SQL but not in {args.source})"
        )


def _write_secret(path: Path, secret: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(secret + "\n")


if __name__ == "__main__":
    main()
