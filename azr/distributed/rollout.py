"""Rollouts in Ray actors, with the learner's weights pushed to them after every update.

:class:`RayRolloutPolicy` is a :class:`~azr.policy.RoutedPolicy`: the stages call its
``generate`` as they call any policy's, and it splits the prompts into one contiguous shard per
:class:`RolloutActor` (shard ``i`` sampled with ``shard_seed(seed, i)``, so a single actor
samples exactly what the learner would), then puts the results back in input order. Scoring,
the update and checkpoints run on the learner's own :class:`~azr.policy.HFPolicy`.

Weight sync. ``push_weights()`` sends the learner's full weights (LoRA merged, cast to the
generation dtype) to every actor through the Ray object store: one ``ray.put``, one
``load_weights`` call per actor, without waiting. A Ray actor runs its calls in the order one
caller submitted them, so the next ``generate`` on an actor always sees the new weights; the
load results are checked before that next generation is returned, so a failed load is an error,
not stale rollouts. :func:`azr.distributed.engines.build_engines` calls ``push_weights`` from an
optimizer step hook, i.e. after every update, without the update stage knowing.

An actor that dies is replaced (loaded with the current weights) and its shard regenerated once.

Inside an actor the engine is either an :class:`~azr.policy.HFPolicy` (CPU or GPU) whose weights
live in the generation dtype, or a :class:`~azr.policy.vllm.VLLMGenerator` on the actor's GPU.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import torch

from azr.distributed import require_ray, shard_bounds, shard_seed
from azr.policy.base import Generation, GenerationConfig, PolicyConfig, RoutedPolicy


class RolloutActor:
    """One rollout engine in its own process (made a Ray actor by :class:`RayRolloutPolicy`).

    backend ``hf``: the model is loaded by name (``load_policy``) with weights kept in ``dtype``, so
    generation needs no second copy; ``vllm``: the model is loaded on the CPU only to write the
    directory vLLM starts from, then dropped. Either way the learner's first ``load_weights``
    overwrites the initial weights, so the actor never needs the learner's checkpoint files.
    """

    def __init__(self, model: str, *, backend: str = "hf", device: str = "cpu", dtype: str = "bfloat16",
                 threads: int = 1, seed: int = 0, system_prompt: str | None = None, vllm_gpu_memory: float = 0.9):
        from azr.policy import load_policy

        torch.set_num_threads(max(1, threads))
        self.backend = backend
        self.version = 0
        if backend == "vllm":
            from azr.policy.vllm import VLLMGenerator

            cpu = load_policy(model, PolicyConfig(device="cpu", param_dtype=dtype, gen_dtype=dtype,
                                                  train_autocast=None, system_prompt=system_prompt, seed=seed))
            self.engine: Any = VLLMGenerator.from_policy(cpu, gpu_memory=vllm_gpu_memory, seed=seed)
            del cpu  # vLLM holds its own copy on the GPU
        elif backend == "hf":
            self.engine = load_policy(model, PolicyConfig(device=device, param_dtype=dtype, gen_dtype=dtype,
                                                          train_autocast=None, system_prompt=system_prompt,
                                                          seed=seed))
        else:
            raise ValueError(f"unknown rollout backend {backend!r}; use hf or vllm")

    def generate(self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None) -> list[Generation]:
        return self.engine.generate(prompts, cfg, seed=seed)

    def load_weights(self, weights: dict[str, torch.Tensor], version: int) -> int:
        """Replace the engine's weights with the learner's (full model, Hugging Face names)."""
        if self.backend == "vllm":
            self.engine.load_weights(weights.items())
        else:
            missing, unexpected = self.engine.module.load_state_dict(weights, strict=False)
            if unexpected or missing:
                raise RuntimeError(f"rollout actor: learner weights do not fit the model (missing {missing[:5]}, "
                                   f"unexpected {unexpected[:5]}): start the actors with the learner's model")
        self.version = version
        return version

    def weights(self) -> dict[str, torch.Tensor]:
        """The engine's current weights on the CPU (hf backend), e.g. to check a sync."""
        if self.backend != "hf":
            raise RuntimeError("weights() is only available for the hf backend")
        return {k: v.detach().cpu() for k, v in self.engine.module.state_dict().items()}

    def pid(self) -> int:
        return os.getpid()


class RayRolloutPolicy(RoutedPolicy):
    """``generate`` over ``workers`` Ray rollout actors; everything else on `learner` (module docstring).

    Needs a connected Ray. ``cpus``/``gpus`` are each actor's reservation; ``gpus > 0`` places the
    engine on its GPU. The actors start with the learner's weights.
    """

    def __init__(self, learner: Any, model: str, *, workers: int = 1, backend: str = "hf", cpus: float = 1.0,
                 gpus: float = 0.0, vllm_gpu_memory: float = 0.9, start_timeout_s: float = 600.0):
        super().__init__(learner)
        if workers < 1:
            raise ValueError(f"RayRolloutPolicy needs workers >= 1, got {workers}")
        ray = require_ray()
        if not ray.is_initialized():
            raise RuntimeError("RayRolloutPolicy needs a running Ray: call ray.init() first")
        self._ray = ray
        cfg = learner.config
        self._dtype = cfg.gen_dtype
        self._remote = ray.remote(RolloutActor).options(num_cpus=cpus, num_gpus=gpus, max_restarts=0)
        self._kwargs = dict(backend=backend, device="cuda" if gpus > 0 else "cpu", dtype=self._dtype,
                            threads=max(1, round(cpus)), seed=cfg.seed, system_prompt=cfg.system_prompt,
                            vllm_gpu_memory=vllm_gpu_memory)
        self._model = model
        self.replaced = 0
        """Actors replaced after dying (monitoring and tests)."""
        self.version = 0
        """Weight version the actors hold: the number of pushes so far (1 after start)."""
        self._weights_ref: Any = None
        self._loads: list[Any] = []
        self.actors = [self._remote.remote(model, **self._kwargs) for _ in range(workers)]
        self.push_weights()
        try:
            self._check_loads(timeout=start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RuntimeError(f"rollout actors did not start within {start_timeout_s:.0f}s: the cluster lacks "
                               f"{workers} x ({cpus} CPU, {gpus} GPU) free (see `ray status`)") from None

    def push_weights(self) -> None:
        """Send the learner's current weights to every actor; returns without waiting (module docstring)."""
        weights = {k: v.cpu() for k, v in self.learner.export_weights(self._dtype).items()}
        self.version += 1
        self._weights_ref = self._ray.put(weights)
        self._loads = [(slot, a, a.load_weights.remote(self._weights_ref, self.version))
                       for slot, a in enumerate(self.actors)]

    def _check_loads(self, timeout: float | None = None) -> None:
        loads, self._loads = self._loads, []
        for slot, actor, ref in loads:
            try:
                self._ray.get(ref, timeout=timeout)
            except self._ray.exceptions.RayActorError:
                self._replace(slot, actor)

    def _replace(self, slot: int, dead: Any) -> None:
        """Replace the actor in `slot` if it is still `dead` (several lost calls name the same actor)."""
        if self.actors[slot] is not dead:
            return
        self._ray.kill(dead)
        actor = self._remote.remote(self._model, **self._kwargs)
        self._ray.get(actor.load_weights.remote(self._weights_ref, self.version))
        self.actors[slot] = actor
        self.replaced += 1

    def generate(self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None = None) -> list[Generation]:
        prompts = list(prompts)
        if not prompts:
            return []
        if seed is None:  # follow torch's global RNG, as HFPolicy does
            seed = int(torch.randint(0, 2**31, (1,)).item())
        shards = shard_bounds(len(prompts), min(len(self.actors), len(prompts)))
        calls = [(self.actors[i], self.actors[i].generate.remote(prompts[a:b], cfg, shard_seed(seed, i)))
                 for i, (a, b) in enumerate(shards)]
        # The loads were queued before these generations on every actor: surface a failed load first.
        self._check_loads()
        out: list[Generation] = []
        for i, ((a, b), (actor, ref)) in enumerate(zip(shards, calls)):
            try:
                out.extend(self._ray.get(ref))
            except self._ray.exceptions.RayActorError:
                self._replace(i, actor)
                out.extend(self._ray.get(self.actors[i].generate.remote(prompts[a:b], cfg, shard_seed(seed, i))))
        return out

    def actor_weights(self, slot: int = 0) -> dict[str, torch.Tensor]:
        """Weights actor `slot` generates with (hf backend): checks a sync."""
        return self._ray.get(self.actors[slot].weights.remote())

    def actor_pids(self) -> list[int]:
        return self._ray.get([a.pid.remote() for a in self.actors])

    def close(self) -> None:
        for a in self.actors:
            self._ray.kill(a)
        self.actors = []
