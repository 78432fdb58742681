"""CPU time spent by a process and everything it started, read from /proc (Linux).

A process's own user and system time, plus what its children that ended and were waited for
spent (``cutime``/``cstime``), summed over it and its live descendants: the Dagster daemon, the
code server it starts and the run workers that server starts are all counted, whether they are
still running or have ended.
"""

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["CpuWindow", "tree_cpu_s"]

TICKS_PER_S = os.sysconf("SC_CLK_TCK")
PROC = Path("/proc")


def _stat(pid: int) -> list[str] | None:
    try:
        text = (PROC / str(pid) / "stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses: the fields start after the last ')'.
    return text.rsplit(")", 1)[1].split()


def tree_cpu_s(root: int) -> float:
    """Seconds of CPU of ``root`` and its descendants (live ones, and ended ones reaped)."""
    children: dict[int, list[int]] = {}
    stats: dict[int, list[str]] = {}
    for entry in PROC.iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            stats[int(entry.name)] = fields
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    total = 0
    pending = [root]
    while pending:
        pid = pending.pop()
        fields = stats.get(pid)
        if fields is None:
            continue
        # utime, stime, cutime, cstime: fields 14-17 of stat(5), 11-14 after the name.
        total += sum(int(value) for value in fields[11:15])
        pending += children.get(pid, [])
    return total / TICKS_PER_S


@dataclass
class CpuWindow:
    """CPU of a process tree between ``start`` and ``stop``, and its rate per hour."""

    pid: int
    started_cpu_s: float = 0.0
    started_at: float = 0.0

    def start(self, now: float) -> None:
        self.started_cpu_s = tree_cpu_s(self.pid)
        self.started_at = now

    def stop(self, now: float) -> dict[str, float]:
        cpu_s = tree_cpu_s(self.pid) - self.started_cpu_s
        wall_s = now - self.started_at
        return {
            "cpu_s": round(cpu_s, 1),
            "wall_s": round(wall_s, 1),
            "cpu_s_per_hour": round(cpu_s * 3600 / wall_s, 0) if wall_s > 0 else 0.0,
        }
