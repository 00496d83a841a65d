"""Learning, shown: C-GRPO on the compressed input against SFT alone, on held-out synthetic questions.

Runs :func:`marc_ops.eval.learning.run_learning_check` with the tiny profile's model and training
settings (``configs/tiny.yaml``) on a synthetic corpus generated here, larger than the demo's so the
held-out comparison has enough items. Writes ``benchmarks/results/learning.json`` (scores, the paired
difference, the curve, timings), ``docs/img/learning_curve.png`` and prints the Markdown for
``docs/benchmarks.md``.

    python benchmarks/learning.py           # the numbers in docs/benchmarks.md (~20 min on 2 cores)
    python benchmarks/learning.py --quick   # the demo-sized corpus (a smoke run)
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from _provenance import command_line, machine

from marc_ops.eval.learning import LearningResult, profile_learning_config, run_learning_check  # noqa: E402
from marc_ops.io import write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# Three times the tiny profile's 40 (what `make demo` affords per τ): the curve is noisy early on.
CGRPO_STEPS = 120


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the demo-sized corpus")
    parser.add_argument(
        "--cgrpo-steps", type=int, default=CGRPO_STEPS, help=f"C-GRPO steps (default {CGRPO_STEPS})"
    )
    parser.add_argument(
        "--work", type=Path, default=None, help="keep the run here (default: a temporary dir)"
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "learning.json")
    parser.add_argument("--plot", type=Path, default=ROOT / "docs" / "img" / "learning_curve.png")
    args = parser.parse_args(argv)
    config = profile_learning_config(
        ROOT / "configs" / "tiny.yaml", larger_corpus=not args.quick, cgrpo_steps=args.cgrpo_steps
    )
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as scratch:
        result = run_learning_check(config, args.work or Path(scratch), log=print)
    report = {
        "command": command_line("learning.py", argv),
        "machine": machine(load_start),
        "config": config.model_dump(mode="json"),
        "summary": result.summary,
        "by_type": _by_type(result),
        "curve": result.curve.to_dicts(),
        "train_log": result.train_log.to_dicts(),
        "seconds": result.seconds,
    }
    write_json(args.out, report)
    _plot(result, args.plot)
    print(_markdown(report))
    print(f"\nwrote {args.out} and {args.plot}")
    return 0


def _by_type(result: LearningResult) -> list[dict]:
    import polars as pl

    return (
        result.records.filter(~pl.col("model").str.contains("step"))
        .group_by("model", "problem_type")
        .agg(items=pl.len(), mean_reward=pl.col("reward").mean() * 100)
        .sort("problem_type", "model")
        .to_dicts()
    )


def _plot(result: LearningResult, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    curve, summary = result.curve, result.summary
    fig, left = plt.subplots(figsize=(7, 4))
    left.plot(
        curve["step"],
        curve["heldout_score"],
        marker="o",
        label="C-GRPO student, held-out score (1-frame budget)",
    )
    left.axhline(
        summary["sft_only_score"], color="grey", linestyle="--", label="SFT-only student (1-frame budget)"
    )
    left.axhline(
        summary["teacher_score"],
        color="black",
        linestyle=":",
        label="64-frame teacher (warm-up, uncompressed)",
    )
    left.set_xlabel("C-GRPO step")
    left.set_ylabel("held-out synthetic score (%)")
    right = left.twinx()
    trained = result.train_log
    right.plot(
        trained["step"],
        trained["train_reward"],
        color="tab:orange",
        alpha=0.5,
        label="training reward (mean R, every step)",
    )
    right.set_ylabel("training reward")
    lines = left.get_legend_handles_labels()[0] + right.get_legend_handles_labels()[0]
    labels = left.get_legend_handles_labels()[1] + right.get_legend_handles_labels()[1]
    left.legend(lines, labels, fontsize=7, loc="lower right")
    left.set_title("Learning check (tiny profile, synthetic corpus)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _markdown(report: dict) -> str:
    s = report["summary"]
    lines = [
        f"Command: `{report['command']}`  ",
        f"Held-out items: {int(s['items'])}; load average {report['machine']['load_start']:.2f} at the start, "
        f"{report['machine']['load_end']:.2f} at the end; phases (s): "
        + ", ".join(f"{k} {v}" for k, v in report["seconds"].items()),
        "",
        "| Model | Budget | Held-out score (%) |",
        "|---|---|---|",
        f"| SFT-only student (warm-up) | 1 frame | {s['sft_only_score']:.2f} |",
        f"| C-GRPO student | 1 frame | {s['cgrpo_score']:.2f} |",
        f"| Teacher (warm-up, uncompressed) | 64 frames | {s['teacher_score']:.2f} |",
        f"| Prior answer (no model; chance level) | 0 | {s['prior_answer_score']:.2f} |",
        "",
        f"η = C-GRPO / teacher = {s['eta']:.2f}. Paired per-item difference C-GRPO − SFT-only: "
        f"{s['item_diff_mean']:+.2f} points, 95 % bootstrap interval [{s['item_diff_ci_low']:+.2f}, "
        f"{s['item_diff_ci_high']:+.2f}].",
        "",
        "| Problem type | Model | Items | Mean reward (%) |",
        "|---|---|---|---|",
        *[
            f"| {r['problem_type']} | {r['model']} | {r['items']} | {r['mean_reward']:.1f} |"
            for r in report["by_type"]
        ],
        "",
        "| C-GRPO step | Held-out score (%) | Training reward |",
        "|---|---|---|",
        *[
            f"| {r['step']} | {r['heldout_score']:.2f} | "
            + ("" if r.get("train_reward") is None else f"{r['train_reward']:.3f}")
            + " |"
            for r in report["curve"]
        ],
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    raise SystemExit(main())
