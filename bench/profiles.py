"""Feature profiles: each a named set of TANTRA_* settings, so every feature's cost shows as its own row.

A profile names the Settings fields it needs; when the gateway under test does not
have them yet, the profile is reported as pending instead of silently measuring
something else. Profiles that need a caller key create a tenant and a key through
the admin API once the gateway is up, with limits high enough never to refuse.
"""

from __future__ import annotations

import json
import secrets
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ADMIN_KEY = "bench-admin-" + secrets.token_hex(8)
# High enough that the limiter does all its work (one Redis round trip per check) yet never refuses.
_GENEROUS_LIMITS = {"rpm": 10_000_000, "tpm": 1_000_000_000, "max_concurrent": 100_000}


@dataclass(frozen=True)
class Profile:
    """`settings` are TANTRA_* variables; `needs` are Settings fields that must exist."""

    name: str
    description: str
    settings: dict[str, str] = field(default_factory=dict)
    needs: tuple[str, ...] = ()
    redis: bool = False
    key_limits: dict[str, int] | None = None
    """None: no caller key. A dict: create a key with these limits and send it."""
    model: str | None = None
    """The model the load asks for; None: the bench's model."""


FULL_STACK = "tantra+all"
"""The profile the service targets (the sweep and the sustained load) are measured through."""

PROFILES: tuple[Profile, ...] = (
    Profile(
        "tantra",
        "relay only: auth off, access log off",
        {"TANTRA_AUTH_ENABLED": "false", "TANTRA_LOG_LEVEL": "warning"},
    ),
    Profile(
        "tantra+access-log",
        "relay plus the gateway's structured access line per request (log level info, the default)",
        {"TANTRA_AUTH_ENABLED": "false", "TANTRA_LOG_LEVEL": "info"},
    ),
    Profile(
        "tantra+auth",
        "API keys checked (cached), usage ledger",
        {"TANTRA_AUTH_ENABLED": "true", "TANTRA_LOG_LEVEL": "warning"},
        needs=("auth_enabled", "admin_key", "database_url", "redis_url"),
        redis=True,
        key_limits={},
    ),
    Profile(
        "tantra+auth+limits",
        "keys plus RPM, TPM and concurrency limits in Redis",
        {"TANTRA_AUTH_ENABLED": "true", "TANTRA_LOG_LEVEL": "warning"},
        needs=("auth_enabled", "admin_key", "database_url", "redis_url", "limits_window_s"),
        redis=True,
        key_limits=_GENEROUS_LIMITS,
    ),
    Profile(
        "tantra+all",
        "keys, limits, access line, metrics and tracing (spans exported over OTLP/HTTP)",
        # Metrics are always on. Spans go to a port where no collector listens: making, batching
        # and trying to export them is the gateway's cost; the export runs off the request path.
        {
            "TANTRA_AUTH_ENABLED": "true",
            "TANTRA_LOG_LEVEL": "info",
            "TANTRA_OTLP_ENDPOINT": "http://127.0.0.1:9/",
        },
        needs=("auth_enabled", "admin_key", "redis_url", "otlp_endpoint"),
        redis=True,
        key_limits=_GENEROUS_LIMITS,
    ),
)


# Automatic model choice (docs/orchestration.md): `auto` over the bench's model and its alias on the
# fixed-latency upstream (bench/upstream.py), every rule evaluated (the short prompts and the
# upstream's cards leave both candidates to the last rule), then the same with a task classifier
# whose embeddings the upstream answers at once (one call per request: the gateway's cost).
_BENCH_MODEL = "tantra-tiny"  # bench/run.py's MODEL
_CANDIDATES = {_BENCH_MODEL: {"features": ["tools"]}, f"{_BENCH_MODEL}-long": {"context_length": 100_000}}
_RULES: list[dict[str, Any]] = [
    {"type": "modality"},
    {"type": "context"},
    {"type": "features"},
    {"type": "budget", "max_usd_per_mtok": 100},
]
_TASK: dict[str, Any] = {
    "type": "task",
    "embedding_model": "bench-embedding",
    "tasks": {
        "code": {"examples": ["write a python function", "fix this bug"], "models": [f"{_BENCH_MODEL}-long"]},
        "chat": {"examples": ["hello how are you", "tell me a story"], "models": [_BENCH_MODEL]},
    },
}


def _auto(*rules: dict[str, Any]) -> dict[str, str]:
    auto = {"candidates": _CANDIDATES, "rules": list(rules)}
    return {"TANTRA_VIRTUAL_MODELS": json.dumps({"auto": auto})}


PROFILES += (
    Profile(
        "tantra+auto",
        "relay, with the model chosen by rules (modality, context, features, budget) for `auto`",
        {"TANTRA_AUTH_ENABLED": "false", "TANTRA_LOG_LEVEL": "warning", **_auto(*_RULES)},
        needs=("virtual_models",),
        model="auto",
    ),
    Profile(
        "tantra+auto+classifier",
        "the same rules, then a task classifier (one embeddings call per request, centroids cached)",
        {"TANTRA_AUTH_ENABLED": "false", "TANTRA_LOG_LEVEL": "warning", **_auto(*_RULES, _TASK)},
        needs=("virtual_models",),
        model="auto",
    ),
)


def by_name(name: str) -> Profile:
    for profile in PROFILES:
        if profile.name == name:
            return profile
    raise KeyError(f"no profile {name!r}; known: {', '.join(p.name for p in PROFILES)}")


def missing_fields(profile: Profile, settings_fields: set[str]) -> list[str]:
    """The Settings fields a profile needs that the gateway under test does not have yet."""
    return [name for name in profile.needs if name not in settings_fields]


def settings_for(profile: Profile, redis_url: str | None, state_dir: Path) -> dict[str, str]:
    """The profile's variables plus where its state lives (a fresh SQLite file, the bench's Redis)."""
    env = dict(profile.settings)
    if profile.needs:
        state_dir.mkdir(parents=True, exist_ok=True)
        env["TANTRA_ADMIN_KEY"] = ADMIN_KEY
        database = state_dir / f"{profile.name}-{secrets.token_hex(4)}.db"
        env["TANTRA_DATABASE_URL"] = f"sqlite+aiosqlite:///{database}"
    if redis_url is not None:
        env["TANTRA_REDIS_URL"] = redis_url
    return env


def provision_key(base_url: str, profile: Profile) -> dict[str, str]:
    """Create a tenant and a key through /admin; returns the headers a caller sends."""
    if profile.key_limits is None:
        return {}
    name = f"bench-{profile.name}-{secrets.token_hex(4)}"  # a fresh name: the store may be reused
    tenant = _admin_post(base_url, "/admin/tenants", {"name": name})
    key = _admin_post(
        base_url, "/admin/keys", {"tenant_id": tenant["id"], "name": "bench", **profile.key_limits}
    )
    return {"authorization": f"Bearer {key['key']}"}


def _admin_post(base_url: str, path: str, body: dict[str, object]) -> dict[str, str]:
    request = urllib.request.Request(
        base_url + path,
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json", "authorization": f"Bearer {ADMIN_KEY}"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer: dict[str, str] = json.loads(response.read())
        return answer
