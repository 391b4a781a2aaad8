"""Moderation as the other services use it: the classifiers in worker processes (`Classifiers`),
each tenant's policy (`Policies`: the store's, else the operator's default, cached briefly), the
optional LLM judge, and `Moderation.check`/`record`: a text's scores, the categories it flags,
and the flag stored for review. See docs/moderation.md."""

from __future__ import annotations

import asyncio
import dataclasses
import multiprocessing
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Literal

from adapters.moderation import BannedTerms
from adapters.moderation.batch import Item, score_items, warm
from adapters.moderation.categories import CATEGORIES, Scores, merged
from gateway.admission import Ticket
from gateway.errors import APIError, InvalidRequest
from gateway.observability import get_logger
from gateway.protocol.moderation import ModerationPolicy
from gateway.services.tenant_policies import TenantPolicies
from gateway.store.moderation import Flag, ModerationStore

if TYPE_CHECKING:
    from gateway.services.moderation_judge import Judge
    from gateway.services.pii import Redactor

_log = get_logger("tantra.moderation")
Stage = Literal["input", "output"]
# What a stored flag keeps of the text that raised it.
_EXCERPT_CHARS = 500


class ModerationBusy(APIError):
    status = 503
    type = "server_error"
    code = "moderation_unavailable"


class ContentPolicyViolation(InvalidRequest):
    """OpenAI's refusal of a prompt its policy forbids: 400 `content_policy_violation`."""

    code = "content_policy_violation"


def moderation_executor(kind: str, workers: int) -> Executor:
    """Worker processes by default (forkserver, as the media pool: never fork the threaded
    gateway): scikit-learn and onnxruntime then never hold the event loop's GIL."""
    if kind == "thread":
        return ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tantra-moderation")
    context = multiprocessing.get_context("forkserver")
    return ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=warm)


class Classifiers:
    """alt-profanity-check and NudeNet in a pool started on first use."""

    def __init__(self, executor: Callable[[], Executor], *, timeout_s: float) -> None:
        self._new_executor = executor
        self._executor: Executor | None = None
        self._timeout_s = timeout_s

    async def score(self, items: list[Item]) -> list[Scores]:
        if self._executor is None:
            self._executor = self._new_executor()
        loop = asyncio.get_running_loop()
        try:
            return await asyncio.wait_for(
                loop.run_in_executor(self._executor, score_items, items), self._timeout_s
            )
        except TimeoutError:
            raise ModerationBusy("The moderation classifiers did not answer in time.") from None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


class Policies(TenantPolicies[ModerationPolicy]):
    """Each tenant's policy, cached (gateway/services/tenant_policies.py)."""

    model = ModerationPolicy
    store: ModerationStore  # its flags are read and written through it too


@dataclass(frozen=True)
class Verdict:
    scores: Scores
    flagged: tuple[str, ...]

    def __bool__(self) -> bool:
        return bool(self.flagged)


@dataclass(frozen=True)
class FlagEvent:
    """What raised a flag: where, what was done, the verdict, the text and the end user."""

    endpoint: str
    stage: Stage
    action: str
    verdict: Verdict
    text: str
    end_user: str | None = None


class Moderation:
    """What chat and completions ask of moderation, under the caller's tenant policy."""

    def __init__(
        self, classifiers: Classifiers, policies: Policies, operator_terms: BannedTerms, judge: Judge | None
    ) -> None:
        self.classifiers = classifiers
        self.policies = policies
        self.operator_terms = operator_terms
        self.judge = judge
        # PII redaction of the flags' excerpts, under the tenant's policy (set once built); None: off.
        self.redactor: Redactor | None = None

    async def check(self, texts: Sequence[str], policy: ModerationPolicy) -> Verdict:
        """The texts judged together (one verdict: the highest score of each category)."""
        texts = [text for text in texts if text.strip()]
        if not texts:
            return Verdict(merged(), ())
        [scores] = await self.classifiers.score([Item(texts=list(texts))])
        joined = "\n".join(texts)
        found = [scores, self.operator_terms.scores(joined)]
        if policy.banned_terms:
            found.append(
                BannedTerms({str(name): words for name, words in policy.banned_terms.items()}).scores(joined)
            )
        if policy.judge and self.judge is not None:
            found.append(await self.judge.scores(joined))
        total = merged(*found)
        flagged = tuple(name for name in CATEGORIES if total[name] >= policy.threshold)
        return Verdict(total, flagged)

    async def record(self, ticket: Ticket, event: FlagEvent) -> None:
        """The flag, stored for review (a store that fails is logged, never the request's failure)."""
        principal = ticket.principal
        verdict = event.verdict
        flag = Flag(
            id=f"modflag_{uuid.uuid4().hex}",
            tenant_id=principal.tenant_id,
            created_by=principal.key_id,
            end_user=event.end_user[:256] if event.end_user else None,
            created_at=datetime.now(UTC).replace(tzinfo=None),
            request_id=ticket.tab.request_id,
            endpoint=event.endpoint,
            model=ticket.tab.model,
            stage=event.stage,
            action=event.action,
            categories=list(verdict.flagged),
            scores={name: score for name, score in verdict.scores.items() if score > 0},
            excerpt=event.text[:_EXCERPT_CHARS],
        )
        if self.redactor is not None:
            flag = dataclasses.replace(flag, excerpt=await self.redactor.stored(flag.tenant_id, flag.excerpt))
        _log.info("moderation_flag", stage=event.stage, action=event.action, categories=flag.categories)
        try:
            await self.policies.store.add_flag(flag)
        except Exception as exc:  # a lost flag must not fail the request
            _log.error("moderation_flag_not_stored", error=str(exc))

    def close(self) -> None:
        self.classifiers.close()
