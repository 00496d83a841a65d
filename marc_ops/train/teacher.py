"""``teacher_rewards``: the frozen initial model's accuracy on the uncompressed input, once per video sample.

SPEC section 7's decision: the teacher of C-GRPO is the frozen initial model, so a_full (the mean
accuracy reward of G sampled completions on the uncompressed 64-frame input) is computed once per
sample and stored, instead of being regenerated at every training step. Images get no compression
and no bonus (r_c = 0), so only video samples are scored.

Resumable: every finished sample is appended to ``teacher_rewards.jsonl`` as one line and the file
is fsynced. A rerun skips the samples already recorded (with the same settings); a last line torn
by a crash is dropped and regenerated. Each sample samples from its own generator, seeded by
``(seed, problem_id)``, so an interrupted run ends with the same records as an uninterrupted one.
A sample whose media cannot be read is recorded as ``failed`` with the reason and the run goes on;
a resumed run keeps it failed (delete its line to retry it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl
import torch
from tqdm import tqdm
from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor

from marc_ops.compression import CompressionConfig
from marc_ops.config.train import TeacherConfig
from marc_ops.errors import MarcError
from marc_ops.io import append_jsonl, atomic_file, parse_jsonl, weights_stamp, write_parquet
from marc_ops.model import compression_of, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.rewards import score_answer
from marc_ops.train.dataset import as_rows
from marc_ops.train.inputs import SampleBuilder, encode_prompt, model_inputs, whole_video_builder
from marc_ops.video import MediaError

logger = logging.getLogger(__name__)

RECORDS_FILE = "teacher_rewards.jsonl"
TABLE_FILE = "teacher_rewards.parquet"
TABLE_SCHEMA: dict[str, pl.DataType] = {
    "problem_id": pl.String(),
    "status": pl.String(),
    "a_full": pl.Float64(),
    "rewards": pl.List(pl.Float64()),
    "reason": pl.String(),
}


class TeacherRecordsError(MarcError, ValueError):
    """A records file with a damaged line other than the last one."""


@dataclass(frozen=True)
class TeacherSummary:
    records_path: Path
    table_path: Path
    n_video_samples: int
    n_generated: int
    n_resumed: int
    n_failed: int
    mean_a_full: float | None
    seconds: float


def settings_hash(config: TeacherConfig, model: str, dtype: torch.dtype | str) -> str:
    """Records made with other settings (another model, dtype or config) are stale and dropped on resume."""
    return hashlib.sha256(f"{config.model_dump_json()}\0{model}\0{dtype}".encode()).hexdigest()[:16]


def sample_seed(seed: int, problem_id: str) -> int:
    return zlib.crc32(f"{seed}\0{problem_id}".encode())


def compute_teacher_rewards(
    rows: pl.DataFrame | Iterable[Mapping[str, Any]],
    model_path: str | Path,
    config: TeacherConfig,
    out_dir: Path | str,
    *,
    dtype: torch.dtype | str = "auto",
    device: str = "cpu",
    attn_implementation: str | None = None,
    sample_builder: SampleBuilder | None = None,
    progress: bool = True,
) -> TeacherSummary:
    """Score every video row with the uncompressed teacher, resuming what ``out_dir`` already holds.

    Args:
        rows: manifest-schema rows (``problem_id``, ``data_type``, ``media_path``, the prompt and
            solution fields); image rows are ignored.
        model_path: the initial model (hub id or directory); it is loaded with compression off.
        dtype, device, attn_implementation: how to load it (the profile's ``model.dtype``, ``model.device``
            and ``model.attn_implementation``; FlashAttention-2 with float32 is refused).
        sample_builder: the frames each sample shows (default: the whole video, 1 fps, <= 64 frames;
            the VMR selection's builder when available).
    Writes ``out_dir/teacher_rewards.jsonl`` (one record per sample: ``problem_id``, ``status``,
    ``rewards``, ``a_full``, ``completions``) and ``out_dir/teacher_rewards.parquet`` (the same
    without completions, :data:`TABLE_SCHEMA`).
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    records_path = out_dir / RECORDS_FILE
    builder = sample_builder or whole_video_builder()
    settings = settings_hash(config, weights_stamp(model_path), dtype)  # retrained weights: new records
    videos = [row for row in as_rows(rows) if row["data_type"] == "video"]
    done = _open_records(records_path, settings)
    pending = [row for row in videos if str(row["problem_id"]) not in done]
    if pending:
        model, processor = _load_teacher(model_path, dtype, device, attn_implementation)
        with (
            open(records_path, "a", encoding="utf-8") as sink,
            tqdm(
                total=len(videos),
                initial=len(videos) - len(pending),
                desc="teacher_rewards",
                unit="sample",
                disable=not progress,
            ) as bar,
        ):
            for row in pending:
                record = _score_sample(model, processor, config, row, builder, settings)
                append_jsonl(sink, [record])
                done[record["problem_id"]] = record
                bar.update(1)
    wanted = [done[str(row["problem_id"])] for row in videos]
    table = pl.DataFrame(
        [{key: record.get(key) for key in TABLE_SCHEMA} for record in wanted], schema=TABLE_SCHEMA
    )
    table_path = out_dir / TABLE_FILE
    write_parquet(table_path, table)
    a_full = [r["a_full"] for r in wanted if r["status"] == "ok"]
    return TeacherSummary(
        records_path=records_path,
        table_path=table_path,
        n_video_samples=len(videos),
        n_generated=len(pending),
        n_resumed=len(videos) - len(pending),
        n_failed=sum(r["status"] == "failed" for r in wanted),
        mean_a_full=statistics.fmean(a_full) if a_full else None,
        seconds=time.perf_counter() - started,
    )


def read_a_full(table_path: Path | str) -> dict[str, float]:
    """a_full by ``problem_id`` from ``teacher_rewards.parquet`` (failed samples are absent)."""
    table = pl.read_parquet(table_path).filter(pl.col("status") == "ok")
    return dict(zip(table["problem_id"].to_list(), table["a_full"].to_list(), strict=True))


def _load_teacher(
    model_path: str | Path, dtype: torch.dtype | str, device: str, attn_implementation: str | None
) -> tuple[Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLProcessor]:
    # the teacher sees every frame: no compression
    model = load_qwen2_5_vl(
        model_path,
        compression=CompressionConfig(),
        dtype=dtype,
        device=device,
        attn_implementation=attn_implementation,
    )
    model.eval().requires_grad_(False)
    return model, load_qwen2_5_vl_processor(model_path)


@torch.no_grad()
def _score_sample(
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    config: TeacherConfig,
    row: Mapping[str, Any],
    builder: SampleBuilder,
    settings: str,
) -> dict[str, Any]:
    problem_id = str(row["problem_id"])
    base = {"problem_id": problem_id, "settings": settings}
    try:
        sample = builder(row)
    except MediaError as err:
        logger.warning("teacher_rewards: sample %s failed: %s", problem_id, err)
        return {
            **base,
            "status": "failed",
            "reason": str(err),
            "rewards": None,
            "a_full": None,
            "completions": None,
        }
    encoded = encode_prompt(processor, compression_of(model), sample)
    inputs = {k: v.to(model.device) for k, v in model_inputs([encoded], processor).items()}
    generator_seed = sample_seed(config.seed, problem_id)
    with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
        torch.manual_seed(generator_seed)
        generated = model.generate(
            **inputs,
            do_sample=True,
            temperature=config.temperature,
            top_p=1.0,
            top_k=0,
            max_new_tokens=config.max_completion_length,
            num_return_sequences=config.num_generations,
            suppress_tokens=[processor.image_token_id, processor.video_token_id],
        )
    completions = processor.tokenizer.batch_decode(
        generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    rewards = [score_answer(text, row["solution"], row["problem_type"]) for text in completions]
    return {
        **base,
        "status": "ok",
        "reason": None,
        "rewards": rewards,
        "a_full": statistics.fmean(rewards),
        "completions": completions,
        "num_frames": len(sample.frames),
    }


def _open_records(path: Path, settings: str) -> dict[str, dict[str, Any]]:
    """The finished records of ``path`` by ``problem_id``; a torn last line or stale records are rewritten away."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        return {}
    values, tail = parse_jsonl(path.read_bytes(), path, TeacherRecordsError)
    records: dict[str, dict[str, Any]] = {}
    for _, record in values:
        if record.get("settings") == settings:
            records[record["problem_id"]] = record
    dropped = len(values) - len(records)
    if tail:
        logger.warning(
            "%s: dropping a torn last line (a run was killed mid-write); that sample runs again", path
        )
    if dropped:
        logger.warning(
            "%s: dropping %d stale record(s) (other settings) or duplicates; stale samples run again",
            path,
            dropped,
        )
    if tail or dropped:
        with atomic_file(path) as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values())
    return records
