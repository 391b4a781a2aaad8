"""Long-VITA (`LongVITAForCausalLM`, `model_type: long_vita`) for Tantra: docs/vision.md.

- `config`: the published configuration (a Qwen2 config with a `visual` InternViT config) and
  the image and video tokens the original adds to Qwen2.5's tokenizer.
- `tiling`: the original's preprocessing (dynamic 448 px tiles, ImageNet normalisation) in
  PIL and numpy, and the prompt tokens each image, tile and video frame takes.
- `checkpoint`: random-weight checkpoints under the published tensor names.
- `reference`: a plain-PyTorch forward pass of the whole model, the test oracle.
- `vllm_plugin`, `vllm_model`, `vllm_processor`: serving on vLLM.

Importing this package imports nothing heavy; import the submodules.
"""
