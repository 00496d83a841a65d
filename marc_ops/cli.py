"""The ``marc`` command: thin wrappers over the same functions the Dagster assets call."""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from marc_ops.config import ProjectPaths, load_params, profile_path
from marc_ops.eval.stages import eval_command
from marc_ops.io import write_text
from marc_ops.registry import STAGES
from marc_ops.registry.dvcfile import render_dvc_yaml
from marc_ops.tables import markdown_table
from marc_ops.vmr.embedding import ClipEmbedder
from marc_ops.vmr.retrieval import plan_frames, retrieve_clips
from marc_ops.vmr.shots import segment_video
from marc_ops.vmr.stages import recorded_embedder


def _cmd_stage(args: argparse.Namespace) -> int:
    """Run one stage by asset name (this is what each DVC stage calls)."""
    if args.name not in STAGES:
        print(f"unknown stage {args.name!r}; known: {', '.join(STAGES)}", file=sys.stderr)
        return 2
    paths = ProjectPaths(args.project_dir, args.params)
    label = args.name if args.partition is None else f"{args.name}[{args.partition}]"
    # Everything is imported by now: the stage's own work starts here (a caller can time it from this line).
    print(f"[{label}] started", flush=True)
    result = STAGES[args.name](paths, paths.params(), args.partition)
    print(f"[{label}] done")
    for key, value in result.metadata.items():
        print(f"  {key}: {value}")
    for key, path in result.outputs.items():
        print(f"  {key} -> {path}")
    for key, table in result.tables.items():
        if args.verbose or key == "categories":
            print(f"\n{key}:\n{markdown_table(table, max_rows=12)}")
    return 0


def _cmd_profile(args: argparse.Namespace) -> int:
    """Make a profile the active one: copy configs/<name>.yaml to params.yaml after validating it."""
    paths = ProjectPaths(args.project_dir, args.params)
    source = profile_path(args.name, paths.project_dir)
    load_params(source)
    shutil.copyfile(source, paths.params_file)
    print(f"active profile: {args.name} ({source} -> {paths.params_file})")
    if paths.params_file == paths.project_dir / "params.yaml":  # the file DVC reads: its stages follow it
        write_text(paths.project_dir / "dvc.yaml", render_dvc_yaml(paths.params(), paths.project_dir))
        print(f"dvc.yaml rendered for {args.name}")
    return 0


def _cmd_validate(args: argparse.Namespace) -> int:
    """Validate profile files without activating them."""
    project_dir = Path(args.project_dir).resolve()
    for name in args.names:
        params = load_params(profile_path(name, project_dir))
        print(f"{name}: ok (data.source={params.data.source}, data_root={params.data.data_root})")
    return 0


def _cmd_where(args: argparse.Namespace) -> int:
    """Print where each materialized asset's files are."""
    paths = ProjectPaths(args.project_dir, args.params)
    print(f"profile: {paths.params().profile}  (params: {paths.params_file})")
    for name in STAGES:
        folder = paths.asset(name)
        if name in ("benchmark_scores", "cgrpo_checkpoint") and folder.is_dir():
            parts = sorted(p.name for p in folder.iterdir() if p.is_dir())
            print(f"  {name:<22} {folder}  [{', '.join(parts) or 'not materialized'}]")
            continue
        files = sorted(p for p in folder.glob("*") if p.is_file()) if folder.is_dir() else []
        state = ", ".join(p.name for p in files[:6]) if files else "not materialized"
        print(f"  {name:<22} {folder}  [{state}]")
    return 0


def _cmd_vmr(args: argparse.Namespace) -> int:
    """Segment one video, retrieve the top-k clips for a question, print them with times and scores."""
    paths = ProjectPaths(args.project_dir, args.params)
    params = paths.params()
    embedder_config = recorded_embedder(paths) or params.vmr.resolved_embedder(paths.project_dir)
    segmentation = segment_video(args.video, params.vmr.shots)
    embedder = ClipEmbedder(embedder_config)
    clips = embedder.embed_clips(args.video, segmentation.spans)
    query = embedder.embed_query(args.question, args.option, sample_id="cli")
    selected = retrieve_clips(query, clips, k=args.k or params.vmr.top_k)
    frames, _ = plan_frames(selected, segmentation.fps, params.video, video=args.video)
    print(
        f"{args.video}: {segmentation.num_frames} frames at {segmentation.fps:g} fps, "
        f"{len(segmentation.spans)} shots; embedder {embedder.model_id}"
    )
    print(f"question: {args.question}")
    print("| clip | frames | seconds | score |")
    print("|---:|---|---|---:|")
    for clip in selected:
        print(
            f"| {clip.clip_index} | {clip.start_frame}-{clip.end_frame} | "
            f"{clip.start_time:.2f}-{clip.end_time:.2f} | {clip.score:.4f} |"
        )
    print(f"frames fed to the model: {len(frames)} (1 fps, padded to whole temporal groups per clip)")
    return 0


def _cmd_eval(args: argparse.Namespace) -> int:
    """Evaluate one method on one benchmark (resumable; records under assets/benchmark_scores)."""
    paths = ProjectPaths(args.project_dir, args.params)
    return eval_command(paths, paths.params(), args.benchmark, args.method, args.limit)


def _cmd_dvc_yaml(args: argparse.Namespace) -> int:
    """Render dvc.yaml from the stage declarations for the active profile; ``--check`` only compares."""
    paths = ProjectPaths(args.project_dir, args.params)
    target = paths.project_dir / "dvc.yaml"
    text = render_dvc_yaml(paths.params(), paths.project_dir)
    if args.check:
        if target.is_file() and target.read_text() == text:
            print(f"{target} is up to date")
            return 0
        print(f"{target} differs from the stage declarations: run `marc dvc-yaml`", file=sys.stderr)
        return 1
    write_text(target, text)
    print(f"wrote {target} ({text.count(chr(10))} lines)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="marc", description=__doc__)
    parser.add_argument("--project-dir", default=".", help="project root (holds params.yaml and assets/)")
    parser.add_argument("--params", default="params.yaml", help="params file, relative to the project root")
    sub = parser.add_subparsers(dest="command", required=True)

    stage = sub.add_parser("stage", help="run one pipeline stage by asset name (DVC's driver)")
    stage.add_argument("name")
    stage.add_argument(
        "--partition", default=None, help="partition key of a partitioned stage (e.g. a tau: 0.6)"
    )
    stage.add_argument("-v", "--verbose", action="store_true", help="print every table")
    stage.set_defaults(func=_cmd_stage)

    profile = sub.add_parser("profile", help="activate a profile from configs/ (writes params.yaml)")
    profile.add_argument("name")
    profile.set_defaults(func=_cmd_profile)

    validate = sub.add_parser(
        "validate-profile", help="validate profiles in configs/ without activating them"
    )
    validate.add_argument("names", nargs="+")
    validate.set_defaults(func=_cmd_validate)

    vmr = sub.add_parser("vmr", help="segment a video and retrieve the top-k clips for a question")
    vmr.add_argument("video")
    vmr.add_argument("question")
    vmr.add_argument("--option", action="append", default=[], help="an answer option (repeatable)")
    vmr.add_argument("--k", type=int, default=None, help="clips to keep (default: the profile's vmr.top_k)")
    vmr.set_defaults(func=_cmd_vmr)

    evaluate = sub.add_parser("eval", help="evaluate a method on a benchmark (greedy, resumable)")
    evaluate.add_argument("--benchmark", required=True, help="e.g. synthetic, mvbench, vsibench")
    evaluate.add_argument("--method", required=True, help="e.g. baseline-64f, vmr-64f, marc@0.6, sft-1f")
    evaluate.add_argument(
        "--limit", type=int, default=None, help="only the first N samples of the benchmark file"
    )
    evaluate.set_defaults(func=_cmd_eval)

    dvc_yaml = sub.add_parser("dvc-yaml", help="render dvc.yaml from the stage declarations (active profile)")
    dvc_yaml.add_argument("--check", action="store_true", help="only say whether dvc.yaml is up to date")
    dvc_yaml.set_defaults(func=_cmd_dvc_yaml)

    where = sub.add_parser("where", help="show where the materialized assets are")
    where.set_defaults(func=_cmd_where)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
