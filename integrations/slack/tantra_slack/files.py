"""Slack file attachments as chat content parts (tantra_bots.attachments): each file of a message
is downloaded from its `url_private_download` with the bot token (Slack's files need it), audio is
transcribed through the gateway first. Files too large or of a kind no part carries are named in
the question, so the model (and through its answer the user) knows they were left out."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
import openai
from slack_sdk import WebClient
from tantra_bots import Attachment, build_input, part_for, refusal, with_left_out

if TYPE_CHECKING:
    from tantra_slack.bot import BotConfig


def _download(web: WebClient, file: dict[str, Any]) -> bytes:
    url = file.get("url_private_download") or file.get("url_private")
    if not url:
        raise ValueError("the file has no download URL")
    headers = {"authorization": f"Bearer {web.token}"} if web.token else {}
    response = httpx.get(url, headers=headers, follow_redirects=True, timeout=60)
    response.raise_for_status()
    return response.content


def input_with_files(
    tantra: openai.OpenAI, web: WebClient, text: str, files: list[dict[str, Any]], config: BotConfig
) -> str | list[Any]:
    parts: list[dict[str, Any]] = []
    left_out: list[str] = []
    for file in files:
        name, mimetype = file.get("name") or file.get("title") or "file", file.get("mimetype")
        reason = refusal(name, mimetype, int(file.get("size") or 0), config.max_file_bytes)
        if reason:
            left_out.append(reason)
            continue
        attachment = Attachment(name, mimetype, _download(web, file))
        transcript = None
        if attachment.kind == "audio":
            transcript = tantra.audio.transcriptions.create(
                model=config.transcription_model, file=(name, attachment.data)
            ).text
        part = part_for(attachment, transcript)
        if part is not None:
            parts.append(part)
    return build_input(with_left_out(text, left_out), parts)
