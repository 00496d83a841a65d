"""Assets, asset checks, resources, jobs, schedules and sensors of the `pipelines` code location."""

import dagster as dg


def build_definitions() -> dg.Definitions:
    from pipelines.defs import assets, checks, jobs, resources, schedules, sensors

    return dg.Definitions(
        assets=dg.load_assets_from_package_module(assets),
        asset_checks=checks.ASSET_CHECK_DEFS,
        resources=resources.build_resources(),
        jobs=jobs.JOBS,
        schedules=schedules.SCHEDULES,
        sensors=sensors.SENSORS,
    )
