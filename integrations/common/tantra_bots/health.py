"""`GET /healthz` for a bot's container: 200 `{"status": "ok", "connected": true}` while the bot is
connected to its chat platform, 503 with `connected: false` otherwise (Kubernetes' probes restart
it). The standard library's HTTP server on a daemon thread: one route needs no framework, and it
serves the threaded Slack bot and the asyncio Discord bot alike."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def serve_health(
    connected: Callable[[], bool],
    port: int,
    host: str = "0.0.0.0",  # a container's probe port: every interface
) -> ThreadingHTTPServer:
    """Starts serving and returns the server (`server_address` has the port when `port` is 0;
    `shutdown()` stops it)."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] not in ("/healthz", "/health"):
                self._send(404, {"error": "not found"})
                return
            try:
                up = bool(connected())
            except Exception:
                up = False
            self._send(200 if up else 503, {"status": "ok" if up else "disconnected", "connected": up})

        def _send(self, status: int, body: dict[str, Any]) -> None:
            raw = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)

        def log_message(self, *args: Any) -> None:  # probes every few seconds: not worth a log line
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="healthz", daemon=True).start()
    return server
