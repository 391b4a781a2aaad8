"""The task rule's classifier: nearest centroid over an embedding model.

Each task's centroid is the mean of its examples' normalised embeddings, computed once per set of
examples (one embeddings call for all of them; a reload that changes them computes the new ones)
and kept; a prompt costs one embeddings call, and only when a task rule is reached. Cosine
similarity is a dot product of normalised vectors (numpy; a vector index is not worth it for the
handful of tasks a virtual model has).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import numpy as np

from gateway.routing.config import TaskRule

# Embeds texts with the named embedding model: one vector per text, in order.
Embed = Callable[[str, list[str]], Awaitable[list[list[float]]]]


class TaskClassifier:
    def __init__(self, embed: Embed) -> None:
        self._embed = embed
        self._centroids: dict[
            tuple[str, tuple[tuple[str, tuple[str, ...]], ...]], tuple[list[str], np.ndarray]
        ] = {}
        self._lock = asyncio.Lock()

    async def classify(self, rule: TaskRule, text: str) -> str | None:
        """The task whose centroid is nearest to `text`, or None below the rule's min_similarity."""
        names, centroids = await self.centroids(rule)
        vector = _normalised(np.asarray(await self._embed(rule.embedding_model, [text]), dtype=np.float32))[0]
        similarity = centroids @ vector
        best = int(np.argmax(similarity))
        return names[best] if float(similarity[best]) >= rule.min_similarity else None

    async def centroids(self, rule: TaskRule) -> tuple[list[str], np.ndarray]:
        """The rule's tasks and their centroids (normalised, one row per task), computed once."""
        key = (rule.embedding_model, tuple((name, tuple(task.examples)) for name, task in rule.tasks.items()))
        found = self._centroids.get(key)
        if found is not None:
            return found
        async with self._lock:
            found = self._centroids.get(key)
            if found is None:
                found = await self._compute(rule)
                self._centroids[key] = found
        return found

    async def _compute(self, rule: TaskRule) -> tuple[list[str], np.ndarray]:
        names = list(rule.tasks)
        texts = [example for name in names for example in rule.tasks[name].examples]
        vectors = _normalised(np.asarray(await self._embed(rule.embedding_model, texts), dtype=np.float32))
        rows, start = [], 0
        for name in names:
            count = len(rule.tasks[name].examples)
            rows.append(vectors[start : start + count].mean(axis=0))
            start += count
        return names, _normalised(np.stack(rows))


def _normalised(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.where(norms == 0, 1.0, norms)
