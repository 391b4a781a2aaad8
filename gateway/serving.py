"""The inference path shared by /v1/chat/completions and /v1/completions: parse, resolve, relay."""

from __future__ import annotations

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import APIError, InvalidRequest, PayloadTooLarge
from gateway.protocol import InvalidParam, parse_request
from gateway.protocol.common import SamplingParams
from gateway.relay import ClientGone, SSERelay, unless_disconnected
from gateway.upstreams import EngineUpstream, ModelCatalog
from gateway.upstreams.engine import read_body


class InferenceService:
    """Validates a request against OpenAI's schema, then relays the client's own bytes to the engine.

    The body is forwarded as received (no re-serialisation), so every parameter,
    OpenAI's or vLLM's, reaches the engine exactly as the client wrote it.
    """

    def __init__(self, engine: EngineUpstream, catalog: ModelCatalog, max_body_bytes: int) -> None:
        self._engine = engine
        self._catalog = catalog
        self._max_body_bytes = max_body_bytes

    async def handle(self, request: Request, schema: type[SamplingParams], path: str) -> Response | SSERelay:
        body = await self._read_body(request)
        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise InvalidRequest(
                "We could not parse the JSON body of your request. The API expects a JSON object; "
                "check that the body is valid JSON and that Content-Type is application/json."
            ) from None
        try:
            parsed = parse_request(schema, payload)
        except InvalidParam as exc:
            raise InvalidRequest(exc.message, param=exc.param) from None
        await self._catalog.resolve(parsed.model)

        headers = {"x-request-id": request.state.engine_request_id}
        try:
            if parsed.stream:
                upstream = await unless_disconnected(request.receive, self._engine.open(path, body, headers))
                return SSERelay(upstream)
            answer = await unless_disconnected(request.receive, self._complete(path, body, headers))
        except ClientGone:
            # Nobody is left to read the answer; 499 is what nginx logs for the same case.
            return Response(status_code=499)
        return Response(answer, media_type="application/json")

    async def _complete(self, path: str, body: bytes, headers: dict[str, str]) -> bytes:
        return await read_body(await self._engine.open(path, body, headers))

    async def _read_body(self, request: Request) -> bytes:
        declared = request.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body_bytes:
            raise self._too_large()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > self._max_body_bytes:
                raise self._too_large()
            chunks.append(chunk)
        return b"".join(chunks)

    def _too_large(self) -> APIError:
        return PayloadTooLarge(f"The request body is larger than the limit of {self._max_body_bytes} bytes.")
