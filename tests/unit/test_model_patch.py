"""The compression patch on the tiny Qwen2.5-VL: equivalence, token counts, mRoPE, generate, round trip."""

from __future__ import annotations

import copy
import inspect
import json
import random
from pathlib import Path

import pytest
import torch
from transformers import BatchFeature, Qwen2_5_VLForConditionalGeneration

from marc_ops.compression import CompressionConfig, merged_block_count
from marc_ops.model import (
    CompressedVideoOutput,
    apply_compression,
    build_tiny_checkpoint,
    compressed_video_token_count,
    compression_of,
    is_compression_patched,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
    merge_video_features,
    prepare_model_inputs,
    temporal_group_clip_ids,
)
from marc_ops.model.patch import split_clip_ids

DISABLED = CompressionConfig()
RATIO_ZERO = CompressionConfig(enabled=True, ratio=0.0, window=3)
MARC = CompressionConfig(enabled=True, ratio=0.5, window=8, target_blocks=1)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


@pytest.fixture(scope="module")
def processor(tiny_dir: Path):
    return load_qwen2_5_vl_processor(tiny_dir)


@pytest.fixture(scope="module")
def unpatched(tiny_dir: Path) -> Qwen2_5_VLForConditionalGeneration:
    """Plain transformers, no patch: the reference every equivalence is measured against."""
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_dir).eval()


def frames(n: int, seed: int, height: int = 56, width: int = 84) -> torch.Tensor:
    """(n, 3, H, W) uint8 random frames; 56x84 gives a (t, 4, 6) grid, 6 LLM tokens per temporal group."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, 3, height, width), generator=generator, dtype=torch.uint8)


def prompt(processor, kinds: list[str], question: str = "How many red circles?") -> str:
    content = [{"type": kind} for kind in kinds] + [{"type": "text", "text": question}]
    messages = [{"role": "user", "content": content}]
    return processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


def encode(
    processor, compression, kinds_per_sample, videos, images=None, video_clip_ids=None
) -> BatchFeature:
    return prepare_model_inputs(
        processor,
        compression,
        text=[prompt(processor, kinds) for kinds in kinds_per_sample],
        images=images,
        videos=videos,
        video_clip_ids=video_clip_ids,
        video_metadata=[{"fps": 1.0, "total_num_frames": len(v)} for v in videos],
        return_tensors="pt",
        padding=True,
        padding_side="left",
    )


def without_clip_ids(inputs: BatchFeature) -> dict:
    return {k: v for k, v in inputs.items() if k != "video_clip_ids"}


def video_token_counts(model, inputs) -> list[int]:
    return (inputs["input_ids"] == model.config.video_token_id).sum(-1).tolist()


class PositionRecorder:
    """Records the position ids the language model receives (3 or 4 rows, batch, sequence)."""

    def __init__(self, model: Qwen2_5_VLForConditionalGeneration) -> None:
        self.calls: list[torch.Tensor] = []
        self._handle = model.model.language_model.register_forward_pre_hook(self._record, with_kwargs=True)

    def _record(self, module, args, kwargs) -> None:
        self.calls.append(kwargs["position_ids"].clone())

    def close(self) -> None:
        self._handle.remove()

    def prefill_mrope(self) -> torch.Tensor:
        """(3, B, L) temporal / height / width ids of the first call (text ids dropped)."""
        first = self.calls[0]
        return first[1:] if first.shape[0] == 4 else first


# --- equivalence ------------------------------------------------------------------------------


@pytest.mark.parametrize("compression", [DISABLED, RATIO_ZERO], ids=["disabled", "ratio0"])
def test_video_and_text_logits_are_bit_identical_to_unpatched(
    tiny_dir, processor, unpatched, compression
) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=compression)
    inputs = encode(processor, compression, [["video"]], [frames(8, seed=1)])
    plain = processor(
        text=[prompt(processor, ["video"])],
        videos=[frames(8, seed=1)],
        video_metadata=[{"fps": 1.0, "total_num_frames": 8}],
        return_tensors="pt",
    )
    assert torch.equal(inputs["input_ids"], plain["input_ids"])
    with torch.no_grad():
        expected = unpatched(**without_clip_ids(inputs)).logits
        actual = model(**inputs).logits
    assert torch.equal(actual, expected)


@pytest.mark.parametrize("compression", [DISABLED, RATIO_ZERO], ids=["disabled", "ratio0"])
def test_batch_mixing_images_and_videos_is_bit_identical_to_unpatched(
    tiny_dir, processor, unpatched, compression
) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=compression)
    inputs = encode(
        processor,
        compression,
        [["video"], ["image", "video"], ["image"]],
        videos=[frames(8, seed=2), frames(5, seed=3)],
        images=[frames(1, seed=4, width=56)[0], frames(1, seed=5)[0]],
        video_clip_ids=[[0, 0, 0, 0, 1, 1, 2, 2], [7, 7, 7, 7, 7]],
    )
    with torch.no_grad():
        expected = unpatched(**without_clip_ids(inputs)).logits
        actual = model(**inputs).logits
    assert torch.equal(actual, expected)


def test_generate_at_ratio_zero_is_bit_identical_to_unpatched(tiny_dir, processor, unpatched) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=RATIO_ZERO)
    inputs = encode(
        processor,
        RATIO_ZERO,
        [["video"], ["image", "video"]],
        videos=[frames(6, seed=6), frames(10, seed=7)],
        images=[frames(1, seed=8)[0]],
    )
    expected = unpatched.generate(**without_clip_ids(inputs), max_new_tokens=4, do_sample=False)
    actual = model.generate(**inputs, max_new_tokens=4, do_sample=False)
    assert torch.equal(actual, expected)


# --- token counts -----------------------------------------------------------------------------


def clip_layouts(n: int, rng: random.Random) -> list[list[int]]:
    """One clip; alternating; runs of two; random contiguous runs (VMR order); random ids."""
    runs = sorted(rng.randrange(4) for _ in range(n))
    return [
        [0] * n,
        [i % 2 for i in range(n)],
        [i // 2 for i in range(n)],
        runs,
        [rng.randrange(3) for _ in range(n)],
    ]


@pytest.mark.parametrize("target_blocks", [None, 1, 2, 5])
@pytest.mark.parametrize("window", [1, 2, 3, 8])
@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.75, 0.9])
def test_merged_rows_equal_the_placeholder_count(ratio, window, target_blocks) -> None:
    compression = CompressionConfig(enabled=True, ratio=ratio, window=window, target_blocks=target_blocks)
    rng = random.Random(f"{ratio}-{window}-{target_blocks}")
    h, w, d = 4, 6, 8
    for n in range(1, 11):
        layouts = clip_layouts(n, rng)
        grid = torch.tensor([[n, h, w]] * len(layouts))
        features = [torch.randn(n * h * w // 4, d) for _ in layouts]
        merged, merged_grid, positions, groups = merge_video_features(features, grid, layouts, compression)
        for ids, rows, row_grid, block_positions, video_groups in zip(
            layouts, merged, merged_grid, positions, groups, strict=True
        ):
            expected_tokens = compressed_video_token_count((n, h, w), ids, compression)
            assert rows.shape == (expected_tokens, d)
            assert row_grid.tolist() == [
                merged_block_count(ids, ratio=ratio, window=window, target_blocks=target_blocks),
                h,
                w,
            ]
            assert [i for group in video_groups for i in group] == list(range(n))
            assert torch.all(block_positions[1:] > block_positions[:-1])


@pytest.mark.parametrize(
    "compression",
    [
        CompressionConfig(enabled=True, ratio=0.5, window=2),
        CompressionConfig(enabled=True, ratio=0.3, window=8, target_blocks=2),
        CompressionConfig(enabled=True, ratio=0.75, window=3),
        MARC,
    ],
    ids=["r0.5-w2", "r0.3-target2", "r0.75-w3", "marc"],
)
def test_processor_placeholders_match_the_model_features(tiny_dir, processor, compression) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=compression)
    videos = [frames(2, seed=10), frames(11, seed=11), frames(16, seed=12)]
    clip_ids = [[0, 0], [0, 0, 0, 0, 1, 1, 1, 1, 2, 2, 2], [0] * 4 + [1] * 8 + [2] * 4]
    inputs = encode(processor, compression, [["video"], ["video", "video"]], videos, video_clip_ids=clip_ids)
    with torch.no_grad():
        video = model.get_video_features(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], video_clip_ids=inputs["video_clip_ids"]
        )
        model(**inputs)  # transformers itself checks placeholders against features
    rows = [len(r) for r in video.pooler_output]
    assert video_token_counts(model, inputs) == [rows[0], rows[1] + rows[2]]
    assert rows == [
        compressed_video_token_count(grid, ids, compression)
        for grid, ids in zip(
            inputs["video_grid_thw"],
            split_clip_ids(inputs["video_clip_ids"], inputs["video_grid_thw"]),
            strict=True,
        )
    ]


def test_one_block_budget_leaves_one_frame_worth_of_tokens(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=MARC)
    inputs = encode(processor, MARC, [["video"], ["video"]], [frames(16, seed=13), frames(3, seed=14)])
    tokens_per_group = 4 * 6 // 4  # a 56x84 frame pair: 4x6 patches, 2x2 merged
    assert video_token_counts(model, inputs) == [tokens_per_group, tokens_per_group]
    with torch.no_grad():
        video = model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
        logits = model(**inputs).logits
    assert video.merged_grid_thw[:, 0].tolist() == [1, 1]
    assert list(video.groups) == [[list(range(8))], [[0, 1]]]
    assert torch.isfinite(logits).all()


def test_windows_never_cross_a_clip_boundary_before_the_budget_forces_it(tiny_dir, processor) -> None:
    compression = CompressionConfig(enabled=True, ratio=0.5, window=8, target_blocks=2)
    model = load_qwen2_5_vl(tiny_dir, compression=compression)
    inputs = encode(
        processor, compression, [["video"]], [frames(8, seed=15)], video_clip_ids=[[3, 3, 3, 3, 9, 9, 9, 9]]
    )
    with torch.no_grad():
        video = model.get_video_features(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], video_clip_ids=inputs["video_clip_ids"]
        )
    assert video.groups == ([[0, 1], [2, 3]],)
    assert video.block_positions[0].tolist() == [0, 2]  # round(0.5) = 0, round(2.5) = 2 (half to even)


# --- mRoPE ------------------------------------------------------------------------------------


def test_merged_blocks_take_the_positions_of_their_mean_temporal_group(
    tiny_dir, processor, unpatched
) -> None:
    compression = CompressionConfig(enabled=True, ratio=0.5, window=2)
    model = load_qwen2_5_vl(tiny_dir, compression=compression)
    clip_ids = [[0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1]]
    kinds = [["image", "video"]]
    images = [frames(1, seed=17)[0]]
    full = encode(processor, DISABLED, kinds, [frames(12, seed=16)], images=images)
    merged = encode(
        processor, compression, kinds, [frames(12, seed=16)], images=images, video_clip_ids=clip_ids
    )

    recorders = PositionRecorder(unpatched), PositionRecorder(model)
    with torch.no_grad():
        unpatched(**without_clip_ids(full))
        model(**merged)
        video = model.get_video_features(
            merged["pixel_values_videos"], merged["video_grid_thw"], video_clip_ids=merged["video_clip_ids"]
        )
    for recorder in recorders:
        recorder.close()
    full_ids, merged_ids = (recorder.prefill_mrope()[:, 0] for recorder in recorders)

    video_token = model.config.video_token_id
    first = int((merged["input_ids"][0] == video_token).nonzero()[0])
    # Everything before the video (the image included) is untouched.
    assert torch.equal(merged_ids[:, :first], full_ids[:, :first])
    # Merged block k sits exactly where the uncompressed model put temporal group block_positions[k].
    per_group = 6
    full_video = full_ids[:, full["input_ids"][0] == video_token].reshape(3, -1, per_group)
    merged_video = merged_ids[:, merged["input_ids"][0] == video_token].reshape(3, -1, per_group)
    assert torch.equal(merged_video, full_video[:, video.block_positions[0]])
    assert len(video.block_positions[0]) < 6


def test_compressed_generate_runs_on_videos_of_different_lengths_and_an_image(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=CompressionConfig(enabled=True, ratio=0.5, window=2))
    inputs = encode(
        processor,
        compression_of(model),
        [["video"], ["image", "video"]],
        videos=[frames(8, seed=20), frames(14, seed=21, height=112, width=140)],
        images=[frames(1, seed=22)[0]],
        video_clip_ids=[[0, 0, 1, 1, 1, 1, 2, 2], [0] * 6 + [1] * 8],
    )
    recorder = PositionRecorder(model)
    out = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    recorder.close()
    assert out.shape == (2, inputs["input_ids"].shape[1] + 3)
    assert torch.equal(out[:, : inputs["input_ids"].shape[1]], inputs["input_ids"])

    mrope = recorder.prefill_mrope()
    forward_recorder = PositionRecorder(model)
    with torch.no_grad():
        model(**inputs)
        video = model.get_video_features(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], video_clip_ids=inputs["video_clip_ids"]
        )
    forward_recorder.close()
    assert torch.equal(mrope, forward_recorder.prefill_mrope())  # generate places the prompt as forward does
    grids = inputs["video_grid_thw"].tolist()
    for sample, ((_, h, w), block_positions) in enumerate(zip(grids, video.block_positions, strict=True)):
        is_video = inputs["input_ids"][sample] == model.config.video_token_id
        temporal = mrope[0, sample, is_video].reshape(len(block_positions), h * w // 4)
        assert torch.all(temporal == temporal[:, :1])  # one time per block
        assert torch.all(temporal[1:, 0] > temporal[:-1, 0])  # strictly later block after block
        text_after = mrope[0, sample, int(is_video.nonzero()[-1]) + 1 :]
        assert torch.all(text_after[1:] > text_after[:-1])
    # Decoding continues one position per new token.
    steps = torch.stack([call[:, :, -1] for call in recorder.calls[1:]])
    assert torch.all(steps[1:] - steps[:-1] == 1)


def test_precomputed_compressed_features_stand_in_for_the_pixels(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=CompressionConfig(enabled=True, ratio=0.5, window=2))
    inputs = encode(
        processor,
        compression_of(model),
        [["video"]],
        [frames(8, seed=29)],
        video_clip_ids=[[0] * 4 + [1] * 4],
    )
    with torch.no_grad():
        video = model.get_video_features(
            inputs["pixel_values_videos"], inputs["video_grid_thw"], video_clip_ids=inputs["video_clip_ids"]
        )
        rest = {k: v for k, v in inputs.items() if k not in ("pixel_values_videos", "video_clip_ids")}
        assert torch.equal(model(**rest, mm_encoder_outputs={"video": video}).logits, model(**inputs).logits)
    from_pixels = model.generate(**inputs, max_new_tokens=3, do_sample=False)
    precomputed = model.generate(
        **rest, mm_encoder_outputs={"video": video}, max_new_tokens=3, do_sample=False
    )
    assert torch.equal(precomputed, from_pixels)


def test_rope_index_without_merged_videos_in_flight_fails_loudly(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=MARC)
    inputs = encode(processor, MARC, [["video"]], [frames(4, seed=23)])
    with pytest.raises(RuntimeError, match="merged video blocks"):
        model.model.get_rope_index(
            inputs["input_ids"], inputs["mm_token_type_ids"], video_grid_thw=inputs["video_grid_thw"]
        )


# --- config, signature, copies ----------------------------------------------------------------


def test_save_and_load_keep_the_compression_and_the_patch(tiny_dir, processor, tmp_path) -> None:
    compression = CompressionConfig(enabled=True, ratio=0.5, window=4, target_blocks=2)
    model = load_qwen2_5_vl(tiny_dir, compression=compression)
    inputs = encode(
        processor, compression, [["video"]], [frames(10, seed=24)], video_clip_ids=[[0] * 6 + [1] * 4]
    )
    model.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["marc_compression"] == compression.model_dump()

    reloaded = load_qwen2_5_vl(tmp_path)
    assert is_compression_patched(reloaded)
    assert compression_of(reloaded) == compression
    with torch.no_grad():
        assert torch.equal(reloaded(**inputs).logits, model(**inputs).logits)


def test_apply_compression_is_idempotent_and_reconfigurable(tiny_dir) -> None:
    model = load_qwen2_5_vl(tiny_dir)
    forward = model.model.forward
    apply_compression(model, MARC)
    apply_compression(model, MARC)
    assert model.model.forward == forward
    assert compression_of(model) == MARC
    assert compression_of(model.model) == MARC  # one config object for the outer and the inner model


def test_video_features_keep_the_signature_generate_inspects(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=MARC)
    parameters = inspect.signature(model.model.get_video_features).parameters
    assert {"pixel_values_videos", "video_grid_thw", "video_clip_ids"} <= set(parameters)
    inputs = encode(processor, MARC, [["video"]], [frames(4, seed=25)])
    with torch.no_grad():
        outer = model.get_video_features(inputs["pixel_values_videos"], inputs["video_grid_thw"])
    assert isinstance(outer, CompressedVideoOutput)


def test_a_deep_copy_runs_its_own_weights(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=MARC)
    twin = copy.deepcopy(model)
    assert twin.model.forward.__self__ is twin.model
    assert twin.generate.__self__ is twin
    inputs = encode(processor, MARC, [["video"]], [frames(6, seed=26)])
    with torch.no_grad():
        before = model(**inputs).logits
        for parameter in twin.model.visual.parameters():
            parameter.add_(1.0)
        assert torch.equal(model(**inputs).logits, before)
        assert not torch.equal(twin(**inputs).logits, before)


# --- clip ids ---------------------------------------------------------------------------------


def test_frame_clip_ids_become_one_id_per_temporal_group() -> None:
    assert temporal_group_clip_ids([4, 4, 7, 7, 7], n_groups=3) == [4, 7, 7]  # odd count: last frame repeated
    with pytest.raises(ValueError, match="mixes clips"):
        temporal_group_clip_ids([0, 1, 1, 1], n_groups=2)
    with pytest.raises(ValueError, match="one clip id per frame"):
        temporal_group_clip_ids([0, 0, 0], n_groups=1)


def test_flat_clip_ids_must_cover_every_temporal_group() -> None:
    grid = torch.tensor([[2, 4, 6], [3, 4, 6]])
    assert split_clip_ids(torch.tensor([1, 1, 2, 2, 3]), grid) == [[1, 1], [2, 2, 3]]
    assert split_clip_ids(None, grid) == [[0, 0], [0, 0, 0]]
    with pytest.raises(ValueError, match="one id per temporal group"):
        split_clip_ids([1, 2, 3], grid)


def test_processor_returns_group_clip_ids_for_every_video(processor) -> None:
    inputs = encode(
        processor,
        MARC,
        [["video", "video"]],
        [frames(4, seed=27), frames(6, seed=28)],
        video_clip_ids=[[5, 5, 6, 6], [1] * 6],
    )
    assert inputs["video_clip_ids"].tolist() == [5, 6, 1, 1, 1]
    default = encode(processor, MARC, [["video"]], [frames(4, seed=27)])
    assert default["video_clip_ids"].tolist() == [0, 0]
