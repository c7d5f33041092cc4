#!/bin/bash
# The 20-step run's flags (cpu-lora-kl0.3-mb3-s0) at the commit that shows the induction source task's call, 6 steps, no probe:
# does induction leave the all -1 regime (that run: 0 valid induction proposals of 24 in steps 1-6)?
cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-4 --optim.kl-coef 0.3 --optim.mini-batches 3 \
  --selfplay.n-induction-inputs 6 --run.steps 6 --run.name bf16-lora-kl0.3-mb3-call-s0 --run.out-dir /tmp/run2/runs
# host: flags avx2 avx512f avx512_bf16 (no AMX), 2-core AMD EPYC, 23 GiB; bf16; alone; commit 481577c; 2026-12-07 18:33-18:54 UTC.
# Stopped by hand during step 4 to end the session: seeding 2:59 (12/13/2 without the seeds), steps 1-3 in metrics.jsonl and samples/.
# Induction proposals of steps 1-3: 0 valid of 12; 8 gave too few inputs (7 of them 4 or 5 of the 6 asked), 3 never closed </answer>, 1 repeated an input.
