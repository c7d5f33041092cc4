"""`azr train`: build everything, seed the buffers, run self-play steps, checkpoint, report.

A run lives in ``<out_dir>/<name>/``: ``config.json``, ``metadata.json`` (sandbox layers, model
source), ``metrics.jsonl``, ``samples/``, ``seeding/``, ``checkpoints/`` and ``report/``.
Re-running the same command continues the run from its last checkpoint (``--run.no-resume``
refuses to touch an existing run instead); Ctrl-C writes a checkpoint before exiting, and a
``kill -9`` loses at most the steps since the last checkpoint.

Where the work runs is ``azr.distributed.engines.build_engines``'s business (one process, Ray
actors, vLLM); under ``torchrun`` every rank runs this same loop in lock-step and only rank 0
writes the run directory, prints and checkpoints.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import torch

from azr import config as C
from azr.buffers import TaskBuffer
from azr.checkpoint import RngState, latest_checkpoint, load_checkpoint, save_checkpoint, space_warning
from azr.distributed.ddp import DistContext, init_distributed
from azr.distributed.engines import BuiltEngines, build_engines
from azr.heap import GIB, memory_metrics, rss_bytes, set_mmap_threshold
from azr.metrics import MetricsLogger, read_metrics, spread_sample
from azr.records import Rollout, SeedingRound, StepBatch, TaskType
from azr.selfplay import Engines, SelfPlayState, proposal_rollout, seed_buffers, selfplay_step
from azr.tasks import TASK_TYPES

if TYPE_CHECKING:
    from azr.memory import MemoryPlan

SUMMARY_KEYS = (
    "propose/valid_frac", "format_error_frac/all", "propose/learnability/mean",
    *(f"solve/{t}/accuracy" for t in TaskType), "time/step",
)


def host_info(policy) -> dict:
    """What a run's numbers depend on besides its config: the CPU's vector ISA (``"auto"`` dtypes are bf16 only
    where bf16 is native, AVX512-BF16 or AMX, so the same recipe trains in bf16 on one 2-core host and in fp32 on
    another), the cores, the GPU, and the dtypes the policy resolved. Written to metadata.json."""
    cfg = getattr(policy, "config", None)
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "cpu_count": os.cpu_count(),
            "cuda": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "gen_dtype": getattr(cfg, "gen_dtype", None), "train_autocast": getattr(cfg, "train_autocast", None)}


@dataclass
class Run:
    cfg: C.TrainConfig
    dir: Path
    eng: Engines
    state: SelfPlayState
    log: MetricsLogger | None
    """None on data-parallel ranks other than 0: one process writes the metrics."""
    seeded: bool
    eval_items: dict | None = None
    """Items of the fixed eval subset (`--eval-every`), loaded once at setup so bad data fails early."""
    built: BuiltEngines | None = None
    """The engines' owner: closing it stops pools, actors and a Ray it started."""
    dist: DistContext | None = None
    """This process's rank under torchrun; None when it runs alone."""
    saved_step: int | None = None
    """The step of the last checkpoint this process wrote (Ctrl-C right after a save need not save again)."""
    memory: "MemoryPlan | None" = None
    """How the update fits this machine's memory (CPU runs in one process; None elsewhere or when turned off)."""
    update_memory: dict[str, float] = field(default_factory=dict)
    """``memory/update_*`` metrics of the last update's budget (`before_stage`), for the step's row."""

    def before_stage(self, stage: str) -> None:
        """Called as each stage of a step begins. Before the update, the learner's activation budget is set again
        from what the process holds then (`azr.memory.update_budget`): the plan at start cannot see the rollouts'
        heap, so without this `--run.memory-limit-gib` would not hold."""
        if stage != "update" or self.memory is None:
            return
        from azr.memory import optimizer_state_bytes, update_budget
        from azr.policy.hf import LearnerBudget

        # The stage timer has just trimmed the heap (selfplay.Timer): RSS and MemAvailable count what is in use.
        held = rss_bytes()
        budget = update_budget(self.memory, available=trainer_available(self.cfg, held),
                               optimizer_held=optimizer_state_bytes(self.eng.optimizer))
        self.eng.policy.learner_budget = LearnerBudget(budget, self.memory.cost)
        self.update_memory = {"memory/update_start_rss_gib": held / GIB,
                              "memory/update_budget_gib": max(budget, 0.0) / GIB}

    @property
    def is_main(self) -> bool:
        """Whether this process writes the run directory (rank 0, or the only process)."""
        return self.dist is None or self.dist.is_main

    def close(self) -> None:
        if self.built is not None:
            self.built.close()
        if self.log is not None:
            self.log.close()


@contextmanager
def deferred_sigint():
    """Hold Ctrl-C while the weights, buffers and step counter change together, so that a
    checkpoint written on interrupt is always a consistent step boundary."""
    pending = []
    old = signal.signal(signal.SIGINT, lambda *a: pending.append(a))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
        if pending:
            raise KeyboardInterrupt


def _policy_config(cfg: C.TrainConfig, dist: DistContext | None = None):
    from azr.policy import LoraSettings, PolicyConfig

    m = cfg.model
    device = f"cuda:{dist.local_rank}" if dist is not None and m.device.startswith("cuda") else m.device
    return PolicyConfig(device=device, lora=LoraSettings(r=m.lora_rank) if m.lora_rank else None,
                        gradient_checkpointing=m.gradient_checkpointing, seed=cfg.run.seed)


def make_optimizer(params: list[torch.nn.Parameter], optim: C.OptimConfig) -> torch.optim.AdamW:
    """AdamW, with torch's fused kernel where every parameter is a float tensor on CPU or CUDA.

    Why fused: the default multi-tensor step allocates temporaries the size of all parameters. On the
    0.5B default (benchmarks/optimizer_step.py, 2-core AVX-512 host) it raised RSS by 2.2 GiB during the
    step and took 2.2 s; fused adds nothing and takes 0.19 s. (The update's RSS peak is in the backward
    pass, not here; see the `cpu` preset.) Same update rule and state layout, so checkpoints written by
    either kind load into the other (`load_optimizer_state`)."""
    fused = bool(params) and all(p.dtype.is_floating_point and p.device.type in ("cpu", "cuda") for p in params)
    return torch.optim.AdamW(params, lr=optim.lr, weight_decay=optim.weight_decay, fused=fused or None)


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict) -> None:
    """``optimizer.load_state_dict`` that keeps the optimizer's own implementation flags: a state dict
    carries its param groups' ``fused``/``foreach``, so a checkpoint from a multi-tensor AdamW would
    otherwise switch a resumed run back to it (and to its memory spike)."""
    impl = [{k: g[k] for k in ("fused", "foreach") if k in g} for g in optimizer.param_groups]
    optimizer.load_state_dict(state)
    for group, flags in zip(optimizer.param_groups, impl):
        group.update(flags)


def setup(cfg: C.TrainConfig) -> Run:
    from transformers.utils import logging as hf_logging

    from azr.policy import load_policy

    hf_logging.disable_progress_bar()  # our own progress display is the one to watch

    cfg = C.finalize(cfg)
    set_mmap_threshold(cfg.run.mmap_threshold_mib)  # before the model's weights are allocated
    dist = init_distributed(cfg.model.device)
    main = dist is None or dist.is_main
    run_dir = Path(cfg.run.out_dir) / cfg.run.name
    ckpt_path = latest_checkpoint(run_dir)
    if main and run_dir.exists() and any(run_dir.iterdir()) and not cfg.run.resume:
        raise C.ConfigError(f"{run_dir} already holds a run; continue it (drop --run.no-resume) or pick another "
                            f"--run.name")
    ckpt = load_checkpoint(ckpt_path, expect_config=C.to_dict(cfg)) if ckpt_path else None
    if main:
        run_dir.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(cfg.run.seed)
    rng = random.Random(cfg.run.seed)
    policy = load_policy(str(ckpt.model_dir) if ckpt else cfg.model.name, _policy_config(cfg, dist))
    memory = None
    if cfg.run.memory_plan and cfg.model.device == "cpu" and dist is None and not C.uses_ray(cfg):
        memory = fit_memory(policy, cfg)
        cfg = replace(cfg, model=replace(cfg.model, gradient_checkpointing=memory.gradient_checkpointing))
    optimizer = make_optimizer(list(policy.parameters()), cfg.optim)
    n = cfg.selfplay.n_induction_inputs
    buffers = {t: TaskBuffer.seeded(t, n_inputs=n) for t in TaskType}
    step, seeded = 0, False
    if ckpt:
        load_optimizer_state(optimizer, ckpt.trainer_state["optimizer"])
        RngState.from_dict(ckpt.trainer_state["rng"]).restore(rng)
        buffers = {t: TaskBuffer.load(ckpt.buffers_dir / f"{t}.jsonl", t) for t in TaskType}
        step, seeded = ckpt.step, True
    elif (run_dir / "seeding").exists():  # resume an interrupted seeding
        buffers = {t: TaskBuffer.load(run_dir / "seeding" / f"{t}.jsonl", t) if
                   (run_dir / "seeding" / f"{t}.jsonl").exists() else buffers[t] for t in TaskType}
    state = SelfPlayState(step=step, buffers=buffers, rng=rng)
    if main:  # after the memory plan, which may have turned gradient checkpointing on
        (run_dir / "config.json").write_text(json.dumps(C.to_dict(cfg), indent=1))
    eval_items = None
    if cfg.eval.every:
        from azr.eval.runner import load_suite_items

        eval_items = load_suite_items(cfg.eval.suites, cfg.eval.data, cfg.eval.limit, cfg.eval.split)
    reference = kl_reference(cfg, policy, dist) if cfg.optim.uses_kl else None
    built = build_engines(cfg, policy, optimizer, dist, reference)
    log = None
    try:
        pool = built.eng.pool
        if main:
            meta = {"sandbox_layers": pool.info.layers, "sandbox_warnings": list(pool.info.warnings),
                    "model": getattr(policy, "info", None).__dict__ if getattr(policy, "info", None)
                    else cfg.model.name, "torch": torch.__version__, "resumed_from": str(ckpt.path) if ckpt else None,
                    "engines": built.description, "host": host_info(policy)}
            (run_dir / "metadata.json").write_text(json.dumps(meta, indent=1, default=str))
            log = MetricsLogger(run_dir, tensorboard=cfg.run.tensorboard, wandb_project=cfg.run.wandb_project,
                                config=cfg)
            log.truncate_after(step)
    except BaseException:
        built.close()
        raise
    return Run(cfg, run_dir, built.eng, state, log, seeded, eval_items, built, dist, memory=memory)


def longest_prompt(policy, cfg: C.TrainConfig) -> int:
    """Tokens of the longest prompt the run can build: a propose prompt showing K references, each at the
    task-size cap (``selfplay.max_task_tokens``; 768, the paper's cap, where there is none), measured on the
    identity seed's prompt of each type and its response prefix."""
    sp = cfg.selfplay
    cap = sp.max_task_tokens or 768
    longest = 0
    for t, module in TASK_TYPES.items():
        seed = next(iter(TaskBuffer.seeded(t, n_inputs=sp.n_induction_inputs)))
        refs = module.propose_references(lambda: [seed] * sp.k_refs, sp.n_induction_inputs)
        prompt = module.propose_prompt(refs, source=seed, n_inputs=sp.n_induction_inputs)
        longest = max(longest, len(policy.encode_prompt(prompt)))
    prefix = C.unescape(cfg.rollout.propose_prefix)
    return longest + sp.k_refs * cap + len(policy.tokenizer(prefix, add_special_tokens=False)["input_ids"])


def reference_shares_weights(cfg: C.TrainConfig) -> bool:
    """Whether the KL reference is the policy itself with its adapters off (`kl_reference`): LoRA adapters that
    started fresh on a model without adapters of its own."""
    from azr.policy.models import adapter_checkpoint

    return cfg.model.lora_rank > 0 and adapter_checkpoint(cfg.model.name)[0] is None


def kl_reference(cfg: C.TrainConfig, policy, dist: DistContext | None):
    """The KL anchor: the model the run started from, also after a resume. Under LoRA that is the base model, so
    the policy scores it with its adapters off (no second copy of the weights); otherwise a frozen copy is
    loaded from `model.name`."""
    from azr.policy import load_policy
    from azr.policy.hf import AdaptersOff

    if reference_shares_weights(cfg):
        return AdaptersOff(policy)
    reference = load_policy(cfg.model.name, _policy_config(cfg, dist))
    for p in reference.module.parameters():
        p.requires_grad_(False)
    return reference


def trainer_available(cfg: C.TrainConfig, held: float) -> float:
    """Bytes the trainer may still take when it holds `held`: up to `run.memory_limit_gib` in all, else what the
    machine reports free."""
    from azr.memory import available_bytes

    return cfg.run.memory_limit_gib * GIB - held if cfg.run.memory_limit_gib else available_bytes()


def fit_memory(policy, cfg: C.TrainConfig):
    """The memory plan (azr/memory.py) for this run, applied to the policy: its learner cuts micro-batches to the
    plan's activation budget, and gradient checkpointing is on where the plan needs it."""
    from azr.memory import plan_for
    from azr.policy.hf import LearnerBudget

    plan = plan_for(policy, cfg, longest_prompt(policy, cfg), available=trainer_available(cfg, rss_bytes()),
                    reference_copy=cfg.optim.uses_kl and not reference_shares_weights(cfg))
    policy.set_gradient_checkpointing(plan.gradient_checkpointing)
    policy.learner_budget = LearnerBudget(plan.activation_budget, plan.cost)
    return plan


def evaluate_now(run: Run) -> dict[str, float]:
    """Evaluate the current policy on the fixed subset; the report goes to eval/step_N.json and
    the flat ``eval/<suite>/pass@k`` metrics are returned for this step's row."""
    from azr.eval.command import eval_kwargs
    from azr.eval.runner import evaluate, write_report

    report = evaluate(run.eng.policy, run.eng.pool, run.cfg.model.name, run.eval_items,
                      settings=C.to_dict_eval(run.cfg.eval), **eval_kwargs(run.cfg.eval))
    if run.is_main:  # under torchrun every rank evaluates (generation is split), rank 0 writes
        write_report(report, run.dir / "eval" / f"step_{run.state.step:06d}.json")
    return report.metrics()


def dumped_rollouts(batch: StepBatch, cfg: C.TrainConfig) -> tuple[Rollout, ...]:
    """The step's rollouts for samples/step_N.jsonl. Without proposer training the proposals are not in the
    update, but they are still dumped: what an untrained proposer writes is what that ablation is about."""
    if cfg.selfplay.train_proposer:
        return batch.rollouts
    return (*map(proposal_rollout, batch.proposals), *batch.rollouts)


def save(run: Run) -> Path | None:
    """Checkpoint the run (rank 0 only: every rank holds the same weights and state)."""
    if not run.is_main:
        return None
    st = run.state
    # Ctrl-C during a save waits for the save to finish (a second or two), then stops the run as usual: the
    # checkpoint is atomic either way, but a finished one is the step the user will resume from.
    with deferred_sigint():
        path = save_checkpoint(
            run.dir, st.step, save_model=run.eng.policy.save,
            save_buffers=lambda d: [b.save(d / f"{t}.jsonl") for t, b in st.buffers.items()],
            optimizer=run.eng.optimizer, rng=RngState.capture(st.rng), config=C.to_dict(run.cfg),
        )
        run.saved_step = st.step
    return path


def seed(run: Run, progress) -> None:
    """The seeding stage with a progress bar; buffers are saved after every round, and each round's outcomes (how
    many proposals were added, duplicates, and each reason for the others) are appended to seeding/rounds.jsonl.
    At the end one line per task type says where its proposals went."""
    target = run.cfg.selfplay.seed_target
    task = progress.add_task("seeding buffers", total=target * len(TASK_TYPES))
    out = run.dir / "seeding"
    if run.is_main:
        out.mkdir(exist_ok=True)
    rounds: list[SeedingRound] = []

    def show(sizes, tries):
        progress.update(task, completed=sum(min(v, target) for v in sizes.values()),
                        description="seeding " + " ".join(f"{t[:3]}={v}" for t, v in sizes.items()) + f" tries={tries}")

    def on_round(rnd: SeedingRound):
        rounds.append(rnd)
        if run.is_main:
            for t, b in run.state.buffers.items():
                b.save(out / f"{t}.jsonl")
            with open(out / "rounds.jsonl", "a") as f:
                f.write(json.dumps(rnd.to_json()) + "\n")
        show(rnd.sizes, rnd.tries)

    show({t: len(b) for t, b in run.state.buffers.items()}, 0)
    seed_buffers(run.eng, run.state, on_round)
    progress.update(task, completed=target * len(TASK_TYPES))
    if run.is_main and rounds:
        for t, c in SeedingRound.totals(rounds).items():
            progress.console.print(f"seeding {t}: " + ", ".join(f"{k} {v}" for k, v in c.most_common()),
                                   markup=False, highlight=False, soft_wrap=True)


def train(cfg: C.TrainConfig) -> Path:
    from azr.progress import LogProgress, make_console

    console = make_console()
    run = setup(cfg)
    console.quiet = not run.is_main
    cfg = run.cfg
    console.print(f"[bold]azr[/] run [cyan]{run.dir}[/] · model {cfg.model.name} · step {run.state.step}/"
                  f"{cfg.run.steps} · sandbox: {', '.join(k for k, v in run.eng.pool.info.layers.items() if v)}")
    for w in run.eng.pool.info.warnings:
        console.print(f"[yellow]sandbox warning:[/] {w}")
    if run.memory is not None:
        console.print(run.memory.describe())
    _warn_space(run, console)
    try:
        with LogProgress(console=console, transient=False, disable=not run.is_main) as progress:
            if not run.seeded:
                seed(run, progress)
                save(run)
                _warn_space(run, console)
                run.seeded = True
            task = progress.add_task("self-play", total=cfg.run.steps, completed=run.state.step)
            if cfg.eval.every and run.state.step == 0 and not (run.dir / "eval" / "step_000000.json").exists():
                progress.update(task, description="evaluating the model before self-play…")
                base = evaluate_now(run)  # the baseline every later eval is compared with
                if run.log is not None:
                    run.log.log(0, base)
            while run.state.step < cfg.run.steps:
                metrics: dict[str, float] | None = None
                try:
                    with deferred_sigint():
                        metrics, batch = selfplay_step(run.eng, run.state, _stage_reporter(run, progress, task))
                        metrics.update(memory_metrics(), **run.update_memory)
                    if cfg.eval.every and run.state.step % cfg.eval.every == 0:
                        progress.update(task, description=f"evaluating at step {run.state.step}…")
                        metrics.update(evaluate_now(run))
                finally:
                    # A finished step's row is written even when Ctrl-C stops the run right after it (or during
                    # its evaluation): the step is in the checkpoint, so a resumed run will not redo it.
                    if metrics is not None and run.log is not None:
                        run.log.log(run.state.step, metrics)
                        dumped = spread_sample(dumped_rollouts(batch, cfg), cfg.run.samples_per_step)
                        run.log.dump_samples(run.state.step, dumped)
                if run.state.step % cfg.run.save_every == 0 or run.state.step == cfg.run.steps:
                    save(run)
                    _warn_space(run, console)
                progress.update(task, completed=run.state.step, description=_live(metrics))
    except KeyboardInterrupt:
        if run.saved_step != run.state.step:
            console.print(f"[yellow]interrupted at step {run.state.step}: writing a checkpoint…[/]")
            save(run)
        # azr.cli prints this as the command's last line and exits with 130.
        saved = (f"the checkpoint of step {run.saved_step} in {run.dir} is complete: run the same command again to "
                 f"resume" if run.saved_step is not None else "this process wrote no checkpoint")
        raise KeyboardInterrupt(f"interrupted at step {run.state.step}; {saved}") from None
    finally:
        run.close()
    if run.is_main:
        _summary(run, console)
    if run.dist is not None:
        import torch.distributed

        torch.distributed.destroy_process_group()
    return run.dir


def _stage_reporter(run: Run, progress, task) -> Callable[[str], None]:
    """What a step tells the progress display as each stage begins: the bar's text on a terminal, and a plain line
    elsewhere (a log file, a pipe), so that a step of several minutes does not look like a hang."""
    step, t0 = run.state.step + 1, time.monotonic()

    def on_stage(stage: str) -> None:
        run.before_stage(stage)
        text = f"step {step}/{run.cfg.run.steps} · {stage}"
        progress.note(task, f"{text}…", f"{text} · {timedelta(seconds=int(time.monotonic() - t0))} into the step")

    return on_stage


def _warn_space(run: Run, console) -> None:
    if run.is_main and (w := space_warning(run.dir)):
        console.print(f"[yellow]disk warning:[/] {w}")


def _live(m: dict[str, float]) -> str:
    acc = " ".join(f"{t[:3]}={m.get(f'solve/{t}/accuracy', 0):.2f}" for t in TaskType)
    return (f"self-play valid={m.get('propose/valid_frac', 0):.2f} fmt_err={m.get('format_error_frac/all', 0):.2f} "
            f"acc({acc}) {m.get('time/step', 0):.0f}s/step")


def _summary(run: Run, console) -> None:
    from rich.table import Table

    from azr.report import write_report

    rows = read_metrics(run.dir) if (run.dir / "metrics.jsonl").exists() else []  # none yet after 0 steps
    if not rows:
        console.print("no steps were run")
        return
    steps = [r for r in rows if "time/step" in r] or rows  # a step-0 row holds only the baseline eval
    first, last = steps[0], steps[-1]
    table = Table(title=f"What self-play changed (step {first['step']} → {last['step']})")
    for col in ("metric", "first step", "last step"):
        table.add_column(col)
    evals = [r for r in rows if any(k.startswith("eval/") for k in r)]
    eval_keys = sorted({k for r in evals for k in r if k.endswith(("/pass@1", "/format_error_frac"))})
    for k in SUMMARY_KEYS:
        a, b = first.get(k), last.get(k)
        table.add_row(k, "-" if a is None else f"{a:.3f}", "-" if b is None else f"{b:.3f}")
    for k in eval_keys:  # eval rows: the first and the last evaluation
        a, b = evals[0].get(k), evals[-1].get(k)
        table.add_row(k, "-" if a is None else f"{a:.3f}", "-" if b is None else f"{b:.3f}")
    sizes = " ".join(f"{t}={len(b)}" for t, b in run.state.buffers.items())
    console.print(table)
    console.print(f"task buffers: {sizes}")
    index = write_report(run.dir)
    console.print(f"report: [cyan]{index}[/]  (azr report {run.dir} redraws it)")
    t = sum(r.get("time/step", 0) or 0 for r in rows)
    console.print(f"{len(steps)} steps, {t / 60:.1f} min of step time")


def main_train(cfg: C.TrainConfig) -> int:
    t0 = time.time()
    train(cfg)
    print(f"done in {time.time() - t0:.0f}s")
    return 0
