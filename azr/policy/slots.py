"""Continuous-batching decode over a slot KV cache, with shared-prefix prefill: the engine behind
:meth:`azr.policy.hf.HFPolicy.generate`.

Why not ``model.generate`` or a plain padded batch (measured on the 2-core CPU box, see
``benchmarks/README.md``): a padded batch decodes until its longest row ends, and self-play prompts
are long and repetitive (the learnability stage sends every task's prompt ``n`` times, and every
prompt of a stage starts with the same instruction). This engine

* keeps up to ``batch_size`` sequences *live* in fixed slots of a preallocated KV cache; a row that
  emits EOS leaves at once (a live row from the tail moves into its slot, so live rows always are
  slots ``[0, b)`` and every forward works on views, never on gathered copies), and waiting prompts
  are admitted into free slots as they open (continuous batching);
* prefills each distinct shared prefix once: prompts are grouped (sorted order, then a small
  dynamic program that maximises the prompt tokens saved), a group's common prefix is encoded once
  into a *prefix store* and copied into each member's slot, and only the rest of each prompt is
  encoded. Identical prompts are the extreme case: all but their last token are shared;
* runs the unmodified transformers model (its own layers, RoPE and SDPA attention): only the cache
  object and a ready 4-D mask are ours, so numerics match ``model.generate`` up to batch-shape
  rounding.

The cache duck-types ``transformers.Cache.update``: for each forward it is *bound* to a slot range,
the write position of every new token and the key length to attend to. New keys are scattered to
their row's own positions; attention reads ``K[rows, :, :L]`` views with a mask that shows each
query its row's keys up to its own position. Rows of different lengths therefore need no padding
in the cache; a prefill batch is left-padded, and its pad columns write to a scratch column
(``capacity - 1``) that no mask ever shows.

Supported: decoder-only models whose layers all use full attention and read the cache through
``cache.update`` (Llama, Qwen2/3, Mistral without sliding window): :func:`supports` says; the
policy falls back to its padded loop for others.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

_ARCHS = {"llama", "qwen2", "qwen3", "mistral"}

PREFILL_TOKENS = 2048
"""Token budget of one prefill forward (rows × padded width). Large enough that the matmuls run near
their best speed on CPU, small enough that activations stay in the low hundreds of MB."""

MIN_SHARED = 16
"""Shortest common prefix worth a prefix-store entry (shorter ones cost more in copies than they save)."""


def supports(model: torch.nn.Module) -> bool:
    """True when :func:`generate_slots` can drive `model` (see the module docstring)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    cfg = getattr(base, "config", None)
    if cfg is None or getattr(cfg, "model_type", None) not in _ARCHS:
        return False
    if getattr(cfg, "use_sliding_window", False) and getattr(cfg, "sliding_window", None):
        return False
    types = getattr(cfg, "layer_types", None)
    return types is None or all(t == "full_attention" for t in types)


class SlotCache:
    """Keys and values of `slots` sequences of up to `capacity` tokens, one (S, H_kv, C, D) tensor
    pair per layer. Duck-types the ``update`` method of ``transformers.Cache`` (the only one the
    supported models call when given position ids and a 4-D mask)."""

    def __init__(self, config: Any, slots: int, capacity: int, dtype: torch.dtype, device: torch.device) -> None:
        n_layers = config.num_hidden_layers
        kv_heads = getattr(config, "num_key_value_heads", None) or config.num_attention_heads
        head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
        shape = (slots, kv_heads, capacity, head_dim)
        # zeros, not empty: masked-out keys still enter SDPA's products, and 0 * NaN would be NaN.
        self.k = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]  # (S, H, C, D) each
        self.v = [torch.zeros(shape, dtype=dtype, device=device) for _ in range(n_layers)]  # (S, H, C, D) each
        self.capacity = capacity
        self._rows = slice(0, 0)
        self._write: torch.Tensor | None = None  # (b, q) cache position of each new token
        self._row_idx: torch.Tensor | None = None  # (b, 1)
        self._kv_len = 0

    @property
    def bytes_per_token(self) -> int:
        return sum(t[0, :, 0].numel() * t.element_size() for t in self.k + self.v)

    def bind(self, rows: slice, write: torch.Tensor, kv_len: int) -> None:
        """Set up the next forward: it runs on slots `rows`, token (i, j) goes to position
        ``write[i, j]`` of its slot, and attention sees the first `kv_len` positions."""
        self._rows, self._write, self._kv_len = rows, write, kv_len
        self._row_idx = torch.arange(write.shape[0], device=write.device)[:, None]  # (b, 1)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        k = self.k[layer_idx][self._rows]  # (b, H, C, D) view
        v = self.v[layer_idx][self._rows]  # (b, H, C, D) view
        # Index dims 0 and 2 with a slice between: the indexed view is (b, q, H, D).
        k[self._row_idx, :, self._write] = key_states.transpose(1, 2).to(k.dtype)  # (b, q, H, D)
        v[self._row_idx, :, self._write] = value_states.transpose(1, 2).to(v.dtype)  # (b, q, H, D)
        return k[:, :, : self._kv_len], v[:, :, : self._kv_len]  # (b, H, L, D) each

    def move(self, src: Sequence[int], dst: Sequence[int], length: int) -> None:
        """Copy the first `length` positions of slots `src` into slots `dst` (pairwise)."""
        if not src:
            return
        s = torch.tensor(list(src), device=self.k[0].device)
        d = torch.tensor(list(dst), device=self.k[0].device)
        for t in self.k + self.v:
            t[d, :, :length] = t[s, :, :length]

    def load_prefix(self, store: SlotCache, src: int, dst: int, length: int) -> None:
        """Copy positions ``[0, length)`` of `store`'s slot `src` into this cache's slot `dst`."""
        for mine, theirs in zip(self.k + self.v, store.k + store.v):
            mine[dst, :, :length] = theirs[src, :, :length]


@dataclass
class PrefixPlan:
    """How the prompts of one call share prefill work."""

    group: list[int]
    """Per prompt: its prefix-store slot, or -1 when it shares nothing."""
    shared: list[int]
    """Per prompt: how many of its leading tokens come from the store (0 when ``group`` is -1)."""
    prefixes: list[list[int]] = field(default_factory=list)
    """Per store slot: the token ids it holds."""

    @property
    def saved_tokens(self) -> int:
        return sum(self.shared) - sum(len(p) for p in self.prefixes)


def _lcp(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def plan_prefixes(prompts: Sequence[Sequence[int]], min_shared: int = MIN_SHARED) -> PrefixPlan:
    """Group prompts that share a leading run of tokens so it is encoded once.

    Prompts are sorted (so prompts with common prefixes are neighbours); a group is a run of
    neighbours and shares ``min(LCP of the run, shortest member - 1)`` tokens (every member keeps at
    least one token of its own, whose logits start its response). A dynamic program over the runs
    maximises ``(size - 1) × shared`` summed over groups; groups sharing fewer than `min_shared`
    tokens are dropped. O(n²) in the number of prompts, which is fine for the hundreds a call holds.
    """
    n = len(prompts)
    plan = PrefixPlan(group=[-1] * n, shared=[0] * n)
    if n < 2:
        return plan
    order = sorted(range(n), key=lambda i: tuple(prompts[i]))
    lcp = [_lcp(prompts[order[i]], prompts[order[i + 1]]) for i in range(n - 1)]
    best = [0] * (n + 1)  # best[i]: max tokens saved over the first i sorted prompts
    cut = [0] * (n + 1)  # where the last group of that optimum starts
    for i in range(1, n + 1):
        best[i], cut[i] = best[i - 1], i - 1  # prompt i-1 alone
        run_lcp, min_len = 1 << 30, len(prompts[order[i - 1]])
        for j in range(i - 2, -1, -1):  # group = sorted[j .. i-1]
            run_lcp = min(run_lcp, lcp[j])
            min_len = min(min_len, len(prompts[order[j]]))
            share = min(run_lcp, min_len - 1)
            if share < min_shared:
                break  # run_lcp only shrinks as the run grows
            gain = best[j] + (i - 1 - j) * share
            if gain > best[i]:
                best[i], cut[i] = gain, j
    i = n
    while i > 0:
        j = cut[i]
        if i - j >= 2:
            members = order[j:i]
            share = min(min(lcp[j : i - 1]), min(len(prompts[m]) for m in members) - 1)
            slot = len(plan.prefixes)
            plan.prefixes.append(list(prompts[members[0]][:share]))
            for m in members:
                plan.group[m], plan.shared[m] = slot, share
        i = j
    return plan


@dataclass
class SlotStats:
    """What one call did (for benchmarks): forwards, tokens encoded and generated, and seconds."""

    prompt_tokens: int = 0
    """Prompt tokens of all requests."""
    prefill_tokens: int = 0
    """Prompt tokens actually encoded (prefix store + per-row suffixes)."""
    prefill_s: float = 0.0
    prefill_rows: int = 0
    """Rows of all prefill forwards (each computes logits at its last token)."""
    prefill_ctx: float = 0.0
    """Σ over encoded prompt tokens of the context each attends to (for attention FLOPs)."""
    decode_steps: int = 0
    decode_tokens: int = 0
    """Rows summed over decode forwards (= generated tokens that needed a forward)."""
    decode_s: float = 0.0
    decode_ctx: float = 0.0
    """Σ over decoded tokens of the context each attends to."""
    generated_tokens: int = 0
    admissions: int = 0
    """Prefill rounds that seated waiting prompts (more than one: freed slots were refilled)."""
    moves: int = 0
    """Live rows moved into a finished row's slot."""


def _forward(model: torch.nn.Module, cache: SlotCache, rows: slice, seqs: Sequence[Sequence[int]],
             offsets: Sequence[int], cache_arg: str, has_logits_to_keep: bool) -> torch.Tensor:
    """Encode `seqs[i]` at positions ``offsets[i]...`` of slot ``rows.start + i``; return the logits
    after each row's last token, (b, V). Rows are left-padded to the widest; see the module docstring."""
    device = cache.k[0].device
    b, q = len(seqs), max(len(s) for s in seqs)
    ids = torch.zeros((b, q), dtype=torch.long)  # (b, q)
    pos = torch.zeros((b, q), dtype=torch.long)  # (b, q) RoPE position; 0 at pads
    write = torch.full((b, q), cache.capacity - 1, dtype=torch.long)  # (b, q) pads -> scratch column
    for i, (s, off) in enumerate(zip(seqs, offsets)):
        w = len(s)
        ids[i, q - w :] = torch.as_tensor(s, dtype=torch.long)
        pos[i, q - w :] = torch.arange(off, off + w)
        write[i, q - w :] = pos[i, q - w :]
    kv_len = max(off + len(s) for s, off in zip(seqs, offsets))
    # Key t is visible to a query at position p iff t <= p: the row's prompt and everything it
    # generated so far sit densely at [0, p]. Pad queries see key 0 only (never an empty softmax).
    keys = torch.arange(kv_len)  # (L,)
    mask = keys[None, None, :] <= pos[:, :, None]  # (b, q, L)
    ids, pos, write, mask = ids.to(device), pos.to(device), write.to(device), mask.to(device)
    cache.bind(rows, write, kv_len)
    kwargs: dict[str, Any] = {cache_arg: cache, "use_cache": True}
    if has_logits_to_keep:
        kwargs["logits_to_keep"] = 1
    out = model(input_ids=ids, attention_mask=mask[:, None], position_ids=pos, **kwargs)  # mask (b, 1, q, L)
    return out.logits[:, -1]  # (b, V)


def generate_slots(
    model: torch.nn.Module,
    prompts: Sequence[list[int]],
    *,
    max_new_tokens: int,
    slots: int,
    eos_ids: set[int],
    sample: Callable[[torch.Tensor], torch.Tensor],
    cache_arg: str,
    has_logits_to_keep: bool,
    dtype: torch.dtype,
    device: torch.device,
    share_prefixes: bool = True,
    stats: SlotStats | None = None,
    stop: Callable[[list[int]], bool] | None = None,
) -> list[tuple[list[int], bool]]:
    """(response ids, finished) per prompt, in input order. `sample` maps (b, V) fp32 logits to (b,)
    token ids; it is called once per forward, in a fixed order, so a seeded sampler reproduces a call.
    `stop`, when given, is asked after every sampled token whether a row's response ids now end it
    (a stop string); such a row finishes like one that emitted EOS."""
    import time

    stats = stats if stats is not None else SlotStats()
    n = len(prompts)
    stats.prompt_tokens += sum(len(p) for p in prompts)
    cfg = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    plan = plan_prefixes(prompts) if share_prefixes else PrefixPlan(group=[-1] * n, shared=[0] * n)
    slots = max(1, min(slots, n))
    # One scratch column at the end takes the pad tokens' keys (see _forward).
    capacity = max(len(p) for p in prompts) + max_new_tokens + 1
    cache = SlotCache(cfg, slots, capacity, dtype, device)

    def prefill(target: SlotCache, first: int, seqs: list[list[int]], offsets: list[int]) -> torch.Tensor:
        """Encode rows in chunks of at most PREFILL_TOKENS padded tokens; (len(seqs), V) logits."""
        t0 = time.perf_counter()
        out, i = [], 0
        while i < len(seqs):
            j = i + 1
            while j < len(seqs) and (j + 1 - i) * max(len(s) for s in seqs[i : j + 1]) <= PREFILL_TOKENS:
                j += 1
            out.append(_forward(model, target, slice(first + i, first + j), seqs[i:j], offsets[i:j], cache_arg,
                                has_logits_to_keep))
            i = j
        stats.prefill_tokens += sum(len(s) for s in seqs)
        stats.prefill_rows += len(seqs)
        stats.prefill_ctx += sum(len(s) * off + len(s) * (len(s) + 1) / 2 for s, off in zip(seqs, offsets))
        stats.prefill_s += time.perf_counter() - t0
        return torch.cat(out)  # (rows, V)

    store: SlotCache | None = None
    if plan.prefixes:
        # Longest first, so each prefill chunk holds prefixes of similar width.
        by_len = sorted(range(len(plan.prefixes)), key=lambda g: -len(plan.prefixes[g]))
        remap = {g: k for k, g in enumerate(by_len)}
        plan.prefixes = [plan.prefixes[g] for g in by_len]
        plan.group = [remap[g] if g >= 0 else -1 for g in plan.group]
        store = SlotCache(cfg, len(plan.prefixes), max(len(p) for p in plan.prefixes) + 1, dtype, device)
        prefill(store, 0, plan.prefixes, [0] * len(plan.prefixes))  # logits unused: every member has a suffix

    # Admission order: longest prompts first (group members need not come together: the store keeps
    # their prefix for the whole call).
    queue = sorted(range(n), key=lambda i: (-len(prompts[i]), plan.group[i], i))
    queue.reverse()  # pop() from the end
    out: list[list[int]] = [[] for _ in range(n)]
    finished = [False] * n
    row_req: list[int] = []  # request held by each live slot [0, b)
    row_len: list[int] = []  # tokens of that slot already in the cache
    pending: list[int] = []  # last sampled token of each live row (not yet in the cache)

    def take(tokens: torch.Tensor, reqs: list[int]) -> list[bool]:
        """Record one sampled token per request; True where that request is now done."""
        done = []
        for r, t in zip(reqs, tokens.tolist()):
            out[r].append(t)
            finished[r] = t in eos_ids or (stop is not None and stop(out[r]))
            done.append(finished[r] or len(out[r]) >= max_new_tokens)
        stats.generated_tokens += len(reqs)
        return done

    def retire(done: list[bool]) -> None:
        """Drop finished rows; live rows from the tail move into their slots so live rows stay [0, b')."""
        b = len(row_req)
        keep = [i for i in range(b) if not done[i]]
        new_b = len(keep)
        holes = [i for i in range(new_b) if done[i]]
        tails = [i for i in range(new_b, b) if not done[i]]
        cache.move(tails, holes, max((row_len[i] for i in tails), default=0))
        stats.moves += len(tails)
        for h, t in zip(holes, tails):
            row_req[h], row_len[h], pending[h] = row_req[t], row_len[t], pending[t]
        del row_req[new_b:], row_len[new_b:], pending[new_b:]

    while queue or row_req:
        free = slots - len(row_req)
        # Admit in bulk (a prefill of many rows is cheaper per token than several small ones), but
        # never leave the batch idle: admit when it is empty or a good share of slots is free.
        if queue and free > 0 and (not row_req or free >= max(1, slots // 8) or len(queue) <= free):
            new = [queue.pop() for _ in range(min(free, len(queue)))]
            # Longest unshared part first, so each prefill chunk pads little.
            new.sort(key=lambda r: -(len(prompts[r]) - plan.shared[r]))
            stats.admissions += 1
            first = len(row_req)
            for k, r in enumerate(new):
                if plan.group[r] >= 0:
                    cache.load_prefix(store, plan.group[r], first + k, plan.shared[r])  # type: ignore[arg-type]
            seqs = [prompts[r][plan.shared[r]:] for r in new]
            logits = prefill(cache, first, seqs, [plan.shared[r] for r in new])  # (k, V)
            done = [False] * first + take(sample(logits.float()), new)
            row_req.extend(new)
            row_len.extend(len(prompts[r]) for r in new)
            pending.extend(out[r][-1] for r in new)
            if any(done):
                retire(done)
            continue
        t0 = time.perf_counter()
        b = len(row_req)
        logits = _forward(model, cache, slice(0, b), [[t] for t in pending], row_len, cache_arg,
                          has_logits_to_keep)  # (b, V)
        stats.decode_steps += 1
        stats.decode_tokens += b
        stats.decode_ctx += sum(row_len) + b
        done = take(sample(logits.float()), row_req)
        row_len[:] = [x + 1 for x in row_len]
        pending[:] = [out[r][-1] for r in row_req]
        if any(done):
            retire(done)
        stats.decode_s += time.perf_counter() - t0
    return list(zip(out, finished))
