"""`python -m tantra_discord`: the bot on Discord's gateway, /healthz on $HEALTH_PORT (8080, 200
while connected). Configuration from the environment; a `*_FILE` variable names a secret file."""

from __future__ import annotations

import logging
import os

from tantra_bots import env, serve_health

from tantra_discord.answerer import Answerer, DiscordConfig
from tantra_discord.bot import TantraBot


def config_from_env() -> DiscordConfig:
    return DiscordConfig(
        gateway_url=env("TANTRA_BASE_URL", "http://127.0.0.1:8000") or "",
        api_key=env("TANTRA_API_KEY") or "",
        model=env("TANTRA_MODEL", "tantra-tiny") or "",
        instructions=env("TANTRA_INSTRUCTIONS"),
        edit_interval_s=float(env("DISCORD_EDIT_INTERVAL_S", "1.0") or 1.0),
        max_file_bytes=int(env("TANTRA_MAX_FILE_BYTES", "20000000") or 0),
        transcription_model=env("TANTRA_TRANSCRIPTION_MODEL", "whisper-1") or "",
        max_output_tokens=int(env("TANTRA_MAX_OUTPUT_TOKENS", "0") or 0) or None,
        sync_commands=(env("DISCORD_SYNC_COMMANDS", "true") or "").lower() in ("1", "true", "yes"),
    )


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    token = env("DISCORD_TOKEN")
    if not token:
        raise SystemExit("DISCORD_TOKEN (or DISCORD_TOKEN_FILE) is required")
    bot = TantraBot(Answerer(config_from_env()))
    serve_health(lambda: bot.is_ready() and not bot.is_closed(), int(os.environ.get("HEALTH_PORT", "8080")))
    bot.run(token, log_handler=None)


if __name__ == "__main__":
    main()
