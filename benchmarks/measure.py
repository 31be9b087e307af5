"""Run a command and measure it: wall time, CPU time of the process tree, peak tree RSS."""

from __future__ import annotations

import resource
import subprocess
import time
from pathlib import Path

import psutil


def _tree_rss(process: psutil.Popen, cpu: dict[int, float] | None = None) -> tuple[int, int]:
    """Summed RSS of ``process`` and its descendants, and its anonymous part (RSS less file-backed and
    shared pages: memory-mapped Arrow files count in RSS but are page cache); records each one's CPU
    seconds in ``cpu`` (by pid)."""
    try:
        tree = [process, *process.children(recursive=True)]
    except psutil.Error:
        return 0, 0
    total = anon = 0
    for member in tree:
        try:
            with member.oneshot():
                memory = member.memory_info()
                total += memory.rss
                anon += memory.rss - getattr(memory, "shared", 0)
                if cpu is not None:
                    times = member.cpu_times()
                    cpu[member.pid] = times.user + times.system
        except psutil.Error:
            continue
    return total, anon


def run_measured(command: list[str], *, cwd: Path | None = None, log: Path | None = None,
                 interval: float = 0.05) -> dict[str, float]:
    """Run ``command`` to completion; peak RSS is the largest sum over the process and its children.

    CPU time is user + system of every descendant: the larger of ``RUSAGE_CHILDREN`` (descendants
    that were waited for) and the sum of each process's last sampled CPU time (pool workers that
    are never waited for, e.g. a fork server's; up to one ``interval`` of a short-lived one is missed).

    Raises:
        RuntimeError: the command failed (its log tail is in the message).
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out = log.open("w") if log else subprocess.DEVNULL
    start = time.perf_counter()
    try:
        process = psutil.Popen(command, cwd=cwd, stdout=out, stderr=subprocess.STDOUT)
        peak = peak_anon = 0
        sampled: dict[int, float] = {}
        while process.poll() is None:
            rss, anon = _tree_rss(process, sampled)
            peak, peak_anon = max(peak, rss), max(peak_anon, anon)
            time.sleep(interval)
    finally:
        if log:
            out.close()
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if process.returncode != 0:
        tail = log.read_text()[-2000:] if log else ""
        raise RuntimeError(f"{' '.join(command)} failed with exit code {process.returncode}\n{tail}")
    cpu = max((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), sum(sampled.values()))
    return {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "peak_rss_mb": round(peak / 2**20, 1),
            "peak_anon_mb": round(peak_anon / 2**20, 1)}


def disk_mb(*paths: Path) -> float:
    """Bytes on disk (apparent size) under ``paths``, in MiB."""
    total = 0
    for path in paths:
        if path.is_file():
            total += path.stat().st_size
        elif path.is_dir():
            total += sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return round(total / 2**20, 1)
