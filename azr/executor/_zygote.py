"""Sandbox worker ("zygote"): a long-lived process that forks jailed children to run jobs.

Runs as a standalone script (stdlib only, started by ``sandbox.SandboxPool`` through
``unshare`` when the OS allows it). It reads framed JSON jobs on stdin and writes one framed
JSON result per job on stdout. Untrusted code never runs in this process: every job gets a
fresh ``fork()``, and the child jails itself (new session, chroot into an empty work dir,
rlimits, dropped uid) *before* it compiles the program. Forking from a warm interpreter with
the allowed modules already imported is what makes isolation cheap: about a millisecond per
job instead of ~30 ms for a fresh interpreter.

Run-time bans. Before the task runs, the child installs a PEP 578 audit hook (``sys.addaudithook``;
the lists are in ``bans.py``). An event of a banned capability (opening a file, importing a banned
module, exec/compile from the task's code, os.system, a socket, a signal to a process, …) ends the
child at once with the verdict ``banned``, however the program reached it, so catching the
exception changes nothing. Imports: the banned modules are dropped from ``sys.modules`` here before
any fork, so that even ``getattr(__builtins__, '__imp' + 'ort__')('o' + 's')`` raises an import
event; a module that is neither preloaded nor built in raises ModuleNotFoundError, as it would in
the empty chroot. The hook exists only in children (audit hooks cannot be removed); it judges what
a program does, it is not the security boundary (the jail is).

Varied runs (the determinism check). A job may ask for ``varied`` runs besides its ``repeat`` runs.
They happen in a *twin* zygote that this one starts on first need, inside the same namespaces but
with another ``PYTHONHASHSEED`` (so string hashes, and with them set order, differ), its own work
dir and uid. Before each varied run the child makes random-size allocations that stay alive, so
objects land at other addresses. A value that depends on hash order or addresses then differs
from the first run's. To keep the cost near one fork per job, the twin forks one long-lived jailed
child (a runner) and hands its pipes to this zygote over a unix socket (SCM_RIGHTS); this zygote
sends it each batch's varied runs, each run from fresh globals, and watches every job's time limit
itself. Jobs in one runner could disturb each other, so a varied run that does not reproduce the
first run's value (or fails) is run again alone in a fresh child forked by the twin, and that
isolated run is the one reported. (A hostile job could even write results for the jobs after it;
a forged value still counts only if it equals that job's first-run value, which the runner never
sees.) A runner is replaced when it fails, and retired after a few hundred jobs.

Protocol: a frame is a 4-byte big-endian length followed by UTF-8 JSON (``_frames.py``, shared with the pool).
  request:  {"jobs": [{"id", "code", "call", "timeout_s", "repeat", "varied"}, ...]}
  response: one frame per job, {"id", "status", "value": [repr per run] | null, "error", "stdout",
            "stderr", "duration_s"}; the repeat runs' values come first, then the varied runs'.
  to the twin: {"op": "runner"} (answered by the runner's pid, its job and result pipes attached)
            or {"op": "isolated", "jobs": [...]} (answered by a frame per job, each run in a fresh child);
  to a runner: {"jobs": [...], "shift_seed": int}, answered by a frame per job.
"""

from __future__ import annotations

import gc
import itertools
import json
import os
import resource
import select
import shutil
import signal
import socket
import sys
import time
import warnings

from _frames import encode, read_available, read_frame, split_frames, write_all, write_frame

# Modules a task may import. They are imported here, before any fork, so that `import x`
# inside the chroot finds them in sys.modules; everything else fails with ImportError there.
# decimal (and fractions/statistics, which import it) are left out on purpose: its C library
# makes every fork ~25% slower, and generated tasks almost never use it.
PRELOAD = (
    "math cmath itertools functools collections collections.abc heapq bisect re string "
    "operator copy typing dataclasses enum json textwrap unicodedata array numbers keyword"
).split()
# Codecs are imported lazily by str.encode/bytes.decode, so warm the ones tasks use.
# All of them: a CRUXEval task asks for shift_jis.

_MAX_RESULT_BYTES = 4 << 20
_RESULT_KEYS = ("status", "value", "error", "stdout", "stderr")
_CHILD_STATUSES = ("ok", "error", "memory", "banned")


class _CappedWriter:
    """A text sink that keeps the first `cap` characters and drops the rest (stdout flood)."""

    def __init__(self, cap: int):
        self.cap, self.parts, self.size = cap, [], 0

    def write(self, s: str) -> int:
        if self.size < self.cap:
            s2 = str(s)[: self.cap - self.size]
            self.parts.append(s2)
            self.size += len(s2)
        return len(s)

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False

    def getvalue(self) -> str:
        return "".join(self.parts)


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # The default formatter reads the source line from disk (linecache), which the audit hook would
    # judge as the task opening a file; the message alone is what a result needs.
    sys.stderr.write(f"{filename}:{lineno}: {getattr(category, '__name__', category)}: {message}\n")


# -- the child: jail, hook, run ----------------------------------------------------------------

def _jail(cfg: dict, workdir: str, devnull: int, keep: tuple[int, ...], cpu_s: float) -> None:
    """Confine this freshly forked child: own session, no inherited fds but `keep`, chroot, rlimits, dropped uid."""
    os.setsid()  # own process group, so the zygote can kill everything it spawns
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    low = 3
    for fd in sorted(keep):
        os.closerange(low, fd)
        low = fd + 1
    os.closerange(low, 1 << 16)
    if cfg["chroot"]:
        os.chroot(workdir)
        os.chdir("/")
    else:
        os.chdir(workdir)
    cpu = max(1, int(cpu_s + 1))
    mem = cfg["memory_bytes"]
    for lim, val in (
        (resource.RLIMIT_CPU, (cpu, cpu + 1)),
        (resource.RLIMIT_AS, (mem, mem)),
        (resource.RLIMIT_NPROC, (cfg["max_processes"],) * 2),
        (resource.RLIMIT_NOFILE, (cfg["max_open_files"],) * 2),
        (resource.RLIMIT_FSIZE, (cfg["max_file_bytes"],) * 2),
        (resource.RLIMIT_CORE, (0, 0)),
    ):
        resource.setrlimit(lim, val)
    if cfg["uid"] is not None:
        os.setgroups([])
        os.setgid(cfg["uid"])
        os.setuid(cfg["uid"])


def _arg_text(a) -> str:
    # Only plain data is shown: repr() of an arbitrary object would run the task's own __repr__.
    return repr(a)[:120] if type(a) in (str, bytes, int, float, type(None)) else type(a).__name__


def _make_audit_hook(cfg: dict):
    """The run-time ban hook, built once in the zygote; a child installs it with sys.addaudithook (for the rest of
    its life). A banned event calls _deny(), which reports the running job as banned and ends the child. The
    globals dict of the task now running (_RUNNING[4]) tells the task's own frames from the standard library's."""
    banned_modules = frozenset(cfg["banned_modules"])
    getframe = sys._getframe

    deny = _deny

    def banned(event: str):
        return lambda args: deny(f"{event}({', '.join(_arg_text(a) for a in args[:2])})")

    def banned_from_task(event: str):
        report = banned(event)

        def check(args) -> None:
            if getframe(2).f_globals is _RUNNING[4]:  # 0: check, 1: hook, 2: the code that raised the event
                report(args)
        return check

    def check_import(args) -> None:
        name = str(args[0])
        if name.partition(".")[0] in banned_modules:
            deny(f"import {name}")
        if name not in _IMPORTABLE:
            raise ModuleNotFoundError(f"No module named {name!r} (the sandbox offers the preloaded ones)", name=name)

    check_exec_from_task = banned_from_task("exec")

    def check_exec(args) -> None:
        # The child's own exec of the job's code needs no frame lookup: it is the code object it compiled.
        if args[0] is not _RUNNING[6] and args[0] is not _RUNNING[7]:
            check_exec_from_task(args)

    handlers = {ev: banned(ev) for ev in cfg["banned_events"]}
    handlers.update({ev: banned_from_task(ev) for ev in cfg["task_banned_events"]})
    handlers["import"] = check_import
    handlers["exec"] = check_exec
    prefixes = tuple(cfg["banned_event_prefixes"])

    def hook(event: str, args: tuple) -> None:
        handler = handlers.get(event)
        if handler is not None:
            handler(args)
        elif event.startswith(prefixes):
            banned(event)(args)

    return hook


# A constructor and its argument per size class of the object allocator: object() is 16 bytes, a float 24,
# bytes of n are 33 + n. Each call makes a new object.
_FILLERS = ((object.__new__, object), (float, 1), *((bytes, size - 33) for size in range(48, 129, 16)))


def _shift_heap(seed: int) -> list:
    """Random-size allocations, kept alive while a varied run runs, so that the task's objects land elsewhere:
    0-15 objects in each of the eight smallest size classes, and one malloc'd block of 1-33 KB. (Page-level
    placement already differs: the twin is another process, with its own address-space randomization.)"""
    keep: list = [bytes(1024 + seed % 32768)]
    for make, arg in _FILLERS:
        seed = (seed * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        keep += map(make, itertools.repeat(arg, seed >> 60))
    return keep


def _load(job: dict) -> tuple:
    """The job's program and call, compiled (in the jailed child: compiling hostile text can eat memory)."""
    return compile(job["code"], "<program>", "exec"), compile(job["call"], "<call>", "eval")


def _report(status: str, values: list | None, error: str, flush: bool = True) -> None:
    """Send the running job's result (its id, output and pipe are in _RUNNING), with any held back before it;
    flush=False holds it back (a runner sends a batch's results together, so the primary wakes once)."""
    run = _RUNNING
    run[5].append(encode({"id": run[1], "status": status, "value": values, "error": error,
                          "stdout": run[2].getvalue(), "stderr": run[3].getvalue()}))
    if flush:
        data = b"".join(run[5])
        run[5].clear()
        write_all(run[0], data)


def _deny(what: str) -> None:
    """A banned event: report it for the running job and end the child here, before the capability is used."""
    try:
        _report("banned", None, f"banned at run time: {what}"[:2000])
    finally:
        os._exit(0)


def _child_main(cfg: dict, workdir: str, devnull: int, wfd: int, jobs: list[dict] | None, rfd: int | None,
                shift_seed: int | None, cpu_s: float) -> None:
    """Runs in the forked child: jail, install the hook, run jobs and report each, exit. Never returns. The jobs
    are `jobs`, or, with `rfd`, every request read from that pipe until it closes (the twin's long-lived child).
    Each job's runs start from fresh globals. (One function on purpose: every object a forked child touches
    costs a copy-on-write page fault, the largest part of a job's cost after the fork itself.)"""
    run = _RUNNING
    run[0], run[2] = wfd, _CappedWriter(cfg["output_cap"])
    run[3] = run[2]
    try:
        _jail(cfg, workdir, devnull, (wfd,) if rfd is None else (wfd, rfd), cpu_s)
        hooked = _HOOK is None
        cap, max_chars = cfg["output_cap"], cfg["max_value_chars"]
        while True:
            if rfd is not None:
                request = read_frame(rfd)
                if request is None:
                    break
                jobs, shift_seed = request["jobs"], request["shift_seed"]
            held = time.perf_counter()
            for k, job in enumerate(jobs):
                run[1], run[2], run[3] = job["id"], _CappedWriter(cap), _CappedWriter(cap)
                sys.stdout, sys.stderr = run[2], run[3]
                status, values, error = "error", None, ""
                try:
                    program, call = _load(job)
                    if not hooked:  # after the first compile: the child's own compile is not the task's
                        sys.addaudithook(_HOOK)
                        hooked = True
                    run[6], run[7] = program, call
                    keep = None if shift_seed is None else _shift_heap(shift_seed + k)
                    values = []
                    for _ in range(job["repeat"]):  # each run starts from fresh globals
                        g = {"__name__": "__azr_task__", "__builtins__": __builtins__}
                        run[4] = g
                        exec(program, g)
                        values.append(repr(eval(call, g)))
                    del keep
                    if sum(map(len, values)) > max_chars:
                        values, error = None, f"value repr longer than {max_chars} chars"
                    else:
                        status = "ok"
                except MemoryError:
                    status, values, error = "memory", None, "MemoryError"
                except BaseException as e:  # noqa: BLE001 - untrusted code may raise anything, SystemExit included
                    values = None
                    try:
                        error = f"{type(e).__name__}: {e}"[:2000]
                    except BaseException:  # noqa: BLE001 - a hostile __str__
                        error = "exception (unprintable)"
                run[4] = None
                # A runner holds results back for up to _HOLD_S, then sends what it has with the next one.
                _report(status, values, error, k == len(jobs) - 1 or time.perf_counter() - held > _HOLD_S)
                held = time.perf_counter() if not run[5] else held
            if rfd is None:
                break
    except BaseException as e:  # noqa: BLE001 - a failed jail (or a write to a closed pipe) ends the child
        try:
            _report("error", None, f"sandbox child failed: {type(e).__name__}: {e}"[:2000])
        except BaseException:  # noqa: BLE001
            pass
    finally:
        os._exit(0)


# -- the zygote side: fork, watch, collect -----------------------------------------------------

class _ChildProcess:
    """A jailed child seen from a zygote: the jobs go in (through the fork, or a pipe for a long-lived child),
    one result frame per job comes back, each job within its own time limit. `own` says whether this process
    forked it (and so reaps it and cleans up after it) or was handed its pipes (the primary, for its twin's
    long-lived child)."""

    def __init__(self, cfg: dict, workdir: str, pid: int, rfd: int, job_w: int | None, own: bool):
        self.cfg, self.workdir, self.pid, self.rfd, self.job_w, self.own = cfg, workdir, pid, rfd, job_w, own
        self.t0 = time.perf_counter()
        # Watch the child itself too: a grandchild holding the pipe open must not delay the result.
        self.pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
        os.set_blocking(rfd, False)
        self.buf = bytearray()
        self.exited = False
        self.jobs_done = 0

    @classmethod
    def fork(cls, cfg: dict, workdir: str, devnull: int, jobs: list[dict] | None = None,
             shift_seed: int | None = None, cpu_s: float = 0.0) -> "_ChildProcess":
        """Fork a child for `jobs`, or, without jobs, a long-lived one that reads requests from a pipe."""
        rfd, wfd = os.pipe()
        job_r, job_w = os.pipe() if jobs is None else (None, None)
        pid = os.fork()
        if pid == 0:
            os.close(rfd)
            if job_w is not None:
                os.close(job_w)
            _child_main(cfg, workdir, devnull, wfd, jobs, job_r, shift_seed, cpu_s)
        os.close(wfd)
        if job_r is not None:
            os.close(job_r)
        return cls(cfg, workdir, pid, rfd, job_w, own=True)

    def send(self, jobs: list[dict], shift_seed: int) -> bool:
        try:
            write_frame(self.job_w, {"jobs": jobs, "shift_seed": shift_seed})
            return True
        except OSError:  # the child is gone
            return False

    def collect(self, jobs: list[dict]) -> tuple[list[dict], dict | None]:
        """(a frame per job reported, in order; failure). failure is None when every job reported (or the child
        ended itself on a banned event after reporting it), {} when the child died without reporting the next
        job (its exit status says why), or the next job's failure (a timeout, a flood of output)."""
        watch = [self.rfd] if self.pidfd is None else [self.rfd, self.pidfd]
        results: list[dict] = []
        failure: dict | None = None
        started = time.perf_counter()
        while len(results) < len(jobs) and failure is None:
            job = jobs[len(results)]
            left = started + float(job["timeout_s"]) * job["repeat"] - time.perf_counter()
            if left <= 0:
                failure = {"status": "timeout", "error": f"wall-clock timeout after {job['timeout_s']}s"}
                break
            ready, _, _ = select.select(watch, [], [], left)
            self.exited = self.exited or (self.pidfd is not None and self.pidfd in ready)
            eof = read_available(self.rfd, self.buf, _MAX_RESULT_BYTES)
            if len(self.buf) > _MAX_RESULT_BYTES:
                failure = {"status": "killed", "error": "result message too large"}
            for msg in split_frames(self.buf):
                results.append(msg)
                started = time.perf_counter()
            if (eof or self.exited) and failure is None and len(results) < len(jobs):
                failure = {}
        if failure == {} and results and results[-1].get("status") == "banned":
            failure = None  # the child ended itself on a banned event; the jobs after it never started
        self.jobs_done += len(results)
        return results, failure

    def end(self, kill: bool) -> int | None:
        """Stop the child (SIGKILL when `kill`, else wait for its exit) and, if this process owns it, reap it and
        clean up after it: its wait status (None for a child owned elsewhere; its owner reaps it)."""
        for fd in (self.pidfd, self.rfd, self.job_w):
            if fd is not None:
                os.close(fd)
        if kill:
            for target in (lambda: os.killpg(self.pid, signal.SIGKILL), lambda: os.kill(self.pid, signal.SIGKILL)):
                try:
                    target()
                except OSError:
                    pass
        return _reap(self.pid, self.workdir, self.cfg) if self.own else None


def _reap(pid: int, workdir: str, cfg: dict) -> int:
    """Wait for a child of ours, kill what it left behind, empty its work dir; its wait status."""
    _, wstatus = os.waitpid(pid, 0)
    # The child ran alone in its process group; anything it left there dies now.
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    if cfg["max_processes"] > 1 and cfg["uid"] is not None:
        _kill_uid(cfg["uid"])  # forks were allowed: a setsid'd grandchild may have left the group
    _reset_workdir(workdir, cfg)
    return wstatus


def _results(jobs: list[dict], msgs: list[dict], failure: dict | None, wstatus: int | None, duration: float) -> list[dict]:
    """Results for the jobs reported, then for the one that failed (if one did)."""
    out = [_result(job, msg, duration / max(len(msgs), 1)) for job, msg in zip(jobs, msgs)]
    if failure is not None and len(out) < len(jobs):
        died = {"status": "killed", "error": "the sandbox child died"}
        out.append(_failed(jobs[len(out)], failure or (_exit_failure(wstatus) if wstatus is not None else died),
                           duration))
    return out


def _fork_child(jobs: list[dict], cfg: dict, workdir: str, devnull: int, shift_seed: int | None) -> list[dict]:
    """One fresh child for `jobs`, a result per job in order; after a failure the list is shorter than `jobs`
    (the failed job has its failure as its result, the ones after it have none)."""
    child = _ChildProcess.fork(cfg, workdir, devnull, jobs, shift_seed,
                               sum(float(j["timeout_s"]) * j["repeat"] for j in jobs))
    msgs, failure = child.collect(jobs)
    wstatus = child.end(kill=bool(failure))
    return _results(jobs, msgs, failure, wstatus, time.perf_counter() - child.t0)


def _result(job: dict, msg: dict, duration: float) -> dict:
    res = {"id": job["id"], "status": "error", "value": None, "error": "", "stdout": "", "stderr": "",
           "duration_s": duration}
    try:
        if msg.get("id") != job["id"] or msg.get("status") not in _CHILD_STATUSES:
            raise ValueError(msg.get("status"))
        res.update({k: msg[k] for k in _RESULT_KEYS})
    except (ValueError, KeyError, TypeError, AttributeError):
        res.update(status="error", value=None, error="malformed result from the sandbox child")
    return res


def _exit_failure(wstatus: int) -> dict:
    if os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        if sig == signal.SIGXCPU:
            return {"status": "timeout", "error": "CPU time limit exceeded"}
        return {"status": "killed", "error": f"killed by signal {signal.Signals(sig).name}"}
    code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else -1
    return {"status": "error", "error": f"process exited (code {code}) without a result"}


def _failed(job: dict, failure: dict, duration: float) -> dict:
    return {"id": job["id"], "value": None, "stdout": "", "stderr": "", "duration_s": duration, **failure}


def _run_job(job: dict, cfg: dict, workdir: str, devnull: int) -> dict:
    """One job's `repeat` runs in one fresh child."""
    return _fork_child([job], cfg, workdir, devnull, None)[0]


def _random_seed() -> int:
    return int.from_bytes(os.urandom(8), "big")


def _kill_uid(uid: int) -> None:
    """Kill every process of the job's uid: a helper drops to that uid and signals -1."""
    pid = os.fork()
    if pid == 0:
        try:
            os.setgid(uid)
            os.setuid(uid)
            os.kill(-1, signal.SIGKILL)
        finally:
            os._exit(0)
    os.waitpid(pid, 0)


def _reset_workdir(workdir: str, cfg: dict) -> None:
    """Give the next job an empty work dir; cheap when the last job wrote nothing."""
    try:
        if not os.listdir(workdir):
            return
    except OSError:
        pass
    shutil.rmtree(workdir, ignore_errors=True)
    os.mkdir(workdir, 0o700)
    if cfg["uid"] is not None:
        os.chown(workdir, cfg["uid"], cfg["uid"])


def _reap_orphans() -> None:
    # As pid 1 of a pid namespace we inherit orphans; collect them so none stays a zombie. (The twin may be
    # reaped here too if it died; _Twin copes with that.)
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


class _Twin:
    """The primary's view of its twin: the zygote that runs varied runs, this same script started inside the same
    namespaces with another PYTHONHASHSEED, its own work dir and uid, over a unix socket.

    The twin forks a long-lived jailed child (the runner) and hands its pipes to the primary (SCM_RIGHTS), which
    then sends it batches and watches each job's time limit itself: a batch costs neither a fork nor a relay
    through the twin. A runner that fails is killed and the twin forks another for the jobs after the one it
    failed on; a runner is retired after MAX_JOBS jobs, so what jobs leave behind does not pile up. Isolated
    runs go to the twin, which forks a fresh child for each."""

    MAX_JOBS = 256
    RUNNER_CPU_S = 3600.0
    """RLIMIT_CPU of a runner, a backstop only: each job's wall-clock limit is enforced here."""

    def __init__(self, cfg: dict):
        # Its own uid: its runner must not be caught by the primary's clean-up of its own uid.
        self.cfg = {**cfg, "role": "twin", "workdir": cfg["twin_workdir"], "uid": cfg["twin_uid"]}
        self.pid: int | None = None
        self.sock: socket.socket | None = None
        self.buf = bytearray()
        self.runner: _ChildProcess | None = None

    def _start(self) -> None:
        mine, theirs = socket.socketpair()
        env = {**os.environ, "PYTHONHASHSEED": str(self.cfg["twin_hash_seed"])}
        pid = os.fork()
        if pid == 0:
            try:
                os.dup2(theirs.fileno(), 0)
                os.closerange(3, 1 << 16)
                os.execve(sys.executable, [sys.executable, "-S", "-B", os.path.abspath(__file__),
                                           json.dumps(self.cfg)], env)
            finally:
                os._exit(127)
        theirs.close()
        self.pid, self.sock, self.buf = pid, mine, bytearray()
        if not self._read(1, time.monotonic() + 60):
            self.stop()
            raise RuntimeError("the sandbox's twin zygote did not start")

    def _read(self, n: int, deadline: float) -> list[dict] | None:
        """The next `n` frames, or None if the twin dies or the deadline passes first."""
        frames = split_frames(self.buf)
        fd = self.sock.fileno()
        while len(frames) < n:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                return None
            self.buf += chunk
            frames += split_frames(self.buf)
        return frames

    def _new_runner(self) -> _ChildProcess | None:
        """Ask the twin for a runner: its pid comes back with its job and result pipes attached."""
        try:
            write_frame(self.sock.fileno(), {"op": "runner"})
            if not select.select([self.sock], [], [], 60)[0]:
                return None
            data, fds, _, _ = socket.recv_fds(self.sock, 1 << 16, 2)
            self.buf += data
            msg = self._read(1, time.monotonic() + 60) if len(fds) == 2 else None
        except OSError:
            return None
        if not msg or not isinstance(msg[0].get("pid"), int):
            for fd in fds:
                os.close(fd)
            return None
        job_w, rfd = fds
        return _ChildProcess(self.cfg, self.cfg["workdir"], msg[0]["pid"], rfd, job_w, own=False)

    def stop(self) -> None:
        if self.runner is not None:
            self.runner.end(kill=True)
            self.runner = None
        if self.sock is not None:
            self.sock.close()
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
                os.waitpid(self.pid, 0)
            except (OSError, ChildProcessError):
                pass
        self.pid, self.sock = None, None

    def _died(self, jobs: list[dict]) -> list[dict]:
        self.stop()
        return [_failed(j, {"status": "killed", "error": "the sandbox's twin zygote died"}, 0.0) for j in jobs]

    def run(self, jobs: list[dict], isolated: bool) -> list[dict]:
        """Each job's varied runs, one result per job. If the twin itself fails, the jobs fail (it is restarted on
        the next call)."""
        if self.pid is None:
            try:
                self._start()
            except (OSError, RuntimeError):
                return self._died(jobs)
        if isolated:  # a fresh child each, in the twin; its own per-job limits end them in time
            budget = sum(float(j["timeout_s"]) * j["repeat"] for j in jobs) + 5.0 * len(jobs) + 10.0
            try:
                write_frame(self.sock.fileno(), {"op": "isolated", "jobs": jobs})
                frames = self._read(len(jobs), time.monotonic() + budget)
            except OSError:
                frames = None
            return frames if frames is not None else self._died(jobs)
        results: list[dict] = []
        while len(results) < len(jobs):
            rest = jobs[len(results):]
            if self.runner is None:
                self.runner = self._new_runner()
                if self.runner is None:
                    return results + self._died(rest)
            t0 = time.perf_counter()
            runner = self.runner
            msgs, failure = runner.collect(rest) if runner.send(rest, _random_seed()) else ([], {})
            if failure is not None or len(msgs) < len(rest) or runner.jobs_done >= self.MAX_JOBS:
                runner.end(kill=True)  # dead, stuck, ended itself, or retired; the twin reaps it
                self.runner = None
            results += _results(rest, msgs, failure, None, time.perf_counter() - t0)
        return results


def _serve_twin(cfg: dict, workdir: str, devnull: int) -> None:
    """The twin's loop: fork runners for the primary (handing it their pipes) and run isolated jobs."""
    sock = socket.socket(fileno=0)
    runner: int | None = None
    while True:
        request = read_frame(0)
        if request is None:
            break
        if request["op"] == "isolated":
            for job in request["jobs"]:
                write_frame(1, _fork_child([job], cfg, workdir, devnull, _random_seed())[0])
            continue
        if runner is not None:
            _reap(runner, workdir, cfg)  # the primary has killed it or let it go
        child = _ChildProcess.fork(cfg, workdir, devnull, cpu_s=_Twin.RUNNER_CPU_S)
        socket.send_fds(sock, [encode({"pid": child.pid})], [child.job_w, child.rfd])
        for fd in (child.job_w, child.rfd, child.pidfd):
            if fd is not None:
                os.close(fd)
        runner = child.pid
    if runner is not None:
        try:
            os.killpg(runner, signal.SIGKILL)
        except OSError:
            pass
        _reap(runner, workdir, cfg)


def _with_varied_runs(jobs: list[dict], results: list[dict], twin: _Twin) -> None:
    """Add each ok job's varied runs (in the twin) to its result; a varied run that fails fails the job."""
    todo = [i for i, job in enumerate(jobs) if job.get("varied") and results[i]["status"] == "ok"]
    if not todo:
        return
    varied = [{"id": jobs[i]["id"], "code": jobs[i]["code"], "call": jobs[i]["call"], "timeout_s": jobs[i]["timeout_s"],
               "repeat": jobs[i]["varied"]} for i in todo]
    second = twin.run(varied, isolated=False)
    # In the shared child an earlier job may have disturbed a later one: anything short of reproducing the
    # first value is run again alone, and that run is the verdict.
    again = [k for k, i in enumerate(todo)
             if second[k]["status"] != "ok" or any(v != results[i]["value"][0] for v in second[k]["value"])]
    if again:
        for k, res in zip(again, twin.run([varied[k] for k in again], isolated=True)):
            second[k] = res
    for k, i in enumerate(todo):
        res, var = results[i], second[k]
        res["duration_s"] += var["duration_s"]
        if var["status"] == "ok":
            res["value"] = res["value"] + var["value"]
        else:
            res.update(status=var["status"], value=None, stdout=res["stdout"] + var["stdout"],
                       stderr=res["stderr"] + var["stderr"],
                       error=f"in a varied run (another hash seed, shifted heap): {var['error']}")


def _drop_banned_modules(banned: list[str]) -> None:
    """Take the banned modules out of sys.modules (this process keeps its own references), so that importing one
    in a child, by any route, is a real import and raises the audit event the hook judges. `__main__` (this
    script, whose globals hold the hook's state) goes too, and so does `_frames` (its pipe framing, which holds
    `os`): a task can import neither."""
    for name in [m for m in sys.modules if m.partition(".")[0] in banned or m in ("__main__", "_frames")]:
        del sys.modules[name]


def main() -> None:
    global _IMPORTABLE, _HOOK
    cfg = json.loads(sys.argv[1])
    for name in PRELOAD:
        __import__(name)
    import codecs

    import encodings.aliases

    for name in {*encodings.aliases.aliases.values(), "idna", "rot13", "unicode_escape", "raw_unicode_escape"}:
        try:
            codecs.lookup(name)
        except LookupError:  # platform-specific codecs (mbcs, ...)
            pass
    if cfg["audit"]:
        warnings.showwarning = _show_warning
        _drop_banned_modules(cfg["banned_modules"])
        _HOOK = _make_audit_hook(cfg)
    # What a task may import: what is loaded now, and the modules built into the interpreter (importable
    # without a filesystem, as in the chroot).
    _IMPORTABLE = frozenset(sys.modules) | frozenset(sys.builtin_module_names)
    workdir = cfg["workdir"]
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    if cfg["uid"] is not None:
        os.chown(workdir, cfg["uid"], cfg["uid"])
    devnull = os.open(os.devnull, os.O_RDWR)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    gc.freeze()  # keep the forked children from copying pages the collector would touch
    if cfg["role"] == "twin":  # its socket to the primary is fd 0; replies go out on it too
        os.dup2(0, 1)
        write_frame(1, {"ready": True, "pid": os.getpid()})
        _serve_twin(cfg, workdir, devnull)
        shutil.rmtree(workdir, ignore_errors=True)
        return
    twin = _Twin(cfg)
    fin, fout = 0, os.dup(1)
    os.dup2(devnull, 1)  # stray prints in this process must not corrupt the protocol
    write_frame(fout, {"ready": True, "pid": os.getpid()})
    try:
        while True:
            request = read_frame(fin)
            if request is None:
                break
            jobs = request["jobs"]
            results = [_run_job({**job, "repeat": job.get("repeat", 1)}, cfg, workdir, devnull) for job in jobs]
            _with_varied_runs(jobs, results, twin)
            for res in results:
                write_frame(fout, res)
            _reap_orphans()
    finally:
        twin.stop()
    shutil.rmtree(workdir, ignore_errors=True)


_IMPORTABLE: frozenset[str] = frozenset()
"""Modules a task may import (set in main)."""
_HOOK = None
"""The run-time ban hook (built in main when the pool asks for it)."""
_RUNNING: list = [-1, None, None, None, None, [], None, None]
"""In a child: its result pipe, the running job's id, stdout and stderr sinks and task globals (the hook's deny()
reports through it, and the hook tells the task's frames by its globals), the results held back, and the job's
program and call code objects (the child's own exec of them is not the task's)."""
_HOLD_S = 0.05
"""How long a runner may hold finished results back before sending them (well under any job's time limit)."""

if __name__ == "__main__":
    main()
