"""Run stages one after another, each in a forked child (no cache of one stage helps the next), opening a
marker file before each so that a syscall trace of the whole run splits by stage.

    python tests/stage_trace.py PROJECT MARKER_DIR NAME[:PARTITION] ...

Exits non-zero at the first stage that fails.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path

from marc_ops.config import ProjectPaths
from marc_ops.registry import STAGES


def main(argv: list[str]) -> int:
    project, markers = Path(argv[0]), Path(argv[1])
    os.chdir(project)
    for index, item in enumerate(argv[2:]):
        name, _, partition = item.partition(":")
        pid = os.fork()
        if pid == 0:
            code = 0
            try:
                open(markers / f"{index:02d}={item.replace('|', '+')}", "w").close()
                paths = ProjectPaths(project)
                STAGES[name](paths, paths.params(), partition or None)
            except BaseException:
                traceback.print_exc()
                code = 1
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        _, status = os.waitpid(pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            print(f"stage {item} failed", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
