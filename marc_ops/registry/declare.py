"""What a stage declares once: its upstream assets, its code, the params it reads, its outputs, its partitions.

``dvc.yaml`` is rendered from these declarations (:mod:`marc_ops.registry.dvcfile`) and the Dagster assets
take their dependencies, partitions and code versions from them, so the two drivers cannot disagree on
what a stage reads or writes. A test runs every stage and fails when it opens a file under ``assets/``
(or the data root) that its declaration does not name.

Paths are relative to the project directory and may hold ``{tau}``, ``{benchmark}`` and ``{method}``,
filled from the partition.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from marc_ops.config import Params, ProjectPaths
from marc_ops.errors import UsageError
from marc_ops.registry.runlock import running
from marc_ops.stage import StageResult

StageFn = Callable[..., StageResult]
Partitioning = Literal["tau", "benchmark_method"]


@dataclass(frozen=True)
class Out:
    """One output of a stage.

    Attributes:
        path: project-relative file or folder (``{tau}`` etc. filled per partition).
        persist: a resumable cache (shot segments, records, checkpoints): DVC keeps it when the stage runs
            again, so a killed or repeated run resumes instead of starting over.
        metric: figures and timings (JSON): a DVC metrics file (``dvc metrics show``/``diff``); its hash is not
            part of what a reproduction must match (timings vary by machine).
        plot: the DVC plot spec (``x``, ``y``) of a CSV output (``dvc plots show``).
        varies: why its bytes differ between two runs of the same inputs (measured seconds, a storage format's
            random file names), or empty: a reproduction must match its hash. Shown as the output's ``desc``
            in ``dvc.yaml``; metrics vary by definition and need no reason.
    """

    path: str
    persist: bool = False
    metric: bool = False
    plot: dict[str, str] | None = None
    varies: str = ""

    @property
    def reproducible(self) -> bool:
        """Whether a run in another clone must write the same bytes (what the committed ``dvc.lock`` audits)."""
        return not (self.metric or self.varies)

    def at(self, **fields: Any) -> str:
        return self.path.format(**fields)


@dataclass(frozen=True)
class Stage:
    """One asset's implementation and its declaration.

    Attributes:
        run: ``<asset>_stage(paths, params, **partition)``.
        code: the packages and modules (repo-relative) whose change makes the outputs stale.
        params: the ``params.yaml`` keys the stage reads.
        outs: what it writes.
        upstream: the assets it reads, whole (every partition of a partitioned one).
        upstream_of: the assets it reads that depend on the profile or the partition: ``(params, partition
            fields) -> ("asset" | "asset[partition key]", ...)`` (the initial policy of ``train.init``, a
            method's checkpoint).
        data_files: files the stage reads under the data root, when that root is outside the project (the
            paper profile's annotation, CoT and benchmark files): hashed as dependencies, never copied.
        partitions: ``"tau"`` (one per ``train.taus``) or ``"benchmark_method"`` (one per
            ``eval.benchmarks`` × ``eval.methods``).
        parse: a partition key (Dagster's form, ``0.6`` or ``synthetic|marc@0.6``) → the run's keyword
            arguments.
        canonical: a partition key → the one spelling of its partition (``0.60`` → ``0.6``, ``synthetic|marc``
            → ``synthetic|marc@0.6``), the name of its run lock: every spelling of one partition takes one lock.
    """

    run: StageFn
    code: tuple[str, ...]
    params: tuple[str, ...]
    outs: tuple[Out, ...]
    upstream: tuple[str, ...] = ()
    upstream_of: Callable[[Params, dict[str, Any]], tuple[str, ...]] | None = None
    data_files: Callable[[Params, Path, dict[str, Any]], list[Path]] | None = None
    partitions: Partitioning | None = None
    parse: Callable[[str], dict[str, Any]] | None = field(default=None, repr=False)
    canonical: Callable[[str], str] | None = field(default=None, repr=False)

    @property
    def asset(self) -> str:
        """The asset's name: the folder under ``assets/`` its outputs lie in."""
        return Path(self.outs[0].path).parts[1]

    def __call__(
        self, paths: ProjectPaths, params: Params, partition_key: str | None = None, **options: Any
    ) -> StageResult:
        """Run the stage on one partition, holding its lock (:mod:`marc_ops.registry.runlock`): a second run of
        the same partition fails at once with :class:`~marc_ops.registry.runlock.AssetBusyError`. ``options``
        go to the stage function as they are (the training stages' ``launcher``)."""
        fields: dict[str, Any] = {}
        if self.partitions is None:
            if partition_key is not None:
                raise UsageError(
                    f"stage {self.asset} is not partitioned; drop the partition {partition_key!r}"
                )
        else:
            if partition_key is None:
                raise UsageError(f"stage {self.asset} is partitioned: give a partition key (--partition)")
            assert self.parse is not None
            fields = self.parse(partition_key)
        lock_key = (
            self.canonical(partition_key) if self.canonical and partition_key is not None else partition_key
        )
        with running(paths.project_dir, self.asset, lock_key):
            return self.run(paths, params, **fields, **options)

    def reads(self, params: Params, partition_key: str | None) -> list[str]:
        """The assets one partition reads: ``"asset"`` (every partition of it) or ``"asset[key]"``."""
        parsed = self.parse(partition_key) if self.parse and partition_key is not None else {}
        return list(self.upstream) + (list(self.upstream_of(params, parsed)) if self.upstream_of else [])

    def fields(self, partition_key: str | None) -> dict[str, Any]:
        """The placeholders of the output paths for one partition (``tau`` as ``0.6``; benchmark, method)."""
        if partition_key is None:
            return {}
        assert self.parse is not None
        parsed = self.parse(partition_key)
        return {key: f"{value:g}" if isinstance(value, float) else value for key, value in parsed.items()}

    def code_version(self, repo_root: Path) -> str:
        """A hash of the declared code's ``.py`` files (paths and bytes): Dagster's code version of the asset,
        so editing a declared module marks the asset stale in the UI as it makes the DVC stage changed."""
        digest = hashlib.sha256()
        for rel in self.code:
            root = repo_root / rel
            files = sorted(root.rglob("*.py")) if root.is_dir() else [root]
            for path in files:
                digest.update(path.relative_to(repo_root).as_posix().encode() + b"\0")
                digest.update(path.read_bytes())
        return digest.hexdigest()[:16]
