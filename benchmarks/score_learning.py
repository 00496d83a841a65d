"""SCORE learns: the trained policy's selection gives the frozen LLM a lower caption CE than chance or its start.

Runs :func:`marc_ops.eval.score_learning.run_score_learning_check` with its fixed sizes (a tiny
Qwen2.5-VL caption-trained on a generated corpus, SCORE's two stages on the training split, 48
held-out videos at ρ = 0.25) and writes the per-video CEs and the paired intervals to
``benchmarks/results/score_learning.json``. ``--frozen-model-only`` checks the precondition alone
(:func:`~marc_ops.eval.score_learning.check_frozen_model`: does the frozen model caption better with
every token than with a random quarter?) and writes ``benchmarks/results/score_frozen_model_<name>.json``.
``--frozen-model`` picks one of the frozen models ``docs/benchmarks.md`` lists (default: the config's,
named ``default``)::

    python benchmarks/score_learning.py                                    # the check
    python benchmarks/score_learning.py --frozen-model-only --frozen-model videos
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from _provenance import command_line, machine

from marc_ops.config.model import TinyQwen2_5_VLConfig
from marc_ops.config.train import AlignConfig
from marc_ops.eval.score_learning import ScoreLearningConfig, check_frozen_model, run_score_learning_check
from marc_ops.io import write_json

RESULTS = Path(__file__).resolve().parent / "results"
# The tiny profile's model (configs/tiny.yaml, model.tiny).
PROFILE_MODEL = TinyQwen2_5_VLConfig(
    text_hidden_size=96,
    text_intermediate_size=192,
    text_layers=3,
    mrope_section=(6, 3, 3),
    vision_hidden_size=96,
    vision_intermediate_size=192,
)
# The frozen models docs/benchmarks.md names, in the order they were to be tried: only the frozen-model
# part of ScoreLearningConfig differs.
FROZEN_MODELS = {
    "shots": {"model": TinyQwen2_5_VLConfig(), "align_videos": False},
    "videos": {"model": PROFILE_MODEL, "align_videos": True},
    "videos-1600": {
        "model": PROFILE_MODEL,
        "align_videos": True,
        "align": AlignConfig(per_device_train_batch_size=8, max_steps=1600),
    },
    "videos-1600-batch16": {
        "model": PROFILE_MODEL,
        "align_videos": True,
        "align": AlignConfig(per_device_train_batch_size=16, max_steps=1600),
    },
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--frozen-model", choices=sorted(FROZEN_MODELS), default=None)
    parser.add_argument("--frozen-model-only", action="store_true", help="check the precondition alone")
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the run here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    load_start = os.getloadavg()[0]
    config = ScoreLearningConfig()
    if args.frozen_model is not None:
        config = ScoreLearningConfig.model_validate(config.model_dump() | FROZEN_MODELS[args.frozen_model])
    name = args.frozen_model or "default"
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        work_dir = args.work_dir or Path(scratch)
        if args.frozen_model_only:
            result = check_frozen_model(config, work_dir)
        else:
            result = run_score_learning_check(config, work_dir)
    total = round(time.perf_counter() - started, 1)
    summary = result.summary
    out = args.out or RESULTS / (
        f"score_frozen_model_{name}.json" if args.frozen_model_only else "score_learning.json"
    )
    write_json(
        out,
        {
            "command": command_line("score_learning.py", argv),
            "machine": machine(load_start),
            "frozen_model": name,
            "config": config.model_dump(mode="json"),
            "summary": summary,
            "seconds": result.seconds | {"total": total},
            "items": result.items.to_dicts(),
        },
    )
    print(f"frozen model {name!r}; held-out videos: {int(summary['items'])}, retention {config.retention}")
    names = (
        ("full", "random", "none")
        if args.frozen_model_only
        else ("trained", "random", "untrained", "full", "none")
    )
    for column in names:
        print(f"  mean caption CE, {column}: {summary[f'ce_{column}_mean']:.4f}")
    comparisons = [("every token - random", "full_minus_random")]
    if not args.frozen_model_only:
        comparisons += [("trained - random", "diff_random"), ("trained - untrained", "diff_untrained")]
    passed = True
    for label, key in comparisons:
        high = summary[f"{key}_ci_high"]
        passed &= high < 0
        print(
            f"[{'PASS' if high < 0 else 'FAIL'}] {label}: {summary[f'{key}_mean']:+.4f} "
            f"(95 % interval {summary[f'{key}_ci_low']:+.4f} .. {high:+.4f}; target: below 0)"
        )
    print(f"wrote {out}; {total:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
