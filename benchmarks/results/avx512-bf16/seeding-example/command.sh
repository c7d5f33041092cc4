#!/bin/bash
# Seed 0, the cpu preset (since the LoRA+KL commit: 4 induction inputs), same host, alone, back to back:
#  "example4": HEAD as committed (the induction format example shows the 4 inputs asked for): seeding, then 1 step,
#              for the per-stage peak RSS (memory/stage_peak_gib/<stage>) of the shipped recipe;
#  "example6": HEAD + example6.diff (the example shows 6 inputs; the prompt asks for "at least 4"): seeding only.
# Each seeding writes seeding/rounds.jsonl (why proposals failed).
cd /work/main
/usr/bin/time -v .venv/bin/azr train --preset cpu --run.steps 1 --run.name example4 --run.out-dir /tmp/seed2/runs > /tmp/seed2/example4.log 2>&1
git apply /tmp/seed2/example6.diff
/usr/bin/time -v .venv/bin/azr train --preset cpu --run.steps 0 --run.name example6 --run.out-dir /tmp/seed2/runs > /tmp/seed2/example6.log 2>&1
git apply -R /tmp/seed2/example6.diff
# host: flags avx2 avx512f avx512_bf16 (no AMX), 2-core AMD EPYC, 23 GiB; bf16; alone; HEAD 32a393b; 2026-12-07 21:30-21:40 UTC
# example4 seeding 2:27 then one step (199 s; example4/metrics.jsonl has its per-stage peaks); example6 seeding 2:59.
.venv/bin/python benchmarks/learning.py --buffers benchmarks/results/avx512-bf16/seeding-example/example4 benchmarks/results/avx512-bf16/seeding-example/example6 > buffers.txt
