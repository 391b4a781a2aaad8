"""schemathesis hooks for the OpenAPI test (loaded through SCHEMATHESIS_HOOKS).

Generated requests stay as generated, except that the amount of text they ask for is capped (and
set when they leave it unset): a schema-valid request may ask a CPU engine for thousands of tokens,
which tests nothing more than four tokens do and would take minutes.
"""

from __future__ import annotations

from typing import Any

import schemathesis

_CAPS = {
    "max_tokens": 4,
    "max_completion_tokens": 4,
    "max_output_tokens": 4,
    "min_tokens": 2,
    "n": 2,
    "best_of": 2,
}


@schemathesis.hook
def map_case(context: Any, case: Any) -> Any:
    """Every phase's cases pass here (the body hooks only see the fuzzing phase's)."""
    body = case.body
    if isinstance(body, dict) and str(case.operation.path).startswith("/v1/"):
        if body.get("max_tokens") is None and body.get("max_completion_tokens") is None:
            body["max_tokens"] = 4  # unset, the engine would fill the whole context
        if str(case.operation.path) == "/v1/responses" and body.get("max_output_tokens") is None:
            body["max_output_tokens"] = 4  # the Responses API's own name for it
        for name, cap in _CAPS.items():
            value = body.get(name)
            if isinstance(value, int) and not isinstance(value, bool) and value > cap:
                body[name] = cap
    return case
