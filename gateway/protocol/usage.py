"""OpenAI's usage and costs API (`GET /v1/organization/usage/{kind}`, `GET /v1/organization/costs`):
the query's parameters. Tantra's tenant is OpenAI's project (`project_id`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

BucketWidth = Literal["1m", "1h", "1d"]
WIDTH_S: dict[str, int] = {"1m": 60, "1h": 3600, "1d": 86400}
# OpenAI's page sizes (buckets per page) for each width: (default, maximum).
LIMITS: dict[str, tuple[int, int]] = {"1m": (60, 1440), "1h": (24, 168), "1d": (7, 31)}
COSTS_LIMITS = (7, 180)
# The last second of year 9999: times past it are no dates (a 400, not an overflow).
MAX_TIME = 253_402_300_799


class UsageQuery(BaseModel):
    """The query string of the usage and costs endpoints (lists given as repeated keys, `key[]` or
    commas)."""

    model_config = ConfigDict(extra="ignore")

    start_time: int = Field(ge=0, le=MAX_TIME, description="Start of the range (inclusive), Unix seconds.")
    end_time: int | None = Field(
        None, ge=0, le=MAX_TIME, description="End of the range (exclusive), Unix seconds."
    )
    bucket_width: BucketWidth = "1d"
    group_by: list[str] | None = None
    limit: int | None = Field(None, ge=1)
    page: str | None = None
    project_ids: list[str] | None = None
    api_key_ids: list[str] | None = None
    models: list[str] | None = None
    batch: bool | None = None
