"""SpikingBrain's GLA layer for vLLM's V1 engine, with its state in vLLM's state cache.

The layer is a `MambaBase`, like vLLM's own linear-attention layers: it
declares a fixed-size state per sequence (one key-dim x value-dim matrix per
key/value head) that vLLM's cache manager allocates, assigns to requests and
frees. The recurrence runs inside a custom op (`torch.ops.spikingbrain.gla_attention`)
so torch.compile treats it as opaque: it reads the per-request metadata of
the current step, which a traced graph cannot.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.library import Library
from vllm.config import VllmConfig
from vllm.distributed import get_tensor_model_parallel_rank, get_tensor_model_parallel_world_size
from vllm.forward_context import get_forward_context
from vllm.model_executor.layers.layernorm import RMSNorm
from vllm.model_executor.layers.linear import QKVParallelLinear, ReplicatedLinear, RowParallelLinear
from vllm.model_executor.layers.mamba.abstract import MambaBase
from vllm.utils.torch_utils import STR_DTYPE_TO_TORCH_DTYPE, direct_register_custom_op
from vllm.v1.attention.backends.linear_attn import LinearAttentionMetadata
from vllm.v1.attention.backends.registry import MambaAttentionBackendEnum

from engine.spikingbrain.config import GLAswaConfig
from engine.spikingbrain.gla import gla_chunked, gla_step
from engine.spikingbrain.gla_batch import (
    PrefillRow,
    StepTensors,
    decode_in_place,
    fla_chunk_gla,
    fla_prefill,
)
from engine.spikingbrain.w8aspike import spike_code
from engine.spikingbrain.weights import GateLayout

__all__ = ["GLAswaLinearAttention", "gla_state_dtype", "gla_state_shape"]


def gla_state_shape(config: GLAswaConfig, tp_size: int) -> tuple[tuple[int, int, int]]:
    """One (key dim x value dim) matrix per local key/value head.

    The published code repeats keys, values and gates over each GQA group
    before the recurrence, which makes the states of a group's heads equal;
    keeping one per key/value head is the same math in 1/group the memory.
    """
    kv_heads = max(1, config.num_key_value_heads // tp_size)
    return ((kv_heads, config.head_dim, config.head_dim),)


def gla_state_dtype(vllm_config: VllmConfig) -> tuple[torch.dtype]:
    """float32 unless the user asks otherwise: fla keeps GLA states in float32 too."""
    requested = vllm_config.cache_config.mamba_ssm_cache_dtype
    if requested in ("auto", "float32"):
        return (torch.float32,)
    return (STR_DTYPE_TO_TORCH_DTYPE[requested],)


class GLAswaLinearAttention(nn.Module, MambaBase):
    """Gated linear attention: ReLU feature maps, a per-key-dim forget gate (low-rank or full), g_norm."""

    def __init__(
        self,
        config: GLAswaConfig,
        vllm_config: VllmConfig,
        prefix: str,
        gate: GateLayout = "low_rank",
        spiking: bool = False,
    ) -> None:
        nn.Module.__init__(self)
        # W8ASpike: every projection (gate included) reads its input spike-coded (w8aspike.py).
        self.spiking = spiking
        tp_size = get_tensor_model_parallel_world_size()
        tp_rank = get_tensor_model_parallel_rank()
        self.prefix = prefix
        self.vllm_config = vllm_config
        self.tp_size = tp_size
        self.head_dim = config.head_dim
        self.num_heads = config.num_attention_heads // tp_size
        self.num_kv_heads = max(1, config.num_key_value_heads // tp_size)
        # With fewer kv heads than ranks, each kv head is replicated on several ranks.
        kv_per_rank = config.num_key_value_heads / tp_size
        self.kv_head_start = int(tp_rank * kv_per_rank)
        self.scale = self.head_dim**-0.5
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
        self.gate_logit_normalizer = float(config.gate_logit_normalizer)
        self.gk_proj = _gate_projection(config, gate, prefix)
        self.o_proj = RowParallelLinear(
            config.num_attention_heads * self.head_dim,
            config.hidden_size,
            bias=False,
            quant_config=quant_config,
            prefix=f"{prefix}.o_proj",
        )
        self.g_norm = RMSNorm(self.head_dim, eps=config.norm_eps)
        self._state_shape = gla_state_shape(config, tp_size)

        static_context = vllm_config.compilation_config.static_forward_context
        if prefix in static_context:
            raise ValueError(f"duplicate layer name: {prefix}")
        static_context[prefix] = self

    # -- MambaBase: what vLLM's cache manager needs to know -------------------

    @property
    def mamba_type(self) -> MambaAttentionBackendEnum:
        return MambaAttentionBackendEnum.LINEAR

    def get_state_shape(self) -> tuple[tuple[int, int, int]]:
        return self._state_shape

    def get_state_dtype(self) -> tuple[torch.dtype]:
        return gla_state_dtype(self.vllm_config)

    # -- forward ----------------------------------------------------------------

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        num_tokens = hidden_states.shape[0]
        if self.spiking:
            hidden_states = spike_code(hidden_states)
        qkv, _ = self.qkv_proj(hidden_states)
        q, k, v = qkv.split([self.q_size, self.kv_size, self.kv_size], dim=-1)
        if isinstance(self.gk_proj, nn.ModuleList):
            low_rank, _ = self.gk_proj[0](hidden_states)
            gk, _ = self.gk_proj[1](low_rank)
        else:
            gk, _ = self.gk_proj(hidden_states)
        kv_cols = slice(self.kv_head_start * self.head_dim, self.kv_head_start * self.head_dim + self.kv_size)
        g = F.logsigmoid(gk[:, kv_cols].float()) / self.gate_logit_normalizer

        core = torch.zeros(
            (num_tokens, self.num_heads, self.head_dim),
            dtype=hidden_states.dtype,
            device=hidden_states.device,
        )
        torch.ops.spikingbrain.gla_attention(F.relu(q), F.relu(k), v, g, core, self.prefix)
        core = self.g_norm(core.view(-1, self.head_dim)).view(num_tokens, self.q_size)
        out, _ = self.o_proj(spike_code(core) if self.spiking else core)
        return out

    def run_recurrence(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, output: torch.Tensor
    ) -> None:
        """Fill `output` [tokens, heads, head_dim] for this step's requests and update their states.

        A request continues from its cached state when it has tokens before
        this step (a decode, or a later chunk of a chunked prefill) and starts
        from zeros otherwise, so a freed slot's old state never leaks into a
        new sequence. One-token continuations are batched into one step.
        """
        metadata = _layer_metadata(self.prefix)
        if metadata is None:  # profiling and warm-up runs carry no requests
            return
        states = self.kv_cache[0]
        if q.device.type == "cuda" and self._run_on_gpu(q, k, v, g, output, states, metadata):
            return
        num_reqs = metadata.num_prefills + metadata.num_decodes
        starts = metadata.query_start_loc[: num_reqs + 1].tolist()
        seq_lens = metadata.seq_lens[:num_reqs].tolist()
        slots = metadata.state_indices_tensor[:num_reqs].tolist()
        heads, kv_heads, dim = self.num_heads, self.num_kv_heads, self.head_dim

        step_rows: list[int] = []
        step_slots: list[int] = []
        for i in range(num_reqs):
            start, end = starts[i], starts[i + 1]
            n = end - start
            if n == 0 or slots[i] < 0:
                continue
            continues = seq_lens[i] > n
            if n == 1 and continues:
                step_rows.append(start)
                step_slots.append(slots[i])
                continue
            o, state = gla_chunked(
                q[start:end].reshape(n, heads, dim).transpose(0, 1),
                k[start:end].reshape(n, kv_heads, dim).transpose(0, 1),
                v[start:end].reshape(n, kv_heads, dim).transpose(0, 1),
                g[start:end].reshape(n, kv_heads, dim).transpose(0, 1),
                states[slots[i]] if continues else None,
                self.scale,
            )
            states[slots[i]] = state.to(states.dtype)
            output[start:end] = o.transpose(0, 1).to(output.dtype)

        if step_rows:
            rows = torch.tensor(step_rows, device=q.device)
            idx = torch.tensor(step_slots, device=q.device)
            o, state = gla_step(
                q[rows].reshape(-1, heads, dim),
                k[rows].reshape(-1, kv_heads, dim),
                v[rows].reshape(-1, kv_heads, dim),
                g[rows].reshape(-1, kv_heads, dim),
                states[idx],
                self.scale,
            )
            states[idx] = state.to(states.dtype)
            output[rows] = o.to(output.dtype)

    def _run_on_gpu(
        self,
        q: torch.Tensor,
        k: torch.Tensor,
        v: torch.Tensor,
        g: torch.Tensor,
        output: torch.Tensor,
        states: torch.Tensor,
        metadata: LinearAttentionMetadata,
    ) -> bool:
        """The step on a GPU without host syncs where it can be (gla_batch.py); False: use the loop.

        vLLM puts the one-token (decode) requests first, so they are the first `num_decodes` rows.
        """
        heads, kv_heads, dim = self.num_heads, self.num_kv_heads, self.head_dim
        step = StepTensors(
            q.reshape(-1, heads, dim),
            k.reshape(-1, kv_heads, dim),
            v.reshape(-1, kv_heads, dim),
            g.reshape(-1, kv_heads, dim),
            output,
        )
        decodes = metadata.num_decodes
        kernel = fla_chunk_gla()
        if metadata.num_prefills and kernel is None:
            return False
        if decodes:
            decode_slots = metadata.state_indices_tensor[:decodes]
            decode_in_place(step, states, decode_slots, metadata.seq_lens, self.scale)
        if metadata.num_prefills and kernel is not None:
            num_reqs = decodes + metadata.num_prefills
            starts = metadata.query_start_loc[: num_reqs + 1].tolist()
            seq_lens = metadata.seq_lens[:num_reqs].tolist()
            slots = metadata.state_indices_tensor[:num_reqs].tolist()
            rows = [
                PrefillRow(starts[i], starts[i + 1], slots[i], seq_lens[i] > starts[i + 1] - starts[i])
                for i in range(decodes, num_reqs)
                if starts[i + 1] > starts[i] and slots[i] >= 0
            ]
            if rows:
                fla_prefill(step, states, rows, self.scale, kernel)
        return True


def _gate_projection(config: GLAswaConfig, gate: GateLayout, prefix: str) -> nn.ModuleList | ReplicatedLinear:
    """The forget gate's projection, low-rank (published bf16) or full-rank (W8ASpike).

    The gate is small (rank 16 published, or one hidden x kv-width matrix): replicate
    it and slice this rank's heads rather than shard it."""
    gate_width = config.num_key_value_heads * config.head_dim
    if gate == "low_rank":
        rank = config.gate_low_rank_dim
        return nn.ModuleList(
            [
                ReplicatedLinear(config.hidden_size, rank, bias=False, prefix=f"{prefix}.gk_proj.0"),
                ReplicatedLinear(rank, gate_width, bias=True, prefix=f"{prefix}.gk_proj.1"),
            ]
        )
    return ReplicatedLinear(config.hidden_size, gate_width, bias=True, prefix=f"{prefix}.gk_proj")


def _layer_metadata(prefix: str) -> LinearAttentionMetadata | None:
    metadata: Any = get_forward_context().attn_metadata
    if isinstance(metadata, dict):
        metadata = metadata.get(prefix)
    return metadata if isinstance(metadata, LinearAttentionMetadata) else None


def _gla_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, output: torch.Tensor, layer_name: str
) -> None:
    layer = get_forward_context().no_compile_layers[layer_name]
    layer.run_recurrence(q, k, v, g, output)


def _gla_attention_fake(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, g: torch.Tensor, output: torch.Tensor, layer_name: str
) -> None:
    return None


# Our own op namespace, so nothing we register can collide with vLLM's ops.
_LIBRARY = Library("spikingbrain", "FRAGMENT")
direct_register_custom_op(
    op_name="gla_attention",
    op_func=_gla_attention,
    mutates_args=["output"],
    fake_impl=_gla_attention_fake,
    target_lib=_LIBRARY,
)
