"""Request bodies for the accept/reject test of issue 17, point 5 (tests/gateway/test_vllm_acceptance.py).

Each entry is (name, path, body); the test adds the served model. Valid and invalid bodies, chat and
completions, each small (max_tokens 1 or 2) so the whole corpus runs in seconds on the tiny engine.
The test holds no expectation per body: the engine's own decision is the expectation.
"""

from __future__ import annotations

from typing import Any

CHAT = "/v1/chat/completions"
COMPLETIONS = "/v1/completions"
USER = [{"role": "user", "content": "hi"}]
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {}}},
}
PIXEL = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0g"
    "AAAABJRU5ErkJggg=="
)
SCHEMA = {"type": "object", "properties": {"a": {"type": "integer"}}}


def chat(**fields: Any) -> dict[str, Any]:
    return {"messages": USER, "max_tokens": 1, **fields}


def completion(**fields: Any) -> dict[str, Any]:
    return {"prompt": "hi", "max_tokens": 1, **fields}


def said(*messages: dict[str, Any]) -> dict[str, Any]:
    return {"messages": list(messages), "max_tokens": 1}


CORPUS: list[tuple[str, str, dict[str, Any]]] = [
    # --- chat: valid -------------------------------------------------------------------------------
    ("chat-plain", CHAT, chat()),
    ("chat-system-and-user", CHAT, said({"role": "system", "content": "be brief"}, *USER)),
    ("chat-developer", CHAT, said({"role": "developer", "content": "be brief"}, *USER)),
    ("chat-text-parts", CHAT, said({"role": "user", "content": [{"type": "text", "text": "hi"}]})),
    ("chat-stream", CHAT, chat(stream=True)),
    ("chat-stream-usage", CHAT, chat(stream=True, stream_options={"include_usage": True})),
    ("chat-empty-stream-options-no-stream", CHAT, chat(stream_options={})),
    ("chat-max-completion-tokens", CHAT, {"messages": USER, "max_completion_tokens": 1}),
    (
        "chat-sampling",
        CHAT,
        chat(temperature=0.7, top_p=0.9, seed=1, presence_penalty=1, frequency_penalty=-1),
    ),
    ("chat-n-2", CHAT, chat(n=2)),
    ("chat-stop-4", CHAT, chat(stop=["a", "b", "c", "d"])),
    ("chat-logprobs", CHAT, chat(logprobs=True, top_logprobs=2)),
    ("chat-top-logprobs-minus-1", CHAT, chat(logprobs=True, top_logprobs=-1)),
    ("chat-top-logprobs-20", CHAT, chat(logprobs=True, top_logprobs=20)),
    ("chat-json-object", CHAT, chat(response_format={"type": "json_object"})),
    ("chat-json-object-extra-key", CHAT, chat(response_format={"type": "json_object", "note": "x"})),
    ("chat-text-format-extra-key", CHAT, chat(response_format={"type": "text", "note": "x"})),
    (
        "chat-json-schema-name-spaces-dots",
        CHAT,
        chat(
            response_format={"type": "json_schema", "json_schema": {"name": "my schema.v1", "schema": SCHEMA}}
        ),
    ),
    (
        "chat-json-schema-extra-keys",
        CHAT,
        chat(
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "s", "schema": SCHEMA, "extra": 1},
                "other": True,
            }
        ),
    ),
    ("chat-tools", CHAT, chat(tools=[TOOL])),
    ("chat-tools-required", CHAT, chat(tools=[TOOL], tool_choice="required", max_tokens=2)),
    (
        "chat-tool-name-odd",
        CHAT,
        chat(tools=[{"type": "function", "function": {"name": "ns:look up/" + "x" * 70}}]),
    ),
    (
        "chat-tool-choice-named-no-type",
        CHAT,
        chat(tools=[TOOL], tool_choice={"function": {"name": "lookup"}}),
    ),
    (
        "chat-tool-round-trip",
        CHAT,
        said(
            *USER,
            {
                "role": "assistant",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "lookup", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "42"},
        ),
    ),
    ("chat-tool-message-no-id", CHAT, said(*USER, {"role": "tool", "content": "42"})),
    ("chat-assistant-last", CHAT, said(*USER, {"role": "assistant", "content": "he"})),
    (
        "chat-vllm-extras",
        CHAT,
        chat(top_k=5, min_p=0.1, repetition_penalty=1.1, min_tokens=0, ignore_eos=True),
    ),
    ("chat-unknown-extra", CHAT, chat(some_future_field={"a": 1})),
    ("chat-service-tier-auto", CHAT, chat(service_tier="auto")),
    ("chat-user-metadata", CHAT, chat(user="u1", metadata={"k": "v"}, store=False)),
    ("chat-seed-negative", CHAT, chat(seed=-5)),
    ("chat-null-fields", CHAT, chat(temperature=None, stop=None, tools=None)),
    # --- chat: invalid (vLLM refuses these too) ------------------------------------------------------
    ("chat-no-messages", CHAT, {"max_tokens": 1}),
    ("chat-messages-not-list", CHAT, {"messages": "hi", "max_tokens": 1}),
    ("chat-message-no-role", CHAT, said({"content": "hi"})),
    ("chat-content-number", CHAT, said({"role": "user", "content": 5})),
    ("chat-text-part-no-text", CHAT, said({"role": "user", "content": [{"type": "text"}]})),
    ("chat-temperature-negative", CHAT, chat(temperature=-1)),
    ("chat-temperature-3", CHAT, chat(temperature=3)),
    ("chat-top-p-2", CHAT, chat(top_p=2)),
    ("chat-presence-penalty-3", CHAT, chat(presence_penalty=3)),
    ("chat-max-tokens-0", CHAT, chat(max_tokens=0)),
    ("chat-max-tokens-string", CHAT, chat(max_tokens="two")),
    ("chat-stream-options-no-stream", CHAT, chat(stream_options={"include_usage": True})),
    ("chat-top-logprobs-no-logprobs", CHAT, chat(top_logprobs=2)),
    ("chat-top-logprobs-minus-2", CHAT, chat(logprobs=True, top_logprobs=-2)),
    ("chat-top-logprobs-above-engine-max", CHAT, chat(logprobs=True, top_logprobs=500)),
    ("chat-tools-empty", CHAT, chat(tools=[])),
    ("chat-tool-choice-no-tools", CHAT, chat(tool_choice="required")),
    (
        "chat-tool-choice-unknown-name",
        CHAT,
        chat(tools=[TOOL], tool_choice={"type": "function", "function": {"name": "x"}}),
    ),
    ("chat-tool-choice-bad-string", CHAT, chat(tools=[TOOL], tool_choice="always")),
    ("chat-response-format-bad-type", CHAT, chat(response_format={"type": "yaml"})),
    (
        "chat-json-schema-no-name",
        CHAT,
        chat(response_format={"type": "json_schema", "json_schema": {"schema": SCHEMA}}),
    ),
    ("chat-n-0", CHAT, chat(n=0)),
    ("chat-min-tokens-above-max", CHAT, chat(min_tokens=5, max_tokens=1)),
    ("chat-typeless-text-part", CHAT, said({"role": "user", "content": [{"text": "hi"}]})),
    ("chat-part-type-number", CHAT, said({"role": "user", "content": [{"type": 5, "text": "hi"}]})),
    # --- chat: where OpenAI's schema and vLLM's differ ---------------------------------------------
    ("chat-custom-role", CHAT, said({"role": "critic", "content": "hi"})),
    ("chat-bare-string-part", CHAT, said({"role": "user", "content": ["hi"]})),
    ("chat-logit-bias-200", CHAT, chat(logit_bias={"1": 200})),
    ("chat-n-200", CHAT, chat(n=200)),
    ("chat-metadata-int", CHAT, chat(metadata={"a": 1})),
    ("chat-modalities-string", CHAT, chat(modalities="text")),
    ("chat-modalities-text", CHAT, chat(modalities=["text"], audio="ignored without audio output")),
    (
        "chat-audio-output",
        CHAT,
        chat(modalities=["text", "audio"], audio={"voice": "alloy", "format": "pcm16"}),
    ),
    ("chat-function-call-required", CHAT, chat(function_call="required")),
    ("chat-functions-no-name", CHAT, chat(functions=[{"description": "x"}])),
    ("chat-system-no-content", CHAT, said({"role": "system"}, *USER)),
    ("chat-messages-empty", CHAT, {"messages": [], "max_tokens": 1}),
    ("chat-top-k-minus-5", CHAT, chat(top_k=-5)),
    ("chat-repetition-penalty-0", CHAT, chat(repetition_penalty=0)),
    ("chat-assistant-no-content", CHAT, said(*USER, {"role": "assistant"})),
    ("chat-user-no-content", CHAT, said({"role": "user"})),
    ("chat-developer-no-content", CHAT, said({"role": "developer"}, *USER)),
    ("chat-tool-no-content", CHAT, said(*USER, {"role": "tool", "tool_call_id": "c1"})),
    ("chat-text-part-null", CHAT, said({"role": "user", "content": [{"type": "text", "text": None}]})),
    ("chat-tool-without-type", CHAT, chat(tools=[{"function": {"name": "lookup"}}])),
    ("chat-max-completion-tokens-0", CHAT, {"messages": USER, "max_completion_tokens": 0}),
    # --- chat: refused at the gateway on purpose (see DELIBERATE in the test) ------------------------
    ("chat-prediction", CHAT, chat(prediction={"type": "content", "content": "hello"})),
    ("chat-web-search-options", CHAT, chat(web_search_options={})),
    ("chat-service-tier-flex", CHAT, chat(service_tier="flex")),
    ("chat-service-tier-bogus", CHAT, chat(service_tier="fastest")),
    ("chat-audio-output-no-audio", CHAT, chat(modalities=["text", "audio"])),
    (
        "chat-audio-output-bad-format",
        CHAT,
        chat(modalities=["audio"], audio={"voice": "alloy", "format": "ogg"}),
    ),
    (
        "chat-audio-output-n-2",
        CHAT,
        chat(modalities=["text", "audio"], audio={"voice": "alloy", "format": "wav"}, n=2),
    ),
    ("chat-typeless-image-part", CHAT, said({"role": "user", "content": [{"image_url": {"url": PIXEL}}]})),
    (
        "chat-image-part-two-media-fields",
        CHAT,
        said(
            {
                "role": "user",
                "content": [{"type": "image_url", "image_url": {"url": PIXEL}, "video_url": {"url": PIXEL}}],
            }
        ),
    ),
    # --- completions: valid -------------------------------------------------------------------------
    ("cmpl-plain", COMPLETIONS, completion()),
    ("cmpl-token-ids", COMPLETIONS, completion(prompt=[1, 2, 3])),
    ("cmpl-list-of-texts", COMPLETIONS, completion(prompt=["a", "b"])),
    ("cmpl-list-of-token-lists", COMPLETIONS, completion(prompt=[[1, 2], [3]])),
    ("cmpl-stream", COMPLETIONS, completion(stream=True)),
    ("cmpl-echo", COMPLETIONS, completion(echo=True)),
    ("cmpl-echo-max-tokens-0", COMPLETIONS, completion(echo=True, max_tokens=0)),
    ("cmpl-echo-max-tokens-0-logprobs", COMPLETIONS, completion(echo=True, max_tokens=0, logprobs=1)),
    ("cmpl-logprobs-3", COMPLETIONS, completion(logprobs=3)),
    ("cmpl-logprobs-minus-1", COMPLETIONS, completion(logprobs=-1)),
    ("cmpl-best-of", COMPLETIONS, completion(n=1, best_of=2)),
    ("cmpl-best-of-below-n", COMPLETIONS, completion(n=2, best_of=1)),
    ("cmpl-best-of-21", COMPLETIONS, completion(best_of=21)),
    ("cmpl-suffix-none", COMPLETIONS, completion(suffix=None)),
    (
        "cmpl-json-schema-name-dots",
        COMPLETIONS,
        completion(
            response_format={"type": "json_schema", "json_schema": {"name": "a.b c", "schema": SCHEMA}}
        ),
    ),
    ("cmpl-vllm-extras", COMPLETIONS, completion(top_k=3, add_special_tokens=False)),
    ("cmpl-service-tier-default", COMPLETIONS, completion(service_tier="default")),
    # --- completions: invalid (vLLM refuses these too) ----------------------------------------------
    ("cmpl-no-prompt", COMPLETIONS, {"max_tokens": 1}),
    ("cmpl-empty-prompt", COMPLETIONS, completion(prompt="")),
    ("cmpl-empty-prompt-list", COMPLETIONS, completion(prompt=[])),
    ("cmpl-prompt-number", COMPLETIONS, completion(prompt=5)),
    ("cmpl-max-tokens-0", COMPLETIONS, completion(max_tokens=0)),
    ("cmpl-logprobs-minus-2", COMPLETIONS, completion(logprobs=-2)),
    ("cmpl-logprobs-above-engine-max", COMPLETIONS, completion(logprobs=500)),
    ("cmpl-stop-5", COMPLETIONS, completion(stop=["a", "b", "c", "d", "e"])),
    ("cmpl-temperature-string", COMPLETIONS, completion(temperature="hot")),
    ("cmpl-prompt-embeds-only", COMPLETIONS, {"prompt_embeds": "AAAA", "max_tokens": 1}),
    ("cmpl-prompt-embeds-empty", COMPLETIONS, {"prompt_embeds": [], "max_tokens": 1}),
    ("cmpl-stream-options-no-stream", COMPLETIONS, completion(stream_options={"include_usage": True})),
    # --- completions: refused at the gateway on purpose ---------------------------------------------
    ("cmpl-service-tier-priority", COMPLETIONS, completion(service_tier="priority")),
]
