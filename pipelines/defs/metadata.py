"""Run a marc_ops stage inside an asset and turn its result into Dagster metadata."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from marc_ops.registry import STAGES, partition_keys
from marc_ops.registry.lock import record_stage
from marc_ops.registry.runlock import running
from marc_ops.stage import StageResult
from marc_ops.tables import markdown_table
from pipelines.defs.launch import PipesLauncher
from pipelines.defs.resources import REPO_ROOT, MarcResource, active_params

# The active profile when the code location loads: what the asset definitions (deps, tags) follow.
_PARAMS = active_params()


def declared_deps(name: str) -> list[dg.AssetDep]:
    """The assets stage ``name`` declares it reads (``marc_ops.registry``), over every partition of the
    active profile; a partitioned upstream of an asset partitioned otherwise is read whole."""
    stage = STAGES[name]
    refs = [ref for key in partition_keys(name, _PARAMS) for ref in stage.reads(_PARAMS, key)]
    deps = []
    for asset in dict.fromkeys(ref.partition("[")[0] for ref in refs):
        upstream = STAGES[asset]
        whole = upstream.partitions is not None and upstream.partitions != stage.partitions
        deps.append(dg.AssetDep(asset, partition_mapping=dg.AllPartitionMapping() if whole else None))
    return deps


def code_version(name: str) -> str:
    """A hash of the code stage ``name`` declares: edit it and the asset shows as stale in the UI."""
    return STAGES[name].code_version(REPO_ROOT)


def metadata_value(value: object) -> dg.MetadataValue:
    """A fact as typed Dagster metadata: a scalar as its type, a dict or list as JSON, anything else as text."""
    if value is None:
        return dg.MetadataValue.null()
    if isinstance(value, bool):
        return dg.MetadataValue.bool(value)
    if isinstance(value, int):
        return dg.MetadataValue.int(value)
    if isinstance(value, float):
        return dg.MetadataValue.float(value)
    if isinstance(value, dict | list):
        return dg.MetadataValue.json(value)
    return dg.MetadataValue.text(str(value))


def to_metadata(result: StageResult) -> dict[str, dg.MetadataValue]:
    metadata = {key: metadata_value(value) for key, value in result.metadata.items()}
    for key, path in result.outputs.items():
        metadata[f"path_{key}"] = dg.MetadataValue.path(str(Path(path)))
    for key, table in result.tables.items():
        metadata[key] = dg.MetadataValue.md(markdown_table(table))
    return metadata


def materialize_stage(
    name: str, context: dg.AssetExecutionContext, marc: MarcResource, launcher: PipesLauncher | None = None
) -> dg.MaterializeResult:
    """Call the one implementation of stage ``name`` (the same one ``marc stage`` runs under DVC).

    A training stage gets ``launcher``: when the profile launches its trainer (``train.launch``), the
    trainer runs through Dagster Pipes, and the metadata it reported (world size, final metrics, checkpoint
    hashes) joins the stage's, the keys a stage training in its own process gives itself.
    """
    paths = marc.paths()
    params = paths.params()
    context.log.info(f"stage {name}: profile {params.profile}, project {paths.project_dir}")
    # A multi-partition key renders as "synthetic|marc@0.6", what the stage registry parses.
    partition = str(context.partition_key) if context.has_partition_key else None
    # The partition's lock spans the stage and its dvc.lock record: no second run rewrites the outputs
    # while DVC hashes them.
    options = {} if launcher is None else {"launcher": launcher}
    with running(paths.project_dir, name, partition):
        result = STAGES[name](paths, params, partition, **options)
        # The same entry `dvc repro` would write: `dvc status` stays clean, and DVC's hash is the data version.
        recorded = record_stage(paths.project_dir, name, partition)
    reported = None if launcher is None else launcher.materialize_result()
    metadata = {
        "profile": dg.MetadataValue.text(params.profile),
        **(reported.metadata if reported is not None and reported.metadata else {}),
        **to_metadata(result),
    }
    if recorded is not None:
        metadata["dvc_stage"] = dg.MetadataValue.text(recorded.stage)
        metadata["dvc_hashes"] = dg.MetadataValue.json(recorded.hashes)
    return dg.MaterializeResult(
        metadata=metadata, data_version=None if recorded is None else dg.DataVersion(recorded.data_version)
    )
