"""`python -m tantra_slack`: HTTP mode (Bolt's server on $PORT, signatures verified) or Socket Mode
(SLACK_APP_TOKEN set), and /healthz on $HEALTH_PORT (8080). Configuration from the environment; a
`*_FILE` variable names a secret file."""

from __future__ import annotations

import json
import logging
import os

from slack_sdk import WebClient
from tantra_bots import env, serve_health

from tantra_slack.bot import Answerer, BotConfig, build_app


def main() -> None:
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "INFO"))
    config = BotConfig(
        gateway_url=env("TANTRA_BASE_URL", "http://127.0.0.1:8000") or "",
        api_key=env("TANTRA_API_KEY") or "",
        model=env("TANTRA_MODEL", "tantra-tiny") or "",
        workspace_keys=json.loads(env("TANTRA_WORKSPACE_KEYS", "{}") or "{}"),
        instructions=env("TANTRA_INSTRUCTIONS"),
        max_file_bytes=int(env("TANTRA_MAX_FILE_BYTES", "20000000") or 0),
        transcription_model=env("TANTRA_TRANSCRIPTION_MODEL", "whisper-1") or "",
        max_output_tokens=int(env("TANTRA_MAX_OUTPUT_TOKENS", "0") or 0) or None,
    )
    web = WebClient(token=env("SLACK_BOT_TOKEN"), base_url=env("SLACK_API_URL", WebClient.BASE_URL) or "")
    app = build_app(Answerer(config), signing_secret=env("SLACK_SIGNING_SECRET") or "", client=web)
    health_port = int(os.environ.get("HEALTH_PORT", "8080"))
    app_token = env("SLACK_APP_TOKEN")
    if app_token:
        from slack_bolt.adapter.socket_mode import SocketModeHandler

        handler = SocketModeHandler(app, app_token)
        serve_health(handler.client.is_connected, health_port)
        handler.start()
    else:
        # HTTP mode: Bolt checked the token with auth.test when the app was built; serving is up.
        serve_health(lambda: True, health_port)
        app.start(port=int(os.environ.get("PORT", "3000")))


if __name__ == "__main__":
    main()
