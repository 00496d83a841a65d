"""Schedules. Off by default: turn them on in the UI of a long-running deployment.

Retraining on a schedule is not a schedule here: ``MARC_RETRAIN_CRON`` puts the cron in the retraining
conditions that ``retraining_sensor`` evaluates, so a tick retrains only what new data made stale
(:mod:`pipelines.defs.retraining`).
"""

import dagster as dg

from pipelines.defs.jobs import data_job

nightly_data_schedule = dg.ScheduleDefinition(
    name="nightly_data_schedule",
    job=data_job,
    cron_schedule="0 3 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)

SCHEDULES = [nightly_data_schedule]
