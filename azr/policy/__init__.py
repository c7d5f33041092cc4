"""The policy backend: the model that proposes and solves tasks, behind the :class:`Policy` interface.

``load_policy("qwen2.5-coder-0.5b")`` (``DEFAULT_MODEL``) gives the embedded default on CPU,
``load_policy("smollm2")`` a small embedded model for plumbing; ``load_policy("tiny")`` a random
test model that needs no download. The records and the interface live in :mod:`azr.policy.base`;
the transformers implementation in :mod:`azr.policy.hf`; model resolution and the GGUF cache in
:mod:`azr.policy.models`. torch/transformers are imported on first use of those, so importing
this package (e.g. for the config records in ``azr --help``) stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from azr.policy.base import (
    DEFAULT_MODEL,
    Generation,
    GenerationConfig,
    LogprobMicroBatch,
    LoraSettings,
    ModelInfo,
    Policy,
    RoutedPolicy,
    PolicyConfig,
    Scorer,
    PolicyLoadError,
    TokenLogprobs,
)

if TYPE_CHECKING:
    from azr.policy.hf import HFPolicy
    from azr.policy.models import build_tiny, default_cache_dir, load_model, load_policy

_LAZY = {
    "HFPolicy": "azr.policy.hf",
    "load_policy": "azr.policy.models",
    "load_model": "azr.policy.models",
    "build_tiny": "azr.policy.models",
    "default_cache_dir": "azr.policy.models",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'azr.policy' has no attribute {name!r}")


__all__ = [
    "DEFAULT_MODEL", "Generation", "GenerationConfig", "HFPolicy", "LogprobMicroBatch", "LoraSettings", "ModelInfo", "Policy",
    "PolicyConfig", "PolicyLoadError", "RoutedPolicy", "Scorer", "TokenLogprobs", "build_tiny", "default_cache_dir", "load_model",
    "load_policy",
]
