"""Turn a JSON body into a request model, or into the one error OpenAI would report."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from gateway.protocol.common import InvalidParam

RequestT = TypeVar("RequestT", bound=BaseModel)
ModelT = TypeVar("ModelT", bound=BaseModel)


def parse_request(model: type[RequestT], body: Any) -> RequestT:
    """Validate `body`; raise InvalidParam naming the first offending field, as OpenAI does."""
    request = parse_object(model, body, "The request body must be a JSON object.")
    check = getattr(request, "check", None)
    if check is not None:
        check()  # rules that span fields (SamplingParams')
    return request


def parse_object(model: type[ModelT], body: Any, not_an_object: str) -> ModelT:
    """Validate any JSON object against `model`, with the same errors as a request body."""
    if not isinstance(body, dict):
        raise InvalidParam(None, not_an_object, "invalid_type")
    try:
        return model.model_validate(body)
    except ValidationError as exc:
        raise _first_problem(exc, body) from None


def parse_field(model: type[ModelT], value: Any, param: str) -> ModelT:
    """Validate the object in field `param` of a body, its errors named from the body's top
    (`audio.format`)."""
    try:
        return parse_object(model, value, f"Invalid type for '{param}': expected an object.")
    except InvalidParam as exc:
        if exc.param is None:  # not an object
            raise InvalidParam(param, exc.message, exc.code) from None
        where = f"{param}.{exc.param}"
        raise InvalidParam(where, exc.message.replace(f"'{exc.param}'", f"'{where}'"), exc.code) from None


def _first_problem(exc: ValidationError, body: dict[str, Any]) -> InvalidParam:
    # A union reports one error per member; the one that got deepest into the
    # body is the one the client meant (a list of parts, not a plain string).
    located = [
        (_visible_loc(e["loc"], body, keep_last=e["type"] in _NAMES_A_KEY), e)
        for e in exc.errors(include_url=False)
    ]
    loc, error = max(located, key=lambda item: len(item[0]))
    if error["type"] == "union_tag_invalid":
        # Name the field the union is keyed on (`messages[0].role`), as OpenAI does.
        ctx = error.get("ctx", {})
        key = str(ctx.get("discriminator", "")).strip("'")
        return InvalidParam(
            format_param((*loc, key)),
            f"Invalid value: {ctx.get('tag')!r}. Supported values are: {ctx.get('expected_tags')}.",
        )
    param = format_param(loc) or None
    code = error_code(error["type"], error.get("input"), error.get("ctx"))
    if error["type"] == "missing":
        return InvalidParam(param, f"Missing required parameter: '{param}'.", code)
    if error["type"] == "extra_forbidden":
        return InvalidParam(param, f"Unrecognized request argument supplied: '{param}'.", code)
    given = error.get("input")
    shown = (
        repr(given) if isinstance(given, str | int | float | bool) or given is None else type(given).__name__
    )
    return InvalidParam(param, f"Invalid value for '{param}': {error['msg']} (got {shown}).", code)


_NAMES_A_KEY = {"missing", "extra_forbidden"}

# OpenAI's `code` for each kind of pydantic error: the one mapping every validation 400 goes through.
# Bounds are split by kind of number below (`integer_...` or `decimal_...`), as OpenAI words them.
_CODES = {
    "missing": "missing_required_parameter",
    "union_tag_not_found": "missing_required_parameter",
    "extra_forbidden": "unknown_parameter",
    "string_too_long": "string_above_max_length",
    "string_too_short": "string_below_min_length",
    "too_long": "array_above_max_length",
    "too_short": "array_below_min_length",
    "less_than": "above_max_value",
    "less_than_equal": "above_max_value",
    "greater_than": "below_min_value",
    "greater_than_equal": "below_min_value",
}
# Pydantic's error types that mean "a value of the wrong JSON type" (`string_type`, `int_parsing`...).
_TYPE_SUFFIXES = ("_type", "_parsing", "_from_float", "is_instance_of")


def error_code(kind: str, given: Any, ctx: dict[str, Any] | None) -> str:
    """OpenAI's `code` for a pydantic error of type `kind`; `invalid_value` for any other rule."""
    code = _CODES.get(kind)
    if code is None:
        return "invalid_type" if kind.endswith(_TYPE_SUFFIXES) else "invalid_value"
    if kind == "too_short" and given in ([], {}):
        return "empty_array"
    if code.endswith(("max_value", "min_value")):
        limit = next(iter((ctx or {}).values()), None)
        decimal = isinstance(given, float) or isinstance(limit, float)
        return ("decimal_" if decimal else "integer_") + code
    return code


def _visible_loc(loc: tuple[int | str, ...], body: Any, *, keep_last: bool) -> tuple[int | str, ...]:
    """The real path to the bad value, without the union tags pydantic adds to locations.

    A tag (`user`, `text`, `str`, `list[...]`) may share its name with a real key
    (`text`, `function`), so each step is tried both as a key of the body and as a
    tag, and the longest path that exists in the body wins. With `keep_last`, the
    last step is kept though the body lacks it: it names the missing or unknown key.
    """
    if not loc:
        return ()
    part, rest = loc[0], loc[1:]
    if not rest:
        exists = _child(body, part) is not _ABSENT
        return (part,) if exists or keep_last else ()
    best = _visible_loc(rest, body, keep_last=keep_last)  # `part` is a tag
    child = _child(body, part)
    if child is not _ABSENT:
        through = (part, *_visible_loc(rest, child, keep_last=keep_last))
        if len(through) >= len(best):
            best = through
    return best


_ABSENT = object()


def _child(value: Any, part: int | str) -> Any:
    if isinstance(part, int) and isinstance(value, list) and 0 <= part < len(value):
        return value[part]
    if isinstance(part, str) and isinstance(value, dict) and part in value:
        return value[part]
    return _ABSENT


def format_param(loc: tuple[int | str, ...]) -> str:
    """`("messages", 0, "content")` -> `messages[0].content`, OpenAI's spelling."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out
