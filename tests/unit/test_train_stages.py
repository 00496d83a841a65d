"""The training stages on a tiny project: teacher_rewards -> cgrpo_checkpoint[tau], and sft_checkpoint."""

from __future__ import annotations

import contextlib
import json
import math
import shutil
from pathlib import Path
from types import SimpleNamespace

import polars as pl
import pytest
import yaml
from safetensors.torch import load_file, save_file
from tests_support import REPO_ROOT, declared_check

from marc_ops.checks import ASSET_CHECKS
from marc_ops.config import DataConfig, ModelConfig, ProjectPaths
from marc_ops.config.train import (
    CGRPOTrainConfig,
    LaunchConfig,
    SFTTrainConfig,
    TeacherConfig,
    TrainLaunch,
    TrainParams,
)
from marc_ops.data import load_videor1
from marc_ops.io import write_json
from marc_ops.train.cgrpo import CGRPORun
from marc_ops.train.inputs import vmr_builder
from marc_ops.train.sft import SFTRun
from marc_ops.train.stages import cgrpo_checkpoint_stage, sft_checkpoint_stage, teacher_rewards_stage
from marc_ops.train.teacher import TABLE_FILE, TeacherRun
from marc_ops.train.teacher import main as teacher_main
from marc_ops.video import VideoConfig
from marc_ops.vmr.retrieval import RetrievedClip, plan_frames
from marc_ops.vmr.stages import SELECTION_SCHEMA

CPU = {"bf16": False, "gradient_checkpointing": False, "max_steps": 1, "save_steps": 1}

pytestmark = pytest.mark.usefixtures("one_thread")


def _project(root: Path, model: Path, corpus: Path) -> tuple[ProjectPaths, SimpleNamespace]:
    """A project whose train_subset and base_model assets exist, and the params the stages read."""
    paths = ProjectPaths(root)
    subset = load_videor1(corpus / "Video-R1-260k.json", corpus).rows
    subset = pl.concat(
        [subset.filter(pl.col("data_type") == t).head(n) for t, n in (("video", 2), ("image", 1))]
    )
    paths.asset("train_subset").mkdir(parents=True)
    subset.write_parquet(paths.asset("train_subset") / "train_subset.parquet")
    write_json(
        paths.asset("base_model") / "model.json", {"source": "tiny", "model_id": "", "path": str(model)}
    )
    _write_vmr_selection(paths, subset, VideoConfig(max_frames=8))
    # The fields of Params the training stages read (a full Params would also need the VMR sections).
    params = SimpleNamespace(
        data=DataConfig(
            source="synthetic",
            data_root=str(corpus),
            eval_dir=str(corpus / "eval"),
            train_size=3,
            cot_file="Video-R1-COT-165k.json",
        ),
        video=VideoConfig(max_frames=8),
        model=ModelConfig(dtype="float32", device="cpu", attn_implementation="sdpa"),
        train=TrainParams(
            taus=(0.6,),
            teacher=TeacherConfig(num_generations=2, max_completion_length=8),
            cgrpo=CGRPOTrainConfig(
                num_generations=4, per_device_train_batch_size=4, max_completion_length=8, **CPU
            ),
            sft=SFTTrainConfig(train_size=2, learning_rate=1e-3, **CPU),
        ),
    )
    return paths, params


@pytest.fixture()
def project(tiny_model: Path, train_corpus: Path, tmp_path: Path) -> tuple[ProjectPaths, SimpleNamespace]:
    return _project(tmp_path, tiny_model, train_corpus)


@pytest.fixture(scope="module")
def trained(
    tiny_model: Path, train_corpus: Path, tmp_path_factory: pytest.TempPathFactory, one_thread: None
) -> tuple[ProjectPaths, SimpleNamespace]:
    """A project with the teacher's rewards, a C-GRPO run (τ = 0.6) and an SFT run, made once."""
    paths, params = _project(tmp_path_factory.mktemp("trained"), tiny_model, train_corpus)
    teacher_rewards_stage(paths, params)
    cgrpo_checkpoint_stage(paths, params, tau=0.6)
    sft_checkpoint_stage(paths, params)
    return paths, params


@pytest.fixture()
def broken(
    trained: tuple[ProjectPaths, SimpleNamespace], tmp_path: Path
) -> tuple[ProjectPaths, SimpleNamespace]:
    """A copy of the trained project, to break."""
    paths, params = trained
    shutil.copytree(paths.project_dir, tmp_path, dirs_exist_ok=True)
    return ProjectPaths(tmp_path), params


def _write_vmr_selection(paths: ProjectPaths, rows: pl.DataFrame, video: VideoConfig) -> None:
    """A vmr_selection table that keeps each video's evidence shot plus shot 0 (a two-clip input)."""
    records = []
    for row in rows.iter_rows(named=True):
        record = {"problem_id": row["problem_id"], "split": "train", "data_type": row["data_type"]}
        if row["data_type"] == "video":
            spans = (
                [[0, 7], *row["evidence_spans"]] if row["evidence_spans"][0][0] > 7 else row["evidence_spans"]
            )
            clips = [
                RetrievedClip(i, first, last, first / 8, (last + 1) / 8, 1.0)
                for i, (first, last) in enumerate(spans)
            ]
            frames, clip_ids = plan_frames(clips, 8.0, video)
            record |= {"frame_indices": frames.tolist(), "frame_clip_ids": clip_ids.tolist()}
        records.append(record)
    schema = {
        k: SELECTION_SCHEMA[k]
        for k in ("problem_id", "split", "data_type", "frame_indices", "frame_clip_ids")
    }
    paths.asset("vmr_selection").mkdir(parents=True)
    pl.DataFrame(records, schema=schema).write_parquet(paths.asset("vmr_selection") / "selection.parquet")


def test_vmr_builder_gives_the_recorded_frames_and_clip_ids(
    project: tuple[ProjectPaths, SimpleNamespace],
) -> None:
    paths, params = project
    table = pl.read_parquet(paths.asset("vmr_selection") / "selection.parquet")
    rows = pl.read_parquet(paths.asset("train_subset") / "train_subset.parquet")
    build = vmr_builder(paths.asset("vmr_selection") / "selection.parquet", params.video)
    for row in rows.iter_rows(named=True):
        sample = build(row)
        if row["data_type"] == "image":
            assert sample.clip_ids is None
            continue
        plan = table.filter(pl.col("problem_id") == row["problem_id"]).row(0, named=True)
        assert sample.clip_ids.tolist() == plan["frame_clip_ids"]
        assert len(sample.frames) == len(plan["frame_indices"]) and len(sample.frames) % 2 == 0
        assert sample.frames.shape[1] % 28 == 0 and sample.frames.shape[2] % 28 == 0


def test_teacher_then_cgrpo_stage(project: tuple[ProjectPaths, SimpleNamespace]) -> None:
    paths, params = project
    teacher = teacher_rewards_stage(paths, params)
    assert teacher.metadata["video_samples"] == 2 and teacher.metadata["failed"] == 0

    result = cgrpo_checkpoint_stage(paths, params, tau=0.6)

    assert result.outputs["model"] == paths.asset("cgrpo_checkpoint") / "tau_0.6" / "model"
    assert (result.outputs["model"] / "model.safetensors").is_file()
    assert result.metadata["global_step"] == 1 and result.metadata["skipped_samples"] == 0
    assert "cgrpo/eta" in result.tables["steps"].columns
    # the recorded run reloads, for `accelerate launch -m marc_ops.train.cgrpo --config run.yaml`
    run = CGRPORun.model_validate(yaml.safe_load(result.outputs["run"].read_text()))
    assert run.cgrpo == params.train.cgrpo_for(0.6) and run.video == params.video
    assert run.attn_implementation == "sdpa"  # the profile's model.attn_implementation


def test_a_launched_teacher_stage_gives_the_in_process_records(
    project: tuple[ProjectPaths, SimpleNamespace], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """``train.launch.teacher`` with two processes: the stage writes run.yaml and hands the accelerate command to
    its launcher; here the launcher runs the entry point it names in this process (the slow tier launches it)."""
    paths, params = project
    in_process = ProjectPaths(tmp_path_factory.mktemp("in_process"))
    shutil.copytree(paths.project_dir, in_process.project_dir, dirs_exist_ok=True)
    expected = teacher_rewards_stage(in_process, params)
    (paths.project_dir / "configs/accelerate").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "configs/accelerate/cpu_2proc.yaml", paths.project_dir / "configs/accelerate")
    two = LaunchConfig(processes=2, accelerate_config=Path("configs/accelerate/cpu_2proc.yaml"))
    launched = SimpleNamespace(
        **{**vars(params), "train": params.train.model_copy(update={"launch": TrainLaunch(teacher=two)})}
    )
    commands: list[list[str]] = []

    def launcher(command: list[str], cwd: Path) -> None:
        commands.append(command)
        assert command[-4:] == ["-m", "marc_ops.train.teacher", "--config", "assets/teacher_rewards/run.yaml"]
        with contextlib.chdir(cwd):
            assert teacher_main(command[-2:]) == 0

    result = teacher_rewards_stage(paths, launched, launcher=launcher)

    assert len(commands) == 1 and result.metadata["processes"] == 2
    assert result.outputs["run"].is_file()
    run = TeacherRun.model_validate(yaml.safe_load(result.outputs["run"].read_text()))
    assert run.attn_implementation == "sdpa"  # the profile's model.attn_implementation
    assert result.outputs["records"].read_text() == expected.outputs["records"].read_text()
    assert pl.read_parquet(result.outputs["table"]).equals(pl.read_parquet(expected.outputs["table"]))


def test_teacher_and_cgrpo_start_from_the_sft_warm_up_when_init_is_sft(
    project: tuple[ProjectPaths, SimpleNamespace], tiny_model: Path
) -> None:
    paths, params = project
    params.train = params.train.model_copy(update={"init": "sft"})
    assert paths.initial_policy("base") == tiny_model
    with pytest.raises(FileNotFoundError, match="materialize the sft_checkpoint asset"):
        teacher_rewards_stage(paths, params)
    sft_checkpoint_stage(paths, params)
    warm = paths.asset("sft_checkpoint") / "model"
    assert paths.initial_policy(params.train.init) == warm
    teacher_rewards_stage(paths, params)
    result = cgrpo_checkpoint_stage(paths, params, tau=0.6)
    run = CGRPORun.model_validate(yaml.safe_load(result.outputs["run"].read_text()))
    assert run.model_path == "assets/sft_checkpoint/model"  # relative to the project, where a launch starts
    assert run.model_copy(update={"project_dir": paths.project_dir}).resolved().model_path == str(warm)
    records = [json.loads(line) for line in (paths.asset("teacher_rewards") / "teacher_rewards.jsonl").open()]
    assert {r["status"] for r in records} == {"ok"} and len(records) == 2


def test_sft_stage(project: tuple[ProjectPaths, SimpleNamespace]) -> None:
    paths, params = project
    result = sft_checkpoint_stage(paths, params)
    assert (result.outputs["model"] / "model.safetensors").is_file()
    assert result.metadata["rows"] == 2 and result.metadata["global_step"] == 1
    assert result.metadata["first_loss"] > 0
    text = result.outputs["run"].read_text()
    run = SFTRun.model_validate(yaml.safe_load(text))
    assert run.sft == params.train.sft and run.attn_implementation == "sdpa"
    # the run file and the rows it names hold no absolute path: another clone writes the same bytes
    assert str(paths.project_dir) not in text
    assert run.cot_rows == Path("assets/sft_checkpoint/sft_rows.parquet") and run.project_dir == Path(".")
    resolved = run.model_copy(update={"project_dir": paths.project_dir}).resolved()
    assert resolved.cot_rows == paths.asset("sft_checkpoint") / "sft_rows.parquet"
    assert all(Path(p).is_file() for p in resolved.rows(resolved.cot_rows)["media_path"])
    # the trainer's state keeps its losses and leaves the run's timings to TensorBoard
    logged = {
        key
        for entry in json.loads((paths.asset("sft_checkpoint") / "trainer_state.json").read_text())[
            "log_history"
        ]
        for key in entry
    }
    assert "loss" in logged and not [key for key in logged if key.endswith(("_runtime", "_per_second"))]
    assert json.loads((paths.asset("sft_checkpoint") / "skipped_samples.json").read_text()) == []


def test_changed_settings_start_over_instead_of_resuming(
    project: tuple[ProjectPaths, SimpleNamespace],
) -> None:
    paths, params = project
    sft_checkpoint_stage(paths, params)  # lr 1e-3, one step, checkpoint-1 left behind
    assert (paths.asset("sft_checkpoint") / "checkpoint-1").is_dir()
    sft = params.train.sft.model_copy(update={"learning_rate": 5e-4, "max_steps": 2, "save_steps": 2})
    params.train = params.train.model_copy(update={"sft": sft})

    result = sft_checkpoint_stage(paths, params)

    # resumed, step 1 would be the first run's (lr 1e-3); started over, both steps ran at 5e-4
    assert result.tables["steps"]["learning_rate"].to_list() == [5e-4, 5e-4]
    assert not (paths.asset("sft_checkpoint") / "checkpoint-1").exists()


# --- the checks of the training assets (marc_ops.checks), on the runs above -----------------------------

TRAINED = [("teacher_rewards", None), ("sft_checkpoint", None), ("cgrpo_checkpoint", "0.6")]


def test_checks_pass_on_the_trained_runs(trained: tuple[ProjectPaths, SimpleNamespace]) -> None:
    paths, params = trained
    outcomes = {
        (asset, check.name): check.run(paths, params, partition)
        for asset, partition in TRAINED
        for check in ASSET_CHECKS[asset]
    }
    assert {key: o.summary for key, o in outcomes.items() if not o.passed} == {}
    assert outcomes[("teacher_rewards", "one_row_per_sample")].facts == {
        "video_samples": 2,
        "rows": 2,
        "failed": 0,
        "samples_with_problems": 0,
    }
    for asset in ("sft_checkpoint", "cgrpo_checkpoint"):
        formats = outcomes[(asset, "weights_are_safetensors")]
        # the final model and checkpoint-1; checkpoint-1's optimizer.pt etc. are listed, not weights
        assert formats.facts["safetensors_files"] == 2 and formats.facts["pickled_weight_files"] == 0
        assert "trainer resume state" in formats.evidence["kind"].to_list()
        assert outcomes[(asset, "weights_load")].facts["tensors"] > 0
        loss = outcomes[(asset, "training_loss_finite")].facts
        assert loss["steps_logged"] == 1 and math.isfinite(loss["last_loss"])


def test_teacher_check_fails_on_a_repeated_and_a_missing_sample(
    broken: tuple[ProjectPaths, SimpleNamespace],
) -> None:
    paths, params = broken
    table_file = paths.asset("teacher_rewards") / TABLE_FILE
    table = pl.read_parquet(table_file)
    first, second = table["problem_id"].to_list()
    pl.concat([table.head(1), table.head(1)]).write_parquet(table_file)  # first twice, second gone
    outcome = declared_check("teacher_rewards", "one_row_per_sample").run(paths, params, None)
    assert not outcome.passed and outcome.facts["samples_with_problems"] == 2
    assert outcome.evidence.rows() == [(second, "no row"), (first, "2 rows")]


def test_checkpoint_checks_fail_on_pickled_weights_a_nan_tensor_and_a_nan_loss(
    broken: tuple[ProjectPaths, SimpleNamespace],
) -> None:
    paths, params = broken
    model = paths.cgrpo_model(0.6)
    shutil.copyfile(model / "model.safetensors", model / "pytorch_model.bin")
    pickled = declared_check("cgrpo_checkpoint", "weights_are_safetensors").run(paths, params, "0.6")
    assert not pickled.passed and pickled.facts["pickled_weight_files"] == 1
    assert ("model/pytorch_model.bin", "pickled weights") in pickled.evidence.rows()

    tensors = load_file(model / "model.safetensors")
    name = next(key for key, value in tensors.items() if value.is_floating_point())
    tensors[name][0] = float("nan")
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    load = declared_check("cgrpo_checkpoint", "weights_load").run(paths, params, "0.6")
    assert not load.passed and load.evidence.rows() == [("model.safetensors", f"{name} holds NaN or inf")]

    state_file = paths.asset("sft_checkpoint") / "trainer_state.json"
    state = json.loads(state_file.read_text())
    next(entry for entry in state["log_history"] if "loss" in entry)["loss"] = float("nan")
    state_file.write_text(json.dumps(state))
    loss = declared_check("sft_checkpoint", "training_loss_finite").run(paths, params, None)
    assert not loss.passed and loss.facts["non_finite"] == 1
    assert loss.summary == "1 logged loss of 1 not finite (first at logged step 1)"
