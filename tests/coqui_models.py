"""Coqui TTS models built here with random weights, since no trained ones can be downloaded: a VITS
voice and an XTTS v2 model, each a directory as Coqui's trainer writes it (`config.json` beside
`model.pth`; XTTS's `vocab.json` too), shrunk to a few layers so they load and speak in seconds.
Run by the Coqui venv's interpreter (tests/adapters/test_tts_coqui.py), never imported by the tests:

    .venv-coqui/bin/python tests/coqui_models.py vits|xtts DIR
"""

from __future__ import annotations

import sys
from pathlib import Path

LETTERS = "abcdefghijklmnopqrstuvwxyz"


def build_vits(folder: Path) -> None:
    import torch
    from TTS.tts.configs.shared_configs import CharactersConfig
    from TTS.tts.configs.vits_config import VitsConfig
    from TTS.tts.models.vits import Vits, VitsArgs

    torch.manual_seed(0)
    args = VitsArgs(
        hidden_channels=16,
        hidden_channels_ffn_text_encoder=32,
        num_layers_text_encoder=1,
        num_heads_text_encoder=1,
        num_layers_flow=1,
        num_layers_posterior_encoder=1,
        resblock_type_decoder="2",
        resblock_kernel_sizes_decoder=[3],
        resblock_dilation_sizes_decoder=[[1, 3]],
        upsample_rates_decoder=[8, 8, 4],
        upsample_initial_channel_decoder=32,
        upsample_kernel_sizes_decoder=[16, 16, 8],
        init_discriminator=False,
    )
    characters = CharactersConfig(
        characters_class="TTS.tts.models.vits.VitsCharacters",
        pad="_",
        eos="",
        bos="",
        blank=None,
        characters=LETTERS,
        punctuations=" !,.?'-",
        phonemes=None,
        is_unique=True,
        is_sorted=True,
    )
    config = VitsConfig(
        model_args=args, use_phonemes=False, text_cleaner="basic_cleaners", characters=characters
    )
    model = Vits(config)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "config": config.to_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))


def build_xtts(folder: Path) -> None:
    import torch
    from tokenizers import Tokenizer
    from tokenizers.models import BPE
    from TTS.tts.configs.xtts_config import XttsArgs, XttsAudioConfig, XttsConfig
    from TTS.tts.models.xtts import Xtts

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    # XTTS's tokenizer: a `tokenizers` file with its special tokens, the language tag and letters.
    specials = ["[STOP]", "[UNK]", "[SPACE]", "[START]", "[en]"]
    symbols = [*specials, *LETTERS, *".,!?'-"]
    tokenizer = Tokenizer(BPE({s: i for i, s in enumerate(symbols)}, [], unk_token="[UNK]"))
    tokenizer.add_special_tokens(specials)
    tokenizer.save(str(folder / "vocab.json"))
    audio_tokens = 64
    args = XttsArgs(
        gpt_layers=1,
        gpt_n_model_channels=32,
        gpt_n_heads=2,
        gpt_number_text_tokens=len(symbols),
        gpt_start_text_token=3,
        gpt_stop_text_token=0,
        gpt_num_audio_tokens=audio_tokens + 2,
        gpt_start_audio_token=audio_tokens,
        gpt_stop_audio_token=audio_tokens + 1,
        gpt_max_audio_tokens=40,
        gpt_max_text_tokens=200,
        gpt_max_prompt_tokens=70,
        decoder_input_dim=32,
        d_vector_dim=512,
        tokenizer_file=str(folder / "vocab.json"),
    )
    config = XttsConfig(model_args=args, audio=XttsAudioConfig(), languages=["en"], max_ref_len=10)
    model = Xtts(config)
    model.init_models()
    torch.save({"model": model.state_dict()}, folder / "model.pth")
    config.save_json(str(folder / "config.json"))


if __name__ == "__main__":
    {"vits": build_vits, "xtts": build_xtts}[sys.argv[1]](Path(sys.argv[2]))
