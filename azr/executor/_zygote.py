"""Sandbox worker ("zygote"): a long-lived process that forks one jailed child per job.

Runs as a standalone script (stdlib only, started by ``sandbox.SandboxPool`` through
``unshare`` when the OS allows it). It reads framed JSON jobs on stdin and writes one framed
JSON result per job on stdout. Untrusted code never runs in this process: every job gets a
fresh ``fork()``, and the child jails itself (new session, chroot into an empty work dir,
rlimits, dropped uid) *before* it compiles the program. Forking from a warm interpreter with
the allowed modules already imported is what makes isolation cheap: about a millisecond per
job instead of ~30 ms for a fresh interpreter.

Protocol: a frame is a 4-byte big-endian length followed by UTF-8 JSON.
  request:  {"jobs": [{"id", "code", "call", "timeout_s", "repeat"}, ...]}
  response: one frame per job, {"id", "status", "value": [repr per run] | null, "error", "stdout",
            "stderr", "duration_s"}
"""

from __future__ import annotations

import gc
import json
import os
import resource
import select
import shutil
import signal
import struct
import sys
import time

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

_HDR = struct.Struct(">I")
_MAX_RESULT_BYTES = 4 << 20


def _read_exact(fd: int, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        chunk = os.read(fd, n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)


def _write_frame(fd: int, obj: dict) -> None:
    data = json.dumps(obj).encode()
    view = memoryview(_HDR.pack(len(data)) + data)
    while view:
        view = view[os.write(fd, view):]


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


def _child(job: dict, cfg: dict, workdir: str, wfd: int, devnull: int) -> None:
    """Runs in the forked child: jail, run the program, report, exit. Never returns."""
    status, value, error = "error", None, ""
    out = err = _CappedWriter(cfg["output_cap"])
    try:
        os.setsid()  # own process group, so the zygote can kill everything it spawns
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        os.closerange(3, wfd)
        os.closerange(wfd + 1, 1 << 16)
        if cfg["chroot"]:
            os.chroot(workdir)
            os.chdir("/")
        else:
            os.chdir(workdir)
        timeout = float(job["timeout_s"]) * job["repeat"]
        cpu = max(1, int(timeout + 1))
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
        out, err = _CappedWriter(cfg["output_cap"]), _CappedWriter(cfg["output_cap"])
        sys.stdout, sys.stderr = out, err
        program = compile(job["code"], "<program>", "exec")
        call = compile(job["call"], "<call>", "eval")
        values = []
        for _ in range(job["repeat"]):  # each run starts from fresh globals
            g = {"__name__": "__azr_task__", "__builtins__": __builtins__}
            exec(program, g)
            values.append(repr(eval(call, g)))
        if sum(map(len, values)) > cfg["max_value_chars"]:
            error = f"value repr longer than {cfg['max_value_chars']} chars"
        else:
            status, value = "ok", values
    except MemoryError:
        status, error = "memory", "MemoryError"
    except BaseException as e:  # noqa: BLE001 - untrusted code may raise anything, SystemExit included
        try:
            error = f"{type(e).__name__}: {e}"[:2000]
        except BaseException:  # noqa: BLE001 - a hostile __str__
            error = "exception (unprintable)"
    try:
        msg = {"status": status, "value": value, "error": error, "stdout": out.getvalue(), "stderr": err.getvalue()}
        data = json.dumps(msg).encode()
        view = memoryview(data)
        while view:
            view = view[os.write(wfd, view):]
    finally:
        os._exit(0)


def _run_job(job: dict, cfg: dict, workdir: str, devnull: int) -> dict:
    rfd, wfd = os.pipe()
    t0 = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        os.close(rfd)
        _child(job, cfg, workdir, wfd, devnull)
    os.close(wfd)
    deadline = t0 + float(job["timeout_s"]) * job["repeat"]
    # Watch the child itself too: a grandchild holding the pipe open must not delay the result.
    pidfd = os.pidfd_open(pid) if hasattr(os, "pidfd_open") else None
    watch = [rfd] if pidfd is None else [rfd, pidfd]
    os.set_blocking(rfd, False)
    buf, timed_out, too_big, done = bytearray(), False, False, False
    while not done:
        left = deadline - time.perf_counter()
        if left <= 0:
            timed_out = True
            break
        ready, _, _ = select.select(watch, [], [], left)
        exited = pidfd is not None and pidfd in ready
        while rfd in ready or exited:  # drain what is there; after exit, drain everything
            try:
                chunk = os.read(rfd, 1 << 16)
            except BlockingIOError:
                break
            if not chunk:
                done = True
                break
            buf += chunk
            if len(buf) > _MAX_RESULT_BYTES:
                too_big = done = True
                break
        done = done or exited
    if pidfd is not None:
        os.close(pidfd)
    os.close(rfd)
    if timed_out or too_big:
        for target in (lambda: os.killpg(pid, signal.SIGKILL), lambda: os.kill(pid, signal.SIGKILL)):
            try:
                target()
            except OSError:
                pass
    _, wstatus = os.waitpid(pid, 0)
    duration = time.perf_counter() - t0
    # The child ran alone in its process group; anything it left there dies now.
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass
    if cfg["max_processes"] > 1 and cfg["uid"] is not None:
        _kill_uid(cfg["uid"])  # forks were allowed: a setsid'd grandchild may have left the group
    _reset_workdir(workdir, cfg)
    res = {"id": job["id"], "status": "error", "value": None, "error": "", "stdout": "", "stderr": "",
           "duration_s": duration}
    if timed_out:
        res.update(status="timeout", error=f"wall-clock timeout after {job['timeout_s']}s")
    elif too_big:
        res.update(status="killed", error="result message too large")
    elif os.WIFSIGNALED(wstatus):
        sig = os.WTERMSIG(wstatus)
        if sig == signal.SIGXCPU:
            res.update(status="timeout", error="CPU time limit exceeded")
        else:
            res.update(status="killed", error=f"killed by signal {signal.Signals(sig).name}")
    else:
        try:
            msg = json.loads(bytes(buf).decode())
            res.update({k: msg[k] for k in ("status", "value", "error", "stdout", "stderr")})
            if res["status"] not in ("ok", "error", "memory"):
                raise ValueError(res["status"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError):
            code = os.WEXITSTATUS(wstatus) if os.WIFEXITED(wstatus) else -1
            res.update(status="error", value=None, error=f"process exited (code {code}) without a result")
    return res


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
    # As pid 1 of a pid namespace we inherit orphans; collect them so none stays a zombie.
    try:
        while os.waitpid(-1, os.WNOHANG)[0] > 0:
            pass
    except ChildProcessError:
        pass


def main() -> None:
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
    workdir = cfg["workdir"]
    os.makedirs(workdir, mode=0o700, exist_ok=True)
    if cfg["uid"] is not None:
        os.chown(workdir, cfg["uid"], cfg["uid"])
    devnull = os.open(os.devnull, os.O_RDWR)
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    gc.freeze()  # keep the forked children from copying pages the collector would touch
    fin, fout = 0, os.dup(1)
    os.dup2(devnull, 1)  # stray prints in this process must not corrupt the protocol
    _write_frame(fout, {"ready": True, "pid": os.getpid()})
    while True:
        hdr = _read_exact(fin, _HDR.size)
        if hdr is None:
            break
        body = _read_exact(fin, _HDR.unpack(hdr)[0])
        if body is None:
            break
        for job in json.loads(body)["jobs"]:
            _write_frame(fout, _run_job(job, cfg, workdir, devnull))
        _reap_orphans()
    shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
