"""PII redaction's builder for the composition root (docs/governance.md "PII redaction"): the
tenants' policies over the store with the operator's default, and the one `Redactor`, handed to
every write point that keeps text (stored chat completions, responses, conversations, feedback,
memories, moderation flags) and to chat for the `prompt` policy. Built after the bundle, as memory
in chat is: the services it reaches are made by then."""

from __future__ import annotations

from typing import TYPE_CHECKING

from adapters.pii import PiiEngine
from gateway.protocol.pii import PiiPolicy
from gateway.services.pii import PiiPolicies, Redactor
from gateway.store.pii import PiiStore

if TYPE_CHECKING:
    from gateway.components import Components


def pii(components: Components) -> Redactor | None:
    """None with `pii_enabled` off (nothing is redacted, `/admin/pii` is not served)."""
    settings = components.settings
    if not settings.pii_enabled:
        return None
    # A misspelt entity fails the start here (the policy's own list of Presidio's entities).
    default = PiiPolicy.model_validate(
        {
            "store": settings.pii_store,
            "prompt": settings.pii_prompt,
            "entities": settings.pii_entities,
            "threshold": settings.pii_threshold,
        }
    )
    policies = PiiPolicies(PiiStore(components.shared.database), default, cache_s=settings.pii_policy_cache_s)
    redactor = Redactor(policies, PiiEngine(settings.pii_spacy_model))
    services = components.services
    services.inference.pii = redactor
    services.messages.pii = redactor
    services.stored_completions.redactor = redactor
    services.conversations.redactor = redactor
    services.responses.redactor = redactor
    services.responses.background.redactor = redactor
    if services.moderation is not None:
        services.moderation.moderation.redactor = redactor
    if components.feedback is not None:
        components.feedback.redactor = redactor
    if components.memory is not None:
        components.memory.core.redactor = redactor
    return redactor
