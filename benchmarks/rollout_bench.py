"""Rollout throughput on the default model: ``Policy.generate`` against plain ``model.generate`` and
llama.cpp, on self-play propose prompts, in one run.

The workload is what the proposer sees: deduction and abduction propose prompts (instructions,
rules and K=6 reference tasks drawn from a fixed pool of small programs, ~600-900 tokens each),
sampled at T = 1 with no top-p/top-k, up to ``--max-new-tokens`` tokens. Generated tok/s =
response tokens ÷ the wall time of the whole call (prompt encoding included, as in a step).

* **ours**: ``HFPolicy.generate`` (slot engine: continuous batching, shared prefixes encoded once)
  at each ``--batches`` size; also its prefill alone (``max_new_tokens=1``, prefix sharing off) on
  ``--prefill-prompts`` prompts, reported as prompt tok/s and as a fraction of the matmul peak.
* **padded** (``--padded``): the previous engine (length-sorted left-padded batches, finished
  rows dropped) on the same weights, for the before/after table.
* **hf**: one batched ``model.generate`` call per ``--hf-batch`` prompts (left padding) on the
  policy's generation weights, sampling with the same settings.
* **llama.cpp**: llama-cpp-python (optional: ``pip install 'azr[llama]'``, or put a built copy on
  ``PYTHONPATH``) on the same GGUF file and the same token ids, ``--llama-seqs`` sequences decoded
  together in one unified KV cache, finished ones refilled with the next prompt. Sampling at T=1
  in torch from its logits. Skipped, with ``llama_cpp_tok_per_s=nan``, when not installed.

Also prints the matmul peak measured in this run (bf16 and fp32; the larger is "peak": on CPUs
without native bf16 the bf16 matmul is emulated and far slower than fp32). The last line is::

    best_tok_per_s=<x> hf_generate_tok_per_s=<y> llama_cpp_tok_per_s=<z>

Usage::

    python benchmarks/rollout_bench.py                                   # default model, 32 prompts
    python benchmarks/rollout_bench.py --model tiny --prompts 4 --max-new-tokens 8 --no-llama  # smoke
"""

from __future__ import annotations

import argparse
import ast
import ctypes
import os
import random
import time
from dataclasses import dataclass

import torch

from azr.policy import GenerationConfig, PolicyConfig, load_policy
from azr.policy.flops import matmul_peak, model_flops, prefill_ctx_pairs
from azr.records import Task, TaskType
from azr.tasks import TASK_TYPES

QWEN_GGUF = "/work/qwen/qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

# Small programs with one input each: the reference pool for propose prompts (outputs computed below).
_POOL = [
    ("def f(x):\n    return x * 3 + 1", "4"),
    ("def f(s):\n    return s[::-1].upper()", "'abc'"),
    ("def f(nums):\n    return sorted(set(nums))[:3]", "[5, 1, 5, 3, 2]"),
    ("def f(a, b):\n    return a * b - a", "3, 7"),
    ("def f(d):\n    return {v: k for k, v in d.items()}", "{'a': 1, 'b': 2}"),
    ("def f(n):\n    total = 0\n    for i in range(n):\n        if i % 3 == 0:\n"
     "            total += i\n    return total", "10"),
    ("def f(text):\n    words = text.split()\n    return ' '.join(w.capitalize() for w in words)", "'hello big world'"),
    ("def f(xs):\n    out = []\n    for x in xs:\n        out.append(x * x if x % 2 else -x)\n    return out",
     "[1, 2, 3, 4]"),
    ("def f(s, c):\n    return s.count(c) + len(s)", "'banana', 'a'"),
    ("def f(m):\n    return [row[::-1] for row in m]", "[[1, 2], [3, 4]]"),
    ("def f(n):\n    a, b = 0, 1\n    for _ in range(n):\n        a, b = b, a + b\n    return a", "12"),
    ("def f(s):\n    return ''.join(ch for ch in s if ch not in 'aeiou')", "'education'"),
]


def _run(program: str, inp: str) -> str:
    env: dict = {}
    exec(program, env)  # trusted, fixed programs of this file only
    return repr(env["f"](*ast.literal_eval(f"({inp},)")))


def make_prompts(n: int, seed: int = 0) -> list[str]:
    """`n` propose prompts alternating deduction/abduction, each with 6 references from the pool."""
    rng = random.Random(seed)
    tasks = {t: [Task(t, p, (i,), (_run(p, i),)) for p, i in _POOL] for t in (TaskType.DEDUCTION, TaskType.ABDUCTION)}
    out = []
    for k in range(n):
        ttype = (TaskType.DEDUCTION, TaskType.ABDUCTION)[k % 2]
        out.append(TASK_TYPES[ttype].propose_prompt(rng.sample(tasks[ttype], 6)))
    return out


@dataclass
class Row:
    """One measured configuration."""

    mode: str
    batch: int
    tokens: int
    seconds: float
    note: str = ""

    @property
    def tok_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def bench_ours(policy, prompts, batch, max_new, temperature, engine="slots") -> Row:
    policy.engine = engine
    cfg = GenerationConfig(max_new_tokens=max_new, temperature=temperature, batch_size=batch)
    t0 = time.perf_counter()
    gens = policy.generate(prompts, cfg, seed=0)
    dt = time.perf_counter() - t0
    policy.engine = "slots"
    st = policy.last_generate_stats
    note = ""
    if engine == "slots":
        note = (f"prefill {st.prefill_tokens}/{st.prompt_tokens} tok in {st.prefill_s:.1f}s, "
                f"decode {st.decode_tokens} tok in {st.decode_s:.1f}s ({st.decode_tokens / max(st.decode_s, 1e-9):.0f}"
                f" tok/s, {st.decode_steps} steps)")
    return Row("ours" if engine == "slots" else "padded (before)", batch, sum(len(g.response_ids) for g in gens), dt,
               note)


def bench_prefill(policy, prompts) -> tuple[int, float]:
    """(prompt tokens, seconds) to encode `prompts` with prefix sharing off: pure prefill speed."""
    policy.share_prefixes = False
    try:
        policy.generate(prompts, GenerationConfig(max_new_tokens=1, greedy=True, batch_size=len(prompts)), seed=0)
    finally:
        policy.share_prefixes = True
    st = policy.last_generate_stats
    return st.prefill_tokens, st.prefill_s


def bench_hf(policy, prompts, batch, max_new, temperature) -> Row:
    model = policy._generation_model()  # same weights and dtype as ours
    eos = policy.eos_token_ids
    pad = policy.tokenizer.pad_token_id if policy.tokenizer.pad_token_id is not None else eos[0]
    torch.manual_seed(0)
    tokens = 0
    t0 = time.perf_counter()
    with torch.inference_mode():
        for s in range(0, len(prompts), batch):
            enc = [policy.encode_prompt(p) for p in prompts[s : s + batch]]
            width = max(map(len, enc))
            ids = torch.tensor([[pad] * (width - len(e)) + e for e in enc])  # (b, P) left-padded
            attn = torch.tensor([[0] * (width - len(e)) + [1] * len(e) for e in enc])  # (b, P)
            out = model.generate(input_ids=ids, attention_mask=attn, max_new_tokens=max_new, do_sample=temperature > 0,
                                 temperature=temperature, top_p=1.0, top_k=0, repetition_penalty=1.0,
                                 eos_token_id=eos, pad_token_id=pad)  # (b, P + n)
            for row in out[:, width:].tolist():
                n = len(row)
                for j, t in enumerate(row):
                    if t in eos:
                        n = j + 1
                        break
                tokens += n
    return Row("model.generate", batch, tokens, time.perf_counter() - t0)


_LLAMA_QUIET = None


def bench_llama(gguf: str, prompt_ids: list[list[int]], eos: set[int], seqs: int, max_new: int,
                temperature: float, threads: int) -> Row:
    """llama.cpp multi-sequence decoding: one unified KV cache, one decode call per step for all live
    sequences, a finished sequence's cells freed and its seat given to the next prompt."""
    import llama_cpp as L  # optional; ImportError handled by the caller
    import numpy as np

    global _LLAMA_QUIET
    if _LLAMA_QUIET is None:  # llama.cpp logs every tensor to stderr; keep the callback object alive
        _LLAMA_QUIET = L.llama_log_callback(lambda level, text, user_data: None)
        L.llama_log_set(_LLAMA_QUIET, ctypes.c_void_p())
    L.llama_backend_init()
    mparams = L.llama_model_default_params()
    model = L.llama_model_load_from_file(gguf.encode(), mparams)
    cparams = L.llama_context_default_params()
    seqs = min(seqs, len(prompt_ids))
    longest = max(map(len, prompt_ids)) + max_new
    cparams.n_ctx = ((seqs * longest) // 256 + 1) * 256
    cparams.n_batch = cparams.n_ubatch = 512
    cparams.n_seq_max = seqs
    cparams.kv_unified = True
    cparams.n_threads = cparams.n_threads_batch = threads
    ctx = L.llama_init_from_model(model, cparams)
    vocab = L.llama_model_get_vocab(model)
    n_vocab = L.llama_vocab_n_tokens(vocab)
    mem = L.llama_get_memory(ctx)
    batch = L.llama_batch_init(512, 0, 1)
    gen = torch.Generator().manual_seed(0)

    def decode(items: list[tuple[int, int, int, bool]]) -> list[int]:
        """Run (token, pos, seq, wants_logits) items in ≤512-token calls; batch indices with logits."""
        got: list[int] = []
        for s in range(0, len(items), 512):
            part = items[s : s + 512]
            batch.n_tokens = len(part)
            for i, (tok, pos, seq, lg) in enumerate(part):
                batch.token[i], batch.pos[i], batch.n_seq_id[i], batch.logits[i] = tok, pos, 1, lg
                batch.seq_id[i][0] = seq
            if L.llama_decode(ctx, batch) != 0:
                raise RuntimeError("llama_decode failed (KV cache full?)")
            got.extend(i for i, it in enumerate(part) if it[3])
            if s + 512 < len(items) and any(it[3] for it in part):
                raise RuntimeError("logits requested before the last chunk")  # not produced by our callers
        return got

    def sample(idx: list[int]) -> list[int]:
        rows = np.stack([np.ctypeslib.as_array(L.llama_get_logits_ith(ctx, i), shape=(n_vocab,)) for i in idx])
        logits = torch.from_numpy(rows)  # (b, V)
        if temperature <= 0:
            return logits.argmax(-1).tolist()
        return torch.multinomial((logits / temperature).softmax(-1), 1, generator=gen).squeeze(-1).tolist()

    queue = list(range(len(prompt_ids)))[::-1]
    live: dict[int, tuple[int, int, int, int]] = {}  # seq -> (prompt, next pos, pending token, n generated)
    free = list(range(seqs))[::-1]
    tokens = 0
    t0 = time.perf_counter()
    while queue or live:
        if queue and free:
            # Prefill each newly seated prompt (one prompt per call keeps the logits index simple).
            while queue and free:
                p, seq = queue.pop(), free.pop()
                ids = prompt_ids[p]
                got = decode([(t, j, seq, j == len(ids) - 1) for j, t in enumerate(ids)])
                tok = sample(got)[0]
                tokens += 1
                if tok in eos or max_new == 1:
                    L.llama_memory_seq_rm(mem, seq, -1, -1)
                    free.append(seq)
                else:
                    live[seq] = (p, len(ids), tok, 1)
            continue
        order = list(live)
        idx = decode([(live[s][2], live[s][1], s, True) for s in order])
        toks = sample(idx)
        tokens += len(toks)
        for s, tok in zip(order, toks):
            p, pos, _, n = live[s]
            if tok in eos or n + 1 >= max_new:
                del live[s]
                L.llama_memory_seq_rm(mem, s, -1, -1)
                free.append(s)
            else:
                live[s] = (p, pos + 1, tok, n + 1)
    dt = time.perf_counter() - t0
    L.llama_batch_free(batch)
    L.llama_free(ctx)
    L.llama_model_free(model)
    return Row("llama.cpp", seqs, tokens, dt, f"Q4_K_M, {threads} threads")


def default_model() -> str:
    from azr.policy import models

    return "qwen2.5-coder-0.5b" if "qwen2.5-coder-0.5b" in getattr(models, "EMBEDDED", {}) else QWEN_GGUF


def gguf_path(model: str) -> str | None:
    if model.endswith(".gguf"):
        return model
    from azr.policy import models

    try:
        return str(models.embedded_gguf_path(model))
    except Exception:  # noqa: BLE001 - any failure means "no GGUF for this model": llama.cpp is skipped
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=None, help="default: the embedded Qwen2.5-Coder-0.5B (or its GGUF path)")
    ap.add_argument("--max-new-tokens", type=int, default=128)
    ap.add_argument("--prompts", type=int, default=32, help="prompts per measurement")
    ap.add_argument("--batches", default="32", help="comma-separated slot counts for ours")
    ap.add_argument("--hf-batch", type=int, default=32, help="batch of the plain model.generate baseline")
    ap.add_argument("--llama-seqs", type=int, default=32, help="sequences decoded together by llama.cpp")
    ap.add_argument("--prefill-prompts", type=int, default=8, help="prompts of the prefill-only measurement")
    ap.add_argument("--padded", action="store_true", help="also run the previous (padded-batch) engine")
    ap.add_argument("--no-hf", action="store_true")
    ap.add_argument("--no-llama", action="store_true")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--gen-dtype", default="auto", choices=["auto", "float32", "bfloat16", "float16"])
    ap.add_argument("--temperature", type=float, default=1.0)
    args = ap.parse_args(argv)
    model_name = args.model or default_model()

    peaks = {dt: matmul_peak(dt, seconds=3.0) for dt in ("bfloat16", "float32")}
    peak_dtype = max(peaks, key=peaks.get)
    peak = peaks[peak_dtype]
    t0 = time.perf_counter()
    policy = load_policy(model_name, PolicyConfig(device=args.device, gen_dtype=args.gen_dtype))
    info = policy.info
    mf = model_flops(policy._generation_model().config)
    print(f"model={model_name} kind={info.kind if info else '?'} load_s={time.perf_counter() - t0:.1f} "
          f"params={policy.num_parameters() / 1e6:.0f}M gen_dtype={policy.config.gen_dtype} "
          f"threads={torch.get_num_threads()} cpu={torch.backends.cpu.get_cpu_capability()}")
    print(f"matmul peak (2048^3, this run): bf16 {peaks['bfloat16'] / 1e9:.1f} GFLOP/s, "
          f"fp32 {peaks['float32'] / 1e9:.1f} GFLOP/s -> peak = {peak_dtype}")
    prompts = make_prompts(args.prompts)
    enc = [policy.encode_prompt(p) for p in prompts]
    print(f"prompts: {len(prompts)}, {sum(map(len, enc))} tokens (mean {sum(map(len, enc)) / len(enc):.0f}), "
          f"max_new_tokens={args.max_new_tokens}, T={args.temperature}")
    # The first forwards on CPU are slower (allocator, kernel selection): warm up.
    policy.generate(prompts[:2], GenerationConfig(max_new_tokens=4, batch_size=2), seed=0)

    rows: list[Row] = []
    n_pre = min(args.prefill_prompts, len(prompts))
    pre_tok, pre_s = bench_prefill(policy, prompts[:n_pre])
    pre_flops = sum(mf.forward(len(e), 1, prefill_ctx_pairs(len(e))) for e in enc[:n_pre])
    pre_frac = pre_flops / pre_s / peak
    print(f"prefill (ours, no prefix sharing, {n_pre} prompts): {pre_tok} tok in {pre_s:.1f}s = "
          f"{pre_tok / pre_s:.0f} tok/s, {pre_flops / pre_s / 1e9:.0f} GFLOP/s = {pre_frac:.0%} of peak")
    for b in (int(x) for x in args.batches.split(",") if x.strip()):
        rows.append(bench_ours(policy, prompts, b, args.max_new_tokens, args.temperature))
        print(f"  ours b={b}: {rows[-1].tok_s:.1f} tok/s  {rows[-1].note}", flush=True)
    if args.padded:
        b = max(int(x) for x in args.batches.split(","))
        rows.append(bench_ours(policy, prompts, b, args.max_new_tokens, args.temperature, engine="padded"))
    hf = float("nan")
    if not args.no_hf:
        rows.append(bench_hf(policy, prompts, args.hf_batch, args.max_new_tokens, args.temperature))
        hf = rows[-1].tok_s
    llama = float("nan")
    gguf = gguf_path(model_name)
    if args.no_llama:
        print("llama.cpp: skipped (--no-llama)")
    elif gguf is None:
        print(f"llama.cpp: skipped ({model_name} has no GGUF file)")
    else:
        try:
            import llama_cpp  # noqa: F401
        except ImportError:
            print("llama.cpp: skipped (llama-cpp-python not installed: pip install 'azr[llama]')")
        else:
            rows.append(bench_llama(gguf, enc, set(policy.eos_token_ids), args.llama_seqs, args.max_new_tokens,
                                    args.temperature, torch.get_num_threads()))
            llama = rows[-1].tok_s

    print(f"{'mode':<18}{'batch':>6}{'tokens':>8}{'seconds':>9}{'tok/s':>8}  note")
    for r in rows:
        print(f"{r.mode:<18}{r.batch:>6}{r.tokens:>8}{r.seconds:>9.1f}{r.tok_s:>8.1f}  {r.note}")
    best = max((r for r in rows if r.mode == "ours"), key=lambda r: r.tok_s)
    print(f"prefill_tok_per_s={pre_tok / pre_s:.1f} prefill_peak_frac={pre_frac:.3f} peak_gflops={peak / 1e9:.1f} "
          f"peak_dtype={peak_dtype} best_batch={best.batch} cpu_threads={os.cpu_count()}")
    print(f"best_tok_per_s={best.tok_s:.1f} hf_generate_tok_per_s={hf:.1f} llama_cpp_tok_per_s={llama:.1f}")


if __name__ == "__main__":
    main()
