"""What a benchmark's result file records about its run: the command that produced it and the machine.

Imported by the scripts beside it (``python benchmarks/<name>.py`` puts this folder on ``sys.path``);
``make bench`` runs only the scripts whose names do not start with ``_``.
"""

from __future__ import annotations

import os
import platform
import sys
from collections.abc import Sequence


def command_line(script: str, argv: Sequence[str] | None) -> str:
    """``python benchmarks/<script> <args>``: ``argv`` as given to ``main``, else the process's own."""
    return " ".join(["python", f"benchmarks/{script}", *(argv if argv is not None else sys.argv[1:])])


def machine(load_start: float) -> dict[str, object]:
    """CPUs, Python, and the 1-minute load average at the start (``load_start``) and now."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "load_start": load_start,
        "load_end": os.getloadavg()[0],
    }
