"""Run logging: one flat dict of namespaced metrics per step (SPEC §4), to JSONL, with optional
TensorBoard / wandb, and sample rollouts dumped per step.

Keys are namespaced with slashes (``propose/valid_frac``, ``reward/solve/deduction/mean``,
``perf/tokens_per_s``) so every sink can group them. Values must be finite floats; a
non-finite value is logged as null in JSON and flagged, never silently dropped.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence


def spread_sample(rollouts: Sequence[Any], k: int) -> list[Any]:
    """Up to `k` rollouts taken round-robin over their (type, role) groups, each group in batch order, so a
    dump shows every group even when one group alone (the proposals come first) could fill it."""
    groups: dict[tuple[Any, Any], list[Any]] = {}
    for r in rollouts:
        groups.setdefault((r.type, r.role), []).append(r)
    picked: list[Any] = []
    for depth in range(max((len(g) for g in groups.values()), default=0)):
        picked += [g[depth] for g in groups.values() if depth < len(g)]
    return picked[:k]


class MetricsLogger:
    """Appends ``{"step": t, **metrics}`` lines to ``<run_dir>/metrics.jsonl``."""

    def __init__(self, run_dir: Path, tensorboard: bool = True, wandb_project: str | None = None,
                 config: Any = None):
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / "samples").mkdir(exist_ok=True)
        self.path = self.run_dir / "metrics.jsonl"
        self._tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.run_dir / "tb"))
            except ImportError:  # tensorboard is an optional extra
                self._tb = None
        self._wandb = None
        if wandb_project:
            try:
                import wandb
            except ImportError as e:
                raise RuntimeError("wandb logging requested but wandb is not installed: pip install wandb") from e
            self._wandb = wandb.init(project=wandb_project, dir=str(self.run_dir),
                                     config=asdict(config) if is_dataclass(config) else None)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (float(v) if v is not None and math.isfinite(float(v)) else None) for k, v in metrics.items()}
        with open(self.path, "a") as fh:
            fh.write(json.dumps({"step": step, **clean}) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        if self._tb is not None:
            for k, v in clean.items():
                if v is not None:
                    self._tb.add_scalar(k, v, step)
            self._tb.flush()
        if self._wandb is not None:
            self._wandb.log({k: v for k, v in clean.items() if v is not None}, step=step)

    def dump_samples(self, step: int, samples: Iterable[Any]) -> Path:
        """Write `samples` (records or dicts) to samples/step_N.jsonl; pick them with :func:`spread_sample`."""
        path = self.run_dir / "samples" / f"step_{step}.jsonl"
        with open(path, "w") as fh:
            for s in samples:
                fh.write(json.dumps(asdict(s) if is_dataclass(s) else s, default=str) + "\n")
        return path

    def truncate_after(self, step: int) -> None:
        """On resume, drop lines logged after the checkpoint's step (they will be redone)."""
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines() if line.strip() and json.loads(line)["step"] <= step]
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text("".join(line + "\n" for line in keep))
        os.replace(tmp, self.path)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    path = Path(run_dir) / "metrics.jsonl"
    if not path.exists():
        raise FileNotFoundError(f"no metrics.jsonl in {run_dir}: is this an azr run directory?")
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i == len(path.read_text().splitlines()):  # a line cut by kill -9 mid-write
                break
            raise ValueError(f"{path}:{i}: corrupt metrics line") from None
    return rows
