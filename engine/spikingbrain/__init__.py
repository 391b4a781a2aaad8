"""SpikingBrain-7B (`GLAswaForCausalLM`, `model_type: gla_swa`) for Tantra.

- `config`: the published configuration class.
- `reference`: a plain-PyTorch implementation, the test oracle.
- `checkpoint`: random-weight checkpoints under the published tensor names.
- `gla`: the torch-native GLA kernels (chunked prefill, recurrent decode).
- `weights`: the two published weight layouts (bf16 low-rank gate; W8ASpike).
- `vllm_plugin`, `vllm_model`, `vllm_gla`: serving on vLLM's V1 engine.

Importing this package imports nothing heavy; import the submodules.
"""
