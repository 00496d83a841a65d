"""Named selections of the asset graph. An asset job runs one partitioning: the unpartitioned lineage,
C-GRPO per τ, or benchmark × method."""

import dagster as dg

_partitioned = dg.AssetSelection.assets("cgrpo_checkpoint", "benchmark_scores")

data_job = dg.define_asset_job("data_job", selection=dg.AssetSelection.groups("data"))
vmr_job = dg.define_asset_job("vmr_job", selection=dg.AssetSelection.groups("vmr"))
lineage_job = dg.define_asset_job(
    "lineage_job", selection=dg.AssetSelection.all() - _partitioned - dg.AssetSelection.assets("report")
)
cgrpo_job = dg.define_asset_job("cgrpo_job", selection=dg.AssetSelection.assets("cgrpo_checkpoint"))
benchmark_job = dg.define_asset_job("benchmark_job", selection=dg.AssetSelection.assets("benchmark_scores"))
report_job = dg.define_asset_job("report_job", selection=dg.AssetSelection.assets("report"))

JOBS = [data_job, vmr_job, lineage_job, cgrpo_job, benchmark_job, report_job]
