"""Function calling and out-of-band responses over /v1/realtime, the session's own logic against a
scripted loopback (no engine); the SDKs against the real engine are in test_realtime_tools.py."""

from __future__ import annotations

from typing import Any

from tests.gateway.realtime.fake_loopback import Client, text_stream, tool_call_stream

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}


def user(text: str) -> dict[str, Any]:
    return {
        "type": "conversation.item.create",
        "item": {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]},
    }


async def test_a_forced_call_streams_as_openai_sends_it_and_its_output_is_answered() -> None:
    client = Client()
    updated = await client.send(
        {
            "type": "session.update",
            "session": {"modalities": ["text"], "tools": [WEATHER], "tool_choice": "get_weather"},
        }
    )
    assert updated["session"]["tools"] == [WEATHER] and updated["session"]["tool_choice"] == "get_weather"
    await client.send(user("Weather in Paris?"))
    client.loopback.streams.append(tool_call_stream("get_weather", ['{"city": ', '"Paris"}']))
    await client.send({"type": "response.create"})
    done = await client.until("response.done")
    # The chat completion asked for the function, in chat's nested shape.
    sent = client.loopback.bodies[0]
    function = {k: v for k, v in WEATHER.items() if k != "type"}
    assert sent["tools"] == [{"type": "function", "function": {"strict": True, **function}}]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    kinds = client.types()
    start = kinds.index("response.created")
    assert [k for k in kinds[start:] if k.startswith(("response.", "rate_limits", "conversation."))] == [
        "response.created",
        "rate_limits.updated",
        "response.output_item.added",
        "conversation.item.created",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.done",
    ]
    added = client.of("response.output_item.added")[0]["item"]
    assert added["type"] == "function_call" and added["status"] == "in_progress" and added["arguments"] == ""
    arguments = client.of("response.function_call_arguments.done")[0]
    assert arguments["arguments"] == '{"city": "Paris"}' and arguments["name"] == "get_weather"
    assert arguments["call_id"] == "call_1" and arguments["item_id"] == added["id"]
    (call,) = done["response"]["output"]
    assert call == {
        "id": added["id"],
        "object": "realtime.item",
        "type": "function_call",
        "status": "completed",
        "call_id": "call_1",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
    }
    limits = client.of("rate_limits.updated")[0]["rate_limits"]
    assert limits[0] == {"name": "requests", "limit": 60, "remaining": 59, "reset_seconds": 1.0}
    assert limits[1]["reset_seconds"] == 360.0
    # The client runs the function and gives its output; the next response is told both.
    await client.send(
        {
            "type": "conversation.item.create",
            "item": {"type": "function_call_output", "call_id": "call_1", "output": '{"temp": 21}'},
        }
    )
    created = client.of("conversation.item.created")[-1]["item"]
    assert created["type"] == "function_call_output" and created["call_id"] == "call_1"
    client.loopback.streams.append(text_stream(["It is ", "21."]))
    await client.send({"type": "response.create", "response": {"tool_choice": "none"}})
    await client.until("response.done", 2)
    messages = client.loopback.bodies[1]["messages"]
    assert messages[-2] == {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                "id": "call_1",
                "type": "function",
                "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
            }
        ],
    }
    assert messages[-1] == {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'}
    assert "tools" not in client.loopback.bodies[1]  # tool_choice none: the engine is offered none


async def test_tool_settings_are_checked() -> None:
    client = Client()
    error = await client.send(
        {"type": "session.update", "session": {"tools": [WEATHER], "tool_choice": "nope"}}
    )
    assert error["error"]["param"] == "session.tool_choice", error
    error = await client.send({"type": "session.update", "session": {"tools": [{"type": "web_search"}]}})
    assert error["error"]["param"] == "session.tools[0].type", error
    error = await client.send({"type": "session.update", "session": {"tools": [{"type": "function"}]}})
    assert error["error"]["param"] == "session.tools[0].name", error
    error = await client.send({"type": "conversation.item.create", "item": {"type": "function_call_output"}})
    assert error["error"]["param"] == "item.call_id", error
    # Nothing was applied by the refused updates.
    assert (await client.send({"type": "session.update", "session": {}}))["session"]["tools"] == []


async def test_ga_tools_and_item_events() -> None:
    client = Client()
    updated = await client.send(
        {
            "type": "session.update",
            "session": {
                "type": "realtime",
                "output_modalities": ["text"],
                "tools": [WEATHER],
                "tool_choice": {"type": "function", "name": "get_weather"},
            },
        }
    )
    assert updated["session"]["tool_choice"] == {"type": "function", "name": "get_weather"}
    assert updated["session"]["tools"] == [WEATHER]
    await client.send(user("Weather?"))
    # A complete item arrives once as GA tells it: added, then done (beta: created).
    assert client.types()[-2:] == ["conversation.item.added", "conversation.item.done"]
    assert "conversation.item.created" not in client.types()
    client.loopback.streams.append(tool_call_stream("get_weather", ['{"city": "Oslo"}']))
    await client.send({"type": "response.create"})
    await client.until("response.done")
    kinds = client.types()
    after = kinds[kinds.index("response.created") :]
    assert after.index("response.output_item.added") < after.index("conversation.item.added")
    assert after.index("response.output_item.done") < after.index("conversation.item.done")
    assert client.of("conversation.item.done")[-1]["item"]["status"] == "completed"


async def test_an_out_of_band_response_leaves_the_conversation_alone() -> None:
    client = Client()
    await client.send({"type": "session.update", "session": {"modalities": ["text"]}})
    await client.send(user("The conversation's own words."))
    item_id = client.of("conversation.item.created")[0]["item"]["id"]
    client.loopback.streams.append(text_stream(["positive"]))
    await client.send(
        {
            "type": "response.create",
            "response": {
                "conversation": "none",
                "metadata": {"topic": "sentiment"},
                "instructions": "Classify.",
                "input": [
                    {"type": "item_reference", "id": item_id},
                    {
                        "type": "message",
                        "role": "user",
                        "content": [{"type": "input_text", "text": "Classify it."}],
                    },
                ],
            },
        }
    )
    done = await client.until("response.done")
    created = client.of("response.created")[0]["response"]
    assert created["metadata"] == done["response"]["metadata"] == {"topic": "sentiment"}
    assert done["response"]["conversation_id"] is None
    assert done["response"]["output"][0]["content"] == [{"type": "text", "text": "positive"}]
    assert client.loopback.bodies[0]["messages"] == [
        {"role": "system", "content": "Classify."},
        {"role": "user", "content": "The conversation's own words."},
        {"role": "user", "content": "Classify it."},
    ]
    # Its answer did not join the conversation: the next in-band response does not see it.
    assert len(client.of("conversation.item.created")) == 1
    client.loopback.streams.append(text_stream(["ok"]))
    await client.send({"type": "response.create"})
    await client.until("response.done", 2)
    assert client.loopback.bodies[1]["messages"] == [
        {"role": "user", "content": "The conversation's own words."}
    ]
    assert client.of("response.done")[-1]["response"]["conversation_id"].startswith("conv_")
    error = await client.send(
        {"type": "response.create", "response": {"input": [{"type": "item_reference", "id": "x"}]}}
    )
    assert error["error"]["param"] == "response.input[0].id", error


async def test_event_ids_up_to_512_characters() -> None:
    client = Client()
    assert (await client.send({"type": "session.update", "event_id": "e" * 512, "session": {}}))["type"] == (
        "session.updated"
    )
    error = await client.send({"type": "session.update", "event_id": "e" * 513, "session": {}})
    assert error["type"] == "error" and error["error"]["param"] == "event_id", error


def test_arguments_cut_short_are_not_sent_back_as_json_the_engine_would_refuse() -> None:
    from gateway.realtime.tools import FunctionCall

    whole = FunctionCall("i", "c", "f", '{"city":  "Paris"}').chat_call()["function"]["arguments"]
    assert whole == '{"city":"Paris"}'
    assert FunctionCall("i", "c", "f", '{"city": "Pa').chat_call()["function"]["arguments"] == "{}"
