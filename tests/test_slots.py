"""Tests for the slot-cache rollout engine (azr.policy.slots) behind HFPolicy.generate.

All on the in-code ``tiny`` model in fp32, where the engine must reproduce ``model.generate``'s
greedy tokens exactly while it shares prompt prefixes, refills freed slots and compacts rows.
"""

from __future__ import annotations

import pytest
import torch

from azr.policy import GenerationConfig, PolicyConfig, load_policy
from azr.policy.hf import resolve_dtypes
from azr.policy.slots import PrefixPlan, plan_prefixes
from tests.conftest import make_context_sensitive

FP32 = PolicyConfig(device="cpu", gen_dtype="float32", train_autocast=None)
# Self-play prompts share a long instruction; some are sent several times (learnability's n solves).
HEADER = "Predict the output of the function f for the input, and answer inside answer tags. "
PROMPTS = [HEADER + "x = 1", HEADER + "x = 22", "short", HEADER + "x = 1", HEADER + "a longer tail: [1, 2, 3]",
           HEADER + "x = 1", "another unrelated prompt", HEADER + "x = 22"]


@pytest.fixture(scope="module")
def tiny():
    """The tiny model re-drawn at gain 2 (`make_context_sensitive`): every response depends on its prompt and
    on every earlier token."""
    return make_context_sensitive(load_policy("tiny", FP32))


def _reference(policy, prompt_ids, n):
    ids = torch.tensor([prompt_ids])
    with torch.no_grad():
        out = policy.module.generate(input_ids=ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                     do_sample=False)
    return out[0, ids.shape[1]:].tolist()


# ---------------------------------------------------------------------------- prefix planning


def _check_plan(prompts, plan: PrefixPlan):
    for p, g, s in zip(prompts, plan.group, plan.shared):
        if g < 0:
            assert s == 0
        else:
            assert list(p[:s]) == plan.prefixes[g] and s == len(plan.prefixes[g])
            assert s < len(p), "every member keeps at least one token of its own"
    assert plan.saved_tokens >= 0


def test_plan_identical_prompts_share_all_but_the_last_token():
    a, b = list(range(40)), list(range(100, 130))
    plan = plan_prefixes([a, b, a, a, b], min_shared=16)
    _check_plan([a, b, a, a, b], plan)
    assert plan.shared == [39, 29, 39, 39, 29]
    assert plan.group[0] == plan.group[2] == plan.group[3] != plan.group[1] == plan.group[4]
    assert plan.saved_tokens == 2 * 39 + 1 * 29


def test_plan_prefers_the_grouping_that_saves_most_and_skips_short_shares():
    head = list(range(20))
    x, y, z = head + [1000, 1, 2, 3], head + [1000, 1, 2, 4], head + [2000, 5]
    plan = plan_prefixes([x, y, z], min_shared=16)
    _check_plan([x, y, z], plan)
    # x and y share 23 tokens, all three only 20: {x, y} saves 23, {x, y, z} saves 40.
    assert plan.saved_tokens == 40 and len(set(plan.group)) == 1
    assert plan_prefixes([x, y, z], min_shared=30).prefixes == []  # nothing shares 30 tokens
    assert plan_prefixes([[1, 2, 3]], min_shared=1).prefixes == []


def test_plan_random_prompts_are_valid():
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 3, (int(n),), generator=g).tolist() for n in torch.randint(1, 12, (30,), generator=g)]
    plan = plan_prefixes(prompts, min_shared=2)
    _check_plan(prompts, plan)
    assert plan.saved_tokens > 0


# ---------------------------------------------------------------------------- generation


@pytest.mark.parametrize("slots", [2, 3, 16], ids=["refill2", "refill3", "all-at-once"])
def test_greedy_matches_generate_with_shared_prefixes_and_refills(tiny, slots):
    cfg = GenerationConfig(max_new_tokens=9, greedy=True, batch_size=slots)
    gens = tiny.generate(PROMPTS, cfg)
    st = tiny.last_generate_stats
    assert st.prefill_tokens < st.prompt_tokens, "the shared header was encoded once"
    for g in gens:
        assert g.prompt_ids == tiny.encode_prompt(g.prompt)
        assert g.response_ids == _reference(tiny, g.prompt_ids, 9)


def test_rows_stopping_early_free_slots_without_disturbing_others(tiny, monkeypatch):
    """A token the greedy decoder emits becomes EOS: rows stop after it at different steps, their slots
    are refilled (3 slots, 8 prompts) and live rows move between slots; every row must still equal its
    own unbatched greedy decode, cut at the first EOS."""
    cfg = GenerationConfig(max_new_tokens=12, greedy=True, batch_size=3)
    free = [g.response_ids for g in tiny.generate(PROMPTS, cfg)]
    # Tokens that end some rows mid-response (not on their first token) and leave others whole, best first;
    # take the first whose run moves a live row into a finished row's slot.
    def mid_stops(t):
        return sum(0 < f.index(t) < 10 for f in free if t in f)
    candidates = sorted({t for f in free for t in f if any(t not in f2 for f2 in free)},
                        key=lambda t: (-mid_stops(t), t))
    for stop in candidates[:10]:
        monkeypatch.setattr(tiny, "_eos_ids", {stop})
        stopped = tiny.generate(PROMPTS, cfg)
        if tiny.last_generate_stats.moves > 0:
            break
    assert tiny.last_generate_stats.moves > 0 and tiny.last_generate_stats.admissions > 1
    assert any(g.finished for g in stopped) and any(not g.finished for g in stopped)
    for full, g in zip(free, stopped):
        expect = full[: full.index(stop) + 1] if stop in full else full
        assert g.response_ids == expect and g.finished == (stop in full)


def test_slots_and_padded_engines_agree_and_sampling_is_seeded(tiny):
    greedy = GenerationConfig(max_new_tokens=8, greedy=True, batch_size=4)
    ours = [g.response_ids for g in tiny.generate(PROMPTS, greedy)]
    tiny.engine = "padded"
    try:
        padded = [g.response_ids for g in tiny.generate(PROMPTS, greedy)]
    finally:
        tiny.engine = "slots"
    assert ours == padded
    sample = GenerationConfig(max_new_tokens=8, batch_size=3)
    a = [g.response_ids for g in tiny.generate(PROMPTS, sample, seed=7)]
    b = [g.response_ids for g in tiny.generate(PROMPTS, sample, seed=7)]
    c = [g.response_ids for g in tiny.generate(PROMPTS, sample, seed=8)]
    assert a == b != c


def test_identical_prompts_sample_independently(tiny):
    """Shared prefill must not mean shared samples: n copies of a prompt draw their own tokens."""
    gens = tiny.generate([PROMPTS[0]] * 6, GenerationConfig(max_new_tokens=6, batch_size=6), seed=0)
    assert len({tuple(g.response_ids) for g in gens}) > 1
    assert tiny.last_generate_stats.prefill_tokens < 2 * len(gens[0].prompt_ids)


def test_auto_dtypes_resolve_to_names():
    cfg = resolve_dtypes(PolicyConfig(device="cpu"), torch.device("cpu"))
    assert cfg.gen_dtype in ("bfloat16", "float32")
    assert cfg.train_autocast == ("bfloat16" if cfg.gen_dtype == "bfloat16" else None)
    fixed = resolve_dtypes(PolicyConfig(device="cpu", gen_dtype="float16", train_autocast=None), torch.device("cpu"))
    assert (fixed.gen_dtype, fixed.train_autocast) == ("float16", None)
    with pytest.raises(ValueError):
        resolve_dtypes(PolicyConfig(device="cpu", param_dtype="auto"), torch.device("cpu"))  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ["slots", "padded"])
def test_stop_strings_end_rows_at_the_token_that_completes_them(tiny, engine):
    """A string the greedy responses contain becomes a stop string: each row must equal its free decode cut at
    the first token whose prefix decodes to contain it (that token kept, finished=True); rows without it are
    untouched. With 3 slots, rows that stop free slots for waiting prompts."""
    cfg = GenerationConfig(max_new_tokens=12, greedy=True, batch_size=3)
    free = [g.response_ids for g in tiny.generate(PROMPTS, cfg)]

    def cut(ids, s):
        """The shortest prefix of ids whose decode contains s, or None."""
        return next((ids[: j + 1] for j in range(len(ids)) if s in tiny.decode(ids[: j + 1])), None)

    # A two-token string from the middle of one response that some other response lacks.
    texts = [tiny.decode(f[4:6]) for f in free]
    stop = next(t for t in texts if t.strip() and any(cut(f, t) is None for f in free))
    tiny.engine = engine
    try:
        gens = tiny.generate(PROMPTS, GenerationConfig(max_new_tokens=12, greedy=True, batch_size=3, stop=(stop,)))
    finally:
        tiny.engine = "slots"
    assert any(g.finished for g in gens) and any(not g.finished for g in gens)
    for full, g in zip(free, gens):
        expect = cut(full, stop)
        assert g.response_ids == (expect if expect is not None else full)
        assert g.finished == (expect is not None)
        assert (stop in g.response) == g.finished


def test_stop_check_decodes_a_short_window(tiny):
    from azr.policy.hf import stop_check

    assert stop_check(tiny.decode, ()) is None
    seen = []

    def decode(ids):
        seen.append(len(ids))
        return "".join(chr(97 + i % 26) for i in ids)

    hit = stop_check(decode, ("xyz", "q"))
    ids = [0] * 20  # "aaa...a"
    assert not hit(ids) and seen[-1] == 3 + 4  # the longest stop string plus 4 spare tokens
    assert hit(ids + [23, 24, 25]) and hit(ids + [16]) and hit(ids + [16, 0])  # "...xyz"; "...q"; "...qa"
    assert not hit(ids + [23, 24])
    # Asked after every token, a match older than the window has already fired: it is not looked for.
    assert not hit([16] + ids)
    with pytest.raises(ValueError, match="non-empty"):
        GenerationConfig(stop=("",))
