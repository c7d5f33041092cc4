cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-4 --optim.kl-coef 0.1 --run.steps 10 --run.name cpu-lora-lr1e-4-kl0.1-s0 --run.out-dir /tmp/lora3/runs > /tmp/lora3/train.log 2>&1
echo "train rc=$?" >> /tmp/lora3/train.log
.venv/bin/azr eval --model /tmp/lora3/runs/cpu-lora-lr1e-4-kl0.1-s0 --split dev --out /tmp/lora3/eval-trained > /tmp/lora3/eval-trained.log 2>&1
echo "eval rc=$?" >> /tmp/lora3/eval-trained.log
R=/tmp/lora3/runs/cpu-lora-lr1e-4-kl0.1-s0
while [ ! -f $R/checkpoints/step_000006/meta.json ]; do sleep 5; done
sleep 10
pkill -f "lora3/command.sh"; pkill -9 -f "azr train --preset cpu"
echo "stopped after step 6 at $(date -u)" >> /tmp/lora3/train.log
cd /work/main
.venv/bin/azr eval --model $R --suite cruxeval-o --split dev --out /tmp/lora3/eval-trained > /tmp/lora3/eval-trained.log 2>&1
echo "eval rc=$?" >> /tmp/lora3/eval-trained.log
# host CPU flags: avx2 ; 2 cores, 23 GiB (AMD EPYC). Trained on commit 8dab0d5 (the KL reference was then a second frozen copy; AdaptersOff, committed later, scores the same to 1e-5). The run was stopped after step 6 by watch.sh (the session's time), and only CRUXEval-O was evaluated. Clean-clone CI ran beside steps 4-6 and the eval, so their step times are slowed. The untrained model's dev report is ../cpu-lora-s0/eval-dev-native/qwen2.5-coder-0.5b.json.gz (same host, same eval code).
.venv/bin/python benchmarks/learning.py --runs benchmarks/results/avx2/cpu-lora-lr1e-4-s0 benchmarks/results/avx2/cpu-lora-lr1e-4-kl0.1-s0 > curriculum.txt
