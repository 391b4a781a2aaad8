"""A session's own noise reduction (`input_audio_noise_reduction`, GA `audio.input.noise_reduction`):
echoed as OpenAI's, turned off with null, a bad type refused naming the field; the input's gate
follows it (what the gate does to VAD is measured in test_realtime_noisy_vad.py)."""

from __future__ import annotations

from gateway.realtime.session import RealtimeLimits
from tests.gateway.realtime.fake_loopback import Client

ON = {"type": "far_field"}


def gated(client: Client) -> bool:
    return client.session._audio._gate is not None


async def test_beta_session_turns_it_on_and_off() -> None:
    client = Client(RealtimeLimits(noise_strength=1.0))
    assert not gated(client)
    updated = await client.send({"type": "session.update", "session": {"input_audio_noise_reduction": ON}})
    assert updated["type"] == "session.updated"
    assert updated["session"]["input_audio_noise_reduction"] == ON and gated(client)
    # Another field alone leaves it as it was.
    kept = await client.send({"type": "session.update", "session": {"instructions": "Be brief."}})
    assert kept["session"]["input_audio_noise_reduction"] == ON and gated(client)
    off = await client.send({"type": "session.update", "session": {"input_audio_noise_reduction": None}})
    assert off["session"]["input_audio_noise_reduction"] is None and not gated(client)


async def test_ga_shape_in_and_out() -> None:
    client = Client(RealtimeLimits(noise_strength=1.0))
    session = {"type": "realtime", "audio": {"input": {"noise_reduction": {"type": "near_field"}}}}
    updated = await client.send({"type": "session.update", "session": session})
    assert updated["session"]["audio"]["input"]["noise_reduction"] == {"type": "near_field"}
    assert gated(client)


async def test_a_transcription_session_takes_it_too() -> None:
    client = Client(RealtimeLimits(noise_strength=1.0))
    updated = await client.send(
        {"type": "transcription_session.update", "session": {"input_audio_noise_reduction": ON}}
    )
    assert updated["session"]["input_audio_noise_reduction"] == ON and gated(client)


async def test_an_unknown_type_is_refused_and_nothing_changes() -> None:
    client = Client(RealtimeLimits(noise_strength=1.0))
    error = await client.send(
        {"type": "session.update", "session": {"input_audio_noise_reduction": {"type": "studio"}}}
    )
    assert error["type"] == "error"
    assert error["error"]["param"] == "session.input_audio_noise_reduction.type"
    assert not gated(client)


async def test_the_operator_s_gate_stays_on_whatever_the_session_says() -> None:
    client = Client(RealtimeLimits(noise_suppression=0.8, noise_strength=0.8))
    assert gated(client)
    await client.send({"type": "session.update", "session": {"input_audio_noise_reduction": None}})
    assert gated(client)
