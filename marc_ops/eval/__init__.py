"""Evaluation: a resumable benchmark runner, scoring, the Qwen2.5-VL adapter, the efficiency profile, the report.

A benchmark run is ``run_benchmark(resolve_task(name), resolve_method(name), rows, adapter, path,
batch_size=..., answer_rule=...)``; the model adapter (Qwen2.5-VL with the method's frames, VMR and compression) is the only part
that touches a model. Benchmarks, methods and prompt templates are declared in
:mod:`marc_ops.config` (a profile names them), a benchmark's rows are read by
:func:`marc_ops.data.load_task_rows`. The paper's printed figures are in
:mod:`marc_ops.eval.report.paper`. ``marc gpu-check`` (:mod:`marc_ops.eval.gpu_check`) runs the checks that
need a GPU in one command.
"""

from marc_ops.eval.runner import (
    EvalInput,
    GenerationOutput,
    ModelAdapter,
    RunSummary,
    prepare_input,
    prompt_hash,
    records_path,
    run_benchmark,
)
from marc_ops.eval.scoring import (
    RECORD_SCHEMA,
    SUMMARY_SCHEMA,
    RecordsFileError,
    read_records,
    read_records_dir,
    score_table,
    summarize,
)

__all__ = [
    "RECORD_SCHEMA",
    "SUMMARY_SCHEMA",
    "EvalInput",
    "GenerationOutput",
    "ModelAdapter",
    "RecordsFileError",
    "RunSummary",
    "prepare_input",
    "prompt_hash",
    "read_records",
    "read_records_dir",
    "records_path",
    "run_benchmark",
    "score_table",
    "summarize",
]
