#!/bin/bash
# Candidate cpu preset: LoRA r16, lr 1e-4, KL 0.3, ONE mini-batch, 4 induction inputs (last N kept), memory limit 12 GiB,
# 15 steps, native CRUXEval-O drift probe (first 50 dev items) every 5 steps.
cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-4 --optim.kl-coef 0.3 \
  --selfplay.n-induction-inputs 4 --run.memory-limit-gib 12 --run.steps 15 --eval-every 5 --eval.suite cruxeval-o \
  --eval.split dev --eval.limit 50 --eval.prompt-style native --eval.response-prefix '' \
  --run.name bf16-lora-kl0.3-n4-s0 --run.out-dir /tmp/run3/runs
# host CPU flags: avx2 avx512f avx512_bf16 (no AMX); 2 cores, 23 GiB (AMD EPYC); bf16. Trained at commit 46670b5,
# 2026-12-07 19:12-20:16 UTC, alone on the machine but for short unit-test runs at nice 19 (records, buffers, heap:
# under 3 min in all, during steps 2-6). Seeding 2:32 (9/9/2 without the seeds), probes at steps 0/5/10/15, 15 steps
# in 55.6 min; /usr/bin/time: 1:03:32 wall, max RSS 17.7 GB (16.9 GiB). Copied by save.sh 15 (as in cpu-lora-kl0.3-mb3-s0).
