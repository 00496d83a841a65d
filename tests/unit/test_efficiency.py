"""The efficiency profiler on the tiny Qwen2.5-VL, and the real 3B architecture's config (meta device only)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from pydantic import ValidationError
from transformers import Qwen2_5_VLForConditionalGeneration

from marc_ops.compression import CompressionConfig, list_methods
from marc_ops.compression.score import ScorePolicy, ScorePolicyConfig, save_policy
from marc_ops.config import ProjectPaths, load_params
from marc_ops.config.efficiency import EfficiencyConfig
from marc_ops.config.methods import resolve_method
from marc_ops.data.stages import videor1_source_stage
from marc_ops.data.synthetic.frames import synthetic_video_frames
from marc_ops.eval.efficiency import memory, profiler
from marc_ops.eval.efficiency.profiler import DEFAULT_METHODS, ProfileSample, profile_efficiency
from marc_ops.eval.efficiency.schema import EfficiencyProfile
from marc_ops.eval.report import format_table
from marc_ops.eval.stages import efficiency_profile_stage, efficiency_rows
from marc_ops.io import write_json
from marc_ops.model import (
    apply_compression,
    build_qwen2_5_vl_3b_processor,
    build_qwen2_5_vl_3b_random,
    build_tiny_checkpoint,
    build_tiny_tokenizer,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
    prepare_model_inputs,
    qwen_vocabulary_tokenizer,
)
from marc_ops.model.tokenizer import QWEN2_5_VL_SPECIAL_TOKENS

ANSWER_TOKENS = 3
# 56 x 56 frames: a (t, 4, 4) patch grid, 2 x 2 = 4 LLM tokens per temporal group (2 frames).
SIDE = 56
TOKENS_PER_GROUP = (SIDE // 28) ** 2
PROFILE_KEYS = {"device", "model", "dtype", "batch_size", "repeats", "source", "input", "methods"}
METHOD_KEYS = {
    "method",
    "frames",
    "visual_tokens",
    "vision_s",
    "prefill_s",
    "generate_s",
    "end_to_end_s",
    "merge_s",
    "peak_memory_gb",
    "memory_kind",
}


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


@pytest.fixture(scope="module")
def tiny(tiny_dir: Path):
    return load_qwen2_5_vl(tiny_dir, dtype=torch.float32), load_qwen2_5_vl_processor(tiny_dir)


@pytest.fixture(scope="module")
def profiled(tiny) -> tuple[dict, list[tuple[int, int]]]:
    """The profile, and every generate call it made: (prompt length, output length)."""
    model, processor = tiny
    calls: list[tuple[int, int]] = []
    original = model.generate

    def recording_generate(*args, **kwargs):
        output = original(*args, **kwargs)
        calls.append((kwargs["input_ids"].shape[1], output.shape[1]))
        return output

    model.generate = recording_generate
    try:
        frames = synthetic_video_frames(64, height=SIDE, width=SIDE)
        profile = profile_efficiency(
            model,
            processor,
            [ProfileSample(frames)] * 2,
            source="longest",
            methods=DEFAULT_METHODS,
            device="cpu",
            answer_tokens=ANSWER_TOKENS,
        )
    finally:
        model.generate = original
    return profile, calls


@pytest.fixture(scope="module")
def profile(profiled) -> dict:
    return profiled[0]


def _rows(profile: dict) -> dict[str, dict]:
    return {row["method"]: row for row in profile["methods"]}


def test_profile_has_the_schema(profile: dict) -> None:
    assert set(profile) == PROFILE_KEYS
    assert all(set(row) == METHOD_KEYS for row in profile["methods"])
    EfficiencyProfile.model_validate(profile)
    assert json.loads(json.dumps(profile)) == profile
    assert (profile["dtype"], profile["batch_size"], profile["repeats"], profile["source"]) == (
        "float32",
        2,
        1,
        "longest",
    )
    assert [row["method"] for row in profile["methods"]] == ["baseline-64f", "baseline-16f", "marc@0.6"]


def test_visual_tokens_and_frames_per_method(profile: dict) -> None:
    rows = _rows(profile)
    assert rows["baseline-64f"]["frames"] == 64
    assert rows["baseline-64f"]["visual_tokens"] == 32 * TOKENS_PER_GROUP  # 64 frames = 32 temporal groups
    assert rows["baseline-16f"]["frames"] == 16
    assert rows["baseline-16f"]["visual_tokens"] == 8 * TOKENS_PER_GROUP
    assert rows["marc@0.6"]["frames"] == 64
    assert rows["marc@0.6"]["visual_tokens"] <= TOKENS_PER_GROUP  # one frame's worth


def test_generate_makes_exactly_the_answer_tokens(profiled) -> None:
    profile, generations = profiled
    # the warm-up (two tokens), then one timed run per method
    new_tokens = [output - prompt for prompt, output in generations]
    assert new_tokens == [2] + [ANSWER_TOKENS] * len(profile["methods"])


def test_times_are_positive_and_parts_fit_in_end_to_end(profile: dict) -> None:
    for row in profile["methods"]:
        for part in ("vision_s", "prefill_s", "generate_s", "end_to_end_s"):
            assert row[part] > 0, (row["method"], part)
        assert row["prefill_s"] < row["generate_s"]
        assert row["vision_s"] + row["merge_s"] + row["generate_s"] <= row["end_to_end_s"]
        assert row["peak_memory_gb"] > 0 and row["memory_kind"] == "rss"
    rows = _rows(profile)
    assert rows["marc@0.6"]["merge_s"] > 0
    assert rows["baseline-64f"]["merge_s"] == rows["baseline-16f"]["merge_s"] == 0


def test_profile_restores_the_models_compression(tiny) -> None:
    model, processor = tiny
    frames = synthetic_video_frames(4, height=SIDE, width=SIDE)
    profile_efficiency(
        model,
        processor,
        [ProfileSample(frames)],
        source="longest",
        methods=["marc"],
        device="cpu",
        answer_tokens=1,
        warmup=False,
    )
    assert model.config.marc_compression == CompressionConfig().model_dump()


@pytest.mark.parametrize(
    "compression", [CompressionConfig(), CompressionConfig(enabled=True, target_blocks=1)]
)
def test_generating_from_precomputed_features_matches_generating_from_pixels(tiny, compression) -> None:
    """The profile calls the phases one by one; the tokens are those of one generate from the pixels."""
    model, processor = tiny
    model_compression = model.config.marc_compression
    try:
        apply_compression(model, compression)
        messages = [
            {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Which shape?"}]}
        ]
        text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        frames = torch.as_tensor(synthetic_video_frames(8, height=SIDE, width=SIDE)).permute(0, 3, 1, 2)
        inputs = prepare_model_inputs(
            processor,
            compression,
            text=[text],
            videos=[frames],
            video_metadata=[{"fps": 1.0, "total_num_frames": 8}],
            return_tensors="pt",
        )
        forced = {"do_sample": False, "min_new_tokens": 4, "max_new_tokens": 4}
        from_pixels = model.generate(**inputs, **forced)
        rest = {k: v for k, v in inputs.items() if k not in ("pixel_values_videos", "video_clip_ids")}
        with torch.inference_mode():
            video = model.model.get_video_features(
                inputs["pixel_values_videos"],
                inputs["video_grid_thw"],
                video_clip_ids=inputs["video_clip_ids"],
            )
        precomputed = model.generate(**rest, mm_encoder_outputs={"video": video}, **forced)
    finally:
        apply_compression(model, CompressionConfig(**model_compression))
    assert torch.equal(precomputed, from_pixels)
    assert from_pixels.shape[1] - inputs["input_ids"].shape[1] == 4


def test_format_table_has_ratios_and_the_vision_bound(profile: dict) -> None:
    table = format_table(profile)
    assert "| baseline-64f | 64 | 128 |" in table
    assert "Ratios to `baseline-64f`" in table
    assert "| marc@0.6 | 0.031x |" in table  # 4 of 128 visual tokens
    share = profile["methods"][0]["vision_s"] / profile["methods"][0]["end_to_end_s"]
    assert f"The vision tower takes {share:.1%} of `baseline-64f`'s end-to-end time" in table
    assert f"at most {1 - share:.1%}" in table


def test_profile_rejects_frames_in_the_wrong_layout(tiny) -> None:
    model, processor = tiny
    channels_first = torch.zeros(4, 3, SIDE, SIDE, dtype=torch.uint8)
    with pytest.raises(ValueError, match=r"\(F, H, W, 3\) uint8"):
        profile_efficiency(
            model,
            processor,
            [ProfileSample(channels_first)],
            source="longest",
            methods=["marc"],
            device="cpu",
        )


def test_distinct_samples_give_frames_and_visual_tokens_per_sample(tiny) -> None:
    """Two videos in one batch: 64 frames of 56 px (4 tokens a temporal group) and 32 frames of 84 px (9)."""
    model, processor = tiny
    samples = [
        ProfileSample(synthetic_video_frames(64, height=SIDE, width=SIDE), question="Which shape?"),
        ProfileSample(synthetic_video_frames(32, height=84, width=84), question="Which colour?", fps=2.0),
    ]
    profile = profile_efficiency(
        model,
        processor,
        samples,
        source="mmvu",
        methods=["baseline-64f", "baseline-16f"],
        device="cpu",
        answer_tokens=1,
        warmup=False,
    )
    rows = _rows(profile)
    assert (profile["batch_size"], profile["source"]) == (2, "mmvu")
    assert "32-64 frames of 56x56, 84x84 px at 1-2 fps" in profile["input"]
    assert rows["baseline-64f"]["frames"] == 48  # (64 + 32) / 2
    assert rows["baseline-64f"]["visual_tokens"] == (32 * 4 + 16 * 9) / 2  # 136
    assert rows["baseline-16f"]["frames"] == 16
    assert rows["baseline-16f"]["visual_tokens"] == (8 * 4 + 8 * 9) / 2  # 52


def _scripted_run(generate_s: float, peak_gib: int) -> profiler._Run:
    return profiler._Run(
        frames=64,
        visual_tokens=10.0,
        processor_s=0.3,
        vision_s=0.6,
        merge_s=0.0,
        prefill_s=0.3,
        generate_s=generate_s,
        peak_bytes=peak_gib * 2**30,
    )


def test_times_are_per_sample_memory_per_batch_and_the_median_run_is_reported(
    tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch of 3, three repeats whose end-to-end seconds are 3.9, 1.8 and 2.4: the 2.4 s run, per sample."""
    model, processor = tiny
    runs = iter([_scripted_run(3.0, 5), _scripted_run(0.9, 4), _scripted_run(1.5, 3)])
    batches: list[int] = []

    def scripted(setting, spec, batch):
        batches.append(len(batch))
        return next(runs)

    monkeypatch.setattr(profiler, "_run_once", scripted)
    frames = synthetic_video_frames(4, height=SIDE, width=SIDE)
    profile = profile_efficiency(
        model,
        processor,
        [ProfileSample(frames)] * 3,
        source="longest",
        methods=["baseline-64f"],
        repeats=3,
        warmup=False,
    )
    (row,) = profile["methods"]
    assert batches == [3, 3, 3] and (profile["batch_size"], profile["repeats"]) == (3, 3)
    assert row["vision_s"] == pytest.approx(0.6 / 3)
    assert row["prefill_s"] == pytest.approx(0.3 / 3)
    assert row["generate_s"] == pytest.approx(1.5 / 3)
    assert row["end_to_end_s"] == pytest.approx((0.3 + 0.6 + 0.0 + 1.5) / 3)
    assert row["peak_memory_gb"] == 3.0  # the median run's peak, for the whole batch
    assert row["visual_tokens"] == 10.0


def test_peak_memory_is_reset_before_each_methods_pass_and_read_after(
    tiny, monkeypatch: pytest.MonkeyPatch
) -> None:
    model, processor = tiny
    events: list[tuple[str, bool]] = []
    peaks = iter([1, 2, 3])

    def reset(device: torch.device) -> None:
        events.append(("reset", model.config.marc_compression["enabled"]))

    def read(device: torch.device) -> int:
        events.append(("read", model.config.marc_compression["enabled"]))
        return next(peaks) * 2**30

    monkeypatch.setattr(profiler, "reset_peak_memory", reset)
    monkeypatch.setattr(profiler, "peak_memory_bytes", read)
    profile = profile_efficiency(
        model,
        processor,
        [ProfileSample(synthetic_video_frames(4, height=SIDE, width=SIDE))] * 2,
        source="longest",
        methods=["baseline-64f", "marc"],
        answer_tokens=1,
    )
    # the warm-up (baseline-64f), baseline-64f, then MARC: each pass between a reset and a read
    assert events == [("reset", False), ("read", False)] * 2 + [("reset", True), ("read", True)]
    assert [row["peak_memory_gb"] for row in profile["methods"]] == [2.0, 3.0]


def test_cuda_peak_memory_is_max_memory_allocated_after_a_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CUDA path with torch.cuda's functions replaced (no GPU needed): the allocator's peak, reset first."""
    calls: list[tuple[str, object]] = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda d: calls.append(("reset", d)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda d: calls.append(("max", d)) or 7 * 2**30)
    device = torch.device("cuda:0")
    memory.reset_peak_memory(device)
    assert memory.peak_memory_bytes(device) == 7 * 2**30
    assert ("reset", device) in calls and calls.index(("reset", device)) < calls.index(("max", device))
    row = profiler._row(resolve_method("baseline-64f"), _scripted_run(1.5, 7), 15, device)
    assert (row["peak_memory_gb"], row["memory_kind"]) == (7.0, "cuda")


# --- the real 3B architecture (meta device: no memory is allocated) ---------------------------------------

# Qwen/Qwen2.5-VL-3B-Instruct, config.json
PUBLISHED_TEXT = {
    "vocab_size": 151936,
    "hidden_size": 2048,
    "intermediate_size": 11008,
    "num_hidden_layers": 36,
    "num_attention_heads": 16,
    "num_key_value_heads": 2,
    "hidden_act": "silu",
    "max_position_embeddings": 128000,
    "rms_norm_eps": 1e-6,
    "tie_word_embeddings": True,
}
PUBLISHED_VISION = {
    "depth": 32,
    "hidden_size": 1280,
    "intermediate_size": 3420,
    "num_heads": 16,
    "out_hidden_size": 2048,
    "patch_size": 14,
    "spatial_merge_size": 2,
    "temporal_patch_size": 2,
    "window_size": 112,
    "fullatt_block_indexes": [7, 15, 23, 31],
    "tokens_per_second": 2,
    "hidden_act": "silu",
}
PUBLISHED_TOKEN_IDS = {
    "image_token_id": 151655,
    "video_token_id": 151656,
    "vision_start_token_id": 151652,
    "vision_end_token_id": 151653,
}


@pytest.fixture(scope="module")
def meta_3b() -> Qwen2_5_VLForConditionalGeneration:
    return build_qwen2_5_vl_3b_random(device="meta")


@pytest.mark.parametrize(("key", "value"), PUBLISHED_TEXT.items())
def test_3b_text_config_matches_the_published_one(meta_3b, key, value) -> None:
    assert getattr(meta_3b.config.text_config, key) == value


@pytest.mark.parametrize(("key", "value"), PUBLISHED_VISION.items())
def test_3b_vision_config_matches_the_published_one(meta_3b, key, value) -> None:
    assert getattr(meta_3b.config.vision_config, key) == value


def test_3b_rope_token_ids_and_shapes(meta_3b) -> None:
    rope = meta_3b.config.text_config.rope_parameters
    assert (rope["mrope_section"], rope["rope_theta"]) == ([16, 24, 24], 1_000_000.0)
    assert {key: getattr(meta_3b.config, key) for key in PUBLISHED_TOKEN_IDS} == PUBLISHED_TOKEN_IDS
    parameters = list(meta_3b.parameters())
    assert all(p.is_meta and p.dtype == torch.bfloat16 for p in parameters)
    assert sum(p.numel() for p in parameters) == 3_754_622_976  # "3.75B", lm_head tied to the embedding
    assert meta_3b.lm_head.weight is meta_3b.model.language_model.embed_tokens.weight
    assert len(meta_3b.model.visual.blocks) == 32 and len(meta_3b.model.language_model.layers) == 36


def test_qwen_vocabulary_tokenizer_has_qwens_ids_and_the_tiny_bpe() -> None:
    tokenizer = qwen_vocabulary_tokenizer()
    tiny = build_tiny_tokenizer()
    ids = tokenizer.convert_tokens_to_ids(list(QWEN2_5_VL_SPECIAL_TOKENS))
    assert ids == list(range(151643, 151643 + len(QWEN2_5_VL_SPECIAL_TOKENS)))
    assert tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|vision_start|>", "<|video_pad|>"]) == [
        151645,
        151652,
        151656,
    ]
    assert len(tokenizer) <= PUBLISHED_TEXT["vocab_size"]
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    assert tokenizer.chat_template == tiny.chat_template
    text = "The red circle moves left, then <answer>B</answer>"
    plain = "The red circle moves left, then "
    assert tokenizer(plain).input_ids == tiny(plain).input_ids  # ordinary text: the tiny BPE, same ids
    assert max(tokenizer(text).input_ids) < PUBLISHED_TEXT["vocab_size"]


def test_3b_processor_emits_qwens_video_token_ids() -> None:
    processor = build_qwen2_5_vl_3b_processor()
    messages = [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "Which shape?"}]}]
    text = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    frames = torch.as_tensor(synthetic_video_frames(4)).permute(0, 3, 1, 2)  # 448 x 224: 128 tokens per group
    inputs = prepare_model_inputs(
        processor,
        CompressionConfig(),
        text=[text],
        videos=[frames],
        video_metadata=[{"fps": 1.0, "total_num_frames": 4}],
        return_tensors="pt",
    )
    assert inputs["video_grid_thw"].tolist() == [[2, 16, 32]]
    assert int((inputs["input_ids"] == PUBLISHED_TOKEN_IDS["video_token_id"]).sum()) == 2 * 128
    assert int(inputs["input_ids"].max()) < PUBLISHED_TEXT["vocab_size"]


# --- the stage ----------------------------------------------------------------------------------------------


def test_efficiency_profile_stage_writes_the_profile(small_project: Path, tiny_dir: Path) -> None:
    params_file = small_project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["synthetic"].update(n_train_videos=1, n_eval_videos=1, n_train_images=0, n_eval_images=0)
    params_file.write_text(yaml.safe_dump(params))
    paths = ProjectPaths(small_project)
    videor1_source_stage(paths, paths.params())
    write_json(
        paths.asset("base_model") / "model.json", {"source": "tiny", "model_id": "", "path": str(tiny_dir)}
    )
    # the score@ρ methods rank with the score_policy asset: an untrained one of the tiny LLM's width
    width = json.loads((tiny_dir / "config.json").read_text())["text_config"]["hidden_size"]
    config = ScorePolicyConfig(hidden=8)
    save_policy(ScorePolicy(width, config), config, paths.score_policy())
    result = efficiency_profile_stage(paths, paths.params())
    out = small_project / "assets/efficiency_profile/profile.json"
    assert result.outputs == {"profile": out}
    profile = EfficiencyProfile.model_validate(json.loads(out.read_text()))
    # the paper's Fig. 5 (64 frames, 16 frames, MARC), then every compared compressor the profile evaluates
    compressors = set(list_methods()) - {"marc"}
    compared = [m for m in params["eval"]["methods"] if m.split("@")[0].split("-")[0] in compressors]
    assert compared and "marc@0.6" not in compared
    assert [m.method for m in profile.methods] == ["baseline-64f", "baseline-16f", "marc@0.6", *compared]
    assert "eval video" in profile.input and str(tiny_dir) in profile.model
    assert result.metadata["table"] == format_table(profile.model_dump())
    assert result.tables["methods"].height == 3 + len(compared)


def _eval_file(folder: Path, rows: list[dict]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "eval_mmvu.json").write_text(json.dumps(rows))
    return folder


def _row(pid: str, data_type: str = "video") -> dict:
    return {"problem_id": pid, "data_type": data_type, "path": f"./videos/{pid}.mp4", "problem": "?"}


def test_a_benchmark_source_takes_its_first_video_samples_in_file_order(tmp_path: Path) -> None:
    eval_dir = _eval_file(tmp_path / "eval", [_row("i0", "image"), _row("v1"), _row("v2"), _row("v3")])
    rows, name = efficiency_rows(eval_dir, EfficiencyConfig(source="mmvu", batch_size=2))
    assert [row["problem_id"] for row, _ in rows] == ["v1", "v2"]
    assert [path for _, path in rows] == [(eval_dir / "videos" / f"{p}.mp4").resolve() for p in ("v1", "v2")]
    assert name == "MMVU (mc): the first 2 video samples of eval_mmvu.json"
    with pytest.raises(ValueError, match="has 3 video sample"):
        efficiency_rows(eval_dir, EfficiencyConfig(source="mmvu", batch_size=4))
    with pytest.raises(FileNotFoundError, match="eval_videomme.json does not exist"):
        efficiency_rows(eval_dir, EfficiencyConfig(source="videomme"))


def test_efficiency_config_checks_its_fields() -> None:
    assert EfficiencyConfig().model_dump() == {"source": "longest", "batch_size": 1, "repeats": 1}
    with pytest.raises(ValidationError, match="unknown efficiency source 'mmlu'"):
        EfficiencyConfig(source="mmlu")
    with pytest.raises(ValidationError, match="batch_size"):
        EfficiencyConfig(batch_size=0)
    with pytest.raises(ValidationError, match="repeats"):
        EfficiencyConfig(repeats=0)
    paper = load_params(Path(__file__).resolve().parents[2] / "configs" / "paper.yaml").efficiency
    assert (paper.source, paper.batch_size) == ("mmvu", 15)


def test_efficiency_profile_stage_measures_a_benchmarks_samples(small_project: Path, tiny_dir: Path) -> None:
    params_file = small_project / "params.yaml"
    params = yaml.safe_load(params_file.read_text())
    params["synthetic"].update(n_train_videos=1, n_eval_videos=2, n_train_images=0, n_eval_images=0)
    params["eval"]["methods"] = ["baseline-64f"]  # the paper's three rows only
    params["efficiency"] = {"source": "synthetic", "batch_size": 2, "repeats": 2}
    params_file.write_text(yaml.safe_dump(params))
    paths = ProjectPaths(small_project)
    videor1_source_stage(paths, paths.params())
    write_json(
        paths.asset("base_model") / "model.json", {"source": "tiny", "model_id": "", "path": str(tiny_dir)}
    )

    result = efficiency_profile_stage(paths, paths.params())
    profile = EfficiencyProfile.model_validate(json.loads(result.outputs["profile"].read_text()))
    assert (profile.source, profile.batch_size, profile.repeats) == ("synthetic", 2, 2)
    assert profile.input.startswith("Synthetic: the first 2 video samples of eval_synthetic.json")
    assert [m.method for m in profile.methods] == ["baseline-64f", "baseline-16f", "marc@0.6"]
    assert {k: result.metadata[k] for k in ("source", "batch_size", "repeats")} == {
        "source": "synthetic",
        "batch_size": 2,
        "repeats": 2,
    }
    assert "Protocol: batch 2 of the first 2 video samples of Synthetic" in result.metadata["table"]
