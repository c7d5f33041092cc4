"""Atomic, verifiable checkpoints of a self-play run.

Layout under ``<run_dir>/checkpoints/``::

    step_000007/            one complete checkpoint
        model/              the policy in HF format (save_pretrained + tokenizer)
        trainer.pt          optimizer state, RNG states
        buffers/<type>.jsonl
        meta.json           step, config, versions; written last: its presence marks completeness
    latest                  the name of the newest complete checkpoint (replaced atomically)

A checkpoint is built in a temp directory and renamed into place, and ``latest`` is replaced
with ``os.replace``, so a ``kill -9`` at any moment leaves the previous checkpoint intact. A
corrupt or mismatched checkpoint raises :class:`CheckpointError` saying what is wrong and how
to proceed.
"""

from __future__ import annotations

import json
import os
import random
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch

FORMAT_VERSION = 1


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be used; the message names the file and the fix."""


@dataclass(frozen=True)
class RngState:
    """The run's random state: its Python RNG (every draw of a step) and torch's (sampling seeds, init)."""

    python: Any
    torch: Any

    @classmethod
    def capture(cls, py_rng: random.Random) -> "RngState":
        return cls(py_rng.getstate(), torch.get_rng_state())

    @classmethod
    def from_dict(cls, d: dict) -> "RngState":
        """The state a checkpoint saved. Older checkpoints also hold a numpy generator's state, which
        nothing drew from; it is ignored."""
        return cls(d["python"], d["torch"])

    def restore(self, py_rng: random.Random) -> None:
        py_rng.setstate(self.python)
        torch.set_rng_state(self.torch)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(
    run_dir: Path,
    step: int,
    *,
    save_model: Callable[[Path], None],
    save_buffers: Callable[[Path], None],
    optimizer: torch.optim.Optimizer,
    rng: RngState,
    config: dict,
    extra: dict | None = None,
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` atomically and point ``latest`` at it; keep the newest `keep`."""
    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:06d}"
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        save_model(tmp / "model")
        (tmp / "buffers").mkdir()
        save_buffers(tmp / "buffers")
        torch.save({"optimizer": optimizer.state_dict(), "rng": rng.__dict__, "extra": extra or {}}, tmp / "trainer.pt")
        meta = {"format_version": FORMAT_VERSION, "step": step, "config": config}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1, default=str))
        for f in tmp.rglob("*"):
            if f.is_file():
                with open(f, "rb") as fh:
                    os.fsync(fh.fileno())
        final = root / name
        if final.exists():
            shutil.rmtree(final)
        os.rename(tmp, final)
        _fsync_dir(root)
    except Exception as e:  # noqa: BLE001 - OSError, or a writer's own type (safetensors' SafetensorError on ENOSPC)
        shutil.rmtree(tmp, ignore_errors=True)
        raise CheckpointError(f"could not write checkpoint {root / name}: {e} (disk full? the previous checkpoint "
                              f"is untouched)") from e
    latest_tmp = root / f".latest-{os.getpid()}"
    latest_tmp.write_text(name)
    os.replace(latest_tmp, root / "latest")
    _fsync_dir(root)
    for old in sorted(p for p in root.glob("step_*") if p.name != name)[:-(keep - 1) or None]:
        shutil.rmtree(old, ignore_errors=True)
    return final


@dataclass(frozen=True)
class LoadedCheckpoint:
    path: Path
    step: int
    config: dict
    trainer_state: dict

    @property
    def model_dir(self) -> Path:
        return self.path / "model"

    @property
    def buffers_dir(self) -> Path:
        return self.path / "buffers"


def latest_checkpoint(run_dir: Path) -> Path | None:
    latest = Path(run_dir) / "checkpoints" / "latest"
    if not latest.exists():
        return None
    return latest.parent / latest.read_text().strip()


def space_warning(run_dir: Path) -> str | None:
    """Why the next save will fail, if the free space under `run_dir` cannot hold one more checkpoint the size of
    the latest (a save writes the new checkpoint before it removes the oldest; a 0.5B model with its AdamW state
    takes ~7 GB). None when it fits, or when there is no checkpoint yet to measure. Said at a save, this costs
    the user nothing; found at the next save, it costs the steps since the last one."""
    latest = latest_checkpoint(run_dir)
    if latest is None or not latest.is_dir():
        return None
    need = sum(f.stat().st_size for f in latest.rglob("*") if f.is_file())
    free = shutil.disk_usage(latest).free
    if free >= need * 1.05:  # 5 % for a checkpoint that grows (buffers) and for other writers
        return None
    return (f"{_size(free)} free under {Path(run_dir).resolve()}, but a checkpoint takes {_size(need)}: "
            f"the next save will fail (disk full) unless space is freed (the run keeps its newest 2 checkpoints)")


def _size(n: int) -> str:
    return f"{n / 1e9:.1f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def load_checkpoint(path: Path, expect_config: dict | None = None) -> LoadedCheckpoint:
    """Read and verify a checkpoint directory. `expect_config` is checked for the fields that
    must not change across a resume (model, self-play shape)."""
    path = Path(path)
    meta_file = path / "meta.json"
    if not meta_file.exists():
        raise CheckpointError(f"{path} is not a complete checkpoint (no meta.json); delete it, or point "
                              f"checkpoints/latest at an older step_* directory")
    try:
        meta = json.loads(meta_file.read_text())
        step, config = int(meta["step"]), meta["config"]
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{meta_file} is corrupt ({e}); resume from an older checkpoint or start a new run") from e
    if meta.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{meta_file}: checkpoint format {meta.get('format_version')} != {FORMAT_VERSION}")
    for required in ("model", "buffers", "trainer.pt"):
        if not (path / required).exists():
            raise CheckpointError(f"{path}: missing {required}; the checkpoint is incomplete")
    try:
        trainer_state = torch.load(path / "trainer.pt", weights_only=False)
    except Exception as e:  # noqa: BLE001 - torch raises many types on a damaged file
        raise CheckpointError(f"{path / 'trainer.pt'} is corrupt ({type(e).__name__}: {e})") from e
    if expect_config is not None:
        for section, keys in (("model", ("name", "lora_rank")), ("selfplay", ("batch_size", "n_induction_inputs"))):
            for k in keys:
                have, want = config.get(section, {}).get(k), expect_config.get(section, {}).get(k)
                if have != want:
                    raise CheckpointError(
                        f"checkpoint {path} was made with {section}.{k}={have!r}, but this run has {want!r}: "
                        f"resume with the same setting, or start a new run with another --run.name")
    return LoadedCheckpoint(path, step, config, trainer_state)
