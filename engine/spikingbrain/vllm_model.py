"""`GLAswaForCausalLM` for vLLM: SpikingBrain's GLA / sliding-window hybrid.

Even layers (by default) are GLA with a recurrent state in vLLM's state cache
(`vllm_gla`); odd layers are Qwen2-style attention with RoPE over a sliding
window, served by vLLM's own `Attention`. Weights load by the published names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, ClassVar

import torch
from torch import nn
from vllm.compilation.decorators import support_torch_compile
from vllm.config import VllmConfig
from vllm.distributed import get_tensor_model_parallel_world_size
from vllm.model_executor.layers.activation import SiluAndMul
from vllm.model_executor.layers.attention import Attention
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.linear import MergedColumnParallelLinear, QKVParallelLinear, RowParallelLinear
from vllm.model_executor.layers.logits_processor import LogitsProcessor
from vllm.model_executor.layers.mamba.mamba_utils import MambaStateCopyFuncCalculator
from vllm.model_executor.layers.rotary_embedding import get_rope
from vllm.model_executor.layers.vocab_parallel_embedding import ParallelLMHead, VocabParallelEmbedding
from vllm.model_executor.model_loader.weight_utils import default_weight_loader
from vllm.model_executor.models.interfaces import HasInnerState, IsHybrid, SupportsLoRA
from vllm.sequence import IntermediateTensors

from engine.allocator import return_freed_memory, trim_after_load_enabled
from engine.spikingbrain import vllm_pages  # noqa: F401  (registers the page-clearing op)
from engine.spikingbrain.config import GLAswaConfig
from engine.spikingbrain.vllm_gla import GLAswaLinearAttention, gla_state_dtype, gla_state_shape
from engine.spikingbrain.w8aspike import int8_round_trip, per_head, spike_code, spike_coded
from engine.spikingbrain.weights import (
    QUANT_SCALES_SUFFIX,
    GateLayout,
    UnexpectedTensorError,
    check_quantized_tensor,
    check_tensors,
    expected_shapes,
    gate_layout,
    quantized_weight_names,
    tensor_names,
    with_weight_quantizers_applied,
)

__all__ = ["GLAswaForCausalLM"]

# Checkpoint projections that vLLM stacks into one matmul: (param, weight, shard).
_STACKED = (
    ("qkv_proj", "q_proj", "q"),
    ("qkv_proj", "k_proj", "k"),
    ("qkv_proj", "v_proj", "v"),
    ("gate_up_proj", "gate_proj", 0),
    ("gate_up_proj", "up_proj", 1),
)


def _config(vllm_config: VllmConfig) -> GLAswaConfig:
    config = vllm_config.model_config.hf_config
    if not isinstance(config, GLAswaConfig):
        # A config class registered under another name still carries the same keys.
        config = GLAswaConfig(**config.to_dict())
    if config.use_short_conv:
        raise NotImplementedError("gla_swa with use_short_conv=true (no published checkpoint uses it)")
    return config


class GLAswaMLP(nn.Module):
    """SwiGLU: down(silu(gate(x)) * up(x)); the published `hidden_act` is swish = silu.

    Spike-coded (W8ASpike): gate and up read the spike-coded input; down reads the
    product as it is, as the published fused SwiGLU-linear does."""

    def __init__(self, config: GLAswaConfig, vllm_config: VllmConfig, prefix: str, spiking: bool) -> None:
        super().__init__()
        self.spiking = spiking
        self.gate_up_proj = MergedColumnParallelLinear(
            config.hidden_size,
            [config.intermediate_size] * 2,
            bias=False,
            quant_config=vllm_config.quant_config,
            prefix=f"{prefix}.gate_up_proj",
        )
        self.down_proj = RowParallelLinear(
            config.intermediate_size,
            config.hidden_size,
            bias=False,
            quant_config=vllm_config.quant_config,
            prefix=f"{prefix}.down_proj",
        )
        self.act_fn = SiluAndMul()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate_up, _ = self.gate_up_proj(spike_code(x) if self.spiking else x)
        out, _ = self.down_proj(self.act_fn(gate_up))
        return out


class GLAswaWindowAttention(nn.Module):
    """Softmax attention with RoPE over the token and the `sliding_window` tokens before it.

    Spike-coded (W8ASpike): q/k/v and o read spike-coded inputs; after RoPE the
    query is spike-coded per head and keys and values are rounded to int8 per token
    and head before they reach the (float) paged KV cache."""

    def __init__(self, config: GLAswaConfig, vllm_config: VllmConfig, prefix: str, spiking: bool) -> None:
        super().__init__()
        self.spiking = spiking
        tp_size = get_tensor_model_parallel_world_size()
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads // tp_size
        self.num_kv_heads = max(1, config.num_key_value_heads // tp_size)
        self.q_size = self.num_heads * self.head_dim
        self.kv_size = self.num_kv_heads * self.head_dim
        quant_config = vllm_config.quant_config

        self.qkv_proj = QKVParallelLinear(
            config.hidden_size,
            self.head_dim,
            config.num_attention_heads,
            config.num_key_value_heads,
            bias=True,
            quant_config=quant_config,
            prefix=f"{prefix}.qkv_proj",
        )
        self.o_proj = RowParallelLinear(
            config.num_attention_heads * self.head_dim,
            config.hidden_size,
            bias=False,
            quant_config=quant_config,
            prefix=f"{prefix}.o_proj",
        )
        self.rotary_emb = get_rope(
            self.head_dim,
            max_position=config.max_position_embeddings,
            is_neox_style=True,
            rope_parameters={"rope_type": "default", "rope_theta": config.rope_theta},
        )
        # flash-attn's window_size=(W, 0) in the published code lets a token see
        # itself and W earlier tokens; vLLM's sliding_window counts the token itself.
        self.attn = Attention(
            self.num_heads,
            self.head_dim,
            self.head_dim**-0.5,
            num_kv_heads=self.num_kv_heads,
            cache_config=vllm_config.cache_config,
            quant_config=quant_config,
            per_layer_sliding_window=config.sliding_window + 1,
            prefix=f"{prefix}.attn",
        )

    def forward(self, positions: torch.Tensor, hidden_states: torch.Tensor) -> torch.Tensor:
        qkv, _ = self.qkv_proj(spike_code(hidden_states) if self.spiking else hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        q, k = self.rotary_emb(positions, q, k)
        if self.spiking:
            q = per_head(spike_code, q, self.head_dim)
            k = per_head(int8_round_trip, k, self.head_dim)
            v = per_head(int8_round_trip, v, self.head_dim)
        torch.ops.spikingbrain_pages.clear_window_pages(k, self.attn.layer_name)
        attended = self.attn(q, k, v)
        out, _ = self.o_proj(spike_code(attended) if self.spiking else attended)
        return out


class GLAswaDecoderLayer(nn.Module):
    """Pre-norm block: x + attn(attn_norm(x)), then + mlp(mlp_norm(.))."""

    def __init__(
        self,
        config: GLAswaConfig,
        vllm_config: VllmConfig,
        layer_idx: int,
        prefix: str,
        gate: GateLayout,
        spiking: bool,
    ) -> None:
        super().__init__()
        self.is_window = config.is_window_layer(layer_idx)
        self.attn_norm = RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.attn: GLAswaWindowAttention | GLAswaLinearAttention
        if self.is_window:
            self.attn = GLAswaWindowAttention(config, vllm_config, prefix=f"{prefix}.attn", spiking=spiking)
        else:
            self.attn = GLAswaLinearAttention(
                config, vllm_config, prefix=f"{prefix}.attn", gate=gate, spiking=spiking
            )
        self.mlp_norm = RMSNorm(config.hidden_size, eps=config.norm_eps)
        self.mlp = GLAswaMLP(config, vllm_config, prefix=f"{prefix}.mlp", spiking=spiking)

    def forward(
        self, positions: torch.Tensor, hidden_states: torch.Tensor, residual: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if residual is None:
            residual = hidden_states
            hidden_states = self.attn_norm(hidden_states)
        else:
            hidden_states, residual = self.attn_norm(hidden_states, residual)
        if isinstance(self.attn, GLAswaWindowAttention):
            hidden_states = self.attn(positions, hidden_states)
        else:
            hidden_states = self.attn(hidden_states)
        hidden_states, residual = self.mlp_norm(hidden_states, residual)
        return self.mlp(hidden_states), residual


# Explicit because string annotations (`from __future__ import annotations`)
# hide the tensor arguments from vLLM's inference of the dynamic dimensions.
@support_torch_compile(
    dynamic_arg_dims={"input_ids": 0, "positions": -1, "intermediate_tensors": 0, "inputs_embeds": 0}
)
class GLAswaModel(nn.Module):
    """Embeddings, the hybrid stack and the final norm."""

    def __init__(
        self,
        *,
        vllm_config: VllmConfig,
        prefix: str = "",
        gate: GateLayout = "low_rank",
        spiking: bool = False,
    ) -> None:
        super().__init__()
        config = _config(vllm_config)
        self.config = config
        self.embeddings = VocabParallelEmbedding(
            config.vocab_size, config.hidden_size, prefix=f"{prefix}.embeddings"
        )
        self.layers = nn.ModuleList(
            GLAswaDecoderLayer(
                config, vllm_config, i, prefix=f"{prefix}.layers.{i}", gate=gate, spiking=spiking
            )
            for i in range(config.num_hidden_layers)
        )
        self.norm = RMSNorm(config.hidden_size, eps=config.norm_eps)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embeddings(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        hidden_states = inputs_embeds if inputs_embeds is not None else self.embeddings(input_ids)
        residual: torch.Tensor | None = None
        for layer in self.layers:
            hidden_states, residual = layer(positions, hidden_states, residual)
        hidden_states, _ = self.norm(hidden_states, residual)
        return hidden_states


class GLAswaForCausalLM(nn.Module, HasInnerState, IsHybrid, SupportsLoRA):
    """The vLLM entry class, registered under the published architecture name.

    LoRA (`--enable-lora`): vLLM wraps every linear layer, so an adapter in PEFT's format may
    adapt q/k/v/o and gate/up/down of both layer kinds (stacked as vLLM stacks the weights, by
    `packed_modules_mapping`) and the GLA gate's `gk_proj.0`/`gk_proj.1` (low-rank) or `gk_proj`
    (W8ASpike's full gate), by the checkpoint's names: what `engine.finetune` trains
    (`engine.spikingbrain.torch_model.lora_target_modules`). The embeddings and the head take no
    adapter (`embedding_modules` empty), so no extra vocabulary slots.
    """

    packed_modules_mapping = {
        "qkv_proj": ["q_proj", "k_proj", "v_proj"],
        "gate_up_proj": ["gate_proj", "up_proj"],
    }
    embedding_modules: ClassVar[dict[str, str]] = {}

    def __init__(self, *, vllm_config: VllmConfig, prefix: str = "") -> None:
        super().__init__()
        config = _config(vllm_config)
        self.config = config
        model_config = vllm_config.model_config
        # A local directory, or a hub id's snapshot in the local cache, says which gate layout to build.
        names = tensor_names(model_config.model, model_config.revision, vllm_config.load_config.download_dir)
        self._quantized = quantized_weight_names(names)
        self._gate = gate_layout(names)
        self._expected = expected_shapes(config, self._gate)
        # vLLM's quantization (compressed-tensors W8A8, W4A16) renames and reshapes the projections.
        self._quantized_serving = vllm_config.quant_config is not None
        # W8ASpike as published: spike-coded activations, int8 window keys/values (w8aspike.py).
        self.spiking = spike_coded(config, self._quantized)
        if self.spiking and vllm_config.parallel_config.tensor_parallel_size > 1:
            raise NotImplementedError(
                "W8ASpike's spike coding takes each projection's whole input vector, which tensor "
                "parallelism splits; serve it with --tensor-parallel-size 1 or w8aspike_activations='none'"
            )
        self.model = GLAswaModel(
            vllm_config=vllm_config, prefix=_join(prefix, "model"), gate=self._gate, spiking=self.spiking
        )
        self.lm_head = ParallelLMHead(
            config.vocab_size,
            config.hidden_size,
            quant_config=vllm_config.quant_config,
            prefix=_join(prefix, "lm_head"),
        )
        if config.tie_word_embeddings:
            self.lm_head = self.lm_head.tie_weights(self.model.embeddings)
        self.logits_processor = LogitsProcessor(config.vocab_size)

    def embed_input_ids(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.model.embed_input_ids(input_ids)

    def forward(
        self,
        input_ids: torch.Tensor | None,
        positions: torch.Tensor,
        intermediate_tensors: IntermediateTensors | None = None,
        inputs_embeds: torch.Tensor | None = None,
    ) -> torch.Tensor:
        return self.model(input_ids, positions, intermediate_tensors, inputs_embeds)

    def compute_logits(self, hidden_states: torch.Tensor) -> torch.Tensor | None:
        return self.logits_processor(self.lm_head, hidden_states)

    # -- what vLLM's hybrid cache manager asks before building the model ----------

    @classmethod
    def get_mamba_state_shape_from_config(cls, vllm_config: VllmConfig) -> tuple[tuple[int, int, int]]:
        return gla_state_shape(_config(vllm_config), vllm_config.parallel_config.tensor_parallel_size)

    @classmethod
    def get_mamba_state_dtype_from_config(cls, vllm_config: VllmConfig) -> tuple[torch.dtype]:
        return gla_state_dtype(vllm_config)

    @classmethod
    def get_mamba_state_copy_func(cls) -> tuple[Any, ...]:
        return MambaStateCopyFuncCalculator.linear_attention_state_copy_func()

    # -- weights -------------------------------------------------------------------

    def _check(self, name: str, tensor: torch.Tensor) -> None:
        """A clear error naming a tensor this model has no place for, before any loader sees it."""
        unread = name.endswith(".attn.gk_proj.weight") and self._gate == "low_rank"
        if unread or name.endswith(QUANT_SCALES_SUFFIX):
            raise UnexpectedTensorError(
                f"checkpoint tensor {name!r} is W8ASpike's layout, but the layout could not be read before "
                "loading (serve from a local directory, or a hub id already in the local cache)"
            )
        if self._quantized_serving:
            check_quantized_tensor(self._expected, name, tensor.shape)
        else:
            check_tensors(self._expected, {name: tensor.shape})

    def process_weights_after_loading(self) -> None:
        """vLLM's model-level hook, after every layer's weights are in their final form (oneDNN's
        packed int8 for W8A8): hand the load's freed buffers back to the OS (engine/allocator.py)."""
        if trim_after_load_enabled():
            return_freed_memory()

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> set[str]:
        """Load by the published names, stacking q/k/v and gate/up projections."""
        params = dict(self.named_parameters())
        loaded: set[str] = set()
        for name, tensor in with_weight_quantizers_applied(weights, self._quantized):
            self._check(name, tensor)
            if self.config.tie_word_embeddings and name == "lm_head.weight":
                continue
            for param_name, weight_name, shard in _STACKED:
                if f".{weight_name}." not in name:
                    continue
                target = name.replace(f".{weight_name}.", f".{param_name}.")
                param = params[target]
                param.weight_loader(param, tensor, shard)  # type: ignore[attr-defined]
                loaded.add(target)
                break
            else:
                param = params[name]
                getattr(param, "weight_loader", default_weight_loader)(param, tensor)
                loaded.add(name)
        return loaded


def _join(prefix: str, name: str) -> str:
    return f"{prefix}.{name}" if prefix else name
