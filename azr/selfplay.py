"""One self-play step of Absolute Zero (SPEC §1), and the seeding that precedes training.

``selfplay_step`` reads top to bottom: propose → validate → learnability → solve → reward →
advantages → update → grow buffers. Each stage is one named function here; task-type specifics
live in ``azr.tasks`` (reached through the ``TASK_TYPES`` registry), equations in
``azr.rewards`` / ``azr.advantages`` / ``azr.loss``. Generation is batched across the six
groups (one ``generate`` call per stage) and execution is batched per task type.

This module never imports ray or vllm: the distributed trainer calls the same stages.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from statistics import fmean, pstdev
from typing import Callable, NamedTuple, Sequence

import torch

from azr import heap, rewards
from azr.advantages import assign_advantages, global_advantages, trr_advantages
from azr.buffers import TaskBuffer, seed_task
from azr.complexity import batch_complexity, distinct_fraction, mean_edit_distance_to_refs
from azr.config import TrainConfig
from azr.executor import InvalidReason, SandboxPool, Validation
from azr.loss import ppo_clip_loss
from azr.policy import Generation, GenerationConfig, Policy, Scorer
from azr.records import Candidate, FormatError, Proposal, Role, Rollout, SeedingRound, StepBatch, Task, TaskType
from azr.tasks import TASK_TYPES
from azr.tasks.base import is_trivial, task_text
from azr.tasks.induction import seed_input_share

BASELINES = {"trr++": trr_advantages, "global": global_advantages}
"""Advantage estimators by config name: TRR++ (per group) and the one-baseline ablation."""


@dataclass
class SelfPlayState:
    """Everything a step mutates, and everything a checkpoint must hold besides the weights."""

    step: int
    buffers: dict[TaskType, TaskBuffer]
    rng: random.Random
    """The one RNG of every draw a step makes (references, programs, splits, fills, generation seeds)."""


@dataclass(frozen=True)
class Engines:
    """What the stages run on. The distributed trainer passes adapters with the same methods."""

    policy: Policy
    pool: SandboxPool
    optimizer: torch.optim.Optimizer
    cfg: TrainConfig
    reference: Scorer | None = None
    """The frozen starting policy for the KL penalty; None unless `optim.uses_kl`."""


@dataclass(frozen=True)
class Solutions:
    """The solver's answers to a list of tasks: one entry of each field per task, in the tasks' order."""

    tasks: list[Task]
    format_ok: list[bool]
    """Whether the answer parsed (a format error earns the format penalty)."""
    correct: list[bool]
    generations: list[Generation]


class Sample(NamedTuple):
    """A rollout and the tokens it was generated with (the update needs both)."""

    rollout: Rollout
    generation: Generation


def _quiet(stage: str) -> None:
    pass


@dataclass
class Timer:
    """Wall time and peak RSS per stage, for the ``time/*`` and ``memory/stage_peak_gib/*`` metrics: the kernel's
    high-water mark is reset as each stage begins, so a stage's peak is its own, not the step's so far.
    ``on_stage(name)`` hears each stage as it begins (the trainer's progress display).

    Each stage also begins with the heap trimmed (`heap.trim`). glibc keeps what a stage frees: after an update
    the heap held ~3 GiB of the learner's freed activations, and the next step's rollouts peaked on top of it
    (14.2 GiB in the solve stage of a `cpu` preset run whose update stayed at 12.5 GiB)."""

    on_stage: Callable[[str], None] = _quiet
    seconds: dict[str, float] = field(default_factory=dict)
    peak_bytes: dict[str, int] = field(default_factory=dict)
    """Per stage, the highest RSS while it ran; empty where the kernel cannot reset the mark."""
    _stage: str | None = None
    _t: float = field(default_factory=time.perf_counter)
    _peaks_ok: bool = False

    def start(self, stage: str) -> None:
        """End the running stage, if any, and begin `stage`."""
        self.stop()
        self._stage = stage
        heap.trim()  # before the mark is reset: the stage's peak starts from what is in use
        self._peaks_ok = heap.reset_peak()
        self.on_stage(stage)

    def stop(self) -> None:
        now = time.perf_counter()
        if self._stage is not None:
            self.seconds[self._stage] = self.seconds.get(self._stage, 0.0) + now - self._t
            if self._peaks_ok:
                self.peak_bytes[self._stage] = max(self.peak_bytes.get(self._stage, 0), heap.peak_since_reset_bytes())
        self._stage, self._t = None, now


# -- generation helpers ---------------------------------------------------------------------
def _generate(eng: Engines, prompts: Sequence[str], max_new_tokens: int, seed: int, prefix: str) -> list[Generation]:
    ro = eng.cfg.rollout
    gcfg = GenerationConfig(max_new_tokens=max_new_tokens, temperature=ro.temperature, top_p=ro.top_p,
                            batch_size=ro.gen_batch_size, response_prefix=prefix,
                            stop=("</answer>",) if ro.stop_at_answer else ())
    return eng.policy.generate(list(prompts), gcfg, seed=seed) if prompts else []


def _step_seed(state: SelfPlayState) -> int:
    return state.rng.randrange(2**31)


# -- stages ---------------------------------------------------------------------------------
def propose_stage(eng: Engines, state: SelfPlayState, per_type: int) -> tuple[list[Proposal], list[Generation]]:
    """SPEC §1 step 1: `per_type` proposals per task type, conditioned on K references (and,
    for induction, a task sampled from the deduction+abduction buffers: its program and one call)."""
    sp = eng.cfg.selfplay
    plans = []  # (type, references, source task)
    for ttype, module in TASK_TYPES.items():
        # The 'no references' ablation still shows the fixed seed: the format needs an example.
        def draw(t: TaskType = ttype) -> list[Task]:
            return state.buffers[t].sample_references(sp.k_refs, state.rng) if sp.use_references else [seed_task(t)]
        for source in module.propose_sources(state.buffers, per_type, state.rng):
            refs = module.propose_references(draw, sp.n_induction_inputs)
            plans.append((ttype, tuple(refs), source))
    prompts = [TASK_TYPES[t].propose_prompt(refs, source=src, n_inputs=sp.n_induction_inputs)
               for t, refs, src in plans]
    gens = _generate(eng, prompts, eng.cfg.rollout.max_new_tokens_propose, _step_seed(state),
                     eng.cfg.rollout.propose_prefix)
    proposals = [
        Proposal(type=t, prompt=p, response=g.response, references=refs,
                 parsed=TASK_TYPES[t].parse_proposal(g.response, program=src.program if src else None,
                                                     n_inputs=sp.n_induction_inputs, strip_comments=sp.strip_comments))
        for (t, refs, src), p, g in zip(plans, prompts, gens)
    ]
    return proposals, gens


def validate_stage(eng: Engines, state: SelfPlayState, proposals: Sequence[Proposal]) -> list[Proposal]:
    """SPEC §1 step 2: validate every parsed proposal; one executor batch per task type. With
    `selfplay.reject_copies`, copies of the shown references are rejected first (``copied``). Then a valid
    task longer than `selfplay.max_task_tokens` is rejected as ``too_long`` (as the reference drops
    prompts over its length limit): one long task would make every later prompt that shows it long."""
    out = reject_copies(proposals) if eng.cfg.selfplay.reject_copies else list(proposals)
    for ttype, module in TASK_TYPES.items():
        idx = [i for i, p in enumerate(out) if p.type is ttype and p.validation is None]
        for i, p in zip(idx, module.validate(eng.pool, [out[i] for i in idx], state.rng)):
            out[i] = p
    return cap_task_size(eng.policy, out, eng.cfg.selfplay.max_task_tokens)


def reject_copies(proposals: Sequence[Proposal]) -> list[Proposal]:
    """Parsed proposals that repeat the references their prompt showed (each type's ``copies`` rule) become
    invalid (``InvalidReason.COPIED``) before any execution; the others pass unchanged."""
    out = []
    for p in proposals:
        why = TASK_TYPES[p.type].copies(p.parsed, p.references) if isinstance(p.parsed, Candidate) else None
        out.append(replace(p, validation=Validation(InvalidReason.COPIED, detail=why)) if why else p)
    return out


def cap_task_size(policy: Policy, proposals: Sequence[Proposal], max_tokens: int) -> list[Proposal]:
    """Valid proposals whose task text (``task_text``) exceeds `max_tokens` tokens become invalid
    (``InvalidReason.TOO_LONG``); 0 disables the cap. Tokens are counted with the policy's own
    tokenizer, less the chat template's fixed tokens."""
    if not max_tokens or not any(p.valid for p in proposals):
        return list(proposals)
    overhead = len(policy.encode_prompt(""))
    out = []
    for p in proposals:
        n = len(policy.encode_prompt(task_text(p.task))) - overhead if p.task is not None else 0
        if n > max_tokens:
            p = replace(p, task=None, validation=Validation(InvalidReason.TOO_LONG,
                                                            detail=f"{n} tokens, over the cap of {max_tokens}"))
        out.append(p)
    return out


def solve_many(eng: Engines, state: SelfPlayState, tasks: Sequence[Task]) -> Solutions:
    """Answer each task once; generation is batched across all task types, checking per type."""
    prompts = [TASK_TYPES[t.type].solve_prompt(t) for t in tasks]
    gens = _generate(eng, prompts, eng.cfg.rollout.max_new_tokens_solve, _step_seed(state),
                     eng.cfg.rollout.solve_prefix)
    answers = [TASK_TYPES[t.type].parse_answer(g.response) for t, g in zip(tasks, gens)]
    correct = [False] * len(tasks)
    for ttype, module in TASK_TYPES.items():
        idx = [i for i, t in enumerate(tasks) if t.type is ttype]
        for i, ok in zip(idx, module.check(eng.pool, [tasks[i] for i in idx], [answers[i] for i in idx])):
            correct[i] = ok
    return Solutions(list(tasks), [not isinstance(a, FormatError) for a in answers], correct, gens)


def learnability_stage(eng: Engines, state: SelfPlayState, proposals: Sequence[Proposal]) -> list[Proposal]:
    """SPEC §1 step 3: r̄ = mean accuracy of n Monte-Carlo solves of each valid proposal."""
    n = eng.cfg.selfplay.n_mc
    valid = [i for i, p in enumerate(proposals) if p.valid]
    correct = solve_many(eng, state, [proposals[i].task for i in valid for _ in range(n)]).correct
    out = list(proposals)
    for j, i in enumerate(valid):
        out[i] = replace(proposals[i], solve_rate=rewards.solve_rate(correct[j * n:(j + 1) * n]))
    return out


def solve_stage(eng: Engines, state: SelfPlayState, proposals: Sequence[Proposal]) -> Solutions:
    """SPEC §1 step 4: each type's B solve tasks are its valid proposals, topped up from its
    buffer (step 2); the solver answers each once."""
    b = eng.cfg.selfplay.batch_size
    tasks = [task for ttype in TASK_TYPES
             for task in state.buffers[ttype].fill([p.task for p in proposals if p.valid and p.type is ttype], b,
                                                   state.rng)]
    return solve_many(eng, state, tasks)


def proposal_rollout(p: Proposal) -> Rollout:
    """A proposal as a proposer rollout, with its composite reward (SPEC §1 step 5)."""
    return Rollout(prompt=p.prompt, response=p.response, type=p.type, role=Role.PROPOSE,
                   reward=rewards.propose_reward(p.valid, p.solve_rate), format_ok=p.valid, error=p.error, task=p.task)


def reward_stage(eng: Engines, proposals: Sequence[Proposal], propose_gens: Sequence[Generation],
                 solved: Solutions) -> list[Sample]:
    """SPEC §1 step 5: composite rewards for proposer and solver responses."""
    samples = []
    if eng.cfg.selfplay.train_proposer:
        samples += [Sample(proposal_rollout(p), g) for p, g in zip(proposals, propose_gens)]
    for t, fmt, ok, g in zip(solved.tasks, solved.format_ok, solved.correct, solved.generations):
        samples.append(Sample(Rollout(prompt=g.prompt, response=g.response, type=t.type, role=Role.SOLVE,
                                      reward=rewards.solve_reward(fmt, ok), format_ok=fmt, task=t), g))
    return samples


def advantage_stage(eng: Engines, state: SelfPlayState, samples: Sequence[Sample],
                    proposals: Sequence[Proposal], tasks: Sequence[Task]) -> tuple[StepBatch, list[Generation]]:
    """SPEC §1 step 6: TRR++ advantages, normalised within each (task type, role) group (each response
    weighing its token count with `selfplay.token_weighted`)."""
    batch = StepBatch(step=state.step, rollouts=tuple(s.rollout for s in samples), proposals=tuple(proposals),
                      solve_tasks=tuple(tasks))
    counts = [len(s.generation.response_ids) for s in samples] if eng.cfg.selfplay.token_weighted else None
    return (assign_advantages(batch, BASELINES[eng.cfg.selfplay.baseline], token_counts=counts),
            [s.generation for s in samples])


def update_stage(eng: Engines, batch: StepBatch, gens: Sequence[Generation]) -> dict[str, float]:
    """SPEC §1 step 6: one PPO epoch over the step's responses, split into `optim.mini_batches`
    optimizer steps, with gradient accumulated over micro-batches inside each.

    π_old is the policy that sampled the batch: its log-probs are taken by the learner in one
    no-grad pass before the first optimizer step (with a single mini-batch they equal the
    detached current log-probs, so that pass is skipped). Mini-batches interleave the rollouts
    (row i goes to part i mod M), so every part mixes roles and task types. The loss of a part is
    its token mean over **all** its response tokens, zero-advantage rollouts included; those carry
    no gradient without an entropy bonus or KL, so their forward passes are skipped.
    """
    op = eng.cfg.optim
    needs_all = op.entropy_coef > 0 or op.uses_kl
    rows = [i for i, g in enumerate(gens) if g.response_ids]
    live = [i for i in rows if batch.rollouts[i].advantage or needs_all]
    parts = [rows[k::op.mini_batches] for k in range(op.mini_batches)]
    empty = {"update/grad_norm": 0.0, "update/pg_loss": 0.0, "update/clip_frac": 0.0, "update/approx_kl": 0.0,
             "update/sequences": 0.0, "update/tokens": 0.0, "update/optimizer_steps": 0.0}
    if not live:
        return empty
    where = {row: j for j, row in enumerate(live)}  # batch row -> row of the no-grad passes below
    old = _score(eng.policy, live, gens, eng.cfg) if op.mini_batches > 1 else None  # (L, T)
    ref = _score(eng.reference, live, gens, eng.cfg) if op.uses_kl and eng.reference else None  # (L, T)
    stats, norms = [], []
    for part in parts:
        train_rows = [i for i in part if i in where]
        if not train_rows:
            continue
        n_tok = sum(len(gens[i].response_ids) for i in part)
        adv = torch.tensor([batch.rollouts[i].advantage for i in train_rows], dtype=torch.float32)  # (G,)
        eng.optimizer.zero_grad(set_to_none=True)
        for mb in eng.policy.iter_logprob_microbatches(
            [gens[i].prompt_ids for i in train_rows], [gens[i].response_ids for i in train_rows],
            micro_batch=op.micro_batch, grad=True, temperature=eng.cfg.rollout.temperature,
            with_entropy=op.entropy_coef > 0,
        ):
            idx = mb.index.cpu()
            src = torch.tensor([where[train_rows[j]] for j in idx.tolist()])  # (g,) rows of old/ref
            t = mb.logprobs.shape[1]
            old_mb = old[src, :t].to(mb.logprobs.device) if old is not None else mb.logprobs.detach()  # (g, T)
            ref_mb = ref[src, :t].to(mb.logprobs.device) if ref is not None else None  # (g, T)
            loss, st = ppo_clip_loss(mb.logprobs, old_mb, adv[idx].to(mb.logprobs.device), mb.mask,
                                     clip_eps=op.clip_eps, clip_eps_high=op.clip_eps_high, ref_logprobs=ref_mb,
                                     kl_coef=op.kl_coef, entropy=mb.entropy, entropy_coef=op.entropy_coef,
                                     num_tokens_total=n_tok)
            loss.backward()
            stats.append(st)
        norms.append(float(torch.nn.utils.clip_grad_norm_(list(eng.policy.parameters()), op.max_grad_norm)))
        eng.optimizer.step()
    eng.optimizer.zero_grad(set_to_none=True)
    tok = sum(st.num_tokens for st in stats) or 1

    def tmean(field: str) -> float:
        return sum(getattr(st, field) * st.num_tokens for st in stats) / tok

    out = {**empty, "update/grad_norm": fmean(norms), "update/pg_loss": tmean("pg_loss"),
           "update/clip_frac": tmean("clip_fraction"), "update/approx_kl": tmean("approx_kl"),
           "update/sequences": float(len(live)), "update/tokens": float(sum(len(gens[i].response_ids) for i in rows)),
           "update/optimizer_steps": float(len(norms))}
    if ref is not None:
        out["update/kl_ref"] = tmean("kl_ref")
    return out


def _score(policy: Scorer, rows: Sequence[int], gens: Sequence[Generation], cfg: TrainConfig) -> torch.Tensor:
    """(len(rows), T) no-grad log-probs of the given rollouts under `policy`, in `rows` order."""
    return policy.sequence_logprobs([gens[i].prompt_ids for i in rows], [gens[i].response_ids for i in rows],
                                    grad=False, micro_batch=cfg.optim.micro_batch,
                                    temperature=cfg.rollout.temperature).logprobs.detach().cpu()  # (L, T)


def grow_buffers_stage(state: SelfPlayState, proposals: Sequence[Proposal]) -> dict[str, float]:
    """SPEC §1 step 7: valid proposals join their type's buffer (deduplicated). Also measures
    the valid proposals that were already there (``propose/duplicate_frac``, often a verbatim
    copy of a reference) and the trivial ones (``propose/trivial_frac``, see ``is_trivial``),
    as fractions of the valid proposals."""
    added = Counter()
    valid = [p for p in proposals if p.task is not None]
    for p in valid:
        if state.buffers[p.type].add(p.task):
            added[p.type] += 1
    out = {f"buffer/{t}/added": float(added[t]) for t in TASK_TYPES}
    if valid:
        out["propose/duplicate_frac"] = 1.0 - sum(added.values()) / len(valid)
        out["propose/trivial_frac"] = fmean(is_trivial(p.task) for p in valid)
    return out


# -- the step -------------------------------------------------------------------------------
def selfplay_step(eng: Engines, state: SelfPlayState, on_stage: Callable[[str], None] = _quiet
                  ) -> tuple[dict[str, float], StepBatch]:
    """One step of Algorithm 1. Returns the step's flat metrics and its batch (for samples).
    `on_stage` is called with each stage's name as it begins."""
    timer = Timer(on_stage)
    timer.start("propose")
    proposals, propose_gens = propose_stage(eng, state, eng.cfg.selfplay.batch_size)
    timer.start("validate")
    proposals = validate_stage(eng, state, proposals)
    timer.start("learnability")
    proposals = learnability_stage(eng, state, proposals)
    timer.start("solve")
    solved = solve_stage(eng, state, proposals)
    timer.start("reward")
    samples = reward_stage(eng, proposals, propose_gens, solved)
    batch, gens = advantage_stage(eng, state, samples, proposals, solved.tasks)
    timer.start("update")
    update = update_stage(eng, batch, gens)
    timer.start("metrics")
    grown = grow_buffers_stage(state, proposals)
    metrics = {**step_metrics(batch, gens, state), **update, **grown}
    timer.stop()
    metrics.update({f"time/{k}": v for k, v in timer.seconds.items()})
    metrics.update({f"memory/stage_peak_gib/{k}": v / heap.GIB for k, v in timer.peak_bytes.items()})
    metrics["time/step"] = sum(timer.seconds.values())
    gen_tokens = sum(len(g.response_ids) for g in propose_gens + solved.generations)
    metrics["perf/tokens_per_s"] = gen_tokens / max(1e-9, timer.seconds["propose"] + timer.seconds["solve"])
    state.step += 1
    return metrics, batch


# -- metrics --------------------------------------------------------------------------------
def step_metrics(batch: StepBatch, gens: Sequence[Generation], state: SelfPlayState) -> dict[str, float]:
    """SPEC §4: rewards per group, proposer validity and reasons, learnability, accuracy,
    format errors, prompt and response lengths (tokens), buffer sizes, complexity and diversity of new programs."""
    m: dict[str, float] = {}
    for ttype in TASK_TYPES:
        for role in Role:
            rs = [r.reward for r in batch.group(ttype, role)]
            if rs:
                m[f"reward/{role}/{ttype}/mean"] = fmean(rs)
                m[f"reward/{role}/{ttype}/std"] = pstdev(rs)
                m[f"format_error_frac/{role}/{ttype}"] = fmean(not r.format_ok for r in batch.group(ttype, role))
        solves = batch.group(ttype, Role.SOLVE)
        if solves:
            m[f"solve/{ttype}/accuracy"] = fmean(r.reward == 1.0 for r in solves)
        m[f"buffer/{ttype}/size"] = float(len(state.buffers[ttype]))
    props = batch.proposals
    if props:
        m["propose/valid_frac"] = fmean(p.valid for p in props)
        for ttype in TASK_TYPES:
            mine = [p.valid for p in props if p.type is ttype]
            if mine:
                m[f"propose/{ttype}/valid_frac"] = fmean(mine)
        m["propose/format_ok_frac"] = fmean(p.format_ok for p in props)
        induced = [p.task for p in props if p.valid and p.type is TaskType.INDUCTION]
        if induced:  # the identity seed's ten inputs fit any one-argument f, and proposers re-list them
            m["propose/induction/own_inputs_frac"] = fmean(seed_input_share(t) < 0.5 for t in induced)
        reasons = Counter(str(p.validation.reason) for p in props if p.validation is not None and not p.validation.ok)
        for reason, count in reasons.items():
            m[f"propose/invalid/{reason}"] = float(count)
        rates = [p.solve_rate for p in props if p.solve_rate is not None]
        if rates:
            learn = [rewards.learnability(r) for r in rates]
            m["propose/learnability/mean"] = fmean(learn)
            m["propose/learnability/nonzero_frac"] = fmean(x > 0 for x in learn)
            m["propose/solve_rate/mean"] = fmean(rates)
    new_programs = [p.task.program for p in props if p.task is not None]
    m.update(batch_complexity(new_programs))
    if new_programs:
        m["diversity/distinct_frac"] = distinct_fraction(new_programs)
        dist = mean_edit_distance_to_refs([(p.task.program, [r.program for r in p.references])
                                           for p in props if p.task is not None])
        if dist is not None:
            m["diversity/ast_edit_distance"] = dist
    lengths = [len(g.response_ids) for g in gens]
    if lengths:
        m["response/length_mean"] = fmean(lengths)
        m["response/truncated_frac"] = fmean(not g.finished for g in gens)
        m["prompt/length_mean"] = fmean(len(g.prompt_ids) for g in gens)
        m["prompt/length_max"] = float(max(len(g.prompt_ids) for g in gens))  # bounded through max_task_tokens
    m["format_error_frac/all"] = fmean(not r.format_ok for r in batch.rollouts) if batch.rollouts else 0.0
    return m


# -- seeding --------------------------------------------------------------------------------
def round_outcomes(proposals: Sequence[Proposal], before: dict[TaskType, int], after: dict[TaskType, int]
                   ) -> dict[TaskType, dict[str, int]]:
    """How one round's proposals ended, per type: counts of `Proposal.outcome`, with its `valid`
    split into `added` (buffer size after − before) and `duplicate` (valid − added)."""
    out: dict[TaskType, dict[str, int]] = {}
    for ttype in TASK_TYPES:
        counts = Counter(p.outcome for p in proposals if p.type is ttype)
        valid = counts.pop("valid", 0)
        added = after[ttype] - before[ttype]
        counts.update({"added": added, "duplicate": valid - added})
        out[ttype] = {k: v for k, v in sorted(counts.items()) if v}
    return out


def seed_buffers(eng: Engines, state: SelfPlayState, on_round: Callable[[SeedingRound], None]) -> int:
    """SPEC §1 Seeding: propose from the identity triplet until every buffer holds B×S tasks besides
    its seed (``seed_target``), or after `seed_max_tries` generations per type. Resumable: it only
    tops up what the buffers still lack. `on_round` gets each round's outcomes (why proposals
    failed, not only how many buffers grew). Returns generations used."""
    sp = eng.cfg.selfplay
    tries = 0
    per_round = max(1, min(eng.cfg.rollout.gen_batch_size // 3, sp.seed_target - 1))
    sizes = {t: len(state.buffers[t]) for t in TASK_TYPES}
    while tries < sp.seed_max_tries and any(sizes[t] < sp.seed_target for t in TASK_TYPES):
        proposals, _ = propose_stage(eng, state, per_round)
        proposals = validate_stage(eng, state, proposals)
        grow_buffers_stage(state, proposals)
        tries += per_round
        before, sizes = sizes, {t: len(state.buffers[t]) for t in TASK_TYPES}
        on_round(SeedingRound(tries=tries, sizes=sizes, outcomes=round_outcomes(proposals, before, sizes)))
    return tries
