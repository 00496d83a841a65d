"""Prefill efficiency: what 64 frames, 16 frames, MARC and every compared compressor cost (paper Fig. 5, App. A.3).

The claims, measured side by side in one run on one video:
  - every outer-LLM compressor (MARC's merge, MovieChat, VidCom2, ByteVideoLLM, FastVID with its
    attention scores, DyCoke's TTM, HoliTom) costs under 1 % of the 64-frame prefill;
  - MARC at the one-frame budget feeds the LLM at most 128 visual tokens per sample.

On this repository's CPU machine (the numbers in docs/benchmarks.md, "Prefill efficiency")::

    python benchmarks/prefill_efficiency.py --model qwen2.5-vl-3b-random

The real Qwen2.5-VL-3B architecture with random weights in bf16 (timing does not depend on the
weights). On a GPU, with the released weights and the paper's batch of 15::

    python benchmarks/prefill_efficiency.py --model Qwen/Qwen2.5-VL-3B-Instruct --batch-size 15

``--methods`` picks the methods (default: the paper's three, then the compared compressors at MARC
Table 1's budget and at SCORE Table 1's 25 %). ``--quick`` is a smoke run (16 merged patches per frame, 4 answer tokens); ``--model tiny`` builds
the embedded default's tiny checkpoint in a temporary directory.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import tempfile
import time
from pathlib import Path

import torch

from marc_ops.data.synthetic.frames import synthetic_video_frames
from marc_ops.eval.efficiency.profiler import DEFAULT_METHODS, ProfileSample, profile_efficiency
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report import format_table, reference_method
from marc_ops.io import write_json
from marc_ops.model import (
    QWEN2_5_VL_3B_NAME,
    build_qwen2_5_vl_3b_processor,
    build_qwen2_5_vl_3b_random,
    build_tiny_checkpoint,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
)
from marc_ops.video import VideoConfig, sample_frames

FRAMES = 64  # the baseline's frames; the other methods take theirs from these
MERGED_PATCH_PIXELS = 28 * 28
QUICK_PIXELS = 16 * MERGED_PATCH_PIXELS
QUICK_ANSWER_TOKENS = 4
MERGE_BUDGET = 0.01  # of the 64-frame prefill
TOKEN_BUDGET = 128  # visual tokens per sample at the one-frame budget
COMPARED_METHODS = (
    "moviechat-1f",
    "vidcom2@120",
    "bytevideollm@120",
    "vidcom2@0.25",
    "fastvid@0.25",
    "dycoke@0.25",
    "holitom@0.25",
)


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    started = time.perf_counter()
    print(f"load average at start: {_load()}", flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        model, processor, name = _model(args, Path(scratch))
        frames, fps, input_name = _frames(args)
        profile = profile_efficiency(
            model,
            processor,
            [ProfileSample(frames, fps=fps)] * args.batch_size,
            source=f"copies of {input_name}",
            methods=args.methods,
            answer_tokens=args.answer_tokens,
            device=args.device,
            repeats=args.repeats,
            model_name=name,
            input_name=input_name,
        )
    write_json(args.out, profile)
    print(format_table(profile))
    print()
    passed = _report_targets(profile)
    print(f"\nwrote {args.out}; {time.perf_counter() - started:.0f} s in all; load average at end: {_load()}")
    return 0 if passed else 1


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--model",
        default="qwen2.5-vl-3b-random",
        help="'tiny', 'qwen2.5-vl-3b-random' (the real architecture, random weights) or a checkpoint "
        "directory / hub id such as Qwen/Qwen2.5-VL-3B-Instruct",
    )
    parser.add_argument(
        "--frames-video",
        default="synthetic",
        help="'synthetic' or a video file, sampled at 1 fps up to 64 frames",
    )
    parser.add_argument(
        "--batch-size", type=int, default=None, help="default: 15 on CUDA (App. A.3), 1 on the CPU"
    )
    parser.add_argument(
        "--answer-tokens", type=int, default=16, help="new tokens every method generates, exactly"
    )
    parser.add_argument(
        "--repeats", type=int, default=1, help="timed runs per method; the median run is reported"
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        default=[*DEFAULT_METHODS, *COMPARED_METHODS],
        help="evaluation method names (marc_ops.config.methods), the first being the reference",
    )
    parser.add_argument("--max-pixels", type=int, default=128 * MERGED_PATCH_PIXELS, help="pixels per frame")
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float16", "float32"])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/prefill_efficiency.json"))
    parser.add_argument(
        "--quick",
        action="store_true",
        help=f"smoke run: {QUICK_PIXELS} pixels per frame, {QUICK_ANSWER_TOKENS} answer tokens",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.max_pixels, args.answer_tokens = QUICK_PIXELS, QUICK_ANSWER_TOKENS
    if args.batch_size is None:
        args.batch_size = 15 if torch.device(args.device).type == "cuda" else 1
    args.dtype = getattr(torch, args.dtype)
    return args


def _model(args: argparse.Namespace, scratch: Path):
    """(model on the device, processor, the name the profile records)."""
    if args.model == "qwen2.5-vl-3b-random":
        model = build_qwen2_5_vl_3b_random(args.dtype).to(args.device)
        return model, build_qwen2_5_vl_3b_processor(max_pixels=args.max_pixels), QWEN2_5_VL_3B_NAME
    if args.model == "tiny":
        path, name = build_tiny_checkpoint(scratch / "tiny"), "tiny Qwen2.5-VL (random weights)"
    else:
        path, name = args.model, args.model
    model = load_qwen2_5_vl(path, dtype=args.dtype, device=args.device)
    return model, load_qwen2_5_vl_processor(path), name


def _frames(args: argparse.Namespace):
    """(frames (64, H, W, 3) uint8, their fps, a description)."""
    if args.frames_video == "synthetic":
        # width = 2 x height in merged patches, max_pixels of them: 128 -> 8 x 16 patches = 224 x 448 px
        patches = args.max_pixels // MERGED_PATCH_PIXELS
        rows = max(1, math.isqrt(patches // 2))
        height, width = rows * 28, patches // rows * 28
        return synthetic_video_frames(FRAMES, height=height, width=width), 1.0, "synthetic 64 s video"
    config = VideoConfig(fps=1.0, max_frames=FRAMES, max_pixels=args.max_pixels)
    sampled = sample_frames(args.frames_video, config)
    return sampled.frames, config.fps, str(args.frames_video)


def _report_targets(profile: dict) -> bool:
    """Print the claim's checks, as ratios from this one run; True when all hold."""
    checked = EfficiencyProfile.model_validate(profile)
    ref = reference_method(checked)
    checks = [
        (
            f"{m.method} compressor / {ref.method} prefill = {m.merge_s / ref.prefill_s:.3%} "
            f"(target < {MERGE_BUDGET:.0%})",
            m.merge_s / ref.prefill_s < MERGE_BUDGET,
        )
        for m in checked.methods
        if m.merge_s > 0
    ]
    marc = next((m for m in checked.methods if m.method.startswith("marc")), None)
    if marc is not None:
        checks.append(
            (
                f"{marc.method} visual tokens per sample = {marc.visual_tokens:g} (target <= {TOKEN_BUDGET})",
                marc.visual_tokens <= TOKEN_BUDGET,
            )
        )
    for text, ok in checks:
        print(f"[{'PASS' if ok else 'FAIL'}] {text}")
    return all(ok for _, ok in checks)


def _load() -> str:
    return ", ".join(f"{x:.2f}" for x in os.getloadavg())


if __name__ == "__main__":
    sys.exit(main())
