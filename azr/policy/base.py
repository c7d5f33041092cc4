"""The policy interface: what the self-play loop needs from a language model, as typed records.

The trainer talks to a :class:`Policy` only. A policy does three things:

1. **Rollouts.** ``generate(prompts, cfg, seed)`` turns user-message strings into
   :class:`Generation` records (token ids and decoded text). The policy applies the model's chat
   template itself, so callers never format special tokens.
2. **Scoring.** ``sequence_logprobs(prompt_ids, response_ids, ...)`` gives the log-probability of
   every response token under the current weights, as a padded ``(B, T)`` matrix plus a mask
   (:class:`TokenLogprobs`). The PPO ratio, KL and entropy terms are built from it.
3. **Training.** ``iter_logprob_microbatches(...)`` yields the same numbers one micro-batch at a
   time *with* an autograd graph, so the trainer can run ``loss.backward()`` per micro-batch and
   keep memory bounded (gradient accumulation). ``parameters()`` feeds the optimizer and
   ``save(dir)`` writes a Hugging Face checkpoint that any loader (ours, transformers, vLLM) reads.

Tensor layout used everywhere in this package (symbols: B batch, G group/micro-batch rows,
T response tokens, V vocabulary):

* ``logprobs[i, j]`` is ``log p(response_ids[i][j] | prompt_ids[i] + response_ids[i][:j])``;
  row ``i`` holds ``len(response_ids[i])`` real values left-aligned, then zeros.
* ``mask[i, j]`` is ``1.0`` for those real positions and ``0.0`` for padding. The EOS token, when
  the response has one, is a real position (the model must learn to stop).
* ``T`` is ``max(len(r) for r in response_ids)`` over the *whole* batch handed in, also for each
  micro-batch, so ``old_logprobs[mb.index]`` and ``advantages[mb.index]`` line up without
  re-padding.

Config records (:class:`GenerationConfig`, :class:`PolicyConfig`, :class:`LoraSettings`) are frozen
dataclasses with plain-typed fields so the CLI can expose them directly.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:  # torch is only needed for annotations here; keep `import azr.policy` light
    import torch

DType = Literal["float32", "bfloat16", "float16"]
AutoDType = Literal["auto", "float32", "bfloat16", "float16"]

DEFAULT_MODEL = "qwen2.5-coder-0.5b"
"""The embedded model `azr train` and `azr eval --model default` use (registry in :mod:`azr.policy.models`)."""


class PolicyLoadError(RuntimeError):
    """A model could not be resolved or loaded. The message says what was tried and how to fix it."""


@dataclass(frozen=True)
class GenerationConfig:
    """How to sample rollouts. One config per call of :meth:`Policy.generate`."""

    max_new_tokens: int = 256
    """Hard cap on response tokens (EOS included). A response that hits it has ``finished=False``."""
    temperature: float = 1.0
    """Softmax temperature. ``0`` means greedy (same as ``greedy=True``)."""
    top_p: float = 1.0
    """Nucleus sampling: keep the smallest set of tokens whose probability mass reaches ``top_p``."""
    greedy: bool = False
    """Take the argmax at every step instead of sampling (deterministic; ignores temperature/top_p)."""
    batch_size: int = 8
    """Sequences decoded together: the slots of the rollout engine's KV cache (a finished sequence's
    slot goes to the next waiting prompt), or the size of each padded batch for models the slot engine
    does not support. Larger batches amortise each decode step's weight reads; the KV cache costs
    ``batch_size × (longest prompt + max_new_tokens)`` tokens (12 KB each for Qwen2.5-0.5B)."""
    response_prefix: str = ""
    """Text the assistant turn starts with before sampling (e.g. ``"<answer>"``). Its tokens are appended to
    ``prompt_ids`` (never sampled, never trained on) and ``response`` starts with it, so parsers see the
    whole turn. Empty: the model writes the turn from its first token."""
    stop: tuple[str, ...] = ()
    """Stop strings: a row ends at the token that completes the first occurrence of any of them in its response
    (``response_prefix`` excluded). That token stays in ``response_ids``, the text is kept, and the row counts as
    ``finished``. Self-play stops at ``</answer>``: the parser ignores what follows it, except that a second
    ``<answer>`` block makes the response a format error."""

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be >= 1, got {self.max_new_tokens}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")
        if any(not s for s in self.stop):
            raise ValueError("stop strings must be non-empty")

    @property
    def do_sample(self) -> bool:
        """Whether tokens are sampled (False: greedy argmax)."""
        return not self.greedy and self.temperature > 0


@dataclass(frozen=True)
class Generation:
    """One rollout: the prompt as given, its token ids after the chat template, and the response."""

    prompt: str
    """The user message exactly as passed to ``generate``."""
    prompt_ids: list[int]
    """Token ids the model saw: the chat-templated prompt, unpadded (includes the assistant header and the
    tokens of any ``response_prefix``)."""
    response_ids: list[int]
    """Generated token ids, up to and including the EOS token when one was produced."""
    response: str
    """The config's ``response_prefix`` followed by ``response_ids`` decoded with special tokens stripped."""
    finished: bool
    """True when the response ended with an EOS token or a stop string; False when ``max_new_tokens`` cut it off."""

    @property
    def num_response_tokens(self) -> int:
        return len(self.response_ids)


@dataclass
class TokenLogprobs:
    """Per-token log-probs of a batch of responses, padded to ``(B, T)``; see the module docstring."""

    logprobs: torch.Tensor
    """(B, T) float32. Log-prob of each response token; 0 at padding. Carries a graph iff ``grad=True``."""
    mask: torch.Tensor
    """(B, T) float32. 1 at real response tokens, 0 at padding."""
    entropy: torch.Tensor | None = None
    """(B, T) float32. Entropy of the next-token distribution at each response position (after the
    temperature), 0 at padding; None unless ``with_entropy=True``. Carries a graph iff ``grad=True``
    (so it can serve as an entropy bonus); costs two extra (B, T, V) tensors in that case."""


@dataclass
class LogprobMicroBatch:
    """One micro-batch of log-probs, plus which rows of the full batch it holds.

    Tensors are (G, T) with the *full* batch's T, so ``old_logprobs[index]`` and
    ``advantages[index]`` align with them directly.
    """

    index: torch.Tensor
    """(G,) int64 on the policy's device. Row numbers in the full batch, in this micro-batch's order."""
    logprobs: torch.Tensor
    """(G, T) float32. As :attr:`TokenLogprobs.logprobs`; carries a graph iff ``grad=True``."""
    mask: torch.Tensor
    """(G, T) float32. 1 at real response tokens, 0 at padding."""
    entropy: torch.Tensor | None = None
    """(G, T) float32 or None. As :attr:`TokenLogprobs.entropy`; carries a graph iff ``grad=True``."""


@dataclass(frozen=True)
class LoraSettings:
    """Low-rank adapters via ``peft`` (optional dependency: ``pip install peft``)."""

    r: int = 16
    """Adapter rank."""
    alpha: int = 32
    """Scaling numerator (effective scale ``alpha / r``)."""
    dropout: float = 0.0
    """Adapter dropout. Keep 0 for RL: PPO ratios assume the scoring forward is deterministic."""
    target_modules: str | tuple[str, ...] = "all-linear"
    """Which modules get adapters: ``"all-linear"`` or explicit names such as ``("q_proj", "v_proj")``."""


@dataclass(frozen=True)
class PolicyConfig:
    """How a policy is placed and computed. Model *identity* is the ``model`` argument of ``load_policy``."""

    device: str = "auto"
    """``"cpu"``, ``"cuda"``, ``"cuda:1"``, or ``"auto"`` (CUDA when available, else CPU)."""
    param_dtype: DType = "float32"
    """Dtype of the trained (master) weights. fp32 keeps AdamW updates at lr 1e-6 meaningful."""
    gen_dtype: AutoDType = "auto"
    """Dtype used for rollouts. When it differs from ``param_dtype`` the policy keeps a cast copy of
    the weights for generation and refreshes it automatically after the weights change. ``"auto"``:
    bfloat16 on CUDA and on CPUs with native bf16 matmuls (AMX or AVX512-BF16; there bf16 runs ~2-4x
    fp32), float32 on other CPUs, where bf16 matmuls are emulated and 4-300x *slower* than fp32
    (measured on an AVX2-only EPYC, ``benchmarks/README.md``). The policy's ``config`` holds the
    resolved name."""
    train_autocast: AutoDType | None = "auto"
    """Autocast dtype for the scoring/training forward (None: run in ``param_dtype``). ``"auto"``:
    bfloat16 where ``gen_dtype="auto"`` would pick it, else None. bf16 autocast with fp32 weights is
    ~1.7x faster than plain fp32 on a bf16-capable CPU (SPEC §6). Log-softmax is always fp32."""
    gradient_checkpointing: bool = False
    """Recompute activations in backward: less memory for long sequences, ~30% slower."""
    lora: LoraSettings | None = None
    """Train low-rank adapters instead of all weights (None: full fine-tuning)."""
    system_prompt: str | None = None
    """Optional system message put before every user prompt (only used with a chat template)."""
    cache_dir: str | None = None
    """Where converted models are cached (default ``$AZR_CACHE`` or ``~/.cache/azr``)."""
    seed: int = 0
    """Seeds in-code initialisation: the ``tiny`` model's weights and LoRA adapter init."""


class Scorer(Protocol):
    """What the KL term needs from the frozen reference: log-probs of given responses (every :class:`Policy` is
    one)."""

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
        """Log-probs of each response token given its prompt, as (B, T) + mask, rows in input order.

        Forward passes run ``micro_batch`` sequences at a time. With ``grad=True`` the result keeps
        every micro-batch's graph alive until backward; for large batches use
        :meth:`iter_logprob_microbatches` instead. ``temperature`` divides the logits first (use the
        sampling temperature so ratios refer to the distribution that was sampled).
        """
        ...


@runtime_checkable
class Policy(Scorer, Protocol):
    """What the self-play loop needs from a model backend (transformers today; vLLM/Ray later)."""

    @property
    def device(self) -> torch.device:
        """Device the trained weights live on."""
        ...

    @property
    def module(self) -> torch.nn.Module:
        """The trained torch module (a ``PeftModel`` under LoRA); e.g. for DDP wrapping or hooks."""
        ...

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """Trainable parameters only (the adapters under LoRA): pass these to the optimizer."""
        ...

    def num_parameters(self, only_trainable: bool = False) -> int:
        """Number of parameters (tied weights counted once)."""
        ...

    def encode_prompt(self, prompt: str) -> list[int]:
        """Token ids of a user message after the chat template, exactly as ``generate`` feeds them."""
        ...

    def generate(
        self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None = None
    ) -> list[Generation]:
        """One :class:`Generation` per prompt, in input order. Same ``seed`` and inputs give the
        same outputs on the same machine; ``seed=None`` draws from torch's global RNG."""
        ...

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
        """Yield micro-batches of log-probs for gradient accumulation.

        Call ``backward()`` on a loss built from each item *before* asking for the next one and do
        not keep references to it: then only one micro-batch's activations live at a time::

            opt.zero_grad()
            n_tok = sum(len(r) for r in response_ids)
            for mb in policy.iter_logprob_microbatches(p_ids, r_ids, micro_batch=4):
                loss = token_loss(mb.logprobs, old[mb.index], adv[mb.index], mb.mask).sum() / n_tok
                loss.backward()
            opt.step()

        Rows are grouped longest-first (less padding, and an out-of-memory shows up on the first
        micro-batch); ``mb.index`` says which rows of the full batch each item holds.
        """
        ...

    def save(self, directory: str | Path) -> Path:
        """Write a Hugging Face checkpoint (weights + tokenizer + chat template) that
        ``load_policy(str(directory))`` and ``transformers.AutoModelForCausalLM`` both load."""
        ...


@dataclass(frozen=True)
class ModelInfo:
    """Where a policy's weights came from and how long loading took (logged in run metadata)."""

    name: str
    """The model argument as given (``"smollm2"``, ``"tiny"``, a hub id or a path)."""
    kind: Literal["embedded-gguf", "gguf", "hf", "tiny"]
    """How it was resolved."""
    path: str | None
    """The file or directory weights were read from (the cache dir when ``from_cache``)."""
    from_cache: bool
    """True when a converted copy in the azr cache was used instead of converting the GGUF again."""
    load_s: float
    """Wall seconds spent resolving and loading (conversion included)."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Backend notes, e.g. the cache key."""


class RoutedPolicy(ABC):
    """A :class:`Policy` whose ``generate`` runs on a separate rollout engine (vLLM, Ray actors, other
    ranks) while scoring, training and saving run on ``learner``, the policy that owns the trained weights.

    Subclasses implement ``generate``. Whatever engine they use must see the learner's weights as of
    the last optimizer step; how (a sync call from an optimizer step hook) is theirs to say.
    """

    def __init__(self, learner: Policy) -> None:
        self.learner = learner

    @property
    def device(self) -> torch.device:
        return self.learner.device

    @property
    def module(self) -> torch.nn.Module:
        return self.learner.module

    @property
    def info(self) -> ModelInfo | None:
        return getattr(self.learner, "info", None)

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        return self.learner.parameters()

    def num_parameters(self, only_trainable: bool = False) -> int:
        return self.learner.num_parameters(only_trainable)

    def encode_prompt(self, prompt: str) -> list[int]:
        return self.learner.encode_prompt(prompt)

    @abstractmethod
    def generate(self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None = None) -> list[Generation]:
        """As :meth:`Policy.generate`, on the subclass's rollout engine."""

    def sequence_logprobs(self, prompt_ids: Sequence[list[int]], response_ids: Sequence[list[int]], *, grad: bool,
                          micro_batch: int, temperature: float = 1.0, with_entropy: bool = False) -> TokenLogprobs:
        return self.learner.sequence_logprobs(prompt_ids, response_ids, grad=grad, micro_batch=micro_batch,
                                              temperature=temperature, with_entropy=with_entropy)

    def iter_logprob_microbatches(self, prompt_ids: Sequence[list[int]], response_ids: Sequence[list[int]], *,
                                  micro_batch: int, grad: bool = True, temperature: float = 1.0,
                                  with_entropy: bool = False) -> Iterator[LogprobMicroBatch]:
        return self.learner.iter_logprob_microbatches(prompt_ids, response_ids, micro_batch=micro_batch, grad=grad,
                                                      temperature=temperature, with_entropy=with_entropy)

    def save(self, directory: str | Path) -> Path:
        return self.learner.save(directory)
