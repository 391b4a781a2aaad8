"""PII redaction under each tenant's policy (issue 21, point 4; docs/governance.md "PII redaction"):
`PiiPolicies` (the store's row, else the operator's default, cached briefly, as moderation's) and
the one `Redactor` every write point calls: `stored` (a JSON value about to be stored: its text
fields redacted when the tenant's policy says `store`), `stored_row` (the same over fields of a
row), `texts` (plain texts, such as memories) and `prompt` (a chat or completions payload's user
text, before the model, when the policy says `prompt`).

A tenant whose policy redacts nothing costs one cached dictionary read; Presidio and spaCy
(adapters/pii.py) are imported and loaded on the first text that is really redacted, in the one
worker thread the analysis runs in, never on the event loop."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from adapters.pii import PiiEngine
from gateway.protocol.pii import PiiPolicy
from gateway.services.tenant_policies import TenantPolicies

T = TypeVar("T")
# The keys whose string values are text a person wrote or a model answered (OpenAI's chat
# messages and choices, Responses items and output, conversation items, feedback). Ids, roles,
# types, names, metadata and tool-call arguments (JSON a tool parses) are left as they are.
TEXT_KEYS = frozenset(
    {
        "content",
        "text",
        "refusal",
        "reasoning_content",
        "input",
        "output",
        "instructions",
        "transcript",
        "comment",
        "correction",
    }
)


class PiiPolicies(TenantPolicies[PiiPolicy]):
    """Each tenant's policy, cached (gateway/services/tenant_policies.py)."""

    model = PiiPolicy


class Redactor:
    def __init__(self, policies: PiiPolicies, engine: PiiEngine) -> None:
        self.policies = policies
        self.engine = engine
        self._executor: ThreadPoolExecutor | None = None

    async def _redact(self, texts: list[str], policy: PiiPolicy) -> list[str]:
        """Presidio over `texts`, in the redaction thread (one: the analyzer is loaded once and
        its spaCy pipeline is not shared between threads)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tantra-pii")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(
            self._executor, self.engine.redact, texts, list(policy.entities), policy.threshold
        )

    async def _in_value(self, value: T, policy: PiiPolicy) -> T:
        found: list[str] = []

        def collect(text: str) -> str:
            found.append(text)
            return text

        _walk(value, True, collect)
        if not any(text.strip() for text in found):
            return value
        redacted = await self._redact(found, policy)
        if redacted == found:  # nothing found: the value itself (a body then goes as sent)
            return value
        replacements = iter(redacted)
        return _walk(value, True, lambda _: next(replacements))

    async def stored(self, tenant_id: str | None, value: T) -> T:
        """`value` (a string, or JSON: its text fields) as the tenant's policy lets it be stored:
        a copy with PII replaced under `store`, else `value` itself."""
        policy = await self.policies.of(tenant_id)
        if not (policy.store and policy.entities):
            return value
        return await self._in_value(value, policy)

    async def redacts_stored(self, tenant_id: str | None) -> bool:
        """Whether the tenant's policy redacts what is stored (a background response then holds
        its text deltas until each part is whole: gateway/services/responses_redacted.py)."""
        policy = await self.policies.of(tenant_id)
        return bool(policy.store and policy.entities)

    async def stored_row(self, row: T, *fields: str) -> T:
        """A dataclass row (with `tenant_id`) with `fields` redacted for storage."""
        policy = await self.policies.of(getattr(row, "tenant_id", None))
        if not (policy.store and policy.entities):
            return row
        values = await self._in_value({name: getattr(row, name) for name in fields}, policy)
        return dataclasses.replace(row, **values)  # type: ignore[type-var]

    async def texts(self, tenant_id: str | None, texts: Sequence[str]) -> list[str]:
        return list(await self.stored(tenant_id, list(texts)))

    async def prompt(self, tenant_id: str | None, payload: dict[str, Any]) -> dict[str, Any] | None:
        """The payload with its user messages' text (a completion's prompt strings) redacted when
        the tenant's policy says `prompt`; None: nothing to change (the body goes as sent)."""
        policy = await self.policies.of(tenant_id)
        if not (policy.prompt and policy.entities):
            return None
        messages = payload.get("messages")
        if isinstance(messages, list):
            redacted = await self._users(messages, policy)
            return None if redacted is None else {**payload, "messages": redacted}
        prompt = payload.get("prompt")
        if isinstance(prompt, str | list):
            changed = await self._in_value(prompt, policy)
            return None if changed is prompt else {**payload, "prompt": changed}
        return None

    async def user_items(self, tenant_id: str | None, items: list[Any]) -> list[Any] | None:
        """Responses input items with the user's messages redacted under a `prompt` policy (None:
        nothing to change)."""
        policy = await self.policies.of(tenant_id)
        if not (policy.prompt and policy.entities):
            return None
        return await self._users(items, policy)

    async def _users(self, messages: list[Any], policy: PiiPolicy) -> list[Any] | None:
        users = [m for m in messages if isinstance(m, dict) and m.get("role") == "user"]
        redacted = await self._in_value(users, policy)
        if redacted is users:
            return None
        swap = dict(zip(map(id, users), redacted, strict=True))
        return [swap.get(id(m), m) for m in messages]

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)


def _walk(value: Any, text: bool, visit: Callable[[str], str]) -> Any:
    """`value` rebuilt with `visit` applied to each string that is text: a string at the top, or
    under one of TEXT_KEYS (directly or in a list there). Other values are kept as they are."""
    if isinstance(value, str):
        return visit(value) if text else value
    if isinstance(value, list):
        return [_walk(item, text, visit) for item in value]
    if isinstance(value, dict):
        return {key: _walk(item, key in TEXT_KEYS, visit) for key, item in value.items()}
    return value
