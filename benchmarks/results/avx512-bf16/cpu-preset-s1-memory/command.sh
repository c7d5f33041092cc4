#!/bin/bash
# The shipped cpu preset for 3 steps at commit 2039e3d (stage trims, LoRA base linears in bf16, the plan counting
# the head's backward), seed 1 and the same probe flags as cpu-preset-s1, to compare steps 1-3 with that run's
# (commit 6a6edfe). Run from a worktree.
cd /tmp/run4/wt2
/usr/bin/time -v /work/main/.venv/bin/python -c "from azr.cli import main; main()" train --preset cpu --run.seed 1 \
  --run.steps 3 --eval-every 5 --eval.suite cruxeval-o --eval.split dev --eval.limit 50 --eval.prompt-style native \
  --eval.response-prefix '' --run.name mem-s1 --run.out-dir /tmp/run4/runs
# host CPU flags: avx2 avx512f avx512_bf16 (no AMX); 2 cores, 23 GiB (AMD EPYC); bf16. 2026-12-07 23:58-00:14 UTC,
# alone on the machine but for smaps.log.gz's nice-19 sampler (the trainer's RSS by mapping every 2 s).
# /usr/bin/time: 15:53 wall, max RSS 11.1 GB (10.35 GiB). Compared with steps 1-3 of ../cpu-preset-s1/ (commit 6a6edfe,
# same seed and flags; its seeding and step 1 made the same tasks, step 1 scored the same batch).
