"""The ``marc`` command: thin wrappers over the same functions the Dagster assets call.

A command that fails prints one line on stderr that says what is wrong and what to do (``marc --debug``
prints the traceback instead) and exits with a status that says which kind of failure it was:

  0  done
  1  ``dvc-yaml --check``: dvc.yaml differs from the stage declarations; ``check``: a check that is an error
     failed; ``gpu-check``: a check failed (or, in full mode, was skipped)
  2  usage: a bad argument, or an unknown stage, profile, benchmark, method or partition key
  3  an expected failure: a missing or unreadable file, a profile that does not validate, media that does
     not decode, a full disk
  4  another run is materializing the same asset (partition): the line names it
  5  an unexpected error: a bug (rerun with --debug for the traceback)
"""

from __future__ import annotations

import argparse
import re
import shutil
import sys
import traceback
from pathlib import Path
from typing import NoReturn

import yaml
from pydantic import ValidationError

from marc_ops.checks import ASSET_CHECKS
from marc_ops.config import ConfigError, Params, ProjectPaths, load_params, profile_path
from marc_ops.data.synthetic.bad_inputs import CASES_FILE, generate_bad_inputs
from marc_ops.errors import MarcError, UsageError
from marc_ops.eval.gpu_check.checks import (
    CHECK_NAMES,
    GpuCheckConfig,
    iter_failures,
    run_gpu_check,
    write_gpu_check,
)
from marc_ops.eval.stages import eval_command
from marc_ops.io import out_of_space, write_text
from marc_ops.registry import STAGES, benchmark_method_key, partition_keys
from marc_ops.registry.dvcfile import missing_params, render_dvc_yaml
from marc_ops.registry.runlock import AssetBusyError, running
from marc_ops.tables import markdown_table
from marc_ops.video.errors import MediaError
from marc_ops.vmr.embedding import ClipEmbedder
from marc_ops.vmr.retrieval import plan_frames, retrieve_clips
from marc_ops.vmr.shots import segment_video
from marc_ops.vmr.stages import recorded_embedder

EXIT_USAGE, EXIT_FAILED, EXIT_BUSY, EXIT_BUG = 2, 3, 4, 5


def _cmd_stage(args: argparse.Namespace) -> int:
    """Run one stage by asset name (this is what each DVC stage calls)."""
    if args.name not in STAGES:
        raise UsageError(f"unknown stage {args.name!r}; known: {', '.join(STAGES)}")
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
    _check_profile(source)
    shutil.copyfile(source, paths.params_file)
    print(f"active profile: {args.name} ({source} -> {paths.params_file})")
    if paths.params_file == paths.project_dir / "params.yaml":  # the file DVC reads: its stages follow it
        write_text(paths.project_dir / "dvc.yaml", render_dvc_yaml(paths.params(), paths.project_dir))
        print(f"dvc.yaml rendered for {args.name}")
    return 0


def _check_profile(source: Path) -> Params:
    """The profile's params, once it validates and spells out every param a DVC stage reads."""
    params = load_params(source)
    raw = yaml.safe_load(source.read_text(encoding="utf-8")) or {}
    missing = missing_params(raw)
    if missing:
        listed = ", ".join(f"{key} (read by {stage})" for key, stage in missing.items())
        raise ConfigError(
            f"{source}: {listed} not set: DVC records each stage's params from the profile file itself; "
            "add them (configs/tiny.yaml sets every one)"
        )
    return params


def _cmd_validate(args: argparse.Namespace) -> int:
    """Validate profile files without activating them."""
    project_dir = Path(args.project_dir).resolve()
    for name in args.names:
        params = _check_profile(profile_path(name, project_dir))
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
    params = paths.params()
    # The files of the benchmark_scores partition: one writer at a time, whichever driver.
    partition = benchmark_method_key(f"{args.benchmark}|{args.method}")
    with running(paths.project_dir, "benchmark_scores", partition):
        return eval_command(paths, params, args.benchmark, args.method, args.limit)


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


def _cmd_bad_inputs(args: argparse.Namespace) -> int:
    """Write the bad-input corpus (broken media, schema breaks, paths out of the data root) into a folder."""
    corpus = generate_bad_inputs(args.out_dir)
    classes = sorted({row.input_class for row in corpus.rows})
    print(f"wrote {len(corpus.rows)} rows and files ({', '.join(classes)}) under {args.out_dir}")
    print(f"  data root: {corpus.data_root}")
    print(f"  cases: {Path(args.out_dir) / CASES_FILE}")
    return 0


def _one_partition(
    todo: dict[str, list[str | None]], key: str, *, named: bool
) -> dict[str, list[str | None]]:
    """Partition ``key`` (in any spelling) of each asset in ``todo``: each named asset must be partitioned and
    ``key`` must parse as one of its keys; without names, the assets that have that partition."""
    flat = [name for name in todo if STAGES[name].partitions is None]
    if named and flat:
        raise UsageError(f"{', '.join(flat)} not partitioned: drop --partition")
    chosen = {}
    for name in todo:
        stage = STAGES[name]
        if stage.partitions is None:
            continue
        try:
            canonical = stage.canonical(key) if stage.canonical else key
        except UsageError:
            if named:
                raise
            continue
        if named or canonical in todo[name]:
            chosen[name] = [canonical]
    if not chosen:
        raise UsageError(f"no asset with checks has the partition {key!r} in this profile")
    return chosen


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage error on one line like every other failure (exit status 2)."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}; see {self.prog} --help\n")


def _cmd_check(args: argparse.Namespace) -> int:
    """Run the checks of the named assets (default: every asset that has checks) on their files; exit 1 if
    a check that is an error (not a warning) fails. A partition not materialized is skipped and said so.
    ``--partition K`` checks partition K of the named assets (default: of every asset that has it)."""
    unknown = [name for name in args.names if name not in ASSET_CHECKS]
    if unknown:
        raise UsageError(f"no checks for {', '.join(unknown)}; assets with checks: {', '.join(ASSET_CHECKS)}")
    paths = ProjectPaths(args.project_dir, args.params)
    params = paths.params()
    todo = {name: partition_keys(name, params) for name in args.names or ASSET_CHECKS}
    if args.partition is not None:
        todo = _one_partition(todo, args.partition, named=bool(args.names))
    failed = 0
    for name, keys in todo.items():
        for key in keys:
            label = name if key is None else f"{name}[{key}]"
            try:
                outcomes = [(check, check.run(paths, params, key)) for check in ASSET_CHECKS[name]]
            except FileNotFoundError as missing:
                print(f"skip  {label}: not materialized ({missing})")
                continue
            for check, outcome in outcomes:
                verdict = "pass" if outcome.passed else ("WARN" if check.warn else "FAIL")
                failed += not (outcome.passed or check.warn)
                print(f"{verdict}  {label} {check.name}: {outcome.summary}")
                if not outcome.passed and outcome.evidence is not None:
                    print(markdown_table(outcome.evidence, max_rows=12))
    return 1 if failed else 0


def _cmd_gpu_check(args: argparse.Namespace) -> int:
    """Run the GPU check (docs/gpu.md), write gpu_check.json and gpu_check.md, exit 1 if a check failed."""
    config = GpuCheckConfig(
        device=args.device,
        quick=args.quick,
        project_dir=Path(args.project_dir),
        batch_size=args.batch_size,
        checks=tuple(args.checks) if args.checks else None,
    )
    report = run_gpu_check(config, args.out)
    json_path, md_path = write_gpu_check(report, args.out)
    for result in report.checks:
        print(f"{result.status:7}  {result.name}: {result.summary}")
    failures = [result.name for result in iter_failures(report)]
    print(f"wrote {json_path} and {md_path}; {report.seconds:.0f} s")
    if failures:
        print(f"FAILED: {', '.join(failures)}")
    return 1 if failures else 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="marc", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--debug", action="store_true", help="on an error, print the traceback instead of one line"
    )
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

    bad_inputs = sub.add_parser(
        "bad-inputs",
        help="write the bad-input corpus (broken media, bad annotation rows and files) into a folder",
    )
    bad_inputs.add_argument("out_dir", type=Path)
    bad_inputs.set_defaults(func=_cmd_bad_inputs)
    check = sub.add_parser("check", help="run the asset checks on the files on disk (what Dagster runs)")
    check.add_argument("names", nargs="*", help="assets to check (default: every asset that has checks)")
    check.add_argument("--partition", default=None, help="one partition key (default: every partition)")
    check.set_defaults(func=_cmd_check)

    gpu_check = sub.add_parser(
        "gpu-check",
        help="check the 3B model, compression, efficiency and ZeRO-3 training on a GPU (docs/gpu.md)",
    )
    gpu_check.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    gpu_check.add_argument(
        "--quick", action="store_true", help="the tiny model in float32 and small inputs (what CI runs)"
    )
    gpu_check.add_argument("--out", type=Path, default=Path("gpu_check"), help="folder of the report files")
    gpu_check.add_argument(
        "--batch-size", type=int, default=None, help="the efficiency profile's batch (default: 15, quick: 1)"
    )
    gpu_check.add_argument("--checks", nargs="+", choices=CHECK_NAMES, help="run only these checks")
    gpu_check.set_defaults(func=_cmd_gpu_check)

    where = sub.add_parser("where", help="show where the materialized assets are")
    where.set_defaults(func=_cmd_where)
    return parser


_UNREADABLE = (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except Exception as error:  # the command's one report of any failure: a line, or the traceback
        status, line = describe_error(error)
        if args.debug:
            traceback.print_exc()
        else:
            print(f"marc {args.command}: {line}", file=sys.stderr)
        return status
    except KeyboardInterrupt:
        print(f"marc {args.command}: interrupted", file=sys.stderr)
        return 130


def describe_error(error: Exception) -> tuple[int, str]:
    """The exit status and the one line that report ``error``.

    A :class:`MarcError`, an invalid config, a missing or unreadable file and a full disk are expected
    failures whose message already says what is wrong; anything else is a bug, reported with its type and
    where it was raised.
    """
    message = _flat(error)
    if isinstance(error, UsageError):
        return EXIT_USAGE, f"error: {message}"
    if isinstance(error, AssetBusyError):
        return EXIT_BUSY, f"error: {message}"
    if isinstance(error, MediaError):
        return EXIT_FAILED, f"error: {message}; give a video or image file that decodes"
    if isinstance(error, MarcError):
        return EXIT_FAILED, f"error: {message}"
    if isinstance(error, ValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in error.errors())
        return EXIT_FAILED, f"error: invalid {error.title}: {problems}"
    if out_of_space(error) is not None:  # an OSError, a library's error naming one, or raised from one
        return EXIT_FAILED, f"error: {message}; free space on that file system and rerun"
    if isinstance(error, _UNREADABLE):
        asset = re.search(r"/assets/(\w+)/", message)
        if isinstance(error, FileNotFoundError) and asset is not None and asset.group(1) in STAGES:
            return (
                EXIT_FAILED,
                f"error: {message}; materialize {asset.group(1)} first (marc stage {asset.group(1)})",
            )
        return EXIT_FAILED, f"error: {message}"
    return (
        EXIT_BUG,
        f"unexpected error (a bug) {type(error).__name__}: {message} ({_raised_at(error)}); "
        "rerun with --debug for the traceback",
    )


def _flat(error: BaseException) -> str:
    """The message of ``error`` on one line (its type name when it has none)."""
    return " ".join(str(error).split()) or type(error).__name__


def _raised_at(error: BaseException) -> str:
    """``at marc_ops/x.py:12 in f``: the innermost frame of the library that raised ``error``, else the innermost."""
    frames = traceback.extract_tb(error.__traceback__)
    if not frames:
        return "no traceback"
    package = Path(__file__).resolve().parent
    ours = [frame for frame in frames if Path(frame.filename).resolve().is_relative_to(package)]
    frame = (ours or frames)[-1]
    path = Path(frame.filename).resolve()
    shown = path.relative_to(package.parent) if path.is_relative_to(package.parent) else path
    return f"at {shown}:{frame.lineno} in {frame.name}"


if __name__ == "__main__":
    sys.exit(main())
