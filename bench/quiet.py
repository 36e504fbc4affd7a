"""CPU contention: wait for a quiet machine, and measure what others used during a run."""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.servers import _tree

LOCK = Path("/tmp/chatd-bench.lock")


@contextmanager
def bench_lock() -> Iterator[None]:
    """Hold /tmp/chatd-bench.lock while measuring; other benchmarks can wait on it with
    `flock /tmp/chatd-bench.lock CMD` so two benchmarks never share the cores."""
    with LOCK.open("a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {LOCK} (another benchmark runs)", flush=True)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def _cpu_jiffies() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs since boot."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def _proc_jiffies(pids: list[int]) -> int:
    used = 0
    for pid in pids:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        used += int(stat[11]) + int(stat[12])  # utime + stime
    return used


def busy_fraction(seconds: float = 1.0) -> float:
    """Share of all CPUs busy over `seconds` (0..1)."""
    b0, t0 = _cpu_jiffies()
    time.sleep(seconds)
    b1, t1 = _cpu_jiffies()
    return (b1 - b0) / max(t1 - t0, 1)


def wait_quiet(max_wait: float, threshold: float = 0.25, needed: int = 3) -> dict[str, float]:
    """Wait (at most `max_wait` s) until the CPUs are < `threshold` busy for `needed` seconds.

    A load average under 0.5 on 2 cores is about 25% busy; /proc/stat answers in a second
    where the load average lags by a minute.
    """
    start = time.monotonic()
    calm = 0
    last = 1.0
    while time.monotonic() - start < max_wait:
        last = busy_fraction(1.0)
        calm = calm + 1 if last < threshold else 0
        if calm >= needed:
            # another benchmark waiting for the same quiet moment starts now: let it go first
            time.sleep(random.uniform(1.0, 6.0))
            last = busy_fraction(2.0)
            if last < threshold:
                break
            calm = 0
    return {
        "waited_s": round(time.monotonic() - start, 1),
        "busy": round(last, 3),
        "quiet": float(calm >= needed),
        "loadavg1": os.getloadavg()[0],
    }


@dataclass
class Foreign:
    """CPU used by processes other than the server under test and this harness."""

    server_pid: int | None
    _busy: int = 0
    _total: int = 0
    _mine: int = 0
    cores: float = 0.0  # average cores taken by others during the block

    def _mine_now(self) -> int:
        pids = [os.getpid()] + (_tree(self.server_pid) if self.server_pid else [])
        return _proc_jiffies(pids)

    def __enter__(self) -> Foreign:
        self._busy, self._total = _cpu_jiffies()
        self._mine = self._mine_now()
        return self

    def __exit__(self, *exc: object) -> None:
        busy, total = _cpu_jiffies()
        mine = self._mine_now() - self._mine
        self.cores = (
            (busy - self._busy - mine) / max(total - self._total, 1) * (os.cpu_count() or 1)
        )
        self.cores = max(self.cores, 0.0)
