# LoRA r16, lr 1e-4, KL 0.3 (the run in ../cpu-lora-lr1e-4-kl0.3-s0) plus rejected copies and 4 induction inputs: does the induction proposer write its own inputs once some are rewarded? 5 steps (the session's time), no evaluation. Commit 96e5472.
# host CPU flags: avx2 ; 2 cores, 23 GiB (AMD EPYC); alone on the machine.
cd /work/main
.venv/bin/azr train --preset cpu --model.lora-rank 16 --optim.lr 1e-4 --optim.kl-coef 0.3 --selfplay.reject-copies --selfplay.n-induction-inputs 4 --run.steps 5 --run.name cpu-lora-kl0.3-rc-n4-s0 --run.out-dir /tmp/rcn4/runs > /tmp/rcn4/train.log 2>&1
.venv/bin/python benchmarks/learning.py --buffers benchmarks/results/avx2/seeding-reject-copies-n4 benchmarks/results/avx2/cpu-lora-kl0.3-rc-n4-s0/buffers > buffers.txt; .venv/bin/python benchmarks/learning.py --runs benchmarks/results/avx2/cpu-lora-kl0.3-rc-n4-s0 benchmarks/results/avx2/cpu-lora-lr1e-4-kl0.3-s0 > curriculum.txt
