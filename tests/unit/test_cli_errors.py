"""Every ``marc`` command reports an expected failure as one line on stderr, naming what is wrong and what to
do, with an exit status by kind (2 usage, 3 expected failure, 5 bug); ``--debug`` prints the traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from tests_support import REPO_ROOT

import marc_ops.cli
from marc_ops.cli import main

COMMANDS = ("stage", "profile", "validate-profile", "vmr", "eval", "dvc-yaml", "where")
BROKEN_PROFILE = "profile: broken\ndata: {source: s3}\n"

# (name, command line after `--project-dir PROJECT`, exit status, what the line must say); PROJECT is a
# small tiny profile with nothing materialized, holding empty.mp4, bad.yaml, invalid.yaml and
# configs/broken.yaml.
CASES: list[tuple[str, list[str], int, str]] = [
    ("vmr-empty-video", ["vmr", "{p}/empty.mp4", "q"], 3, r"empty\.mp4: file is empty .*give a video"),
    ("vmr-missing-video", ["vmr", "{p}/gone.mp4", "q"], 3, r"gone\.mp4: file does not exist"),
    ("stage-unknown", ["stage", "nope"], 2, r"unknown stage 'nope'; known: videor1_source, "),
    (
        "stage-bad-partition",
        ["stage", "cgrpo_checkpoint", "--partition", "x"],
        2,
        r"partition key 'x' must be",
    ),
    ("stage-no-partition", ["stage", "cgrpo_checkpoint"], 2, r"cgrpo_checkpoint is partitioned: give"),
    (
        "stage-upstream-missing",
        ["stage", "train_subset"],
        3,
        r"videor1_manifest/manifest\.parquet.*materialize videor1_manifest first",
    ),
    (
        "where-params-not-yaml",
        ["--params", "bad.yaml", "where"],
        3,
        r"bad\.yaml: not valid YAML at line 3, column 4: .*fix the file",
    ),
    ("where-params-invalid", ["--params", "invalid.yaml", "where"], 3, r"invalid\.yaml: data\.train_size: "),
    ("where-params-missing", ["--params", "gone.yaml", "where"], 3, r"params file not found: .*gone\.yaml"),
    ("profile-unknown", ["profile", "nope"], 2, r"unknown profile 'nope': .*configs/nope\.yaml"),
    ("validate-profile-invalid", ["validate-profile", "broken"], 3, r"broken\.yaml: data\.source: "),
    (
        "profile-param-unset",
        ["profile", "sparse"],
        3,
        r"sparse\.yaml: train\.launch\.teacher \(read by teacher_rewards\), eval\.sort_by_length \(read by "
        r"benchmark_scores\) not set: DVC records",
    ),
    ("eval-unknown-benchmark", ["eval", "--benchmark", "nope", "--method", "sft-1f"], 2, r"benchmark 'nope'"),
    ("eval-unknown-method", ["eval", "--benchmark", "synthetic", "--method", "nope"], 2, r"method 'nope'"),
    (
        "eval-checkpoint-missing",
        ["eval", "--benchmark", "synthetic", "--method", "sft-1f", "--limit", "1"],
        3,
        r"sft_checkpoint/model.*materialize the sft_checkpoint asset first",
    ),
    ("dvc-yaml-params-invalid", ["--params", "invalid.yaml", "dvc-yaml"], 3, r"invalid\.yaml: data"),
]


@pytest.fixture()
def project(small_project: Path) -> Path:
    (small_project / "empty.mp4").write_bytes(b"")
    (small_project / "bad.yaml").write_text("profile: tiny\ndata: [1, 2\nvmr: {}\n")
    params = yaml.safe_load((small_project / "params.yaml").read_text())
    del params["data"]["train_size"]
    (small_project / "invalid.yaml").write_text(yaml.safe_dump(params))
    (small_project / "configs").mkdir()
    (small_project / "configs" / "broken.yaml").write_text(BROKEN_PROFILE)
    # valid (the class defaults fill them in) but without two keys that DVC stages read as params
    del params["train"]["launch"]["teacher"], params["eval"]["sort_by_length"]
    params["data"]["train_size"] = 8
    (small_project / "configs" / "sparse.yaml").write_text(yaml.safe_dump(params))
    return small_project


@pytest.mark.parametrize(("args", "status", "says"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_an_expected_failure_is_one_line_with_its_status(
    project: Path, capsys: pytest.CaptureFixture[str], args: list[str], status: int, says: str
):
    got = main(["--project-dir", str(project), *[arg.format(p=project) for arg in args]])
    err = capsys.readouterr().err
    assert got == status, err
    assert len(err.splitlines()) == 1, err
    command = next(arg for arg in args if arg in COMMANDS)
    assert err.startswith(f"marc {command}: error: "), err
    assert re.search(says, err), err


def test_debug_prints_the_traceback_instead(project: Path, capsys: pytest.CaptureFixture[str]):
    status = main(["--debug", "--project-dir", str(project), "vmr", str(project / "empty.mp4"), "q"])
    err = capsys.readouterr().err
    assert status == 3
    assert err.startswith("Traceback (most recent call last):"), err
    assert "marc_ops/video/" in err
    assert err.rstrip().splitlines()[-1].startswith("marc_ops.video.errors.VideoDecodeError: ")


def _raise_key_error(*_: object) -> str:
    raise KeyError("stages")


@pytest.mark.parametrize("debug", [False, True], ids=["line", "debug"])
def test_a_bug_says_where_and_how_to_see_the_traceback(
    project: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, debug: bool
):
    monkeypatch.setattr(marc_ops.cli, "render_dvc_yaml", _raise_key_error)
    status = main([*(["--debug"] if debug else []), "--project-dir", str(project), "dvc-yaml"])
    err = capsys.readouterr().err
    assert status == 5
    if debug:
        assert "Traceback (most recent call last):" in err and "_raise_key_error" in err
        return
    assert len(err.splitlines()) == 1, err
    assert err.startswith("marc dvc-yaml: unexpected error (a bug) KeyError: 'stages' (at marc_ops/cli.py:")
    assert "in _cmd_dvc_yaml); rerun with --debug for the traceback" in err


@pytest.mark.parametrize(
    "args",
    [["stage"], ["eval", "--method", "sft-1f"], ["frobnicate"]],
    ids=["no-name", "no-benchmark", "no-command"],
)
def test_a_usage_error_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str], args: list[str]):
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert len(err.splitlines()) == 1, err
    assert re.fullmatch(r"marc( \S+)?: error: .+; see marc( \S+)? --help\n", err), err


def _marc() -> list[str]:
    script = Path(sys.executable).with_name("marc")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "marc_ops.cli"]


@pytest.mark.slow
def test_the_installed_command_exits_3_with_one_line(project: Path):
    """The console script itself (what DVC runs): status and stderr as a shell sees them. Slow tier: a fresh
    interpreter imports the whole library (15-30 s on 2 cores); the tests above run the same ``main``."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [*_marc(), "--project-dir", str(project), "vmr", str(project / "empty.mp4"), "q"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert done.returncode == 3, done.stderr
    assert done.stderr.splitlines() == [
        f"marc vmr: error: {project / 'empty.mp4'}: file is empty (0 bytes); give a video or image file that decodes"
    ]


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),
        RuntimeError("failed to write parquet: No space left on device (os error 28)"),  # as polars says it
        ValueError("could not save the table"),  # raised from a full disk
    ],
    ids=["oserror", "library-message", "raised-from"],
)
def test_a_full_disk_is_an_expected_failure_however_a_library_reports_it(error: Exception):
    if isinstance(error, ValueError):
        try:
            raise error from OSError(122, "Disk quota exceeded")
        except ValueError as raised:
            error = raised
    status, line = marc_ops.cli.describe_error(error)
    assert status == 3
    assert line.endswith("; free space on that file system and rerun")


@pytest.mark.parametrize(
    ("args", "status", "lines"),
    [
        (["--partition", "0.60"], 0, [r"skip  cgrpo_checkpoint\[0\.6\]: not materialized"]),
        (
            ["--partition", "synthetic|marc"],
            0,
            [r"skip  benchmark_scores\[synthetic\|marc@0\.6\]: not materialized"],
        ),
        (
            ["cgrpo_checkpoint", "--partition", "0.9"],
            0,
            [r"skip  cgrpo_checkpoint\[0\.9\]: not materialized"],
        ),
        (
            ["videor1_manifest", "--partition", "0.6"],
            2,
            [r"error: videor1_manifest not partitioned: drop --partition"],
        ),
        (
            ["--partition", "nope"],
            2,
            [r"error: no asset with checks has the partition 'nope' in this profile"],
        ),
    ],
    ids=["tau", "method-default-tau", "named-outside-profile", "unpartitioned", "unknown"],
)
def test_check_one_partition_checks_the_assets_that_have_it(
    small_project: Path, capsys: pytest.CaptureFixture[str], args: list[str], status: int, lines: list[str]
):
    assert main(["--project-dir", str(small_project), "check", *args]) == status
    captured = capsys.readouterr()
    printed = (captured.out + captured.err).splitlines()
    assert len(printed) == len(lines), printed
    for line, pattern in zip(printed, lines, strict=True):
        assert re.search(pattern, line), line
