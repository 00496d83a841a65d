"""Evaluation: Video-R1 prompts, benchmarks as declarative tasks, methods as data, a resumable runner, scoring.

A benchmark run is ``run_benchmark(resolve_task(name), resolve_method(name), rows, adapter, path)``;
the model adapter (Qwen2.5-VL with the method's frames, VMR and compression) is the only part
that touches a model.
"""

from marc_ops.eval.methods import METHODS, MethodSpec, marc_method, one_frame_compression, resolve_method
from marc_ops.eval.prompts import (
    MARC_PAPER,
    PROMPT_TEMPLATES,
    VIDEO_R1_EVAL,
    MediaSpec,
    PromptTemplate,
    build_messages,
    build_prompt,
    prompt_template,
    question_text,
)
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
    paper_table,
    read_records,
    read_records_dir,
    score_table,
    summarize,
)
from marc_ops.eval.tasks import (
    PAPER_BENCHMARKS,
    PAPER_ROWS,
    TASKS,
    BenchmarkFileNotFoundError,
    BenchmarkTask,
    PaperRow,
    SampleScore,
    load_task_rows,
    resolve_task,
)

__all__ = [
    "MARC_PAPER",
    "METHODS",
    "PAPER_BENCHMARKS",
    "PAPER_ROWS",
    "PROMPT_TEMPLATES",
    "RECORD_SCHEMA",
    "SUMMARY_SCHEMA",
    "TASKS",
    "VIDEO_R1_EVAL",
    "BenchmarkFileNotFoundError",
    "BenchmarkTask",
    "EvalInput",
    "GenerationOutput",
    "MediaSpec",
    "MethodSpec",
    "ModelAdapter",
    "PaperRow",
    "PromptTemplate",
    "RecordsFileError",
    "RunSummary",
    "SampleScore",
    "build_messages",
    "build_prompt",
    "load_task_rows",
    "marc_method",
    "one_frame_compression",
    "paper_table",
    "prepare_input",
    "prompt_hash",
    "prompt_template",
    "question_text",
    "read_records",
    "read_records_dir",
    "records_path",
    "resolve_method",
    "resolve_task",
    "run_benchmark",
    "score_table",
    "summarize",
]
