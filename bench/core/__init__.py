"""Engine benchmarks: decode cost against context length (SpikingBrain's GLA/window core vs
full-attention Qwen2) and bf16 vs int8 W8A8 vs 4-bit W4A16 weights. Run `python -m bench.core`."""
