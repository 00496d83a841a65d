"""The Dagster code location loads and holds the lineage the design names."""

import dagster as dg

from marc_ops.config.methods import METHODS, resolve_method
from marc_ops.config.tasks import TASKS
from marc_ops.registry import STAGES, benchmark_method_partition, tau_partition
from pipelines.definitions import defs
from pipelines.defs.resources import REPO_ROOT, MarcResource


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
    assert {job.name for job in defs.jobs} >= {
        "data_job",
        "vmr_job",
        "lineage_job",
        "cgrpo_job",
        "benchmark_job",
    }
    assert all(s.name.endswith("_schedule") for s in defs.schedules)
    assert all(s.name.endswith("_sensor") for s in defs.sensors)


def test_partition_keys_are_the_librarys_declarations():
    """τ from the profile, benchmarks and methods from the declared registries: a key Dagster offers is
    one the stage parses and resolves, and nothing the profile evaluates is missing."""
    params = MarcResource(project_dir=str(REPO_ROOT)).params()
    graph = defs.resolve_asset_graph()
    taus = graph.get(dg.AssetKey("cgrpo_checkpoint")).partitions_def.get_partition_keys()
    assert taus == [f"{tau:g}" for tau in params.train.taus]
    assert [tau_partition(key)["tau"] for key in taus] == list(params.train.taus)
    scores = graph.get(dg.AssetKey("benchmark_scores")).partitions_def
    dims = {dim.name: dim.partitions_def.get_partition_keys() for dim in scores.partitions_defs}
    assert dims["benchmark"] == list(TASKS)
    assert dims["method"][: len(METHODS)] == list(METHODS)
    assert set(params.eval.methods) <= set(dims["method"]) and set(params.eval.benchmarks) <= set(
        dims["benchmark"]
    )
    for method in dims["method"]:
        assert resolve_method(method).name == method
    key = dg.MultiPartitionKey({"benchmark": "synthetic", "method": "marc@0.6"})
    assert benchmark_method_partition(str(key)) == {"benchmark": "synthetic", "method": "marc@0.6"}
