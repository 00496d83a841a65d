"""Run a marc_ops stage inside an asset and turn its result into Dagster metadata."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from marc_ops.registry import STAGES
from marc_ops.stage import StageResult
from marc_ops.tables import markdown_table
from pipelines.defs.resources import MarcResource


def to_metadata(result: StageResult) -> dict[str, dg.MetadataValue]:
    metadata: dict[str, dg.MetadataValue] = {}
    for key, value in result.metadata.items():
        if value is None:
            metadata[key] = dg.MetadataValue.null()
        elif isinstance(value, bool):
            metadata[key] = dg.MetadataValue.bool(value)
        elif isinstance(value, int):
            metadata[key] = dg.MetadataValue.int(value)
        elif isinstance(value, float):
            metadata[key] = dg.MetadataValue.float(value)
        else:
            metadata[key] = dg.MetadataValue.text(str(value))
    for key, path in result.outputs.items():
        metadata[f"path_{key}"] = dg.MetadataValue.path(str(Path(path)))
    for key, table in result.tables.items():
        metadata[key] = dg.MetadataValue.md(markdown_table(table))
    return metadata


def materialize_stage(
    name: str, context: dg.AssetExecutionContext, marc: MarcResource
) -> dg.MaterializeResult:
    """Call the one implementation of stage ``name`` (the same one ``marc stage`` runs under DVC)."""
    paths = marc.paths()
    params = paths.params()
    context.log.info(f"stage {name}: profile {params.profile}, project {paths.project_dir}")
    # A multi-partition key renders as "synthetic|marc@0.6", what the stage registry parses.
    partition = str(context.partition_key) if context.has_partition_key else None
    result = STAGES[name](paths, params, partition)
    return dg.MaterializeResult(
        metadata={"profile": dg.MetadataValue.text(params.profile), **to_metadata(result)}
    )
