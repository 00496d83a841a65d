"""Decode overlap: what reading the media off the main loop buys training and evaluation on the tiny profile.

The claims, measured side by side in one run (interleaved repeats, the median counts):
  - training: SFT and C-GRPO optimizer steps per second with the media decoded in 2 DataLoader
    worker processes (``train.*.dataloader_num_workers: 2``) against the training loop decoding them (0);
  - evaluation: samples per second of ``run_benchmark`` answering the samples longest first
    (``eval.sort_by_length``), reading the next batch's frames in a 2-thread pool (``eval.decode_workers: 2``),
    and both, against today's serial path (read each batch's frames, then generate, in file order);
  - the pool overlaps decoding with itself: decord, PyAV and torch's resize release the GIL (the same
    videos' frames built in 1 thread and in 2);
  - none of it changes a result: the trained weights and every sample's record are compared.

On this repository's CPU machine (the numbers in docs/benchmarks.md, "Decode overlap")::

    python benchmarks/decode_overlap.py

The tiny profile's model sizes, video sampling, batch sizes and answer length, its untrained base model
(timing does not depend on the weights, except that an untrained model always answers at full length)
and a small synthetic corpus with some long videos. ``--quick`` is a smoke run.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import polars as pl
import torch
from _provenance import command_line, machine
from transformers import TrainerCallback

from marc_ops.config.methods import resolve_method
from marc_ops.config.profile import load_params
from marc_ops.config.tasks import resolve_task
from marc_ops.data import load_task_rows, load_videor1
from marc_ops.data.synthetic import generate_corpus
from marc_ops.eval.qwen_adapter import QwenAdapter
from marc_ops.eval.runner import run_benchmark
from marc_ops.io import write_json
from marc_ops.model import build_tiny_checkpoint
from marc_ops.train.cgrpo import train_cgrpo
from marc_ops.train.inputs import view_builder, whole_video_builder
from marc_ops.train.sft import train_sft

PROFILE = Path("configs/tiny.yaml")
CORPUS = {
    "n_train_videos": 8,
    "n_eval_videos": 16,
    "n_train_images": 4,
    "n_eval_images": 8,
    "n_eval_long_videos": 4,
}
QUICK_CORPUS = {**CORPUS, "n_train_videos": 4, "n_eval_videos": 3, "n_eval_long_videos": 1}
EVAL_METHOD = "baseline-64f"  # the whole video, up to 64 frames: the most decoding per sample
WORKERS = 2


class StepClock(TrainerCallback):
    """Wall seconds from the start of training to its end, and the steps trained (saving the model excluded)."""

    def __init__(self) -> None:
        self.started = self.seconds = 0.0
        self.steps = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.started, self.steps = time.perf_counter(), state.global_step

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.seconds = time.perf_counter() - self.started
        self.steps = state.global_step - self.steps


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    load_start = os.getloadavg()[0]
    params = load_params(PROFILE)
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        corpus = scratch / "corpus"
        synthetic = params.synthetic.model_copy(update=QUICK_CORPUS if args.quick else CORPUS)
        generate_corpus(synthetic, corpus)
        model = build_tiny_checkpoint(scratch / "model", params.model.tiny)
        steps = 2 if args.quick else args.steps
        training = {
            "sft": _train_sft(params, corpus, model, scratch, steps, args.repeats),
            "cgrpo": _train_cgrpo(params, corpus, model, scratch, max(steps // 2, 2), args.repeats),
        }
        evaluation = _evaluate(params, corpus, model, scratch, args.repeats)
        decode = _decode_threads(params, corpus, args.repeats)
    report = {
        "command": command_line("decode_overlap.py", argv),
        "machine": {**machine(load_start), "torch_threads": torch.get_num_threads()},
        "setup": {
            "profile": str(PROFILE),
            "corpus": synthetic.model_dump(include=set(CORPUS)),
            "workers": WORKERS,
            "repeats": args.repeats,
            "eval_method": EVAL_METHOD,
        },
        "training": training,
        "evaluation": evaluation,
        "decode_threads": decode,
    }
    write_json(args.out, report)
    print(_markdown(report))
    print(f"\nwrote {args.out}")
    return 0


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a smaller corpus, 2 steps, 1 repeat")
    parser.add_argument("--steps", type=int, default=12, help="SFT steps a run (C-GRPO: half)")
    parser.add_argument(
        "--repeats", type=int, help="runs of each setting, interleaved (default 3; 1 with --quick)"
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/decode_overlap.json"))
    args = parser.parse_args(argv)
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    return args


# --- training -----------------------------------------------------------------------------------


def _interleaved(settings: dict[str, Callable[[int], dict]], repeats: int) -> dict[str, list[dict]]:
    """Each setting run ``repeats`` times, alternating settings so load drifts hit all alike, after one untimed
    run of the first setting (one-off costs: kernels, allocator, file cache)."""
    next(iter(settings.values()))(-1)
    runs: dict[str, list[dict]] = {name: [] for name in settings}
    for repeat in range(repeats):
        for name, run in settings.items():
            runs[name].append(run(repeat))
    return runs


def _training_summary(runs: dict[str, list[dict]]) -> dict:
    rates = {name: statistics.median(r["steps_per_s"] for r in results) for name, results in runs.items()}
    best = {name: max(r["steps_per_s"] for r in results) for name, results in runs.items()}
    weights = {name: {r["weights"] for r in results} for name, results in runs.items()}
    return {
        "best_steps_per_s": best,
        "best_ratio_workers_to_none": best["workers_2"] / best["workers_0"],
        "runs": {
            name: [{k: v for k, v in r.items() if k != "weights"} for r in results]
            for name, results in runs.items()
        },
        "median_steps_per_s": rates,
        "ratio_workers_to_none": rates["workers_2"] / rates["workers_0"],
        "same_weights": len(set.union(*weights.values())) == 1,
    }


def _train_sft(params: Any, corpus: Path, model: Path, scratch: Path, steps: int, repeats: int) -> dict:
    rows = load_videor1(corpus / "Video-R1-COT-165k.json", corpus).rows
    base = params.train.sft.model_copy(
        update={"max_steps": steps, "save_steps": steps, "save_total_limit": 1}
    )

    def setting(workers: int) -> Callable[[int], dict]:
        def run(repeat: int) -> dict:
            config = base.model_copy(update={"dataloader_num_workers": workers})
            clock = StepClock()
            out = scratch / f"sft_{workers}_{repeat}"
            final = train_sft(
                config, rows, model, out, sample_builder=view_builder(params.video), callbacks=[clock]
            )
            return _timed(clock, final)

        return run

    return _training_summary(_interleaved({f"workers_{w}": setting(w) for w in (0, WORKERS)}, repeats))


def _train_cgrpo(params: Any, corpus: Path, model: Path, scratch: Path, steps: int, repeats: int) -> dict:
    rows = load_videor1(corpus / "Video-R1-260k.json", corpus).rows
    a_full = {str(pid): 0.5 for pid in rows["problem_id"]}
    base = params.train.cgrpo.model_copy(
        update={"max_steps": steps, "save_steps": steps, "save_total_limit": 1}
    )

    def setting(workers: int) -> Callable[[int], dict]:
        def run(repeat: int) -> dict:
            config = base.model_copy(update={"dataloader_num_workers": workers})
            clock = StepClock()
            out = scratch / f"cgrpo_{workers}_{repeat}"
            final = train_cgrpo(
                config,
                rows,
                a_full,
                model,
                out,
                sample_builder=whole_video_builder(params.video),
                callbacks=[clock],
            )
            return _timed(clock, final)

        return run

    return _training_summary(_interleaved({f"workers_{w}": setting(w) for w in (0, WORKERS)}, repeats))


def _timed(clock: StepClock, final: Path) -> dict:
    return {
        "steps": clock.steps,
        "seconds": round(clock.seconds, 3),
        "steps_per_s": clock.steps / clock.seconds,
        "weights": (final / "model.safetensors").read_bytes(),
        "load_end": os.getloadavg()[0],
    }


# --- evaluation ---------------------------------------------------------------------------------


EVAL_SETTINGS = {
    "serial": {"decode_workers": 0, "sort_by_length": False},
    "sorted": {"decode_workers": 0, "sort_by_length": True},
    "prefetch": {"decode_workers": WORKERS, "sort_by_length": False},
    "prefetch_sorted": {"decode_workers": WORKERS, "sort_by_length": True},
}


def _evaluate(params: Any, corpus: Path, model: Path, scratch: Path, repeats: int) -> dict:
    task, method = resolve_task("synthetic"), resolve_method(EVAL_METHOD)
    rows = load_task_rows(task, corpus / "eval").rows

    def setting(name: str, options: dict) -> Callable[[int], dict]:
        def run(repeat: int) -> dict:
            adapter = QwenAdapter(
                model,
                method,
                video=params.video,
                dtype=params.model.dtype,
                max_new_tokens=params.eval.max_new_tokens,
                decode_workers=options["decode_workers"],
            )
            _ = adapter.model, adapter.processor  # loaded before the clock starts
            out = scratch / "eval" / f"{name}_{repeat}.jsonl"
            summary = run_benchmark(
                task,
                method,
                rows,
                adapter,
                out,
                batch_size=params.eval.batch_size,
                answer_rule=params.eval.answer_rule,
                progress=False,
                video=params.video,
                sort_by_length=options["sort_by_length"],
            )
            records = pl.read_ndjson(out).sort("problem_id")
            return {
                "samples": summary.n_generated,
                "seconds": round(summary.elapsed_s, 3),
                "samples_per_s": summary.n_generated / summary.elapsed_s,
                "records": records.drop("latency_s", strict=False).to_dicts(),
                "load_end": os.getloadavg()[0],
            }

        return run

    runs = _interleaved({name: setting(name, options) for name, options in EVAL_SETTINGS.items()}, repeats)
    rates = {name: statistics.median(r["samples_per_s"] for r in results) for name, results in runs.items()}
    best = {name: max(r["samples_per_s"] for r in results) for name, results in runs.items()}
    reference = runs["serial"][0]["records"]
    return {
        "best_samples_per_s": best,
        "best_ratio_to_serial": {name: rate / best["serial"] for name, rate in best.items()},
        "samples": len(rows),
        "batch_size": params.eval.batch_size,
        "max_new_tokens": params.eval.max_new_tokens,
        "runs": {
            name: [{k: v for k, v in r.items() if k != "records"} for r in results]
            for name, results in runs.items()
        },
        "median_samples_per_s": rates,
        "ratio_sorted_to_serial": rates["sorted"] / rates["serial"],
        "ratio_prefetch_to_serial": rates["prefetch"] / rates["serial"],
        "ratio_prefetch_sorted_to_serial": rates["prefetch_sorted"] / rates["serial"],
        "same_records": all(r["records"] == reference for results in runs.values() for r in results),
    }


# --- decoding in threads ------------------------------------------------------------------------


def _decode_threads(params: Any, corpus: Path, repeats: int) -> dict:
    """The eval videos' frames built in 1 thread and in 2 (the same builder the adapter's pool runs)."""
    rows = load_task_rows(resolve_task("synthetic"), corpus / "eval").rows
    videos = list(rows.filter(pl.col("data_type") == "video").unique("media_path").iter_rows(named=True))
    build = whole_video_builder(
        params.video.model_copy(update={"max_frames": resolve_method(EVAL_METHOD).max_frames})
    )

    def timed(threads: int) -> float:
        started = time.perf_counter()
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(build, videos))
        return time.perf_counter() - started

    seconds: dict[str, list[float]] = {"threads_1": [], "threads_2": []}
    for _ in range(repeats):
        seconds["threads_1"].append(timed(1))
        seconds["threads_2"].append(timed(2))
    medians = {name: statistics.median(values) for name, values in seconds.items()}
    return {
        "videos": len(videos),
        "seconds": seconds,
        "median_seconds": medians,
        "speedup_2_threads": medians["threads_1"] / medians["threads_2"],
    }


def _markdown(report: dict) -> str:
    lines = [
        "| Path | Setting | Median rate | Ratio to today's | Fastest run | Ratio to today's |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for trainer in ("sft", "cgrpo"):
        result = report["training"][trainer]
        median, best = result["median_steps_per_s"], result["best_steps_per_s"]
        for name, rate in median.items():
            lines.append(
                f"| {trainer} training | {name} | {rate:.3f} steps/s | {rate / median['workers_0']:.2f} "
                f"| {best[name]:.3f} steps/s | {best[name] / best['workers_0']:.2f} |"
            )
    result = report["evaluation"]
    median, best = result["median_samples_per_s"], result["best_samples_per_s"]
    for name, rate in median.items():
        lines.append(
            f"| evaluation | {name} | {rate:.2f} samples/s | {rate / median['serial']:.2f} "
            f"| {best[name]:.2f} samples/s | {best[name] / best['serial']:.2f} |"
        )
    decode = report["decode_threads"]
    lines.append(
        f"\nBuilding {decode['videos']} videos' frames: {decode['median_seconds']['threads_1']:.2f} s in 1 thread, "
        f"{decode['median_seconds']['threads_2']:.2f} s in 2 ({decode['speedup_2_threads']:.2f}x)."
    )
    lines.append(
        f"Same weights: SFT {report['training']['sft']['same_weights']}, C-GRPO "
        f"{report['training']['cgrpo']['same_weights']}; same records: {report['evaluation']['same_records']}. "
        f"Load average {report['machine']['load_start']:.2f} at the start, {report['machine']['load_end']:.2f} at the end."
    )
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
