"""Ray engines on a local 2-CPU cluster: the executor actor pool against the local pool on CRUXEval, an
actor killed mid-batch, rollout actors against the learner with weight sync, and `azr train --ray`
(2 tiny-test steps) against the single-process run."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time

import pytest
import torch

pytestmark = pytest.mark.ray
ray = pytest.importorskip("ray", reason="needs ray: pip install 'azr[ray]'")

from azr import config as C  # noqa: E402
from azr.distributed.executor import RayExecutorPool  # noqa: E402
from azr.distributed.rollout import RayRolloutPolicy  # noqa: E402
from azr.executor import Job, SandboxConfig, Status, call_expr, validate_many  # noqa: E402
from azr.metrics import read_metrics  # noqa: E402
from azr.policy import GenerationConfig, PolicyConfig, load_policy  # noqa: E402
from azr.train import train  # noqa: E402


def test_azr_train_ray_tiny_test_runs_on_a_private_local_cluster(tmp_path):
    """The command line as the README gives it: `azr train --ray --preset tiny-test` (before `cluster` starts)."""
    cmd = [sys.executable, "-m", "azr.cli", "train", "--ray", "--preset", "tiny-test", "--run.out-dir", str(tmp_path)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    rows = read_metrics(tmp_path / "tiny-test")
    assert [r["step"] for r in rows] == [1, 2]
    engines = json.loads((tmp_path / "tiny-test" / "metadata.json").read_text())["engines"]
    assert engines["ray"] and engines["executor"].startswith("2 Ray executor actors")
    assert not ray.is_initialized()  # the private cluster lived in the child process only


@pytest.fixture(scope="module")
def cluster():
    ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.WARNING)
    yield
    ray.shutdown()


def _key(res):
    return res.status, res.values, res.error


def test_ray_pool_matches_local_pool_on_100_cruxeval_rows(cluster, pool, cruxeval_rows):
    rows = cruxeval_rows[:100]
    jobs = [Job(r["code"], call_expr(r["input"]), repeat=2) for r in rows]
    tasks = [(r["code"], r["input"]) for r in rows]
    with RayExecutorPool(SandboxConfig(workers=1, timeout_s=5), workers=2, cpus_per_worker=0.5, chunk=16) as rpool:
        remote = rpool.run_many(jobs)
        remote_valid = validate_many(rpool, tasks, literal_inputs=False)
        assert rpool.info.layers["separate_process"]
    local = pool.run_many(jobs)
    assert [_key(r) for r in remote] == [_key(r) for r in local]
    assert sum(r.ok for r in remote) == 100
    assert remote_valid == validate_many(pool, tasks, literal_inputs=False)


def test_actor_killed_mid_batch_is_replaced_without_losing_the_batch(cluster):
    code = "import time\ndef f(x):\n    time.sleep(0.15)\n    return x * 2"
    jobs = [Job(code, f"f({i})") for i in range(40)]  # ~3 s over two one-worker actors
    # time.sleep is what makes the batch slow enough to kill mid-way; the run-time ban hook would stop it at once.
    cfg = SandboxConfig(workers=1, timeout_s=5, audit=False)
    with RayExecutorPool(cfg, workers=2, cpus_per_worker=0.5, chunk=4) as rpool:
        pids = rpool.actor_pids()
        out: list = []
        runner = threading.Thread(target=lambda: out.extend(rpool.run_many(jobs)))
        runner.start()
        time.sleep(1.0)
        assert runner.is_alive(), "the batch ended before the kill: nothing was tested"
        os.kill(pids[0], signal.SIGKILL)
        runner.join(timeout=120)
        assert not runner.is_alive()
        assert [r.status for r in out] == [Status.OK] * len(jobs)
        assert [r.value for r in out] == [repr(2 * i) for i in range(len(jobs))]
        assert rpool.replaced == 1
        new_pids = rpool.actor_pids()
        assert new_pids[0] != pids[0] and new_pids[1] == pids[1]


def test_rollout_actor_samples_like_the_learner_and_follows_updates(cluster):
    learner = load_policy("tiny", PolicyConfig(device="cpu", seed=0))
    rollout = RayRolloutPolicy(learner, "tiny", workers=1, cpus=1.0)
    opt = torch.optim.SGD(list(learner.parameters()), lr=5.0)
    opt.register_step_post_hook(lambda *_: rollout.push_weights())  # as build_engines wires it
    prompts = ["def f(x): return x", "f(2) = ?", "abc"]
    gcfg = GenerationConfig(max_new_tokens=12, batch_size=8)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the actor runs one thread: same kernels, same rounding
    try:
        before = rollout.generate(prompts, gcfg, seed=5)
        assert [g.response_ids for g in before] == [g.response_ids for g in learner.generate(prompts, gcfg, seed=5)]
        assert [g.prompt_ids for g in before] == [learner.encode_prompt(p) for p in prompts]

        lp = learner.sequence_logprobs([g.prompt_ids for g in before], [g.response_ids for g in before], grad=True,
                                       micro_batch=4)
        (-(lp.logprobs * lp.mask).sum()).backward()
        opt.step()  # the hook pushes the new weights
        assert rollout.version == 2
        want = learner.export_weights()
        got = rollout.actor_weights()
        assert got.keys() == want.keys()
        assert all(torch.equal(got[k], want[k]) for k in want)
        after = rollout.generate(prompts, gcfg, seed=5)
        assert [g.response_ids for g in after] == [g.response_ids for g in learner.generate(prompts, gcfg, seed=5)]
        assert [g.response_ids for g in after] != [g.response_ids for g in before]
    finally:
        torch.set_num_threads(threads)
        rollout.close()


def _tiny(tmp_path, name: str, **dist) -> C.TrainConfig:
    cfg = C.tiny_test()
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path), name=name, steps=2),
                               dist=dataclasses.replace(cfg.dist, **dist))


def test_train_ray_two_steps_metrics_match_single_process(cluster, tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the rollout actor runs one thread: same kernels, same rounding, same tokens
    try:
        ray_dir = train(_tiny(tmp_path, "ray", ray=True, executor_workers=2, executor_cpus=0.5, rollout_workers=1,
                              rollout_cpus=1.0))
        local_dir = train(_tiny(tmp_path, "local"))
    finally:
        torch.set_num_threads(threads)
    ray_rows, local_rows = read_metrics(ray_dir), read_metrics(local_dir)
    assert [r["step"] for r in ray_rows] == [r["step"] for r in local_rows] == [1, 2]
    for r_ray, r_local in zip(ray_rows, local_rows):
        # the memory plan (and its per-update budget metrics) runs only in a single-process CPU trainer
        plan_only = {k for k in r_local if k.startswith("memory/update_")}
        assert plan_only and set(r_ray) == set(r_local) - plan_only
        assert r_ray["update/sequences"] > 0
        for k, v in r_local.items():  # the same step, value for value; wall-clock figures aside
            if not k.startswith(("time/", "perf/", "memory/")):
                assert r_ray[k] == pytest.approx(v, rel=1e-5, abs=1e-7), (r_local["step"], k, r_ray[k], v)
    meta = (ray_dir / "metadata.json").read_text()
    assert "Ray executor actors" in meta and "Ray rollout actors" in meta


def test_a_request_larger_than_the_cluster_fails_at_start_saying_what_is_missing(cluster):
    from azr.distributed.engines import connect_ray

    with pytest.raises(RuntimeError, match=r"has 2 CPU but the actors need 9 CPU"):
        connect_ray(C.DistConfig(ray=True, executor_workers=8, executor_cpus=1.0, rollout_workers=1))
    assert ray.is_initialized()  # a cluster it did not start is left alone
