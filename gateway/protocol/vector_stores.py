"""OpenAI's vector stores API on the wire: the create, modify, file, file batch and search bodies,
the chunking strategies (auto: 800 tokens with 400 of overlap, as OpenAI's; static within OpenAI's
bounds) and the attribute filters (comparison and compound, as OpenAI's `filters`)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, model_validator

from gateway.protocol.common import InvalidParam, Open, Strict
from gateway.protocol.stored import check_metadata

# OpenAI's `auto` strategy, and its bounds on a static one.
AUTO_CHUNK_TOKENS, AUTO_OVERLAP_TOKENS = 800, 400
MIN_CHUNK_TOKENS, MAX_CHUNK_TOKENS = 100, 4096
MAX_ATTRIBUTES = 16
MAX_FILES_PER_BATCH = 500
Attribute = str | float | bool


class ExpiresAfter(Strict):
    anchor: Literal["last_active_at"]
    days: int = Field(ge=1, le=365)


class StaticChunking(Strict):
    max_chunk_size_tokens: int = Field(ge=MIN_CHUNK_TOKENS, le=MAX_CHUNK_TOKENS)
    chunk_overlap_tokens: int = Field(ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> StaticChunking:
        if self.chunk_overlap_tokens > self.max_chunk_size_tokens // 2:
            raise ValueError("chunk_overlap_tokens must not exceed half of max_chunk_size_tokens")
        return self


class ChunkingStrategy(Strict):
    type: Literal["auto", "static"]
    static: StaticChunking | None = None

    @model_validator(mode="after")
    def _static(self) -> ChunkingStrategy:
        if self.type == "static" and self.static is None:
            raise ValueError("a static chunking strategy needs `static`")
        return self

    def resolved(self) -> dict[str, Any]:
        """The strategy as a store file shows it (always `static` with its numbers)."""
        static = self.static or StaticChunking(
            max_chunk_size_tokens=AUTO_CHUNK_TOKENS, chunk_overlap_tokens=AUTO_OVERLAP_TOKENS
        )
        return {"type": "static", "static": static.model_dump()}


def auto_chunking() -> dict[str, Any]:
    return ChunkingStrategy(type="auto").resolved()


class VectorStoreCreate(Strict):
    name: str | None = Field(None, max_length=256)
    description: str | None = Field(None, max_length=512)
    file_ids: list[str] | None = Field(None, max_length=MAX_FILES_PER_BATCH)
    chunking_strategy: ChunkingStrategy | None = None
    expires_after: ExpiresAfter | None = None
    metadata: Any = None

    def check(self) -> None:
        self.metadata = check_metadata(self.metadata)


class VectorStoreModify(Strict):
    name: str | None = Field(None, max_length=256)
    expires_after: ExpiresAfter | None = None
    metadata: Any = None

    def check(self) -> None:
        if self.metadata is not None:
            self.metadata = check_metadata(self.metadata)


class FileCreate(Strict):
    file_id: str = Field(min_length=1)
    attributes: dict[str, Attribute] | None = Field(None, max_length=MAX_ATTRIBUTES)
    chunking_strategy: ChunkingStrategy | None = None


class FileUpdate(Strict):
    attributes: dict[str, Attribute] | None = Field(max_length=MAX_ATTRIBUTES)


class BatchFile(Strict):
    file_id: str = Field(min_length=1)
    attributes: dict[str, Attribute] | None = Field(None, max_length=MAX_ATTRIBUTES)
    chunking_strategy: ChunkingStrategy | None = None


class FileBatchCreate(Strict):
    file_ids: list[str] | None = Field(None, min_length=1, max_length=MAX_FILES_PER_BATCH)
    files: list[BatchFile] | None = Field(None, min_length=1, max_length=MAX_FILES_PER_BATCH)
    attributes: dict[str, Attribute] | None = Field(None, max_length=MAX_ATTRIBUTES)
    chunking_strategy: ChunkingStrategy | None = None

    def check(self) -> None:
        if (self.file_ids is None) == (self.files is None):
            raise InvalidParam("file_ids", "Give exactly one of file_ids or files.")


class ComparisonFilter(Strict):
    type: Literal["eq", "ne", "gt", "gte", "lt", "lte", "in", "nin"]
    key: str
    value: Attribute | list[Attribute]


class CompoundFilter(Strict):
    type: Literal["and", "or"]
    filters: list[Annotated[ComparisonFilter | CompoundFilter, Field(union_mode="left_to_right")]]


Filter = Annotated[ComparisonFilter | CompoundFilter, Field(union_mode="left_to_right")]


class RankingOptions(Strict):
    ranker: Literal["none", "auto", "default-2024-11-15"] | None = None
    score_threshold: float | None = Field(None, ge=0.0, le=1.0)


class SearchRequest(Strict):
    query: str | list[str]
    filters: Filter | None = None
    max_num_results: int = Field(10, ge=1, le=50)
    ranking_options: RankingOptions | None = None
    # Accepted and ignored (docs/memory.md): the query is searched as written.
    rewrite_query: bool | None = None

    def check(self) -> None:
        if not self.queries or not all(q.strip() for q in self.queries):
            raise InvalidParam("query", "`query` must be a non-empty string or list of strings.")

    @property
    def queries(self) -> list[str]:
        return [self.query] if isinstance(self.query, str) else list(self.query)


class FileSearchTool(Open):
    """The Responses API's `file_search` tool."""

    type: Literal["file_search"]
    vector_store_ids: list[str] = Field(min_length=1)
    max_num_results: int = Field(20, ge=1, le=50)
    filters: Filter | None = None
    ranking_options: RankingOptions | None = None


def matches(spec: ComparisonFilter | CompoundFilter | None, attributes: dict[str, Any]) -> bool:
    """Whether a file's attributes pass OpenAI's filter (a missing key fails every comparison but
    `ne` and `nin`)."""
    if spec is None:
        return True
    if isinstance(spec, CompoundFilter):
        results = (matches(inner, attributes) for inner in spec.filters)
        return all(results) if spec.type == "and" else any(results)
    present = spec.key in attributes
    value = attributes.get(spec.key)
    if spec.type in ("in", "nin"):
        options = spec.value if isinstance(spec.value, list) else [spec.value]
        inside = present and value in options
        return inside if spec.type == "in" else not inside
    if spec.type == "eq":
        return present and value == spec.value
    if spec.type == "ne":
        return not present or value != spec.value
    return present and _ordered(spec.type, value, spec.value)


def _ordered(op: str, left: Any, right: Any) -> bool:
    """gt/gte/lt/lte between two numbers or two strings; any other pair does not match."""
    if isinstance(left, bool) or isinstance(right, bool):
        return False
    if isinstance(left, int | float) and isinstance(right, int | float):
        pair: tuple[Any, Any] = (float(left), float(right))
    elif isinstance(left, str) and isinstance(right, str):
        pair = (left, right)
    else:
        return False
    a, b = pair
    return {"gt": a > b, "gte": a >= b, "lt": a < b, "lte": a <= b}[op]
