"""HoliTom's outer merge (BASELINES.md section 6): the worked examples of 6e, the window DP on hand-built
patterns, the centre update by hand, the positions of 6d, the API, and a loop-by-loop reference."""

from __future__ import annotations

import itertools
import math
from fractions import Fraction

import pytest
import torch

from marc_ops.compression.api import compress, list_methods, method_options, output_count
from marc_ops.compression.base import grid_positions
from marc_ops.compression.holitom import HoliTomOptions, merge_into_centres, static_windows

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/unit/conftest.py


def _run(tokens: torch.Tensor, grid: tuple[int, int], retention: float, **options):
    return compress("holitom", tokens, grid, retention=retention, **options)


def _check_invariants(out, n_groups: int, grid: tuple[int, int]) -> None:
    n_source = n_groups * grid[0] * grid[1]
    assert out.source_tokens == n_source
    assert torch.equal(out.kept, torch.sort(out.kept).values)
    assert out.kept.unique().numel() == out.kept.numel()
    assert int(out.kept.min()) >= 0 and int(out.kept.max()) < n_source
    assert torch.equal(out.positions, grid_positions(out.kept, grid))


# --- an independent reference: plain loops over the steps of 6b, float64 ------------------------------------


def _reference_windows(
    static: list[list[bool]], n_groups: int, w_max: int
) -> tuple[list[tuple[int, int]], int]:
    def gain(s: int, e: int) -> int:
        return (e - s) * sum(all(static[t][p] for t in range(s, e)) for p in range(len(static[0])))

    dp, prev = [0] * n_groups, [0] * n_groups
    for i in range(n_groups):
        dp[i], prev[i] = (dp[i - 1] if i else 0), i
        for width in range(2, min(i + 1, w_max) + 1):
            j = i - width
            value = (dp[j] if j >= 0 else 0) + gain(j + 1, i)
            if value > dp[i]:
                dp[i], prev[i] = value, j + 1
    windows, i = [], n_groups - 1
    while i >= 0:
        windows.insert(0, (prev[i], i))
        i = prev[i] - 1
    return windows, dp[-1]


def _reference_clusters(feats: list[torch.Tensor], count: int, k: int, beta, no_beta, generator) -> list:
    n, d = len(feats), feats[0].numel()
    dist = [[float((a - b).norm()) / math.sqrt(d) for b in feats] for a in feats]
    noise = torch.rand(n, generator=generator, dtype=torch.float64).tolist()
    density = [
        math.exp(-sum(v * v for v in sorted(row)[:k]) / k) + 1e-6 * u
        for row, u in zip(dist, noise, strict=True)
    ]
    biggest = max(max(row) for row in dist)
    parent = [min([dist[i][j] for j in range(n) if density[j] > density[i]] or [biggest]) for i in range(n)]
    centres = sorted(sorted(range(n), key=lambda i: (-parent[i] * density[i], i))[:count])
    members: dict[int, list[int]] = {c: [] for c in centres}
    for i in range(n):
        if i not in members:
            members[min(centres, key=lambda c: (dist[i][c], c))].append(i)
    merged = []
    for c in centres:
        group = [feats[i] for i in members[c]]
        if no_beta:
            value = (feats[c] + sum(group, torch.zeros(d, dtype=torch.float64))) / (len(group) + 1)
        elif group:
            value = beta * feats[c] + (1 - beta) * torch.stack(group).mean(0)
        else:
            value = feats[c]
        merged.append((c, value))
    return merged


def _reference(tokens, retention, tau=0.8, beta=0.6, no_beta=False, k=7, w_max=1024, seed=0, scores=None):
    x = tokens.double()
    n_groups, per_group, _ = x.shape
    cos = torch.nn.functional.cosine_similarity(x[:-1], x[1:], dim=-1)
    static = [[bool(cos[t, p] > tau) for p in range(per_group)] for t in range(n_groups - 1)]
    windows, saved = _reference_windows(static, n_groups, w_max)
    ratio = min(1, Fraction(str(retention)) * n_groups * per_group / (n_groups * per_group - saved))
    score = x.norm(dim=-1) if scores is None else scores.double()
    generator = torch.Generator().manual_seed(seed)
    out = []  # (flat index, token)
    for s, e in windows:
        still = [p for p in range(per_group) if all(static[t][p] for t in range(s, e))] if e > s else []
        moving = [p for p in range(per_group) if p not in still]
        count = round(len(still) * ratio)
        if count:
            feats = [x[s : e + 1, p].mean(0) for p in still]
            for c, value in _reference_clusters(feats, count, min(k, count), beta, no_beta, generator):
                out.append((s * per_group + still[c], value))
        keep = math.ceil(len(moving) * ratio)
        for t in range(s, e + 1):
            for p in sorted(moving, key=lambda p: (-float(score[t, p]), p))[:keep]:
                out.append((t * per_group + p, x[t, p]))
    out.sort(key=lambda item: item[0])
    return [i for i, _ in out], torch.stack([v for _, v in out]), windows, saved


def _scene_video(seed: int, n_groups: int, grid: tuple[int, int], d: int = 6) -> torch.Tensor:
    """Each position shows one of a few contents, switching at random: stretches of static tokens."""
    gen = torch.Generator().manual_seed(seed)
    per_group = grid[0] * grid[1]
    contents = torch.randn(4, per_group, d, generator=gen, dtype=torch.float64)
    which = torch.zeros(per_group, dtype=torch.long)
    frames = []
    for _ in range(n_groups):
        switch = torch.rand(per_group, generator=gen) < 0.3
        which = torch.where(switch, torch.randint(0, 4, (per_group,), generator=gen), which)
        jitter = 0.05 * torch.randn(per_group, d, generator=gen, dtype=torch.float64)
        frames.append(contents[which, torch.arange(per_group)] + jitter)
    return torch.stack(frames)


@pytest.mark.parametrize(
    ("seed", "retention", "options"),
    [
        (0, 0.25, {}),
        (1, 0.1, {}),
        (2, 0.4, {"no_beta": True}),
        (3, 0.25, {"w_max": 2}),
        (4, 0.15, {"w_max": 3, "k": 2, "tau": 0.6}),
        (5, 0.3, {"scores": "random", "seed": 7}),
        (6, 0.6, {"beta": 0.3}),
    ],
)
def test_matches_the_loop_reference(seed: int, retention: float, options: dict) -> None:
    grid = (3, 4)
    video = _scene_video(seed, 7, grid)
    if options.get("scores") == "random":
        options = {**options, "scores": torch.rand(7, 12, generator=torch.Generator().manual_seed(seed))}
    out = _run(video, grid, retention, **options)
    kept, tokens, windows, saved = _reference(video, retention, **options)
    static = torch.nn.functional.cosine_similarity(video[:-1], video[1:], dim=-1) > options.get("tau", 0.8)
    assert static_windows(static, options.get("w_max", 1024)) == (windows, saved)
    assert out.kept.tolist() == kept
    torch.testing.assert_close(out.tokens, tokens, rtol=1e-9, atol=1e-9)
    _check_invariants(out, 7, grid)
    assert any(e > s for s, e in windows)  # the videos do exercise the static path


# --- the worked examples of 6e ------------------------------------------------------------------------------


def test_two_identical_groups_give_half_as_static_clusters() -> None:
    frame = torch.randn(1, 100, 8, generator=torch.Generator().manual_seed(0))
    video = frame.repeat(2, 1, 1)
    static = torch.nn.functional.cosine_similarity(video[:-1], video[1:], dim=-1) > 0.8
    assert static_windows(static, 1024) == ([(0, 1)], 100)  # Z = 100, r' = 0.25·200/100 = 0.5
    out = _run(video, (10, 10), 0.25)
    assert out.tokens.shape == (50, 8)  # round(100·0.5) static cluster tokens, nothing dynamic: R·N
    assert (out.positions[:, 0] == 0).all() and int(out.kept.max()) < 100
    _check_invariants(out, 2, (10, 10))


def test_sixteen_identical_groups_collapse_to_one_frame() -> None:
    frame = torch.randn(1, 12, 8, generator=torch.Generator().manual_seed(1))
    out = _run(frame.repeat(16, 1, 1), (3, 4), 0.25)  # one window, Z = 15·P, r' = min(1, 4) = 1
    assert out.kept.tolist() == list(range(12))
    assert (out.positions[:, 0] == 0).all()
    torch.testing.assert_close(out.tokens, frame[0])


def test_no_static_position_is_pure_top_score_pruning() -> None:
    base = torch.randn(1, 100, 8, generator=torch.Generator().manual_seed(2))
    video = base * torch.tensor([1.0, -1.0, 1.0, -1.0])[:, None, None]  # σ = −1 everywhere: Z = 0
    scores = torch.rand(4, 100, generator=torch.Generator().manual_seed(3))
    out = _run(video, (10, 10), 0.07, scores=scores)  # ⌈0.07·100⌉ = 7 per group (not 8 from 7.000…01)
    expected = [
        t * 100 + p for t in range(4) for p in sorted(torch.argsort(scores[t], descending=True)[:7].tolist())
    ]
    assert out.kept.tolist() == expected
    assert torch.equal(out.tokens, video.reshape(400, 8)[expected])
    assert out.variant == "importance=attention"


def test_scores_none_ranks_by_norm() -> None:
    gen = torch.Generator().manual_seed(4)
    video = torch.randn(3, 20, 8, generator=gen) * torch.tensor([1.0, -1.0, 1.0])[:, None, None]
    video = video * torch.rand(3, 20, 1, generator=gen)
    out = _run(video, (4, 5), 0.2)
    norms = video.norm(dim=-1)
    expected = [
        t * 20 + p for t in range(3) for p in sorted(torch.argsort(norms[t], descending=True)[:4].tolist())
    ]
    assert out.kept.tolist() == expected and out.variant == "importance=norm"
    same = _run(video, (4, 5), 0.2, scores=norms)
    assert torch.equal(same.kept, out.kept) and torch.equal(same.tokens, out.tokens)


# --- the window DP on hand-built σ patterns -----------------------------------------------------------------


def _static(rows: list[str]) -> torch.Tensor:
    return torch.tensor([[c == "1" for c in row] for row in rows])


@pytest.mark.parametrize(
    ("rows", "w_max", "windows", "saved"),
    [
        # G(0,1) = 4, G(2,3) = 2, G(3,4) = 3, G(2,4) = 2·2 = 4: [0,1] + [2,4] saves 8
        (["1111", "0000", "1100", "1110"], 1024, [(0, 1), (2, 4)], 8),
        (["1111", "0000", "1100", "1110"], 2, [(0, 1), (2, 2), (3, 4)], 7),
        (["1111", "0000", "1100", "1110"], 1, [(0, 0), (1, 1), (2, 2), (3, 3), (4, 4)], 0),
        # [0,1] and [1,2] both save 1: only a strict improvement replaces the first found
        (["10", "01"], 1024, [(0, 1), (2, 2)], 1),
        # [0,2] saves 2·1, more than either pair
        (["10", "10"], 1024, [(0, 2)], 2),
        ([], 1024, [(0, 0)], 0),
    ],
)
def test_window_dp_on_hand_patterns(rows: list[str], w_max: int, windows: list, saved: int) -> None:
    static = _static(rows) if rows else torch.zeros(0, 3, dtype=torch.bool)
    assert static_windows(static, w_max) == (windows, saved)


def test_window_dp_saves_the_most_of_any_partition() -> None:
    gen = torch.Generator().manual_seed(5)
    for _ in range(20):
        static = torch.rand(6, 3, generator=gen) < 0.7
        windows, saved = static_windows(static, 1024)
        assert [s for s, _ in windows] == [0] + [e + 1 for _, e in windows[:-1]] and windows[-1][1] == 6
        best = 0
        for cuts in itertools.product([False, True], repeat=6):
            bounds = [0] + [i + 1 for i, cut in enumerate(cuts) if cut] + [7]
            best = max(
                best,
                sum((e - s - 1) * int(static[s : e - 1].all(0).sum()) for s, e in itertools.pairwise(bounds)),
            )
        assert saved == best


# --- static tokens: positions and the centre update --------------------------------------------------------


def test_static_tokens_sit_at_the_window_start_dynamic_at_their_own() -> None:
    gen = torch.Generator().manual_seed(6)
    still = torch.randn(1, 3, 8, generator=gen, dtype=torch.float64).repeat(4, 1, 1)
    moving = (
        torch.randn(1, 3, 8, generator=gen, dtype=torch.float64)
        * torch.tensor([1.0, -1.0, 1.0, -1.0])[:, None, None]
    )
    video = torch.cat([still, moving], dim=1)  # positions 0-2 static, 3-5 flip sign: one window, Z = 3·3
    out = _run(video, (2, 3), 0.25)  # r' = 6/15 = 0.4: round(1.2) = 1 centre, ⌈3·0.4⌉ = 2 dynamic per group
    assert out.tokens.shape[0] == 1 + 4 * 2
    static_rows = [i for i, k in enumerate(out.kept.tolist()) if k % 6 < 3]
    assert len(static_rows) == 1 and int(out.positions[static_rows[0], 0]) == 0
    assert all(k % 6 >= 3 for i, k in enumerate(out.kept.tolist()) if i not in static_rows)
    assert sorted(int(t) for t in out.positions[:, 0]) == [0, 0, 0, 1, 1, 2, 2, 3, 3]
    centre = int(out.kept[static_rows[0]])
    others = [p for p in range(3) if p != centre]
    expected = 0.6 * video[0, centre] + 0.4 * video[0, others].mean(0)
    torch.testing.assert_close(out.tokens[static_rows[0]], expected)
    rows = [i for i in range(9) if i not in static_rows]
    assert torch.equal(out.tokens[rows], video.reshape(24, 8)[out.kept[rows]])


def test_centre_update_by_hand() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, 0.0], [10.0, 0.0], [3.0, 0.0], [12.0, 0.0]])
    centres = torch.tensor([0, 2])  # 1 and 3 go to centre 0 (1 < 9, 3 < 7), 4 goes to centre 2
    torch.testing.assert_close(merge_into_centres(x, centres, 0.6), torch.tensor([[0.8, 0.0], [10.8, 0.0]]))
    plain = merge_into_centres(x, centres, 0.6, no_beta=True)  # mean(0, 1, 3), mean(10, 12)
    torch.testing.assert_close(plain, torch.tensor([[4 / 3, 0.0], [11.0, 0.0]]))
    lonely = merge_into_centres(
        x, torch.tensor([0, 2, 4]), 0.6
    )  # nothing nearer 12 than to 10 or 0: unchanged
    torch.testing.assert_close(lonely[2], x[4])
    tie = merge_into_centres(torch.tensor([[0.0], [2.0], [4.0]]), torch.tensor([0, 2]), 0.5)
    torch.testing.assert_close(tie, torch.tensor([[1.0], [4.0]]))  # 2 is as near 0 as 4: the lower centre


# --- through the API -----------------------------------------------------------------------------------------


def test_api_registration_options_and_errors() -> None:
    assert "holitom" in list_methods()
    video = torch.randn(4, 6, 8, generator=torch.Generator().manual_seed(7))
    assert output_count("holitom", 4, (2, 3), retention=0.5) is None
    assert torch.equal(_run(video, (2, 3), 1.0).tokens, video.reshape(24, 8))
    half = _run(video.to(torch.bfloat16), (2, 3), 0.5)
    assert half.tokens.dtype == torch.bfloat16
    assert torch.equal(half.kept, _run(video.to(torch.bfloat16), (2, 3), 0.5).kept)  # deterministic
    assert method_options("holitom", {}) == HoliTomOptions()
    with pytest.raises(ValueError, match="tau") as err:
        _run(video, (2, 3), 0.5, window=3)
    assert "window" in str(err.value) and "w_max" in str(err.value)
    with pytest.raises(ValueError, match="D > 0"):
        _run(video, (2, 3), 0.5, d=0.2)
    with pytest.raises(ValueError, match=r"scores must be \(T, P\)"):
        _run(video, (2, 3), 0.5, scores=torch.rand(4, 5))


def test_budget_is_r_n_up_to_rounding() -> None:
    for seed, retention in [(10, 0.1), (11, 0.25), (12, 0.4)]:
        video = _scene_video(seed, 8, (4, 5))
        out = _run(video, (4, 5), retention)
        _check_invariants(out, 8, (4, 5))
        # Σ r'·(N − Z) = R·N; ceilings add < 1 per group, rounding the clusters ±½ per window
        assert retention * 160 - 4 <= out.tokens.shape[0] <= retention * 160 + 8 + 4
