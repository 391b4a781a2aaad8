"""Random-weight audio-classification checkpoints, for the gateway's emotion and sound-event labels.

No trained checkpoint can be downloaded here, so `python -m engine build-checkpoint --preset
emotion-wav2vec2-tiny` (or `events-ast-tiny`) initialises a transformers
`Wav2Vec2ForSequenceClassification` (or `ASTForAudioClassification`) of a tiny shape from a seed,
with a label map in `id2label`, and saves it with its feature extractor by `save_pretrained`:
exactly the layout of a Hugging Face checkpoint such as `superb/wav2vec2-base-superb-er` or
`MIT/ast-finetuned-audioset-10-10-0.4593`, which the gateway loads the same way. With random weights
the labels it gives mean nothing; the loading and inference path is the real one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["AUDIO_CLASSIFIER_PRESETS", "AudioClassifierPreset", "write_audio_classifier_checkpoint"]


@dataclass(frozen=True)
class AudioClassifierPreset:
    architecture: str  # "wav2vec2" or "ast"
    labels: tuple[str, ...]


AUDIO_CLASSIFIER_PRESETS: dict[str, AudioClassifierPreset] = {
    "emotion-wav2vec2-tiny": AudioClassifierPreset("wav2vec2", ("neutral", "happy", "sad", "angry")),
    "events-ast-tiny": AudioClassifierPreset("ast", ("speech", "music", "noise")),
    "emotion-ast-tiny": AudioClassifierPreset("ast", ("neutral", "happy", "sad", "angry")),
    "events-wav2vec2-tiny": AudioClassifierPreset("wav2vec2", ("speech", "music", "noise")),
}

_AST_FRAMES = 1024  # 10.24 s of 10 ms frames, as the AudioSet-trained ASTs take


def write_audio_classifier_checkpoint(directory: Path, preset_name: str, seed: int) -> dict[str, Any]:
    """The model and its feature extractor into `directory`; returns the model's config."""
    import torch

    preset = AUDIO_CLASSIFIER_PRESETS[preset_name]
    id2label = dict(enumerate(preset.labels))
    label2id = {label: i for i, label in id2label.items()}
    torch.manual_seed(seed)
    model: Any
    extractor: Any
    config: Any
    if preset.architecture == "wav2vec2":
        from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2ForSequenceClassification

        config = Wav2Vec2Config(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            conv_dim=(32, 32, 32),
            conv_stride=(5, 4, 4),
            conv_kernel=(10, 4, 4),
            num_conv_pos_embeddings=16,
            num_conv_pos_embedding_groups=2,
            classifier_proj_size=16,
            id2label=id2label,
            label2id=label2id,
        )
        model = Wav2Vec2ForSequenceClassification(config)
        extractor = Wav2Vec2FeatureExtractor(
            sampling_rate=16000, do_normalize=True, return_attention_mask=True
        )
    else:
        from transformers import ASTConfig, ASTFeatureExtractor, ASTForAudioClassification

        config = ASTConfig(
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=2,
            intermediate_size=64,
            max_length=_AST_FRAMES,
            num_mel_bins=128,
            id2label=id2label,
            label2id=label2id,
        )
        model = ASTForAudioClassification(config)
        extractor = ASTFeatureExtractor(max_length=_AST_FRAMES, num_mel_bins=128, sampling_rate=16000)
    model.eval().save_pretrained(directory)
    extractor.save_pretrained(directory)
    return dict(config.to_dict())
