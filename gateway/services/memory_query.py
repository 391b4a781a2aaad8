"""A memory search's query embedded by the gateway's own static model, called directly (docs/memory.md,
"Memory in chat"): with `TANTRA_MEMORY_EMBEDDING_MODEL` one of `TANTRA_LOCAL_EMBEDDING_MODELS`, the
query's vector is a tokenizer call and a mean (0.2 ms), and the in-process `/v1/embeddings` request
around it (its admission, body parsing and settlement) cost several times that on every chat.

The search runs inside a request of the same key that was admitted already (a chat, the memory API),
so what is kept of that request's admission is what matters for the query's own tokens: the key must
be allowed the embedding model (a 404 `model_not_found` otherwise, as the endpoint answers, and the
chat goes on without memories), and the tokens are written to the ledger as a `/v1/embeddings` row of
the key, priced by the model, under the request id the request to itself would have had. They are
not reserved against the key's token windows first: a query is a few tokens, counted after.
"""

from __future__ import annotations

import secrets

from gateway.admission import Outcome
from gateway.errors import no_such_model
from gateway.limits.accounting import Accountant
from gateway.memory.index import Vector
from gateway.services.local_embeddings import LocalEmbeddings
from gateway.services.memory_core import Caller

ENDPOINT = "/v1/embeddings"


class LocalQueryEmbedder:
    """`MemoryCore.direct_queries` for a static embedding model served by the gateway itself."""

    def __init__(self, local: LocalEmbeddings, accountant: Accountant, model: str) -> None:
        self._local = local
        self._accountant = accountant
        self.model = model

    async def __call__(self, caller: Caller, text: str) -> Vector:
        principal = caller.principal
        assert principal is not None, "a direct query embedding needs the caller's principal"
        if not principal.may_use(self.model):
            raise no_such_model(self.model)
        vectors, tokens = await self._local.vectors(self.model, [text])
        tab = self._accountant.open(
            tenant_id=principal.tenant_id,
            key_id=principal.key_id,
            endpoint=ENDPOINT,
            # Named as the request to itself it replaces would be.
            request_id=caller.call(secrets.randbits(16)).request_id,
        )
        tab.model = tab.served_model = self.model
        tab.close(
            status=Outcome.COMPLETED.status,
            outcome=Outcome.COMPLETED.value,
            usage={"prompt_tokens": tokens, "completion_tokens": 0},
        )
        vector: Vector = vectors[0]
        return vector
