"""Wire the engines a run's config asks for: local, Ray actors, vLLM, data-parallel; one ``Engines`` out.

``build_engines`` is the only place that decides where generation, execution and the update run.
Whatever it returns goes to the unchanged ``selfplay_step`` in an :class:`~azr.selfplay.Engines`:

=====================  ======================================  ==========================================
                       generate                                run_many
=====================  ======================================  ==========================================
one process            the HFPolicy (or VLLMPolicy)            a SandboxPool
``--ray``              RayRolloutPolicy (rollout actors)       RayExecutorPool (executor actors)
torchrun (N ranks)     DataParallelPolicy: a shard per rank    DataParallelPool: a shard per rank
torchrun + ``--ray``   rank 0's rollout actors, broadcast      rank 0's executor actors, broadcast
=====================  ======================================  ==========================================

Weight sync is an optimizer step hook: after every ``optimizer.step()`` the rollout actors
(``push_weights``) or the vLLM engine (``sync_weights``) receive the learner's new weights.
Under torchrun only rank 0 touches Ray.
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from azr import config as C
from azr.distributed.ddp import DataParallelPolicy, DataParallelPool, DistContext
from azr.executor import SandboxPool
from azr.selfplay import Engines


@dataclass
class BuiltEngines:
    """The engines of a run and what must be shut down with it."""

    eng: Engines
    closers: list[Callable[[], None]] = field(default_factory=list)
    """Called in reverse order by :meth:`close`."""
    description: dict[str, Any] = field(default_factory=dict)
    """Where each part runs, for the run's metadata.json."""

    def close(self) -> None:
        for close in reversed(self.closers):
            close()
        self.closers.clear()


def ray_cpus_needed(d: C.DistConfig) -> float:
    """CPUs the actors of `d` reserve in Ray."""
    return d.executor_workers * d.executor_cpus + d.rollout_workers * d.rollout_cpus


def connect_ray(d: C.DistConfig) -> bool:
    """Connect to the cluster `d` names, or start a private local one; True when this call started Ray.

    A private cluster gets ``ray_num_cpus`` logical CPUs, by default this machine's count or what the
    actors reserve if that is more (so the defaults run on a 2-core machine, oversubscribed). On an
    existing cluster, a request larger than the cluster fails here instead of waiting forever.
    """
    from azr.distributed import require_ray

    ray = require_ray()
    if ray.is_initialized():
        started = False
    elif d.ray_address:
        ray.init(address=d.ray_address, logging_level=logging.WARNING)
        started = True
    else:
        cpus = d.ray_num_cpus or max(os.cpu_count() or 1, math.ceil(ray_cpus_needed(d)))
        ray.init(num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
        started = True
    have = ray.cluster_resources()
    need = {"CPU": ray_cpus_needed(d), "GPU": d.rollout_workers * d.rollout_gpus}
    short = {k: v for k, v in need.items() if v > have.get(k, 0.0) + 1e-9}
    if short:
        if started:
            ray.shutdown()
        raise RuntimeError(f"the Ray cluster has {', '.join(f'{have.get(k, 0):g} {k}' for k in short)} but the "
                           f"actors need {', '.join(f'{v:g} {k}' for k, v in short.items())}: lower "
                           f"--dist.executor-workers/--dist.executor-cpus/--dist.rollout-workers/--dist.rollout-*, "
                           f"or add nodes (ray start --address HEAD:6379)")
    return started


def build_engines(cfg: C.TrainConfig, policy: Any, optimizer: torch.optim.Optimizer,
                  ctx: DistContext | None = None, reference: Any | None = None) -> BuiltEngines:
    """The engines for `cfg` around the learner `policy` (an HFPolicy) and its `optimizer` (module docstring);
    `reference` is the frozen starting policy of the KL penalty (None without one)."""
    d, ro = cfg.dist, cfg.rollout
    main = ctx is None or ctx.is_main
    ray_run = C.uses_ray(cfg)
    built = BuiltEngines(eng=None)  # type: ignore[arg-type]  # filled in below
    desc: dict[str, Any] = {"world_size": ctx.world_size if ctx else 1, "ray": ray_run, "rollout_backend": ro.backend}
    try:
        if ray_run and main:
            import ray

            if connect_ray(d):
                built.closers.append(ray.shutdown)
            desc["ray_resources"] = {k: v for k, v in ray.cluster_resources().items() if k in ("CPU", "GPU")}

        # -- execution
        if ray_run:
            pool = None
            if main:
                from azr.distributed.executor import RayExecutorPool

                pool = RayExecutorPool(cfg.sandbox, workers=d.executor_workers, cpus_per_worker=d.executor_cpus,
                                       chunk=d.executor_chunk)
                built.closers.append(pool.close)
            desc["executor"] = f"{d.executor_workers} Ray executor actors x {d.executor_cpus:g} CPU"
        else:
            sandbox = cfg.sandbox
            if ctx is not None and sandbox.workers == 0:  # the node's cores, shared by its ranks
                from dataclasses import replace

                local_world = int(os.environ.get("LOCAL_WORLD_SIZE", ctx.world_size))
                sandbox = replace(sandbox, workers=max(1, (os.cpu_count() or 1) // local_world))
            pool = SandboxPool(sandbox)
            built.closers.append(pool.close)
            desc["executor"] = "local sandbox pool" + (" per rank" if ctx else "")
        if ctx is not None:
            pool = DataParallelPool(pool, ctx, run_on_main=ray_run)

        # -- generation, and the weight sync after each update
        remote_rollouts = ray_run and d.rollout_workers > 0
        generator: Any = policy
        if remote_rollouts:
            generator = None
            if main:
                from azr.distributed.rollout import RayRolloutPolicy

                generator = RayRolloutPolicy(policy, cfg.model.name, workers=d.rollout_workers, backend=ro.backend,
                                             cpus=d.rollout_cpus, gpus=d.rollout_gpus,
                                             vllm_gpu_memory=ro.vllm_gpu_memory)
                built.closers.append(generator.close)
                optimizer.register_step_post_hook(lambda *_: generator.push_weights())
            desc["rollout"] = f"{d.rollout_workers} Ray rollout actors ({ro.backend}) x {d.rollout_cpus:g} CPU, " \
                              f"{d.rollout_gpus:g} GPU"
        elif ro.backend == "vllm":
            from azr.policy.vllm import VLLMPolicy

            generator = VLLMPolicy(policy, gpu_memory=ro.vllm_gpu_memory)
            optimizer.register_step_post_hook(lambda *_: generator.sync_weights())
            desc["rollout"] = "vLLM in the learner process"
        else:
            desc["rollout"] = "transformers in the learner process" + (" (one shard per rank)" if ctx else "")
        eng_policy = (DataParallelPolicy(policy, ctx, generator=generator, generate_on_main=remote_rollouts)
                      if ctx is not None else generator)
        built.eng = Engines(eng_policy, pool, optimizer, cfg, reference)
        built.description = desc
        return built
    except BaseException:
        built.close()
        raise
