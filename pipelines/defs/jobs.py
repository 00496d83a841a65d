"""Named selections of the asset graph."""

import dagster as dg

data_job = dg.define_asset_job("data_job", selection=dg.AssetSelection.groups("data"))
everything_job = dg.define_asset_job("everything_job", selection=dg.AssetSelection.all())

JOBS = [data_job, everything_job]
