"""Pure units of the scaling-out layer: sharding, seeds, config and CLI flags, the missing-Ray message."""

from __future__ import annotations

import builtins
import dataclasses

import pytest

from azr import config as C
from azr.cli import _split_preset
from azr.distributed import RAY_MISSING, require_ray, shard_bounds, shard_seed


@pytest.mark.parametrize("n,k", [(0, 1), (1, 3), (5, 2), (9, 4), (384, 8)])
def test_shards_cover_the_input_in_order_with_sizes_within_one(n, k):
    bounds = shard_bounds(n, k)
    assert len(bounds) == k and bounds[0][0] == 0 and bounds[-1][1] == n
    assert all(a[1] == b[0] for a, b in zip(bounds, bounds[1:]))
    sizes = [b - a for a, b in bounds]
    assert max(sizes) - min(sizes) <= 1 and sizes == sorted(sizes, reverse=True)


def test_shard_zero_keeps_the_seed_and_the_others_differ():
    assert shard_seed(123, 0) == 123
    seeds = [shard_seed(123, i) for i in range(16)]
    assert len(set(seeds)) == 16 and all(0 <= s < 2**31 for s in seeds)


def test_cli_aliases_become_dist_fields():
    preset, rest = _split_preset(["--ray", "--preset", "tiny-test", "--ray-address", "auto", "--run.steps", "2"])
    assert preset == "tiny-test"
    assert rest == ["--dist.ray", "--dist.ray-address", "auto", "--run.steps", "2"]
    assert _split_preset(["--ray-address=10.0.0.1:6379"])[1] == ["--dist.ray-address=10.0.0.1:6379"]


def test_ray_address_implies_ray_and_dist_survives_a_checkpoint_round_trip():
    cfg = C.tiny_test()
    assert not C.uses_ray(cfg)
    joined = dataclasses.replace(cfg, dist=C.DistConfig(ray_address="auto", executor_workers=8))
    assert C.uses_ray(joined)
    assert C.from_dict(C.to_dict(joined)) == joined
    old = C.to_dict(cfg)
    del old["dist"]  # a checkpoint written before DistConfig existed
    assert C.from_dict(old).dist == C.DistConfig()


@pytest.mark.parametrize("field,value,message", [
    ("executor_workers", 0, "executor_workers"), ("rollout_workers", -1, "rollout_workers"),
    ("executor_cpus", 0.0, "executor_cpus"),
])
def test_bad_dist_config_is_rejected_with_the_field_name(field, value, message):
    cfg = dataclasses.replace(C.tiny_test(), dist=C.DistConfig(**{field: value}))
    with pytest.raises(ValueError, match=message):
        C.finalize(cfg)


def test_missing_ray_says_how_to_install(monkeypatch):
    real_import = builtins.__import__

    def no_ray(name, *args, **kwargs):
        if name == "ray" or name.startswith("ray."):
            raise ImportError("No module named 'ray'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ray)
    with pytest.raises(ImportError) as err:
        require_ray()
    assert str(err.value) == RAY_MISSING and "pip install 'azr[ray]'" in RAY_MISSING


def test_exported_lora_weights_load_into_a_plain_model_that_samples_like_the_learner():
    """What rollout actors and vLLM receive after an update: full-model weights, LoRA merged, generation dtype."""
    import torch

    from azr.policy import GenerationConfig, LoraSettings, PolicyConfig, load_policy

    learner = load_policy("tiny", PolicyConfig(device="cpu", lora=LoraSettings(r=4), gen_dtype="bfloat16", seed=0))
    with torch.no_grad():
        for p in learner.parameters():  # move the adapters off their zero init, as training would
            p.add_(0.5 * torch.randn_like(p))
    weights = learner.export_weights()
    plain = load_policy("tiny", PolicyConfig(device="cpu", param_dtype="bfloat16", gen_dtype="bfloat16",
                                             train_autocast=None, seed=1))
    assert weights.keys() == plain.module.state_dict().keys()
    assert all(t.dtype == torch.bfloat16 for t in weights.values() if t.is_floating_point())
    plain.module.load_state_dict(weights)
    gcfg = GenerationConfig(max_new_tokens=10)
    prompts = ["def f(x): return x", "abc"]
    assert [g.response_ids for g in plain.generate(prompts, gcfg, seed=4)] == \
        [g.response_ids for g in learner.generate(prompts, gcfg, seed=4)]
