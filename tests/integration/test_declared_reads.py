"""No stage opens a file under ``assets/`` that its declaration does not name.

Every stage of a shrunk tiny profile runs under ``strace`` (each in a forked child, so no in-process cache
of one stage answers for the next), and every file it opens under ``assets/`` (the data root of the tiny
profile is inside it) must lie in a declared upstream output, a declared data file or one of its own
outputs (or their temporary siblings, which atomic writes rename into place), or the stage's own run lock
(``assets/.locks/<asset>[<partition>].lock``, outside every asset's folder). Opening through a native
library (LanceDB, PyAV, safetensors) is a system call like any other, so it is seen too.
"""

from __future__ import annotations

import os
import re
from collections import defaultdict
from pathlib import Path

from file_opens import traced_opens
from tests_support import REPO_ROOT, fast_lineage_params, write_params

from marc_ops.config import ProjectPaths
from marc_ops.registry import STAGES, partition_keys
from marc_ops.registry.dvcfile import declared_paths
from marc_ops.registry.runlock import lock_path

MARKER = re.compile(r"/markers/(\d+)=(.+)$")


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def _allowed(path: str, reads: list[str], writes: list[str]) -> bool:
    if any(_under(path, declared) for declared in reads + writes):
        return True
    # An atomic write's temporary sibling: `.<name>.tmp-*`, `.<name>.partial-*`, `.<name>.old-*`.
    for declared in writes:
        parent, name = os.path.split(declared)
        if path.startswith(f"{parent}/.{name}."):
            return True
    return False


def test_every_stage_opens_only_what_it_declares(tmp_path: Path):
    project, markers = tmp_path / "project", tmp_path / "markers"
    project.mkdir()
    markers.mkdir()
    write_params(project, fast_lineage_params())
    params = ProjectPaths(project).params()
    runs = [(name, key) for name in STAGES for key in partition_keys(name, params)]
    items = [name if key is None else f"{name}:{key}" for name, key in runs]
    log = tmp_path / "strace.log"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1"}
    done, opens = traced_opens(
        REPO_ROOT / "tests" / "stage_trace.py",
        [str(project), str(markers), *items],
        log,
        cwd=project,
        env=env,
        timeout=900,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]

    opened: dict[int, set[str]] = defaultdict(set)
    current = None
    for path, flags in opens:
        if "O_DIRECTORY" in flags:
            continue
        marker = MARKER.search(path)
        if marker is not None:
            current = int(marker.group(1))
            continue
        absolute = os.path.normpath(path if path.startswith("/") else str(project / path))
        if current is not None and _under(absolute, str(project / "assets")):
            opened[current].add(Path(absolute).relative_to(project).as_posix())
    assert len(opened) == len(runs), "the trace lost a stage's marker"

    undeclared = {}
    for index, (name, key) in enumerate(runs):
        declared = declared_paths(name, params, project, key)
        lock = lock_path(project, name, key).relative_to(project).as_posix()
        bad = sorted(
            p for p in opened[index] if not _allowed(p, declared["reads"], [*declared["writes"], lock])
        )
        if bad:
            undeclared[items[index]] = bad[:8]
    assert not undeclared, f"stages opened files they do not declare: {undeclared}"
    # The check sees what it is meant to: the evaluation opened its checkpoint and SCORE's policy.
    scoring = opened[items.index("benchmark_scores:synthetic|score@0.25")]
    assert any(p.startswith("assets/score_policy/") for p in scoring)
    assert any(
        p.startswith("assets/cgrpo_checkpoint/tau_0.6/")
        for p in opened[items.index("benchmark_scores:synthetic|marc@0.6")]
    )
