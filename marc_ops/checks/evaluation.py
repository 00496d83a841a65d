"""Checks of one ``benchmark_scores`` partition: one record per item, and the token budget of the methods
merged to a number of temporal groups (MARC and the ``*-1f`` rows: one group, "one frame's worth")."""

from __future__ import annotations

import polars as pl

from marc_ops.checks.outcome import CheckOutcome, one_per_id, plural
from marc_ops.config import Params, ProjectPaths
from marc_ops.config.methods import MethodSpec, resolve_method
from marc_ops.config.tasks import resolve_task
from marc_ops.config.video import PATCH_FACTOR
from marc_ops.data.benchmarks import load_task_rows
from marc_ops.eval.runner import records_path
from marc_ops.eval.scoring import read_records
from marc_ops.registry import benchmark_method_partition


def _items_and_records(
    paths: ProjectPaths, params: Params, partition: str | None
) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame, MethodSpec]:
    """The benchmark's rows, the ones the stage answers (the first ``eval.limit``), its records, its method."""
    assert partition is not None, "benchmark_scores is partitioned by benchmark × method"
    fields = benchmark_method_partition(partition)
    task, spec = resolve_task(fields["benchmark"]), resolve_method(fields["method"])
    rows = load_task_rows(task, params.data.evals(paths.project_dir)).rows
    selected = rows if params.eval.limit is None else rows.head(params.eval.limit)
    records = read_records(records_path(paths.asset("benchmark_scores"), task.name, spec.name))
    return rows, selected, records, spec


def one_record_per_item(paths: ProjectPaths, params: Params, partition: str | None) -> CheckOutcome:
    """The records file holds exactly one record for each item the stage answers (the benchmark's first
    ``eval.limit`` rows): none missing, none repeated, none of a question the benchmark file does not hold."""
    rows, selected, records, _ = _items_and_records(paths, params, partition)
    counts = dict(records.group_by("problem_id").len("records").iter_rows())
    items, known = set(selected["problem_id"]), set(rows["problem_id"])
    problems = one_per_id(
        selected["problem_id"], counts, known, unit="record", foreign="not in the benchmark file"
    )
    facts = {
        "items": len(items),
        "records": records.height,
        "failed_records": records.filter(pl.col("status") == "failed").height,
        # an earlier run with a larger eval.limit: kept, not scored
        "records_beyond_limit": len((set(counts) & known) - items),
        "items_with_problems": len({p["problem_id"] for p in problems}),
    }
    if not problems:
        return CheckOutcome(True, f"one record for each of the {plural(len(items), 'item')}", facts)
    return CheckOutcome(
        False,
        f"{plural(facts['items_with_problems'], 'item')} without exactly one record (first: {problems[0]['problem_id']}: "
        f"{problems[0]['problem']})",
        facts,
        pl.DataFrame(problems),
    )


def group_budget(spec: MethodSpec) -> int | None:
    """The temporal groups a method's compression keeps per video, when it is set in groups (None otherwise):
    MARC's ``target_blocks``, a compressor's ``budget_groups``."""
    compression = spec.compression
    if not compression.enabled:
        return None
    return compression.target_blocks if compression.method == "marc" else compression.budget_groups


def visual_tokens_within_group_budget(
    paths: ProjectPaths, params: Params, partition: str | None
) -> CheckOutcome:
    """A method merged to N temporal groups showed the LLM at most N groups' worth of visual tokens for each
    video: N × ``video.max_pixels`` / 28² (one group of the largest frames; 128 tokens at 128·28·28 pixels)."""
    rows, _, records, spec = _items_and_records(paths, params, partition)
    groups = group_budget(spec)
    if groups is None:
        return CheckOutcome(
            True, f"{spec.name} keeps no number of temporal groups; nothing to bound", {"method": spec.name}
        )
    bound = groups * (params.video.max_pixels // PATCH_FACTOR**2)
    videos = records.join(rows.select("problem_id", "data_type"), on="problem_id").filter(
        (pl.col("data_type") == "video") & (pl.col("status") == "ok")
    )
    over = videos.filter(pl.col("visual_tokens") > bound).select("problem_id", "visual_tokens")
    facts = {
        "method": spec.name,
        "budget_groups": groups,
        "token_bound": bound,
        "video_records": videos.height,
        "max_visual_tokens": int(videos["visual_tokens"].max() or 0),
        "mean_visual_tokens": round(float(videos["visual_tokens"].mean() or 0.0), 2),
        "over_bound": over.height,
    }
    if over.is_empty():
        return CheckOutcome(
            True,
            f"{plural(videos.height, 'video record')}, at most {facts['max_visual_tokens']} visual tokens "
            f"(bound {bound}: {plural(groups, 'temporal group')})",
            facts,
        )
    return CheckOutcome(
        False,
        f"{plural(over.height, 'video record')} over {bound} visual tokens ({plural(groups, 'temporal group')}); "
        f"most: {facts['max_visual_tokens']}",
        facts,
        over,
    )
