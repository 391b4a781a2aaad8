"""The fine-tuning API's settings (docs/fine-tuning.md): which base models may be fine-tuned (and
where their checkpoints are), how the LoRA trainer runs, what training costs, and how many adapters
each engine replica holds at once.

A mixin of `Settings` (gateway/settings/schema.py), read from TANTRA_* exactly as the schema's own.
"""

from __future__ import annotations

from pydantic import BaseModel, Field


class FineTuningFields(BaseModel):
    """Fine-tuning jobs run as durable jobs (docs/jobs.md); the trainer is a niced subprocess
    (`python -m engine finetune`), so the gateway never loads torch."""

    fine_tuning_enabled: bool = Field(
        True, description="Serve /v1/fine_tuning/jobs (needs the Files API: TANTRA_FILES_ENABLED)."
    )
    # JSON in the variable: {"qwen2-tiny": "/models/qwen2-tiny"}. The engines serving the base must
    # read adapters from TANTRA_FINE_TUNING_WORK_DIR (the same host or a shared volume).
    fine_tuning_base_models: dict[str, str] = Field(
        default_factory=dict,
        description="Base models a job may name (the served name) and their checkpoint directories "
        "the trainer reads. Empty: no model can be fine-tuned.",
    )
    fine_tuning_work_dir: str = Field(
        ".cache/fine-tuning",
        description="Where jobs stage their files and adapters are unpacked for the engines to load "
        "(shared with the engines).",
    )
    fine_tuning_learning_rate: float = Field(
        2e-3, gt=0, le=1, description="The learning rate a learning_rate_multiplier of 1 means."
    )
    fine_tuning_epochs: int = Field(3, ge=1, le=50, description="What n_epochs 'auto' means.")
    fine_tuning_batch_size: int = Field(4, ge=1, le=256, description="What batch_size 'auto' means.")
    fine_tuning_lora_rank: int = Field(
        8, ge=1, le=256, description="The adapters' LoRA rank (engines need --max-lora-rank at least this)."
    )
    fine_tuning_threads: int = Field(1, ge=1, le=256, description="torch CPU threads of a trainer.")
    fine_tuning_nice: int = Field(10, ge=0, le=19, description="The trainer process's niceness.")
    fine_tuning_timeout_s: float = Field(3600.0, gt=0, description="A training run's time limit.")
    fine_tuning_concurrency: int = Field(
        1,
        ge=1,
        le=16,
        description="Fine-tuning jobs one replica runs at once; trainers also take one machine-wide "
        "lock in the work directory, so one trains per host whatever this says.",
    )
    # OpenAI prices training tokens apart from inference; here they cost the base model's prompt
    # price (TANTRA_PRICES) times this factor.
    fine_tuning_price_factor: float = Field(
        1.0,
        ge=0.0,
        le=100.0,
        description="Training tokens' price, as a multiple of the base model's prompt price.",
    )
    fine_tuning_max_loras: int = Field(
        4,
        ge=1,
        le=256,
        description="Adapters one engine replica holds at once (its --max-loras); past it the least "
        "recently used is unloaded.",
    )
    # Point 6 of issue 20: per-tenant caps (the admin API's `fine_tuning_jobs` and
    # `fine_tuning_models` on a tenant or key override these); 0: no cap.
    fine_tuning_max_jobs: int = Field(
        3,
        ge=0,
        le=10_000,
        description="Fine-tuning jobs a tenant may have active at once (validating_files, queued or "
        "running; OpenAI's default is 3), for tenants without their own `fine_tuning_jobs`; 0: no cap. "
        "Past it, creating a job is a 429.",
    )
    fine_tuning_max_models: int = Field(
        0,
        ge=0,
        le=100_000,
        description="Fine-tuned models (stored adapters) a tenant may keep, its active jobs counted as "
        "the models they will make, for tenants without their own `fine_tuning_models`; 0: no cap. "
        "Past it, creating a job is a 400 (delete a model first).",
    )
    feedback_enabled: bool = Field(
        True,
        description="Serve /v1/feedback (ratings, labels, comments and corrections; its export "
        "needs the Files API).",
    )
    # Point 5 of issue 20: the learning loop (docs/fine-tuning.md "The learning loop"); tenants
    # enable it with their policy (PUT /admin/tenants/{id}/learning-policy).
    learning_loop_enabled: bool = Field(
        True,
        description="Run the learning loop's scheduled check (needs fine-tuning and feedback): "
        "tenants with an enabled policy get new adapter versions from their feedback.",
    )
    learning_loop_interval_s: float = Field(
        3600.0,
        ge=1.0,
        description="Seconds between the learning loop's checks for enough new feedback (one check "
        "per interval across replicas).",
    )
    learning_loop_max_tokens: int = Field(
        64, ge=1, le=4096, description="max_tokens of each held-out answer the loop scores."
    )
