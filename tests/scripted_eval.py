"""A benchmark run with a scripted model adapter, as a child process a test can kill: the evaluation runner's real
code (records, latencies, resume) with answers that cost a fixed time and never change.

The child comes from a fork server that imported this module once (:func:`start_child`), so a run starts in a
tenth of a second instead of the seconds Python takes to import torch.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import time
from collections.abc import Sequence
from multiprocessing.synchronize import Event
from pathlib import Path
from typing import Any

from tests_support import REPO_ROOT

from marc_ops.config.methods import resolve_method
from marc_ops.config.tasks import resolve_task
from marc_ops.data import load_task_rows
from marc_ops.eval import EvalInput, GenerationOutput, run_benchmark

TASK = resolve_task("mvbench")
METHOD = resolve_method("baseline-16f")
# The fork server is a fresh interpreter that takes its sys.path from PYTHONPATH (not from this process): it must
# import this module, and this checkout's marc_ops, from here.
os.environ["PYTHONPATH"] = os.pathsep.join(
    [str(REPO_ROOT), str(Path(__file__).parent), *filter(None, [os.environ.get("PYTHONPATH")])]
)
_CONTEXT = multiprocessing.get_context("forkserver")
_CONTEXT.set_forkserver_preload([__name__])


def write_benchmark(root: Path, n_rows: int) -> Path:
    """``root/eval_mvbench.json`` with ``n_rows`` multiple-choice rows ``p0``… and a (never decoded) video each."""
    (root / "MVBench").mkdir(parents=True)
    rows = []
    for i in range(n_rows):
        (root / "MVBench" / f"v{i}.mp4").write_bytes(b"not decoded by the scripted adapter")
        rows.append(
            {
                "problem_id": f"p{i}",
                "problem": f"Question {i}?",
                "data_type": "video",
                "problem_type": "multiple choice",
                "options": ["A. yes", "B. no"],
                "solution": f"<answer>{'AB'[i % 2]}</answer>",
                "path": f"./MVBench/v{i}.mp4",
                "data_source": "MVBench",
            }
        )
    (root / "eval_mvbench.json").write_text(json.dumps(rows))
    return root


class ScriptedAdapter:
    """Answers right for even-numbered problems and wrong for odd ones, ``seconds`` per sample."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def prefetch(self, batch: Sequence[EvalInput]) -> None:
        pass

    def generate(self, batch: Sequence[EvalInput]) -> list[GenerationOutput]:
        outputs = []
        for item in batch:
            started = time.perf_counter()
            time.sleep(self.seconds)
            letter = item.row["answer"] if int(item.problem_id[1:]) % 2 == 0 else "Z"
            text = f"<think>looked at {item.problem_id}</think><answer>{letter}</answer>"
            outputs.append(GenerationOutput(text, 64, time.perf_counter() - started))
        return outputs


def evaluate(eval_dir: str, records_file: str, seconds: float, started: Event) -> None:
    """The child's work: every row of the benchmark, one sample per batch (each appended and fsynced)."""
    rows = load_task_rows(TASK, Path(eval_dir)).rows
    started.set()
    run_benchmark(
        TASK,
        METHOD,
        rows,
        ScriptedAdapter(seconds),
        Path(records_file),
        batch_size=1,
        answer_rule="strict",
        progress=False,
    )


def start_child(*args: Any) -> tuple[multiprocessing.Process, Event]:
    """Start :func:`evaluate` with ``args`` in a child process; returns it and the event it sets once its work starts."""
    started = _CONTEXT.Event()
    process = _CONTEXT.Process(target=evaluate, args=(*args, started))
    process.start()
    return process, started
