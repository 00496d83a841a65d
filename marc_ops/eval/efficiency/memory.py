"""Peak memory of one measured pass, reset before it and read after it.

On CUDA, ``torch.cuda.max_memory_allocated`` after ``reset_peak_memory_stats``. On the CPU, the
process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``), reset by writing ``5``
to ``/proc/self/clear_refs`` after ``malloc_trim`` has handed freed heap back to the kernel, so one
pass's peak never leaks into the next one's, in one process (Linux only). Both include the resident
weights.
"""

from __future__ import annotations

import ctypes
import gc
from pathlib import Path

import torch

_CLEAR_REFS = Path("/proc/self/clear_refs")
_STATUS = Path("/proc/self/status")


def reset_peak_memory(device: torch.device) -> None:
    """Collect garbage and start a new peak: CUDA's allocator peak, or the process's RSS high-water mark."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
        return
    if not _CLEAR_REFS.exists():
        raise RuntimeError(
            "the CPU peak-memory measurement resets the process's RSS high-water mark through "
            "/proc/self/clear_refs, which only Linux has; profile on Linux (or on a CUDA device)"
        )
    # Freed heap stays resident until trimmed; without this the previous method's garbage counts here.
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    _CLEAR_REFS.write_text("5")  # "5": reset the peak RSS to the current RSS (proc(5))


def peak_memory_bytes(device: torch.device) -> int:
    """Bytes at the peak since :func:`reset_peak_memory`."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device)
    for line in _STATUS.read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024  # reported in kB
    raise RuntimeError(f"{_STATUS} has no VmHWM line")
