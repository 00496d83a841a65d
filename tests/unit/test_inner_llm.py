"""The inner-LLM stages (DyCoke's DP, HoliTom's merge at layer K) in the patched tiny Qwen2.5-VL.

With the flag off the model is bit-identical to the outer-only one. DyCoke DP: the first decoding
step keeps the top visual tokens by an attention recomputed here with eager attention, a step
whose attention is similar to the previous one attends to the full cache, and layers >= L see the
kept set in their mask. HoliTom: layer K sees text + round(N_v·(1 − r)) positions, each merged
token is the sequential running mean computed here, and generate decodes from the shortened caches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import Qwen2_5_VLForConditionalGeneration

from marc_ops.compression import CompressionConfig, compress
from marc_ops.compression.dycoke import DyCokeOptions
from marc_ops.compression.holitom import HoliTomOptions
from marc_ops.model import (
    TinyQwen2_5_VLConfig,
    apply_compression,
    build_tiny_checkpoint,
    load_qwen2_5_vl,
    load_qwen2_5_vl_processor,
)
from marc_ops.model.inner_llm import fold_in_order, inner_llm_record
from marc_ops.train.inputs import TrainingSample, encode_prompt, model_inputs

N_LAYERS = 4
DP = {"dp_layer": 2, "dp_p": 0.5}  # ranks by layer 1's attention, prunes in layers 2 and 3
MERGE = {"inner_layer": 2, "inner_r": 0.5}  # ranks by layer 1's attention, merges at the input of layer 2
OPTIONS = {"dycoke": DP, "holitom": MERGE}
# A random tiny model attends almost uniformly (neighbouring probabilities ~1e-7 apart); sharper
# queries make every ranking by attention decisive rather than a matter of float rounding.
QUERY_SCALE = 8.0


def config(method: str, inner_llm: bool = True, **options) -> CompressionConfig:
    return CompressionConfig(
        enabled=True,
        method=method,
        retention=0.5,
        inner_llm=inner_llm,
        options={**(OPTIONS[method] if inner_llm else {}), **options},
    )


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = build_tiny_checkpoint(
        tmp_path_factory.mktemp("tiny_inner_llm"), TinyQwen2_5_VLConfig(text_layers=N_LAYERS)
    )
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(out)
    with torch.no_grad():
        for layer in model.model.language_model.layers:
            layer.self_attn.q_proj.weight.mul_(QUERY_SCALE)
            layer.self_attn.q_proj.bias.mul_(QUERY_SCALE)
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def processor(tiny_dir: Path):
    return load_qwen2_5_vl_processor(tiny_dir)


def video_sample(seed: int) -> TrainingSample:
    """8 frames of 112x112: 4 temporal groups of 16 tokens, 64 before the outer compression."""
    frames = np.random.default_rng(seed).integers(0, 256, (8, 112, 112, 3), dtype=np.uint8)
    row = {"problem_id": f"v{seed}", "data_type": "video", "problem": "?", "problem_type": "free-form"}
    return TrainingSample(row=row, frames=frames, clip_ids=np.zeros(8, dtype=np.int64), fps=1.0)


def messages() -> list[dict]:
    return [{"role": "user", "content": [{"type": "video"}, {"type": "text", "text": "What happens?"}]}]


def inputs_for(model, processor, seeds=(1,)) -> dict:
    compression = CompressionConfig(**model.config.marc_compression)
    encoded = [
        encode_prompt(processor, compression, video_sample(s), messages(), encoder=model) for s in seeds
    ]
    return model_inputs(encoded, processor, padding_side="left")


def generate(model, inputs: dict, new_tokens: int = 3):
    with torch.no_grad():
        return model.generate(
            **inputs,
            max_new_tokens=new_tokens,
            min_new_tokens=new_tokens,
            do_sample=False,
            return_dict_in_generate=True,
            output_scores=True,
        )


def extended(inputs: dict, token: torch.Tensor) -> dict:
    """``inputs`` with one more text token at the end (a prompt plus its first generated token)."""
    out = dict(inputs)
    out["input_ids"] = torch.cat([inputs["input_ids"], token.view(1, 1)], dim=1)
    out["attention_mask"] = torch.cat([inputs["attention_mask"], torch.ones(1, 1, dtype=torch.long)], dim=1)
    out["mm_token_type_ids"] = torch.cat(
        [inputs["mm_token_type_ids"], torch.zeros(1, 1, dtype=torch.long)], dim=1
    )
    return out


def eager_reference(tiny_dir: Path, method: str):
    """The outer-only model with eager attention, whose forward returns attention probabilities."""
    return load_qwen2_5_vl(
        tiny_dir, compression=config(method, inner_llm=False), attn_implementation="eager"
    ).eval()


def no_hooks_left(model) -> bool:
    modules = [model.model.language_model, *model.model.language_model.modules()]
    return not any(m._forward_pre_hooks or m._forward_hooks for m in modules)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


def test_only_dycoke_and_holitom_have_an_inner_stage() -> None:
    for method in ("vidcom2", "fastvid", "moviechat"):
        with pytest.raises(ValueError, match="has no stage inside the LLM"):
            CompressionConfig(enabled=True, method=method, retention=0.5, inner_llm=True)
    with pytest.raises(ValueError, match="has no stage inside the LLM"):
        CompressionConfig(enabled=True, inner_llm=True)  # marc
    with pytest.raises(ValueError, match="needs enabled=True"):
        CompressionConfig(method="dycoke", inner_llm=True)
    assert CompressionConfig().inner_llm is False
    on = config("holitom")
    assert CompressionConfig(**on.model_dump()) == on


def test_inner_options_default_to_the_official_values_and_the_outer_stage_ignores_them() -> None:
    assert (DyCokeOptions().dp_layer, DyCokeOptions().dp_p, DyCokeOptions().dp_similarity) == (3, 0.8, 0.9)
    assert (HoliTomOptions().inner_layer, HoliTomOptions().inner_r) == (18, 0.5)
    with pytest.raises(ValueError, match="dp_p"):
        CompressionConfig(enabled=True, method="dycoke", retention=0.5, options={"dp_p": 1.5})
    tokens = torch.randn(4, 12, 8, generator=torch.Generator().manual_seed(0))
    for method, options in (
        ("dycoke", {"dp_layer": 7, "dp_p": 0.1}),
        ("holitom", {"inner_layer": 5, "inner_r": 0.9}),
    ):
        plain = compress(method, tokens, (3, 4), retention=0.5)
        with_inner = compress(method, tokens, (3, 4), retention=0.5, **options)
        assert torch.equal(plain.tokens, with_inner.tokens) and torch.equal(plain.kept, with_inner.kept)


def test_fold_in_order_is_the_sequential_running_mean() -> None:
    kept = torch.tensor([[0.0], [8.0], [5.0]])
    others = torch.tensor([[4.0], [6.0], [2.0], [1.0]])
    target = torch.tensor([0, 1, 0, 0])
    # row 0: ((0 + 4)/2 + 2)/2 = 2, then (2 + 1)/2 = 1.5; row 1: (8 + 6)/2 = 7; row 2 receives nothing
    assert fold_in_order(kept, others, target).flatten().tolist() == [1.5, 7.0, 5.0]


# --------------------------------------------------------------------------------------------
# Flag off
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dycoke", "holitom"])
def test_flag_off_is_bit_identical_to_the_outer_only_model(tiny_dir, processor, method) -> None:
    outer_only = load_qwen2_5_vl(tiny_dir, compression=config(method, inner_llm=False)).eval()
    model = load_qwen2_5_vl(tiny_dir, compression=config(method)).eval()
    inputs = inputs_for(outer_only, processor)
    generate(model, inputs)  # the stage runs ...
    assert no_hooks_left(model)  # ... and leaves nothing behind
    # inner options set but the flag off: the options are ignored
    apply_compression(model, config(method, inner_llm=False, **OPTIONS[method]))
    with torch.no_grad():
        assert torch.equal(model(**inputs).logits, outer_only(**inputs).logits)
    ours, theirs = generate(model, inputs), generate(outer_only, inputs)
    assert torch.equal(ours.sequences, theirs.sequences)
    assert all(torch.equal(a, b) for a, b in zip(ours.scores, theirs.scores, strict=True))


# --------------------------------------------------------------------------------------------
# DyCoke DP
# --------------------------------------------------------------------------------------------


def capture_decoding_masks(model, layer: int) -> list:
    """The attention mask layer ``layer`` receives at each decoding step (one new token)."""
    masks: list = []

    def hook(module, args, kwargs):
        if kwargs["hidden_states"].shape[1] == 1:
            masks.append(kwargs["attention_mask"])

    model.model.language_model.layers[layer].self_attn.register_forward_pre_hook(hook, with_kwargs=True)
    return masks


def test_dp_first_step_keeps_the_top_visual_tokens_by_recomputed_attention(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=config("dycoke")).eval()
    inputs = inputs_for(model, processor)
    masks = capture_decoding_masks(model, DP["dp_layer"])
    generated = generate(model, inputs, new_tokens=2)
    record = inner_llm_record(model)
    prompt = inputs["input_ids"][0]
    visual = torch.nonzero(prompt == processor.video_token_id).flatten()
    assert torch.equal(record.visual, visual)

    # Independently: eager attention over the prompt plus the first generated token, layer L − 1,
    # the last row, averaged over heads (decoding step 1 computes exactly this row).
    reference = eager_reference(tiny_dir, "dycoke")
    first = generated.sequences[0, len(prompt)]
    with torch.no_grad():
        out = reference(**extended(inputs, first), output_attentions=True)
    attention = out.attentions[DP["dp_layer"] - 1][0, :, -1].mean(0)[visual]
    kept_count = int(len(visual) * (1 - DP["dp_p"]))
    expected = torch.sort(visual[torch.topk(attention, kept_count).indices]).values

    step = record.steps[0]
    assert step.similarity is None
    torch.testing.assert_close(step.attention, attention)
    assert torch.equal(step.kept_visual, expected)
    # layers >= L attend to every text entry and the kept visual tokens only
    allowed = masks[0].flatten()
    pruned = visual[~torch.isin(visual, expected)]
    assert allowed.shape == (len(prompt) + 1,)
    assert not allowed[pruned].any()
    assert allowed.sum() == len(prompt) + 1 - len(pruned)


def test_dp_a_step_similar_to_the_previous_uses_the_full_cache(tiny_dir, processor) -> None:
    # Attention probabilities are nonnegative, so their cosine is >= 0: every step after the first is "similar".
    model = load_qwen2_5_vl(tiny_dir, compression=config("dycoke", dp_similarity=0.0)).eval()
    inputs = inputs_for(model, processor)
    masks = capture_decoding_masks(model, DP["dp_layer"])
    generate(model, inputs, new_tokens=3)
    first, second = inner_llm_record(model).steps
    assert first.kept_visual is not None and masks[0] is not None
    expected_similarity = torch.nn.functional.cosine_similarity(second.attention, first.attention, dim=0)
    assert second.similarity == pytest.approx(float(expected_similarity))
    assert second.similarity >= 0.0
    assert second.kept_visual is None
    assert masks[1] is None  # sdpa, batch of one: no mask is the full cache

    # A threshold no cosine reaches (1.0): every step prunes, each by its own attention.
    apply_compression(model, config("dycoke", dp_similarity=1.0))
    masks.clear()
    generate(model, inputs, new_tokens=3)
    first, second = inner_llm_record(model).steps
    assert second.similarity < 1.0 and second.kept_visual is not None
    assert masks[1] is not None and masks[1].shape[-1] == masks[0].shape[-1] + 1


def test_dp_changes_decoding_alike_with_sdpa_and_eager(tiny_dir, processor) -> None:
    outer_only = load_qwen2_5_vl(tiny_dir, compression=config("dycoke", inner_llm=False)).eval()
    inputs = inputs_for(outer_only, processor)
    compression = config("dycoke", dp_similarity=1.0)
    runs = {
        attention: generate(
            load_qwen2_5_vl(tiny_dir, compression=compression, attn_implementation=attention).eval(), inputs
        )
        for attention in ("sdpa", "eager")
    }
    torch.testing.assert_close(torch.stack(runs["sdpa"].scores), torch.stack(runs["eager"].scores))
    plain = generate(outer_only, inputs)
    torch.testing.assert_close(runs["sdpa"].scores[0], plain.scores[0])  # the prefill is not pruned
    assert not torch.allclose(runs["sdpa"].scores[1], plain.scores[1])  # decoding steps are


# --------------------------------------------------------------------------------------------
# HoliTom inner merge
# --------------------------------------------------------------------------------------------


def capture_layer_inputs(model, layer: int) -> list[torch.Tensor]:
    """The hidden states that enter decoder layer ``layer`` (after the merge), one per call."""
    seen: list[torch.Tensor] = []
    norm = model.model.language_model.layers[layer].input_layernorm
    norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].clone()))
    return seen


def test_holitom_layer_k_sees_the_text_and_the_kept_visual_tokens(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=config("holitom")).eval()
    inputs = inputs_for(model, processor)
    seen = capture_layer_inputs(model, MERGE["inner_layer"])
    before = capture_layer_inputs(model, MERGE["inner_layer"] - 1)
    with torch.no_grad():
        logits = model(**inputs).logits
    length = inputs["input_ids"].shape[1]
    n_visual = int((inputs["input_ids"] == processor.video_token_id).sum())
    expected = length - n_visual + round(n_visual * (1 - MERGE["inner_r"]))
    assert before[0].shape[1] == length
    assert seen[0].shape[1] == expected
    assert logits.shape[1] == expected  # a plain forward returns the surviving positions
    assert len(inner_llm_record(model).merge.survivors) == expected


def test_holitom_merged_tokens_are_the_sequential_running_mean(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=config("holitom")).eval()
    inputs = inputs_for(model, processor)
    seen = capture_layer_inputs(model, MERGE["inner_layer"])
    with torch.no_grad():
        model(**inputs)
    merged = seen[0][0]

    # Independently, from the eager outer-only model: layer K − 1's attention of the last prompt
    # token and the hidden states entering layer K, then the official loop.
    reference = eager_reference(tiny_dir, "holitom")
    with torch.no_grad():
        out = reference(**inputs, output_attentions=True, output_hidden_states=True)
    k = MERGE["inner_layer"]
    prompt = inputs["input_ids"][0]
    visual = torch.nonzero(prompt == processor.video_token_id).flatten()
    attention = out.attentions[k - 1][0, :, -1].mean(0)[visual]
    hidden = out.hidden_states[k][0].clone()
    top = visual[torch.topk(attention, round(len(visual) * (1 - MERGE["inner_r"]))).indices]
    others = [int(i) for i in visual if i not in top]
    similarity = torch.nn.functional.cosine_similarity(hidden[others][:, None], hidden[top][None], dim=-1)
    targets = top[similarity.argmax(dim=1)]
    for other, target in zip(others, targets.tolist(), strict=True):
        hidden[target] = (hidden[target] + hidden[other]) / 2
    survivors = [i for i in range(len(prompt)) if i not in others]

    record = inner_llm_record(model).merge
    assert torch.equal(record.kept_visual, torch.sort(top).values)
    assert torch.equal(record.folded_into, targets)
    assert len(set(targets.tolist())) < len(others)  # some kept token absorbs several, in order
    torch.testing.assert_close(merged, hidden[survivors])


def test_holitom_generate_decodes_from_the_shortened_caches(tiny_dir, processor) -> None:
    models = {
        "outer": load_qwen2_5_vl(tiny_dir, compression=config("holitom", inner_llm=False)).eval(),
        "sdpa": load_qwen2_5_vl(tiny_dir, compression=config("holitom")).eval(),
        "eager": load_qwen2_5_vl(tiny_dir, compression=config("holitom"), attn_implementation="eager").eval(),
    }
    inputs = inputs_for(models["outer"], processor)
    positions: dict[str, list[torch.Tensor]] = {name: [] for name in models}
    for name, model in models.items():
        model.model.language_model.register_forward_pre_hook(
            lambda module, args, kwargs, seen=positions[name]: seen.append(kwargs["position_ids"]),
            with_kwargs=True,
        )
    runs = {name: generate(model, inputs, new_tokens=3) for name, model in models.items()}

    length = inputs["input_ids"].shape[1]
    kept = len(inner_llm_record(models["sdpa"]).merge.survivors)
    cache = runs["sdpa"].past_key_values  # layers 0, 1 hold the whole prompt; layers 2, 3 the merged one
    assert [layer.keys.shape[2] for layer in cache.layers] == [length + 2] * 2 + [kept + 2] * 2
    # eager materialises a decoding mask, which must be cut to the merged positions; sdpa has none
    torch.testing.assert_close(torch.stack(runs["sdpa"].scores), torch.stack(runs["eager"].scores))
    # decoding continues at the uncompressed prompt's positions
    for ours, theirs in zip(positions["sdpa"][1:], positions["outer"][1:], strict=True):
        assert torch.equal(ours, theirs)


# --------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["dycoke", "holitom"])
def test_a_batch_of_two_is_refused(tiny_dir, processor, method) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=config(method)).eval()
    inputs = inputs_for(model, processor, seeds=(1, 2))
    with pytest.raises(ValueError, match="batch size 1"), torch.no_grad():
        model(**inputs)
    assert no_hooks_left(model)


@pytest.mark.parametrize("method", ["dycoke", "holitom"])
def test_a_second_chunk_on_a_filled_cache_is_refused(tiny_dir, processor, method) -> None:
    """Decoding is one token at a time; several new tokens on a filled cache (chunked prefill) say so."""
    model = load_qwen2_5_vl(tiny_dir, compression=config(method)).eval()
    inputs = inputs_for(model, processor)
    chunk = torch.tensor([[11, 12]])
    with torch.no_grad():
        cache = model(**inputs, use_cache=True).past_key_values
        with pytest.raises(ValueError, match="chunked prefill"):
            model(
                input_ids=chunk,
                attention_mask=torch.cat([inputs["attention_mask"], torch.ones_like(chunk)], dim=1),
                mm_token_type_ids=torch.zeros_like(chunk),
                past_key_values=cache,
                use_cache=True,
            )
    assert no_hooks_left(model)


def test_the_layer_option_must_fit_the_model(tiny_dir, processor) -> None:
    model = load_qwen2_5_vl(tiny_dir, compression=config("holitom", inner_layer=N_LAYERS)).eval()
    inputs = inputs_for(model, processor)
    with pytest.raises(ValueError, match="inner_layer=4 must be in 1 … 3"), torch.no_grad():
        model(**inputs)
