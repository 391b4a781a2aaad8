"""A job runner in its own process, for the tests to SIGKILL mid-job:

    python -m tests.gateway.jobs.crash_runner DATABASE_URL LEASE_S

It runs `items` jobs (tests/gateway/jobs/handlers.py) until killed.
"""

from __future__ import annotations

import asyncio
import sys

from gateway.jobs import JobQueue, JobRunner, RunnerPolicy
from gateway.store import Database
from tests.gateway.jobs.handlers import write_items


async def main(url: str, lease_s: float) -> None:
    database = Database(url)
    runner = JobRunner(JobQueue(database), RunnerPolicy(lease_s=lease_s, poll_s=0.1))
    runner.register("items", write_items)
    runner.start()
    print("runner started", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
