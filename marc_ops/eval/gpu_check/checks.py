"""The GPU check: the real Qwen2.5-VL-3B architecture on a CUDA device, every claim that needs one, in one run.

``run_gpu_check(config)`` runs the checks of :data:`CHECK_NAMES` in order and returns a :class:`GpuCheckReport`;
``write_gpu_check`` writes it as ``gpu_check.json`` and ``gpu_check.md``. Nothing is downloaded: the model is
Qwen/Qwen2.5-VL-3B-Instruct when it is in the local Hugging Face cache, else its architecture with random
weights (:func:`~marc_ops.model.build_qwen2_5_vl_3b_random`), in bf16. ``quick`` runs the same checks on the
embedded default's tiny model in float32 (what the default test tier runs on the CPU).

A check fails when it raises (its error is recorded) and is skipped when it cannot run here (the reason is
recorded); in ``quick`` mode a skip is allowed, in full mode it fails the run. docs/gpu.md says what each
check verifies.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import math
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from safetensors import safe_open
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from marc_ops.compression import CompressionConfig, list_methods, one_frame_compression
from marc_ops.compression.score import ScorePolicy, save_policy
from marc_ops.config.methods import MethodSpec, compressor_method, resolve_method
from marc_ops.config.train import CGRPOTrainConfig, LaunchConfig, SFTTrainConfig
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.data.synthetic.frames import synthetic_video_frames
from marc_ops.errors import UsageError
from marc_ops.eval.efficiency.profiler import DEFAULT_METHODS, ProfileSample, profile_efficiency
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.gpu_check.train_steps import TrainStepsRun, run_train_steps
from marc_ops.eval.report import format_table
from marc_ops.io import safetensors_weights, write_json, write_text
from marc_ops.model import (
    QWEN2_5_VL_3B_NAME,
    ModelNotAvailableError,
    apply_compression,
    build_qwen2_5_vl_3b_processor,
    build_qwen2_5_vl_3b_random,
    build_tiny_checkpoint,
    compression_of,
    default_attn_implementation,
    load_qwen2_5_vl_processor,
    resolve_model_source,
)
from marc_ops.train.inputs import TrainingSample, encode_prompt, model_inputs
from marc_ops.train.launch import train
from marc_ops.video import VideoConfig

logger = logging.getLogger(__name__)

QWEN2_5_VL_3B_ID = "Qwen/Qwen2.5-VL-3B-Instruct"
ZERO3_ACCELERATE_CONFIG = Path("configs/accelerate/zero3.yaml")
MERGED_PATCH = 28  # pixels per side of one LLM token's patch (14-pixel patches merged 2 x 2)
# The compared methods' budget in the checks: SCORE Table 1's 25 %; MovieChat's budget is frames.
CHECK_RETENTION = 0.25
CHECK_NAMES: tuple[str, ...] = (
    "model",
    "compression_off_bit_identical",
    "marc_placeholders_equal_features",
    *(f"compression_method:{method}" for method in list_methods()),
    "efficiency_profile",
    "cgrpo_zero3_two_steps",
    "sft_zero3_one_step",
)

Status = Literal["passed", "failed", "skipped"]


class GpuCheckConfig(BaseModel):
    """What ``marc gpu-check`` runs.

    Attributes:
        device: ``cuda`` (the first GPU) or ``cpu``.
        quick: the tiny model in float32 and small inputs instead of the 3B architecture in bf16.
        project_dir: the project (its ``configs/accelerate/zero3.yaml`` launches the training steps).
        batch_size: the efficiency profile's batch; ``None``: 15 (paper App. A.3), 1 when ``quick``.
        checks: run only these (names of :data:`CHECK_NAMES`); ``None``: all.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    device: Literal["cuda", "cpu"] = "cuda"
    quick: bool = False
    project_dir: Path = Path(".")
    batch_size: int | None = Field(default=None, ge=1)
    checks: tuple[str, ...] | None = None

    @model_validator(mode="after")
    def _known_checks(self) -> GpuCheckConfig:
        unknown = sorted(set(self.checks or ()) - set(CHECK_NAMES))
        if unknown:
            raise ValueError(f"unknown checks {', '.join(unknown)}; the checks: {', '.join(CHECK_NAMES)}")
        return self

    @property
    def profile_batch_size(self) -> int:
        return self.batch_size or (1 if self.quick else 15)


class CheckResult(BaseModel):
    """One line of the report: ``passed`` is true only for ``status == "passed"``."""

    name: str
    passed: bool
    status: Status
    seconds: float
    summary: str
    details: dict[str, Any] = Field(default_factory=dict)


class GpuCheckReport(BaseModel):
    """Every check's result, and what ran them; ``ok`` decides the exit status."""

    device: str
    quick: bool
    model: str
    seconds: float
    ok: bool
    checks: list[CheckResult]
    efficiency_table: str | None = None


class Skip(Exception):
    """Raised by a check that cannot run here; its message is the reason."""


@dataclass
class _Setting:
    """What the checks share: the model folder, the loaded model and processor, the report and scratch folders."""

    config: GpuCheckConfig
    out_dir: Path
    scratch: Path
    efficiency_table: str | None = None

    @property
    def device(self) -> torch.device:
        return torch.device(self.config.device)

    @property
    def dtype(self) -> torch.dtype:
        return torch.float32 if self.config.quick else torch.bfloat16

    @property
    def on_cuda(self) -> bool:
        return self.device.type == "cuda"

    @cached_property
    def model_source(self) -> tuple[Path, str]:
        """The checkpoint every check loads, and its name: the tiny one, the cached 3B, or the 3B architecture
        with random weights saved here."""
        if self.config.quick:
            return build_tiny_checkpoint(self.scratch / "tiny"), "tiny Qwen2.5-VL (random weights)"
        try:
            cached = Path(resolve_model_source(QWEN2_5_VL_3B_ID))
        except ModelNotAvailableError:
            cached = None
        if cached is not None and cached.is_dir():  # never the hub: a bare id would be a download
            return cached, f"{QWEN2_5_VL_3B_ID} (local cache)"
        folder = self.scratch / "qwen2_5_vl_3b_random"
        build_qwen2_5_vl_3b_random(self.dtype, device=self.device).save_pretrained(folder)
        build_qwen2_5_vl_3b_processor(max_pixels=128 * MERGED_PATCH**2).save_pretrained(folder)
        if self.on_cuda:
            torch.cuda.empty_cache()
        return folder, QWEN2_5_VL_3B_NAME

    @property
    def model_dir(self) -> Path:
        return self.model_source[0]

    @property
    def model_name(self) -> str:
        return self.model_source[1]

    @cached_property
    def processor(self) -> Qwen2_5_VLProcessor:
        return load_qwen2_5_vl_processor(self.model_dir)

    @cached_property
    def model(self) -> Qwen2_5_VLForConditionalGeneration:
        """The model as transformers loads it, unpatched until a check patches it (``apply_compression``)."""
        return Qwen2_5_VLForConditionalGeneration.from_pretrained(
            self.model_dir,
            use_safetensors=True,
            dtype=self.dtype,
            device_map=self.device,
            attn_implementation=default_attn_implementation(self.device, self.dtype),
        ).eval()

    def release_model(self) -> None:
        """Free the inference model's memory before the training steps load their own copies."""
        self.__dict__.pop("model", None)
        if self.on_cuda:
            torch.cuda.empty_cache()

    @cached_property
    def corpus(self) -> Path:
        """Two synthetic training videos with their questions and CoT rows."""
        folder = self.scratch / "corpus"
        generate_corpus(
            SyntheticConfig(n_train_videos=2, n_eval_videos=0, n_train_images=0, n_eval_images=0), folder
        )
        return folder

    def video_sample(self) -> TrainingSample:
        """One synthetic video in four clips: 8 frames of 56 x 84 (quick), else 16 frames of 224 x 448."""
        frames, height, width = (8, 56, 84) if self.config.quick else (16, 224, 448)
        clip_ids = np.arange(frames, dtype=np.int64) // (frames // 4)
        row = {"problem_id": "gpu-check", "data_type": "video", "problem": "", "problem_type": "free-form"}
        video = synthetic_video_frames(frames, height=height, width=width, shots=4)
        return TrainingSample(row=row, frames=video, clip_ids=clip_ids, fps=1.0)

    def inputs(self, compression: CompressionConfig) -> tuple[dict[str, Any], int]:
        """The sample's model inputs for a model patched with ``compression``, on the device, and its
        uncompressed visual token count."""
        sample = self.video_sample()
        encoded = encode_prompt(self.processor, compression, sample, _MESSAGES, encoder=self.model)
        batch = model_inputs([encoded], self.processor)
        t, h, w = encoded.visual["video_grid_thw"][0].tolist()
        return {k: v.to(self.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}, (
            t * h * w // 4
        )


_MESSAGES = [
    {
        "role": "user",
        "content": [{"type": "video"}, {"type": "text", "text": "Which shape is visible in the last scene?"}],
    }
]


# --- the checks: each returns (summary, details), raises to fail, raises Skip when it cannot run here ----


def _check_model(setting: _Setting) -> tuple[str, dict[str, Any]]:
    model = setting.model
    parameters = sum(p.numel() for p in model.parameters())
    details = {
        "model": setting.model_name,
        "folder": str(setting.model_dir),
        "parameters": parameters,
        "dtype": str(model.dtype).removeprefix("torch."),
        "device": str(model.device),
        "attn_implementation": model.config._attn_implementation,
    }
    size = f"{parameters / 1e9:.2f} B" if parameters >= 1e9 else f"{parameters / 1e6:.2f} M"
    return f"{setting.model_name}: {size} parameters, {details['dtype']} on {model.device}", details


def _check_compression_off(setting: _Setting) -> tuple[str, dict[str, Any]]:
    model = setting.model
    if "_marc_unpatched" in vars(model):
        raise RuntimeError("the model was patched before this check; it must run first on a fresh model")
    inputs, visual = setting.inputs(CompressionConfig())
    inputs.pop("video_clip_ids")  # the unpatched forward takes no clip ids
    with torch.no_grad():
        unpatched = model(**inputs).logits
        apply_compression(model, CompressionConfig())
        patched = model(**inputs).logits
    difference = (patched.float() - unpatched.float()).abs().max().item()
    details = {
        "tokens": int(inputs["input_ids"].shape[1]),
        "visual_tokens": visual,
        "max_abs_difference": difference,
    }
    if not torch.equal(patched, unpatched):
        raise AssertionError(f"logits differ from the unpatched model's by up to {difference:g}")
    return f"{details['tokens']} tokens ({visual} visual): logits equal bit for bit", details


def _placeholders_and_features(
    setting: _Setting, compression: CompressionConfig
) -> tuple[int, int, int, torch.Tensor]:
    """(placeholders in the prompt, features the model's compression returns, uncompressed tokens, logits)."""
    model = setting.model
    apply_compression(model, compression)
    inputs, visual = setting.inputs(compression_of(model))
    placeholders = int((inputs["input_ids"] == model.config.video_token_id).sum())
    with torch.no_grad():
        precomputed = (inputs.get("mm_encoder_outputs") or {}).get("video")
        if precomputed is None:
            precomputed = model.model.get_video_features(
                inputs["pixel_values_videos"],
                inputs["video_grid_thw"],
                video_clip_ids=inputs["video_clip_ids"],
                return_dict=True,
            )
        features = sum(len(rows) for rows in precomputed.pooler_output)
        logits = model(**inputs).logits  # transformers checks the placeholders against the features too
    return placeholders, features, visual, logits


def _check_marc_placeholders(setting: _Setting) -> tuple[str, dict[str, Any]]:
    placeholders, features, visual, logits = _placeholders_and_features(setting, one_frame_compression())
    details = {"placeholders": placeholders, "features": features, "visual_tokens_uncompressed": visual}
    if placeholders != features:
        raise AssertionError(f"{placeholders} video placeholders but {features} features")
    if not torch.isfinite(logits).all():
        raise AssertionError("the logits are not all finite")
    return f"{placeholders} placeholders = {features} features (of {visual})", details


def _method_compression(setting: _Setting, method: str) -> CompressionConfig:
    """The check's budget for ``method``: MARC's one frame, MovieChat's one frame, the others 25 %."""
    if method == "marc":
        return one_frame_compression()
    if method == "moviechat":
        return CompressionConfig(enabled=True, method=method, budget_groups=1)
    options = {"policy": str(_score_policy(setting))} if method == "score" else {}
    return CompressionConfig(enabled=True, method=method, retention=CHECK_RETENTION, options=options)


def _score_policy(setting: _Setting) -> Path:
    """An untrained SCORE policy for this model's width (ranking tokens only needs some policy)."""
    path = setting.scratch / "score_policy" / "policy.safetensors"
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        policy = ScorePolicy(setting.model.config.text_config.hidden_size)
        save_policy(policy, policy.config, path)
    return path


def _method_check(method: str) -> Callable[[_Setting], tuple[str, dict[str, Any]]]:
    def check(setting: _Setting) -> tuple[str, dict[str, Any]]:
        placeholders, features, visual, logits = _placeholders_and_features(
            setting, _method_compression(setting, method)
        )
        details = {"placeholders": placeholders, "features": features, "visual_tokens_uncompressed": visual}
        if placeholders != features:
            raise AssertionError(f"{placeholders} video placeholders but {features} features")
        if not 0 < features <= visual:
            raise AssertionError(f"{features} tokens kept of {visual}")
        if not torch.isfinite(logits).all():
            raise AssertionError("the logits are not all finite")
        return f"{visual} → {features} visual tokens, finite logits", details

    return check


def _profile_methods(setting: _Setting) -> list[MethodSpec]:
    """64 frames, 16 frames, MARC, then every other registered method at the check's budget."""
    specs = [resolve_method(name) for name in DEFAULT_METHODS]
    for method in list_methods():
        if method == "marc":
            continue
        if method == "moviechat":
            spec = compressor_method(method, frames=1)
        else:
            spec = compressor_method(method, retention=CHECK_RETENTION)
        specs.append(spec.model_copy(update={"compression": _method_compression(setting, method)}))
    return specs


def _check_efficiency(setting: _Setting) -> tuple[str, dict[str, Any]]:
    patches = 4 if setting.config.quick else 128  # merged patches per frame: 56 x 56, or 224 x 448
    height, width = (56, 56) if setting.config.quick else (224, 448)
    assert height * width == patches * MERGED_PATCH**2
    frames = synthetic_video_frames(64, height=height, width=width)
    batch = setting.config.profile_batch_size
    specs = _profile_methods(setting)
    profile = profile_efficiency(
        setting.model,
        setting.processor,
        [ProfileSample(frames)] * batch,
        source="copies of a synthetic 64 s video",
        methods=specs,
        answer_tokens=2 if setting.config.quick else 16,
        device=setting.device,
        model_name=setting.model_name,
        input_name=f"synthetic 64 s video, {width}x{height}",
    )
    checked = EfficiencyProfile.model_validate(profile)
    write_json(setting.out_dir / "efficiency_profile.json", profile)
    setting.efficiency_table = format_table(profile)
    rows = {m.method: m for m in checked.methods}
    missing = [spec.name for spec in specs if spec.name not in rows]
    if missing:
        raise AssertionError(f"no row for {', '.join(missing)}")
    for m in checked.methods:
        if not (math.isfinite(m.end_to_end_s) and m.peak_memory_gb > 0):
            raise AssertionError(
                f"{m.method}: end_to_end_s={m.end_to_end_s}, peak_memory_gb={m.peak_memory_gb}"
            )
    full, marc = rows[DEFAULT_METHODS[0]], rows[resolve_method("marc").name]
    if not marc.visual_tokens < full.visual_tokens:
        raise AssertionError(
            f"MARC feeds {marc.visual_tokens:g} visual tokens, 64 frames {full.visual_tokens:g}"
        )
    details = {
        "batch_size": batch,
        "memory_kind": checked.memory_kind,
        "methods": {
            m.method: {
                "visual_tokens": m.visual_tokens,
                "prefill_s": m.prefill_s,
                "end_to_end_s": m.end_to_end_s,
                "peak_memory_gb": m.peak_memory_gb,
            }
            for m in checked.methods
        },
    }
    summary = (
        f"batch {batch}, {len(rows)} methods; end-to-end per sample / peak memory: 64f "
        f"{full.end_to_end_s:.2f} s / {full.peak_memory_gb:.2f} GB, MARC {marc.end_to_end_s:.2f} s / "
        f"{marc.peak_memory_gb:.2f} GB ({marc.visual_tokens:g} of {full.visual_tokens:g} visual tokens)"
    )
    return summary, details


def _train_check(trainer: Literal["sft", "cgrpo"]) -> Callable[[_Setting], tuple[str, dict[str, Any]]]:
    def check(setting: _Setting) -> tuple[str, dict[str, Any]]:
        if setting.on_cuda and importlib.util.find_spec("deepspeed") is None:
            raise Skip("needs CUDA + deepspeed: install the `gpu` extra (pip install -e '.[gpu]')")
        setting.release_model()
        out = setting.scratch / f"train_{trainer}"
        run = _train_run(setting, trainer, out)
        run_file = out / "run.yaml"
        run.write(run_file)
        launch = (
            LaunchConfig(processes=1, accelerate_config=ZERO3_ACCELERATE_CONFIG)
            if setting.on_cuda
            else LaunchConfig()
        )
        try:
            final, _ = train(run, run_file, run_train_steps, launch)
            return _train_outcome(setting, trainer, out, final, launch)
        finally:
            shutil.rmtree(out, ignore_errors=True)  # the 3B model's trained copy: 7.5 GB of disk

    return check


def _train_run(setting: _Setting, trainer: Literal["sft", "cgrpo"], out: Path) -> TrainStepsRun:
    schedule = {
        "learning_rate": 1e-3,  # large enough that one step moves bf16 weights
        "weight_decay": 0.0,
        "bf16": setting.on_cuda,
        "gradient_checkpointing": setting.on_cuda,
        "logging_steps": 1,
    }
    configs: dict[str, Any] = {}
    if trainer == "sft":
        configs["sft"] = SFTTrainConfig(per_device_train_batch_size=1, max_steps=1, **schedule)
    else:
        configs["cgrpo"] = CGRPOTrainConfig(
            num_generations=2, per_device_train_batch_size=2, max_completion_length=8, max_steps=2, **schedule
        )
    pixels = (16 if setting.config.quick else 64) * MERGED_PATCH**2
    return TrainStepsRun(
        project_dir=setting.config.project_dir.resolve(),
        trainer=trainer,
        model_path=str(setting.model_dir),
        corpus=setting.corpus,
        output_dir=out,
        video=VideoConfig(max_frames=4, max_pixels=pixels),
        **configs,
    )


def _train_outcome(
    setting: _Setting, trainer: str, out: Path, final: Path, launch: LaunchConfig
) -> tuple[str, dict[str, Any]]:
    history = json.loads((out / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in history["log_history"] if "loss" in entry]
    changed, compared, finite = _compare_weights(setting.model_dir, final)
    expected_steps = 1 if trainer == "sft" else 2
    details = {
        "launch": (
            f"accelerate launch --config_file {launch.accelerate_config} --num_processes 1 (DeepSpeed ZeRO-3)"
            if launch.accelerate_config
            else "in-process on the CPU, no DeepSpeed (ZeRO-3 needs CUDA)"
        ),
        "global_step": history["global_step"],
        "losses": losses,
        "tensors_changed": changed,
        "tensors_compared": compared,
    }
    if history["global_step"] != expected_steps:
        raise AssertionError(f"trained {history['global_step']} steps, not {expected_steps}")
    if not losses or not all(math.isfinite(loss) for loss in losses):
        raise AssertionError(f"losses {losses}: not all finite")
    if not finite:
        raise AssertionError("the trained weights are not all finite")
    if changed == 0:
        raise AssertionError(f"none of the {compared} weight tensors changed")
    where = "ZeRO-3" if launch.accelerate_config else "in-process (CPU)"
    losses_text = ", ".join(f"{loss:.4g}" for loss in losses)
    return (
        f"{where}: {expected_steps} step(s), loss {losses_text}; {changed}/{compared} tensors changed",
        details,
    )


def _tensor_files(folder: Path) -> dict[str, Path]:
    files: dict[str, Path] = {}
    for path in safetensors_weights(folder):
        with safe_open(str(path), framework="pt") as handle:
            files.update(dict.fromkeys(handle.keys(), path))
    return files


def _compare_weights(initial: Path, final: Path) -> tuple[int, int, bool]:
    """(tensors that changed, tensors compared, whether every trained tensor is finite), one tensor at a time."""
    before, after = _tensor_files(initial), _tensor_files(final)
    shared = sorted(set(before) & set(after))
    if not shared:
        raise AssertionError(f"{final} and {initial} share no tensor name")
    changed, finite = 0, True
    for name in shared:
        with (
            safe_open(str(before[name]), framework="pt") as a,
            safe_open(str(after[name]), framework="pt") as b,
        ):
            old, new = a.get_tensor(name).float(), b.get_tensor(name).float()
        finite = finite and bool(torch.isfinite(new).all())
        changed += not torch.equal(old, new)
    return changed, len(shared), finite


CHECKS: dict[str, Callable[[_Setting], tuple[str, dict[str, Any]]]] = {
    "model": _check_model,
    "compression_off_bit_identical": _check_compression_off,
    "marc_placeholders_equal_features": _check_marc_placeholders,
    **{f"compression_method:{method}": _method_check(method) for method in list_methods()},
    "efficiency_profile": _check_efficiency,
    "cgrpo_zero3_two_steps": _train_check("cgrpo"),
    "sft_zero3_one_step": _train_check("sft"),
}


# --- the run -----------------------------------------------------------------------------------------


def run_gpu_check(config: GpuCheckConfig, out_dir: Path) -> GpuCheckReport:
    """Run the checks (all, or ``config.checks``) in order; the scratch folder under ``out_dir`` is removed."""
    if config.device == "cuda" and not torch.cuda.is_available():
        raise UsageError(
            "no CUDA device here (torch.cuda.is_available() is false): the GPU check needs one; "
            "`marc gpu-check --device cpu --quick` runs the same checks on the tiny model"
        )
    started = time.perf_counter()
    out_dir.mkdir(parents=True, exist_ok=True)
    results: list[CheckResult] = []
    with tempfile.TemporaryDirectory(dir=out_dir, prefix="scratch-") as scratch:
        setting = _Setting(config, out_dir, Path(scratch))
        for name in config.checks or CHECK_NAMES:
            results.append(_run_one(name, setting, quick=config.quick))
            logger.info("%s: %s (%s)", name, results[-1].status, results[-1].summary)
        model_name = setting.model_name if "model_source" in vars(setting) else "(not loaded)"
        table = setting.efficiency_table
        setting.release_model()
    return GpuCheckReport(
        device=_device_name(config.device),
        quick=config.quick,
        model=model_name,
        seconds=round(time.perf_counter() - started, 1),
        ok=all(r.passed or (config.quick and r.status == "skipped") for r in results),
        checks=results,
        efficiency_table=table,
    )


def _run_one(name: str, setting: _Setting, *, quick: bool) -> CheckResult:
    started = time.perf_counter()
    try:
        summary, details = CHECKS[name](setting)
        status: Status = "passed"
    except Skip as skip:
        status, summary = "skipped", f"skipped: {skip}"
        details = {"reason": str(skip), "counts_as": "allowed (quick)" if quick else "failure (full mode)"}
    except Exception as error:  # a failing check is a line of the report; the others still run
        logger.exception("gpu check %s failed", name)
        status, summary = "failed", f"{type(error).__name__}: {' '.join(str(error).split())}"
        details = {"error": summary}
    return CheckResult(
        name=name,
        passed=status == "passed",
        status=status,
        seconds=round(time.perf_counter() - started, 2),
        summary=summary,
        details=details,
    )


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name(0)
    return f"cpu ({torch.get_num_threads()} threads)"


def write_gpu_check(report: GpuCheckReport, out_dir: Path) -> tuple[Path, Path]:
    """``gpu_check.json`` (the report) and ``gpu_check.md`` (a table, then the efficiency profile's table)."""
    json_path, md_path = out_dir / "gpu_check.json", out_dir / "gpu_check.md"
    write_json(json_path, report.model_dump(mode="json"))
    write_text(md_path, render_markdown(report))
    return json_path, md_path


def render_markdown(report: GpuCheckReport) -> str:
    mode = "quick (tiny model)" if report.quick else "full"
    verdict = "all checks passed" if report.ok else "FAILED"
    lines = [
        f"# GPU check: {verdict}",
        "",
        f"{mode} on {report.device}; model: {report.model}; {report.seconds:.0f} s in all.",
        "",
        "| check | result | seconds | what it found |",
        "|---|---|---:|---|",
        *(
            f"| {r.name} | {r.status} | {r.seconds:.1f} | {r.summary.replace('|', '/')} |"
            for r in report.checks
        ),
    ]
    if report.efficiency_table:
        lines += ["", "## Efficiency profile", "", report.efficiency_table]
    return "\n".join(lines) + "\n"


def iter_failures(report: GpuCheckReport) -> Iterator[CheckResult]:
    """The checks that make the run fail (a skip does, except in quick mode)."""
    return (r for r in report.checks if not (r.passed or (report.quick and r.status == "skipped")))
