"""CPU smoke tests of the whole trainer with the tiny random model (preset tiny-test):
every stage runs, weights move, metrics are finite, artefacts exist, and runs resume exactly,
also after a kill -9."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from azr import config as C
from azr.buffers import TaskBuffer
from azr.checkpoint import latest_checkpoint
from azr.metrics import read_metrics
from azr.records import SeedingRound, TaskType
from azr.train import setup, train

STAGES = ("propose", "validate", "learnability", "solve", "reward", "update")


def tiny(tmp_path: Path, steps: int, **run) -> C.TrainConfig:
    cfg = C.tiny_test()
    return dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, out_dir=str(tmp_path), steps=steps, **run))


def weights(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        out.update(load_file(f))
    return out


@pytest.fixture(scope="module")
def two_steps(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("smoke")
    run_dir = train(tiny(tmp, 2))
    return tmp, run_dir


def test_every_stage_ran_and_metrics_are_finite(two_steps):
    _, run_dir = two_steps
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        for stage in STAGES:
            assert r[f"time/{stage}"] > 0, stage
        for k, v in r.items():
            assert v is not None and math.isfinite(v), k
        for t in TaskType:
            assert f"reward/solve/{t}/mean" in r and f"reward/propose/{t}/mean" in r
        assert r["update/sequences"] > 0
        assert r["prompt/length_max"] >= r["prompt/length_mean"] > 0
        # the memory plan set the learner's budget again before each update, from what the process held then
        assert r["memory/update_budget_gib"] > 0 and 0 < r["memory/update_start_rss_gib"] <= r["memory/peak_rss_gib"]


def test_artefacts_exist(two_steps):
    _, run_dir = two_steps
    assert (run_dir / "metrics.jsonl").exists()
    for step in (1, 2):
        lines = (run_dir / "samples" / f"step_{step}.jsonl").read_text().splitlines()
        assert lines and {"prompt", "response", "reward", "type", "role"} <= set(json.loads(lines[0]))
    assert (run_dir / "report" / "index.html").exists()
    meta = json.loads((run_dir / "metadata.json").read_text())
    assert meta["sandbox_layers"]["separate_process"]
    # The host a run's numbers depend on: "auto" dtypes resolve per CPU, and the record says to what.
    assert meta["host"]["cpu_count"] >= 1 and meta["host"]["cpu_capability"]
    assert meta["host"]["gen_dtype"] in ("float32", "bfloat16")
    # seeding logs each round's outcomes: tiny-test proposes 2 per type a round (B*S = 2), so each type's
    # outcomes sum to 2, and the last round's sizes are the seeded buffers'
    rounds = [SeedingRound.from_json(json.loads(x)) for x in (run_dir / "seeding" / "rounds.jsonl").read_text().splitlines()]
    assert [r.tries for r in rounds] == [2 * (i + 1) for i in range(len(rounds))]
    assert all(sum(r.outcomes[t].values()) == 2 for r in rounds for t in TaskType)
    for t in TaskType:
        assert rounds[-1].sizes[t] == len(TaskBuffer.load(run_dir / "seeding" / f"{t}.jsonl", t))


def test_parameters_changed(two_steps):
    from azr.policy import load_policy

    _, run_dir = two_steps
    ckpt = latest_checkpoint(run_dir)
    assert ckpt.name == "step_000002"
    trained = weights(ckpt / "model")
    fresh_dir = run_dir.parent / "fresh"
    load_policy("tiny").save(fresh_dir)
    fresh = weights(fresh_dir)
    assert trained.keys() == fresh.keys()
    assert any(not torch.equal(trained[k], fresh[k]) for k in trained)


def test_resume_continues_at_step_3_with_identical_buffers(two_steps):
    tmp, run_dir = two_steps
    saved = {t: TaskBuffer.load(latest_checkpoint(run_dir) / "buffers" / f"{t}.jsonl", t).tasks for t in TaskType}
    run = setup(tiny(tmp, 3))
    try:
        assert run.state.step == 2 and run.seeded
        assert {t: b.tasks for t, b in run.state.buffers.items()} == saved
    finally:
        run.eng.pool.close()
        run.log.close()
    train(tiny(tmp, 3))
    assert [r["step"] for r in read_metrics(run_dir)] == [1, 2, 3]
    assert latest_checkpoint(run_dir).name == "step_000003"


def test_no_resume_refuses_existing_run(two_steps):
    tmp, _ = two_steps
    with pytest.raises(C.ConfigError, match="already holds a run"):
        setup(tiny(tmp, 3, resume=False))


def _comparable(rows: list[dict]) -> list[dict]:
    """Metrics rows without wall-clock figures (time/*, perf/*) or the process's RSS (memory/*), which no two runs
    share."""
    return [{k: v for k, v in r.items() if not k.startswith(("time/", "perf/", "memory/"))} for r in rows]


def test_killed_and_resumed_run_matches_an_uninterrupted_one_step_for_step(tmp_path, capsys, monkeypatch):
    # "Resume exactly" checked against an independent run, not through the loader on both sides:
    # kill -9 a run after its second checkpoint, resume it, and compare every metric of every step
    # with a run of the same length that was never interrupted.
    killed = tmp_path / "killed"
    cmd = [sys.executable, "-m", "azr.cli", "train", "--preset", "tiny-test", "--run.out-dir", str(killed),
           "--run.steps", "200"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 240
    try:
        while time.time() < deadline:
            ck = latest_checkpoint(killed / "tiny-test")
            if ck is not None and int(ck.name.split("_")[1]) >= 2:
                break
            time.sleep(0.2)
        else:
            pytest.fail("the run never reached its second checkpoint")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    ckpt = latest_checkpoint(killed / "tiny-test")
    steps = int(ckpt.name.split("_")[1]) + 2
    run = setup(tiny(killed, steps))
    try:  # the resumed state is the checkpoint's
        assert run.state.step == steps - 2
        assert {t: b.tasks for t, b in run.state.buffers.items()} == {
            t: TaskBuffer.load(ckpt / "buffers" / f"{t}.jsonl", t).tasks for t in TaskType}
    finally:
        run.close()
    resumed = read_metrics(train(tiny(killed, steps)))
    capsys.readouterr()
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # either would make rich treat the captured stdout as a terminal
        monkeypatch.delenv(var, raising=False)
    straight = read_metrics(train(tiny(tmp_path / "straight", steps)))
    # stdout here is not a terminal, as in `nohup azr train > log`: step 1 gets a plain progress line as it
    # ends (rich alone would draw the bar only once, at the end of the run), and the last step gets one too
    out = capsys.readouterr().out
    assert -1 < out.find(f" · 1/{steps} · ") < out.find(f" · {steps}/{steps} · ")
    assert [r["step"] for r in resumed] == [r["step"] for r in straight] == list(range(1, steps + 1))
    for a, b in zip(_comparable(resumed), _comparable(straight)):
        assert a.keys() == b.keys(), a["step"]
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), (a["step"], k, a[k], b[k])


def test_eval_every_logs_pass_at_1_and_report_plots_it(tmp_path):
    from azr.report import write_report
    from tests.conftest import CRUXEVAL

    cfg = tiny(tmp_path, 1, name="with-eval")
    # Prefixes as typed on a command line (a literal backslash-n): solver turns and eval answers start with
    # them, proposer turns do not.
    cfg = dataclasses.replace(cfg, eval=C.TrainEvalConfig(every=1, limit=3, max_new_tokens=8, data=(str(CRUXEVAL),),
                                                     prompt_style="azr", response_prefix="<answer>\\n"),
                              rollout=dataclasses.replace(cfg.rollout, solve_prefix="<answer>\\n"))
    run_dir = train(cfg)
    samples = [json.loads(line) for line in (run_dir / "samples" / "step_1.jsonl").read_text().splitlines()]
    assert {s["role"] for s in samples} == {"propose", "solve"}
    for s in samples:
        assert s["response"].startswith("<answer>\n") == (s["role"] == "solve")
    step0 = json.loads((run_dir / "eval" / "step_000000.json").read_text())
    responses = [r for suite in step0["suites"] for it in suite["items"] for r in it["responses"]]
    assert responses and all(r.startswith("<answer>\n") for r in responses)
    rows = read_metrics(run_dir)
    assert [r["step"] for r in rows] == [0, 1]
    for r in rows:
        for suite in ("cruxeval-o", "cruxeval-i"):
            assert 0.0 <= r[f"eval/{suite}/pass@1"] <= 1.0
    # The answer format's drift is logged beside pass@1, as each step's report counts it.
    assert [rows[0][f"eval/{s['suite']}/format_error_frac"] for s in step0["suites"]] == \
        [s["format_error_frac"] for s in step0["suites"]]
    assert "time/step" in rows[1] and "time/step" not in rows[0]
    assert sorted(p.name for p in (run_dir / "eval").glob("*.json")) == ["step_000000.json", "step_000001.json"]
    write_report(run_dir)
    assert (run_dir / "report" / "evaluation_pass_1_and_format_errors.png").exists()


@pytest.mark.parametrize("lora", [0, 4], ids=["full", "lora"])
def test_kl_coef_trains_against_a_frozen_reference_and_mini_batches_step_more_than_once(tmp_path, lora):
    cfg = tiny(tmp_path, 2)
    cfg = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, kl_coef=0.5, mini_batches=2),
                              model=dataclasses.replace(cfg.model, lora_rank=lora))
    run = setup(cfg)
    try:  # under LoRA the reference is the policy with its adapters off, not a second model
        assert (type(run.eng.reference).__name__ == "AdaptersOff") == bool(lora)
    finally:
        run.close()
    rows = read_metrics(train(cfg))
    assert [r["step"] for r in rows] == [1, 2]
    assert all(r["update/optimizer_steps"] == 2 for r in rows)
    # The second mini-batch of step 1 already runs on moved weights: a reference that followed the
    # policy (not frozen) would keep the KL at 0.
    assert all(math.isfinite(r["update/kl_ref"]) and r["update/kl_ref"] > 1e-6 for r in rows)


def test_without_proposer_training_only_solves_are_updated_but_proposals_are_still_dumped(tmp_path):
    cfg = tiny(tmp_path, 1, samples_per_step=100)
    cfg = dataclasses.replace(cfg, selfplay=dataclasses.replace(cfg.selfplay, train_proposer=False))
    run_dir = train(cfg)
    (row,) = read_metrics(run_dir)
    samples = [json.loads(line) for line in (run_dir / "samples" / "step_1.jsonl").read_text().splitlines()]
    proposals = [s for s in samples if s["role"] == "propose"]
    solves = [s for s in samples if s["role"] == "solve"]
    assert len(proposals) == len(TaskType) * cfg.selfplay.batch_size == len(solves)
    # Out of the update: no advantage, and the learner saw at most the solver's responses.
    assert all(s["advantage"] is None for s in proposals) and all(s["advantage"] is not None for s in solves)
    assert 0 < row["update/sequences"] <= len(solves)
    assert 0.0 <= row["propose/valid_frac"] <= 1.0  # the proposals are still validated and logged


def test_piped_output_has_a_line_at_each_stage_of_a_step(tmp_path, capsys, monkeypatch):
    """With output that is not a terminal (a log file, a pipe), every stage of every step prints a line as it
    begins, so a step of several minutes never looks like a hang."""
    for var in ("FORCE_COLOR", "TTY_COMPATIBLE"):  # either would make rich treat the captured stdout as a terminal
        monkeypatch.delenv(var, raising=False)
    train(tiny(tmp_path, 2))
    out = capsys.readouterr().out
    for step in (1, 2):
        seen = [line.split(" · ")[1] for line in out.splitlines() if line.startswith(f"step {step}/2 · ")
                and "into the step" in line]
        assert seen == ["propose", "validate", "learnability", "solve", "reward", "update", "metrics"], seen


def test_lora_run_checkpoints_only_its_adapters_and_resumes_exactly(tmp_path, capsys):
    """A LoRA checkpoint holds the adapters and their AdamW state, not the model: a run stopped after step 1 and
    resumed trains on the same adapters, so its step 2 is the uninterrupted run's step 2 figure for figure."""
    pytest.importorskip("peft")

    def lora(out: Path, steps: int) -> C.TrainConfig:
        cfg = tiny(out, steps)
        return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, lora_rank=4))

    straight = read_metrics(train(lora(tmp_path / "straight", 2)))
    train(lora(tmp_path / "resumed", 1))
    ckpt = latest_checkpoint(tmp_path / "resumed" / "tiny-test")
    assert (ckpt / "model" / "adapter" / "adapter_model.safetensors").is_file()
    assert not list((ckpt / "model").glob("*.safetensors"))  # no full weights
    resumed = read_metrics(train(lora(tmp_path / "resumed", 2)))
    capsys.readouterr()
    assert [r["step"] for r in resumed] == [r["step"] for r in straight] == [1, 2]
    for a, b in zip(_comparable(resumed), _comparable(straight)):
        for k in a:
            assert a[k] == pytest.approx(b[k], rel=1e-6, abs=1e-9), (a["step"], k, a[k], b[k])
    # `azr eval` takes the run directory: the base model with the adapters merged in
    from azr.cli import main

    rc = main(["eval", "--model", str(tmp_path / "resumed" / "tiny-test"), "--suite", "cruxeval-o", "--limit", "2",
               "--max-new-tokens", "4", "--out", str(tmp_path / "ev")])
    assert rc == 0 and list((tmp_path / "ev").glob("*.json"))
