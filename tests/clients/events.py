"""Responses stream events as the openai SDK parses them, for the bots' scripted streams."""

from __future__ import annotations

from openai.types.responses import ResponseTextDeltaEvent


def delta(text: str) -> ResponseTextDeltaEvent:
    """A Responses stream's text delta, as the SDK parses it."""
    return ResponseTextDeltaEvent(
        type="response.output_text.delta",
        delta=text,
        content_index=0,
        item_id="msg_1",
        logprobs=[],
        output_index=0,
        sequence_number=0,
    )
