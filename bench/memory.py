"""Resident memory of this process (Linux), for the benchmarks' peak-memory columns."""

import resource


def resident_mb() -> float:
    """The process's resident set now, MB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize() / 2**20


def reset_peak() -> None:
    """Start the peak (VmHWM) afresh from the current resident set, so that a later :func:`peak_mb` covers only
    what follows (an earlier, higher peak would otherwise hide it)."""
    with open("/proc/self/clear_refs", "w") as handle:
        handle.write("5")


def peak_mb() -> float:
    """The process's peak resident set since it started or since :func:`reset_peak`, MB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
