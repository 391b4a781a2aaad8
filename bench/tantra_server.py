"""`python -m bench.tantra_server`: the gateway's own entry point under a name of the bench's own.

The machine is shared with other sessions that stop their own gateways by command line; a
benchmark's gateway started as `python -m gateway` was stopped with theirs mid-run.
"""

from gateway.__main__ import main

if __name__ == "__main__":
    main()
