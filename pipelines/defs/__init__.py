"""Assets, resources, jobs, schedules and sensors of the `pipelines` code location."""

import dagster as dg


def build_definitions() -> dg.Definitions:
    from pipelines.defs import assets, jobs, resources, schedules, sensors

    return dg.Definitions(
        assets=dg.load_assets_from_package_module(assets),
        resources=resources.build_resources(),
        jobs=jobs.JOBS,
        schedules=schedules.SCHEDULES,
        sensors=sensors.SENSORS,
    )
