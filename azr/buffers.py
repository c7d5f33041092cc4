"""Task buffers: one per task type, the self-play curriculum's memory (SPEC §1).

A buffer starts from the identity seed, grows with every valid proposal (deduplicated by
program text and input), lends K uniform references to each propose prompt, and fills the
solve batch when fewer than B proposals were valid. It persists as JSONL next to the
checkpoint: the first line is a header naming the task type, then one task per line. Saving
is atomic (temp file in the same directory, fsync, ``os.replace``), so a crash leaves either
the old file or the new one, never a partial file.

All randomness comes from a ``random.Random`` passed in, so the trainer can checkpoint it.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, NamedTuple, Sequence

from azr.records import Task, TaskType
from azr.tasks import N_INPUTS
from azr.tasks.induction import seed_task as induction_seed_task

FORMAT_VERSION = 1
IDENTITY_PROGRAM = "def f(x):\n    return x"
IDENTITY_INPUT = "'Hello World'"
IDENTITY_OUTPUT = "'Hello World'"


class BufferFileError(ValueError):
    """A buffer file that cannot be read back: names the file and the offending line."""

    def __init__(self, path: str | os.PathLike[str], line: int, reason: str):
        self.path, self.line, self.reason = str(path), line, reason
        super().__init__(f"{path}:{line}: corrupt task buffer file: {reason}")


class BufferStats(NamedTuple):
    type: TaskType
    size: int
    distinct_programs: int
    mean_program_chars: float


def seed_task(task_type: TaskType, n_inputs: int = N_INPUTS) -> Task:
    """The identity triplet ``def f(x): return x`` on ``'Hello World'`` (SPEC §1). Induction
    tasks need N pairs, so its seed is the identity program on `n_inputs` fixed inputs."""
    if task_type is TaskType.INDUCTION:
        return induction_seed_task(n_inputs)
    return Task(task_type, IDENTITY_PROGRAM, (IDENTITY_INPUT,), (IDENTITY_OUTPUT,))


class TaskBuffer:
    """The tasks of one type, in insertion order, without duplicate (program, input) keys."""

    def __init__(self, task_type: TaskType, tasks: Iterable[Task] = ()):
        self.type = TaskType(task_type)
        self._tasks: list[Task] = []
        self._keys: set[tuple[str, tuple[str, ...]]] = set()
        self.extend(tasks)

    @classmethod
    def seeded(cls, task_type: TaskType, n_inputs: int = N_INPUTS) -> TaskBuffer:
        return cls(task_type, [seed_task(task_type, n_inputs)])

    # -- contents ------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._tasks)

    def __iter__(self) -> Iterator[Task]:
        return iter(self._tasks)

    def __contains__(self, task: object) -> bool:
        return isinstance(task, Task) and task.key in self._keys

    @property
    def tasks(self) -> tuple[Task, ...]:
        return tuple(self._tasks)

    def add(self, task: Task) -> bool:
        """Add `task` unless a task with the same program text and input(s) is already here;
        True iff it was added."""
        if task.type is not self.type:
            raise ValueError(f"{task.type} task added to the {self.type} buffer")
        if task.key in self._keys:
            return False
        self._keys.add(task.key)
        self._tasks.append(task)
        return True

    def extend(self, tasks: Iterable[Task]) -> int:
        """Add each task; the number actually added."""
        return sum(self.add(t) for t in tasks)

    # -- sampling ------------------------------------------------------------------------
    def sample_references(self, k: int, rng: random.Random) -> list[Task]:
        """k tasks uniformly without replacement (all of them, shuffled, when fewer than k)."""
        return rng.sample(self._tasks, min(k, len(self._tasks)))

    def fill(self, valid_tasks: Sequence[Task], batch_size: int, rng: random.Random) -> list[Task]:
        """A batch of exactly `batch_size` tasks: the valid proposals first (truncated if more),
        topped up with buffer tasks drawn uniformly, without replacement while the buffer
        has enough, with replacement otherwise (SPEC §1 step 2)."""
        batch = list(valid_tasks[:batch_size])
        short = batch_size - len(batch)
        if short > 0:
            if not self._tasks:
                raise ValueError(f"cannot fill {short} tasks from the empty {self.type} buffer")
            enough = short <= len(self._tasks)
            batch += rng.sample(self._tasks, short) if enough else rng.choices(self._tasks, k=short)
        return batch

    # -- persistence ---------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the buffer to `path` as JSONL, atomically."""
        path = Path(path)
        lines = [json.dumps({"azr_task_buffer": FORMAT_VERSION, "type": str(self.type)})]
        # ASCII escapes keep every record on one physical line (no raw U+2028 and friends).
        lines += [json.dumps(t.to_json()) for t in self._tasks]
        atomic_write_text(path, "\n".join(lines) + "\n")

    @classmethod
    def load(cls, path: str | os.PathLike[str], task_type: TaskType | None = None) -> TaskBuffer:
        """Read a buffer saved by :meth:`save`; `task_type`, if given, must match the file's.
        Raises :class:`BufferFileError` (file and line) on anything malformed."""
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise BufferFileError(path, 0, f"not UTF-8 ({e})") from e
        lines = text.split("\n")
        if not text.strip():
            raise BufferFileError(path, 1, "empty file, expected a header line")
        header = _json_line(path, 1, lines[0])
        if not isinstance(header, dict) or header.get("azr_task_buffer") != FORMAT_VERSION:
            raise BufferFileError(path, 1, f"expected header {{'azr_task_buffer': {FORMAT_VERSION}, ...}}")
        try:
            file_type = TaskType(header.get("type"))
        except ValueError as e:
            raise BufferFileError(path, 1, f"unknown task type {header.get('type')!r}") from e
        if task_type is not None and TaskType(task_type) is not file_type:
            raise BufferFileError(path, 1, f"holds {file_type} tasks, expected {task_type}")
        buf = cls(file_type)
        for no, line in enumerate(lines[1:], start=2):
            if not line.strip():
                continue
            record = _json_line(path, no, line)
            try:
                task = Task.from_json(record)
            except (TypeError, ValueError, KeyError) as e:
                raise BufferFileError(path, no, f"bad task record: {type(e).__name__}: {e}") from e
            if task.type is not file_type:
                raise BufferFileError(path, no, f"{task.type} task in a {file_type} buffer")
            buf.add(task)
        return buf

    def stats(self) -> BufferStats:
        return BufferStats(
            type=self.type,
            size=len(self._tasks),
            distinct_programs=len({t.program for t in self._tasks}),
            mean_program_chars=statistics.fmean(len(t.program) for t in self._tasks) if self._tasks else 0.0,
        )


def _json_line(path: Path, no: int, line: str) -> object:
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        raise BufferFileError(path, no, f"invalid JSON ({e.msg} at column {e.colno})") from e


def atomic_write_text(path: Path, text: str) -> None:
    """Replace `path` with `text` so that readers see the old or the new content, never a
    mix: write a temp file in the same directory (same filesystem, so the rename is atomic),
    fsync it, ``os.replace`` it over `path`, then fsync the directory to persist the rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
