"""The transformers policy backend (CPU and CUDA): batched rollouts, per-token log-probs, LoRA.

:class:`HFPolicy` implements :class:`azr.policy.base.Policy` around any
``AutoModelForCausalLM`` + tokenizer pair.

**Rollouts** use our own decode loop instead of ``model.generate``. Both engines draw from a
private ``torch.Generator`` per call, so a seed reproduces a call without touching the global RNG
that the trainer also uses, and both feed the model the exact ``prompt_ids`` they return.

* ``engine = "slots"`` (default; :mod:`azr.policy.slots`): ``batch_size`` sequences live in slots of
  a preallocated KV cache; a finished row leaves at once and a waiting prompt takes its slot
  (continuous batching), and prompt prefixes shared by several prompts of the call (the stage's
  instructions, learnability's n copies of each task) are encoded once. Same greedy tokens as
  ``model.generate`` (tests/test_slots.py). Llama/Qwen2-style models only; others use:
* ``engine = "padded"`` (the previous engine): prompts sorted by length and chunked into
  left-padded ``batch_size`` batches; rows that emit EOS are dropped from the batch and its
  ``DynamicCache`` (compaction).

**Dtypes.** ``PolicyConfig.gen_dtype`` and ``train_autocast`` default to ``"auto"``: bf16 where the
CPU has native bf16 matmuls (AMX or AVX512-BF16; CUDA), fp32 elsewhere. Both kinds of host turn up
on the project's 2-core VM: on an AMX host a 2048³ bf16 matmul runs at ~917 GFLOP/s (SPEC §6),
on an AVX2-only EPYC at ~1 GFLOP/s (emulated) against ~120-230 GFLOP/s in fp32, so a fixed bf16
default made rollouts and the learner 10-100x slower there. When the generation dtype differs
from ``param_dtype`` the policy keeps a *copy* of the weights in it (autocast would re-cast every
weight at every decode step). Every ``generate`` call first re-copies the trained weights into
it: that costs 15 ms for SmolLM2 on CPU, next to seconds of decoding, and needs no cooperation
from the trainer. (Autograd version counters would be a cheaper "did it change" test, but the
fused AdamW kernel updates weights without bumping them, so they cannot be trusted.) Under LoRA
the copy holds the *merged* weights; it is rebuilt only when an adapter weight differs from a
snapshot taken at the last build (adapters are a few MB, so the exact compare is cheap).
Training keeps fp32 master weights and runs the forward under ``train_autocast``. Under LoRA with
autocast, the *frozen* linear layers (every adapted layer's base, and an untied output head) are stored in the
autocast dtype: autocast casts them to it for every matmul anyway, so no number changes
(tests/test_policy.py), but each forward no longer makes, and each grad forward no longer saves for backward,
a cast copy of them (~0.9 GiB on the 0.5B default), and the resident weights shrink by as much. The rest
(embeddings, norms) stays in ``param_dtype`` and is copied out of the checkpoint's memory map, so that the
map is released and RSS counts every weight from the start (the memory plan reads RSS; a mapped page counts
only once a forward touches it).

**Scoring layout.** Prompts are left-padded to the micro-batch's longest prompt P and responses
right-padded to its longest response T', so every response starts at column P. Position ids are
``cumsum(attention_mask) - 1``, which makes a row's numbers independent of the padding around it
(up to kernel rounding). The model is asked for the last T'+1 logits only (``logits_to_keep``),
so the (B, T, V) logits never include the prompt. Log-softmax is done in fp32 as
``logit[target] - logsumexp(logits)``, which saves one (B, T, V) tensor against ``log_softmax``.

**Shared prompt prefixes in the learner.** Self-play prompts of one role and task type share their
instructions and rules (~350 tokens of a ~750-token Qwen propose prompt). Scoring micro-batches are
formed per group of rows with equal first 128 prompt tokens; the common prefix of a micro-batch's
prompts runs once (batch 1, with grad) into a KV cache that is repeated for its rows, and the rows run
from there. Autograd sums the gradient flowing into the prefix over the rows, exactly what encoding it
in every row gives, so log-probs and gradients match the unshared layout up to kernel rounding
(tests/test_policy.py, mutation-checked). Off under gradient checkpointing and DDP, and below 32 shared
tokens (`learner_share_min`), where the second forward call costs more than it saves.

**Modes.** Forward passes with ``grad=True`` run in ``train()`` mode (needed for gradient
checkpointing), the rest in ``eval()``. Dropout is 0 in the supported models and in our LoRA
default, so both modes give the same numbers and the PPO ratio starts at exactly 1.
"""

from __future__ import annotations

import contextlib
import copy
import inspect
import json
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from azr.memory import ActivationCost
from azr.policy import slots
from azr.policy.base import (
    Generation,
    GenerationConfig,
    LogprobMicroBatch,
    LoraSettings,
    ModelInfo,
    PolicyConfig,
    TokenLogprobs,
)

_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    """Map a config dtype name (``"bfloat16"``...) to the torch dtype."""
    try:
        return _DTYPES[name]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}; use one of {sorted(_DTYPES)}") from None


def fast_bf16(device: torch.device) -> bool:
    """Whether bf16 matmuls are native (fast) on `device`: any CUDA GPU with bf16 support; on CPU,
    AMX or AVX512-BF16 (read from ``/proc/cpuinfo``; elsewhere, what oneDNN reports). Without them
    oneDNN emulates bf16 and a bf16 matmul is several times slower than the same one in fp32."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    return "amx_bf16" in flags or "avx512_bf16" in flags


def resolve_dtypes(config: PolicyConfig, device: torch.device) -> PolicyConfig:
    """`config` with ``"auto"`` dtypes replaced by what this device runs fastest (see PolicyConfig)."""
    if config.param_dtype == "auto":
        raise ValueError('param_dtype cannot be "auto": name the dtype of the trained weights')
    bf16 = fast_bf16(device) if "auto" in (config.gen_dtype, config.train_autocast) else False
    gen = ("bfloat16" if bf16 else "float32") if config.gen_dtype == "auto" else config.gen_dtype
    autocast = ("bfloat16" if bf16 else None) if config.train_autocast == "auto" else config.train_autocast
    return replace(config, gen_dtype=gen, train_autocast=autocast)


def resolve_device(spec: str) -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; anything else is passed to ``torch.device``."""
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(spec)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(f"device {spec!r} requested but torch sees no CUDA GPU (torch {torch.__version__})")
    return dev


def _set_checkpointing(model: torch.nn.Module, on: bool) -> None:
    """Gradient (activation) checkpointing on or off, non-reentrant, which works with frozen embeddings (LoRA)
    without input-grad hacks. transformers 5 renamed the methods (the old names warn); older ones have only those."""
    if hasattr(model, "activation_checkpointing_enable"):
        if on:
            model.activation_checkpointing_enable(activation_checkpointing_kwargs={"use_reentrant": False})
        else:
            model.activation_checkpointing_disable()
    elif on:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    else:
        model.gradient_checkpointing_disable()


def _apply_lora(model: torch.nn.Module, lora: LoraSettings, seed: int, adapter: Path | None = None) -> torch.nn.Module:
    """`model` wrapped with trainable LoRA adapters: new ones (A seeded, B zero), or those saved in `adapter`."""
    try:
        import peft  # imported here: only LoRA runs need it, and it is slow to import
    except ImportError:
        raise ImportError(
            "LoRA needs `peft` (a dependency of azr; this environment lacks it): pip install peft"
        ) from None
    with peft_quiet():
        return _wrap_lora(peft, model, lora, seed, adapter)


@contextlib.contextmanager
def peft_quiet() -> Iterator[None]:
    """peft reads transformers' deprecated `is_gradient_checkpointing` when it wraps or loads adapters: its
    FutureWarning says nothing to our users."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


def _wrap_lora(peft: Any, model: torch.nn.Module, lora: LoraSettings, seed: int, adapter: Path | None
               ) -> torch.nn.Module:
    if adapter is not None:
        loaded = peft.PeftModel.from_pretrained(model, str(adapter), is_trainable=True)
        got = loaded.peft_config["default"].r
        if got != lora.r:
            raise ValueError(f"the adapter in {adapter} has rank {got}, but this policy trains rank {lora.r}")
        return loaded
    targets: str | list[str] = (
        lora.target_modules if isinstance(lora.target_modules, str) else list(lora.target_modules)
    )
    cfg = peft.LoraConfig(
        r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets, task_type="CAUSAL_LM"
    )
    # Adapter A matrices are random: seed them without disturbing the caller's RNG stream.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return peft.get_peft_model(model, cfg)


def frozen_linears(model: torch.nn.Module) -> list[torch.nn.Linear]:
    """The linear layers whose weight is frozen and enters only matmuls: not trained, and not the input
    embedding's table under another name (a tied output head, which the embedding lookup also reads)."""
    emb = model.get_input_embeddings().weight
    return [m for m in model.modules() if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad
            and m.weight.data_ptr() != emb.data_ptr()]


def _store_frozen_linears(model: torch.nn.Module, dtype: torch.dtype) -> None:
    """Frozen linears in `dtype` (the autocast dtype: their matmuls already run in it), and every other weight
    and buffer copied into memory of its own (see the module docstring, "Dtypes")."""
    with torch.no_grad():
        linears = frozen_linears(model)
        for m in linears:
            m.to(dtype)
        cast = {id(t) for m in linears for t in m.parameters()}
        for t in [*model.parameters(), *model.buffers()]:
            if id(t) not in cast and t.device.type == "cpu":
                t.data = t.data.clone()


def encode_chat(tokenizer: Any, prompt: str, system_prompt: str | None = None) -> list[int]:
    """Token ids of a user message after the tokenizer's chat template (plain encoding without one).

    A function of the tokenizer alone, so that rollout engines that hold no transformers model (vLLM)
    encode prompts exactly as :meth:`HFPolicy.encode_prompt` does.
    """
    if getattr(tokenizer, "chat_template", None):
        messages = []
        if system_prompt is not None:
            messages.append({"role": "system", "content": system_prompt})
        messages.append({"role": "user", "content": prompt})
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        # The template already writes every special token it wants (BOS included).
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


def prefix_ids(tokenizer: Any, prefix: str) -> list[int]:
    """Token ids of a response prefix, encoded on its own (no special tokens) and appended to the
    templated prompt: what the model would have read had it written the prefix itself, up to tokenisation
    at the seam."""
    return list(tokenizer(prefix, add_special_tokens=False)["input_ids"]) if prefix else []


def _forward_kwargs(model: torch.nn.Module) -> tuple[str, bool]:
    """(name of the KV-cache argument, whether ``logits_to_keep`` is accepted) for this model.

    transformers 5.x renamed ``past_key_values`` to ``cache`` (the old name warns); PEFT wrappers
    take ``**kwargs``, so look at the wrapped model's signature.
    """
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    cache_arg = "cache" if "cache" in params else "past_key_values"
    return cache_arg, "logits_to_keep" in params


class HFPolicy:
    """A :class:`~azr.policy.base.Policy` backed by a transformers causal LM.

    Build it with :func:`azr.policy.load_policy` (which resolves ``"smollm2"``, ``"tiny"``, hub ids
    and paths); the constructor takes an already loaded model and tokenizer.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        config: PolicyConfig | None = None,
        info: ModelInfo | None = None,
        adapter: Path | None = None,
    ) -> None:
        """`adapter`: a saved LoRA adapter directory to continue training (needs ``config.lora``)."""
        self.info = info
        self.tokenizer = tokenizer
        self._device = resolve_device((config or PolicyConfig()).device)
        self.config = resolve_dtypes(config or PolicyConfig(), self._device)
        self._param_dtype = torch_dtype(self.config.param_dtype)
        self._gen_dtype = torch_dtype(self.config.gen_dtype)
        self._autocast = torch_dtype(self.config.train_autocast) if self.config.train_autocast else None

        model = model.to(device=self._device, dtype=self._param_dtype)
        if self.config.gradient_checkpointing:
            # Non-reentrant checkpointing works with frozen embeddings (LoRA) without input-grad hacks.
            _set_checkpointing(model, True)
        if self.config.lora is not None:
            model = _apply_lora(model, self.config.lora, self.config.seed, adapter)
            if self._autocast is not None:
                _store_frozen_linears(model, self._autocast)
        elif adapter is not None:
            raise ValueError("an adapter to continue training needs a LoRA policy (config.lora)")
        model.eval()
        self.model = model
        self._cache_arg, self._has_logits_to_keep = _forward_kwargs(model)

        self._eos_ids = self._collect_eos_ids()
        self._pad_id = self._pick_pad_id()

        # Lazily built generation copy (see module docstring); under LoRA, the adapter weights it
        # was merged from.
        self._gen_model: torch.nn.Module | None = None
        self._gen_lora_snapshot: list[torch.Tensor] | None = None
        # The module grad-enabled scoring runs through: a DDP wrapper of self.model under data
        # parallelism (so backward all-reduces the gradients), else the model itself.
        self._train_forward: torch.nn.Module | None = None
        # Rollout engine: "slots" (continuous batching + shared-prefix prefill, azr.policy.slots) for the
        # architectures it supports, else "padded" (one left-padded batch at a time, below). Benchmarks and
        # tests flip these to compare the two on the same weights.
        self.engine: str = "slots"
        self.share_prefixes: bool = True
        # Learner: a scoring micro-batch whose prompts share at least this many leading tokens encodes them once
        # (`_score`); 0 turns it off. Same numbers as encoding them per row, up to kernel rounding.
        self.learner_share_min: int = 32
        self.learner_shared_tokens: int = 0  # prompt tokens the learner did not encode again, since construction
        # Learner: the most bytes one grad micro-batch's saved activations may take (None: no limit). The trainer's
        # memory plan sets it (azr/memory.py); micro-batches are cut to fit, and a row that alone does not fit is
        # scored with gradient checkpointing.
        self.learner_budget: LearnerBudget | None = None
        self.last_generate_stats = slots.SlotStats()

    # ------------------------------------------------------------------ basic accessors

    @property
    def device(self) -> torch.device:
        return self._device

    @property
    def module(self) -> torch.nn.Module:
        return self.model

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return (p for p in self.model.parameters() if p.requires_grad)

    def num_parameters(self, only_trainable: bool = False) -> int:
        # nn.Module.parameters() already yields a tied weight once.
        return sum(p.numel() for p in self.model.parameters() if p.requires_grad or not only_trainable)

    @property
    def eos_token_ids(self) -> list[int]:
        return sorted(self._eos_ids)

    def _collect_eos_ids(self) -> set[int]:
        ids: set[int] = set()
        if self.tokenizer.eos_token_id is not None:
            ids.add(int(self.tokenizer.eos_token_id))
        gen_cfg = getattr(self.model, "generation_config", None)
        eos = getattr(gen_cfg, "eos_token_id", None)
        if isinstance(eos, int):
            ids.add(eos)
        elif isinstance(eos, (list, tuple)):
            ids.update(int(e) for e in eos)
        if not ids:
            raise ValueError("the tokenizer and generation config define no EOS token; generation could never stop")
        return ids

    def _pick_pad_id(self) -> int:
        # Padding is always masked out, so any valid id works; prefer the declared pad token.
        pad = self.tokenizer.pad_token_id
        return int(pad) if pad is not None else min(self._eos_ids)

    # ------------------------------------------------------------------ prompts

    def encode_prompt(self, prompt: str) -> list[int]:
        return encode_chat(self.tokenizer, prompt, self.config.system_prompt)

    def decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True)

    # ------------------------------------------------------------------ generation weights

    @property
    def gen_copy_dtype(self) -> torch.dtype | None:
        """The dtype of the separate copy of the weights that rollouts read (under LoRA: with the adapters merged),
        or None when generation reads the trained weights themselves (the same dtype)."""
        return self._gen_dtype if self._gen_dtype != self._param_dtype else None

    def _generation_model(self) -> torch.nn.Module:
        if self.gen_copy_dtype is None:
            return self.model
        if self.config.lora is not None:
            trainable = list(self.parameters())
            stale = self._gen_lora_snapshot is None or any(
                not torch.equal(p, snap) for p, snap in zip(trainable, self._gen_lora_snapshot)
            )
            if self._gen_model is None or stale:
                self._gen_model = self._build_gen_copy()
                self._gen_lora_snapshot = [p.detach().clone() for p in trainable]
        elif self._gen_model is None:
            self._gen_model = self._build_gen_copy()
        else:
            with torch.no_grad():
                for dst, src in zip(self._gen_model.parameters(), self.model.parameters()):
                    dst.copy_(src)
        return self._gen_model

    def _build_gen_copy(self) -> torch.nn.Module:
        src = self.model
        if self.config.lora is not None:
            # Merging the adapters makes rollouts as cheap as the base model; the copy is cheap
            # next to a rollout batch and only rebuilt after an update.
            gen = copy.deepcopy(src).merge_and_unload()
        else:
            gen = copy.deepcopy(src)
        # eval() also makes gradient checkpointing (a train-mode feature) a no-op in the copy.
        gen = gen.to(dtype=self._gen_dtype).eval()
        for p in gen.parameters():
            p.requires_grad_(False)
            p.grad = None  # deepcopy copies .grad; the copy never trains
        return gen

    def _merged_copy(self) -> torch.nn.Module:
        """A copy of the LoRA model with its adapters merged in, every weight in ``param_dtype``: the frozen linears
        go back up to it before the merge, so the adapters' update is not rounded to their storage dtype."""
        model = copy.deepcopy(self.model)
        for m in frozen_linears(model):
            m.to(self._param_dtype)
        return model.merge_and_unload()

    def set_gradient_checkpointing(self, on: bool) -> None:
        """Turn activation recomputation in the update on or off after loading (the trainer's memory plan does,
        azr/memory.py); ``config.gradient_checkpointing`` follows."""
        if on == self.config.gradient_checkpointing:
            return
        _set_checkpointing(self.model, on)
        self.config = replace(self.config, gradient_checkpointing=on)

    def set_train_forward(self, wrapper: torch.nn.Module | None) -> None:
        """Run grad-enabled scoring forwards through `wrapper` (e.g. ``DistributedDataParallel(policy.module)``)
        instead of the model; None restores the model. No-grad scoring and generation are unaffected."""
        self._train_forward = wrapper

    def export_weights(self, dtype: str | None = None) -> dict[str, torch.Tensor]:
        """The full model's weights by Hugging Face name, as a separate rollout engine (a Ray actor, vLLM)
        loads them: LoRA adapters merged in, detached, cast to `dtype` (default: the generation dtype),
        on this policy's device. Tied weights appear under both names, as in ``state_dict()``. Where no cast
        is needed the tensors share storage with the live weights: copy them before the next update if kept."""
        target = torch_dtype(dtype or self.config.gen_dtype)
        with torch.no_grad():
            model = self._merged_copy() if self.config.lora is not None else self.model
            return {name: t.detach().to(dtype=target) if t.is_floating_point() else t.detach().clone()
                    for name, t in model.state_dict().items()}

    def sync_generation_weights(self) -> None:
        """Drop the generation copy so the next ``generate`` rebuilds it from scratch. Never needed
        for optimizer updates (those are picked up automatically); only after structural changes,
        e.g. swapping a parameter object or a buffer."""
        self._gen_model = None
        self._gen_lora_snapshot = None

    # ------------------------------------------------------------------ generation

    def generate(self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None = None) -> list[Generation]:
        prompts = list(prompts)
        if not prompts:
            return []
        prefix = prefix_ids(self.tokenizer, cfg.response_prefix)
        encoded = [self.encode_prompt(p) + prefix for p in prompts]
        if any(len(e) == 0 for e in encoded):
            raise ValueError("a prompt encoded to zero tokens; the model needs at least one token to condition on")
        gen_model = self._generation_model()
        rng = torch.Generator(device=self._device)
        # seed=None follows torch's global RNG, so torch.manual_seed in the trainer still governs runs.
        rng.manual_seed(seed if seed is not None else int(torch.randint(0, 2**62, (1,)).item()))

        self.last_generate_stats = slots.SlotStats()
        if self.engine == "slots" and slots.supports(gen_model):
            with torch.inference_mode():
                outs = slots.generate_slots(
                    gen_model, encoded, max_new_tokens=cfg.max_new_tokens, slots=cfg.batch_size,
                    eos_ids=self._eos_ids, sample=lambda logits: _sample(logits, cfg, rng), cache_arg=self._cache_arg,
                    has_logits_to_keep=self._has_logits_to_keep, dtype=next(gen_model.parameters()).dtype,
                    device=self._device, share_prefixes=self.share_prefixes, stats=self.last_generate_stats,
                    stop=stop_check(self.decode, cfg.stop),
                )
        else:
            outs = [None] * len(prompts)
            order = sorted(range(len(prompts)), key=lambda i: -len(encoded[i]))
            for start in range(0, len(order), cfg.batch_size):
                chunk = order[start : start + cfg.batch_size]
                for i, o in zip(chunk, self._decode_batch(gen_model, [encoded[i] for i in chunk], cfg, rng)):
                    outs[i] = o
        return [
            Generation(prompt=p, prompt_ids=ids, response_ids=resp, response=cfg.response_prefix + self.decode(resp),
                       finished=finished)
            for p, ids, (resp, finished) in zip(prompts, encoded, outs)
        ]

    def _left_pad(self, seqs: Sequence[list[int]]) -> tuple[torch.Tensor, torch.Tensor]:
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), self._pad_id, dtype=torch.long)  # (B, P)
        attn = torch.zeros((len(seqs), width), dtype=torch.long)  # (B, P)
        for i, s in enumerate(seqs):
            if s:
                ids[i, width - len(s) :] = torch.tensor(s, dtype=torch.long)
                attn[i, width - len(s) :] = 1
        return ids.to(self._device), attn.to(self._device)

    @torch.inference_mode()
    def _decode_batch(
        self, model: torch.nn.Module, prompts: list[list[int]], cfg: GenerationConfig, rng: torch.Generator
    ) -> list[tuple[list[int], bool]]:
        from transformers import DynamicCache

        ids, attn = self._left_pad(prompts)  # (B, P)
        pos = (attn.cumsum(-1) - 1).clamp(min=0)  # (B, P) left padding must not shift positions
        cache = DynamicCache(config=model.config)
        eos = torch.tensor(sorted(self._eos_ids), device=self._device)
        can_compact = hasattr(cache, "batch_select_indices")

        kwargs: dict[str, Any] = {self._cache_arg: cache, "use_cache": True}
        if self._has_logits_to_keep:
            kwargs["logits_to_keep"] = 1  # the prefill would otherwise materialise (B, P, V) logits
        logits = model(input_ids=ids, attention_mask=attn, position_ids=pos, **kwargs).logits[:, -1]  # (B, V)

        n = len(prompts)
        alive = torch.arange(n, device=self._device)  # (b,) original row of each live row
        next_pos = pos[:, -1] + 1  # (b,)
        out: list[list[int]] = [[] for _ in range(n)]
        finished = [False] * n
        stop = stop_check(self.decode, cfg.stop)
        for step in range(cfg.max_new_tokens):
            tok = _sample(logits.float(), cfg, rng)  # (b,)
            is_eos = torch.isin(tok, eos).tolist()  # (b,)
            for row, t, e in zip(alive.tolist(), tok.tolist(), is_eos):
                if not finished[row]:  # without compaction a finished row keeps decoding; its tokens are dropped
                    out[row].append(t)
                    finished[row] = e or (stop is not None and stop(out[row]))
            done = torch.tensor([finished[row] for row in alive.tolist()], device=self._device)  # (b,)
            if step == cfg.max_new_tokens - 1 or bool(done.all()):
                break
            if can_compact and bool(done.any()):
                keep = (~done).nonzero().squeeze(1)  # (b',)
                alive, tok, attn, next_pos = alive[keep], tok[keep], attn[keep], next_pos[keep]
                cache.batch_select_indices(keep)
            attn = torch.cat([attn, attn.new_ones(attn.shape[0], 1)], dim=1)  # (b, P + step + 1)
            kwargs = {self._cache_arg: cache, "use_cache": True}
            logits = model(
                input_ids=tok[:, None], attention_mask=attn, position_ids=next_pos[:, None], **kwargs
            ).logits[:, -1]  # (b, V)
            next_pos = next_pos + 1
        return list(zip(out, finished))

    # ------------------------------------------------------------------ scoring

    def sequence_logprobs(
        self,
        prompt_ids: Sequence[list[int]],
        response_ids: Sequence[list[int]],
        *,
        grad: bool,
        micro_batch: int,
        temperature: float = 1.0,
        with_entropy: bool = False,
    ) -> TokenLogprobs:
        parts = list(
            self.iter_logprob_microbatches(
                prompt_ids,
                response_ids,
                micro_batch=micro_batch,
                grad=grad,
                temperature=temperature,
                with_entropy=with_entropy,
            )
        )
        index = torch.cat([p.index for p in parts])  # (B,) row of the full batch for each stacked row
        inverse = torch.empty_like(index)
        inverse[index] = torch.arange(index.numel(), device=index.device)
        # Indexing with `inverse` is differentiable, so grad=True results keep their graph.
        logprobs = torch.cat([p.logprobs for p in parts])[inverse]  # (B, T)
        mask = torch.cat([p.mask for p in parts])[inverse]  # (B, T)
        entropy = torch.cat([p.entropy for p in parts])[inverse] if with_entropy else None  # (B, T)
        return TokenLogprobs(logprobs=logprobs, mask=mask, entropy=entropy)

    def iter_logprob_microbatches(
        self,
        prompt_ids: Sequence[list[int]],
        response_ids: Sequence[list[int]],
        *,
        micro_batch: int,
        grad: bool = True,
        temperature: float = 1.0,
        with_entropy: bool = False,
    ) -> Iterator[LogprobMicroBatch]:
        if len(prompt_ids) != len(response_ids):
            raise ValueError(f"{len(prompt_ids)} prompts but {len(response_ids)} responses")
        if not prompt_ids:
            raise ValueError("empty batch")
        if micro_batch < 1:
            raise ValueError(f"micro_batch must be >= 1, got {micro_batch}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0 for scoring, got {temperature}")
        for i, (p, r) in enumerate(zip(prompt_ids, response_ids)):
            if not p or not r:
                raise ValueError(f"row {i}: prompt and response must each have at least one token")
        t_full = max(len(r) for r in response_ids)
        share_min = self.learner_share_min if self._can_share(grad) else 0
        budget = self.learner_budget if grad else None
        for rows in _learner_microbatches(prompt_ids, response_ids, micro_batch, share_min, budget):
            prompts = [list(prompt_ids[i]) for i in rows]
            # One row over the budget: recompute its activations in backward rather than hold them.
            recompute = budget is not None and not budget.fits(prompt_ids, response_ids, rows)
            was = self.config.gradient_checkpointing
            self.set_gradient_checkpointing(was or recompute)
            try:
                logprobs, mask, entropy = self._score(
                    prompts,
                    [list(response_ids[i]) for i in rows],
                    grad=grad,
                    temperature=temperature,
                    with_entropy=with_entropy,
                    shared=self._shared_prefix_len(prompts, grad),
                )
            finally:  # the checkpointed forward already holds its recompute function: backward needs no flag
                self.set_gradient_checkpointing(was)
            pad = t_full - logprobs.shape[1]
            yield LogprobMicroBatch(
                index=torch.tensor(rows, dtype=torch.long, device=self._device),
                logprobs=F.pad(logprobs, (0, pad)),  # (G, T)
                mask=F.pad(mask, (0, pad)),  # (G, T)
                entropy=F.pad(entropy, (0, pad)) if entropy is not None else None,  # (G, T)
            )

    def _score(
        self,
        prompts: list[list[int]],
        responses: list[list[int]],
        *,
        grad: bool,
        temperature: float,
        with_entropy: bool,
        shared: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Log-probs of one micro-batch. ``shared`` > 0: the first ``shared`` prompt tokens, identical in every
        row, run once (batch 1) and their KV cache is repeated for the rows (see `_shared_prefix_len`)."""
        g = len(prompts)
        self.learner_shared_tokens += shared * (g - 1)
        prefix, prompts = prompts[0][:shared], [p[shared:] for p in prompts]
        p_len = max(len(p) for p in prompts)
        t_len = max(len(r) for r in responses)
        ids = torch.full((g, p_len + t_len), self._pad_id, dtype=torch.long)  # (G, P + T')
        attn = torch.zeros((g, p_len + t_len), dtype=torch.long)  # (G, P + T')
        for i, (p, r) in enumerate(zip(prompts, responses)):
            ids[i, p_len - len(p) : p_len] = torch.tensor(p, dtype=torch.long)
            ids[i, p_len : p_len + len(r)] = torch.tensor(r, dtype=torch.long)
            attn[i, p_len - len(p) : p_len + len(r)] = 1
        ids, attn = ids.to(self._device), attn.to(self._device)
        pos = (attn.cumsum(-1) - 1).clamp(min=0) + shared  # (G, P + T')
        targets = ids[:, p_len:]  # (G, T')
        mask = attn[:, p_len:].float()  # (G, T')

        self.model.train(grad)
        forward = self._train_forward if grad and self._train_forward is not None else self.model
        try:
            grad_ctx = contextlib.nullcontext() if grad else torch.no_grad()
            autocast = (
                torch.autocast(device_type=self._device.type, dtype=self._autocast)
                if self._autocast is not None
                else contextlib.nullcontext()
            )
            with grad_ctx:
                kwargs: dict[str, Any] = {"use_cache": False}
                if self._has_logits_to_keep:
                    kwargs["logits_to_keep"] = t_len + 1
                with autocast:
                    if shared:
                        # Autograd sees the prefix's keys/values used by every row, so the gradient through
                        # the prefix is the sum over rows: the same as encoding it in each row.
                        from transformers import DynamicCache

                        cache = DynamicCache(config=self.model.config)
                        prefix_ids = torch.tensor([prefix], dtype=torch.long, device=self._device)  # (1, S)
                        forward(input_ids=prefix_ids, use_cache=True, **{self._cache_arg: cache}, logits_to_keep=1)
                        cache.batch_repeat_interleave(g)
                        attn_all = torch.cat([attn.new_ones(g, shared), attn], dim=1)  # (G, S + P + T')
                        kwargs.update(use_cache=True, **{self._cache_arg: cache})
                        out = forward(input_ids=ids, attention_mask=attn_all, position_ids=pos, **kwargs)
                    else:
                        out = forward(input_ids=ids, attention_mask=attn, position_ids=pos, **kwargs)
                # Logit at column c predicts token c+1: response token j (column P+j) is scored by
                # column P+j-1, i.e. the kept window minus its last column.
                if self._has_logits_to_keep:
                    logits = out.logits[:, :-1]  # (G, T', V)
                else:
                    logits = out.logits[:, p_len - 1 : p_len + t_len - 1]  # (G, T', V)
                logits = logits.float()  # log-softmax in fp32 even under bf16 autocast
                if temperature != 1.0:
                    logits = logits / temperature
                lse = logits.logsumexp(-1)  # (G, T')
                token_logits = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1)  # (G, T')
                logprobs = (token_logits - lse) * mask  # (G, T')
                entropy = None
                if with_entropy:
                    # H = lse - sum(p * logits); differentiable so an entropy bonus can train. Under
                    # grad this keeps two more (G, T', V) fp32 tensors alive until backward.
                    probs = (logits - lse.unsqueeze(-1)).exp()  # (G, T', V)
                    entropy = (lse - (probs * logits).sum(-1)) * mask  # (G, T')
        finally:
            self.model.eval()
        return logprobs, mask, entropy

    def _can_share(self, grad: bool) -> bool:
        """Whether scoring may encode shared prompt prefixes once (see `_shared_prefix_len`)."""
        if self.learner_share_min <= 0 or not self._has_logits_to_keep:
            return False
        return not (grad and (self.config.gradient_checkpointing or self._train_forward is not None))

    def _shared_prefix_len(self, prompts: list[list[int]], grad: bool) -> int:
        """Prompt tokens the rows of a scoring micro-batch share and the learner may encode once: their
        common prefix, minus one token so every row keeps its last prompt token (whose logit scores the
        first response token). 0 (no sharing) below `learner_share_min` tokens, for a single row, and where
        the KV-cache path is not the training path: gradient checkpointing (which turns the cache off) and
        a DDP wrapper (which expects one forward per backward)."""
        if len(prompts) < 2 or not self._can_share(grad):
            return 0
        n = min(len(p) for p in prompts) - 1
        first = prompts[0]
        for p in prompts[1:]:
            k = 0
            while k < n and p[k] == first[k]:
                k += 1
            n = k
        return n if n >= self.learner_share_min else 0

    # ------------------------------------------------------------------ persistence

    def save(self, directory: str | Path, merged: bool = False) -> Path:
        """Write the policy in Hugging Face format, with its tokenizer and chat template.

        Full fine-tuning writes the weights (``param_dtype``). Under LoRA only the adapter is written, to
        ``<dir>/adapter`` (a few MB where the full model is GBs): ``load_policy(dir)`` loads the base model named
        in ``azr_policy.json`` and applies it (merged, or trainable again for a LoRA policy). ``merged=True``
        also writes the full model with the adapters merged in, for tools that know nothing of adapters.
        ``azr_policy.json`` records where the weights came from and the policy config.
        """
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        lora = self.config.lora is not None
        if lora:
            self.model.save_pretrained(out / "adapter")
        if merged or not lora:
            model = self._merged_copy() if lora else self.model
            model.save_pretrained(out)
        self.tokenizer.save_pretrained(out)
        meta = {
            "policy_config": asdict(self.config),
            "source": asdict(self.info) if self.info is not None else None,
            "lora_merged": lora and merged,
            "lora_adapter": "adapter" if lora else None,
            "base_model": self.info.name if lora and self.info is not None else None,
        }
        (out / "azr_policy.json").write_text(json.dumps(meta, indent=2, default=str))
        return out


class AdaptersOff:
    """A LoRA policy's base model as a :class:`~azr.policy.base.Scorer`: each call scores with the adapters
    switched off (peft's ``disable_adapter``). As the KL reference of a run whose adapters started fresh (B = 0,
    so the base *is* the starting model) it needs no second copy of the weights."""

    def __init__(self, policy: HFPolicy):
        if policy.config.lora is None:
            raise ValueError("only a LoRA policy has adapters to switch off")
        self.policy = policy

    def sequence_logprobs(self, prompt_ids: Sequence[list[int]], response_ids: Sequence[list[int]], *, grad: bool,
                          micro_batch: int, temperature: float = 1.0, with_entropy: bool = False) -> TokenLogprobs:
        if grad:
            raise ValueError("the reference is frozen: score it with grad=False")
        with self.policy.model.disable_adapter():
            return self.policy.sequence_logprobs(prompt_ids, response_ids, grad=False, micro_batch=micro_batch,
                                                 temperature=temperature, with_entropy=with_entropy)


_GROUP_TOKENS = 128


@dataclass(frozen=True)
class LearnerBudget:
    """The most bytes one grad micro-batch may save for backward, and what a micro-batch saves (measured by
    `azr.memory.probe_activations` on this model). A micro-batch is padded to its longest prompt and response."""

    max_bytes: float
    cost: ActivationCost

    def bytes(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], rows: Sequence[int]
              ) -> float:
        return self.cost.bytes(len(rows), max(len(prompt_ids[i]) for i in rows),
                               max(len(response_ids[i]) for i in rows))

    def fits(self, prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], rows: Sequence[int]
             ) -> bool:
        return self.bytes(prompt_ids, response_ids, rows) <= self.max_bytes


def _learner_microbatches(
    prompt_ids: Sequence[Sequence[int]], response_ids: Sequence[Sequence[int]], micro_batch: int, share_min: int,
    budget: LearnerBudget | None = None,
) -> Iterator[list[int]]:
    """Row indices of each scoring micro-batch. Without prefix sharing, longest first (least padding). With it,
    rows are grouped by their first `_GROUP_TOKENS` prompt tokens (which tell role and task type apart: the
    chat template, then the stage's instructions) and each group is chunked on its own, longest first, so a
    micro-batch never mixes groups and `_score` can encode its rows' instructions once. That costs at most one
    short micro-batch per group. With a `budget`, a micro-batch also ends before the row that would take it over
    (a row alone always forms one). The loss is a token mean over the whole batch, so the cut changes no gradient."""
    def length(i: int) -> int:
        return len(prompt_ids[i]) + len(response_ids[i])

    if share_min <= 0:
        groups = [list(range(len(prompt_ids)))]
    else:
        by_key: dict[tuple[int, ...], list[int]] = {}
        for i in range(len(prompt_ids)):
            by_key.setdefault(tuple(prompt_ids[i][:_GROUP_TOKENS]), []).append(i)
        groups = sorted(by_key.values(), key=lambda rows: -max(length(i) for i in rows))
    for rows in groups:
        order = sorted(rows, key=lambda i: -length(i))
        chunk: list[int] = []
        for i in order:
            if chunk and (len(chunk) == micro_batch or
                          (budget is not None and not budget.fits(prompt_ids, response_ids, [*chunk, i]))):
                yield chunk
                chunk = []
            chunk.append(i)
        if chunk:
            yield chunk


def stop_check(decode: Callable[[Sequence[int]], str], stops: Sequence[str]) -> Callable[[list[int]], bool] | None:
    """A test of whether response ids have just completed one of the `stops` strings (None when there are none).

    It decodes only the last ``max(len(s)) + 4`` tokens: asked after every token, it would have fired
    earlier for a match that ends before the newest token, and a stop string of c characters spans at
    most c tokens (every token but a special one decodes to at least one character; the 4 spare tokens
    cover specials and a multi-byte character split across tokens at the window's start)."""
    if not stops:
        return None
    window = max(len(s) for s in stops) + 4

    def hit(ids: list[int]) -> bool:
        tail = decode(ids[-window:])
        return any(s in tail for s in stops)

    return hit


def _sample(logits: torch.Tensor, cfg: GenerationConfig, rng: torch.Generator) -> torch.Tensor:
    """Next token per row from (b, V) fp32 logits: argmax, or temperature + nucleus sampling."""
    if not cfg.do_sample:
        return logits.argmax(-1)  # (b,)
    logits = logits / cfg.temperature  # (b, V)
    if cfg.top_p < 1.0:
        sorted_logits, sorted_idx = logits.sort(-1, descending=True)  # (b, V)
        probs = sorted_logits.softmax(-1)  # (b, V)
        # Drop a token when the mass before it already reaches top_p; the top token always stays.
        drop = (probs.cumsum(-1) - probs) >= cfg.top_p  # (b, V)
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, sorted_idx, sorted_logits)  # (b, V)
    probs = logits.softmax(-1)  # (b, V)
    return torch.multinomial(probs, 1, generator=rng).squeeze(-1)  # (b,)
