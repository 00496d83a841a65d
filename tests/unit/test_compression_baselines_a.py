"""MovieChat, ByteVideoLLM and DyCoke TTM (BASELINES.md sections 1, 3, 5, 8): hand-computed cases,
the spec's worked examples, and references written here independently of the code under test."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from marc_ops.compression.api import compress, list_methods, output_count


@pytest.fixture(autouse=True, scope="module")
def _one_thread(one_thread: None) -> None:
    """Tiny tensors: one thread (conftest's ``one_thread``)."""


def _random(n_groups: int, grid: tuple[int, int], width: int = 6, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n_groups, grid[0] * grid[1], width, generator=generator, dtype=torch.float64)


def _frames(*rows: list[list[float]]) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def _own_positions(kept: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    per_group = grid[0] * grid[1]
    return torch.stack([kept // per_group, kept % per_group // grid[1], kept % grid[1]], dim=1)


# --- MovieChat -------------------------------------------------------------------------------------------------


def _reference_moviechat(tokens: torch.Tensor, window: int, merge: int, frames_out: int):
    """Section 1b literally: sim is the mean over all token pairs of the raw dot product."""

    def greedy(frames: list[torch.Tensor], firsts: list[int], keep: int):
        while len(frames) > keep:
            sims = [(frames[j] @ frames[j + 1].T).mean().item() for j in range(len(frames) - 1)]
            j = sims.index(max(sims))
            frames = frames[:j] + [(frames[j] + frames[j + 1]) / 2] + frames[j + 2 :]
            firsts = firsts[: j + 1] + firsts[j + 2 :]
        return frames, firsts

    long_term, firsts = [], []
    for start in range(0, tokens.shape[0], window):
        stop = min(start + window, tokens.shape[0])
        frames, groups = greedy(list(tokens[start:stop]), list(range(start, stop)), merge)
        long_term += frames
        firsts += groups
    return greedy(long_term, firsts, frames_out)


def test_moviechat_identical_groups_give_that_group() -> None:
    group = _random(1, (2, 3))[0]
    result = compress("moviechat", group.expand(20, -1, -1).clone(), (2, 3), retention=0.05)
    assert torch.equal(result.tokens, group)
    assert result.kept.tolist() == list(range(6))
    assert result.positions.tolist() == [[0, r, c] for r in range(2) for c in range(3)]


def test_moviechat_pair_means_are_equal_weight() -> None:
    a, b, c = [[2.0, 0.0], [0.0, 2.0]], [[1.0, 1.0], [1.0, 1.0]], [[0.0, 1.0], [0.0, -1.0]]
    # means (1, 1), (1, 1), (0, 0): sim(a, b) = 2 > sim(b, c) = 0, so a and b merge first
    frames = _frames(a, b, c)
    result = compress("moviechat", frames, (1, 2), retention=0.1)
    assert torch.allclose(result.tokens, (frames[0] + frames[1]) / 4 + frames[2] / 2)
    assert result.kept.tolist() == [0, 1]  # the frame's earliest group is group 0


def test_moviechat_similarity_is_dot_of_means_not_cosine() -> None:
    # means a (1, 0), b (1, 0.1), c (5, 5): dot prefers (b, c) (5.5 > 1), cosine would prefer (a, b)
    frames = _frames([[1.0, 0.5], [1.0, -0.5]], [[0.0, 0.1], [2.0, 0.1]], [[5.0, 0.0], [5.0, 10.0]])
    result = compress("moviechat", frames, (1, 2), retention=0.6)  # F = round(1.8) = 2
    expected = torch.cat([frames[0], (frames[1] + frames[2]) / 2])
    assert torch.allclose(result.tokens, expected)
    assert result.kept.tolist() == [0, 1, 2, 3]
    assert result.positions[:, 0].tolist() == [0, 0, 1, 1]


def test_moviechat_only_adjacent_frames_merge() -> None:
    # a and a' are identical (the largest similarity) but not neighbours; b sits between them
    a, b = [[3.0, 0.0]], [[1.0, 1.0]]
    frames = _frames(a, b, a)
    result = compress("moviechat", frames, (1, 1), retention=0.5)  # F = round(1.5) = 2, half up
    assert torch.allclose(result.tokens, torch.tensor([[2.0, 0.5], [3.0, 0.0]], dtype=torch.float64))
    assert result.kept.tolist() == [0, 2]


@pytest.mark.parametrize(
    ("n_groups", "retention", "frames"),
    [
        (40, 0.5, 6),
        (40, 0.1, 4),
        (40, 0.0375, 2),
        (40, 0.0125, 1),
        (40, 0.0625, 3),
        (10, 0.25, 2),
        (3, 0.01, 1),
        (17, 0.9, 3),
    ],
)
def test_moviechat_windows_and_frame_budget(n_groups: int, retention: float, frames: int) -> None:
    # windows of 16: T = 40 -> 16, 16, 8 -> 6 frames after the short-term phase; F = round(R·T) half up
    grid = (2, 2)
    tokens = _random(n_groups, grid, seed=n_groups)
    result = compress("moviechat", tokens, grid, retention=retention)
    assert result.tokens.shape == (frames * 4, 6)
    assert output_count("moviechat", n_groups, grid, retention=retention) == frames * 4

    ref_frames, ref_firsts = _reference_moviechat(
        tokens, 16, 2, max(1, math.floor(retention * n_groups + 0.5))
    )
    assert torch.allclose(result.tokens, torch.cat(ref_frames))
    within = torch.arange(4)
    assert result.kept.tolist() == [first * 4 + i for first in ref_firsts for i in within.tolist()]
    assert result.positions[:, 0].tolist() == [k for k in range(frames) for _ in range(4)]
    assert torch.equal(result.positions[:, 1:], _own_positions(result.kept, grid)[:, 1:])


def test_moviechat_partial_window_of_one_passes_through() -> None:
    tokens = _random(17, (1, 3))
    result = compress("moviechat", tokens, (1, 3), retention=0.9)
    assert torch.equal(result.tokens[-3:], tokens[16])
    assert result.kept[-3:].tolist() == [48, 49, 50]
    assert result.kept[:3].tolist() == [0, 1, 2]


def test_moviechat_window_options() -> None:
    # m = 10 - 2 = 8: T = 40 -> 5 windows -> 10 frames; merging each window to 3 -> 15
    assert output_count("moviechat", 40, (2, 2), retention=0.9, short_memory_length=10) == 40
    assert (
        output_count("moviechat", 40, (2, 2), retention=0.9, short_memory_length=10, short_memory_merge=3)
        == 60
    )
    tokens = _random(40, (2, 2))
    result = compress(
        "moviechat", tokens, (2, 2), retention=0.9, short_memory_length=10, short_memory_merge=3
    )
    ref_frames, _ = _reference_moviechat(tokens, 8, 3, 36)
    assert torch.allclose(result.tokens, torch.cat(ref_frames))
    with pytest.raises(ValueError, match="short_memory_length - merge_frame_length"):
        compress("moviechat", tokens, (2, 2), retention=0.5, short_memory_length=2, merge_frame_length=2)


# --- ByteVideoLLM ----------------------------------------------------------------------------------------------


def _reference_pool(tokens: torch.Tensor, grid: tuple[int, int], rows: int, cols: int) -> torch.Tensor:
    """Section 3b's bins: cell (i, j) averages rows floor(iH/s) .. ceil((i+1)H/s) - 1, and columns likewise."""
    height, width = grid
    frames = tokens.reshape(tokens.shape[0], height, width, -1)
    cells = []
    for i in range(rows):
        for j in range(cols):
            r0, r1 = math.floor(i * height / rows), math.ceil((i + 1) * height / rows)
            c0, c1 = math.floor(j * width / cols), math.ceil((j + 1) * width / cols)
            cells.append(frames[:, r0:r1, c0:c1].mean(dim=(1, 2)))
    return torch.stack(cells, dim=1).reshape(-1, tokens.shape[2])


@pytest.mark.parametrize(
    ("grid", "retention", "rounding", "pooled"),
    [
        ((8, 8), 120 / 2048, "round", (2, 2)),  # B/T = 3.75: round(1.94) = 2
        ((8, 8), 120 / 2048, "floor", (1, 1)),  # floor(3.75) = 3, floor(sqrt 3) = 1
        ((5, 5), 0.16, "round", (2, 2)),
        ((4, 8), 0.125, "round", (1, 4)),  # s = 2: s_h = round(2·0.707) = 1, s_w = 4
        ((6, 4), 0.5, "round", (4, 2)),  # s = round(3.46) = 3: s_h = round(3.67) = 4, s_w = round(2.25) = 2
        ((3, 3), 0.9, "round", (3, 3)),  # round(2.85) = 3: the whole grid
        ((3, 3), 0.9, "floor", (2, 2)),  # floor(8.1) = 8 -> 2
        ((2, 8), 0.9, "round", (2, 8)),  # s = 4: s_h = 2, s_w = 8
        ((30, 30), 0.9, "floor", (24, 24)),  # n = min(810, 576)
        ((30, 30), 0.9, "round", (28, 28)),  # round(28.46)
        ((4, 4), 0.0625, "round", (1, 1)),
        ((4, 4), 0.01, "floor", (1, 1)),  # n = 0 -> s = max(1, 0)
        ((1, 1), 0.5, "round", (1, 1)),
    ],
)
def test_bytevideollm_pooled_grid_and_values(grid, retention, rounding, pooled) -> None:
    tokens = _random(3, grid, seed=grid[0] * 31 + grid[1])
    result = compress("bytevideollm", tokens, grid, retention=retention, rounding=rounding)
    assert result.tokens.shape[0] == 3 * pooled[0] * pooled[1]
    assert (
        output_count("bytevideollm", 3, grid, retention=retention, rounding=rounding)
        == 3 * pooled[0] * pooled[1]
    )
    assert torch.allclose(result.tokens, _reference_pool(tokens, grid, *pooled))
    assert result.variant == f"rounding={rounding}"
    assert torch.equal(result.positions, _own_positions(result.kept, grid))


def test_bytevideollm_marc_setting() -> None:
    tokens = _random(32, (8, 8), width=4)
    assert compress("bytevideollm", tokens, (8, 8), budget=120, rounding="floor").tokens.shape[0] == 32
    assert compress("bytevideollm", tokens, (8, 8), budget=120).tokens.shape[0] == 128  # "round", the default


def test_bytevideollm_constant_frame_and_mean() -> None:
    values = torch.tensor([1.5, -2.0, 7.0], dtype=torch.float64)
    tokens = values[:, None, None].expand(3, 24, 5).clone()
    result = compress("bytevideollm", tokens, (6, 4), retention=0.3)
    assert torch.allclose(
        result.tokens, values.repeat_interleave(result.tokens.shape[0] // 3)[:, None].expand(-1, 5)
    )

    tokens = _random(4, (4, 4))
    mean = compress("bytevideollm", tokens, (4, 4), retention=0.0625)
    assert torch.allclose(mean.tokens, tokens.mean(dim=1))


def test_bytevideollm_full_grid_is_identity() -> None:
    tokens = _random(2, (3, 3))
    result = compress("bytevideollm", tokens, (3, 3), retention=0.9)
    assert torch.equal(result.tokens, tokens.reshape(18, -1))
    assert result.kept.tolist() == list(range(18))


def test_bytevideollm_positions_are_bin_centres() -> None:
    # 5 cells in 2 bins: rows 0..2 (centre 1) and rows 2..4 (centre 3); the same for columns
    result = compress("bytevideollm", _random(2, (5, 5)), (5, 5), retention=0.16)
    expected = [[t, r, c] for t in range(2) for r in (1, 3) for c in (1, 3)]
    assert result.positions.tolist() == expected
    assert result.kept.tolist() == [t * 25 + r * 5 + c for t, r, c in expected]
    # B/T = 8, s = round(2.83) = 3 on 4 x 8: s_h = round(3·0.707) = 2, s_w = round(9/2) = 5 (half up).
    # Rows: bins 0..1, 2..3 -> centres 0, 2. Columns: bins 0..1, 1..3, 3..4, 4..6, 6..7 -> 0, 2, 3, 5, 6.
    wide = compress("bytevideollm", _random(1, (4, 8)), (4, 8), retention=0.25)
    assert wide.positions.tolist() == [[0, r, c] for r in (0, 2) for c in (0, 2, 3, 5, 6)]


# --- DyCoke TTM ------------------------------------------------------------------------------------------------


def _reference_ttm(tokens: torch.Tensor, keep: int) -> list[int]:
    """The VidCom2 qwen port's ``dycoke_ttm_with_indices`` transcribed: per-frame index list, then sorted."""
    n_frames, per_frame = tokens.shape[0], tokens.shape[1]
    if n_frames == 1:
        return list(range(per_frame))
    indices: list[list[int]] = []
    for i in range(0, n_frames - 1, 2):
        sim = F.cosine_similarity(F.normalize(tokens[i], dim=1), F.normalize(tokens[i + 1], dim=1), dim=1)
        lowest = sim.topk(keep, largest=False).indices.tolist() if keep else []
        indices.append([i * per_frame + p for p in range(per_frame)])
        indices.append([(i + 1) * per_frame + p for p in lowest])
    for i in range(0, n_frames - 4, 4):
        sim = F.cosine_similarity(tokens[i], tokens[i + 2], dim=1)
        lowest = sim.topk(keep, largest=False).indices.tolist() if keep else []
        indices[i + 2] = [(i + 2) * per_frame + p for p in lowest]
    return sorted(index for frame in indices for index in frame)


@pytest.mark.parametrize(
    ("n_groups", "grid", "K", "count"),
    [
        (16, (10, 10), 0.7, 830),  # section 5e: P·(8 - 3) + 30·(8 + 3)
        (64, (10, 10), 0.81, 2546),  # section 5c: 17·100 + 18·47 = 39.8 %
        (5, (2, 5), 0.5, 25),  # F_0 whole, F_1..F_3 at k = 5, F_4 dropped
        (2, (2, 5), 0.7, 13),
        (8, (2, 5), 0.5, 55),  # n4 = 1: 3 whole, 5 pruned
        (9, (2, 5), 0.5, 50),  # n4 = 2: 2 whole, 6 pruned, the ninth dropped
        (1, (2, 5), 0.7, 10),
    ],
)
def test_dycoke_count_formula(n_groups: int, grid: tuple[int, int], K: float, count: int) -> None:
    tokens = _random(n_groups, grid, seed=n_groups)
    result = compress("dycoke", tokens, grid, retention=0.5, K=K)
    assert result.tokens.shape[0] == count
    assert output_count("dycoke", n_groups, grid, retention=0.5, K=K) == count
    assert result.kept.tolist() == _reference_ttm(tokens, int((1 - K) * grid[0] * grid[1]))
    assert result.variant == f"K={K}"


def test_dycoke_structure() -> None:
    for n_groups in range(1, 14):
        tokens = _random(n_groups, (3, 3), seed=n_groups)
        result = compress("dycoke", tokens, (3, 3), retention=0.4)
        kept = result.kept
        assert kept[:9].tolist() == list(range(9))  # F_0 always intact
        assert bool((kept[1:] > kept[:-1]).all())  # a subset, sorted
        assert torch.equal(result.tokens, tokens.reshape(-1, 6)[kept])
        assert torch.equal(result.positions, _own_positions(kept, (3, 3)))
        if n_groups % 2 and n_groups > 1:
            assert int(kept.max()) < (n_groups - 1) * 9  # an odd T loses its last group
    whole = compress("dycoke", _random(1, (3, 3)), (3, 3), retention=0.2)
    assert whole.kept.tolist() == list(range(9))  # T = 1 passes through
    everything = compress("dycoke", _random(6, (3, 3)), (3, 3), retention=0.2, K=0.0)
    assert everything.kept.tolist() == list(range(54))
    odd = compress("dycoke", _random(5, (3, 3)), (3, 3), retention=0.2, K=0.0)
    assert odd.kept.tolist() == list(range(36))


def test_dycoke_keeps_the_least_similar_tokens() -> None:
    ones = [1.0, 0.0]
    # pair pass: F_1 differs from F_0 at position 4 (cos -1), 1 (cos 0) and 2 (cos 0.71)
    pair = _frames([ones] * 6, [ones, [0.0, 1.0], [1.0, 1.0], ones, [-1.0, 0.0], ones])
    assert compress("dycoke", pair, (2, 3), retention=0.5, K=0.5).kept.tolist()[6:] == [7, 8, 10]  # k = 3
    assert compress("dycoke", pair, (2, 3), retention=0.5, K=0.6).kept.tolist()[6:] == [7, 10]  # k = 2
    # quad pass (T = 5, k = 1): F_1 vs F_0 keeps position 2; F_2 vs F_0 keeps 1; F_3 vs the *original* F_2 keeps 2
    f2 = [ones, [0.0, 1.0], [1.0, 1.0]]
    quad = _frames([ones] * 3, [ones, ones, [0.0, 1.0]], f2, [ones, [0.0, 1.0], [-1.0, -1.0]], [ones] * 3)
    assert compress("dycoke", quad, (1, 3), retention=0.5, K=0.6).kept.tolist() == [0, 1, 2, 5, 7, 11]
    # ties keep the lowest index: every position equally similar
    same = _frames([ones] * 4, [ones] * 4)
    assert compress("dycoke", same, (2, 2), retention=0.5, K=0.5).kept.tolist() == [0, 1, 2, 3, 4, 5]


def test_dycoke_solves_k_from_the_retention() -> None:
    per_group = 100
    for n_groups in (2, 3, 7, 16, 32, 64):
        pairs, quads = n_groups // 2, len(range(0, n_groups - 4, 4))
        whole, pruned = pairs - quads, pairs + quads
        minimum = whole / n_groups
        for retention in (0.01, 0.1, 0.25, 0.4, 0.6, 0.9):
            count = output_count("dycoke", n_groups, (10, 10), retention=retention)
            target = retention * n_groups * per_group
            if retention <= minimum:
                assert count == whole * per_group  # k = 0: TTM's floor
            elif target <= (whole + pruned) * per_group:
                assert abs(count - target) <= pruned / 2  # the nearest k: within half a k-step
    assert output_count("dycoke", 64, (10, 10), retention=0.4) == 2546  # k = 18, as section 5c
    # T = 2, P = 10: N_out = 10 + k; a target of 15.5 is a tie between k = 5 and 6, the larger wins
    assert output_count("dycoke", 2, (2, 5), retention=0.775) == 16
    # T = 16: 5 whole, 11 pruned; (640 - 500) / 11 = 12.7 -> k = 13 (643 tokens) beats k = 12 (632)
    result = compress("dycoke", _random(16, (10, 10), width=3), (10, 10), retention=0.4)
    assert result.variant == "K solved, k=13"
    assert result.tokens.shape[0] == 643


# --- through the API, every method -----------------------------------------------------------------------------

METHODS = ("moviechat", "bytevideollm", "dycoke")


def test_registered() -> None:
    assert set(METHODS) <= set(list_methods())


@pytest.mark.parametrize(
    ("method", "options"),
    [
        ("moviechat", {}),
        ("moviechat", {"short_memory_length": 6, "short_memory_merge": 3}),
        ("bytevideollm", {}),
        ("bytevideollm", {"rounding": "floor"}),
        ("dycoke", {}),
        ("dycoke", {"K": 0.7}),
    ],
)
def test_count_matches_run(method: str, options: dict) -> None:
    for n_groups in (1, 2, 3, 5, 16, 17, 33):
        for grid in ((2, 3), (4, 4)):
            per_group = grid[0] * grid[1]
            tokens = _random(n_groups, grid, width=3, seed=n_groups)
            for retention in (0.01, 0.1, 0.3, 0.6, 0.95):
                result = compress(method, tokens, grid, retention=retention, **options)
                assert result.tokens.shape[0] == output_count(
                    method, n_groups, grid, retention=retention, **options
                )
                assert result.method == method and result.source_tokens == n_groups * per_group
                kept = result.kept
                assert (
                    bool((kept[1:] > kept[:-1]).all())
                    and 0 <= int(kept.min()) <= int(kept.max()) < n_groups * per_group
                )
                if method == "moviechat":  # re-gridded: frame k at t = k, (row, col) of its source
                    assert torch.equal(result.positions[:, 1:], _own_positions(kept, grid)[:, 1:])
                    assert result.positions[:, 0].tolist() == [
                        t for t in range(len(kept) // per_group) for _ in range(per_group)
                    ]
                else:
                    assert torch.equal(result.positions, _own_positions(kept, grid))


@pytest.mark.parametrize("method", METHODS)
def test_dtype_kept_and_retention_one_is_identity(method: str) -> None:
    tokens = _random(6, (4, 4)).to(torch.bfloat16)
    result = compress(method, tokens, (4, 4), retention=0.3)
    assert result.tokens.dtype == torch.bfloat16 and result.tokens.device == tokens.device
    unchanged = compress(method, tokens, (4, 4), retention=1.0)
    assert torch.equal(unchanged.tokens, tokens.reshape(96, -1))
    assert output_count(method, 6, (4, 4), budget=10_000) == 96


@pytest.mark.parametrize(
    ("method", "known"), [("moviechat", "short_memory_merge"), ("bytevideollm", "rounding"), ("dycoke", "K")]
)
def test_unknown_option_names_the_options(method: str, known: str) -> None:
    with pytest.raises(ValueError, match=f"takes no option 'ratio'.*{known}"):
        compress(method, _random(4, (2, 2)), (2, 2), retention=0.5, ratio=0.5)


def test_invalid_option_values() -> None:
    with pytest.raises(ValueError, match="rounding"):
        compress("bytevideollm", _random(4, (2, 2)), (2, 2), retention=0.5, rounding="ceil")
    with pytest.raises(ValueError, match="K"):
        compress("dycoke", _random(4, (2, 2)), (2, 2), retention=0.5, K=1.5)
