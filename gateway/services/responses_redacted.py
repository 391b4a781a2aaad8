"""What a background response stores under a tenant's PII `store` policy (docs/governance.md "PII
redaction"): its events, its final body and its job's payload, redacted by the one `Redactor` as a
foreground response's row is.

A text delta is a few tokens: an e-mail address or a phone number is split over several, and no
redactor finds it in the pieces. So while a tenant's policy redacts, a text part's deltas are held
until the part's `.done` event and stored as one delta holding the whole part, redacted exactly
as the `.done` event's text is; a client streaming the response receives each part whole when it
ends. Tool-call arguments (JSON a tool parses) stream as they come, unredacted, as they are stored
elsewhere."""

from __future__ import annotations

from typing import Any

from gateway.services.pii import Redactor

# Deltas of text a person or the model wrote; `response.function_call_arguments.delta` and the like
# are JSON for a tool, kept as they are.
_ARGUMENTS = ("arguments.delta",)


def text_delta(event: dict[str, Any]) -> bool:
    kind = str(event.get("type", ""))
    return kind.endswith(".delta") and not kind.endswith(_ARGUMENTS) and isinstance(event.get("delta"), str)


def _part(event: dict[str, Any], suffix: str) -> tuple[Any, ...]:
    kind = str(event.get("type", ""))
    return (
        kind.removesuffix(suffix),
        event.get("item_id"),
        event.get("output_index"),
        event.get("content_index"),
        event.get("summary_index"),
    )


class DeltaHold:
    """Text deltas held per part until its `.done`, then given back as one delta (see the module)."""

    def __init__(self) -> None:
        self._held: dict[tuple[Any, ...], dict[str, Any]] = {}

    def offer(self, event: dict[str, Any]) -> list[dict[str, Any]]:
        """The events to store now in place of `event` (none while its part is still held)."""
        if text_delta(event):
            key = _part(event, ".delta")
            held = self._held.get(key)
            if held is None:
                self._held[key] = dict(event)
            else:
                held["delta"] += event["delta"]
            return []
        held = (
            self._held.pop(_part(event, ".done"), None)
            if str(event.get("type", "")).endswith(".done")
            else None
        )
        return [event] if held is None else [held, event]

    def rest(self) -> list[dict[str, Any]]:
        """Parts the stream ended without closing (a failed or cut answer), each as one delta."""
        rest, self._held = list(self._held.values()), {}
        return rest


async def redacted_events(
    redactor: Redactor | None, tenant_id: str | None, events: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """`events` as the tenant's policy lets them be stored: their text fields and text deltas redacted."""
    if redactor is None or not events:
        return events
    at = [n for n, event in enumerate(events) if text_delta(event)]
    # One call, one pass of the analyzer: the events (their text keys) and the deltas' strings.
    value: list[Any] = [events, [events[n]["delta"] for n in at]]
    both = await redactor.stored(tenant_id, value)
    if both is value:
        return events
    kept: list[dict[str, Any]] = list(both[0])
    for n, delta in zip(at, both[1], strict=True):
        kept[n] = {**kept[n], "delta": delta}
    return kept


async def redacted_payload(redactor: Redactor | None, tenant_id: str | None, payload: dict[str, Any]) -> Any:
    """The job's payload without the prompt's PII (None: nothing to change). Once the run started, the
    prompt is never sent again (a second run fails the response), so it need not be kept whole."""
    if redactor is None:
        return None
    kept = await redactor.stored(tenant_id, payload)
    return None if kept is payload else kept


__all__ = ["DeltaHold", "redacted_events", "redacted_payload", "text_delta"]
