"""Teacher throughput: samples per second of ``teacher_rewards`` one sample per ``generate`` call against
``batch_size`` samples per call (``TeacherConfig.batch_size``), side by side in one run.

The one-sample path is a reference copy, kept here, of the teacher before batching: each sample encoded
alone and generated with ``num_generations`` return sequences, drawn by ``generate``'s own sampler under a
per-sample torch seed. The batched arms call :func:`marc_ops.train.teacher.score_batch`, what the stage runs
(batch size 1 included: per-row sampling, one sample per call). All arms score the same samples with the
tiny profile's model architecture, teacher settings and video settings (``configs/tiny.yaml``; random
weights: a random model rarely stops early, so every completion runs to ``max_completion_length``, the
slow case). Arms are interleaved in every repeat; the median repeat is reported.

    python benchmarks/teacher_throughput.py                 # the numbers in docs/benchmarks.md (~1.5 min)
    python benchmarks/teacher_throughput.py --threads 2 --out benchmarks/results/teacher_throughput_2threads.json
    python benchmarks/teacher_throughput.py --quick         # a smoke run

Writes ``benchmarks/results/teacher_throughput.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl
import torch
from _provenance import command_line, machine

from marc_ops.compression import CompressionConfig
from marc_ops.config import load_params
from marc_ops.config.train import TeacherConfig
from marc_ops.data import load_videor1
from marc_ops.data.synthetic import SyntheticConfig, generate_corpus
from marc_ops.io import write_json
from marc_ops.model import build_tiny_checkpoint, compression_of, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.inputs import SampleBuilder, encode_prompt, model_inputs, whole_video_builder
from marc_ops.train.teacher import score_batch

ROOT = Path(__file__).resolve().parents[1]
BATCH_SIZES = (1, 4, 8)
SAMPLES = 16


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=SAMPLES, help=f"video samples per arm ({SAMPLES})")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats; the median is reported")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=list(BATCH_SIZES))
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (1: robust on cores shared with other jobs)"
    )
    parser.add_argument("--quick", action="store_true", help="4 samples, 1 repeat, 16 new tokens")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / "teacher_throughput.json"
    )
    args = parser.parse_args(argv)
    params = load_params(ROOT / "configs" / "tiny.yaml")
    teacher = params.train.teacher
    if args.quick:
        args.samples, args.repeats = 4, 1
        teacher = teacher.model_copy(update={"max_completion_length": 16})
    torch.set_num_threads(args.threads)
    load_start = os.getloadavg()[0]
    print(f"load average at start: {_load()}; torch threads: {args.threads}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        model_dir = build_tiny_checkpoint(Path(scratch) / "tiny", params.model.tiny)
        corpus = Path(scratch) / "corpus"
        n_videos = max(1, args.samples // 2)
        generate_corpus(
            SyntheticConfig(n_train_videos=n_videos, n_eval_videos=0, n_train_images=0, n_eval_images=0),
            corpus,
        )
        rows = load_videor1(corpus / "Video-R1-260k.json", corpus).rows
        rows = rows.filter(pl.col("data_type") == "video").head(args.samples).to_dicts()
        model = load_qwen2_5_vl(model_dir, compression=CompressionConfig(), dtype=params.model.dtype)
        model.eval().requires_grad_(False)
        processor = load_qwen2_5_vl_processor(model_dir)
        builder = whole_video_builder(params.video)
        arms = {
            "one sample per call (reference)": lambda: _reference(model, processor, teacher, rows, builder)
        }
        for size in args.batch_sizes:
            config = teacher.model_copy(update={"batch_size": size})
            arms[f"batch_size {size}"] = lambda config=config: _batched(
                model, processor, config, rows, builder
            )
        seconds: dict[str, list[float]] = {name: [] for name in arms}
        completions: dict[str, list[list[str]]] = {}
        for repeat in range(args.repeats):
            for name, arm in arms.items():
                started = time.perf_counter()
                completions[name] = arm()
                seconds[name].append(time.perf_counter() - started)
                print(f"repeat {repeat + 1}/{args.repeats} {name}: {seconds[name][-1]:.1f} s", flush=True)
    reference = statistics.median(seconds["one sample per call (reference)"])
    results = [
        {
            "arm": name,
            "median_s": statistics.median(times),
            "samples_per_s": len(rows) / statistics.median(times),
            "speedup_vs_reference": reference / statistics.median(times),
            "seconds": times,
            # the per-row sampler: every batch size draws batch_size 1's completions
            "completions_as_batch_size_1": completions[name] == completions.get("batch_size 1"),
        }
        for name, times in seconds.items()
    ]
    report = {
        "command": command_line("teacher_throughput.py", argv),
        "machine": machine(load_start),
        "torch_threads": args.threads,
        "samples": len(rows),
        "teacher": teacher.model_dump(mode="json"),
        "video": params.video.model_dump(mode="json"),
        "results": results,
    }
    write_json(args.out, report)
    print("\n| arm | median s | samples/s | vs reference | completions = batch_size 1's |")
    print("|---|---:|---:|---:|---|")
    for r in results:
        print(
            f"| {r['arm']} | {r['median_s']:.1f} | {r['samples_per_s']:.3f} | "
            f"{r['speedup_vs_reference']:.2f}x | {r['completions_as_batch_size_1']} |"
        )
    print(f"\nwrote {args.out}; load average at end: {_load()}")
    return 0


def _batched(
    model, processor, config: TeacherConfig, rows: list[dict[str, Any]], builder: SampleBuilder
) -> None:
    for start in range(0, len(rows), config.batch_size):
        score_batch(
            model, processor, config, rows[start : start + config.batch_size], builder, settings="bench"
        )


@torch.no_grad()
def _reference(
    model, processor, config: TeacherConfig, rows: list[dict[str, Any]], builder: SampleBuilder
) -> None:
    """The teacher before batching: one sample per ``generate`` call, its own torch seed."""
    return [_reference_sample(model, processor, config, row, builder) for row in rows]


def _reference_sample(
    model, processor, config: TeacherConfig, row: Mapping[str, Any], builder: SampleBuilder
):
    sample = builder(row)
    encoded = encode_prompt(processor, compression_of(model), sample)
    inputs = {k: v.to(model.device) for k, v in model_inputs([encoded], processor).items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(zlib.crc32(f"{config.seed}\0{row['problem_id']}".encode()))
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
    return processor.tokenizer.batch_decode(
        generated[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True
    )


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    raise SystemExit(main())
