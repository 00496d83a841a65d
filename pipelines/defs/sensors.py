"""Sensors: re-run the data assets when the annotation files change; retrain what new data makes stale.

Both are stopped by default: turn them on in the UI (Automation) of a long-running deployment. With both
on, new annotation files run ``data_job``, and what its new data versions make stale (the VMR selection,
the teacher, every τ of C-GRPO, the benchmark × method pairs that read them, the report) runs after it
(:mod:`pipelines.defs.retraining`).
"""

from __future__ import annotations

import hashlib

import dagster as dg

from pipelines.defs.jobs import data_job
from pipelines.defs.resources import MarcResource, active_params
from pipelines.defs.retraining import retrained_assets


def annotation_fingerprint(marc: MarcResource) -> str:
    """Size and mtime of every annotation file of the active profile (cheap; no hashing of 200 MB)."""
    paths = marc.paths()
    params = paths.params()
    root = params.data.root(paths.project_dir)
    parts = [params.profile]
    for name in params.data.annotation_files:
        path = root / name
        parts.append(
            f"{name}:{path.stat().st_size}:{path.stat().st_mtime_ns}" if path.is_file() else f"{name}:absent"
        )
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


@dg.sensor(job=data_job, minimum_interval_seconds=300, default_status=dg.DefaultSensorStatus.STOPPED)
def annotation_change_sensor(context: dg.SensorEvaluationContext, marc: MarcResource):
    """Request a data run whenever the annotation files' fingerprint differs from the last one seen."""
    fingerprint = annotation_fingerprint(marc)
    if fingerprint == context.cursor:
        return dg.SkipReason("annotation files unchanged")
    context.update_cursor(fingerprint)
    return dg.RunRequest(run_key=fingerprint)


# Evaluated in the code location (use_user_code_server): the conditions filter partitions by what each
# reads, a condition of Python code (retraining.InPartitions).
retraining_sensor = dg.AutomationConditionSensorDefinition(
    "retraining_sensor",
    target=dg.AssetSelection.assets(*retrained_assets(active_params())),
    default_status=dg.DefaultSensorStatus.STOPPED,
    use_user_code_server=True,
    description="Re-materialize the asset partitions whose inputs have new data (MARC_RETRAIN_CRON: only at "
    "that schedule's ticks); see pipelines/defs/retraining.py.",
)

SENSORS = [annotation_change_sensor, retraining_sensor]
