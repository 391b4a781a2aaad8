"""LoRA fine-tuning of a checkpoint on CPU with PEFT (issue 20, point 2).

Run as its own niced process (`python -m engine finetune ...`) by the gateway's job runner: the
gateway never imports torch. `data` turns OpenAI's fine-tuning lines into token ids and loss
masks; `train` runs the loop and writes the adapter in PEFT's format (adapter_config.json and
adapter_model.safetensors) with one JSON line of progress per step on stdout.
"""
