"""Every compression method inside the patched tiny Qwen2.5-VL: placeholder counts, positions, identity.

For each method the prompt holds exactly as many video placeholders as the method returns features,
in ``forward`` and in ``generate``, in a batch that mixes an image and videos of other lengths; each
output token sits at the mRoPE position the uncompressed video gives its (t, row, col); and a
retention of 1 gives the unpatched model's logits bit for bit.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration
from transformers.vision_utils import get_vision_window_index

from marc_ops.compression import CompressionConfig, list_methods
from marc_ops.model import build_tiny_checkpoint, load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.model.importance import capture_last_block, pseudo_cls_importance
from marc_ops.train.inputs import TrainingSample, encode_prompt, model_inputs

# SCORE needs a trained policy; its own tests load one (tests/unit/test_score_*.py).
BASELINES = [method for method in list_methods() if method not in ("marc", "score")]
# MovieChat's budget is frames; the others keep half the tokens.
BUDGETS = {"moviechat": {"budget_groups": 1}}


def config_for(method: str, **budget) -> CompressionConfig:
    return CompressionConfig(
        enabled=True, method=method, **(budget or BUDGETS.get(method, {"retention": 0.5}))
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_for_compressors"))


@pytest.fixture(scope="module")
def processor(tiny_dir: Path):
    return load_qwen2_5_vl_processor(tiny_dir)


def video_sample(n_frames: int, seed: int, problem_id: str) -> TrainingSample:
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, (n_frames, 56, 84, 3), dtype=np.uint8)
    row = {
        "problem_id": problem_id,
        "data_type": "video",
        "problem": "What is shown?",
        "problem_type": "free-form",
    }
    return TrainingSample(row=row, frames=frames, clip_ids=np.zeros(n_frames, dtype=np.int64), fps=1.0)


def image_sample(seed: int) -> TrainingSample:
    rng = np.random.default_rng(seed)
    row = {
        "problem_id": "img",
        "data_type": "image",
        "problem": "What is shown?",
        "problem_type": "free-form",
    }
    return TrainingSample(row=row, frames=rng.integers(0, 256, (56, 56, 3), dtype=np.uint8), clip_ids=None)


def messages(sample: TrainingSample) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": sample.row["data_type"]}, {"type": "text", "text": "What?"}]}
    ]


def batch(model, processor, compression) -> tuple[list, dict]:
    samples = [video_sample(8, 1, "a"), image_sample(2), video_sample(12, 3, "c")]
    encoded = [encode_prompt(processor, compression, s, messages(s), encoder=model) for s in samples]
    return encoded, model_inputs(encoded, processor, padding_side="left")


def compressed_video(model, processor, sample: TrainingSample):
    """What the model's own get_video_features returns for one video (computed apart from the batch)."""
    plain = encode_prompt(processor, CompressionConfig(), sample, messages(sample))
    with torch.no_grad():
        return model.model.get_video_features(
            plain.visual["pixel_values_videos"], plain.visual["video_grid_thw"], return_dict=True
        )


@pytest.mark.parametrize("method", BASELINES)
def test_placeholders_equal_features_in_forward_and_generate(tiny_dir, processor, method) -> None:
    compression = config_for(method)
    model = load_qwen2_5_vl(tiny_dir, compression=compression).eval()
    encoded, inputs = batch(model, processor, compression)
    counts = [int((e.input_ids == processor.video_token_id).sum()) for e in encoded]
    videos = (video_sample(8, 1, "a"), video_sample(12, 3, "c"))
    expected = [len(compressed_video(model, processor, s).pooler_output[0]) for s in videos]
    assert [counts[0], counts[2]] == expected and counts[1] == 0
    # 56x84 frames: 6 tokens a group; 8 frames are 4 groups (24 tokens), 12 frames 6 groups (36)
    assert all(0 < n < full for n, full in zip(expected, (24, 36), strict=True))
    with torch.no_grad():
        logits = model(**inputs).logits  # the original checks placeholders against features
        generated = model.generate(**inputs, max_new_tokens=2, do_sample=False)
    assert logits.shape[:2] == inputs["input_ids"].shape
    assert generated.shape == (3, inputs["input_ids"].shape[1] + 2)


@pytest.mark.parametrize("method", BASELINES)
def test_each_token_sits_where_the_uncompressed_video_puts_it(tiny_dir, processor, method) -> None:
    compression = config_for(method)
    model = load_qwen2_5_vl(tiny_dir, compression=compression).eval()
    reference = load_qwen2_5_vl(tiny_dir, compression=CompressionConfig()).eval()
    sample = video_sample(8, 5, "p")
    compressed = encode_prompt(processor, compression, sample, messages(sample), encoder=model)
    full = encode_prompt(processor, CompressionConfig(), sample, messages(sample))
    recorded: list[torch.Tensor] = []
    hook = lambda module, args, kwargs: recorded.append(kwargs["position_ids"])  # noqa: E731
    for m, encoded in ((model, compressed), (reference, full)):
        handle = m.model.language_model.register_forward_pre_hook(hook, with_kwargs=True)
        with torch.no_grad():
            m(**model_inputs([encoded], processor))
        handle.remove()
    ours, theirs = (r[-3:, 0] for r in recorded)  # (3, L) mRoPE ids of the one sample
    ours_video = ours[:, compressed.input_ids == processor.video_token_id]
    theirs_video = theirs[:, full.input_ids == processor.video_token_id]
    # Uncompressed video tokens are in (t, row, col) raster order: index them by each kept token's source.
    positions = compressed_video(model, processor, sample).token_positions[0]
    width = int(full.visual["video_grid_thw"][0, 2]) // 2
    per_group = int(full.visual["video_grid_thw"][0, 1]) // 2 * width
    flat = positions[:, 0] * per_group + positions[:, 1] * width + positions[:, 2]
    assert torch.equal(ours_video, theirs_video[:, flat])
    # text after the video continues where it does for the uncompressed prompt
    assert torch.equal(ours[:, -3:], theirs[:, -3:])


@pytest.mark.parametrize("method", BASELINES)
def test_retention_one_gives_the_unpatched_logits_bit_for_bit(tiny_dir, processor, method) -> None:
    unpatched = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_dir).eval()
    compression = CompressionConfig(enabled=True, method=method, retention=1.0)
    model = load_qwen2_5_vl(tiny_dir, compression=compression).eval()
    encoded, inputs = batch(model, processor, compression)
    plain_encoded = [
        encode_prompt(processor, CompressionConfig(), s, messages(s))
        for s in (video_sample(8, 1, "a"), image_sample(2), video_sample(12, 3, "c"))
    ]
    plain = model_inputs(plain_encoded, processor, padding_side="left")
    plain.pop("video_clip_ids")
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, unpatched(**plain).logits)


def test_pseudo_cls_importance_is_a_distribution_per_group_that_follows_the_keys(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=CompressionConfig()).eval()
    sample = video_sample(8, 7, "i")
    plain = encode_prompt(processor, CompressionConfig(), sample, messages(sample))
    grid = plain.visual["video_grid_thw"]
    with capture_last_block(model.model.visual) as captured, torch.no_grad():
        model.model.visual(plain.visual["pixel_values_videos"], grid_thw=grid)
    (scores,) = pseudo_cls_importance(model.model.visual, captured, grid)
    t, h, w = grid[0].tolist()
    assert scores.shape == (t, h * w // 4)
    torch.testing.assert_close(scores.sum(dim=1), torch.ones(t))
    assert (scores > 0).all()
    # An independent recomputation for group 0: raster-order patches, one key per 2x2 merge unit.
    attention = model.model.visual.blocks[-1].attn
    hidden, (cos, sin) = captured.hidden_states[0], captured.position_embeddings[0]
    heads = attention.num_heads
    q, k, _ = attention.qkv(hidden).reshape(len(hidden), 3, heads, -1).permute(1, 0, 2, 3).unbind(0)
    rotate = lambda x: torch.cat([-x[..., x.shape[-1] // 2 :], x[..., : x.shape[-1] // 2]], dim=-1)  # noqa: E731
    q = q * cos[:, None] + rotate(q) * sin[:, None]
    k = k * cos[:, None] + rotate(k) * sin[:, None]
    window_order = model.model.visual.permute_input_for_window_attn(
        torch.arange(len(hidden))[:, None].float(), _window_index(model, grid), len(hidden)
    ).long()[:, 0]
    raster = torch.empty_like(window_order)
    raster[window_order] = torch.arange(len(hidden))
    q, k = q[raster], k[raster]
    per_group = h * w
    q0, k0 = q[:per_group].mean(0), k[:per_group].reshape(per_group // 4, 4, heads, -1).mean(1)
    expected = (torch.einsum("hd,phd->hp", q0, k0) / q0.shape[-1] ** 0.5).softmax(-1).mean(0)
    torch.testing.assert_close(scores[0], expected)


def _window_index(model, grid: torch.Tensor) -> torch.Tensor:
    visual = model.model.visual
    index, _ = get_vision_window_index(
        grid,
        spatial_merge_size=visual.spatial_merge_size,
        window_size=visual.window_size,
        patch_size=visual.patch_size,
        kwargs={},
    )
    return index
