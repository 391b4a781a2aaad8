"""Make the release's generated credentials once: the chart's pre-install/pre-upgrade hook Job.

    python generate_secrets.py --namespace NS --name SECRET KEY=KIND [KEY=KIND ...]

KIND is `hex` (48 hex digits: URL-safe, for the bundled PostgreSQL's password) or `admin` (an
`sk-admin-` key). The Secret is created with every KEY if it does not exist; if it does, only the
keys it lacks are added (a merge patch). A value once there is never changed, so the same values
render the same manifests (GitOps tools see no drift) and the database keeps the password it was
initialised with. The standard library only (urllib against the API server with the pod's service
account), so the gateway image runs it as is. Written for the Helm chart (helm/tantra/files/).

`--adopt-from OLD` takes a missing key's value from Secret OLD when OLD holds it: releases of the
chart before 0.2.0 kept their generated password and admin key in the gateway's Secret, and an
upgrade must not give a running database a new password.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import secrets
import ssl
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ACCOUNT = Path("/var/run/secrets/kubernetes.io/serviceaccount")
GENERATORS = {
    "hex": lambda: secrets.token_hex(24),
    "admin": lambda: f"sk-admin-{secrets.token_urlsafe(30)}",
}


class Api:
    def __init__(self, base: str, token: str, context: ssl.SSLContext | None) -> None:
        self.base, self.token, self.context = base.rstrip("/"), token, context

    def call(self, method: str, path: str, body: Any = None, content_type: str = "application/json") -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method=method)
        request.add_header("Authorization", f"Bearer {self.token}")
        request.add_header("Accept", "application/json")
        if data is not None:
            request.add_header("Content-Type", content_type)
        with urllib.request.urlopen(request, timeout=30, context=self.context) as response:
            return json.loads(response.read() or b"null")


def ensure(
    api: Api, namespace: str, name: str, wanted: dict[str, str], labels: dict[str, str], adopt: str = ""
) -> str:
    """Create the Secret, or add the keys it lacks; returns what was done, for the log."""
    path = f"/api/v1/namespaces/{namespace}/secrets"
    old = (_get(api, f"{path}/{adopt}") or {}).get("data") or {} if adopt else {}
    existing = _get(api, f"{path}/{name}")
    if existing is None:
        data = {key: old.get(key) or _b64(GENERATORS[kind]()) for key, kind in wanted.items()}
        secret = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "data": data}
        secret["metadata"] = {"name": name, "labels": labels}
        api.call("POST", path, secret)
        return f"created Secret {name} with {sorted(data)}"
    missing = {key: kind for key, kind in wanted.items() if key not in (existing.get("data") or {})}
    if not missing:
        return f"Secret {name} already holds {sorted(wanted)}; nothing changed"
    patch = {"data": {key: old.get(key) or _b64(GENERATORS[kind]()) for key, kind in missing.items()}}
    api.call("PATCH", f"{path}/{name}", patch, "application/merge-patch+json")
    return f"added {sorted(missing)} to Secret {name}"


def _get(api: Api, path: str) -> Any:
    """The object at `path`, or None when there is none."""
    try:
        return api.call("GET", path)
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def _b64(value: str) -> str:
    return base64.b64encode(value.encode()).decode()


def _api(explicit: str | None, token_file: Path) -> Api:
    if explicit:  # tests: a plain-HTTP stand-in of the API server
        return Api(explicit, token_file.read_text().strip(), None)
    host, port = os.environ["KUBERNETES_SERVICE_HOST"], os.environ["KUBERNETES_SERVICE_PORT"]
    context = ssl.create_default_context(cafile=str(ACCOUNT / "ca.crt"))
    return Api(f"https://{host}:{port}", token_file.read_text().strip(), context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--label", action="append", default=[], help="KEY=VALUE for a new Secret")
    parser.add_argument("--adopt-from", default="", help="a Secret whose values of missing keys to keep")
    parser.add_argument("--api", help="the API server's URL (default: the in-cluster one)")
    parser.add_argument("--token-file", type=Path, default=ACCOUNT / "token")
    parser.add_argument("keys", nargs="+", help="KEY=KIND, KIND one of " + ", ".join(GENERATORS))
    args = parser.parse_args(argv)
    wanted = dict(item.split("=", 1) for item in args.keys)
    unknown = sorted(kind for kind in wanted.values() if kind not in GENERATORS)
    if unknown:
        parser.error(f"unknown kinds {unknown}")
    labels = dict(item.split("=", 1) for item in args.label)
    print(
        ensure(_api(args.api, args.token_file), args.namespace, args.name, wanted, labels, args.adopt_from),
        flush=True,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
