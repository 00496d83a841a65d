"""Caption pretraining (``model.align``): does the tiny model learn to read the pixels, and at what cost?

Generates the tiny profile's synthetic corpus, builds the tiny Qwen2.5-VL from config, and
caption-trains it (:func:`marc_ops.model.align.align_tiny_model`) with the settings given here
(default: batch 8, 400 steps, lr 2e-3, what ``docs/design.md`` describes). Before and after, the
model captions every held-out shot and image; :func:`marc_ops.model.align.caption_accuracy` scores
the background colour it names (10 colours: 10 % by guessing) and exact captions. Writes
``benchmarks/results/alignment.json`` and prints the Markdown row for ``docs/benchmarks.md``.

    python benchmarks/alignment.py                 # ~4 min on 2 cores
    python benchmarks/alignment.py --steps 300     # another budget
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from marc_ops.config import load_params
from marc_ops.data.synthetic import generate_corpus
from marc_ops.io import write_json
from marc_ops.model.align import align_tiny_model, caption_accuracy, caption_rows
from marc_ops.model.builders import build_tiny_checkpoint
from marc_ops.model.loading import load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.config import AlignConfig

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--learning-rate", type=float, default=2e-3)
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
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        work = Path(scratch)
        generate_corpus(params.synthetic, work / "corpus")
        build_tiny_checkpoint(work / "base", params.model.tiny)
        held_out = caption_rows(work / "corpus", params.video, split="eval")

        def measure(path: Path) -> dict[str, float]:
            model = load_qwen2_5_vl(path, dtype=torch.float32, device="cpu", attn_implementation="sdpa")
            return caption_accuracy(model, load_qwen2_5_vl_processor(path), held_out, params.video)

        before = measure(work / "base")
        started = time.perf_counter()
        aligned = align_tiny_model(work / "base", work / "corpus", work / "aligned", config, params.video)
        seconds = time.perf_counter() - started
        after = measure(aligned)
        n_train = len(caption_rows(work / "corpus", params.video))
    report = {
        "command": " ".join(["python", "benchmarks/alignment.py", *(argv if argv is not None else sys.argv[1:])]),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_start": load_start,
                    "load_end": os.getloadavg()[0]},  # fmt: skip
        "config": config.model_dump(mode="json"),
        "train_captions": n_train,
        "heldout_captions": len(held_out),
        "random_model": before,
        "aligned_model": after,
        "align_seconds": round(seconds, 1),
    }
    write_json(args.out, report)
    print(
        f"| {args.batch_size} x {args.steps} | {n_train} | {len(held_out)} | "
        f"{100 * before['background_accuracy']:.1f} % | {100 * after['background_accuracy']:.1f} % | "
        f"{100 * after['exact_match']:.1f} % | {seconds:.0f} s |"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
