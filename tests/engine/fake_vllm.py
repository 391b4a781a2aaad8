"""A stand-in for `python -m vllm.entrypoints.openai.api_server`, for launcher tests.

The launcher runs `<python> -m vllm... --port P ...`; pointing `python` at
this script gives a child that behaves as FAKE_VLLM_MODE says, in a second
instead of a minute: `serve` (answers /health, and forks a grandchild as vLLM
forks its engine core), `oom`, `sigkill`, `hang`.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Health(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/health" else 404)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        print("access:", format % args, flush=True)


def main() -> None:
    args = sys.argv[1:]
    port = int(args[args.index("--port") + 1])
    mode = os.environ.get("FAKE_VLLM_MODE", "serve")
    print(f"fake vllm starting in mode {mode} with {' '.join(args)}", flush=True)
    if mode == "oom":
        print("torch.OutOfMemoryError: CPU out of memory. Tried to allocate 2.00 GiB", flush=True)
        sys.exit(1)
    if mode == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("FAKE_VLLM_IGNORE_TERM"):
        # A wedged server that SIGTERM does not stop; only SIGKILL ends it.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if mode == "hang":
        time.sleep(600)
        return
    grandchild = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    pid_file = os.environ.get("FAKE_VLLM_GRANDCHILD_PIDFILE")
    if pid_file:
        with open(pid_file, "w") as handle:
            handle.write(str(grandchild.pid))
    time.sleep(float(os.environ.get("FAKE_VLLM_DELAY", "0.3")))
    server = ThreadingHTTPServer(("127.0.0.1", port), _Health)
    print(f"fake vllm serving on {port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
