"""Asset checks: each check ``marc_ops.checks`` declares for an asset, run by Dagster with that asset.

A job that materializes an asset runs its checks after it (Dagster's default), so a run's page and the
asset's "Checks" tab show each verdict with its figures and the offending rows. A blocking check that
fails stops the assets downstream of its asset in the same run; ``quarantine_share`` only warns. The
checks of a partitioned asset are partitioned alike, one verdict per τ or per benchmark × method.
"""

import dagster as dg

from marc_ops.checks import ASSET_CHECKS, AssetCheck, CheckOutcome
from marc_ops.registry import STAGES
from marc_ops.tables import markdown_table
from pipelines.defs.metadata import metadata_value
from pipelines.defs.partitions import benchmark_method_partitions, tau_partitions
from pipelines.defs.resources import MarcResource

PARTITIONS = {None: None, "tau": tau_partitions, "benchmark_method": benchmark_method_partitions}


def check_metadata(outcome: CheckOutcome) -> dict[str, dg.MetadataValue]:
    """The figures behind a verdict, and its evidence (the offending rows, or the table it judged) as Markdown."""
    metadata = {key: metadata_value(value) for key, value in outcome.facts.items()}
    if outcome.evidence is not None:
        metadata["evidence"] = dg.MetadataValue.md(markdown_table(outcome.evidence))
    return metadata


def check_result(key: dg.AssetCheckKey, check: AssetCheck, outcome: CheckOutcome) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=key.asset_key,
        check_name=key.name,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN if check.warn else dg.AssetCheckSeverity.ERROR,
        description=outcome.summary,
        metadata=check_metadata(outcome),
    )


def asset_checks(asset: str) -> dg.AssetChecksDefinition:
    """The checks of ``asset`` (partitioned as the asset is), run in one step: under the multiprocess
    executor each step is a process that loads the code location, so one per asset, not one per check.
    A check can still run alone (from the asset's Checks tab)."""
    declared = {check.name: check for check in ASSET_CHECKS[asset]}
    specs = [
        dg.AssetCheckSpec(
            check.name,
            asset=asset,
            description=check.description,
            blocking=check.blocking,
            partitions_def=PARTITIONS[STAGES[asset].partitions],
        )
        for check in declared.values()
    ]

    @dg.multi_asset_check(name=f"{asset}_checks", specs=specs, can_subset=True)
    def run(context: dg.AssetCheckExecutionContext, marc: MarcResource):
        paths = marc.paths()
        params = paths.params()
        partition = str(context.partition_key) if context.has_partition_key else None
        for key in sorted(context.selected_asset_check_keys, key=lambda key: list(declared).index(key.name)):
            check = declared[key.name]
            yield check_result(key, check, check.run(paths, params, partition))

    return run


ASSET_CHECK_DEFS = [asset_checks(asset) for asset in ASSET_CHECKS]
