"""Learning, shown: the tiny profile's C-GRPO student beats its SFT-only student.

The whole check of ``benchmarks/learning.py`` (its numbers are in docs/benchmarks.md), from a random
tiny model: ~20 minutes on 2 cores. The margin is judged per held-out item, paired: the lower end of
the 95 % bootstrap interval of the C-GRPO − SFT-only difference must be above zero.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tests_support import REPO_ROOT

from marc_ops.eval.learning import profile_learning_config, run_learning_check

CGRPO_STEPS = 120  # as benchmarks/learning.py

# ~17 minutes on 2 cores: past the suite's 900 s per-test timeout (pyproject), so its own limit.
pytestmark = [pytest.mark.slow, pytest.mark.timeout(3600)]


def test_cgrpo_student_beats_sft_only_at_the_same_budget_and_keeps_the_teachers_accuracy(
    tmp_path: Path,
) -> None:
    config = profile_learning_config(
        REPO_ROOT / "configs" / "tiny.yaml", larger_corpus=True, cgrpo_steps=CGRPO_STEPS
    )

    result = run_learning_check(config, tmp_path)

    s = result.summary
    assert s["items"] >= 200
    # SFT taught the format and the answer types: well above an untrained model's 0
    assert s["sft_only_score"] > 10.0
    assert s["cgrpo_score"] > s["sft_only_score"]
    assert s["item_diff_ci_low"] > 0.0, s  # a margin that resampling the items does not erase
    assert s["eta"] >= 0.95, s
    # the curve starts at the SFT-only student and ends at the final C-GRPO student
    assert result.curve["step"][0] == 0 and result.curve["heldout_score"][0] == pytest.approx(
        s["sft_only_score"]
    )
    assert result.curve["step"][-1] == config.cgrpo.max_steps
