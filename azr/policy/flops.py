"""FLOP accounting for decoder-only transformers, and the matmul peak the benchmarks divide by.

Counts are the matmul FLOPs (2 per multiply-add) that a token costs; norms, RoPE, softmax and
other elementwise work are left out, as usual for "model FLOPs utilisation". Per token:

* **body**: every linear layer of the decoder (q/k/v/o and the MLP), ``2 × body_params``;
* **head**: the output projection, ``2 × hidden × vocab``, only at positions whose logits are
  computed (one per prefilled prompt, one per decoded token, every response token when scoring);
* **attention**: ``QKᵀ`` and ``PV`` over the context, ``4 × layers × heads × head_dim × ctx``.

Training: a backward pass costs twice its forward for full fine-tuning (gradients for inputs and
weights); with frozen base weights (LoRA) only the input gradients are needed, once the forward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class ModelFlops:
    """Per-token FLOP constants of one architecture."""

    body: float
    """2 × parameters of the decoder's linear layers (embeddings and output head excluded)."""
    head: float
    """2 × hidden × vocab: the output projection for one position."""
    attn_per_ctx: float
    """4 × layers × heads × head_dim: attention FLOPs per token per context position."""

    def forward(self, tokens: float, logit_tokens: float, ctx_token_pairs: float = 0.0) -> float:
        """FLOPs of a forward over `tokens` positions, `logit_tokens` of which compute logits, with
        `ctx_token_pairs` = Σ over tokens of the context each attends to."""
        return self.body * tokens + self.head * logit_tokens + self.attn_per_ctx * ctx_token_pairs


def model_flops(config: Any) -> ModelFlops:
    """:class:`ModelFlops` from a transformers Llama/Qwen2-style config."""
    h = config.hidden_size
    heads = config.num_attention_heads
    kv = getattr(config, "num_key_value_heads", None) or heads
    d = getattr(config, "head_dim", None) or h // heads
    inter = config.intermediate_size
    layers = config.num_hidden_layers
    per_layer = h * heads * d * 2 + h * kv * d * 2 + 3 * h * inter  # q+o, k+v, gate/up/down
    return ModelFlops(body=2.0 * layers * per_layer, head=2.0 * h * config.vocab_size,
                      attn_per_ctx=4.0 * layers * heads * d)


def prefill_ctx_pairs(prompt_len: int, offset: int = 0) -> float:
    """Σ context lengths over the positions ``offset … offset + prompt_len - 1`` (causal)."""
    return prompt_len * offset + prompt_len * (prompt_len + 1) / 2


def matmul_peak(dtype_name: str = "bfloat16", n: int = 2048, seconds: float = 3.0) -> float:
    """Best FLOP/s of a square matmul in `dtype_name` on the CPU over about `seconds`: the ceiling the
    benchmarks report fractions of (measured in the same run, as the machine is shared: the best of
    many products is the one that had the cores). The size doubles from 256 up to `n` while a product
    takes under 50 ms, so an emulated dtype (bf16 on a CPU without native bf16: ~1 GFLOP/s) is
    measured on a smaller product instead of taking minutes."""
    import torch

    dtype = getattr(torch, dtype_name)
    size = 256
    while True:
        a = torch.randn(size, size).to(dtype)  # (n, n)
        b = torch.randn(size, size).to(dtype)  # (n, n)
        a @ b  # picks kernels and allocates
        t0 = time.perf_counter()
        a @ b
        once = time.perf_counter() - t0
        if size >= n or once > 0.05:
            break
        size *= 2
    best, t_end = once, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2.0 * size**3 / best
