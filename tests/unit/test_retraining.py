"""Retraining runs itself: new data re-materializes exactly what it makes stale, tick by tick, as Dagster's own
evaluation of the automation conditions says (nothing is trained here: materializations are reported)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest
from tests_support import small_tiny_params, write_params

from marc_ops.registry import STAGES, partition_keys
from pipelines.defs import build_definitions
from pipelines.defs.jobs import data_job
from pipelines.defs.resources import REPO_ROOT, MarcResource
from pipelines.defs.retraining import retrained_assets
from pipelines.defs.sensors import annotation_change_sensor, retraining_sensor

PARAMS = MarcResource(project_dir=str(REPO_ROOT)).params()
WEEKLY = "0 4 * * 1"  # Mondays 04:00 UTC
TUESDAY_NOON = datetime(2026, 12, 1, 12, tzinfo=UTC)
DATA_VERSION_TAG = "dagster/data_version"  # where Dagster keeps a materialization's data version


def readers(asset: str, ref: str) -> set[str | None]:
    """The partitions of ``asset`` whose declared reads include ``ref`` (``asset`` or ``asset[key]``)."""
    return {key for key in partition_keys(asset, PARAMS) if ref in STAGES[asset].reads(PARAMS, key)}


class Lineage:
    """An instance in which every asset partition of the profile was materialized once, and the ticks of the
    retraining conditions evaluated on it, an hour apart unless said otherwise."""

    def __init__(self, defs: dg.Definitions) -> None:
        self.defs, self.instance = defs, dg.DagsterInstance.ephemeral()
        self.now, self.cursor, self.versions = TUESDAY_NOON, None, 0
        for name in STAGES:
            for key in partition_keys(name, PARAMS):
                self.materialize(name, key)

    def materialize(self, asset: str, partition: str | None = None, *, version: str | None = None) -> None:
        """A materialization of ``asset`` with a new data version (or ``version``), as a finished run reports it."""
        self.versions += 1
        self.instance.report_runless_asset_event(
            dg.AssetMaterialization(
                asset_key=asset,
                partition=partition,
                tags={DATA_VERSION_TAG: version or f"v{self.versions}"},
            )
        )

    def tick(self, hours: float = 1) -> dict[str, set[str | None]]:
        """One evaluation of the conditions: what it requests, by asset."""
        self.now += timedelta(hours=hours)
        result = dg.evaluate_automation_conditions(
            defs=self.defs, instance=self.instance, cursor=self.cursor, evaluation_time=self.now
        )
        self.cursor = result.cursor
        requested = {name: result.get_requested_partitions(dg.AssetKey(name)) for name in STAGES}
        return {
            name: {None if k is None else str(k) for k in keys} for name, keys in requested.items() if keys
        }

    def run(self, requested: dict[str, set[str | None]]) -> None:
        """What a tick requested, materialized with new data."""
        for asset, keys in requested.items():
            for key in keys:
                self.materialize(asset, key)

    def settle(self) -> None:
        """Run what the ticks request until they request nothing."""
        for _ in range(5):
            requested = self.tick()
            if not requested:
                return
            self.run(requested)
        raise AssertionError("the ticks keep requesting runs")


@pytest.fixture(scope="module")
def on_change() -> dg.Definitions:
    return build_definitions()


@pytest.fixture(scope="module")
def weekly() -> dg.Definitions:
    return build_definitions(retrain_cron=WEEKLY)


def test_new_training_data_retrains_every_tau_then_the_pairs_that_read_them_then_the_report(on_change):
    lineage = Lineage(on_change)
    assert lineage.tick() == {} and lineage.tick() == {}

    lineage.materialize("videor1_manifest")
    # The unpartitioned lineage downstream of the manifest, in one run; the report reads the VMR selection.
    first = lineage.tick()
    unpartitioned = {"train_subset", "shot_segments", "clip_embeddings", "vmr_selection", "teacher_rewards"}
    assert first == {name: {None} for name in [*unpartitioned, "report"]}
    # A τ partition runs once the teacher's new rewards exist; with it every pair that reads the new VMR
    # selection or a C-GRPO checkpoint.
    lineage.run(first)
    second = lineage.tick()
    pairs = readers("benchmark_scores", "vmr_selection").union(
        *(
            readers("benchmark_scores", f"cgrpo_checkpoint[{tau}]")
            for tau in partition_keys("cgrpo_checkpoint", PARAMS)
        )
    )
    assert second == {
        "cgrpo_checkpoint": set(partition_keys("cgrpo_checkpoint", PARAMS)),
        "benchmark_scores": pairs,
    }
    assert {"synthetic|baseline-64f", "synthetic|score@0.25"}.isdisjoint(pairs)
    lineage.run(second)
    assert lineage.tick() == {"report": {None}}
    lineage.run({"report": {None}})
    assert lineage.tick() == {}


def test_a_rerun_with_the_same_data_requests_nothing(on_change):
    lineage = Lineage(on_change)
    lineage.tick()
    lineage.materialize("train_subset", version="v-same")  # new data: its lineage runs again
    first = lineage.tick()
    assert "teacher_rewards" in first
    lineage.run(first)
    lineage.settle()
    lineage.materialize("train_subset", version="v-same")
    assert lineage.tick() == {}


def test_a_new_checkpoint_of_one_tau_reruns_only_the_pairs_that_read_it(on_change):
    lineage = Lineage(on_change)
    lineage.tick()
    lineage.materialize("cgrpo_checkpoint", "0.6")
    assert lineage.tick() == {
        "benchmark_scores": readers("benchmark_scores", "cgrpo_checkpoint[0.6]"),
        "report": {None},
    }
    assert readers("benchmark_scores", "cgrpo_checkpoint[0.6]") == {"synthetic|marc@0.6"}


def test_weekly_retraining_waits_for_its_tick_then_runs_the_stale_lineage_through(weekly):
    lineage = Lineage(weekly)
    lineage.tick()
    lineage.materialize("videor1_manifest")
    assert lineage.tick() == {}
    assert lineage.tick(hours=5 * 24 + 13) == {}  # Monday 03:00: not yet
    first = lineage.tick(hours=2)  # Monday 05:00
    assert set(first) == {
        "train_subset",
        "shot_segments",
        "clip_embeddings",
        "vmr_selection",
        "teacher_rewards",
        "report",
    }
    # What this retraining changes flows on the same day, without waiting for next Monday.
    lineage.run(first)
    second = lineage.tick()
    assert set(second) == {"cgrpo_checkpoint", "benchmark_scores"}
    lineage.run(second)
    assert lineage.tick() == {"report": {None}}
    lineage.run({"report": {None}})
    assert lineage.tick() == {}


def test_weekly_retraining_requests_nothing_when_nothing_changed(weekly):
    lineage = Lineage(weekly)
    assert lineage.tick() == {}
    for _ in range(3):  # three Mondays 04:00 pass
        assert lineage.tick(hours=7 * 24) == {}


def test_retraining_covers_every_asset_that_reads_another(on_change):
    graph = on_change.resolve_asset_graph()
    targeted = {key.to_user_string() for key in retraining_sensor.asset_selection.resolve(graph)}
    assert targeted == set(retrained_assets(PARAMS)) == set(STAGES) - {"videor1_source"}
    conditioned = {
        key.to_user_string() for key in graph.get_all_asset_keys() if graph.get(key).automation_condition
    }
    assert conditioned == targeted


def test_the_retraining_sensor_requests_the_stale_partitions_as_one_backfill(on_change):
    """The sensor a deployment switches on: evaluated in the code location, one backfill per tick."""
    lineage = Lineage(on_change)
    sensor, repository = on_change.get_sensor_def("retraining_sensor"), on_change.get_repository_def()
    first = sensor.evaluate_tick(
        dg.build_sensor_context(instance=lineage.instance, repository_def=repository)
    )
    assert first.run_requests == []
    lineage.materialize("teacher_rewards")
    context = dg.build_sensor_context(
        instance=lineage.instance, repository_def=repository, cursor=first.cursor
    )
    (backfill,) = sensor.evaluate_tick(context).run_requests
    assert backfill.requires_backfill_daemon()
    requested = {
        (p.asset_key.to_user_string(), p.partition_key)
        for p in backfill.asset_graph_subset.iterate_asset_partitions()
    }
    assert requested == {("cgrpo_checkpoint", tau) for tau in partition_keys("cgrpo_checkpoint", PARAMS)}


def test_new_annotation_files_request_a_data_run(tmp_path: Path):
    """The first step of retraining: the annotation sensor runs data_job when the files change."""
    write_params(tmp_path, small_tiny_params())
    annotations = tmp_path / "assets/videor1_source/corpus/Video-R1-260k.json"
    annotations.parent.mkdir(parents=True)
    annotations.write_text("[]")
    marc = MarcResource(project_dir=str(tmp_path))
    first = annotation_change_sensor(dg.build_sensor_context(resources={"marc": marc}))
    assert isinstance(first, dg.RunRequest) and annotation_change_sensor.job_name == data_job.name
    unchanged = dg.build_sensor_context(cursor=first.run_key, resources={"marc": marc})
    assert isinstance(annotation_change_sensor(unchanged), dg.SkipReason)
    annotations.write_text("[{}]")
    changed = annotation_change_sensor(
        dg.build_sensor_context(cursor=first.run_key, resources={"marc": marc})
    )
    assert isinstance(changed, dg.RunRequest) and changed.run_key != first.run_key
