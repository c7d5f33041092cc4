"""Adversarial sandbox tests: hostile programs, one property per test.

Each test runs hostile code through the raw sandbox: no AST ban list and no run-time ban hook in
the way (neither is the security boundary; tests/test_runtime_bans.py tests the hook), then
checks that the host is unharmed and that the caller and the pool still work.
"""

from __future__ import annotations

import ast

import os
import socket
import threading
import time
from pathlib import Path

import pytest

from azr.executor import Job, SandboxConfig, SandboxPool, Status

IDENTITY = "def f(x):\n    return x"


def assert_alive(pool: SandboxPool) -> None:
    res = pool.run(Job(IDENTITY, "f('still here')"))
    assert res.ok and res.value == "'still here'", res


def sandbox_uid_processes(pool: SandboxPool) -> list[int]:
    """Host pids of live processes running as one of the pool's sandbox uids. A zombie is not counted: it has
    terminated, and the worker reaps it (as the pid namespace's init) at its next request."""
    uids = {str(pool.config.uid_base + i) for i in range(8)}
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
        state = next((line for line in status.splitlines() if line.startswith("State:")), "")
        if uid_line.split()[1] in uids and "zombie" not in state:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="module")
def pool():
    """The default pool's layers without the run-time ban hook (which would stop these programs first)."""
    with SandboxPool(SandboxConfig(workers=2, timeout_s=5, audit=False)) as p:
        yield p


def needs(pool: SandboxPool, layer: str) -> None:
    if not pool.info.layers.get(layer):
        pytest.skip(f"sandbox layer {layer!r} is not available on this machine: {pool.info.warnings}")


@pytest.fixture(scope="module")
def open_pool():
    """A pool without the chroot jail, so that e.g. `import socket` works and the test checks
    the *other* layer in isolation (the network namespace, the process limits)."""
    with SandboxPool(SandboxConfig(workers=1, timeout_s=5, filesystem_jail=False, audit=False)) as p:
        yield p


def test_cannot_write_or_delete_host_file(pool, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("original")
    os.chmod(tmp_path, 0o777)  # even a world-writable directory must stay out of reach
    code = f"""
import os
def f(x):
    out = []
    for action in (lambda: open({str(victim)!r}, 'w').write('pwned'),
                   lambda: os.remove({str(victim)!r}),
                   lambda: open({str(tmp_path / 'new.txt')!r}, 'w').write('x')):
        try:
            action(); out.append('done')
        except Exception as e:
            out.append(type(e).__name__)
    return out
"""
    res = pool.run(Job(code, "f(0)"))
    assert victim.read_text() == "original"
    assert not (tmp_path / "new.txt").exists()
    assert "done" not in (res.value or "")
    assert_alive(pool)


def test_cannot_read_host_file(pool, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("TOP-SECRET-42")
    secret.chmod(0o644)
    code = f"def f(x):\n    return open({str(secret)!r}).read()"
    res = pool.run(Job(code, "f(0)"))
    assert res.status is Status.ERROR
    assert "TOP-SECRET-42" not in (res.value or "") + res.stdout + res.error
    assert_alive(pool)


def test_filesystem_root_is_empty_workdir(pool):
    needs(pool, "chroot")
    res = pool.run(Job("import os\ndef f(x):\n    return sorted(os.listdir('/'))", "f(0)"))
    assert res.ok and res.value == "[]"


def test_no_network_to_host_loopback(open_pool):
    needs(open_pool, "network_namespace")
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    server.settimeout(3)
    port = server.getsockname()[1]
    accepted = []

    def accept():
        try:
            accepted.append(server.accept())
        except OSError:
            pass

    t = threading.Thread(target=accept)
    t.start()
    code = f"""
import socket
def f(x):
    s = socket.create_connection(('127.0.0.1', {port}), timeout=2)
    s.sendall(b'exfiltrated')
    return 'connected'
"""
    res = open_pool.run(Job(code, "f(0)"))
    t.join()
    server.close()
    assert res.status is Status.ERROR, res
    assert not accepted
    assert_alive(open_pool)


def test_fork_bomb(open_pool):
    code = "import os\ndef f(x):\n    while True:\n        os.fork()"
    t0 = time.monotonic()
    res = open_pool.run(Job(code, "f(0)", timeout_s=3))
    assert res.status in (Status.ERROR, Status.TIMEOUT, Status.KILLED)
    assert time.monotonic() - t0 < 10
    assert sandbox_uid_processes(open_pool) == []
    assert_alive(open_pool)


def test_memory_bomb(pool):
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    res = pool.run(Job("def f(x):\n    a = []\n    while True:\n        a.append(' ' * 10**7)", "f(0)"))
    assert res.status in (Status.MEMORY, Status.KILLED), res
    # the trainer's own peak memory did not grow by the bomb's size
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 200_000
    assert_alive(pool)


def test_infinite_loop_times_out(pool):
    t0 = time.monotonic()
    res = pool.run(Job("def f(x):\n    while True:\n        pass", "f(0)", timeout_s=1))
    assert res.status is Status.TIMEOUT
    assert time.monotonic() - t0 < 5
    assert_alive(pool)


def test_deep_recursion(pool):
    res = pool.run(Job("def f(n):\n    return f(n + 1)", "f(0)"))
    assert res.status is Status.ERROR and "RecursionError" in res.error
    # with the recursion limit lifted the C stack overflows: the child dies, nothing else
    code = "import sys\nsys.setrecursionlimit(10**7)\ndef f(n):\n    return f(n + 1)"
    res = pool.run(Job(code, "f(0)", timeout_s=2))
    assert res.status in (Status.KILLED, Status.ERROR, Status.MEMORY, Status.TIMEOUT)
    assert_alive(pool)


def test_kill_parent(pool):
    code = f"""
import os, signal
def f(x):
    out = []
    for pid in (os.getppid(), {os.getpid()}, 1):
        try:
            os.kill(pid, signal.SIGKILL); out.append('sent')
        except Exception as e:
            out.append(type(e).__name__)
    return out
"""
    res = pool.run(Job(code, "f(0)"))
    # The kills themselves failed (not merely survived by a respawned worker): the parent and pid 1
    # are another uid's (PermissionError), the test process is outside the pid namespace
    # (ProcessLookupError), or the layer that stops each is missing and the test says which.
    assert res.ok, res
    for target, outcome in zip(("parent", "test process", "pid 1"), ast.literal_eval(res.value)):
        assert outcome in ("PermissionError", "ProcessLookupError"), (target, outcome, pool.info.layers)
    assert_alive(pool)  # this process and the pool's workers survived


def test_env_secret_not_visible(tmp_path, monkeypatch):
    monkeypatch.setenv("AZR_TEST_SECRET", "hunter2")
    with SandboxPool(SandboxConfig(workers=1, audit=False)) as p:  # started after the secret was set
        code = f"""
import os
def f(x):
    seen = repr(dict(os.environ))
    try:
        seen += open('/proc/{os.getpid()}/environ').read()
    except Exception:
        pass
    return seen
"""
        res = p.run(Job(code, "f(0)"))
        assert res.ok
        assert "hunter2" not in res.value


def test_stdout_flood_is_capped(pool):
    res = pool.run(Job("def f(x):\n    for _ in range(200000):\n        print('x' * 100)\n    return 1", "f(0)"))
    assert res.ok and res.value == "1"
    assert len(res.stdout) <= pool.config.output_cap
    assert_alive(pool)


def test_c_level_crash(pool):
    code = """
def f(x):
    try:
        import ctypes
        return ctypes.string_at(0)
    except ImportError:  # not importable inside the jail: crash through a built-in C module
        import faulthandler
        faulthandler._sigsegv()
"""
    res = pool.run(Job(code, "f(0)"))
    assert res.status is Status.KILLED and "SIGSEGV" in res.error
    assert_alive(pool)


def test_ctypes_not_importable_in_jail(pool):
    needs(pool, "chroot")
    res = pool.run(Job("import ctypes\ndef f(x):\n    return 1", "f(0)"))
    assert res.status is Status.ERROR and "ModuleNotFoundError" in res.error


@pytest.mark.parametrize("exit_call", ["sys.exit(0)", "os._exit(0)", "raise SystemExit(3)"])
def test_exit_calls(pool, exit_call):
    res = pool.run(Job(f"import os, sys\ndef f(x):\n    {exit_call}", "f(0)"))
    assert res.status is Status.ERROR
    assert_alive(pool)


def test_background_process_does_not_survive(tmp_path):
    # Allow forking for this test, so the child really can spawn something that detaches.
    with SandboxPool(SandboxConfig(workers=1, max_processes=16, audit=False)) as p:
        needs(p, "uid_drop")
        code = """
import os
def f(x):
    if os.fork() == 0:
        os.setsid()
        r, w = os.pipe()
        os.read(r, 1)  # block forever
    return 'returned'
"""
        res = p.run(Job(code, "f(0)"))
        assert res.ok and res.value == "'returned'"
        time.sleep(0.2)
        assert sandbox_uid_processes(p) == []
        assert_alive(p)


def test_fork_forbidden_by_default(pool):
    res = pool.run(Job("import os\ndef f(x):\n    return os.fork()", "f(0)"))
    assert res.status is Status.ERROR and "BlockingIOError" in res.error


def test_pool_does_not_leak_processes():
    p = SandboxPool(SandboxConfig(workers=2, audit=False))
    p.run_many([Job(IDENTITY, f"f({i})") for i in range(20)])
    pids = p.worker_pids()
    assert len(pids) == 2
    p.close()
    time.sleep(0.2)
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()
    assert sandbox_uid_processes(p) == []
