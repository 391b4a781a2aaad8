"""W8ASpike's activation coding: the serving functions against hand-computed values and the
separate reference's own coding, and the reference model it builds."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from engine.spikingbrain import w8aspike_reference
from engine.spikingbrain.reference import GLAswaReference, load_weights
from engine.spikingbrain.w8aspike import int8_round_trip, per_head, spike_code, spike_coded
from engine.spikingbrain.w8aspike_reference import W8ASpikeReference


def test_spike_code_by_hand() -> None:
    # mean|x| = 6.5 / 4, threshold t = 13 / 24; x / t = 1.85, -3.69, 5.54, 0.92 -> 2, -4, 6, 1 spikes.
    x = torch.tensor([1.0, -2.0, 3.0, 0.5], dtype=torch.float64)
    t = 13 / 24
    torch.testing.assert_close(spike_code(x), torch.tensor([2 * t, -4 * t, 6 * t, t], dtype=torch.float64))


def test_spike_code_threshold_is_clamped() -> None:
    # mean 77,500 / 3 would be 25,833; clamped to 10,000 the count is round(15.5) = 16.
    assert spike_code(torch.tensor([155_000.0, 0.0])).tolist() == [160_000.0, 0.0]
    # An all-zero input (a padded row) stays zero instead of dividing by zero.
    assert spike_code(torch.zeros(3)).tolist() == [0.0, 0.0, 0.0]


def test_spike_code_keeps_the_dtype_and_codes_each_row() -> None:
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5], [10.0, -20.0, 30.0, 5.0]], dtype=torch.bfloat16)
    coded = spike_code(x)
    assert coded.dtype == torch.bfloat16
    torch.testing.assert_close(coded[1].float(), 10 * coded[0].float(), rtol=1e-2, atol=0)


def test_int8_round_trip_by_hand() -> None:
    # absmax 1.27 -> scale 0.01; 0.5 -> 50, -1.27 -> -127, 0.003 -> round(0.3) = 0.
    got = int8_round_trip(torch.tensor([0.5, -1.27, 0.003], dtype=torch.float64))
    torch.testing.assert_close(got, torch.tensor([0.5, -1.27, 0.0], dtype=torch.float64))


def test_per_head_codes_each_head_on_its_own() -> None:
    x = torch.tensor([[1.0, -2.0, 3.0, 0.5, 100.0, 0.0, 0.0, 0.0]])
    got = per_head(spike_code, x, head_dim=4)
    torch.testing.assert_close(got[0, :4], spike_code(x[0, :4]))
    torch.testing.assert_close(got[0, 4:], torch.tensor([100.0, 0.0, 0.0, 0.0]))


def test_serving_and_reference_coding_agree() -> None:
    x = torch.randn(64, 256, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * 3
    torch.testing.assert_close(spike_code(x), w8aspike_reference._spike_count_times_threshold(x))
    torch.testing.assert_close(int8_round_trip(x), w8aspike_reference._int8_symmetric(x))


def test_spike_coding_is_chosen_by_layout_and_config_key() -> None:
    w8 = {"l.q_proj.weight"}
    assert spike_coded(SimpleNamespace(), w8)
    assert not spike_coded(SimpleNamespace(), set())
    assert not spike_coded(SimpleNamespace(w8aspike_activations="none"), w8)
    with pytest.raises(ValueError, match="w8aspike_activations"):
        spike_coded(SimpleNamespace(w8aspike_activations="int8"), w8)


def test_reference_codes_activations(w8aspike_checkpoint: Path, gla_swa_checkpoint: Path) -> None:
    """The coding changes the logits beyond the weight grid, and only W8ASpike checkpoints take it."""
    spiking = W8ASpikeReference.from_pretrained(w8aspike_checkpoint)
    weights_only = GLAswaReference(spiking.config, load_weights(w8aspike_checkpoint))
    ids = list(range(3, 3000, 75))  # 40 tokens: beyond the tiny preset's 32-token window
    diff = (spiking.prefill_logits(ids) - weights_only.prefill_logits(ids)).abs()
    assert diff.max() > 1e-2
    with pytest.raises(ValueError, match="W8ASpike"):
        W8ASpikeReference.from_pretrained(gla_swa_checkpoint)
