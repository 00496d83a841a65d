"""The memory-aware temporal merge (SPEC section 5): hand-computed merges, the rules, and a
comparison with a naive reference that recomputes every similarity after every merge."""

from __future__ import annotations

import inspect
import itertools
import math
import random
from fractions import Fraction

import pytest
import torch
import torch.nn.functional as F
from pydantic import ValidationError

from marc_ops.compression import (
    CompressionConfig,
    block_similarity,
    memory_aware_merge,
    merged_block_count,
)

SQRT_HALF = math.sqrt(0.5)


def _blocks(rows: list[list[list[float]]], dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(rows, dtype=dtype)


# --- the reference: written independently, recomputes all similarities at every step -------


def _reference_windows(clips: list[int], window: int) -> list[list[int]]:
    windows: list[list[int]] = []
    for index, clip in enumerate(clips):
        if windows and clips[windows[-1][-1]] == clip and len(windows[-1]) < window:
            windows[-1].append(index)
        else:
            windows.append([index])
    return windows


def _reference_keep(n: int, ratio: float) -> int:
    return max(1, math.floor((1 - Fraction(str(ratio))) * n))


def _reference_merge_down(seq: list[torch.Tensor], groups: list[list[int]], keep: int) -> None:
    while len(seq) > keep:
        sims = [
            F.cosine_similarity(seq[i].float(), seq[i + 1].float(), dim=-1).mean().item()
            for i in range(len(seq) - 1)
        ]
        i = sims.index(max(sims))
        seq[i : i + 2] = [((seq[i].float() + seq[i + 1].float()) / 2).to(seq[i].dtype)]
        groups[i : i + 2] = [groups[i] + groups[i + 1]]


def _reference_merge(
    blocks: torch.Tensor, clips: list[int], ratio: float, window: int, target_blocks: int | None
) -> tuple[torch.Tensor, list[list[int]]]:
    seq: list[torch.Tensor] = []
    groups: list[list[int]] = []
    for members in _reference_windows(clips, window):
        window_seq = [blocks[i] for i in members]
        window_groups = [[i] for i in members]
        _reference_merge_down(window_seq, window_groups, _reference_keep(len(members), ratio))
        seq += window_seq
        groups += window_groups
    target = _reference_keep(len(clips), ratio) if target_blocks is None else target_blocks
    if len(seq) > target:
        _reference_merge_down(seq, groups, target)
    return torch.stack(seq), groups


def _random_clips(rng: random.Random, n: int, layout: str) -> list[int]:
    if layout == "one clip":
        return [0] * n
    if layout == "one clip per block":
        return list(range(n))
    if layout == "recurring ids":  # A A B A A: the same id in two separate runs
        return [(i // 3) % 2 for i in range(n)]
    clips, clip = [], 0
    while len(clips) < n:
        clips += [clip] * rng.randint(1, 12)
        clip += 1
    return clips[:n]


LAYOUTS = ["one clip", "one clip per block", "recurring ids", "random clip lengths"]


# --- hand-computed merges --------------------------------------------------------------------


def test_block_similarity_is_the_mean_of_patch_cosines():
    # P = 2 patches. Patch cosines of a, b: cos([1,0],[1,0]) = 1 and cos([1,0],[0,1]) = 0.
    a = _blocks([[[1, 0], [1, 0]]])[0]
    b = _blocks([[[1, 0], [0, 1]]])[0]
    c = _blocks([[[1, 1], [0, 1]]])[0]
    assert block_similarity(a, b).item() == pytest.approx(0.5)
    # b, c: cos([1,0],[1,1]) = sqrt(1/2), cos([0,1],[0,1]) = 1
    assert block_similarity(b, c).item() == pytest.approx((SQRT_HALF + 1) / 2)
    # batched over leading dims
    batched = block_similarity(torch.stack([a, b]), torch.stack([b, c]))
    torch.testing.assert_close(batched, torch.tensor([0.5, (SQRT_HALF + 1) / 2]))


def test_one_window_merges_the_most_similar_pairs_first():
    # N = 4, P = 1, d = 2, one clip, ratio 0.5: the window keeps floor(0.5 * 4) = 2 blocks.
    # sim(b0, b1) = cos([1,0],[2,0]) = 1, sim(b1, b2) = 0, sim(b2, b3) = cos([0,1],[1,1]) = 0.707
    # step 1: merge (b0, b1) -> [1.5, 0]; sims now [0 (with b2), 0.707]
    # step 2: merge (b2, b3) -> [0.5, 1]
    blocks = _blocks([[[1, 0]], [[2, 0]], [[0, 1]], [[1, 1]]])
    result = memory_aware_merge(blocks, [7, 7, 7, 7], ratio=0.5)
    torch.testing.assert_close(result.blocks, _blocks([[[1.5, 0]], [[0.5, 1]]]), rtol=0, atol=0)
    assert result.groups == [[0, 1], [2, 3]]
    # means 0.5 and 2.5, rounded half to even
    assert result.positions.tolist() == [0, 2]


def test_patch_aligned_similarity_drives_the_merge():
    # P = 2. sim(b0, b1) = 0.5, sim(b1, b2) = (0.707 + 1) / 2 = 0.854 -> (b1, b2) merge.
    blocks = _blocks([[[1, 0], [1, 0]], [[1, 0], [0, 1]], [[1, 1], [0, 1]]])
    result = memory_aware_merge(blocks, [0, 0, 0], ratio=0.0, target_blocks=2)
    assert result.groups == [[0], [1, 2]]
    torch.testing.assert_close(result.blocks, _blocks([[[1, 0], [1, 0]], [[1, 0.5], [0, 1]]]), rtol=0, atol=0)


def test_merge_is_the_plain_mean_of_the_two_current_blocks():
    # ratio 0 keeps every window block; target_blocks=1 merges everything in phase 2.
    # sim(b0, b1) = 1, sim(b1, b2) = 0: merge (b0, b1) -> [3, 0]; then ([3,0], [0,2]) -> [1.5, 1].
    # A size-weighted mean would give ([4,0] + [2,0] + [0,2]) / 3 = [2, 0.667] instead.
    blocks = _blocks([[[4, 0]], [[2, 0]], [[0, 2]]])
    result = memory_aware_merge(blocks, [0, 0, 0], ratio=0.0, target_blocks=1)
    torch.testing.assert_close(result.blocks, _blocks([[[1.5, 1]]]), rtol=0, atol=0)
    assert result.groups == [[0, 1, 2]]
    assert result.positions.tolist() == [1]


def test_ties_go_to_the_earliest_pair():
    # All blocks are parallel: every similarity is 1 at every step.
    # step 1: earliest pair (b0, b1) -> [1.5, 0]; step 2: earliest again ([1.5,0], b2) -> [2.25, 0]
    blocks = _blocks([[[1, 0]], [[2, 0]], [[3, 0]], [[4, 0]]])
    result = memory_aware_merge(blocks, [0, 0, 0, 0], ratio=0.0, target_blocks=2)
    assert result.groups == [[0, 1, 2], [3]]
    torch.testing.assert_close(result.blocks, _blocks([[[2.25, 0]], [[4, 0]]]), rtol=0, atol=0)
    assert result.positions.tolist() == [1, 3]


def test_windows_do_not_cross_clips():
    # The most similar pair, (b1, b2) with sim 1, straddles clips 0 and 1, so phase 1 cannot take it:
    # each two-block window keeps max(1, floor(0.5 * 2)) = 1 block, and N_target = 2 is then met.
    blocks = _blocks([[[1, 0]], [[0, 1]], [[0, 1]], [[1, 0]]])
    result = memory_aware_merge(blocks, [0, 0, 1, 1], ratio=0.5)
    assert result.groups == [[0, 1], [2, 3]]
    torch.testing.assert_close(result.blocks, _blocks([[[0.5, 0.5]], [[0.5, 0.5]]]), rtol=0, atol=0)


def test_global_phase_crosses_clips():
    # Three one-block clips: phase 1 merges nothing, N_target = max(1, floor(0.5 * 3)) = 1.
    # sim(b0, b1) = 0, sim(b1, b2) = 1: merge (b1, b2) -> [0, 1.5]; then ([1,0], [0,1.5]) -> [0.5, 0.75]
    blocks = _blocks([[[1, 0]], [[0, 1]], [[0, 2]]])
    result = memory_aware_merge(blocks, [0, 1, 2], ratio=0.5)
    assert result.groups == [[0, 1, 2]]
    torch.testing.assert_close(result.blocks, _blocks([[[0.5, 0.75]]]), rtol=0, atol=0)


# --- the rules on random inputs ------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("window", [1, 3, 8])
def test_phase_one_groups_stay_inside_one_window_of_one_clip(layout, window):
    rng = random.Random(0)
    clips = _random_clips(rng, 41, layout)
    blocks = torch.randn(41, 3, 5, generator=torch.Generator().manual_seed(0))
    # a budget above N switches phase 2 off
    result = memory_aware_merge(blocks, clips, ratio=0.75, window=window, target_blocks=1000)
    windows = _reference_windows(clips, window)
    window_of = {index: w for w, members in enumerate(windows) for index in members}
    for group in result.groups:
        assert len({window_of[index] for index in group}) == 1
        assert len({clips[index] for index in group}) == 1
    assert len(result.groups) == sum(_reference_keep(len(members), 0.75) for members in windows)


def test_a_long_clip_is_cut_into_windows_of_at_most_window_blocks():
    # 19 blocks of one clip, window 8: windows [0..7], [8..15], [16..18], keeping 4 + 4 + 1 blocks.
    blocks = torch.randn(19, 2, 4, generator=torch.Generator().manual_seed(1))
    result = memory_aware_merge(blocks, [3] * 19, ratio=0.5, window=8, target_blocks=19)
    spans = [range(0, 8), range(8, 16), range(16, 19)]
    for group in result.groups:
        assert any(set(group) <= set(span) for span in spans)
    assert sum(len(group) for group in result.groups) == 19
    assert len(result.groups) == 9
    assert merged_block_count([3] * 19, ratio=0.5, window=8, target_blocks=19) == 9


@pytest.mark.parametrize("n_blocks", [1, 2, 17, 64])
def test_target_blocks_one_merges_everything(n_blocks):
    blocks = torch.randn(n_blocks, 4, 6, generator=torch.Generator().manual_seed(n_blocks))
    clips = _random_clips(random.Random(n_blocks), n_blocks, "random clip lengths")
    result = memory_aware_merge(blocks, clips, ratio=0.5, target_blocks=1)
    assert result.blocks.shape == (1, 4, 6)
    assert result.groups == [list(range(n_blocks))]
    assert result.positions.tolist() == [round((n_blocks - 1) / 2)]


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_ratio_zero_without_budget_is_the_identity_bit_for_bit(dtype):
    blocks = torch.randn(13, 4, 8, generator=torch.Generator().manual_seed(2)).to(dtype)
    clips = [0] * 5 + [1] * 8
    result = memory_aware_merge(blocks, torch.tensor(clips), ratio=0.0)
    bits = torch.int32 if dtype == torch.float32 else torch.int16
    assert torch.equal(result.blocks.view(bits), blocks.view(bits))
    assert result.groups == [[i] for i in range(13)]
    assert result.positions.tolist() == list(range(13))


@pytest.mark.parametrize("layout", LAYOUTS)
@pytest.mark.parametrize("ratio", [0.25, 0.5, 0.9])
def test_positions_are_rounded_member_means_and_strictly_increasing(layout, ratio):
    rng = random.Random(3)
    for n_blocks in (1, 2, 9, 33, 64):
        blocks = torch.randn(n_blocks, 2, 3, generator=torch.Generator().manual_seed(n_blocks))
        result = memory_aware_merge(blocks, _random_clips(rng, n_blocks, layout), ratio=ratio, window=4)
        assert result.positions.dtype == torch.long
        assert result.positions.tolist() == [round(sum(g) / len(g)) for g in result.groups]
        assert all(b > a for a, b in itertools.pairwise(result.positions.tolist()))
        # groups partition 0..N-1 into ascending contiguous runs
        assert [i for g in result.groups for i in g] == list(range(n_blocks))


def test_bf16_input_merges_like_float32_similarities_and_stays_bf16():
    blocks = torch.randn(24, 4, 16, generator=torch.Generator().manual_seed(4)).to(torch.bfloat16)
    clips = [0] * 10 + [1] * 14
    result = memory_aware_merge(blocks, clips, ratio=0.5, window=8)
    assert result.blocks.dtype == torch.bfloat16
    assert block_similarity(blocks[0], blocks[1]).dtype == torch.float32
    expected_blocks, expected_groups = _reference_merge(blocks, clips, 0.5, 8, None)
    assert result.groups == expected_groups
    assert torch.equal(result.blocks, expected_blocks)
    # a merged pair is its float32 mean rounded once into bf16
    first = next(i for i, g in enumerate(result.groups) if len(g) == 2)
    a, b = blocks[result.groups[first]]
    assert torch.equal(result.blocks[first], ((a.float() + b.float()) / 2).bfloat16())


DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU")),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64])
def test_dtype_and_device_are_preserved(dtype, device):
    blocks = torch.randn(12, 3, 4, generator=torch.Generator().manual_seed(5)).to(device=device, dtype=dtype)
    result = memory_aware_merge(blocks, [0] * 6 + [1] * 6, ratio=0.5, window=4)
    assert result.blocks.dtype == dtype
    assert result.blocks.device == blocks.device
    assert result.positions.device == blocks.device
    assert result.blocks.shape == (6, 3, 4)


def test_float16_mean_does_not_overflow():
    # 60000 + 60000 overflows float16 (max 65504); the mean itself is representable.
    blocks = torch.full((2, 1, 2), 60000.0, dtype=torch.float16)
    result = memory_aware_merge(blocks, [0, 0], ratio=0.5)
    assert torch.equal(result.blocks, torch.full((1, 1, 2), 60000.0, dtype=torch.float16))


def test_gradients_flow_through_the_merged_blocks():
    blocks = torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(6), requires_grad=True)
    memory_aware_merge(blocks, [0] * 6, ratio=0.5).blocks.sum().backward()
    torch.testing.assert_close(blocks.grad.sum(), torch.tensor(6.0 * 2 * 3 / 2))


# --- the incremental similarities equal the naive reference; the count agrees -----------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_incremental_merge_equals_the_naive_reference(layout):
    rng = random.Random(7)
    generator = torch.Generator().manual_seed(7)
    for _ in range(25):
        n_blocks = rng.randint(1, 70)
        ratio = rng.choice([0.0, 0.25, 0.5, 0.75, 0.9])
        window = rng.choice([1, 2, 3, 8])
        target = rng.choice([None, 1, 2, 5, 100])
        clips = _random_clips(rng, n_blocks, layout)
        blocks = torch.randn(n_blocks, 3, 4, generator=generator)
        result = memory_aware_merge(blocks, clips, ratio=ratio, window=window, target_blocks=target)
        expected_blocks, expected_groups = _reference_merge(blocks, clips, ratio, window, target)
        assert result.groups == expected_groups
        assert torch.equal(result.blocks, expected_blocks)


@pytest.mark.parametrize("ratio", [0.0, 0.25, 0.5, 0.75, 0.9])
@pytest.mark.parametrize("window", [1, 2, 3, 8])
@pytest.mark.parametrize("target", [None, 1, 2, 5, 1000])
def test_merged_block_count_equals_the_merge(ratio, window, target):
    rng = random.Random(f"{ratio}-{window}-{target}")
    generator = torch.Generator().manual_seed(8)
    for n_blocks in [1, 2, 3, *rng.sample(range(4, 71), 6)]:
        for layout in LAYOUTS:
            clips = _random_clips(rng, n_blocks, layout)
            blocks = torch.randn(n_blocks, 1, 3, generator=generator)
            merged = memory_aware_merge(blocks, clips, ratio=ratio, window=window, target_blocks=target)
            count = merged_block_count(clips, ratio=ratio, window=window, target_blocks=target)
            assert count == merged.blocks.shape[0] == len(merged.groups)


@pytest.mark.parametrize(
    ("ratio", "n_blocks", "kept"),
    [
        (0.3, 10, 7),
        # (1 - ratio) * n in floats gives 62.99999999999999, 32.99999999999999, 26.999999999999996
        (0.3, 90, 63),
        (0.34, 50, 33),
        (0.55, 60, 27),
        (0.5, 1, 1),
        (0.9, 5, 1),
        (0.0, 64, 64),
    ],
)
def test_kept_count_floors_without_float_error(ratio, n_blocks, kept):
    assert merged_block_count([0] * n_blocks, ratio=ratio, window=n_blocks) == kept
    blocks = torch.randn(n_blocks, 1, 2, generator=torch.Generator().manual_seed(9))
    assert memory_aware_merge(blocks, [0] * n_blocks, ratio=ratio, window=n_blocks).blocks.shape[0] == kept


# --- inputs and configuration ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"ratio": 1.0}, "ratio"),
        ({"ratio": -0.1}, "ratio"),
        ({"ratio": float("nan")}, "ratio"),
        ({"ratio": 0.5, "window": 0}, "window"),
        ({"ratio": 0.5, "target_blocks": 0}, "target_blocks"),
    ],
)
def test_bad_parameters_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        memory_aware_merge(torch.randn(4, 1, 2), [0] * 4, **kwargs)
    with pytest.raises(ValueError, match=message):
        merged_block_count([0] * 4, **kwargs)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="one per block"):
        memory_aware_merge(torch.randn(4, 1, 2), [0] * 3, ratio=0.5)
    with pytest.raises(ValueError, match=r"\(N, P, d\)"):
        memory_aware_merge(torch.randn(4, 2), [0] * 4, ratio=0.5)
    with pytest.raises(ValueError, match="N = 0"):
        memory_aware_merge(torch.randn(0, 1, 2), [], ratio=0.5)
    with pytest.raises(ValueError, match="empty"):
        merged_block_count([], ratio=0.5)


def test_config_defaults_are_off_and_round_trip():
    config = CompressionConfig()
    assert config.model_dump() == {
        "enabled": False,
        "method": "marc",
        "ratio": 0.5,
        "window": 8,
        "target_blocks": None,
        "retention": None,
        "budget": None,
        "budget_groups": None,
        "options": {},
        "importance": "attention",
        "inner_llm": False,
    }
    marc = CompressionConfig(enabled=True, ratio=0.5, window=8, target_blocks=1)
    assert CompressionConfig(**marc.model_dump()) == marc
    assert CompressionConfig.model_validate_json(marc.model_dump_json()) == marc


def test_merge_defaults_match_the_config():
    for function in (memory_aware_merge, merged_block_count):
        parameters = inspect.signature(function).parameters
        assert parameters["window"].default == CompressionConfig().window
        assert parameters["target_blocks"].default == CompressionConfig().target_blocks


def test_config_is_frozen_and_strict_about_fields():
    config = CompressionConfig()
    with pytest.raises(ValidationError):
        config.ratio = 0.1
    with pytest.raises(ValidationError, match="extra"):
        CompressionConfig(rato=0.3)


@pytest.mark.parametrize(
    ("field", "value", "hint"),
    [
        ("ratio", 1.0, r"outside \[0, 1\)"),
        ("ratio", -0.5, "use 0 to keep every block"),
        ("window", 0, "must be >= 1"),
        ("target_blocks", 0, "use None to derive it from ratio"),
    ],
)
def test_config_errors_say_what_to_change(field, value, hint):
    with pytest.raises(ValidationError, match=hint):
        CompressionConfig(**{field: value})
