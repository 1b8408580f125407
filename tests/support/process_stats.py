"""What the kernel says about a process we started (for the memory checks and benches)."""

from __future__ import annotations

from pathlib import Path


def rss_mib(pid: int) -> float:
    """Resident set size (VmRSS) of a live process, in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError(f"process {pid} has no VmRSS (a zombie?)")
