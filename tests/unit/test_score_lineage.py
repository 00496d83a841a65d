"""SCORE's lineage on a tiny project: pseudo-videos, CE on full inputs, two policy stages, then evaluation;
and SCORE inside the patched model (placeholders, positions, the removal rule, retention 1)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from marc_ops.checks import ASSET_CHECKS
from marc_ops.compression import CompressionConfig
from marc_ops.compression.score import (
    ScorePolicy,
    ScorePolicyConfig,
    keep_count,
    load_policy,
    save_policy,
)
from marc_ops.config import DataConfig, ModelConfig, ProjectPaths
from marc_ops.config.score import ScoreConfig, ScoreDataConfig, ScoreTrainConfig
from marc_ops.config.train import TrainParams
from marc_ops.data.stages import score_pseudo_videos_stage
from marc_ops.io import write_json
from marc_ops.model import load_qwen2_5_vl, load_qwen2_5_vl_processor
from marc_ops.train.inputs import TrainingSample, encode_prompt, model_inputs
from marc_ops.train.score import CaptionClip, encode_caption, masked_ce, video_tokens
from marc_ops.train.stages import score_ce_base_stage, score_policy_stage, score_policy_stage1_stage
from marc_ops.video import VideoConfig

pytestmark = pytest.mark.usefixtures("one_thread")  # tests/unit/conftest.py


@pytest.fixture()
def project(tiny_model: Path, train_corpus: Path, tmp_path: Path) -> tuple[ProjectPaths, SimpleNamespace]:
    """A project whose corpus and base model exist, with the params SCORE's stages read."""
    paths = ProjectPaths(tmp_path)
    write_json(
        paths.asset("base_model") / "model.json", {"source": "tiny", "model_id": "", "path": str(tiny_model)}
    )
    params = SimpleNamespace(
        data=DataConfig(source="synthetic", data_root=str(train_corpus), eval_dir=str(train_corpus / "eval"), train_size=3),
        video=VideoConfig(max_frames=8),
        model=ModelConfig(dtype="float32", device="cpu"),
        train=TrainParams(init="base"),
        score=ScoreConfig(
            data=ScoreDataConfig(stage1_size=4, stage2_max_videos=3, frame_size=56, stage2_max_frames=4),
            policy=ScorePolicyConfig(hidden=8),
            train=ScoreTrainConfig(
                rollouts=4, videos_per_step=2, optimizer="adam", learning_rate=1e-2, max_target_tokens=16,
                stage1_steps=2, stage2_steps=2, save_steps=1, cache_video_tokens=True,
            ),
        ),
    )  # fmt: skip
    return paths, params


def test_the_lineage_trains_a_policy_in_two_stages_and_resumes(project) -> None:
    paths, params = project
    pseudo = score_pseudo_videos_stage(paths, params)
    assert pseudo.metadata["pseudo_videos"] == 4 and pseudo.metadata["quarantined_captions"] == 0
    ce = score_ce_base_stage(paths, params)
    table = pl.read_parquet(ce.outputs["table"])
    assert table.group_by("stage").len().sort("stage").rows() == [("stage1", 4), ("stage2", 3)]
    assert table["ce_base"].is_finite().all() and (table["ce_base"] > 0).all()
    first = score_policy_stage1_stage(paths, params)
    second = score_policy_stage(paths, params)
    assert first.metadata["steps"] == 2 and second.metadata["steps"] == 2
    for key in ("loss", "reward", "feasible_fraction", "keep_probability", "ce_ratio"):
        assert second.tables["steps"][key].is_finite().all()
    stage1, final = load_policy(paths.score_policy("stage1")), load_policy(paths.score_policy())
    assert final.config == params.score.policy
    # stage 2 starts from stage 1 and moves on from it
    assert any(
        not torch.equal(a, b)
        for a, b in zip(stage1.state_dict().values(), final.state_dict().values(), strict=True)
    )
    # a rerun with nothing changed trains nothing; CE_base is read back, not recomputed
    mtime = paths.score_policy().stat().st_mtime_ns
    again = score_policy_stage(paths, params)
    assert again.metadata["steps"] == 2 and paths.score_policy().stat().st_mtime_ns == mtime
    assert (paths.asset("score_ce_base") / "ce_base.jsonl").read_text().count("\n") == 7
    score_ce_base_stage(paths, params)
    assert (paths.asset("score_ce_base") / "ce_base.jsonl").read_text().count("\n") == 7


def _train_policies(paths, params) -> None:
    """SCORE's lineage from the pseudo-videos to the final policy."""
    for stage in (
        score_pseudo_videos_stage,
        score_ce_base_stage,
        score_policy_stage1_stage,
        score_policy_stage,
    ):
        stage(paths, params)


def test_a_stage_1_only_policy_is_the_curriculum_ablation(project) -> None:
    paths, params = project
    params.score = params.score.model_copy(
        update={"train": params.score.train.model_copy(update={"stage1_only": True})}
    )
    _train_policies(paths, params)
    stage1, final = load_policy(paths.score_policy("stage1")), load_policy(paths.score_policy())
    assert all(
        torch.equal(a, b)
        for a, b in zip(stage1.state_dict().values(), final.state_dict().values(), strict=True)
    )


def test_policy_checks_pass_on_the_trained_policies_and_fail_on_broken_files(project) -> None:
    paths, params = project
    _train_policies(paths, params)
    for asset in ("score_policy_stage1", "score_policy"):
        outcomes = {check.name: check.run(paths, params, None) for check in ASSET_CHECKS[asset]}
        assert {name: o.summary for name, o in outcomes.items() if not o.passed} == {}
        # the policy and, to resume from, the last checkpoint's policy and optimiser state
        assert outcomes["weights_are_safetensors"].facts["safetensors_files"] == 3
        assert outcomes["weights_load"].facts["tensors"] == len(
            load_policy(paths.score_policy()).state_dict()
        )
        assert outcomes["training_loss_finite"].facts["steps_logged"] == 2

    policy = paths.score_policy()
    (policy.parent / "policy.pt").write_bytes(b"a pickle")
    policy.write_bytes(policy.read_bytes()[:-64])
    log = pl.read_parquet(policy.parent / "training_log.parquet")
    log.with_columns(loss=pl.Series([float("nan")] * log.height)).write_parquet(
        policy.parent / "training_log.parquet"
    )
    outcomes = {check.name: check.run(paths, params, None) for check in ASSET_CHECKS["score_policy"]}
    assert not any(o.passed for o in outcomes.values())
    assert outcomes["weights_are_safetensors"].summary == "1 pickled weights file: policy.pt"
    assert outcomes["weights_load"].evidence["problem"][0].startswith("cannot be read")
    assert outcomes["training_loss_finite"].facts["non_finite"] == 2


# --- SCORE inside the patched model -----------------------------------------------------------------------


def _clip(seed: int = 0) -> CaptionClip:
    frames = np.random.default_rng(seed).integers(0, 256, (8, 56, 84, 3), dtype=np.uint8)
    return CaptionClip(
        "c", frames, 1.0, "a red circle on a blue background", "Describe this video in detail."
    )


def _policy(tiny_model: Path, tmp_path: Path) -> Path:
    width = json.loads((tiny_model / "config.json").read_text())["text_config"]["hidden_size"]
    config = ScorePolicyConfig(hidden=8, seed=3)
    return save_policy(ScorePolicy(width, config), config, tmp_path / "policy.safetensors")


def test_placeholders_equal_keep_count_and_tokens_sit_at_their_own_positions(
    tiny_model: Path, tmp_path: Path
) -> None:
    policy = _policy(tiny_model, tmp_path)
    compression = CompressionConfig(
        enabled=True, method="score", retention=0.25, options={"policy": str(policy)}
    )
    model = load_qwen2_5_vl(tiny_model, compression=compression).eval()
    processor = load_qwen2_5_vl_processor(tiny_model)
    frames = _clip().frames
    sample = TrainingSample(row={"problem_id": "v", "data_type": "video", "problem": "?", "problem_type": "free-form"},
                            frames=frames, clip_ids=np.zeros(len(frames), dtype=np.int64))  # fmt: skip
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]}]
    encoded = encode_prompt(processor, compression, sample, messages)
    grid = encoded.visual["video_grid_thw"][0].tolist()
    n_tokens = grid[0] * grid[1] * grid[2] // 4
    assert int((encoded.input_ids == processor.video_token_id).sum()) == keep_count(0.25, n_tokens)
    with torch.no_grad():
        model(**model_inputs([encoded], processor))  # the original checks placeholders against features
        output = model.model.get_video_features(
            encoded.visual["pixel_values_videos"], encoded.visual["video_grid_thw"], return_dict=True
        )
    (result,) = output.compressed
    kept = result.kept
    width = grid[2] // 2
    per_group = grid[1] // 2 * width
    assert torch.equal(
        result.positions[:, 0] * per_group + result.positions[:, 1] * width + result.positions[:, 2], kept
    )
    assert torch.equal(kept, torch.sort(kept).values) and len(kept) == keep_count(0.25, n_tokens)


def test_removal_with_original_positions_equals_masking_the_dropped_keys(tiny_model: Path) -> None:
    """SCORE.md invariant 10: the CE with dropped tokens removed (kept ones at their original positions) equals
    the CE with every token present and the dropped ones excluded as attention keys."""
    model = load_qwen2_5_vl(tiny_model, compression=CompressionConfig()).eval()
    processor = load_qwen2_5_vl_processor(tiny_model)
    encoded = encode_caption(processor, _clip(1), max_target_tokens=16)
    tokens = video_tokens(model, encoded)
    keep = torch.rand(tokens.shape[:2], generator=torch.Generator().manual_seed(0)) < 0.5
    removed = masked_ce(model, processor, encoded, tokens, keep[None])[0]

    ids = encoded.input_ids[None]
    is_video = (ids == processor.video_token_id)[0]
    mm_types = 2 * is_video.long()[None]
    positions, _ = model.model.get_rope_index(
        ids, mm_types, video_grid_thw=encoded.visual["video_grid_thw"],
        second_per_grid_ts=encoded.visual["second_per_grid_ts"],
    )  # fmt: skip
    dropped = torch.zeros_like(is_video)
    dropped[is_video.nonzero().flatten()[~keep.flatten()]] = True
    length = ids.shape[1]
    allowed = torch.tril(torch.ones(length, length, dtype=torch.bool)) & ~dropped[None, :]
    allowed |= torch.eye(length, dtype=torch.bool)  # a dropped token's own row: harmless, never read
    mask = torch.zeros(1, 1, length, length).masked_fill(~allowed, torch.finfo(torch.float32).min)
    with torch.no_grad():
        embeds = model.model.get_input_embeddings()(ids)
        embeds[0, is_video] = tokens.reshape(-1, tokens.shape[-1]).to(embeds.dtype)
        hidden = model.model.language_model(
            inputs_embeds=embeds, position_ids=positions, attention_mask=mask
        ).last_hidden_state
        logits = model.lm_head(hidden).float()
    losses = torch.nn.functional.cross_entropy(logits[0, :-1], ids[0, 1:], reduction="none")
    response = encoded.response[1:]
    masked = (losses * response).sum() / response.sum()
    torch.testing.assert_close(removed, masked, rtol=1e-5, atol=1e-5)


def test_a_rollout_that_keeps_nothing_is_scored_without_the_video(tiny_model: Path) -> None:
    """Masks that drop every token sit in the same batch as masks that keep some: each row gets its own video."""
    model = load_qwen2_5_vl(tiny_model, compression=CompressionConfig()).eval()
    processor = load_qwen2_5_vl_processor(tiny_model)
    encoded = encode_caption(processor, _clip(2), max_target_tokens=8)
    tokens = video_tokens(model, encoded)
    none, some = torch.zeros(tokens.shape[:2], dtype=torch.bool), torch.rand(tokens.shape[:2]) < 0.5
    together = masked_ce(model, processor, encoded, tokens, torch.stack([some, none, some]))
    alone = [masked_ce(model, processor, encoded, tokens, mask[None])[0] for mask in (some, none)]
    torch.testing.assert_close(together, torch.stack([alone[0], alone[1], alone[0]]), rtol=1e-5, atol=1e-5)
    assert torch.isfinite(together).all()


def test_retention_one_is_the_unpatched_model_bit_for_bit(tiny_model: Path, tmp_path: Path) -> None:
    """SCORE.md invariant 12: ρ = 1 keeps every token at its own position."""
    policy = _policy(tiny_model, tmp_path)
    compression = CompressionConfig(
        enabled=True, method="score", retention=1.0, options={"policy": str(policy)}
    )
    model = load_qwen2_5_vl(tiny_model, compression=compression).eval()
    unpatched = Qwen2_5_VLForConditionalGeneration.from_pretrained(tiny_model).eval()
    processor = load_qwen2_5_vl_processor(tiny_model)
    frames = _clip(4).frames
    sample = TrainingSample(row={"problem_id": "v", "data_type": "video", "problem": "?", "problem_type": "free-form"},
                            frames=frames, clip_ids=np.zeros(len(frames), dtype=np.int64))  # fmt: skip
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What?"}]}]
    ours = model_inputs([encode_prompt(processor, compression, sample, messages)], processor)
    plain = model_inputs([encode_prompt(processor, CompressionConfig(), sample, messages)], processor)
    plain.pop("video_clip_ids")
    with torch.no_grad():
        assert torch.equal(model(**ours).logits, unpatched(**plain).logits)
