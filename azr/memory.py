"""How much memory the trainer will need, said before the first step, and settings that fit the machine.

Without this, a run that does not fit is found by the kernel's OOM killer in the middle of an update, minutes or
hours in. At start the trainer holds its weights and runtime; what it will add is known from the config and the
model (``estimate_need``):

* weight gradients: one value per trainable parameter (``param_dtype``);
* AdamW's two moments: two fp32 values per trainable parameter;
* the generation copy of the weights, when rollouts run in another dtype (under LoRA: with the adapters merged);
* a frozen reference model when the loss has a KL term;
* the activations autograd saves during one micro-batch's forward pass, measured on the real model
  (``probe_activations``: three short forwards with ``saved_tensors_hooks`` give a fixed part and a cost per
  prompt token and per response token), times the longest rows the config allows;
* the output head's gradients in backward, ``HEAD_BACKWARD`` bytes per vocabulary entry per response token;
* a margin for the backward's temporaries and the allocator's kept heap (``MARGIN``), calibrated against
  measured runs (tests/test_memory.py, benchmarks/README.md "Memory").

``plan_memory`` turns that into an activation budget per micro-batch: the learner cuts its micro-batches to fit
it (a row that alone does not fit is recomputed in backward), and the whole run uses gradient checkpointing when
even one row of the longest prompt would not fit without it. It says what it chose; when nothing fits it raises
one line (:class:`MemoryPlanError`) that says what to change. GPU runs are not planned here (their limit is the GPU's memory).

The plan at start sees only what the trainer holds before its first rollout. By the time of an update the process
also holds what the rollouts left (the allocator's heap, the buffers), so as each update begins the trainer trims
the heap and sets the budget again from the memory it can take then (``update_budget``): that is what makes
``--run.memory-limit-gib`` hold for the update, the stage where the process peaks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Sequence

from azr.heap import GIB


def size(n: float) -> str:
    """Bytes for a reader: GiB from 1 GiB up, else MiB."""
    return f"{n / GIB:.1f} GiB" if abs(n) >= GIB else f"{n / 2**20:.0f} MiB"


class MemoryPlanError(RuntimeError):
    """The run cannot fit in the memory available at any setting the plan may choose; the message says what to
    change."""


MARGIN = 0.25
"""Extra fraction on top of the summed parts: heap the allocator keeps between steps, and what else the backward
makes besides one layer's activations and gradients (`with_backward`)."""
RUNTIME = 0.5 * GIB
"""What the first backward and optimizer step add whatever the model: autograd's engine and threads, kernel
workspaces (~50-100 MiB measured on a 3-layer model; this also covers the allocator's first arenas)."""


@dataclass(frozen=True)
class ActivationCost:
    """Bytes autograd saves for backward in one forward pass: ``fixed + per_prompt_token·P + per_response_token·R``
    for a row of P prompt and R response tokens (per micro-batch: fixed once, the token terms per row)."""

    fixed: float
    per_prompt_token: float
    per_response_token: float

    def bytes(self, micro_batch: int, prompt_tokens: int, response_tokens: int) -> float:
        """``fixed + micro_batch·(per_prompt_token·prompt_tokens + per_response_token·response_tokens)``."""
        return self.fixed + micro_batch * (self.per_prompt_token * prompt_tokens
                                           + self.per_response_token * response_tokens)


@dataclass(frozen=True)
class MemoryNeed:
    """What the trainer adds to what it holds at start, in bytes, by part."""

    gradients: float
    optimizer: float
    generation_copy: float
    reference: float
    activations: float

    @property
    def total(self) -> float:
        """``(gradients + optimizer + generation_copy + reference + activations) · (1 + MARGIN) + RUNTIME``."""
        return (self.gradients + self.optimizer + self.generation_copy + self.reference
                + self.activations) * (1 + MARGIN) + RUNTIME

    def describe(self) -> str:
        parts = [("gradients", self.gradients), ("AdamW", self.optimizer), ("generation copy", self.generation_copy),
                 ("KL reference", self.reference), ("activations", self.activations)]
        return " + ".join(f"{name} {size(b)}" for name, b in parts if b) + \
            f", +{MARGIN:.0%} and {size(RUNTIME)} for the runtime"


def estimate_need(*, trainable: int, params: int, param_bytes: int, gen_copy_bytes: int, kl: bool,
                  activations: float) -> MemoryNeed:
    """The parts of :class:`MemoryNeed`: gradients ``trainable·param_bytes``; AdamW ``2·4·trainable`` (fp32 moments);
    generation copy ``params·gen_copy_bytes`` (0 when generation reads the trained weights); KL reference
    ``params·param_bytes``; activations as given (bytes of one micro-batch)."""
    return MemoryNeed(gradients=float(trainable * param_bytes), optimizer=float(2 * 4 * trainable),
                      generation_copy=float(params * gen_copy_bytes), reference=float(params * param_bytes if kl else 0),
                      activations=float(activations))


@dataclass(frozen=True)
class MemoryPlan:
    """How the update fits: at most ``activation_budget`` bytes of saved activations per micro-batch (the learner
    cuts micro-batches to it), with gradient checkpointing for the whole run or not. ``need`` is what the trainer
    adds at the largest micro-batch the config allows; ``available`` what the machine can give (bytes)."""

    gradient_checkpointing: bool
    activation_budget: float
    need: MemoryNeed
    available: float
    cost: ActivationCost
    """What a micro-batch saves at the plan's checkpointing setting."""
    rows_at_longest: int
    """Rows of the longest prompt and response that fit in one micro-batch (at most the configured micro-batch)."""

    def describe(self) -> str:
        ckpt = "; gradient checkpointing on (a row of the longest prompt would not fit without it)" \
            if self.gradient_checkpointing else ""
        rows = f"{self.rows_at_longest} row{'s' if self.rows_at_longest > 1 else ''}"
        return (f"memory: {size(self.available)} available; the update adds up to {size(self.need.total)} "
                f"({self.need.describe()}); a micro-batch holds {rows} of the longest prompt the config allows, "
                f"more of shorter ones{ckpt}")


def plan_memory(cost: ActivationCost, checkpointed_cost: ActivationCost, *, micro_batch: int,
                gradient_checkpointing: bool, prompt_tokens: int, response_tokens: int, available: float,
                **need_kwargs) -> MemoryPlan:
    """Fit the update into ``available`` bytes. The activation budget is ``available / (1 + MARGIN) - static``,
    static being gradients, AdamW, generation copy and reference (:func:`estimate_need` with no activations). If a
    row of ``prompt_tokens + response_tokens`` does not fit it, the run uses gradient checkpointing; if it does not
    fit checkpointed either, :class:`MemoryPlanError` says what to change in one line. ``need_kwargs`` are
    :func:`estimate_need`'s arguments other than ``activations``."""
    static = estimate_need(activations=0.0, **need_kwargs)
    budget = (available - static.total) / (1 + MARGIN)
    ckpt = gradient_checkpointing or cost.bytes(1, prompt_tokens, response_tokens) > budget
    used = checkpointed_cost if ckpt else cost
    one = used.bytes(1, prompt_tokens, response_tokens)
    if one > budget:
        need = estimate_need(activations=one, **need_kwargs)
        raise MemoryPlanError(
            f"the update needs ~{size(need.total)} more than the trainer holds even for one row with gradient "
            f"checkpointing ({need.describe()}), and {size(max(available, 0))} are available: free memory, train "
            f"LoRA adapters (--model.lora-rank 16), or cap tasks lower (--selfplay.max-task-tokens)")
    rows = max(r for r in range(1, micro_batch + 1) if used.bytes(r, prompt_tokens, response_tokens) <= budget)
    need = estimate_need(activations=used.bytes(rows, prompt_tokens, response_tokens), **need_kwargs)
    return MemoryPlan(ckpt, budget, need, available, used, rows)


def update_budget(plan: MemoryPlan, *, available: float, optimizer_held: float) -> float:
    """The activation budget for an update about to start, from memory as it is then: ``min(plan budget,
    (available - to_come·(1 + MARGIN) - RUNTIME) / (1 + MARGIN))``, where ``available`` is what the process may
    still take now and ``to_come = gradients + max(0, optimizer - optimizer_held)``: what the update will allocate
    besides activations (the generation copy and the reference are already held by then, AdamW's moments from
    the second update on). The plan at start cannot see what the process holds by the time of an update (the
    rollouts' heap, buffers); this can, so a memory limit holds for the update. May be negative: nothing fits,
    and the learner recomputes every row (the smallest it can do)."""
    to_come = plan.need.gradients + max(0.0, plan.need.optimizer - optimizer_held)
    now = (available - to_come * (1 + MARGIN) - RUNTIME) / (1 + MARGIN)
    return min(plan.activation_budget, now)


def optimizer_state_bytes(optimizer) -> int:
    """Bytes of the tensors a torch optimizer keeps between steps (AdamW: its two moments once it has stepped)."""
    import torch

    return sum(v.nbytes for st in optimizer.state.values() for v in st.values() if isinstance(v, torch.Tensor))


HEAD_BACKWARD = 16
"""Bytes per vocabulary entry per response token that the backward of the output head holds at once besides what
autograd saved: the fp32 gradients of the logits (from the gather and from logsumexp's softmax, and their sum) and
their cast to the head's dtype. Measured: one row's backward peaks 20-21 V bytes a response token above the state
before its forward, of which 4.5-5 V were saved (fp32 and bf16 autocast; `benchmarks/head_memory.py`). On the 0.5B
default (V = 151,936) that is 2.4 MB a response token, which the plan did not count before 2026-12-07: updates of
the `cpu` preset overran a 12 GiB plan by 0.4-1.7 GiB."""


def with_backward(full: ActivationCost, checkpointed: ActivationCost, layers: int, vocab: int
                  ) -> tuple[ActivationCost, ActivationCost]:
    """Both costs plus what backward holds at once on top of the saved activations: one layer's activations
    (recomputed, under checkpointing) and their gradients, ``2·(full - checkpointed)/layers`` per token, and the
    output head's gradients, ``HEAD_BACKWARD·vocab`` per response token."""
    def plus(c: ActivationCost) -> ActivationCost:
        return ActivationCost(c.fixed, c.per_prompt_token + 2 * (full.per_prompt_token - checkpointed.per_prompt_token)
                              / layers,
                              c.per_response_token + 2 * (full.per_response_token - checkpointed.per_response_token)
                              / layers + HEAD_BACKWARD * vocab)
    return plus(full), plus(checkpointed)


def available_bytes() -> float:
    """Memory this process can still take: the kernel's MemAvailable, or less where a cgroup limit is lower."""
    avail = float("inf")
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current") as f:
            used = int(f.read().strip())
        if limit != "max":
            avail = min(avail, int(limit) - used)
    except (OSError, ValueError):
        pass
    if avail == float("inf"):  # not Linux: assume the physical memory is free (os.sysconf where it exists)
        try:
            avail = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES")
        except (ValueError, OSError, AttributeError):
            pass
    return avail


def probe_activations(policy, gradient_checkpointing: bool, *, sizes: Sequence[tuple[int, int]] = ((64, 16), (128, 16),
                                                                                                    (64, 48))
                      ) -> ActivationCost:
    """Bytes autograd saves in the learner's forward over one row of (prompt, response) tokens, for each of
    `sizes`, solved for :class:`ActivationCost` (the first two differ in prompt tokens, the first and third in
    response tokens). Storage is counted once however many tensors view it, and the trained weights themselves
    (which backward also saves) are not counted: they are already held. No backward runs."""
    import torch

    was = policy.config.gradient_checkpointing
    policy.set_gradient_checkpointing(gradient_checkpointing)
    held = {p.untyped_storage().data_ptr() for p in policy.module.parameters()}
    vocab = policy.module.get_input_embeddings().num_embeddings
    measured = []
    try:
        for p_len, r_len in sizes:
            seen: dict[int, int] = {}

            def pack(t: torch.Tensor) -> torch.Tensor:
                try:
                    s = t.untyped_storage()
                    if s.data_ptr() not in held:
                        seen[s.data_ptr()] = s.nbytes()
                except (RuntimeError, NotImplementedError):  # tensors without storage (sparse, meta)
                    pass
                return t

            ids = [(7 + i) % vocab for i in range(p_len + r_len)]
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
                for mb in policy.iter_logprob_microbatches([ids[:p_len]], [ids[p_len:]], micro_batch=1, grad=True):
                    del mb  # the graph (and what it saved) goes with it: only the count is wanted
            measured.append(float(sum(seen.values())))
    finally:
        policy.set_gradient_checkpointing(was)
    (p0, r0), (p1, _), (_, r2) = sizes[:3]
    per_p = (measured[1] - measured[0]) / (p1 - p0)
    per_r = (measured[2] - measured[0]) / (r2 - r0)
    fixed = measured[0] - per_p * p0 - per_r * r0
    return ActivationCost(max(fixed, 0.0), max(per_p, 0.0), max(per_r, 0.0))


def learner_costs(policy) -> tuple[ActivationCost, ActivationCost]:
    """What one grad micro-batch of `policy` holds, without and with gradient checkpointing: the probed saved
    activations (`probe_activations`) plus what backward holds besides them (`with_backward`)."""
    layers = getattr(policy.module.config, "num_hidden_layers", 1)
    vocab = policy.module.get_output_embeddings().out_features
    return with_backward(probe_activations(policy, False), probe_activations(policy, True), layers, vocab)


def plan_for(policy, cfg, prompt_tokens: int, available: float | None = None, reference_copy: bool | None = None
             ) -> MemoryPlan:
    """:func:`plan_memory` for a loaded policy and a :class:`~azr.config.TrainConfig`; `prompt_tokens` is the
    longest prompt the run can build; `reference_copy`: whether the KL term loads a second copy of the model
    (default: whenever the loss has a KL term)."""
    import torch

    pc = policy.config
    trainable = policy.num_parameters(only_trainable=True)
    params = policy.num_parameters()
    param_bytes = getattr(torch, pc.param_dtype).itemsize
    gen_copy = policy.gen_copy_dtype.itemsize if policy.gen_copy_dtype is not None else 0
    response = max(cfg.rollout.max_new_tokens_propose, cfg.rollout.max_new_tokens_solve)
    return plan_memory(
        *learner_costs(policy),
        micro_batch=cfg.optim.micro_batch, gradient_checkpointing=cfg.model.gradient_checkpointing,
        prompt_tokens=prompt_tokens, response_tokens=response,
        available=available_bytes() if available is None else available,
        trainable=trainable, params=params, param_bytes=param_bytes, gen_copy_bytes=gen_copy,
        kl=cfg.optim.uses_kl if reference_copy is None else reference_copy)
