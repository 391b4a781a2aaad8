"""A small Kubernetes API server for EndpointSlice discovery's tests: the list and watch protocol of
`discovery.k8s.io/v1` EndpointSlices in one namespace, over real HTTP in a thread.

It speaks what gateway/upstreams/endpointslices.py relies on: a list with `labelSelector` answering
`items` and a `metadata.resourceVersion`; a watch (`watch=1&resourceVersion=N`) streaming one JSON
event a line (ADDED, MODIFIED, DELETED, BOOKMARK) for every change after N, held open until
`watch_s` passes (as the API server ends watches after a timeout); a version older than the compacted
history answers 410 Gone; a request without the bearer token answers 401. No live cluster is used
anywhere in the tests (docs/deploy.md says so).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

SERVICE_LABEL = "kubernetes.io/service-name"


def endpoint_slice(name: str, service: str, ready: Mapping[str, bool | None]) -> dict[str, Any]:
    """An EndpointSlice of `service` with one endpoint per address (its ready condition, None: unset)."""
    endpoints = []
    for address, is_ready in ready.items():
        conditions = {} if is_ready is None else {"ready": is_ready, "serving": True}
        endpoints.append({"addresses": [address], "conditions": conditions})
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {"name": name, "labels": {SERVICE_LABEL: service}},
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": [{"name": "http", "port": 8001, "protocol": "TCP"}],
    }


class KubeApi:
    """The slices of one namespace, their change log, and the requests seen."""

    def __init__(self, namespace: str, token: str, watch_s: float = 2.0) -> None:
        self.namespace = namespace
        self.token = token
        self.watch_s = watch_s
        self.requests: list[dict[str, str]] = []
        self._slices: dict[str, dict[str, Any]] = {}
        self._log: list[tuple[int, str, dict[str, Any]]] = []  # (version, type, object)
        self._version = 100
        self._compacted = 0  # watches from a version below this get 410 Gone
        self._changed = threading.Condition()
        self.url = ""

    # -- the test's side ----------------------------------------------------------------------

    def put(self, item: dict[str, Any]) -> None:
        name = item["metadata"]["name"]
        self._record("MODIFIED" if name in self._slices else "ADDED", item)

    def delete(self, name: str) -> None:
        self._record("DELETED", self._slices[name])

    def compact(self) -> None:
        """Forget the history: every open or later watch from an older version gets 410 Gone."""
        with self._changed:
            self._compacted = self._version + 1
            self._log.clear()
            self._changed.notify_all()

    def _record(self, kind: str, item: dict[str, Any]) -> None:
        with self._changed:
            self._version += 1
            stamped = json.loads(json.dumps(item))
            stamped["metadata"]["resourceVersion"] = str(self._version)
            if kind == "DELETED":
                self._slices.pop(item["metadata"]["name"], None)
            else:
                self._slices[item["metadata"]["name"]] = stamped
            self._log.append((self._version, kind, stamped))
            self._changed.notify_all()

    # -- the server's side --------------------------------------------------------------------

    def listing(self, selector: str) -> dict[str, Any]:
        with self._changed:
            items = [item for item in self._slices.values() if _selected(item, selector)]
            return {
                "kind": "EndpointSliceList",
                "metadata": {"resourceVersion": str(self._version)},
                "items": items,
            }

    def events(self, selector: str, since: int) -> Iterator[dict[str, Any] | None]:
        """The events after `since`, then those that come, until watch_s passes; None: Gone."""
        deadline = time.monotonic() + self.watch_s
        while True:
            with self._changed:
                if since < self._compacted:
                    yield None
                    return
                pending = [(v, k, o) for v, k, o in self._log if v > since and _selected(o, selector)]
                if not pending:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        return
                    self._changed.wait(left)
                    continue
            for version, kind, item in pending:
                since = version
                yield {"type": kind, "object": item}


def _selected(item: Mapping[str, Any], selector: str) -> bool:
    key, _, value = selector.partition("=")
    return bool(item["metadata"].get("labels", {}).get(key) == value)


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        api = self.server.api
        url = urlsplit(self.path)
        query = {key: values[0] for key, values in parse_qs(url.query).items()}
        api.requests.append({"path": url.path, **query})
        if self.headers.get("Authorization") != f"Bearer {api.token}":
            return self._json(401, {"kind": "Status", "code": 401, "reason": "Unauthorized"})
        if url.path != f"/apis/discovery.k8s.io/v1/namespaces/{api.namespace}/endpointslices":
            return self._json(404, {"kind": "Status", "code": 404, "reason": "NotFound"})
        selector = query.get("labelSelector", "")
        if query.get("watch") not in ("1", "true"):
            return self._json(200, api.listing(selector))
        self._watch(api, selector, int(query.get("resourceVersion") or 0))

    def _watch(self, api: KubeApi, selector: str, since: int) -> None:
        events = api.events(selector, since)
        first = next(events, False)
        if first is None:  # a version already compacted away before the watch began
            return self._json(410, {"kind": "Status", "code": 410, "reason": "Expired"})
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Connection", "close")  # the body ends when the watch does
        self.end_headers()
        for event in [first, *events] if first is not False else []:
            if event is None:  # compacted while watching: the API server's ERROR event
                status = {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"}
                event = {"type": "ERROR", "object": status}
            self.wfile.write(json.dumps(event).encode() + b"\n")
            self.wfile.flush()

    def _json(self, status: int, body: Mapping[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    api: KubeApi


@contextmanager
def kube_api(namespace: str, token: str, watch_s: float = 2.0) -> Iterator[KubeApi]:
    api = KubeApi(namespace, token, watch_s)
    server = _Server(("127.0.0.1", 0), _Handler)
    server.api = api
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, name="kube-api", daemon=True)
    thread.start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
