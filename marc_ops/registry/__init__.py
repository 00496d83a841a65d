"""Every stage by asset name, with its declaration: what ``marc stage NAME`` (DVC) and the Dagster assets run.

A stage is one function ``<asset>_stage(paths, params, **partition)`` in its package's ``stages.py``; its
entry in :data:`STAGES` declares, once, what it reads (upstream assets, code, params, data files), what it
writes (outputs, which are resumable caches and which are metrics) and how it is partitioned
(:mod:`marc_ops.registry.declare`). ``dvc.yaml`` is rendered from :data:`STAGES` (``marc dvc-yaml``) and the
Dagster assets take their dependencies, partitions and code versions from it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from marc_ops.config import Params
from marc_ops.config.efficiency import LONGEST_VIDEO
from marc_ops.config.methods import resolve_method
from marc_ops.config.tasks import TASKS, resolve_task
from marc_ops.data import stages as data
from marc_ops.errors import UsageError
from marc_ops.eval import stages as evaluation
from marc_ops.registry.declare import Out, Stage, StageFn
from marc_ops.train import stages as train
from marc_ops.vmr import stages as vmr

__all__ = [
    "STAGES",
    "Out",
    "Stage",
    "StageFn",
    "benchmark_keys",
    "benchmark_method_partition",
    "method_keys",
    "partition_keys",
    "tau_keys",
    "tau_partition",
]


def tau_keys(params: Params) -> list[str]:
    """The ``cgrpo_checkpoint`` partition keys: the profile's ``train.taus`` (``0.6`` → ``"0.6"``)."""
    return [f"{tau:g}" for tau in params.train.taus]


def benchmark_keys(params: Params) -> list[str]:
    """The benchmark axis of ``benchmark_scores``: the profile's ``eval.benchmarks``, in declaration order."""
    return [name for name in TASKS if name in params.eval.benchmarks] + [
        name for name in params.eval.benchmarks if name not in TASKS
    ]


def method_keys(params: Params) -> list[str]:
    """The method axis of ``benchmark_scores``: the profile's ``eval.methods``, in its order."""
    return list(dict.fromkeys(params.eval.methods))


def partition_keys(name: str, params: Params) -> list[str | None]:
    """Every partition key of stage ``name`` on this profile (``[None]`` for an unpartitioned stage), in
    Dagster's form: ``0.6``, ``synthetic|marc@0.6``."""
    kind = STAGES[name].partitions
    if kind is None:
        return [None]
    if kind == "tau":
        return list(tau_keys(params))
    return [f"{b}|{m}" for b in benchmark_keys(params) for m in method_keys(params)]


def tau_partition(key: str) -> dict[str, Any]:
    """``"0.6"`` (a ``cgrpo_checkpoint`` partition key) → its τ."""
    try:
        return {"tau": float(key)}
    except ValueError:
        raise UsageError(
            f"partition key {key!r} must be a tau, e.g. '0.6' (one of the profile's train.taus)"
        ) from None


def benchmark_method_partition(key: str) -> dict[str, Any]:
    """``"synthetic|marc@0.6"`` (Dagster's multi-partition key) → benchmark and method."""
    benchmark, sep, method = key.partition("|")
    if not sep:
        raise UsageError(f"partition key {key!r} must be '<benchmark>|<method>', e.g. 'synthetic|marc@0.6'")
    return {"benchmark": benchmark, "method": method}


def tau_key(key: str) -> str:
    """A ``cgrpo_checkpoint`` partition key as the profile spells it (``0.60`` → ``0.6``)."""
    return f"{tau_partition(key)['tau']:g}"


def benchmark_method_key(key: str) -> str:
    """A ``benchmark_scores`` partition key with the benchmark's and the method's registered names
    (``synthetic|marc`` → ``synthetic|marc@0.6``): the names its files are written under."""
    fields = benchmark_method_partition(key)
    return f"{resolve_task(fields['benchmark']).name}|{resolve_method(fields['method']).name}"


# --- what the stages read -------------------------------------------------------------------------------

CONFIG = ("marc_ops/config", "marc_ops/io.py", "marc_ops/stage.py", "marc_ops/tables.py")
DATA_CODE = ("marc_ops/data", "marc_ops/video", *CONFIG)
VMR_CODE = ("marc_ops/vmr", *DATA_CODE)
# Training runs the patched model: the compression layer and the C-GRPO reward are its code.
TRAIN_CODE = ("marc_ops/train", "marc_ops/model", "marc_ops/compression", "marc_ops/rewards", *DATA_CODE)
EVAL_CODE = (
    "marc_ops/eval/stages.py",
    "marc_ops/eval/runner.py",
    "marc_ops/eval/qwen_adapter.py",
    "marc_ops/eval/scoring.py",
    *TRAIN_CODE,
)
REPORT_CODE = ("marc_ops/eval/stages.py", "marc_ops/eval/scoring.py", "marc_ops/eval/report", *CONFIG)


def _initial_policy(params: Params, _: dict[str, Any]) -> tuple[str, ...]:
    """The weights the teacher, C-GRPO, SCORE and the ``base`` methods start from (``train.init``)."""
    return ("sft_checkpoint",) if params.train.init == "sft" else ("base_model",)


def _method_inputs(params: Params, fields: dict[str, Any]) -> tuple[str, ...]:
    """What one benchmark × method answers with: its checkpoint, the VMR selection, SCORE's policy."""
    spec = resolve_method(fields["method"])
    if spec.checkpoint == "base":
        refs: list[str] = list(_initial_policy(params, fields))
    elif spec.checkpoint == "sft":
        refs = ["sft_checkpoint"]
    else:
        refs = [f"cgrpo_checkpoint[{spec.tau:g}]"]
    if spec.use_vmr:
        refs.append("vmr_selection")
    policy = spec.compression.options.get("policy")
    if policy is not None:  # "assets/<asset>/policy.safetensors"
        refs.append(Path(policy).parts[1])
    return tuple(refs)


def _annotations(params: Params, root: Path, _: dict[str, Any]) -> list[Path]:
    files = [root / name for name in params.data.annotation_files]
    return files + ([root / params.data.cot_file] if params.data.cot_file else [])


def _eval_file(params: Params, project: Path, fields: dict[str, Any]) -> list[Path]:
    return [params.data.evals(project) / resolve_task(fields["benchmark"]).file_name]


def _eval_files(params: Params, project: Path, _: dict[str, Any]) -> list[Path]:
    return [params.data.evals(project) / resolve_task(name).file_name for name in benchmark_keys(params)]


def _efficiency_source_file(params: Params, project: Path, _: dict[str, Any]) -> list[Path]:
    """The benchmark file the efficiency batch comes from; none for the longest video of the eval set."""
    source = params.efficiency.source
    return [] if source == LONGEST_VIDEO else [params.data.evals(project) / resolve_task(source).file_name]


def _source_files(params: Params, project: Path, fields: dict[str, Any]) -> list[Path]:
    return _annotations(params, params.data.root(project), fields) + _eval_files(params, project, fields)


def _manifest_files(params: Params, project: Path, fields: dict[str, Any]) -> list[Path]:
    return _annotations(params, params.data.root(project), fields)


TRAIN_STATE = "train.init", "video", "data"
# The report puts measured seconds beside the scores; its scores alone are accuracy_vs_tokens.csv.
MEASURED_REPORT = (
    "renders measured seconds and memory beside the scores (accuracy_vs_tokens.csv holds the scores)"
)

STAGES: dict[str, Stage] = {
    "videor1_source": Stage(
        data.videor1_source_stage,
        code=DATA_CODE,
        params=("profile", "data", "synthetic"),
        outs=(Out("assets/videor1_source"),),
        data_files=_source_files,
    ),
    "videor1_manifest": Stage(
        data.videor1_manifest_stage,
        code=DATA_CODE,
        params=("data",),
        outs=(Out("assets/videor1_manifest"),),
        upstream=("videor1_source",),
        data_files=_manifest_files,
    ),
    "train_subset": Stage(
        data.train_subset_stage,
        code=DATA_CODE,
        params=("data.train_size", "data.sample_seed"),
        outs=(Out("assets/train_subset"),),
        upstream=("videor1_manifest",),
    ),
    "shot_segments": Stage(
        vmr.shot_segments_stage,
        code=VMR_CODE,
        params=("vmr.shots", "video", "data"),
        outs=(Out("assets/shot_segments", persist=True),),
        upstream=("train_subset", "videor1_source"),
    ),
    "retriever_checkpoint": Stage(
        vmr.retriever_checkpoint_stage,
        code=VMR_CODE,
        params=("vmr.embedder", "vmr.retriever_training", "data"),
        outs=(Out("assets/retriever_checkpoint"),),
        upstream=("videor1_source",),
    ),
    "clip_embeddings": Stage(
        vmr.clip_embeddings_stage,
        code=VMR_CODE,
        params=("vmr.embedder", "vmr.index", "video", "data"),
        outs=(
            Out(
                "assets/clip_embeddings/lancedb",
                persist=True,
                varies="LanceDB names its data and transaction files with random UUIDs and stamps versions with "
                "the time; table.json holds the hash of its rows",
            ),
            Out("assets/clip_embeddings/table.json"),
            Out("assets/clip_embeddings/quarantine.parquet"),
        ),
        upstream=("shot_segments", "retriever_checkpoint", "videor1_source"),
    ),
    "vmr_selection": Stage(
        vmr.vmr_selection_stage,
        code=VMR_CODE,
        params=("vmr.embedder", "vmr.top_k", "video", "data"),
        outs=(Out("assets/vmr_selection"),),
        upstream=(
            "clip_embeddings",
            "retriever_checkpoint",
            "shot_segments",
            "train_subset",
            "videor1_source",
        ),
    ),
    "base_model": Stage(
        train.base_model_stage,
        code=TRAIN_CODE,
        params=("model", "video", "data"),
        outs=(Out("assets/base_model"),),
        # The tiny model is caption-trained on the synthetic corpus (model.align).
        upstream=("videor1_source",),
    ),
    "sft_checkpoint": Stage(
        train.sft_checkpoint_stage,
        code=TRAIN_CODE,
        params=("train.sft", "train.launch.sft", *TRAIN_STATE),
        outs=(Out("assets/sft_checkpoint", persist=True),),
        upstream=("base_model", "videor1_source"),
    ),
    "teacher_rewards": Stage(
        train.teacher_rewards_stage,
        code=TRAIN_CODE,
        params=("train.teacher", "train.launch.teacher", *TRAIN_STATE),
        outs=(Out("assets/teacher_rewards", persist=True),),
        upstream=("vmr_selection", "train_subset", "videor1_source"),
        upstream_of=_initial_policy,
    ),
    "cgrpo_checkpoint": Stage(
        train.cgrpo_checkpoint_stage,
        code=TRAIN_CODE,
        params=("train.cgrpo", "train.launch.cgrpo", *TRAIN_STATE),
        outs=(Out("assets/cgrpo_checkpoint/tau_{tau}", persist=True),),
        upstream=("teacher_rewards", "vmr_selection", "train_subset", "videor1_source"),
        upstream_of=_initial_policy,
        partitions="tau",
        parse=tau_partition,
        canonical=tau_key,
    ),
    "score_pseudo_videos": Stage(
        data.score_pseudo_videos_stage,
        code=DATA_CODE,
        params=("score.data", "data"),
        outs=(Out("assets/score_pseudo_videos", persist=True),),
        upstream=("videor1_source",),
    ),
    "score_ce_base": Stage(
        train.score_ce_base_stage,
        code=TRAIN_CODE,
        params=("score", *TRAIN_STATE),
        outs=(Out("assets/score_ce_base", persist=True),),
        upstream=("score_pseudo_videos", "videor1_source"),
        upstream_of=_initial_policy,
    ),
    "score_policy_stage1": Stage(
        train.score_policy_stage1_stage,
        code=TRAIN_CODE,
        params=("score", *TRAIN_STATE),
        outs=(Out("assets/score_policy_stage1", persist=True),),
        upstream=("score_ce_base", "score_pseudo_videos"),
        upstream_of=_initial_policy,
    ),
    "score_policy": Stage(
        train.score_policy_stage,
        code=TRAIN_CODE,
        params=("score", *TRAIN_STATE),
        outs=(Out("assets/score_policy", persist=True),),
        upstream=("score_policy_stage1", "score_ce_base", "videor1_source"),
        upstream_of=_initial_policy,
    ),
    "efficiency_profile": Stage(
        evaluation.efficiency_profile_stage,
        code=("marc_ops/eval/efficiency", *EVAL_CODE),
        params=("model", "video", "data", "efficiency"),
        # Every figure in it is a measurement of this machine: a metric, not a reproducible output.
        outs=(Out("assets/efficiency_profile/profile.json", metric=True),),
        upstream=("base_model", "score_policy", "videor1_source"),
        data_files=_efficiency_source_file,
    ),
    "benchmark_scores": Stage(
        evaluation.benchmark_scores_stage,
        code=EVAL_CODE,
        params=(
            "eval.max_new_tokens",
            "eval.batch_size",
            "eval.limit",
            "eval.prompt_template",
            "eval.answer_rule",
            "eval.sort_by_length",  # which samples share a batch (as batch_size); decode_workers changes nothing
            "model",
            *TRAIN_STATE,
        ),
        outs=(
            Out("assets/benchmark_scores/{benchmark}/{method}.jsonl", persist=True),
            Out(
                "assets/benchmark_scores/{benchmark}/{method}.latency.jsonl",
                persist=True,
                varies="measured seconds per sample",
            ),
            Out("assets/benchmark_scores/{benchmark}/{method}.run.json", persist=True),
            Out("assets/benchmark_scores/{benchmark}/{method}.summary.json", metric=True),
        ),
        upstream=("videor1_source",),
        upstream_of=_method_inputs,
        data_files=_eval_file,
        partitions="benchmark_method",
        parse=benchmark_method_partition,
        canonical=benchmark_method_key,
    ),
    "report": Stage(
        evaluation.report_stage,
        code=REPORT_CODE,
        params=("eval", "data", "train.init", "video", "model"),
        outs=(
            Out("assets/report/report.md", varies=MEASURED_REPORT),
            Out("assets/report/report.html", varies=MEASURED_REPORT),
            Out("assets/report/accuracy_vs_tokens.png"),
            Out("assets/report/efficiency.png", varies="plots measured seconds and memory"),
            Out("assets/report/metrics.json", metric=True),
            Out("assets/report/accuracy_vs_tokens.csv", plot={"x": "visual_tokens", "y": "score"}),
        ),
        upstream=("benchmark_scores", "efficiency_profile", "videor1_source"),
        upstream_of=lambda params, fields: tuple(
            dict.fromkeys(ref for m in method_keys(params) for ref in _method_inputs(params, {"method": m}))
        ),
        data_files=_source_files,
    ),
}
