"""The efficiency profile as tables: the report's Fig. 5 section, and the profile on its own in Markdown.

Both take every ratio and change against one reference method (:func:`reference_method`):
``baseline-64f`` when profiled, else the least compressed method. The profile's ``merge_s`` is shown as
the compressor's time: MARC's memory-aware merge, or a compared method's compression step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import polars as pl

from marc_ops.config.efficiency import LONGEST_VIDEO
from marc_ops.config.tasks import TASKS
from marc_ops.eval.efficiency.schema import EfficiencyProfile, MethodEfficiency
from marc_ops.eval.report import text
from marc_ops.eval.report.cells import change, grouped, num, ratio, relative, seconds
from marc_ops.eval.report.document import Figure, Row, Section, Table
from marc_ops.eval.report.methods import method_order
from marc_ops.eval.report.paper import PAPER_EFFICIENCY_CHANGE, PAPER_EFFICIENCY_SETTING
from marc_ops.tables import markdown_table

# The measures of the change table, as the paper reports them (section 4.2).
EFFICIENCY_MEASURES: tuple[tuple[str, str], ...] = (
    ("visual_tokens", "Visual tokens"),
    ("peak_memory_gb", "Peak memory (GB)"),
    ("prefill_s", "Prefill latency (s)"),
    ("generate_s", "Generation latency (s)"),
    ("end_to_end_s", "End-to-end latency (s)"),
)


def reference_method(cost: EfficiencyProfile) -> MethodEfficiency:
    """``baseline-64f`` when profiled, else the method with the most visual tokens (the least compressed)."""
    by_name = {m.method: m for m in cost.methods}
    return by_name.get("baseline-64f") or max(cost.methods, key=lambda m: m.visual_tokens)


def profiled_in_order(cost: EfficiencyProfile) -> list[MethodEfficiency]:
    """The profiled methods in the report's method order."""
    by_name = {m.method: m for m in cost.methods}
    return [by_name[name] for name in method_order(list(by_name))]


def efficiency_section(cost: EfficiencyProfile | None) -> Section:
    """The report's "Efficiency" section: costs per method, the vision tower's bound, changes beside the paper's."""
    title = "Efficiency (cf. paper Fig. 5)"
    if cost is None:
        return Section(title, (text.NO_EFFICIENCY_PROFILE,))
    setting = _setting(text.EFFICIENCY_SETTING, cost, cuda_memory="peak CUDA memory")
    columns = (
        "Method",
        "Frames",
        "Visual tokens",
        "Peak memory (GB)",
        "Vision (s)",
        "Compressor (s)",
        "Prefill (s)",
        "Compressor + prefill (s)",
        "Generation (s)",
        "End-to-end (s)",
        "Vision share",
    )
    rows = tuple(
        Row(
            (
                f"`{m.method}`",
                str(m.frames),
                num(m.visual_tokens, 1),
                num(m.peak_memory_gb),
                seconds(m.vision_s),
                seconds(m.merge_s),
                seconds(m.prefill_s),
                seconds(m.merge_s + m.prefill_s),
                seconds(m.generate_s),
                seconds(m.end_to_end_s),
                f"{m.vision_share * 100:.1f}%",
            )
        )
        for m in profiled_in_order(cost)
    )
    ref = reference_method(cost)
    change_columns = ("Method", *(label for _, label in EFFICIENCY_MEASURES))
    change_rows = [
        Row(
            (
                f"`{m.method}`",
                *(change(relative(getattr(m, f), getattr(ref, f))) for f, _ in EFFICIENCY_MEASURES),
            )
        )
        for m in profiled_in_order(cost)
        if m.method != ref.method
    ]
    change_rows.append(
        Row(
            (
                "MARC-3B vs Qwen2.5-VL-3B 64f (paper)",
                *(change(PAPER_EFFICIENCY_CHANGE[f]) for f, _ in EFFICIENCY_MEASURES),
            ),
            paper=True,
        )
    )
    share = ref.vision_share * 100
    return Section(
        title,
        (
            setting,
            text.EFFICIENCY_DEFINITIONS,
            Table(columns, rows),
            text.EFFICIENCY_BOUND.format(share=share, method=ref.method, rest=100 - share),
            text.EFFICIENCY_CHANGE.format(method=ref.method, paper_setting=PAPER_EFFICIENCY_SETTING),
            Table(change_columns, tuple(change_rows)),
            Figure("efficiency", "Cost per method, one panel per measure"),
        ),
    )


def format_table(profile: Mapping[str, Any] | EfficiencyProfile) -> str:
    """The profile on its own as Markdown: costs per sample, ratios to the reference method, and the
    vision tower's share (the ``efficiency_profile`` asset's metadata, the benchmark script's output)."""
    checked = EfficiencyProfile.model_validate(profile)
    ref = reference_method(checked)
    head = _setting(text.PROFILE_SETTING, checked, cuda_memory="peak CUDA memory allocated")
    costs = pl.DataFrame(
        [
            {
                "method": m.method,
                "frames": m.frames,
                "visual tokens": grouped(m.visual_tokens, 0),
                "vision (s)": grouped(m.vision_s),
                "compressor (s)": grouped(m.merge_s, 4),
                "prefill (s)": grouped(m.prefill_s),
                "generate (s)": grouped(m.generate_s),
                "end-to-end (s)": grouped(m.end_to_end_s),
                "peak memory (GB)": grouped(m.peak_memory_gb),
                "vision share": f"{m.vision_share:.1%}",
            }
            for m in checked.methods
        ]
    )
    ratios = pl.DataFrame(
        [
            {
                "method": m.method,
                "visual tokens": ratio(m.visual_tokens, ref.visual_tokens),
                "prefill": ratio(m.prefill_s, ref.prefill_s),
                "generate": ratio(m.generate_s, ref.generate_s),
                "end-to-end": ratio(m.end_to_end_s, ref.end_to_end_s),
                "peak memory": ratio(m.peak_memory_gb, ref.peak_memory_gb),
                f"compressor / {ref.method} prefill": f"{m.merge_s / ref.prefill_s:.3%}",
            }
            for m in checked.methods
        ]
    )
    share = ref.vision_share
    return "\n\n".join(
        [
            head,
            markdown_table(costs),
            text.PROFILE_RATIOS.format(method=ref.method),
            markdown_table(ratios),
            text.PROFILE_BOUND.format(share=share, method=ref.method, rest=1 - share),
        ]
    )


def _setting(template: str, cost: EfficiencyProfile, *, cuda_memory: str) -> str:
    """``template`` filled with what the profile ran on, its protocol and how its memory was measured."""
    memory = cuda_memory if cost.memory_kind == "cuda" else "peak process RSS"
    return template.format(
        model=cost.model,
        device=cost.device,
        dtype=cost.dtype,
        protocol=protocol(cost),
        input=cost.input,
        memory=memory,
    )


def protocol(cost: EfficiencyProfile) -> str:
    """The batch, where its samples came from, and the timed runs per method (a profile written before
    the source and the runs were recorded: one video's copies, and its input names the runs)."""
    if cost.source is None:
        samples = text.EFFICIENCY_ONE_VIDEO
    elif cost.source == LONGEST_VIDEO:
        samples = text.EFFICIENCY_LONGEST
    elif cost.source in TASKS:
        samples = text.EFFICIENCY_BENCHMARK.format(
            batch_size=cost.batch_size, name=TASKS[cost.source].display_name, source=cost.source
        )
    else:
        samples = cost.source
    if cost.repeats is None:
        return text.EFFICIENCY_PROTOCOL_RUNS_IN_INPUT.format(batch_size=cost.batch_size, samples=samples)
    return text.EFFICIENCY_PROTOCOL.format(batch_size=cost.batch_size, samples=samples, repeats=cost.repeats)
