"""System readings (psutil) and the health verdict; no database I/O here.

The registry probes databases in the background and hands the cached results
in, so that ``/health`` answers in well under 50 ms even while a database hangs.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import psutil

from pgmcp.config import Settings
from pgmcp.errors import mask_secrets

__all__ = ["RANK", "Status", "SystemProbe", "assess"]

Status = Literal["healthy", "degraded", "unhealthy"]
#: Worse is higher: a transition to a higher rank logs at WARNING, to a lower one at INFO.
RANK: dict[str, int] = {"healthy": 0, "degraded": 1, "unhealthy": 2}


class SystemProbe:
    """Memory, CPU, disk and load of the machine and this process, read without blocking."""

    def __init__(self, data_dir: Path | None) -> None:
        self._process = psutil.Process()
        self._disk_path = _existing(data_dir if data_dir is not None else Path.cwd())
        self._cpu_lock = threading.Lock()
        self._cpu_at = time.monotonic()
        self._cpu_value = 0.0
        psutil.cpu_percent(interval=None)  # prime: the next non-blocking call measures from here

    def rss_bytes(self) -> int:
        try:
            return int(self._process.memory_info().rss)
        except psutil.Error:
            return 0

    def cpu_percent(self) -> float:
        """System CPU use since the previous sample (``interval=None``: never sleeps).

        Samples closer than a second apart would be noise, so the last value is
        reused within a second (and the first second after start reads 0).
        """
        now = time.monotonic()
        with self._cpu_lock:
            if now - self._cpu_at >= 1.0:
                self._cpu_value = float(psutil.cpu_percent(interval=None))
                self._cpu_at = now
            return self._cpu_value

    def read(self) -> dict[str, Any]:
        stats: dict[str, Any] = {
            "memory_percent": float(psutil.virtual_memory().percent),
            "process_rss_bytes": self.rss_bytes(),
            "cpu_percent": self.cpu_percent(),
            "cpu_count": os.cpu_count() or 1,
            "disk_percent": 0.0,
        }
        with contextlib.suppress(OSError):  # data dir on a vanished mount: report 0
            stats["disk_percent"] = float(psutil.disk_usage(self._disk_path).percent)
        if hasattr(os, "getloadavg"):
            stats["load_average"] = [round(x, 2) for x in os.getloadavg()]
        return stats


def _existing(path: Path) -> str:
    # The embedded server's data dir may not exist before its first start: use the
    # closest existing parent, which is on the same partition in practice.
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return str(path)


def _age_seconds(last_checked: Any, now: datetime) -> float | None:
    when: datetime
    if isinstance(last_checked, datetime):
        when = last_checked
    elif isinstance(last_checked, str):
        try:
            when = datetime.fromisoformat(last_checked)
        except ValueError:
            return None
    else:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return (now - when).total_seconds()


def assess(
    system: Mapping[str, Any], connections: Mapping[str, Mapping[str, Any]], settings: Settings
) -> tuple[Status, list[str], dict[str, dict[str, Any]]]:
    """The verdict: ``(status, warnings, connections with secrets masked)``.

    - ``unhealthy``: at least one connection has been probed and every probed one failed.
    - ``degraded``: memory, CPU or disk over its threshold (100 turns a check off), or some (not all)
      probed connections failed.
    - ``healthy``: otherwise; also when no connection is registered (a warning says
      so: the server itself works and ``add_connection`` can still be used).

    A connection whose ``is_healthy`` is None (not probed yet) counts neither way.
    A probe result older than three ``HEALTH_CHECK_INTERVAL`` (the background
    prober has stalled) degrades, since the cached verdict can no longer be trusted.
    """
    warnings: list[str] = []
    degraded = False
    for label, value, threshold in (
        ("Memory", system["memory_percent"], settings.memory_warning_threshold),
        ("CPU", system["cpu_percent"], settings.cpu_warning_threshold),
        ("Disk", system["disk_percent"], settings.disk_warning_threshold),
    ):
        if value > threshold:
            degraded = True
            warnings.append(f"{label} usage high: {value:.1f}% (threshold {threshold:g}%)")
    conns: dict[str, dict[str, Any]] = {}
    probed = failed = 0
    now = datetime.now(UTC)
    stale_after = 3 * settings.health_check_interval
    for cid, info in connections.items():
        entry = {k: (mask_secrets(v) if isinstance(v, str) else v) for k, v in info.items()}
        conns[cid] = entry
        state = entry.get("is_healthy")
        if state is None:
            warnings.append(f"Connection '{cid}' has not been checked yet")
            continue
        probed += 1
        age = _age_seconds(entry.get("last_checked"), now)
        if age is not None and age > stale_after:
            degraded = True
            warnings.append(
                f"Connection '{cid}' was last checked {age:.0f} s ago "
                f"(HEALTH_CHECK_INTERVAL is {settings.health_check_interval:g} s)"
            )
        if not state:
            failed += 1
            warnings.append(f"Connection '{cid}' is unhealthy: {entry.get('error') or 'no answer'}")
    if not connections:
        warnings.append("No database connections are registered")
    status: Status
    if probed and failed == probed:
        status = "unhealthy"
    elif degraded or failed:
        status = "degraded"
    else:
        status = "healthy"
    return status, warnings, conns
