"""VidCom2 and FastVID (BASELINES.md sections 2, 4 and 8): the spec's worked examples and invariants, checked
against values computed by hand or by small independent references written here."""

from __future__ import annotations

import math

import pytest
import torch

from marc_ops.compression.api import compress, output_count
from marc_ops.compression.fastvid import (
    FastVIDOptions,
    density_peak_anchors,
    dyseg_cuts,
    merge_into_anchors,
    segment_allocation,
    segment_sizes,
)

pytestmark = pytest.mark.usefixtures("one_thread")

ALPHAS = (1 / 8, 1 / 4, 1 / 2, 1, 2)


def _random_video(seed: int, n_groups: int, grid: tuple[int, int], width: int = 16) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_groups, grid[0] * grid[1], width, generator=generator)


def _per_group_counts(kept: torch.Tensor, n_groups: int, n_tokens: int) -> list[int]:
    return torch.bincount(kept // n_tokens, minlength=n_groups).tolist()


# --- VidCom2: an independent reference in plain Python floats ---------------------------------------------


def _reference_vidcom2(
    rows: list[list[list[float]]], retention: float, channels: list[int] | None = None
) -> list[int]:
    """BASELINES.md 2(b) step by step, in float64 lists; ``channels`` overrides step 1."""
    n_groups, n_tokens, width = len(rows), len(rows[0]), len(rows[0][0])
    flat = [token for group in rows for token in group]
    if channels is None:
        means = [sum(token[j] for token in flat) / len(flat) for j in range(width)]
        variances = [sum((token[j] - means[j]) ** 2 for token in flat) / len(flat) for j in range(width)]
        channels = sorted(range(width), key=lambda j: (variances[j], j))[: width // 2]

    def unit(token: list[float]) -> list[float]:
        picked = [token[j] for j in channels]
        norm = math.sqrt(sum(value * value for value in picked))
        return [value / norm for value in picked]

    hat = [[unit(token) for token in group] for group in rows]

    def mean(points: list[list[float]]) -> list[float]:
        return [sum(column) / len(points) for column in zip(*points, strict=True)]

    def kernel(point: list[float], centre: list[float]) -> float:
        squared = sum((a - b) ** 2 for a, b in zip(point, centre, strict=True))
        return sum(math.exp(-squared / (2 * alpha)) for alpha in ALPHAS)

    video_centre = mean([point for group in hat for point in group])
    v = [[kernel(point, video_centre) for point in group] for group in hat]
    f = [[kernel(point, mean(group)) for point in group] for group in hat]
    uniqueness = [-sum(group) / n_tokens for group in v]
    top = max(uniqueness)
    weights = [math.exp((u - top) / 0.01) for u in uniqueness]
    share = [w / sum(weights) for w in weights]
    kept = []
    for t in range(n_groups):
        k = max(1, round(min(1.0, retention * (1 + share[t] - 1 / n_groups)) * n_tokens))
        order = sorted(range(n_tokens), key=lambda i: (v[t][i] + f[t][i], i))
        kept += sorted(t * n_tokens + i for i in order[:k])
    return kept


@pytest.mark.parametrize(
    ("n_groups", "grid", "retention"),
    [(4, (10, 10), 0.25), (3, (2, 5), 0.25), (7, (2, 5), 0.25), (3, (3, 4), 0.4), (6, (5, 5), 0.1)],
)
def test_vidcom2_identical_groups_share_the_budget_evenly(
    n_groups: int, grid: tuple[int, int], retention: float
) -> None:
    n_tokens = grid[0] * grid[1]
    tokens = _random_video(0, 1, grid).repeat(n_groups, 1, 1)
    out = compress("vidcom2", tokens, grid, retention=retention)
    # π uniform, so r_t = R: k_t = round(R·P) (half to even: 2.5 -> 2 on the (2, 5) grid).
    expected = max(1, round(retention * n_tokens))
    assert _per_group_counts(out.kept, n_groups, n_tokens) == [expected] * n_groups
    # The same tokens in every group, since the scores are the same.
    per_group = out.kept.reshape(n_groups, expected) % n_tokens
    assert (per_group == per_group[0]).all()


def test_vidcom2_one_unique_group_keeps_44_and_the_others_19() -> None:
    # Groups 1-3 point along +1, group 0 along -1: group 0 is far from the video centre, u_0 >> u_t, π one-hot.
    generator = torch.Generator().manual_seed(1)
    tokens = torch.ones(4, 100, 8) + 0.1 * torch.randn(4, 100, 8, generator=generator)
    tokens[0] = -tokens[0]
    out = compress("vidcom2", tokens, (10, 10), retention=0.25)
    # r_0 = 0.25·(1 + 1 - 1/4) = 0.4375 -> 44; r_t = 0.25·(1 + 0 - 1/4) = 0.1875 -> 19.
    assert _per_group_counts(out.kept, 4, 100) == [44, 19, 19, 19]
    assert out.tokens.shape[0] == 101


@pytest.mark.parametrize("seed", range(4))
def test_vidcom2_keeps_a_subset_of_rows_in_order_near_the_budget(seed: int) -> None:
    n_groups, grid = 3 + seed, (4, 5)
    tokens = _random_video(seed, n_groups, grid)
    for retention in (0.05, 0.2, 0.37, 0.5):
        out = compress("vidcom2", tokens, grid, retention=retention)
        assert (out.kept[1:] > out.kept[:-1]).all()
        assert torch.equal(out.tokens, tokens.reshape(-1, 16)[out.kept])
        n = n_groups * 20
        assert abs(out.tokens.shape[0] - retention * n) <= n_groups
        assert out.retention == out.tokens.shape[0] / n


@pytest.mark.parametrize("seed", range(5))
def test_vidcom2_matches_an_independent_reference(seed: int) -> None:
    tokens = _random_video(seed, 2, (1, 3), width=4)
    for retention in (0.3, 0.5, 0.7):
        out = compress("vidcom2", tokens, (1, 3), retention=retention)
        assert out.kept.tolist() == _reference_vidcom2(tokens.tolist(), retention)


def test_vidcom2_scores_on_the_lowest_variance_half_of_the_channels() -> None:
    # Channels 2 and 3 vary a hundred times more than 0 and 1; scoring on them would keep other tokens.
    generator = torch.Generator().manual_seed(3)
    tokens = torch.randn(2, 6, 4, generator=generator) + 1.0
    tokens[..., 2:] *= 100.0
    rows = tokens.tolist()
    kept = compress("vidcom2", tokens, (2, 3), retention=0.5).kept.tolist()
    assert kept == _reference_vidcom2(rows, 0.5, channels=[0, 1])
    assert kept != _reference_vidcom2(rows, 0.5, channels=[2, 3])


def test_vidcom2_returns_the_input_dtype_and_positions_on_the_grid() -> None:
    tokens = _random_video(5, 3, (2, 4)).to(torch.bfloat16)
    out = compress("vidcom2", tokens, (2, 4), retention=0.5)
    assert out.tokens.dtype == torch.bfloat16 and out.method == "vidcom2"
    k = out.kept
    assert torch.equal(out.positions, torch.stack([k // 8, (k % 8) // 4, k % 4], dim=1))
    assert output_count("vidcom2", 3, (2, 4), retention=0.5) is None


# --- FastVID: the parts ----------------------------------------------------------------------------------


def test_dyseg_cuts_the_c_minus_1_least_similar_and_everything_under_tau() -> None:
    similarity = [0.99, 0.5, 0.97, 0.9, 0.98]
    assert dyseg_cuts(similarity, c=3, tau=0.8) == [1, 3]  # the 2 smallest only
    assert dyseg_cuts(similarity, c=3, tau=0.975) == [1, 2, 3]  # plus 0.97 < τ
    assert dyseg_cuts(similarity, c=1, tau=0.95) == [1, 3]  # τ alone
    assert dyseg_cuts(similarity, c=1, tau=0.1) == []
    assert dyseg_cuts([0.9, 0.9, 0.9], c=3, tau=0.0) == [0, 1]  # ties: the earlier pair
    # c - 1 = 9 clamps to the T - 1 = 3 similarities there are: every group its own segment.
    assert dyseg_cuts([0.99, 0.99, 0.99], c=10, tau=0.5) == [0, 1, 2]
    assert segment_sizes([1, 2, 3], 6) == [2, 1, 1, 2]
    assert segment_sizes([0, 1, 2], 4) == [1, 1, 1, 1]
    assert segment_sizes([], 5) == [5]


def test_eight_groups_and_c_8_give_eight_one_group_segments() -> None:
    assert segment_sizes(dyseg_cuts([0.99] * 7, c=8, tau=0.84), 8) == [1] * 8
    # q = floor(100·0.25) = 25, C = max(floor(0.4·25), 1) = 10, A = 15.
    assert segment_allocation([], 25, 100, FastVIDOptions()) == [(15, 10)]


def test_segment_allocation_splits_over_sub_segments_as_the_official_code() -> None:
    # s < ε = 0.95 at 0, 2, 3, 4: sub-segments [0], [1, 2], [3], [4], [5]; only their last groups get tokens.
    similarity = [0.9, 0.99, 0.9, 0.9, 0.9]
    options = FastVIDOptions(d=0.4, p=2)
    # q = 13: S = 78, C = floor(31.2) = 31, A = 47. Salient 47 over 5: [10, 10, 9, 9, 9]. Context 31 over
    # ceil(5/2) = 3 anchor sub-segments counted back from the last (4, 2, 0): [11, 10, 10].
    assert segment_allocation(similarity, 13, 100, options) == [
        (10, 10),
        (0, 0),
        (10, 0),
        (9, 10),
        (9, 0),
        (9, 11),
    ]


def test_segment_allocation_caps_a_static_segment() -> None:
    # Five near-identical groups: one sub-segment, its last group holds everything. S = 125, C = 50, A = 75;
    # context <= P/2 = 50 and salient <= P - 50, so 100 of the 125 tokens.
    budgets = segment_allocation([0.99] * 4, 25, 100, FastVIDOptions())
    assert budgets == [(0, 0)] * 4 + [(50, 50)]
    # p = 1: every sub-segment is an anchor one; context 10 is capped at floor(P/2) = 3 in a group of P = 7.
    assert segment_allocation([0.5], 5, 7, FastVIDOptions(d=1.0, p=1, epsilon=0.95)) == [(0, 3), (0, 3)]


def test_dtm_weight_is_one_over_count_plus_one_floored_at_beta() -> None:
    flat = torch.tensor(
        [
            [1.0, 0.0],  # 0: anchor a
            [0.0, 1.0],  # 1: anchor b
            [2.0, 0.2],  # 2: -> a
            [0.1, 3.0],  # 3: -> b
            [0.2, 1.0],  # 4: -> b
            [0.3, 2.0],  # 5: -> b
            [5.0, 0.1],  # 6: salient, not pooled
        ]
    )
    updated = merge_into_anchors(flat, torch.tensor([6]), torch.tensor([0, 1]), beta=0.3)
    # a: one assigned, w = max(1/2, 0.3) = 0.5; b: three, w = max(1/4, 0.3) = 0.3.
    expected_a = 0.5 * flat[0] + 0.5 * flat[2]
    expected_b = 0.3 * flat[1] + 0.7 * (flat[3] + flat[4] + flat[5]) / 3
    torch.testing.assert_close(updated, torch.stack([expected_a, expected_b]))


def test_an_anchor_with_nothing_assigned_keeps_its_value() -> None:
    flat = torch.tensor([[1.0, 0.0], [-1.0, 0.3], [3.0, 0.1], [2.0, -0.2]])
    updated = merge_into_anchors(flat, torch.tensor([], dtype=torch.long), torch.tensor([0, 1]), beta=0.6)
    assert torch.equal(updated[1], flat[1])
    # Anchor 0 got both pooled tokens: w = max(1/3, 0.6) = 0.6.
    torch.testing.assert_close(updated[0], 0.6 * flat[0] + 0.4 * (flat[2] + flat[3]) / 2)


def test_density_peaks_are_the_cluster_centres() -> None:
    plus = torch.tensor([[0.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    points = torch.cat([plus, plus + 10.0])
    # Each centre is the densest point of its cluster and far from anything denser.
    for seed in range(3):
        chosen = density_peak_anchors(points, 2, torch.Generator().manual_seed(seed))
        assert chosen.tolist() == [0, 5]


# --- FastVID end to end ----------------------------------------------------------------------------------


def _softmax_scores(seed: int, n_groups: int, n_tokens: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(n_groups, n_tokens, generator=generator), dim=1)


def test_fastvid_one_group_segments_keep_15_salient_and_10_context_each() -> None:
    tokens = _random_video(7, 8, (10, 10))
    scores = _softmax_scores(8, 8, 100)
    out = compress("fastvid", tokens, (10, 10), retention=0.25, scores=scores)
    assert out.tokens.shape[0] == 200 and out.variant == "importance=attention"
    assert _per_group_counts(out.kept, 8, 100) == [25] * 8
    for t in range(8):
        top = {t * 100 + i for i in torch.argsort(scores[t], descending=True)[:15].tolist()}
        assert top <= set(out.kept.tolist())
        rows = [out.kept.tolist().index(index) for index in sorted(top)]
        # Salient tokens pass through unchanged.
        assert torch.equal(out.tokens[rows], tokens.reshape(-1, 16)[sorted(top)])


def test_fastvid_without_scores_ranks_by_token_norm() -> None:
    tokens = _random_video(9, 8, (10, 10))
    out = compress("fastvid", tokens, (10, 10), retention=0.25)
    assert out.variant == "importance=norm"
    norms = tokens.norm(dim=-1)
    for t in range(8):
        top = {t * 100 + i for i in torch.argsort(norms[t], descending=True)[:15].tolist()}
        assert top <= set(out.kept.tolist())


def test_fastvid_merges_the_one_pooled_token_into_its_nearest_anchor() -> None:
    # One group of 6: q = floor(6·R) = 5, C = max(floor(2.0), 1) = 2, A = 3. Three salient, two anchors from
    # the other three, and the last token is pooled into one anchor (w = max(1/2, 0.6) = 0.6); the other
    # anchor receives nothing and keeps its value.
    tokens = _random_video(11, 1, (2, 3), width=5)
    scores = torch.tensor([[0.3, 0.05, 0.25, 0.05, 0.3, 0.05]])
    out = compress("fastvid", tokens, (2, 3), retention=5 / 6, scores=scores)
    flat = tokens.reshape(6, 5)
    assert {0, 2, 4} <= set(out.kept.tolist())
    anchors = sorted(set(out.kept.tolist()) - {0, 2, 4})
    (pooled,) = sorted({1, 3, 5} - set(anchors))
    cosine = [torch.cosine_similarity(flat[pooled], flat[a], dim=0).item() for a in anchors]
    receiver = anchors[cosine.index(max(cosine))]
    for row, index in enumerate(out.kept.tolist()):
        expected = 0.6 * flat[index] + 0.4 * flat[pooled] if index == receiver else flat[index]
        torch.testing.assert_close(out.tokens[row], expected)


@pytest.mark.parametrize("seed", range(4))
def test_fastvid_never_exceeds_floor_pr_per_group(seed: int) -> None:
    generator = torch.Generator().manual_seed(100 + seed)
    for n_groups, grid in ((1, (3, 4)), (6, (4, 4)), (13, (3, 5))):
        noisy = _random_video(seed, n_groups, grid)
        # A slowly drifting video: long segments, sub-segments and binding caps.
        drift = torch.randn(1, grid[0] * grid[1], 16, generator=generator) + 0.05 * noisy.cumsum(dim=0)
        for tokens in (noisy, drift):
            for retention, c in ((0.1, 8), (0.27, 1), (0.5, 3), (0.9, 1)):
                n_tokens = grid[0] * grid[1]
                out = compress("fastvid", tokens, grid, retention=retention, c=c, tau=0.5, epsilon=0.999)
                assert out.tokens.shape[0] <= math.floor(n_tokens * retention + 1e-9) * n_groups
                assert (out.kept[1:] > out.kept[:-1]).all()
                k = out.kept
                width = grid[1]
                assert torch.equal(
                    out.positions, torch.stack([k // n_tokens, (k % n_tokens) // width, k % width], 1)
                )


def test_fastvid_is_reproducible_and_keeps_the_input_dtype() -> None:
    tokens = _random_video(12, 5, (4, 4)).to(torch.bfloat16)
    first = compress("fastvid", tokens, (4, 4), retention=0.3, c=2)
    second = compress("fastvid", tokens, (4, 4), retention=0.3, c=2)
    assert first.tokens.dtype == torch.bfloat16
    assert torch.equal(first.kept, second.kept) and torch.equal(first.tokens, second.tokens)
    assert output_count("fastvid", 5, (4, 4), retention=0.3) is None


# --- through the API ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["vidcom2", "fastvid"])
def test_retention_one_is_the_identity(method: str) -> None:
    tokens = _random_video(13, 2, (2, 2))
    out = compress(method, tokens, (2, 2), budget=100)
    assert torch.equal(out.tokens, tokens.reshape(-1, 16)) and out.kept.tolist() == list(range(8))


def test_budget_turns_into_a_retention() -> None:
    tokens = _random_video(14, 4, (5, 5))
    out = compress("fastvid", tokens, (5, 5), budget=20)  # R = 0.2: floor(25·0.2) = 5 per group
    assert out.tokens.shape[0] <= 20
    assert abs(compress("vidcom2", tokens, (5, 5), budget=20).tokens.shape[0] - 20) <= 4


@pytest.mark.parametrize(
    ("method", "known"), [("vidcom2", "temperature"), ("fastvid", "c, tau, epsilon, d, p")]
)
def test_an_unknown_option_names_the_methods_options(method: str, known: str) -> None:
    with pytest.raises(ValueError, match=f"takes no option 'alpha'.*{known}"):
        compress(method, _random_video(15, 2, (2, 2)), (2, 2), retention=0.5, alpha=1.0)


def test_a_wrongly_shaped_scores_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"scores must be \(T, P\) = \(2, 4\).*got shape \(2, 2, 2\)"):
        compress("fastvid", _random_video(16, 2, (2, 2)), (2, 2), retention=0.5, scores=torch.ones(2, 2, 2))


def test_fastvid_needs_one_token_per_group() -> None:
    with pytest.raises(ValueError, match=r"floor\(P·R\) = 0"):
        compress("fastvid", _random_video(17, 2, (2, 2)), (2, 2), retention=0.2)
