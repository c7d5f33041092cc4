"""The learner over N processes with torch.distributed: DDP for the update, shards for the rest.

Launched by ``torchrun --nproc-per-node N -m azr.cli train ...`` (one process per GPU; on CPU the
gloo backend works the same way, which is how it is tested). **Every rank runs the same
``selfplay_step`` on the same state**: the same seed gives every rank the same RNG streams, and
the adapters below make every rank see the same generations and execution results, so the
buffers, proposals, rewards and advantages stay identical without being sent around. Only rank 0
writes the run directory.

* :class:`DataParallelPolicy` — ``generate`` splits the prompts into one contiguous shard per rank
  (shard ``r`` sampled with ``shard_seed(seed, r)``) and all-gathers the generations; or, when
  rollouts live in rank 0's Ray actors, rank 0 generates everything and broadcasts.
  ``iter_logprob_microbatches(grad=True)`` gives each rank its contiguous share of the update's
  rows; the rank's micro-batches run inside ``DistributedDataParallel.no_sync()`` except the last,
  whose backward all-reduces the accumulated gradients. Ranks may hold different numbers of
  micro-batches, but each does exactly one synchronising backward; a rank with no row scores one
  row with an all-zero mask (zero loss and gradient) so it still joins the all-reduce. The
  loss is a token mean over the *whole* batch (``num_tokens_total``), so the full-batch gradient
  is the **sum** of the ranks' gradients: a DDP communication hook sums instead of averaging.
  Clipping and the optimizer step then see the same gradient on every rank, and the weights stay
  equal (DDP also broadcasts rank 0's weights once, at wrap time).
* :class:`DataParallelPool` — ``run_many`` shards the jobs over the ranks' local sandbox pools and
  all-gathers the results; or rank 0 runs them on its Ray executor pool and broadcasts.

What is not split: no-grad scoring (``sequence_logprobs(grad=False)``), which every rank computes
in full. What is per rank: the ``update/pg_loss`` and ``update/clip_frac`` metrics are rank 0's
token means over its share of the rows (``update/grad_norm``, sequences and tokens are global).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F

from azr.distributed import shard_bounds, shard_seed
from azr.executor import ExecResult, Job, SandboxInfo
from azr.policy.base import Generation, GenerationConfig, LogprobMicroBatch, RoutedPolicy, TokenLogprobs


@dataclass(frozen=True)
class DistContext:
    """This process's place in the torch.distributed group."""

    rank: int
    world_size: int
    local_rank: int
    backend: str
    """``nccl`` (CUDA) or ``gloo`` (CPU)."""

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str, timeout_s: float = 1800.0) -> DistContext | None:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT in the
    environment); None when this process runs alone. On CUDA the rank uses GPU ``LOCAL_RANK`` with NCCL,
    on CPU gloo. The long timeout covers a rank waiting while rank 0 seeds or checkpoints."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local, backend=backend)


def _sum_hook(state, bucket):  # unannotated: DDP checks the annotations, which this module's are strings
    """DDP communication hook: all-reduce SUM (DDP's default averages over ranks).
    (state: unused; bucket: a dist.GradBucket; returns a Future of the reduced flat gradient.)"""
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def _gather(ctx: DistContext, mine: list) -> list:
    """Every rank's list, concatenated in rank order, on every rank."""
    parts: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(parts, mine)
    return [x for part in parts for x in part]


def _from_main(ctx: DistContext, value: Any) -> Any:
    """Rank 0's `value` on every rank."""
    box = [value if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class DataParallelPolicy(RoutedPolicy):
    """The learner on one rank of a data-parallel group (module docstring).

    `learner` is this rank's :class:`~azr.policy.HFPolicy` (its module gets wrapped in DDP here).
    `generator` is what generates: the learner itself or a per-rank :class:`~azr.policy.vllm.VLLMPolicy`
    (every rank generates its shard), or, with ``generate_on_main=True``, rank 0's
    :class:`~azr.distributed.rollout.RayRolloutPolicy` (None on the other ranks).
    """

    def __init__(self, learner: Any, ctx: DistContext, generator: Any | None = None, generate_on_main: bool = False):
        super().__init__(learner)
        from torch.nn.parallel import DistributedDataParallel as DDP

        self.ctx = ctx
        self.generator = generator if generator is not None else learner
        self.generate_on_main = generate_on_main
        dev = learner.device
        # No buffer sync at each forward: the only buffers (rotary tables) are never trained.
        self.ddp = DDP(learner.module, device_ids=[dev.index] if dev.type == "cuda" else None,
                       forward_sync_buffers=False)
        self.ddp.register_comm_hook(None, _sum_hook)
        learner.set_train_forward(self.ddp)

    def generate(self, prompts: Sequence[str], cfg: GenerationConfig, seed: int | None = None) -> list[Generation]:
        prompts = list(prompts)
        if not prompts:
            return []
        if seed is None:  # every rank draws the same value: the global RNGs are seeded alike
            seed = int(torch.randint(0, 2**31, (1,)).item())
        if self.generate_on_main:
            return _from_main(self.ctx, self.generator.generate(prompts, cfg, seed=seed) if self.ctx.is_main else None)
        a, b = shard_bounds(len(prompts), self.ctx.world_size)[self.ctx.rank]
        mine = self.generator.generate(prompts[a:b], cfg, seed=shard_seed(seed, self.ctx.rank)) if b > a else []
        return _gather(self.ctx, mine)

    def sequence_logprobs(self, prompt_ids: Sequence[list[int]], response_ids: Sequence[list[int]], *, grad: bool,
                          micro_batch: int, temperature: float = 1.0, with_entropy: bool = False) -> TokenLogprobs:
        if grad:
            raise ValueError("under data parallelism, train with iter_logprob_microbatches (its backward is "
                             "what all-reduces the gradients); sequence_logprobs is for grad=False scoring")
        return super().sequence_logprobs(prompt_ids, response_ids, grad=False, micro_batch=micro_batch,
                                         temperature=temperature, with_entropy=with_entropy)

    def iter_logprob_microbatches(self, prompt_ids: Sequence[list[int]], response_ids: Sequence[list[int]], *,
                                  micro_batch: int, grad: bool = True, temperature: float = 1.0,
                                  with_entropy: bool = False) -> Iterator[LogprobMicroBatch]:
        if not grad:
            yield from super().iter_logprob_microbatches(prompt_ids, response_ids, micro_batch=micro_batch,
                                                         grad=False, temperature=temperature,
                                                         with_entropy=with_entropy)
            return
        if len(prompt_ids) != len(response_ids) or not prompt_ids:
            raise ValueError(f"need equally many prompts and responses, at least one: {len(prompt_ids)}, "
                             f"{len(response_ids)}")
        t_full = max(len(r) for r in response_ids)
        a, b = shard_bounds(len(prompt_ids), self.ctx.world_size)[self.ctx.rank]
        rows = list(range(a, b))
        blank = not rows  # more ranks than rows: score row 0 with a zero mask, to join the all-reduce
        if blank:
            rows = [0]
        # Longest first, as HFPolicy does: less padding, and an out-of-memory shows on the first chunk.
        rows.sort(key=lambda i: -(len(prompt_ids[i]) + len(response_ids[i])))
        chunks = [rows[s:s + micro_batch] for s in range(0, len(rows), micro_batch)]
        for k, chunk in enumerate(chunks):
            last = k == len(chunks) - 1
            # no_sync() must cover the caller's backward, which runs while this generator is suspended.
            ctx = self.ddp.no_sync() if not last else contextlib.nullcontext()
            with ctx:
                (mb,) = self.learner.iter_logprob_microbatches(
                    [prompt_ids[i] for i in chunk], [response_ids[i] for i in chunk], micro_batch=len(chunk),
                    grad=True, temperature=temperature, with_entropy=with_entropy)
                pad = t_full - mb.logprobs.shape[1]
                keep = 0.0 if blank else 1.0
                index = torch.tensor(chunk, dtype=torch.long, device=mb.index.device)[mb.index]  # (G,)
                yield LogprobMicroBatch(
                    index=index,
                    logprobs=F.pad(mb.logprobs * keep, (0, pad)),  # (G, T)
                    mask=F.pad(mb.mask * keep, (0, pad)),  # (G, T)
                    entropy=F.pad(mb.entropy * keep, (0, pad)) if mb.entropy is not None else None,  # (G, T)
                )


class DataParallelPool:
    """``run_many`` for one rank of a data-parallel group (module docstring).

    `pool` is this rank's local :class:`~azr.executor.SandboxPool` (every rank runs its shard), or,
    with ``run_on_main=True``, rank 0's :class:`~azr.distributed.executor.RayExecutorPool` (None on
    the other ranks).
    """

    def __init__(self, pool: Any | None, ctx: DistContext, run_on_main: bool = False):
        if pool is None and not (run_on_main and not ctx.is_main):
            raise ValueError("DataParallelPool needs a pool, except on ranks > 0 when rank 0 runs the jobs")
        self.pool = pool
        self.ctx = ctx
        self.run_on_main = run_on_main

    @property
    def info(self) -> SandboxInfo:
        return self.pool.info if self.pool is not None else SandboxInfo()

    @property
    def config(self) -> Any:
        return self.pool.config if self.pool is not None else None

    def run(self, job: Job) -> ExecResult:
        return self.run_many([job])[0]

    def run_many(self, jobs: Sequence[Job]) -> list[ExecResult]:
        jobs = list(jobs)
        if not jobs:
            return []
        if self.run_on_main:
            return _from_main(self.ctx, self.pool.run_many(jobs) if self.ctx.is_main else None)
        a, b = shard_bounds(len(jobs), self.ctx.world_size)[self.ctx.rank]
        return _gather(self.ctx, self.pool.run_many(jobs[a:b]) if b > a else [])

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
