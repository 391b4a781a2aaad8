"""The citation verification pass without an engine (issue 23, point 7): sentences and their spans,
each citation found in the sentence it marks, a source's passages, and the pass over a response
with a scripted embedding model and judge (the real engines: test_citation_check.py)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from gateway.protocol.responses_api import TantraResponseOptions
from gateway.services.citation_check import CitationChecks, Options, parse_verdict
from gateway.services.citation_spans import passages, position, sentence_at, sentences, source_key
from gateway.services.citations import annotations_of, file_citation, url_citation

TEXT = 'Water at eighty degrees [1]. Penguins ride bicycles. [2]\n[1]\nIt is 3.5 m "tall." [1][2] Last'


def test_sentences_and_their_spans() -> None:
    found = sentences(TEXT, first=3)
    assert [s.index for s in found] == [3, 4, 5, 6]
    assert [TEXT[s.start : s.end] for s in found] == [
        "Water at eighty degrees [1].",
        "Penguins ride bicycles. [2]\n[1]",  # the markers after its end, and a line of markers, are its own
        'It is 3.5 m "tall." [1][2]',  # no cut inside a number; closing quotes kept
        "Last",
    ]
    assert [s.claim for s in found] == [
        "Water at eighty degrees.",
        "Penguins ride bicycles.",
        'It is 3.5 m "tall."',
        "Last",
    ]
    assert sentences("") == [] and sentences("  \n ") == []
    assert [s.claim for s in sentences("One!  Two? Three")] == ["One!", "Two?", "Three"]


def test_each_citation_is_found_in_the_sentence_it_marks() -> None:
    sources = [file_citation("file-1", "a.txt"), url_citation("https://b.example", "B")]
    found = sentences(TEXT)
    annotations = annotations_of(TEXT, sources)
    marked = [sentence_at(found, at) for at in (position(a) for a in annotations) if at is not None]
    assert [s.index if s else None for s in marked] == [0, 1, 1, 2, 2]
    assert [source_key(a) for a in annotations[:2]] == ["file:file-1", "url:https://b.example"]
    # A source the text never marks is cited at its end: no sentence.
    unmarked = annotations_of("Nothing marked here.", sources)
    assert [sentence_at(sentences("Nothing marked here."), position(a) or 0) for a in unmarked] == [
        None,
        None,
    ]
    assert position({"type": "container_file_citation", "start_index": 1}) is None
    assert source_key({"type": "file_path", "file_id": "f"}) is None


def test_a_source_in_passages() -> None:
    text = "One sentence here. " * 40
    runs = passages(text, 100)
    assert all(len(run) <= 100 for run in runs) and len(runs) == 8
    assert " ".join(runs) == text.strip()
    assert passages("x" * 250, 100) == ["x" * 100, "x" * 100, "x" * 50]  # a long sentence is cut


class _Scripted(CitationChecks):
    """The pass with a scripted embedding model (a word's vector: which of two topics it is about)
    and judge (supported when the claim's words are all in the source)."""

    def __init__(self, options: Options, fail: bool = False) -> None:
        super().__init__(None, options)  # type: ignore[arg-type]
        self.calls: list[tuple[str, dict[str, Any]]] = []
        self._fail = fail

    async def answer(self, path: str, payload: dict[str, Any], model: str) -> dict[str, Any]:
        self.calls.append((path, payload))
        if self._fail:
            from gateway.errors import APIError

            raise APIError("no such model", status=404)
        if path == "/v1/embeddings":
            vectors = [[1.0, 0.0] if "tea" in t.lower() else [0.0, 1.0] for t in payload["input"]]
            return {"data": [{"index": n, "embedding": v} for n, v in enumerate(vectors)]}
        content = payload["messages"][0]["content"]
        source, claim = content.split("SOURCE:\n")[1].split("\n\nCLAIM:\n")
        words = set(claim.lower().strip(".").split())
        supported = words <= set(source.lower().replace(".", "").split())
        verdict = orjson.dumps({"supported": supported}).decode()
        return {"choices": [{"message": {"content": verdict}}]}


class _Searched:
    sources = {
        "file:file-1": ["Green tea is brewed at eighty degrees."],
        "url:https://b.example": ["Penguins swim."],
    }


def _response(text: str) -> dict[str, Any]:
    sources = [file_citation("file-1", "a.txt"), url_citation("https://b.example", "B")]
    part = {"type": "output_text", "text": text, "annotations": annotations_of(text, sources)}
    return {
        "output": [{"type": "file_search_call"}, {"type": "message", "content": [part]}],
        "tantra": {"x": 1},
    }


def _options(method: str = "embedding") -> Options:
    return Options(default=False, method=method, embedding_model="mini", threshold=0.5, judge_model="")  # type: ignore[arg-type]


async def test_the_embedding_pass_marks_the_unsupported_sentence() -> None:
    checks = _Scripted(_options())
    asked = TantraResponseOptions(verify_citations=True)
    assert checks.prepare(None, [_Searched()], "m") is None  # off by default
    assert checks.prepare(asked, [], "m") is None  # nothing searched
    verification = checks.prepare(asked, [_Searched()], "m")
    assert verification is not None and verification.method == "embedding"
    original = _response("Green tea is brewed at eighty degrees [1]. Bicycles are fast [1].")
    out = await verification.apply(original)
    assert "tantra" not in original["output"][1]["content"][0]["annotations"][0]  # a copy
    annotations = out["output"][1]["content"][0]["annotations"]
    assert [a.get("tantra", {}).get("supported") for a in annotations] == [True, False, None]
    assert annotations[0]["tantra"]["sentence"] == 0 and annotations[0]["tantra"]["start"] == 0
    assert annotations[1]["tantra"]["score"] == 0.0 and annotations[0]["tantra"]["score"] > 0.99
    assert "tantra" not in annotations[2]  # the url source cited at the end: no sentence
    assert out["tantra"] == {
        "x": 1,
        "citations": {"method": "embedding", "checked": 2, "supported": 1, "unsupported": [1]},
    }
    assert len(checks.calls) == 1  # one embedding call for every sentence and passage
    assert checks.calls[0][1]["model"] == "mini"


async def test_the_judge_pass_and_a_sentence_with_two_citations() -> None:
    checks = _Scripted(_options())
    asked = TantraResponseOptions(verify_citations=True, citation_method="judge")
    verification = checks.prepare(asked, [_Searched()], "served")
    assert verification is not None
    out = await verification.apply(_response("Penguins swim [1][2]. Tea is brewed [1]."))
    annotations = out["output"][1]["content"][0]["annotations"]
    assert [a["tantra"]["supported"] for a in annotations] == [False, True, True]
    assert out["tantra"]["citations"] == {"method": "judge", "checked": 2, "supported": 2, "unsupported": []}
    assert {payload["model"] for _, payload in checks.calls} == {"served"}  # the response's own model
    schema = checks.calls[0][1]["response_format"]["json_schema"]
    assert schema["strict"] is True and schema["schema"]["required"] == ["supported"]


async def test_a_failing_pass_leaves_the_answer_unjudged() -> None:
    checks = _Scripted(_options(), fail=True)
    verification = checks.prepare(TantraResponseOptions(verify_citations=True), [_Searched()], "m")
    assert verification is not None
    out = await verification.apply(_response("Tea [1]."))
    assert out["tantra"]["citations"]["error"] == "no such model"
    assert out["tantra"]["citations"]["checked"] == 0
    assert out["output"][1]["content"][0]["annotations"][0]["tantra"]["supported"] is None


@pytest.mark.parametrize(
    ("content", "verdict"),
    [
        ('{"supported": true}', (True, 1.0)),
        ('{"supported":false}', (False, 0.0)),
        ('{"supported": ', (None, None)),
    ],
)
def test_judge_verdicts(content: str, verdict: tuple[bool | None, float | None]) -> None:
    assert parse_verdict({"choices": [{"message": {"content": content}}]}) == verdict
    assert parse_verdict({}) == (None, None)
