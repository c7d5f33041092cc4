"""azr/heap.py: with glibc's mmap threshold fixed, freed tensors go back to the OS; with its default, they stay.

Each case runs in its own interpreter: the allocator's settings and history are per process."""

from __future__ import annotations

import subprocess
import sys

import pytest

from azr import heap

PROBE = r"""
import sys, torch
from azr.heap import rss_bytes, set_mmap_threshold
print(set_mmap_threshold(int(sys.argv[1])))
warm = torch.ones(4 << 20); del warm     # a freed 16 MiB block: glibc raises its dynamic threshold past 2 MiB
keep, big = [], []
base = rss_bytes()
for _ in range(150):                      # 300 MiB of 2 MiB tensors, each pinned in place by a small survivor
    big.append(torch.ones(1 << 19))
    keep.append(torch.ones(64))
peak = rss_bytes()
del big
print((peak - base) >> 20, (peak - rss_bytes()) >> 20)
"""

pytestmark = pytest.mark.skipif(heap._libc() is None, reason="glibc's mallopt is needed")


def run_probe(mib: int) -> tuple[bool, int, int]:
    out = subprocess.run([sys.executable, "-c", PROBE, str(mib)], capture_output=True, text=True, check=True)
    took, sizes = out.stdout.split("\n")[:2]
    allocated, returned = map(int, sizes.split())
    return took == "True", allocated, returned


def test_fixed_threshold_returns_freed_tensors_and_the_default_keeps_them():
    took, allocated, returned = run_probe(0)
    assert not took and allocated >= 290 and returned < 0.2 * allocated  # glibc's default keeps them
    took, allocated, returned = run_probe(1)
    assert took and allocated >= 290 and returned > 0.9 * allocated


def test_memory_metrics_are_this_process():
    m = heap.memory_metrics()
    assert 0 < m["memory/rss_gib"] <= m["memory/peak_rss_gib"]


STAGES_PROBE = r"""
import torch
from azr import heap
from azr.selfplay import Timer
base = heap.rss_bytes()
t = Timer()
t.start("big")
x = torch.ones(75 << 20)          # 300 MiB, touched
del x
heap.trim()
t.start("small")
y = torch.ones(12 << 20)          # 48 MiB
t.stop()
mib = lambda b: (b - base) >> 20
print(bool(t.peak_bytes), mib(t.peak_bytes.get("big", 0)), mib(t.peak_bytes.get("small", 0)), mib(heap.peak_rss_bytes()))
"""


def test_each_stage_has_its_own_peak_and_the_overall_peak_survives_the_resets():
    """A 300 MiB stage, then a 48 MiB one: the second stage's peak does not carry the first's, and the process's
    peak (memory/peak_rss_gib) still does."""
    out = subprocess.run([sys.executable, "-c", STAGES_PROBE], capture_output=True, text=True, check=True)
    ok, big, small, overall = out.stdout.split()
    if ok != "True":
        pytest.skip("this kernel does not let a process reset its RSS high-water mark")
    assert int(big) >= 290 and 40 <= int(small) < 150 and int(overall) >= 290


STAGE_TRIM_PROBE = r"""
import sys, torch
from azr import heap
from azr.selfplay import Timer
if sys.argv[1] == "off":
    heap.trim = lambda: False     # the stage timer as it was: no trim between stages
base = heap.rss_bytes()
t = Timer()
t.start("rollouts")
xs = [torch.ones(16 << 10) for _ in range(4800)]   # 300 MiB in 64 KiB blocks: glibc serves them from its heap
fence = torch.ones(16 << 10)                       # in use above them, so free() cannot shrink the heap's top
del xs
t.start("update")
y = torch.ones(12 << 20)                           # 48 MiB
t.stop()
print(bool(t.peak_bytes), (t.peak_bytes.get("update", 0) - base) >> 20)
"""


@pytest.mark.parametrize("trim", ["on", "off"])
def test_a_stage_does_not_peak_on_the_heap_the_stage_before_freed(trim):
    """What a stage freed goes back to the OS as the next begins (Timer trims): a 48 MiB stage after one that
    freed 300 MiB of heap peaks near 48 MiB. Without the trim glibc keeps the 300 MiB and the stage's peak
    stacks on it (the check that the probe can tell the two apart)."""
    out = subprocess.run([sys.executable, "-c", STAGE_TRIM_PROBE, trim], capture_output=True, text=True, check=True)
    ok, update = out.stdout.split()
    if ok != "True":
        pytest.skip("this kernel does not let a process reset its RSS high-water mark")
    if trim == "on":
        assert 40 <= int(update) < 150
    else:
        assert int(update) >= 290
