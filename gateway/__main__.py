"""`python -m gateway` / `tantra-gateway`: serve the gateway with uvicorn, configured from TANTRA_*."""

from __future__ import annotations

import uvicorn

from gateway.app import create_app
from gateway.config import Settings


def main() -> None:
    settings = Settings()
    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        # The gateway's own x-request-id and error envelope replace uvicorn's extras.
        server_header=False,
        timeout_graceful_shutdown=30,
    )


if __name__ == "__main__":
    main()
