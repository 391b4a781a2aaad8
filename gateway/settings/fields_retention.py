"""Retention (issue 21, point 6): how long each kind of stored object is kept by default
(`TANTRA_RETENTION_*_DAYS`; 0 keeps it forever), and how often the retention job runs. A tenant's
own policy, set through the admin API (`PUT /admin/tenants/{id}/retention`), overrides a default.

A mixin of `Settings` (gateway/settings/schema.py), read exactly as the schema's own fields.
"""

from __future__ import annotations

from pydantic import BaseModel, Field, field_validator


class RetentionFields(BaseModel):
    """The operator's default retention per kind of object, in days (0: forever)."""

    retention_enabled: bool = Field(
        True, description="Run the retention job (docs/governance.md); off, nothing is deleted by age."
    )
    retention_interval_s: float = Field(
        3600.0,
        ge=10,
        description="Seconds between two runs of the retention job (one run per interval "
        "across all replicas).",
    )
    # Ledger rows feed budgets and billing: 0 or at least 31 days (validated below).
    retention_ledger_days: int = Field(0, ge=0, description="Days usage ledger rows are kept (0: forever).")
    retention_responses_days: int = Field(0, ge=0, description="Days stored responses are kept (0: forever).")
    retention_chat_completions_days: int = Field(
        0, ge=0, description="Days stored chat completions (`store: true`) are kept (0: forever)."
    )
    retention_conversations_days: int = Field(
        0, ge=0, description="Days conversations and their items are kept (0: forever)."
    )
    retention_files_days: int = Field(
        0, ge=0, description="Days files are kept, unless their own `expires_at` is sooner (0: forever)."
    )
    retention_batches_days: int = Field(
        0, ge=0, description="Days finished batches and their answered lines are kept (0: forever)."
    )
    retention_memories_days: int = Field(
        0,
        ge=0,
        description="Days memories (and their history) are kept after their last update (0: forever).",
    )
    retention_memory_recalls_days: int = Field(
        30,
        ge=0,
        description="Days the record of what memory placed in each chat request (the panel's memory "
        "page) is kept (0: forever).",
    )
    retention_moderation_flags_days: int = Field(
        0, ge=0, description="Days moderation flags are kept (0: forever)."
    )
    retention_fine_tuning_jobs_days: int = Field(
        0, ge=0, description="Days finished fine-tuning jobs and their events are kept (0: forever)."
    )

    retention_eval_runs_days: int = Field(
        0,
        ge=0,
        description="Days the runs of eval sets (their scores per model version) are kept (0: forever).",
    )
    retention_custom_voices_days: int = Field(
        0,
        ge=0,
        description="Days custom voices (their reference clips) are kept after they are made (0: forever); "
        "consent recordings stay until deleted or erased.",
    )

    @field_validator("retention_ledger_days")
    @classmethod
    def _a_whole_budget_period(cls, days: int) -> int:
        if 0 < days < LEDGER_MIN_DAYS:
            raise ValueError(
                f"0 (forever) or at least {LEDGER_MIN_DAYS}: monthly budgets are counted from the ledger"
            )
        return days

    def retention_defaults(self) -> dict[str, int]:
        """Each kind's default, by its name in the admin API."""
        return {kind: getattr(self, f"retention_{kind}_days") for kind in RETENTION_KINDS}


# Monthly budgets are seeded from the ledger's rows of the month: a shorter ledger retention would
# forget spending the budget still counts.
LEDGER_MIN_DAYS = 31
# The kinds of object retention knows, as the admin API and the settings name them.
RETENTION_KINDS = (
    "ledger",
    "responses",
    "chat_completions",
    "conversations",
    "files",
    "batches",
    "memories",
    "memory_recalls",
    "moderation_flags",
    "fine_tuning_jobs",
    "eval_runs",
    "custom_voices",
)
