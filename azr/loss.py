"""The policy loss of the update (SPEC §1 step 6): PPO-clipped policy gradient, no critic.

Per response token t of sequence b (only where mask = 1):

    ρ      = exp(log π_θ − log π_old)                                  (importance ratio)
    L_pg   = −min(ρ·A_b, clip(ρ, 1 − ε, 1 + ε_high)·A_b)               (A_b broadcast over tokens)
    L_kl   = β · k3,  k3 = exp(log π_ref − log π_θ) − (log π_ref − log π_θ) − 1
    L_ent  = −c · H(π_θ(·|s_t))
    loss   = Σ_{b,t} mask·(L_pg + L_kl + L_ent) / N

ε_high = ε unless an asymmetric upper clip is asked for (the reference master uses ε = 0.2,
ε_high = 0.28: a larger upper bound lets low-probability tokens with positive advantage grow).

Aggregation is the **token mean over the whole batch**: N is the number of response tokens
of all sequences (``mask.sum()``), so a long response weighs more than a short one and a
token weighs the same in every sequence. Under micro-batching, pass the full batch's token
count as ``num_tokens_total``: each micro-batch loss is then its share of that mean, and the
micro-batch losses (and gradients) sum exactly to the full-batch loss.

k3 (Schulman's "approximating KL" estimator) is unbiased for KL(π_θ‖π_ref) when tokens are
sampled from π_θ, and ≥ 0 for every token. KL (β) and entropy (c) terms are off by default.

Shapes: B batch (sequences), T tokens, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


MAX_LOG_RATIO = 20.0
"""|log ρ| is clamped to this before exp (such tokens are far outside any clip range)."""


@dataclass(frozen=True)
class LossStats:
    """Diagnostics of one loss call, as token means over this call's masked tokens."""

    pg_loss: float
    """Token mean of L_pg."""
    clip_fraction: float
    """Fraction of tokens where the clipped term was the smaller (active) one: ρ was outside
    [1 − ε, 1 + ε] in the direction the advantage pushes, so the token had no gradient."""
    approx_kl: float
    """k3 estimate of KL(π_old‖π_θ): token mean of (ρ − 1) − log ρ."""
    entropy: float | None
    """Token mean of H(π_θ), when entropies were given."""
    kl_ref: float | None
    """Token mean of k3 to the reference policy, when reference log-probs were given."""
    num_tokens: int
    """Masked tokens in this call."""


def token_logprobs(logits: Tensor, tokens: Tensor) -> Tensor:
    """log π(token_t | s_t) from the logits aligned with each token: (B, T, V), (B, T) -> (B, T)."""
    logp = torch.log_softmax(logits.float(), dim=-1)  # (B, T, V)
    return logp.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, T)


def token_entropy(logits: Tensor) -> Tensor:
    """H(π(·|s_t)) = −Σ_v p_v log p_v per position: (B, T, V) -> (B, T)."""
    return torch.distributions.Categorical(logits=logits.float()).entropy()  # (B, T)


def k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 = exp(log π_ref − log π) − (log π_ref − log π) − 1, per token (≥ 0)."""
    d = ref_logp - logp  # (B, T)
    return torch.expm1(d) - d  # (B, T)


def clipped_surrogate(ratio: Tensor, advantages: Tensor, clip_eps: float,
                      clip_eps_high: float | None = None) -> tuple[Tensor, Tensor]:
    """L_pg = −min(ρ·A, clip(ρ, 1 − ε, 1 + ε_high)·A) per token (ε_high = ε when None), and
    where clipping was active."""
    high = clip_eps if clip_eps_high is None else clip_eps_high
    unclipped = ratio * advantages  # (B, T)
    clipped = ratio.clamp(1.0 - clip_eps, 1.0 + high) * advantages  # (B, T)
    return -torch.minimum(unclipped, clipped), clipped < unclipped  # (B, T), (B, T)


def ppo_clip_loss(
    logprobs: Tensor,
    old_logprobs: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    clip_eps: float = 0.2,
    clip_eps_high: float | None = None,
    ref_logprobs: Tensor | None = None,
    kl_coef: float = 0.0,
    entropy: Tensor | None = None,
    entropy_coef: float = 0.0,
    num_tokens_total: float | None = None,
) -> tuple[Tensor, LossStats]:
    """The PPO-clip loss with token-mean aggregation (see the module docstring).

    logprobs (B, T): log π_θ of the sampled tokens, with grad. old_logprobs (B, T): log π_old
    (the sampling policy; with one mini-batch they equal logprobs' values). clip_eps_high: the
    upper clip range (None: clip_eps). advantages (B,) or
    (B, T). mask (B, T): 1 on response tokens. ref_logprobs (B, T) with kl_coef > 0 adds
    the KL penalty; entropy (B, T) with entropy_coef > 0 adds the entropy bonus.
    num_tokens_total: the normaliser N; defaults to this call's masked tokens.
    """
    if logprobs.shape != old_logprobs.shape or logprobs.shape != mask.shape or logprobs.dim() != 2:
        raise ValueError(f"logprobs, old_logprobs and mask must share a (B, T) shape, got "
                         f"{tuple(logprobs.shape)}, {tuple(old_logprobs.shape)}, {tuple(mask.shape)}")
    if kl_coef and ref_logprobs is None:
        raise ValueError("kl_coef > 0 needs ref_logprobs")
    if entropy_coef and entropy is None:
        raise ValueError("entropy_coef > 0 needs entropy")
    keep = mask.bool()  # (B, T)
    adv = advantages.to(logprobs.dtype)  # (B,) or (B, T)
    adv = adv.unsqueeze(-1).expand_as(logprobs) if adv.dim() == 1 else adv  # (B, T)
    n_here = int(keep.sum())
    norm = max(n_here, 1) if num_tokens_total is None else float(num_tokens_total)
    if norm <= 0:
        raise ValueError(f"num_tokens_total must be > 0, got {num_tokens_total}")

    # Clamped so that exp stays finite: an overflowing ratio would turn the backward into NaN.
    log_ratio = (logprobs - old_logprobs.detach()).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)  # (B, T)
    ratio = torch.exp(log_ratio)  # (B, T)
    pg, clipped = clipped_surrogate(ratio, adv, clip_eps, clip_eps_high)  # (B, T), (B, T)
    per_token = pg  # (B, T)
    kl_tok = k3(logprobs, ref_logprobs.detach()) if ref_logprobs is not None else None  # (B, T)
    if kl_tok is not None and kl_coef:
        per_token = per_token + kl_coef * kl_tok  # (B, T)
    if entropy is not None and entropy_coef:
        per_token = per_token - entropy_coef * entropy  # (B, T)

    # where(), not a product with the mask: padding positions may hold -inf log-probs, and
    # 0 * inf would poison the sum with NaN.
    loss = torch.where(keep, per_token, 0.0).sum() / norm  # ()

    def tmean(x: Tensor) -> float:
        return float(torch.where(keep, x.detach().to(per_token.dtype), 0.0).sum()) / max(n_here, 1)  # (B, T) -> ()

    stats = LossStats(
        pg_loss=tmean(pg),  # (B, T)
        clip_fraction=tmean(clipped),  # (B, T)
        approx_kl=tmean(torch.expm1(log_ratio) - log_ratio),  # (B, T)
        entropy=tmean(entropy) if entropy is not None else None,  # (B, T)
        kl_ref=tmean(kl_tok) if kl_tok is not None else None,  # (B, T)
        num_tokens=n_here,
    )
    return loss, stats
