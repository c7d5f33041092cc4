"""Wall time and FLOP efficiency of a `cpu`-preset self-play step on the default model, per stage.

Runs seeding (not timed; capped at ``--seed-tries`` generations per type, since only the buffers'
contents matter here), then ``--steps`` steps through ``selfplay_step``, exactly as ``azr train``
does. Stage times are the step's own ``time/*`` laps: propose, learnability, solve and update
(everything inside ``update_stage``: any no-grad old-log-prob or reference pass, the forward with
grad, backward and optimizer steps). ``step_s`` is the whole step (validation, rewards and
metrics included).

The policy is wrapped in a counting proxy (the algorithm code is untouched) that adds up the
matmul FLOPs the step performs (``azr.policy.flops``): prompt tokens actually encoded (after
prefix sharing), decoded tokens with their context, and for the learner every prompt+response
token of each forward, ×3 with a full backward, ×2 with frozen base weights (LoRA). Padding is not
counted: it is waste, not work. ``peak_frac`` = counted FLOPs ÷ (step time × peak), with the peak
measured in this run (before and after the steps; the better) by a plain square matmul in bf16 and
in fp32; the larger one is the peak (on CPUs without native bf16 the bf16 matmul is emulated and far
slower than fp32, so fp32 is what the policy computes there; both are printed). Also prints the learner's tok/s and its own fraction of
the peak, and the process's peak RSS.

    python benchmarks/step_bench.py [--steps 1] [--seed-tries 8] [extra `azr train` flags]
    python benchmarks/step_bench.py --model.lora-rank 16 --optim.lr 1e-4      # measure a LoRA update

The last line is ``step_s=<s> propose_s=<a> learnability_s=<b> solve_s=<c> update_s=<d> peak_frac=<f>``.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import tempfile
import time
from collections import defaultdict

import torch
import tyro

from azr import config as C
from azr.policy.flops import ModelFlops, matmul_peak, model_flops, prefill_ctx_pairs
from azr.selfplay import selfplay_step
from azr.train import seed, setup

FLOPS: dict[str, float] = defaultdict(float)
COUNTS: dict[str, float] = defaultdict(float)
STAGE = {"name": "other"}


class _Counting:
    """Delegates to the policy; adds the FLOPs and seconds of generate and scoring calls to the totals."""

    def __init__(self, inner, mf: ModelFlops, lora: bool):
        self._inner, self._mf, self._bwd = inner, mf, (1.0 if lora else 2.0)

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def generate(self, prompts, cfg, seed=None):
        out = self._inner.generate(prompts, cfg, seed)
        st = getattr(self._inner, "last_generate_stats", None)
        if st is not None and st.prompt_tokens:
            FLOPS["gen"] += self._mf.forward(st.prefill_tokens + st.decode_tokens, st.prefill_rows + st.decode_tokens,
                                             st.prefill_ctx + st.decode_ctx)
            COUNTS["prompt_tokens"] += st.prompt_tokens
            COUNTS["prefill_tokens"] += st.prefill_tokens
            COUNTS["prefill_s"] += st.prefill_s
            COUNTS["decode_s"] += st.decode_s
        COUNTS["generated_tokens"] += sum(len(g.response_ids) for g in out)
        return out

    def _score_flops(self, prompt_ids, response_ids, grad: bool) -> float:
        toks = sum(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
        logits = sum(len(r) for r in response_ids)
        ctx = sum(prefill_ctx_pairs(len(p) + len(r)) for p, r in zip(prompt_ids, response_ids))
        fwd = self._mf.forward(toks, logits, ctx)
        if not grad:
            return fwd
        # Backward: input gradients always (= one forward); weight gradients only for trained weights.
        # Attention has no weights, so its backward is ~2 forwards either way.
        body = self._mf.body * toks + self._mf.head * logits
        return fwd + self._bwd * body + 2 * self._mf.attn_per_ctx * ctx

    def _unshared(self, before: int, grad: bool) -> float:
        """FLOPs of the prompt tokens the learner encoded once for several rows (since `before`): not done, so
        not counted (attention over them is left in: a small overcount)."""
        saved = getattr(self._inner, "learner_shared_tokens", 0) - before
        COUNTS["learner_shared_tokens"] += saved
        return saved * self._mf.body * ((1.0 + self._bwd) if grad else 1.0)

    def sequence_logprobs(self, prompt_ids, response_ids, **kw):
        t0 = time.perf_counter()
        before = getattr(self._inner, "learner_shared_tokens", 0)
        out = self._inner.sequence_logprobs(prompt_ids, response_ids, **kw)
        FLOPS["learner"] += self._score_flops(prompt_ids, response_ids, kw.get("grad", False))
        FLOPS["learner"] -= self._unshared(before, kw.get("grad", False))
        COUNTS["score_tokens"] += sum(len(p) + len(r) for p, r in zip(prompt_ids, response_ids))
        COUNTS["score_s"] += time.perf_counter() - t0
        return out

    def iter_logprob_microbatches(self, prompt_ids, response_ids, **kw):
        grad = kw.get("grad", True)
        it = self._inner.iter_logprob_microbatches(prompt_ids, response_ids, **kw)
        t_start = time.perf_counter()
        before = getattr(self._inner, "learner_shared_tokens", 0)
        # The caller's backward runs between our yields, so time the whole iteration (forward + backward).
        yield from it
        FLOPS["learner"] += self._score_flops(prompt_ids, response_ids, grad) - self._unshared(before, grad)
        COUNTS["train_tokens" if grad else "score_tokens"] += sum(len(p) + len(r) for p, r in zip(prompt_ids,
                                                                                               response_ids))
        COUNTS["train_s" if grad else "score_s"] += time.perf_counter() - t_start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=1)
    ap.add_argument("--preset", default="cpu", choices=sorted(C.PRESETS))
    ap.add_argument("--seed-tries", type=int, default=8, help="seeding generations per type (not timed)")
    ap.add_argument("--engine", default="slots", choices=["slots", "padded"],
                    help="rollout engine: slots (default) or padded (the previous one, for before/after)")
    args, rest = ap.parse_known_args()
    cfg = tyro.cli(C.TrainConfig, default=C.PRESETS[args.preset](), args=rest)
    cfg = dataclasses.replace(
        cfg, run=dataclasses.replace(cfg.run, out_dir=tempfile.mkdtemp(prefix="azr-bench-"), steps=args.steps,
                                     tensorboard=False),
        selfplay=dataclasses.replace(cfg.selfplay, seed_max_tries=args.seed_tries))
    peaks = {dt: matmul_peak(dt, seconds=3.0) for dt in ("bfloat16", "float32")}
    peak_dtype = max(peaks, key=peaks.get)
    peak = peaks[peak_dtype]
    print(f"matmul peak (this run): bf16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s, fp32 {peaks['float32'] / 1e9:.1f}"
          f" GFLOP/s -> peak = {peak_dtype} {peak / 1e9:.1f} GFLOP/s; threads={torch.get_num_threads()}")
    run = setup(cfg)
    from azr.progress import LogProgress

    pol = run.eng.policy
    pol.engine = args.engine
    print(f"model={cfg.model.name} engine={args.engine} lora_rank={cfg.model.lora_rank} "
          f"gen_dtype={pol.config.gen_dtype} "
          f"train_autocast={pol.config.train_autocast} B={cfg.selfplay.batch_size} n={cfg.selfplay.n_mc} "
          f"gen_batch={cfg.rollout.gen_batch_size} micro_batch={cfg.optim.micro_batch} "
          f"mini_batches={cfg.optim.mini_batches}")
    with LogProgress() as progress:
        t0 = time.perf_counter()
        seed(run, progress)
    print(f"seeding: {time.perf_counter() - t0:.1f}s, buffers {[len(b) for b in run.state.buffers.values()]}")
    mf = model_flops(pol.module.config if hasattr(pol.module, "config") else pol.config)
    eng = dataclasses.replace(run.eng, policy=_Counting(pol, mf, cfg.model.lora_rank > 0))
    totals: dict[str, float] = defaultdict(float)
    for i in range(args.steps):
        FLOPS.clear()
        COUNTS.clear()
        t0 = time.perf_counter()
        metrics, _ = selfplay_step(eng, run.state, run.before_stage)
        step_s = time.perf_counter() - t0
        flops = sum(FLOPS.values())
        row = {"step": step_s, **{k: metrics.get(f"time/{k}", 0.0) for k in ("propose", "learnability", "solve",
                                                                             "update")}}
        frac = flops / (step_s * peak)
        learn_s = COUNTS["train_s"] + COUNTS["score_s"]
        learn_frac = FLOPS["learner"] / max(learn_s, 1e-9) / peak
        learn_tok = (COUNTS["train_tokens"] + COUNTS["score_tokens"]) / max(learn_s, 1e-9)
        rss_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
        print(f"step {i + 1}: " + " ".join(f"{k}={v:.1f}s" for k, v in row.items())
              + f" | prompt tok {COUNTS['prompt_tokens']:.0f} (encoded {COUNTS['prefill_tokens']:.0f} in"
              f" {COUNTS['prefill_s']:.1f}s), generated {COUNTS['generated_tokens']:.0f}"
              f" (decode {COUNTS['decode_s']:.1f}s)"
              f" -> {COUNTS['generated_tokens'] / max(row['propose'] + row['learnability'] + row['solve'], 1e-9):.1f}"
              f" gen tok/s over the three rollout stages")
        print(f"  learner: {COUNTS['train_tokens']:.0f} tokens with grad in {COUNTS['train_s']:.1f}s, "
              f"{COUNTS['score_tokens']:.0f} without in {COUNTS['score_s']:.1f}s "
              f"({COUNTS['learner_shared_tokens']:.0f} shared prompt tokens encoded once) -> {learn_tok:.1f} tok/s, "
              f"{FLOPS['learner'] / max(learn_s, 1e-9) / 1e9:.1f} GFLOP/s = {learn_frac:.1%} of peak; "
              f"update sequences {metrics.get('update/sequences', 0):.0f}")
        print(f"  FLOPs: rollouts {FLOPS['gen'] / 1e12:.2f} T, learner {FLOPS['learner'] / 1e12:.2f} T; "
              f"step {flops / 1e12:.2f} TFLOP / ({step_s:.1f}s x {peak / 1e9:.0f} GFLOP/s) = {frac:.1%} of peak; "
              f"peak RSS {rss_gib:.2f} GiB")
        if run.update_memory:
            print(f"  memory: the update began at {run.update_memory['memory/update_start_rss_gib']:.2f} GiB RSS "
                  f"with an activation budget of {run.update_memory['memory/update_budget_gib']:.2f} GiB")
        for k, v in row.items():
            totals[k] += v
        totals["frac"] += frac
    run.eng.pool.close()
    # The machine is shared: measure the peak again after the steps and keep the better of the two.
    late = max(matmul_peak(dt, seconds=3.0) for dt in ("bfloat16", "float32"))
    if late > peak:
        print(f"peak re-measured after the steps: {late / 1e9:.1f} GFLOP/s (was {peak / 1e9:.1f}); fractions rescaled")
        totals["frac"] *= peak / late
    m = {k: v / args.steps for k, v in totals.items()}
    print(f"step_s={m['step']:.1f} propose_s={m['propose']:.1f} learnability_s={m['learnability']:.1f} "
          f"solve_s={m['solve']:.1f} update_s={m['update']:.1f} peak_frac={m['frac']:.3f}")


if __name__ == "__main__":
    main()
