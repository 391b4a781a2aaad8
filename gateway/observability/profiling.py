"""On-demand profiling of the running gateway with py-spy: a sampling profiler that attaches from
outside, so nothing is slowed down until someone asks for a profile, and then only for its length.

Off unless `TANTRA_PROFILING_ENABLED=true`; the route sits behind the admin key. py-spy needs
ptrace on the gateway's own process: root, or the SYS_PTRACE capability in a container.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Literal

ProfileFormat = Literal["speedscope", "flamegraph", "raw"]
_MEDIA = {"speedscope": "application/json", "flamegraph": "image/svg+xml", "raw": "text/plain"}


class ProfilerUnavailable(Exception):
    pass


class Profiler:
    def __init__(self, *, executable: str | None = None, max_seconds: float = 60.0) -> None:
        self._executable = executable
        self.max_seconds = max_seconds
        self._busy = asyncio.Lock()

    def executable(self) -> str:
        found = self._executable or shutil.which("py-spy") or _beside_python("py-spy")
        if not found:
            raise ProfilerUnavailable("py-spy is not installed (pip install py-spy)")
        return found

    @staticmethod
    def media_type(fmt: ProfileFormat) -> str:
        return _MEDIA[fmt]

    async def record(self, seconds: float, fmt: ProfileFormat = "speedscope", *, rate: int = 100) -> bytes:
        """Sample this process for `seconds` (every thread, native frames off) and return the profile."""
        if self._busy.locked():
            raise ProfilerUnavailable("a profile is already being recorded")
        seconds = max(1.0, min(seconds, self.max_seconds))
        async with self._busy:
            with tempfile.TemporaryDirectory(prefix="tantra-profile-") as tmp:
                out = Path(tmp) / "profile"
                process = await asyncio.create_subprocess_exec(
                    self.executable(),
                    "record",
                    "--pid", str(os.getpid()),
                    "--duration", str(int(seconds)),
                    "--rate", str(rate),
                    "--format", fmt,
                    "--output", str(out),
                    "--nonblocking",
                    # Idle threads too: a quiet gateway still yields a profile, and a wedged event
                    # loop shows where it waits.
                    "--idle",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.STDOUT,
                )  # fmt: skip
                log, _ = await process.communicate()
                if process.returncode != 0 or not out.exists():
                    tail = log.decode(errors="replace").strip().splitlines()[-3:]
                    raise ProfilerUnavailable("py-spy failed: " + " | ".join(tail))
                return out.read_bytes()


def _beside_python(name: str) -> str | None:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else None
