"""vLLM as the rollout engine on a GPU: the Policy Protocol's ``generate``, weights synced from the learner.

vLLM generates; it cannot differentiate. So the learner stays a transformers
:class:`~azr.policy.HFPolicy` (scoring, update, checkpoints), and vLLM holds a second copy of the
weights for sampling, refreshed after every optimizer step:

* :class:`VLLMGenerator` — a ``vllm.LLM`` started from a Hugging Face directory written by the
  learner (so every model azr loads, the embedded GGUF included, works), ``generate`` with the
  same records as :class:`HFPolicy` (prompt ids from the same chat template, response ids with
  the EOS token, ``finished`` when it stopped on EOS), and ``load_weights`` that copies named
  tensors into the running engine through a worker extension (``WeightLoaderExtension``: vLLM's
  own ``model.load_weights``, which understands Hugging Face names and fuses q/k/v itself).
* :class:`VLLMPolicy` — a :class:`~azr.policy.RoutedPolicy`: ``generate`` on vLLM, the rest on the
  learner; ``sync_weights()`` pushes the learner's weights (LoRA merged). ``azr train --rollout.backend
  vllm`` calls it from an optimizer step hook, so every update is followed by a sync.

The engine runs in this process (``VLLM_ENABLE_V1_MULTIPROCESSING=0`` unless set otherwise), so a
sync hands tensors over by reference instead of serialising them. Under torchrun each rank starts
its own engine on its GPU with vLLM's ``external_launcher`` backend (the launcher's process group).
Sampling is seeded per request (``seed + i``): the same seed and weights give the same rollouts,
though not the same tokens as the transformers backend (different kernels).
``GenerationConfig.batch_size`` is ignored: vLLM schedules its own batches. Needs
``pip install 'azr[vllm]'`` and a CUDA GPU; without either, constructing an engine raises an
error that says so. The algorithm modules never import this.
"""

from __future__ import annotations

import importlib.util
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
import torch.distributed

from azr.policy.base import Generation, GenerationConfig, RoutedPolicy
from azr.policy.hf import encode_chat, prefix_ids

VLLM_MISSING = ("the vLLM rollout backend needs vLLM: pip install 'azr[vllm]' (on a machine with a CUDA GPU); "
                "or use --rollout.backend hf")
NO_GPU = ("the vLLM rollout backend needs a CUDA GPU, and torch sees none (torch {version}); "
          "use --rollout.backend hf on this machine")


def require_vllm() -> None:
    """Raise a clear error when vLLM or a CUDA GPU is missing."""
    if importlib.util.find_spec("vllm") is None:
        raise ImportError(VLLM_MISSING)
    if not torch.cuda.is_available():
        raise RuntimeError(NO_GPU.format(version=torch.__version__))


class WeightLoaderExtension:
    """Mixed into vLLM's GPU worker (``worker_extension_cls``): load named tensors into the live model."""

    def azr_load_weights(self, weights: list[tuple[str, torch.Tensor]]) -> int:
        device = self.device  # type: ignore[attr-defined]  # the worker's
        self.model_runner.model.load_weights(  # type: ignore[attr-defined]
            weights=[(name, t.to(device, non_blocking=True)) for name, t in weights])
        torch.cuda.synchronize(device)
        return len(weights)


class VLLMGenerator:
    """A vLLM engine on this process's GPU that turns prompts into :class:`Generation` records.

    `model_dir` is a Hugging Face directory (weights, config, tokenizer); `tokenizer` encodes prompts
    exactly as the learner does. `gpu_memory` is the fraction of the GPU vLLM may use.
    """

    SYNC_CHUNK_BYTES = 1 << 30
    """Weights are handed to the engine in groups of about this size, to bound the transient copies."""

    def __init__(self, model_dir: str | Path, tokenizer: Any, *, eos_ids: Sequence[int], system_prompt: str | None,
                 dtype: str = "bfloat16", gpu_memory: float = 0.4, seed: int = 0, max_model_len: int | None = None,
                 keep_dir: Any = None):
        require_vllm()
        os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
        from vllm import LLM

        self.tokenizer = tokenizer
        self.system_prompt = system_prompt
        self.eos_ids = sorted(set(int(e) for e in eos_ids))
        self._keep_dir = keep_dir  # a TemporaryDirectory holding model_dir, removed with this object
        extra: dict[str, Any] = {}
        if torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1:
            # Under torchrun vLLM must reuse the launcher's process group instead of making its own;
            # with tensor parallel size 1 every rank then holds its own engine on its own GPU.
            extra["distributed_executor_backend"] = "external_launcher"
        self.llm = LLM(model=str(model_dir), dtype=dtype, gpu_memory_utilization=gpu_memory, seed=seed,
                       max_model_len=max_model_len, enable_prefix_caching=True,
                       worker_extension_cls=f"{__name__}.WeightLoaderExtension", **extra)

    @classmethod
    def from_policy(cls, policy: Any, *, gpu_memory: float = 0.4, seed: int = 0,
                    max_model_len: int | None = None) -> "VLLMGenerator":
        """An engine holding `policy`'s current weights (an :class:`HFPolicy`; LoRA merged by its ``save``)."""
        require_vllm()  # before writing a possibly large directory for nothing
        tmp = tempfile.TemporaryDirectory(prefix="azr-vllm-")
        policy.save(tmp.name)
        return cls(tmp.name, policy.tokenizer, eos_ids=policy.eos_token_ids, system_prompt=policy.config.system_prompt,
                   dtype=policy.config.gen_dtype, gpu_memory=gpu_memory, seed=seed, max_model_len=max_model_len,
                   keep_dir=tmp)

    def generate(self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None = None) -> list[Generation]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt

        prompts = list(prompts)
        if not prompts:
            return []
        prefix = prefix_ids(self.tokenizer, cfg.response_prefix)
        encoded = [encode_chat(self.tokenizer, p, self.system_prompt) + prefix for p in prompts]
        if any(not e for e in encoded):
            raise ValueError("a prompt encoded to zero tokens; the model needs at least one token to condition on")
        if seed is None:
            seed = int(torch.randint(0, 2**31, (1,)).item())
        sample = cfg.do_sample
        params = [SamplingParams(n=1, max_tokens=cfg.max_new_tokens, temperature=cfg.temperature if sample else 0.0,
                                 top_p=cfg.top_p if sample else 1.0, seed=(seed + i) % 2**31,
                                 stop_token_ids=self.eos_ids, stop=list(cfg.stop) or None,
                                 include_stop_str_in_output=True, skip_special_tokens=True)
                  for i in range(len(prompts))]
        outs = self.llm.generate([TokensPrompt(prompt_token_ids=ids) for ids in encoded], params, use_tqdm=False)
        gens = []
        for prompt, ids, out in zip(prompts, encoded, outs):
            o = out.outputs[0]
            # The EOS token that stopped it is part of the sampled ids; so is the token that completed a stop string.
            resp = list(o.token_ids)
            gens.append(Generation(prompt=prompt, prompt_ids=ids, response_ids=resp,
                                   response=cfg.response_prefix + self.tokenizer.decode(resp, skip_special_tokens=True),
                                   finished=o.finish_reason == "stop"))
        return gens

    def load_weights(self, weights: Iterable[tuple[str, torch.Tensor]]) -> None:
        """Copy named full-model tensors (Hugging Face names) into the engine."""
        group: list[tuple[str, torch.Tensor]] = []
        size = 0
        for name, t in weights:
            group.append((name, t))
            size += t.numel() * t.element_size()
            if size >= self.SYNC_CHUNK_BYTES:
                self.llm.collective_rpc("azr_load_weights", args=(group,))
                group, size = [], 0
        if group:
            self.llm.collective_rpc("azr_load_weights", args=(group,))
        # Cached prefixes were computed with the old weights.
        self.llm.reset_prefix_cache()


class VLLMPolicy(RoutedPolicy):
    """Generate with vLLM on the learner's GPU, train with the learner (module docstring)."""

    def __init__(self, learner: Any, *, gpu_memory: float = 0.4, max_model_len: int | None = None):
        super().__init__(learner)
        self.engine = VLLMGenerator.from_policy(learner, gpu_memory=gpu_memory, seed=learner.config.seed,
                                                max_model_len=max_model_len)

    def generate(self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None = None) -> list[Generation]:
        return self.engine.generate(prompts, cfg, seed=seed)

    def sync_weights(self) -> None:
        """Copy the learner's current weights (LoRA merged, generation dtype) into vLLM."""
        self.engine.load_weights(self.learner.export_weights().items())
