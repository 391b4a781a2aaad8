"""A Piper voice built here, since none can be downloaded: an ONNX model with Piper's inputs and
output (`input` phoneme ids, `input_lengths`, `scales` -> `output` audio) whose audio is a tone
`hop` samples long per phoneme id times the length scale, and its `.onnx.json` with eSpeak's
English phonemes. Piper's own code loads it, phonemizes with its bundled eSpeak and runs it."""

from __future__ import annotations

import json
from pathlib import Path

HOP = 256
SAMPLE_RATE = 22_050


def build_piper_voice(folder: Path, name: str = "tone") -> Path:
    import onnx
    from onnx import TensorProto, helper

    nodes = [
        helper.make_node("Shape", ["input"], ["shape"]),
        helper.make_node("Gather", ["shape", "one_i"], ["count_i"], axis=0),
        helper.make_node("Cast", ["count_i"], ["count"], to=TensorProto.FLOAT),
        helper.make_node("Gather", ["scales", "one_i"], ["length_scale"], axis=0),
        helper.make_node("Mul", ["count", "hop"], ["samples_1"]),
        helper.make_node("Mul", ["samples_1", "length_scale"], ["samples"]),
        helper.make_node("Range", ["zero", "samples", "one"], ["t"]),
        helper.make_node("Mul", ["t", "step"], ["phase"]),
        helper.make_node("Sin", ["phase"], ["wave"]),
        helper.make_node("Mul", ["wave", "half"], ["quiet"]),
        helper.make_node("Reshape", ["quiet", "out_shape"], ["output"]),
    ]
    constants = [
        helper.make_tensor("one_i", TensorProto.INT64, [], [1]),
        helper.make_tensor("hop", TensorProto.FLOAT, [], [float(HOP)]),
        helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
        helper.make_tensor("one", TensorProto.FLOAT, [], [1.0]),
        helper.make_tensor("step", TensorProto.FLOAT, [], [0.0628]),  # 220 Hz at 22.05 kHz
        helper.make_tensor("half", TensorProto.FLOAT, [], [0.5]),
        helper.make_tensor("out_shape", TensorProto.INT64, [3], [1, 1, -1]),
    ]
    graph = helper.make_graph(
        nodes,
        "piper-tone",
        [
            helper.make_tensor_value_info("input", TensorProto.INT64, [1, "phonemes"]),
            helper.make_tensor_value_info("input_lengths", TensorProto.INT64, [1]),
            helper.make_tensor_value_info("scales", TensorProto.FLOAT, [3]),
        ],
        [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 1, "samples"])],
        constants,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path = folder / f"{name}.onnx"
    onnx.save(model, str(path))
    path.with_suffix(".onnx.json").write_text(json.dumps(_config()))
    return path


def _config() -> dict[str, object]:
    # Every symbol eSpeak's English IPA may produce gets an id; Piper drops what the map lacks.
    symbols = ["_", "^", "$", " ", *"!'(),-.:;?", *"abcdefghijklmnopqrstuvwxyz"]
    symbols += list(
        "æçðøħŋœǀǁǂǃɐɑɒɓɔɕɖɗɘəɚɛɜɞɟɠɡɢɣɤɥɦɧɨɪɫɬɭɮɯɰɱɲɳɴɵɶɸɹɺɻɽɾʀʁʂʃʄʈʉʊʋʌʍʎʏʐʑʒʔʕʘʙʛʜʝʟʡʢˈˌːˑ˞βθχᵻⱱ"
    )
    symbols += ["\u0303", "\u0329", "\u032a", "\u0361", "\u0306", "\u0325"]
    return {
        "audio": {"sample_rate": SAMPLE_RATE},
        "espeak": {"voice": "en-us"},
        "inference": {"noise_scale": 0.667, "length_scale": 1.0, "noise_w": 0.8},
        "phoneme_type": "espeak",
        "phoneme_id_map": {symbol: [i] for i, symbol in enumerate(dict.fromkeys(symbols))},
        "num_symbols": len(symbols),
        "num_speakers": 1,
        "speaker_id_map": {},
    }
