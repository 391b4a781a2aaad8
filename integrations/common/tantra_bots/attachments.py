"""Chat attachments as Responses API content parts, as OpenAI's API reference gives them: images as
`input_image` (a data URL), PDFs as `input_file` (`file_data` data URL and `filename`), text files
as `input_text`, audio as the `input_text` of its transcript (the Responses API has no audio input
part; the bots transcribe through the gateway's /v1/audio/transcriptions)."""

from __future__ import annotations

import base64
import mimetypes
from dataclasses import dataclass
from typing import Any, Literal

Kind = Literal["image", "pdf", "audio", "text"]

_TEXT_TYPES = {"application/json", "application/xml", "application/x-yaml", "application/yaml"}


@dataclass
class Attachment:
    name: str
    content_type: str | None
    data: bytes

    @property
    def mime(self) -> str:
        """The declared type (without parameters), else the one the file name implies."""
        declared = (self.content_type or "").split(";")[0].strip().lower()
        return declared or mimetypes.guess_type(self.name)[0] or "application/octet-stream"

    @property
    def kind(self) -> Kind | None:
        return classify(self.name, self.content_type)


def classify(name: str, content_type: str | None) -> Kind | None:
    """What an attachment is sent as; None for what no chat part carries (archives, video...)."""
    mime = Attachment(name, content_type, b"").mime
    if mime.startswith("image/"):
        return "image"
    if mime == "application/pdf":
        return "pdf"
    if mime.startswith("audio/"):
        return "audio"
    if mime.startswith("text/") or mime in _TEXT_TYPES:
        return "text"
    return None


def _data_url(attachment: Attachment) -> str:
    return f"data:{attachment.mime};base64," + base64.b64encode(attachment.data).decode()


def part_for(attachment: Attachment, transcript: str | None = None) -> dict[str, Any] | None:
    """The content part for one attachment (an audio one needs its `transcript`); None when it
    cannot be sent."""
    kind = attachment.kind
    if kind == "image":
        return {"type": "input_image", "image_url": _data_url(attachment), "detail": "auto"}
    if kind == "pdf":
        return {"type": "input_file", "filename": attachment.name, "file_data": _data_url(attachment)}
    if kind == "text":
        text = attachment.data.decode("utf-8", errors="replace")
        return {"type": "input_text", "text": f"Attached file {attachment.name}:\n{text}"}
    if kind == "audio" and transcript is not None:
        return {
            "type": "input_text",
            "text": f"Transcript of the attached audio {attachment.name}:\n{transcript}",
        }
    return None


def build_input(text: str, parts: list[dict[str, Any]]) -> str | list[Any]:
    """The `input` of a Responses request: the bare text, or one user message of the text and the
    attachments' parts."""
    if not parts:
        return text
    content = [{"type": "input_text", "text": text or "(see the attachments)"}, *parts]
    return [{"type": "message", "role": "user", "content": content}]


def refusal(name: str, content_type: str | None, size: int, max_bytes: int) -> str | None:
    """Why an attachment is left out (named to the model and so to the user), or None to send it."""
    if size > max_bytes:
        return f"{name} (too large)"
    if classify(name, content_type) is None:
        return f"{name} (unsupported type)"
    return None


def with_left_out(text: str, left_out: list[str]) -> str:
    if not left_out:
        return text
    return text + "\n(Attachments left out: " + ", ".join(left_out) + ")"
