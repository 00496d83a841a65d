"""The real fan-out axes of the lineage, built from the library's own declarations.

τ comes from the active profile's ``train.taus``, benchmarks and methods from its ``eval`` section
(``marc_ops.registry``), the same partitions ``dvc.yaml`` has a stage for.
"""

import dagster as dg

from marc_ops.registry import benchmark_keys, method_keys, tau_keys
from pipelines.defs.resources import active_params

_params = active_params()

# C-GRPO's retention threshold τ (paper Table 3).
tau_partitions = dg.StaticPartitionsDefinition(tau_keys(_params))

# Benchmark × method (paper Tables 1-3).
benchmark_partitions = dg.StaticPartitionsDefinition(benchmark_keys(_params))
method_partitions = dg.StaticPartitionsDefinition(method_keys(_params))
benchmark_method_partitions = dg.MultiPartitionsDefinition(
    {"benchmark": benchmark_partitions, "method": method_partitions}
)
