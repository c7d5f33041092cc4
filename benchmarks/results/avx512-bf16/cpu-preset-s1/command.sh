#!/bin/bash
# Seed 1 of the shipped cpu preset (no extra recipe flags), with the native CRUXEval-O drift probe
# (first 50 dev items) every 5 steps. Run from a worktree of commit 6a6edfe so edits to the checkout cannot reach it.
cd /tmp/run4/wt
/usr/bin/time -v /work/main/.venv/bin/python -c "from azr.cli import main; main()" train --preset cpu --run.seed 1 \
  --run.steps 15 --eval-every 5 --eval.suite cruxeval-o --eval.split dev --eval.limit 50 --eval.prompt-style native \
  --eval.response-prefix '' --run.name cpu-s1 --run.out-dir /tmp/run4/runs
# host CPU flags: avx2 avx512f avx512_bf16 (no AMX); 2 cores, 23 GiB (AMD EPYC); bf16. Trained at commit 6a6edfe (a
# worktree), 2026-12-07 22:11-23:28 UTC. Not alone the whole time: smaps.log.gz is a nice-19 sampler of the trainer's
# mappings every 2 s (its RSS by mapping: heap, anonymous, the checkpoint's memory map); and three nice-19 probes of
# where the memory goes ran beside steps 2-9 (22:24-22:59; one held ~9.7 GiB for a few minutes), plus two short pytest
# runs (23:00-23:08). Step times from step 2 on are therefore upper bounds. /usr/bin/time: 1:17:24 wall, max RSS
# 18.0 GB (17.2 GiB). 15 steps, 69.0 min of step time. Copied by /tmp/run4/save.sh 15.
