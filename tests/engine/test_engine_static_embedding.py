"""minilm-static: the model2vec static model distilled from the real all-MiniLM-L6-v2 checkpoint
(engine/static_embedding.py), loaded by model2vec's own `StaticModel`."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from model2vec import StaticModel

from engine.__main__ import _parser
from engine.checkpoint import checkpoint_is_complete, default_architecture, ensure_checkpoint, read_manifest
from engine.static_embedding import PCA_DIMS, STATIC_EMBEDDING_ARCHITECTURE


@pytest.fixture(scope="module")
def model(static_embedding_checkpoint: Path) -> StaticModel:
    return StaticModel.from_pretrained(static_embedding_checkpoint)


def test_model2vec_loads_the_folder_and_encodes_unit_vectors(model: StaticModel) -> None:
    vectors = model.encode(["a cup of green tea", "the train leaves at noon"], use_multiprocessing=False)
    assert vectors.shape == (2, PCA_DIMS) and vectors.dtype == np.float32
    assert np.linalg.norm(vectors, axis=1) == pytest.approx([1.0, 1.0], abs=1e-5)
    # MiniLM's whole vocabulary, in its order: a token id means the same row as in the checkpoint.
    assert len(model.tokens) == 30522 and model.tokens[7592] == "hello"


def test_a_paraphrase_is_closer_than_an_unrelated_text(model: StaticModel) -> None:
    pairs = [
        ("How do I reset my password?", "What are the steps to change my login password?"),
        ("My sister lives in Berlin.", "Where does my sister live? In Berlin."),
        ("The patient has a high fever.", "The sick person's temperature is very high."),
    ]
    unrelated = "Quarterly revenue grew by twelve percent."
    for left, right in pairs:
        a, b, c = model.encode([left, right, unrelated], use_multiprocessing=False)
        assert float(a @ b) > float(a @ c) + 0.2, (left, right)


def test_no_padding_reaches_a_text(model: StaticModel) -> None:
    """MiniLM's tokenizer.json pads every text to 128 [PAD]s; the static model's must not, or a short
    text's mean would be mostly the [PAD] row."""
    assert model.tokenize(["tea"]) == [[5572]]


def test_manifest_names_the_recipe_and_a_build_is_reused(static_embedding_checkpoint: Path) -> None:
    manifest = read_manifest(static_embedding_checkpoint)
    assert manifest is not None
    assert (manifest["preset"], manifest["architecture"]) == ("minilm-static", STATIC_EMBEDDING_ARCHITECTURE)
    assert default_architecture("minilm-static") == STATIC_EMBEDDING_ARCHITECTURE
    assert checkpoint_is_complete(static_embedding_checkpoint)
    config = json.loads((static_embedding_checkpoint / "config.json").read_text())
    assert config["model_type"] == "model2vec" and config["hidden_dim"] == PCA_DIMS
    modified = (static_embedding_checkpoint / "model.safetensors").stat().st_mtime_ns
    assert (
        ensure_checkpoint(static_embedding_checkpoint, preset="minilm-static") == static_embedding_checkpoint
    )
    assert (static_embedding_checkpoint / "model.safetensors").stat().st_mtime_ns == modified


def test_the_cli_offers_the_preset() -> None:
    args = _parser().parse_args(["build-checkpoint", "--preset", "minilm-static"])
    assert args.preset == "minilm-static"
