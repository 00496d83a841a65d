"""Assets, asset checks, resources, jobs, schedules and sensors of the `pipelines` code location."""

import dagster as dg


def build_definitions(retrain_cron: str | None = None) -> dg.Definitions:
    """The code location; ``retrain_cron`` times retraining (default: ``MARC_RETRAIN_CRON``, see
    :mod:`pipelines.defs.retraining`)."""
    from pipelines.defs import assets, checks, jobs, resources, retraining, schedules, sensors

    return dg.Definitions(
        assets=retraining.with_retraining(
            dg.load_assets_from_package_module(assets), cron=retrain_cron or retraining.retrain_cron()
        ),
        asset_checks=checks.ASSET_CHECK_DEFS,
        resources=resources.build_resources(),
        jobs=jobs.JOBS,
        schedules=schedules.SCHEDULES,
        sensors=sensors.SENSORS,
    )
