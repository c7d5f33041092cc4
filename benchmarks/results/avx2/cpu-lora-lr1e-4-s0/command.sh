cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-4 --run.steps 10 --run.name cpu-lora-lr1e-4-s0 --run.out-dir /tmp/lora2/runs > /tmp/lora2/train.log 2>&1
echo "train rc=$?" >> /tmp/lora2/train.log
.venv/bin/azr eval --model /tmp/lora2/runs/cpu-lora-lr1e-4-s0 --split dev --out /tmp/lora2/eval-trained > /tmp/lora2/eval-trained.log 2>&1
echo "eval rc=$?" >> /tmp/lora2/eval-trained.log
# host CPU flags: avx2 ; 2 cores, 23 GiB (AMD EPYC). Trained and evaluated on commit d73cf9a (2026-12-07 03:00-04:20 UTC). The untrained model's dev report is the one in ../cpu-lora-s0/eval-dev-native/ (same host, same eval code).
.venv/bin/python benchmarks/learning.py --runs benchmarks/results/avx2/cpu-lora-s0 benchmarks/results/avx2/cpu-lora-lr1e-4-s0 > curriculum.txt
