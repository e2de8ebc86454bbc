"""CPU time and memory of a process (the broker under test), read from /proc."""

from __future__ import annotations

import os

_TICKS = os.sysconf("SC_CLK_TCK")


def sample(pid: int | None) -> dict | None:
    """CPU seconds (user + system, every thread) and resident memory of ``pid``, or None
    when no pid is given or the process cannot be read."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as stat:
            # The command name may hold spaces; the fields after its closing paren don't.
            fields = stat.read().rpartition(")")[2].split()
        with open(f"/proc/{pid}/status") as status:
            memory = dict(line.split(":", 1) for line in status if line.startswith("Vm"))
    except OSError:
        return None
    return {
        "cpu_s": (int(fields[11]) + int(fields[12])) / _TICKS,
        "rss_kib": _kib(memory.get("VmRSS")),
        "peak_rss_kib": _kib(memory.get("VmHWM")),
    }


def _kib(value: str | None) -> int | None:
    return int(value.split()[0]) if value else None


def usage(before: dict | None, after: dict | None, wall_s: float) -> dict | None:
    """What the broker used between two samples: CPU seconds and share of one core,
    resident memory at the end."""
    if before is None or after is None:
        return None
    cpu = after["cpu_s"] - before["cpu_s"]
    return {
        "cpu_s": round(cpu, 3),
        "cpu_percent": round(100 * cpu / wall_s, 1) if wall_s > 0 else None,
        "rss_kib": after["rss_kib"],
        "peak_rss_kib": after["peak_rss_kib"],
    }
