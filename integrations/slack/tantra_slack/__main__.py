"""`python -m tantra_slack`: HTTP mode (Bolt's server on $PORT, signatures verified) or Socket Mode
(SLACK_APP_TOKEN set). Configuration from the environment; a `*_FILE` variable names a secret file."""

from __future__ import annotations

import json
import logging
import os

from slack_sdk import WebClient

from tantra_slack.bot import Answerer, BotConfig, build_app


def _env(name: str, default: str | None = None) -> str | None:
    path = os.environ.get(name + "_FILE")
    if path:
        with open(path) as secret:
            return secret.read().strip()
    return os.environ.get(name, default)


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    config = BotConfig(
        gateway_url=_env("TANTRA_BASE_URL", "http://127.0.0.1:8000") or "",
        api_key=_env("TANTRA_API_KEY") or "",
        model=_env("TANTRA_MODEL", "tantra-tiny") or "",
        workspace_keys=json.loads(_env("TANTRA_WORKSPACE_KEYS", "{}") or "{}"),
        instructions=_env("TANTRA_INSTRUCTIONS"),
    )
    web = WebClient(token=_env("SLACK_BOT_TOKEN"), base_url=_env("SLACK_API_URL", WebClient.BASE_URL) or "")
    app = build_app(Answerer(config), signing_secret=_env("SLACK_SIGNING_SECRET") or "", client=web)
    app_token = _env("SLACK_APP_TOKEN")
    if app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        SocketModeHandler(app, app_token).start()
    else:
        app.start(port=int(os.environ.get("PORT", "3000")))


if __name__ == "__main__":
    main()
