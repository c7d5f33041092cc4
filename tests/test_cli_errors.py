"""The real `azr` command in a subprocess, one error class per test: each ends with exactly one line on stderr,
``azr <command>: ...``, no traceback, and its exit code (2 for usage errors, 130 for Ctrl-C, 1 otherwise);
``--debug`` and ``AZR_DEBUG=1`` bring the traceback back."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def run_azr(*args: str, env: dict | None = None, prefix: tuple[str, ...] = (), code: str | None = None,
            timeout: float = 300) -> subprocess.CompletedProcess:
    """`python -m azr.cli ARGS` from this checkout (or `python -c CODE ARGS`), library warnings silenced so that
    stderr holds only what azr itself says."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "1",
                "AZR_DEBUG": "", **(env or {})}
    cmd = [sys.executable, "-c", code] if code else [sys.executable, "-m", "azr.cli"]
    return subprocess.run([*prefix, *cmd, *args], cwd=ROOT, env=full_env, capture_output=True, text=True,
                          timeout=timeout)


def assert_one_line(proc: subprocess.CompletedProcess, command: str, exit_code: int, *needles: str) -> str:
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith(f"azr {command}: "), lines[0]
    for needle in needles:
        assert needle in lines[0], lines[0]
    assert proc.returncode == exit_code, (proc.returncode, proc.stderr)
    return lines[0]


def test_bad_config_value_is_a_usage_error(tmp_path):
    proc = run_azr("train", "--preset", "tiny-test", "--selfplay.batch-size", "-3", "--run.out-dir", str(tmp_path))
    assert_one_line(proc, "train", 2, "selfplay.batch_size must be >= 1")
    assert not any(tmp_path.iterdir())  # rejected before anything was written


def test_unparseable_config_value_is_one_line_not_a_box():
    proc = run_azr("train", "--preset", "tiny-test", "--selfplay.batch-size", "abc")
    assert_one_line(proc, "train", 2, "--selfplay.batch-size", "'abc'", "--help")


def test_bad_flag_combination_is_a_usage_error():
    proc = run_azr("eval", "--model", "tiny", "--n", "3")  # greedy decoding with 3 samples
    assert_one_line(proc, "eval", 2, "--temperature", "--n 1")


def test_missing_model(tmp_path):
    proc = run_azr("eval", "--model", str(tmp_path / "no-such-model"), "--suite", "cruxeval-o", "--limit", "1",
                   "--out", str(tmp_path / "ev"))
    assert_one_line(proc, "eval", 1, "could not load model", "does not exist")
    assert not (tmp_path / "ev").exists() or not any((tmp_path / "ev").glob("*.json"))


def test_corrupt_model(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text(json.dumps({"model_type": "llama", "hidden_size": 8}))
    (model / "model.safetensors").write_bytes(b"\x00garbage, not a safetensors file" * 10)
    proc = run_azr("eval", "--model", str(model), "--suite", "cruxeval-o", "--limit", "1", "--out", str(tmp_path / "e"))
    assert_one_line(proc, "eval", 1, "could not load model", str(model))


def test_missing_data_names_the_suites_format(tmp_path):
    proc = run_azr("eval", "--model", "tiny", "--suite", "cruxeval-i", "--data", f"cruxeval-i={tmp_path}/none.jsonl")
    assert_one_line(proc, "eval", 1, "data not found", '"code"', '"output"')
    proc = run_azr("eval", "--model", "tiny", "--suite", "humaneval", "--data", f"humaneval={tmp_path}/none.jsonl")
    assert_one_line(proc, "eval", 1, "data not found", '"entry_point"')


def test_corrupt_checkpoint(tmp_path):
    step = tmp_path / "r" / "checkpoints" / "step_000001"
    (step / "model").mkdir(parents=True)
    (step / "buffers").mkdir()
    (step / "meta.json").write_text('{"format_version": 1, "step": ')  # cut short
    (tmp_path / "r" / "checkpoints" / "latest").write_text("step_000001")
    proc = run_azr("train", "--preset", "tiny-test", "--run.out-dir", str(tmp_path), "--run.name", "r")
    assert_one_line(proc, "train", 1, "meta.json is corrupt", "older checkpoint")


def test_full_disk_while_writing_an_eval_report_keeps_the_old_report(tmp_path):
    out = tmp_path / "ev"
    out.mkdir()
    (out / "tiny.json").write_text("the previous report")
    (out / "tiny.json.tmp").symlink_to("/dev/full")  # every write to it fails with ENOSPC, as on a full disk
    proc = run_azr("eval", "--model", "tiny", "--suite", "cruxeval-o", "--limit", "2", "--max-new-tokens", "4",
                   "--out", str(out))
    assert_one_line(proc, "eval", 1, "disk full", str(out / "tiny.json"))
    assert (out / "tiny.json").read_text() == "the previous report"
    assert not (out / "tiny.json.tmp").exists() and not (out / "tiny.json.tmp").is_symlink()


def _on_small_disk(mountpoint: Path, size: str) -> tuple[str, ...] | None:
    """A command prefix that runs the rest on a private tmpfs of `size` at `mountpoint`, then prints what is left on
    it after a ``@@left`` line (the mount is private: nothing outside sees it); None when this machine allows no
    mount namespace."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    script = ('mount -t tmpfs -o "size=$1" tmpfs "$2" || exit 99; d=$2; shift 2; "$@"; rc=$?; echo @@left; '
              'cd "$d" && find . -mindepth 1 | sort; exit $rc')
    for flags in (["-m"], ["-U", "-r", "-m"]):  # as root; else in a user namespace
        prefix = (unshare, *flags, "sh", "-c", script, "sh", size, str(mountpoint))
        if subprocess.run([*prefix, "true"], capture_output=True).returncode == 0:
            return prefix
    return None


def test_full_disk_while_checkpointing_a_run(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = _on_small_disk(disk, "160k")  # room for the run's small files, not for the tiny model's checkpoint
    if prefix is None:
        pytest.skip("no mount namespace here to make a small filesystem")
    proc = run_azr("train", "--preset", "tiny-test", "--run.steps", "1", "--run.out-dir", str(disk),
                   "--run.name", "r", prefix=prefix)
    assert_one_line(proc, "train", 1, "could not write checkpoint", "No space left on device", "untouched")
    left = proc.stdout.split("@@left\n", 1)[1].split()
    assert "./r/config.json" in left and "./r/checkpoints" in left
    assert not [p for p in left if p.startswith("./r/checkpoints/")]  # the half-written checkpoint was removed


def test_disk_warning_comes_one_save_before_the_disk_fills(tmp_path):
    """A disk with room for two checkpoints of the tiny model (1.1 MB each) and the run's small files, not three:
    the save that leaves less than one checkpoint free says so, and the next save fails as above."""
    disk = tmp_path / "disk"
    disk.mkdir()
    prefix = _on_small_disk(disk, "3000k")
    if prefix is None:
        pytest.skip("no mount namespace here to make a small filesystem")
    proc = run_azr("train", "--preset", "tiny-test", "--run.steps", "3", "--run.save-every", "1",
                   "--run.out-dir", str(disk), "--run.name", "r", prefix=prefix)
    out = " ".join(proc.stdout.split())  # rich wraps long lines
    assert "disk warning:" in out and "the next save will fail (disk full)" in out
    assert out.count("disk warning:") == 1  # only once two checkpoints sit on the disk
    assert_one_line(proc, "train", 1, "could not write checkpoint", "step_000003", "untouched")
    assert "./r/checkpoints/step_000002/meta.json" in proc.stdout.split("@@left\n", 1)[1].split()


INTERRUPT_DURING_SAVE = textwrap.dedent("""
    import os, signal, sys
    import azr.train as T

    real_save = T.save_checkpoint

    def save_checkpoint(*args, **kw):
        save_model = kw["save_model"]

        def interrupted(path):  # Ctrl-C lands after the weights are written, before the rest of the checkpoint
            save_model(path)
            os.kill(os.getpid(), signal.SIGINT)
            print("SIGINT sent mid-save", file=sys.stdout, flush=True)

        return real_save(*args, **{**kw, "save_model": interrupted})

    T.save_checkpoint = save_checkpoint
    from azr.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_ctrl_c_during_a_save_finishes_the_checkpoint_then_exits_130(tmp_path):
    from azr.checkpoint import latest_checkpoint, load_checkpoint

    proc = run_azr("train", "--preset", "tiny-test", "--run.steps", "2", "--run.out-dir", str(tmp_path),
                   "--run.name", "r", code=INTERRUPT_DURING_SAVE)
    assert "SIGINT sent mid-save" in proc.stdout
    assert_one_line(proc, "train", 130, "interrupted at step 0", "checkpoint of step 0", "resume")
    ckpts = tmp_path / "r" / "checkpoints"
    assert load_checkpoint(latest_checkpoint(tmp_path / "r")).step == 0  # complete, and the step interrupted
    assert [p.name for p in ckpts.iterdir() if p.name.startswith(".")] == []  # no half-written directory left
    assert not (tmp_path / "r" / "metrics.jsonl").exists()  # it stopped: no step ran after the interrupt


INTERRUPT_DURING_A_STEP = textwrap.dedent("""
    import os, signal, sys
    import azr.train as T

    real_step = T.selfplay_step

    def selfplay_step(eng, state, on_stage):
        def stage(name):  # Ctrl-C lands in the middle of step 2's update
            if state.step == 1 and name == "update":
                os.kill(os.getpid(), signal.SIGINT)
                print("SIGINT sent mid-step", file=sys.stdout, flush=True)
            on_stage(name)

        return real_step(eng, state, stage)

    T.selfplay_step = selfplay_step
    from azr.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def test_ctrl_c_during_a_step_finishes_it_logs_its_metrics_and_checkpoints_it(tmp_path):
    """The step runs to its end (weights, buffers and counter change together), and its metrics row is written
    before the run stops: the checkpoint holds the step, so a resumed run never redoes it and would never log it."""
    from azr.checkpoint import latest_checkpoint, load_checkpoint
    from azr.metrics import read_metrics

    proc = run_azr("train", "--preset", "tiny-test", "--run.steps", "4", "--run.out-dir", str(tmp_path),
                   "--run.name", "r", code=INTERRUPT_DURING_A_STEP)
    assert "SIGINT sent mid-step" in proc.stdout
    assert_one_line(proc, "train", 130, "interrupted at step 2", "checkpoint of step 2", "resume")
    assert load_checkpoint(latest_checkpoint(tmp_path / "r")).step == 2
    assert [r["step"] for r in read_metrics(tmp_path / "r")] == [1, 2]


@pytest.mark.parametrize("how", ["flag", "env"])
def test_debug_shows_the_traceback(how):
    args, env = (["--debug"], {}) if how == "flag" else ([], {"AZR_DEBUG": "1"})
    proc = run_azr("eval", "--model", "tiny", "--n", "3", *args, env=env)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "ConfigError" in proc.stderr and "--temperature" in proc.stderr


def test_too_little_memory_stops_before_any_work_with_one_line(tmp_path):
    proc = run_azr("train", "--preset", "tiny-test", "--run.out-dir", str(tmp_path), "--run.memory-limit-gib", "0.05")
    assert_one_line(proc, "train", 1, "the update needs", "available", "--model.lora-rank")
    assert not (tmp_path / "tiny-test" / "checkpoints").exists() and not (tmp_path / "tiny-test" / "seeding").exists()


def test_train_prints_its_memory_plan_and_can_skip_it(tmp_path):
    proc = run_azr("train", "--preset", "tiny-test", "--run.steps", "1", "--run.out-dir", str(tmp_path))
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "memory: " in proc.stdout and "the update adds up to" in proc.stdout
    proc = run_azr("train", "--preset", "tiny-test", "--run.steps", "1", "--run.out-dir", str(tmp_path / "off"),
                   "--run.no-memory-plan")
    assert proc.returncode == 0 and "memory: " not in proc.stdout
