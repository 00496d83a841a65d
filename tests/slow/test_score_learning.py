"""SCORE learns, shown: on held-out tiny-profile videos at ρ = 0.25 the trained policy's selection gives the
frozen LLM a lower caption CE than a uniform-random selection of the same count and than the untrained
policy, each with a paired 95 % bootstrap interval entirely below zero (SCORE.md invariant 16).

The sizes are :class:`~marc_ops.eval.score_learning.ScoreLearningConfig`'s defaults, fixed before the
check was first run; its numbers are in docs/benchmarks.md. About 10 minutes on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from marc_ops.eval.score_learning import ScoreLearningConfig, run_score_learning_check

pytestmark = pytest.mark.slow


def test_trained_policy_keeps_what_the_frozen_llm_needs(tmp_path: Path) -> None:
    result = run_score_learning_check(ScoreLearningConfig(), tmp_path)
    summary = result.summary
    assert summary["items"] == 48
    assert summary["diff_random_ci_high"] < 0, summary
    assert summary["diff_untrained_ci_high"] < 0, summary
