"""What the gateway's start does not import (issue 24): libraries only some requests need are
imported where they are first used, since every replica, worker process and restart pays for what
`from gateway import create_app` pulls in. Measured with `python -X importtime` on this host:
scipy.signal (through pyloudnorm) 1.1 s, torch (through noisereduce) more, the mcp SDK 0.7 s,
pytesseract 0.5 s, aiobotocore 0.3 s; and an argon2 hash at import, 0.2 s."""

from __future__ import annotations

import json
import subprocess
import sys

LAZY = ("torch", "noisereduce", "scipy", "pyloudnorm", "mcp", "pytesseract", "aiobotocore", "model2vec")


def test_creating_the_app_imports_none_of_the_first_use_libraries() -> None:
    code = (
        "import json, sys\n"
        "from gateway import Settings, create_app\n"
        "create_app(Settings(redis_url='memory://', database_url='sqlite+aiosqlite://'))\n"
        f"print(json.dumps(sorted(m for m in {LAZY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []
