"""Resource alarms, as RabbitMQ's: while the disk cannot take writes or the broker uses
more memory than its limit, connections that publish are blocked (told so with
connection.blocked when they understand it, and no longer read) until the alarm clears.
Consumers go on, which is how the alarm clears."""

from __future__ import annotations

import asyncio
import ctypes
import logging
import os
import resource
import shutil
from collections.abc import Iterable

from xivo_bus.broker.roles import Blockable

log = logging.getLogger("xivo_bus.broker")

MEMORY_CHECK_INTERVAL = 1.0
DEFAULT_MEMORY_FRACTION = 0.4  # RabbitMQ's vm_memory_high_watermark


def default_memory_limit() -> int:
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") * DEFAULT_MEMORY_FRACTION)


def resident_memory() -> int:
    """This process's resident set size, in bytes."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def resources(data_dir: str | None) -> dict[str, int]:
    """What the node uses of the machine, as RabbitMQ's status and node pages show it:
    resident memory, file descriptors used and allowed, free disk space where data is."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:
        descriptors = len(os.listdir("/proc/self/fd"))
    except OSError:
        descriptors = 0
    return {
        "mem_used": resident_memory(),
        "fd_used": descriptors,
        "fd_total": soft,
        "disk_free": shutil.disk_usage(data_dir or os.getcwd()).free,
    }


def _libc_trim():
    """glibc's malloc_trim, which hands freed heap memory back to the system (without it
    the resident size stays high after a backlog is consumed); None elsewhere."""
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_malloc_trim = _libc_trim()


class Alarms:
    def __init__(self, connections: Iterable[Blockable], memory_limit: int | None):
        self.connections = connections  # told when publishers are blocked, or may go on
        self.memory_limit = memory_limit
        self._reasons: dict[str, str] = {}  # resource -> why
        # Why publishers are blocked now, or None; read on every publish, so kept ready.
        self.reason: str | None = None
        self._timer: asyncio.TimerHandle | None = None

    @property
    def raised(self) -> list[str]:
        """The resources in alarm now (``memory``, ``disk``)."""
        return list(self._reasons)

    def set(self, resource: str, reason: str | None) -> None:
        """Raise (``reason``) or clear (None) the alarm of one resource."""
        before = self.reason
        if reason is None:
            self._reasons.pop(resource, None)
        else:
            self._reasons[resource] = reason
        after = self.reason = "; ".join(self._reasons.values()) or None
        if after != before:
            if reason is not None:
                log.warning("resource alarm: %s: publishers are blocked", reason)
            elif after is None:
                log.warning("resource alarms cleared: publishers may go on")
            for connection in list(self.connections):
                try:
                    connection.set_blocked(after)
                except Exception:  # a bug in one connection must not keep the alarm up
                    log.exception("connection %s: cannot tell it about the alarm", connection)
                    try:
                        connection.close(541, "INTERNAL_ERROR - internal error")
                    except Exception:
                        log.exception("connection %s: cannot close it", connection)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if self.memory_limit:
            self._timer = loop.call_later(MEMORY_CHECK_INTERVAL, self._check_memory, loop)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _check_memory(self, loop: asyncio.AbstractEventLoop) -> None:
        try:
            used = resident_memory()
            if used > self.memory_limit and _malloc_trim is not None:
                _malloc_trim(0)
                used = resident_memory()
            if used > self.memory_limit:
                self.set("memory", f"low on memory: {used} bytes used, limit {self.memory_limit}")
            else:
                self.set("memory", None)
        except Exception:  # a bug of ours, or /proc unreadable: the next check still comes
            log.exception("memory alarm: check failed")
        self._timer = loop.call_later(MEMORY_CHECK_INTERVAL, self._check_memory, loop)
