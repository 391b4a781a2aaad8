"""A static embedding model distilled from all-MiniLM-L6-v2, the way model2vec distils one.

A query embedded by the MiniLM engine costs a transformer pass (37-48 ms p50 on a 2-core host); a
static model is a table of one vector per token, and a text's vector is the mean of its tokens'
rows: tens of microseconds, in the gateway's own process. The table is built once from MiniLM:

1. every vocabulary token goes through the transformer alone (`[CLS] token [SEP]`), and the
   mean-pooled output of its last layer is that token's vector (model2vec's `create_embeddings`);
2. PCA reduces the vectors to `PCA_DIMS` components (fit on the tokens the tokenizer can produce);
3. each row is weighted by model2vec's Zipf/SIF rule: a token's probability is taken from its rank in
   the vocabulary (WordPiece vocabularies are ordered roughly by frequency), and its weight is
   `sif / (sif + p)`, so frequent tokens count less in a text's mean.

The result is written in model2vec's own folder layout (`model.safetensors` with an `embeddings`
tensor, `tokenizer.json`, `config.json`), which `model2vec.StaticModel.from_pretrained` loads.

model2vec's own `distill` extra cannot be used: it requires transformers < 5.4 and the engine's vLLM
needs a newer one, so the ~50 lines of its distillation that matter are written out here.
The vocabulary is kept whole and in MiniLM's order, so the tokenizer is MiniLM's own (minus its
fixed padding and truncation, which a static model must not see) and token ids mean the same thing.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["PCA_DIMS", "STATIC_EMBEDDING_ARCHITECTURE", "STATIC_EMBEDDING_PRESETS", "write_static_checkpoint"]

STATIC_EMBEDDING_ARCHITECTURE = "model2vec"
"""What a static preset's manifest names as its architecture."""

STATIC_EMBEDDING_PRESETS: dict[str, str] = {"minilm-static": "minilm"}
"""Static preset -> the embedding preset (engine/embedding.py) it is distilled from."""

PCA_DIMS = 256
"""model2vec's default width: MiniLM's 384 dimensions carry little more for a mean of token rows."""

SIF_COEFFICIENT = 1e-4
"""model2vec's default: the weight of a token of probability p is sif / (sif + p)."""

_BATCH = 512
# Tokens no text tokenizes to (BERT's reserved slots): left out of the PCA fit and the Zipf ranks.
_UNUSED = re.compile(r"\[unused\d+\]")


def write_static_checkpoint(out: Path, source: Path) -> None:
    """Distil the sentence-transformers model in `source` into a model2vec folder at `out`."""
    import numpy as np
    from safetensors.numpy import save_file

    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    vocab: dict[str, int] = tokenizer["model"]["vocab"]
    tokens = sorted(vocab, key=vocab.__getitem__)
    used = np.array([not _UNUSED.fullmatch(token) for token in tokens])
    vectors = _token_vectors(source, len(tokens))
    reduced = _pca(vectors, used, PCA_DIMS)
    weighted = (reduced * _sif_weights(used)[:, None]).astype(np.float32)
    save_file({"embeddings": np.ascontiguousarray(weighted)}, str(out / "model.safetensors"))
    # A static model takes each text's own tokens: no [CLS]/[SEP] (model2vec encodes without special
    # tokens), and no fixed padding to 128 or truncation (padding would average [PAD] rows in).
    tokenizer["padding"] = None
    tokenizer["truncation"] = None
    (out / "tokenizer.json").write_text(json.dumps(tokenizer, ensure_ascii=False), encoding="utf-8")
    config = {
        "model_type": "model2vec",
        "architectures": ["StaticModel"],
        "tokenizer_name": "sentence-transformers/all-MiniLM-L6-v2",
        "apply_pca": PCA_DIMS,
        "sif_coefficient": SIF_COEFFICIENT,
        "hidden_dim": PCA_DIMS,
        "seq_length": 1000000,
        "normalize": True,
        "pooling": "mean",
        "embedding_dtype": "float32",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")


def _token_vectors(source: Path, vocab_size: int) -> Any:
    """Each token id's mean-pooled last hidden state of `[CLS] token [SEP]` (float32, vocab x hidden)."""
    import numpy as np
    import torch
    from transformers import AutoConfig, AutoModel

    config = AutoConfig.from_pretrained(source)
    model = AutoModel.from_pretrained(source).eval()
    cls_id, sep_id = _special_id(source, "[CLS]"), _special_id(source, "[SEP]")
    rows: list[Any] = []
    with torch.inference_mode():
        for start in range(0, vocab_size, _BATCH):
            ids = torch.arange(start, min(start + _BATCH, vocab_size))
            batch = torch.stack([torch.full_like(ids, cls_id), ids, torch.full_like(ids, sep_id)], dim=1)
            hidden = model(input_ids=batch, attention_mask=torch.ones_like(batch)).last_hidden_state
            rows.append(hidden.float().mean(dim=1).numpy())
    vectors = np.concatenate(rows)
    assert vectors.shape == (vocab_size, config.hidden_size)
    return np.nan_to_num(vectors)


def _special_id(source: Path, token: str) -> int:
    tokenizer = json.loads((source / "tokenizer.json").read_text(encoding="utf-8"))
    return int(tokenizer["model"]["vocab"][token])


def _pca(vectors: Any, fit_rows: Any, dims: int) -> Any:
    """`vectors` projected on the top `dims` principal components of `vectors[fit_rows]`, each
    component's sign fixed so its largest score is positive (model2vec's `_pca_fit_transform`)."""
    import numpy as np

    fit = vectors[fit_rows].astype(np.float64)
    mean = fit.mean(axis=0)
    centred = fit - mean
    _, eigenvectors = np.linalg.eigh(centred.T @ centred / (len(fit) - 1))
    components = eigenvectors[:, ::-1][:, :dims].T
    scores = (vectors - mean) @ components.T
    strongest = np.argmax(np.abs(scores), axis=0)
    return scores * np.sign(scores[strongest, np.arange(dims)])


def _sif_weights(used: Any) -> Any:
    """model2vec's `compute_weights`: probability by Zipf's law from the token's rank among the
    tokens in use (rank 1 = the first in the vocabulary), weight sif / (sif + p); 0 for unused."""
    import numpy as np

    ranks = np.cumsum(used)
    inverse_rank = 1.0 / (ranks + 1)
    probability = inverse_rank / inverse_rank[used].sum()
    return np.where(used, SIF_COEFFICIENT / (SIF_COEFFICIENT + probability), 0.0)
