#!/bin/bash
# Seeding only (azr train --run.steps 0), seed 0, the cpu preset, after commit 4e522dd (the induction propose prompt shows one call of its source task).
cd /work/main
for cfg in "call-n6:--selfplay.n-induction-inputs 6" "call-n6-cap192:--selfplay.n-induction-inputs 6 --rollout.max-new-tokens-propose 192" "call-n4:--selfplay.n-induction-inputs 4"; do
  name=${cfg%%:*}; flags=${cfg#*:}
  /usr/bin/time -v .venv/bin/azr train --preset cpu $flags --run.steps 0 --run.name $name --run.out-dir /tmp/seed/runs > /tmp/seed/$name.log 2>&1
  echo "rc=$?" >> /tmp/seed/$name.log
done
# host: flags avx2 avx512f avx512_bf16 (no AMX), 2-core AMD EPYC, 23 GiB; bf16; alone on the machine; 2026-12-07 18:05-18:15 UTC
.venv/bin/python benchmarks/learning.py --buffers benchmarks/results/avx512-bf16/cpu-lora-kl0.3-mb3-s0/seeding benchmarks/results/avx512-bf16/seeding-call/call-n6 benchmarks/results/avx512-bf16/seeding-call/call-n6-cap192 benchmarks/results/avx512-bf16/seeding-call/call-n4 > buffers.txt
