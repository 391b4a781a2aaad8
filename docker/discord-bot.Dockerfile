# syntax=docker/dockerfile:1.7
# The Discord bot (integrations/discord): it dials out to Discord, nothing to publish.
#
#   docker build -f docker/discord-bot.Dockerfile -t tantra-discord-bot .
#
# Build from the repository root; docker/discord-bot.Dockerfile.dockerignore keeps the context small.
# Configuration by environment, secrets as files (NAME_FILE=/run/secrets/...): docs/bots.md.

# The base image by digest, so a rebuild gets the same bytes (the tag moves with every Python
# patch release). Refresh all four Dockerfiles at once (docs/deploy.md, "Images"):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
# Only the bot and the core the bots share: no gateway code in this image.
COPY integrations/common ./integrations/common
COPY integrations/discord ./integrations/discord
COPY docker/install.sh ./docker/
RUN sh docker/install.sh discord /opt/tantra

FROM ${PYTHON_IMAGE}
# The base image's pip and setuptools are not needed at run time; nothing gets installed there.
RUN python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --gid 10001 tantra \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin tantra
COPY --from=build /opt/tantra /opt/tantra
COPY docker/healthcheck.py /usr/local/bin/tantra-healthcheck
ENV PATH=/opt/tantra/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HEALTH_PORT=8080
# A numeric user, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
# 8080: /healthz (the bot itself only dials out to Discord's gateway).
EXPOSE 8080
# 200 while the bot is connected to its platform, 503 when not.
HEALTHCHECK --interval=15s --timeout=4s --start-period=30s --retries=3 \
    CMD ["tantra-healthcheck", "http://127.0.0.1:${HEALTH_PORT}/healthz"]
CMD ["python", "-m", "tantra_discord"]
