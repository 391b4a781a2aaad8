"""OpenAI's GA Realtime shapes, translated to and from the beta ones the session speaks.

A session turns GA when the client's `session.update` says `session.type: "realtime"` (what the
GA SDK, `client.realtime`, always sends); until then, and for beta clients, nothing changes. The
differences covered: the session's nested `audio.input` / `audio.output` settings and
`output_modalities`; `response.create`'s `output_modalities` and `audio.output.voice`; the
`output_text` / `output_audio` content types; and the renamed response events
(`response.output_text.delta`, `response.output_audio.delta`,
`response.output_audio_transcript.delta` and their `.done`); the audio formats
(`{"type": "audio/pcmu"}` for beta's `g711_ulaw`...); `conversation.item.added` and `.done`
where beta has `conversation.item.created`; and transcription sessions (`session.type:
"transcription"`, beta's `transcription_session.update`).
"""

from __future__ import annotations

from typing import Any

_EVENTS = {
    "response.text.delta": "response.output_text.delta",
    "response.text.done": "response.output_text.done",
    "response.audio.delta": "response.output_audio.delta",
    "response.audio.done": "response.output_audio.done",
    "response.audio_transcript.delta": "response.output_audio_transcript.delta",
    "response.audio_transcript.done": "response.output_audio_transcript.done",
}
_PARTS_OUT = {"text": "output_text", "audio": "output_audio"}
_PARTS_IN = {value: key for key, value in _PARTS_OUT.items()}
_FORMATS_IN = {"audio/pcm": "pcm16", "audio/pcmu": "g711_ulaw", "audio/pcma": "g711_alaw"}
_FORMATS_OUT = {value: key for key, value in _FORMATS_IN.items()}
# Events only GA has: beta names the first `conversation.item.created` and has no second.
_BETA = {"conversation.item.added": "conversation.item.created", "conversation.item.done": None}


def is_ga_update(payload: Any) -> bool:
    session = payload.get("session") if isinstance(payload, dict) else None
    return (
        payload.get("type") == "session.update"
        and isinstance(session, dict)
        and session.get("type") in ("realtime", "transcription")
    )


def client_event(payload: dict[str, Any]) -> dict[str, Any]:
    """A GA client event as the beta event that means the same."""
    kind = payload.get("type")
    if kind == "session.update" and isinstance(payload.get("session"), dict):
        if payload["session"].get("type") == "transcription":
            return {
                **payload,
                "type": "transcription_session.update",
                "session": _session_in(payload["session"]),
            }
        return {**payload, "session": _session_in(payload["session"])}
    if kind == "response.create" and isinstance(payload.get("response"), dict):
        return {**payload, "response": _response_in(payload["response"])}
    if kind == "conversation.item.create" and isinstance(payload.get("item"), dict):
        return {**payload, "item": _item(payload["item"], _PARTS_IN)}
    return payload


def server_events(event: dict[str, Any], *, ga: bool) -> list[dict[str, Any]]:
    """A server event as the client expects it: the session's (beta's, with GA's item events)
    as beta's, or as GA's. GA tells a complete item's arrival twice: `conversation.item.added`
    and `conversation.item.done`."""
    kind = event["type"]
    if not ga:
        if kind not in _BETA:
            return [event]
        renamed = _BETA[kind]
        return [{**event, "type": renamed}] if renamed else []
    if kind == "conversation.item.created":
        added = server_event({**event, "type": "conversation.item.added"})
        return [added, {**added, "type": "conversation.item.done"}]
    return [server_event(event)]


def server_event(event: dict[str, Any]) -> dict[str, Any]:
    """A beta server event as the GA client expects it."""
    out = dict(event)
    if out["type"] == "transcription_session.updated":
        return {**out, "type": "session.updated", "session": _transcription_out(out["session"])}
    out["type"] = _EVENTS.get(event["type"], event["type"])
    if isinstance(out.get("item"), dict):
        out["item"] = _item(out["item"], _PARTS_OUT)
    if isinstance(out.get("part"), dict):
        out["part"] = _part(out["part"], _PARTS_OUT)
    if isinstance(out.get("session"), dict):
        out["session"] = _session_out(out["session"])
    response = out.get("response")
    if isinstance(response, dict):
        response = dict(response)
        if isinstance(response.get("output"), list):
            response["output"] = [_item(item, _PARTS_OUT) for item in response["output"]]
        if "modalities" in response:
            response["output_modalities"] = _modalities_out(response.pop("modalities"))
        if "output_audio_format" in response:
            voice = response.pop("voice", None)
            response["audio"] = {
                "output": {"format": _format_out(response.pop("output_audio_format")), "voice": voice}
            }
        out["response"] = response
    return out


def _session_in(session: dict[str, Any]) -> dict[str, Any]:
    beta = {key: value for key, value in session.items() if key not in ("type", "audio", "output_modalities")}
    if "output_modalities" in session:
        beta["modalities"] = _modalities_in(session["output_modalities"])
    if "max_output_tokens" in session:
        beta["max_response_output_tokens"] = beta.pop("max_output_tokens")
    audio = _object(session.get("audio"))
    heard, spoken = _object(audio.get("input")), _object(audio.get("output"))
    if "transcription" in heard:
        beta["input_audio_transcription"] = heard["transcription"]
    if "turn_detection" in heard:
        beta["turn_detection"] = heard["turn_detection"]
    if "noise_reduction" in heard:
        beta["input_audio_noise_reduction"] = heard["noise_reduction"]
    for name in ("voice", "speed"):
        if name in spoken:
            beta[name] = spoken[name]
    for name, given in (("input_audio_format", heard), ("output_audio_format", spoken)):
        if "format" in given:
            beta[name] = _format_in(given["format"])
    return beta


def _response_in(response: dict[str, Any]) -> dict[str, Any]:
    beta = {key: value for key, value in response.items() if key not in ("audio", "output_modalities")}
    if "output_modalities" in response:
        beta["modalities"] = _modalities_in(response["output_modalities"])
    spoken = _object(_object(response.get("audio")).get("output"))
    if "voice" in spoken:
        beta["voice"] = spoken["voice"]
    if "format" in spoken:
        beta["output_audio_format"] = _format_in(spoken["format"])
    if isinstance(response.get("input"), list):
        beta["input"] = [
            _item(item, _PARTS_IN) if isinstance(item, dict) else item for item in response["input"]
        ]
    return beta


def _format_in(given: Any) -> Any:
    """GA's `{"type": "audio/pcmu"}` as beta's `g711_ulaw` (what is not known stays, to be refused)."""
    kind = given.get("type") if isinstance(given, dict) else given
    return _FORMATS_IN.get(kind, kind) if isinstance(kind, str) else kind


def _format_out(beta: Any) -> dict[str, Any]:
    kind = _FORMATS_OUT.get(beta, "audio/pcm")
    return {"type": kind, "rate": 24000} if kind == "audio/pcm" else {"type": kind}


def _transcription_out(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "transcription",
        "id": session.get("id"),
        "object": "realtime.transcription_session",
        "audio": {
            "input": {
                "format": _format_out(session.get("input_audio_format")),
                "transcription": session.get("input_audio_transcription"),
                "turn_detection": session.get("turn_detection"),
                "noise_reduction": session.get("input_audio_noise_reduction"),
            }
        },
        "include": [],
    }


def _session_out(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "type": "realtime",
        "id": session.get("id"),
        "object": "realtime.session",
        "model": session.get("model"),
        "output_modalities": _modalities_out(session.get("modalities", ["text"])),
        "instructions": session.get("instructions"),
        "audio": {
            "input": {
                "format": _format_out(session.get("input_audio_format")),
                "transcription": session.get("input_audio_transcription"),
                "turn_detection": session.get("turn_detection"),
                "noise_reduction": session.get("input_audio_noise_reduction"),
            },
            "output": {
                "format": _format_out(session.get("output_audio_format")),
                "voice": session.get("voice"),
                "speed": session.get("speed"),
            },
        },
        "tools": session.get("tools", []),
        "tool_choice": _choice_out(session.get("tool_choice", "auto")),
        "max_output_tokens": session.get("max_response_output_tokens", "inf"),
    }


def _choice_out(choice: Any) -> Any:
    """Beta's `tool_choice` (a mode or a function's name) as GA's."""
    return choice if choice in ("auto", "none", "required") else {"type": "function", "name": choice}


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _modalities_in(given: Any) -> Any:
    # GA's ["audio"] is spoken output with its transcript: the beta ["text", "audio"].
    return ["text", "audio"] if isinstance(given, list) and "audio" in given else given


def _modalities_out(modalities: Any) -> list[str]:
    return ["audio"] if isinstance(modalities, list) and "audio" in modalities else ["text"]


def _item(item: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    if not isinstance(item.get("content"), list):
        return item
    return {
        **item,
        "content": [_part(part, names) if isinstance(part, dict) else part for part in item["content"]],
    }


def _part(part: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    kind = part.get("type")
    return {**part, "type": names[kind]} if kind in names else part
