"""Run a Python script under strace and read back every file it opened (the tests of declared reads and of
bad input: what a run opens, not what it says it opens)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

# One line of `strace -f -e trace=open,openat`: the pid, then the path and the flags of the open.
OPEN = re.compile(r'^\d+\s+open(?:at)?\((?:AT_FDCWD, )?"([^"]+)", ([A-Z_|]+)')


def traced_opens(
    script: Path,
    args: Sequence[str],
    log: Path,
    *,
    cwd: Path,
    env: Mapping[str, str],
    timeout: int,
    seccomp: bool = False,
) -> tuple[subprocess.CompletedProcess[str], list[tuple[str, str]]]:
    """Run ``python script *args`` under strace (its children too); the finished process and each open as
    ``(path as passed, flags)``, in order. ``seccomp``: let the kernel filter the traced calls (faster)."""
    strace = shutil.which("strace")
    if strace is None:
        pytest.fail("strace is not installed: `make tools` installs it (apt-get install strace)")
    command = [strace, *(["--seccomp-bpf"] if seccomp else []), "-f", "-qq", "-e", "trace=open,openat"]
    done = subprocess.run(
        [*command, "-o", str(log), sys.executable, str(script), *args],
        cwd=cwd,
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    opens = []
    for line in log.read_text(errors="replace").splitlines() if log.is_file() else []:
        match = OPEN.search(line)
        if match is not None:
            opens.append((match.group(1), match.group(2)))
    return done, opens
