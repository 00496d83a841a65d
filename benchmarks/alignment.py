"""Caption pretraining (``model.align``): does the tiny model learn to read the pixels, and at what cost?

Generates the tiny profile's synthetic corpus, builds the tiny Qwen2.5-VL from config, and
caption-trains it (:func:`marc_ops.train.align.alignment_check`) with the settings given here
(default: batch 8, 400 steps, lr 2e-3, what ``docs/design.md`` describes). Before and after, the
model captions every held-out shot and image; :func:`marc_ops.train.align.caption_accuracy` scores
the background colour it names (10 colours: 10 % by guessing) and exact captions. Writes
``benchmarks/results/alignment.json`` and prints the Markdown row for ``docs/benchmarks.md``.

    python benchmarks/alignment.py                 # ~4 min on 2 cores
    python benchmarks/alignment.py --steps 300     # another budget
    python benchmarks/alignment.py --vision-depth 4 --vision-hidden-size 192   # a larger vision tower
    python benchmarks/alignment.py --train-videos 144 --shape-radius 0.2 0.3   # more shots, larger shapes
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch
from _provenance import command_line, machine

from marc_ops.config import load_params
from marc_ops.config.train import AlignConfig
from marc_ops.io import write_json
from marc_ops.train.align import alignment_check

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
    parser.add_argument("--vision-depth", type=int, default=None, help="vision blocks (profile: model.tiny)")
    parser.add_argument(
        "--vision-hidden-size",
        type=int,
        default=None,
        help="vision width; the MLP is twice it (profile: model.tiny)",
    )
    parser.add_argument(
        "--train-videos", type=int, default=None, help="training videos of the corpus (profile: synthetic)"
    )
    parser.add_argument(
        "--shape-radius",
        type=float,
        nargs=2,
        metavar=("LOW", "HIGH"),
        default=None,
        help="shape radius range, fractions of the frame height (profile: synthetic.shape_radius)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "alignment.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # the tiny model is fastest on one thread
    params = load_params(ROOT / "configs" / "tiny.yaml")
    config = AlignConfig(
        max_steps=args.steps,
        per_device_train_batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        save_steps=args.steps,
        save_total_limit=1,
    )
    model = params.model.tiny
    if args.vision_depth is not None:
        # the last block keeps full attention, as in the profile's tower
        model = model.model_copy(
            update={
                "vision_depth": args.vision_depth,
                "vision_fullatt_block_indexes": (args.vision_depth - 1,),
            }
        )
    if args.vision_hidden_size is not None:
        model = model.model_copy(
            update={
                "vision_hidden_size": args.vision_hidden_size,
                "vision_intermediate_size": 2 * args.vision_hidden_size,
            }
        )
    corpus = {"n_train_videos": args.train_videos, "shape_radius": args.shape_radius}
    synthetic = params.synthetic.model_validate(  # validated with the overrides, not copied past the checks
        {**params.synthetic.model_dump(), **{k: v for k, v in corpus.items() if v is not None}}
    )
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        check = alignment_check(synthetic, model, params.video, config, Path(scratch))
    before, after = check.before, check.after
    report = {
        "command": command_line("alignment.py", argv),
        "machine": machine(load_start),
        "config": config.model_dump(mode="json"),
        "model": model.model_dump(mode="json"),
        "synthetic": synthetic.model_dump(mode="json"),
        "train_captions": check.train_captions,
        "heldout_captions": int(after["captions"]),
        "random_model": before,
        "aligned_model": after,
        "align_seconds": round(check.align_seconds, 1),
    }
    write_json(args.out, report)
    print(
        f"| {args.batch_size} x {args.steps} | {check.train_captions} | {int(after['captions'])} | "
        f"{100 * before['background_accuracy']:.1f} % | {100 * after['background_accuracy']:.1f} % | "
        f"{100 * after['shape_colour_accuracy']:.1f} % | {100 * after['exact_match']:.1f} % | "
        f"{check.align_seconds:.0f} s |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
