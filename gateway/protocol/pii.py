"""The per-tenant PII redaction policy the admin API takes (`/admin/pii/policies/{tenant_id}`):
which entities Presidio looks for, and where Tantra redacts them. docs/governance.md."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from gateway.protocol.common import Strict

# Presidio's predefined recognizers that work on English text (a typo is a 400, not a silent no-op).
Entity = Literal[
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "LOCATION",
    "DATE_TIME",
    "NRP",
    "URL",
    "CRYPTO",
    "MEDICAL_LICENSE",
    "US_BANK_NUMBER",
    "US_DRIVER_LICENSE",
    "US_ITIN",
    "US_PASSPORT",
    "UK_NHS",
]
DEFAULT_ENTITIES: tuple[Entity, ...] = (
    "PERSON",
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "US_SSN",
    "IP_ADDRESS",
    "LOCATION",
)


class PiiPolicy(Strict):
    """What PII redaction does for a tenant (the operator's TANTRA_PII_* when a tenant has none).

    `store`: PII is replaced by `<ENTITY>` in what Tantra stores (stored chat completions, stored
    responses and their items, conversation items, memories, feedback, moderation flags' excerpts);
    the client's answer is unchanged. `prompt`: the user's messages (a completion's prompt) are
    redacted before the model sees them."""

    store: bool = False
    prompt: bool = False
    entities: list[Entity] = Field(default_factory=lambda: list(DEFAULT_ENTITIES))
    # A finding is redacted at or above this score (Presidio's: 0.4 for a phone number without
    # context words, 0.85 for a name spaCy found, 1.0 for a card with a valid checksum).
    threshold: Annotated[float, Field(ge=0, le=1)] = 0.35

    @property
    def active(self) -> bool:
        return (self.store or self.prompt) and bool(self.entities)
