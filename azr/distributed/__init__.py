"""Scaling out: Ray actors for the executor and the rollouts, a data-parallel learner, one algorithm.

The self-play step (``azr.selfplay.selfplay_step``) is never copied here. Everything in this
package is an *adapter* with the methods the stages already call, handed to the same step in
``Engines``:

* :class:`~azr.distributed.executor.RayExecutorPool` — ``run_many(jobs)`` like ``SandboxPool``,
  spread over executor actors that each hold a ``SandboxPool`` (so execution uses every node's
  CPUs); an actor that dies mid-batch is replaced and its chunk resubmitted.
* :class:`~azr.distributed.rollout.RayRolloutPolicy` — a ``Policy`` whose ``generate`` is split
  over rollout actors (transformers or vLLM inside) and whose scoring, training and saving run on
  the learner's own policy; after every optimizer step the learner pushes its weights to the
  actors (an optimizer step hook, so the update stage does not know about it).
* :class:`~azr.distributed.ddp.DataParallelPolicy` / :class:`~azr.distributed.ddp.DataParallelPool`
  — the learner over N processes launched by ``torchrun`` (DDP, NCCL on GPUs, gloo on CPU): every
  rank runs the same step on the same state; the update's rows are split between ranks and the
  gradients summed, generation and execution are split too (or done by rank 0's Ray actors and
  broadcast).
* :func:`~azr.distributed.engines.build_engines` — picks and wires the above from ``TrainConfig``.

Ray is optional (``pip install 'azr[ray]'``) and imported only when a Ray engine is built.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from azr.distributed.ddp import DataParallelPolicy, DataParallelPool, DistContext, init_distributed
    from azr.distributed.engines import build_engines
    from azr.distributed.executor import ExecutorActor, RayExecutorPool
    from azr.distributed.rollout import RayRolloutPolicy, RolloutActor

RAY_MISSING = ("Ray is not installed, and --ray / --ray-address need it: pip install 'azr[ray]' "
               "(or pip install 'ray[default]>=2.40'); without Ray, drop --ray to run in one process")


def require_ray() -> Any:
    """Import and return the ``ray`` module, or raise ImportError saying how to install it."""
    try:
        import ray
    except ImportError:
        raise ImportError(RAY_MISSING) from None
    return ray


def shard_bounds(n: int, k: int) -> list[tuple[int, int]]:
    """Split range(n) into k contiguous (start, stop) shards whose sizes differ by at most one, larger
    first; concatenating per-shard results in shard order gives back the input order."""
    if k < 1:
        raise ValueError(f"need at least one shard, got {k}")
    base, extra = divmod(n, k)
    bounds, start = [], 0
    for i in range(k):
        stop = start + base + (i < extra)
        bounds.append((start, stop))
        start = stop
    return bounds


def shard_seed(seed: int, shard: int) -> int:
    """The sampling seed of one shard of a generation call: shard 0 keeps `seed` (one worker samples exactly
    as one process would), the others get distinct streams, so copies of a prompt in different shards
    (the n Monte-Carlo solves of a task) are not sampled identically."""
    return seed if shard == 0 else (seed + shard * 0x9E3779B1) % 2**31


_LAZY = {
    "RayExecutorPool": "azr.distributed.executor",
    "ExecutorActor": "azr.distributed.executor",
    "RayRolloutPolicy": "azr.distributed.rollout",
    "RolloutActor": "azr.distributed.rollout",
    "DataParallelPolicy": "azr.distributed.ddp",
    "DataParallelPool": "azr.distributed.ddp",
    "DistContext": "azr.distributed.ddp",
    "init_distributed": "azr.distributed.ddp",
    "build_engines": "azr.distributed.engines",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'azr.distributed' has no attribute {name!r}")


__all__ = ["RAY_MISSING", "require_ray", "shard_bounds", "shard_seed", *_LAZY]
