"""Sensors: re-run the data assets when the annotation files change."""

from __future__ import annotations

import hashlib

import dagster as dg

from pipelines.defs.jobs import data_job
from pipelines.defs.resources import MarcResource


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


SENSORS = [annotation_change_sensor]
