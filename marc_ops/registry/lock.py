"""Record a stage that another driver ran (Dagster) in ``dvc.lock``, as ``dvc repro`` would have.

After a Dagster materialization, :func:`record_stage` runs DVC's own ``commit`` for the stage's DVC
counterpart: DVC hashes the dependencies, params and outputs, stores the outputs in its cache and writes
the stage's entry in ``dvc.lock``, the same entry ``dvc repro`` writes. So ``dvc status`` after
``make demo`` is clean, and the hash DVC gives the outputs is the asset's data version in Dagster.

Runs of one project take turns on ``dvc.lock`` (a file lock beside it), so two materializations that end
together both land.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from marc_ops.registry.dvcfile import dvc_name

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recorded:
    """What ``dvc.lock`` now says of one stage: its DVC name and each output's hash."""

    stage: str
    hashes: dict[str, str]

    @property
    def data_version(self) -> str:
        """One version for the asset partition: the outputs' DVC hashes, combined in path order."""
        joined = "\n".join(f"{path} {digest}" for path, digest in sorted(self.hashes.items()))
        return hashlib.sha256(joined.encode()).hexdigest()[:16]


def record_stage(project_dir: Path, name: str, partition_key: str | None) -> Recorded | None:
    """``dvc commit --force`` of asset ``name``'s partition, and the hashes it recorded.

    None (and a log line) when the project is no DVC repository or ``dvc.yaml`` has no such stage (a
    partition outside the profile's ``eval`` section, a test project).
    """
    project_dir = Path(project_dir).resolve()
    stage = dvc_name(name, partition_key)
    if not (project_dir / ".dvc").is_dir() or not (project_dir / "dvc.yaml").is_file():
        logger.info("%s: not a DVC project; %s is not recorded in dvc.lock", project_dir, stage)
        return None
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    lock_file = project_dir / ".dvc" / "tmp" / "marc-commit.lock"
    lock_file.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_file, "w") as guard:
        fcntl.flock(guard, fcntl.LOCK_EX)
        try:
            # DVC resolves targets and stage paths against the working directory: work from the project.
            with contextlib.chdir(project_dir), Repo(str(project_dir)) as repo:
                if stage not in {s.name for s in repo.index.stages}:
                    logger.info("dvc.yaml has no stage %s; not recorded in dvc.lock", stage)
                    return None
                repo.commit(stage, force=True)
        except DvcException as error:
            raise RuntimeError(f"recording {stage} in {project_dir / 'dvc.lock'} failed: {error}") from error
    return Recorded(stage, locked_hashes(project_dir, stage))


def locked_hashes(project_dir: Path, stage: str) -> dict[str, str]:
    """Each output path of ``stage`` in ``dvc.lock`` with its hash (``md5``; a folder's ends in ``.dir``)."""
    lock = yaml.safe_load((Path(project_dir) / "dvc.lock").read_text()) or {}
    entry = lock.get("stages", {}).get(stage, {})
    return {out["path"]: out.get("md5", "") for out in entry.get("outs", [])}
