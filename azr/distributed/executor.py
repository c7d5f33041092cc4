"""The executor as a pool of Ray actors, each holding a sandbox pool: ``run_many`` over a cluster.

:class:`RayExecutorPool` has the interface the stages use of :class:`~azr.executor.SandboxPool`
(``run_many(jobs)`` with results in job order, ``run``, ``info``, ``config``, ``close``), so
``validate_many``, the checkers and the task modules run on it unchanged.

How a batch runs. The jobs are cut into contiguous chunks (at most ``chunk`` jobs, and small
enough that every actor gets work); each actor has at most two chunks in flight, so the next one
is already queued when it finishes one, and faster actors take more chunks. Inside an actor the
chunk goes to its own ``SandboxPool``, which forks one jailed child per job exactly as in one
process: every isolation layer applies on every node.

Failures. If an actor dies (its process is killed, its node goes away), Ray fails every call
queued on it with ``RayActorError``; the pool starts a replacement actor in the same slot and
resubmits those chunks, so the batch completes with every result. A chunk that has already
lost two actors is given up: its jobs come back as ``Status.KILLED`` (as ``SandboxPool`` does
for a job that killed two workers), which keeps a poisoned chunk from looping forever.
"""

from __future__ import annotations

import math
import os
from collections import deque
from dataclasses import dataclass
from typing import Any, Sequence

from azr.distributed import require_ray
from azr.executor import ExecResult, Job, SandboxConfig, SandboxInfo, SandboxPool, Status


class ExecutorActor:
    """One executor worker: a :class:`SandboxPool` in its own process (made a Ray actor by the pool).

    Plain class so that it imports nothing heavy: an executor process never loads torch.
    """

    def __init__(self, config: SandboxConfig):
        self.pool = SandboxPool(config)

    def info(self) -> SandboxInfo:
        return self.pool.info

    def run_many(self, jobs: Sequence[Job]) -> list[ExecResult]:
        return self.pool.run_many(jobs)

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.pool.close()


@dataclass(frozen=True)
class _Chunk:
    start: int
    stop: int


class RayExecutorPool:
    """``SandboxPool.run_many`` over ``workers`` Ray actors; see the module docstring.

    Needs a connected Ray (``ray.init`` done by the caller). ``cpus_per_worker`` is the Ray CPU
    reservation of each actor; its sandbox pool runs ``config.workers`` workers (0 = one per
    reserved CPU, at least one). Actors are spread over the cluster's nodes.
    """

    MAX_INFLIGHT = 2
    """Chunks queued per actor: one running, one waiting, so an actor never idles between chunks."""
    MAX_ATTEMPTS = 2
    """Actors a chunk may lose before its jobs are reported as killed."""

    def __init__(self, config: SandboxConfig | None = None, workers: int = 2, cpus_per_worker: float = 1.0,
                 chunk: int = 64, start_timeout_s: float = 300.0):
        if workers < 1 or chunk < 1:
            raise ValueError(f"RayExecutorPool needs workers >= 1 and chunk >= 1, got {workers}, {chunk}")
        ray = require_ray()
        if not ray.is_initialized():
            raise RuntimeError("RayExecutorPool needs a running Ray: call ray.init() (or ray.init(address='auto')) "
                               "first")
        self._ray = ray
        config = config or SandboxConfig()
        if config.workers == 0:  # a pool sized to the actor's reservation, not to the node
            from dataclasses import replace

            config = replace(config, workers=max(1, round(cpus_per_worker)))
        self.config = config
        self.chunk = chunk
        self.replaced = 0
        """Actors replaced after dying, over the pool's life (monitoring and tests)."""
        self._remote = ray.remote(ExecutorActor).options(num_cpus=cpus_per_worker, max_restarts=0,
                                                         scheduling_strategy="SPREAD")
        self._actors = [self._remote.remote(config) for _ in range(workers)]
        try:
            infos = ray.get([a.info.remote() for a in self._actors], timeout=start_timeout_s)
        except ray.exceptions.GetTimeoutError:
            self.close()
            raise RuntimeError(f"executor actors did not start within {start_timeout_s:.0f}s: the cluster lacks "
                               f"{workers} x {cpus_per_worker} free CPUs (see `ray status`); lower "
                               f"--dist.executor-workers or --dist.executor-cpus") from None
        self.info = _merge_info(infos)
        self._closed = False

    @property
    def workers(self) -> int:
        return len(self._actors)

    def actor_pids(self) -> list[int]:
        """Process ids of the current actors (for monitoring, and for tests that kill one)."""
        return self._ray.get([a.pid.remote() for a in self._actors])

    def run(self, job: Job) -> ExecResult:
        return self.run_many([job])[0]

    def run_many(self, jobs: Sequence[Job]) -> list[ExecResult]:
        """Run all jobs over the actors; results come back in the order of `jobs`."""
        if self._closed:
            raise RuntimeError("RayExecutorPool is closed")
        jobs = list(jobs)
        if not jobs:
            return []
        ray = self._ray
        size = max(1, min(self.chunk, math.ceil(len(jobs) / len(self._actors))))
        chunks = [_Chunk(s, min(s + size, len(jobs))) for s in range(0, len(jobs), size)]
        pending = deque(range(len(chunks)))
        attempts = [0] * len(chunks)
        results: list[ExecResult | None] = [None] * len(jobs)
        inflight: dict[Any, tuple[int, int, Any]] = {}  # ref -> (chunk, actor slot, actor handle)
        load = [0] * len(self._actors)
        while pending or inflight:
            for slot in range(len(self._actors)):
                while pending and load[slot] < self.MAX_INFLIGHT:
                    ci = pending.popleft()
                    attempts[ci] += 1
                    actor = self._actors[slot]
                    ref = actor.run_many.remote(jobs[chunks[ci].start:chunks[ci].stop])
                    inflight[ref] = (ci, slot, actor)
                    load[slot] += 1
            ready, _ = ray.wait(list(inflight), num_returns=1)
            for ref in ready:
                ci, slot, actor = inflight.pop(ref)
                load[slot] -= 1
                c = chunks[ci]
                try:
                    results[c.start:c.stop] = ray.get(ref)
                except ray.exceptions.RayActorError:
                    if self._actors[slot] is actor:  # the first of this actor's lost calls replaces it
                        self._replace(slot)
                    if attempts[ci] >= self.MAX_ATTEMPTS:
                        results[c.start:c.stop] = [ExecResult(Status.KILLED, None, "executor actor died twice "
                                                              "running this chunk")] * (c.stop - c.start)
                    else:
                        pending.appendleft(ci)
        return results  # type: ignore[return-value]

    def _replace(self, slot: int) -> None:
        dead = self._actors[slot]
        self._ray.kill(dead)  # already dead, or unreachable: make sure it stays gone
        self._actors[slot] = self._remote.remote(self.config)
        self.replaced += 1

    def close(self) -> None:
        """Stop the actors (their sandbox pools clean up their workers and temp dirs)."""
        self._closed = True
        ray = self._ray
        try:
            ray.get([a.close.remote() for a in self._actors], timeout=30)
        except Exception:  # noqa: BLE001 - a dead or stuck actor must not block shutdown
            pass
        for a in self._actors:
            ray.kill(a)
        self._actors = []

    def __enter__(self) -> "RayExecutorPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _merge_info(infos: Sequence[SandboxInfo]) -> SandboxInfo:
    """One SandboxInfo for the pool: a layer counts as on only if it is on in every actor."""
    layers = {k: all(i.layers.get(k, False) for i in infos) for k in infos[0].layers}
    warnings = tuple(dict.fromkeys(w for i in infos for w in i.warnings))
    return SandboxInfo(layers=layers, warnings=warnings)

