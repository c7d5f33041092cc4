"""The data-parallel learner on CPU (gloo): 2 processes run the real update stage on the tiny model and
must produce the gradient of a single-process step on the same batch; torchrun runs `azr train` end to end."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from azr import config as C
from azr.metrics import read_metrics
from azr.policy import GenerationConfig, PolicyConfig, load_policy
from azr.records import Role, Rollout, StepBatch, TaskType
from azr.selfplay import Engines, update_stage

PROMPTS = ["def f(x): return x + 1", "f(3) = ?", "reverse 'abc'", "sum of [1, 2, 3]", "x" * 40]
ADVANTAGES = [1.0, -0.5, 0.25, -1.5, 0.75]
CASES = {"five_rows": 5, "one_row": 1}
"""Rows in the batch: 5 split 3/2 over two ranks, micro-batch 2 (ranks run 2 and 1 micro-batches);
1 leaves rank 1 without a row (it must still join the all-reduce)."""


def _cfg() -> C.TrainConfig:
    cfg = C.tiny_test()
    # No clipping (the delta is then exactly -lr * gradient) and an entropy bonus, as in tiny-test.
    return dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, micro_batch=2, max_grad_norm=1e9,
                                                              entropy_coef=0.01))


def _update(policy_factory, n_rows: int) -> tuple[dict[str, torch.Tensor], dict[str, float]]:
    """One real update_stage on a fixed batch; returns (weight delta per parameter, update metrics)."""
    learner = load_policy("tiny", PolicyConfig(device="cpu", train_autocast=None, seed=0))
    gens = learner.generate(PROMPTS[:n_rows], GenerationConfig(max_new_tokens=12, batch_size=8), seed=7)
    rollouts = tuple(Rollout(prompt=g.prompt, response=g.response, type=TaskType.DEDUCTION, role=Role.SOLVE,
                             reward=0.0, format_ok=True, advantage=a) for g, a in zip(gens, ADVANTAGES))
    before = {n: p.detach().clone() for n, p in learner.module.named_parameters()}
    policy = policy_factory(learner)
    opt = torch.optim.SGD(list(learner.parameters()), lr=1.0)
    metrics = update_stage(Engines(policy, None, opt, _cfg()), StepBatch(step=0, rollouts=rollouts), gens)
    delta = {n: p.detach() - before[n] for n, p in learner.module.named_parameters()}
    return delta, metrics


def _rank_main(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist

    from azr.distributed.ddp import DataParallelPolicy, DistContext

    torch.set_num_threads(1)
    # Loopback only: gloo otherwise picks the interface of the hostname, which on a busy VM has aborted a rank
    # ("terminate called without an active exception") once in a full-suite run.
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    ctx = DistContext(rank=rank, world_size=world, local_rank=rank, backend="gloo")
    try:
        for name, n in CASES.items():
            delta, metrics = _update(lambda learner: DataParallelPolicy(learner, ctx), n)
            torch.save({"delta": delta, "metrics": metrics}, Path(out) / f"{name}_rank{rank}.pt")
        dist.barrier()  # neither rank tears the group down while the other still talks to it
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ddp")
    mp.start_processes(_rank_main, args=(2, str(tmp / "store"), str(tmp)), nprocs=2, join=True,
                       start_method="spawn")
    return {f"{name}_rank{r}": torch.load(tmp / f"{name}_rank{r}.pt") for name in CASES for r in range(2)}


@pytest.mark.parametrize("case", list(CASES))
def test_ddp_gradients_match_single_process(ddp_results, case):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        single, single_metrics = _update(lambda learner: learner, CASES[case])
    finally:
        torch.set_num_threads(threads)
    r0, r1 = ddp_results[f"{case}_rank0"], ddp_results[f"{case}_rank1"]
    assert single.keys() == r0["delta"].keys()
    scale = max(float(v.abs().max()) for v in single.values())
    assert scale > 0, "the step did not move the weights: nothing was compared"
    for name, want in single.items():
        # Ranks hold bit-identical weights: the same summed gradient and the same optimizer step.
        assert torch.equal(r0["delta"][name], r1["delta"][name]), name
        torch.testing.assert_close(r0["delta"][name], want, rtol=1e-4, atol=1e-6 * scale, msg=name)
    for key in ("update/grad_norm", "update/sequences", "update/tokens"):
        assert r0["metrics"][key] == pytest.approx(single_metrics[key], rel=1e-4), key


def test_torchrun_two_ranks_train_tiny_test(tmp_path):
    """`torchrun --nproc-per-node 2 -m azr.cli train` on CPU: rank 0 writes the run, the ranks agree."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "azr.cli", "train", "--preset", "tiny-test", "--run.out-dir", str(tmp_path), "--run.steps", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=420)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = tmp_path / "tiny-test"
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[-1]["update/sequences"] > 0
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["engines"]["world_size"] == 2
    assert (run_dir / "checkpoints").exists()
