"""Speech to text: audio decoded with PyAV to 16 kHz mono, transcribed by whisper.cpp (pywhispercpp)
in worker processes. Knows nothing of HTTP; the gateway's audio routes, chat's `input_audio` parts and
the realtime endpoint all call `Transcriber`. See docs/audio.md."""

from adapters.stt.audio import SAMPLE_RATE, DecodedAudio, PcmResampler, decode_audio, has_audio, pcm16_to_pcm
from adapters.stt.transcriber import Transcriber, TranscriberBusy
from adapters.stt.whisper import Segment, TranscribeOptions, Transcript, Word, check_language

__all__ = [
    "SAMPLE_RATE",
    "DecodedAudio",
    "PcmResampler",
    "Segment",
    "TranscribeOptions",
    "Transcriber",
    "TranscriberBusy",
    "Transcript",
    "Word",
    "check_language",
    "decode_audio",
    "has_audio",
    "pcm16_to_pcm",
]
