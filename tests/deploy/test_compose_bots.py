"""deploy/compose.bots.yml (issue 22, point 5): Compose accepts it over docker-compose.yml, each bot
only in its profile, hardened like Tantra's other containers, its credentials as secret files the
bots read through NAME_FILE variables, the gateways reached through nginx's port."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

from tests.deploy.support import COMPOSE_FILE, ENV_EXAMPLE, ROOT, compose_binary

BOTS_FILE = ROOT / "deploy" / "compose.bots.yml"


def _config(env_file: Path, *profiles: str) -> dict[str, Any]:
    args = [str(compose_binary()), "--project-directory", str(ROOT), "--env-file", str(env_file)]
    args += ["--file", str(COMPOSE_FILE), "--file", str(BOTS_FILE)]
    for profile in profiles:
        args += ["--profile", profile]
    result = subprocess.run([*args, "config", "--format", "json"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout))


def test_the_bots_run_only_in_their_profiles(tmp_path: Path) -> None:
    plain = _config(ENV_EXAMPLE)
    assert not {"discord-bot", "slack-bot"} & set(plain["services"])
    env = tmp_path / "bots.env"
    bot_secrets = (
        "TANTRA_BOT_API_KEY=sk-tantra-x\nDISCORD_TOKEN=d\nSLACK_BOT_TOKEN=b\nSLACK_SIGNING_SECRET=s\n"
    )
    env.write_text(ENV_EXAMPLE.read_text() + bot_secrets)
    config = _config(env, "discord", "slack")
    nginx = (ROOT / "deploy" / "nginx" / "nginx.conf").read_text()
    (listen,) = re.findall(r"listen (\d+);", nginx)
    for name, token in (("discord-bot", "DISCORD_TOKEN"), ("slack-bot", "SLACK_BOT_TOKEN")):
        service = config["services"][name]
        assert service["cap_drop"] == ["ALL"] and service["read_only"] is True
        assert "no-new-privileges:true" in service["security_opt"]
        environment = service["environment"]
        assert environment["TANTRA_BASE_URL"] == f"http://lb:{listen}"
        assert not {"TANTRA_API_KEY", token} & set(environment)
        for variable in ("TANTRA_API_KEY_FILE", token + "_FILE"):
            source = environment[variable].removeprefix("/run/secrets/")
            assert source in [s["source"] for s in service["secrets"]], variable
            assert "environment" in config["secrets"][source]
        assert service["depends_on"]["lb"]["condition"] == "service_healthy"
