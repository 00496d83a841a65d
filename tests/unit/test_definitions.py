"""The Dagster code location loads and holds the lineage the design names."""

import dagster as dg

from marc_ops.registry import STAGES
from pipelines.definitions import defs


def test_definitions_load_and_validate():
    dg.Definitions.validate_loadable(defs)


def test_every_stage_is_an_asset_and_every_asset_a_stage():
    graph = defs.resolve_asset_graph()
    names = {key.to_user_string() for key in graph.get_all_asset_keys()}
    assert names == set(STAGES)


def test_data_lineage():
    graph = defs.resolve_asset_graph()
    parents = {
        key.to_user_string(): {p.to_user_string() for p in graph.get(key).parent_keys}
        for key in graph.get_all_asset_keys()
    }
    assert parents["videor1_source"] == set()
    assert parents["videor1_manifest"] == {"videor1_source"}
    assert parents["train_subset"] == {"videor1_manifest"}


def test_jobs_schedules_sensors_are_named_by_convention():
    assert {job.name for job in defs.jobs} >= {"data_job", "vmr_job", "lineage_job", "cgrpo_job", "benchmark_job"}
    assert all(s.name.endswith("_schedule") for s in defs.schedules)
    assert all(s.name.endswith("_sensor") for s in defs.sensors)
