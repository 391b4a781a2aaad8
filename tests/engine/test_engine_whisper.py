"""`build-checkpoint --preset whisper-tiny`: a whisper.cpp ggml file of the real tiny shape that
whisper.cpp itself (through pywhispercpp) loads and reports the shape of."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from engine.__main__ import main
from engine.checkpoint import checkpoint_is_complete, read_manifest
from engine.whisper import GGML_MAGIC, WHISPER_PRESETS


def test_header_vocabulary_and_tensors_follow_whisper_cpp(whisper_model: Path) -> None:
    data = whisper_model.read_bytes()
    header = struct.unpack_from("<12i", data)
    assert header == (GGML_MAGIC, 51865, 1500, 384, 6, 4, 448, 384, 6, 4, 80, 1)
    offset = 48
    rows, cols = struct.unpack_from("<2i", data, offset)
    assert (rows, cols) == (80, 201)
    offset += 8 + rows * cols * 4
    (tokens,) = struct.unpack_from("<i", data, offset)
    assert tokens == 50257
    offset += 4
    for _ in range(tokens):
        (size,) = struct.unpack_from("<i", data, offset)
        offset += 4 + size
    names = {}
    while offset < len(data):
        dims, length, ftype = struct.unpack_from("<3i", data, offset)
        offset += 12
        shape = struct.unpack_from(f"<{dims}i", data, offset)
        offset += 4 * dims
        name = data[offset : offset + length].decode()
        offset += length
        count = 1
        for size in shape:
            count *= size
        names[name] = (shape, ftype)
        offset += count * (2 if ftype == 1 else 4)
    assert offset == len(data)
    assert names["encoder.conv1.weight"] == ((3, 80, 384), 1)
    assert names["encoder.conv1.bias"] == ((1, 384), 0)
    assert names["decoder.token_embedding.weight"] == ((384, 51865), 1)
    assert names["decoder.blocks.3.cross_attn.key.weight"] == ((384, 384), 1)
    assert names["encoder.positional_embedding"] == ((384, 1500), 0)
    assert "proj_out.weight" not in names and not any("k_proj" in name for name in names)


def test_whisper_cpp_loads_it_with_the_tiny_shape(whisper_model: Path) -> None:
    import _pywhispercpp as pw

    ctx = pw.whisper_init_from_file_with_params(str(whisper_model), pw.whisper_context_default_params())
    try:
        assert pw.whisper_model_type_readable(ctx) == "tiny"
        assert pw.whisper_is_multilingual(ctx)
        assert pw.whisper_model_n_vocab(ctx) == 51865
        assert pw.whisper_model_n_audio_layer(ctx) == 4 and pw.whisper_model_n_text_state(ctx) == 384
    finally:
        pw.whisper_free(ctx)


def test_cli_builds_then_reuses(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "whisper"
    assert main(["build-checkpoint", "--preset", "whisper-tiny", "--out", str(out)]) == 0
    assert checkpoint_is_complete(out)
    manifest = read_manifest(out)
    assert manifest is not None and manifest["architecture"] == "whisper"
    assert "ggml-model.bin" in manifest["files"]
    assert main(["build-checkpoint", "--preset", "whisper-tiny", "--out", str(out)]) == 0
    assert "already complete" in capsys.readouterr().err
    assert "whisper-tiny" in WHISPER_PRESETS
