"""POST /v1/moderations: OpenAI's moderation endpoint, judged by the gateway's own classifiers
(alt-profanity-check for text, NudeNet for images, the operator's banned terms, and the LLM judge
when the operator configured one): authenticated, limited and in the ledger like every endpoint."""

from __future__ import annotations

import math
import time
import uuid
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from adapters import MediaLimits, Tally, UrlFetcher
from adapters.moderation import BannedTerms
from adapters.moderation.batch import Item
from adapters.moderation.categories import CATEGORIES, IMAGE_CATEGORIES, Scores, merged
from adapters.sources import decode_data_url, is_data_url
from gateway.admission import Admission, Outcome, Ticket
from gateway.errors import InvalidRequest, ModelNotFound
from gateway.limits import Estimate
from gateway.media.service import as_api_errors
from gateway.protocol.moderation import (
    OMNI_MODELS,
    TEXT_MODELS,
    ModerationImagePart,
    ModerationRequest,
    ModerationTextPart,
)
from gateway.services.moderation_check import Moderation

PATH = "/v1/moderations"
_CHARS_PER_TOKEN = 4
# An image is counted as this many input tokens against the key's limits (OpenAI bills none).
_IMAGE_TOKENS = 85


class ModerationService:
    def __init__(
        self,
        moderation: Moderation,
        admission: Admission,
        *,
        fetcher: UrlFetcher | None,
        threshold: float,
        limits: MediaLimits,
    ) -> None:
        self._moderation = moderation
        self._admission = admission
        self._fetcher = fetcher
        self._threshold = threshold
        self._limits = limits
        self._created = int(time.time())

    def cards(self) -> list[dict[str, Any]]:
        """The moderation models as /v1/models lists them."""
        return [
            {"id": name, "object": "model", "created": self._created, "owned_by": "tantra"}
            for name in (OMNI_MODELS[0], TEXT_MODELS[0])
        ]

    def card_for(self, model: str) -> dict[str, Any] | None:
        """The card of a moderation model (a dated name: its model's); None for any other name."""
        if not self.knows(model):
            return None
        return next((card for card in self.cards() if card["id"] == _canonical(model)), None)

    def knows(self, model: str) -> bool:
        return model in OMNI_MODELS or model in TEXT_MODELS

    async def handle(self, request: Request) -> Response:
        async with self._admission.enter(request, PATH) as ticket:
            with as_api_errors():
                return await self._moderate(ticket)

    async def _moderate(self, ticket: Ticket) -> Response:
        with ticket.stage("preprocess"):
            _, _, parsed = await ticket.read_json(ModerationRequest)
            if not self.knows(parsed.model):
                raise ModelNotFound(
                    f"The model `{parsed.model}` does not exist or is not a moderation model; use "
                    f"{', '.join(f'`{name}`' for name in (*OMNI_MODELS, *TEXT_MODELS))}.",
                    param="model",
                )
            model = _canonical(parsed.model)
            ticket.use_model(model, stream=False)
            omni = model in OMNI_MODELS
            items = await self._items(parsed, omni)
        chars = sum(len(text) for item in items for text in item.texts)
        images = sum(len(item.images) for item in items)
        tokens = math.ceil(chars / _CHARS_PER_TOKEN) + images * _IMAGE_TOKENS
        await ticket.reserve(Estimate(tokens, 0, tokens))
        with ticket.stage("moderation"):
            found = await self._moderation.classifiers.score(items)
            policy = await self._moderation.policies.of(ticket.principal.tenant_id)
            judge = self._moderation.judge if policy.judge else None
            results = []
            for item, scores in zip(items, found, strict=True):
                extra = [self._moderation.operator_terms.scores("\n".join(item.texts))]
                if policy.banned_terms:
                    extra.append(
                        BannedTerms({str(name): words for name, words in policy.banned_terms.items()}).scores(
                            "\n".join(item.texts)
                        )
                    )
                if judge is not None and item.texts:
                    extra.append(await judge.scores("\n".join(item.texts)))
                results.append(_result(merged(scores, *extra), item, self._threshold))
        ticket.settle(Outcome.COMPLETED, usage={"prompt_tokens": tokens, "completion_tokens": 0})
        body = {"id": f"modr-{uuid.uuid4().hex}", "model": parsed.model, "results": results}
        return JSONResponse(body, headers=ticket.limit_headers)

    async def _items(self, parsed: ModerationRequest, omni: bool) -> list[Item]:
        """One item per string, or one for the whole array of parts (OpenAI's one result)."""
        value = parsed.input
        if isinstance(value, str):
            return [Item(texts=[value])]
        if all(isinstance(entry, str) for entry in value):
            return [Item(texts=[entry]) for entry in value if isinstance(entry, str)]
        item = Item()
        tally = Tally(self._limits)
        for index, part in enumerate(value):
            param = f"input[{index}]"
            if isinstance(part, ModerationTextPart):
                item.texts.append(part.text)
            elif isinstance(part, ModerationImagePart):
                if not omni:
                    raise InvalidRequest(
                        f"`{parsed.model}` moderates text only; use `omni-moderation-latest` for images.",
                        param=param,
                    )
                item.images.append((param, await self._image(part.image_url.url, param, tally)))
        return [item]

    async def _image(self, url: str, param: str, tally: Tally) -> bytes:
        if is_data_url(url):
            return decode_data_url(url, param, tally).data
        if self._fetcher is None:
            raise InvalidRequest(
                "Image URLs cannot be fetched here (media processing is off); send a base64 `data:` URL.",
                param=param,
                code="url_not_allowed",
            )
        return (await self._fetcher.fetch(url, param)).data


def _canonical(model: str) -> str:
    """The name answered for: the omni or the text model (the dated names answer for them)."""
    return OMNI_MODELS[0] if model in OMNI_MODELS else TEXT_MODELS[0]


def _result(scores: Scores, item: Item, threshold: float) -> dict[str, Any]:
    kinds = (["text"] if item.texts else []) + (["image"] if item.images else [])
    categories = {name: scores[name] >= threshold for name in CATEGORIES}
    return {
        "flagged": any(categories.values()),
        "categories": categories,
        "category_scores": {name: scores[name] for name in CATEGORIES},
        "category_applied_input_types": {
            name: [kind for kind in kinds if kind == "text" or name in IMAGE_CATEGORIES]
            for name in CATEGORIES
        },
    }
