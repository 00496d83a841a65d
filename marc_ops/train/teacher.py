"""``teacher_rewards``: the frozen initial model's accuracy on the uncompressed input, once per video sample.

SPEC section 7's decision: the teacher of C-GRPO is the frozen initial model, so a_full (the mean
accuracy reward of G sampled completions on the uncompressed 64-frame input) is computed once per
sample and stored, instead of being regenerated at every training step. Images get no compression
and no bonus (r_c = 0), so only video samples are scored.

Batched: one ``generate`` call takes ``batch_size`` samples (``batch_size * G`` rows, left-padded).
Each row draws its tokens from its own generator, seeded by ``(seed, problem_id, generation index)``
(:class:`RowSampler`), so a sample's completions do not depend on which samples share its batch or
process (up to the floating-point effect of padding on the logits), and an interrupted run ends with
the same records as an uninterrupted one.

Sharded: launched with N processes (``python -m marc_ops.train.teacher --config run.yaml`` under
``accelerate launch``), process r scores every N-th pending sample from the r-th and appends to its own
``teacher_rewards.rank<r>.jsonl``; after all have finished, process 0 merges the shards into
``teacher_rewards.jsonl`` and writes the table. One process appends to ``teacher_rewards.jsonl`` itself.

Resumable: every finished sample is appended as one line and the file is fsynced. A rerun, with any
number of processes or any batch size, first merges whatever the records file and shard files hold and
skips the samples recorded with the same settings; a last line torn by a crash is dropped and
regenerated. A sample whose media cannot be read is recorded as ``failed`` with the reason and the run
goes on; a resumed run keeps it failed (delete its line to retry it).
"""

from __future__ import annotations

import hashlib
import json
import logging
import statistics
import time
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl
import torch
from accelerate import PartialState
from pydantic import ConfigDict, Field
from tqdm import tqdm
from transformers import (
    LogitsProcessor,
    LogitsProcessorList,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
)

from marc_ops.compression import CompressionConfig
from marc_ops.config import ConfigError
from marc_ops.config.train import LaunchConfig, TeacherConfig
from marc_ops.errors import MarcError
from marc_ops.io import append_jsonl, atomic_file, parse_jsonl, project_relative, weights_stamp, write_parquet
from marc_ops.model import compression_of, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.rewards import score_answer
from marc_ops.train.dataset import RunFile, as_rows
from marc_ops.train.inputs import (
    SampleBuilder,
    TrainingSample,
    encode_prompt,
    model_inputs,
    vmr_builder,
    whole_video_builder,
)
from marc_ops.train.launch import Launcher, TrainingLaunchError, accelerate_command, read_run_file
from marc_ops.train.progress import TrainingProgress
from marc_ops.video import MediaError, VideoConfig

logger = logging.getLogger(__name__)

RECORDS_FILE = "teacher_rewards.jsonl"
SHARD_GLOB = "teacher_rewards.rank*.jsonl"
TABLE_FILE = "teacher_rewards.parquet"
RUN_FILE = "run.yaml"  # a launched run's TeacherRun
TABLE_SCHEMA: dict[str, pl.DataType] = {
    "problem_id": pl.String(),
    "status": pl.String(),
    "a_full": pl.Float64(),
    "rewards": pl.List(pl.Float64()),
    "reason": pl.String(),
}
# How completions are drawn (RowSampler); part of the settings, so records drawn otherwise are regenerated.
SAMPLER = "row-generators-inverse-cdf-v1"


class TeacherRecordsError(MarcError, ValueError):
    """A records file with a damaged line other than the last one."""


def _no_barrier() -> None:
    return None


@dataclass(frozen=True)
class Shard:
    """This process's place among the processes that score together: process ``rank`` of ``world``, and
    ``barrier`` (returns once every process has called it; a single process has nothing to wait for)."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = field(default=_no_barrier, compare=False)

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not one of the {self.world} processes")

    @property
    def records_file(self) -> str:
        """Where this process appends: the records file itself when alone, else its own shard."""
        return RECORDS_FILE if self.world == 1 else f"teacher_rewards.rank{self.rank}.jsonl"


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
    """Records made with other settings (another model, dtype, config or sampler) are stale and dropped on
    resume. ``batch_size`` is left out: every completion draws from its own generator (:class:`RowSampler`),
    so the batch a sample ran in does not change its completions, and a resume with another batch size or
    process count keeps the records."""
    config_json = config.model_dump_json(exclude={"batch_size"})
    return hashlib.sha256(f"{config_json}\0{model}\0{dtype}\0{SAMPLER}".encode()).hexdigest()[:16]


def generation_seed(seed: int, problem_id: str, index: int) -> int:
    """The seed of completion ``index`` of sample ``problem_id``."""
    return zlib.crc32(f"{seed}\0{problem_id}\0{index}".encode())


class RowSampler(LogitsProcessor):
    """Samples each row's next token itself, from softmax(scores / temperature) with the row's own generator,
    and returns scores that are 0 at the drawn token and -inf elsewhere, so ``generate``'s own draw (no
    warpers: temperature 1, no top-k/top-p) can only pick it.

    ``generate`` applies the processors it builds (``suppress_tokens``, repetition penalty, ...) before the
    ones it is given, so suppressed tokens have probability 0 here. Each row draws one uniform number per step
    (inverse CDF), so its stream depends only on its seed and the step, never on the other rows.

    seeds: one per row of the generate call, in its order (sample-major: sample i's G rows are i*G ... i*G+G-1).
    """

    def __init__(self, seeds: Sequence[int], temperature: float) -> None:
        self.seeds = list(seeds)
        self.temperature = temperature
        self.generators: list[torch.Generator] = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        """scores: (rows, vocab) → (rows, vocab), 0 at each row's drawn token, -inf elsewhere."""
        if not self.generators:
            self.generators = [torch.Generator(scores.device).manual_seed(s) for s in self.seeds]
        if len(self.generators) != scores.shape[0]:
            raise ValueError(f"{scores.shape[0]} rows to sample but {len(self.generators)} seeds")
        cdf = torch.softmax(scores.double() / self.temperature, dim=-1).cumsum(dim=-1)
        uniforms = torch.cat(
            [torch.rand(1, generator=g, device=scores.device, dtype=torch.float64) for g in self.generators]
        )
        # right=True: the first token whose cumulative probability exceeds u, never a token of probability 0
        drawn = torch.searchsorted(cdf, (uniforms * cdf[:, -1]).unsqueeze(-1), right=True)
        drawn = drawn.clamp_max(scores.shape[-1] - 1)
        return torch.full_like(scores, float("-inf")).scatter_(-1, drawn, 0.0)


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
    shard: Shard = Shard(),
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
        shard: this process among those scoring together (every process calls this with the same rows);
            process ``rank`` scores pending samples ``rank, rank + world, ...``.
    Writes ``out_dir/teacher_rewards.jsonl`` (one record per sample: ``problem_id``, ``status``,
    ``rewards``, ``a_full``, ``completions``) and ``out_dir/teacher_rewards.parquet`` (the same
    without completions, :data:`TABLE_SCHEMA`); with several processes, process 0 writes both once all
    have finished, and the summary of another process counts only its own samples.
    """
    started = time.perf_counter()
    out_dir = Path(out_dir)
    records_path = out_dir / RECORDS_FILE
    builder = sample_builder or whole_video_builder()
    settings = settings_hash(config, weights_stamp(model_path), dtype)  # retrained weights: new records
    videos = [row for row in as_rows(rows) if row["data_type"] == "video"]
    done = _resume(out_dir, settings, shard)
    pending = [row for row in videos if str(row["problem_id"]) not in done]
    mine = pending[shard.rank :: shard.world]
    if mine:
        model, processor = _load_teacher(model_path, dtype, device, attn_implementation)
        with (
            open(out_dir / shard.records_file, "a", encoding="utf-8") as sink,
            tqdm(
                total=len(videos),
                initial=len(videos) - len(pending),
                desc="teacher_rewards" if shard.world == 1 else f"teacher_rewards[{shard.rank}]",
                unit="sample",
                disable=not progress,
            ) as bar,
        ):
            for start in range(0, len(mine), config.batch_size):
                for record in score_batch(
                    model, processor, config, mine[start : start + config.batch_size], builder, settings
                ):
                    append_jsonl(sink, [record])
                    done[record["problem_id"]] = record
                    bar.update(1)
    shard.barrier()  # every shard is complete
    if shard.rank == 0 and shard.world > 1:
        done = merge_records(out_dir, settings)
    table_path = out_dir / TABLE_FILE
    if shard.rank == 0:
        wanted = [done[str(row["problem_id"])] for row in videos]
        table = pl.DataFrame(
            [{key: record.get(key) for key in TABLE_SCHEMA} for record in wanted], schema=TABLE_SCHEMA
        )
        write_parquet(table_path, table)
    else:
        wanted = [done[str(row["problem_id"])] for row in mine]
    a_full = [r["a_full"] for r in wanted if r["status"] == "ok"]
    return TeacherSummary(
        records_path=records_path,
        table_path=table_path,
        n_video_samples=len(videos),
        n_generated=len(mine),
        n_resumed=len(videos) - len(pending),
        n_failed=sum(r["status"] == "failed" for r in wanted),
        mean_a_full=statistics.fmean(a_full) if a_full else None,
        seconds=time.perf_counter() - started,
    )


def read_a_full(table_path: Path | str) -> dict[str, float]:
    """a_full by ``problem_id`` from ``teacher_rewards.parquet`` (failed samples are absent)."""
    table = pl.read_parquet(table_path).filter(pl.col("status") == "ok")
    return dict(zip(table["problem_id"].to_list(), table["a_full"].to_list(), strict=True))


def merge_records(out_dir: Path, settings: str) -> dict[str, dict[str, Any]]:
    """The finished records of ``out_dir`` by ``problem_id``: ``teacher_rewards.jsonl``, then every shard file
    (any number, from a run with any process count). Torn last lines and records with other settings are
    dropped; if a shard was read or anything dropped, the records file is rewritten (atomically) with what
    is kept and the shard files are removed. Call it from one process only."""
    out_dir.mkdir(parents=True, exist_ok=True)
    records_path = out_dir / RECORDS_FILE
    shards = sorted(out_dir.glob(SHARD_GLOB))
    records: dict[str, dict[str, Any]] = {}
    rewrite = bool(shards)
    for path in [records_path, *shards]:
        if not path.exists():
            continue
        values, tail = parse_jsonl(path.read_bytes(), path, TeacherRecordsError)
        kept = 0
        for _, record in values:
            if record.get("settings") == settings and record["problem_id"] not in records:
                records[record["problem_id"]] = record
                kept += 1
        if tail:
            logger.warning(
                "%s: dropping a torn last line (a run was killed mid-write); that sample runs again", path
            )
        if kept < len(values):
            logger.warning(
                "%s: dropping %d stale record(s) (other settings) or duplicates; stale samples run again",
                path,
                len(values) - kept,
            )
        rewrite = rewrite or bool(tail) or kept < len(values)
    if rewrite:
        with atomic_file(records_path) as handle:
            handle.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in records.values())
        for path in shards:
            path.unlink()
    return records


def _resume(out_dir: Path, settings: str, shard: Shard) -> dict[str, dict[str, Any]]:
    """What every process resumes from: process 0 merges the files, then the others read the merged file."""
    if shard.rank == 0:
        done = merge_records(out_dir, settings)
    shard.barrier()
    if shard.rank != 0:
        records_path = out_dir / RECORDS_FILE
        values = (
            parse_jsonl(records_path.read_bytes(), records_path, TeacherRecordsError)[0]
            if records_path.exists()
            else []
        )
        done = {record["problem_id"]: record for _, record in values}
    return done


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
def score_batch(
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    config: TeacherConfig,
    rows: Sequence[Mapping[str, Any]],
    builder: SampleBuilder,
    settings: str,
) -> list[dict[str, Any]]:
    """One record per row, in order: the samples that could be built are generated in one call."""
    samples: dict[int, TrainingSample] = {}
    failures: dict[int, dict[str, Any]] = {}
    for i, row in enumerate(rows):
        problem_id = str(row["problem_id"])
        try:
            samples[i] = builder(row)
        except MediaError as err:
            logger.warning("teacher_rewards: sample %s failed: %s", problem_id, err)
            failures[i] = {
                "problem_id": problem_id,
                "settings": settings,
                "status": "failed",
                "reason": str(err),
                "rewards": None,
                "a_full": None,
                "completions": None,
            }
    completions = _generate(model, processor, config, list(samples.values()))
    scored = {
        i: _record(rows[i], settings, sample, texts)
        for (i, sample), texts in zip(samples.items(), completions, strict=True)
    }
    return [scored[i] if i in scored else failures[i] for i in range(len(rows))]


def _generate(
    model: Qwen2_5_VLForConditionalGeneration,
    processor: Qwen2_5_VLProcessor,
    config: TeacherConfig,
    samples: Sequence[TrainingSample],
) -> list[list[str]]:
    """``num_generations`` completions of each sample, from one left-padded ``generate`` call."""
    if not samples:
        return []
    g = config.num_generations
    encoded = [encode_prompt(processor, compression_of(model), sample) for sample in samples]
    inputs = {k: v.to(model.device) for k, v in model_inputs(encoded, processor).items()}
    seeds = [
        generation_seed(config.seed, str(sample.row["problem_id"]), index)
        for sample in samples
        for index in range(g)
    ]
    generated = model.generate(
        **inputs,
        do_sample=True,  # generate's own draw picks RowSampler's token: the only one with a finite score
        temperature=1.0,
        top_p=1.0,
        top_k=0,
        max_new_tokens=config.max_completion_length,
        num_return_sequences=g,
        suppress_tokens=[processor.image_token_id, processor.video_token_id],
        logits_processor=LogitsProcessorList([RowSampler(seeds, config.temperature)]),
    )
    texts = processor.tokenizer.batch_decode(
        generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )
    return [texts[i * g : (i + 1) * g] for i in range(len(samples))]


def _record(
    row: Mapping[str, Any], settings: str, sample: TrainingSample, completions: list[str]
) -> dict[str, Any]:
    rewards = [score_answer(text, row["solution"], row["problem_type"]) for text in completions]
    return {
        "problem_id": str(row["problem_id"]),
        "settings": settings,
        "status": "ok",
        "reason": None,
        "rewards": rewards,
        "a_full": statistics.fmean(rewards),
        "completions": completions,
        "num_frames": len(sample.frames),
    }


class TeacherRun(RunFile):
    """The teacher's scoring as a file (``run.yaml``): what ``python -m marc_ops.train.teacher --config`` reads."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_path: str = Field(description="the initial policy: a hub id or a directory")
    train_rows: Path = Field(description="parquet of manifest-schema rows (train_subset)")
    output_dir: Path
    video: VideoConfig = VideoConfig()
    vmr_selection: Path | None = Field(
        default=None, description="vmr_selection.parquet: score the VMR input (None: the whole video)"
    )
    dtype: str = "auto"
    device: str = Field(default="cpu", description="'cpu', or 'cuda': each process then takes its own GPU")
    attn_implementation: str | None = Field(
        default=None, description="the profile's model.attn_implementation (None: the device's default)"
    )
    teacher: TeacherConfig


def run_teacher(run: TeacherRun, shard: Shard = Shard(), *, progress: bool = True) -> TeacherSummary:
    """``compute_teacher_rewards`` on the files a ``TeacherRun`` names, as process ``shard.rank``."""
    run = run.resolved()
    return compute_teacher_rewards(
        run.rows(run.train_rows),
        run.model_path,
        run.teacher,
        run.output_dir,
        dtype=run.dtype,
        device=run.device,
        attn_implementation=run.attn_implementation,
        sample_builder=(
            whole_video_builder(run.video)
            if run.vmr_selection is None
            else vmr_builder(run.vmr_selection, run.video)
        ),
        progress=progress,
        shard=shard,
    )


def launch_teacher(run_file: Path, project_dir: Path, launch: LaunchConfig, launcher: Launcher) -> None:
    """``accelerate launch ... -m marc_ops.train.teacher --config <run_file>`` with ``launch.processes``
    processes, run by ``launcher`` from the project folder; returns once all have finished (the merged records
    and the table written)."""
    if not (project_dir / launch.accelerate_config).is_file():
        raise ConfigError(
            f"train.launch.teacher: accelerate_config {launch.accelerate_config} is not a file in {project_dir}; "
            "name one of configs/accelerate/ (cpu_2proc.yaml on a CPU, multi_gpu.yaml on GPUs)"
        )
    command = accelerate_command(
        __name__, project_relative(run_file, project_dir), launch, wrapper=getattr(launcher, "wrapper", None)
    )
    launcher(command, project_dir)
    if not (run_file.parent / TABLE_FILE).is_file():
        raise TrainingLaunchError(
            f"the launched teacher ended without its table at {run_file.parent / TABLE_FILE}"
        )


def main(argv: Sequence[str] | None = None, progress: TrainingProgress | None = None) -> int:
    """``python -m marc_ops.train.teacher --config RUN_FILE``, alone or as one of the processes
    ``accelerate launch`` starts (each scores its share; process 0 merges). ``progress`` hears the main
    process's summary line (a driver's :class:`TrainingProgress`, e.g. the Dagster Pipes one)."""
    run = read_run_file(
        argv,
        prog="python -m marc_ops.train.teacher",
        run_type=TeacherRun,
        description="Score the teacher's a_full per video sample.",
    )
    state = PartialState(cpu=not run.device.startswith("cuda"))
    if run.device.startswith("cuda"):
        run = run.model_copy(update={"device": str(state.device)})  # each process its own GPU
    shard = Shard(state.process_index, state.num_processes, state.wait_for_everyone)
    summary = run_teacher(run, shard, progress=state.is_main_process)
    line = (
        f"teacher_rewards: process {shard.rank} of {shard.world} scored {summary.n_generated} sample(s) "
        f"in {summary.seconds:.1f} s"
    )
    logger.info(line)
    if state.is_main_process and progress is not None:
        progress.note(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
