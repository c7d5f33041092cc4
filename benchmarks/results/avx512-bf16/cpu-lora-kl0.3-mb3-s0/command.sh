#!/bin/bash
# bf16 host, LoRA r16 lr 1e-4, KL 0.3, 3 mini-batches, 6 induction inputs (last N kept), 25 steps, native drift probe every 5
cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-4 --optim.kl-coef 0.3 --optim.mini-batches 3 \
  --selfplay.n-induction-inputs 6 --run.steps 25 --eval-every 5 --eval.suite cruxeval-o --eval.split dev --eval.limit 50 \
  --eval.prompt-style native --eval.response-prefix '' --run.name bf16-lora-kl0.3-mb3-s0 --run.out-dir /tmp/run/runs
# Stopped by hand after the step-20 checkpoint (17:47 UTC) to leave the session time for the evaluation; steps 21-25 never ran.
.venv/bin/azr eval --model /tmp/run/runs/bf16-lora-kl0.3-mb3-s0/checkpoints/step_000020 --split dev --out /tmp/run/eval-trained > /tmp/run/eval-trained.log 2>&1
.venv/bin/azr eval --split dev --out /tmp/run/eval-untrained > /tmp/run/eval-untrained.log 2>&1   # the untrained model, same host
# host CPU flags: avx2 avx512f avx512_bf16 (no AMX); 2 cores, 23 GiB (AMD EPYC); bf16. Trained on commit a1ed1c6 (induction:
# at least N inputs, last N kept; the format example; stop at </answer>), alone on the machine but for a 6-s unit-test run
# (nice 19) during step 6. Run 2026-12-07 16:16-17:47 UTC: seeding 2:44 (9/8/3 tasks, seeds excluded), step-0 probe, 20 steps
# of 204-278 s, native CRUXEval-O probes on the first 50 dev items at steps 0/5/10/15/20 (eval-probe/).
# Results copied by /tmp/run/save.sh 20: config.json metadata.json metrics.jsonl train.log seeding/ eval/ (-> eval-probe/)
# checkpoints/step_000020/buffers/ samples/step_{1,20}.jsonl; evaluation: eval-dev-native/command.txt
.venv/bin/python benchmarks/learning.py --runs benchmarks/results/avx512-bf16/cpu-lora-kl0.3-mb3-s0 benchmarks/results/avx2/cpu-lora-lr1e-4-kl0.3-s0 benchmarks/results/avx512-bf16/cpu-recipe-s0 > curriculum.txt
.venv/bin/python benchmarks/learning.py --buffers benchmarks/results/avx512-bf16/cpu-lora-kl0.3-mb3-s0/seeding benchmarks/results/avx512-bf16/cpu-lora-kl0.3-mb3-s0/buffers > buffers.txt
