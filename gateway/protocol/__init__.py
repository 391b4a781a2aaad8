"""OpenAI's wire schema. Imports nothing else of the gateway, so any layer may use it."""

from gateway.protocol.chat import ChatCompletionRequest
from gateway.protocol.common import InvalidParam
from gateway.protocol.completions import CompletionRequest
from gateway.protocol.errors import ErrorBody, ErrorResponse
from gateway.protocol.models import ModelCard, ModelList
from gateway.protocol.speech import SpeechAudioDelta, SpeechAudioDone, SpeechRequest, SpeechUsage
from gateway.protocol.validation import parse_request

__all__ = [
    "ChatCompletionRequest",
    "CompletionRequest",
    "ErrorBody",
    "ErrorResponse",
    "InvalidParam",
    "ModelCard",
    "ModelList",
    "SpeechAudioDelta",
    "SpeechAudioDone",
    "SpeechRequest",
    "SpeechUsage",
    "parse_request",
]
