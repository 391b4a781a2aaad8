"""Moderation's builder for the composition root: the classifiers' pool, the tenants' policies
over the store with the operator's default, the optional LLM judge, `/v1/moderations`'s service,
and the moderation chat and completions apply (docs/moderation.md)."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from adapters import MediaLimits, UrlFetcher, UrlPolicy
from adapters.moderation import BannedTerms
from gateway.admission import Admission
from gateway.protocol.moderation import ModerationPolicy
from gateway.services.moderated import ModeratedChat
from gateway.services.moderation import ModerationService
from gateway.services.moderation_check import Classifiers, Moderation, Policies, moderation_executor
from gateway.services.moderation_judge import Judge
from gateway.settings.schema import Settings
from gateway.store import Database
from gateway.store.moderation import ModerationStore
from gateway.upstreams.dispatch import Dispatcher


@dataclass(eq=False)
class ModerationParts:
    moderation: Moderation
    service: ModerationService
    chat: ModeratedChat

    def close(self) -> None:
        self.moderation.close()


def moderation(
    settings: Settings,
    database: Database,
    admission: Admission,
    dispatcher: Dispatcher,
    media_client: httpx.AsyncClient,
) -> ModerationParts | None:
    """None with `moderation_enabled` off."""
    if not settings.moderation_enabled:
        return None
    default = ModerationPolicy(
        input=settings.moderation_input,
        output=settings.moderation_output,
        threshold=settings.moderation_threshold,
        judge=settings.moderation_judge,
    )
    judge = Judge(dispatcher, settings.moderation_judge_model) if settings.moderation_judge_model else None
    checks = Moderation(
        Classifiers(
            lambda: moderation_executor(settings.moderation_executor, settings.moderation_workers),
            timeout_s=settings.moderation_timeout_s,
        ),
        Policies(ModerationStore(database), default, cache_s=settings.moderation_policy_cache_s),
        BannedTerms(settings.moderation_banned_terms),
        judge,
    )
    # Image URLs are fetched under the media settings' allow-list (none allowed by default).
    fetcher = UrlFetcher(
        UrlPolicy(settings.media_url_allowlist, [str(net) for net in settings.media_url_allowed_networks]),
        media_client,
        timeout_s=settings.media_fetch_timeout_s,
        max_bytes=settings.media_max_part_bytes,
    )
    limits = MediaLimits(
        max_images=settings.media_max_images,
        max_image_pixels=settings.media_max_image_pixels,
        max_part_bytes=settings.media_max_part_bytes,
        max_total_bytes=settings.media_max_total_bytes,
    )
    service = ModerationService(
        checks, admission, fetcher=fetcher, threshold=settings.moderation_threshold, limits=limits
    )
    return ModerationParts(checks, service, ModeratedChat(checks))
