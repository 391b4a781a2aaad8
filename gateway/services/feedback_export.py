"""Feedback turned into a fine-tuning file (`POST /v1/feedback/export`, docs/fine-tuning.md): the
training lines in OpenAI's formats, and the file written to the Files API (purpose `fine-tune`)
for the caller's tenant, counted against its storage quota.

- `supervised`: each correction is a chat example (the rated exchange's prompt, then the corrected
  answer as the assistant's); with `include_rated`, answers rated up or 4 stars and above are
  examples as they were given.
- `dpo`: preference pairs `{"input": {"messages"}, "preferred_output", "non_preferred_output"}`: a
  correction over the answer it corrects, and, among answers to the same prompt (the same messages,
  compared by their hash) that were rated, the best-rated over each lower-rated one.

Each line is checked with the fine-tuning file's own line check (gateway/protocol/fine_tuning_file.py)
and left out if it would fail it (a stored message of a role OpenAI does not know, say): the file
validates as a job's training file.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from gateway.blobs import BlobStore, BlobTooLarge, new_blob_key
from gateway.protocol.fine_tuning_file import check_lines
from gateway.services.stored import StoredObjects
from gateway.store import Owner, utcnow
from gateway.store.feedback import StoredFeedback
from gateway.store.file_models import StoredFile
from gateway.store.files import UPLOADING, object_id

# The score from which a rated answer is a good example: thumbs up, 4 or 5 stars.
GOOD = 0.75


@dataclass(frozen=True)
class Lines:
    lines: list[bytes]
    # The feedback rows that went into at least one line.
    used: int


def training_lines(rows: Iterable[StoredFeedback], method: str, *, include_rated: bool = False) -> Lines:
    rows = list(rows)
    pairs = _dpo(rows) if method == "dpo" else _supervised(rows, include_rated)
    lines: list[bytes] = []
    used: set[int] = set()
    for line, sources in pairs:
        encoded = orjson.dumps(line)
        _, problems = check_lines(encoded.decode(), method)
        if any(problem.startswith("Line ") for problem in problems):
            continue  # the one line would be refused; the minimum count is the caller's to check
        lines.append(encoded + b"\n")
        used.update(sources)
    return Lines(lines, len(used))


def _answer(row: StoredFeedback) -> dict[str, Any] | None:
    answer = row.answer
    if (
        not answer
        or answer.get("role") != "assistant"
        or not (answer.get("content") or answer.get("tool_calls"))
    ):
        return None
    return dict(answer)


def _supervised(
    rows: list[StoredFeedback], include_rated: bool
) -> Iterable[tuple[dict[str, Any], list[int]]]:
    for row in rows:
        if not row.prompt:
            continue
        if row.correction is not None:
            yield {"messages": [*row.prompt, {"role": "assistant", "content": row.correction}]}, [row.seq]
        elif include_rated and row.score is not None and row.score >= GOOD:
            answer = _answer(row)
            if answer is not None:
                yield {"messages": [*row.prompt, answer]}, [row.seq]


def _pair(prompt: list[Any], better: dict[str, Any], worse: dict[str, Any]) -> dict[str, Any]:
    return {"input": {"messages": prompt}, "preferred_output": [better], "non_preferred_output": [worse]}


def _dpo(rows: list[StoredFeedback]) -> Iterable[tuple[dict[str, Any], list[int]]]:
    # Corrections: the corrected answer over the one given.
    for row in rows:
        answer = _answer(row)
        if answer is None or row.correction is None or not row.prompt:
            continue
        if answer.get("content") != row.correction:
            yield _pair(row.prompt, {"role": "assistant", "content": row.correction}, answer), [row.seq]
    # Rated answers to one prompt: the best-rated over each lower-rated (mean score per answer).
    groups: dict[str, dict[bytes, list[StoredFeedback]]] = defaultdict(lambda: defaultdict(list))
    for row in rows:
        answer = _answer(row)
        if row.prompt and row.score is not None and answer is not None:
            groups[row.prompt_hash][orjson.dumps(answer, option=orjson.OPT_SORT_KEYS)].append(row)
    for answers in groups.values():
        if len(answers) < 2:
            continue
        ranked = sorted(answers.items(), key=lambda kv: -sum(r.score or 0 for r in kv[1]) / len(kv[1]))
        best_key, best_rows = ranked[0]
        best_score = _mean(best_rows)
        for key, worse_rows in ranked[1:]:
            if _mean(worse_rows) < best_score:
                sources = [r.seq for r in (*best_rows, *worse_rows)]
                yield _pair(best_rows[0].prompt, orjson.loads(best_key), orjson.loads(key)), sources


def _mean(rows: list[StoredFeedback]) -> float:
    return sum(r.score or 0 for r in rows) / len(rows)


class FileWriter:
    """Writes a file of the gateway's own making to the Files API, as an upload would be stored:
    the row first (`uploading`), then the blob, then the row `processed`; nothing kept on failure."""

    def __init__(self, objects: StoredObjects, blobs: BlobStore) -> None:
        self.objects = objects
        self._blobs = blobs

    async def write(self, owner: Owner, filename: str, data: bytes, purpose: str) -> StoredFile:
        now = utcnow()
        files = self.objects.files
        cap, too_large = await self.objects.cap(owner.tenant_id, now, self.objects.limits.max_file_bytes)
        if len(data) > cap:
            raise too_large()
        file_id = object_id("file-")
        row = StoredFile(
            id=file_id,
            **owner.columns(),
            filename=filename,
            purpose=purpose,
            bytes=len(data),
            content_type="application/jsonl",
            blob_key=new_blob_key("files", owner.tenant_id, file_id),
            status=UPLOADING,
            created_at=now,
        )
        await files.begin_file(row)
        try:
            size = await self._blobs.put(row.blob_key, _one(data), max_bytes=cap)
        except BlobTooLarge:
            await files.remove_file(file_id)
            raise too_large() from None
        except BaseException:
            await files.remove_file(file_id)
            raise
        return await files.finish_file(file_id, size=size, changes={})


async def _one(data: bytes) -> AsyncIterator[bytes]:
    yield data
