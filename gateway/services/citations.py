"""OpenAI's citation annotations on an answer's text, for the gateway's search tools (file_search.py,
web_search.py): the search results are numbered in the model's context and the model is asked to
mark what it used with `[n]`; each marker in the text becomes an annotation of source n where it
stands (`file_citation`: its `index`; `url_citation`: `start_index`/`end_index` spanning the
marker). A source the text never marks (a model that does not follow the instruction, as the random
test model) is still cited, at the end of the text, so the client always learns what the answer was
given, as file_search's citations did before markers."""

from __future__ import annotations

import copy
import re
from collections.abc import Callable, Iterable, Sequence
from typing import Any

_MARKER = re.compile(r"\[(\d{1,2})\]")
INSTRUCTION = "Mark each statement taken from a source with its number in brackets, as [1]."

# One source's annotation at [start, end) of the text.
Annotate = Callable[[int, int], dict[str, Any]]


def annotations_of(text: str, sources: Sequence[Annotate]) -> list[dict[str, Any]]:
    """The annotations of `text` for `sources` (numbered from 1), in the text's order."""
    found: list[dict[str, Any]] = []
    cited: set[int] = set()
    for match in _MARKER.finditer(text):
        n = int(match.group(1))
        if 1 <= n <= len(sources):
            found.append(sources[n - 1](match.start(), match.end()))
            cited.add(n)
    end = len(text)
    for n, source in enumerate(sources, 1):
        late = source(end, end)
        if n not in cited and late not in found:  # one end citation per file or page
            found.append(late)
    return found


def numbered_context(header: str, sources: Iterable[str]) -> str:
    """The sources numbered [1], [2], ... after `header`, as the model is asked to cite them ("" for none)."""
    blocks = [f"[{n}] {source}" for n, source in enumerate(sources, 1)]
    return header + "\n\n" + "\n\n".join(blocks) if blocks else ""


def with_tool_call(body: dict[str, Any], call: dict[str, Any], sources: Sequence[Annotate]) -> dict[str, Any]:
    """A copy of the engine's response with the search tool's `call` item first and the sources'
    citations on its text (unchanged when it has no output list)."""
    out = copy.deepcopy(body)
    output = out.get("output")
    if not isinstance(output, list):
        return out
    annotate_output(output, sources)
    out["output"] = [call, *output]
    return out


def annotate_output(output: list[Any], sources: Sequence[Annotate]) -> None:
    """Add the annotations to every `output_text` part of the output's messages (in place)."""
    for item in output:
        if not isinstance(item, dict) or item.get("type") != "message":
            continue
        for part in item.get("content") or []:
            if isinstance(part, dict) and part.get("type") == "output_text":
                text = part.get("text") or ""
                part["annotations"] = [*(part.get("annotations") or []), *annotations_of(text, sources)]


def file_citation(file_id: str, filename: str) -> Annotate:
    return lambda start, _end: {
        "type": "file_citation",
        "file_id": file_id,
        "filename": filename,
        "index": start,
    }


def url_citation(url: str, title: str) -> Annotate:
    return lambda start, end: {
        "type": "url_citation",
        "url": url,
        "title": title,
        "start_index": start,
        "end_index": end,
    }
