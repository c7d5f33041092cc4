cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-5 --run.steps 10 --run.name cpu-lora-s0 --run.out-dir /tmp/lora/runs > /tmp/lora/train.log 2>&1
echo "train rc=$?" >> /tmp/lora/train.log
.venv/bin/azr eval --model /tmp/lora/runs/cpu-lora-s0 --split dev --out /tmp/lora/eval-trained > /tmp/lora/eval-trained.log 2>&1
echo "eval rc=$?" >> /tmp/lora/eval-trained.log
.venv/bin/azr eval --split dev --out /tmp/lora/eval-base > /tmp/lora/eval-base.log 2>&1
echo "eval rc=$?" >> /tmp/lora/eval-base.log
# host CPU flags: avx2 ; 2 cores, 23 GiB. Training ran on commit 146be24; the evals on 67c196e (azr eval resolves LoRA run dirs), same code otherwise.
