cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-4 --optim.kl-coef 0.3 --run.steps 10 --eval-every 3 --eval.suite cruxeval-o --eval.split dev --eval.limit 50 --eval.prompt-style native --eval.response-prefix '' --run.name cpu-lora-lr1e-4-kl0.3-s0 --run.out-dir /tmp/lora4/runs > /tmp/lora4/train.log 2>&1
echo "train rc=$?" >> /tmp/lora4/train.log
.venv/bin/azr eval --model /tmp/lora4/runs/cpu-lora-lr1e-4-kl0.3-s0 --split dev --out /tmp/lora4/eval-trained > /tmp/lora4/eval-trained.log 2>&1
echo "eval rc=$?" >> /tmp/lora4/eval-trained.log
# host CPU flags: avx2 ; 2 cores, 23 GiB (AMD EPYC). Trained on commit 8ced2d4, alone on the machine.
# Run 2026-12-07 12:17-13:50 UTC (seeding 6:02, step-0 probe, 10 steps of 360-419 s, native CRUXEval-O probes on the first 50 dev items at steps 0/3/6/9 in eval-probe/, then the dev evaluation). Results copied by:
# mkdir -p $D/...; cp config.json metadata.json metrics.jsonl train.log seeding/ eval/ (-> eval-probe/) checkpoints/step_000010/buffers/ samples/step_{1,10}.jsonl; gzip the eval report
.venv/bin/python benchmarks/learning.py --runs benchmarks/results/avx2/cpu-lora-lr1e-4-kl0.3-s0 benchmarks/results/avx2/cpu-lora-lr1e-4-kl0.1-s0 benchmarks/results/avx2/cpu-lora-lr1e-4-s0 > curriculum.txt
.venv/bin/python benchmarks/learning.py --buffers benchmarks/results/avx2/cpu-lora-lr1e-4-kl0.3-s0/seeding benchmarks/results/avx2/cpu-lora-lr1e-4-kl0.3-s0/buffers > buffers.txt
