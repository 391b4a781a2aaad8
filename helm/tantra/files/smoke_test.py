"""`helm test`: the release answers OpenAI's API end to end (the chart's test hook Pod runs this).

    python smoke_test.py --api URL --admin URL --model NAME   (the admin key in TANTRA_ADMIN_KEY_FILE)

With the admin key it finds or makes the tenant `helm-test`, makes a key that expires in ten
minutes, calls GET /v1/models (the model must be listed) and a two-token chat completion through
the gateway with that key, and revokes the key whatever happened. Exit 0 only if both answered as
OpenAI's API does. The standard library only. Written for the Helm chart (helm/tantra/files/).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TENANT = "helm-test"


def call(url: str, key: str, body: Any = None) -> Any:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method="GET" if data is None else "POST")
    request.add_header("Authorization", f"Bearer {key}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        raise SystemExit(
            f"{request.method} {url}: {exc.code} {exc.read().decode(errors='replace')}"
        ) from None


def check(api: str, key: str, model: str) -> str:
    listed = [m["id"] for m in call(f"{api}/v1/models", key)["data"]]
    if model not in listed:
        raise SystemExit(f"GET /v1/models lists {listed}, not {model}")
    body = {"model": model, "messages": [{"role": "user", "content": "Say hi."}], "max_tokens": 2}
    answer = call(f"{api}/v1/chat/completions", key, body)
    if answer.get("object") != "chat.completion" or not answer.get("choices"):
        raise SystemExit(f"POST /v1/chat/completions answered {answer}")
    return f"ok: {model} listed, chat answered ({answer.get('usage', {}).get('total_tokens', '?')} tokens)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--api", required=True, help="the gateway's API Service URL")
    parser.add_argument("--admin", required=True, help="where /admin answers (API or operator port)")
    parser.add_argument("--model", required=True)
    args = parser.parse_args(argv)
    admin_key = Path(os.environ["TANTRA_ADMIN_KEY_FILE"]).read_text().strip()
    tenants = call(f"{args.admin}/admin/tenants", admin_key)["data"]
    tenant = next((t for t in tenants if t["name"] == TENANT), None)
    if tenant is None:
        tenant = call(f"{args.admin}/admin/tenants", admin_key, {"name": TENANT})
    expires = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    key = call(
        f"{args.admin}/admin/keys",
        admin_key,
        {"tenant_id": tenant["id"], "name": TENANT, "expires_at": expires},
    )
    try:
        print(check(args.api.rstrip("/"), key["key"], args.model), flush=True)
    finally:
        call(f"{args.admin}/admin/keys/{key['id']}/revoke", admin_key, {})
    return 0


if __name__ == "__main__":
    sys.exit(main())
