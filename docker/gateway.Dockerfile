# syntax=docker/dockerfile:1.7
# The gateway: FastAPI behind uvicorn, no torch or vLLM (those live in the engine image).
#
#   docker build -f docker/gateway.Dockerfile -t tantra-gateway .
#
# Build from the repository root; docker/gateway.Dockerfile.dockerignore keeps the context small.

# The base image by digest, so a rebuild gets the same bytes (the tag moves with every Python
# patch release). Refresh all four Dockerfiles at once (docs/deploy.md, "Images"):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# The dependencies first, from the lock with hashes: this layer is rebuilt only when the lock
# (or the installer) changes, not on every edit of the code.
COPY docker/install.sh ./docker/
COPY requirements/gateway.lock ./requirements/
RUN sh docker/install.sh deps:gateway /opt/tantra
# Only what `pip install .` needs for the gateway: no engine/, tests/ or bench/ in this image.
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
RUN sh docker/install.sh gateway /opt/tantra

FROM ${PYTHON_IMAGE}
# tesseract-ocr reads text in images for text-only models (adapters/ocr.py, docs/adapters.md);
# espeak-ng speaks /v1/audio/speech (adapters/tts/, docs/audio.md).
# Versions float with the pinned base image so security updates land on rebuild.
# The base image's pip and setuptools are not needed at run time; nothing gets installed there.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends tesseract-ocr tesseract-ocr-eng espeak-ng \
    && rm -rf /var/lib/apt/lists/* \
    && python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --gid 10001 tantra \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tantra \
    && mkdir -p /var/lib/tantra/blobs && chown -R 10001:10001 /var/lib/tantra
COPY --from=build /opt/tantra /opt/tantra
COPY docker/healthcheck.py /usr/local/bin/tantra-healthcheck
ENV PATH=/opt/tantra/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TANTRA_HOST=0.0.0.0 \
    TANTRA_PORT=8000 \
    TANTRA_OPERATOR_PORT=9090
# The working directory is the gateway's own: the default SQLite store (.cache/tantra/tantra.db)
# lands here, so a single container works without a database; mount a volume to keep it.
WORKDIR /var/lib/tantra
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# 8000: the API (publish it, or put a proxy in front); 9090: metrics and upstream health, for
# Prometheus only (never publish it).
EXPOSE 8000 9090
# Liveness only: /readyz would mark every gateway unhealthy while the engine loads a model.
HEALTHCHECK --interval=10s --timeout=4s --start-period=20s --retries=3 \
    CMD ["tantra-healthcheck", "http://127.0.0.1:${TANTRA_PORT}/healthz"]
# On SIGTERM uvicorn drains in-flight requests for up to 30 s (gateway/__main__.py): give
# `docker stop` (stop_grace_period) and Kubernetes (terminationGracePeriodSeconds) longer.
CMD ["python", "-m", "gateway"]
