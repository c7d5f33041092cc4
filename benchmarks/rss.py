"""Peak-RSS measurement shared by the memory benchmarks (`optimizer_step.py`, `learner_memory.py`).

RSS is per process and the heap rarely shrinks back, so each variant runs in a fresh process
(`run_child`), and inside it a thread samples RSS while the measured block runs (`PeakRSS`)."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time


class PeakRSS:
    """``with PeakRSS() as m: ...`` samples this process's RSS every ``interval_s`` during the block; then
    ``m.before`` is the RSS (bytes) on entry and ``m.peak`` the highest seen, entry included."""

    def __init__(self, interval_s: float = 0.02) -> None:
        import psutil

        self._proc, self._interval = psutil.Process(), interval_s
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self.before = self.peak = 0

    def _sample(self) -> None:
        while not self._done.is_set():
            self.peak = max(self.peak, self._proc.memory_info().rss)
            time.sleep(self._interval)

    def __enter__(self) -> PeakRSS:
        self.before = self.peak = self._proc.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, self._proc.memory_info().rss)


def run_child(script: str, args: list[str]) -> dict:
    """Run ``script`` with ``args`` in a fresh interpreter and return the JSON object on its last stdout line."""
    out = subprocess.run([sys.executable, script, *args], capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])
