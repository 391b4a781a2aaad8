"""`python -m bench.tantra_server`: the gateway's own entry point under a name of the bench's own.

The machine is shared with other sessions that stop their own gateways by command line; a
benchmark's gateway started as `python -m gateway` was stopped with theirs mid-run.

`BENCH_CPROFILE=FILE` profiles the gateway's event loop (the main thread) with cProfile on CPU
time, not wall time, and writes the stats to FILE when it exits: on a shared machine the time a
process waits for a core is not its cost (`python -m bench.cost_curve --cprofile DIR`).
"""

import os

from gateway.__main__ import main

if __name__ == "__main__":
    out = os.environ.get("BENCH_CPROFILE")
    if not out:
        main()
    else:
        import cProfile
        import signal
        import sys
        import time

        # uvicorn restores the SIGTERM handler it found and raises the signal again once it has
        # drained: this one turns that into an exit that writes the profile, not a silent death.
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
        profiler = cProfile.Profile(time.process_time)
        profiler.enable()
        try:
            main()
        finally:
            profiler.disable()
            profiler.dump_stats(out)
