"""Retraining that runs itself: when what an asset partition reads has new data, it runs again.

Mechanism: Dagster's declarative automation. Every asset that reads another carries an
:class:`~dagster.AutomationCondition` built from its stage's declaration (``marc_ops.registry``:
``Stage.reads`` per partition), and one :class:`~dagster.AutomationConditionSensorDefinition`,
``retraining_sensor`` (:mod:`pipelines.defs.sensors`), evaluates them; it is stopped by default.
Dagster's documentation recommends declarative automation over sensors and schedules with
backfills when what is automated is assets (its asset sensors page: "for situations where you are
automating execution of assets only, we recommend using declarative automation instead"): the
conditions follow the asset graph, a request spanning several partitionings is launched as one
backfill in dependency order, and the UI shows for every asset partition why it was or was not
requested on each tick.

An asset partition is requested when

- something it reads **changed**: a materialization with another data version (the DVC hash of the
  outputs, :mod:`pipelines.defs.metadata`) than before, made by a run that did not also materialize
  this asset; or something it reads is requested on the same tick and runs in the same run (the same
  partitioning). New training data therefore requests the unpartitioned lineage below it at once;
  ``cgrpo_checkpoint`` in every τ once the teacher's new rewards exist; the ``benchmark_scores``
  partitions whose method reads what changed (its checkpoint, the VMR selection, SCORE's policy) once
  that exists; then the report. A materialization with the same data version (an unchanged rerun)
  requests nothing;
- nothing it reads is missing (and not requested) or in progress, and it is not in progress itself.

Which partition reads what comes from the registry, so a change of ``cgrpo_checkpoint[0.6]``
requests the ``marc@0.6`` partitions of ``benchmark_scores`` and not ``baseline-64f``. Dagster's
own dependency conditions work per asset (every ``benchmark_scores`` partition depends on every τ),
so the partition filter is a small custom condition, :class:`InPartitions`; custom conditions run in
the code location (``use_user_code_server=True`` on the sensor, beta in Dagster 1.13; custom
conditions themselves are a preview feature).

When: by default as soon as the data changed. With ``MARC_RETRAIN_CRON`` set (a cron string in
UTC, e.g. ``0 4 * * 1`` for Mondays 04:00), a retraining starts only at that schedule's ticks, and
still only for the partitions whose reads changed since they last ran: a tick after a week without
new data requests nothing. What a retraining started by a tick makes stale follows without waiting
for the next tick.

New training data reaches the lineage through the data assets: ``annotation_change_sensor`` runs
``data_job`` when the annotation files change, ``nightly_data_schedule`` every night; a manifest or
subset materialized by hand counts the same.
"""

from __future__ import annotations

import functools
import operator
import os
from collections.abc import Iterable, Sequence

import dagster as dg

from marc_ops.config import Params
from marc_ops.registry import STAGES, partition_keys
from pipelines.defs.resources import active_params

RETRAIN_CRON_VARIABLE = "MARC_RETRAIN_CRON"


def retrain_cron() -> str | None:
    """The retraining schedule of this deployment: ``MARC_RETRAIN_CRON`` (None, the default: on every change)."""
    return os.environ.get(RETRAIN_CRON_VARIABLE) or None


class InPartitions(dg.AutomationCondition):
    """True for the given partitions of the asset it is evaluated on.

    Restricts a dependency condition to the partitions that read that dependency (see the module
    docstring): Dagster's built-in conditions have no operand for a fixed set of partitions.
    """

    def __init__(self, partition_keys: Iterable[str]):
        self.partition_keys = frozenset(partition_keys)

    @property
    def name(self) -> str:
        return "in_partitions"

    @property
    def description(self) -> str:
        return f"partition in {', '.join(sorted(self.partition_keys))}"

    @property
    def requires_cursor(self) -> bool:
        return False

    def evaluate(self, context: dg.AutomationContext) -> dg.AutomationResult:
        return dg.AutomationResult(
            context, context.candidate_subset.compute_intersection_with_partition_keys(self.partition_keys)
        )


def _reads(name: str, params: Params) -> dict[str | None, list[str]]:
    """Each partition key of stage ``name`` (None: unpartitioned) → what it reads: ``asset`` or ``asset[key]``."""
    stage = STAGES[name]
    return {key: list(dict.fromkeys(stage.reads(params, key))) for key in partition_keys(name, params)}


def over_reads(name: str, params: Params, operand: dg.AutomationCondition) -> dg.AutomationCondition:
    """True for the partitions of asset ``name`` that read something for which ``operand`` is true.

    The assets every partition reads whole are one ``any_deps_match``; each other read (an asset only some
    partitions read, or one partition of a partitioned asset) is its own term, limited to its readers.
    """
    reads = _reads(name, params)
    everywhere = set.intersection(*(set(refs) for refs in reads.values()))
    shared = sorted(ref for ref in everywhere if "[" not in ref)
    terms: list[dg.AutomationCondition] = []
    if shared:
        terms.append(dg.AutomationCondition.any_deps_match(operand).allow(dg.AssetSelection.assets(*shared)))
    for ref in dict.fromkeys(ref for refs in reads.values() for ref in refs if ref not in shared):
        asset, _, upstream_key = ref.partition("[")
        on_upstream = operand & InPartitions([upstream_key.rstrip("]")]) if upstream_key else operand
        term = dg.AutomationCondition.asset_matches(asset, on_upstream)
        readers = [key for key, refs in reads.items() if ref in refs]
        terms.append(term & InPartitions(readers) if readers != list(reads) else term)
    return functools.reduce(operator.or_, terms)


def _changed() -> dg.AutomationCondition:
    """New data in a dependency: another data version, from a run that did not also run this asset; or a
    request on this tick (Dagster counts it only for a dependency that runs in the same run)."""
    return (
        dg.AutomationCondition.data_version_changed() & ~dg.AutomationCondition.executed_with_root_target()
    ).with_label("new_data_version") | dg.AutomationCondition.will_be_requested()


def retraining_condition(name: str, params: Params, cron: str | None = None) -> dg.AutomationCondition:
    """When asset ``name`` runs again: what it reads changed since it last ran (at a tick of ``cron``, if
    given), nothing it reads is missing or in progress, and it is not in progress."""
    changed = over_reads(name, params, _changed()).with_label("reads_new_data").since_last_handled()
    if cron is not None:
        # The tick starts a retraining; what that retraining changes flows on without waiting for the next one.
        tick = dg.AutomationCondition.cron_tick_passed(cron)
        retraining = dg.AutomationCondition.any_deps_match(
            dg.AutomationCondition.newly_requested().since(tick)
        ).with_label("reads_what_this_retraining_requested")
        changed = changed & (tick.since_last_handled() | retraining)
    missing = dg.AutomationCondition.missing() & ~dg.AutomationCondition.will_be_requested()
    return (
        changed
        & ~over_reads(name, params, missing).with_label("reads_missing_data")
        & ~over_reads(name, params, dg.AutomationCondition.in_progress()).with_label("reads_data_in_progress")
        & ~dg.AutomationCondition.in_progress()
    ).with_label("retrain_on_new_data" if cron is None else f"retrain_on_new_data_at({cron})")


def retrained_assets(params: Params) -> list[str]:
    """The assets that read another: every asset but the source files."""
    return [name for name in STAGES if any(_reads(name, params).values())]


def with_retraining(
    assets: Sequence[dg.AssetsDefinition], cron: str | None = None
) -> list[dg.AssetsDefinition]:
    """``assets`` with their retraining conditions (the active profile's reads)."""
    params = active_params()
    retrained = set(retrained_assets(params))

    def condition(spec: dg.AssetSpec) -> dg.AssetSpec:
        name = spec.key.to_user_string()
        if name not in retrained:
            return spec
        return spec.replace_attributes(automation_condition=retraining_condition(name, params, cron))

    return [asset.map_asset_specs(condition) for asset in assets]
