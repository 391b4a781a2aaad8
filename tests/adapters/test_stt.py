"""The speech adapter on real parts: PyAV decoding of every container, whisper.cpp (pywhispercpp)
running the locally built tiny model in worker processes, streaming, cancelling and limits."""

from __future__ import annotations

import asyncio
import functools
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np
import pytest

from adapters import MediaError
from adapters.stt import (
    SAMPLE_RATE,
    PcmResampler,
    Segment,
    Transcriber,
    Transcript,
    decode_audio,
    pcm16_to_pcm,
)
from tests.audio import FORMATS, encode, speech_file, voice_like


@pytest.mark.parametrize("fmt", sorted(FORMATS))
def test_every_container_decodes_to_16k_mono(fmt: str) -> None:
    pcm = decode_audio(speech_file(fmt, seconds=1.5))
    assert pcm.samples.dtype == np.float32
    assert abs(pcm.seconds - 1.5) < 0.1  # codecs pad a few milliseconds
    assert 0.05 < float(np.abs(pcm.samples).max()) <= 1.0


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"", "not an audio file"),
        (b"RIFF\x00\x00\x00\x00WAVEfmt garbage" * 20, "not an audio file"),
        (b"%PDF-1.4 not audio at all" * 50, "not an audio file"),
    ],
)
def test_bad_bytes_are_a_clear_media_error(data: bytes, words: str) -> None:
    with pytest.raises(MediaError) as caught:
        decode_audio(data, param="file")
    assert caught.value.code == "invalid_audio" and caught.value.param == "file"
    assert words in caught.value.message


def test_truncated_audio_is_refused_or_shorter() -> None:
    data = speech_file("mp3", seconds=2.0)
    try:
        pcm = decode_audio(data[: len(data) // 3])
    except MediaError as exc:
        assert exc.code == "invalid_audio"
    else:
        assert pcm.seconds < 1.5


def test_a_video_without_sound_is_refused() -> None:
    import io

    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as out:
        stream = out.add_stream("mpeg4", rate=5)
        stream.width, stream.height = 32, 32
        frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    with pytest.raises(MediaError, match="no audio stream"):
        decode_audio(buffer.getvalue())


def test_length_limit_from_header_and_while_decoding() -> None:
    with pytest.raises(MediaError) as caught:
        decode_audio(speech_file("wav", seconds=3.0), max_seconds=2.0)
    assert caught.value.code == "audio_too_long" and "2 s" in caught.value.message
    assert decode_audio(speech_file("wav", seconds=1.0), max_seconds=2.0).seconds == pytest.approx(
        1.0, abs=0.01
    )


def test_realtime_pcm16_chunks_resample_like_the_whole() -> None:
    samples = (voice_like(1.0) * 32767).astype("<i2").tobytes()
    whole = pcm16_to_pcm(samples).samples
    resampler = PcmResampler(24_000)
    pieces = [resampler.feed(samples[i : i + 4801]) for i in range(0, len(samples), 4801)]  # odd sizes
    chunked = np.concatenate([*pieces, resampler.flush()])
    assert len(whole) == pytest.approx(SAMPLE_RATE, abs=32)
    assert len(chunked) == len(whole)
    assert np.allclose(chunked, whole, atol=1e-4)


@pytest.fixture(scope="module")
async def transcriber(whisper_model: Path) -> AsyncIterator[Transcriber]:
    service = Transcriber(whisper_model, workers=1, threads=2, queue_timeout_s=300, max_seconds=60)
    await service.start()
    yield service
    await service.close()


async def test_transcribes_encoded_audio_with_the_built_model(transcriber: Transcriber) -> None:
    transcript = await transcriber.transcribe(speech_file("mp3", seconds=2.0), word_timestamps=True)
    assert isinstance(transcript, Transcript)
    assert transcript.duration_s == pytest.approx(2.0, abs=0.1)
    assert isinstance(transcript.text, str) and transcript.language
    assert transcript.words is not None
    for segment in transcript.segments:
        assert 0 <= segment.start <= segment.end
        assert all(token < 50257 for token in segment.tokens)
    assert transcript.text == "".join(segment.text for segment in transcript.segments).strip()


async def test_stream_yields_segments_then_the_transcript(transcriber: Transcriber) -> None:
    pcm = decode_audio(speech_file("wav", seconds=2.0))
    items = [item async for item in transcriber.stream(pcm, language="en", translate=True, prompt="Hi")]
    assert isinstance(items[-1], Transcript) and items[-1].language == "en"
    assert all(isinstance(item, Segment) for item in items[:-1])
    assert len(items) - 1 == len(items[-1].segments)


async def test_unknown_language_is_refused_before_any_work(transcriber: Transcriber) -> None:
    with pytest.raises(MediaError) as caught:
        await transcriber.transcribe(np.zeros(SAMPLE_RATE, np.float32), language="klingon")
    assert caught.value.code == "invalid_language" and caught.value.param == "language"


async def test_a_caller_that_leaves_frees_the_worker(transcriber: Transcriber) -> None:
    long = decode_audio(speech_file("wav", seconds=40.0))

    async def listen() -> None:
        async for _ in transcriber.stream(long):
            pass

    task = asyncio.create_task(listen())
    await asyncio.sleep(1.0)
    task.cancel()
    started = time.perf_counter()
    transcript = await transcriber.transcribe(encode(voice_like(1.0), "flac"))
    assert transcript.duration_s == pytest.approx(1.0, abs=0.1)
    # The abandoned 40 s job stops (abort, or kill and respawn after the grace) rather than running out.
    assert time.perf_counter() - started < 60


async def test_a_decoder_that_dies_fails_only_its_request() -> None:
    """A decoder process that dies (here by `os._exit`, standing in for FFmpeg crashing on a
    hostile file) is a 400 for its request; the gateway's process lives on and so does decoding."""
    service = Transcriber("/nonexistent.bin", workers=1, max_seconds=60)
    try:
        with pytest.raises(MediaError) as crashed:
            await service._in_decoder(functools.partial(os._exit, 139), "file")
        assert (crashed.value.status, crashed.value.code, crashed.value.param) == (
            400,
            "invalid_audio",
            "file",
        )
        pcm = await service.decode(speech_file("wav", seconds=1.0), param="file")
        assert pcm.seconds == pytest.approx(1.0, abs=0.05)
    finally:
        await service.close()
