"""The real fan-out axes of the lineage."""

import dagster as dg

# C-GRPO's retention threshold τ (paper Table 3). A profile's `train.taus` must list these keys;
# the stage checks the key against the active profile.
tau_partitions = dg.StaticPartitionsDefinition(["0.4", "0.6", "0.8"])
