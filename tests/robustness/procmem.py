"""Another process's memory, read from ``/proc``: its resident set and peak, and a peak reset."""

from __future__ import annotations


def status_mb(pid: int, key: str) -> float | None:
    """A ``/proc/PID/status`` figure (``VmRSS``, ``VmHWM``, ...) in MiB; None if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak(pid: int) -> bool:
    """Set the process's ``VmHWM`` to its current RSS; False where the kernel does not allow it."""
    try:
        with open(f"/proc/{pid}/clear_refs", "w") as refs:
            refs.write("5")
        return True
    except OSError:
        return False
