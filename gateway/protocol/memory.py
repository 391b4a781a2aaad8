"""The memory API on the wire, in mem0's platform shape (what mem0's `MemoryClient` sends): the add,
search, list and update bodies, and `scope_of`, which reads mem0's entity ids and filters.

Entity ids (`user_id`, `agent_id`, `app_id`, `run_id`) come at the top level (mem0's v1 API and
older clients) or in `filters` (v2/v3, where the client puts them); `filters` takes those ids, an
`AND` list of such filters, and `metadata` (equality on each key). Other filter operators of mem0's
platform (OR, NOT, ranges on dates, categories) are refused with a 400 naming them, not ignored.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from gateway.protocol.common import InvalidParam, Open, Strict

ENTITIES = ("user_id", "agent_id", "app_id", "run_id")
# The most facts one extraction may add, and the longest memory text kept.
MAX_FACTS = 20
MAX_MEMORY_CHARS = 4000


class MemoryMessage(Open):
    role: str = "user"
    content: str | list[Any] | None = None


class Scoped(Open):
    """What every body may name: entity ids at the top level, and `filters`."""

    user_id: str | None = Field(None, min_length=1, max_length=256)
    agent_id: str | None = Field(None, min_length=1, max_length=256)
    app_id: str | None = Field(None, min_length=1, max_length=256)
    run_id: str | None = Field(None, min_length=1, max_length=256)
    filters: dict[str, Any] | None = None


class MemoryAdd(Scoped):
    messages: list[MemoryMessage] | str = Field(min_length=1)
    metadata: dict[str, Any] | None = None
    infer: bool = True
    # When the memories expire (ISO 8601 date or datetime; search skips them, compression removes them).
    expiration_date: str | None = None


class MemorySearch(Scoped):
    query: str = Field(min_length=1, max_length=MAX_MEMORY_CHARS)
    top_k: int = Field(10, ge=1, le=1000)
    limit: int | None = Field(None, ge=1, le=1000)  # mem0 v1's name for top_k
    threshold: float | None = Field(None, ge=-1.0, le=1.0)
    metadata: dict[str, Any] | None = None
    # mem0's flag: merge the knowledge graph's results (None: TANTRA_MEMORY_GRAPH_SEARCH decides).
    enable_graph: bool | None = None


class MemoryList(Scoped):
    page: int = Field(1, ge=1)
    page_size: int = Field(100, ge=1, le=1000)


class MemoryUpdate(Strict):
    text: str | None = Field(None, min_length=1, max_length=MAX_MEMORY_CHARS)
    metadata: dict[str, Any] | None = None
    # mem0's platform field the gateway keeps no column for yet: accepted, not stored.
    timestamp: int | float | str | None = None
    # The memory's new expiry (an ISO date or datetime); given as null, the expiry is cleared, as
    # mem0's client sends `update(id, expiration_date=None)`; left out, it stays.
    expiration_date: str | None = None


class Facts(Strict):
    """The JSON schema the extraction model must follow (its `response_format`)."""

    facts: list[str]


FACTS_SCHEMA = {
    "type": "object",
    "properties": {"facts": {"type": "array", "items": {"type": "string"}, "maxItems": MAX_FACTS}},
    "required": ["facts"],
    "additionalProperties": False,
}


def scope_of(body: Scoped, *, extra_metadata: dict[str, Any] | None = None) -> dict[str, Any]:
    """The entity ids and metadata filter a body names, merged from the top level and `filters`;
    `InvalidParam` naming the filter key it cannot serve."""
    found: dict[str, Any] = {name: getattr(body, name) for name in ENTITIES}
    metadata: dict[str, Any] = dict(extra_metadata or {})
    _read_filters(body.filters or {}, found, metadata, "filters")
    return {**found, "metadata": metadata}


def _read_filters(filters: dict[str, Any], found: dict[str, Any], metadata: dict[str, Any], at: str) -> None:
    for key, value in filters.items():
        where = f"{at}.{key}"
        if key in ENTITIES:
            if value == "*" or value is None:
                continue  # mem0's wildcard: any value
            if not isinstance(value, str) or not value:
                raise InvalidParam(where, f"Invalid '{where}': expected a non-empty string.")
            if found.get(key) not in (None, value):
                raise InvalidParam(where, f"Invalid '{where}': it contradicts the {key} given elsewhere.")
            found[key] = value
        elif key == "AND" and isinstance(value, list):
            for index, part in enumerate(value):
                if not isinstance(part, dict):
                    raise InvalidParam(
                        f"{where}[{index}]", f"Invalid '{where}[{index}]': expected an object."
                    )
                _read_filters(part, found, metadata, f"{where}[{index}]")
        elif key == "metadata" and isinstance(value, dict):
            metadata.update(value)
        else:
            raise InvalidParam(
                where,
                f"Unsupported filter '{where}': the gateway's memory API filters by user_id, agent_id, "
                "app_id, run_id, AND of those, and metadata equality.",
                code="unsupported_filter",
            )


Event = Literal["ADD", "UPDATE", "DELETE", "NONE"]
