"""SCORE learns: the trained policy's selection gives the frozen LLM a lower caption CE than chance or its start.

Runs :func:`marc_ops.eval.score_learning.run_score_learning_check` with its fixed sizes (a tiny
Qwen2.5-VL caption-trained on a generated corpus, SCORE's two stages on the training split, 48
held-out videos at ρ = 0.25) and writes the per-video CEs and the paired intervals to
``benchmarks/results/score_learning.json``::

    python benchmarks/score_learning.py            # ~10 min on 2 cores
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

from marc_ops.eval.score_learning import ScoreLearningConfig, run_score_learning_check


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--work-dir", type=Path, default=None, help="keep the run here (default: a temp dir)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/score_learning.json"))
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    config = ScoreLearningConfig()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        result = run_score_learning_check(config, args.work_dir or Path(scratch))
    summary = result.summary
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(
        json.dumps(
            {
                "command": " ".join(["python", *sys.argv]),
                "config": config.model_dump(mode="json"),
                "summary": summary,
                "seconds": result.seconds,
                "items": result.items.to_dicts(),
            },
            indent=2,
        )
    )
    print(f"held-out videos: {int(summary['items'])}, retention {config.retention}")
    for name in ("trained", "random", "untrained", "full"):
        print(f"  mean caption CE, {name}: {summary[f'ce_{name}_mean']:.4f}")
    passed = True
    for other in ("random", "untrained"):
        high = summary[f"diff_{other}_ci_high"]
        ok = high < 0
        passed &= ok
        print(
            f"[{'PASS' if ok else 'FAIL'}] trained - {other}: {summary[f'diff_{other}_mean']:+.4f} "
            f"(95 % interval {summary[f'diff_{other}_ci_low']:+.4f} .. {high:+.4f}; target: below 0)"
        )
    print(f"wrote {args.out}; {time.perf_counter() - started:.0f} s")
    return 0 if passed else 1


if __name__ == "__main__":
    sys.exit(main())
