"""Run infrastructure without a model: config validation, metrics JSONL, complexity metrics,
atomic checkpoints (corrupt and mismatched ones included) and the report."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from azr import config as C
from azr.checkpoint import CheckpointError, RngState, latest_checkpoint, load_checkpoint, save_checkpoint
from azr.complexity import ast_edit_distance, batch_complexity, distinct_fraction, program_complexity
from azr.metrics import MetricsLogger, read_metrics
from azr.report import write_comparison, write_report


@pytest.mark.parametrize("name", sorted(C.PRESETS))
def test_presets_are_valid(name):
    if name == "paper" and not torch.cuda.is_available():
        with pytest.raises(ValueError, match="no CUDA GPU"):
            C.finalize(C.PRESETS[name]())
    else:
        assert C.finalize(C.PRESETS[name]()) is not None


@pytest.mark.parametrize("change,msg", [
    (lambda c: C.SelfPlayConfig(batch_size=0), "batch_size"),
    (lambda c: C.SelfPlayConfig(n_induction_inputs=5), "even"),
    (lambda c: C.SelfPlayConfig(k_refs=0), "k_refs"),
])
def test_bad_config_errors_say_how_to_fix(change, msg):
    import dataclasses

    cfg = dataclasses.replace(C.cpu(), selfplay=change(None))
    with pytest.raises(ValueError, match=msg):
        C.finalize(cfg)


@pytest.mark.parametrize("optim,msg", [
    ({"mini_batches": 0}, "mini_batches must be >= 1"),
    ({"clip_eps_high": 0.0}, "clip_eps_high must be > 0"),
    ({"kl_coef": -0.1}, "kl_coef"),
])
def test_bad_optim_config_errors(optim, msg):
    import dataclasses

    cfg = C.cpu()
    with pytest.raises(ValueError, match=msg):
        C.finalize(dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, **optim)))


def test_paper_preset_matches_the_reference_update():
    op = C.paper().optim
    # 64 per type and role x 6 groups = 384 responses, mini-batch 128 -> 3 optimizer steps; clip 0.2 / 0.28
    assert C.paper().selfplay.batch_size * 6 / op.mini_batches == 128
    assert (op.clip_eps, op.clip_eps_high, op.kl_coef) == (0.2, 0.28, 0.0)
    assert C.paper().rollout.propose_prefix == C.paper().rollout.solve_prefix == ""  # the <think> format


def test_response_prefixes_typed_with_backslash_n_become_newlines():
    import dataclasses

    cfg = C.tiny_test()
    ro = dataclasses.replace(cfg.rollout, solve_prefix="<answer>\\n", propose_prefix="a\\nb")
    cfg = dataclasses.replace(cfg, rollout=ro, eval=dataclasses.replace(cfg.eval, response_prefix="<answer>\\n"))
    out = C.finalize(cfg)
    got = (out.rollout.solve_prefix, out.rollout.propose_prefix, out.eval.response_prefix)
    assert got == ("<answer>\n", "a\nb", "<answer>\n")
    assert C.finalize(out) == out  # idempotent, so a resumed run's config compares equal
    assert C.finalize_eval(C.EvalConfig(response_prefix="<answer>\\n")).response_prefix == "<answer>\n"


def test_cpu_recipe_trains_lora_adapters_against_the_base_and_quick_is_the_same_learner():
    """The recipe chosen on the CRUXEval dev split (docs/RESULTS.md §4e): LoRA r16 at lr 1e-4 with KL 0.3 to the
    base, 4 induction inputs, the update planned for 12 GiB; the README's main job scales it down, same learner."""
    cpu, quick = C.finalize(C.cpu()), C.finalize(C.quick())
    assert (cpu.model.lora_rank, cpu.optim.lr, cpu.optim.kl_coef, cpu.optim.mini_batches) == (16, 1e-4, 0.3, 1)
    assert cpu.optim.uses_kl and cpu.selfplay.n_induction_inputs == 4 and cpu.run.memory_limit_gib == 12.0
    assert (quick.model, quick.optim, quick.rollout) == (cpu.model, cpu.optim, cpu.rollout)
    assert quick.selfplay.n_mc == 2 and quick.run.steps == 3


def test_config_dict_roundtrip():
    cfg = C.tiny_test()
    assert C.from_dict(json.loads(json.dumps(C.to_dict(cfg)))) == cfg


def test_complexity_by_hand():
    c = program_complexity("def f(x):\n    if x:\n        return 1\n    return 2")
    assert c.cyclomatic == 2.0  # one branch
    # Module FunctionDef arguments arg If Name Load Return Constant Return Constant
    assert c.ast_nodes == 11
    assert program_complexity("def f(:") is None
    assert ast_edit_distance("def f(x):\n    return x", "def f(x):\n    return x") == 0
    assert ast_edit_distance("def f(x):\n    return x", "def f(y):\n    return y") == 2  # two relabels
    assert distinct_fraction(["a", "a ", "b", "c"]) == 0.75
    assert batch_complexity(["bad("]) == {}


def test_metrics_jsonl_and_truncate(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 5):
        log.log(step, {"reward/solve/deduction/mean": step / 10, "bad": float("nan")})
    log.truncate_after(2)
    rows = read_metrics(tmp_path)
    assert [r["step"] for r in rows] == [1, 2]
    assert rows[0]["bad"] is None and rows[1]["reward/solve/deduction/mean"] == 0.2


def _save(run_dir: Path, step: int, **kw):
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.ones(1, 2)).sum().backward()
    opt.step()
    return save_checkpoint(
        run_dir, step,
        save_model=lambda d: (d.mkdir(), torch.save(model.state_dict(), d / "w.pt")),
        save_buffers=lambda d: (d / "deduction.jsonl").write_text("{}\n"),
        optimizer=opt, rng=RngState.capture(random.Random(1)),
        config=kw.get("config", C.to_dict(C.tiny_test())),
    )


def test_spread_sample_takes_every_group_round_robin():
    from azr.metrics import spread_sample
    from azr.records import Role, Rollout, TaskType

    def ro(t, role, i):
        return Rollout(prompt=str(i), response="", type=t, role=role, reward=-1.0, format_ok=False)

    batch = ([ro(TaskType.DEDUCTION, Role.PROPOSE, i) for i in range(4)] + [ro(TaskType.ABDUCTION, Role.PROPOSE, 9)]
             + [ro(TaskType.DEDUCTION, Role.SOLVE, i) for i in range(3)])
    got = [(r.type, r.role, r.prompt) for r in spread_sample(batch, 5)]
    assert got == [(TaskType.DEDUCTION, Role.PROPOSE, "0"), (TaskType.ABDUCTION, Role.PROPOSE, "9"),
                   (TaskType.DEDUCTION, Role.SOLVE, "0"), (TaskType.DEDUCTION, Role.PROPOSE, "1"),
                   (TaskType.DEDUCTION, Role.SOLVE, "1")]
    assert len(spread_sample(batch, 100)) == len(batch) and spread_sample([], 3) == []


def test_checkpoint_roundtrip_and_keep(tmp_path):
    for step in (1, 2, 3):
        _save(tmp_path, step)
    assert latest_checkpoint(tmp_path).name == "step_000003"
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("step_*")) == ["step_000002", "step_000003"]
    ck = load_checkpoint(latest_checkpoint(tmp_path), expect_config=C.to_dict(C.tiny_test()))
    assert ck.step == 3 and "optimizer" in ck.trainer_state
    py = random.Random(0)
    RngState.from_dict(ck.trainer_state["rng"]).restore(py)
    assert py.random() == random.Random(1).random()


def test_space_warning_by_hand(tmp_path, monkeypatch):
    """The warning compares the free space with the latest checkpoint's size (+5 %); the disk is faked."""
    from collections import namedtuple

    from azr import checkpoint

    assert checkpoint.space_warning(tmp_path) is None  # no checkpoint yet: nothing to measure
    _save(tmp_path, 1)
    need = sum(f.stat().st_size for f in latest_checkpoint(tmp_path).rglob("*") if f.is_file())
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage(0, 0, int(need * 1.05) + 1))
    assert checkpoint.space_warning(tmp_path) is None
    monkeypatch.setattr(checkpoint.shutil, "disk_usage", lambda p: usage(0, 0, need))
    w = checkpoint.space_warning(tmp_path)
    assert "the next save will fail (disk full)" in w and f"{need / 1e6:.1f} MB" in w


def test_checkpoint_mismatch_is_clear(tmp_path):
    _save(tmp_path, 1)
    other = C.to_dict(C.cpu())
    with pytest.raises(CheckpointError, match="model.name"):
        load_checkpoint(latest_checkpoint(tmp_path), expect_config=other)


@pytest.mark.parametrize("damage", ["meta", "trainer", "missing"])
def test_corrupt_checkpoint_is_clear(tmp_path, damage):
    path = _save(tmp_path, 1)
    if damage == "meta":
        (path / "meta.json").write_text("{not json")
    elif damage == "trainer":
        (path / "trainer.pt").write_bytes(b"garbage")
    else:
        (path / "meta.json").unlink()
    with pytest.raises(CheckpointError, match=str(path.name)):
        load_checkpoint(path)


def test_failed_save_keeps_previous(tmp_path):
    _save(tmp_path, 1)

    def broken(d):
        raise OSError(28, "No space left on device")

    with pytest.raises(CheckpointError, match="disk full"):
        save_checkpoint(tmp_path, 2, save_model=broken, save_buffers=lambda d: None,
                        optimizer=torch.optim.SGD(torch.nn.Linear(1, 1).parameters(), lr=0.1),
                        rng=RngState.capture(random.Random()), config={})
    assert latest_checkpoint(tmp_path).name == "step_000001"
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))


def test_report_writes_pngs_and_html(tmp_path):
    log = MetricsLogger(tmp_path, tensorboard=False)
    for step in range(1, 4):
        log.log(step, {"reward/solve/deduction/mean": 0.1 * step, "propose/valid_frac": 0.5, "time/step": 3.0})
    log.dump_samples(3, [{"type": "deduction", "role": "solve", "reward": 1.0, "prompt": "p<", "response": "r&"}])
    index = write_report(tmp_path)
    text = index.read_text()
    assert "data:image/png;base64," in text and "r&amp;" in text
    assert len(list((tmp_path / "report").glob("*.png"))) == 3


def _fake_run(d, accs):
    log = MetricsLogger(d, tensorboard=False)
    for step, acc in enumerate(accs, 1):
        log.log(step, {"solve/deduction/accuracy": acc, "time/step": 2.0 * step})
    return d


def test_report_compares_runs_with_hand_computed_summary(tmp_path):
    a = _fake_run(tmp_path / "recipe", [0.0, 0.5, 1.0, 1.0, 1.0, 1.0])
    b = _fake_run(tmp_path / "ablation", [0.0, 0.0, 0.25])
    MetricsLogger(b, tensorboard=False).log(0, {"eval/cruxeval-o/pass@1": 0.2})  # the eval before self-play: no step
    index = write_comparison([a, b], tmp_path / "cmp")
    summary = json.loads((tmp_path / "cmp" / "summary.json").read_text())
    # last 5 of [0, .5, 1, 1, 1, 1] -> mean .9; all 3 of [0, 0, .25] -> .25/3
    assert summary["recipe"]["solve/deduction/accuracy (last 5)"] == pytest.approx(0.9)
    assert summary["ablation"]["solve/deduction/accuracy (last 5)"] == pytest.approx(0.25 / 3)
    assert summary["recipe"]["time/step mean"] == pytest.approx(7.0)  # 2*(1+..+6)/6
    assert summary["ablation"]["steps"] == 3
    assert summary["recipe"]["propose/valid_frac (last 5)"] is None  # not logged: no made-up zero
    assert (tmp_path / "cmp" / "comparison.png").stat().st_size > 1000
    assert "data:image/png;base64," in index.read_text() and "ablation" in index.read_text()


def test_report_cli_compares_and_rejects_bad_use(tmp_path, capsys):
    from azr.cli import main

    a = _fake_run(tmp_path / "a", [0.0, 1.0])
    b = _fake_run(tmp_path / "b", [1.0, 1.0])
    assert main(["report", str(a), str(b), "--out", str(tmp_path / "cmp")]) == 0
    assert (tmp_path / "cmp" / "index.html").exists()
    capsys.readouterr()
    assert main(["report", str(a), "--out", str(tmp_path / "x")]) == 2  # a usage error
    assert "two or more runs" in capsys.readouterr().err
    assert main(["report", str(a), str(tmp_path / "missing"), "--out", str(tmp_path / "y")]) == 1
    assert "no metrics.jsonl" in capsys.readouterr().err
    # --help is help, not a run directory called "--help"
    assert main(["report", "--help"]) == 0
    assert "azr report RUN_DIR" in capsys.readouterr().out and not (Path.cwd() / "--help").exists()


def test_curriculum_by_hand():
    from azr.report import curriculum

    rows = [{"step": s, "propose/valid_frac": v, "propose/learnability/nonzero_frac": n, "complexity/ast_nodes": a,
             "complexity/halstead_volume": h, "propose/duplicate_frac": d, "time/step": 60.0,
             "buffer/deduction/size": 3 + s, "buffer/abduction/size": 2, "buffer/induction/size": 1}
            for s, v, n, a, h, d in [(1, 0.5, 0.0, 10, 1, 0.5), (2, 0.25, 0.2, 20, 2, 0.0), (3, 1.0, 0.5, 30, 6, 0.25)]]
    c = curriculum([{"step": 0, "eval/cruxeval-o/pass@1": 0.2}] + rows)  # the eval before self-play is no step
    assert c.steps == 3 and c.step_s == 180.0 and c.valid_every_step
    assert c.valid_frac_first_last == (0.5, 1.0) and c.buffers == {"deduction": 6, "abduction": 2, "induction": 1}
    assert c.learnability_nonzero_steps == pytest.approx(2 / 3)
    assert c.ast_nodes_first_last == (10, 30) and c.halstead_first_last == (1, 6)  # thirds of 3 steps: 1 each
    assert c.duplicate_frac_mean == pytest.approx(0.25)
    assert c.own_inputs_frac is None  # no step had a valid induction proposal
    rows[0]["propose/induction/own_inputs_frac"], rows[2]["propose/induction/own_inputs_frac"] = 0.0, 0.5
    assert curriculum(rows).own_inputs_frac == pytest.approx(0.25)
    rows[1]["propose/valid_frac"] = 0.0
    assert not curriculum(rows).valid_every_step
    with pytest.raises(ValueError, match="no steps"):
        curriculum([])
    with pytest.raises(ValueError, match="no steps"):
        curriculum([{"step": 0, "eval/cruxeval-o/pass@1": 0.2}])


def _progress_output(*, terminal: bool, every_s: float, steps: int, disable: bool = False) -> str:
    import io

    from rich.console import Console

    from azr.progress import LogProgress

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=terminal, width=120)
    with LogProgress(console=console, every_s=every_s, disable=disable) as progress:
        task = progress.add_task("suite", total=steps)
        for _ in range(steps):
            progress.advance(task)
        progress.update(task, completed=steps)  # a finished task prints its line once, not again
    return buf.getvalue()


def test_progress_in_a_log_file_prints_throttled_plain_lines():
    out = _progress_output(terminal=False, every_s=3600, steps=5)
    # the first advance, then the finish; the three in between fall inside the hour-long throttle
    assert [line.split(" · ")[:2] for line in out.splitlines() if " · " in line] == [["suite", "1/5"], ["suite", "5/5"]]
    every = _progress_output(terminal=False, every_s=0, steps=5)
    assert [line.split(" · ")[1] for line in every.splitlines() if " · " in line] == ["1/5", "2/5", "3/5", "4/5", "5/5"]


def test_progress_on_a_terminal_or_disabled_prints_no_plain_lines():
    assert " · 1/5 · " not in _progress_output(terminal=True, every_s=0, steps=5)
    assert _progress_output(terminal=False, every_s=0, steps=5, disable=True) == ""


def test_a_log_file_gets_tables_wide_enough_for_model_names(monkeypatch, capsys):
    from rich.table import Table

    from azr.progress import make_console

    for var in ("COLUMNS", "FORCE_COLOR", "TTY_COMPATIBLE"):
        monkeypatch.delenv(var, raising=False)
    console = make_console()  # stdout is captured here: a file, as under nohup
    assert console.width >= 120
    table = Table()
    for col in ("model", "suite", "style", "items", "n", "pass@1", "pass@k", "format err", "wall"):
        table.add_column(col)
    table.add_row("cpu-recipe-s0-step_000015", "cruxeval-o", "native", "600", "1", "0.213", "-", "0.10", "1988s")
    console.print(table)
    out = capsys.readouterr().out
    assert "cpu-recipe-s0-step_000015" in out and "cruxeval-o" in out
    monkeypatch.setenv("COLUMNS", "90")
    assert make_console().width == 90  # the user's choice stands


def test_make_optimizer_is_fused_on_cpu_and_loads_either_kinds_state():
    """The trainer's AdamW uses the fused kernel (no step temporaries the size of the model), and an
    optimizer state written by the default multi-tensor AdamW (checkpoints from before) loads into it and
    gives the same next step."""
    from azr.train import load_optimizer_state, make_optimizer

    def model_and_grad():
        torch.manual_seed(0)
        m = torch.nn.Linear(4, 3)
        m(torch.ones(2, 4)).square().sum().backward()
        return m

    old_model = model_and_grad()
    old = torch.optim.AdamW(old_model.parameters(), lr=0.1)
    old.step()
    state = old.state_dict()

    new_model = model_and_grad()
    new = make_optimizer(list(new_model.parameters()), C.OptimConfig(lr=0.1))
    assert new.defaults["fused"] is True
    new.step()
    load_optimizer_state(new, state)
    assert new.param_groups[0]["fused"] is True  # the state dict said fused=None; the resumed run stays fused
    with torch.no_grad():
        for a, b in zip(new_model.parameters(), old_model.parameters()):
            a.copy_(b)
    old.step()
    new.step()
    for a, b in zip(new_model.parameters(), old_model.parameters()):
        torch.testing.assert_close(a, b)


def test_make_optimizer_falls_back_where_there_is_no_fused_kernel():
    """Parameters on a device without a fused AdamW kernel get torch's default implementation, not an error."""
    from azr.train import make_optimizer

    meta = torch.nn.Parameter(torch.zeros(2, device="meta"))
    assert make_optimizer([meta], C.OptimConfig()).defaults["fused"] is None


def test_rng_state_of_an_older_checkpoint_with_a_numpy_state_loads():
    """Older checkpoints also saved an (undrawn) numpy generator; they still resume, with the same Python draws."""
    old = {"python": random.Random(1).getstate(), "numpy": np.random.default_rng(1).bit_generator.state,
           "torch": torch.get_rng_state()}
    py = random.Random(0)
    RngState.from_dict(old).restore(py)
    assert py.random() == random.Random(1).random()
