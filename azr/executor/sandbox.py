"""The sandbox: runs untrusted, model-written Python in jailed processes, in batches.

``SandboxPool.run_many(jobs)`` runs each :class:`Job` (a program plus a call expression such
as ``f(1, 2)``) and returns one :class:`ExecResult` per job, in order. Values come back as
``repr`` text; callers parse them with ``ast.literal_eval`` (see ``literals.parse_literal``).

How a job runs. The pool keeps a few long-lived worker processes ("zygotes", ``_zygote.py``).
Each worker forks one fresh child per job; the child jails itself before it compiles the
program, runs it, and reports. A job therefore never shares state with another job, yet pays
for a fork instead of a fresh interpreter. A job's ``varied`` runs (the determinism check) go
to the worker's twin zygote, started inside the same namespaces with another string hash seed,
whose jailed child shifts the heap with random-size allocations before each run. One long-lived
child of the twin runs the varied runs of batch after batch; any that does not reproduce the
first run is run again alone in a fresh child, and that run counts (``_zygote.py`` explains why
this keeps the verdicts per job).

Run-time bans. With ``SandboxConfig.audit`` (the default) each child installs a PEP 578 audit
hook before the task runs: an event of a banned capability (``bans.py``: opening a file,
importing a banned module, exec/compile from the task's code, process, socket and signal
calls, …) ends the child with ``Status.BANNED``, however the program reached it. This judges
what a program does for task validation; it is not a protection layer, and it is not listed
below as one.

What is protected (each layer is reported in :class:`SandboxInfo`; a layer the OS refuses is
dropped with a warning, never silently):
  * **Trainer process**: untrusted code never runs in it; a crash, ``os._exit`` or a segfault
    kills only the child. A worker that dies anyway is respawned and its jobs retried once.
  * **Hangs**: a wall-clock timeout kills the child's whole process group; RLIMIT_CPU backs it.
  * **Memory**: RLIMIT_AS caps the address space (a memory bomb gets ``MemoryError`` or dies).
  * **Processes**: RLIMIT_NPROC (default 1, i.e. no fork at all) stops fork bombs and
    background processes; it only binds a non-root uid, hence the uid drop below.
  * **Files**: the child ``chroot``s into an empty per-worker work dir (a size-capped tmpfs in
    a private mount namespace when available), so the host filesystem is not visible at all;
    RLIMIT_FSIZE and RLIMIT_NOFILE cap what it can write and open.
  * **Privileges / signals**: when the trainer runs as root, the child drops to an unprivileged
    uid (one per worker), so it cannot signal other processes or regain root. Workers run in a
    new pid namespace, so host pids are not even visible.
  * **Network**: workers live in a new network namespace with no interfaces (``unshare``).
  * **Environment**: workers start from a scrubbed environment; no secret is inherited.

What is NOT protected:
  * Kernel exploits: this is process isolation, not a VM; there is no seccomp filter.
  * The audit hook against a determined program: CPython's audit events do not cover every
    capability (``os.write`` has none), and a program can reach the child's own frames
    (``inspect``) to interfere with the hook's bookkeeping. The layers above still hold.
  * A program forging its own result (e.g. a value whose ``__repr__`` lies): results are only
    as honest as the code that produced them. Checkers compare parsed literals in the trainer.
  * Without root or user namespaces, chroot, the uid drop and the namespaces are unavailable;
    the remaining layers (rlimits, timeouts, scrubbed env, temp dir) still apply, and
    ``SandboxInfo.warnings`` says what is missing.
  * CPU contention: a busy child can slow the trainer down until its timeout.
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Sequence

from azr.executor import bans
from azr.executor._frames import encode, read_available, split_frames

_ZYGOTE = str(Path(__file__).with_name("_zygote.py"))


class Status(StrEnum):
    OK = "ok"
    ERROR = "error"
    TIMEOUT = "timeout"
    MEMORY = "memory"
    KILLED = "killed"
    BANNED = "banned"
    """The program used a banned capability at run time (the audit hook in the child; ``bans.py``)."""


@dataclass(frozen=True)
class Job:
    """One execution: run `code`, then evaluate `call` (e.g. ``f('a', 1)``) in its namespace."""

    code: str
    call: str
    timeout_s: float | None = None
    """Wall-clock limit per run; None uses the pool's ``SandboxConfig.timeout_s``."""
    repeat: int = 1
    """Run the program this many times in the job's child, each from fresh globals (the
    determinism check compares the values; see ``validate``)."""
    varied: int = 0
    """Runs besides those, in the worker's twin zygote: another string hash seed, and a heap
    shifted by random-size allocations before each run, so a value that depends on set order or
    object addresses changes (the determinism check). Their values follow the `repeat` runs'."""


@dataclass(frozen=True)
class ExecResult:
    status: Status
    values: tuple[str, ...] | None
    """``repr`` of the call's result for each run when status is ok (the `repeat` runs, then the
    `varied` ones), else None."""
    error: str = ""
    stdout: str = ""
    stderr: str = ""
    duration_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status is Status.OK

    @property
    def value(self) -> str | None:
        """``repr`` of the (first run's) result, or None when the job did not succeed."""
        return self.values[0] if self.values else None


@dataclass(frozen=True)
class SandboxConfig:
    """Limits for each job. Defaults follow SPEC §3 (10 s timeout as in the reference)."""

    timeout_s: float = 10.0
    """Wall-clock limit per execution, in seconds."""
    memory_mb: int = 1024
    """Address-space limit (RLIMIT_AS) of each child, in MiB."""
    max_processes: int = 1
    """RLIMIT_NPROC of the child's uid; 1 means the program cannot fork at all."""
    max_open_files: int = 32
    """RLIMIT_NOFILE of the child."""
    max_file_mb: int = 4
    """RLIMIT_FSIZE: the largest file the child may write, in MiB."""
    tmpfs_mb: int = 64
    """Size of each worker's tmpfs work dir, when a mount namespace is available."""
    output_cap: int = 8192
    """Characters of stdout and of stderr kept per job; the rest is dropped."""
    max_value_chars: int = 100_000
    """A result whose repr is longer than this is reported as an error."""
    workers: int = 0
    """Worker processes; 0 means one per CPU core."""
    uid_base: int = 61000
    """When running as root, worker i's children run as uid ``uid_base + i``, its twin's (the
    varied runs) as ``uid_base + 512 + i``."""
    network_namespace: bool = True
    """Put workers in an empty network namespace (needs ``unshare``); off only for debugging."""
    filesystem_jail: bool = True
    """chroot each child into its empty work dir when privileges allow."""
    audit: bool = True
    """Enforce the ban list at run time in each child with an audit hook (a banned capability
    gives Status.BANNED); off only to test the other layers on their own."""
    twin_hash_seed: int = 1
    """PYTHONHASHSEED of the twin zygotes that run varied runs (workers use 0)."""

    def __post_init__(self) -> None:
        for name in ("timeout_s", "memory_mb", "max_processes", "max_open_files", "max_file_mb", "output_cap"):
            if getattr(self, name) <= 0:
                raise ValueError(f"SandboxConfig.{name} must be > 0, got {getattr(self, name)!r}")
        if self.memory_mb < 64:
            raise ValueError(f"SandboxConfig.memory_mb={self.memory_mb} is too small for Python; use >= 64")
        if self.workers < 0:
            raise ValueError("SandboxConfig.workers must be >= 0 (0 = one per core)")
        if not 0 < self.twin_hash_seed <= 4294967295:
            raise ValueError("SandboxConfig.twin_hash_seed must be in 1..4294967295 (workers use 0; it must differ)")


@dataclass(frozen=True)
class SandboxInfo:
    """Which isolation layers are active; goes into a run's metadata."""

    layers: dict[str, bool] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()


_TWIN_UID_OFFSET = 512
_MINIMAL_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1"}
# The worker's namespace script: a private tmpfs on the work root, then the zygote.
_MOUNT_SH = 'mount -t tmpfs -o "size=$1,mode=0755" tmpfs "$2" && shift 2 && exec "$@"'


@dataclass(frozen=True)
class _LaunchMode:
    name: str
    prefix: tuple[str, ...]
    tmpfs: bool
    chroot: bool
    drop_uid: bool
    netns: bool
    pidns: bool


def _launch_modes(cfg: SandboxConfig) -> list[_LaunchMode]:
    """Candidate launch modes, strongest first; the first one that starts is used."""
    root = os.geteuid() == 0
    unshare = shutil.which("unshare")
    jail = cfg.filesystem_jail
    modes = []
    if unshare and cfg.network_namespace:
        base = [unshare, "--net", "--pid", "--fork", "--kill-child", "--mount"]
        if not root:
            base[1:1] = ["--user", "--map-root-user"]
        modes.append(_LaunchMode("namespaces", tuple(base), tmpfs=True, chroot=jail, drop_uid=root,
                                 netns=True, pidns=True))
        net_only = [unshare, "--net"] if root else [unshare, "--user", "--map-root-user", "--net"]
        modes.append(_LaunchMode("netns-only", tuple(net_only), tmpfs=False, chroot=jail, drop_uid=root,
                                 netns=True, pidns=False))
    modes.append(_LaunchMode("plain", (), tmpfs=False, chroot=root and jail, drop_uid=root,
                             netns=False, pidns=False))
    return modes


class _Worker:
    def __init__(self, idx: int, pool: "SandboxPool", mode: _LaunchMode):
        self.idx, self.pool, self.mode = idx, pool, mode
        self.root = tempfile.mkdtemp(prefix=f"w{idx}-", dir=pool._root)
        os.chmod(self.root, 0o755)
        cfg = pool.config
        zcfg = {
            "role": "primary",
            "workdir": os.path.join(self.root, "work"),
            "twin_workdir": os.path.join(self.root, "work-twin"),
            "twin_hash_seed": cfg.twin_hash_seed,
            "audit": cfg.audit,
            "banned_modules": sorted(bans.BANNED_MODULES),
            "banned_events": sorted(bans.BANNED_EVENTS),
            "banned_event_prefixes": list(bans.BANNED_EVENT_PREFIXES),
            "task_banned_events": sorted(bans.TASK_BANNED_EVENTS),
            "chroot": mode.chroot,
            "uid": cfg.uid_base + idx if mode.drop_uid else None,
            "twin_uid": cfg.uid_base + _TWIN_UID_OFFSET + idx if mode.drop_uid else None,
            "memory_bytes": cfg.memory_mb << 20,
            "max_processes": cfg.max_processes,
            "max_open_files": cfg.max_open_files,
            "max_file_bytes": cfg.max_file_mb << 20,
            "output_cap": cfg.output_cap,
            "max_value_chars": cfg.max_value_chars,
        }
        cmd = [sys.executable, "-S", "-B", _ZYGOTE, json.dumps(zcfg)]
        if mode.tmpfs:
            cmd = ["sh", "-c", _MOUNT_SH, "sh", f"{cfg.tmpfs_mb}m", self.root, *cmd]
        self.proc = subprocess.Popen(
            [*mode.prefix, *cmd], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env=_MINIMAL_ENV, cwd=self.root, start_new_session=True, close_fds=True,
        )
        self.out_fd = self.proc.stdout.fileno()
        os.set_blocking(self.out_fd, False)
        self.buf = bytearray()
        self.inflight: deque[int] = deque()  # job indices sent, in order

    def wait_ready(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msgs = self.read_frames(timeout=deadline - time.monotonic())
            if msgs is None:
                return False
            if any(m.get("ready") for m in msgs):
                return True
        return False

    def send(self, jobs: list[dict]) -> None:
        self.proc.stdin.write(encode({"jobs": jobs}))
        self.proc.stdin.flush()

    def read_frames(self, timeout: float = 0.0) -> list[dict] | None:
        """Frames available now (after waiting up to `timeout` for the first); None on EOF."""
        sel = selectors.DefaultSelector()
        sel.register(self.out_fd, selectors.EVENT_READ)
        try:
            if not sel.select(timeout):
                return []
        finally:
            sel.close()
        return self.drain()

    def drain(self) -> list[dict] | None:
        """The frames that arrived; None when the worker has closed its end and sent nothing more. A frame that
        is not JSON comes back as ``{}``."""
        eof = read_available(self.out_fd, self.buf)
        msgs = split_frames(self.buf)
        return None if eof and not msgs else msgs

    def kill(self) -> None:
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, 9)
            except OSError:
                pass
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        shutil.rmtree(self.root, ignore_errors=True)

    def stderr_text(self) -> str:
        try:
            os.set_blocking(self.proc.stderr.fileno(), False)
            return (self.proc.stderr.read() or b"").decode(errors="replace")[-500:]
        except (OSError, ValueError, TypeError):
            return ""


class SandboxPool:
    """A pool of sandbox workers. Use as a context manager, or call :meth:`close`."""

    def __init__(self, config: SandboxConfig | None = None):
        self.config = config or SandboxConfig()
        self._n = self.config.workers or os.cpu_count() or 1
        self._root = tempfile.mkdtemp(prefix="azr-sandbox-")
        os.chmod(self._root, 0o755)
        self._mode, problems = self._pick_mode()
        self.info = self._describe(self._mode, problems)
        for w in self.info.warnings:
            warnings.warn(f"azr sandbox: {w}", RuntimeWarning, stacklevel=2)
        self._workers: list[_Worker | None] = [None] * self._n
        self._closed = False

    # -- set-up --------------------------------------------------------------------------
    def _pick_mode(self) -> tuple[_LaunchMode, list[str]]:
        problems = []
        for mode in _launch_modes(self.config):
            w = _Worker(0, self, mode)
            ok = w.wait_ready(timeout=30)
            err = "" if ok else w.stderr_text()
            w.kill()
            if ok:
                return mode, problems
            problems.append(f"launch mode {mode.name!r} failed: {err.strip() or 'no ready signal'}")
        raise RuntimeError("azr sandbox: no worker could start; " + "; ".join(problems))

    @staticmethod
    def _describe(mode: _LaunchMode, problems: list[str]) -> SandboxInfo:
        layers = {
            "separate_process": True, "timeout": True, "rlimits": True, "scrubbed_env": True, "temp_workdir": True,
            "network_namespace": mode.netns, "pid_namespace": mode.pidns, "tmpfs_quota": mode.tmpfs,
            "chroot": mode.chroot, "uid_drop": mode.drop_uid,
        }
        missing = {
            "network_namespace": "no network namespace: generated code could reach the network",
            "chroot": "no chroot: generated code can see (not write as another uid) the host filesystem",
            "uid_drop": "no uid drop: RLIMIT_NPROC and signal isolation are weaker",
        }
        warns = [msg for key, msg in missing.items() if not layers[key]]
        if warns and problems:
            warns.append("; ".join(problems))
        return SandboxInfo(layers=layers, warnings=tuple(warns))

    def _worker(self, i: int) -> _Worker:
        w = self._workers[i]
        if w is None or w.proc.poll() is not None:
            if w is not None:
                w.kill()
            w = _Worker(i, self, self._mode)
            if not w.wait_ready(timeout=30):
                err = w.stderr_text()
                w.kill()
                raise RuntimeError(f"azr sandbox: worker {i} failed to start: {err}")
            self._workers[i] = w
        return w

    # -- running -------------------------------------------------------------------------
    def run(self, job: Job) -> ExecResult:
        return self.run_many([job])[0]

    def run_many(self, jobs: Sequence[Job], chunk: int = 16) -> list[ExecResult]:
        """Run all jobs across the workers; results come back in the order of `jobs`."""
        if self._closed:
            raise RuntimeError("SandboxPool is closed")
        results: list[ExecResult | None] = [None] * len(jobs)
        pending = deque(range(len(jobs)))
        attempts = [0] * len(jobs)
        default_t = self.config.timeout_s
        timeouts = [j.timeout_s or default_t for j in jobs]
        deadlines: dict[int, float] = {}
        active: set[int] = set()
        sel = selectors.DefaultSelector()
        try:
            while pending or active:
                for i in range(self._n):
                    if pending and i not in active:
                        w = self._worker(i)
                        batch = [pending.popleft() for _ in range(min(chunk, len(pending)))]
                        w.inflight.extend(batch)
                        for k in batch:
                            attempts[k] += 1
                        try:
                            w.send([{"id": k, "code": jobs[k].code, "call": jobs[k].call, "timeout_s": timeouts[k],
                                     "repeat": jobs[k].repeat, "varied": jobs[k].varied}
                                    for k in batch])
                        except (BrokenPipeError, OSError):
                            self._worker_lost(i, pending, results, attempts)
                            continue
                        # Zygote-level safety net: the jobs' own limits (a varied run may be run twice: in the
                        # twin's shared child, then alone) plus slack for the forks and the twin's start.
                        deadlines[i] = time.monotonic() + 5.0 + sum(
                            timeouts[k] * (jobs[k].repeat + 2 * jobs[k].varied) + (2.0 if jobs[k].varied else 0.0)
                            for k in batch)
                        active.add(i)
                        sel.register(w.out_fd, selectors.EVENT_READ, i)
                for key, _ in sel.select(timeout=0.5):
                    i = key.data
                    w = self._workers[i]
                    msgs = w.drain()
                    # A frame that is not the next job's result (out of order, or not JSON) means the worker's
                    # state is unknown: it is handled as a lost worker, whose unanswered jobs are retried once.
                    lost = msgs is None
                    for m in msgs or []:
                        if not w.inflight or m.get("id") != w.inflight[0]:
                            lost = True
                            break
                        k = w.inflight.popleft()
                        values = tuple(m["value"]) if m["value"] is not None else None
                        results[k] = ExecResult(Status(m["status"]), values, m["error"], m["stdout"],
                                                m["stderr"], m["duration_s"])
                    if lost:
                        sel.unregister(w.out_fd)
                        active.discard(i)
                        self._worker_lost(i, pending, results, attempts)
                    elif not w.inflight:
                        sel.unregister(w.out_fd)
                        active.discard(i)
                now = time.monotonic()
                for i in [i for i in active if now > deadlines[i]]:
                    sel.unregister(self._workers[i].out_fd)
                    active.discard(i)
                    self._worker_lost(i, pending, results, attempts)
        finally:
            sel.close()
        return results  # type: ignore[return-value]

    def _worker_lost(self, i: int, pending: deque, results: list, attempts: list[int]) -> None:
        """A worker died or hung: replace it and retry its unfinished jobs once."""
        w = self._workers[i]
        self._workers[i] = None
        lost = list(w.inflight) if w else []
        if w:
            w.kill()
        for k in reversed(lost):
            if attempts[k] >= 2:
                results[k] = ExecResult(Status.KILLED, None, "sandbox worker died twice running this job")
            else:
                pending.appendleft(k)

    # -- teardown ------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for w in self._workers:
            if w is not None:
                w.kill()
        shutil.rmtree(self._root, ignore_errors=True)

    def worker_pids(self) -> list[int]:
        """Pids of the live worker launchers (for leak tests and monitoring)."""
        return [w.proc.pid for w in self._workers if w is not None and w.proc.poll() is None]

    def __enter__(self) -> "SandboxPool":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # noqa: BLE001 - interpreter shutdown
            pass
