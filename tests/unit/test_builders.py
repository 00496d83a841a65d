"""The tiny Qwen2.5-VL builders and the loader: offline, saved and loaded like a hub checkpoint."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoConfig,
    AutoProcessor,
    AutoTokenizer,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2_5_VLProcessor,
    Qwen2Tokenizer,
)

from marc_ops.compression import CompressionConfig
from marc_ops.model import (
    ModelNotAvailableError,
    TinyQwen2_5_VLConfig,
    build_tiny_checkpoint,
    build_tiny_qwen2_5_vl,
    build_tiny_tokenizer,
    compression_of,
    default_attn_implementation,
    is_compression_patched,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
    loading,
    parameter_count,
    qwen2_5_vl_3b_config,
)
from marc_ops.model.tokenizer import (
    QWEN2_5_VL_CHAT_TEMPLATE,
    QWEN2_5_VL_SPECIAL_TOKENS,
    REASONING_TOKENS,
)


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_checkpoint(tmp_path_factory.mktemp("tiny_qwen2_5_vl"))


def test_checkpoint_is_laid_out_like_a_hub_repo_without_pickles(tiny_dir: Path) -> None:
    names = {p.name for p in tiny_dir.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "processor_config.json",
        "chat_template.jinja",
    } <= names
    assert not [n for n in names if n.endswith((".bin", ".pt", ".pkl"))]


def test_tokenizer_has_qwen_added_tokens_in_qwen_order(tiny_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    assert isinstance(tokenizer, Qwen2Tokenizer)
    ids = tokenizer.convert_tokens_to_ids(list(QWEN2_5_VL_SPECIAL_TOKENS))
    assert ids == list(range(ids[0], ids[0] + len(ids)))  # right after the BPE vocabulary, as in Qwen
    assert (tokenizer.eos_token, tokenizer.pad_token, tokenizer.bos_token) == (
        "<|im_end|>",
        "<|endoftext|>",
        None,
    )
    assert 1000 <= len(tokenizer) <= 2000


def test_chat_template_is_qwen2_5_vl_instruct_template_byte_for_byte() -> None:
    trl_copy = importlib.resources.files("trl").joinpath("chat_templates/qwen2_5_vl.jinja").read_text()
    assert QWEN2_5_VL_CHAT_TEMPLATE == trl_copy


def test_chat_template_renders_reasoning_tags_as_single_tokens(tiny_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_dir)
    messages = [
        {"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "How many red circles?"}]},
        {"role": "assistant", "content": "<think>I count them.</think><answer>3</answer>"},
    ]
    text = processor.apply_chat_template(messages, tokenize=False)
    assert text.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n")
    assert "<|vision_start|><|video_pad|><|vision_end|>How many red circles?<|im_end|>" in text

    tokenizer = processor.tokenizer
    tokens = tokenizer.convert_ids_to_tokens(tokenizer(text)["input_ids"])
    for tag in REASONING_TOKENS + ("<|im_start|>", "<|im_end|>", "<|video_pad|>"):
        assert tag in tokens
    # Not special: decoding for the rewards keeps them.
    decoded = tokenizer.decode(
        tokenizer("<think>a</think><answer>B</answer><|im_end|>")["input_ids"], skip_special_tokens=True
    )
    assert decoded == "<think>a</think><answer>B</answer>"


def test_tokenizer_round_trips_arbitrary_text() -> None:
    tokenizer = build_tiny_tokenizer(vocab_size=300)
    text = "Zürich, 3.14 — unseen wörds & émojis 🎬!"
    assert tokenizer.decode(tokenizer(text)["input_ids"]) == text


def test_processor_is_configured_like_qwen2_5_vl(tiny_dir: Path) -> None:
    processor = AutoProcessor.from_pretrained(tiny_dir)
    assert isinstance(processor, Qwen2_5_VLProcessor)
    for sub in (processor.image_processor, processor.video_processor):
        assert (sub.patch_size, sub.merge_size, sub.temporal_patch_size) == (14, 2, 2)
    frames = torch.zeros(4, 3, 56, 84, dtype=torch.uint8)
    out = processor.video_processor(videos=[frames], return_tensors="pt")
    assert out["video_grid_thw"].tolist() == [[2, 4, 6]]  # 4 frames -> 2 temporal groups of 4x6 patches


def test_model_config_takes_token_ids_from_the_tokenizer(tiny_dir: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    config = AutoConfig.from_pretrained(tiny_dir)
    assert config.text_config.vocab_size == len(tokenizer)
    assert config.image_token_id == tokenizer.convert_tokens_to_ids("<|image_pad|>")
    assert config.video_token_id == tokenizer.convert_tokens_to_ids("<|video_pad|>")
    assert config.vision_start_token_id == tokenizer.convert_tokens_to_ids("<|vision_start|>")
    assert config.vision_config.out_hidden_size == config.text_config.hidden_size
    head_dim = config.text_config.hidden_size // config.text_config.num_attention_heads
    assert sum(config.text_config.rope_parameters["mrope_section"]) == head_dim // 2


def test_model_build_is_seeded_and_leaves_the_global_rng_alone() -> None:
    tokenizer = build_tiny_tokenizer()
    config = TinyQwen2_5_VLConfig()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = build_tiny_qwen2_5_vl(tokenizer, config)
    assert torch.equal(torch.rand(1), before)
    second = build_tiny_qwen2_5_vl(tokenizer, config)
    for (name, a), (_, b) in zip(first.state_dict().items(), second.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_tiny_config_rejects_mrope_sections_that_do_not_fit_the_head() -> None:
    with pytest.raises(ValueError, match="mrope_section"):
        TinyQwen2_5_VLConfig(text_hidden_size=32, text_heads=4, mrope_section=(1, 1))


def test_loader_loads_the_tiny_checkpoint_patched_on_cpu(tiny_dir: Path) -> None:
    model = load_qwen2_5_vl(tiny_dir, dtype=torch.bfloat16, device="cpu")
    assert isinstance(model, Qwen2_5_VLForConditionalGeneration)
    assert model.dtype == torch.bfloat16
    assert model.config._attn_implementation == "sdpa"
    assert is_compression_patched(model)
    assert compression_of(model) == CompressionConfig()  # the checkpoint asks for none

    wanted = CompressionConfig(enabled=True, ratio=0.5, window=4, target_blocks=1)
    assert compression_of(load_qwen2_5_vl(tiny_dir, compression=wanted)) == wanted
    assert isinstance(load_qwen2_5_vl_processor(tiny_dir), Qwen2_5_VLProcessor)


def test_loader_names_the_missing_model_when_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(loading, "is_offline_mode", lambda: True)
    with pytest.raises(ModelNotAvailableError, match="marc-tests/no-such-model.*HF_HUB_OFFLINE"):
        load_qwen2_5_vl("marc-tests/no-such-model")
    with pytest.raises(ModelNotAvailableError, match="/no/such/dir"):
        load_qwen2_5_vl_processor("/no/such/dir")


def test_default_attention_is_sdpa_off_cuda() -> None:
    assert default_attn_implementation("cpu") == "sdpa"
    assert default_attn_implementation(None) == "sdpa"


def test_the_3b_architecture_has_its_published_parameter_count() -> None:
    # docs/gpu.md's memory arithmetic starts from this number (tied input and output embeddings counted once)
    assert parameter_count(qwen2_5_vl_3b_config()) == 3_754_622_976
