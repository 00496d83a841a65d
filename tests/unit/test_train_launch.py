"""How the training stages launch their trainer (``train.launch``) and what a launched trainer reports.

The two-process run itself, materialized through Dagster Pipes, is the slow tier's
(tests/slow/test_pipes_launch.py); here: the command a stage builds, the profile checks, the launchers'
failures, and the trainer side of Pipes (reporting from rank 0 of a Dagster-launched process only).
"""

# No `from __future__ import annotations`: Dagster reads the asset's parameter annotations as types.
import importlib
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file
from tests_support import REPO_ROOT

from marc_ops.config import ConfigError, load_params
from marc_ops.config.train import LaunchConfig, SFTTrainConfig, TeacherConfig
from marc_ops.data import load_videor1
from marc_ops.io import content_hash
from marc_ops.train.launch import TrainingLaunchError, accelerate_command, run_command, train
from marc_ops.train.progress import TrainingProgress
from marc_ops.train.sft import SFTRun, run_sft
from marc_ops.train.teacher import RUN_FILE, TABLE_FILE, TeacherRun, launch_teacher
from pipelines.defs.launch import PipesLauncher
from pipelines.pipes_trainer import PipesProgress, pipes_progress

TWO_CPU_PROCESSES = LaunchConfig(processes=2, accelerate_config=Path("configs/accelerate/cpu_2proc.yaml"))


def test_a_launch_is_accelerate_with_the_profiles_processes_on_the_run_file():
    command = accelerate_command("marc_ops.train.sft", "assets/sft_checkpoint/run.yaml", TWO_CPU_PROCESSES)
    assert command == [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--config_file",
        "configs/accelerate/cpu_2proc.yaml",
        "--num_processes",
        "2",
        "-m",
        "marc_ops.train.sft",
        "--config",
        "assets/sft_checkpoint/run.yaml",
    ]


def test_the_assets_launch_the_trainer_inside_the_pipes_entry_point():
    command = accelerate_command(
        "marc_ops.train.sft", "run.yaml", TWO_CPU_PROCESSES, wrapper=PipesLauncher.wrapper
    )
    assert command[-5:] == ["-m", "pipelines.pipes_trainer", "marc_ops.train.sft", "--config", "run.yaml"]


def test_several_processes_need_an_accelerate_file_and_one_process_trains_in_place():
    with pytest.raises(ValidationError, match="cpu_2proc.yaml"):
        LaunchConfig(processes=2)
    assert LaunchConfig().in_process
    # One process under accelerate (a single GPU with DeepSpeed) is a launch too.
    assert not LaunchConfig(accelerate_config=Path("configs/accelerate/zero3.yaml")).in_process


def test_the_paper_profile_launches_each_trainer_with_its_deepspeed_file():
    launch = load_params(REPO_ROOT / "configs" / "paper.yaml").train.launch
    assert launch.sft.accelerate_config == Path("configs/accelerate/zero2.yaml")
    assert launch.cgrpo.accelerate_config == Path("configs/accelerate/zero3.yaml")
    assert launch.sft.processes > 1 and launch.cgrpo.processes > 1
    for config in (launch.sft.accelerate_config, launch.cgrpo.accelerate_config):
        assert (REPO_ROOT / config).is_file()
    # The teacher only generates: one plain process per GPU, no DeepSpeed.
    assert launch.teacher.accelerate_config == Path("configs/accelerate/multi_gpu.yaml")
    assert (REPO_ROOT / launch.teacher.accelerate_config).is_file() and launch.teacher.processes > 1
    tiny = load_params(REPO_ROOT / "configs" / "tiny.yaml").train.launch
    assert tiny.sft.in_process and tiny.cgrpo.in_process and tiny.teacher.in_process


def test_a_launched_teacher_runs_its_entry_point_from_the_project(tmp_path: Path):
    project = tmp_path / "project"
    (project / "configs/accelerate").mkdir(parents=True)
    (project / "configs/accelerate/cpu_2proc.yaml").write_text("distributed_type: MULTI_GPU\n")
    run_file = project / "assets/teacher_rewards/run.yaml"
    launched: list[tuple[list[str], Path]] = []

    def launcher(command: Sequence[str], cwd: Path) -> None:
        launched.append((list(command), cwd))
        (run_file.parent / TABLE_FILE).write_text("")  # what process 0 writes last

    run_file.parent.mkdir(parents=True)
    launch_teacher(run_file, project, TWO_CPU_PROCESSES, launcher)
    assert launched == [
        (
            accelerate_command(
                "marc_ops.train.teacher", "assets/teacher_rewards/run.yaml", TWO_CPU_PROCESSES
            ),
            project,
        )
    ]
    (run_file.parent / TABLE_FILE).unlink()
    with pytest.raises(TrainingLaunchError, match="without its table"):
        launch_teacher(run_file, project, TWO_CPU_PROCESSES, lambda command, cwd: None)
    with pytest.raises(ConfigError, match="cpu_2proc.yaml is not a file"):
        launch_teacher(run_file, tmp_path, TWO_CPU_PROCESSES, launcher)


def _run(project: Path) -> SFTRun:
    return SFTRun(
        model_path="unused",
        cot_rows=project / "assets/sft_checkpoint/sft_rows.parquet",
        output_dir=project / "assets/sft_checkpoint",
        project_dir=project,
        sft=SFTTrainConfig(bf16=False),
    )


def test_a_launched_stage_hands_the_command_to_its_launcher_from_the_project(tmp_path: Path):
    project = tmp_path / "project"
    (project / "configs/accelerate").mkdir(parents=True)
    (project / "configs/accelerate/cpu_2proc.yaml").write_text("distributed_type: MULTI_GPU\n")
    run = _run(project)
    launched: list[tuple[list[str], Path]] = []

    def launcher(command: Sequence[str], cwd: Path) -> None:
        launched.append((list(command), cwd))
        final = project / "assets/sft_checkpoint/model"  # what the trainer's main process writes last
        final.mkdir(parents=True)
        (final / "config.json").write_text("{}")

    run_file = project / "assets/sft_checkpoint/run.yaml"
    final, reported = train(run, run_file, run_sft, TWO_CPU_PROCESSES, launcher)

    assert launched == [
        (
            accelerate_command("marc_ops.train.sft", "assets/sft_checkpoint/run.yaml", TWO_CPU_PROCESSES),
            project,
        )
    ]
    assert final == project / "assets/sft_checkpoint/model"
    assert reported == {}  # a launched trainer reports to its launcher itself

    (final / "config.json").unlink()
    with pytest.raises(TrainingLaunchError, match="without its final model"):
        train(run, run_file, run_sft, TWO_CPU_PROCESSES, lambda command, cwd: None)


def test_a_missing_accelerate_file_is_named_before_anything_starts(tmp_path: Path):
    def launcher(command: Sequence[str], cwd: Path) -> None:
        raise AssertionError("nothing may start")

    with pytest.raises(ConfigError, match="cpu_2proc.yaml is not a file"):
        train(_run(tmp_path), tmp_path / "run.yaml", run_sft, TWO_CPU_PROCESSES, launcher)


def test_a_failed_launch_says_which_command_failed(tmp_path: Path):
    with pytest.raises(TrainingLaunchError, match="exited with status 3"):
        run_command([sys.executable, "-c", "raise SystemExit(3)"], tmp_path)


def test_a_trainer_not_launched_by_dagster_reports_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("DAGSTER_PIPES_CONTEXT", raising=False)
    final = tmp_path / "model"
    final.mkdir()
    save_file({"w": torch.ones(2)}, str(final / "model.safetensors"))
    with pipes_progress() as progress:
        assert type(progress) is TrainingProgress  # reports nothing
        progress.saved(final)  # nothing to report to, and no error
    assert progress.summary(final)["checkpoint_sha256"] == {
        "model.safetensors": content_hash(final / "model.safetensors")
    }

    # Under Dagster, only rank 0 opens Pipes: another rank never reads the (here unreadable) context.
    monkeypatch.setenv("DAGSTER_PIPES_CONTEXT", "not a pipes context")
    monkeypatch.setenv("RANK", "1")
    with pipes_progress() as progress:
        assert not isinstance(progress, PipesProgress)


# A trainer's main process as a Pipes child: the Trainer's hooks called as a two-step run calls them.
TRAINER_SCRIPT = """
import logging, sys
from pathlib import Path
import torch
from safetensors.torch import save_file
from transformers import TrainerControl, TrainerState, TrainingArguments
from pipelines.pipes_trainer import pipes_progress

final = Path(sys.argv[1])
final.mkdir(parents=True)
save_file({"w": torch.ones(2)}, str(final / "model.safetensors"))
logging.basicConfig(level=logging.INFO)
args = TrainingArguments(output_dir=str(final.parent), use_cpu=True, report_to=[])
state, control = TrainerState(max_steps=2), TrainerControl()
with pipes_progress() as progress:
    progress.on_train_begin(args, state, control)
    for step, loss in ((1, 2.5), (2, 2.0)):
        state.global_step = step
        progress.on_log(args, state, control, logs={"loss": loss, "learning_rate": 1e-3})
    progress.on_log(args, state, control, logs={"train_runtime": 1.5, "train_loss": 2.25})
    try:
        raise ValueError("row 3 has no video")
    except ValueError:
        logging.getLogger("marc_ops.train.example").exception("skipped a row")
    logging.getLogger("marc_ops.train.example").info("final model: %s", final)
    progress.saved(final)
"""


def test_a_dagster_launched_trainer_streams_its_steps_and_reports_the_checkpoint(tmp_path: Path):
    script = tmp_path / "trainer.py"
    script.write_text(TRAINER_SCRIPT)
    final = tmp_path / "run" / "model"

    @dg.asset
    def checkpoint(
        context: dg.AssetExecutionContext, pipes_subprocess_client: dg.PipesSubprocessClient
    ) -> dg.MaterializeResult:
        invocation = pipes_subprocess_client.run(
            command=[sys.executable, str(script), str(final)],
            context=context,
            env={"PYTHONPATH": str(REPO_ROOT), "RANK": "0"},
        )
        steps = invocation.get_custom_messages()
        assert [message["step"] for message in steps] == [1, 2]
        assert [message["loss"] for message in steps] == [2.5, 2.0]
        return invocation.get_materialize_result()

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [checkpoint], resources={"pipes_subprocess_client": dg.PipesSubprocessClient()}, instance=instance
    )

    assert result.success
    metadata = result.asset_materializations_for_node("checkpoint")[0].metadata
    assert metadata["world_size"].value == 1
    assert metadata["logged_steps"].value == 2
    assert metadata["final_metrics"].value == {"train_runtime": 1.5, "train_loss": 2.25}
    assert metadata["checkpoint_sha256"].value == {
        "model.safetensors": content_hash(final / "model.safetensors")
    }
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert "training from step 0 to 2 in 1 process(es) on cpu" in messages
    assert "step 2/2: loss=2, learning_rate=0.001" in messages
    assert "finished at step 2/2: train_runtime=1.5, train_loss=2.25" in messages
    assert f"marc_ops.train.example: final model: {final}" in messages
    skipped = next(
        message for message in messages if message.startswith("marc_ops.train.example: skipped a row")
    )
    assert "Traceback" in skipped and skipped.endswith("ValueError: row 3 has no video")  # with its traceback
    assert json.dumps(metadata["final_metrics"].value)  # plain JSON, as the UI shows it


@pytest.mark.parametrize("module", ["marc_ops.train.sft", "marc_ops.train.cgrpo", "marc_ops.train.teacher"])
def test_a_trainer_entry_point_refuses_a_missing_run_file_in_one_line(
    module: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    trainer = importlib.import_module(module)
    with pytest.raises(SystemExit) as exited:
        trainer.main(["--config", str(tmp_path / "run.yaml")])
    assert exited.value.code == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"python -m {module}: error: --config {tmp_path / 'run.yaml'}: no such file"
    )


def test_a_dagster_launched_teacher_logs_its_summary_and_writes_the_table(
    tiny_model: Path, train_corpus: Path, tmp_path: Path
):
    """The real teacher entry point inside the Pipes wrapper (one process, no accelerate): what the asset runs."""
    rows = load_videor1(train_corpus / "Video-R1-260k.json", train_corpus).rows
    rows = rows.filter(pl.col("data_type") == "video").head(2)
    rows.write_parquet(tmp_path / "rows.parquet")
    run = TeacherRun(
        model_path=str(tiny_model),
        train_rows=tmp_path / "rows.parquet",
        output_dir=tmp_path / "teacher",
        project_dir=tmp_path,
        teacher=TeacherConfig(num_generations=2, max_completion_length=4, batch_size=2),
    )
    (tmp_path / "teacher").mkdir()
    run.write(tmp_path / "teacher" / RUN_FILE)

    @dg.asset
    def teacher_rewards(
        context: dg.AssetExecutionContext, pipes_subprocess_client: dg.PipesSubprocessClient
    ) -> dg.MaterializeResult:
        command = [
            sys.executable,
            "-m",
            PipesLauncher.wrapper,
            "marc_ops.train.teacher",
            "--config",
            "teacher/run.yaml",
        ]
        invocation = pipes_subprocess_client.run(
            command=command,
            context=context,
            cwd=str(tmp_path),
            env={"PYTHONPATH": str(REPO_ROOT), "RANK": "0", "OMP_NUM_THREADS": "1"},
        )
        return invocation.get_materialize_result()

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [teacher_rewards],
        resources={"pipes_subprocess_client": dg.PipesSubprocessClient()},
        instance=instance,
    )
    assert result.success
    messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert "teacher_rewards: process 0 of 1 scored 2 sample(s)" in " ".join(messages)
    assert pl.read_parquet(tmp_path / "teacher" / TABLE_FILE).height == 2
