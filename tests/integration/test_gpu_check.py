"""The GPU check (``marc gpu-check``, docs/gpu.md) on the tiny model: the quick run passes end to end, and a
failing or (in full mode) skipped check makes the command fail, so the check on the GPU cannot rot unnoticed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from marc_ops.cli import main
from marc_ops.eval.gpu_check import checks
from marc_ops.eval.gpu_check.checks import CHECK_NAMES, Skip

REPO_ROOT = Path(__file__).resolve().parents[2]


def _marc() -> list[str]:
    script = Path(sys.executable).with_name("marc")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "marc_ops.cli"]


def test_the_quick_check_passes_every_check_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "gpu_check"
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    done = subprocess.run(
        [
            *_marc(),
            "--project-dir",
            str(REPO_ROOT),
            "gpu-check",
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    report = json.loads((out / "gpu_check.json").read_text())
    assert report["ok"] and report["quick"]
    assert [check["name"] for check in report["checks"]] == list(CHECK_NAMES)
    for check in report["checks"]:
        assert set(check) >= {"name", "passed", "seconds", "details"}
        assert check["passed"] or (check["status"] == "skipped" and check["details"]["reason"]), check
    by_name = {check["name"]: check for check in report["checks"]}
    assert by_name["compression_off_bit_identical"]["details"]["max_abs_difference"] == 0
    marc = by_name["marc_placeholders_equal_features"]["details"]
    assert marc["placeholders"] == marc["features"] < marc["visual_tokens_uncompressed"]
    for name in ("cgrpo_zero3_two_steps", "sft_zero3_one_step"):
        assert by_name[name]["details"]["tensors_changed"] > 0, by_name[name]
    profiled = set(by_name["efficiency_profile"]["details"]["methods"])
    assert {"baseline-64f", "baseline-16f", "marc@0.6"} <= profiled

    table = (out / "gpu_check.md").read_text()
    assert all(f"| {name} | passed |" in table for name in CHECK_NAMES)
    assert "## Efficiency profile" in table and (out / "efficiency_profile.json").is_file()
    assert not list(out.glob("scratch-*")), "the scratch folder (models, training runs) is removed"


def _failing(setting: object) -> tuple[str, dict]:
    raise AssertionError("logits differ from the unpatched model's by up to 0.5")


def test_a_failing_check_fails_the_command_and_the_rest_still_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(checks.CHECKS, "compression_off_bit_identical", _failing)
    run = ["--project-dir", str(REPO_ROOT), "gpu-check", "--device", "cpu", "--quick", "--out", str(tmp_path)]

    status = main([*run, "--checks", "compression_off_bit_identical", "model"])

    assert status == 1
    assert "FAILED: compression_off_bit_identical" in capsys.readouterr().out
    report = json.loads((tmp_path / "gpu_check.json").read_text())
    assert not report["ok"]
    failed, model = report["checks"]
    assert (failed["status"], failed["passed"]) == ("failed", False)
    assert (
        failed["details"]["error"] == "AssertionError: logits differ from the unpatched model's by up to 0.5"
    )
    assert model["passed"]
    assert "| compression_off_bit_identical | failed |" in (tmp_path / "gpu_check.md").read_text()


def _skipped(setting: object) -> tuple[str, dict]:
    raise Skip("needs CUDA + deepspeed")


@pytest.mark.parametrize(("quick", "status"), [(True, 0), (False, 1)], ids=["quick", "full"])
def test_a_skip_is_allowed_in_quick_mode_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, quick: bool, status: int
) -> None:
    monkeypatch.setitem(checks.CHECKS, "sft_zero3_one_step", _skipped)
    mode = ["--quick"] if quick else []
    run = ["--project-dir", str(REPO_ROOT), "gpu-check", "--device", "cpu", *mode, "--out", str(tmp_path)]

    assert main([*run, "--checks", "sft_zero3_one_step"]) == status
    (check,) = json.loads((tmp_path / "gpu_check.json").read_text())["checks"]
    assert check["status"] == "skipped" and check["details"]["reason"] == "needs CUDA + deepspeed"


def test_without_a_cuda_device_the_full_check_says_so_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    assert main(["gpu-check", "--out", str(tmp_path)]) == 2

    err = capsys.readouterr().err
    assert err.splitlines() == [
        "marc gpu-check: error: no CUDA device here (torch.cuda.is_available() is false): the GPU check needs "
        "one; `marc gpu-check --device cpu --quick` runs the same checks on the tiny model"
    ]
    assert not (tmp_path / "gpu_check.json").exists()
