"""The real fan-out axes of the lineage."""

import dagster as dg

# C-GRPO's retention threshold τ (paper Table 3). A profile's `train.taus` must list these keys;
# the stage checks the key against the active profile.
tau_partitions = dg.StaticPartitionsDefinition(["0.4", "0.6", "0.8"])

# Benchmark × method (paper Tables 1-3): the synthetic suite and the six benchmarks × every method.
benchmark_partitions = dg.StaticPartitionsDefinition(
    ["synthetic", "vsibench", "videommmu", "mmvu", "mvbench", "tempcompass", "videomme"]
)
method_partitions = dg.StaticPartitionsDefinition(
    ["baseline-64f", "baseline-16f", "vmr-64f", "marc@0.4", "marc@0.6", "marc@0.8", "sft-1f", "sft-vmr-1f"]
)
benchmark_method_partitions = dg.MultiPartitionsDefinition(
    {"benchmark": benchmark_partitions, "method": method_partitions}
)
