"""Sandbox behaviour: typed results, batching, ordering, and surviving dead workers."""

from __future__ import annotations

import os
import signal

import pytest

from azr.executor import ExecResult, Job, SandboxConfig, SandboxPool, Status

IDENTITY = "def f(x):\n    return x"


def test_identity_roundtrip(pool):
    res = pool.run(Job(IDENTITY, "f('Hello World')"))
    assert isinstance(res, ExecResult)
    assert res.status is Status.OK and res.value == "'Hello World'" and res.duration_s > 0


def test_results_in_order_with_mixed_failures(pool):
    jobs = []
    for i in range(40):
        kind = i % 4
        if kind == 0:
            jobs.append(Job(IDENTITY, f"f({i})"))
        elif kind == 1:
            jobs.append(Job("def f(x):\n    return 1 / 0", "f(0)"))
        elif kind == 2:
            jobs.append(Job("def f(x):\n    while True: pass", "f(0)", timeout_s=0.3))
        else:
            jobs.append(Job("import os\ndef f(x):\n    os._exit(1)", "f(0)"))
    results = pool.run_many(jobs)
    for i, res in enumerate(results):
        expected = [Status.OK, Status.ERROR, Status.TIMEOUT, Status.BANNED][i % 4]  # os: banned at run time
        assert res.status is expected, (i, res)
        if i % 4 == 0:
            assert res.value == repr(i)
    assert "ZeroDivisionError" in results[1].error


def test_repeat_runs_from_fresh_globals(pool):
    code = "seen = []\ndef f(x):\n    seen.append(x)\n    return len(seen)"
    res = pool.run(Job(code, "f(1)", repeat=3))
    assert res.values == ("1", "1", "1")


def test_stdout_and_stderr_captured(raw_pool):
    res = raw_pool.run(Job("import sys\ndef f(x):\n    print('out', x)\n    print('err', file=sys.stderr)\n    return 0",
                       "f(7)"))
    assert res.stdout == "out 7\n" and res.stderr == "err\n"


def test_non_repr_value_is_text(pool):
    res = pool.run(Job("def f(x):\n    return lambda: 1", "f(0)"))
    assert res.ok and res.value.startswith("<function")


def test_multi_argument_call(pool):
    res = pool.run(Job("def f(a, b, c):\n    return a + b + c", "f((1, ), (1, ), (1, 2))"))
    assert res.value == "(1, 1, 1, 2)"


def test_pool_survives_killed_worker():
    with SandboxPool(SandboxConfig(workers=1)) as p:
        assert p.run(Job(IDENTITY, "f(1)")).ok
        os.killpg(p.worker_pids()[0], signal.SIGKILL)
        results = p.run_many([Job(IDENTITY, f"f({i})") for i in range(5)])
        assert [r.value for r in results] == [repr(i) for i in range(5)]


def test_info_reports_layers(pool):
    assert pool.info.layers["separate_process"] and pool.info.layers["rlimits"]
    missing = [k for k, v in pool.info.layers.items() if not v]
    assert len(pool.info.warnings) >= (1 if missing and any(
        k in missing for k in ("network_namespace", "chroot", "uid_drop")) else 0)


def test_network_namespace_off_is_reported():
    with pytest.warns(RuntimeWarning, match="network"):
        with SandboxPool(SandboxConfig(workers=1, network_namespace=False)) as p:
            assert not p.info.layers["network_namespace"]
            assert any("network" in w for w in p.info.warnings)
            assert p.run(Job(IDENTITY, "f(2)")).ok


@pytest.mark.parametrize("bad", [dict(timeout_s=0), dict(memory_mb=10), dict(workers=-1)])
def test_bad_config_is_a_clear_error(bad):
    with pytest.raises(ValueError, match="SandboxConfig"):
        SandboxConfig(**bad)


def test_closed_pool_raises():
    p = SandboxPool(SandboxConfig(workers=1))
    p.close()
    with pytest.raises(RuntimeError, match="closed"):
        p.run(Job(IDENTITY, "f(1)"))


def test_frames_split_keep_partial_and_mark_bad_json():
    from azr.executor import _frames

    bad = b"{not json"
    buf = bytearray(_frames.encode({"id": 1}) + _frames.HEADER.pack(len(bad)) + bad + _frames.encode({"id": 2}))
    tail = _frames.encode({"id": 3})
    buf += tail[:5]  # a frame still arriving stays in the buffer
    assert _frames.split_frames(buf) == [{"id": 1}, {}, {"id": 2}]
    assert bytes(buf) == tail[:5]
    buf += tail[5:]
    assert _frames.split_frames(buf) == [{"id": 3}] and not buf


def test_frames_read_available_stops_at_limit_and_sees_eof():
    from azr.executor import _frames

    r, w = os.pipe()
    os.set_blocking(r, False)
    try:
        os.write(w, b"x" * 10)
        buf = bytearray()
        assert _frames.read_available(r, buf) is False and bytes(buf) == b"x" * 10  # nothing more yet: not EOF
        os.write(w, b"y" * 5)
        os.close(w)
        w = -1
        assert _frames.read_available(r, buf, limit=3) is False and len(buf) == 10  # over the limit: reads nothing
        assert _frames.read_available(r, buf, limit=12) is False and len(buf) == 15  # reads until over it
        assert _frames.read_available(r, buf) is True and len(buf) == 15  # writer closed, pipe empty
    finally:
        os.close(r)
        if w >= 0:
            os.close(w)


def test_bad_frame_from_a_worker_is_a_lost_worker_and_the_job_is_retried(monkeypatch):
    """A result frame that is not JSON (read as {}) must not crash the trainer: the worker is replaced and its
    unanswered jobs run again."""
    from azr.executor import sandbox

    real = sandbox._Worker.drain
    corrupted = []

    def drain_once_corrupt(self):
        msgs = real(self)
        if msgs and not corrupted:
            corrupted.append(True)
            return [{}]
        return msgs

    monkeypatch.setattr(sandbox._Worker, "drain", drain_once_corrupt)
    with SandboxPool(SandboxConfig(workers=1, timeout_s=5)) as p:
        first = p.worker_pids()
        results = p.run_many([Job(IDENTITY, f"f({i})") for i in range(3)])
        assert [r.value for r in results] == ["0", "1", "2"]
        assert corrupted and p.worker_pids() != first


def test_a_task_cannot_import_the_sandbox_framing(pool):
    res = pool.run(Job("import _frames\ndef f(x):\n    return _frames.os.getpid()", "f(0)"))
    assert res.status is not Status.OK
