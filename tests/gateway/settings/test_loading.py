"""Loading and reloading settings: env, *_FILE secrets and YAML; every problem listed; live swaps."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest
from pydantic import BaseModel, Field, HttpUrl, SecretStr
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

from gateway.observability import GatewayMetrics
from gateway.settings.load import ConfigError, customise_sources, load_settings, redacted_dump
from gateway.settings.reload import ConfigReloader, LiveConfig
from gateway.settings.sections import LimitOverride, LimitsConfig


class Limits(BaseModel):
    rpm: int | None = Field(None, ge=1)


class DemoSettings(BaseSettings):
    """The shape of gateway.settings.schema.Settings, small: what the loader is meant to serve."""

    model_config = SettingsConfigDict(env_prefix="TANTRA_", extra="ignore", frozen=True)

    port: int = Field(8000, ge=1, le=65535)
    engine_url: HttpUrl = HttpUrl("http://127.0.0.1:8001")
    admin_key: SecretStr | None = None
    log_level: str = "info"
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    config_file: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return customise_sources(settings_cls, init_settings, env_settings)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("TANTRA_"):
            monkeypatch.delenv(name)


def test_env_beats_file_secrets_beat_yaml(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tantra.yaml"
    config.write_text("port: 9000\nlog_level: debug\nlimits:\n  key_defaults: {rpm: 5}\n")
    secret = tmp_path / "admin"
    secret.write_text("tantra-admin-key-from-a-file\n")
    monkeypatch.setenv("TANTRA_CONFIG_FILE", str(config))
    monkeypatch.setenv("TANTRA_ADMIN_KEY_FILE", str(secret))
    monkeypatch.setenv("TANTRA_LOG_LEVEL", "warning")
    settings = load_settings(DemoSettings)
    assert settings.port == 9000
    assert settings.log_level == "warning"
    assert settings.admin_key is not None
    assert settings.admin_key.get_secret_value() == "tantra-admin-key-from-a-file"
    assert settings.limits.key_defaults.rpm == 5
    assert "tantra-admin-key-from-a-file" not in repr(settings)
    assert redacted_dump(settings)["admin_key"] == "[redacted]"


def test_every_problem_is_listed_with_its_setting(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "tantra.yaml"
    config.write_text("port: 0\nengine_urll: http://x\nlimits:\n  key_defaults: {rpm: 0, burst: 3}\n")
    monkeypatch.setenv("TANTRA_CONFIG_FILE", str(config))
    monkeypatch.setenv("TANTRA_ENGINE_URL", "not a url with a secret-password")
    monkeypatch.setenv("TANTRA_ADMIN_KEY_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError) as caught:
        load_settings(DemoSettings)
    problems = "\n".join(caught.value.problems)
    assert "port (TANTRA_PORT)" in problems and "(got '0')" in problems
    assert "engine_url (TANTRA_ENGINE_URL)" in problems
    assert "engine_urll (in tantra.yaml): unknown setting" in problems
    assert "limits.key_defaults.rpm" in problems and "limits.key_defaults.burst" in problems
    assert "admin_key (TANTRA_ADMIN_KEY_FILE)" in problems
    assert "secret-password" not in str(caught.value)
    assert len(caught.value.problems) == 6


def test_broken_yaml_is_named(tmp_path: Path) -> None:
    config = tmp_path / "tantra.yaml"
    config.write_text("port: [1\n")
    with pytest.raises(ConfigError) as caught:
        load_settings(DemoSettings, config_file=config)
    assert "is not valid YAML at line" in caught.value.problems[0]


def test_limit_overrides_fill_and_replace() -> None:
    from gateway.store import Limits as StoreLimits

    limits = LimitsConfig(
        key_defaults=LimitOverride(rpm=10, tpm=1000),
        keys={"k1": LimitOverride(rpm=2)},
    )
    assert limits.for_key("k0", StoreLimits(tpm=50)) == StoreLimits(rpm=10, tpm=50)
    assert limits.for_key("k1", StoreLimits(rpm=100)) == StoreLimits(rpm=2, tpm=1000)
    assert LimitsConfig().empty and not limits.empty
    audio = LimitsConfig.model_validate(
        {"tenants": {"t1": {"audio_spm": 120}}, "key_defaults": {"audio_spm": 60}}
    )
    assert audio.for_tenant("t1", StoreLimits(audio_spm=5)) == StoreLimits(audio_spm=120)
    assert audio.for_key("k0", StoreLimits()) == StoreLimits(audio_spm=60)
    assert audio.for_key("k0", StoreLimits(audio_spm=5)) == StoreLimits(audio_spm=5)


async def test_reload_swaps_whole_and_refuses_bad_files(tmp_path: Path) -> None:
    config = tmp_path / "tantra.yaml"
    config.write_text("log_level: info\nlimits: {key_defaults: {rpm: 5}}\n")
    live = LiveConfig(load_settings(DemoSettings, config_file=config))
    seen: list[tuple[str, str]] = []
    live.subscribe(lambda old, new: seen.append((old.log_level, new.log_level)))
    metrics = GatewayMetrics()
    reloader = ConfigReloader(
        live, DemoSettings, restart_only={"port"}, metrics=metrics, overrides={"config_file": config}
    )
    snapshot = live.current

    config.write_text("log_level: debug\nport: 9999\nlimits: {key_defaults: {rpm: 1}}\n")
    assert await reloader.reload("test")
    assert live.current.log_level == "debug" and live.current.limits.key_defaults.rpm == 1
    assert live.current.port == 8000  # restart-only: kept
    assert snapshot.limits.key_defaults.rpm == 5  # what a running request holds is untouched
    assert seen == [("info", "debug")]

    active = live.current
    config.write_text("log_level: debug\nlimits: {key_defaults: {rpm: -1}}\n")
    assert not await reloader.reload("test")
    assert live.current is active
    assert reloader.last_error is not None
    assert "limits.key_defaults.rpm" in reloader.last_error.problems[0]
    exposition = metrics.render().decode()
    assert 'tantra_config_reloads_total{result="applied"} 1.0' in exposition
    assert 'tantra_config_reloads_total{result="rejected"} 1.0' in exposition


async def test_sighup_and_file_changes_reload(tmp_path: Path) -> None:
    config = tmp_path / "tantra.yaml"
    config.write_text("log_level: info\n")
    live = LiveConfig(load_settings(DemoSettings, config_file=config))
    reloader = ConfigReloader(live, DemoSettings, poll_interval_s=0.05, overrides={"config_file": config})
    reloader.start()
    try:
        config.write_text("log_level: debug\n")
        await _until(lambda: live.current.log_level == "debug")

        # An atomic replace (as editors and ConfigMaps do) is a new inode.
        replacement = tmp_path / "next.yaml"
        replacement.write_text("log_level: error\n")
        replacement.replace(config)
        await _until(lambda: live.current.log_level == "error")

        if reloader._watch is not None:  # no watcher now: only the signal can reload
            reloader._watch.cancel()
        config.write_text("log_level: critical\n")
        os.kill(os.getpid(), signal.SIGHUP)
        await _until(lambda: live.current.log_level == "critical")
    finally:
        await reloader.close()


async def _until(check: object, within_s: float = 5.0) -> None:
    assert callable(check)
    deadline = asyncio.get_running_loop().time() + within_s
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)
