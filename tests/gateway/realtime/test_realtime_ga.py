"""The GA <-> beta translation of /v1/realtime events (no engine); the SDK's GA client against the
real engine is in tests/gateway/realtime/test_realtime.py."""

from __future__ import annotations

from gateway.realtime import ga


def test_a_ga_session_update_means_the_same_beta_update() -> None:
    update = {
        "type": "session.update",
        "session": {
            "type": "realtime",
            "output_modalities": ["audio"],
            "max_output_tokens": 64,
            "audio": {
                "input": {"transcription": {"model": "whisper-1"}, "turn_detection": None},
                "output": {"voice": "nova", "speed": 1.5},
            },
        },
    }
    assert ga.is_ga_update(update)
    assert not ga.is_ga_update({"type": "session.update", "session": {"modalities": ["text"]}})
    assert ga.client_event(update)["session"] == {
        "modalities": ["text", "audio"],
        "max_response_output_tokens": 64,
        "input_audio_transcription": {"model": "whisper-1"},
        "turn_detection": None,
        "voice": "nova",
        "speed": 1.5,
    }


def test_responses_and_items_are_translated_both_ways() -> None:
    create = {
        "type": "response.create",
        "response": {"output_modalities": ["text"], "audio": {"output": {"voice": "x"}}},
    }
    assert ga.client_event(create)["response"] == {"modalities": ["text"], "voice": "x"}
    item = {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "hi"}]}
    assert ga.client_event({"type": "conversation.item.create", "item": item})["item"]["content"] == [
        {"type": "text", "text": "hi"}
    ]
    delta = ga.server_event({"type": "response.audio_transcript.delta", "delta": "a"})
    assert delta == {"type": "response.output_audio_transcript.delta", "delta": "a"}
    done = ga.server_event(
        {
            "type": "response.done",
            "response": {
                "modalities": ["text", "audio"],
                "output": [{"content": [{"type": "audio", "transcript": "a"}]}],
            },
        }
    )
    assert done["response"]["output_modalities"] == ["audio"]
    assert done["response"]["output"][0]["content"][0]["type"] == "output_audio"
    # Events without a GA rename pass unchanged.
    assert ga.server_event({"type": "input_audio_buffer.committed", "item_id": "i"})["type"] == (
        "input_audio_buffer.committed"
    )
