"""Named selections of the asset graph. An asset job runs one partitioning: the unpartitioned lineage,
C-GRPO per τ, or benchmark × method."""

import dagster as dg

_partitioned = dg.AssetSelection.assets("cgrpo_checkpoint", "benchmark_scores")

data_job = dg.define_asset_job("data_job", selection=dg.AssetSelection.groups("data"))
vmr_job = dg.define_asset_job("vmr_job", selection=dg.AssetSelection.groups("vmr"))
lineage_job = dg.define_asset_job(
    "lineage_job", selection=dg.AssetSelection.all() - _partitioned - dg.AssetSelection.assets("report")
)
# The lineage in parallel branches (what `make demo` runs side by side): the base model and its SFT
# warm-up need only the source; the teacher needs both branches; the efficiency profile only the base model.
model_job = dg.define_asset_job(
    "model_job", selection=dg.AssetSelection.assets("base_model", "sft_checkpoint")
)
teacher_job = dg.define_asset_job("teacher_job", selection=dg.AssetSelection.assets("teacher_rewards"))
efficiency_job = dg.define_asset_job(
    "efficiency_job", selection=dg.AssetSelection.assets("efficiency_profile")
)
cgrpo_job = dg.define_asset_job("cgrpo_job", selection=dg.AssetSelection.assets("cgrpo_checkpoint"))
score_job = dg.define_asset_job("score_job", selection=dg.AssetSelection.groups("score"))
benchmark_job = dg.define_asset_job("benchmark_job", selection=dg.AssetSelection.assets("benchmark_scores"))
report_job = dg.define_asset_job("report_job", selection=dg.AssetSelection.assets("report"))

JOBS = [
    data_job,
    vmr_job,
    model_job,
    teacher_job,
    score_job,
    efficiency_job,
    lineage_job,
    cgrpo_job,
    benchmark_job,
    report_job,
]
