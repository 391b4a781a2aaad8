"""Speech to text: audio decoded with PyAV to 16 kHz mono, transcribed by whisper.cpp (pywhispercpp)
in worker processes. Knows nothing of HTTP; the gateway's audio routes, chat's `input_audio` parts and
the realtime endpoint all call `Transcriber`; `Diarizer` tells who spoke when (Resemblyzer's voice
encoder, in worker processes of its own); `AudioAnalyzer` labels emotions and sound events
(Hugging Face audio-classification checkpoints, in worker processes too). See docs/audio.md."""

from adapters.stt.analysis import AnalysisResult, AudioLabel
from adapters.stt.analyzer import AudioAnalyzer, analysis_installed
from adapters.stt.audio import SAMPLE_RATE, DecodedAudio, PcmResampler, decode_audio, has_audio, pcm16_to_pcm
from adapters.stt.diarization import DiarizeOptions, SpeakerTurn
from adapters.stt.diarizer import Diarizer, diarization_installed
from adapters.stt.transcriber import Transcriber, TranscriberBusy
from adapters.stt.whisper import Segment, TranscribeOptions, Transcript, Word, check_language

__all__ = [
    "SAMPLE_RATE",
    "AnalysisResult",
    "AudioAnalyzer",
    "AudioLabel",
    "DecodedAudio",
    "DiarizeOptions",
    "Diarizer",
    "PcmResampler",
    "Segment",
    "SpeakerTurn",
    "TranscribeOptions",
    "Transcriber",
    "TranscriberBusy",
    "Transcript",
    "Word",
    "analysis_installed",
    "check_language",
    "decode_audio",
    "diarization_installed",
    "has_audio",
    "pcm16_to_pcm",
]
