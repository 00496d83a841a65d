"""The Dagster code location loads and holds the lineage the design names."""

import shutil

import dagster as dg
import yaml

from marc_ops.checks import ASSET_CHECKS
from marc_ops.config.methods import resolve_method
from marc_ops.config.tasks import TASKS
from marc_ops.registry import STAGES, benchmark_method_partition, partition_keys, tau_partition
from marc_ops.registry.dvcfile import dvc_key
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


def test_partition_keys_are_the_profiles_and_dvcs():
    """τ from the profile's train.taus, benchmark × method from its eval section: a key Dagster offers is one
    the stage parses and resolves, and each is one DVC stage of dvc.yaml."""
    params = MarcResource(project_dir=str(REPO_ROOT)).params()
    graph = defs.resolve_asset_graph()
    taus = graph.get(dg.AssetKey("cgrpo_checkpoint")).partitions_def.get_partition_keys()
    assert taus == [f"{tau:g}" for tau in params.train.taus]
    assert [tau_partition(key)["tau"] for key in taus] == list(params.train.taus)
    scores = graph.get(dg.AssetKey("benchmark_scores")).partitions_def
    dims = {dim.name: dim.partitions_def.get_partition_keys() for dim in scores.partitions_defs}
    assert dims["benchmark"] == [name for name in TASKS if name in params.eval.benchmarks]
    assert dims["method"] == list(params.eval.methods)
    for method in dims["method"]:
        assert resolve_method(method).name == method
    key = dg.MultiPartitionKey({"benchmark": "synthetic", "method": "marc@0.6"})
    assert benchmark_method_partition(str(key)) == {"benchmark": "synthetic", "method": "marc@0.6"}
    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    assert set(stages["benchmark_scores"]["foreach"]) == {
        dvc_key(f"{b}|{m}") for b in dims["benchmark"] for m in dims["method"]
    }
    assert [str(k) for k in stages["cgrpo_checkpoint"]["foreach"]] == taus


def test_asset_deps_are_the_declared_upstream():
    """Each asset's parents in Dagster are the assets its stage declares it reads (marc_ops.registry)."""
    params = MarcResource(project_dir=str(REPO_ROOT)).params()
    graph = defs.resolve_asset_graph()
    for name, stage in STAGES.items():
        declared = {
            ref.split("[")[0] for key in partition_keys(name, params) for ref in stage.reads(params, key)
        }
        parents = {p.to_user_string() for p in graph.get(dg.AssetKey(name)).parent_keys}
        assert parents == declared, name


def test_code_version_follows_the_declared_code(tmp_path):
    """Editing a declared module changes the asset's code version (Dagster shows it stale); other code does not."""
    stage = STAGES["cgrpo_checkpoint"]
    for rel in stage.code:
        source = REPO_ROOT / rel
        target = tmp_path / rel
        if source.is_dir():
            shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    before = stage.code_version(tmp_path)
    assert before == stage.code_version(REPO_ROOT)
    (tmp_path / "marc_ops/eval").mkdir(parents=True, exist_ok=True)
    (tmp_path / "marc_ops/eval/stages.py").write_text("# not cgrpo's code\n")
    assert stage.code_version(tmp_path) == before
    merge = tmp_path / "marc_ops/compression/memory_aware.py"
    merge.write_text(merge.read_text() + "\n# edited\n")
    assert stage.code_version(tmp_path) != before


def test_every_declared_check_is_an_asset_check_of_its_asset():
    """The checks marc_ops.checks declares are the asset checks Dagster runs: blocking where declared, and
    partitioned as their asset is."""
    graph = defs.resolve_asset_graph()
    declared = {
        dg.AssetCheckKey(dg.AssetKey(asset), check.name): check
        for asset, checks in ASSET_CHECKS.items()
        for check in checks
    }
    assert set(graph.asset_check_keys) == set(declared)
    for key, check in declared.items():
        node = graph.get(key)
        assert node.blocking == check.blocking, key
        assert node.partitions_def == graph.get(key.asset_key).partitions_def, key
    assert not declared[dg.AssetCheckKey(dg.AssetKey("videor1_manifest"), "quarantine_share")].blocking


def test_schedules_and_sensors_start_stopped():
    """A deployment switches automation on in the UI; nothing runs on its own until then."""
    repository = defs.get_repository_def()  # with any sensor Dagster adds by itself
    assert {s.default_status for s in repository.schedule_defs} == {dg.DefaultScheduleStatus.STOPPED}
    assert {s.default_status for s in repository.sensor_defs} == {dg.DefaultSensorStatus.STOPPED}
    assert {s.name for s in repository.sensor_defs} == {"annotation_change_sensor", "retraining_sensor"}
