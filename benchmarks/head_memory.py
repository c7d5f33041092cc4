"""What the output head's backward holds besides what autograd saved, per response token, in units of the vocabulary
size V: the figure behind `azr.memory.HEAD_BACKWARD`.

    python benchmarks/head_memory.py

A one-layer Llama (hidden 64) with Qwen2.5's vocabulary (V = 151,936), so that the head dominates: one row of
16 prompt and T response tokens is scored with grad through the learner's own path (`HFPolicy.iter_logprob_
microbatches`), then its backward runs. RSS is read with glibc's mmap threshold at 1 MiB (freed tensors go back
to the OS at once) and the kernel's high-water mark reset before the forward and before the backward. Prints,
per token: what autograd saved (`saved_tensors_hooks`), the forward's and the backward's peak above the state
before the forward, and the backward's excess over the saved tensors (what the memory plan must add).
"""

from __future__ import annotations

import torch


def main() -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from azr import heap
    from azr.policy.base import PolicyConfig
    from azr.policy.hf import HFPolicy
    from azr.policy.models import build_tiny_tokenizer

    torch.set_num_threads(1)
    if not heap.set_mmap_threshold(1) or not heap.reset_peak():
        raise SystemExit("needs glibc and a kernel that lets a process reset its RSS high-water mark")
    vocab = 151936
    cfg = LlamaConfig(vocab_size=vocab, hidden_size=64, intermediate_size=128, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=2, tie_word_embeddings=False)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    for autocast in (None, "bfloat16"):
        policy = HFPolicy(model, build_tiny_tokenizer(), PolicyConfig(device="cpu", gen_dtype="float32",
                                                                      train_autocast=autocast))
        for t in (128, 256):
            saved: dict[int, int] = {}

            def pack(x: torch.Tensor) -> torch.Tensor:
                s = x.untyped_storage()
                saved[s.data_ptr()] = s.nbytes()
                return x

            heap.trim()
            start = heap.rss_bytes()
            heap.reset_peak()
            with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
                mb = next(policy.iter_logprob_microbatches([[5] * 16], [[7] * t], micro_batch=1, grad=True))
            fwd = heap.peak_since_reset_bytes()
            heap.reset_peak()
            (-mb.logprobs.sum()).backward()
            bwd = heap.peak_since_reset_bytes()
            per = float(t * vocab)
            s = sum(saved.values()) / per
            print(f"autocast={autocast or 'none':8s} T={t}: saved {s:.1f} V, forward peak {(fwd - start) / per:.1f} V, "
                  f"backward peak {(bwd - start) / per:.1f} V, backward beyond saved {(bwd - start) / per - s:.1f} V "
                  "bytes a response token", flush=True)
            del mb
            model.zero_grad(set_to_none=True)


if __name__ == "__main__":
    main()
