"""Idefics3 (`Idefics3ForConditionalGeneration`): a SigLIP-style vision tower, a pixel-shuffle
connector and a Llama text model; the architecture of Hugging Face's SmolVLM-256M/500M.

Written in the published layout: `config.json` with an `idefics3_vision` vision config and a
`llama` text config, the tokenizer with Idefics3's image tokens added, and the processor's files
(`preprocessor_config.json` for `Idefics3ImageProcessor`, `processor_config.json` for
`Idefics3Processor`). vLLM and transformers load it with their own code, unchanged. The tokenizer
is Qwen2.5's (the only one buildable offline here) rather than SmolLM2's, and so is its ChatML
chat template, taught to place `<image>` where each image part is.

Why Idefics3: vLLM 0.32 serves it on CPU, several images per prompt, and both vLLM's model module
and transformers' processor import without torchvision, whose PyPI builds break vLLM's import
here. LLaVA does not (vLLM's `llava` module imports its Pixtral support, which imports
transformers' torchvision-only Pixtral image processor), nor do Qwen2-VL and its successors (their
processors need a video processor, which needs torchvision).

Each image is one square tile (`do_image_splitting` off), so it costs a fixed number of prompt
tokens: `<fake_token_around_image><global-img>`, `image_seq_len` x `<image>`,
`<fake_token_around_image>`.

The weights come from transformers' own `Idefics3ForConditionalGeneration` initialisation, seeded,
so every tensor has the name and shape that class (and vLLM's loader) expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.presets import VisionLanguagePreset
from engine.tokenizer import VL_CHAT_TEMPLATE_RESOURCE

if TYPE_CHECKING:
    import torch

    from engine.presets import Preset

__all__ = ["IMAGE_TOKEN", "IMAGE_TOKENS", "Idefics3Writer", "image_prompt_tokens"]

IMAGE_TOKEN = "<image>"
FAKE_IMAGE_TOKEN = "<fake_token_around_image>"
GLOBAL_IMAGE_TOKEN = "<global-img>"
END_OF_UTTERANCE = "<end_of_utterance>"
IMAGE_TOKENS: tuple[str, ...] = (
    FAKE_IMAGE_TOKEN,
    IMAGE_TOKEN,
    END_OF_UTTERANCE,
    GLOBAL_IMAGE_TOKEN,
    # The tile markers of image splitting: unused while it is off, but in the vocabulary as in
    # SmolVLM's, so turning it on in preprocessor_config.json needs no new tokenizer.
    *(f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)),
)
"""What the tokenizer adds after Qwen2.5's own 22 special tokens, from id 151665 on."""

FIRST_ADDED_ID = 151665
BOS_TOKEN_ID = 151643
EOS_TOKEN_ID = 151645

# SigLIP's normalisation: to [-1, 1].
_MEAN_STD = [0.5, 0.5, 0.5]
_LANCZOS = 1


def image_prompt_tokens(preset: VisionLanguagePreset) -> int:
    """Prompt tokens one image adds: its `<image>` run and the three tokens around it."""
    return preset.image_tokens + 3


class Idefics3Writer:
    """Writes Idefics3's config, weights and processor files for a vision-language preset."""

    name = "idefics3"
    vision_language = True
    added_tokens = IMAGE_TOKENS
    chat_template = VL_CHAT_TEMPLATE_RESOURCE
    """Qwen2.5's ChatML over lists of parts: each image's `<image>` goes where the client put it
    (with a string-content template vLLM would put every image before the message's text)."""

    def config(self, preset: Preset) -> dict[str, Any]:
        if not isinstance(preset, VisionLanguagePreset):
            raise ValueError(f"architecture idefics3 needs a vision-language preset, not {preset.name}")
        return {
            "architectures": ["Idefics3ForConditionalGeneration"],
            "image_token_id": FIRST_ADDED_ID + IMAGE_TOKENS.index(IMAGE_TOKEN),
            "model_type": "idefics3",
            "pad_token_id": BOS_TOKEN_ID,
            "scale_factor": preset.scale_factor,
            "text_config": _llama_config(preset),
            "tie_word_embeddings": preset.tie_word_embeddings,
            "torch_dtype": "bfloat16",
            "transformers_version": "4.46.0",
            "use_cache": True,
            "vision_config": {
                "attention_dropout": 0.0,
                "hidden_act": "gelu_pytorch_tanh",
                "hidden_size": preset.vision_hidden_size,
                "image_size": preset.image_size,
                "initializer_range": 0.02,
                "intermediate_size": preset.vision_intermediate_size,
                "layer_norm_eps": 1e-6,
                "model_type": "idefics3_vision",
                "num_attention_heads": preset.vision_num_attention_heads,
                "num_channels": 3,
                "num_hidden_layers": preset.vision_num_hidden_layers,
                "patch_size": preset.patch_size,
            },
        }

    def tensors(self, config: Mapping[str, Any], generator: torch.Generator) -> dict[str, torch.Tensor]:
        """transformers' own init of the model, seeded from `generator`, in bf16.

        The global RNG is forked, so building a checkpoint leaves the caller's random state alone.
        """
        import torch
        from transformers import Idefics3Config, Idefics3ForConditionalGeneration

        hf_config = Idefics3Config(**_model_fields(config))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(generator.initial_seed())
            model = Idefics3ForConditionalGeneration(hf_config)
        state = model.state_dict()
        if config.get("tie_word_embeddings"):
            state.pop("lm_head.weight", None)
        # Tied tensors share storage, which safetensors refuses: give each its own.
        return {name: tensor.detach().to(torch.bfloat16).contiguous() for name, tensor in state.items()}

    def extra_files(self, config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
        """The processor's files, consistent with the vision config: one square tile per image."""
        vision = config["vision_config"]
        size = int(vision["image_size"])
        patches = (size // int(vision["patch_size"])) ** 2
        return {
            "preprocessor_config.json": {
                "do_convert_rgb": True,
                "do_image_splitting": False,
                "do_normalize": True,
                "do_pad": True,
                "do_rescale": True,
                "do_resize": True,
                "image_mean": _MEAN_STD,
                "image_processor_type": "Idefics3ImageProcessor",
                "image_std": _MEAN_STD,
                "max_image_size": {"longest_edge": size},
                "processor_class": "Idefics3Processor",
                "resample": _LANCZOS,
                "rescale_factor": 1 / 255,
                "size": {"longest_edge": size},
            },
            "processor_config.json": {
                "image_seq_len": patches // int(config["scale_factor"]) ** 2,
                "processor_class": "Idefics3Processor",
            },
        }


def _llama_config(preset: Preset) -> dict[str, Any]:
    """The text model: vLLM's Idefics3 always builds a Llama, so the preset's shape as Llama."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "attention_bias": False,
        "attention_dropout": 0.0,
        "bos_token_id": BOS_TOKEN_ID,
        "eos_token_id": EOS_TOKEN_ID,
        "head_dim": preset.head_dim,
        "hidden_act": "silu",
        "hidden_size": preset.hidden_size,
        "initializer_range": preset.init_std,
        "intermediate_size": preset.intermediate_size,
        "max_position_embeddings": preset.max_position_embeddings,
        "mlp_bias": False,
        "model_type": "llama",
        "num_attention_heads": preset.num_attention_heads,
        "num_hidden_layers": preset.num_hidden_layers,
        "num_key_value_heads": preset.num_key_value_heads,
        "pad_token_id": BOS_TOKEN_ID,
        "rms_norm_eps": 1e-5,
        "rope_scaling": None,
        "rope_theta": 100000.0,
        "tie_word_embeddings": preset.tie_word_embeddings,
        "torch_dtype": "bfloat16",
        "use_cache": True,
        "vocab_size": preset.vocab_size,
    }


def _model_fields(config: Mapping[str, Any]) -> dict[str, Any]:
    """The config's model fields: what `config.json` says about the file, not the model, left out."""
    skip = {"architectures", "model_type", "torch_dtype", "transformers_version"}
    return {key: value for key, value in config.items() if key not in skip}
