"""The stages of the model and training assets: ``base_model``, ``teacher_rewards``,
``sft_checkpoint`` and ``cgrpo_checkpoint`` (one partition per τ).

``base_model``: on the tiny profile, build the tiny Qwen2.5-VL (tokenizer trained here, processor,
random-init model) into ``assets/base_model/checkpoint``; with ``model.align``, caption-train it on
the synthetic corpus (:mod:`marc_ops.train.align`) into ``assets/base_model/aligned/model``, which is
then the base model. On the paper profile, resolve ``Qwen/Qwen2.5-VL-3B-Instruct`` (or a local path)
in the HF cache, offline, and record where it is. Either way downstream stages read
``assets/base_model/model.json`` (:meth:`~marc_ops.config.ProjectPaths.base_model`).

``sft_checkpoint`` and ``cgrpo_checkpoint`` write ``run.yaml`` beside their checkpoints and train it as the
profile's ``train.launch`` says (:mod:`marc_ops.train.launch`): in the stage's own process, or as
``accelerate launch ... -m marc_ops.train.sft`` / ``-m marc_ops.train.cgrpo --config <run.yaml>`` through the
``launcher`` the driver gives (a plain child process for ``marc stage``, Dagster Pipes for the assets).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from pathlib import Path

import polars as pl

from marc_ops.compression import CompressionConfig
from marc_ops.config import ModelConfig, Params, ProjectPaths
from marc_ops.data import load_videor1, stratified_sample
from marc_ops.io import (
    atomic_dir,
    file_stamp,
    project_relative,
    relative_media,
    weights_stamp,
    write_json,
    write_parquet,
)
from marc_ops.model.builders import build_tiny_checkpoint
from marc_ops.model.loading import load_qwen2_5_vl, load_qwen2_5_vl_processor, resolve_model_source
from marc_ops.stage import StageResult
from marc_ops.train.align import align_tiny_model, caption_accuracy, caption_rows
from marc_ops.train.cgrpo import CGRPORun, run_cgrpo
from marc_ops.train.dataset import training_log
from marc_ops.train.inputs import is_grounded
from marc_ops.train.launch import Launcher, run_command, train
from marc_ops.train.score import ce_base_table, initial_policy, reset_if_changed, steps_for, train_policy
from marc_ops.train.score_clips import pseudo_video_clips, video_clips
from marc_ops.train.sft import SFTRun, run_sft
from marc_ops.train.teacher import (
    RECORDS_FILE,
    RUN_FILE,
    TABLE_FILE,
    TeacherRun,
    launch_teacher,
    run_teacher,
)


def _tiny_stamp(model: ModelConfig) -> str:
    return hashlib.sha256(model.tiny.model_dump_json().encode()).hexdigest()[:16]


def base_model_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """The ``base_model`` asset: the model every training and evaluation stage starts from."""
    out_dir = paths.asset("base_model")
    model = params.model
    built = False
    metadata: dict[str, object] = {}
    tables: dict[str, pl.DataFrame] = {}
    if model.source == "tiny":
        checkpoint = out_dir / "checkpoint"
        stamp = checkpoint / "marc_tiny_stamp.txt"
        if not (stamp.is_file() and stamp.read_text() == _tiny_stamp(model)):
            if checkpoint.exists():
                shutil.rmtree(checkpoint)
            with atomic_dir(checkpoint) as tmp:
                build_tiny_checkpoint(tmp, model.tiny)
                (tmp / "marc_tiny_stamp.txt").write_text(_tiny_stamp(model))
            built = True
        location = checkpoint
        if model.align is not None:
            location, metadata, tables = _align(paths, params, checkpoint, out_dir / "aligned")
    else:
        location = Path(resolve_model_source(model.model_id))
    n_bytes = sum(p.stat().st_size for p in location.rglob("*.safetensors"))
    write_json(
        out_dir / "model.json",
        {
            "source": model.source,
            "model_id": model.model_id,
            # Relative inside the project (a clone elsewhere writes the same record); a cache path or hub id as is.
            "path": project_relative(location, paths.project_dir)
            if Path(location).is_dir()
            else str(location),
        },
    )
    return StageResult(
        outputs={"model": out_dir / "model.json", "checkpoint": location},
        metadata={
            "source": model.source,
            "model_id": model.model_id if model.source == "pretrained" else "tiny (built from config)",
            "built_now": built,
            "weights_mb": round(n_bytes / 2**20, 2),
            **metadata,
        },
        tables=tables,
    )


def _align(
    paths: ProjectPaths, params: Params, checkpoint: Path, out_dir: Path
) -> tuple[Path, dict[str, object], dict[str, pl.DataFrame]]:
    """Caption-train the tiny model (resuming), then measure it on the held-out captions."""
    assert params.model.align is not None
    started = time.perf_counter()
    corpus = params.data.root(paths.project_dir)
    final = align_tiny_model(checkpoint, corpus, out_dir, params.model.align, params.video)
    global_step, steps = training_log(out_dir, "loss")
    measured = caption_accuracy(final, caption_rows(corpus, params.video, split="eval"), params.video)
    metadata: dict[str, object] = {
        "align_steps": global_step,
        "align_first_loss": float(steps["loss"][0]) if steps.height else None,
        "align_last_loss": float(steps["loss"][-1]) if steps.height else None,
        "heldout_background_accuracy": round(measured["background_accuracy"], 4),
        "heldout_shape_colour_accuracy": round(measured["shape_colour_accuracy"], 4),
        "heldout_caption_exact_match": round(measured["exact_match"], 4),
        "heldout_captions": int(measured["captions"]),
        "align_seconds": round(time.perf_counter() - started, 1),
    }
    return final, metadata, {"align_steps": steps}


def teacher_rewards_stage(
    paths: ProjectPaths, params: Params, launcher: Launcher = run_command
) -> StageResult:
    """The ``teacher_rewards`` asset: a_full for every video sample of ``train_subset``, scored in this
    process or launched (``train.launch.teacher``: each process scores its share) by ``launcher``."""
    started = time.perf_counter()
    out_dir = paths.asset("teacher_rewards")
    run = TeacherRun(
        model_path=str(paths.initial_policy(params.train.init)),
        train_rows=paths.asset("train_subset") / "train_subset.parquet",
        output_dir=out_dir,
        project_dir=paths.project_dir,
        video=params.video,
        # The 64-frame teacher sees the uncompressed VMR input (SPEC 7).
        vmr_selection=paths.asset("vmr_selection") / "selection.parquet",
        dtype=params.model.dtype,
        device=params.model.device,
        attn_implementation=params.model.attn_implementation,
        teacher=params.train.teacher,
    )
    launch = params.train.launch.teacher
    metadata: dict[str, object] = {}
    if launch.in_process:
        summary = run_teacher(run)
        metadata = {"generated_now": summary.n_generated, "resumed": summary.n_resumed}
    else:
        out_dir.mkdir(parents=True, exist_ok=True)
        run.write(out_dir / RUN_FILE)
        launch_teacher(out_dir / RUN_FILE, paths.project_dir, launch, launcher)
    table = pl.read_parquet(out_dir / TABLE_FILE)
    ok = table.filter(pl.col("status") == "ok")
    outputs = {"records": out_dir / RECORDS_FILE, "table": out_dir / TABLE_FILE}
    if not launch.in_process:
        outputs["run"] = out_dir / RUN_FILE
    return StageResult(
        outputs=outputs,
        metadata={
            "video_samples": table.height,
            **metadata,
            "failed": table.height - ok.height,
            "mean_a_full": ok["a_full"].mean() if ok.height else None,
            "processes": launch.processes,
            "batch_size": params.train.teacher.batch_size,
            "seconds": round(time.perf_counter() - started, 2),
        },
        tables={
            "a_full_histogram": ok.group_by(pl.col("a_full").round(2)).len("samples").sort("a_full"),
            "failed": table.filter(pl.col("status") == "failed").select("problem_id", "reason"),
        },
    )


def sft_checkpoint_stage(
    paths: ProjectPaths, params: Params, launcher: Launcher = run_command
) -> StageResult:
    """The ``sft_checkpoint`` asset: a stratified sample of the CoT file, then SFT (or its resumption), in
    this process or launched (``train.launch.sft``) by ``launcher``."""
    started = time.perf_counter()
    config = params.train.sft
    root = params.data.root(paths.project_dir)
    manifest = load_videor1(root / params.data.cot_file, root, check_media=params.data.check_media).rows
    rows = stratified_sample(manifest, min(config.train_size, manifest.height), seed=config.sample_seed)
    out_dir = paths.asset("sft_checkpoint")
    write_parquet(out_dir / "sft_rows.parquet", relative_media(rows, paths.project_dir))
    run = SFTRun(
        model_path=str(paths.base_model()),
        cot_rows=out_dir / "sft_rows.parquet",
        output_dir=out_dir,
        project_dir=paths.project_dir,
        video=params.video,
        attn_implementation=params.model.attn_implementation,
        sft=config,
    )
    run.write(out_dir / "run.yaml")
    final, reported = train(run, out_dir / "run.yaml", run_sft, params.train.launch.sft, launcher)
    global_step, steps = training_log(out_dir, "loss")
    losses = steps["loss"].to_list() if steps.height else []
    skipped = json.loads((out_dir / "skipped_samples.json").read_text())
    return StageResult(
        outputs={"model": final, "run": out_dir / "run.yaml", "tensorboard": out_dir / "runs"},
        metadata={
            "rows": rows.height,
            "grounded_clip_rows": sum(map(is_grounded, rows.iter_rows(named=True)))
            if config.grounded_clips
            else 0,
            "skipped_samples": len(skipped),
            "global_step": global_step,
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
            "processes": params.train.launch.sft.processes,
            **reported,
            "seconds": round(time.perf_counter() - started, 2),
        },
        tables={"steps": steps},
    )


def cgrpo_checkpoint_stage(
    paths: ProjectPaths, params: Params, tau: float, launcher: Launcher = run_command
) -> StageResult:
    """The ``cgrpo_checkpoint`` asset, one partition per tau: train (or resume) and record the run, in this
    process or launched (``train.launch.cgrpo``) by ``launcher``."""
    if tau not in params.train.taus:
        raise ValueError(
            f"tau {tau} is not one of the profile's train.taus {list(params.train.taus)}; add it there"
        )
    started = time.perf_counter()
    out_dir = paths.cgrpo_run(tau)
    run = CGRPORun(
        model_path=str(paths.initial_policy(params.train.init)),
        train_rows=paths.asset("train_subset") / "train_subset.parquet",
        teacher_rewards=paths.asset("teacher_rewards") / TABLE_FILE,
        output_dir=out_dir,
        project_dir=paths.project_dir,
        video=params.video,
        vmr_selection=paths.asset("vmr_selection") / "selection.parquet",
        attn_implementation=params.model.attn_implementation,
        cgrpo=params.train.cgrpo_for(tau),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    run.write(out_dir / "run.yaml")
    final, reported = train(run, out_dir / "run.yaml", run_cgrpo, params.train.launch.cgrpo, launcher)
    global_step, steps = training_log(out_dir, "reward")
    skipped = json.loads((out_dir / "skipped_samples.json").read_text())
    return StageResult(
        outputs={"model": final, "run": out_dir / "run.yaml", "tensorboard": out_dir / "runs"},
        metadata={
            "tau": tau,
            "global_step": global_step,
            "skipped_samples": len(skipped),
            "processes": params.train.launch.cgrpo.processes,
            **reported,
            "seconds": round(time.perf_counter() - started, 2),
        },
        tables={
            "steps": steps,
            "skipped": pl.DataFrame(skipped, schema={"problem_id": pl.String, "reason": pl.String}),
        },
    )


# --- SCORE: the frozen base model's caption CE, then the policy in two stages ---------------------------


def _frozen_base(paths: ProjectPaths, params: Params):
    """The frozen LLM SCORE's rewards come from: the model the base-model methods answer with (the initial
    policy, ``train.init``), uncompressed, without gradients; so the policy keeps what that model needs."""
    path = paths.initial_policy(params.train.init)
    model = load_qwen2_5_vl(
        path,
        compression=CompressionConfig(),
        dtype=params.model.dtype,
        device=params.model.device,
        attn_implementation=params.model.attn_implementation,
    )
    return model.eval().requires_grad_(False), load_qwen2_5_vl_processor(path)


def _score_stages(paths: ProjectPaths, params: Params) -> dict[str, object]:
    """Each stage's clips (a function that yields them) and its τ."""
    root = params.data.root(paths.project_dir)
    return {
        "stage1": lambda: pseudo_video_clips(paths.asset("score_pseudo_videos")),
        "stage2": lambda: video_clips(params.score.data, root, params.video),
    }


def score_ce_base_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """``score_ce_base``: the frozen base model's caption CE on every SCORE sample's full input, once (resumable)."""
    started = time.perf_counter()
    model, processor = _frozen_base(paths, params)
    out_dir = paths.asset("score_ce_base")
    reset_if_changed(
        out_dir,
        {
            "model": weights_stamp(paths.initial_policy(params.train.init)),
            "pseudo_videos": file_stamp(paths.asset("score_pseudo_videos") / "index.parquet"),
            "data": params.score.data.model_dump(mode="json"),
            "video": params.video.model_dump(mode="json"),
            "max_target_tokens": params.score.train.max_target_tokens,
        },
    )
    records = out_dir / "ce_base.jsonl"
    rows = []
    for stage, clips in _score_stages(paths, params).items():
        values = ce_base_table(
            model,
            processor,
            clips,
            records,
            stage=stage,
            max_target_tokens=params.score.train.max_target_tokens,
        )
        rows += [{"stage": stage, "sample_id": key, "ce_base": value} for key, value in values.items()]
    table = pl.DataFrame(rows, schema={"stage": pl.String, "sample_id": pl.String, "ce_base": pl.Float64})
    table = table.unique(["stage", "sample_id"], keep="first", maintain_order=True)
    write_parquet(out_dir / "ce_base.parquet", table)
    summary = table.group_by("stage", maintain_order=True).agg(
        samples=pl.len(), ce_base_mean=pl.col("ce_base").mean()
    )
    return StageResult(
        outputs={"records": records, "table": out_dir / "ce_base.parquet"},
        metadata={"samples": table.height, "seconds": round(time.perf_counter() - started, 2)},
        tables={"by_stage": summary},
    )


def _train_score_stage(paths: ProjectPaths, params: Params, stage: str) -> StageResult:
    started = time.perf_counter()
    config = params.score.train
    model, processor = _frozen_base(paths, params)
    ce_base = {
        row["sample_id"]: row["ce_base"]
        for row in pl.read_parquet(paths.asset("score_ce_base") / "ce_base.parquet")
        .filter(pl.col("stage") == stage)
        .iter_rows(named=True)
    }
    clips = list(_score_stages(paths, params)[stage]())
    steps = steps_for(len(clips), config, config.stage1_steps if stage == "stage1" else config.stage2_steps)
    init = None if stage == "stage1" else paths.score_policy("stage1")
    policy = initial_policy(model.config.text_config.hidden_size, params.score.policy, init)
    out_dir = paths.asset("score_policy_stage1" if stage == "stage1" else "score_policy")
    tau = config.tau_stage1 if stage == "stage1" else config.tau_stage2
    reset_if_changed(
        out_dir,
        {
            "ce_base": file_stamp(paths.asset("score_ce_base") / "ce_base.parquet"),
            "init": None if init is None else file_stamp(init),
            "policy": params.score.policy.model_dump(mode="json"),
            "train": config.model_dump(mode="json"),
        },
    )
    if stage == "stage2" and config.stage1_only:
        steps = 0  # the curriculum ablation: the policy is stage 1's, saved unchanged
    final = train_policy(
        model, processor, clips, ce_base, policy, config, tau=tau, steps=steps, out_dir=out_dir
    )
    log = (
        pl.read_parquet(out_dir / "training_log.parquet")
        if (out_dir / "training_log.parquet").is_file()
        else pl.DataFrame()
    )
    return StageResult(
        outputs={"policy": final, "tensorboard": out_dir / "runs"},
        metadata={
            "stage": stage,
            "tau": tau,
            "clips": len(clips),
            "steps": steps,
            "last_reward": float(log["reward"][-1]) if log.height else None,
            "last_feasible_fraction": float(log["feasible_fraction"][-1]) if log.height else None,
            "last_keep_probability": float(log["keep_probability"][-1]) if log.height else None,
            "last_ce_ratio": float(log["ce_ratio"][-1]) if log.height else None,
            "seconds": round(time.perf_counter() - started, 2),
        },
        tables={"steps": log},
    )


def score_policy_stage1_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """``score_policy_stage1``: the policy trained on the pseudo-videos (τ = tau_stage1)."""
    return _train_score_stage(paths, params, "stage1")


def score_policy_stage(paths: ProjectPaths, params: Params) -> StageResult:
    """``score_policy``: the policy, from stage 1, trained on the real videos (τ = tau_stage2)."""
    return _train_score_stage(paths, params, "stage2")
