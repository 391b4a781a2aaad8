"""Reading the settings: environment, `*_FILE` secrets, an optional YAML file; every problem at once.

Precedence, highest first: constructor arguments, `TANTRA_*` variables, `TANTRA_*_FILE` files (as
Kubernetes and Docker mount secrets), the YAML file named by `TANTRA_CONFIG_FILE`, the defaults.
Values are never printed: a problem names the setting and says what is wrong with it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource

S = TypeVar("S", bound=BaseSettings)

ENV_PREFIX = "TANTRA_"
CONFIG_FILE_ENV = "TANTRA_CONFIG_FILE"
# Fields whose values may be secret (or hold one, as URLs with passwords do): never echoed.
_SECRET_WORDS = ("key", "secret", "password", "token", "url", "dsn")


class ConfigError(Exception):
    """The configuration cannot be used; `problems` lists every one, each naming its setting."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))
        self.problems = problems


def env_name(field: str) -> str:
    return ENV_PREFIX + field.upper()


def is_secret_field(name: str) -> bool:
    return any(word in name.lower() for word in _SECRET_WORDS)


class SecretFilesSource(PydanticBaseSettingsSource):
    """`TANTRA_<NAME>_FILE=/run/secrets/x` sets <name> from the file's content (trailing newline cut).
    A field whose own name ends in `_file` is a path, not a secret, and is left to the env source."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> None:
        super().__init__(settings_cls)
        self._environ = os.environ if environ is None else environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        path = self._environ.get(env_name(field_name) + "_FILE")
        if not path or field_name.endswith("_file"):
            return None, field_name, False
        try:
            return Path(path).read_text().rstrip("\r\n"), field_name, False
        except OSError:
            return None, field_name, False  # reported by `problems_before_validation`

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for name, field in self.settings_cls.model_fields.items():
            value, key, _ = self.get_field_value(field, name)
            if value is not None:
                values[key] = value
        return values


class YamlFileSource(PydanticBaseSettingsSource):
    """The YAML file's top-level mapping: keys are the settings' names (`port`, `upstreams`, ...)."""

    def __init__(self, settings_cls: type[BaseSettings], path: Path | None) -> None:
        super().__init__(settings_cls)
        self._data = read_yaml(path) if path is not None else {}

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        fields = self.settings_cls.model_fields
        return {name: value for name, value in self._data.items() if name in fields}


def read_yaml(path: Path) -> dict[str, Any]:
    """The file's mapping; {} when it is unreadable or not a mapping (the loader reports why)."""
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return data if isinstance(data, dict) else {}


def customise_sources(
    settings_cls: type[BaseSettings],
    init_settings: PydanticBaseSettingsSource,
    env_settings: PydanticBaseSettingsSource,
) -> tuple[PydanticBaseSettingsSource, ...]:
    """For Settings.settings_customise_sources: init, env, *_FILE, YAML (path from init or env)."""
    init_kwargs = getattr(init_settings, "init_kwargs", {})
    configured = init_kwargs.get("config_file") or os.environ.get(CONFIG_FILE_ENV)
    path = Path(configured) if configured else None
    return init_settings, env_settings, SecretFilesSource(settings_cls), YamlFileSource(settings_cls, path)


def problems_before_validation(
    settings_cls: type[BaseSettings], config_file: Path | None, environ: Mapping[str, str]
) -> list[str]:
    """What pydantic cannot see: unreadable secret files, a broken or misspelt YAML file."""
    problems: list[str] = []
    fields = settings_cls.model_fields
    for name in fields:
        variable = env_name(name) + "_FILE"
        path = environ.get(variable)
        if path and not name.endswith("_file"):
            if not Path(path).is_file():
                problems.append(f"{name} ({variable}): the file {path} does not exist or is not a file")
            elif not os.access(path, os.R_OK):
                problems.append(f"{name} ({variable}): the file {path} is not readable")
    if config_file is None:
        return problems
    try:
        data = yaml.safe_load(config_file.read_text())
    except OSError as exc:
        return [*problems, f"config_file ({CONFIG_FILE_ENV}): cannot read {config_file}: {exc.strerror}"]
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where is not None else ""
        return [*problems, f"config_file ({CONFIG_FILE_ENV}): {config_file} is not valid YAML{at}"]
    if data is None:
        return problems
    if not isinstance(data, dict):
        return [*problems, f"config_file ({CONFIG_FILE_ENV}): {config_file} must hold a mapping of settings"]
    for key in data:
        if key not in fields:
            problems.append(f"{key} (in {config_file.name}): unknown setting")
    return problems


def describe_validation_error(exc: ValidationError) -> list[str]:
    """One line per problem: the dotted setting name, its variable, and pydantic's reason."""
    lines = []
    for error in exc.errors(include_url=False):
        loc = [str(part) for part in error.get("loc", ())]
        name = ".".join(loc) or "settings"
        top = loc[0] if loc else ""
        where = f" ({env_name(top)})" if top else ""
        message = error.get("msg", "invalid")
        given = error.get("input")
        shown = ""
        if top and not is_secret_field(top) and isinstance(given, str | int | float | bool) and given != "":
            shown = f" (got {str(given)[:60]!r})"
        lines.append(f"{name}{where}: {message}{shown}")
    return lines


def load_settings(settings_cls: type[S], **overrides: Any) -> S:
    """Build and validate the settings from the process environment (and `overrides`, which win),
    or raise ConfigError listing every problem found."""
    env = os.environ
    configured = overrides.get("config_file") or env.get(CONFIG_FILE_ENV)
    config_file = Path(configured) if configured else None
    problems = problems_before_validation(settings_cls, config_file, env)
    settings: S | None = None
    try:
        settings = settings_cls(**overrides)
    except ValidationError as exc:
        problems.extend(describe_validation_error(exc))
    if settings is not None:
        check = getattr(settings, "problems", None)
        if callable(check):
            problems.extend(check())
    if problems:
        raise ConfigError(problems)
    assert settings is not None
    return settings


def redacted_dump(settings: BaseModel) -> dict[str, Any]:
    """The settings as an operator may see them: secret-ish values masked."""
    out: dict[str, Any] = {}
    for name, value in settings.model_dump(mode="json").items():
        out[name] = "[redacted]" if is_secret_field(name) and value not in (None, "", {}) else value
    return out
